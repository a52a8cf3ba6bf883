//! The https suite: nginx serving HTTPS (a self-signed ECDSA P-256 certificate made for the
//! run) under `wrk` over https, placed as in the http suite, in interleaved rounds of
//! nothing, the agent as it ships (uprobes on OpenSSL's `SSL_read`/`SSL_write` and their
//! `_ex` forms, the plaintext framed in the kernel) and the agent without those uprobes
//! (`--probes.tls=false`): the two agents differ by the uprobes alone. Then one more agent
//! run with the kernel's BPF statistics on, for the uprobe programs' runs and time per
//! request.
use std::{fmt::Write as _, process::Command};

use anyhow::{Context as _, Result};

use super::{
    http::{self, KEEPALIVE_REQUESTS, Listener, Placement, Tool, WRK_CONNECTIONS},
    http_report::{self, NginxSection, SectionRuns},
    lab::Lab,
    report::{Condition, Environment, cell},
};
use crate::process::{find_program, output};

/// Nothing; the agent as it ships; the agent without its OpenSSL uprobes. Also the order
/// within each round.
const CONDITIONS: [Condition; 3] = [Condition::None, Condition::Agent, Condition::AgentNoTls];

/// The issue's target: at most this share of nginx's HTTPS requests/s lost to the agent.
const TARGET_LOSS: f64 = 0.05;

/// What the agent's OpenSSL uprobe programs are called start with. The kernel keeps 15
/// characters of a name (`mon_ssl_read_re`), bpftool shows it whole where there is BTF;
/// both start so.
const UPROBE_PREFIX: &str = "mon_ssl";

pub struct HttpsReport {
    pub measured: SectionRuns,
}

/// The https section's measurements; the openssl binary's version goes into the report.
pub fn suite(
    lab: &Lab,
    runs: u32,
    (seconds, warmup): (u64, u64),
    environment: Environment,
) -> Result<HttpsReport> {
    let openssl = find_program("openssl").context("openssl is not installed")?;
    let openssl_version = output(Command::new(openssl).arg("version"))
        .map_or_else(|_| "OpenSSL: unknown".to_owned(), |v| v.trim().to_owned());
    let mut measured = http_report::Section {
        lab,
        environment,
        runs,
        seconds,
        warmup,
        tool: Tool::Wrk,
        listener: Listener::Https,
        conditions: &CONDITIONS,
        saw: http::agent_saw_https,
        kind: "https ",
    }
    .measure()?;
    measured.versions.push(openssl_version);
    Ok(HttpsReport { measured })
}

impl HttpsReport {
    /// Per condition: median requests/s, loss against `none`, latency, the agent's CPU.
    pub fn table(&self) -> String {
        http_report::rate_table(&self.measured.series)
    }

    /// The target against this run's loss, and the uprobes' part of it.
    pub fn verdict(&self) -> String {
        http_report::verdict(
            &self.measured.series,
            ("HTTPS", TARGET_LOSS),
            Condition::AgentNoTls,
            ("the agent without its uprobes", "the uprobes account"),
        )
    }

    /// Per agent run: the requests wrk completed against the HTTPS requests the agent counted.
    pub fn coverage_table(&self) -> String {
        http_report::coverage_table(&self.measured.series, "https ", "wrk")
    }

    /// The uprobe programs' runs and time per request, or why not measured.
    pub fn uprobe_section(&self) -> String {
        let cost = match &self.measured.kernel {
            Ok(cost) => cost,
            Err(why) => return format!("Not measured in this run: {}.\n", cell(why)),
        };
        format!(
            "During one more run of `agent` ({} requests, {:.0} requests/s; the statistics \
             cost every program a little, so this run is not one of the medians above), with \
             the kernel's BPF statistics on (`kernel.bpf_stats_enabled=1`), `bpftool prog \
             show` was read just before and just after wrk, for every program the agent \
             holds. The `{UPROBE_PREFIX}*` ones:\n\n{}",
            cost.requests,
            cost.requests_per_sec,
            http_report::programs_table(cost, UPROBE_PREFIX)
        )
    }
}

impl NginxSection for HttpsReport {
    fn console(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.table(),
            self.verdict(),
            self.coverage_table(),
            self.uprobe_section()
        )
    }

    fn markdown(&self) -> String {
        let mut out = String::from("## HTTPS overhead (nginx and wrk over TLS)\n\n");
        out.push_str(&self.measured.environment.markdown());
        let _ = writeln!(out, "- Versions: {}", self.measured.versions.join("; "));
        let placement = match self.measured.placement {
            Placement {
                nginx: Some(nginx),
                wrk: Some(wrk),
            } => format!("nginx is pinned to CPU {nginx} and wrk to CPU {wrk} (`taskset`)"),
            _ => "with a single CPU nothing is pinned".to_owned(),
        };
        let _ = write!(
            out,
            "\nThe same nginx as in the HTTP section (one worker, `access_log off`, \
             `keepalive_requests {KEEPALIVE_REQUESTS}`, `GET /ok` answered from its config), \
             listening with `ssl` and a certificate made for the run (`openssl req -x509 \
             -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj \
             /CN=localhost`); {placement}. nginx and wrk both use the system's libssl, so the \
             agent's uprobes fire in both. After an untimed warm-up of {} s of the same load, \
             each run is\n\n```\n{}\n```\n\n({WRK_CONNECTIONS} keep-alive TLS connections from \
             one thread; a new handshake every {KEEPALIVE_REQUESTS} requests of a connection). \
             Each condition was run {} times, interleaved round by round (the agent is started \
             afresh for each run); the table shows medians. Loss is (none − condition) / none \
             of the requests/s; the agent's CPU is its process's user + system time during the \
             run over the run's wall time.\n\n",
            self.measured.warmup_seconds, self.measured.load_command, self.measured.runs
        );
        out.push_str(&self.table());
        out.push('\n');
        out.push_str(&self.verdict());
        out.push_str("\nConditions:\n\n");
        for condition in CONDITIONS {
            let what = match condition {
                Condition::Agent => {
                    "the release agent with its default settings, which put uprobes on \
                     OpenSSL's `SSL_read`, `SSL_write`, `SSL_read_ex` and `SSL_write_ex` in the \
                     libssl files processes map, and frame the plaintext HTTP they see in the \
                     kernel (`url_scheme=\"https\"`)."
                }
                _ => condition.description(),
            };
            let _ = writeln!(out, "- `{}`: {what}", condition.name());
        }
        out.push_str("\n### All runs\n\n");
        out.push_str(&http_report::rate_runs_table(&self.measured.series));
        out.push_str(
            "\n### What the agent counted\n\nThe HTTPS requests (`url_scheme=\"https\"`) in its \
             `/metrics` a second after each agent run, as evidence that the uprobes saw the \
             requests being measured. Each run starts a fresh agent, so its counts are that \
             run's; they may exceed wrk's count by the requests still in flight when wrk \
             stopped. Without its uprobes the agent sees only ciphertext, so `agent:no-tls` \
             should count none.\n\n",
        );
        out.push_str(&self.coverage_table());
        out.push_str(
            "\n### The uprobes' kernel time per request\n\n`mon_ssl_call` and \
             `mon_ssl_call_ex` run at each entry of `SSL_read`/`SSL_write` and of their `_ex` \
             forms, the `mon_ssl_*_ret*` programs at each return, in nginx and in wrk alike; \
             with the requests framed in the kernel the `_framed` returns are the ones \
             attached. The BPF statistics count the programs' own run time only: the uprobe's \
             breakpoint trap and the uretprobe's return trampoline are not in it, so the \
             throughput difference between `agent` and `agent:no-tls` above is the fuller \
             cost.\n\n",
        );
        out.push_str(&self.uprobe_section());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{
            http::WrkResult,
            http_report::fixtures::{cost, section, series},
        },
        *,
    };

    fn run(rps: f64) -> WrkResult {
        WrkResult {
            requests_per_sec: rps,
            requests: (rps * 5.0) as u64,
            p50_us: 500.0,
            p99_us: 1500.0,
        }
    }

    fn report() -> HttpsReport {
        let measured = section(
            "cargo xtask bench --only https --runs 3 --http-seconds 5",
            "taskset -c 1 wrk -t1 -c16 -d5s --latency https://127.0.0.1:<port>/ok",
            &[
                "nginx/1.22.1",
                "wrk debian/4.1.0-3+b2 [epoll]",
                "OpenSSL 3.0.17 1 Jul 2025",
            ],
            vec![
                series(Condition::None, &[20_000.0, 21_000.0, 19_000.0], 0.0, 0.0),
                // Median 19,000: 5.0% lost; 18,500: 7.5%.
                series(
                    Condition::Agent,
                    &[19_000.0, 18_500.0, 19_500.0],
                    0.04,
                    95_000.0,
                ),
                series(Condition::AgentNoTls, &[19_800.0], 0.01, 0.0),
            ],
            cost(&[
                ("mon_sys_enter", 8000, 400_000),
                ("mon_ssl_call", 2000, 200_000),
                ("mon_ssl_read_ret_framed", 1000, 300_000),
                ("mon_ssl_read_re", 0, 0),
            ]),
        );
        HttpsReport { measured }
    }

    #[test]
    fn table_shows_each_conditions_rate_loss_and_agent_cpu() {
        let table = report().table();
        assert!(table.contains("| none | 20000 | baseline | 500 µs | 1500 µs | – |\n"));
        assert!(table.contains("| agent | 19000 | **5.0%** | 500 µs | 1500 µs | 4.0% |\n"));
        assert!(table.contains("| agent:no-tls | 19800 | 1.0% | 500 µs | 1500 µs | 1.0% |\n"));
    }

    #[test]
    fn the_verdict_states_the_target_and_the_uprobes_share() {
        let verdict = report().verdict();
        assert!(
            verdict.contains("at most 5.0% of nginx's HTTPS requests/s lost to the agent; this run lost **5.0%**: met."),
            "{verdict}"
        );
        assert!(
            verdict.contains("(`agent:no-tls`) loses 1.0%; the uprobes account for the other 4.0%")
        );
        // 1/19000 − 1/19800 s.
        assert!(verdict.contains("2.1 µs more per request"), "{verdict}");
        let mut report = report();
        report.measured.series[1].runs = vec![run(18_000.0)];
        assert!(
            report
                .verdict()
                .contains("this run lost **10.0%**: missed.")
        );
        report.measured.series[1].runs.clear();
        report.measured.series[1].unavailable = Some("no | agent".into());
        let verdict = report.verdict();
        assert!(verdict.contains("not assessable in this run: agent unavailable: no \\| agent."));
        assert!(!verdict.contains("uprobes account"));
    }

    #[test]
    fn the_uprobe_table_has_the_mon_ssl_programs_only_and_their_total() {
        let section = report().uprobe_section();
        assert!(section.contains("| `mon_ssl_call` | 2000 | 2.00 | 100 | 200.0 |\n"));
        assert!(section.contains("| `mon_ssl_read_ret_framed` | 1000 | 1.00 | 300 | 300.0 |\n"));
        assert!(section.contains("| `mon_ssl_read_re` | 0 | 0.00 | – | 0.0 |\n"));
        assert!(section.contains("| all `mon_ssl*` | 3000 | 3.00 | 167 | **500.0** |\n"));
        assert!(!section.contains("| `mon_sys_enter`"));
        assert!(section.contains("ran 11.0 times and 900 ns per request"));
        let mut report = report();
        report.measured.kernel = Err("bpftool | missing".into());
        assert_eq!(
            report.uprobe_section(),
            "Not measured in this run: bpftool \\| missing.\n"
        );
    }

    #[test]
    fn markdown_names_the_command_the_load_and_what_the_agent_counted() {
        let markdown = report().markdown();
        assert!(markdown.starts_with("## HTTPS overhead (nginx and wrk over TLS)\n\n- Date: "));
        assert!(
            markdown
                .contains("- Command: `cargo xtask bench --only https --runs 3 --http-seconds 5`")
        );
        assert!(markdown.contains(
            "```\ntaskset -c 1 wrk -t1 -c16 -d5s --latency https://127.0.0.1:<port>/ok\n```"
        ));
        assert!(markdown.contains("nginx is pinned to CPU 0 and wrk to CPU 1"));
        assert!(markdown.contains("| agent | 1 | 95000 | 95000 | 95000 | 0 |\n"));
        assert!(markdown.contains("| agent:no-tls | 1 | 99000 | 0 | 0 | 0 |\n"));
        assert!(markdown.contains("| agent | 19000, 18500, 19500 | 4.0, 4.0, 4.0 |\n"));
        assert!(markdown.contains("| none | 20000, 21000, 19000 | – |\n"));
        assert!(markdown.contains("- `agent:no-tls`: the release agent without its OpenSSL"));
    }
}
