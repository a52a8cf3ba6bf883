//! DNS lookups from the wire: an unmodified server (dnsmasq answering a test zone) and
//! unmodified clients (dig, and Python's sockets: connected and unconnected UDP, IPv4 and
//! IPv6, TCP), each under a unique `comm`; the agent must count exactly the lookups each
//! made, by question type, response code and server, count a query nobody answered as a
//! timeout, and never export a question name.
use std::{process::Command, time::Duration};

use tests::{
    Agent, Server, TempDir, eventually, python3, require_program, run_as, spawn_as,
    spawn_named_with, unique_comm,
};

const FAMILY: &str = "dns_lookup_duration_seconds";
/// The zone's server, on addresses of its own: port 53 is what the probes look for.
const SERVER_V4: &str = "127.0.0.153";
const SERVER_V6: &str = "::1";
/// Port 53 of an address where a socket reads queries and never answers.
const SILENT: &str = "127.0.0.154";

/// `python3 -c SCRIPT`: the lookups of the test, in an order that makes every count unique.
/// Sockets: connected UDP (IPv4 and IPv6), unconnected UDP (`sendto`), TCP; and one query to
/// the silent server, given up on after 6 s (the agent's timeout is 5 s).
const PYTHON_CLIENT: &str = r#"
import socket, struct, sys
v4, v6, silent = sys.argv[1], sys.argv[2], sys.argv[3]
ids = iter(range(1000, 2000))
def query(name, qtype):
    out = struct.pack(">HHHHHH", next(ids), 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00" + struct.pack(">HH", qtype, 1)
def rcode(answer):
    return answer[3] & 0xf
A, AAAA = 1, 28
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.connect((v4, 53))
for i in range(5):
    udp.send(query("host%d.known.test" % i, A)); assert rcode(udp.recv(512)) == 0
for i in range(3):
    udp.send(query("missing%d.test" % i, A)); assert rcode(udp.recv(512)) == 3
udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp6.connect((v6, 53))
for i in range(2):
    udp6.send(query("six%d.known.test" % i, AAAA)); assert rcode(udp6.recv(512)) == 0
unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(4):
    unconnected.sendto(query("loose%d.known.test" % i, AAAA), (v4, 53))
    assert rcode(unconnected.recvfrom(512)[0]) == 0
for i in range(6):
    tcp = socket.create_connection((v4, 53))
    message = query("stream%d.missing.test" % i, A)
    tcp.sendall(struct.pack(">H", len(message)) + message)
    assert rcode(tcp.recv(512)[2:]) == 3
    tcp.close()
lost = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
lost.connect((silent, 53))
lost.settimeout(6)
lost.send(query("nobody.known.test", A))
try:
    lost.recv(512)
    sys.exit("the silent server answered")
except socket.timeout:
    pass
print("done")
"#;

/// Reads queries on port 53 of `sys.argv[1]` and never answers; prints `ready` once bound.
const PYTHON_SILENT: &str = r#"
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    server.recv(512)
"#;

fn dnsmasq(dir: &TempDir, comm: &str) -> Server {
    let dnsmasq = require_program("dnsmasq", "dnsmasq-base");
    let config = dir.path().join("zone.conf");
    // The test zone: `known.test` and everything under it has an address, the rest of
    // `test` does not exist (NXDOMAIN).
    std::fs::write(
        &config,
        "local=/test/\naddress=/known.test/10.1.2.3\naddress=/known.test/fd00::3\n",
    )
    .unwrap();
    let child = spawn_named_with(comm, &dnsmasq, |command| {
        command.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            &format!("--listen-address={SERVER_V4},{SERVER_V6}"),
            &format!("--conf-file={}", config.display()),
            &format!("--pid-file={}", dir.path().join("pid").display()),
        ]);
    });
    let server = Server::adopt("dnsmasq", child, Duration::from_secs(5));
    // Ready once it answers.
    let dig = require_program("dig", "bind9-dnsutils");
    eventually(Duration::from_secs(10), "dnsmasq answering", || {
        Command::new(&dig)
            .args([
                "+short",
                "+tries=1",
                "+time=1",
                &format!("@{SERVER_V4}"),
                "up.known.test",
            ])
            .output()
            .ok()
            .filter(|output| output.stdout.starts_with(b"10.1.2.3"))
    });
    server
}

fn lookups<'a>(
    comm: &'a str,
    qtype: &'a str,
    rcode: &'a str,
    server: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("comm", comm),
        ("dns_question_type", qtype),
        ("dns_response_code", rcode),
        ("server_address", server),
    ]
}

#[test]
fn lookups_are_counted_exactly_by_type_response_code_and_server() {
    let agent = Agent::start(&[]);
    let dir = TempDir::new("dns");
    let server_comm = unique_comm("dnsd");
    let mut server = dnsmasq(&dir, &server_comm);
    let silent_comm = unique_comm("dnsq");
    let _silent = spawn_as(
        &silent_comm,
        &python3(),
        &["-c".into(), PYTHON_SILENT.into(), SILENT.into()],
    );

    let client = unique_comm("dnsc");
    let dig_comm = unique_comm("dnsg");
    let dig = require_program("dig", "bind9-dnsutils");
    // dig sends each query with sendmmsg(2): one message of the vector.
    for (name, qtype) in [
        ("a.known.test", "A"),
        ("b.known.test", "AAAA"),
        ("gone.test", "A"),
    ] {
        run_as(
            &dig_comm,
            &dig,
            &[
                "+tries=1".into(),
                format!("@{SERVER_V4}"),
                name.into(),
                qtype.into(),
            ],
        );
    }
    run_as(
        &client,
        &python3(),
        &[
            "-c".into(),
            PYTHON_CLIENT.into(),
            SERVER_V4.into(),
            SERVER_V6.into(),
            SILENT.into(),
        ],
    );
    server.ensure_running("");

    let expected = [
        (lookups(&client, "A", "NOERROR", SERVER_V4), 5.0),
        (lookups(&client, "A", "NXDOMAIN", SERVER_V4), 3.0 + 6.0),
        (lookups(&client, "AAAA", "NOERROR", SERVER_V6), 2.0),
        (lookups(&client, "AAAA", "NOERROR", SERVER_V4), 4.0),
        (lookups(&client, "A", "timeout", SILENT), 1.0),
        (lookups(&dig_comm, "A", "NOERROR", SERVER_V4), 1.0),
        (lookups(&dig_comm, "AAAA", "NOERROR", SERVER_V4), 1.0),
        (lookups(&dig_comm, "A", "NXDOMAIN", SERVER_V4), 1.0),
    ];
    let mut last = String::new();
    let scrape = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            Duration::from_secs(20),
            "the expected lookup counts",
            || {
                let scrape = agent.scrape();
                last = scrape.text.clone();
                expected
                    .iter()
                    .all(|(labels, n)| scrape.value(&format!("{FAMILY}_count"), labels) == Some(*n))
                    .then_some(scrape)
            },
        )
    }))
    .unwrap_or_else(|_| {
        let seen: Vec<&str> = last.lines().filter(|l| l.starts_with(FAMILY)).collect();
        panic!(
            "expected {expected:?}; the agent reported:\n{}",
            seen.join("\n")
        )
    });

    // Nothing else for these processes: every lookup above, and only those.
    let count = format!("{FAMILY}_count");
    for comm in [&client, &dig_comm] {
        let wanted: f64 = expected
            .iter()
            .filter(|(labels, _)| labels[0].1 == comm.as_str())
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            scrape.sum(&count, &[("comm", comm)]),
            wanted,
            "{comm}'s lookups"
        );
    }
    // The servers' own reads and writes are not lookups.
    for comm in [&server_comm, &silent_comm] {
        assert_eq!(
            scrape.matching(&count, &[("comm", comm)]).count(),
            0,
            "{comm} looked up"
        );
    }
    // A timeout is observed as the 5 s waited; an answer from the host's own server, well
    // under a second.
    let sum = format!("{FAMILY}_sum");
    assert_eq!(
        scrape.sum(&sum, &lookups(&client, "A", "timeout", SILENT)),
        5.0
    );
    assert!(scrape.sum(&sum, &lookups(&client, "A", "NOERROR", SERVER_V4)) < 1.0);
    // Question names are users' data: never exported.
    for name in ["known.test", "missing0", "host0", "nobody", "stream0"] {
        assert!(!scrape.text.contains(name), "{name} in the exposition");
    }
    server.stop();
}
