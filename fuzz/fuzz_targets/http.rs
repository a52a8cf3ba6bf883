//! Arbitrary chunk sequences into the protocol layer: it must not panic, must keep its
//! memory cap, and must never let a query string or an oversized field out.
//!
//! The input is a list of records, each describing one captured syscall (`common/chunks.rs`).
//! The seeds in `fuzz/corpus/http/` are the unit tests' fixtures in this form.
#![no_main]

#[path = "../common/chunks.rs"]
mod chunks;

use libfuzzer_sys::fuzz_target;
use monitor_protocols::{
    Connection, Exchange, MAX_BUFFERED_BYTES, ProtocolParser,
    http::{HttpParser, MAX_HOST_LEN, TRUNCATED_SEGMENT, kernel::KernelTwin},
    route::MAX_ROUTE_LEN,
};

fuzz_target!(|input: &[u8]| {
    // Through detection, as the agent feeds it; and straight into the HTTP parser, so that
    // inputs detection rejects still exercise it.
    let mut connection = Connection::new();
    let mut parser = HttpParser::new();
    // And through the framing written for the probes (its user-space twin).
    let mut twin = KernelTwin::new();
    let mut framed = Vec::new();
    let mut out = Vec::new();
    let timestamp_ns = chunks::for_each_chunk(input, |chunk| {
        connection.feed(chunk, &mut out);
        parser.feed(chunk, &mut out);
        twin.feed(chunk, &mut framed);
        assert!(connection.buffered_bytes() <= MAX_BUFFERED_BYTES);
        assert!(parser.buffered_bytes() <= MAX_BUFFERED_BYTES);
    });
    let parsed = out.iter().filter_map(|exchange| match exchange {
        Exchange::Http(http) => Some(http),
        _ => None,
    });
    for http in parsed.chain(&framed) {
        assert!(!http.route.contains(['?', '#']), "{http:?}");
        assert!(http.route.len() <= MAX_ROUTE_LEN + TRUNCATED_SEGMENT.len());
        assert!(
            http.host
                .as_ref()
                .is_none_or(|host| host.len() <= MAX_HOST_LEN)
        );
        assert!(http.duration_ns <= timestamp_ns);
        assert!((100..1000).contains(&http.status));
    }
});
