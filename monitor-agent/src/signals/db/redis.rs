//! Redis connections framed in the kernel (`REDIS_EVENTS`, from `monitor-ebpf/src/redis.rs`):
//! each connection's commands and replies paired into operations
//! (`monitor_protocols::redis::kernel::Messages`), one pairing per (TGID, socket), bounded
//! like the connections whose bytes are copied.
use std::{net::SocketAddr, time::Instant};

use foldhash::{HashMap, HashMapExt};
use monitor_protocols::{
    Exchange,
    redis::kernel::{Messages, role_of},
};

use crate::{
    probes::decode::RedisRecord,
    signals::connections::{IDLE_CONNECTION, MAX_CONNECTIONS},
};

struct Followed {
    /// The socket's peer: the same kernel socket address with another peer is a new
    /// connection (sockets are reused once freed).
    remote: SocketAddr,
    /// The framing's read/write count when last seen: a smaller one is a new connection
    /// (the kernel started over), as is another role.
    seq: u32,
    role: u8,
    messages: Messages,
    last_seen: Instant,
}

#[derive(Default)]
pub struct RedisConnections {
    followed: HashMap<(u32, u64), Followed>,
    exchanges: Vec<Exchange>,
    /// Records dropped because `MAX_CONNECTIONS` were followed.
    pub dropped: u64,
}

impl RedisConnections {
    pub fn new() -> Self {
        Self {
            followed: HashMap::new(),
            exchanges: Vec::new(),
            dropped: 0,
        }
    }

    /// Feeds one command or reply to its connection; `completed` gets each operation it
    /// completes, with the connection's peer.
    pub fn feed(
        &mut self,
        event: &RedisRecord,
        now: Instant,
        mut completed: impl FnMut(Exchange, SocketAddr),
    ) {
        let Some(role) = role_of(event.role) else {
            return;
        };
        let key = (event.owner.tgid, event.sk);
        if !self.followed.contains_key(&key) && self.followed.len() >= MAX_CONNECTIONS {
            self.dropped += 1;
            return;
        }
        let seq = event.message.seq;
        let followed = self.followed.entry(key).or_insert_with(|| Followed {
            remote: event.remote,
            seq,
            role: event.role,
            messages: Messages::new(role),
            last_seen: now,
        });
        let restarted = seq < followed.seq;
        if followed.remote != event.remote || followed.role != event.role || restarted {
            followed.remote = event.remote;
            followed.role = event.role;
            followed.messages = Messages::new(role);
        }
        followed.seq = seq;
        followed.last_seen = now;
        followed
            .messages
            .feed(event.command, &event.message, &mut self.exchanges);
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
}
