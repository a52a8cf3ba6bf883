//! Network ground truth: `net-workload` servers and clients, each under a unique `comm`, make
//! a known number of connects, failures, bytes, retransmits and resets against listeners the
//! test starts itself (on loopback, or across a veth pair between two network namespaces the
//! test creates and firewalls). The real agent must report exactly that.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use tests::{Agent, NetnsPair, Scrape, Spawned, promtool_check, run_as, spawn_as, unique_comm};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_net-workload");
const CONNECT: &str = "monitor_tcp_connect_duration_seconds";
const CONNECT_ERRORS: &str = "monitor_tcp_connect_errors_total";
const OPENED: &str = "monitor_tcp_connections_opened_total";
const ACTIVE: &str = "monitor_tcp_connections_active";
const RETRANSMITS: &str = "monitor_tcp_retransmits_total";
const RESETS: &str = "monitor_tcp_resets_total";
const BYTES: &str = "monitor_network_bytes_total";
const LIFETIME: &str = "monitor_tcp_connection_duration_seconds";
const OVERFLOW: &str = "monitor_tcp_peer_overflow_total";
const RTT: &str = "monitor_tcp_rtt_seconds";
const PROBES: [&str; 7] = [
    "mon_tcp_state",
    "mon_tcp_destroy",
    "mon_tcp_retransmit",
    "mon_tcp_send_reset",
    "mon_tcp_recv_reset",
    "mon_sock_send",
    "mon_sock_recv",
];
/// Not a multiple of any buffer or segment size, so a partial count cannot pass by accident.
const TRANSFER_BYTES: u64 = 1_000_003;
/// How long the agent gets to report what a finished workload did.
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

/// Runs the workload to completion as `comm`; it fails (and so does the test) unless every
/// outcome was the one its arguments expect. Returns its stdout.
fn run(comm: &str, args: &[&str]) -> String {
    let (_, output) = run_as(comm, Path::new(WORKLOAD), &strings(args));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts a workload that has to run next to others (a server, a trickle) and returns once
/// it is listening or connected.
fn start(comm: &str, args: &[&str]) -> Spawned {
    spawn_as(comm, Path::new(WORKLOAD), &strings(args))
}

/// Scrapes until `settled` holds, then returns that scrape for the exact assertions. The
/// conditions wait for *at least* the expected counts; the assertions after them then
/// catch anything counted twice. On timeout the panic shows the series of `comms`.
fn scrape_when(
    agent: &Agent,
    what: &str,
    comms: &[&str],
    mut settled: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + REPORT_TIMEOUT;
    loop {
        let scrape = agent.scrape();
        if settled(&scrape) {
            return scrape;
        }
        if Instant::now() > deadline {
            let series: Vec<&str> = scrape
                .text
                .lines()
                .filter(|line| comms.iter().any(|c| line.contains(&format!("\"{c}\""))))
                .collect();
            panic!(
                "timed out after {REPORT_TIMEOUT:?} waiting for {what}; series of {comms:?}:\n{}\nagent log:\n{}",
                series.join("\n"),
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(name, labels).unwrap_or(0.0)
}

/// Gone or zero: a gauge that is back to 0 may be dropped or kept by the agent.
fn is_zero(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
    scrape.value(name, labels).is_none_or(|v| v == 0.0)
}

fn count(name: &str) -> String {
    format!("{name}_count")
}

/// Address families under test: the loopback address, the server end of the veth pair, and
/// the firewall for it.
#[derive(Clone, Copy)]
struct Family {
    tag: &'static str,
    loopback: &'static str,
    server: &'static str,
    v6: bool,
}

const V4: Family = Family {
    tag: "4",
    loopback: "127.0.0.1",
    server: NetnsPair::SERVER_V4,
    v6: false,
};
const V6: Family = Family {
    tag: "6",
    loopback: "::1",
    server: NetnsPair::SERVER_V6,
    v6: true,
};

impl Family {
    /// `ip:port` as the contract writes a peer, brackets for IPv6 (as `SocketAddr` prints).
    fn addr(self, ip: &str, port: u16) -> String {
        if self.v6 {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    }
}

#[test]
fn connect_successes_refusals_and_timeouts_are_counted_exactly_per_peer() {
    let agent = Agent::start(&[]);
    let pair = NetnsPair::create();
    for family in [V4, V6] {
        connect_outcomes(&agent, &pair, family);
    }
    let scrape = agent.scrape();
    for probe in PROBES {
        assert_eq!(
            scrape.value("monitor_probe_attached", &[("probe", probe)]),
            Some(1.0),
            "probe {probe}"
        );
    }
}

fn connect_outcomes(agent: &Agent, pair: &NetnsPair, family: Family) {
    const OK: u64 = 5;
    const REFUSED: u64 = 3;
    const TIMED_OUT: u64 = 4;
    // Distinct per family: both families' drop rules live in the same server namespace.
    let drop_port: u16 = if family.v6 { 7006 } else { 7004 };
    let client = unique_comm(&format!("nco{}c", family.tag));
    let server_comm = unique_comm(&format!("nco{}s", family.tag));

    let server = start(
        &server_comm,
        &[
            "serve",
            &family.addr(family.loopback, 0),
            "--accept",
            &OK.to_string(),
        ],
    );
    let port = server.port();
    let ok_peer = family.addr(family.loopback, port);
    run(
        &client,
        &[
            "connect",
            &ok_peer,
            "--count",
            &OK.to_string(),
            "--expect",
            "ok",
        ],
    );
    server.finish(Duration::from_secs(10));

    // Nothing listens in a namespace the test just made: every SYN to it is answered by RST.
    let refused_peer = family.addr(family.loopback, 9);
    run(
        &client,
        &[
            "--netns",
            &pair.client,
            "connect",
            &refused_peer,
            "--count",
            &REFUSED.to_string(),
            "--expect",
            "refused",
        ],
    );

    let drop_rule = [
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &drop_port.to_string(),
        "--syn",
        "-j",
        "DROP",
    ];
    pair.server_firewall(family.v6, &[&["-A"][..], &drop_rule].concat());
    let timeout_peer = family.addr(family.server, drop_port);
    let summary = run(
        &client,
        &[
            "--netns",
            &pair.client,
            "connect",
            &timeout_peer,
            "--count",
            &TIMED_OUT.to_string(),
            "--parallel",
            "--user-timeout-ms",
            "1000",
            "--expect",
            "timeout",
        ],
    );
    let elapsed_ms: u64 = summary
        .split_whitespace()
        .find_map(|word| word.strip_prefix("elapsed_ms="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed_ms in {summary:?}"));
    assert!(
        (900..3000).contains(&elapsed_ms),
        "{TIMED_OUT} parallel connects with a 1 s user timeout took {elapsed_ms} ms"
    );

    let port_s = port.to_string();
    let client_out = [
        ("comm", client.as_str()),
        ("direction", "outbound"),
        ("port", &port_s),
    ];
    let server_in = [
        ("comm", server_comm.as_str()),
        ("direction", "inbound"),
        ("port", &port_s),
    ];
    let ok_labels = [("comm", client.as_str()), ("peer", ok_peer.as_str())];
    let refused_labels = [
        ("comm", client.as_str()),
        ("peer", refused_peer.as_str()),
        ("reason", "refused"),
    ];
    let timeout_labels = [
        ("comm", client.as_str()),
        ("peer", timeout_peer.as_str()),
        ("reason", "timeout"),
    ];
    let scrape = scrape_when(
        agent,
        &format!("IPv{} connect outcomes", family.tag),
        &[&client, &server_comm],
        |s| {
            value(s, &count(CONNECT), &ok_labels) >= OK as f64
                && value(s, CONNECT_ERRORS, &refused_labels) >= REFUSED as f64
                && value(s, CONNECT_ERRORS, &timeout_labels) >= TIMED_OUT as f64
                && value(s, OPENED, &server_in) >= OK as f64
                && is_zero(s, ACTIVE, &client_out)
                && is_zero(s, ACTIVE, &server_in)
                && value(
                    s,
                    &count(LIFETIME),
                    &[("comm", &client), ("direction", "outbound")],
                ) >= OK as f64
                && value(
                    s,
                    &count(LIFETIME),
                    &[("comm", &server_comm), ("direction", "inbound")],
                ) >= OK as f64
        },
    );
    let client_only = [("comm", client.as_str())];

    // A connect duration only for connects that succeeded: failures are counted as errors.
    assert_eq!(scrape.value(&count(CONNECT), &ok_labels), Some(OK as f64));
    assert_eq!(
        scrape.sum(&count(CONNECT), &client_only),
        OK as f64,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(CONNECT_ERRORS, &refused_labels),
        Some(REFUSED as f64)
    );
    assert_eq!(
        scrape.value(CONNECT_ERRORS, &timeout_labels),
        Some(TIMED_OUT as f64)
    );
    assert_eq!(
        scrape.sum(CONNECT_ERRORS, &client_only),
        (REFUSED + TIMED_OUT) as f64,
        "no other failure reason or peer"
    );

    // Loopback handshakes: none faster than a microsecond, all within ~67 ms (2^26 ns,
    // the last log2 bound under 0.1 s) even on a busy machine.
    let buckets = scrape.buckets(CONNECT, &ok_labels);
    let at = |bound: f64| {
        buckets
            .iter()
            .rev()
            .find(|&&(le, _)| le <= bound)
            .map(|&(_, count)| count)
            .unwrap_or_else(|| panic!("no bucket at or under {bound} s: {buckets:?}"))
    };
    assert_eq!(at(1e-6), 0.0, "a handshake under 1 µs: {buckets:?}");
    assert_eq!(
        at(0.1),
        OK as f64,
        "a loopback handshake over 0.1 s: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, OK as f64));
    let sum = scrape.value(&format!("{CONNECT}_sum"), &ok_labels).unwrap();
    assert!(sum > 0.0 && sum < 0.1 * OK as f64, "sum {sum}");

    // Opened once per established connection, on both ends; the failures never opened.
    assert_eq!(scrape.value(OPENED, &client_out), Some(OK as f64));
    assert_eq!(scrape.value(OPENED, &server_in), Some(OK as f64));
    assert_eq!(
        scrape.sum(OPENED, &client_only),
        OK as f64,
        "failed connects opened nothing"
    );
    assert_eq!(
        scrape.value(
            &count(LIFETIME),
            &[("comm", &client), ("direction", "outbound")]
        ),
        Some(OK as f64)
    );

    // Each refusal is the kernel's RST for a port without a socket: received by the client,
    // sent by nobody's socket.
    assert_eq!(
        scrape.value(RESETS, &[("comm", &client), ("direction", "received")]),
        Some(REFUSED as f64)
    );
    assert!(is_zero(
        &scrape,
        RESETS,
        &[("comm", &client), ("direction", "sent")]
    ));
    let kernel_sent = value(
        &scrape,
        RESETS,
        &[("comm", "[kernel]"), ("direction", "sent")],
    );
    assert!(
        kernel_sent >= REFUSED as f64,
        "[kernel] resets sent: {kernel_sent}"
    );
}

#[test]
fn bytes_are_counted_exactly_on_both_ends_and_peeks_are_not() {
    let agent = bytes_are_exact(&[]);
    assert_socket_io_hook(&agent, "mon_sock_send", "sock_send_length");
    assert_framed_in_kernel(&agent, true);
}

/// Kernels before 6.3 have no `sock_*_length` tracepoints; their hook is forced here.
#[test]
fn bytes_are_exact_through_the_syscall_exit_hook_too() {
    let agent = bytes_are_exact(&["--probes.socket-io", "syscalls"]);
    assert_socket_io_hook(&agent, "mon_sock_io_exit", "sys_exit");
    assert_framed_in_kernel(&agent, true);
}

/// Where the kernel cannot frame requests (before 5.17), the copying programs run: the same
/// bytes through them.
#[test]
fn bytes_are_exact_through_the_copying_programs_too() {
    let agent = bytes_are_exact(&["--probes.request-framing", "user"]);
    assert_socket_io_hook(&agent, "mon_sock_send", "sock_send_length");
    assert_framed_in_kernel(&agent, false);
}

/// Where requests are framed, as the agent reports it: the probes run the framing programs
/// (global BPF functions, 5.6+), or the copying ones.
pub fn assert_framed_in_kernel(agent: &Agent, framed: bool) {
    assert_eq!(
        agent
            .scrape()
            .value("monitor_requests_framed_in_kernel", &[]),
        Some(f64::from(u8::from(framed)))
    );
}

/// Socket I/O was read through `program` on `tracepoint`, and every socket I/O hook shown
/// is attached.
pub fn assert_socket_io_hook(agent: &Agent, program: &str, tracepoint: &str) {
    let scrape = agent.scrape();
    let label = |sample: &tests::Sample, name: &str| sample.labels[name].clone();
    let hooks: Vec<(String, String, f64)> = scrape
        .matching("monitor_probe_attached", &[])
        .filter(|sample| label(sample, "probe").starts_with("mon_sock_"))
        .map(|sample| {
            (
                label(sample, "probe"),
                label(sample, "tracepoint"),
                sample.value,
            )
        })
        .collect();
    assert!(
        hooks.contains(&(program.to_owned(), tracepoint.to_owned(), 1.0)),
        "{hooks:?}"
    );
    assert!(
        hooks.iter().all(|(_, _, attached)| *attached == 1.0),
        "{hooks:?}"
    );
}

fn bytes_are_exact(agent_args: &[&str]) -> Agent {
    let agent = Agent::start(agent_args);
    let pair = NetnsPair::create();
    let x = TRANSFER_BYTES.to_string();
    for family in [V4, V6] {
        let client = unique_comm(&format!("nby{}c", family.tag));
        let server_comm = unique_comm(&format!("nby{}s", family.tag));
        // IPv4 on the host's loopback, IPv6 across the veth pair between the namespaces.
        let (client_ns, server_ns, ip) = if family.v6 {
            (
                vec!["--netns", pair.client.as_str()],
                vec!["--netns", pair.server.as_str()],
                family.server,
            )
        } else {
            (vec![], vec![], family.loopback)
        };
        // The server peeks before every read: the kernel hands out each byte twice.
        let listen = family.addr(ip, 0);
        let server_args = [
            &server_ns[..],
            &[
                "serve",
                &listen,
                "--recv-bytes",
                &x,
                "--peek",
                "--send-bytes",
                &x,
            ],
        ]
        .concat();
        let server = start(&server_comm, &server_args);
        let peer = family.addr(ip, server.port());
        let client_args = [
            &client_ns[..],
            &["connect", &peer, "--send-bytes", &x, "--recv-bytes", &x],
        ]
        .concat();
        run(&client, &client_args);
        let done = server.finish(Duration::from_secs(10));
        assert!(done.contains(&format!("received={x} sent={x}")), "{done}");

        let labels = |comm, direction| [("comm", comm), ("direction", direction)];
        let sides = [
            labels(client.as_str(), "sent"),
            labels(client.as_str(), "received"),
            labels(server_comm.as_str(), "sent"),
            labels(server_comm.as_str(), "received"),
        ];
        let scrape = scrape_when(
            &agent,
            &format!("IPv{} transfer bytes", family.tag),
            &[&client, &server_comm],
            |s| {
                sides
                    .iter()
                    .all(|side| value(s, BYTES, side) >= TRANSFER_BYTES as f64)
            },
        );
        for side in &sides {
            assert_eq!(
                scrape.value(BYTES, side),
                Some(TRANSFER_BYTES as f64),
                "IPv{} {side:?}",
                family.tag
            );
        }
    }
    agent
}

#[test]
fn retransmits_are_counted_for_a_lossy_connection_and_not_a_clean_one() {
    let agent = Agent::start(&[]);
    let pair = NetnsPair::create();
    let server_comm = unique_comm("nrtxs");
    // Two lossy trickles (one per family) and a clean one, all at once in the same window.
    let trickles = [
        (V4, 7100, true, unique_comm("nrtx4")),
        (V6, 7101, true, unique_comm("nrtx6")),
        (V4, 7102, false, unique_comm("nrtxc")),
    ];
    let mut servers = Vec::new();
    let mut running = Vec::new();
    for (family, port, _, comm) in &trickles {
        let addr = family.addr(family.server, *port);
        servers.push(start(
            &server_comm,
            &["--netns", &pair.server, "serve", &addr],
        ));
        running.push(start(
            comm,
            &["--netns", &pair.client, "trickle", &addr, "--ms", "2000"],
        ));
    }
    // Every packet towards the lossy servers is dropped for 300 ms while 1 KB goes out every
    // 10 ms: the client's retransmission timer has to resend.
    std::thread::sleep(Duration::from_millis(400));
    let rule = |family: Family, port: u16, op: &str| {
        let port = port.to_string();
        pair.server_firewall(
            family.v6,
            &[op, "INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"],
        );
    };
    for (family, port, lossy, _) in &trickles {
        if *lossy {
            rule(*family, *port, "-I");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for (family, port, lossy, _) in &trickles {
        if *lossy {
            rule(*family, *port, "-D");
        }
    }
    let sent: Vec<u64> = running
        .into_iter()
        .map(|trickle| {
            let out = trickle.finish(Duration::from_secs(20));
            out.trim()
                .strip_prefix("sent ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("trickle output {out:?}"))
        })
        .collect();
    for server in servers {
        server.finish(Duration::from_secs(10));
    }

    let comms: Vec<&str> = trickles.iter().map(|t| t.3.as_str()).collect();
    let scrape = scrape_when(
        &agent,
        "the trickles' retransmits and closes",
        &comms,
        |s| {
            trickles.iter().all(|(family, port, lossy, comm)| {
                let peer = family.addr(family.server, *port);
                let closed = value(
                    s,
                    &count(LIFETIME),
                    &[("comm", comm), ("direction", "outbound")],
                ) >= 1.0;
                closed
                    && (!lossy || value(s, RETRANSMITS, &[("comm", comm), ("peer", &peer)]) > 0.0)
            })
        },
    );
    for ((family, port, lossy, comm), sent) in trickles.iter().zip(sent) {
        let peer = family.addr(family.server, *port);
        let retransmits = scrape.sum(RETRANSMITS, &[("comm", comm)]);
        if *lossy {
            assert!(
                value(&scrape, RETRANSMITS, &[("comm", comm), ("peer", &peer)]) > 0.0,
                "{comm}"
            );
        } else {
            assert_eq!(
                retransmits, 0.0,
                "the clean connection of {comm} retransmitted"
            );
        }
        // What the application wrote, not what went on the wire: resent data is not counted.
        assert_eq!(
            scrape.value(BYTES, &[("comm", comm), ("direction", "sent")]),
            Some(sent as f64),
            "{comm}"
        );
    }
}

#[test]
fn an_abortive_close_counts_one_reset_sent_and_one_received() {
    let agent = Agent::start(&[]);
    // The server aborts (IPv4), then the client aborts (IPv6), each right after connecting.
    let server_aborts = (unique_comm("nrsas"), unique_comm("nrsac"));
    let server = start(&server_aborts.0, &["serve", "127.0.0.1:0", "--linger0"]);
    let peer = V4.addr("127.0.0.1", server.port());
    let port4 = server.port().to_string();
    run(&server_aborts.1, &["connect", &peer, "--expect-reset"]);
    server.finish(Duration::from_secs(10));

    let client_aborts = (unique_comm("nrcas"), unique_comm("nrcac"));
    // The one byte proves the server accepted before the client aborts.
    let server = start(
        &client_aborts.0,
        &["serve", "[::1]:0", "--send-bytes", "1", "--expect-reset"],
    );
    let peer = V6.addr("::1", server.port());
    let port6 = server.port().to_string();
    run(
        &client_aborts.1,
        &["connect", &peer, "--recv-bytes", "1", "--linger0"],
    );
    server.finish(Duration::from_secs(10));

    // (closer, peer, listening port)
    let cases = [
        (
            server_aborts.0.as_str(),
            server_aborts.1.as_str(),
            port4.as_str(),
        ),
        (
            client_aborts.1.as_str(),
            client_aborts.0.as_str(),
            port6.as_str(),
        ),
    ];
    let comms = [
        server_aborts.0.as_str(),
        server_aborts.1.as_str(),
        client_aborts.0.as_str(),
        client_aborts.1.as_str(),
    ];
    let scrape = scrape_when(&agent, "the resets", &comms, |s| {
        cases.iter().all(|(closer, peer, _)| {
            value(s, RESETS, &[("comm", closer), ("direction", "sent")]) >= 1.0
                && value(s, RESETS, &[("comm", peer), ("direction", "received")]) >= 1.0
        }) && comms.iter().all(|comm| {
            ["inbound", "outbound"]
                .iter()
                .all(|d| is_zero(s, ACTIVE, &[("comm", comm), ("direction", d)]))
        })
    });
    for (closer, peer, port) in cases {
        assert_eq!(
            scrape.value(RESETS, &[("comm", closer), ("direction", "sent")]),
            Some(1.0),
            "{closer} aborted once"
        );
        assert!(is_zero(
            &scrape,
            RESETS,
            &[("comm", closer), ("direction", "received")]
        ));
        assert_eq!(
            scrape.value(RESETS, &[("comm", peer), ("direction", "received")]),
            Some(1.0),
            "{peer} was reset once"
        );
        assert!(is_zero(
            &scrape,
            RESETS,
            &[("comm", peer), ("direction", "sent")]
        ));
        let opened = scrape.sum(OPENED, &[("comm", closer), ("port", port)])
            + scrape.sum(OPENED, &[("comm", peer), ("port", port)]);
        assert_eq!(opened, 2.0, "one connection, opened on both ends");
    }
}

#[test]
fn active_connections_follow_open_ones_and_return_to_zero() {
    const CONNECTIONS: u64 = 3;
    let agent = Agent::start(&[]);
    let client = unique_comm("nactc");
    let server_comm = unique_comm("nacts");
    // The server reads one connection to its end before accepting the next, so the others
    // wait established in the accept queue: active counts them from the handshake on.
    let server = start(
        &server_comm,
        &["serve", "127.0.0.1:0", "--accept", &CONNECTIONS.to_string()],
    );
    let port = server.port().to_string();
    let peer = V4.addr("127.0.0.1", server.port());
    let trickles: Vec<Spawned> = (0..CONNECTIONS)
        .map(|_| {
            start(
                &client,
                &["trickle", &peer, "--ms", "6000", "--every-ms", "100"],
            )
        })
        .collect();
    let client_out = [
        ("comm", client.as_str()),
        ("direction", "outbound"),
        ("port", &port),
    ];
    let server_in = [
        ("comm", server_comm.as_str()),
        ("direction", "inbound"),
        ("port", &port),
    ];
    let n = CONNECTIONS as f64;
    let scrape = scrape_when(
        &agent,
        "the open connections",
        &[&client, &server_comm],
        |s| value(s, ACTIVE, &client_out) >= n && value(s, ACTIVE, &server_in) >= n,
    );
    assert_eq!(scrape.value(ACTIVE, &client_out), Some(n));
    assert_eq!(scrape.value(ACTIVE, &server_in), Some(n));
    for trickle in trickles {
        trickle.finish(Duration::from_secs(20));
    }
    server.finish(Duration::from_secs(10));
    let scrape = scrape_when(
        &agent,
        "the closed connections",
        &[&client, &server_comm],
        |s| is_zero(s, ACTIVE, &client_out) && is_zero(s, ACTIVE, &server_in),
    );
    assert_eq!(scrape.value(OPENED, &client_out), Some(n));
    assert_eq!(scrape.value(OPENED, &server_in), Some(n));
    assert_eq!(
        scrape.value(
            &count(LIFETIME),
            &[("comm", &client), ("direction", "outbound")]
        ),
        Some(n)
    );
    // Each lived the trickle's 6 s, give or take; none was measured from a later event.
    let buckets = scrape.buckets(LIFETIME, &[("comm", &client), ("direction", "outbound")]);
    let under_a_second = buckets
        .iter()
        .rev()
        .find(|&&(le, _)| le <= 1.0)
        .map_or(0.0, |&(_, count)| count);
    assert_eq!(under_a_second, 0.0, "{buckets:?}");
}

/// A server listening before the agent starts never calls `listen()` in its sight: the
/// agent finds its socket in `/proc` at start-up, and its inbound connections are its own.
#[test]
fn a_listener_older_than_the_agent_gets_its_inbound_connections() {
    const CONNECTIONS: usize = 2;
    let client = unique_comm("nolc");
    let server_comm = unique_comm("nols");
    let server = start(
        &server_comm,
        &["serve", "127.0.0.1:0", "--accept", &CONNECTIONS.to_string()],
    );
    let agent = Agent::start(&[]);
    let port = server.port().to_string();
    let peer = V4.addr("127.0.0.1", server.port());
    run(
        &client,
        &[
            "connect",
            &peer,
            "--count",
            &CONNECTIONS.to_string(),
            "--expect",
            "ok",
        ],
    );
    server.finish(Duration::from_secs(10));
    let inbound = [
        ("comm", server_comm.as_str()),
        ("direction", "inbound"),
        ("port", &port),
    ];
    let n = CONNECTIONS as f64;
    let scrape = scrape_when(&agent, "the inbound connections", &[&server_comm], |s| {
        value(s, OPENED, &inbound) >= n
    });
    assert_eq!(scrape.value(OPENED, &inbound), Some(n));
}

#[test]
fn peers_beyond_the_cap_are_folded_into_other() {
    const CAP: usize = 3;
    const LISTENERS: usize = 5;
    let agent = Agent::start(&["--tcp.peers-per-comm", &CAP.to_string()]);
    let client = unique_comm("npcc");
    let server_comm = unique_comm("npcs");
    let servers: Vec<Spawned> = (0..LISTENERS)
        .map(|_| start(&server_comm, &["serve", "127.0.0.1:0"]))
        .collect();
    let peers: Vec<String> = servers
        .iter()
        .map(|server| V4.addr("127.0.0.1", server.port()))
        .collect();
    let ports: Vec<String> = servers.iter().map(|s| s.port().to_string()).collect();
    // One after another, so the first three peers the agent sees are the first three here.
    run(&client, &["connect", &peers.join(","), "--expect", "ok"]);
    for server in servers {
        server.finish(Duration::from_secs(10));
    }
    let labels = [("comm", client.as_str())];
    let scrape = scrape_when(&agent, "the capped peers", &[&client, &server_comm], |s| {
        s.sum(&count(CONNECT), &labels) >= LISTENERS as f64
    });
    let mut series: Vec<(String, f64)> = scrape
        .matching(&count(CONNECT), &labels)
        .map(|s| (s.labels["peer"].clone(), s.value))
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    // The first CAP values once each, the rest under "other", sorted as the scrape's are.
    let capped = |values: &[String]| {
        let mut expected: Vec<(String, f64)> = values[..CAP]
            .iter()
            .map(|value| (value.clone(), 1.0))
            .chain([("other".to_owned(), (LISTENERS - CAP) as f64)])
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        expected
    };
    let expected = capped(&peers);
    assert_eq!(series, expected);
    // The outbound connections' `port` label (the remote port) is capped the same way.
    let outbound = [("comm", client.as_str()), ("direction", "outbound")];
    let mut opened: Vec<(String, f64)> = scrape
        .matching(OPENED, &outbound)
        .map(|s| (s.labels["port"].clone(), s.value))
        .collect();
    opened.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(opened, capped(&ports), "{OPENED} per outbound port");

    // Each connection also leaves one RTT sample at its close (the handshake gave one), under
    // the same capped peer: the counts per peer equal the connects.
    let scrape = scrape_when(
        &agent,
        "an RTT per connection",
        &[&client, &server_comm],
        |s| s.sum(&count(RTT), &labels) >= LISTENERS as f64,
    );
    let mut rtts: Vec<(String, f64)> = scrape
        .matching(&count(RTT), &labels)
        .map(|s| (s.labels["peer"].clone(), s.value))
        .collect();
    rtts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(rtts, expected, "{RTT} per peer");
    // Loopback round trips: more than nothing, far less than a second each.
    let rtt_sum = scrape.sum(&format!("{RTT}_sum"), &labels);
    assert!(
        rtt_sum > 0.0 && rtt_sum < 0.1 * LISTENERS as f64,
        "{RTT}_sum {rtt_sum}"
    );
    // An overflowed connection is folded twice: its connect and its RTT sample.
    assert_eq!(
        value(&scrape, OVERFLOW, &labels),
        (2 * (LISTENERS - CAP)) as f64,
        "{OVERFLOW} for {client}"
    );
    // The servers saw one inbound peer (127.0.0.1): nothing of theirs overflowed.
    assert!(is_zero(&scrape, OVERFLOW, &[("comm", &server_comm)]));
}

#[test]
fn scrape_with_network_series_passes_promtool() {
    let agent = Agent::start(&[]);
    let client = unique_comm("nptc");
    let server_comm = unique_comm("npts");
    // IPv6 peers put brackets and colons in label values; every family gets a series.
    let transfer = start(
        &server_comm,
        &[
            "serve",
            "[::1]:0",
            "--recv-bytes",
            "10",
            "--send-bytes",
            "10",
        ],
    );
    let peer = V6.addr("::1", transfer.port());
    run(
        &client,
        &["connect", &peer, "--send-bytes", "10", "--recv-bytes", "10"],
    );
    transfer.finish(Duration::from_secs(10));
    let abort = start(
        &server_comm,
        &["serve", "[::1]:0", "--send-bytes", "1", "--expect-reset"],
    );
    let peer = V6.addr("::1", abort.port());
    run(
        &client,
        &["connect", &peer, "--recv-bytes", "1", "--linger0"],
    );
    abort.finish(Duration::from_secs(10));
    run(&client, &["connect", "[::1]:9", "--expect", "refused"]);
    let labels = [("comm", client.as_str())];
    let scrape = scrape_when(
        &agent,
        "the network series",
        &[&client, &server_comm],
        |s| {
            [
                &count(CONNECT),
                CONNECT_ERRORS,
                OPENED,
                RESETS,
                BYTES,
                &count(LIFETIME),
            ]
            .map(|family: &str| family.to_owned())
            .iter()
            .all(|family| s.matching(family, &labels).next().is_some())
        },
    );
    for (family, kind) in [
        (CONNECT, "histogram"),
        (CONNECT_ERRORS, "counter"),
        (OPENED, "counter"),
        (ACTIVE, "gauge"),
        (RESETS, "counter"),
        (BYTES, "counter"),
        (LIFETIME, "histogram"),
    ] {
        assert!(
            scrape.text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} is not a {kind}"
        );
    }
    if let Err(findings) = promtool_check(&scrape.text) {
        panic!("promtool: {findings}");
    }
}
