//! What the PostgreSQL parser produces. Apart from the parser because
//! [`Exchange`](crate::Exchange) holds it: the protocol contract sits between the two.
use crate::chunk::Role;

/// The label value for an operation or an SQLSTATE that cannot be named safely.
pub const OTHER: &str = "_OTHER";

/// One operation (a simple `Query`, or one `Execute` of the extended protocol) and the
/// server message that completed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresExchange {
    /// The side that writes queries is the client, the side that reads them the server.
    pub role: Role,
    /// The statement's first SQL keyword, uppercased (`SELECT`, `WITH`, `BEGIN`), or
    /// [`OTHER`]: never any other part of the statement, which is users' data.
    pub operation: String,
    /// The `ErrorResponse`'s SQLSTATE (five characters of `[0-9A-Z]`, else [`OTHER`]) when
    /// the operation failed; None when it succeeded.
    pub sqlstate: Option<String>,
    /// From the chunk that carried the query (or the `Execute`) to the chunk that carried
    /// its completion (see the parser's module docs).
    pub duration_ns: u64,
}
