//! The PostgreSQL frontend/backend protocol (version 3) from captured payload prefixes.
//!
//! # What is parsed
//!
//! After the startup phase every message is a type byte, an Int32 length (counting itself)
//! and a body; the length alone lets a message be skipped, so bodies are read only for the
//! few fields that matter and the rest is skipped by count, captured or not.
//!
//! - Startup: the client's first messages have no type byte (StartupMessage,
//!   SSLRequest, GSSENCRequest, CancelRequest). An SSLRequest (or GSSENCRequest) is
//!   answered by one byte: `N` (refused: the client goes on in plain text with a
//!   StartupMessage, and so does the parser) or `S`/`G` (encryption: the rest is
//!   ciphertext, the parser finishes). Authentication, ParameterStatus, BackendKeyData and
//!   the first ReadyForQuery produce no operation.
//! - Simple query: each `Query` is one operation, however many statements its string holds
//!   (it is named by the first). It ends at the `ReadyForQuery` that follows it; it failed
//!   if an `ErrorResponse` came before that. `duration_ns` runs to the chunk carrying that
//!   `ReadyForQuery`: the application waits for every statement of the string, not the
//!   first one.
//! - Extended query: `Parse` names a statement (the unnamed one too), `Bind` ties a portal
//!   to a statement, and each `Execute` is one operation, named by its statement's first
//!   keyword ([`OTHER`] if its `Parse` was not seen). Executes are answered in order, each by
//!   a `CommandComplete`, `EmptyQueryResponse`, `PortalSuspended` or `ErrorResponse`;
//!   `duration_ns` runs from the chunk carrying the `Execute` to the one carrying that
//!   answer. Messages may be pipelined: many Parse/Bind/Execute/Sync in one write, answered
//!   in order.
//!
//! Both are paired with responses by counting `ReadyForQuery`s: each `Query`, `Sync` and
//! `FunctionCall` earns exactly one, so every pending operation remembers which one closes
//! its batch. That is what makes errors in pipelines come out right: after an
//! `ErrorResponse` the server skips everything up to the `Sync`, so the error answers the
//! first unanswered `Execute` of the batch (a failed `Parse` or `Bind` fails the `Execute`
//! that would have run it), and the `Execute`s it skipped are **dropped** when the
//! batch's `ReadyForQuery` arrives: they did not run, so they are neither successes nor
//! failures of their own. A `ReadyForQuery` nobody asked for (the one ending the startup,
//! or one for a `Sync` the capture lost) is not counted.
//!
//! # Operation names
//!
//! The first word of the statement, after whitespace, `--` and (nested) `/* */` comments
//! and opening parentheses, uppercased, if it is one of PostgreSQL's command keywords
//! ([`operation_keyword`]); anything else is [`OTHER`]. Checking against the list rather
//! than only the shape (1 to 16 letters) keeps a malformed statement's first word, which may
//! be anything the user typed, out of the labels. Statement text is scanned byte by byte
//! and never stored.
//!
//! # Truncated captures: what is lost
//!
//! Bytes past a chunk's captured prefix are skipped by count. A message whose body is cut
//! still counts with what was seen (a query cut before its first keyword ends is
//! [`OTHER`], an error cut before its `C` field has the SQLSTATE [`OTHER`]). A message
//! header in the uncaptured part, a length below 4 or above [`MAX_MESSAGE_LEN`], or an
//! unknown type byte loses the framing of that direction, which then skips whole chunks
//! until one starts with a plausible message. Client side, the operations of the skipped
//! messages are unknown: a marker takes their place in the queue and swallows the
//! answers of its batch (the operations queued after it in that batch are dropped).
//! Server side, the answers are unknown: every pending operation is dropped and taken as
//! answered in the lost bytes, which is what happens when a result set does not fit the
//! capture. Either way a lost answer costs measurements rather than pairing answers with
//! the wrong operations; only a pipelining client that keeps writing while the server's
//! lost answers are still on their way can still be paired wrongly.
//!
//! # Memory
//!
//! Nothing is buffered but a split message header (at most 8 bytes, inline). Per
//! connection: at most [`MAX_STATEMENTS`] statement names, [`MAX_PORTALS`] portal names
//! (each at most [`MAX_NAME_LEN`] bytes, inline) and [`MAX_PENDING`] pending operations.
use std::{collections::VecDeque, fmt, mem::size_of};

pub(crate) mod exchange;
pub mod kernel;

pub use exchange::{OTHER, PostgresExchange};

use crate::{
    chunk::{Chunk, Direction, Role},
    protocol::{Detection, Exchange, ParserStatus, Protocol, ProtocolParser},
};

/// Most prepared statements remembered per connection (the oldest is forgotten).
pub const MAX_STATEMENTS: usize = 64;
/// Most portals remembered per connection (drivers use the unnamed one).
pub const MAX_PORTALS: usize = 16;
/// Most operations awaiting their answers.
pub const MAX_PENDING: usize = 64;
/// Longest statement or portal name tracked (the server keeps 63 bytes); longer names
/// make their statements unknown.
pub const MAX_NAME_LEN: usize = 64;
/// Longest plausible message (the server's own limit on a field is 1 GiB).
pub const MAX_MESSAGE_LEN: u32 = monitor_framing::pg::MAX_MESSAGE_LEN;
/// Longest keyword an operation can have (`REFRESH`, `CHECKPOINT`... are shorter).
pub const MAX_KEYWORD_LEN: usize = 16;
use monitor_framing::pg::{CANCEL_REQUEST, GSSENC_REQUEST, MAX_STARTUP_LEN, SSL_REQUEST};

/// The PostgreSQL protocol, for [`crate::PROTOCOLS`].
pub struct Postgres;

impl Protocol for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn detect(&self, first: &Chunk<'_>) -> Detection {
        detect(first)
    }

    fn parser(&self) -> Box<dyn ProtocolParser> {
        Box::new(PostgresParser::new())
    }
}

/// Whether a connection's first chunk is a client's: a StartupMessage, SSLRequest or
/// GSSENCRequest (a new connection), or a `Query` or `Parse` whose body looks like text (a
/// connection opened before the agent). Lengths are checked strictly enough that HTTP
/// (`POST`, `PUT`: their second byte makes a length over 1 GiB), TLS and binary are not
/// taken for it.
pub fn detect(first: &Chunk<'_>) -> Detection {
    let data = first.data;
    let need_more = if first.is_fully_captured() {
        Detection::NeedMore
    } else {
        Detection::NoMatch
    };
    match data.first() {
        None => Detection::NoMatch,
        // Clients write a startup message whole: no need to wait for more.
        Some(0) => match startup_kind(data) {
            Some(Startup::Ssl | Startup::GssEnc | Startup::Protocol3) => Detection::Match,
            _ => Detection::NoMatch,
        },
        Some(b'Q' | b'P') => {
            if data.len() < 6 {
                let plausible = data.get(1).is_none_or(|&b| b <= 0x40);
                return if plausible {
                    need_more
                } else {
                    Detection::NoMatch
                };
            }
            if starts_query(data) {
                Detection::Match
            } else {
                Detection::NoMatch
            }
        }
        Some(_) => Detection::NoMatch,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Startup {
    Ssl,
    GssEnc,
    Cancel,
    Protocol3,
}

/// The kind of an untyped startup-phase message starting `data` (at least 8 bytes).
fn startup_kind(data: &[u8]) -> Option<Startup> {
    let len = be_u32(data.get(..4)?);
    let code = be_u32(data.get(4..8)?);
    match (code, len) {
        (SSL_REQUEST, 8) => Some(Startup::Ssl),
        (GSSENC_REQUEST, 8) => Some(Startup::GssEnc),
        (CANCEL_REQUEST, 16) => Some(Startup::Cancel),
        (code, 9..=MAX_STARTUP_LEN) if code >> 16 == 3 => {
            // Parameter names and values, NUL-terminated: text, and a name first.
            let end = (len as usize).min(data.len());
            let body = &data[8..end];
            let name_first = body
                .first()
                .is_none_or(|&b| b.is_ascii_lowercase() || b == b'_' || b == 0);
            let text = body.iter().all(|&b| b == 0 || is_text_byte(b));
            let terminated = len as usize > data.len() || data[end - 1] == 0;
            (name_first && text && terminated).then_some(Startup::Protocol3)
        }
        _ => None,
    }
}

/// A `Query` or `Parse` message whose captured body is text: a connection caught after its
/// startup is recognised by its next query.
fn starts_query(data: &[u8]) -> bool {
    let Some(header) = data.get(..5) else {
        return false;
    };
    let len = be_u32(&header[1..5]);
    // A length below 4 is rejected below; until then, an empty body.
    let end = data.len().min((len as usize).saturating_add(1)).max(5);
    let body = &data[5..end];
    match header[0] {
        b'Q' => {
            let complete = data.len() > len as usize;
            (6..=MAX_MESSAGE_LEN).contains(&len)
                && is_text_start(body)
                && (!complete || body.last() == Some(&0))
        }
        b'P' => {
            // A statement name (often empty), then the query.
            let name_len = body.iter().take_while(|&&b| b != 0).count();
            let name_ok =
                name_len <= MAX_NAME_LEN && body[..name_len].iter().all(u8::is_ascii_graphic);
            // The capture may end inside a long name; otherwise the query must be seen.
            let cut_in_name = name_len == body.len() && data.len() <= len as usize;
            let query = body.get(name_len + 1..).unwrap_or_default();
            (8..=MAX_MESSAGE_LEN).contains(&len) && name_ok && (cut_in_name || is_text_start(query))
        }
        _ => false,
    }
}

/// The first bytes of a query string (up to its NUL) are text: not empty, no control bytes
/// but whitespace.
fn is_text_start(query: &[u8]) -> bool {
    let head = &query[..query.len().min(32)];
    let head = head.split(|&b| b == 0).next().unwrap_or_default();
    !head.is_empty() && head.iter().all(|&b| is_text_byte(b))
}

/// Printable ASCII, whitespace, or part of a UTF-8 sequence.
fn is_text_byte(b: u8) -> bool {
    b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\n' | b'\r') || b >= 0x80
}

fn be_u32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .fold(0u32, |n, &b| (n << 8) | u32::from(b))
}

/// PostgreSQL's command keywords: the only first words an operation is named by.
const KEYWORDS: &[&str] = &[
    "ABORT",
    "ALTER",
    "ANALYSE",
    "ANALYZE",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "CLOSE",
    "CLUSTER",
    "COMMENT",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DISCARD",
    "DO",
    "DROP",
    "END",
    "EXECUTE",
    "EXPLAIN",
    "FETCH",
    "GRANT",
    "IMPORT",
    "INSERT",
    "LISTEN",
    "LOAD",
    "LOCK",
    "MERGE",
    "MOVE",
    "NOTIFY",
    "PREPARE",
    "REASSIGN",
    "REFRESH",
    "REINDEX",
    "RELEASE",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SAVEPOINT",
    "SECURITY",
    "SELECT",
    "SET",
    "SHOW",
    "START",
    "TABLE",
    "TRUNCATE",
    "UNLISTEN",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WITH",
];

/// The operation name of a first word (letters only, any case), if it is a command keyword.
pub fn operation_keyword(word: &[u8]) -> Option<&'static str> {
    if word.is_empty() || word.len() > MAX_KEYWORD_LEN {
        return None;
    }
    KEYWORDS
        .iter()
        .copied()
        .find(|keyword| keyword.as_bytes().eq_ignore_ascii_case(word))
}

/// Finds a statement's first keyword a byte at a time, so that a query split across chunks
/// needs no buffer and the text is never kept.
#[derive(Clone, Copy, Debug)]
enum KeywordScan {
    /// Before the first word: whitespace and `(` are skipped.
    Space,
    /// After one `-`.
    Dash,
    LineComment,
    /// After one `/`.
    Slash,
    /// Inside `/* */`, which PostgreSQL nests; `prev` is the previous byte.
    Block {
        depth: u32,
        prev: u8,
    },
    Word {
        letters: [u8; MAX_KEYWORD_LEN],
        len: u8,
    },
    /// None: the operation cannot be named.
    Done(Option<&'static str>),
}

impl KeywordScan {
    const START: Self = KeywordScan::Space;

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let KeywordScan::Done(_) = self {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        *self = match *self {
            KeywordScan::Space => match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'(' => KeywordScan::Space,
                b'-' => KeywordScan::Dash,
                b'/' => KeywordScan::Slash,
                _ if b.is_ascii_alphabetic() => {
                    let mut letters = [0; MAX_KEYWORD_LEN];
                    letters[0] = b;
                    KeywordScan::Word { letters, len: 1 }
                }
                _ => KeywordScan::Done(None),
            },
            KeywordScan::Dash if b == b'-' => KeywordScan::LineComment,
            KeywordScan::Dash => KeywordScan::Done(None),
            KeywordScan::LineComment if b == b'\n' || b == b'\r' => KeywordScan::Space,
            KeywordScan::LineComment => KeywordScan::LineComment,
            KeywordScan::Slash if b == b'*' => KeywordScan::Block { depth: 1, prev: 0 },
            KeywordScan::Slash => KeywordScan::Done(None),
            KeywordScan::Block { depth, prev } => match (prev, b) {
                (b'*', b'/') if depth <= 1 => KeywordScan::Space,
                (b'*', b'/') => KeywordScan::Block {
                    depth: depth - 1,
                    prev: 0,
                },
                (b'/', b'*') => KeywordScan::Block {
                    depth: depth.saturating_add(1),
                    prev: 0,
                },
                _ => KeywordScan::Block { depth, prev: b },
            },
            KeywordScan::Word { mut letters, len } => {
                let len = usize::from(len);
                if b.is_ascii_alphabetic() {
                    match letters.get_mut(len) {
                        Some(slot) => {
                            *slot = b;
                            KeywordScan::Word {
                                letters,
                                len: len as u8 + 1,
                            }
                        }
                        None => KeywordScan::Done(None),
                    }
                } else if b.is_ascii_digit() || b == b'_' || b == b'$' {
                    // An identifier, not a keyword.
                    KeywordScan::Done(None)
                } else {
                    KeywordScan::Done(operation_keyword(&letters[..len]))
                }
            }
            done @ KeywordScan::Done(_) => done,
        };
    }

    /// The operation, once the string ended (or was cut: then only a finished word counts).
    fn operation(self, complete: bool) -> Option<&'static str> {
        match self {
            KeywordScan::Done(operation) => operation,
            KeywordScan::Word { letters, len } if complete => {
                operation_keyword(&letters[..usize::from(len)])
            }
            _ => None,
        }
    }
}

/// A statement or portal name, inline.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

/// Reads a NUL-terminated name a byte at a time.
#[derive(Clone, Copy)]
enum NameScan {
    Reading(Name),
    Done(Name),
    TooLong,
}

impl NameScan {
    const START: Self = NameScan::Reading(Name {
        bytes: [0; MAX_NAME_LEN],
        len: 0,
    });

    /// Consumes up to the name's NUL; returns the bytes used.
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        for &b in bytes {
            match self {
                NameScan::Reading(name) => {
                    used += 1;
                    if b == 0 {
                        *self = NameScan::Done(*name);
                    } else if let Some(slot) = name.bytes.get_mut(usize::from(name.len)) {
                        *slot = b;
                        name.len += 1;
                    } else {
                        *self = NameScan::TooLong;
                    }
                }
                NameScan::TooLong => {
                    used += 1;
                    if b == 0 {
                        return used;
                    }
                }
                NameScan::Done(_) => return used,
            }
        }
        used
    }

    fn is_over(&self) -> bool {
        !matches!(self, NameScan::Reading(_))
    }

    fn name(&self) -> Option<&Name> {
        match self {
            NameScan::Done(name) => Some(name),
            _ => None,
        }
    }
}

/// Finds an `ErrorResponse`'s `C` (SQLSTATE) field: fields are a type byte and a
/// NUL-terminated value, the list ends with a zero type byte.
#[derive(Clone, Copy)]
enum ErrorScan {
    FieldType,
    Value,
    Code {
        code: [u8; 5],
        len: u8,
        valid: bool,
    },
    /// None: no usable code.
    Done(Option<[u8; 5]>),
}

impl ErrorScan {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            *self = match *self {
                ErrorScan::FieldType => match b {
                    0 => ErrorScan::Done(None),
                    b'C' => ErrorScan::Code {
                        code: [0; 5],
                        len: 0,
                        valid: true,
                    },
                    _ => ErrorScan::Value,
                },
                ErrorScan::Value if b == 0 => ErrorScan::FieldType,
                ErrorScan::Value => ErrorScan::Value,
                ErrorScan::Code { code, len, valid } if b == 0 => {
                    ErrorScan::Done((valid && len == 5).then_some(code))
                }
                ErrorScan::Code {
                    mut code,
                    len,
                    valid,
                } => {
                    let ok = b.is_ascii_digit() || b.is_ascii_uppercase();
                    match code.get_mut(usize::from(len)) {
                        Some(slot) if ok && valid => {
                            *slot = b;
                            ErrorScan::Code {
                                code,
                                len: len + 1,
                                valid,
                            }
                        }
                        _ => ErrorScan::Code {
                            code,
                            len,
                            valid: false,
                        },
                    }
                }
                ErrorScan::Done(_) => return,
            };
        }
    }

    fn sqlstate(self) -> Option<[u8; 5]> {
        match self {
            ErrorScan::Done(code) => code,
            _ => None,
        }
    }
}

/// What is read of a message body, by message type and direction.
#[derive(Clone, Copy)]
enum Content {
    /// Nothing (or nothing more) to read: skipped by count.
    Skip,
    /// Client `Q`: the query string.
    Query(KeywordScan),
    /// Client `P`: statement name, then query.
    Parse(NameScan, KeywordScan),
    /// Client `B`: portal name, then statement name (parameters are skipped).
    Bind(NameScan, NameScan),
    /// Client `E`: portal name (the row limit is skipped).
    Execute(NameScan),
    /// Server `E`.
    Error(ErrorScan),
}

impl Content {
    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Content::Skip => {}
            Content::Query(scan) => scan.feed(bytes),
            Content::Parse(name, scan) => {
                let used = name.feed(bytes);
                if name.is_over() {
                    scan.feed(&bytes[used..]);
                }
            }
            Content::Bind(portal, statement) => {
                let used = portal.feed(bytes);
                if portal.is_over() {
                    statement.feed(&bytes[used..]);
                }
            }
            Content::Execute(portal) => {
                portal.feed(bytes);
            }
            Content::Error(scan) => scan.feed(bytes),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// Frontend messages (queries).
    Client,
    /// Backend messages (answers).
    Server,
}

/// The framing of one direction.
#[derive(Clone, Copy)]
enum Frame {
    /// A header, possibly split across chunks: 5 bytes (type, length), or 8 for an untyped
    /// startup message (length, code).
    Header {
        buf: [u8; 8],
        have: u8,
    },
    Body {
        left: u64,
        content: Content,
    },
    /// Framing lost: skip chunks until one starts with a plausible message.
    Resync,
}

const NO_HEADER: Frame = Frame::Header {
    buf: [0; 8],
    have: 0,
};

/// One direction of the connection.
struct Reader {
    side: Side,
    /// Client only: still in the startup phase, whose messages have no type byte.
    untyped: bool,
    frame: Frame,
    /// When the current message's header started.
    message_ns: u64,
}

/// A one-byte answer to an encryption request, which the server sends unframed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    SslReply,
    GssReply,
}

/// An operation waiting for its answer.
#[derive(Clone, Copy, Debug)]
struct Pending {
    kind: PendingKind,
    /// The `ReadyForQuery` (counted from the start of the capture) that closes its batch.
    batch: u64,
}

#[derive(Clone, Copy, Debug)]
enum PendingKind {
    Query {
        operation: Option<&'static str>,
        start_ns: u64,
        /// A completion (or an error) came: a `ReadyForQuery` alone answers nothing.
        answered: bool,
        /// The first error's SQLSTATE (Some(None): an error without a usable one).
        error: Option<Option<[u8; 5]>>,
    },
    Execute {
        operation: Option<&'static str>,
        start_ns: u64,
    },
    /// Messages the capture lost: swallows the answers of its batch.
    Unknown,
}

#[derive(Clone, Copy)]
struct Statement {
    name: Name,
    operation: Option<&'static str>,
}

/// What both directions share: the operations in flight and the names they refer to.
struct Session {
    role: Role,
    statements: Vec<Statement>,
    portals: Vec<Statement>,
    pending: VecDeque<Pending>,
    /// `ReadyForQuery`s the client has asked for (`Query`, `Sync`, `FunctionCall`).
    ready_asked: u64,
    /// `ReadyForQuery`s received that were asked for.
    ready_seen: u64,
    awaiting: Awaiting,
    /// The connection went encrypted.
    encrypted: bool,
}

/// One PostgreSQL connection.
pub struct PostgresParser {
    /// Unknown until a chunk starts with a client message.
    role: Option<Role>,
    client: Reader,
    server: Reader,
    session: Session,
}

impl Default for PostgresParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresParser {
    pub fn new() -> Self {
        Self {
            role: None,
            client: Reader::new(Side::Client),
            server: Reader::new(Side::Server),
            session: Session {
                role: Role::Server,
                statements: Vec::new(),
                portals: Vec::new(),
                pending: VecDeque::new(),
                ready_asked: 0,
                ready_seen: 0,
                awaiting: Awaiting::Nothing,
                encrypted: false,
            },
        }
    }
}

impl ProtocolParser for PostgresParser {
    fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> ParserStatus {
        if self.session.encrypted {
            return ParserStatus::Finished;
        }
        let role = match self.role {
            Some(role) => role,
            None => {
                let data = chunk.data;
                let untyped = data.first() == Some(&0)
                    && startup_kind(data).is_some_and(|kind| kind != Startup::Cancel);
                if !untyped && !starts_query(data) {
                    return ParserStatus::Active;
                }
                let role = match chunk.direction {
                    Direction::Ingress => Role::Server,
                    Direction::Egress => Role::Client,
                };
                self.role = Some(role);
                self.session.role = role;
                self.client.untyped = untyped;
                role
            }
        };
        if chunk.direction == role.request_direction() {
            self.client.feed(chunk, &mut self.session, out);
        } else {
            self.server.feed(chunk, &mut self.session, out);
        }
        if self.session.encrypted {
            ParserStatus::Finished
        } else {
            ParserStatus::Active
        }
    }

    fn buffered_bytes(&self) -> usize {
        let session = &self.session;
        (session.statements.capacity() + session.portals.capacity()) * size_of::<Statement>()
            + session.pending.capacity() * size_of::<Pending>()
    }
}

impl Reader {
    fn new(side: Side) -> Self {
        Self {
            side,
            untyped: false,
            frame: NO_HEADER,
            message_ns: 0,
        }
    }

    fn feed(&mut self, chunk: &Chunk<'_>, session: &mut Session, out: &mut Vec<Exchange>) {
        let mut rest = chunk.data;
        if self.side == Side::Server && session.awaiting != Awaiting::Nothing {
            if let Some(&reply) = rest.first() {
                let awaited = std::mem::replace(&mut session.awaiting, Awaiting::Nothing);
                match (awaited, reply) {
                    (_, b'N') => rest = &rest[1..],
                    (Awaiting::SslReply, b'S') | (Awaiting::GssReply, b'G') => {
                        session.encrypted = true;
                        return;
                    }
                    // Not an answer to the request (an old server's error): read it as a
                    // message.
                    _ => {}
                }
            }
        }
        if matches!(self.frame, Frame::Resync) {
            if !self.starts_message(rest) {
                return;
            }
            if self.side == Side::Client && rest.first() != Some(&0) {
                self.untyped = false;
            }
            self.frame = NO_HEADER;
        }
        while !rest.is_empty() {
            let used = self.step(rest, chunk.timestamp_ns, session, out);
            rest = &rest[used..];
            if session.encrypted || matches!(self.frame, Frame::Resync) {
                return;
            }
        }
        let gap = chunk.uncaptured();
        if gap > 0 {
            self.skip(gap, session, out);
        }
    }

    /// Whether a chunk may start with a message of this direction: where to resynchronise.
    fn starts_message(&self, data: &[u8]) -> bool {
        if self.side == Side::Client && self.untyped && data.first() == Some(&0) {
            return startup_kind(data).is_some();
        }
        let Some(header) = data.get(..5) else {
            return false;
        };
        header_length(self.side, header[0], be_u32(&header[1..5])).is_some()
    }

    /// Consumes part of a message from `data`; returns the bytes used.
    fn step(
        &mut self,
        data: &[u8],
        now_ns: u64,
        session: &mut Session,
        out: &mut Vec<Exchange>,
    ) -> usize {
        match &mut self.frame {
            Frame::Header { buf, have } => {
                if *have == 0 {
                    self.message_ns = now_ns;
                }
                let size = if self.untyped { 8 } else { 5 };
                let want = size - usize::from(*have);
                let used = want.min(data.len());
                buf[usize::from(*have)..usize::from(*have) + used].copy_from_slice(&data[..used]);
                *have += used as u8;
                if usize::from(*have) == size {
                    let header = *buf;
                    self.header(&header, session, out);
                }
                used
            }
            Frame::Body { left, content } => {
                let used = usize::try_from(*left).map_or(data.len(), |left| left.min(data.len()));
                content.feed(&data[..used]);
                *left -= used as u64;
                if *left == 0 {
                    let content = *content;
                    self.frame = NO_HEADER;
                    self.finish(content, true, session, out);
                }
                used
            }
            Frame::Resync => data.len(),
        }
    }

    /// A complete header: acts on messages that need no body, sets up the body's reading.
    fn header(&mut self, header: &[u8; 8], session: &mut Session, out: &mut Vec<Exchange>) {
        let now_ns = self.message_ns;
        if self.untyped {
            let Some(kind) = startup_kind(header) else {
                return self.lose(session);
            };
            match kind {
                Startup::Ssl => session.awaiting = Awaiting::SslReply,
                Startup::GssEnc => session.awaiting = Awaiting::GssReply,
                Startup::Cancel => {}
                // Everything after it is typed.
                Startup::Protocol3 => self.untyped = false,
            }
            let left = u64::from(be_u32(&header[..4])).saturating_sub(8);
            self.body(left, Content::Skip, session, out);
            return;
        }
        let tag = header[0];
        let Some(left) = header_length(self.side, tag, be_u32(&header[1..5])) else {
            return self.lose(session);
        };
        let content = match (self.side, tag) {
            (Side::Client, b'Q') => Content::Query(KeywordScan::START),
            (Side::Client, b'P') => Content::Parse(NameScan::START, KeywordScan::START),
            (Side::Client, b'B') => Content::Bind(NameScan::START, NameScan::START),
            (Side::Client, b'E') => Content::Execute(NameScan::START),
            (Side::Client, b'S' | b'F') => {
                session.ready_asked += 1;
                Content::Skip
            }
            (Side::Server, b'E') => Content::Error(ErrorScan::FieldType),
            (Side::Server, b'C' | b'I' | b's') => {
                session.completed(None, now_ns, out);
                Content::Skip
            }
            (Side::Server, b'Z') => {
                session.ready(now_ns, out);
                Content::Skip
            }
            _ => Content::Skip,
        };
        self.body(u64::from(left), content, session, out);
    }

    fn body(
        &mut self,
        left: u64,
        content: Content,
        session: &mut Session,
        out: &mut Vec<Exchange>,
    ) {
        if left == 0 {
            self.frame = NO_HEADER;
            self.finish(content, true, session, out);
        } else {
            self.frame = Frame::Body { left, content };
        }
    }

    /// A message's body was read (`complete`) or cut by the capture: what it says.
    fn finish(
        &mut self,
        content: Content,
        complete: bool,
        session: &mut Session,
        out: &mut Vec<Exchange>,
    ) {
        let now_ns = self.message_ns;
        match content {
            Content::Skip => {}
            Content::Query(scan) => session.query(scan.operation(complete), now_ns),
            Content::Parse(name, scan) => {
                if let Some(name) = name.name() {
                    session.parse(name, scan.operation(complete));
                }
            }
            Content::Bind(portal, statement) => {
                if let Some(portal) = portal.name() {
                    session.bind(portal, statement.name());
                }
            }
            Content::Execute(portal) => session.execute(portal.name(), now_ns),
            Content::Error(scan) => session.completed(Some(scan.sqlstate()), now_ns, out),
        }
    }

    /// Skips `gap` bytes the capture did not keep.
    fn skip(&mut self, gap: u64, session: &mut Session, out: &mut Vec<Exchange>) {
        match &mut self.frame {
            Frame::Body { left, content } => {
                let content = std::mem::replace(content, Content::Skip);
                let left_after = left.checked_sub(gap);
                // What was seen of the message counts, whatever happens to the framing.
                self.finish(content, false, session, out);
                match left_after {
                    Some(0) => self.frame = NO_HEADER,
                    Some(left) => {
                        self.frame = Frame::Body {
                            left,
                            content: Content::Skip,
                        }
                    }
                    None => self.lose(session),
                }
            }
            // A header (or its end) is in the gap.
            Frame::Header { .. } => self.lose(session),
            Frame::Resync => {}
        }
    }

    fn lose(&mut self, session: &mut Session) {
        self.frame = Frame::Resync;
        match self.side {
            Side::Client => session.client_lost(),
            Side::Server => session.server_lost(),
        }
    }
}

/// The body length of a message with this type and length field, if it is plausible for
/// this direction: the probes' own test (`monitor_framing::pg`).
fn header_length(side: Side, tag: u8, len: u32) -> Option<u32> {
    monitor_framing::pg::body_length(side == Side::Server, tag, len)
}

impl Session {
    fn query(&mut self, operation: Option<&'static str>, start_ns: u64) {
        self.ready_asked += 1;
        self.push(Pending {
            kind: PendingKind::Query {
                operation,
                start_ns,
                answered: false,
                error: None,
            },
            batch: self.ready_asked,
        });
    }

    fn parse(&mut self, name: &Name, operation: Option<&'static str>) {
        remember(&mut self.statements, MAX_STATEMENTS, *name, operation);
    }

    fn bind(&mut self, portal: &Name, statement: Option<&Name>) {
        let operation = statement
            .and_then(|statement| find(&self.statements, statement))
            .and_then(|statement| statement.operation);
        remember(&mut self.portals, MAX_PORTALS, *portal, operation);
    }

    fn execute(&mut self, portal: Option<&Name>, start_ns: u64) {
        let operation = portal
            .and_then(|portal| find(&self.portals, portal))
            .and_then(|portal| portal.operation);
        self.push(Pending {
            kind: PendingKind::Execute {
                operation,
                start_ns,
            },
            batch: self.ready_asked + 1,
        });
    }

    fn push(&mut self, pending: Pending) {
        if self.pending.len() >= MAX_PENDING {
            // Whatever is dropped, the answers must not shift onto later operations.
            self.pending.pop_back();
            self.pending.push_back(Pending {
                kind: PendingKind::Unknown,
                batch: pending.batch,
            });
            return;
        }
        self.pending.push_back(pending);
    }

    /// The head of the queue, if it belongs to the batch the server is answering.
    fn current(&mut self) -> Option<&mut Pending> {
        let batch = self.ready_seen + 1;
        self.pending.front_mut().filter(|head| head.batch == batch)
    }

    /// A completion (`error` None) or an error (Some(SQLSTATE if usable)).
    fn completed(&mut self, error: Option<Option<[u8; 5]>>, now_ns: u64, out: &mut Vec<Exchange>) {
        let role = self.role;
        let Some(head) = self.current() else {
            return;
        };
        match &mut head.kind {
            PendingKind::Query {
                answered,
                error: first_error,
                ..
            } => {
                *answered = true;
                if first_error.is_none() {
                    *first_error = error;
                }
            }
            PendingKind::Execute {
                operation,
                start_ns,
            } => {
                out.push(exchange(
                    role,
                    *operation,
                    error,
                    now_ns.saturating_sub(*start_ns),
                ));
                self.pending.pop_front();
            }
            PendingKind::Unknown => {}
        }
    }

    fn ready(&mut self, now_ns: u64, out: &mut Vec<Exchange>) {
        if self.ready_seen >= self.ready_asked {
            // The end of the startup, or the answer to a request the capture lost.
            return;
        }
        self.ready_seen += 1;
        while let Some(head) = self.pending.front().filter(|p| p.batch <= self.ready_seen) {
            if let PendingKind::Query {
                operation,
                start_ns,
                answered: true,
                error,
            } = head.kind
            {
                out.push(exchange(
                    self.role,
                    operation,
                    error,
                    now_ns.saturating_sub(start_ns),
                ));
            }
            // Executes still here were skipped after an error: they did not run.
            self.pending.pop_front();
        }
    }

    fn client_lost(&mut self) {
        // The lost messages may have redefined the unnamed statement and portal.
        self.statements.retain(|s| s.name.len != 0);
        self.portals.retain(|p| p.name.len != 0);
        self.push(Pending {
            kind: PendingKind::Unknown,
            batch: self.ready_asked + 1,
        });
    }

    /// The lost bytes held answers, how many is unknown. Most likely all that was asked so
    /// far (a result set too big for the capture, then its `ReadyForQuery`, all in one
    /// write): if not, the late answers find nothing pending and are ignored, rather than
    /// shift onto the operations that follow.
    fn server_lost(&mut self) {
        self.pending.clear();
        self.ready_seen = self.ready_asked;
    }
}

fn find<'a>(names: &'a [Statement], name: &Name) -> Option<&'a Statement> {
    names.iter().find(|entry| entry.name == *name)
}

/// Records a name, replacing an older definition; when full, the oldest is forgotten.
fn remember(names: &mut Vec<Statement>, max: usize, name: Name, operation: Option<&'static str>) {
    names.retain(|entry| entry.name != name);
    if names.len() >= max {
        names.remove(0);
    }
    names.push(Statement { name, operation });
}

fn exchange(
    role: Role,
    operation: Option<&'static str>,
    error: Option<Option<[u8; 5]>>,
    duration_ns: u64,
) -> Exchange {
    Exchange::Postgres(PostgresExchange {
        role,
        operation: operation.unwrap_or(OTHER).to_owned(),
        sqlstate: error.map(|code| match code {
            Some(code) => String::from_utf8_lossy(&code).into_owned(),
            None => OTHER.to_owned(),
        }),
        duration_ns,
    })
}

impl fmt::Debug for PostgresParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresParser")
            .field("role", &self.role)
            .field("pending", &self.session.pending.len())
            .field("statements", &self.session.statements.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
