//! The contract between a connection and its protocol: what a protocol implements, and the
//! exchanges every parser produces. A module of its own, between the protocols' exchange
//! types (which [`Exchange`] holds) and their parsers (which implement [`ProtocolParser`]):
//! a protocol imports the contract, not the crate root that registers the protocol.
use crate::{
    chunk::Chunk, http::exchange::HttpExchange, http2::exchange::GrpcExchange,
    postgres::exchange::PostgresExchange, redis::exchange::RedisExchange,
};

/// A detector's verdict on the start of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Match,
    NoMatch,
    /// The bytes so far are a plausible but incomplete start: ask again with the next chunk
    /// in the same direction appended.
    NeedMore,
}

/// A completed request/response pair.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exchange {
    Http(HttpExchange),
    Grpc(GrpcExchange),
    Postgres(PostgresExchange),
    Redis(RedisExchange),
}

/// What a parser tells its connection after a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParserStatus {
    Active,
    /// The connection has left the protocol (upgrade, tunnel): feed it nothing more.
    Finished,
}

/// A protocol that can be recognised on a connection.
pub trait Protocol: Sync {
    /// Short lowercase name, fit for a metric label (`http`).
    fn name(&self) -> &'static str;

    /// Looks at the first non-empty chunk (or, after [`Detection::NeedMore`], the first
    /// chunks of one direction joined). Must be cheap: it runs on every new connection.
    fn detect(&self, first: &Chunk<'_>) -> Detection;

    /// A parser for a connection this protocol claimed; it is then fed that connection's
    /// chunks from the one that matched onwards.
    fn parser(&self) -> Box<dyn ProtocolParser>;
}

/// The per-connection state of one protocol.
pub trait ProtocolParser: Send {
    /// Consumes one chunk, appending any exchanges it completes to `out`.
    fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> ParserStatus;

    /// Heap bytes held between chunks; at most [`MAX_BUFFERED_BYTES`](crate::MAX_BUFFERED_BYTES).
    fn buffered_bytes(&self) -> usize;
}
