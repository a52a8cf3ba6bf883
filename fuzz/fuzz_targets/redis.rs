//! Arbitrary chunk sequences into the Redis parser, and into the framing the probes run
//! (its user-space twin, `redis::kernel::KernelTwin`): neither may panic, the parser must
//! keep its memory cap, and neither may let a key, a value or any other wire bytes out:
//! commands are name tokens (1 to 32 of `[A-Z0-9_.|-]`) or `_OTHER`, error prefixes
//! uppercase tokens or `_OTHER`.
//!
//! The input is the record list of every protocol target (`common/chunks.rs`): flags (direction, gap,
//! nanoseconds), captured length, optional gap byte, data. The seeds in `fuzz/corpus/redis/`
//! are some of the unit tests' fixtures in this form.
#![no_main]

#[path = "../common/chunks.rs"]
mod chunks;

use libfuzzer_sys::fuzz_target;
use monitor_protocols::{
    Connection, Exchange, MAX_BUFFERED_BYTES, ProtocolParser,
    redis::{RedisParser, is_command_label, is_error_label, kernel::KernelTwin},
};

fuzz_target!(|input: &[u8]| {
    // Through detection, as the agent feeds it; and straight into the parser, so that inputs
    // detection rejects still exercise it.
    let mut connection = Connection::new();
    let mut parser = RedisParser::new();
    let mut twin = KernelTwin::new();
    let mut out = Vec::new();
    let timestamp_ns = chunks::for_each_chunk(input, |chunk| {
        connection.feed(chunk, &mut out);
        parser.feed(chunk, &mut out);
        twin.feed(chunk, &mut out);
        assert!(connection.buffered_bytes() <= MAX_BUFFERED_BYTES);
        assert!(parser.buffered_bytes() <= MAX_BUFFERED_BYTES);
    });
    for exchange in &out {
        let Exchange::Redis(redis) = exchange else {
            continue;
        };
        assert!(is_command_label(&redis.command), "{redis:?}");
        assert!(
            redis.error.as_deref().is_none_or(is_error_label),
            "{redis:?}"
        );
        assert!(redis.duration_ns <= timestamp_ns);
    }
});
