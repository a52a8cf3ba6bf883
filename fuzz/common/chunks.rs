//! The record list every protocol target reads: one captured syscall per record.
//!
//! ```text
//! flags: u8      bit 0: direction (0 ingress, 1 egress)
//!                bit 1: the syscall moved more than was captured
//!                bits 2-7: nanoseconds since the previous chunk
//! len: u8        captured bytes that follow (fewer if the input ends)
//! [gap: u8]      if bit 1: the uncaptured byte count is gap * 61 + 1
//! data: [u8; len]
//! ```
use monitor_protocols::{Chunk, Direction};

/// Calls `each` with every chunk of `input`, in order; the last chunk's timestamp.
pub fn for_each_chunk(input: &[u8], mut each: impl FnMut(&Chunk<'_>)) -> u64 {
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
        each(&Chunk {
            direction: if flags & 1 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            total_len: data.len() as u64 + gap,
            data,
            timestamp_ns,
        });
    }
    timestamp_ns
}
