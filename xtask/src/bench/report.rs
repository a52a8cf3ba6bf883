//! Statistics shared by the report sections, and the syscall section of `cargo xtask bench`.
use std::fmt::Write as _;

use super::{families::Family, prog_stats::ProgramTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    None,
    Empty,
    Agent,
    /// The agent with process lifecycle and one family of probes only (`--probes.disable`
    /// the rest): that family's share of the agent's cost.
    AgentOnly(Family),
    /// The whole agent with requests framed in user space (`--probes.request-framing user`),
    /// as where a verifier refuses the framing programs: what framing in the kernel saves.
    AgentUserFraming,
    /// The whole agent copying database connections to user space and framing them there
    /// (`--probes.databases`, Redis and PostgreSQL not framed in the kernel): the way
    /// before they were.
    AgentDatabases,
    /// The whole agent without its OpenSSL uprobes (`--probes.tls=false`): against `Agent`,
    /// what the uprobes cost.
    AgentNoTls,
    /// The whole agent ignoring HTTP/2 connections (`--probes.http2=false`): against
    /// `Agent`, what following them costs.
    AgentNoHttp2,
    /// The whole agent framing no database (`--probes.redis=false --probes.postgres=false`):
    /// against `Agent`, what framing them in the kernel costs.
    AgentNoDbFraming,
    Bpftrace,
}

impl Condition {
    /// Also the order within each round.
    pub const ALL: [Condition; 4] = [
        Condition::None,
        Condition::Empty,
        Condition::Agent,
        Condition::Bpftrace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::None => "none",
            Condition::Empty => "empty",
            Condition::Agent => "agent",
            Condition::AgentOnly(family) => family.condition_name(),
            Condition::AgentUserFraming => "agent:user-framing",
            Condition::AgentDatabases => "agent:databases",
            Condition::AgentNoTls => "agent:no-tls",
            Condition::AgentNoHttp2 => "agent:no-http2",
            Condition::AgentNoDbFraming => "agent:no-db-framing",
            Condition::Bpftrace => "bpftrace",
        }
    }

    /// Whether the condition runs the agent (whole or in part).
    pub fn is_agent(self) -> bool {
        matches!(
            self,
            Condition::Agent
                | Condition::AgentOnly(_)
                | Condition::AgentUserFraming
                | Condition::AgentDatabases
                | Condition::AgentNoTls
                | Condition::AgentNoHttp2
                | Condition::AgentNoDbFraming
        )
    }

    pub fn description(self) -> &'static str {
        match self {
            Condition::None => "nothing attached.",
            Condition::Empty => {
                "empty raw-tracepoint programs on `sys_enter` and `sys_exit`, and on \
                 `sched_switch`, `sched_wakeup` and `sched_wakeup_new` (`hook-floor`): the \
                 floor cost of any per-syscall and per-switch hook."
            }
            Condition::Agent => "the release agent with its default settings.",
            Condition::AgentOnly(_) => {
                "the release agent with process lifecycle and one family of probes only."
            }
            Condition::AgentUserFraming => {
                "the release agent with requests framed in user space \
                 (`--probes.request-framing user`)."
            }
            Condition::AgentDatabases => {
                "the release agent copying Redis and PostgreSQL connections to user space \
                 (`--probes.redis=false --probes.postgres=false --probes.databases`)."
            }
            Condition::AgentNoTls => {
                "the release agent without its OpenSSL uprobes (`--probes.tls=false`)."
            }
            Condition::AgentNoHttp2 => {
                "the release agent ignoring HTTP/2 connections (`--probes.http2=false`): a \
                 socket that starts with HTTP/2's preface is judged once and left alone."
            }
            Condition::AgentNoDbFraming => {
                "the release agent framing no database (`--probes.redis=false \
                 --probes.postgres=false`): a socket that starts like a Redis or PostgreSQL \
                 client's is judged once and left alone."
            }
            Condition::Bpftrace => {
                "a bpftrace script keeping a per-(comm, syscall) latency histogram, \
                 the usual ad-hoc alternative:"
            }
        }
    }
}

/// The bpftrace condition's script, also quoted in the report.
pub const BPFTRACE_SCRIPT: &str = "tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; } \
    tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat[comm, args->id] = \
    hist(nsecs - @start[tid]); delete(@start[tid]); }";

/// All measurements of one condition, in the workload's unit (ns per call, µs per connection, …).
pub struct Series {
    pub condition: Condition,
    pub runs: Vec<f64>,
    /// Why the condition could not be measured (only bpftrace may be missing).
    pub unavailable: Option<String>,
}

impl Series {
    pub fn new(condition: Condition) -> Self {
        Self {
            condition,
            runs: Vec::new(),
            unavailable: None,
        }
    }

    pub fn median(&self) -> Option<f64> {
        match self.unavailable {
            Some(_) => None,
            None => median(&self.runs),
        }
    }
}

/// The median resists the odd run disturbed by unrelated activity better than the mean.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// Where and how the numbers were taken.
#[derive(Clone)]
pub struct Environment {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub nproc: String,
    pub command: String,
}

impl Environment {
    pub fn markdown(&self) -> String {
        format!(
            "- Date: {}\n- Kernel: {}\n- CPU: {} (nproc: {})\n- Command: `{}` (as root)\n",
            self.date, self.kernel, self.cpu, self.nproc, self.command
        )
    }
}

pub struct Report {
    pub environment: Environment,
    pub iterations: u64,
    pub runs: u32,
    pub series: Vec<Series>,
    /// The hooks' own run times (empty, then the agent's), or why they are missing.
    pub program_times: Result<Vec<ProgramTime>, String>,
    pub switches: Switches,
}

/// The context-switch workload of the same rounds (`switch-loop`).
pub struct Switches {
    pub trips: u64,
    pub series: Vec<Series>,
}

impl Switches {
    pub fn markdown(&self) -> String {
        let mut out = String::from("\n### Context switches\n\n");
        let _ = writeln!(
            out,
            "In the same rounds, `switch-loop` passes a byte {} times between two threads \
             over two pipes, both pinned to the last CPU, so that every pass wakes the other \
             thread and switches to it; it reports the nanoseconds per round trip (two \
             switches, two wakeups, four pipe system calls) of its fastest batch. The empty \
             hooks are the same as above, the scheduler's included; bpftrace is not run here \
             (its script hooks system calls, not the scheduler).\n",
            self.trips
        );
        out.push_str(&table(&self.series, "ns/trip"));
        let value = match ratio(&self.series, Condition::Agent) {
            Ok(ratio) => format!("**{ratio:.2}**"),
            Err(reason) => format!("n/a ({reason})"),
        };
        let _ = writeln!(
            out,
            "\n- agent: (agent − none) / (empty − none) = {value}\n\nTarget: ≤ {TARGET_RATIO:.1} \
             (the agent's syscall and scheduler probes at most twice their empty hooks on a \
             switch-heavy workload). A measurement, not a test."
        );
        out
    }
}

/// The agent may cost at most this many empty hooks per syscall.
const TARGET_RATIO: f64 = 2.0;

fn median_of(series: &[Series], condition: Condition) -> Option<f64> {
    series
        .iter()
        .find(|s| s.condition == condition)
        .and_then(Series::median)
}

/// (condition − none) / (empty − none): the condition's cost in units of the empty hooks.
pub fn ratio(series: &[Series], condition: Condition) -> Result<f64, String> {
    let none = median_of(series, Condition::None).ok_or("no baseline")?;
    let empty = median_of(series, Condition::Empty).ok_or("no empty-hook measurement")?;
    let value = median_of(series, condition).ok_or_else(|| {
        let reason = series.iter().find(|s| s.condition == condition);
        match reason.and_then(|s| s.unavailable.as_deref()) {
            Some(reason) => format!("{} unavailable: {reason}", condition.name()),
            None => format!("no {} measurement", condition.name()),
        }
    })?;
    if empty <= none {
        return Err("the empty hook measured no slower than none; raise --iterations".into());
    }
    Ok((value - none) / (empty - none))
}

/// Median, overhead over none and every run of each condition, in `unit` (`ns/call`).
pub fn table(series: &[Series], unit: &str) -> String {
    let none = median_of(series, Condition::None);
    let mut out = format!(
        "| condition | median {unit} | overhead over none (ns) | all runs ({unit}) |\n\
         |---|---:|---:|---|\n"
    );
    for series in series {
        let name = series.condition.name();
        let row = match (&series.unavailable, series.median()) {
            (Some(reason), _) => format!("| {name} | n/a | n/a | n/a: {} |", cell(reason)),
            (None, Some(median)) => {
                let overhead = match (series.condition, none) {
                    (Condition::None, _) => "baseline".to_owned(),
                    (_, Some(none)) => format!("{:.1}", median - none),
                    (_, None) => "n/a".to_owned(),
                };
                format!(
                    "| {name} | {median:.1} | {overhead} | {} |",
                    runs_list(&series.runs, 1)
                )
            }
            (None, None) => format!("| {name} | n/a | n/a | no runs |"),
        };
        out.push_str(&row);
        out.push('\n');
    }
    out
}

impl Report {
    pub fn ratio(&self, condition: Condition) -> Result<f64, String> {
        ratio(&self.series, condition)
    }

    pub fn table(&self) -> String {
        table(&self.series, "ns/call")
    }

    pub fn ratios(&self) -> String {
        let mut out = String::new();
        for condition in [Condition::Agent, Condition::Bpftrace] {
            let name = condition.name();
            let value = match self.ratio(condition) {
                Ok(ratio) => format!("**{ratio:.2}**"),
                Err(reason) => format!("n/a ({reason})"),
            };
            let _ = writeln!(out, "- {name}: ({name} − none) / (empty − none) = {value}");
        }
        let verdict = match self.ratio(Condition::Agent) {
            Ok(ratio) if ratio <= TARGET_RATIO => "met by this run",
            Ok(_) => "missed by this run",
            Err(_) => "not assessable in this run",
        };
        let _ = write!(
            out,
            "\nTarget: agent ratio ≤ {TARGET_RATIO:.1}, i.e. the agent adds at most twice the cost \
             of an empty hook to each system call ({verdict}). This is a measurement, not a \
             test: nothing fails when it is missed.\n"
        );
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("## Syscall overhead\n\n");
        out.push_str(&self.environment.markdown());
        out.push('\n');
        let _ = writeln!(
            out,
            "Each run makes {} `getppid` system calls in a tight loop (`syscall-loop`, pinned \
             to the last CPU, after a warm-up of a tenth as many) in 20 batches and reports the \
             nanoseconds per call of its fastest batch: on a virtual machine, steal time lands \
             on some batches and not others, and the least disturbed batch is the cost being \
             measured. Each condition was run {} times, interleaved round by round so that \
             drift affects all conditions alike; the table shows the median.\n",
            self.iterations, self.runs
        );
        out.push_str(&self.table());
        out.push_str("\nConditions:\n\n");
        for condition in Condition::ALL {
            let _ = writeln!(out, "- `{}`: {}", condition.name(), condition.description());
        }
        let _ = writeln!(out, "\n  ```\n  {BPFTRACE_SCRIPT}\n  ```\n");
        out.push_str("### Ratios\n\n");
        out.push_str(&self.ratios());
        out.push_str(WHERE_THE_TIME_GOES);
        out.push_str(&self.program_table());
        out.push_str(&self.switches.markdown());
        out
    }

    /// The measured per-program table, and what the agent's bodies add to the empty hooks.
    fn program_table(&self) -> String {
        let mut out = String::from(
            "Each program's own run time in this run, from the kernel's BPF statistics \
             (`kernel.bpf_stats_enabled=1` during one more loop under the empty hooks and one \
             under the agent, then `bpftool prog show`: run_time_ns / run_cnt over every \
             system call in that window; the accounting itself costs what the empty programs \
             show):\n\n",
        );
        out.push_str(&super::prog_stats::markdown(&self.program_times));
        let Ok(times) = &self.program_times else {
            return out;
        };
        let ns = |name: &str| times.iter().find(|t| t.name == name).map(|t| t.ns_per_run);
        if let (Some(empty_enter), Some(empty_exit), Some(enter), Some(exit)) = (
            ns("noop_sys_enter"),
            ns("noop_sys_exit"),
            ns("mon_sys_enter"),
            ns("mon_sys_exit"),
        ) {
            let _ = writeln!(
                out,
                "\nSo the agent's bodies add about {:.0} + {:.0} ns to the empty hooks' \
                 dispatch, which is what the ratio above compares them with.",
                enter - empty_enter,
                exit - empty_exit
            );
        }
        out
    }
}

/// What the agent's hooks do per call, so the ratio can be read against its parts.
const WHERE_THE_TIME_GOES: &str = "
### Where the agent's time goes

Per syscall the agent's two programs do: `sys_enter`, one `bpf_get_current_pid_tgid`, a
bit test in read-only data (does this syscall have a latency histogram?), one
`bpf_ktime_get_ns` if it does, and one store into an array slot indexed by thread id (an
inlined lookup: no helper call, no hashing, no delete); `sys_exit`, the same (the clock only
for a timed call), two inlined array lookups (the thread's slot, the process's generation)
and one per-CPU hash lookup for the (process, generation, syscall) histogram; a second hash
update only when the call failed. `getppid` has no histogram by default
(`--syscalls.histograms blocking`): this loop measures a call that is only counted. The two
clock reads cost about as much again here; the context-switch round trips below are made of
timed calls (pipe reads and writes).

";

pub fn runs_list(runs: &[f64], decimals: usize) -> String {
    let shown: Vec<String> = runs.iter().map(|v| format!("{v:.decimals$}")).collect();
    shown.join(", ")
}

/// Keeps free text (error messages) from breaking the table.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(condition: Condition, runs: &[f64]) -> Series {
        Series {
            condition,
            runs: runs.to_vec(),
            unavailable: None,
        }
    }

    fn report(bpftrace: Series) -> Report {
        Report {
            environment: Environment {
                date: "Thu Nov 27 12:00:00 UTC 2025".into(),
                kernel: "6.18.0".into(),
                cpu: "Test CPU".into(),
                nproc: "2".into(),
                command: "cargo xtask bench --iterations 1000 --runs 3".into(),
            },
            iterations: 1000,
            runs: 3,
            program_times: Err("not measured in the unit tests".into()),
            switches: Switches {
                trips: 100,
                series: vec![
                    series(Condition::None, &[4000.0]),
                    series(Condition::Empty, &[4400.0]),
                    series(Condition::Agent, &[5000.0]),
                ],
            },
            series: vec![
                series(Condition::None, &[100.0, 102.0, 101.0]),
                series(Condition::Empty, &[111.0, 110.0, 130.0]),
                series(Condition::Agent, &[120.0, 125.0, 121.0]),
                bpftrace,
            ],
        }
    }

    #[test]
    fn the_context_switch_section_has_its_table_and_ratio() {
        let markdown = report(series(Condition::Bpftrace, &[1.0]))
            .switches
            .markdown();
        assert!(markdown.contains("### Context switches"), "{markdown}");
        assert!(
            markdown.contains("| agent | 5000.0 | 1000.0 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("(agent − none) / (empty − none) = **2.50**"),
            "{markdown}"
        );
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratio_is_in_units_of_the_empty_hook() {
        let report = report(series(Condition::Bpftrace, &[201.0]));
        // none 101, empty 111, agent 121, bpftrace 201.
        assert_eq!(report.ratio(Condition::Agent), Ok(2.0));
        assert_eq!(report.ratio(Condition::Bpftrace), Ok(10.0));
        assert!(
            report
                .ratios()
                .contains("agent: (agent − none) / (empty − none) = **2.00**")
        );
        assert!(report.ratios().contains("met by this run"));
    }

    #[test]
    fn ratio_needs_the_empty_hook_above_none() {
        let mut report = report(series(Condition::Bpftrace, &[201.0]));
        report.series[1].runs = vec![100.0];
        assert!(
            report
                .ratio(Condition::Agent)
                .unwrap_err()
                .contains("no slower")
        );
    }

    #[test]
    fn unavailable_bpftrace_is_reported_not_fatal() {
        let mut bpftrace = Series::new(Condition::Bpftrace);
        bpftrace.unavailable = Some("no | tracefs\nhere".into());
        let report = report(bpftrace);
        let markdown = report.markdown();
        assert!(markdown.contains("| bpftrace | n/a | n/a | n/a: no \\| tracefs here |"));
        assert!(markdown.contains("bpftrace: (bpftrace − none) / (empty − none) = n/a"));
        assert!(markdown.contains("**2.00**"));
    }

    #[test]
    fn table_rows_show_median_overhead_and_runs() {
        let table = report(series(Condition::Bpftrace, &[201.0])).table();
        assert!(table.contains("| none | 101.0 | baseline | 100.0, 102.0, 101.0 |"));
        assert!(table.contains("| empty | 111.0 | 10.0 | 111.0, 110.0, 130.0 |"));
        assert!(table.contains("| agent | 121.0 | 20.0 |"));
    }
}
