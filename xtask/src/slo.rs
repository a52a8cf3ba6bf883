//! `cargo xtask slo`: an SLO file in, Prometheus recording rules and multi-window,
//! multi-burn-rate alerts out (the SRE workbook's "alerting on SLOs", chapter 5).
//!
//! Every SLO becomes one rule group: its error ratio (bad events / all events) recorded over
//! the alert windows (5m, 30m, 1h, 2h, 6h, 1d, 3d) and over the SLO window, the objective and
//! budget as series, and two alerts:
//!
//! | alert                    | long / short window | burn rate (30d) | budget spent when it fires |
//! |--------------------------|---------------------|-----------------|----------------------------|
//! | `SLOErrorBudgetBurn` page   | 1h / 5m          | 14.4            | 2 % in 1 h                 |
//! |                          | 6h / 30m            | 6               | 5 % in 6 h                 |
//! | `SLOErrorBudgetBurn` ticket | 1d / 2h          | 3               | 10 % in 1 d                |
//! |                          | 3d / 6h             | 1               | 10 % in 3 d                |
//!
//! The burn rates follow from the budget fractions and the SLO window (a 28-day SLO pages at
//! 13.44 over 1h), so the alerts mean "this much of the budget went in this long" whatever
//! the window. The short window (1/12 of the long one) stops an alert soon after the burn
//! stops.
use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result, bail, ensure};
use serde::{Deserialize, Serialize};

const HTTP: &str = "http_server_request_duration_seconds";
const SYSCALL: &str = "monitor_syscall_duration_seconds";
const SYSCALL_ERRORS: &str = "monitor_syscall_errors_total";
/// TCP connects by outcome: handshakes that succeeded, and those that failed after the SYN.
/// Not `connect(2)` calls, which include UDP and Unix sockets that never fail this way.
const CONNECT_SUCCESSES: &str = "monitor_tcp_connect_duration_seconds_count";
const CONNECT_ERRORS: &str = "monitor_tcp_connect_errors_total";
/// The agent's histogram bounds (every latency family): 2^k ns for k in this range.
const BOUND_EXPONENTS: std::ops::RangeInclusive<u32> = 8..=34;

/// Windows the error ratio is recorded over: every long and short alert window.
const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// One multi-window condition: fires when `budget_percent` % of the budget would be spent
/// within `long` at the current rate, over both `long` and `short`.
struct BurnWindow {
    long: &'static str,
    long_hours: u32,
    short: &'static str,
    budget_percent: u32,
}

const PAGE: [BurnWindow; 2] = [
    BurnWindow {
        long: "1h",
        long_hours: 1,
        short: "5m",
        budget_percent: 2,
    },
    BurnWindow {
        long: "6h",
        long_hours: 6,
        short: "30m",
        budget_percent: 5,
    },
];
const TICKET: [BurnWindow; 2] = [
    BurnWindow {
        long: "1d",
        long_hours: 24,
        short: "2h",
        budget_percent: 10,
    },
    BurnWindow {
        long: "3d",
        long_hours: 72,
        short: "6h",
        budget_percent: 10,
    },
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    pub slos: Vec<Slo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// `[a-z0-9-]+`: the `slo` label of every generated series and alert.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Percent of good events, e.g. 99.9.
    pub objective: f64,
    /// The SLO (budget) window: `<n>d` or `<n>w`, at least 3 days. Default 30d.
    #[serde(default = "default_window")]
    pub window: String,
    /// The service the SLO belongs to, `sloth_service` on every generated series and alert
    /// (Sloth's and Pyrra's dashboards group by it). Default: the SLO's name.
    #[serde(default)]
    pub service: Option<String>,
    /// Extra labels on every generated series and alert (e.g. team).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub sli: Sli,
}

fn default_window() -> String {
    "30d".to_owned()
}

/// What counts as an event and which ones are bad. `selector` is a PromQL label-matcher list
/// (without braces), e.g. `comm="nginx"` or `comm=~"php-fpm.*", syscall="connect"`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Sli {
    /// HTTP requests; bad: status 5xx.
    HttpAvailability { selector: String },
    /// HTTP requests; bad: slower than `threshold` seconds, snapped up to the histogram's
    /// nearest bucket bound (see `bucket_at_or_above`).
    HttpLatency { selector: String, threshold: f64 },
    /// Syscalls; bad: returned an error, except the errnos in `ignore_errno`.
    SyscallAvailability {
        selector: String,
        #[serde(default)]
        ignore_errno: Vec<String>,
    },
    /// Syscalls; bad: slower than `threshold` seconds, snapped up like `HttpLatency`'s.
    SyscallLatency { selector: String, threshold: f64 },
    /// Outbound TCP connects that sent a SYN; bad: those that failed (refused, timed out,
    /// unreachable, reset, given up).
    ConnectAvailability { selector: String },
}

/// Reads `input` and writes the rules to `output`, or to stdout.
pub fn slo(input: &Path, output: Option<&Path>) -> Result<()> {
    let text = fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let rules = generate(&text, &input.display().to_string())
        .with_context(|| format!("in {}", input.display()))?;
    // A snapped threshold changes what the SLO means: say so where the rules are made.
    let file: SloFile = serde_norway::from_str(&text)?;
    for slo in &file.slos {
        let (Sli::HttpLatency { threshold, .. } | Sli::SyscallLatency { threshold, .. }) = slo.sli
        else {
            continue;
        };
        let Ok(bound) = bucket_at_or_above(threshold) else {
            continue;
        };
        if bound.seconds != threshold {
            eprintln!(
                "SLO {}: threshold {threshold} s is not a histogram bound; using the next \
                 bound up, {} s",
                slo.name, bound.label
            );
        }
    }
    match output {
        Some(path) => {
            fs::write(path, rules).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{rules}"),
    }
    Ok(())
}

/// The rule file for an SLO file's text; `source` is named in the header.
pub fn generate(text: &str, source: &str) -> Result<String> {
    let file: SloFile = serde_norway::from_str(text)?;
    ensure!(!file.slos.is_empty(), "no SLO in `slos`");
    let mut seen = std::collections::BTreeSet::new();
    let mut groups = Vec::new();
    for slo in &file.slos {
        ensure!(
            seen.insert(slo.name.as_str()),
            "SLO {} is defined twice",
            slo.name
        );
        groups.push(group(slo).with_context(|| format!("SLO {}", slo.name))?);
    }
    let body = serde_norway::to_string(&RuleFile { groups })?;
    Ok(format!(
        "# Generated by `cargo xtask slo {source}`: edit that file, not this one.\n{body}"
    ))
}

#[derive(Serialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Serialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Serialize, Default)]
struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    expr: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn group(slo: &Slo) -> Result<Group> {
    validate(slo)?;
    let window_hours = window_hours(&slo.window)?;
    let budget = budget(slo.objective);
    let mut labels = slo.labels.clone();
    labels.insert("slo".to_owned(), slo.name.clone());
    // Sloth's labels, which its and Pyrra-style dashboards group and select by.
    let service = slo.service.clone().unwrap_or_else(|| slo.name.clone());
    labels.insert("sloth_id".to_owned(), format!("{service}-{}", slo.name));
    labels.insert("sloth_service".to_owned(), service);
    labels.insert("sloth_slo".to_owned(), slo.name.clone());
    let matcher = format!("{{slo=\"{}\"}}", slo.name);

    let mut rules = Vec::new();
    for window in WINDOWS {
        rules.push(Rule {
            record: Some(format!("slo:sli_error:ratio_rate{window}")),
            expr: error_ratio(&slo.sli, window)?,
            labels: labels.clone(),
            ..Rule::default()
        });
    }
    // Over the whole SLO window, from the 5m ratio: a rate over 30 days of raw series would
    // be costly at every evaluation.
    rules.push(Rule {
        record: Some(format!("slo:sli_error:ratio_rate{}", slo.window)),
        expr: format!(
            "avg_over_time(slo:sli_error:ratio_rate5m{matcher}[{}])",
            slo.window
        ),
        labels: labels.clone(),
        ..Rule::default()
    });
    for (name, value) in [
        ("objective", slo.objective / 100.0),
        ("error_budget", budget),
    ] {
        rules.push(Rule {
            record: Some(format!("slo:{name}:ratio")),
            expr: format!("vector({})", number(value)),
            labels: labels.clone(),
            ..Rule::default()
        });
    }
    rules.push(Rule {
        record: Some("slo:error_budget_remaining:ratio".to_owned()),
        expr: format!(
            "1 - slo:sli_error:ratio_rate{}{matcher} / {}",
            slo.window,
            number(budget)
        ),
        labels: labels.clone(),
        ..Rule::default()
    });

    for (severity, windows) in [("page", &PAGE), ("ticket", &TICKET)] {
        let mut conditions = Vec::new();
        let mut described = Vec::new();
        for w in windows {
            let factor = burn_factor(w, window_hours);
            let threshold = format!("({} * {})", number(factor), number(budget));
            conditions.push(format!(
                "(\n  slo:sli_error:ratio_rate{long}{matcher} > {threshold}\nand\n  \
                 slo:sli_error:ratio_rate{short}{matcher} > {threshold}\n)",
                long = w.long,
                short = w.short,
            ));
            described.push(format!(
                "{}% of the budget in {} (burn rate {} over {} and {})",
                w.budget_percent,
                w.long,
                number(factor),
                w.long,
                w.short
            ));
        }
        let mut alert_labels = labels.clone();
        alert_labels.insert("severity".to_owned(), severity.to_owned());
        alert_labels.insert("sloth_severity".to_owned(), severity.to_owned());
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "summary".to_owned(),
            format!(
                "SLO {} ({}% over {}) is burning its error budget too fast",
                slo.name,
                number(slo.objective),
                slo.window
            ),
        );
        let mut description = String::new();
        if !slo.description.is_empty() {
            let _ = write!(
                description,
                "{}. ",
                slo.description.trim().trim_end_matches('.')
            );
        }
        let _ = write!(
            description,
            "Fires when, at the current error ratio, {}.",
            described.join(" or ")
        );
        annotations.insert("description".to_owned(), description);
        rules.push(Rule {
            alert: Some("SLOErrorBudgetBurn".to_owned()),
            expr: conditions.join("\nor\n"),
            labels: alert_labels,
            annotations,
            ..Rule::default()
        });
    }
    Ok(Group {
        name: format!("slo:{}", slo.name),
        rules,
    })
}

fn validate(slo: &Slo) -> Result<()> {
    ensure!(
        !slo.name.is_empty()
            && slo
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "name {:?}: use lower-case letters, digits and '-'",
        slo.name
    );
    ensure!(
        slo.objective > 0.0 && slo.objective < 100.0,
        "objective {} must be a percentage strictly between 0 and 100",
        slo.objective
    );
    for key in slo.labels.keys() {
        ensure!(
            key != "slo" && key != "severity" && !key.starts_with("sloth_"),
            "label {key} is set by the generator"
        );
    }
    if let Some(service) = &slo.service {
        ensure!(!service.is_empty(), "service: give a name or leave it out");
    }
    let selector = match &slo.sli {
        Sli::HttpAvailability { selector }
        | Sli::HttpLatency { selector, .. }
        | Sli::SyscallAvailability { selector, .. }
        | Sli::SyscallLatency { selector, .. }
        | Sli::ConnectAvailability { selector } => selector,
    };
    ensure!(
        !selector.contains(['{', '}']),
        "selector {selector:?}: give the matchers without braces"
    );
    Ok(())
}

/// `30d` → 720, `4w` → 672. At least three days: the slowest ticket pair looks back 3d.
fn window_hours(window: &str) -> Result<u32> {
    let (number, unit) = window.split_at(window.len().saturating_sub(1));
    let n: u32 = number
        .parse()
        .with_context(|| format!("window {window:?}: expected <days>d or <weeks>w"))?;
    let hours = match unit {
        "d" => n * 24,
        "w" => n * 24 * 7,
        _ => bail!("window {window:?}: expected <days>d or <weeks>w"),
    };
    ensure!(
        hours >= 72,
        "window {window} is shorter than the 3d alert window"
    );
    Ok(hours)
}

/// The allowed error ratio, 1 - objective, rounded to what was meant (99.9 → 0.001).
fn budget(objective_percent: f64) -> f64 {
    round((100.0 - objective_percent) / 100.0)
}

/// Burn rate that spends `budget_percent` % of the budget in the long window.
fn burn_factor(w: &BurnWindow, window_hours: u32) -> f64 {
    round(f64::from(w.budget_percent * window_hours) / f64::from(100 * w.long_hours))
}

fn round(value: f64) -> f64 {
    let scale = 1e9;
    (value * scale).round() / scale
}

/// Shortest decimal that reads back as `value`.
fn number(value: f64) -> String {
    format!("{value}")
}

/// `a, b` joined into one matcher list, braces included.
fn matchers(selector: &str, extra: &[String]) -> String {
    let mut all: Vec<&str> = Vec::new();
    if !selector.trim().is_empty() {
        all.push(selector.trim());
    }
    all.extend(extra.iter().map(String::as_str));
    format!("{{{}}}", all.join(", "))
}

fn rate(metric: &str, selector: &str, extra: &[String], window: &str) -> String {
    format!("sum(rate({metric}{}[{window}]))", matchers(selector, extra))
}

/// bad / total over `window`, as PromQL. A missing bad-event series (nothing failed yet)
/// counts as zero; a missing total (no traffic) gives no ratio at all.
fn error_ratio(sli: &Sli, window: &str) -> Result<String> {
    let ratio = |bad: String, total: String| format!("(\n  ({bad} or vector(0))\n/\n  {total}\n)");
    let slower = |metric: &str, selector: &str, le: String| {
        let total = rate(&format!("{metric}_count"), selector, &[], window);
        let fast = rate(
            &format!("{metric}_bucket"),
            selector,
            &[format!("le=\"{le}\"")],
            window,
        );
        format!("(\n  ({total} - {fast})\n/\n  {total}\n)")
    };
    Ok(match sli {
        Sli::HttpAvailability { selector } => ratio(
            rate(
                &format!("{HTTP}_count"),
                selector,
                &["http_response_status_code=~\"5..\"".to_owned()],
                window,
            ),
            rate(&format!("{HTTP}_count"), selector, &[], window),
        ),
        Sli::HttpLatency {
            selector,
            threshold,
        } => slower(HTTP, selector, bucket_at_or_above(*threshold)?.label),
        Sli::SyscallAvailability {
            selector,
            ignore_errno,
        } => {
            let mut extra = Vec::new();
            if !ignore_errno.is_empty() {
                for errno in ignore_errno {
                    ensure!(
                        !errno.is_empty() && errno.chars().all(|c| c.is_ascii_alphanumeric()),
                        "ignore_errno {errno:?}: an errno name such as EAGAIN"
                    );
                }
                extra.push(format!("errno!~\"{}\"", ignore_errno.join("|")));
            }
            ratio(
                rate(SYSCALL_ERRORS, selector, &extra, window),
                rate(&format!("{SYSCALL}_count"), selector, &[], window),
            )
        }
        Sli::SyscallLatency {
            selector,
            threshold,
        } => slower(SYSCALL, selector, bucket_at_or_above(*threshold)?.label),
        Sli::ConnectAvailability { selector } => {
            let failed = format!(
                "({} or vector(0))",
                rate(CONNECT_ERRORS, selector, &[], window)
            );
            let succeeded = format!(
                "({} or vector(0))",
                rate(CONNECT_SUCCESSES, selector, &[], window)
            );
            // Both sides may be missing (no failure yet, or nothing but failures); `> 0`
            // keeps "no connect at all" from becoming a 0/0 ratio.
            format!("(\n  {failed}\n/\n  ({succeeded} + {failed} > 0)\n)")
        }
    })
}

/// A bucket bound of the agent's histograms: the value, and its `le` label exactly as
/// exposed (2^k ns as seconds with nine decimals, `0.268435456`).
#[derive(Debug, PartialEq)]
struct Bound {
    seconds: f64,
    label: String,
}

/// The smallest bucket bound at or above `threshold`. A threshold between bounds cannot be
/// counted exactly: `le="0.25"` would select no series at all. Rounding up keeps every
/// request the SLO calls good on the good side (it also accepts some a little slower, up
/// to the bound); the generator says on stderr when it rounds.
fn bucket_at_or_above(threshold: f64) -> Result<Bound> {
    ensure!(
        threshold.is_finite() && threshold > 0.0,
        "threshold {threshold} must be a positive number of seconds"
    );
    let bound = |k: u32| {
        let ns = 1u64 << k;
        Bound {
            seconds: ns as f64 / 1e9,
            label: format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000),
        }
    };
    // A relative tolerance, so that a bound written out in full is that bound.
    BOUND_EXPONENTS
        .map(bound)
        .find(|b| b.seconds >= threshold * (1.0 - 1e-12))
        .with_context(|| {
            format!(
                "threshold {threshold} s is above the histograms' largest bound, {} s",
                bound(*BOUND_EXPONENTS.end()).label
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "slos:\n  - name: api\n    objective: 99.9\n    sli:\n      kind: http-availability\n      selector: 'comm=\"nginx\"'\n";

    #[test]
    fn workbook_burn_rates_for_thirty_days() {
        let factors: Vec<f64> = PAGE
            .iter()
            .chain(&TICKET)
            .map(|w| burn_factor(w, 720))
            .collect();
        assert_eq!(factors, [14.4, 6.0, 3.0, 1.0]);
        assert_eq!(burn_factor(&PAGE[0], 28 * 24), 13.44);
        assert_eq!(budget(99.9), 0.001);
        assert_eq!(budget(99.95), 0.0005);
    }

    #[test]
    fn generates_records_and_both_alerts() {
        let rules = generate(ONE, "x.yaml").unwrap();
        for window in WINDOWS.iter().chain(&["30d"]) {
            assert!(
                rules.contains(&format!("record: slo:sli_error:ratio_rate{window}\n")),
                "{window}"
            );
        }
        assert!(
            rules.contains("slo:sli_error:ratio_rate1h{slo=\"api\"} > (14.4 * 0.001)"),
            "{rules}"
        );
        assert!(rules.contains("slo:sli_error:ratio_rate5m{slo=\"api\"} > (14.4 * 0.001)"));
        assert!(rules.contains("slo:sli_error:ratio_rate3d{slo=\"api\"} > (1 * 0.001)"));
        assert!(
            rules.contains("http_response_status_code=~\\\"5..\\\"")
                || rules.contains("http_response_status_code=~\"5..\"")
        );
        assert_eq!(rules.matches("alert: SLOErrorBudgetBurn").count(), 2);
        assert!(rules.contains("severity: page") && rules.contains("severity: ticket"));
    }

    #[test]
    fn thresholds_snap_up_to_the_agents_bucket_bounds() {
        let label = |t: f64| bucket_at_or_above(t).map(|b| b.label);
        assert_eq!(label(0.016777216).unwrap(), "0.016777216");
        assert_eq!(label(0.000000256).unwrap(), "0.000000256");
        assert_eq!(label(17.179869184).unwrap(), "17.179869184");
        assert_eq!(label(0.25).unwrap(), "0.268435456");
        assert_eq!(label(0.02).unwrap(), "0.033554432");
        assert_eq!(label(0.0000001).unwrap(), "0.000000256");
        assert!(format!("{:#}", label(18.0).unwrap_err()).contains("17.179869184"));
        assert!(format!("{:#}", label(0.0).unwrap_err()).contains("positive"));
    }

    /// Every latency SLI selects a bucket the agent exposes, never the threshold as written.
    #[test]
    fn latency_slis_select_buckets_that_exist() {
        for kind in ["http-latency", "syscall-latency"] {
            let file = ONE.replace("http-availability", kind).replace(
                "'comm=\"nginx\"'",
                "'comm=\"nginx\"'\n      threshold: 0.25",
            );
            let rules = generate(&file, "x").unwrap();
            assert!(!rules.contains("0.25\\\""), "{kind}: {rules}");
            assert!(!rules.contains("le=\"0.25\""), "{kind}: {rules}");
            assert!(
                rules.contains("le=\\\"0.268435456\\\"") || rules.contains("le=\"0.268435456\""),
                "{kind}: {rules}"
            );
        }
    }

    /// TCP outcomes, not every connect(2) (UDP and Unix sockets included).
    #[test]
    fn connect_sli_counts_tcp_outcomes() {
        let file = ONE.replace("http-availability", "connect-availability");
        let rules = generate(&file, "x").unwrap();
        assert!(rules.contains(CONNECT_SUCCESSES) && rules.contains(CONNECT_ERRORS));
        assert!(!rules.contains("syscall="), "{rules}");
    }

    #[test]
    fn sloth_labels_on_every_rule() {
        let rules = generate(&ONE.replace("    sli:", "    service: shop\n    sli:"), "x").unwrap();
        let file: serde_norway::Value = serde_norway::from_str(&rules).unwrap();
        let rules = file["groups"][0]["rules"].as_sequence().unwrap();
        assert_eq!(rules.len(), 13);
        for rule in rules {
            let labels = &rule["labels"];
            assert_eq!(labels["sloth_service"].as_str(), Some("shop"), "{rule:?}");
            assert_eq!(labels["sloth_slo"].as_str(), Some("api"), "{rule:?}");
            assert_eq!(labels["sloth_id"].as_str(), Some("shop-api"), "{rule:?}");
        }
        let unnamed = generate(ONE, "x").unwrap();
        assert!(unnamed.contains("sloth_service: api"), "{unnamed}");
    }

    #[test]
    fn rejects_what_would_make_wrong_rules() {
        let bad = |from: &str, to: &str| generate(&ONE.replace(from, to), "x").unwrap_err();
        assert!(format!("{:#}", bad("99.9", "100")).contains("strictly between"));
        assert!(format!("{:#}", bad("name: api", "name: API")).contains("lower-case"));
        assert!(
            format!("{:#}", bad("http-availability", "http-availabilty"))
                .contains("unknown variant")
        );
        assert!(format!("{:#}", bad("    objective", "    objectiv")).contains("unknown field"));
        assert!(format!("{:#}", bad("    sli:", "    window: 2d\n    sli:")).contains("shorter"));
        assert!(format!("{:#}", bad("'comm=\"nginx\"'", "'{comm=\"nginx\"}'")).contains("braces"));
        assert!(
            format!(
                "{:#}",
                bad("    sli:", "    labels: {sloth_slo: x}\n    sli:")
            )
            .contains("set by the generator")
        );
        let twice = format!("{ONE}{}", &ONE["slos:\n".len()..]);
        assert!(format!("{:#}", generate(&twice, "x").unwrap_err()).contains("twice"));
    }

    #[test]
    fn window_in_weeks_and_days() {
        assert_eq!(window_hours("4w").unwrap(), 672);
        assert_eq!(window_hours("30d").unwrap(), 720);
        assert!(window_hours("30").is_err() && window_hours("1h").is_err());
    }
}
