//! Arbitrary header blocks into one HPACK decoder, in turn (its table carried from block to
//! block, as on a connection): it must not panic, must keep its table within its bound, must
//! pass on only the fields it was asked for, and never a `:path`'s query or fragment.
//!
//! The input is a list of blocks, each a length byte and that many bytes (fewer if the input
//! ends). The seeds in `fuzz/corpus/hpack/` are RFC 7541's examples (C.3, C.4, C.5).
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_protocols::http2::hpack::{Decoder, MAX_TABLE_SIZE};

fn wanted(name: &[u8]) -> bool {
    matches!(name, b":path" | b":status" | b"content-type")
}

fuzz_target!(|input: &[u8]| {
    let mut decoder = Decoder::new(wanted);
    let mut rest = input;
    while let [len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (block, tail) = tail.split_at(len);
        rest = tail;
        let result = decoder.decode(block, |name, value| {
            assert!(wanted(name), "{name:?} passed on");
            if name == b":path" {
                assert!(!value.iter().any(|&b| b == b'?' || b == b'#'), "{value:?}");
            }
        });
        assert!(decoder.held_bytes() <= MAX_TABLE_SIZE);
        if result.is_err() {
            // The table is lost: a connection stops here.
            break;
        }
    }
});
