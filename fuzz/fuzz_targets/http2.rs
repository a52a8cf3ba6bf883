//! Arbitrary chunk sequences into the HTTP/2 parser (frames, streams, HPACK, gRPC): it must
//! not panic, must keep its memory bounded, and must only produce labels from closed sets
//! or normalised paths: a route never holds a query, a gRPC method is
//! `/package.Service/Method` or `_OTHER`, a status is a code.
//!
//! The input is the record list of every protocol target (`common/chunks.rs`). The seeds in
//! `fuzz/corpus/http2/` are a request and its answer, and a gRPC call, as the unit tests
//! build them.
#![no_main]

#[path = "../common/chunks.rs"]
mod chunks;

use libfuzzer_sys::fuzz_target;
use monitor_protocols::{
    Connection, Exchange, ProtocolParser,
    http2::{Http2Parser, MAX_HEADER_BLOCK, MAX_OPEN_STREAMS, hpack::MAX_TABLE_SIZE},
};

/// Two directions' frame and block buffers and tables, and the open streams (a route and an
/// authority are at most a header block each).
const BOUND: usize = 2 * (2 * MAX_HEADER_BLOCK + MAX_TABLE_SIZE)
    + MAX_OPEN_STREAMS * (2 * MAX_HEADER_BLOCK + 256);

fuzz_target!(|input: &[u8]| {
    let mut connection = Connection::new();
    let mut parser = Http2Parser::new();
    let mut out = Vec::new();
    let timestamp_ns = chunks::for_each_chunk(input, |chunk| {
        connection.feed(chunk, &mut out);
        parser.feed(chunk, &mut out);
        assert!(connection.buffered_bytes() <= BOUND);
        assert!(parser.buffered_bytes() <= BOUND);
    });
    for exchange in &out {
        match exchange {
            Exchange::Http(http) => {
                assert!(!http.route.contains('?') && !http.route.contains('#'), "{http:?}");
                assert!(http.duration_ns <= timestamp_ns);
            }
            Exchange::Grpc(call) => {
                let valid = call.method == "_OTHER"
                    || monitor_protocols::http2::grpc_method(&call.method) == call.method;
                assert!(valid, "{call:?}");
                assert!(call.duration_ns <= timestamp_ns);
            }
            _ => {}
        }
    }
});
