//! The SLO file's schema and the rules made from it: per SLO, one rule group with its error
//! ratio (bad events / all events) recorded over the alert windows (5m, 30m, 1h, 2h, 6h, 1d,
//! 3d) and over the SLO window, the objective and budget as series, and two alerts:
//!
//! | alert                       | long / short window | burn rate (30d) | budget spent when it fires |
//! |-----------------------------|---------------------|-----------------|----------------------------|
//! | `SLOErrorBudgetBurn` page   | 1h / 5m             | 14.4            | 2 % in 1 h                 |
//! |                             | 6h / 30m            | 6               | 5 % in 6 h                 |
//! | `SLOErrorBudgetBurn` ticket | 1d / 2h             | 3               | 10 % in 1 d                |
//! |                             | 3d / 6h             | 1               | 10 % in 3 d                |
//!
//! The burn rates follow from the budget fractions and the SLO window (a 28-day SLO pages at
//! 13.44 over 1h), so the alerts mean "this much of the budget went in this long" whatever
//! the window (the SRE workbook's "alerting on SLOs", chapter 5). The short window (1/12 of
//! the long one) stops an alert soon after the burn stops.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use anyhow::{Context as _, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::bounds::bucket_at_or_above;
use crate::series::families::{Family, family, label};

/// The families the SLIs count; names and labels come from the catalogue the exporter uses.
const HTTP: Family = family::HTTP_SERVER_DURATION;
const SYSCALL: Family = family::SYSCALL_DURATION;
/// Every syscall's calls: the histogram is kept only for the syscalls that block (by
/// default), so an availability SLI divides by this counter.
const SYSCALL_CALLS: Family = family::SYSCALLS;
const SYSCALL_ERRORS: Family = family::SYSCALL_ERRORS;
/// TCP connects by outcome: handshakes that succeeded (the histogram's `_count`), and those
/// that failed after the SYN. Not `connect(2)` calls, which include UDP and Unix sockets
/// that never fail this way.
const CONNECT_SUCCESSES: Family = family::TCP_CONNECT_DURATION;
const CONNECT_ERRORS: Family = family::TCP_CONNECT_ERRORS;

/// Windows the error ratio is recorded over: every long and short alert window.
pub(super) const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// One multi-window condition: fires when `budget_percent` % of the budget would be spent
/// within `long` at the current rate, over both `long` and `short`.
pub(super) struct BurnWindow {
    long: &'static str,
    long_hours: u32,
    short: &'static str,
    budget_percent: u32,
}

pub(super) const PAGE: [BurnWindow; 2] = [
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
pub(super) const TICKET: [BurnWindow; 2] = [
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

/// The rule file made from an SLO file, and what the operator should know about it.
#[derive(Debug)]
pub struct Generated {
    pub rules: String,
    /// Thresholds that were not histogram bounds, and the bound used instead: a snapped
    /// threshold changes what the SLO means, so it is said where the rules are made.
    pub notes: Vec<String>,
}

/// The rule file for an SLO file's text; `source` is named in the header.
pub fn generate(text: &str, source: &str) -> Result<Generated> {
    let file: SloFile = serde_norway::from_str(text)?;
    ensure!(!file.slos.is_empty(), "no SLO in `slos`");
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    let mut notes = Vec::new();
    for slo in &file.slos {
        ensure!(
            seen.insert(slo.name.as_str()),
            "SLO {} is defined twice",
            slo.name
        );
        groups.push(group(slo).with_context(|| format!("SLO {}", slo.name))?);
        if let Sli::HttpLatency { threshold, .. } | Sli::SyscallLatency { threshold, .. } = slo.sli
        {
            let bound = bucket_at_or_above(threshold)?;
            if bound.seconds != threshold {
                notes.push(format!(
                    "SLO {}: threshold {threshold} s is not a histogram bound; using the next \
                     bound up, {} s",
                    slo.name, bound.label
                ));
            }
        }
    }
    let body = serde_norway::to_string(&RuleFile { groups })?;
    Ok(Generated {
        rules: format!(
            "# Generated by `monitor-agent slo {source}`: edit that file, not this one.\n{body}"
        ),
        notes,
    })
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
pub(super) fn window_hours(window: &str) -> Result<u32> {
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
pub(super) fn budget(objective_percent: f64) -> f64 {
    round((100.0 - objective_percent) / 100.0)
}

/// Burn rate that spends `budget_percent` % of the budget in the long window.
pub(super) fn burn_factor(w: &BurnWindow, window_hours: u32) -> f64 {
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

/// `sum(rate(...))` of a family's series (`suffix` ""), or of one of a histogram's
/// (`_count`, `_bucket`).
fn rate(family: Family, suffix: &str, selector: &str, extra: &[String], window: &str) -> String {
    format!(
        "sum(rate({}{suffix}{}[{window}]))",
        family.name,
        matchers(selector, extra)
    )
}

/// bad / total over `window`, as PromQL. A missing bad-event series (nothing failed yet)
/// counts as zero; a missing total (no traffic) gives no ratio at all.
fn error_ratio(sli: &Sli, window: &str) -> Result<String> {
    let ratio = |bad: String, total: String| format!("(\n  ({bad} or vector(0))\n/\n  {total}\n)");
    let slower = |histogram: Family, selector: &str, le: String| {
        let total = rate(histogram, "_count", selector, &[], window);
        let fast = rate(
            histogram,
            "_bucket",
            selector,
            &[format!("le=\"{le}\"")],
            window,
        );
        format!("(\n  ({total} - {fast})\n/\n  {total}\n)")
    };
    Ok(match sli {
        Sli::HttpAvailability { selector } => ratio(
            rate(
                HTTP,
                "_count",
                selector,
                &[format!("{}=~\"5..\"", label::HTTP_STATUS)],
                window,
            ),
            rate(HTTP, "_count", selector, &[], window),
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
                extra.push(format!("{}!~\"{}\"", label::ERRNO, ignore_errno.join("|")));
            }
            ratio(
                rate(SYSCALL_ERRORS, "", selector, &extra, window),
                rate(SYSCALL_CALLS, "", selector, &[], window),
            )
        }
        Sli::SyscallLatency {
            selector,
            threshold,
        } => slower(SYSCALL, selector, bucket_at_or_above(*threshold)?.label),
        Sli::ConnectAvailability { selector } => {
            let failed = format!(
                "({} or vector(0))",
                rate(CONNECT_ERRORS, "", selector, &[], window)
            );
            let succeeded = format!(
                "({} or vector(0))",
                rate(CONNECT_SUCCESSES, "_count", selector, &[], window)
            );
            // Both sides may be missing (no failure yet, or nothing but failures); `> 0`
            // keeps "no connect at all" from becoming a 0/0 ratio.
            format!("(\n  {failed}\n/\n  ({succeeded} + {failed} > 0)\n)")
        }
    })
}
