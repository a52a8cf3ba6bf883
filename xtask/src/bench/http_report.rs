//! The HTTP section of `cargo xtask bench`: nginx's requests/s under wrk with and without
//! the agent, as the share of requests/s lost against the issue's goal of at most 3%.
use std::fmt::Write as _;

use super::prog_stats::ProgramTime;

use super::{
    http::{AgentSaw, KEEPALIVE_REQUESTS, Placement, WRK_CONNECTIONS, WrkResult},
    report::{Condition, Environment, cell, median, runs_list},
};

/// Also the order within each round.
pub const CONDITIONS: [Condition; 3] = [Condition::None, Condition::Agent, Condition::Bpftrace];

/// The agent may cost nginx at most this share of its requests/s.
const GOAL: f64 = 0.03;

/// The peer: per-syscall latency histograms (the agent hooks every syscall of nginx and wrk
/// too), bytes per command, and each request's time on the wire per socket, from the same
/// `sock_*_length` tracepoints the agent's payload capture runs from. A socket whose first
/// data is read is a server's (first byte read to first byte written), one whose first
/// data is written a client's. What it cannot do in-kernel is the agent's parsing: method,
/// status and route. Quoted in the report.
pub const BPFTRACE_SCRIPT: &str = "\
tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; }
tracepoint:raw_syscalls:sys_exit /@start[tid]/ {
  @lat[comm, args->id] = hist(nsecs - @start[tid]); delete(@start[tid]);
}
tracepoint:sock:sock_recv_length /args->protocol == 6 && args->ret > 0 && !(args->flags & 2)/ {
  $sk = (uint64)args->sk;
  @received[comm] = sum(args->ret);
  if (@role[$sk] == 0) { @role[$sk] = 1; }
  if (@role[$sk] == 1) {
    if (@since[$sk] == 0) { @since[$sk] = nsecs; }
  } else if (@since[$sk] != 0) {
    @client[comm] = hist(nsecs - @since[$sk]); delete(@since[$sk]);
  }
}
tracepoint:sock:sock_send_length /args->protocol == 6 && args->ret > 0/ {
  $sk = (uint64)args->sk;
  @sent[comm] = sum(args->ret);
  if (@role[$sk] == 0) { @role[$sk] = 2; }
  if (@role[$sk] == 2) {
    if (@since[$sk] == 0) { @since[$sk] = nsecs; }
  } else if (@since[$sk] != 0) {
    @server[comm] = hist(nsecs - @since[$sk]); delete(@since[$sk]);
  }
}
tracepoint:tcp:tcp_destroy_sock {
  delete(@role[(uint64)args->skaddr]); delete(@since[(uint64)args->skaddr]);
}";

/// Every run of one condition.
pub struct HttpSeries {
    pub condition: Condition,
    pub runs: Vec<WrkResult>,
    /// Under the agent: what it counted in each run (`None`: /metrics did not answer).
    pub saw: Vec<Option<AgentSaw>>,
    pub unavailable: Option<String>,
}

impl HttpSeries {
    pub fn new(condition: Condition) -> Self {
        Self {
            condition,
            runs: Vec::new(),
            saw: Vec::new(),
            unavailable: None,
        }
    }

    fn median_by(&self, field: impl Fn(&WrkResult) -> f64) -> Option<f64> {
        if self.unavailable.is_some() {
            return None;
        }
        median(&self.runs.iter().map(field).collect::<Vec<_>>())
    }

    fn rps(&self) -> Option<f64> {
        self.median_by(|run| run.requests_per_sec)
    }
}

/// What shaped the runs, for the report's text.
pub struct Setup {
    pub warmup_seconds: u64,
    pub wrk_command: String,
    pub nginx_version: String,
    pub wrk_version: String,
    pub placement: Placement,
}

pub struct HttpReport {
    pub environment: Environment,
    pub runs: u32,
    pub setup: Setup,
    pub series: Vec<HttpSeries>,
    /// The agent's programs' own run times during one more agent run, or why not measured.
    pub program_times: Result<Vec<ProgramTime>, String>,
}

fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

impl HttpReport {
    fn series(&self, condition: Condition) -> Option<&HttpSeries> {
        self.series.iter().find(|s| s.condition == condition)
    }

    /// (none − condition) / none of the median requests/s: the share of nginx's throughput
    /// the condition costs.
    pub fn loss(&self, condition: Condition) -> Result<f64, String> {
        let none = self
            .series(Condition::None)
            .and_then(HttpSeries::rps)
            .ok_or("no baseline")?;
        let series = self.series(condition);
        let value = series.and_then(HttpSeries::rps).ok_or_else(|| {
            match series.and_then(|s| s.unavailable.as_deref()) {
                Some(reason) => format!("{} unavailable: {reason}", condition.name()),
                None => format!("no {} measurement", condition.name()),
            }
        })?;
        Ok((none - value) / none)
    }

    /// Medians and losses: the figures the section is for.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| condition | requests/s | loss vs none | p50 latency | p99 latency |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for series in &self.series {
            let name = series.condition.name();
            let Some(rps) = series.rps() else {
                let _ = writeln!(out, "| {name} | n/a | n/a | n/a | n/a |");
                continue;
            };
            let loss = match (series.condition, self.loss(series.condition)) {
                (Condition::None, _) => "baseline".to_owned(),
                (Condition::Agent, Ok(loss)) => format!("**{}**", percent(loss)),
                (_, Ok(loss)) => percent(loss),
                (_, Err(_)) => "n/a".to_owned(),
            };
            let p50 = series.median_by(|run| run.p50_us).unwrap_or(f64::NAN);
            let p99 = series.median_by(|run| run.p99_us).unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "| {name} | {rps:.0} | {loss} | {p50:.0} µs | {p99:.0} µs |"
            );
        }
        out
    }

    pub fn goal(&self) -> String {
        let verdict = match self.loss(Condition::Agent) {
            Ok(loss) if loss <= GOAL => format!("met by this run: {}", percent(loss)),
            Ok(loss) => format!("missed by this run: {}", percent(loss)),
            Err(reason) => format!("not assessable in this run: {reason}"),
        };
        format!(
            "Goal: the agent costs nginx at most {} of its requests/s ({verdict}). This is a \
             measurement, not a test: nothing fails when it is missed.\n",
            percent(GOAL)
        )
    }

    /// Every run, so the spread behind each median can be judged.
    pub fn runs_table(&self) -> String {
        let mut out =
            String::from("| condition | requests/s | p50 (µs) | p99 (µs) |\n|---|---|---|---|\n");
        for series in &self.series {
            let name = series.condition.name();
            if let Some(reason) = &series.unavailable {
                let _ = writeln!(out, "| {name} | n/a: {} | | |", cell(reason));
                continue;
            }
            let list = |field: fn(&WrkResult) -> f64| {
                let values: Vec<f64> = series.runs.iter().map(field).collect();
                runs_list(&values, 0)
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} |",
                list(|run| run.requests_per_sec),
                list(|run| run.p50_us),
                list(|run| run.p99_us)
            );
        }
        out
    }

    /// Per agent run: the requests wrk completed against what the agent counted.
    pub fn coverage_table(&self) -> String {
        let Some(agent) = self.series(Condition::Agent) else {
            return String::new();
        };
        let mut out = String::from(
            "| agent run | requests wrk completed | nginx requests the agent counted | \
             wrk requests the agent counted | ring-buffer events lost |\n\
             |---:|---:|---:|---:|---:|\n",
        );
        for (index, (run, saw)) in agent.runs.iter().zip(&agent.saw).enumerate() {
            let counted = match saw {
                Some(saw) => format!("{:.0} | {:.0} | {:.0}", saw.server, saw.client, saw.lost),
                None => "n/a | n/a | n/a".to_owned(),
            };
            let _ = writeln!(out, "| {} | {} | {counted} |", index + 1, run.requests);
        }
        out
    }

    pub fn markdown(&self) -> String {
        let setup = &self.setup;
        let mut out = String::from("## HTTP overhead (nginx and wrk)\n\n");
        out.push_str(&self.environment.markdown());
        let _ = writeln!(
            out,
            "- nginx: {}; wrk: {}",
            setup.nginx_version, setup.wrk_version
        );
        let placement = match setup.placement {
            Placement {
                nginx: Some(nginx),
                wrk: Some(wrk),
            } => format!(
                "nginx (master and worker) is pinned to CPU {nginx} and wrk to CPU {wrk} \
                 (`taskset`), so the scheduler cannot put both on one CPU in some runs and \
                 not in others"
            ),
            _ => "with a single CPU nothing is pinned".to_owned(),
        };
        let _ = write!(
            out,
            "\nThe benchmark starts its own nginx: one worker process, `access_log off`, \
             `keepalive_requests {KEEPALIVE_REQUESTS}`, listening on a free loopback port, \
             answering `GET /ok` with a 3-byte body from its config (`return 200 \"ok\\n\"`). \
             {placement}. After an untimed warm-up of {} s of the same load, each run is\n\n\
             ```\n{}\n```\n\n\
             ({WRK_CONNECTIONS} keep-alive connections from one thread, each sending its next \
             request when the previous answer arrived) and reports wrk's Requests/sec and its \
             50th and 99th latency percentiles. Each condition was run {} times, interleaved \
             round by round (the agent and bpftrace are started afresh for each run); the \
             table shows medians. Loss is (none − condition) / none of the requests/s.\n\n",
            setup.warmup_seconds, setup.wrk_command, self.runs
        );
        out.push_str(&self.table());
        out.push('\n');
        out.push_str(&self.goal());
        out.push_str("\nConditions:\n\n- `none`: nothing attached.\n");
        out.push_str(
            "- `agent`: the release agent with its default settings: syscall hooks, TCP \
             probes, and HTTP payload capture with request parsing in user space \
             (`http_server_request_duration_seconds` for nginx, \
             `http_client_request_duration_seconds` for wrk).\n",
        );
        out.push_str(
            "- `bpftrace`: the closest bpftrace equivalent: per-syscall latency histograms (as \
             in the syscall section), bytes per command, and each request's time per socket \
             (server: first byte read to first byte written; client: the reverse) from the \
             same `sock_send_length`/`sock_recv_length` tracepoints the agent's payload \
             capture runs from. It does less per request than the agent: it copies no \
             payload and cannot tell method, status or route, so it is a cheaper job rather \
             than the same one:\n\n  ```\n",
        );
        for line in BPFTRACE_SCRIPT.lines() {
            let _ = writeln!(out, "  {line}");
        }
        out.push_str("  ```\n\n### All runs\n\n");
        out.push_str(&self.runs_table());
        out.push_str(
            "\n### What the agent counted\n\nRead from its `/metrics` a second after each \
             agent run, as evidence that it did the per-request work being measured. Each run \
             starts a fresh agent, so its counts are that run's; they may exceed wrk's count \
             by the requests still in flight when wrk stopped.\n\n",
        );
        out.push_str(&self.coverage_table());
        out.push_str(
            "\n### The probes' own run time\n\nDuring one more agent run, with the kernel's \
             BPF statistics on (`kernel.bpf_stats_enabled=1`, then `bpftool prog show`: \
             run_time_ns / run_cnt): `mon_sock_send`/`mon_sock_recv` run once per socket \
             write/read of nginx and wrk, and copy the payload of the HTTP ones; the syscall \
             hooks run on every system call of both, the scheduler hooks on every context \
             switch and wakeup.\n\n",
        );
        out.push_str(&super::prog_stats::markdown(&self.program_times));
        out.push_str(CAVEATS);
        out
    }
}

const CAVEATS: &str = "
### Reading the figures

Both CPUs of a two-CPU machine are busy in every run, one with nginx and one with wrk (and the
loopback softirq of whichever sends). Whatever the agent does in user space per request
(reading captured payload events, parsing the HTTP messages, updating histograms) therefore
takes CPU time from nginx or from wrk, and shows up in full as lost requests/s; on a machine
with idle CPUs it would run beside them. The in-kernel part (syscall hooks on every call of
both processes, and the payload copy on each socket read and write) slows nginx and wrk
directly on any machine. The request is the cheapest nginx can answer, so the agent's fixed
per-request cost is as large a share of it as it will ever be. These are measurements on a
shared virtual machine, not a test: nothing fails when a run lands elsewhere.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rps: f64, p50_us: f64, p99_us: f64) -> WrkResult {
        WrkResult {
            requests_per_sec: rps,
            requests: (rps * 10.0) as u64,
            p50_us,
            p99_us,
        }
    }

    fn report() -> HttpReport {
        let mut none = HttpSeries::new(Condition::None);
        none.runs = vec![
            run(60_000.0, 200.0, 400.0),
            run(62_000.0, 190.0, 390.0),
            run(50_000.0, 250.0, 900.0),
        ];
        let mut agent = HttpSeries::new(Condition::Agent);
        agent.runs = vec![run(58_800.0, 210.0, 420.0), run(57_000.0, 220.0, 430.0)];
        agent.saw = vec![
            Some(AgentSaw {
                server: 588_005.0,
                client: 588_003.0,
                lost: 0.0,
            }),
            None,
        ];
        let mut bpftrace = HttpSeries::new(Condition::Bpftrace);
        bpftrace.runs = vec![run(54_000.0, 230.0, 500.0)];
        HttpReport {
            environment: Environment {
                date: "Thu Nov 27 12:00:00 UTC 2025".into(),
                kernel: "6.18.0".into(),
                cpu: "Test CPU".into(),
                nproc: "2".into(),
                command: "cargo xtask bench --only http --runs 3 --http-seconds 10".into(),
            },
            runs: 3,
            program_times: Err("not measured in the unit tests".into()),
            setup: Setup {
                warmup_seconds: 5,
                wrk_command: "taskset -c 1 wrk -t1 -c16 -d10s --latency \
                              http://127.0.0.1:<port>/ok"
                    .into(),
                nginx_version: "nginx/1.22.1".into(),
                wrk_version: "wrk debian/4.1.0-3+b2 [epoll]".into(),
                placement: Placement::for_cpus(2),
            },
            series: vec![none, agent, bpftrace],
        }
    }

    #[test]
    fn loss_is_the_share_of_median_requests_per_second() {
        let report = report();
        // Medians: none 60000, agent 57900, bpftrace 54000.
        assert!((report.loss(Condition::Agent).unwrap() - 0.035).abs() < 1e-12);
        assert!((report.loss(Condition::Bpftrace).unwrap() - 0.1).abs() < 1e-12);
        assert!(report.goal().contains("missed by this run: 3.5%"));
        let table = report.table();
        assert!(table.contains("| none | 60000 | baseline | 200 µs | 400 µs |"));
        assert!(table.contains("| agent | 57900 | **3.5%** | 215 µs | 425 µs |"));
        assert!(table.contains("| bpftrace | 54000 | 10.0% | 230 µs | 500 µs |"));
    }

    #[test]
    fn a_loss_within_the_goal_is_met() {
        let mut report = report();
        report.series[1].runs = vec![run(59_000.0, 200.0, 400.0)];
        assert!(report.goal().contains("met by this run: 1.7%"));
    }

    #[test]
    fn unavailable_bpftrace_is_shown_not_fatal() {
        let mut report = report();
        report.series[2].runs.clear();
        report.series[2].unavailable = Some("no | tracefs".into());
        let markdown = report.markdown();
        assert!(markdown.contains("| bpftrace | n/a | n/a | n/a | n/a |"));
        assert!(markdown.contains("| bpftrace | n/a: no \\| tracefs | | |"));
        assert!(markdown.contains("**3.5%**"));
    }

    #[test]
    fn markdown_names_the_command_the_load_every_run_and_the_counts() {
        let markdown = report().markdown();
        assert!(markdown.starts_with("## HTTP overhead (nginx and wrk)\n\n- Date: "));
        assert!(
            markdown
                .contains("- Command: `cargo xtask bench --only http --runs 3 --http-seconds 10`")
        );
        assert!(markdown.contains(
            "```\ntaskset -c 1 wrk -t1 -c16 -d10s --latency http://127.0.0.1:<port>/ok\n```"
        ));
        assert!(markdown.contains("pinned to CPU 0 and wrk to CPU 1"));
        assert!(markdown.contains("- nginx: nginx/1.22.1; wrk: wrk debian/4.1.0-3+b2 [epoll]\n"));
        assert!(
            markdown.contains("| none | 60000, 62000, 50000 | 200, 190, 250 | 400, 390, 900 |")
        );
        assert!(markdown.contains("| 1 | 588000 | 588005 | 588003 | 0 |"));
        assert!(markdown.contains("| 2 | 570000 | n/a | n/a | n/a |"));
        assert!(markdown.contains("  tracepoint:tcp:tcp_destroy_sock {\n"));
    }
}
