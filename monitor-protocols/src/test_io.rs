//! What the protocols' byte-fixture tests share: a captured syscall, and feeding a
//! connection as the agent does, detection included, with the memory cap checked after
//! every chunk.
use crate::{Chunk, Connection, Direction, Exchange, MAX_BUFFERED_BYTES};

/// A captured syscall: direction, full byte count, captured prefix, timestamp.
#[derive(Clone, Copy)]
pub struct Io<'a>(pub Direction, pub u64, pub &'a [u8], pub u64);

impl<'a> Io<'a> {
    pub fn chunk(self) -> Chunk<'a> {
        let Io(direction, total_len, data, timestamp_ns) = self;
        Chunk {
            direction,
            total_len,
            data,
            timestamp_ns,
        }
    }
}

/// Fully captured.
pub fn io(direction: Direction, data: &[u8], ts: u64) -> Io<'_> {
    Io(direction, data.len() as u64, data, ts)
}

/// Feeds `ios` to `connection` in order; the exchanges they completed.
pub fn feed(connection: &mut Connection, ios: &[Io<'_>]) -> Vec<Exchange> {
    let mut out = Vec::new();
    for io in ios {
        connection.feed(&io.chunk(), &mut out);
        assert!(connection.buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
    out
}
