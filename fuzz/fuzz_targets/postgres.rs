//! Arbitrary chunk sequences into the PostgreSQL parser, and into the framing the probes run
//! (its user-space twin, `postgres::kernel::KernelTwin`, whose records feed a parser as the
//! agent's do): neither may panic, the parsers must keep their memory cap, and none may let
//! statement text out: operations are command keywords or
//! `_OTHER`, SQLSTATEs five characters of `[0-9A-Z]` or `_OTHER`.
//!
//! The input is the record list of every protocol target (`common/chunks.rs`): flags (direction, gap,
//! nanoseconds), captured length, optional gap byte, data. The seeds in
//! `fuzz/corpus/postgres/` are the unit tests' fixtures in this form.
#![no_main]

#[path = "../common/chunks.rs"]
mod chunks;

use libfuzzer_sys::fuzz_target;
use monitor_protocols::{
    Connection, Exchange, MAX_BUFFERED_BYTES, ProtocolParser,
    postgres::{OTHER, PostgresParser, kernel::KernelTwin, operation_keyword},
};

fuzz_target!(|input: &[u8]| {
    // Through detection, as the agent feeds it; and straight into the parser, so that inputs
    // detection rejects still exercise it.
    let mut connection = Connection::new();
    let mut parser = PostgresParser::new();
    let mut twin = KernelTwin::new();
    let mut out = Vec::new();
    let timestamp_ns = chunks::for_each_chunk(input, |chunk| {
        connection.feed(chunk, &mut out);
        parser.feed(chunk, &mut out);
        twin.feed(chunk, &mut out);
        assert!(connection.buffered_bytes() <= MAX_BUFFERED_BYTES);
        assert!(twin.connection().buffered_bytes() <= MAX_BUFFERED_BYTES);
        assert!(parser.buffered_bytes() <= MAX_BUFFERED_BYTES);
    });
    for exchange in &out {
        let Exchange::Postgres(postgres) = exchange else {
            continue;
        };
        let operation = postgres.operation.as_str();
        assert!(
            operation == OTHER
                || ((1..=16).contains(&operation.len())
                    && operation.bytes().all(|b| b.is_ascii_uppercase())
                    && operation_keyword(operation.as_bytes()) == Some(operation)),
            "{postgres:?}"
        );
        assert!(
            postgres.sqlstate.as_deref().is_none_or(|code| code == OTHER
                || (code.len() == 5
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()))),
            "{postgres:?}"
        );
        assert!(postgres.duration_ns <= timestamp_ns);
    }
});
