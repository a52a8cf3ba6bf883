//! The connections whose captured reads/writes the request protocols' parsers follow
//! (`monitor-protocols`): one parser per (TGID, socket), for the rooms that parse payloads
//! (`http`, `db`). Bounded: idle connections are forgotten, and at most `MAX_CONNECTIONS`
//! are followed at once by each room.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt};
use monitor_protocols::{Chunk, Connection, Exchange};

use crate::probes::decode::PayloadRecord;

/// Connections followed at once; chunks of further new connections are counted and dropped.
pub const MAX_CONNECTIONS: usize = 16_384;
/// A connection with no captured read or write for this long is forgotten (a keep-alive
/// connection idle longer starts over with its next request, which the parsers handle).
pub const IDLE_CONNECTION: Duration = Duration::from_secs(120);

struct Followed {
    /// The socket's peer when first seen: the same kernel socket address with another peer
    /// is a new connection (sockets are reused once freed), as is any whose read/write the
    /// kernel marks first (the same peer again: a client reconnecting).
    remote: SocketAddr,
    connection: Connection,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Connections {
    followed: HashMap<(u32, u64), Followed>,
    chunks_dropped: u64,
    /// Connections a protocol's parser gave up part-way, by protocol.
    lost: HashMap<&'static str, u64>,
    exchanges: Vec<Exchange>,
}

impl Connections {
    pub fn new() -> Self {
        Self {
            followed: HashMap::new(),
            chunks_dropped: 0,
            lost: HashMap::new(),
            exchanges: Vec::new(),
        }
    }

    /// Feeds one captured read/write to its connection's parser; `completed` gets each
    /// exchange it completes, with the connection's peer.
    pub fn feed(
        &mut self,
        event: &PayloadRecord,
        now: Instant,
        mut completed: impl FnMut(Exchange, SocketAddr),
    ) {
        let key = (event.owner.tgid, event.sk);
        if !self.followed.contains_key(&key) && self.followed.len() >= MAX_CONNECTIONS {
            self.chunks_dropped += 1;
            return;
        }
        let followed = self.followed.entry(key).or_insert_with(|| Followed {
            remote: event.remote,
            connection: Connection::new(),
            last_seen: now,
        });
        if followed.remote != event.remote || event.first {
            followed.remote = event.remote;
            followed.connection = Connection::new();
        }
        followed.last_seen = now;
        let chunk = Chunk {
            direction: event.flow,
            total_len: u64::from(event.length),
            data: &event.data,
            timestamp_ns: event.timestamp_ns,
        };
        let parsing = followed.connection.protocol();
        followed.connection.feed(&chunk, &mut self.exchanges);
        if let Some(protocol) = parsing.filter(|_| followed.connection.is_ignored()) {
            *self.lost.entry(protocol).or_default() += 1;
        }
        let remote = followed.remote;
        for exchange in self.exchanges.drain(..) {
            completed(exchange, remote);
        }
    }

    /// Forgets the connections idle for `IDLE_CONNECTION`.
    pub fn forget_idle(&mut self, now: Instant) {
        self.followed
            .retain(|_, followed| now.duration_since(followed.last_seen) < IDLE_CONNECTION);
    }

    /// Connections followed now.
    pub fn followed(&self) -> usize {
        self.followed.len()
    }

    /// Connections `protocol`'s parser gave up part-way (HTTP/2's, when it lost its place
    /// in a connection's frames or header tables). HTTP/1.x upgrades and tunnels count too.
    pub fn lost(&self, protocol: &str) -> u64 {
        self.lost.get(protocol).copied().unwrap_or(0)
    }

    /// Chunks dropped because `MAX_CONNECTIONS` were followed.
    pub fn chunks_dropped(&self) -> u64 {
        self.chunks_dropped
    }
}
