//! The network section of `cargo xtask bench`: connection rate and throughput, with and
//! without the agent, as overhead per operation over the no-monitor floor.
use std::fmt::Write as _;

use super::{
    report::{Condition, Environment, Series, cell, runs_list},
    worker::Workload,
};

/// Also the order within each round. No empty-hook condition: there is no single hook whose
/// floor the network probes could be compared with, so the overhead is relative to none.
pub const CONDITIONS: [Condition; 3] = [Condition::None, Condition::Agent, Condition::Bpftrace];

/// The peer: what a hand-written bpftrace script does to cover what the agent covers on
/// these workloads, its per-syscall histograms included (the agent's syscall hooks fire on
/// every connect, accept, read and write too, so a network-only script would be a cheaper
/// job, not the same one). Quoted in the report.
pub const BPFTRACE_SCRIPT: &str = "\
tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; }
tracepoint:raw_syscalls:sys_exit /@start[tid]/ {
  @lat[comm, args->id] = hist(nsecs - @start[tid]); delete(@start[tid]);
}
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
  $sk = args->skaddr;
  @states[comm, args->newstate] = count();
  if (args->newstate == 2) { @syn[$sk] = nsecs; }
  if (args->oldstate == 2) {
    if (args->newstate == 1) { @connect[comm] = hist(nsecs - @syn[$sk]); }
    delete(@syn[$sk]);
  }
}
tracepoint:tcp:tcp_destroy_sock { @closed[comm] = count(); }
tracepoint:tcp:tcp_retransmit_skb { @retransmits[comm] = count(); }
tracepoint:tcp:tcp_send_reset { @resets_sent[comm] = count(); }
tracepoint:tcp:tcp_receive_reset { @resets_received[comm] = count(); }
tracepoint:sock:sock_send_length /args->protocol == 6 && args->ret > 0/ {
  @sent[comm] = sum(args->ret);
}
tracepoint:sock:sock_recv_length /args->protocol == 6 && args->ret > 0/ {
  @received[comm] = sum(args->ret);
}";

/// Every condition's runs of one workload.
pub struct WorkloadSeries {
    pub workload: Workload,
    pub series: Vec<Series>,
}

impl WorkloadSeries {
    pub fn new(workload: Workload) -> Self {
        Self {
            workload,
            series: CONDITIONS.into_iter().map(Series::new).collect(),
        }
    }

    pub fn series_mut(&mut self, condition: Condition) -> Option<&mut Series> {
        self.series.iter_mut().find(|s| s.condition == condition)
    }

    fn median_of(&self, condition: Condition) -> Option<f64> {
        self.series
            .iter()
            .find(|s| s.condition == condition)
            .and_then(Series::median)
    }

    /// (condition − none) / none of the time per operation: how much longer each connection
    /// or write takes. For the transfers that is also 1 / (1 − throughput lost) − 1.
    pub fn overhead(&self, condition: Condition) -> Result<f64, String> {
        let none = self.median_of(Condition::None).ok_or("no baseline")?;
        let value = self.median_of(condition).ok_or_else(|| {
            let series = self.series.iter().find(|s| s.condition == condition);
            match series.and_then(|s| s.unavailable.as_deref()) {
                Some(reason) => format!("{} unavailable: {reason}", condition.name()),
                None => format!("no {} measurement", condition.name()),
            }
        })?;
        Ok((value - none) / none)
    }
}

/// Names, units and rates of a workload as the report shows them.
pub fn label(workload: Workload) -> String {
    match workload {
        Workload::Conn { .. } => "connect/accept/close".to_owned(),
        Workload::Bulk { chunk, .. } => format!("{} writes", size(chunk)),
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn decimals(workload: Workload) -> usize {
    match workload {
        Workload::Conn { .. } => 2,
        Workload::Bulk { .. } => 1,
    }
}

/// The measured time per operation as the rate a reader thinks in.
fn rate(workload: Workload, value: f64) -> String {
    match workload {
        Workload::Conn { .. } => format!("{:.0} conn/s", 1e6 / value),
        // Bytes per ns are GB/s.
        Workload::Bulk { chunk, .. } => format!("{:.2} GB/s", chunk as f64 / value),
    }
}

fn percent(fraction: f64) -> String {
    format!("{:+.1}%", fraction * 100.0)
}

pub struct NetReport {
    pub environment: Environment,
    pub runs: u32,
    pub workloads: Vec<WorkloadSeries>,
}

impl NetReport {
    /// Medians with rates, and the overheads: the figures the section is for.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| workload | none | agent | bpftrace | agent overhead | bpftrace overhead |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for ws in &self.workloads {
            let workload = ws.workload;
            let mut row = format!("| {} ({}) |", label(workload), workload.unit());
            for condition in CONDITIONS {
                let shown = match ws.median_of(condition) {
                    Some(value) => format!(
                        " {value:.prec$} ({}) |",
                        rate(workload, value),
                        prec = decimals(workload)
                    ),
                    None => " n/a |".to_owned(),
                };
                row.push_str(&shown);
            }
            for condition in [Condition::Agent, Condition::Bpftrace] {
                let shown = match (ws.overhead(condition), condition) {
                    (Ok(fraction), Condition::Agent) => format!(" **{}** |", percent(fraction)),
                    (Ok(fraction), _) => format!(" {} |", percent(fraction)),
                    (Err(_), _) => " n/a |".to_owned(),
                };
                row.push_str(&shown);
            }
            out.push_str(&row);
            out.push('\n');
        }
        out
    }

    /// Every run, so the spread behind each median can be judged.
    pub fn runs_table(&self) -> String {
        let mut out = String::from("| workload | condition | all runs |\n|---|---|---|\n");
        for ws in &self.workloads {
            for series in &ws.series {
                let runs = match &series.unavailable {
                    Some(reason) => format!("n/a: {}", cell(reason)),
                    None if series.runs.is_empty() => "no runs".to_owned(),
                    None => runs_list(&series.runs, decimals(ws.workload)),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {runs} |",
                    label(ws.workload),
                    series.condition.name()
                );
            }
        }
        out
    }

    fn workloads_text(&self) -> String {
        let mut out = String::new();
        for ws in &self.workloads {
            let line = match ws.workload {
                Workload::Conn { count } => format!(
                    "- `connect/accept/close`: {count} loopback connections one after the \
                     other; the listening end accepts and closes at once, the client reads \
                     the EOF and closes. Both ends in one thread (over loopback the handshake \
                     completes inside `connect`); a fresh listening port per batch."
                ),
                Workload::Bulk { bytes, chunk } => format!(
                    "- `{} writes`: {bytes} bytes over one loopback connection in writes of \
                     {chunk} bytes, read in reads of at most {chunk} bytes by a second thread \
                     on the same CPU; timed where the bytes arrive.",
                    size(chunk)
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("## Network overhead\n\n");
        out.push_str(&self.environment.markdown());
        let _ = write!(
            out,
            "\nEach run is `cargo xtask bench-net-worker` (this repository's xtask binary, std \
             only) pinned to the last CPU, so the time measured is all the CPU work of both \
             ends and of the loopback softirq. Each workload is split into 20 batches after \
             a warm-up of a tenth as many operations, and a run reports its fastest batch, \
             the one least disturbed by steal time. Each condition was run {} times, \
             interleaved round by round (one start of the agent or bpftrace per round serves \
             all three workloads); the tables show medians. Overhead is the extra time per \
             operation, (condition − none) / none.\n\n",
            self.runs
        );
        out.push_str(&self.workloads_text());
        out.push('\n');
        out.push_str(&self.table());
        out.push_str("\nConditions:\n\n- `none`: nothing attached.\n");
        out.push_str("- `agent`: the release agent with its default settings.\n");
        out.push_str(
            "- `bpftrace`: a bpftrace script covering what the agent covers here: per-syscall \
             latency histograms (as in the syscall section) plus connection states, connect \
             latency, closes, retransmits, resets and bytes per command:\n\n  ```\n",
        );
        for line in BPFTRACE_SCRIPT.lines() {
            let _ = writeln!(out, "  {line}");
        }
        out.push_str("  ```\n\n### All runs\n\n");
        out.push_str(&self.runs_table());
        out.push_str(WHAT_TO_EXPECT);
        out
    }
}

/// The design's estimate, so a reader can tell whether a run is plausible.
const WHAT_TO_EXPECT: &str = "
### What to expect

Not measured by this run: an estimate from the probes' own run times as the design spike
measured them once, on 2026-11-27 (`docs/design/network.md` §7, `bpf_stats`). A local
connection (both ends on this host) makes 10 `inet_sock_set_state` and 2 `tcp_destroy_sock`
hits, of which the agent does map work on about 6, for roughly 2.3 µs per connection; each
send or receive call costs roughly 150–250 ns more. On top of that come the agent's
per-syscall hooks, the syscall section's agent − none per call: a connection here is six system
calls (socket, connect, accept4, the client's read of the EOF, two closes), a transfer two per
write (the write and its read). With the spike's 0.4 µs per system call, that was about 5 µs
per connection and 1.2 µs per write: a few
percent of a connection, most of the cost of a 1 KiB loopback write (itself little more than
two cheap system calls), and several percent of a 64 KiB write.

The agent's user space, which decodes the probes' records, runs on whichever CPU is free: on a
loaded machine it competes with the pinned workload, on an idle one it does not, so its share
of the wall-clock figures depends on the machine's load. bpftrace keeps everything in kernel
maps and has no such per-event user-space work. These are measurements, not a test: nothing
fails when a run lands elsewhere.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn environment() -> Environment {
        Environment {
            date: "Thu Nov 27 12:00:00 UTC 2025".into(),
            kernel: "6.18.0".into(),
            cpu: "Test CPU".into(),
            nproc: "2".into(),
            command: "cargo xtask bench --only network --runs 3".into(),
        }
    }

    fn workload(workload: Workload, runs: [&[f64]; 3]) -> WorkloadSeries {
        let mut ws = WorkloadSeries::new(workload);
        for (series, runs) in ws.series.iter_mut().zip(runs) {
            series.runs = runs.to_vec();
        }
        ws
    }

    fn report() -> NetReport {
        NetReport {
            environment: environment(),
            runs: 3,
            workloads: vec![
                workload(
                    Workload::Conn { count: 20_000 },
                    [
                        &[40.0, 50.0, 41.0],
                        &[42.0, 44.0, 60.0],
                        &[60.0, 62.0, 61.0],
                    ],
                ),
                workload(
                    Workload::Bulk {
                        bytes: 1_000_000_000,
                        chunk: 65_536,
                    },
                    [&[20_000.0], &[20_100.0], &[21_000.0]],
                ),
                workload(
                    Workload::Bulk {
                        bytes: 100_000_000,
                        chunk: 1024,
                    },
                    [&[1000.0], &[1100.0], &[1500.0]],
                ),
            ],
        }
    }

    #[test]
    fn overhead_is_extra_time_per_operation_over_none() {
        let report = report();
        let conn = &report.workloads[0];
        // Medians: none 41, agent 44, bpftrace 61.
        assert!((conn.overhead(Condition::Agent).unwrap() - 3.0 / 41.0).abs() < 1e-12);
        assert!((conn.overhead(Condition::Bpftrace).unwrap() - 20.0 / 41.0).abs() < 1e-12);
        assert!((report.workloads[2].overhead(Condition::Agent).unwrap() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn table_shows_medians_rates_and_percentages() {
        let table = report().table();
        assert!(table.contains(
            "| connect/accept/close (µs per connection) | 41.00 (24390 conn/s) | \
             44.00 (22727 conn/s) | 61.00 (16393 conn/s) | **+7.3%** | +48.8% |"
        ));
        // 65536 B / 20000 ns = 3.28 GB/s.
        assert!(table.contains(
            "| 64 KiB writes (ns per write) | 20000.0 (3.28 GB/s) | 20100.0 (3.26 GB/s) | \
             21000.0 (3.12 GB/s) | **+0.5%** | +5.0% |"
        ));
        assert!(table.contains("| 1 KiB writes (ns per write) |"));
    }

    #[test]
    fn unavailable_bpftrace_is_shown_not_fatal() {
        let mut report = report();
        for ws in &mut report.workloads {
            let bpftrace = ws.series_mut(Condition::Bpftrace).unwrap();
            bpftrace.runs.clear();
            bpftrace.unavailable = Some("no | tracefs".into());
        }
        let markdown = report.markdown();
        assert!(markdown.contains("| **+7.3%** | n/a |"));
        assert!(markdown.contains("| connect/accept/close | bpftrace | n/a: no \\| tracefs |"));
    }

    #[test]
    fn markdown_names_the_command_the_workloads_and_the_script() {
        let markdown = report().markdown();
        assert!(markdown.starts_with("## Network overhead\n\n- Date: "));
        assert!(markdown.contains("- Command: `cargo xtask bench --only network --runs 3`"));
        assert!(markdown.contains("- `connect/accept/close`: 20000 loopback connections"));
        assert!(markdown.contains("- `1 KiB writes`: 100000000 bytes"));
        assert!(
            markdown.contains("  tracepoint:tcp:tcp_destroy_sock { @closed[comm] = count(); }")
        );
        assert!(markdown.contains("| 64 KiB writes | agent | 20100.0 |"));
    }

    #[test]
    fn sizes_are_shown_in_binary_units_when_exact() {
        assert_eq!(size(65_536), "64 KiB");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(1000), "1000 B");
    }
}
