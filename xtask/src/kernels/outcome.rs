//! What one smoke test found, as the guest writes it (`result.yaml`) and the host reads it
//! back, and how the host judges it. Pure: no I/O, so every rule here is unit-tested.
use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

/// The file the smoke test writes into its output folder.
pub const RESULT_FILE: &str = "result.yaml";

/// Everything one kernel's smoke test saw. Written even when parts failed: `errors` says
/// what could not be done, and every check still carries what was observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokeResult {
    /// `uname -r` where the test ran.
    pub kernel: String,
    /// The status of `/healthz`; `None` when the agent never answered.
    pub healthz_status: Option<u16>,
    /// Its body: `ok`, or `degraded` and one line per probe not attached.
    pub healthz: String,
    /// Every `monitor_probe_attached` series.
    pub probes: Vec<ProbeAttachment>,
    pub checks: Vec<Check>,
    /// Steps that failed on their own (agent did not start, a workload failed).
    pub errors: Vec<String>,
    /// How the agent ended after SIGTERM.
    pub agent_exit: String,
    /// Seconds from the end of the workloads until the counts matched, or until the test
    /// gave up waiting.
    pub settle_seconds: f64,
    /// Where the kernel refused the preferred socket I/O hooks: how the agent said so.
    #[serde(default)]
    pub refusal: Option<RefusalLog>,
}

/// The agent's log when the kernel refuses a program: the socket I/O probes forced onto
/// their preferred hooks (`--probes.socket-io tracepoints`) on a kernel that refused them
/// in the main run, once at info level and once at debug level.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RefusalLog {
    /// The WARN lines at info level that name a socket I/O probe.
    pub warnings: Vec<String>,
    /// Lines of a verifier log (`133: (85) call unknown#158`) at info level: should be none.
    pub verifier_lines_at_info: usize,
    /// The same at debug level: the whole log, when the verifier was the one refusing.
    pub verifier_lines_at_debug: usize,
}

/// The probes the refusal check forces, with the hook each must name.
pub const REFUSED_PROBES: [(&str, &str); 2] = [
    ("mon_sock_send", "sock_send_length"),
    ("mon_sock_recv", "sock_recv_length"),
];

/// Whether `line` is an instruction of a verifier log: `133: (85) call unknown#158`.
pub fn is_verifier_instruction(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(": (")
}

/// How the refusal log falls short of one WARN line per refused probe, naming its hook and
/// the kernel's reason, with the verifier's log only at debug level.
fn refusal_problems(log: &RefusalLog) -> Vec<String> {
    let mut found = Vec::new();
    for (probe, hook) in REFUSED_PROBES {
        let named = format!("probe {probe} NOT attached");
        let lines: Vec<&String> = log.warnings.iter().filter(|l| l.contains(&named)).collect();
        match lines.as_slice() {
            [line] if line.contains(hook) => {}
            [line] => found.push(format!(
                "the WARN line for {probe} does not name {hook}: {line}"
            )),
            other => found.push(format!(
                "{} WARN lines for the refused {probe}, not one",
                other.len()
            )),
        }
    }
    if log.verifier_lines_at_info > 0 {
        found.push(format!(
            "{} lines of verifier log at info level (only at debug)",
            log.verifier_lines_at_info
        ));
    }
    let by_verifier = log
        .warnings
        .iter()
        .any(|l| l.contains("the verifier refused"));
    if by_verifier && log.verifier_lines_at_debug == 0 {
        found.push("the verifier refused a probe, but its log is missing at debug level".into());
    }
    found
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeAttachment {
    pub probe: String,
    /// The hook it runs on (or would have): the `tracepoint` label.
    pub tracepoint: String,
    pub attached: bool,
}

/// One ground-truth number and what the agent reported for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The same text on every kernel (a row of the report); the unique comms are in
    /// `selector` only.
    pub what: String,
    /// The series summed, as `name{label="value",…}`.
    pub selector: String,
    pub expected: u64,
    /// The sum of the matching samples (divided by the ground truth, for a ratio check);
    /// `None` when there is no such series.
    pub observed: Option<f64>,
    /// How far from `expected` the observation may be, as a fraction of it: 0 for a count,
    /// which must be exact.
    #[serde(default)]
    pub tolerance: f64,
}

impl Check {
    /// Exact, or within the tolerance of a timed check.
    pub fn holds(&self) -> bool {
        let expected = self.expected as f64;
        self.observed
            .is_some_and(|observed| (observed - expected).abs() <= self.tolerance * expected)
    }

    /// `37`, or `1 ± 5 %` for a check with a tolerance.
    pub fn expected_text(&self) -> String {
        if self.tolerance == 0.0 {
            self.expected.to_string()
        } else {
            format!(
                "{} ± {} %",
                self.expected,
                format_value(self.tolerance * 100.0)
            )
        }
    }

    /// `37`, or `absent` when the agent exported no such series.
    pub fn observed_text(&self) -> String {
        match self.observed {
            Some(value) => format_value(value),
            None => "absent".to_owned(),
        }
    }
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A ground truth to look for: the samples of `name` carrying at least `labels`, summed.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub what: String,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub expected: u64,
    /// The workload's own measure a timed observation is divided by (1 for a count).
    truth: f64,
    tolerance: f64,
}

impl Expectation {
    /// A count, which must be exact.
    pub fn new(what: &str, name: &str, labels: &[(&str, &str)], expected: u64) -> Self {
        Self {
            what: what.to_owned(),
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            expected,
            truth: 1.0,
            tolerance: 0.0,
        }
    }

    /// A timed figure against the workload's own measure of it (`truth`): their ratio must
    /// be 1 within `tolerance`. The ratio, not the seconds, is what every kernel shares.
    pub fn ratio(
        what: &str,
        name: &str,
        labels: &[(&str, &str)],
        truth: f64,
        tolerance: f64,
    ) -> Self {
        Self {
            truth,
            tolerance,
            ..Self::new(what, name, labels, 1)
        }
    }

    /// The sum over the matching samples (over the truth, for a ratio), `None` if none
    /// matches.
    pub fn observe(&self, samples: &[Sample]) -> Option<f64> {
        let sum = self.sum(samples)?;
        if self.truth == 1.0 {
            return Some(sum);
        }
        // Three decimals: the report shows a ratio, not float noise.
        Some((sum / self.truth * 1000.0).round() / 1000.0)
    }

    fn sum(&self, samples: &[Sample]) -> Option<f64> {
        let mut matching = samples.iter().filter(|sample| {
            sample.name == self.name
                && self
                    .labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(value))
        });
        let first = matching.next()?;
        Some(first.value + matching.map(|sample| sample.value).sum::<f64>())
    }

    pub fn check(&self, samples: &[Sample]) -> Check {
        Check {
            what: self.what.clone(),
            selector: self.selector(),
            expected: self.expected,
            observed: self.observe(samples),
            tolerance: self.tolerance,
        }
    }

    fn selector(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{value}\""))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// One sample line of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of an exposition; comments and lines that do not parse are skipped (the
/// checks then find the series absent, which is reported).
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.trim_end().rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_owned();
        if key.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The `monitor_probe_attached` series of a scrape, in the order exported.
pub fn probe_attachments(samples: &[Sample]) -> Vec<ProbeAttachment> {
    samples
        .iter()
        .filter(|sample| sample.name == "monitor_probe_attached")
        .map(|sample| ProbeAttachment {
            probe: sample.labels.get("probe").cloned().unwrap_or_default(),
            tracepoint: sample.labels.get("tracepoint").cloned().unwrap_or_default(),
            attached: sample.value == 1.0,
        })
        .collect()
}

/// Why `probe` (a `monitor_probe_attached` label) is not attached: its `/healthz` line
/// (`probe P not attached: WHY`); else the `/healthz` lines that mention it (a fallback
/// program shared by several probes is named inside their lines); else the first agent log
/// line that names it as not attached or refused.
pub fn refusal_reason(probe: &str, healthz: &str, agent_log: &str) -> String {
    let own = format!("probe {probe} not attached: ");
    if let Some(reason) = healthz.lines().find_map(|line| line.strip_prefix(&own)) {
        return reason.to_owned();
    }
    let lines: Vec<&str> = healthz
        .lines()
        .filter(|line| line.starts_with("probe ") && mentions(line, probe))
        .collect();
    if !lines.is_empty() {
        return lines.join("; ");
    }
    agent_log
        .lines()
        .find(|line| {
            mentions(line, probe) && (line.contains("NOT attached") || line.contains("refused"))
        })
        // From the first `probe` on: the timestamp and module path say nothing.
        .map(|line| line.find("probe ").map_or(line, |at| &line[at..]))
        .map_or_else(
            || "no reason in /healthz or the agent log".to_owned(),
            str::to_owned,
        )
}

/// The probes `/healthz` lists as not attached, with the reason: `probe P not attached: WHY`.
pub fn health_refusals(healthz: &str) -> Vec<(String, String)> {
    healthz
        .lines()
        .filter_map(|line| {
            let (probe, reason) = line.strip_prefix("probe ")?.split_once(" not attached: ")?;
            Some((probe.to_owned(), reason.to_owned()))
        })
        .collect()
}

/// Whether `text` names `program` as a whole word (`mon_sock_send` is not in
/// `mon_sock_send_x`).
fn mentions(text: &str, program: &str) -> bool {
    text.match_indices(program).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + program.len()..].chars().next();
        let part_of_name = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !part_of_name(before) && !part_of_name(after)
    })
}

/// A probe the kernel refused, replaced by a fallback program, as the agent logs it:
/// `probe P refused (WHY); trying its fallback F`, or
/// `probe P attached: F on raw tracepoint T (instead of P on T: WHY)`, or, for a fallback
/// program several probes share, `probe P uses F on raw tracepoint T, already attached`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub probe: String,
    /// Empty when the probe joined a fallback another probe had attached.
    pub reason: String,
    pub fallback: String,
}

pub fn fallbacks(agent_log: &str) -> Vec<Fallback> {
    agent_log
        .lines()
        .filter_map(|line| {
            let rest = line.split_once("probe ")?.1;
            if let Some((probe, rest)) = rest.split_once(" refused (") {
                let (reason, fallback) = rest.rsplit_once("); trying its fallback ")?;
                return Some(Fallback {
                    probe: probe.to_owned(),
                    reason: reason.to_owned(),
                    fallback: fallback.trim().to_owned(),
                });
            }
            if let Some((probe, rest)) = rest.split_once(" uses ")
                && rest.ends_with("already attached")
            {
                return Some(Fallback {
                    probe: probe.to_owned(),
                    reason: String::new(),
                    fallback: rest.split_once(" on ")?.0.to_owned(),
                });
            }
            let (probe, rest) = rest.split_once(" attached: ")?;
            let (fallback, rest) = rest.split_once(" on ")?;
            let instead = rest.split_once("(instead of ")?.1.trim_end();
            let instead = instead.strip_suffix(')').unwrap_or(instead);
            let reason = instead.split_once(": ")?.1;
            (fallback != probe).then(|| Fallback {
                probe: probe.to_owned(),
                reason: reason.to_owned(),
                fallback: fallback.to_owned(),
            })
        })
        .collect()
}

/// A kernel made ready to boot.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub elapsed: Duration,
    pub downloaded: bool,
}

/// One kernel's smoke test, as the host saw it.
pub struct Run {
    /// `host` or the Debian suite.
    pub name: String,
    /// `uname -r`: from the result, else the kernel package.
    pub release: String,
    pub package: Option<String>,
    pub prepared: Option<Prepared>,
    /// The smoke test's wall time (the whole VM for a suite).
    pub elapsed: Duration,
    pub result: Option<SmokeResult>,
    /// Why there is no result (the VM hung, the kernel could not be fetched).
    pub failure: Option<String>,
    pub agent_log: String,
}

impl Run {
    /// The report's column title.
    pub fn column(&self) -> String {
        format!("{} `{}`", self.name, self.release)
    }

    pub fn problems(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(failure) = &self.failure {
            found.push(format!("{} ({}): {failure}", self.name, self.release));
        }
        if let Some(result) = &self.result {
            found.extend(problems(&self.name, result, &self.agent_log));
        }
        found
    }
}

/// Everything wrong with one kernel's result, one line each, naming the kernel.
pub fn problems(name: &str, result: &SmokeResult, agent_log: &str) -> Vec<String> {
    let who = format!("{name} ({})", result.kernel);
    let mut found: Vec<String> = result
        .errors
        .iter()
        .map(|error| format!("{who}: {error}"))
        .collect();
    for probe in result.probes.iter().filter(|probe| !probe.attached) {
        found.push(format!(
            "{who}: probe {} ({}) not attached: {}",
            probe.probe,
            probe.tracepoint,
            first_line(&refusal_reason(&probe.probe, &result.healthz, agent_log))
        ));
    }
    if result.probes.is_empty() && result.healthz_status.is_some() {
        found.push(format!(
            "{who}: no monitor_probe_attached series in /metrics"
        ));
    }
    match (result.healthz_status, first_line(&result.healthz)) {
        (Some(200), "ok") => {}
        (Some(status), body) => found.push(format!("{who}: /healthz answered {status} {body}")),
        (None, _) => found.push(format!("{who}: /healthz never answered")),
    }
    if let Some(refusal) = &result.refusal {
        for problem in refusal_problems(refusal) {
            found.push(format!("{who}: refusal log: {problem}"));
        }
    }
    for check in result.checks.iter().filter(|check| !check.holds()) {
        found.push(format!(
            "{who}: {}: expected {}, observed {}",
            check.what,
            check.expected_text(),
            check.observed_text(),
        ));
    }
    found
}

pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(warnings: &[&str], at_info: usize, at_debug: usize) -> RefusalLog {
        RefusalLog {
            warnings: warnings.iter().map(|w| (*w).to_owned()).collect(),
            verifier_lines_at_info: at_info,
            verifier_lines_at_debug: at_debug,
        }
    }

    const SEND_REFUSED: &str = "WARN probe mon_sock_send NOT attached (needs …): mon_sock_send \
        on sock_send_length: the verifier refused it (Invalid argument (os error 22)): invalid \
        func unknown#158";
    const RECV_REFUSED: &str = "WARN probe mon_sock_recv NOT attached (needs …): mon_sock_recv \
        on sock_recv_length: the verifier refused it (Invalid argument (os error 22)): invalid \
        func unknown#158";

    #[test]
    fn one_warn_line_per_refused_probe_and_the_verifier_log_at_debug_passes() {
        assert!(refusal_problems(&refusal(&[SEND_REFUSED, RECV_REFUSED], 0, 1900)).is_empty());
    }

    #[test]
    fn a_missing_or_repeated_warning_or_a_log_at_info_is_a_problem() {
        let missing = refusal_problems(&refusal(&[SEND_REFUSED], 0, 1900));
        assert_eq!(
            missing,
            ["0 WARN lines for the refused mon_sock_recv, not one"]
        );
        let twice = refusal_problems(&refusal(&[SEND_REFUSED, SEND_REFUSED, RECV_REFUSED], 0, 9));
        assert_eq!(
            twice,
            ["2 WARN lines for the refused mon_sock_send, not one"]
        );
        let noisy = refusal_problems(&refusal(&[SEND_REFUSED, RECV_REFUSED], 300, 300));
        assert_eq!(
            noisy,
            ["300 lines of verifier log at info level (only at debug)"]
        );
        let no_detail = refusal_problems(&refusal(&[SEND_REFUSED, RECV_REFUSED], 0, 0));
        assert_eq!(
            no_detail,
            ["the verifier refused a probe, but its log is missing at debug level"]
        );
    }

    #[test]
    fn verifier_instructions_are_recognised() {
        assert!(is_verifier_instruction("133: (85) call unknown#158"));
        assert!(is_verifier_instruction("0: (bf) r6 = r1"));
        assert!(!is_verifier_instruction("invalid func unknown#158"));
        assert!(!is_verifier_instruction("2026-12-04T21:50:46Z WARN probe"));
    }

    const SCRAPE: &str = r#"# HELP monitor_syscall_errors_total Calls that failed.
# TYPE monitor_syscall_errors_total counter
monitor_syscall_errors_total{comm="kgsys42",syscall="openat",errno="ENOENT",container="",pod="",namespace="",service="kgsys42"} 37
monitor_syscall_errors_total{comm="kgsys42",syscall="close",errno="EBADF",container="",pod="",namespace="",service="kgsys42"} 22
monitor_syscall_errors_total{comm="other",syscall="openat",errno="ENOENT",container="",pod="",namespace="",service="other"} 5
http_server_request_duration_seconds_count{comm="kghsrv42",http_request_method="GET",http_response_status_code="200",http_route="/ok",container="",pod="",namespace="",service="kghsrv42"} 4
http_server_request_duration_seconds_count{comm="kghsrv42",http_request_method="GET",http_response_status_code="200",http_route="/ok",container="c",pod="",namespace="",service="kghsrv42"} 3
monitor_probe_attached{probe="mon_sys_enter",tracepoint="sys_enter"} 1
monitor_probe_attached{probe="mon_sock_send",tracepoint="sock_send_length"} 0
odd{a="q\"uo\\te",b="x,y"} +Inf
"#;

    #[test]
    fn parses_samples_with_escapes_and_special_values() {
        let samples = parse_samples(SCRAPE);
        assert_eq!(samples.len(), 8);
        let odd = samples.last().unwrap();
        assert_eq!(odd.labels["a"], "q\"uo\\te");
        assert_eq!(odd.labels["b"], "x,y");
        assert_eq!(odd.value, f64::INFINITY);
        assert_eq!(parse_samples("no_value_here\n"), vec![]);
    }

    #[test]
    fn expectations_sum_matching_series_and_tell_absent_from_zero() {
        let samples = parse_samples(SCRAPE);
        let openat = Expectation::new(
            "syscall errors: openat ENOENT",
            "monitor_syscall_errors_total",
            &[
                ("comm", "kgsys42"),
                ("syscall", "openat"),
                ("errno", "ENOENT"),
            ],
            37,
        );
        let check = openat.check(&samples);
        assert!(check.holds());
        assert_eq!(
            check.selector,
            r#"monitor_syscall_errors_total{comm="kgsys42",syscall="openat",errno="ENOENT"}"#
        );
        let close = Expectation::new(
            "syscall errors: close EBADF",
            "monitor_syscall_errors_total",
            &[
                ("comm", "kgsys42"),
                ("syscall", "close"),
                ("errno", "EBADF"),
            ],
            23,
        )
        .check(&samples);
        assert!(!close.holds());
        assert_eq!(close.observed_text(), "22");
        // Two series that differ in another label add up.
        let served = Expectation::new(
            "HTTP server: GET /ok 200",
            "http_server_request_duration_seconds_count",
            &[("comm", "kghsrv42"), ("http_response_status_code", "200")],
            7,
        );
        assert_eq!(served.observe(&samples), Some(7.0));
        let missing = Expectation::new("x", "http_client_request_duration_seconds_count", &[], 3)
            .check(&samples);
        assert_eq!(missing.observed, None);
        assert_eq!(missing.observed_text(), "absent");
    }

    #[test]
    fn a_ratio_check_holds_within_its_tolerance_and_not_beyond() {
        let samples = parse_samples(
            "monitor_cpu_seconds_total{comm=\"kgspin42\"} 2.9\n\
             monitor_cpu_seconds_total{comm=\"other\"} 9\n",
        );
        let cpu = |truth| {
            Expectation::ratio(
                "scheduler: CPU time",
                "monitor_cpu_seconds_total",
                &[("comm", "kgspin42")],
                truth,
                0.05,
            )
            .check(&samples)
        };
        let near = cpu(3.0);
        assert_eq!(near.observed, Some(0.967));
        assert!(near.holds());
        assert_eq!(near.expected_text(), "1 ± 5 %");
        let far = cpu(2.5);
        assert_eq!(far.observed, Some(1.16));
        assert!(!far.holds());
        // A workload that failed has no truth: never a pass.
        assert!(!cpu(0.0).holds());
        let absent = Expectation::ratio(
            "x",
            "monitor_cpu_seconds_total",
            &[("comm", "no")],
            3.0,
            0.05,
        );
        assert!(!absent.check(&samples).holds());
    }

    #[test]
    fn probe_attachments_come_from_their_gauge() {
        let probes = probe_attachments(&parse_samples(SCRAPE));
        assert_eq!(
            probes,
            vec![
                ProbeAttachment {
                    probe: "mon_sys_enter".into(),
                    tracepoint: "sys_enter".into(),
                    attached: true
                },
                ProbeAttachment {
                    probe: "mon_sock_send".into(),
                    tracepoint: "sock_send_length".into(),
                    attached: false
                },
            ]
        );
    }

    const LOG: &str = "\
2026-12-04T21:34:20.859Z INFO  monitor_agent::probes: probe mon_proc_exit refused (attach failed: `bpf_raw_tracepoint_open` failed: Invalid argument (os error 22)); trying its fallback mon_proc_exit_leader
2026-12-04T21:34:20.928Z WARN  monitor_agent::probes: probe mon_tcp_retransmit NOT attached to raw tracepoint tcp_retransmit_skb (needs raw tracepoints (4.17+)): attach failed: EINVAL; its metrics stay empty
";

    #[test]
    fn reasons_come_from_healthz_then_the_log() {
        let healthz = "degraded\nprobe mon_sock_send not attached: the verifier refused the \
                       program: trace type programs with run-time allocated hash maps are \
                       unsafe.\nmore verifier output\n";
        assert_eq!(
            refusal_reason("mon_sock_send", healthz, LOG),
            "the verifier refused the program: trace type programs with run-time allocated \
             hash maps are unsafe."
        );
        assert!(
            refusal_reason("mon_tcp_retransmit", "ok\n", LOG)
                .starts_with("probe mon_tcp_retransmit NOT attached to raw tracepoint")
        );
        assert_eq!(
            refusal_reason("mon_other", "ok\n", LOG),
            "no reason in /healthz or the agent log"
        );
    }

    #[test]
    fn a_shared_fallback_program_gets_the_lines_of_the_probes_that_tried_it() {
        let healthz = "degraded\n\
            probe mon_sock_send not attached: mon_sock_send on sock_send_length: refused; \
            mon_sock_io_exit on sys_exit: R2 unbounded\n\
            probe mon_sock_recv not attached: mon_sock_recv on sock_recv_length: refused; \
            mon_sock_io_exit on sys_exit: R2 unbounded\n\
            probe mon_sock_io_exit_x not attached: other\n";
        let reason = refusal_reason("mon_sock_io_exit", healthz, "");
        assert!(
            reason.starts_with("probe mon_sock_send not attached: "),
            "{reason}"
        );
        assert!(
            reason.contains("; probe mon_sock_recv not attached: "),
            "{reason}"
        );
        assert!(!reason.contains("other"), "{reason}");
    }

    #[test]
    fn health_lists_its_refused_probes() {
        let healthz = "degraded\nprobe mon_a not attached: why: because\nverifier line\n\
                       probe mon_b not attached: other\n";
        assert_eq!(
            health_refusals(healthz),
            [
                ("mon_a".to_owned(), "why: because".to_owned()),
                ("mon_b".to_owned(), "other".to_owned())
            ]
        );
        assert!(health_refusals("ok\n").is_empty());
    }

    #[test]
    fn fallbacks_in_the_attached_instead_of_form() {
        let log = "2026-12-04T21:56:05.351Z INFO  monitor_agent::probes: probe \
            mon_tcp_retransmit attached: mon_tcp_retransmit_sent on raw tracepoint \
            tcp_retransmit_skb (instead of mon_tcp_retransmit on tcp_retransmit_skb: attach \
            failed: EINVAL (the program reads more tracepoint arguments than this kernel \
            passes))\n\
            2026-12-04T21:56:05.288Z INFO  monitor_agent::probes: probe mon_sys_enter \
            attached: mon_sys_enter on raw tracepoint sys_enter\n\
            2026-12-04T22:04:09.342Z INFO  monitor_agent::probes: probe mon_sock_recv uses \
            mon_sock_io_exit on raw tracepoint sys_exit, already attached\n";
        assert_eq!(
            fallbacks(log),
            vec![
                Fallback {
                    probe: "mon_tcp_retransmit".into(),
                    reason: "attach failed: EINVAL (the program reads more tracepoint \
                             arguments than this kernel passes)"
                        .into(),
                    fallback: "mon_tcp_retransmit_sent".into(),
                },
                Fallback {
                    probe: "mon_sock_recv".into(),
                    reason: String::new(),
                    fallback: "mon_sock_io_exit".into(),
                }
            ]
        );
    }

    #[test]
    fn fallbacks_are_read_from_the_log() {
        assert_eq!(
            fallbacks(LOG),
            vec![Fallback {
                probe: "mon_proc_exit".into(),
                reason: "attach failed: `bpf_raw_tracepoint_open` failed: Invalid argument \
                         (os error 22)"
                    .into(),
                fallback: "mon_proc_exit_leader".into(),
            }]
        );
    }

    fn result() -> SmokeResult {
        SmokeResult {
            kernel: "5.10.0-32-amd64".into(),
            healthz_status: Some(200),
            healthz: "ok\n".into(),
            probes: vec![ProbeAttachment {
                probe: "mon_sys_enter".into(),
                tracepoint: "sys_enter".into(),
                attached: true,
            }],
            checks: vec![Check {
                what: "syscall errors: openat ENOENT".into(),
                selector: "s".into(),
                expected: 37,
                observed: Some(37.0),
                tolerance: 0.0,
            }],
            ..SmokeResult::default()
        }
    }

    #[test]
    fn a_clean_result_has_no_problems() {
        assert_eq!(problems("bullseye", &result(), ""), Vec::<String>::new());
    }

    #[test]
    fn every_problem_names_the_kernel_and_why() {
        let mut bad = result();
        bad.healthz =
            "degraded\nprobe mon_tcp_retransmit not attached: attach failed: EINVAL\n".into();
        bad.probes.push(ProbeAttachment {
            probe: "mon_tcp_retransmit".into(),
            tracepoint: "tcp_retransmit_skb".into(),
            attached: false,
        });
        bad.checks[0].observed = None;
        bad.errors.push("HTTP workload: python3 exited 1".into());
        assert_eq!(
            problems("bullseye", &bad, ""),
            vec![
                "bullseye (5.10.0-32-amd64): HTTP workload: python3 exited 1",
                "bullseye (5.10.0-32-amd64): probe mon_tcp_retransmit (tcp_retransmit_skb) not \
                 attached: attach failed: EINVAL",
                "bullseye (5.10.0-32-amd64): /healthz answered 200 degraded",
                "bullseye (5.10.0-32-amd64): syscall errors: openat ENOENT: expected 37, \
                 observed absent",
            ]
        );
    }

    #[test]
    fn results_survive_the_yaml_round_trip() {
        let text = serde_norway::to_string(&result()).unwrap();
        let back: SmokeResult = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, result());
    }
}
