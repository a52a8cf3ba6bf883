//! Request golden signals from the wire: unmodified servers (nginx, Python's http.server) and
//! an unmodified client (curl) over keep-alive connections, each under a unique `comm`; the
//! agent must count exactly the requests they made, by method, status and route, with
//! latencies in the right buckets, and never export a query string.
use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use tests::{
    Agent, Server, TempDir, spawn_named_with, unique_comm,
    web::{GRACE, Running, curl_as, nginx, scrape_when, urls},
};

const SERVER: &str = "http_server_request_duration_seconds";
const CLIENT: &str = "http_client_request_duration_seconds";
/// The labels of `comm`'s server series for GETs answered `status` on `route`.
fn get_served<'a>(comm: &'a str, status: &'a str, route: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("comm", comm),
        ("http_request_method", "GET"),
        ("http_response_status_code", status),
        ("http_route", route),
    ]
}

/// Framed in the kernel (the default): one request record per request on
/// each side, and not one payload copied.
#[test]
fn nginx_and_curl_exact_counts_per_status_on_both_sides() {
    let agent = nginx_and_curl_exact(&[]);
    let scrape = agent.scrape();
    let produced = |ring: &str| {
        scrape.value(
            "monitor_ringbuf_events_produced_total",
            &[("ringbuf", ring)],
        )
    };
    assert_eq!(produced("payload_events"), Some(0.0));
    assert!(produced("request_events") >= Some(64.0));
    assert_eq!(
        scrape.value("monitor_requests_framed_in_kernel", &[]),
        Some(1.0)
    );
}

/// Kernels before 6.3 capture requests at the exits of the read/write/send/recv system
/// calls (no `sock_*_length` tracepoints); the same counts must come out of that hook.
#[test]
fn nginx_and_curl_exact_through_the_syscall_exit_hook_too() {
    let agent = nginx_and_curl_exact(&["--probes.socket-io", "syscalls"]);
    assert_eq!(
        agent.scrape().value(
            "monitor_probe_attached",
            &[("probe", "mon_sock_io_exit"), ("tracepoint", "sys_exit")]
        ),
        Some(1.0)
    );
}

/// Where a verifier refuses the framing programs, the reads and writes are copied and
/// parsed in user space, and the same counts must come out of that path, through either
/// hook.
#[test]
fn nginx_and_curl_exact_with_the_framing_in_user_space_too() {
    for hook in ["tracepoints", "syscalls"] {
        let agent = nginx_and_curl_exact(&[
            "--probes.request-framing",
            "user",
            "--probes.socket-io",
            hook,
        ]);
        let scrape = agent.scrape();
        let produced = |ring: &str| {
            scrape.value(
                "monitor_ringbuf_events_produced_total",
                &[("ringbuf", ring)],
            )
        };
        assert!(produced("payload_events") > Some(0.0), "{hook}");
        assert_eq!(produced("request_events"), Some(0.0), "{hook}");
        assert_eq!(
            scrape.value("monitor_requests_framed_in_kernel", &[]),
            Some(0.0),
            "{hook}"
        );
    }
}

fn nginx_and_curl_exact(agent_args: &[&str]) -> Agent {
    const OK: usize = 25;
    const MISSING: usize = 7;
    let agent = Agent::start(agent_args);
    let server = unique_comm("ngx");
    let client = unique_comm("curlnx");
    let (_nginx, port) = nginx(&server, false);
    let mut requests = urls("http", port, "/ok", OK);
    requests.extend(urls("http", port, "/missing", MISSING));
    let codes = curl_as(&client, &requests);
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), OK);
    assert_eq!(codes.iter().filter(|&&c| c == 404).count(), MISSING);

    let server_labels = |status, route| get_served(&server, status, route);
    let scrape = scrape_when(
        &agent,
        SERVER,
        &[
            (server_labels("200", "/ok"), OK as f64),
            (server_labels("404", "/missing"), MISSING as f64),
        ],
    );
    assert_eq!(
        scrape
            .matching(&format!("{SERVER}_count"), &[("comm", &server)])
            .count(),
        2,
        "no other series for the server"
    );
    let port_text = port.to_string();
    let client_labels = |status| {
        vec![
            ("comm", client.as_str()),
            ("http_request_method", "GET"),
            ("http_response_status_code", status),
            ("server_address", "127.0.0.1"),
            ("server_port", port_text.as_str()),
        ]
    };
    scrape_when(
        &agent,
        CLIENT,
        &[
            (client_labels("200"), OK as f64),
            (client_labels("404"), MISSING as f64),
        ],
    );
    agent
}

/// Python's http.server (`tests::PYTHON_HTTP_SERVER`) as `comm`, /slow taking 50 ms.
fn python_server(comm: &str) -> (Running, u16) {
    let dir = TempDir::new("pyhttp");
    let script = dir.path().join("server.py");
    std::fs::write(&script, tests::PYTHON_HTTP_SERVER).unwrap();
    // /slow sleeps 50 ms: inside one log2 bucket, (33.5 ms, 67.1 ms].
    let mut child = spawn_named_with(comm, &tests::python3(), |command| {
        command.arg(&script).arg("0.05").stdout(Stdio::piped());
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    ((Server::adopt("python3", child, GRACE), dir), port)
}

#[test]
fn python_server_errors_routes_without_queries_and_latency_buckets() {
    const FAILS: usize = 9;
    const OKS: usize = 4;
    const SLOW: usize = 5;
    let agent = Agent::start(&[]);
    let server = unique_comm("pysrv");
    let client = unique_comm("curlpy");
    let (_python, port) = python_server(&server);
    let mut requests = urls("http", port, "/fail", FAILS);
    requests.extend(urls("http", port, "/users/12345?token=secret-one", OKS / 2));
    requests.extend(urls("http", port, "/users/67890?token=secret-two", OKS / 2));
    requests.extend(urls("http", port, "/slow", SLOW));
    let codes = curl_as(&client, &requests);
    assert_eq!(codes.iter().filter(|&&c| c == 500).count(), FAILS);

    let labels = |status, route| get_served(&server, status, route);
    let scrape = scrape_when(
        &agent,
        SERVER,
        &[
            (labels("500", "/fail"), FAILS as f64),
            (labels("200", "/users/{id}"), OKS as f64),
            (labels("200", "/slow"), SLOW as f64),
        ],
    );
    assert!(
        !scrape.text.contains("secret") && !scrape.text.contains("token"),
        "a query string leaked into /metrics"
    );

    // 50 ms lies in (2^25 ns, 2^26 ns] = (0.033554432 s, 0.067108864 s]: the server side sees
    // the sleep plus microseconds; the client side adds one loopback round trip.
    for (family, comm) in [(SERVER, &server), (CLIENT, &client)] {
        let bucket = |le| {
            let mut labels = vec![("comm", comm.as_str()), ("le", le)];
            if family == SERVER {
                labels.push(("http_route", "/slow"));
            } else {
                labels.push(("http_response_status_code", "200"));
            }
            scrape.value(&format!("{family}_bucket"), &labels)
        };
        let slow_or_all = if family == SERVER { 0.0 } else { OKS as f64 };
        assert_eq!(
            bucket("0.033554432"),
            Some(slow_or_all),
            "{family}: nothing of /slow at or below 33.5 ms"
        );
        assert_eq!(
            bucket("0.067108864"),
            Some(slow_or_all + SLOW as f64),
            "{family}: every /slow request within 67.1 ms"
        );
    }
}

/// Paths that carry an e-mail address, a session id, a reset token, a card number or an IP
/// address, against an unmodified server: each lands on a redacted route, and none of the
/// personal or secret text reaches /metrics.
#[test]
fn personal_data_in_paths_never_reaches_a_label() {
    let agent = Agent::start(&[]);
    let server = unique_comm("pypriv");
    let client = unique_comm("curlpriv");
    let (_python, port) = python_server(&server);
    let paths = [
        ("/u/jane.roe@example.org/orders", "/u/{id}/orders"),
        ("/u/jane.roe%40example.org/orders", "/u/{id}/orders"),
        ("/cart;jsessionid=Q7ZK2M9XW4", "/cart"),
        ("/reset/kP9qLm2Xw7RtYaZ3", "/reset/{id}"),
        ("/v1/cards/4111-1111-1111-1111", "/v1/cards/{id}"),
        ("/hosts/10.1.2.3", "/hosts/{id}"),
    ];
    let requests: Vec<String> = paths
        .iter()
        .flat_map(|(path, _)| urls("http", port, path, 1))
        .collect();
    let codes = curl_as(&client, &requests);
    assert!(codes.iter().all(|&code| code == 200), "{codes:?}");

    let expected = [
        (get_served(&server, "200", "/u/{id}/orders"), 2.0),
        (get_served(&server, "200", "/cart"), 1.0),
        (get_served(&server, "200", "/reset/{id}"), 1.0),
        (get_served(&server, "200", "/v1/cards/{id}"), 1.0),
        (get_served(&server, "200", "/hosts/{id}"), 1.0),
    ];
    let scrape = scrape_when(&agent, SERVER, &expected);
    assert_eq!(
        scrape
            .matching(&format!("{SERVER}_count"), &[("comm", &server)])
            .count(),
        expected.len(),
        "no other route for the server"
    );
    for secret in [
        "jane",
        "roe",
        "example.org",
        "jsessionid",
        "Q7ZK2M9XW4",
        "kP9qLm2Xw7RtYaZ3",
        "4111",
        "10.1.2.3",
    ] {
        // Labels and the help text, not sample values: a value such as 0.004111 is no leak.
        let in_labels = scrape.samples.iter().any(|sample| {
            sample
                .labels
                .iter()
                .any(|(name, value)| name.contains(secret) || value.contains(secret))
        });
        let in_comments = scrape
            .text
            .lines()
            .filter(|line| line.starts_with('#'))
            .any(|line| line.contains(secret));
        assert!(!in_labels && !in_comments, "{secret} reached /metrics");
    }
}
