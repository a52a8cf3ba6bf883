//! The http2 suite: nginx serving HTTP/2 in cleartext (`listen … http2`, prior knowledge)
//! under `h2load`, placed as in the http suite, in interleaved rounds of nothing, the agent
//! as it ships (each read and write of an HTTP/2 connection copied to `HTTP2_EVENTS` and
//! framed in the agent: frames, HPACK, streams) and the agent ignoring HTTP/2
//! (`--probes.http2=false`): the two agents differ by following HTTP/2 alone. Then one more
//! agent run with the kernel's BPF statistics on, for the socket programs' runs and time per
//! request.
use std::fmt::Write as _;

use anyhow::Result;

use super::{
    http::{self, H2_KEEPALIVE_REQUESTS, Listener, Placement, Tool, WRK_CONNECTIONS},
    http_report::{self, NginxSection, SectionRuns},
    lab::Lab,
    report::{Condition, Environment, cell},
};

/// Nothing; the agent as it ships; the agent ignoring HTTP/2. Also the order within each
/// round.
const CONDITIONS: [Condition; 3] = [Condition::None, Condition::Agent, Condition::AgentNoHttp2];

/// The same target as for HTTP/1.x and HTTPS.
const TARGET_LOSS: f64 = 0.05;

/// The programs that judge and copy a socket's reads and writes start so.
const SOCKET_PREFIX: &str = "mon_sock";

pub struct Http2Report {
    pub measured: SectionRuns,
}

pub fn suite(
    lab: &Lab,
    runs: u32,
    (seconds, warmup): (u64, u64),
    environment: Environment,
) -> Result<Http2Report> {
    let measured = http_report::Section {
        lab,
        environment,
        runs,
        seconds,
        warmup,
        tool: Tool::H2load,
        listener: Listener::H2c,
        conditions: &CONDITIONS,
        saw: http::agent_saw_http2,
        kind: "HTTP/2 ",
    }
    .measure()?;
    Ok(Http2Report { measured })
}

impl Http2Report {
    /// Per condition: median requests/s, loss against `none`, latency, the agent's CPU.
    pub fn table(&self) -> String {
        http_report::rate_table(&self.measured.series)
    }

    /// The target against this run's loss, and the HTTP/2 copies' part of it.
    pub fn verdict(&self) -> String {
        http_report::verdict(
            &self.measured.series,
            ("HTTP/2", TARGET_LOSS),
            Condition::AgentNoHttp2,
            (
                "the agent ignoring HTTP/2",
                "following HTTP/2 (the copies, and their framing in the agent) accounts",
            ),
        )
    }

    /// Per agent run: the requests h2load completed against the HTTP/2 requests the agent
    /// counted.
    pub fn coverage_table(&self) -> String {
        http_report::coverage_table(&self.measured.series, "HTTP/2 ", "h2load")
    }

    /// The socket programs' runs and time per request, or why not measured.
    pub fn programs_section(&self) -> String {
        match &self.measured.kernel {
            Ok(cost) => format!(
                "During one more run of `agent` ({} requests, {:.0} requests/s; the \
                 statistics cost every program a little, so this run is not one of the \
                 medians above), with the kernel's BPF statistics on \
                 (`kernel.bpf_stats_enabled=1`), `bpftool prog show` was read just before and \
                 just after h2load, for every program the agent holds. The `{SOCKET_PREFIX}*` \
                 ones:\n\n{}",
                cost.requests,
                cost.requests_per_sec,
                http_report::programs_table(cost, SOCKET_PREFIX)
            ),
            Err(why) => format!("Not measured in this run: {}.\n", cell(why)),
        }
    }
}

impl NginxSection for Http2Report {
    fn console(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.table(),
            self.verdict(),
            self.coverage_table(),
            self.programs_section()
        )
    }

    fn markdown(&self) -> String {
        let mut out = String::from("## HTTP/2 overhead (nginx and h2load, cleartext)\n\n");
        out.push_str(&self.measured.environment.markdown());
        let _ = writeln!(out, "- Versions: {}", self.measured.versions.join("; "));
        let placement = match self.measured.placement {
            Placement {
                nginx: Some(nginx),
                wrk: Some(load),
            } => format!("nginx is pinned to CPU {nginx} and h2load to CPU {load} (`taskset`)"),
            _ => "with a single CPU nothing is pinned".to_owned(),
        };
        let _ = write!(
            out,
            "\nThe same nginx as in the HTTP section (one worker, `access_log off`, `GET /ok` \
             answered from its config), listening with `http2` in cleartext (prior \
             knowledge), with `keepalive_requests {H2_KEEPALIVE_REQUESTS}`: h2load does not \
             reconnect when nginx ends a connection, so its connections last the run; \
             {placement}. After an untimed warm-up of {} s of the same load, each run \
             is\n\n```\n{}\n```\n\n({WRK_CONNECTIONS} connections from one thread, one \
             request at a time on each, as wrk's in the HTTP section; each request's time to \
             its response's end in h2load's log, for the percentiles). Each condition was run {} times, interleaved round by \
             round (the agent is started afresh for each run); the table shows medians. Loss \
             is (none − condition) / none of the requests/s; the agent's CPU is its process's \
             user + system time during the run over the run's wall time.\n\n",
            self.measured.warmup_seconds, self.measured.load_command, self.measured.runs
        );
        out.push_str(&self.table());
        out.push('\n');
        out.push_str(&self.verdict());
        out.push_str("\nConditions:\n\n");
        for condition in CONDITIONS {
            let what = match condition {
                Condition::Agent => {
                    "the release agent with its default settings: each read and write of a \
                     connection that began with HTTP/2's preface is copied (up to 4 KiB) to \
                     `HTTP2_EVENTS`, and the agent follows its frames, header tables and \
                     streams (`network_protocol_version=\"2\"`)."
                }
                _ => condition.description(),
            };
            let _ = writeln!(out, "- `{}`: {what}", condition.name());
        }
        out.push_str("\n### All runs\n\n");
        out.push_str(&http_report::rate_runs_table(&self.measured.series));
        out.push_str(
            "\n### What the agent counted\n\nThe HTTP/2 requests \
             (`network_protocol_version=\"2\"`) in its `/metrics` a second after each agent \
             run, as evidence that it followed the connections being measured. Each run \
             starts a fresh agent, so its counts are that run's; they may exceed h2load's \
             count by the requests still in flight when it stopped. `agent:no-http2` should \
             count none.\n\n",
        );
        out.push_str(&self.coverage_table());
        out.push_str(
            "\n### The socket programs' kernel time per request\n\n`mon_sock_send_framed` and \
             `mon_sock_recv_framed` run at each socket write and read of nginx and h2load; on \
             an HTTP/2 connection each copies the bytes to `HTTP2_EVENTS` (`mon_copy`, a \
             global function whose time is counted in its caller's).\n\n",
        );
        out.push_str(&self.programs_section());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::http_report::fixtures::{cost, section, series},
        *,
    };

    fn report() -> Http2Report {
        let measured = section(
            "cargo xtask bench --only http2 --runs 3 --http-seconds 5",
            "taskset -c 1 h2load -t1 -c16 -m1 -D5 --log-file=<file> http://127.0.0.1:<port>/ok",
            &["nginx/1.22.1", "h2load nghttp2/1.52.0"],
            vec![
                series(Condition::None, &[40_000.0, 42_000.0, 38_000.0], 0.0, 0.0),
                series(
                    Condition::Agent,
                    &[30_000.0, 29_000.0, 31_000.0],
                    0.05,
                    150_000.0,
                ),
                series(Condition::AgentNoHttp2, &[36_000.0], 0.0, 0.0),
            ],
            cost(&[
                ("mon_sys_enter", 8000, 400_000),
                ("mon_sock_send_framed", 2000, 3_000_000),
                ("mon_sock_recv_framed", 2000, 2_000_000),
            ]),
        );
        Http2Report { measured }
    }

    #[test]
    fn the_verdict_states_the_target_and_what_following_http2_costs() {
        let verdict = report().verdict();
        assert!(
            verdict
                .contains("HTTP/2 requests/s lost to the agent; this run lost **25.0%**: missed."),
            "{verdict}"
        );
        assert!(
            verdict.contains("(`agent:no-http2`) loses 10.0%; following HTTP/2"),
            "{verdict}"
        );
        assert!(
            verdict.contains("the other 15.0% of `none`'s requests/s"),
            "{verdict}"
        );
        // 1/30000 − 1/36000 s.
        assert!(verdict.contains("5.6 µs more per request"), "{verdict}");
    }

    #[test]
    fn markdown_names_the_load_the_counts_and_the_socket_programs() {
        let markdown = report().markdown();
        assert!(markdown.starts_with("## HTTP/2 overhead (nginx and h2load, cleartext)\n\n"));
        assert!(markdown.contains("nginx is pinned to CPU 0 and h2load to CPU 1"));
        assert!(markdown.contains("| agent | 30000 | **25.0%** | 500 µs | 1500 µs | 5.0% |\n"));
        assert!(markdown.contains(
            "| condition | run | requests h2load completed | nginx HTTP/2 requests the agent \
             counted | h2load HTTP/2 requests the agent counted |"
        ));
        assert!(markdown.contains("| agent | 1 | 150000 | 150000 | 150000 | 0 |\n"));
        assert!(markdown.contains("| `mon_sock_send_framed` | 2000 | 2.00 | 1500 | 3000.0 |\n"));
        assert!(markdown.contains("| all `mon_sock*` | 4000 | 4.00 | 1250 | **5000.0** |\n"));
        assert!(!markdown.contains("| `mon_sys_enter`"));
        assert!(markdown.contains("- `agent:no-http2`: the release agent ignoring HTTP/2"));
    }
}
