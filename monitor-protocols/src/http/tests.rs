//! Byte fixtures fed through [`Connection`], as the agent will: detection included.
use super::*;
use crate::{
    Connection,
    Direction::*,
    test_io::{Io, feed, io},
};

/// Only the first `captured` bytes of `data` were captured.
fn cut(direction: Direction, data: &[u8], captured: usize, ts: u64) -> Io<'_> {
    Io(direction, data.len() as u64, &data[..captured], ts)
}

fn run_on(connection: &mut Connection, ios: &[Io<'_>]) -> Vec<HttpExchange> {
    feed(connection, ios)
        .into_iter()
        .map(|exchange| match exchange {
            Exchange::Http(http) => http,
            other => panic!("not HTTP: {other:?}"),
        })
        .collect()
}

fn run(ios: &[Io<'_>]) -> Vec<HttpExchange> {
    let parsed = run_on(&mut Connection::new(), ios);
    // The probes keep no route for clients: it has no label there.
    let mut expected = parsed.clone();
    for exchange in &mut expected {
        if exchange.role == Role::Client {
            exchange.route.clear();
        }
    }
    assert_eq!(
        twin(ios),
        expected,
        "the kernel's framing disagrees with the parser"
    );
    parsed
}

/// The same read/writes through the framing the probes run.
fn twin(ios: &[Io<'_>]) -> Vec<HttpExchange> {
    twin_on(&mut kernel::KernelTwin::new(), ios)
}

fn twin_on(twin: &mut kernel::KernelTwin, ios: &[Io<'_>]) -> Vec<HttpExchange> {
    let mut out = Vec::new();
    for io in ios {
        twin.feed(&io.chunk(), &mut out);
    }
    out
}

/// (method, status, route, duration) of each exchange.
fn summary(exchanges: &[HttpExchange]) -> Vec<(&str, u16, &str, u64)> {
    exchanges
        .iter()
        .map(|e| (e.method.as_str(), e.status, e.route.as_str(), e.duration_ns))
        .collect()
}

const OK_HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn simple_get_server_side() {
    let exchanges = run(&[
        io(
            Ingress,
            b"GET /users/42 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            1_000,
        ),
        io(Egress, OK_HELLO, 3_500),
    ]);
    assert_eq!(
        exchanges,
        [HttpExchange {
            role: Role::Server,
            method: Method::Get,
            status: 200,
            route: "/users/{id}".into(),
            duration_ns: 2_500,
            host: None,
            version: HttpVersion::Http11,
        }]
    );
}

#[test]
fn keep_alive_three_requests() {
    let exchanges = run(&[
        io(Ingress, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 10),
        io(Egress, OK_HELLO, 20),
        io(
            Ingress,
            b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz",
            30,
        ),
        io(
            Egress,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            45,
        ),
        io(Ingress, b"DELETE /c/7 HTTP/1.1\r\n\r\n", 50),
        io(
            Egress,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
            80,
        ),
    ]);
    assert_eq!(
        summary(&exchanges),
        [
            ("GET", 200, "/a", 10),
            ("POST", 201, "/b", 15),
            ("DELETE", 404, "/c/{id}", 30)
        ]
    );
}

#[test]
fn request_split_at_awkward_places() {
    // Inside the request line, inside a header, and between the head and the body; then a
    // second request proves the body was consumed exactly.
    let exchanges = run(&[
        io(Ingress, b"POST /api/it", 100),
        io(Ingress, b"ems HTTP/1.1\r\nContent-Le", 110),
        io(Ingress, b"ngth: 11\r\nHost: h\r\n\r\n", 120),
        io(Ingress, b"hello world", 130),
        io(
            Egress,
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
            150,
        ),
        io(Ingress, b"GET /next HTTP/1.1\r\n\r\n", 200),
        io(Egress, OK_HELLO, 210),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("POST", 202, "/api/items", 50), ("GET", 200, "/next", 10)]
    );
}

#[test]
fn content_length_body_larger_than_the_capture_is_skipped_by_count() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n";
    let mut first = head.to_vec();
    first.resize(head.len() + 8000, b'x');
    let rest = vec![b'y'; 12000];
    let exchanges = run(&[
        io(Ingress, b"GET /big HTTP/1.1\r\n\r\n", 1),
        cut(Egress, &first, 256, 2),
        cut(Egress, &rest[..7000], 256, 3),
        cut(Egress, &rest[7000..], 256, 4),
        io(Ingress, b"GET /small HTTP/1.1\r\n\r\n", 5),
        io(Egress, OK_HELLO, 6),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("GET", 200, "/big", 1), ("GET", 200, "/small", 1)]
    );
}

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn chunked_response_across_chunks() {
    let exchanges = run(&[
        io(Ingress, b"GET /stream HTTP/1.1\r\n\r\n", 1),
        io(Egress, CHUNKED_HEAD, 2),
        io(Egress, b"5\r\nhel", 3),
        io(Egress, b"lo\r\n6;ext=1\r\n world\r", 4),
        io(Egress, b"\n0\r\nTrailer: x\r\n\r\n", 5),
        io(Ingress, b"GET /after HTTP/1.1\r\n\r\n", 6),
        io(Egress, OK_HELLO, 9),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("GET", 200, "/stream", 1), ("GET", 200, "/after", 3)]
    );
}

#[test]
fn chunked_data_truncated_by_the_capture_is_skipped_by_count() {
    let mut body = b"1000\r\n".to_vec();
    body.resize(6 + 0x1000, b'z');
    body.extend_from_slice(b"\r\n");
    let exchanges = run(&[
        io(Ingress, b"GET /a HTTP/1.1\r\n\r\n", 1),
        io(Egress, CHUNKED_HEAD, 2),
        // The gap ends exactly after the chunk's CRLF: still in sync.
        cut(Egress, &body, 100, 3),
        io(Egress, b"0\r\n\r\n", 4),
        io(Ingress, b"GET /b HTTP/1.1\r\n\r\n", 5),
        io(Egress, OK_HELLO, 6),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("GET", 200, "/a", 1), ("GET", 200, "/b", 1)]
    );
}

#[test]
fn chunked_size_line_lost_in_a_gap_resynchronises_on_the_next_response() {
    let mut body = b"10\r\n0123456789abcdef\r\n".to_vec();
    body.extend_from_slice(b"2000\r\n");
    body.resize(body.len() + 0x2000, b'z');
    let exchanges = run(&[
        io(Ingress, b"GET /a HTTP/1.1\r\n\r\n", 1),
        io(Egress, CHUNKED_HEAD, 2),
        // The capture ends inside the first chunk; the gap hides the second size line.
        cut(Egress, &body, 10, 3),
        io(Egress, b"\r\n0\r\n\r\n", 4),
        io(Ingress, b"GET /b HTTP/1.1\r\n\r\n", 5),
        io(
            Egress,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
            7,
        ),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("GET", 200, "/a", 1), ("GET", 500, "/b", 2)]
    );
}

#[test]
fn head_response_has_no_body_despite_its_content_length() {
    let exchanges = run(&[
        io(Ingress, b"HEAD /file HTTP/1.1\r\n\r\n", 1),
        io(
            Egress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            2,
        ),
        io(Ingress, b"GET /file HTTP/1.1\r\n\r\n", 3),
        io(Egress, OK_HELLO, 4),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("HEAD", 200, "/file", 1), ("GET", 200, "/file", 1)]
    );
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let exchanges = run(&[
        io(Ingress, b"PUT /k HTTP/1.1\r\nContent-Length: 1\r\n\r\nv", 1),
        io(Egress, b"HTTP/1.1 204 No Content\r\n\r\n", 2),
        io(
            Ingress,
            b"GET /k HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n",
            3,
        ),
        // 304 carries the Content-Length of the representation it stands for.
        io(
            Egress,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",
            4,
        ),
        io(Ingress, b"GET /k HTTP/1.1\r\n\r\n", 5),
        io(Egress, OK_HELLO, 6),
    ]);
    assert_eq!(
        summary(&exchanges),
        [
            ("PUT", 204, "/k", 1),
            ("GET", 304, "/k", 1),
            ("GET", 200, "/k", 1)
        ]
    );
}

#[test]
fn expect_100_continue_waits_for_the_final_response() {
    let exchanges = run(&[
        io(
            Ingress,
            b"POST /upload HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
            10,
        ),
        io(Egress, b"HTTP/1.1 100 Continue\r\n\r\n", 11),
        io(Ingress, b"data", 12),
        io(
            Egress,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            40,
        ),
    ]);
    assert_eq!(summary(&exchanges), [("POST", 201, "/upload", 30)]);
}

#[test]
fn pipelined_requests_pair_in_order() {
    let exchanges = run(&[
        io(
            Ingress,
            b"GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\n\r\nHEAD /three HTTP/1.1\r\n\r\n",
            5,
        ),
        io(
            Egress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1\
              HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            8,
        ),
    ]);
    assert_eq!(
        summary(&exchanges),
        [
            ("GET", 200, "/one", 3),
            ("GET", 404, "/two", 3),
            ("HEAD", 200, "/three", 3)
        ]
    );
}

#[test]
fn query_strings_never_reach_the_output() {
    let exchanges = run(&[
        io(
            Egress,
            b"GET /login?token=secret&user=bob#frag HTTP/1.1\r\nHost: h\r\n\r\n",
            1,
        ),
        io(Ingress, OK_HELLO, 2),
        io(
            Egress,
            b"GET http://proxy.example/p?token=secret HTTP/1.1\r\n\r\n",
            3,
        ),
        io(Ingress, OK_HELLO, 4),
    ]);
    assert_eq!(exchanges.len(), 2);
    let printed = format!("{exchanges:?}");
    assert!(
        !printed.contains("secret") && !printed.contains("token"),
        "{printed}"
    );
    assert_eq!(exchanges[0].route, "/login");
    assert_eq!(exchanges[1].route, "/p");
}

#[test]
fn routes_are_normalised() {
    let mut ios = Vec::new();
    let targets: [&[u8]; 4] = [
        b"GET /users/12345 HTTP/1.1\r\n\r\n",
        b"GET /users/67890 HTTP/1.1\r\n\r\n",
        b"GET /orders/123e4567-e89b-12d3-a456-426614174000/items HTTP/1.1\r\n\r\n",
        b"GET /files/9f86d081884c7d65/raw HTTP/1.1\r\n\r\n",
    ];
    for (ts, target) in targets.iter().enumerate() {
        ios.push(io(Ingress, target, ts as u64));
        ios.push(io(Egress, OK_HELLO, ts as u64));
    }
    let routes: Vec<String> = run(&ios).into_iter().map(|e| e.route).collect();
    assert_eq!(
        routes,
        [
            "/users/{id}",
            "/users/{id}",
            "/orders/{id}/items",
            "/files/{id}/raw"
        ]
    );
}

#[test]
fn unknown_methods_are_other() {
    let exchanges = run(&[
        io(Ingress, b"PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\n", 1),
        io(
            Egress,
            b"HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n",
            2,
        ),
        io(Ingress, b"PURGE /cache HTTP/1.1\r\n\r\n", 3),
        io(Egress, OK_HELLO, 4),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("_OTHER", 207, "/dav/", 1), ("_OTHER", 200, "/cache", 1)]
    );
    assert_eq!(Method::from_token(b"get"), Method::Other);
}

#[test]
fn tls_and_binary_connections_are_ignored() {
    let client_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xf1, 0x01, 0x00, 0x00, 0xed, 0x03, 0x03, 0x5a, 0x1c, 0x7e,
    ];
    let server_hello: &[u8] = &[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76];
    let mut connection = Connection::new();
    let exchanges = run_on(
        &mut connection,
        &[
            cut(Egress, client_hello, 10, 1),
            io(Ingress, server_hello, 2),
            io(Egress, &[0x17, 0x03, 0x03, 0x00, 0x20, 0xde, 0xad], 3),
            // Even bytes that look like HTTP later on are not parsed.
            io(Egress, b"GET / HTTP/1.1\r\n\r\n", 4),
            io(Ingress, OK_HELLO, 5),
        ],
    );
    assert!(exchanges.is_empty());
    assert!(connection.is_ignored());

    for garbage in [
        &b"\x00\x00\x00\x08\x04\xd2\x16\x2f"[..],
        b"EHLO mail.example\r\n",
    ] {
        assert_eq!(
            detect(&chunk_of(garbage)),
            Detection::NoMatch,
            "{garbage:?}"
        );
    }
    assert_eq!(
        detect(&chunk_of(b"*2\r\n$3\r\nGET\r\n")),
        Detection::NoMatch
    );
    assert_eq!(
        detect(&chunk_of(b"GET key\r\n")),
        Detection::NoMatch,
        "Redis inline"
    );
}

fn chunk_of(data: &[u8]) -> Chunk<'_> {
    Chunk {
        direction: Ingress,
        total_len: data.len() as u64,
        data,
        timestamp_ns: 0,
    }
}

#[test]
fn detection_needs_a_plausible_request_start() {
    assert_eq!(detect(&chunk_of(b"GET /")), Detection::Match);
    assert_eq!(
        detect(&chunk_of(b"OPTIONS * HTTP/1.1\r\n")),
        Detection::Match
    );
    assert_eq!(
        detect(&chunk_of(b"M-SEARCH * HTTP/1.1\r\n")),
        Detection::Match
    );
    assert_eq!(
        detect(&chunk_of(b"CONNECT h:443 HTTP/1.1\r\n")),
        Detection::Match
    );
    assert_eq!(detect(&chunk_of(b"PROPFIND /x")), Detection::NeedMore);
    assert_eq!(detect(&chunk_of(b"GE")), Detection::NeedMore);
    assert_eq!(
        detect(&chunk_of(b"HTTP/1.1 200 OK\r\n")),
        Detection::NoMatch
    );
    let truncated = Chunk {
        total_len: 1000,
        ..chunk_of(b"PROPFIND /x")
    };
    assert_eq!(detect(&truncated), Detection::NoMatch);
}

#[test]
fn client_side_reports_the_host() {
    let exchanges = run(&[
        io(
            Egress,
            b"GET /v1/items?page=2 HTTP/1.1\r\nHost: api.example.com:8080\r\nAccept: */*\r\n\r\n",
            1_000,
        ),
        io(Ingress, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", 4_000),
        io(Ingress, b"\r\n{}", 4_100),
    ]);
    assert_eq!(
        exchanges,
        [HttpExchange {
            role: Role::Client,
            method: Method::Get,
            status: 200,
            route: "/v1/items".into(),
            duration_ns: 3_000,
            host: Some("api.example.com:8080".into()),
            version: HttpVersion::Http11,
        }]
    );
    assert_eq!(
        split_host_port("api.example.com:8080"),
        ("api.example.com", Some(8080))
    );
    assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
    assert_eq!(split_host_port("example.com"), ("example.com", None));
}

#[test]
fn server_errors_are_reported() {
    let exchanges = run(&[
        io(
            Ingress,
            b"POST /pay HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            1,
        ),
        io(Ingress, b"3\r\nabc\r\n0\r\n\r\n", 2),
        io(
            Egress,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!",
            9,
        ),
        io(Ingress, b"GET /health HTTP/1.1\r\n\r\n", 10),
        io(Egress, b"HTTP/1.0 503 Service Unavailable\r\n\r\n", 11),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("POST", 500, "/pay", 8), ("GET", 503, "/health", 1)]
    );
}

#[test]
fn a_head_cut_by_the_capture_keeps_its_start_line_and_resynchronises() {
    // Big cookies: the request head does not fit the capture, nor does the response's.
    let mut request = b"GET /dashboard HTTP/1.1\r\nCookie: ".to_vec();
    request.resize(3000, b'c');
    request.extend_from_slice(b"\r\n\r\n");
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Security-Policy: ".to_vec();
    response.resize(2000, b'p');
    response.extend_from_slice(b"\r\nContent-Length: 100\r\n\r\n");
    let exchanges = run(&[
        cut(Ingress, &request, 512, 1),
        cut(Egress, &response, 512, 2),
        io(Egress, &[b'b'; 100], 3),
        io(Ingress, b"GET /next HTTP/1.1\r\n\r\n", 4),
        io(Egress, OK_HELLO, 5),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("GET", 200, "/dashboard", 1), ("GET", 200, "/next", 1)]
    );
}

#[test]
fn a_request_line_cut_inside_the_path_drops_the_cut_segment() {
    let mut request = b"GET /assets/".to_vec();
    request.resize(2000, b'a');
    request.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    let exchanges = run(&[cut(Ingress, &request, 256, 1), io(Egress, OK_HELLO, 2)]);
    assert_eq!(exchanges[0].route, "/assets/{truncated}");
}

#[test]
fn an_overlong_header_line_gives_the_message_up_within_the_memory_cap() {
    let mut connection = Connection::new();
    let mut ios = vec![io(Ingress, b"GET /huge HTTP/1.1\r\nX-Big: ", 1)];
    let filler = [b'f'; 1000];
    for ts in 0..10 {
        ios.push(io(Ingress, &filler, 2 + ts));
    }
    ios.push(io(Ingress, b"\r\n\r\n", 20));
    ios.push(io(
        Egress,
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
        30,
    ));
    ios.push(io(Ingress, b"GET /ok HTTP/1.1\r\n\r\n", 40));
    ios.push(io(Egress, OK_HELLO, 41));
    let exchanges = run_on(&mut connection, &ios);
    assert_eq!(
        summary(&exchanges),
        [("GET", 431, "/huge", 29), ("GET", 200, "/ok", 1)]
    );
}

#[test]
fn many_unanswered_requests_stay_within_the_memory_cap() {
    let mut connection = Connection::new();
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: {}\r\n\r\n",
        "p".repeat(3000),
        "h".repeat(250)
    );
    let ios: Vec<Io<'_>> = (0..50).map(|ts| io(Egress, long.as_bytes(), ts)).collect();
    assert!(run_on(&mut connection, &ios).is_empty());
}

#[test]
fn a_response_after_lost_responses_answers_the_newest_request() {
    let mut chunked_gap = CHUNKED_HEAD.to_vec();
    chunked_gap.extend_from_slice(b"100\r\n");
    chunked_gap.resize(chunked_gap.len() + 0x100 + 200, b'z');
    let exchanges = run(&[
        io(Ingress, b"GET /a HTTP/1.1\r\n\r\n", 1),
        // The head is seen, the framing of the body lost: /a's response is reported...
        cut(Egress, &chunked_gap, CHUNKED_HEAD.len() + 10, 2),
        io(Ingress, b"GET /b HTTP/1.1\r\n\r\n", 3),
        // ...then the rest of it, /b's response somewhere inside: skipped whole.
        io(Egress, b"more body bytes", 4),
        io(Ingress, b"GET /c HTTP/1.1\r\n\r\n", 5),
        io(Egress, OK_HELLO, 7),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("GET", 200, "/a", 1), ("GET", 200, "/c", 2)]
    );
}

#[test]
fn upgrade_and_connect_end_the_parsing() {
    let mut connection = Connection::new();
    let exchanges = run_on(
        &mut connection,
        &[
            io(
                Ingress,
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
                1,
            ),
            io(Egress, b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 2),
            io(Ingress, b"GET /not-http HTTP/1.1\r\n\r\n", 3),
            io(Egress, OK_HELLO, 4),
        ],
    );
    assert_eq!(summary(&exchanges), [("GET", 101, "/ws", 1)]);
    assert!(connection.is_ignored());

    let mut connection = Connection::new();
    let exchanges = run_on(
        &mut connection,
        &[
            io(
                Egress,
                b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n",
                1,
            ),
            io(Ingress, b"HTTP/1.1 200 Connection established\r\n\r\n", 2),
        ],
    );
    assert_eq!(summary(&exchanges), [("CONNECT", 200, "{authority}", 1)]);
    assert!(connection.is_ignored());
}

#[test]
fn a_response_without_length_lasts_until_the_close() {
    let exchanges = run(&[
        io(Ingress, b"GET /old HTTP/1.0\r\n\r\n", 1),
        io(Egress, b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 2),
        io(
            Egress,
            b"HTTP/1.1 500 looks like a response but is body\r\n\r\n",
            3,
        ),
    ]);
    assert_eq!(summary(&exchanges), [("GET", 200, "/old", 1)]);
    assert_eq!(exchanges[0].version, HttpVersion::Http10);
}

/// `network_protocol_version` is the request line's, whatever the response's says: servers
/// answer a 1.0 request with their own version.
#[test]
fn the_version_is_the_request_lines() {
    // (requests, responses): a server reads the requests, a client writes them.
    for (requests, responses) in [(Ingress, Egress), (Egress, Ingress)] {
        let exchanges = run(&[
            io(
                requests,
                b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                1,
            ),
            io(
                responses,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                2,
            ),
            io(requests, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n", 3),
            io(responses, b"HTTP/1.1 204 No Content\r\n\r\n", 4),
        ]);
        let versions: Vec<_> = exchanges.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(versions, ["1.0", "1.1"], "requests {requests:?}");
    }
}

#[test]
fn responses_without_a_request_are_dropped() {
    let mut parser = HttpParser::new();
    let mut out = Vec::new();
    for (direction, data) in [
        (Egress, &b"HTTP/1.1 200 OK\r\n\r\n"[..]),
        (Ingress, b"GET / HTTP/1.1\r\n\r\n"),
        (Egress, b"HTTP/1.1 204 No Content\r\n\r\n"),
        (Egress, b"HTTP/1.1 200 OK\r\n\r\n"),
    ] {
        parser.feed(
            &Chunk {
                direction,
                total_len: data.len() as u64,
                data,
                timestamp_ns: 0,
            },
            &mut out,
        );
    }
    assert_eq!(out.len(), 1);
}

#[test]
fn a_connection_caught_mid_stream_locks_on_the_next_request() {
    let exchanges = run(&[
        io(
            Egress,
            b"tail of a body the agent started too late to see",
            1,
        ),
        io(Ingress, b"GET /next HTTP/1.1\r\n\r\n", 2),
        io(Egress, OK_HELLO, 3),
    ]);
    assert_eq!(summary(&exchanges), [("GET", 200, "/next", 1)]);
}

/// What only the kernel's framing has: a bounded number of windows per read/write, and a
/// socket left for good once it stops being HTTP.
mod kernel_framing {
    use super::*;
    use monitor_framing::{MAX_WINDOWS, WINDOW};

    const BUDGET: usize = MAX_WINDOWS as usize * WINDOW;

    #[test]
    fn a_head_longer_than_the_window_budget_still_counts_its_request_line() {
        let cookie = "c".repeat(BUDGET);
        let big = format!("GET /big HTTP/1.1\r\nCookie: {cookie}\r\n\r\n");
        let exchanges = twin(&[
            io(Ingress, big.as_bytes(), 10),
            io(Egress, OK_HELLO, 20),
            // The request side lost its framing inside that head and finds it again here.
            io(Ingress, b"GET /next HTTP/1.1\r\n\r\n", 30),
            io(Egress, OK_HELLO, 45),
        ]);
        assert_eq!(
            summary(&exchanges),
            [("GET", 200, "/big", 10), ("GET", 200, "/next", 15)]
        );
    }

    /// The integration test's 1 MiB chunked body (`tests/tests/http_framing.rs`): chunks of
    /// 1 to 70,000 bytes, cut into writes of 3 to 250,000 bytes that start anywhere, every
    /// other one at a fake status line inside the data, with a request pipelined behind it.
    #[test]
    fn a_one_mib_chunked_body_in_writes_that_start_anywhere_keeps_the_framing() {
        const FAKE: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
        let total = 1 << 20;
        let body: Vec<u8> = FAKE.iter().copied().cycle().take(total).collect();
        let sizes = [1, 13, 100, 511, 512, 513, 4096, 9000, 65529, 70000, 2, 300];
        let (mut encoded, mut sent, mut chunks) = (Vec::new(), 0, 0);
        while sent < total {
            let n = sizes[chunks % sizes.len()].min(total - sent);
            encoded.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            encoded.extend_from_slice(&body[sent..sent + n]);
            encoded.extend_from_slice(b"\r\n");
            (sent, chunks) = (sent + n, chunks + 1);
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        let mut ios = vec![
            io(
                Ingress,
                b"GET /big HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n",
                1,
            ),
            io(
                Egress,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                2,
            ),
        ];
        let cuts = [7, 1000, 100000, 3, 250000, 4096, 65536, 517];
        let (mut at, mut writes) = (0, 0);
        while at < encoded.len() {
            let mut end = (at + cuts[writes % cuts.len()]).min(encoded.len());
            if writes % 2 == 1 {
                end = encoded[end..]
                    .windows(12)
                    .position(|w| w == &FAKE[..12])
                    .map_or(encoded.len(), |p| end + p);
            }
            ios.push(io(Egress, &encoded[at..end], 3));
            (at, writes) = (end, writes + 1);
        }
        ios.push(io(
            Egress,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            9,
        ));
        assert_eq!(
            summary(&twin(&ios)),
            [("GET", 200, "/big", 1), ("GET", 404, "/after", 8)]
        );
    }

    #[test]
    fn pipelined_requests_in_one_read_and_responses_in_one_write() {
        let requests = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzDELETE /c HTTP/1.1\r\n\r\n";
        let mut responses = Vec::new();
        for status in ["200 OK", "201 Created", "204 No Content"] {
            let length = if status.starts_with("204") {
                ""
            } else {
                "Content-Length: 2\r\n"
            };
            let body = if status.starts_with("204") { "" } else { "ok" };
            responses
                .extend_from_slice(format!("HTTP/1.1 {status}\r\n{length}\r\n{body}").as_bytes());
        }
        let exchanges = run(&[io(Ingress, requests, 1), io(Egress, &responses, 5)]);
        assert_eq!(
            summary(&exchanges),
            [
                ("GET", 200, "/a", 4),
                ("POST", 201, "/b", 4),
                ("DELETE", 204, "/c", 4)
            ]
        );
    }

    #[test]
    fn a_one_mebibyte_chunked_response_is_skipped_by_count() {
        let mut ios_data: Vec<Vec<u8>> = vec![
            b"GET /stream HTTP/1.1\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ];
        // Chunks of varying sizes, one write each, their data mostly past what is read.
        let mut sent = 0;
        let mut size = 1000;
        while sent < 1 << 20 {
            let mut chunk = format!("{size:x}\r\n").into_bytes();
            chunk.extend(std::iter::repeat_n(b'H', size));
            chunk.extend_from_slice(b"\r\n");
            ios_data.push(chunk);
            sent += size;
            size = size * 7 % 65_521 + 1;
        }
        ios_data.push(b"0\r\n\r\n".to_vec());
        ios_data.push(b"GET /after HTTP/1.1\r\n\r\n".to_vec());
        ios_data.push(OK_HELLO.to_vec());
        let ios: Vec<Io<'_>> = ios_data
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let direction = match i {
                    0 => Ingress,
                    n if n == ios_data.len() - 2 => Ingress,
                    _ => Egress,
                };
                // What the probes read of a write is its first iovec; say it was all of it.
                io(direction, data, i as u64)
            })
            .collect();
        let exchanges = run(&ios);
        assert_eq!(
            summary(&exchanges),
            [("GET", 200, "/stream", 1), ("GET", 200, "/after", 1)]
        );
    }

    #[test]
    fn after_an_upgrade_or_a_tunnel_the_socket_is_left_alone() {
        for (request, response) in [
            (
                &b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
                &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"[..],
            ),
            (
                &b"CONNECT db.internal:5432 HTTP/1.1\r\n\r\n"[..],
                &b"HTTP/1.1 200 Connection Established\r\n\r\n"[..],
            ),
        ] {
            let mut twin = kernel::KernelTwin::new();
            let out = twin_on(
                &mut twin,
                &[io(Ingress, request, 1), io(Egress, response, 2)],
            );
            assert_eq!(out.len(), 1);
            assert!(twin.is_ignored(), "framing goes on after {response:?}");
            // What crosses the socket afterwards, HTTP-looking or not, is never looked at.
            let inside = [
                io(Ingress, b"GET /inside HTTP/1.1\r\n\r\n", 3),
                io(Egress, OK_HELLO, 4),
            ];
            assert!(twin_on(&mut twin, &inside).is_empty());
        }
    }

    #[test]
    fn a_socket_that_only_looked_like_http_is_given_up() {
        // A Redis inline command starts like a request, then is not one.
        let mut twin = kernel::KernelTwin::new();
        for _ in 0..monitor_framing::MAX_MISSES {
            let command = [
                io(Egress, b"GET session:42\r\n", 1),
                io(Ingress, b"$5\r\nhello\r\n", 2),
            ];
            assert!(twin_on(&mut twin, &command).is_empty());
        }
        assert!(twin.is_ignored());
    }
}
