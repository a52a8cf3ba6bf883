//! The smoke test itself, one implementation for every kernel: run inside each virtual
//! machine as the hidden `kernels-guest` subcommand of the already-built xtask binary (the
//! guest shares the host's root, so the same paths work there and nothing is built), and
//! in-process on the host.
//!
//! It starts the agent, drives workloads whose outcome is known exactly, each under a
//! `comm` of its own (a symlink named after it, so nothing else on the machine adds to its
//! series), waits until the counts settle, and writes what it saw to the output folder:
//! `result.yaml` (read by the host), `metrics.txt`, `healthz.txt` and `agent.log`.
use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc::RecvTimeoutError,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use super::outcome::{
    Expectation, REFUSED_PROBES, RESULT_FILE, RefusalLog, SmokeResult, is_verifier_instruction,
    parse_samples, probe_attachments,
};
use crate::{
    agent_http::{free_port, get},
    process::{Supervised, as_nobody, display, log_tail, postgres_bin, watch_lines},
};

/// gt-workload's arguments: failing openat(2)s, close(-1)s, nanosleeps of SLEEP_MS.
const OPENAT_ENOENT: u64 = 37;
const CLOSE_EBADF: u64 = 23;
const NANOSLEEPS: u64 = 5;
const SLEEP_MS: u64 = 20;
/// net-workload: connects accepted by a listener (each sending TCP_BYTES), and connects to
/// a port nobody listens on.
const TCP_OK: u64 = 5;
const TCP_REFUSED: u64 = 3;
const TCP_BYTES: u64 = 1000;
/// Requests over one keep-alive connection: answered 200 on /ok, 404 on /missing.
const HTTP_OK: u64 = 7;
const HTTP_MISSING: u64 = 3;
/// gRPC calls answered OK and NOT_FOUND (HTTP/2, gRPC's C core on both ends).
const GRPC_OK: u64 = 5;
const GRPC_NOT_FOUND: u64 = 2;
/// curl's connections to an HTTP/2 server reached by the `h2c` upgrade (hyper-h2): the
/// upgrade request (HTTP/1.1, its `101`), then H2C_OK requests answered 200 and H2C_MISSING
/// answered 404 over HTTP/2, on each. The server writes its `101` alone on the first and
/// with its SETTINGS on the second: both ways the probes find HTTP/2's start.
const H2C_CONNECTIONS: u64 = 2;
const H2C_OK: u64 = 3;
const H2C_MISSING: u64 = 2;
/// DNS lookups to a server on port 53 of DNS_SERVER: A questions answered (connected UDP),
/// A questions for names that do not exist (connected UDP), AAAA questions sent with
/// `sendto` on an unconnected socket, MX questions over TCP, and SRV questions by dig
/// (which sends each with `sendmmsg`, seen at the syscall's exit).
const DNS_SERVER: &str = "127.0.0.153";
const DNS_OK: u64 = 6;
const DNS_NX: u64 = 4;
const DNS_UNCONNECTED: u64 = 3;
const DNS_TCP: u64 = 2;
const DNS_DIG: u64 = 2;
/// Redis commands a client sends to redis-server over one connection: SETs, GETs, GETs of
/// a list (WRONGTYPE errors), then a pipeline of PIPELINED SETs in one write.
const REDIS_SET: u64 = 5;
const REDIS_GET: u64 = 4;
const REDIS_WRONGTYPE: u64 = 3;
const REDIS_PIPELINED: u64 = 100;
/// PostgreSQL (a cluster made by initdb in the work folder, served as nobody): psql's
/// simple queries, failing ones (42P01, no such table) first, after an SSLRequest the
/// server refuses; then pgbench's prepared statements (Parse once, then Bind, Execute,
/// Sync per transaction).
const PG_MISSING: u64 = 3;
const PG_SELECTS: u64 = 4;
const PG_PREPARED: u64 = 5;
/// Two spinners sharing one CPU for SPIN_SECONDS: each runs about half the time and waits
/// the other half. The agent's CPU time must match their own clocks to 5 % (charged at each
/// switch, nothing sampled), their run-queue wait to 10 % of the kernel's own figure for
/// them (schedstat's run_delay, which like the agent counts the waits of their exec; where
/// the kernel keeps none, what of their lives they did not run: an emulated exec is slow,
/// and its waits, outside their clocks, put the agent 14 % above that on 5.10 and 6.1).
const SPINNERS: usize = 2;
const SPIN_SECONDS: f64 = 3.0;
const CPU_TOLERANCE: f64 = 0.05;
const WAIT_TOLERANCE: f64 = 0.10;
/// One shell runs CHURN_PROGRAMS short gt-workloads, each under a name of its own, each
/// failing CHURN_OPENAT openat(2)s: past NAMES_PER_PARENT names per parent (the agent's
/// `--processes.names-per-parent`), they are counted as comm="[short-lived]". The parent
/// comes from the exec probe (`real_parent`, at offsets from BTF): exact on every kernel.
/// Set above the default 16: the workloads' own parent (this process) runs more programs
/// than that (about 30, PostgreSQL's initdb, server and clients among them), and each must
/// keep its name.
const NAMES_PER_PARENT: u64 = 40;
pub(super) const CHURN_PROGRAMS: u64 = NAMES_PER_PARENT + 4;
const CHURN_KEPT: u64 = NAMES_PER_PARENT;
const CHURN_OPENAT: u64 = 3;
/// A hog allocating HOG_MIB in a memory cgroup limited to LIMIT_MIB: one OOM kill.
const HOG_MIB: u64 = 200;
const LIMIT_MIB: u64 = 32;

/// An emulated guest loads and verifies the probes slowly: minutes are not unusual on 5.10.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// The PostgreSQL workload, the slowest (initdb), took 63 s emulated on 5.10.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// The agent folds exited processes at every sweep (1 s here) and the guest is slow: the
/// counts may take a few seconds after the workloads end.
pub(super) const DEFAULT_SETTLE_SECONDS: u64 = 30;
const SWEEP_INTERVAL: &str = "1s";
/// The last scrape comes this long after the counts first matched: several sweeps.
const CONFIRM_AFTER: Duration = Duration::from_secs(3);
const AGENT_STOP_GRACE: Duration = Duration::from_secs(20);

/// http.client over one keep-alive connection: `client.py PORT OK MISSING` makes OK GETs
/// of /ok, then MISSING of /missing, and fails unless each got the status it should.
const HTTP_CLIENT: &str = r#"
import http.client, ssl, sys
port, ok, missing = (int(arg) for arg in sys.argv[1:4])
plan = [("/ok", 200)] * ok + [("/missing", 404)] * missing
if sys.argv[4:] == ["https"]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=context)
else:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
wrong = []
for path, status in plan:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    if response.status != status:
        wrong.append((path, status, response.status))
connection.close()
if wrong:
    sys.exit(f"unexpected statuses (path, wanted, got): {wrong}")
"#;

#[derive(clap::Args, Debug, Clone)]
pub struct GuestOptions {
    /// Folder for result.yaml, metrics.txt, healthz.txt and agent.log (created; old results
    /// in it are removed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The agent binary.
    #[arg(long, value_name = "PATH")]
    pub agent: PathBuf,

    /// Folder holding the `tests` crate's gt-workload and net-workload.
    #[arg(long, value_name = "DIR")]
    pub bins: PathBuf,

    /// A Python with `grpcio` and `h2`.and `h2` (`cargo xtask setup` installs them) for the gRPC and
    /// `h2c` workloads.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// How long to wait for the counts to match after the workloads.
    #[arg(long, default_value_t = DEFAULT_SETTLE_SECONDS, value_name = "SECONDS")]
    pub settle_seconds: u64,
}

/// The DNS client: `client.py SERVER OK NX UNCONNECTED TCP`, with the answers' RCODEs
/// checked.
const DNS_CLIENT: &str = r#"
import socket, struct, sys
server = sys.argv[1]
ok, nx, loose_count, tcp = (int(arg) for arg in sys.argv[2:6])
ids = iter(range(1, 60000))
def query(name, qtype):
    out = struct.pack(">HHHHHH", next(ids), 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00" + struct.pack(">HH", qtype, 1)
def check(answer, rcode):
    if answer[3] & 0xf != rcode:
        sys.exit(f"RCODE {answer[3] & 0xf}, wanted {rcode}")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(30)
udp.connect((server, 53))
for i in range(ok):
    udp.send(query(f"h{i}.ok.test", 1)); check(udp.recv(512), 0)
for i in range(nx):
    udp.send(query(f"h{i}.nx.test", 1)); check(udp.recv(512), 3)
loose = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
loose.settimeout(30)
for i in range(loose_count):
    loose.sendto(query(f"l{i}.ok.test", 28), (server, 53)); check(loose.recvfrom(512)[0], 0)
for i in range(tcp):
    stream = socket.create_connection((server, 53), timeout=30)
    message = query(f"t{i}.ok.test", 15)
    stream.sendall(struct.pack(">H", len(message)) + message)
    check(stream.recv(512)[2:], 0)
    stream.close()
"#;

/// The Redis client: `client.py PORT SET GET WRONGTYPE PIPELINED`, with every reply
/// checked. The LPUSH that makes the list is one more command.
const REDIS_CLIENT: &str = r#"
import socket, sys
port, sets, gets, wrong, pipelined = (int(arg) for arg in sys.argv[1:6])
connection = socket.create_connection(("127.0.0.1", port), timeout=30)
def command(*words):
    out = b"*%d\r\n" % len(words)
    for word in words:
        out += b"$%d\r\n%s\r\n" % (len(word), word)
    return out
def replies(count):
    data = b""
    while data.count(b"\r\n") < count:
        more = connection.recv(65536)
        if not more:
            sys.exit("redis-server closed the connection")
        data += more
    return data
for i in range(sets):
    connection.sendall(command(b"SET", b"k%d" % i, b"v")); assert replies(1) == b"+OK\r\n"
for i in range(gets):
    connection.sendall(command(b"GET", b"k%d" % i)); assert replies(2) == b"$1\r\nv\r\n"
connection.sendall(command(b"LPUSH", b"list", b"x")); replies(1)
for i in range(wrong):
    connection.sendall(command(b"GET", b"list")); assert replies(1).startswith(b"-WRONGTYPE")
connection.sendall(b"".join(command(b"SET", b"p%d" % i, b"v") for i in range(pipelined)))
assert replies(pipelined) == b"+OK\r\n" * pipelined
"#;

/// `python -c GRPC_SERVER`: a gRPC server of `/shop.Cart/Add`, the one the tests run.
const GRPC_SERVER: &str = include_str!("../../../tests/scripts/grpc_server.py");

/// `python -c GRPC_CLIENT PORT OK NOT_FOUND`: the calls over one channel, each status
/// checked.
const GRPC_CLIENT: &str = r#"
import grpc, sys
port, ok, missing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with grpc.insecure_channel("127.0.0.1:" + port) as channel:
    add = channel.unary_unary("/shop.Cart/Add")
    for _ in range(ok):
        add(b"cart", timeout=30)
    for _ in range(missing):
        try:
            add(b"missing", timeout=30)
            raise SystemExit("NOT_FOUND expected")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
"#;

/// `python -c H2C_SERVER CONNECTIONS`: the tests' `h2c` upgrade server.
const H2C_SERVER: &str = include_str!("../../../tests/scripts/h2c_server.py");

/// The unique process names of one run: a prefix plus this process's PID (at most 15 bytes,
/// the kernel's limit).
struct Comms {
    syscalls: String,
    tcp_client: String,
    tcp_server: String,
    http_server: String,
    http_client: String,
    https_server: String,
    https_client: String,
    spin: String,
    hog: String,
    dns_server: String,
    dns_client: String,
    dig: String,
    redis_server: String,
    redis_client: String,
    pg_server: String,
    psql: String,
    pgbench: String,
    grpc_server: String,
    grpc_client: String,
    h2c_server: String,
    h2c_client: String,
    /// The churn loop's programs are `{churn}-1` … `{churn}-CHURN_PROGRAMS`.
    churn: String,
}

impl Comms {
    fn new(id: u32) -> Self {
        let comm = |prefix: &str| format!("{prefix}{id}");
        Self {
            syscalls: comm("kgsys"),
            tcp_client: comm("kgtcpc"),
            tcp_server: comm("kgtcps"),
            http_server: comm("kghsrv"),
            http_client: comm("kghcli"),
            https_server: comm("kgtlss"),
            https_client: comm("kgtlsc"),
            spin: comm("kgspin"),
            hog: comm("kghog"),
            dns_server: comm("kgdnss"),
            dns_client: comm("kgdnsc"),
            dig: comm("kgdig"),
            redis_server: comm("kgrds"),
            redis_client: comm("kgrdc"),
            pg_server: comm("kgpgs"),
            psql: comm("kgpsql"),
            pgbench: comm("kgpgb"),
            grpc_server: comm("kggrps"),
            grpc_client: comm("kggrpc"),
            h2c_server: comm("kgh2cs"),
            h2c_client: comm("kgh2cc"),
            churn: comm("kgch"),
        }
    }
}

/// What the workloads told: the ports they used (part of the series' labels) and the
/// spinners' own CPU and waiting seconds.
#[derive(Default)]
struct Facts {
    tcp: u16,
    refused: u16,
    http: u16,
    https: u16,
    redis: u16,
    postgres: u16,
    /// The gRPC server's port, once its calls were made (0: the workload did not run).
    grpc: u16,
    /// The `h2c` server's port, likewise.
    h2c: u16,
    spin_cpu_seconds: f64,
    spin_wait_seconds: f64,
}

/// What the agent must report for the workloads: counts exactly, times within tolerance.
fn expectations(comms: &Comms, facts: &Facts) -> Vec<Expectation> {
    const ERRORS: &str = "monitor_syscall_errors_total";
    const OPENED: &str = "monitor_tcp_connections_opened_total";
    const BYTES: &str = "monitor_network_bytes_total";
    const SERVER: &str = "http_server_request_duration_seconds_count";
    const CLIENT: &str = "http_client_request_duration_seconds_count";
    let sys = comms.syscalls.as_str();
    let (tcp_client, tcp_server) = (comms.tcp_client.as_str(), comms.tcp_server.as_str());
    let (http_server, http_client) = (comms.http_server.as_str(), comms.http_client.as_str());
    let tcp_port = facts.tcp.to_string();
    let tcp_peer = format!("127.0.0.1:{}", facts.tcp);
    let refused_peer = format!("127.0.0.1:{}", facts.refused);
    let (http_port, https_port) = (facts.http.to_string(), facts.https.to_string());
    let (https_server, https_client) = (comms.https_server.as_str(), comms.https_client.as_str());
    let served = |comm, scheme, status, route| {
        [
            ("comm", comm),
            ("http_request_method", "GET"),
            ("http_response_status_code", status),
            ("http_route", route),
            ("url_scheme", scheme),
        ]
    };
    let fetched = |comm, scheme, port, status| {
        [
            ("comm", comm),
            ("http_request_method", "GET"),
            ("http_response_status_code", status),
            ("server_port", port),
            ("url_scheme", scheme),
        ]
    };
    let first_churn = format!("{}-1", comms.churn);
    let lookups = |comm, qtype, rcode| {
        [
            ("comm", comm),
            ("dns_question_type", qtype),
            ("dns_response_code", rcode),
            ("server_address", DNS_SERVER),
        ]
    };
    const LOOKUPS: &str = "dns_lookup_duration_seconds_count";
    const SERVED: &str = "db_server_operation_duration_seconds_count";
    const SENT: &str = "db_client_operation_duration_seconds_count";
    let redis_port = facts.redis.to_string();
    let redis_sent = |command, status| {
        [
            ("comm", comms.redis_client.as_str()),
            ("db_system_name", "redis"),
            ("db_operation_name", command),
            ("db_response_status_code", status),
            ("server_port", redis_port.as_str()),
        ]
    };
    let redis_served = |command, status| {
        [
            ("comm", comms.redis_server.as_str()),
            ("db_system_name", "redis"),
            ("db_operation_name", command),
            ("db_response_status_code", status),
        ]
    };
    let (dns_client, dig) = (comms.dns_client.as_str(), comms.dig.as_str());
    let mut expected = vec![
        Expectation::new(
            "folding: a parent's first program names are kept",
            ERRORS,
            &[
                ("comm", &first_churn),
                ("syscall", "openat"),
                ("errno", "ENOENT"),
            ],
            CHURN_OPENAT,
        ),
        Expectation::new(
            &format!(
                "folding: short-lived programs past {NAMES_PER_PARENT} names share [short-lived]"
            ),
            ERRORS,
            &[
                ("comm", "[short-lived]"),
                ("syscall", "openat"),
                ("errno", "ENOENT"),
            ],
            (CHURN_PROGRAMS - CHURN_KEPT) * CHURN_OPENAT,
        ),
        Expectation::new(
            "syscall errors: openat ENOENT",
            ERRORS,
            &[("comm", sys), ("syscall", "openat"), ("errno", "ENOENT")],
            OPENAT_ENOENT,
        ),
        Expectation::new(
            "syscall errors: close EBADF",
            ERRORS,
            &[("comm", sys), ("syscall", "close"), ("errno", "EBADF")],
            CLOSE_EBADF,
        ),
        Expectation::new(
            "syscall calls: nanosleep",
            "monitor_syscall_duration_seconds_count",
            &[("comm", sys), ("syscall", "nanosleep")],
            NANOSLEEPS,
        ),
        Expectation::new(
            "TCP connects: succeeded (connect duration count)",
            "monitor_tcp_connect_duration_seconds_count",
            &[("comm", tcp_client), ("peer", &tcp_peer)],
            TCP_OK,
        ),
        Expectation::new(
            "TCP connects: refused",
            "monitor_tcp_connect_errors_total",
            &[
                ("comm", tcp_client),
                ("peer", &refused_peer),
                ("reason", "refused"),
            ],
            TCP_REFUSED,
        ),
        Expectation::new(
            "TCP connections opened: outbound",
            OPENED,
            &[
                ("comm", tcp_client),
                ("direction", "outbound"),
                ("port", &tcp_port),
            ],
            TCP_OK,
        ),
        Expectation::new(
            "TCP connections opened: inbound",
            OPENED,
            &[
                ("comm", tcp_server),
                ("direction", "inbound"),
                ("port", &tcp_port),
            ],
            TCP_OK,
        ),
        Expectation::new(
            "TCP bytes: sent by the client",
            BYTES,
            &[("comm", tcp_client), ("direction", "sent")],
            TCP_OK * TCP_BYTES,
        ),
        Expectation::new(
            "TCP bytes: received by the server",
            BYTES,
            &[("comm", tcp_server), ("direction", "received")],
            TCP_OK * TCP_BYTES,
        ),
        Expectation::new(
            "HTTP server: GET /ok 200",
            SERVER,
            &served(http_server, "http", "200", "/ok"),
            HTTP_OK,
        ),
        Expectation::new(
            "HTTP server: GET /missing 404",
            SERVER,
            &served(http_server, "http", "404", "/missing"),
            HTTP_MISSING,
        ),
        Expectation::new(
            "HTTP client: GET 200",
            CLIENT,
            &fetched(http_client, "http", &http_port, "200"),
            HTTP_OK,
        ),
        Expectation::new(
            "HTTP client: GET 404",
            CLIENT,
            &fetched(http_client, "http", &http_port, "404"),
            HTTP_MISSING,
        ),
        Expectation::new(
            "HTTPS server (OpenSSL uprobes): GET /ok 200",
            SERVER,
            &served(https_server, "https", "200", "/ok"),
            HTTP_OK,
        ),
        Expectation::new(
            "HTTPS server (OpenSSL uprobes): GET /missing 404",
            SERVER,
            &served(https_server, "https", "404", "/missing"),
            HTTP_MISSING,
        ),
        Expectation::new(
            "HTTPS client (OpenSSL uprobes): GET 200",
            CLIENT,
            &fetched(https_client, "https", &https_port, "200"),
            HTTP_OK,
        ),
        Expectation::new(
            "HTTPS client (OpenSSL uprobes): GET 404",
            CLIENT,
            &fetched(https_client, "https", &https_port, "404"),
            HTTP_MISSING,
        ),
        Expectation::ratio(
            "scheduler: CPU time / the spinners' own",
            "monitor_cpu_seconds_total",
            &[("comm", &comms.spin)],
            facts.spin_cpu_seconds,
            CPU_TOLERANCE,
        ),
        Expectation::ratio(
            "scheduler: run-queue wait / the spinners' own",
            "monitor_runqueue_latency_seconds_sum",
            &[("comm", &comms.spin)],
            facts.spin_wait_seconds,
            WAIT_TOLERANCE,
        ),
        Expectation::new(
            "HTTP framed in the kernel",
            "monitor_requests_framed_in_kernel",
            &[],
            1,
        ),
        Expectation::new(
            "DNS: A answered (connected UDP)",
            LOOKUPS,
            &lookups(dns_client, "A", "NOERROR"),
            DNS_OK,
        ),
        Expectation::new(
            "DNS: A NXDOMAIN (connected UDP)",
            LOOKUPS,
            &lookups(dns_client, "A", "NXDOMAIN"),
            DNS_NX,
        ),
        Expectation::new(
            "DNS: AAAA answered (unconnected UDP, sendto)",
            LOOKUPS,
            &lookups(dns_client, "AAAA", "NOERROR"),
            DNS_UNCONNECTED,
        ),
        Expectation::new(
            "DNS: MX answered (TCP)",
            LOOKUPS,
            &lookups(dns_client, "MX", "NOERROR"),
            DNS_TCP,
        ),
        Expectation::new(
            "DNS: SRV answered (dig, sendmmsg)",
            LOOKUPS,
            &lookups(dig, "SRV", "NOERROR"),
            DNS_DIG,
        ),
        Expectation::new(
            "Redis client: SET (one by one, then pipelined)",
            SENT,
            &redis_sent("SET", ""),
            REDIS_SET + REDIS_PIPELINED,
        ),
        Expectation::new("Redis client: GET", SENT, &redis_sent("GET", ""), REDIS_GET),
        Expectation::new(
            "Redis client: GET WRONGTYPE",
            SENT,
            &redis_sent("GET", "WRONGTYPE"),
            REDIS_WRONGTYPE,
        ),
        Expectation::new(
            "Redis server: SET",
            SERVED,
            &redis_served("SET", ""),
            REDIS_SET + REDIS_PIPELINED,
        ),
        Expectation::new(
            "Redis server: GET WRONGTYPE",
            SERVED,
            &redis_served("GET", "WRONGTYPE"),
            REDIS_WRONGTYPE,
        ),
        Expectation::new(
            "OOM kills: 200 MiB in a 32 MiB cgroup",
            "monitor_oom_kills_total",
            &[("comm", &comms.hog)],
            1,
        ),
    ];
    expected.extend(postgres_expectations(comms, facts));
    expected.extend(grpc_expectations(comms, facts));
    expected.extend(h2c_expectations(comms, facts));
    expected
}

/// The PostgreSQL workload's operations: exact on the clients; on the server, its errors
/// (its readiness checks add successes of no comm of the workload's).
fn postgres_expectations(comms: &Comms, facts: &Facts) -> Vec<Expectation> {
    const SERVED: &str = "db_server_operation_duration_seconds_count";
    const SENT: &str = "db_client_operation_duration_seconds_count";
    let port = facts.postgres.to_string();
    let sent = |comm, status| {
        [
            ("comm", comm),
            ("db_system_name", "postgresql"),
            ("db_operation_name", "SELECT"),
            ("db_response_status_code", status),
            ("server_port", port.as_str()),
        ]
    };
    let (psql, pgbench) = (comms.psql.as_str(), comms.pgbench.as_str());
    let served = [
        ("comm", comms.pg_server.as_str()),
        ("db_system_name", "postgresql"),
        ("db_operation_name", "SELECT"),
        ("db_response_status_code", "42P01"),
    ];
    vec![
        Expectation::new(
            "PostgreSQL client (psql): SELECT",
            SENT,
            &sent(psql, ""),
            PG_SELECTS,
        ),
        Expectation::new(
            "PostgreSQL client (psql): SELECT, error undefined_table",
            SENT,
            &sent(psql, "42P01"),
            PG_MISSING,
        ),
        Expectation::new(
            "PostgreSQL client (pgbench, prepared): SELECT",
            SENT,
            &sent(pgbench, ""),
            PG_PREPARED,
        ),
        Expectation::new(
            "PostgreSQL server: SELECT, error undefined_table",
            SERVED,
            &served,
            PG_MISSING,
        ),
    ]
}

/// The `h2c` workload's requests, on both sides: the upgrade as HTTP/1.1, then HTTP/2.
fn h2c_expectations(comms: &Comms, facts: &Facts) -> Vec<Expectation> {
    const SERVED: &str = "http_server_request_duration_seconds_count";
    const MADE: &str = "http_client_request_duration_seconds_count";
    if facts.h2c == 0 {
        return Vec::new();
    }
    let port = facts.h2c.to_string();
    let (server, client) = (comms.h2c_server.as_str(), comms.h2c_client.as_str());
    let answers = [
        ("101", "/ok/upgrade", "1.1", H2C_CONNECTIONS),
        ("200", "/ok", "2", H2C_OK * H2C_CONNECTIONS),
        ("404", "/missing", "2", H2C_MISSING * H2C_CONNECTIONS),
    ];
    let mut expected = Vec::new();
    for (status, route, version, count) in answers {
        let labels = |comm| {
            vec![
                ("comm", comm),
                ("http_request_method", "GET"),
                ("http_response_status_code", status),
                ("network_protocol_version", version),
            ]
        };
        let mut served = labels(server);
        served.push(("http_route", route));
        let mut made = labels(client);
        made.push(("server_port", port.as_str()));
        expected.extend([
            Expectation::new(
                &format!("h2c upgrade server: GET {status} HTTP/{version}"),
                SERVED,
                &served,
                count,
            ),
            Expectation::new(
                &format!("h2c upgrade client: GET {status} HTTP/{version}"),
                MADE,
                &made,
                count,
            ),
        ]);
    }
    expected
}

/// The gRPC calls, on both sides (HTTP/2 framed in the agent from the copies of every piece
/// of gRPC's vectored reads and writes).
fn grpc_expectations(comms: &Comms, facts: &Facts) -> Vec<Expectation> {
    const SERVED: &str = "rpc_server_call_duration_seconds_count";
    const MADE: &str = "rpc_client_call_duration_seconds_count";
    if facts.grpc == 0 {
        return Vec::new();
    }
    let port = facts.grpc.to_string();
    let call = |comm, status| {
        vec![
            ("comm", comm),
            ("rpc_system_name", "grpc"),
            ("rpc_method", "/shop.Cart/Add"),
            ("rpc_response_status_code", status),
        ]
    };
    let made = |status| {
        let mut labels = call(comms.grpc_client.as_str(), status);
        labels.push(("server_port", port.as_str()));
        labels
    };
    let server = comms.grpc_server.as_str();
    vec![
        Expectation::new("gRPC server: OK", SERVED, &call(server, "OK"), GRPC_OK),
        Expectation::new(
            "gRPC server: NOT_FOUND",
            SERVED,
            &call(server, "NOT_FOUND"),
            GRPC_NOT_FOUND,
        ),
        Expectation::new("gRPC client: OK", MADE, &made("OK"), GRPC_OK),
        Expectation::new(
            "gRPC client: NOT_FOUND",
            MADE,
            &made("NOT_FOUND"),
            GRPC_NOT_FOUND,
        ),
    ]
}

/// Runs the whole smoke test and writes its result. Fails only when the result cannot be
/// written; everything else that goes wrong is recorded in the result.
pub fn run(options: &GuestOptions) -> Result<()> {
    let out = &options.out;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for stale in [
        RESULT_FILE,
        "metrics.txt",
        "healthz.txt",
        "agent.log",
        "refused-info.log",
        "refused-debug.log",
    ] {
        let _ = fs::remove_file(out.join(stale));
    }
    let work = std::env::temp_dir().join(format!("xtask-kernels-{}", std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut result = SmokeResult {
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading the kernel release")?
            .trim()
            .to_owned(),
        ..SmokeResult::default()
    };
    println!("kernels-guest: kernel {}", result.kernel);
    let outcome = smoke(options, &work, &mut result);
    if let Err(err) = outcome {
        result.errors.push(format!("{err:#}"));
    }
    let _ = fs::remove_dir_all(&work);
    let yaml = serde_norway::to_string(&result).context("serialising the result")?;
    let path = out.join(RESULT_FILE);
    fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    println!("kernels-guest: wrote {}", path.display());
    Ok(())
}

fn smoke(options: &GuestOptions, work: &Path, result: &mut SmokeResult) -> Result<()> {
    let out = &options.out;
    let port = free_port()?;
    let log_path = out.join("agent.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut agent = Supervised::spawn(
        "monitor-agent",
        Command::new(&options.agent)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(["--log.level", "info"])
            // Exited workloads are folded at each sweep: sooner here than the 5 s default.
            .args(["--kernel.sweep-interval", SWEEP_INTERVAL])
            .args([
                "--processes.names-per-parent",
                &NAMES_PER_PARENT.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    let started = Instant::now();
    wait_until_serving(&mut agent, port, &log_path)?;
    println!(
        "kernels-guest: agent serving after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let comms = Comms::new(std::process::id());
    let workloads = Workloads {
        work,
        bins: &options.bins,
        python: options.python.as_deref(),
    };
    let mut facts = Facts::default();
    // Each workload on its own: one failing does not hide what the others show.
    let steps: [(&str, &WorkloadStep); 12] = [
        ("syscall workload", &|_| workloads.syscalls(&comms)),
        ("TCP workload", &|facts| workloads.tcp(&comms, facts)),
        ("HTTP workload", &|facts| workloads.http(&comms, facts)),
        ("HTTPS workload", &|facts| workloads.https(&comms, facts)),
        ("DNS workload", &|_| workloads.dns(&comms)),
        ("Redis workload", &|facts| workloads.redis(&comms, facts)),
        ("PostgreSQL workload", &|facts| {
            workloads.postgres(&comms, facts)
        }),
        ("gRPC workload", &|facts| workloads.grpc(&comms, facts)),
        ("h2c workload", &|facts| workloads.h2c(&comms, facts)),
        ("scheduler workload", &|facts| {
            workloads.sched(&comms, facts)
        }),
        ("OOM workload", &|_| workloads.oom(&comms)),
        ("churn workload", &|_| workloads.churn(&comms)),
    ];
    for (what, step) in steps {
        let began = Instant::now();
        match step(&mut facts) {
            Ok(()) => println!(
                "kernels-guest: {what} done in {:.1} s",
                began.elapsed().as_secs_f64()
            ),
            Err(err) => {
                println!("kernels-guest: {what} failed: {err:#}");
                result.errors.push(format!("{what}: {err:#}"));
            }
        }
    }

    let expected = expectations(&comms, &facts);
    let settle_from = Instant::now();
    let deadline = settle_from + Duration::from_secs(options.settle_seconds);
    let mut metrics = loop {
        let metrics = scrape(&mut agent, port, &log_path)?;
        let samples = parse_samples(&metrics);
        let all_hold = expected.iter().all(|e| e.check(&samples).holds());
        if all_hold || Instant::now() >= deadline {
            break metrics;
        }
        thread::sleep(Duration::from_millis(500));
    };
    result.settle_seconds = settle_from.elapsed().as_secs_f64();
    if Instant::now() < deadline {
        // Holding once is not yet settled: the workloads have exited, and the sweeps that fold
        // their kernel entries into final values must not count anything twice.
        thread::sleep(CONFIRM_AFTER);
        metrics = scrape(&mut agent, port, &log_path)?;
    }
    let samples = parse_samples(&metrics);
    result.checks = expected.iter().map(|e| e.check(&samples)).collect();
    result.probes = probe_attachments(&samples);
    write(out, "metrics.txt", &metrics)?;
    if let Some((status, body)) = get(port, "/healthz") {
        result.healthz_status = Some(status);
        result.healthz = body;
    }
    write(out, "healthz.txt", &result.healthz)?;
    println!("kernels-guest: stopping the agent");
    result.agent_exit = match agent.stop(libc::SIGTERM, AGENT_STOP_GRACE)? {
        Some(status) => status.to_string(),
        None => format!("killed after ignoring SIGTERM for {AGENT_STOP_GRACE:?}"),
    };
    // A kernel that refused the preferred socket I/O hooks shows how a refusal is logged.
    let fell_back = result
        .probes
        .iter()
        .any(|probe| SOCKET_IO_FALLBACK.contains(&probe.probe.as_str()) && probe.attached);
    if fell_back {
        result.refusal = Some(refusal_log(options)?);
    }
    Ok(())
}

/// The programs socket I/O falls back to where the `sock_*_length` hooks are refused
/// (framing requests in the kernel, or copying payloads where it cannot).
const SOCKET_IO_FALLBACK: [&str; 2] = ["mon_sock_io_exit_framed", "mon_sock_io_exit"];

/// Forces the socket I/O probes onto the hooks this kernel refused (`--probes.socket-io
/// tracepoints`), once at info and once at debug level, and reads what the agent logged
/// (`refused-info.log`, `refused-debug.log`).
fn refusal_log(options: &GuestOptions) -> Result<RefusalLog> {
    let mut logs = Vec::new();
    for level in ["info", "debug"] {
        let path = options.out.join(format!("refused-{level}.log"));
        let log =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let port = free_port()?;
        let mut agent = Supervised::spawn(
            "monitor-agent",
            Command::new(&options.agent)
                .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
                .args(["--log.level", level])
                .args(["--probes.socket-io", "tracepoints"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        wait_until_serving(&mut agent, port, &path)?;
        agent.stop(libc::SIGTERM, AGENT_STOP_GRACE)?;
        logs.push(
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    let verifier_lines = |log: &str| log.lines().filter(|l| is_verifier_instruction(l)).count();
    let warnings = logs[0]
        .lines()
        .filter(|line| line.contains(" WARN "))
        .filter(|line| REFUSED_PROBES.iter().any(|(probe, _)| line.contains(probe)))
        .map(str::to_owned)
        .collect();
    Ok(RefusalLog {
        warnings,
        verifier_lines_at_info: verifier_lines(&logs[0]),
        verifier_lines_at_debug: verifier_lines(&logs[1]),
    })
}

/// `/metrics`, or nothing when the agent does not answer this time; an error, with the end
/// of its log, once it has exited.
fn scrape(agent: &mut Supervised, port: u16, log: &Path) -> Result<String> {
    if let Err(err) = agent.ensure_running() {
        bail!("{err:#}; its log ends: {}", log_tail(log, 5));
    }
    match get(port, "/metrics") {
        Some((200, body)) => Ok(body),
        Some((status, body)) => bail!("/metrics answered {status}: {}", body.trim()),
        None => Ok(String::new()),
    }
}

fn write(out: &Path, name: &str, text: &str) -> Result<()> {
    let path = out.join(name);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Waits until the agent answers `/healthz` at all: 503 (no probe attached) is still a
/// result worth recording.
fn wait_until_serving(agent: &mut Supervised, port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + AGENT_START_TIMEOUT;
    loop {
        if let Some(status) = agent.exited()? {
            bail!(
                "the agent exited during start-up ({status}): {}",
                log_tail(log, 5)
            );
        }
        if get(port, "/healthz").is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the agent did not serve /healthz within {AGENT_START_TIMEOUT:?}: {}",
                log_tail(log, 5)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// One workload: runs it, recording what it told.
type WorkloadStep<'a> = dyn Fn(&mut Facts) -> Result<()> + 'a;

struct Workloads<'a> {
    /// Scratch folder for the symlinks and scripts.
    work: &'a Path,
    bins: &'a Path,
    /// A Python with `grpcio` and `h2`.
    python: Option<&'a Path>,
}

impl Workloads<'_> {
    /// gt-workload: exact failing openat/close calls and nanosleeps.
    fn syscalls(&self, comms: &Comms) -> Result<()> {
        let args = [OPENAT_ENOENT, CLOSE_EBADF, NANOSLEEPS, SLEEP_MS].map(|n| n.to_string());
        let mut workload = self.named(&comms.syscalls, &self.bin("gt-workload")?)?;
        workload.args(&args);
        run_to_end(&comms.syscalls, &mut workload)?;
        Ok(())
    }

    /// One shell loop running CHURN_PROGRAMS gt-workloads under distinct names.
    fn churn(&self, comms: &Comms) -> Result<()> {
        let workload = self.bin("gt-workload")?;
        for i in 1..=CHURN_PROGRAMS {
            let link = self.work.join(format!("{}-{i}", comms.churn));
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(&workload, &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
        }
        // Brace expansion, so no other program (`seq`) runs under the loop's shell; `exit`
        // last, so bash does not exec the last program in its own place.
        let script = format!(
            "for i in {{1..{CHURN_PROGRAMS}}}; do \"$0/{}-$i\" {CHURN_OPENAT} 0 1 1 || exit 1; \
             done; exit 0",
            comms.churn
        );
        let mut shell = Command::new("bash");
        shell
            .args(["-c", &script])
            .arg(self.work)
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_to_end("churn loop", &mut shell)?;
        Ok(())
    }

    /// net-workload: a listener accepting TCP_OK connections that each carry TCP_BYTES, then
    /// TCP_REFUSED connects to a port nobody listens on.
    fn tcp(&self, comms: &Comms, ports: &mut Facts) -> Result<()> {
        let net = self.bin("net-workload")?;
        let mut server = self.named(&comms.tcp_server, &net)?;
        server.args(["serve", "127.0.0.1:0", "--accept", &TCP_OK.to_string()]);
        server.args(["--recv-bytes", &TCP_BYTES.to_string()]);
        let (mut server, ready) = start_until_line(&comms.tcp_server, &mut server)?;
        ports.tcp = ready
            .strip_prefix("ready ")
            .and_then(|port| port.trim().parse().ok())
            .with_context(|| format!("net-workload serve printed {ready:?}, not `ready PORT`"))?;
        let ok_peer = format!("127.0.0.1:{}", ports.tcp);
        let mut client = self.named(&comms.tcp_client, &net)?;
        client.args(["connect", &ok_peer, "--count", &TCP_OK.to_string()]);
        client.args(["--expect", "ok", "--send-bytes", &TCP_BYTES.to_string()]);
        run_to_end(&comms.tcp_client, &mut client)?;
        wait_for_exit(&comms.tcp_server, &mut server)?;

        // A port the kernel just handed out and nobody took: every SYN is answered by RST.
        ports.refused = free_port()?;
        let refused_peer = format!("127.0.0.1:{}", ports.refused);
        let mut refused = self.named(&comms.tcp_client, &net)?;
        refused.args([
            "connect",
            &refused_peer,
            "--count",
            &TCP_REFUSED.to_string(),
        ]);
        refused.args(["--expect", "refused"]);
        run_to_end(&comms.tcp_client, &mut refused)?;
        Ok(())
    }

    /// Python's http.server and http.client over one keep-alive connection.
    fn http(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        facts.http = self.http_over(&comms.http_server, &comms.http_client, None)?;
        Ok(())
    }

    /// The same server and client over TLS: OpenSSL's calls, seen by the uprobes.
    fn https(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        let (cert, key) = (self.work.join("cert.pem"), self.work.join("key.pem"));
        let openssl = crate::process::find_program("openssl")
            .context("openssl not found (Debian package openssl)")?;
        // An EC key: an RSA one takes seconds to make under software emulation.
        let mut command = Command::new(openssl);
        command
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_to_end("openssl", &mut command)?;
        facts.https = self.http_over(
            &comms.https_server,
            &comms.https_client,
            Some((&cert, &key)),
        )?;
        Ok(())
    }

    /// Python's HTTP server and client, plain or over TLS with `tls`'s certificate and key:
    /// HTTP_OK requests to /ok, HTTP_MISSING to /missing, on one connection. The server's
    /// port.
    fn http_over(
        &self,
        server_comm: &str,
        client_comm: &str,
        tls: Option<(&Path, &Path)>,
    ) -> Result<u16> {
        // Debian's interpreter itself, not a version manager's shim: a shim is a script that
        // execs another binary, which would rename the process.
        let python = fs::canonicalize("/usr/bin/python3")
            .context("/usr/bin/python3 (Debian package python3)")?;
        let server_script = self.work.join("http_server.py");
        let client_script = self.work.join("http_client.py");
        fs::write(&server_script, crate::python::HTTP_SERVER)
            .context("writing the HTTP server script")?;
        fs::write(&client_script, HTTP_CLIENT).context("writing the HTTP client script")?;
        let mut server = self.named(server_comm, &python)?;
        server.arg(&server_script);
        if let Some((cert, key)) = tls {
            server.arg(cert).arg(key);
        }
        let (mut server, ready) = start_until_line(server_comm, &mut server)?;
        let port: u16 = ready
            .trim()
            .parse()
            .with_context(|| format!("the HTTP server printed {ready:?}, not its port"))?;
        let mut client = self.named(client_comm, &python)?;
        client.arg(&client_script).args([
            port.to_string(),
            HTTP_OK.to_string(),
            HTTP_MISSING.to_string(),
        ]);
        if tls.is_some() {
            client.arg("https");
        }
        let outcome = run_to_end(client_comm, &mut client);
        // The server's series outlive it: it can go now.
        server.stop(libc::SIGTERM, Duration::from_secs(5))?;
        outcome.map(|_| port)
    }

    /// A DNS server on port 53 of DNS_SERVER (UDP and TCP), the Python client and dig.
    fn dns(&self, comms: &Comms) -> Result<()> {
        let python = fs::canonicalize("/usr/bin/python3")
            .context("/usr/bin/python3 (Debian package python3)")?;
        let server_script = self.work.join("dns_server.py");
        let client_script = self.work.join("dns_client.py");
        fs::write(&server_script, crate::python::DNS_SERVER)
            .context("writing the DNS server script")?;
        fs::write(&client_script, DNS_CLIENT).context("writing the DNS client script")?;
        let mut server = self.named(&comms.dns_server, &python)?;
        server.arg(&server_script).arg(DNS_SERVER);
        let (mut server, _ready) = start_until_line(&comms.dns_server, &mut server)?;
        let mut client = self.named(&comms.dns_client, &python)?;
        client
            .arg(&client_script)
            .arg(DNS_SERVER)
            .args([DNS_OK, DNS_NX, DNS_UNCONNECTED, DNS_TCP].map(|n| n.to_string()));
        let mut outcome = run_to_end(&comms.dns_client, &mut client).map(drop);
        if outcome.is_ok() {
            let dig = crate::process::find_program("dig")
                .context("dig not found (Debian package bind9-dnsutils)")?;
            for i in 0..DNS_DIG {
                let mut command = self.named(&comms.dig, &dig)?;
                command.args(["+tries=1", "+time=20", "+short"]);
                command.args([
                    format!("@{DNS_SERVER}"),
                    format!("d{i}.ok.test"),
                    "SRV".into(),
                ]);
                outcome = run_to_end(&comms.dig, &mut command).map(drop);
                if outcome.is_err() {
                    break;
                }
            }
        }
        server.stop(libc::SIGTERM, Duration::from_secs(5))?;
        outcome
    }

    /// redis-server on a free port of 127.0.0.1 (no persistence), and the Python client.
    fn redis(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        let redis = crate::process::find_program("redis-server")
            .context("redis-server not found (Debian package redis-server)")?;
        let python = fs::canonicalize("/usr/bin/python3")
            .context("/usr/bin/python3 (Debian package python3)")?;
        let client_script = self.work.join("redis_client.py");
        fs::write(&client_script, REDIS_CLIENT).context("writing the Redis client script")?;
        facts.redis = free_port()?;
        let mut server = self.named(&comms.redis_server, &redis)?;
        server.args(["--port", &facts.redis.to_string(), "--bind", "127.0.0.1"]);
        server.args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
        let (mut server, _banner) = start_until_line(&comms.redis_server, &mut server)?;
        // Ready once it accepts: the banner comes before the listening socket.
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], facts.redis));
        let deadline = Instant::now() + WORKLOAD_TIMEOUT;
        while std::net::TcpStream::connect(address).is_err() {
            if Instant::now() >= deadline {
                bail!("redis-server did not listen on {address}");
            }
            thread::sleep(Duration::from_millis(100));
        }
        let mut client = self.named(&comms.redis_client, &python)?;
        client.arg(&client_script).args(
            [
                u64::from(facts.redis),
                REDIS_SET,
                REDIS_GET,
                REDIS_WRONGTYPE,
                REDIS_PIPELINED,
            ]
            .map(|n| n.to_string()),
        );
        let outcome = run_to_end(&comms.redis_client, &mut client).map(drop);
        server.stop(libc::SIGTERM, Duration::from_secs(5))?;
        outcome
    }

    /// A PostgreSQL cluster made by initdb in the work folder and served as nobody on a free
    /// port of 127.0.0.1, then psql and pgbench (see PG_SELECTS).
    fn postgres(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        let bin = postgres_bin()?;
        let dir = self.work.join("pg");
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let nobody = |program: &Path| {
            let mut command = as_nobody(program);
            command
                .env_remove("LD_LIBRARY_PATH")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command
        };
        std::os::unix::fs::chown(&data, Some(65534), Some(65534))
            .with_context(|| format!("giving {} to nobody", data.display()))?;
        let data_arg = data.to_str().context("work folder not UTF-8")?;
        let mut initdb = nobody(&bin.join("initdb"));
        initdb.args(["-N", "-D", data_arg, "-A", "trust", "-U", "postgres"]);
        run_to_end("initdb", &mut initdb)?;
        facts.postgres = free_port()?;
        let port = facts.postgres.to_string();
        // The server runs as `comms.pg_server`: a link to it, exec'd as nobody.
        let link = self.work.join(&comms.pg_server);
        std::os::unix::fs::symlink(bin.join("postgres"), &link)
            .with_context(|| format!("linking {}", link.display()))?;
        let mut server = nobody(&link);
        server
            .args(["-D", data_arg, "-p", &port, "-k", data_arg])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server = Supervised::spawn(&comms.pg_server, &mut server)?;
        let outcome = self.postgres_clients(comms, &bin, &port);
        server.stop(libc::SIGTERM, Duration::from_secs(10))?;
        outcome
    }

    fn postgres_clients(&self, comms: &Comms, bin: &Path, port: &str) -> Result<()> {
        let connection = ["-h", "127.0.0.1", "-p", port, "-U", "postgres"];
        // pg_isready sends a startup packet and no query: no operation.
        let deadline = Instant::now() + WORKLOAD_TIMEOUT;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(connection)
                .arg("-q")
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "postgres did not accept connections on port {port}"
            );
            thread::sleep(Duration::from_millis(300));
        }
        // psql's exit status is its last command's: the failing ones go first.
        let mut psql = self.named(&comms.psql, &bin.join("psql"))?;
        psql.args(connection).args(["-qAt", "-d", "sslmode=prefer"]);
        for _ in 0..PG_MISSING {
            psql.args(["-c", "SELECT * FROM missing_table"]);
        }
        for i in 0..PG_SELECTS {
            psql.args(["-c", &format!("SELECT {i}")]);
        }
        run_to_end(&comms.psql, &mut psql)?;
        let script = self.work.join("select.sql");
        fs::write(&script, "SELECT 1;\n").context("writing pgbench's script")?;
        let mut pgbench = self.named(&comms.pgbench, &bin.join("pgbench"))?;
        pgbench
            .args(connection)
            .args(["-n", "-M", "prepared", "-t", &PG_PREPARED.to_string(), "-f"])
            .arg(&script)
            .arg("postgres");
        run_to_end(&comms.pgbench, &mut pgbench).map(drop)
    }

    /// A gRPC server and client (gRPC's C core, HTTP/2 in cleartext): GRPC_OK calls answered
    /// OK and GRPC_NOT_FOUND answered NOT_FOUND, over one channel.
    fn grpc(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        let python = self
            .python
            .context("no Python with grpcio was given (--python; `cargo xtask setup`)")?;
        let mut server = self.named(&comms.grpc_server, python)?;
        server.args(["-c", GRPC_SERVER]);
        let (mut server, ready) = start_until_line(&comms.grpc_server, &mut server)?;
        let port = ready_port("the gRPC server", &ready)?;
        let mut client = self.named(&comms.grpc_client, python)?;
        client
            .args(["-c", GRPC_CLIENT, &port.to_string()])
            .args([GRPC_OK, GRPC_NOT_FOUND].map(|n| n.to_string()));
        let outcome = run_to_end(&comms.grpc_client, &mut client).map(drop);
        server.stop(libc::SIGTERM, Duration::from_secs(5))?;
        outcome?;
        facts.grpc = port;
        Ok(())
    }

    /// curl asking for HTTP/2 by the `h2c` upgrade, H2C_CONNECTIONS times, from the tests'
    /// hyper-h2 server (see H2C_CONNECTIONS); each status checked.
    fn h2c(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        let python = self
            .python
            .context("no Python with h2 was given (--python; `cargo xtask setup`)")?;
        let curl =
            crate::process::find_program("curl").context("curl not found (Debian package curl)")?;
        let mut server = self.named(&comms.h2c_server, python)?;
        server.args(["-c", H2C_SERVER, &H2C_CONNECTIONS.to_string()]);
        let (mut server, ready) = start_until_line(&comms.h2c_server, &mut server)?;
        let port = ready_port("the h2c server", &ready)?;
        let url = |path| format!("http://127.0.0.1:{port}{path}");
        let mut paths = vec![("/ok/upgrade", "200")];
        paths.extend((0..H2C_OK).map(|_| ("/ok", "200")));
        paths.extend((0..H2C_MISSING).map(|_| ("/missing", "404")));
        let expected: String = paths.iter().map(|(_, code)| format!("{code}\n")).collect();
        let mut outcome = Ok(());
        for _ in 0..H2C_CONNECTIONS {
            let mut client = self.named(&comms.h2c_client, &curl)?;
            client.args(["--silent", "--show-error", "--http2"]);
            client.args(["--write-out", "%{http_code}\\n"]);
            for (path, _) in &paths {
                client.args(["--output", "/dev/null", &url(path)]);
            }
            outcome = run_to_end(&comms.h2c_client, &mut client).and_then(|codes| {
                ensure!(codes == expected, "curl saw {codes:?}, not {expected:?}");
                Ok(())
            });
            if outcome.is_err() {
                break;
            }
        }
        server.stop(libc::SIGTERM, Duration::from_secs(5))?;
        outcome?;
        facts.h2c = port;
        Ok(())
    }

    /// spin: SPINNERS processes pinned to the last CPU for SPIN_SECONDS, each printing its
    /// CPU seconds, the seconds it lived and the kernel's run_delay for it; what it lived
    /// and did not run, it waited (it never sleeps).
    fn sched(&self, comms: &Comms, facts: &mut Facts) -> Result<()> {
        let spin = self.bin("spin")?;
        let last = thread::available_parallelism().map_or(1, |n| n.get()) - 1;
        let mut spinners = Vec::new();
        for _ in 0..SPINNERS {
            let mut command = self.named(&comms.spin, &spin)?;
            command.args([SPIN_SECONDS.to_string(), last.to_string()]);
            let mut child = Supervised::spawn(&comms.spin, &mut command)?;
            let stdout = child.child_mut().stdout.take().context("no stdout pipe")?;
            spinners.push((child, thread::spawn(move || read_all(stdout))));
        }
        for (mut child, stdout) in spinners {
            wait_for_exit(&comms.spin, &mut child)?;
            let printed = stdout
                .join()
                .map_err(|_| anyhow!("reading a spinner's output panicked"))?;
            let told: Vec<f64> = printed
                .split_whitespace()
                .filter_map(|field| field.parse().ok())
                .collect();
            let [cpu, lived, run_delay] = told[..] else {
                bail!("spin printed {printed:?}, not `CPU_SECONDS LIVED_SECONDS RUN_DELAY`");
            };
            facts.spin_cpu_seconds += cpu;
            facts.spin_wait_seconds += if run_delay > 0.0 {
                run_delay
            } else {
                lived - cpu
            };
        }
        Ok(())
    }

    /// hog: HOG_MIB in a memory cgroup of LIMIT_MIB without swap, which it joins itself;
    /// the OOM killer must end it.
    fn oom(&self, comms: &Comms) -> Result<()> {
        let cgroup = MemoryCgroup::create(self.work, &comms.hog, LIMIT_MIB << 20)?;
        let mut command = self.named(&comms.hog, &self.bin("hog")?)?;
        command.arg(HOG_MIB.to_string()).arg(&cgroup.dir);
        let mut hog = Supervised::spawn(&comms.hog, &mut command)?;
        let status = wait_for_status(&comms.hog, &mut hog);
        drop(cgroup);
        let status = status?;
        if status.signal() != Some(libc::SIGKILL) {
            bail!(
                "the hog was not killed by the OOM killer ({status}): {}",
                child_stderr(&mut hog)
            );
        }
        Ok(())
    }

    fn bin(&self, name: &str) -> Result<PathBuf> {
        let path = self.bins.join(name);
        if !path.is_file() {
            bail!(
                "{} missing: build the test workloads (`cargo build --release -p tests --bins`)",
                path.display()
            );
        }
        Ok(path)
    }

    /// A command that runs `binary` as `comm`: the kernel names a process after the file it
    /// was exec'd through, so a symlink named `comm` does it without touching the binary.
    fn named(&self, comm: &str, binary: &Path) -> Result<Command> {
        let link = self.work.join(comm);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(binary, &link)
                .with_context(|| format!("linking {} to {}", link.display(), binary.display()))?;
        }
        let mut command = Command::new(link);
        // `cargo run` sets LD_LIBRARY_PATH for xtask; the dynamic loader's failing openat(2)s
        // through it would be real, counted, and not the workload's ground truth.
        command
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(command)
    }
}

/// Runs a workload to its end within WORKLOAD_TIMEOUT; its stdout, or an error with its
/// stderr.
fn run_to_end(comm: &str, command: &mut Command) -> Result<String> {
    let mut child = Supervised::spawn(comm, command)?;
    let stdout = child.child_mut().stdout.take().context("no stdout pipe")?;
    let stdout = thread::spawn(move || read_all(stdout));
    wait_for_exit(comm, &mut child)?;
    stdout
        .join()
        .map_err(|_| anyhow!("reading the output of {comm} panicked"))
}

/// The port of a server's readiness line, `ready PORT`.
fn ready_port(server: &str, line: &str) -> Result<u16> {
    line.trim()
        .strip_prefix("ready ")
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("{server} printed {line:?}, not its port"))
}

/// Starts a server and returns it with the first line it printed (its readiness signal).
fn start_until_line(comm: &str, command: &mut Command) -> Result<(Supervised, String)> {
    let shown = display(command);
    let mut child = Supervised::spawn(comm, command)?;
    let stdout = child.child_mut().stdout.take().context("no stdout pipe")?;
    let lines = watch_lines(stdout);
    match lines.recv_timeout(WORKLOAD_TIMEOUT) {
        Ok(line) => Ok((child, line)),
        Err(RecvTimeoutError::Timeout) => {
            bail!("{comm} (`{shown}`) printed nothing within {WORKLOAD_TIMEOUT:?}")
        }
        Err(RecvTimeoutError::Disconnected) => {
            let status = child.stop(libc::SIGKILL, Duration::from_secs(5))?;
            let stderr = child_stderr(&mut child);
            bail!("{comm} (`{shown}`) ended before it was ready ({status:?}): {stderr}")
        }
    }
}

/// A memory cgroup with a limit and no swap, removed (and its hierarchy unmounted, if this
/// mounted it) on drop.
struct MemoryCgroup {
    dir: PathBuf,
    mounted: Option<PathBuf>,
}

impl MemoryCgroup {
    /// Under cgroup v1's memory hierarchy where it is mounted (the reference host is
    /// hybrid), else under v2's: `/sys/fs/cgroup` where init mounted it there, else mounted
    /// under `work` (a guest's init may mount none).
    fn create(work: &Path, name: &str, limit: u64) -> Result<Self> {
        let limit = limit.to_string();
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let cgroup = Self::make(v1.join(name), None)?;
            cgroup.set("memory.limit_in_bytes", &limit)?;
            cgroup.set_if_present("memory.memsw.limit_in_bytes", &limit)?;
            cgroup.set_if_present("memory.swappiness", "0")?;
            return Ok(cgroup);
        }
        let mut root = PathBuf::from("/sys/fs/cgroup");
        let mut mounted = None;
        if !root.join("cgroup.controllers").exists() {
            root = work.join("cgroup2");
            fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
            crate::process::run(
                Command::new("mount")
                    .args(["-t", "cgroup2", "none"])
                    .arg(&root),
            )
            .context("mounting cgroup2 (no cgroup hierarchy with memory at /sys/fs/cgroup)")?;
            mounted = Some(root.clone());
        }
        fs::write(root.join("cgroup.subtree_control"), "+memory")
            .context("enabling the memory controller for the root cgroup's children")?;
        let cgroup = Self::make(root.join(name), mounted)?;
        cgroup.set("memory.max", &limit)?;
        cgroup.set_if_present("memory.swap.max", "0")?;
        Ok(cgroup)
    }

    fn make(dir: PathBuf, mounted: Option<PathBuf>) -> Result<Self> {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, mounted })
    }

    fn set(&self, file: &str, value: &str) -> Result<()> {
        let path = self.dir.join(file);
        fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
    }

    fn set_if_present(&self, file: &str, value: &str) -> Result<()> {
        if self.dir.join(file).exists() {
            self.set(file, value)?;
        }
        Ok(())
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once its process is gone; the kernel may take a moment to let it go.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        if let Some(root) = &self.mounted {
            let _ = Command::new("umount").arg(root).status();
        }
    }
}

/// Waits for a workload's successful exit; kills it after WORKLOAD_TIMEOUT.
fn wait_for_exit(comm: &str, child: &mut Supervised) -> Result<()> {
    let status = wait_for_status(comm, child)?;
    if !status.success() {
        bail!("{comm} failed ({status}): {}", child_stderr(child));
    }
    Ok(())
}

/// Waits for a workload's exit, whatever its status; kills it after WORKLOAD_TIMEOUT.
fn wait_for_status(comm: &str, child: &mut Supervised) -> Result<ExitStatus> {
    let deadline = Instant::now() + WORKLOAD_TIMEOUT;
    loop {
        if let Some(status) = child.exited()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.stop(libc::SIGKILL, Duration::from_secs(5))?;
            bail!(
                "{comm} still running after {WORKLOAD_TIMEOUT:?}: {}",
                child_stderr(child)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn child_stderr(child: &mut Supervised) -> String {
    child
        .child_mut()
        .stderr
        .take()
        .map(read_all)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn read_all(mut stream: impl std::io::Read) -> String {
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comms_fit_the_kernel_limit_for_any_pid() {
        // pid_max is at most 2^22.
        let comms = Comms::new(4_194_304);
        for comm in [
            &comms.syscalls,
            &comms.tcp_client,
            &comms.tcp_server,
            &comms.http_server,
            &comms.http_client,
            &comms.spin,
            &comms.hog,
        ] {
            assert!(comm.len() <= 15, "{comm}");
        }
    }

    #[test]
    fn expectations_name_the_workloads_series() {
        let comms = Comms::new(42);
        let facts = Facts {
            tcp: 4000,
            refused: 4001,
            http: 4002,
            https: 4004,
            redis: 4003,
            postgres: 4005,
            grpc: 0,
            h2c: 0,
            spin_cpu_seconds: 3.0,
            spin_wait_seconds: 3.0,
        };
        let expected = expectations(&comms, &facts);
        let scrape = "\
monitor_requests_framed_in_kernel 1
monitor_tcp_connect_errors_total{comm=\"kgtcpc42\",peer=\"127.0.0.1:4001\",reason=\"refused\",container=\"\"} 3
http_client_request_duration_seconds_count{comm=\"kghcli42\",http_request_method=\"GET\",http_response_status_code=\"404\",server_address=\"127.0.0.1\",server_port=\"4002\",url_scheme=\"http\"} 3
http_server_request_duration_seconds_count{comm=\"kgtlss42\",http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/ok\",url_scheme=\"https\"} 7
monitor_cpu_seconds_total{comm=\"kgspin42\"} 2.9
monitor_runqueue_latency_seconds_sum{comm=\"kgspin42\"} 3.5
monitor_oom_kills_total{comm=\"kghog42\"} 1
";
        let samples = parse_samples(scrape);
        let holding: Vec<&str> = expected
            .iter()
            .filter(|e| e.check(&samples).holds())
            .map(|e| e.what.as_str())
            .collect();
        assert_eq!(
            holding,
            [
                "TCP connects: refused",
                "HTTP client: GET 404",
                "HTTPS server (OpenSSL uprobes): GET /ok 200",
                "scheduler: CPU time / the spinners' own",
                "HTTP framed in the kernel",
                "OOM kills: 200 MiB in a 32 MiB cgroup"
            ]
        );
        // The rows of the report: stable text, no comm or port in it.
        for e in &expected {
            assert!(
                !e.what.contains("42") && !e.what.contains("400"),
                "{}",
                e.what
            );
        }
    }
}
