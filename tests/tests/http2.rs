//! HTTP/2 and gRPC: nginx speaking HTTP/2 in cleartext (prior knowledge) and over TLS (ALPN
//! `h2`) to curl, and a gRPC server and client (Python `grpcio`, gRPC's C core), each under a
//! unique `comm`. The agent must count exactly the requests and calls each side made, by
//! status, with `network_protocol_version="2"` (and only there: no HTTP/1.1 series for them).
use std::{process::Stdio, time::Duration};

use tests::{
    Agent, eventually, pip_python3, spawn_as, spawn_named_with, unique_comm,
    web::{self, curl_with, nginx_with, scrape_when, urls},
};

const SERVER: &str = "http_server_request_duration_seconds";
const CLIENT: &str = "http_client_request_duration_seconds";
const RPC_SERVER: &str = "rpc_server_call_duration_seconds";
const RPC_CLIENT: &str = "rpc_client_call_duration_seconds";
const LIBRARIES: &str = "monitor_tls_libraries_instrumented";

/// A GET `comm` served: (status, route, `url_scheme`, `network_protocol_version`).
fn served<'a>(comm: &'a str, (status, route, scheme, version): Answer<'a>) -> Labels<'a> {
    vec![
        ("comm", comm),
        ("http_request_method", "GET"),
        ("http_response_status_code", status),
        ("http_route", route),
        ("url_scheme", scheme),
        ("network_protocol_version", version),
    ]
}

/// A GET `comm` made to 127.0.0.1: (status, port, `url_scheme`, `network_protocol_version`).
fn made<'a>(comm: &'a str, (status, port, scheme, version): Answer<'a>) -> Labels<'a> {
    vec![
        ("comm", comm),
        ("http_request_method", "GET"),
        ("http_response_status_code", status),
        ("server_address", "127.0.0.1"),
        ("server_port", port),
        ("url_scheme", scheme),
        ("network_protocol_version", version),
    ]
}

type Answer<'a> = (&'a str, &'a str, &'a str, &'a str);

type Labels<'a> = Vec<(&'a str, &'a str)>;

/// nginx with `http2` on its listener and curl over one connection: cleartext with prior
/// knowledge, then TLS where ALPN picks `h2` (the plaintext from OpenSSL's uprobes).
#[test]
fn nginx_http2_in_cleartext_and_over_tls_exact_on_both_sides() {
    const OK: usize = 5;
    const MISSING: usize = 3;
    let agent = Agent::start(&[]);
    for tls in [false, true] {
        let (scheme, option) = if tls {
            ("https", "--http2")
        } else {
            ("http", "--http2-prior-knowledge")
        };
        let server = unique_comm(&format!("h2{scheme}n"));
        let client = unique_comm(&format!("h2{scheme}c"));
        if tls {
            // The host's libssl is instrumented at start-up, before any process maps it.
            eventually(
                Duration::from_secs(20),
                "TLS libraries instrumented",
                || (agent.scrape().value(LIBRARIES, &[]) >= Some(1.0)).then_some(()),
            );
        }
        let (_nginx, port) = nginx_with(&server, tls, true);
        let mut requests = urls(scheme, port, "/ok", OK);
        requests.extend(urls(scheme, port, "/missing", MISSING));
        // curl 7.88 loses HTTP/2 prior-knowledge connections to nginx after their first
        // request ("Error in the HTTP2 framing layer", with or without the agent): in
        // cleartext, a connection per request.
        let codes: Vec<u16> = if tls {
            curl_with(&client, &[option], &requests)
        } else {
            requests
                .iter()
                .flat_map(|url| curl_with(&client, &[option], std::slice::from_ref(url)))
                .collect()
        };
        assert_eq!(codes.iter().filter(|&&c| c == 200).count(), OK);
        assert_eq!(codes.iter().filter(|&&c| c == 404).count(), MISSING);

        let port = port.to_string();
        scrape_when(
            &agent,
            SERVER,
            &[
                (served(&server, ("200", "/ok", scheme, "2")), OK as f64),
                (
                    served(&server, ("404", "/missing", scheme, "2")),
                    MISSING as f64,
                ),
            ],
        );
        let scrape = scrape_when(
            &agent,
            CLIENT,
            &[
                (made(&client, ("200", &port, scheme, "2")), OK as f64),
                (made(&client, ("404", &port, scheme, "2")), MISSING as f64),
            ],
        );
        for (family, comm) in [(SERVER, &server), (CLIENT, &client)] {
            let http1 = scrape
                .matching(
                    &format!("{family}_count"),
                    &[("comm", comm), ("network_protocol_version", "1.1")],
                )
                .count();
            assert_eq!(http1, 0, "{comm}'s HTTP/2 taken for HTTP/1.1");
        }
    }
}

/// `python -c H2C_SERVER CONNECTIONS`: see the script.
const H2C_SERVER: &str = include_str!("../scripts/h2c_server.py");

/// curl asks for HTTP/2 with `Upgrade: h2c` on its first request, a hyper-h2 server answers
/// `101` and then HTTP/2 on the same connection, where curl makes its other requests. The
/// upgrade request is HTTP/1.1 as sent and answered (its `101`); every later one is
/// HTTP/2's, exact on both sides. Two connections: on the first the server writes its
/// `101` alone, and its SETTINGS before it reads the client's preface; on the second it
/// writes them in one write, which the client reads at once.
#[test]
fn after_an_h2c_upgrade_requests_are_http2_exact_on_both_sides() {
    const OK: usize = 5;
    const MISSING: usize = 3;
    let agent = Agent::start(&[]);
    let python = pip_python3();
    let server = unique_comm("h2cupsv");
    let client = unique_comm("h2cupcl");
    const CONNECTIONS: usize = 2;
    let script = ["-c", H2C_SERVER, &CONNECTIONS.to_string()].map(str::to_owned);
    let running = spawn_as(&server, &python, &script);
    let port = running.port();
    let mut requests = urls("http", port, "/ok/upgrade", 1);
    requests.extend(urls("http", port, "/ok", OK));
    requests.extend(urls("http", port, "/missing", MISSING));
    for _ in 0..CONNECTIONS {
        let codes = curl_with(&client, &["--http2"], &requests);
        assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 1 + OK);
        assert_eq!(codes.iter().filter(|&&c| c == 404).count(), MISSING);
    }
    drop(running);
    let (ok, missing, upgrades) = (
        (OK * CONNECTIONS) as f64,
        (MISSING * CONNECTIONS) as f64,
        CONNECTIONS as f64,
    );

    let port = port.to_string();
    let expected = [
        (
            SERVER,
            &server,
            vec![
                (
                    served(&server, ("101", "/ok/upgrade", "http", "1.1")),
                    upgrades,
                ),
                (served(&server, ("200", "/ok", "http", "2")), ok),
                (served(&server, ("404", "/missing", "http", "2")), missing),
            ],
        ),
        (
            CLIENT,
            &client,
            vec![
                (made(&client, ("101", &port, "http", "1.1")), upgrades),
                (made(&client, ("200", &port, "http", "2")), ok),
                (made(&client, ("404", &port, "http", "2")), missing),
            ],
        ),
    ];
    for (family, comm, series) in expected {
        let scrape = scrape_when(&agent, family, &series);
        // Nothing more: no guessed stream 1, no request counted twice.
        let total: f64 = scrape
            .matching(&format!("{family}_count"), &[("comm", comm)])
            .map(|sample| sample.value)
            .sum();
        assert_eq!(total, upgrades + ok + missing, "{comm} in {family}");
    }
}

/// `python -c GRPC_SERVER`: see the script.
const GRPC_SERVER: &str = include_str!("../scripts/grpc_server.py");

/// `python -c CLIENT PORT OK MISSING`: OK calls then MISSING ones over one channel; prints
/// each call's status code name.
const GRPC_CLIENT: &str = r#"
import grpc, sys
port, ok, missing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with grpc.insecure_channel("127.0.0.1:" + port) as channel:
    add = channel.unary_unary("/shop.Cart/Add")
    for body in [b"cart"] * ok + [b"missing"] * missing:
        try:
            add(body, timeout=10)
            print("OK", flush=True)
        except grpc.RpcError as error:
            print(error.code().name, flush=True)
"#;

#[test]
fn grpc_calls_exact_on_both_sides_by_status() {
    const OK: usize = 6;
    const NOT_FOUND: usize = 4;
    let agent = Agent::start(&[]);
    let python = pip_python3();
    let server = unique_comm("grpcsrv");
    let client = unique_comm("grpccli");
    let running = spawn_as(&server, &python, &["-c".to_owned(), GRPC_SERVER.to_owned()]);
    let port = running.port().to_string();
    let child = spawn_named_with(&client, &python, |command| {
        command
            .args(["-c", GRPC_CLIENT, &port, &OK.to_string()])
            .arg(NOT_FOUND.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "gRPC client: {output:?}");
    let codes = String::from_utf8(output.stdout).unwrap();
    let seen = |code| codes.lines().filter(|line| *line == code).count();
    assert_eq!((seen("OK"), seen("NOT_FOUND")), (OK, NOT_FOUND), "{codes}");

    let call = |comm, status| {
        vec![
            ("comm", comm),
            ("rpc_system_name", "grpc"),
            ("rpc_method", "/shop.Cart/Add"),
            ("rpc_response_status_code", status),
        ]
    };
    scrape_when(
        &agent,
        RPC_SERVER,
        &[
            (call(&server, "OK"), OK as f64),
            (call(&server, "NOT_FOUND"), NOT_FOUND as f64),
        ],
    );
    let with_server = |status| {
        let mut labels = call(&client, status);
        labels.extend([("server_address", "127.0.0.1"), ("server_port", &port)]);
        labels
    };
    let scrape = scrape_when(
        &agent,
        RPC_CLIENT,
        &[
            (with_server("OK"), OK as f64),
            (with_server("NOT_FOUND"), NOT_FOUND as f64),
        ],
    );
    // A gRPC call is counted as a call, not also as an HTTP request.
    for family in [SERVER, CLIENT] {
        for comm in [&server, &client] {
            let http = scrape
                .matching(&format!("{family}_count"), &[("comm", comm)])
                .count();
            assert_eq!(http, 0, "{comm}'s calls in {family}");
        }
    }
    web::count(&scrape, RPC_SERVER, &call(&server, "OK")).unwrap();
    drop(running);
}

/// `python -c CLIENT PORT N`: one call on a new channel, `ready`, then, after a line on
/// stdin, N more calls on that same connection, and `done`.
const GRPC_OLD_CLIENT: &str = r#"
import grpc, sys
channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
add = channel.unary_unary("/shop.Cart/Add")
add(b"cart", timeout=10)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    add(b"cart", timeout=10)
print("done", flush=True)
"#;

/// A gRPC connection opened before the agent started: its header tables began unseen, so
/// its later calls are not decoded (nor guessed) but the connection is counted.
#[test]
fn a_connection_older_than_the_agent_is_counted_as_unparseable_not_guessed() {
    use std::io::{BufRead as _, Write as _};
    const LATER_CALLS: usize = 4;
    let python = pip_python3();
    let server = unique_comm("grpcolds");
    let client = unique_comm("grpcoldc");
    let running = spawn_as(&server, &python, &["-c".to_owned(), GRPC_SERVER.to_owned()]);
    let port = running.port().to_string();
    let mut child = spawn_named_with(&client, &python, |command| {
        command
            .args(["-c", GRPC_OLD_CLIENT, &port, &LATER_CALLS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the client's first call");

    let agent = Agent::start(&[]);
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done", "the client's later calls");
    assert!(child.wait().unwrap().success());

    // Both ends' sockets are first seen in the middle of HTTP/2: each is counted once.
    let scrape = eventually(
        Duration::from_secs(15),
        "the unparseable connections",
        || {
            let scrape = agent.scrape();
            let counted = scrape.value("monitor_http2_unparseable_connections_total", &[])?;
            (counted >= 2.0).then_some(scrape)
        },
    );
    assert_eq!(
        scrape.value("monitor_http2_unparseable_connections_total", &[]),
        Some(2.0),
        "one per socket of the connection"
    );
    for family in [RPC_SERVER, RPC_CLIENT, SERVER, CLIENT] {
        for comm in [&server, &client] {
            let guessed = scrape
                .matching(&format!("{family}_count"), &[("comm", comm)])
                .count();
            assert_eq!(guessed, 0, "{comm}'s calls guessed in {family}");
        }
    }
    drop(running);
}
