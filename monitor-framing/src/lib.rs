//! Requests framed in the probes: HTTP/1.x here, Redis's RESP in [`resp`], built the same way,
//! and PostgreSQL's messages in [`pg`].
//!
//! HTTP/1.x framing of one connection, fed one socket read or write at a time, written to be
//! compiled twice: into the probes (`monitor-ebpf`), to run on every read and write of an
//! HTTP connection and send one record per completed request, and natively, where the byte
//! fixtures, the differential tests against `monitor-protocols`' parser and the fuzzer run
//! it without root (`monitor_protocols::http::kernel::KernelTwin`).
//!
//! **In the probes** (`monitor-ebpf/src/framing.rs`): there [`Wire::turns`] and
//! [`Wire::scan`] call a global BPF function per turn and per run of bytes ([`Conn::turn`],
//! [`Conn::step_run`]), which the verifier checks once each, on every kernel from 5.6.
//! Unrolled over a 256-byte window (this crate's own [`Wire::scan`]), the 6.18 verifier
//! walked every state's branch for every byte and gave up past its million instructions.
//!
//! The kernel build is why it looks the way it does:
//!
//! - **A byte-at-a-time state machine** over windows of [`WINDOW`] bytes that the caller
//!   copies from the syscall's buffer ([`Wire::read`]): every loop has a constant bound, every
//!   index is masked, and all state lives in [`Conn`] (a kernel map value). No allocation,
//!   no slices of unknown length.
//! - **Bodies are skipped by count**, never read: `Content-Length` bodies in one jump, chunked
//!   bodies chunk by chunk (only the size lines are read). A response's head is read to its
//!   blank line, a request's head likewise, and nothing else.
//! - **Bounded work per call**: at most [`MAX_WINDOWS`] windows are read per read/write. A
//!   head or a run of small chunks longer than that loses the framing of that direction,
//!   which then resynchronises on the next read/write that starts a message (as does any
//!   malformed input). Requests whose request line was read still count.
//!
//! # What is produced
//! The side that first carries a request line decides the role: read → server, written →
//! client. A request starts when the first byte of its request line is seen; it is answered
//! by the first final (non-1xx) response after it, in order (pipelining), when that
//! response's status code is read: [`Wire::completed`] gets the request, the status and the
//! time the status line's first byte was seen. `101 Switching Protocols` and a `2xx` answer
//! to `CONNECT` end the framing at their head's end ([`Outcome::Done`], with where it
//! ended): the caller stops framing the socket.
//!
//! The request target is kept up to [`TEXT_CAP`] bytes and never past `?` or `#` (servers:
//! query strings never leave the kernel); clients keep the `Host` header instead, as that
//! is what names the server they asked.
#![no_std]

pub mod pg;
pub mod resp;

/// Bytes examined per copy from the syscall's buffer (a power of two: indexes are masked).
pub const WINDOW: usize = 256;
/// Windows read per read/write at most: 16 KiB of heads or chunk-size lines (long cookies;
/// a large write of many small chunks). Each is a call of the probes' per-turn function,
/// so the bound costs the verifier nothing, and a read/write pays only for what it needs.
pub const MAX_WINDOWS: u32 = 64;
/// Bytes of request target (server) or `Host` (client) kept per request.
pub const TEXT_CAP: usize = 64;
/// Requests awaiting their response (pipelining); a further one drops the oldest.
pub const MAX_PENDING: usize = 4;

const _: () = assert!(
    WINDOW.is_power_of_two() && MAX_PENDING.is_power_of_two() && TEXT_CAP.is_power_of_two()
);

/// Which way a read/write went, from the monitored process's point of view (the values of
/// `monitor_common::payload_direction`).
pub mod direction {
    pub const EGRESS: u8 = 1;
    pub const INGRESS: u8 = 2;
}

/// Which end of the connection the process is.
pub mod role {
    pub const SERVER: u8 = 1;
    pub const CLIENT: u8 = 2;
}

/// Request methods; anything but the nine standard ones is `OTHER`.
pub mod method {
    pub const GET: u8 = 1;
    pub const HEAD: u8 = 2;
    pub const POST: u8 = 3;
    pub const PUT: u8 = 4;
    pub const DELETE: u8 = 5;
    pub const CONNECT: u8 = 6;
    pub const OPTIONS: u8 = 7;
    pub const TRACE: u8 = 8;
    pub const PATCH: u8 = 9;
    pub const OTHER: u8 = 10;
}

/// `Pending::flags`.
pub mod text_flags {
    /// The text went on past `TEXT_CAP` bytes.
    pub const TRUNCATED: u8 = 1;
    /// A `?` or `#` ended the target: nothing after it is kept.
    pub const ENDED: u8 = 2;
    /// The request line's version is `HTTP/1.0` (`network_protocol_version`).
    pub const HTTP_1_0: u8 = 4;
}

/// One read or write (BPF functions take at most five arguments: hence a struct).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Io {
    /// `direction::*`.
    pub direction: u8,
    /// Bytes it moved.
    pub length: u32,
    /// How many of them, from the start, can be copied (the rest, as in further `iovec`s,
    /// can only be skipped).
    pub readable: u32,
    /// Bytes of the caller's window that already hold its start (0: none).
    pub loaded: u32,
}

/// What the caller does with the socket after a read/write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Keep framing it.
    Framing,
    /// It left HTTP (upgrade, tunnel): forget it and skip its reads and writes from now on.
    Done,
}

/// The caller's side of one read/write: its bytes, a clock and where completed requests go.
pub trait Wire {
    /// Copies `len` (1..=`WINDOW`) bytes of the read/write, from `offset`, to the start of
    /// `window`; the number copied, 0 if they could not be read.
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32;
    /// The time of this read/write (ns). Asked only when a message starts: implementations
    /// fetch it once and keep it.
    fn now_ns(&mut self) -> u64;
    /// A request was answered with final status `status`, whose line began at `end_ns`.
    fn completed(&mut self, request: &Pending, role: u8, status: u16, end_ns: u64);

    /// Frames one read/write: [`Conn::turn`] until it stops, at most [`MAX_TURNS`] times
    /// (`Again` when the turns ran out). This plain loop is what user space runs; the probes
    /// call a global function per turn instead, `cursor` in map memory (see [`Cursor`]).
    fn turns(
        &mut self,
        conn: &mut Conn,
        side: usize,
        io: &Io,
        cursor: &mut Cursor,
        window: &mut [u8; WINDOW],
    ) -> Turn
    where
        Self: Sized,
    {
        let mut turn = 0;
        while turn < MAX_TURNS {
            turn += 1;
            match conn.turn(side, io, cursor, window, self) {
                Turn::Again => {}
                done => return done,
            }
        }
        Turn::Again
    }

    /// Steps `conn`'s side `side` through `window[..got]` (`got` is 1..=`WINDOW`) until a
    /// byte ends the window's reading; the bytes used and that byte's [`Step`] (`Next` when
    /// all were used). The side's state is in `conn` on entry and must be on return.
    ///
    /// This plain loop is what user space runs. The probes call a global function per run
    /// of bytes instead, [`Conn::step_run`] its body: the verifier then checks a run once,
    /// instead of walking every branch of every byte of an unrolled window.
    fn scan(&mut self, conn: &mut Conn, side: usize, window: &[u8; WINDOW], got: u32) -> (u32, Step)
    where
        Self: Sized,
    {
        let mut used: u32 = 0;
        while used < WINDOW as u32 {
            if used >= got {
                break;
            }
            let (next, step) = conn.step_run(side, window, used, got, self);
            used = next;
            if step != Step::Next {
                return (used, step);
            }
        }
        (used, Step::Next)
    }
}

/// Whether a side in state `st` ignores every byte until the line's `\n` (a reason phrase,
/// a header no one asked for, a trailer, a chunk extension): those bytes need no step.
#[inline(always)]
fn waits_for_line_end(st: u8) -> bool {
    matches!(st, REASON | SKIP_LINE | TRAILER_LINE | CHUNK_EXTENSION)
}

/// The index of the first `\n` in `window[from..got]`, or `got` when there is none.
#[inline(always)]
fn line_end(window: &[u8; WINDOW], from: u32, got: u32) -> u32 {
    let mut at = from;
    // The loop ends at the constant WINDOW, `got` only breaks out of it: compilers turn
    // `at < got` into `at != got`, which tells a verifier nothing, and it would walk on past
    // any bound. Hidden from the compiler, `got` cannot replace WINDOW.
    let got = opaque(got);
    while at < WINDOW as u32 {
        if at >= got || window[masked(at as usize, WINDOW)] == b'\n' {
            break;
        }
        at += 1;
    }
    at.min(got)
}

/// A request whose request line was read, waiting for its response.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// When its first byte was seen.
    pub start_ns: u64,
    pub method: u8,
    /// Bytes of `text` used.
    pub text_len: u8,
    /// `text_flags`.
    pub flags: u8,
    pub _pad: [u8; 5],
    /// Server: the request target, up to `?`/`#`. Client: the `Host` header's value.
    pub text: [u8; TEXT_CAP],
}

/// One direction's parsing state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// `Content-Length` being read, or a chunk size.
    number: u64,
    /// Body bytes still to skip.
    remaining: u64,
    /// When the message being read began (a response's is its request's end).
    message_ns: u64,
    /// The method token so far (request line), or the status code (status line).
    acc: u64,
    state: u8,
    /// Position within the current token.
    pos: u8,
    /// In a header name: the candidate headers still matching (`header::*` bits); in a
    /// value: the one matched.
    header: u8,
    /// `framing::*` of the message being read.
    framing: u8,
    /// How much of `chunked` the current `Transfer-Encoding` coding has matched.
    te_pos: u8,
    _pad: [u8; 3],
}

/// Per-connection state: a kernel map value (about 400 bytes), all zeroes when new.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    pending: [Pending; MAX_PENDING],
    /// Requests, then responses.
    sides: [Side; 2],
    role: u8,
    /// Index of the oldest pending request, and how many there are.
    head: u8,
    count: u8,
    /// The method of the request the response being read answers (0: none).
    answering: u8,
    /// The response's status code, which with `answering` decides whether it has a body.
    status: u16,
    /// Whether a whole request line was ever read, and until then how many read/writes
    /// found the framing lost: a socket that is not HTTP after all is given up.
    proven: u8,
    misses: u8,
}

const REQUESTS: usize = 0;
const RESPONSES: usize = 1;

// `Side::state`. Between messages, a message's start line, its header lines, its body.
const IDLE: u8 = 0;
const METHOD: u8 = 1;
const TARGET: u8 = 2;
const REQUEST_VERSION: u8 = 3;
const STATUS_VERSION: u8 = 4;
const STATUS_CODE: u8 = 5;
const REASON: u8 = 6;
const LINE_START: u8 = 7;
const NAME: u8 = 8;
const VALUE: u8 = 9;
const SKIP_LINE: u8 = 10;
const HEAD_END: u8 = 11;
const BODY: u8 = 12;
const CHUNK_SIZE: u8 = 13;
const CHUNK_EXTENSION: u8 = 14;
const CHUNK_DATA: u8 = 15;
const CHUNK_END: u8 = 16;
const TRAILER_START: u8 = 17;
const TRAILER_LINE: u8 = 18;
/// The body runs until the connection closes.
const UNTIL_CLOSE: u8 = 19;
/// Framing lost: skip until a read/write begins with a message.
const LOST: u8 = 20;

/// Header names looked for, lowercase (`Side::header` bits).
mod header {
    pub const CONTENT_LENGTH: u8 = 1;
    pub const TRANSFER_ENCODING: u8 = 2;
    pub const HOST: u8 = 4;
    pub const CONTENT_LENGTH_NAME: &[u8; 14] = b"content-length";
    pub const TRANSFER_ENCODING_NAME: &[u8; 17] = b"transfer-encoding";
    pub const HOST_NAME: &[u8; 4] = b"host";
}

/// `Side::framing` bits: what the head said about the body.
mod framing {
    pub const LENGTH: u8 = 1;
    /// Malformed or conflicting `Content-Length`.
    pub const INVALID: u8 = 2;
    pub const TRANSFER_ENCODING: u8 = 4;
    /// The last coding of the last `Transfer-Encoding` is `chunked`.
    pub const CHUNKED: u8 = 8;
    /// In a `Content-Length` value: digits seen, then whitespace after them.
    pub const DIGITS: u8 = 16;
    pub const DIGITS_ENDED: u8 = 32;
    /// In a `Transfer-Encoding` value: the current coding is not `chunked`.
    pub const NOT_CHUNKED: u8 = 64;
    /// This direction resynchronised; its next message is the first after a gap.
    pub const RESYNCED: u8 = 128;
}

// `Side::acc` while a client's request target is read: where it is in `scheme://authority`.
const SCHEME: u64 = 0;
const SCHEME_COLON: u64 = 1;
const SCHEME_SLASH: u64 = 2;
const AUTHORITY: u64 = 3;
const NOT_ABSOLUTE: u64 = 4;

/// Longest method token accepted; longer is not HTTP.
const MAX_METHOD_LEN: u8 = 16;
/// Hex digits of a chunk size: more would overflow a u64.
const MAX_CHUNK_DIGITS: u8 = 15;
/// Larger `Content-Length` values are refused as implausible (and keep the sums exact).
const MAX_CONTENT_LENGTH: u64 = 1 << 52;

/// What one byte did to the parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Next,
    /// The side now skips bytes by count (or until the end): stop reading the window.
    Skip,
    /// The connection left HTTP.
    Done,
}

/// What a turn of framing a read/write left to do ([`Conn::turn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Another turn.
    Again,
    /// The read/write is done with (all of it used, or the rest is not framed).
    Stop,
    /// The connection left HTTP.
    Done,
}

/// Turns per read/write at most: each either skips body bytes (at most twice in a row: data,
/// then its CRLF read) or reads a window, so twice the windows bounds them.
pub const MAX_TURNS: u32 = 2 * MAX_WINDOWS + 2;

/// Bytes after the first that one [`Conn::step_run`] steps at most: a request line, or a
/// header line's name and value, in one call of the probes' per-byte function. A verifier
/// walks each of them once (at 64 the 6.18 verifier gave up past a million instructions).
pub const RUN: u32 = 32;

/// Where the framing of one read/write stands between its turns. The probes keep it in map
/// memory, where the verifier knows none of its values and so checks a turn once for all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Bytes of the read/write done with.
    offset: u32,
    /// Windows read.
    windows: u32,
    /// The side's parse state (`Side::state`) while the read/write is framed.
    st: u8,
    _pad: [u8; 7],
}

/// Read/writes that start no request before a socket is judged not HTTP; also how many
/// times a connection that never completed a request line may lose its framing.
pub const MAX_MISSES: u8 = 3;

/// The method's first bytes, as the probes look for them before framing a socket at all.
const REQUEST_STARTS: [[u8; 4]; 9] = [
    *b"GET ", *b"POST", *b"PUT ", *b"HEAD", *b"DELE", *b"PATC", *b"OPTI", *b"CONN", *b"TRAC",
];

/// Whether a read/write whose first `len` bytes are in `window` starts like a client's
/// message to a database: a Redis command (`*<count>\r\n$`, an array of bulk strings), or
/// a PostgreSQL startup packet (protocol 3.0, or an `SSLRequest`/`GSSENCRequest`), simple
/// query (`Q`) or statement (`P`) with a plausible length. Read on a socket's first
/// reads/writes, where [`starts_request`] said no; a false start costs the copies of that
/// connection, which the agent's parsers then ignore.
pub fn starts_database(window: &[u8; WINDOW], len: u32) -> bool {
    if len < 8 {
        return false;
    }
    // Constant indexes only: every access is then in bounds for the verifier.
    let b = [
        window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7],
    ];
    let digit = |byte: u8| byte.is_ascii_digit();
    let resp = b[0] == b'*'
        && digit(b[1])
        && ((b[2] == b'\r' && b[3] == b'\n' && b[4] == b'$')
            || (digit(b[2]) && b[3] == b'\r' && b[4] == b'\n' && b[5] == b'$'));
    resp || starts_postgres(window, len)
}

/// Whether a read/write whose first `len` bytes are in `window` starts like a PostgreSQL
/// client's ([`pg::starts_client`]).
pub fn starts_postgres(window: &[u8; WINDOW], len: u32) -> bool {
    // Constant indexes only: every access is then in bounds for the verifier.
    let b = [
        window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7],
    ];
    pg::starts_client(&b, len)
}

/// The client's connection preface of HTTP/2 (RFC 9113 §3.4), as far as a read/write's
/// first bytes tell: `PRI * HTTP/2.0\r\n`. Looked at before [`starts_request`], which would
/// take `PRI *` for an HTTP/1.x request line. Prior knowledge (cleartext `h2c`), ALPN `h2`
/// inside TLS and the preface after an `h2c` upgrade all start so.
pub fn starts_http2(window: &[u8; WINDOW], len: u32) -> bool {
    const PREFACE: [u8; 16] = *b"PRI * HTTP/2.0\r\n";
    if len < PREFACE.len() as u32 {
        return false;
    }
    let mut i = 0;
    while i < PREFACE.len() {
        if window[i] != PREFACE[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a read/write that starts no request looks like it starts in the middle of an
/// HTTP/2 connection: a frame header (RFC 9113 §4.1) of a type, length, flags and stream
/// that go together. A connection first seen so cannot be followed (its header tables
/// started before), only counted. Strict, as a false match only costs a count.
pub fn looks_like_http2_frame(window: &[u8; WINDOW], len: u32) -> bool {
    if len < 9 {
        return false;
    }
    let b = [
        window[0], window[1], window[2], window[3], window[4], window[5], window[6], window[7],
        window[8],
    ];
    let length = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let (kind, flags) = (b[3], b[4]);
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    if length > 16_384 || stream & 0x8000_0000 != 0 {
        return false;
    }
    match kind {
        // DATA, HEADERS: on a stream, with only their defined flags.
        0 => stream != 0 && flags & !0x09 == 0,
        1 => stream != 0 && flags & !0x2d == 0 && length > 0,
        // RST_STREAM, WINDOW_UPDATE: four bytes.
        3 => stream != 0 && flags == 0 && length == 4,
        8 => flags == 0 && length == 4,
        // An acknowledged SETTINGS, PING, GOAWAY: on stream 0. Not a SETTINGS that is not an
        // acknowledgement: a server may send its own (its preface) before it reads the
        // client's, the start of a connection that can be followed.
        4 => stream == 0 && flags == 1 && length == 0,
        6 => stream == 0 && flags & !0x01 == 0 && length == 8,
        7 => stream == 0 && flags == 0 && length >= 8,
        _ => false,
    }
}

/// Whether a read/write starts with a server's connection preface (RFC 9113 §3.4): a
/// SETTINGS frame that is not an acknowledgement. Looked for only after an `h2c` upgrade,
/// where the server may send it before it reads the client's preface.
pub fn starts_server_settings(window: &[u8; WINDOW], len: u32) -> bool {
    if len < 9 {
        return false;
    }
    let length = u32::from_be_bytes([0, window[0], window[1], window[2]]);
    let stream = u32::from_be_bytes([window[5], window[6], window[7], window[8]]);
    window[3] == 4 && window[4] == 0 && stream == 0 && length.is_multiple_of(6) && length <= 16_384
}

/// Whether a read/write whose first `len` bytes are in `window` may start an HTTP request:
/// a standard method's first four bytes, or fewer that begin one (a client that writes `GE`
/// then `T / HTTP/1.1`), or any method token followed by an origin-form target (`PROPFIND
/// /dav/`). How a socket becomes an HTTP connection; a false start is found out by the
/// framing, and the connection given up after [`MAX_MISSES`].
pub fn starts_request(window: &[u8; WINDOW], len: u32) -> bool {
    if len == 0 {
        return false;
    }
    let mut token = 0;
    while token < usize::from(MAX_METHOD_LEN) && token + 2 < len as usize {
        let byte = window[token];
        if byte == b' ' {
            if token > 0 && (window[token + 1] == b'/' || window[token + 1] == b'*') {
                return true;
            }
            break;
        }
        if !is_token_byte(byte) {
            break;
        }
        token += 1;
    }
    let mut i = 0;
    while i < REQUEST_STARTS.len() {
        let start = REQUEST_STARTS[i];
        let mut matched = true;
        let mut j = 0;
        while j < 4 {
            if j < len as usize && start[j] != window[j] {
                matched = false;
            }
            j += 1;
        }
        if matched {
            return true;
        }
        i += 1;
    }
    false
}

/// A socket's verdict before it is framed, kept per socket by the probes: 0..`MAX_MISSES`
/// read/writes so far started nothing; then [`verdict::HTTP`] (framed) or
/// [`verdict::IGNORE`] (never looked at again).
pub mod verdict {
    pub const HTTP: u32 = 100;
    /// A database's wire protocol ([`starts_database`](super::starts_database)) not framed
    /// by the probes: its reads and writes are copied to the agent, which frames them.
    pub const DATABASE: u32 = 152;
    /// Redis ([`resp::starts_command`](super::resp::starts_command)): framed by the probes
    /// ([`resp`](super::resp)), one record per command and reply.
    pub const REDIS: u32 = 153;
    /// PostgreSQL ([`pg::starts_client`](super::pg::starts_client)): framed by the probes
    /// ([`pg`](super::pg)), one record per message that starts, names or answers an
    /// operation.
    pub const POSTGRES: u32 = 154;
    /// HTTP/2 ([`starts_http2`](super::starts_http2)): copied to the agent like a database.
    pub const HTTP2: u32 = 155;
    /// After an upgrade (`101`): the next reads/writes are looked at for HTTP/2's
    /// prefaces only (the client's, or the server's SETTINGS), `UPGRADED + 1` for the
    /// second, then the socket is ignored.
    pub const UPGRADED: u32 = 170;
    pub const IGNORE: u32 = 200;

    /// Whether a socket's reads/writes go to the probes' copy (and, from there, to the
    /// Redis or PostgreSQL framing): the four verdicts that differ only in their last two
    /// bits. One mask and one comparison: the framing programs' stack has no room for more
    /// (a range check took one of them past 5.10's 512 bytes).
    pub fn is_copied(verdict: u32) -> bool {
        verdict & !3 == DATABASE
    }

    const _: () = assert!(
        DATABASE & 3 == 0
            && REDIS & !3 == DATABASE
            && POSTGRES & !3 == DATABASE
            && HTTP2 & !3 == DATABASE
    );

    /// The verdict after a read/write that started no request.
    pub fn after_miss(verdict: u32) -> u32 {
        if verdict + 1 >= u32::from(super::MAX_MISSES) {
            IGNORE
        } else {
            verdict + 1
        }
    }
}

/// The read/write's direction as seen by the connection's role: its requests or responses.
fn side_of(role: u8, direction: u8) -> usize {
    let requests_read = role == role::SERVER;
    if (direction == direction::INGRESS) == requests_read {
        REQUESTS
    } else {
        RESPONSES
    }
}

fn method_code(token: u64, len: u8) -> u8 {
    // The token's bytes, big-endian in `token`.
    const fn packed(name: &[u8]) -> u64 {
        let mut value = 0u64;
        let mut i = 0;
        while i < name.len() {
            value = (value << 8) | name[i] as u64;
            i += 1;
        }
        value
    }
    const METHODS: [(u64, u8, u8); 9] = [
        (packed(b"GET"), 3, method::GET),
        (packed(b"HEAD"), 4, method::HEAD),
        (packed(b"POST"), 4, method::POST),
        (packed(b"PUT"), 3, method::PUT),
        (packed(b"DELETE"), 6, method::DELETE),
        (packed(b"CONNECT"), 7, method::CONNECT),
        (packed(b"OPTIONS"), 7, method::OPTIONS),
        (packed(b"TRACE"), 5, method::TRACE),
        (packed(b"PATCH"), 5, method::PATCH),
    ];
    let mut i = 0;
    while i < METHODS.len() {
        let (value, name_len, code) = METHODS[i];
        if value == token && name_len == len {
            return code;
        }
        i += 1;
    }
    method::OTHER
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte == b'-' || byte == b'_'
}

fn hex_value(byte: u8) -> Option<u64> {
    match byte {
        b'0'..=b'9' => Some(u64::from(byte - b'0')),
        b'a'..=b'f' => Some(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(byte - b'A' + 10)),
        _ => None,
    }
}

/// Whether `name[pos]` is `lower` (a lowercased name byte); false past its end.
fn name_byte_is<const N: usize>(name: &[u8; N], pos: u8, lower: u8) -> bool {
    let pos = usize::from(pos);
    pos < N && name[pos] == lower
}

impl Conn {
    /// All zeroes: a new connection, role unknown. The probes copy it from a zeroed map.
    pub const ZERO: Conn = Conn {
        pending: [Pending {
            start_ns: 0,
            method: 0,
            text_len: 0,
            flags: 0,
            _pad: [0; 5],
            text: [0; TEXT_CAP],
        }; MAX_PENDING],
        sides: [Side {
            number: 0,
            remaining: 0,
            message_ns: 0,
            acc: 0,
            state: IDLE,
            pos: 0,
            header: 0,
            framing: 0,
            te_pos: 0,
            _pad: [0; 3],
        }; 2],
        role: 0,
        head: 0,
        count: 0,
        answering: 0,
        status: 0,
        proven: 0,
        misses: 0,
    };

    /// Makes a zeroed connection whose first request was just seen going `direction`.
    pub fn begin(&mut self, direction: u8) {
        self.role = if direction == direction::INGRESS {
            role::SERVER
        } else {
            role::CLIENT
        };
    }

    /// Frames one read or write; `window` is scratch space, of which `io.loaded` bytes may
    /// already hold the read/write's start. With [`Outcome::Done`], the bytes of the
    /// read/write that were HTTP's: what follows is the new protocol's (0 if unknown).
    pub fn feed<W: Wire>(
        &mut self,
        io: &Io,
        window: &mut [u8; WINDOW],
        wire: &mut W,
    ) -> (Outcome, u32) {
        let k = side_of(self.role, io.direction);
        let mut cursor = Cursor {
            offset: 0,
            windows: 0,
            st: self.sides[k].state,
            _pad: [0; 7],
        };
        let outcome = self.frame(k, io, &mut cursor, window, wire);
        self.sides[k].state = cursor.st;
        (outcome, cursor.offset)
    }

    fn frame<W: Wire>(
        &mut self,
        k: usize,
        io: &Io,
        cursor: &mut Cursor,
        window: &mut [u8; WINDOW],
        wire: &mut W,
    ) -> Outcome {
        if cursor.st == LOST {
            if self.proven == 0 {
                self.misses += 1;
                if self.misses >= MAX_MISSES {
                    return Outcome::Done;
                }
            }
            // Resynchronise: only a read/write that begins a message can, and if this one
            // does not, `step` finds it lost again at its first byte.
            cursor.st = IDLE;
            self.sides[k].framing = framing::RESYNCED;
        }
        if wire.turns(self, k, io, cursor, window) == Turn::Done {
            return Outcome::Done;
        }
        // Out of turns with head bytes left: what they hold is unknown.
        if cursor.offset < io.length && !matches!(cursor.st, BODY | CHUNK_DATA | UNTIL_CLOSE | LOST)
        {
            cursor.st = LOST;
        }
        Outcome::Framing
    }

    /// One turn of framing a read/write on side `side`: skips body bytes, or reads a window
    /// and steps through it ([`Wire::scan`]). The body of the probes' per-turn global
    /// function ([`Wire::turns`]), so everything it carries from one turn to the next is in
    /// `cursor`.
    pub fn turn<W: Wire>(
        &mut self,
        side: usize,
        io: &Io,
        cursor: &mut Cursor,
        window: &mut [u8; WINDOW],
        wire: &mut W,
    ) -> Turn {
        let k = side & 1;
        let length = io.length;
        let readable = io.readable.min(length);
        if cursor.offset >= length {
            return Turn::Stop;
        }
        match cursor.st {
            BODY | CHUNK_DATA => {
                let side = &mut self.sides[k];
                let skip = side.remaining.min(u64::from(length - cursor.offset));
                side.remaining -= skip;
                cursor.offset += skip as u32;
                if side.remaining == 0 {
                    cursor.st = if cursor.st == BODY { IDLE } else { CHUNK_END };
                }
                return Turn::Again;
            }
            UNTIL_CLOSE | LOST => return Turn::Stop,
            _ => {}
        }
        // Head bytes this call cannot read, or read no more of: the framing is lost.
        if cursor.offset >= readable || cursor.windows >= MAX_WINDOWS {
            if cursor.offset >= readable && self.cut(&mut cursor.st, k, wire) == Step::Done {
                return Turn::Done;
            }
            cursor.st = LOST;
            return Turn::Stop;
        }
        let want = (readable - cursor.offset).min(WINDOW as u32);
        let got = if cursor.offset == 0 && io.loaded > 0 {
            io.loaded.min(want)
        } else {
            wire.read(cursor.offset, want, window)
        };
        cursor.windows += 1;
        if got == 0 {
            cursor.st = LOST;
            return Turn::Stop;
        }
        self.sides[k].state = cursor.st;
        let (used, step) = wire.scan(self, k, window, got);
        cursor.st = self.sides[k].state;
        cursor.offset += used;
        // Lost in the head of the response that leaves HTTP (or in what came with it): HTTP
        // ends all the same, where exactly is unknown. Here, not in `feed`: this runs in the
        // probes' per-turn function, and the framing programs themselves are at the older
        // verifiers' limits (5.10 and 6.1 refused an extra branch there).
        if step == Step::Done || (cursor.st == LOST && self.leaves_http()) {
            return Turn::Done;
        }
        Turn::Again
    }

    /// Steps side `side` through `window[..got]` from `at` (< `got`): the byte at `at`,
    /// whatever its state, then up to [`RUN`] more while their states only read and write
    /// `self` (a start line's tokens, header names and values), then past the bytes a state
    /// ignores up to the line's end. The index after the last byte used, and that byte's
    /// [`Step`] (`Next` when none stopped the window's reading).
    ///
    /// The body of the probes' per-byte global function ([`Wire::scan`]): a run costs one
    /// call, and a dispatch per byte. Here too, so the twin runs exactly what the probes do.
    #[inline(always)]
    pub fn step_run<W: Wire>(
        &mut self,
        side: usize,
        window: &[u8; WINDOW],
        at: u32,
        got: u32,
        wire: &mut W,
    ) -> (u32, Step) {
        let k = side & 1;
        let step = self.step_stored(k, window[masked(at as usize, WINDOW)], wire);
        let mut at = at + 1;
        if step != Step::Next {
            return (at, step);
        }
        let mut run = 0;
        while run < RUN {
            if at >= got {
                break;
            }
            // Read back, so a verifier meets one unknown state per byte, not each constant
            // a handler could have stored.
            let mut st = reloaded(&self.sides[k].state);
            let byte = window[masked(at as usize, WINDOW)];
            let step = match st {
                METHOD => self.method(&mut st, byte),
                TARGET => self.target(&mut st, byte),
                REQUEST_VERSION => self.request_version(&mut st, byte),
                STATUS_VERSION => self.status_version(&mut st, byte),
                LINE_START if byte != b'\r' && byte != b'\n' => self.line_start(&mut st, k, byte),
                NAME => self.name(&mut st, k, byte),
                VALUE => self.value(&mut st, k, byte),
                _ => break,
            };
            self.sides[k].state = st;
            at += 1;
            run += 1;
            if step != Step::Next {
                return (at, step);
            }
        }
        if waits_for_line_end(self.sides[k].state) {
            at = line_end(window, at, got);
        }
        (at, Step::Next)
    }

    /// One byte of side `side`, its state read from and written back to `self`.
    #[inline(always)]
    fn step_stored<W: Wire>(&mut self, side: usize, byte: u8, wire: &mut W) -> Step {
        let side = side & 1;
        let mut st = self.sides[side].state;
        let step = self.step(&mut st, side, byte, wire);
        self.sides[side].state = st;
        step
    }

    fn step<W: Wire>(&mut self, st: &mut u8, k: usize, byte: u8, wire: &mut W) -> Step {
        match *st {
            IDLE => self.idle(st, k, byte, wire),
            METHOD => self.method(st, byte),
            TARGET => self.target(st, byte),
            REQUEST_VERSION => self.request_version(st, byte),
            STATUS_VERSION => self.status_version(st, byte),
            STATUS_CODE => self.status_code(st, byte, wire),
            REASON | SKIP_LINE => {
                if byte == b'\n' {
                    *st = LINE_START;
                }
                Step::Next
            }
            LINE_START => self.line_start(st, k, byte),
            NAME => self.name(st, k, byte),
            VALUE => self.value(st, k, byte),
            HEAD_END => {
                if byte == b'\n' {
                    self.head_done(st, k)
                } else {
                    lose(st)
                }
            }
            CHUNK_SIZE => self.chunk_size(st, k, byte),
            CHUNK_EXTENSION => {
                if byte == b'\n' {
                    self.chunk_size_done(st, k)
                } else {
                    Step::Next
                }
            }
            CHUNK_END => match byte {
                b'\r' => Step::Next,
                b'\n' => {
                    let side = &mut self.sides[k];
                    *st = CHUNK_SIZE;
                    side.number = 0;
                    side.pos = 0;
                    Step::Next
                }
                _ => lose(st),
            },
            TRAILER_START => match byte {
                b'\r' => Step::Next,
                b'\n' => {
                    *st = IDLE;
                    Step::Next
                }
                _ => {
                    *st = TRAILER_LINE;
                    Step::Next
                }
            },
            TRAILER_LINE => {
                if byte == b'\n' {
                    *st = TRAILER_START;
                }
                Step::Next
            }
            _ => Step::Skip,
        }
    }

    /// The rest of the read/write cannot be read: a start line cut after its essentials (a
    /// request's target, a response's status code) still counts, the target marked cut.
    fn cut<W: Wire>(&mut self, st: &mut u8, k: usize, wire: &mut W) -> Step {
        let side = &self.sides[k];
        match *st {
            TARGET | REQUEST_VERSION if k == REQUESTS && side.pos > 0 => {
                if *st == TARGET {
                    let tail = self.tail();
                    self.pending[tail].flags |= text_flags::TRUNCATED;
                }
                self.count += 1;
                self.proven = 1;
                Step::Next
            }
            // The response leaving HTTP (its status read), its head's end past the capture:
            // the framing ends here all the same.
            _ if k == RESPONSES && self.leaves_http() => Step::Done,
            STATUS_CODE if side.pos == 3 => match self.status_code(st, b' ', wire) {
                Step::Next if self.leaves_http() => Step::Done,
                step => step,
            },
            _ => Step::Next,
        }
    }

    /// Between messages: blank lines, or the first byte of a start line.
    fn idle<W: Wire>(&mut self, st: &mut u8, k: usize, byte: u8, wire: &mut W) -> Step {
        if byte == b'\r' || byte == b'\n' {
            return Step::Next;
        }
        let starts = if k == REQUESTS {
            byte.is_ascii_uppercase()
        } else {
            byte == b'H'
        };
        if !starts {
            return lose(st);
        }
        let side = &mut self.sides[k];
        *st = if k == REQUESTS {
            METHOD
        } else {
            STATUS_VERSION
        };
        side.message_ns = wire.now_ns();
        side.acc = u64::from(byte);
        side.pos = 1;
        // Keep only whether this message follows a resynchronisation.
        side.framing &= framing::RESYNCED;
        Step::Next
    }

    /// The slot the request being read goes to (not yet counted as pending).
    fn tail(&self) -> usize {
        masked(
            usize::from(self.head) + usize::from(self.count),
            MAX_PENDING,
        )
    }

    /// The slot of the newest pending request (whose head is being read).
    fn newest(&self) -> usize {
        masked(
            usize::from(self.head) + usize::from(self.count) + MAX_PENDING - 1,
            MAX_PENDING,
        )
    }

    fn method(&mut self, st: &mut u8, byte: u8) -> Step {
        let side = &mut self.sides[REQUESTS];
        if byte == b' ' {
            let code = method_code(side.acc, side.pos);
            let start_ns = side.message_ns;
            *st = TARGET;
            side.pos = 0;
            if usize::from(self.count) == MAX_PENDING {
                // Too many unanswered: the oldest will never be matched.
                self.head = (self.head + 1) & (MAX_PENDING as u8 - 1);
                self.count -= 1;
            }
            let tail = self.tail();
            let request = &mut self.pending[tail];
            request.start_ns = start_ns;
            request.method = code;
            request.text_len = 0;
            request.flags = 0;
            return Step::Next;
        }
        if !is_token_byte(byte) || side.pos >= MAX_METHOD_LEN {
            return lose(st);
        }
        if side.pos < 8 {
            side.acc = (side.acc << 8) | u64::from(byte);
        }
        side.pos += 1;
        Step::Next
    }

    fn target(&mut self, st: &mut u8, byte: u8) -> Step {
        let first = self.sides[REQUESTS].pos == 0;
        if byte == b' ' && !first {
            let side = &mut self.sides[REQUESTS];
            *st = REQUEST_VERSION;
            side.pos = 0;
            return Step::Next;
        }
        if byte <= b' '
            || byte == 0x7f
            || (first && !(byte == b'/' || byte == b'*' || byte.is_ascii_alphabetic()))
        {
            return lose(st);
        }
        let tail = self.tail();
        let side = &mut self.sides[REQUESTS];
        if first {
            side.acc = if byte.is_ascii_alphabetic() {
                SCHEME
            } else {
                NOT_ABSOLUTE
            };
        }
        side.pos = 1;
        if self.role == role::CLIENT {
            // An absolute-form target (through a proxy) names the server: its authority.
            side.acc = match (side.acc, byte) {
                (SCHEME, b':') => SCHEME_COLON,
                (SCHEME, _) if byte.is_ascii_alphanumeric() || b"+-.".contains(&byte) => SCHEME,
                (SCHEME_COLON, b'/') => SCHEME_SLASH,
                (SCHEME_SLASH, b'/') => AUTHORITY,
                (AUTHORITY, b'/' | b'?' | b'#') => NOT_ABSOLUTE,
                (AUTHORITY, _) => {
                    append(&mut self.pending[tail], byte);
                    AUTHORITY
                }
                _ => NOT_ABSOLUTE,
            };
        } else {
            let request = &mut self.pending[tail];
            if byte == b'?' || byte == b'#' {
                request.flags |= text_flags::ENDED;
            } else if request.flags & text_flags::ENDED == 0 {
                append(request, byte);
            }
        }
        Step::Next
    }

    fn request_version(&mut self, st: &mut u8, byte: u8) -> Step {
        const VERSION: &[u8; 7] = b"HTTP/1.";
        let side = &mut self.sides[REQUESTS];
        let pos = side.pos;
        let ok = match pos {
            0..=6 => byte == VERSION[usize::from(pos)],
            7 => byte.is_ascii_digit(),
            8 => byte == b'\r' || byte == b'\n',
            _ => byte == b'\n',
        };
        if !ok {
            return lose(st);
        }
        side.pos = pos + 1;
        if pos == 7 && byte == b'0' {
            let tail = self.tail();
            self.pending[tail].flags |= text_flags::HTTP_1_0;
        }
        if byte == b'\n' {
            // The request line is whole: the request counts from now on.
            *st = LINE_START;
            self.count += 1;
            self.proven = 1;
        }
        Step::Next
    }

    fn status_version(&mut self, st: &mut u8, byte: u8) -> Step {
        const VERSION: &[u8; 7] = b"HTTP/1.";
        let side = &mut self.sides[RESPONSES];
        let pos = side.pos;
        let ok = match pos {
            0..=6 => byte == VERSION[usize::from(pos)],
            7 => byte.is_ascii_digit(),
            _ => byte == b' ',
        };
        if !ok {
            return lose(st);
        }
        if pos == 8 {
            *st = STATUS_CODE;
            side.pos = 0;
            side.acc = 0;
        } else {
            side.pos = pos + 1;
        }
        Step::Next
    }

    fn status_code<W: Wire>(&mut self, st: &mut u8, byte: u8, wire: &mut W) -> Step {
        let side = &mut self.sides[RESPONSES];
        if side.pos < 3 {
            if !byte.is_ascii_digit() || (side.pos == 0 && byte == b'0') {
                return lose(st);
            }
            side.acc = side.acc * 10 + u64::from(byte - b'0');
            side.pos += 1;
            return Step::Next;
        }
        let next = match byte {
            b' ' | b'\r' => REASON,
            b'\n' => LINE_START,
            _ => return lose(st),
        };
        *st = next;
        let status = side.acc as u16;
        let end_ns = side.message_ns;
        let resynced = side.framing & framing::RESYNCED != 0;
        side.framing = 0;
        self.response_started(status, end_ns, resynced, wire)
    }

    fn response_started<W: Wire>(
        &mut self,
        status: u16,
        end_ns: u64,
        resynced: bool,
        wire: &mut W,
    ) -> Step {
        if resynced {
            // Responses were missed: the next one most likely answers the newest request.
            // Arithmetic, not a loop: the verifier would walk a loop as often as `count`
            // could be (255) times.
            if self.count > 1 {
                self.head = (self.head + self.count - 1) & (MAX_PENDING as u8 - 1);
                self.count = 1;
            }
        }
        let head = masked(usize::from(self.head), MAX_PENDING);
        let method = if self.count > 0 {
            self.pending[head].method
        } else {
            0
        };
        self.answering = method;
        self.status = status;
        if (100..200).contains(&status) && status != 101 {
            // Interim: the final response follows.
            return Step::Next;
        }
        if self.count > 0 {
            wire.completed(&self.pending[head], self.role, status, end_ns);
            self.head = (self.head + 1) & (MAX_PENDING as u8 - 1);
            self.count -= 1;
        }
        // Leaving HTTP (`leaves_http`) ends the framing at the head's end, where what
        // follows (an `h2c` server's preface) begins.
        Step::Next
    }

    /// Whether the response being read ends HTTP on the connection: `101 Switching
    /// Protocols`, or a `2xx` answer to `CONNECT`.
    fn leaves_http(&self) -> bool {
        self.status == 101
            || (self.answering == method::CONNECT && (200..300).contains(&self.status))
    }

    fn line_start(&mut self, st: &mut u8, k: usize, byte: u8) -> Step {
        let side = &mut self.sides[k];
        match byte {
            b'\r' => *st = HEAD_END,
            b'\n' => return self.head_done(st, k),
            // An obsolete line folding continues the previous value: nothing we read.
            b' ' | b'\t' => *st = SKIP_LINE,
            _ => {
                *st = NAME;
                side.pos = 0;
                side.header = header::CONTENT_LENGTH | header::TRANSFER_ENCODING;
                if k == REQUESTS && self.role == role::CLIENT {
                    side.header |= header::HOST;
                }
                return self.name(st, k, byte);
            }
        }
        Step::Next
    }

    fn name(&mut self, st: &mut u8, k: usize, byte: u8) -> Step {
        let newest = self.newest();
        let side = &mut self.sides[k];
        match byte {
            b':' => {
                let matched = if side.header & header::CONTENT_LENGTH != 0
                    && usize::from(side.pos) == header::CONTENT_LENGTH_NAME.len()
                {
                    header::CONTENT_LENGTH
                } else if side.header & header::TRANSFER_ENCODING != 0
                    && usize::from(side.pos) == header::TRANSFER_ENCODING_NAME.len()
                {
                    header::TRANSFER_ENCODING
                } else if side.header & header::HOST != 0
                    && usize::from(side.pos) == header::HOST_NAME.len()
                {
                    header::HOST
                } else {
                    0
                };
                side.header = matched;
                *st = if matched == 0 { SKIP_LINE } else { VALUE };
                side.pos = 0;
                if matched == header::CONTENT_LENGTH {
                    side.number = 0;
                    side.framing &= !(framing::DIGITS | framing::DIGITS_ENDED);
                } else if matched == header::TRANSFER_ENCODING {
                    // The last Transfer-Encoding header decides.
                    side.framing |= framing::TRANSFER_ENCODING;
                    side.framing &= !(framing::CHUNKED | framing::NOT_CHUNKED);
                    side.te_pos = 0;
                } else if matched == header::HOST {
                    // The first Host wins; a request line that was cut short has none.
                    if self.count == 0 || self.pending[newest].text_len > 0 {
                        *st = SKIP_LINE;
                    }
                }
                Step::Next
            }
            b'\n' => {
                *st = LINE_START;
                Step::Next
            }
            _ => {
                let lower = byte.to_ascii_lowercase();
                let pos = side.pos;
                if !name_byte_is(header::CONTENT_LENGTH_NAME, pos, lower) {
                    side.header &= !header::CONTENT_LENGTH;
                }
                if !name_byte_is(header::TRANSFER_ENCODING_NAME, pos, lower) {
                    side.header &= !header::TRANSFER_ENCODING;
                }
                if !name_byte_is(header::HOST_NAME, pos, lower) {
                    side.header &= !header::HOST;
                }
                if side.header == 0 {
                    *st = SKIP_LINE;
                }
                side.pos = pos.saturating_add(1);
                Step::Next
            }
        }
    }

    fn value(&mut self, st: &mut u8, k: usize, byte: u8) -> Step {
        let newest = self.newest();
        let side = &mut self.sides[k];
        if byte == b'\n' {
            match side.header {
                header::CONTENT_LENGTH => {
                    let seen = side.framing & framing::LENGTH != 0;
                    if side.framing & framing::DIGITS == 0
                        || (seen && side.remaining != side.number)
                    {
                        side.framing |= framing::INVALID;
                    }
                    // `remaining` holds the value until the head ends.
                    side.remaining = side.number;
                    side.framing |= framing::LENGTH;
                }
                header::TRANSFER_ENCODING
                    if side.te_pos == 7 && side.framing & framing::NOT_CHUNKED == 0 =>
                {
                    side.framing |= framing::CHUNKED;
                }
                _ => {}
            }
            *st = LINE_START;
            return Step::Next;
        }
        if byte == b'\r' {
            return Step::Next;
        }
        let blank = byte == b' ' || byte == b'\t';
        match side.header {
            header::CONTENT_LENGTH => {
                if blank {
                    if side.framing & framing::DIGITS != 0 {
                        side.framing |= framing::DIGITS_ENDED;
                    }
                } else if byte.is_ascii_digit() && side.framing & framing::DIGITS_ENDED == 0 {
                    side.number = side.number * 10 + u64::from(byte - b'0');
                    side.framing |= framing::DIGITS;
                    if side.number > MAX_CONTENT_LENGTH {
                        side.framing |= framing::INVALID;
                        side.number = 0;
                    }
                } else {
                    side.framing |= framing::INVALID;
                }
            }
            header::TRANSFER_ENCODING => {
                if byte == b',' {
                    side.te_pos = 0;
                    side.framing &= !framing::NOT_CHUNKED;
                } else if blank {
                    if side.te_pos > 0 && side.te_pos < 7 {
                        side.framing |= framing::NOT_CHUNKED;
                    }
                } else if name_byte_is(b"chunked", side.te_pos, byte.to_ascii_lowercase()) {
                    side.te_pos += 1;
                } else {
                    side.framing |= framing::NOT_CHUNKED;
                }
            }
            _ => {
                // Host (client requests only): into the newest request.
                if blank && side.pos == 0 {
                    return Step::Next;
                }
                side.pos = 1;
                append(&mut self.pending[newest], byte);
            }
        }
        Step::Next
    }

    fn head_done(&mut self, st: &mut u8, k: usize) -> Step {
        if k == RESPONSES && self.leaves_http() {
            return Step::Done;
        }
        let side = &mut self.sides[k];
        let flags = side.framing;
        let length = side.remaining;
        let next = if k == REQUESTS {
            if flags & framing::TRANSFER_ENCODING != 0 {
                // A request body in any other coding cannot be delimited (RFC 9112, 6.3).
                if flags & framing::CHUNKED != 0 {
                    CHUNK_SIZE
                } else {
                    LOST
                }
            } else if flags & framing::INVALID != 0 {
                LOST
            } else if flags & framing::LENGTH != 0 && length > 0 {
                BODY
            } else {
                IDLE
            }
        } else if self.answering == method::HEAD
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            IDLE
        } else if flags & framing::TRANSFER_ENCODING != 0 {
            if flags & framing::CHUNKED != 0 {
                CHUNK_SIZE
            } else {
                UNTIL_CLOSE
            }
        } else if flags & framing::INVALID != 0 {
            LOST
        } else if flags & framing::LENGTH != 0 {
            if length > 0 { BODY } else { IDLE }
        } else {
            UNTIL_CLOSE
        };
        *st = next;
        side.number = 0;
        side.pos = 0;
        if next != BODY {
            side.remaining = 0;
        }
        match next {
            BODY | UNTIL_CLOSE | LOST => Step::Skip,
            _ => Step::Next,
        }
    }

    fn chunk_size(&mut self, st: &mut u8, k: usize, byte: u8) -> Step {
        let side = &mut self.sides[k];
        if let Some(digit) = hex_value(byte) {
            if side.pos >= MAX_CHUNK_DIGITS {
                return lose(st);
            }
            side.number = (side.number << 4) | digit;
            side.pos += 1;
            return Step::Next;
        }
        if side.pos == 0 {
            return lose(st);
        }
        match byte {
            b'\n' => self.chunk_size_done(st, k),
            b';' | b' ' | b'\t' | b'\r' => {
                *st = CHUNK_EXTENSION;
                Step::Next
            }
            _ => lose(st),
        }
    }

    fn chunk_size_done(&mut self, st: &mut u8, k: usize) -> Step {
        let side = &mut self.sides[k];
        if side.number == 0 {
            *st = TRAILER_START;
            return Step::Next;
        }
        side.remaining = side.number;
        side.number = 0;
        *st = CHUNK_DATA;
        Step::Skip
    }
}

/// `value`, hidden from the compiler's range analysis (see `masked`).
#[inline(always)]
fn opaque(value: u32) -> u32 {
    // SAFETY: a plain read of a local variable.
    unsafe { core::ptr::read_volatile(&value) }
}

/// `*value`, read from memory again: the compiler would otherwise reuse the constant a
/// handler just stored there, and a verifier would walk the next byte once per constant.
#[inline(always)]
fn reloaded(value: &u8) -> u8 {
    // SAFETY: a plain read through a reference.
    unsafe { core::ptr::read_volatile(value) }
}

/// `index % size` for a power-of-two `size`, as a mask the compiler cannot drop. Where it can
/// prove an index in bounds (a loop bound, a comparison) it removes the mask, and the kernel
/// verifiers, which lose a register's bounds once it is spilled to the stack, then refuse
/// the access. A volatile read hides the value from the compiler, so the mask stays.
#[inline(always)]
fn masked(index: usize, size: usize) -> usize {
    // SAFETY: a plain read of a local variable.
    unsafe { core::ptr::read_volatile(&index) & (size - 1) }
}

fn lose(st: &mut u8) -> Step {
    *st = LOST;
    Step::Skip
}

fn append(request: &mut Pending, byte: u8) {
    let len = usize::from(request.text_len);
    if len < TEXT_CAP {
        request.text[masked(len, TEXT_CAP)] = byte;
        request.text_len += 1;
    } else {
        request.flags |= text_flags::TRUNCATED;
    }
}
