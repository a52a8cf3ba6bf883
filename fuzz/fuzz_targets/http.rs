//! Arbitrary chunk sequences into the protocol layer: it must not panic, must keep its
//! memory cap, and must never let a query string or an oversized field out.
//!
//! The input is a list of records, each describing one captured syscall:
//!
//! ```text
//! flags: u8      bit 0: direction (0 ingress, 1 egress)
//!                bit 1: the syscall moved more than was captured
//!                bits 2-7: nanoseconds since the previous chunk
//! len: u8        captured bytes that follow (fewer if the input ends)
//! [gap: u8]      if bit 1: the uncaptured byte count is gap * 61 + 1
//! data: [u8; len]
//! ```
//!
//! The seeds in `fuzz/corpus/http/` are the unit tests' fixtures in this form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_protocols::{
    Chunk, Connection, Direction, Exchange, MAX_BUFFERED_BYTES, ProtocolParser,
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
    let mut timestamp_ns = 0u64;
    let mut rest = input;
    while let [flags, len, tail @ ..] = rest {
        let (gap, tail) = match (flags & 2 != 0, tail) {
            (true, [gap, tail @ ..]) => (u64::from(*gap) * 61 + 1, tail),
            (true, []) => break,
            (false, tail) => (0, tail),
        };
        let len = usize::from(*len).min(tail.len());
        let (data, tail) = tail.split_at(len);
        rest = tail;
        timestamp_ns += u64::from(flags >> 2);
        let chunk = Chunk {
            direction: if flags & 1 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            total_len: data.len() as u64 + gap,
            data,
            timestamp_ns,
        };
        connection.feed(&chunk, &mut out);
        parser.feed(&chunk, &mut out);
        twin.feed(&chunk, &mut framed);
        assert!(connection.buffered_bytes() <= MAX_BUFFERED_BYTES);
        assert!(parser.buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
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
