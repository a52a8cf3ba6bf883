//! Arbitrary chunk sequences into the Redis parser: it must not panic, must keep its memory
//! cap, and must never let a key, a value or any other wire bytes out: commands are name
//! tokens (1 to 32 of `[A-Z0-9_.|-]`) or `_OTHER`, error prefixes uppercase tokens or `_OTHER`.
//!
//! The input is the record list of the `http` target (see there): flags (direction, gap,
//! nanoseconds), captured length, optional gap byte, data. The seeds in `fuzz/corpus/redis/`
//! are some of the unit tests' fixtures in this form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_protocols::{
    Chunk, Connection, Direction, Exchange, MAX_BUFFERED_BYTES, ProtocolParser,
    redis::{RedisParser, is_command_label, is_error_label},
};

fuzz_target!(|input: &[u8]| {
    // Through detection, as the agent feeds it; and straight into the parser, so that inputs
    // detection rejects still exercise it.
    let mut connection = Connection::new();
    let mut parser = RedisParser::new();
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
        assert!(connection.buffered_bytes() <= MAX_BUFFERED_BYTES);
        assert!(parser.buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
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
