//! The protocol layer: turns what the kernel side captured of a connection's reads and
//! writes into completed request/response exchanges. Pure and I/O-free: the agent feeds
//! chunks in, exchanges come out, nothing here touches a socket, a clock or a map.
//!
//! # Input: chunks
//!
//! The probes capture each `read`/`write` on a socket as a [`Chunk`]: its [`Direction`]
//! (the process wrote it, or read it), the syscall's full byte count, a bounded prefix of the
//! payload (a few hundred bytes) and a timestamp. Chunks of one connection must be fed to
//! that connection's [`Connection`] in syscall order. The bytes past the captured prefix are
//! never seen, but their count is: parsers use it to skip bodies they cannot see and to know
//! when a message's framing has been lost, in which case they resynchronise on the next
//! chunk that starts a message.
//!
//! # Output: exchanges
//!
//! [`Connection::feed`] appends an [`Exchange`] for every request answered by a response.
//! Each protocol has its own variant ([`Exchange::Http`]); the agent matches on it to build
//! that protocol's metrics.
//!
//! # Detection
//!
//! [`Connection::feed`] classifies a new connection: each registered protocol's
//! [`Protocol::detect`] looks at its first non-empty chunks (a few bytes each). The first
//! match gets a parser for the rest of the connection. A connection no protocol claims
//! within [`MAX_DETECTION_MISSES`] chunks is ignored from then on at the cost of one branch
//! per chunk; so is a connection that leaves the protocol (an HTTP upgrade to WebSocket, a
//! `CONNECT` tunnel). A few chunks of grace rather than one let a connection opened before
//! the agent started be caught in the middle of a message and locked on at the next one.
//!
//! # Memory
//!
//! Per connection, buffered state is bounded by [`MAX_BUFFERED_BYTES`] whatever the peer
//! sends ([`Connection::buffered_bytes`]); a message whose head does not fit is given up,
//! not buffered.
//!
//! # Adding a protocol
//!
//! 1. A module (say `redis.rs`) with a unit struct implementing [`Protocol`] (cheap
//!    detection on the first chunk of the side that speaks first) and a parser implementing
//!    [`ProtocolParser`] (fed every later chunk, both directions, appends exchanges).
//! 2. Its exchange type as a new variant of [`Exchange`]. The type goes in a child module
//!    (`redis/exchange.rs`, like `http/exchange.rs`) that imports nothing of its parent:
//!    [`Exchange`] holds it and the parser produces [`Exchange`], so anywhere else the
//!    modules would import from each other in a loop, which `cargo xtask imports` refuses.
//! 3. One line in [`PROTOCOLS`]. Order matters only if two protocols could claim the same
//!    bytes: stricter detectors first.
//!
//! See [`http`] for the HTTP/1.x parser, and [`route`] for turning request paths into
//! low-cardinality metric labels.
#![forbid(unsafe_code)]

mod chunk;
pub mod dns;
pub mod http;
pub mod http2;
pub mod postgres;
mod protocol;
pub mod redis;
pub mod route;
#[cfg(test)]
mod test_io;

pub use chunk::{Chunk, Direction, Role};
pub use http::{HttpExchange, HttpVersion, Method};
pub use http2::exchange::{GrpcExchange, GrpcStatus};
pub use postgres::PostgresExchange;
pub use protocol::{Detection, Exchange, ParserStatus, Protocol, ProtocolParser};
pub use redis::RedisExchange;
pub use route::normalize_route;

/// Every protocol this crate can recognise, in detection order.
pub static PROTOCOLS: &[&dyn Protocol] = &[
    &http2::Http2,
    &http::Http1,
    &redis::Redis,
    &postgres::Postgres,
];

/// Bound on the bytes a [`Connection`] keeps between chunks, for any input.
pub const MAX_BUFFERED_BYTES: usize = 16 * 1024;

/// Non-empty chunks no protocol claims before a connection is ignored for good.
pub const MAX_DETECTION_MISSES: u8 = 3;

/// Bytes of a message start kept while a detector asks for more (`GE` then `T / HTTP/1.1`).
const DETECTION_BUFFER: usize = 256;

/// Returns the first registered protocol that claims these bytes.
pub fn detect(first: &Chunk<'_>) -> Option<&'static dyn Protocol> {
    PROTOCOLS
        .iter()
        .copied()
        .find(|protocol| protocol.detect(first) == Detection::Match)
}

/// One connection, from its first captured chunk to its close.
pub struct Connection {
    state: State,
}

enum State {
    Detecting(Detecting),
    Parsing {
        protocol: &'static dyn Protocol,
        parser: Box<dyn ProtocolParser>,
    },
    Ignored,
}

#[derive(Default)]
struct Detecting {
    /// Chunks of one direction that together are still an incomplete message start.
    held: Vec<HeldChunk>,
    misses: u8,
}

/// Only fully captured chunks are held ([`Detection::NeedMore`] is for short starts).
struct HeldChunk {
    direction: Direction,
    data: Vec<u8>,
    timestamp_ns: u64,
}

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    pub fn new() -> Self {
        Self {
            state: State::Detecting(Detecting::default()),
        }
    }

    /// Consumes the connection's next chunk, appending completed exchanges to `out`.
    pub fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) {
        match &mut self.state {
            State::Ignored => {}
            State::Parsing { parser, .. } => {
                if parser.feed(chunk, out) == ParserStatus::Finished {
                    self.state = State::Ignored;
                }
            }
            State::Detecting(detecting) => {
                if let Some(next) = detecting.feed(chunk, out) {
                    self.state = next;
                }
            }
        }
    }

    /// The protocol this connection was recognised as, while it is being parsed.
    pub fn protocol(&self) -> Option<&'static str> {
        match &self.state {
            State::Parsing { protocol, .. } => Some(protocol.name()),
            _ => None,
        }
    }

    /// Whether every further chunk will be dropped unread (unknown protocol, or it left it).
    pub fn is_ignored(&self) -> bool {
        matches!(self.state, State::Ignored)
    }

    /// Heap bytes held between chunks; at most [`MAX_BUFFERED_BYTES`].
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Detecting(detecting) => {
                detecting.held.iter().map(|held| held.data.capacity()).sum()
            }
            State::Parsing { parser, .. } => parser.buffered_bytes(),
            State::Ignored => 0,
        }
    }
}

impl Detecting {
    /// The state to move to, if detection is over.
    fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> Option<State> {
        if chunk.data.is_empty() {
            // An EOF read or a failed capture: no evidence either way.
            return None;
        }
        if self
            .held
            .first()
            .is_some_and(|held| held.direction != chunk.direction)
        {
            // The peer answered an incomplete start: whatever it was, it was not one.
            self.held.clear();
            self.misses += 1;
        }
        let joined;
        let probe = if self.held.is_empty() {
            *chunk
        } else {
            let mut data: Vec<u8> = self
                .held
                .iter()
                .flat_map(|held| &held.data)
                .copied()
                .collect();
            data.extend_from_slice(chunk.data);
            joined = data;
            Chunk {
                direction: chunk.direction,
                total_len: joined.len() as u64 + chunk.uncaptured(),
                data: &joined,
                timestamp_ns: self.held[0].timestamp_ns,
            }
        };
        let mut need_more = false;
        for &protocol in PROTOCOLS {
            match protocol.detect(&probe) {
                Detection::Match => {
                    // Held chunks are replayed joined, as the detector saw them: a parser
                    // may need the whole message start in one piece to find its role.
                    let mut parser = protocol.parser();
                    let status = parser.feed(&probe, out);
                    self.held.clear();
                    return Some(match status {
                        ParserStatus::Active => State::Parsing { protocol, parser },
                        ParserStatus::Finished => State::Ignored,
                    });
                }
                Detection::NeedMore => need_more = true,
                Detection::NoMatch => {}
            }
        }
        if need_more && chunk.is_fully_captured() && probe.data.len() <= DETECTION_BUFFER {
            self.held.push(HeldChunk {
                direction: chunk.direction,
                data: chunk.data.to_vec(),
                timestamp_ns: chunk.timestamp_ns,
            });
            return None;
        }
        self.held.clear();
        self.misses += 1;
        (self.misses >= MAX_DETECTION_MISSES).then_some(State::Ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(direction: Direction, data: &[u8]) -> Chunk<'_> {
        Chunk {
            direction,
            total_len: data.len() as u64,
            data,
            timestamp_ns: 0,
        }
    }

    #[test]
    fn http_is_detected_on_a_request_line() {
        let first = chunk(Direction::Ingress, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(detect(&first).map(|p| p.name()), Some("http"));
        assert!(detect(&chunk(Direction::Ingress, b"\x16\x03\x01\x02\x00")).is_none());
    }

    #[test]
    fn unclaimed_connection_is_ignored_after_the_grace_chunks() {
        let mut connection = Connection::new();
        let mut out = Vec::new();
        for _ in 0..MAX_DETECTION_MISSES {
            assert!(!connection.is_ignored());
            connection.feed(&chunk(Direction::Egress, b"\x00\x01binary"), &mut out);
        }
        assert!(connection.is_ignored());
        connection.feed(
            &chunk(Direction::Ingress, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        connection.feed(
            &chunk(Direction::Egress, b"HTTP/1.1 200 OK\r\n\r\n"),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(connection.buffered_bytes(), 0);
    }

    #[test]
    fn empty_chunks_are_no_evidence() {
        let mut connection = Connection::new();
        let mut out = Vec::new();
        for _ in 0..10 {
            connection.feed(&chunk(Direction::Ingress, b""), &mut out);
        }
        assert!(!connection.is_ignored());
    }

    #[test]
    fn a_message_start_split_before_the_method_ends_is_held_then_replayed() {
        let mut connection = Connection::new();
        let mut out = Vec::new();
        connection.feed(&chunk(Direction::Ingress, b"GE"), &mut out);
        assert_eq!(connection.protocol(), None);
        assert_eq!(connection.buffered_bytes(), 2, "the two bytes, held");
        connection.feed(
            &chunk(Direction::Ingress, b"T /a HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        assert_eq!(connection.protocol(), Some("http"));
        connection.feed(
            &chunk(Direction::Egress, b"HTTP/1.1 200 OK\r\n\r\n"),
            &mut out,
        );
        let [Exchange::Http(exchange)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(
            (exchange.method, exchange.route.as_str()),
            (Method::Get, "/a")
        );
    }

    #[test]
    fn a_held_start_answered_by_the_peer_is_dropped() {
        let mut connection = Connection::new();
        let mut out = Vec::new();
        connection.feed(&chunk(Direction::Ingress, b"GE"), &mut out);
        connection.feed(&chunk(Direction::Egress, b"\x00\x00"), &mut out);
        assert_eq!(connection.buffered_bytes(), 0);
        assert_eq!(connection.protocol(), None);
    }
}
