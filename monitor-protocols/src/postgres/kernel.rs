//! PostgreSQL as the probes frame it (`monitor_framing::pg`, run by
//! `monitor-ebpf/src/postgres.rs`): a record per message that starts, names or answers an
//! operation, which the agent hands to [`PostgresParser`](super::PostgresParser) as the
//! chunk [`Framed::chunk`] makes of it, its body cut after its head. [`KernelTwin`] runs the
//! same framing natively over captured chunks, so that the tests can check that what the
//! probes leave out changes no operation.
use monitor_framing::{
    MAX_MISSES, direction,
    pg::{self, PgConn, PgStep, PgWire, Record},
};

use crate::{
    Chunk, Connection, Direction, Exchange,
    chunk::Direction::{Egress, Ingress},
};

/// A record as the agent decodes it (`DB_EVENTS`' head and bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Framed {
    pub direction: Direction,
    /// The connection's first record: a new connection.
    pub first: bool,
    /// The message's header and head.
    pub data: Vec<u8>,
    /// The whole message's length.
    pub length: u64,
    pub timestamp_ns: u64,
}

impl Framed {
    /// The chunk the parser is fed: a capture of the message, cut after its head.
    pub fn chunk(&self) -> Chunk<'_> {
        Chunk {
            direction: self.direction,
            total_len: self.length,
            data: &self.data,
            timestamp_ns: self.timestamp_ns,
        }
    }
}

/// The twin's side of one chunk.
struct ChunkWire<'a> {
    chunk: &'a Chunk<'a>,
    records: Vec<Framed>,
}

impl PgWire for ChunkWire<'_> {
    fn read(&mut self, offset: u32, buf: &mut [u8; 8]) -> u32 {
        self.chunk.copy_window(offset, 8, buf)
    }

    fn stash(&mut self, offset: u32, len: u32, head: &mut [u8; pg::HEAD as usize], at: u32) -> u32 {
        let into = &mut head[(at as usize).min(pg::HEAD as usize)..];
        let len = (len as usize).min(into.len()) as u32;
        self.chunk.copy_window(offset, len, into)
    }

    fn now_ns(&mut self) -> u64 {
        self.chunk.timestamp_ns
    }

    fn record(&mut self, conn: &PgConn, record: &Record) {
        let client = usize::from(record.side) == pg::side::CLIENT;
        let direction = match (client, conn.client_way == direction::EGRESS) {
            (true, true) | (false, false) => Egress,
            _ => Ingress,
        };
        let mut data = Vec::new();
        if record.flags & pg::flags::LOST == 0 {
            data.extend_from_slice(&record.header[..usize::from(record.header_len)]);
            if record.stashed {
                let head = &conn.sides[usize::from(record.side) & 1].head;
                data.extend_from_slice(&head[..(record.head_len as usize).min(head.len())]);
            } else {
                let start = (record.head_at as usize).min(self.chunk.data.len());
                let end = (start + record.head_len as usize).min(self.chunk.data.len());
                data.extend_from_slice(&self.chunk.data[start..end]);
            }
        }
        self.records.push(Framed {
            direction,
            first: record.flags & pg::flags::FIRST != 0,
            data,
            length: u64::from(record.length),
            timestamp_ns: record.start_ns,
        });
    }
}

/// One socket as the probes and the agent see it: judged on its first read/writes, framed,
/// and its records parsed.
pub struct KernelTwin {
    /// Read/writes that started no client message, before the socket is judged.
    misses: u8,
    ignored: bool,
    conn: Option<PgConn>,
    connection: Connection,
    /// Every record so far, for the tests.
    pub records: Vec<Framed>,
}

impl Default for KernelTwin {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelTwin {
    pub fn new() -> Self {
        Self {
            misses: 0,
            ignored: false,
            conn: None,
            connection: Connection::new(),
            records: Vec::new(),
        }
    }

    /// Whether the probes gave the socket up (not PostgreSQL, or encrypted).
    pub fn is_ignored(&self) -> bool {
        self.ignored
    }

    /// The agent's connection the records are fed to.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Frames one read/write as the probes do (`chunk.data` is what they can read of it),
    /// and parses its records as the agent does.
    pub fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) {
        if self.ignored {
            return;
        }
        let way = chunk.direction.framing_way();
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let mut first = [0; 8];
                let got = chunk.copy_window(0, 8, &mut first);
                if !pg::starts_client(&first, got) {
                    self.misses += 1;
                    self.ignored = self.misses >= MAX_MISSES;
                    return;
                }
                let mut conn = PgConn::default();
                conn.begin(way, first[0]);
                self.conn.insert(conn)
            }
        };
        let mut wire = ChunkWire {
            chunk,
            records: Vec::new(),
        };
        let (length, readable) = chunk.framed_sizes();
        if conn.feed(way, length, readable, &mut wire) == PgStep::Done {
            self.ignored = true;
        }
        for record in &wire.records {
            if record.first {
                self.connection = Connection::new();
            }
            self.connection.feed(&record.chunk(), out);
        }
        self.records.extend(wire.records);
    }
}
