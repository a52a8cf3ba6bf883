use super::*;
use crate::{Connection, test_io::io};

use Direction::{Egress, Ingress};

fn chunk(direction: Direction, data: &[u8], at: u64) -> Chunk<'_> {
    io(direction, data, at).chunk()
}

/// A frame: its 9-byte head, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = length.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// HPACK, the few representations these tests need (strings shorter than 127 bytes).
enum Field<'a> {
    /// An entry of the static or dynamic table.
    Indexed(u8),
    /// A new name and value, added to the dynamic table.
    Indexing(&'a str, &'a str),
    /// A new name and value, not added.
    Plain(&'a str, &'a str),
}

fn block(fields: &[Field]) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, text: &str| {
        out.push(text.len() as u8);
        out.extend(text.as_bytes());
    };
    let mut out = Vec::new();
    for field in fields {
        match *field {
            Field::Indexed(index) => out.push(0x80 | index),
            Field::Indexing(name, value) => {
                out.push(0x40);
                string(&mut out, name);
                string(&mut out, value);
            }
            Field::Plain(name, value) => {
                out.push(0x00);
                string(&mut out, name);
                string(&mut out, value);
            }
        }
    }
    out
}

fn headers(stream: u32, flags: u8, fields: &[Field]) -> Vec<u8> {
    frame(HEADERS, flags | END_HEADERS, stream, &block(fields))
}

const SETTINGS_EMPTY: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn preface_and_settings() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(SETTINGS_EMPTY);
    out
}

/// Feeds (direction, bytes, timestamp) chunks, fully captured, to a connection.
fn run(chunks: &[(Direction, Vec<u8>, u64)]) -> Vec<Exchange> {
    let mut connection = Connection::new();
    let mut out = Vec::new();
    for (direction, data, at) in chunks {
        connection.feed(&chunk(*direction, data, *at), &mut out);
    }
    assert_eq!(connection.protocol(), Some("http2"), "{out:?}");
    out
}

fn http(exchange: &Exchange) -> &HttpExchange {
    match exchange {
        Exchange::Http(http) => http,
        other => panic!("not HTTP: {other:?}"),
    }
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    // :method GET (2), :scheme http (6), :path, :authority.
    headers(
        stream,
        END_STREAM,
        &[
            Field::Indexed(2),
            Field::Indexed(6),
            Field::Plain(":path", path),
            Field::Plain(":authority", "shop.internal:8080"),
            Field::Plain("authorization", "Bearer secret-token"),
        ],
    )
}

#[test]
fn a_server_counts_each_stream_with_its_route_status_and_version() {
    let mut request = preface_and_settings();
    request.extend(get(1, "/users/42?email=a@b.example"));
    let mut response = frame(4, 0, 0, &[]);
    // :status 404 (13), then the body.
    response.extend(headers(1, 0, &[Field::Indexed(13)]));
    response.extend(frame(DATA, END_STREAM, 1, b"not found"));
    let exchanges = run(&[(Ingress, request, 1_000), (Egress, response, 4_000)]);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(
        http(&exchanges[0]),
        &HttpExchange {
            role: Role::Server,
            method: Method::Get,
            status: 404,
            route: "/users/{id}".into(),
            duration_ns: 3_000,
            host: None,
            version: HttpVersion::Http2,
        }
    );
}

#[test]
fn a_client_matches_multiplexed_streams_answered_out_of_order() {
    let mut requests = preface_and_settings();
    requests.extend(get(1, "/a"));
    requests.extend(get(3, "/b"));
    let mut answers = headers(3, END_STREAM, &[Field::Indexed(8)]);
    answers.extend(headers(1, END_STREAM, &[Field::Indexed(13)]));
    let exchanges = run(&[(Egress, requests, 100), (Ingress, answers, 900)]);
    let got: Vec<(u16, Option<&str>, Role)> = exchanges
        .iter()
        .map(http)
        .map(|http| (http.status, http.host.as_deref(), http.role))
        .collect();
    assert_eq!(
        got,
        [
            (200, Some("shop.internal:8080"), Role::Client),
            (404, Some("shop.internal:8080"), Role::Client)
        ]
    );
}

#[test]
fn the_dynamic_table_is_followed_across_requests() {
    let mut first = preface_and_settings();
    first.extend(headers(
        1,
        END_STREAM,
        &[Field::Indexed(2), Field::Indexing(":path", "/orders/7")],
    ));
    // The second request names its path by the dynamic table's first entry (62).
    let second = headers(3, END_STREAM, &[Field::Indexed(2), Field::Indexed(62)]);
    let exchanges = run(&[
        (Ingress, first, 0),
        (Egress, headers(1, END_STREAM, &[Field::Indexed(8)]), 10),
        (Ingress, second, 20),
        (Egress, headers(3, END_STREAM, &[Field::Indexed(8)]), 30),
    ]);
    let routes: Vec<&str> = exchanges.iter().map(|e| http(e).route.as_str()).collect();
    assert_eq!(routes, ["/orders/{id}", "/orders/{id}"]);
}

#[test]
fn a_header_block_in_continuations_with_padding_and_priority_is_read_whole() {
    let whole = block(&[Field::Indexed(3), Field::Plain(":path", "/upload")]);
    let (first, rest) = whole.split_at(3);
    // PADDED and PRIORITY: pad length, 5 bytes of priority, the fragment, the padding.
    let mut payload = vec![2];
    payload.extend([0, 0, 0, 0, 16]);
    payload.extend(first);
    payload.extend([0, 0]);
    let mut request = preface_and_settings();
    request.extend(frame(HEADERS, PADDED | PRIORITY, 1, &payload));
    request.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    request.extend(frame(DATA, END_STREAM, 1, b"{}"));
    let exchanges = run(&[
        (Ingress, request, 0),
        (Egress, headers(1, END_STREAM, &[Field::Indexed(8)]), 5),
    ]);
    let http = http(&exchanges[0]);
    assert_eq!(
        (http.method, http.route.as_str()),
        (Method::Post, "/upload")
    );
}

fn grpc_request(stream: u32, method: &str) -> Vec<u8> {
    headers(
        stream,
        0,
        &[
            Field::Indexed(3),
            Field::Plain(":path", method),
            Field::Plain("content-type", "application/grpc"),
        ],
    )
}

fn grpc_call(stream: u32) -> Vec<u8> {
    let mut out = grpc_request(stream, "/shop.Cart/Add");
    out.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 2, 8, 1]));
    out
}

fn grpc(exchange: &Exchange) -> &GrpcExchange {
    match exchange {
        Exchange::Grpc(call) => call,
        other => panic!("not gRPC: {other:?}"),
    }
}

#[test]
fn grpc_calls_end_at_their_trailers_with_the_status_by_name() {
    let mut request = preface_and_settings();
    request.extend(grpc_call(1));
    request.extend(grpc_call(3));
    // Stream 1: headers, a message, trailers (grpc-status 5). Stream 3: trailers only.
    let mut answer = headers(
        1,
        0,
        &[
            Field::Indexed(8),
            Field::Plain("content-type", "application/grpc"),
        ],
    );
    answer.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 0]));
    let trailers = headers(
        1,
        END_STREAM,
        &[
            Field::Plain("grpc-status", "5"),
            Field::Plain("grpc-message", "no such cart"),
        ],
    );
    let only = headers(
        3,
        END_STREAM,
        &[Field::Indexed(8), Field::Plain("grpc-status", "0")],
    );
    let exchanges = run(&[
        (Ingress, request, 100),
        (Egress, answer, 200),
        (Egress, trailers, 700),
        (Egress, only, 800),
    ]);
    let calls: Vec<(&str, GrpcStatus, u64)> = exchanges
        .iter()
        .map(grpc)
        .map(|call| (call.method.as_str(), call.status, call.duration_ns))
        .collect();
    assert_eq!(
        calls,
        [
            ("/shop.Cart/Add", GrpcStatus::NotFound, 600),
            ("/shop.Cart/Add", GrpcStatus::Ok, 700)
        ]
    );
}

#[test]
fn a_grpc_path_that_is_not_a_method_is_other() {
    assert_eq!(grpc_method("/shop.Cart/Add"), "/shop.Cart/Add");
    for path in ["/", "/shop.Cart", "/a/b/c", "/a b/c", "shop/Add"] {
        assert_eq!(grpc_method(path), "_OTHER", "{path}");
    }
}

#[test]
fn a_body_past_the_capture_is_skipped_by_count() {
    let mut request = preface_and_settings();
    request.extend(get(1, "/big"));
    let mut answer = headers(1, 0, &[Field::Indexed(8)]);
    let body = vec![b'x'; 10_000];
    answer.extend(frame(DATA, END_STREAM, 1, &body));
    // Only the first 100 bytes of the write were captured; the next one starts a frame.
    let captured = &answer[..100];
    let mut connection = Connection::new();
    let mut out = Vec::new();
    connection.feed(&chunk(Ingress, &request, 0), &mut out);
    connection.feed(
        &Chunk {
            direction: Egress,
            total_len: answer.len() as u64,
            data: captured,
            timestamp_ns: 10,
        },
        &mut out,
    );
    connection.feed(&chunk(Ingress, &get(3, "/next"), 20), &mut out);
    connection.feed(
        &chunk(Egress, &headers(3, END_STREAM, &[Field::Indexed(8)]), 30),
        &mut out,
    );
    let routes: Vec<&str> = out.iter().map(|e| http(e).route.as_str()).collect();
    assert_eq!(routes, ["/big", "/next"]);
    assert!(!connection.is_ignored());
}

#[test]
fn a_header_block_past_the_capture_loses_the_connection() {
    let mut request = preface_and_settings();
    request.extend(get(1, "/a"));
    let mut connection = Connection::new();
    let mut out = Vec::new();
    connection.feed(
        &Chunk {
            direction: Ingress,
            total_len: request.len() as u64,
            data: &request[..PREFACE.len() + 9 + 4],
            timestamp_ns: 0,
        },
        &mut out,
    );
    assert!(connection.is_ignored());
    assert!(out.is_empty());
}

#[test]
fn secrets_are_neither_passed_on_nor_kept() {
    let mut request = preface_and_settings();
    request.extend(headers(
        1,
        END_STREAM,
        &[
            Field::Indexed(2),
            Field::Indexing(":path", "/login?token=abc123"),
            Field::Indexing("cookie", "session=s3cr3t"),
        ],
    ));
    let mut parser = Http2Parser::new();
    let mut out = Vec::new();
    parser.feed(&chunk(Ingress, &request, 0), &mut out);
    parser.feed(
        &chunk(Egress, &headers(1, END_STREAM, &[Field::Indexed(8)]), 5),
        &mut out,
    );
    assert_eq!(http(&out[0]).route, "/login");
    let held = parser.requests.decoder.held_text();
    assert!(held.contains("/login"), "{held}");
    for secret in ["abc123", "s3cr3t", "token"] {
        assert!(!held.contains(secret), "{secret} kept: {held}");
    }
}

/// After an `h2c` upgrade the server may send its SETTINGS, and answer the upgraded
/// request on stream 1, before it reads the client's preface: the kernel then copies from
/// the server's SETTINGS. Each side's role comes from which preface it saw first, and the
/// answer to stream 1 (the HTTP/1.1 request, counted as such) keeps the response table in
/// step without being reported.
#[test]
fn after_an_h2c_upgrade_the_servers_preface_may_come_first() {
    // :status 200 (8), and `server` added to the responses' table (62).
    let mut answer_1 = SETTINGS_EMPTY.to_vec();
    answer_1.extend(headers(
        1,
        0,
        &[Field::Indexed(8), Field::Indexing("server", "h2c-test")],
    ));
    answer_1.extend(frame(DATA, END_STREAM, 1, b"ok\n"));
    let mut request_3 = preface_and_settings();
    request_3.extend(get(3, "/missing"));
    // :status 404 (13), and `server` by its place in the table.
    let answer_3 = headers(3, END_STREAM, &[Field::Indexed(13), Field::Indexed(62)]);
    for (responses, requests, role) in [
        (Egress, Ingress, Role::Server),
        (Ingress, Egress, Role::Client),
    ] {
        let exchanges = run(&[
            (responses, answer_1.clone(), 0),
            (requests, request_3.clone(), 10),
            (responses, answer_3.clone(), 30),
        ]);
        assert_eq!(exchanges.len(), 1, "{exchanges:?}");
        let http = http(&exchanges[0]);
        assert_eq!(
            (http.role, http.status, http.duration_ns, http.version),
            (role, 404, 20, HttpVersion::Http2)
        );
    }
}

#[test]
fn the_preface_is_detected_and_nothing_else() {
    let detect = |data: &[u8]| Http2.detect(&chunk(Ingress, data, 0));
    assert_eq!(detect(&preface_and_settings()), Detection::Match);
    assert_eq!(detect(&PREFACE[..10]), Detection::NeedMore);
    assert_eq!(detect(b"PRI * HTTP/1.1\r\n"), Detection::NoMatch);
    assert_eq!(detect(b"GET / HTTP/1.1\r\n\r\n"), Detection::NoMatch);
    // A server's own preface (after an upgrade, the kernel's judgement), not its
    // acknowledgement of the client's.
    assert_eq!(detect(SETTINGS_EMPTY), Detection::Match);
    assert_eq!(detect(&frame(4, 1, 0, &[])), Detection::NoMatch);
}

#[test]
fn garbage_after_the_preface_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2_000 {
        let mut parser = Http2Parser::new();
        let mut out = Vec::new();
        let mut data = preface_and_settings();
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            data.push(seed as u8);
        }
        parser.feed(&chunk(Ingress, &data, 0), &mut out);
        parser.feed(&chunk(Egress, &data[24..], 1), &mut out);
    }
}

/// The kernel's judges (`monitor-framing`, run on a socket's first read/write): the
/// preface starts HTTP/2; a frame head mid-connection is told apart, except a server's own
/// SETTINGS, which may come before it reads the client's preface.
#[test]
fn the_kernel_tells_a_preface_from_a_connection_seen_midway() {
    use monitor_framing::{WINDOW, looks_like_http2_frame, starts_http2, starts_server_settings};
    let window = |bytes: &[u8]| {
        let mut window = [0u8; WINDOW];
        window[..bytes.len()].copy_from_slice(bytes);
        (window, bytes.len() as u32)
    };
    let (preface, len) = window(&preface_and_settings());
    assert!(starts_http2(&preface, len));
    assert!(!starts_http2(&preface, 10), "too short to tell");
    let midway = [
        get(5, "/a"),
        frame(DATA, 0, 3, b"body"),
        frame(8, 0, 0, &[0, 0, 1, 0]),
        frame(4, 1, 0, &[]),
    ];
    for bytes in &midway {
        let (bytes, len) = window(bytes);
        assert!(looks_like_http2_frame(&bytes, len), "{:?}", &bytes[..9]);
        assert!(!starts_http2(&bytes, len));
    }
    let others: [&[u8]; 5] = [
        SETTINGS_EMPTY,
        &preface_and_settings(),
        b"GET / HTTP/1.1\r\n\r\n",
        // PostgreSQL's startup packet, and a TLS ClientHello.
        &[0, 0, 0, 0x50, 0, 3, 0, 0, 0x75],
        &[0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc],
    ];
    for bytes in others {
        let (bytes, len) = window(bytes);
        assert!(!looks_like_http2_frame(&bytes, len), "{:?}", &bytes[..9]);
    }
    // After an upgrade: the server's SETTINGS (empty, or with settings of 6 bytes each),
    // never an acknowledgement or another frame.
    let settings = frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    for (bytes, server_preface) in [
        (SETTINGS_EMPTY, true),
        (&settings[..], true),
        (&frame(4, 1, 0, &[])[..], false),
        (&frame(4, 0, 0, &[0, 3, 0])[..], false),
        (&get(1, "/")[..], false),
        (&preface_and_settings()[..], false),
    ] {
        let (bytes, len) = window(bytes);
        assert_eq!(
            starts_server_settings(&bytes, len),
            server_preface,
            "{:?}",
            &bytes[..9]
        );
    }
}
