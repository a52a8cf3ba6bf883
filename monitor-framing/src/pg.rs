//! PostgreSQL's frontend/backend protocol (version 3) framed by the probes: each message's
//! header is read, its body skipped by count, and only the messages that start, name or end
//! an operation are recorded, each with at most [`HEAD`] bytes of its body (what names it:
//! a query's first keyword, a statement's or portal's name, an error's SQLSTATE). DataRows,
//! RowDescriptions and the rest of a result set never leave the kernel.
//!
//! A record is the message as the agent's parser (`monitor_protocols::postgres`) would have
//! seen it in a capture cut after its head: its header, its head, and its whole length, so
//! the parser frames it and skips the rest by count. What pairs the operations (counting
//! `ReadyForQuery`s, statement and portal names, errors in pipelines) stays in the agent,
//! where a pipeline of a hundred Executes costs nothing to remember.
//!
//! # Framing
//!
//! After the startup every message is a type byte and an Int32 length counting itself; the
//! client's startup messages have no type byte (a length, then a code: StartupMessage,
//! SSLRequest, GSSENCRequest, CancelRequest). An encryption request is answered by one
//! unframed byte: `N` (refused: plain text goes on), or `S`/`G` (the rest is ciphertext:
//! the connection is done with). A header, or a recorded message's head, may be split over
//! reads/writes (the head waits in [`PgSide::head`] until it is whole); bodies are skipped
//! wherever they end. A header whose type or length is implausible for its
//! direction ([`body_length`]), or that lies past the bytes the probe can read, loses that
//! direction's framing: a [`flags::LOST`] record tells the parser, and the direction is
//! framed again from the first read/write that starts with a plausible message.
//!
//! Every step is bounded: one message (or the rest of one) per [`PgConn::step`], at most
//! [`MAX_MESSAGES`] per read/write.

/// Bytes of a recorded message's body that its record carries.
pub const HEAD: u32 = 64;
/// Messages framed per read/write; a read/write with more (a result set of thousands of
/// small rows read at once) loses its direction's framing for the rest.
pub const MAX_MESSAGES: u32 = 1024;

/// Which of a connection's two directions a message went: [`PgConn::sides`]' index.
pub mod side {
    /// Frontend messages: queries.
    pub const CLIENT: usize = 0;
    /// Backend messages: answers.
    pub const SERVER: usize = 1;
}

/// [`Record::flags`].
pub mod flags {
    /// The connection's first record since it was judged.
    pub const FIRST: u8 = 1;
    /// The direction's framing was lost here: no message, only the loss.
    pub const LOST: u8 = 2;
}

/// PostgreSQL's startup codes (protocol 3.x, and the three requests).
pub const PROTOCOL_3: u32 = 0x0003_0000;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest startup packet the server accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: u32 = 10_000;
/// Longest plausible message (the server's own limit on a field is 1 GiB).
pub const MAX_MESSAGE_LEN: u32 = 1 << 30;

/// Whether a read/write whose first `len` bytes are `b` starts like a client's: a startup
/// packet (protocol 3, or an SSLRequest/GSSENCRequest), or a `Query` or `Parse` with a
/// plausible length (a connection opened before the agent). How a socket is judged.
pub fn starts_client(b: &[u8; 8], len: u32) -> bool {
    if len < 8 {
        return false;
    }
    let length = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let startup = (code == PROTOCOL_3 && (8..=MAX_STARTUP_LEN).contains(&length))
        || (length == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST));
    // Shorter than PostgreSQL's own limit: a false start costs more than a missed one.
    let message_length = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    let message = (b[0] == b'Q' || b[0] == b'P') && (5..1 << 24).contains(&message_length);
    startup || message
}

/// The body length of a typed message with this type and length field, if both are
/// plausible for its direction (`server`: a backend message).
#[inline(always)]
pub fn body_length(server: bool, tag: u8, len: u32) -> Option<u32> {
    // Some(n): the length is always n; None: any length from 4.
    let fixed = if server {
        match tag {
            b'1' | b'2' | b'3' | b'I' | b's' | b'n' | b'c' => Some(4),
            b'Z' => Some(5),
            b'K' => Some(12),
            b'R' | b'S' | b'E' | b'N' | b'A' | b'C' | b'T' | b'D' | b't' | b'G' | b'H' | b'W'
            | b'd' | b'v' | b'V' => None,
            _ => return None,
        }
    } else {
        match tag {
            b'S' | b'H' | b'X' | b'c' => Some(4),
            b'Q' | b'P' | b'B' | b'E' | b'D' | b'C' | b'F' | b'd' | b'f' | b'p' => None,
            _ => return None,
        }
    };
    let plausible = match fixed {
        Some(fixed) => len == fixed,
        None => (4..=MAX_MESSAGE_LEN).contains(&len),
    };
    if plausible { Some(len - 4) } else { None }
}

/// The body length of an untyped startup message (its 8-byte header: length, code), if it
/// is one; `encryption` is set to the reply it asks for (`S` or `G`), if any.
#[inline(always)]
fn startup_body(header: &[u8; 8], encryption: &mut u8, typed_next: &mut bool) -> Option<u32> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    match (code, len) {
        (SSL_REQUEST, 8) => *encryption = b'S',
        (GSSENC_REQUEST, 8) => *encryption = b'G',
        (CANCEL_REQUEST, 16) => {}
        (code, 9..=MAX_STARTUP_LEN) if code >> 16 == 3 => *typed_next = true,
        _ => return None,
    }
    Some(len - 8)
}

/// Whether a message of this direction and type is recorded, and whether with its head.
#[inline(always)]
fn recorded(server: bool, tag: u8) -> (bool, bool) {
    if server {
        // ReadyForQuery, ErrorResponse (its SQLSTATE), CommandComplete, EmptyQueryResponse,
        // PortalSuspended: what answers an operation.
        (matches!(tag, b'Z' | b'E' | b'C' | b'I' | b's'), tag == b'E')
    } else {
        // Query, Parse, Bind, Execute (named by their heads); Sync and FunctionCall (each
        // earns a ReadyForQuery).
        let head = matches!(tag, b'Q' | b'P' | b'B' | b'E');
        (head || tag == b'S' || tag == b'F', head)
    }
}

/// One direction's framing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgSide {
    /// Body bytes of the current message still to skip.
    pub left: u32,
    /// Header bytes of the next message gathered so far (a header split over
    /// reads/writes).
    pub have: u8,
    /// Client only: still in the startup phase, whose messages have no type byte.
    pub untyped: u8,
    /// The framing was lost: looked for again at the start of each read/write.
    pub lost: u8,
    /// The current message's record waits for the rest of its head, in the next
    /// read/write: `head` holds `head_have` of its `head_want` bytes.
    pub pending: u8,
    pub head_have: u8,
    pub head_want: u8,
    pub _pad: [u8; 6],
    pub header: [u8; 8],
    /// When the current header's first byte was seen.
    pub start_ns: u64,
    pub head: [u8; HEAD as usize],
}

impl Default for PgSide {
    fn default() -> Self {
        Self {
            left: 0,
            have: 0,
            untyped: 0,
            lost: 0,
            pending: 0,
            head_have: 0,
            head_want: 0,
            _pad: [0; 6],
            header: [0; 8],
            start_ns: 0,
            head: [0; HEAD as usize],
        }
    }
}

impl PgSide {
    /// Between messages, with nothing pending: the framing's fields only, field by field
    /// (a whole-struct write would be a `memset` call in the probes, a frame deeper).
    #[inline(always)]
    fn restart(&mut self, lost: bool) {
        self.left = 0;
        self.have = 0;
        self.pending = 0;
        self.head_have = 0;
        self.head_want = 0;
        self.lost = u8::from(lost);
    }
}

/// A connection's framing, both directions: the probes keep one per socket in a map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgConn {
    pub sides: [PgSide; 2],
    /// `direction` of the client's messages, as the process sees them.
    pub client_way: u8,
    /// The one-byte reply (`S` or `G`) the server owes an encryption request, or 0.
    pub awaiting: u8,
    /// The next record is the connection's first.
    pub first: u8,
    pub _pad: [u8; 5],
}

/// What a message's record says: its header, how long it is, and where its head is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// [`side`] of the message.
    pub side: u8,
    /// [`flags`].
    pub flags: u8,
    /// 1 (an encryption reply), 5 (typed) or 8 (untyped), 0 for a loss.
    pub header_len: u8,
    pub header: [u8; 8],
    /// The whole message's length, header included.
    pub length: u32,
    /// Where its head starts in the read/write, and how many of its bytes to carry (those
    /// of the first [`HEAD`] that the read/write holds and the probe can read).
    pub head_at: u32,
    pub head_len: u32,
    /// The head is the first `head_len` bytes of the side's `PgSide::head` instead: it
    /// came over two reads/writes.
    pub stashed: bool,
    pub start_ns: u64,
}

/// Where a step leaves the read/write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgStep {
    /// Go on from this offset.
    Next(u32),
    /// Nothing more to frame in this read/write.
    Stop,
    /// The connection went encrypted: never look at it again.
    Done,
}

/// What the framing needs of the read/write it frames.
pub trait PgWire {
    /// Copies up to 8 bytes at `offset` of the read/write (no more than the probe can read)
    /// into `buf`; returns how many (0 when they cannot be read).
    fn read(&mut self, offset: u32, buf: &mut [u8; 8]) -> u32;
    /// Copies `len` bytes at `offset` of the read/write (no more than [`HEAD`] - `at`) to
    /// `head[at..]`; returns how many (0 when they cannot be read).
    fn stash(&mut self, offset: u32, len: u32, head: &mut [u8; HEAD as usize], at: u32) -> u32;
    /// Now: when this read/write happened.
    fn now_ns(&mut self) -> u64;
    /// Writes a record; `head_at` and `head_len` are read from the read/write.
    fn record(&mut self, conn: &PgConn, record: &Record);
}

impl PgConn {
    /// A new connection (all zeroes, as [`PgConn::default`]) judged on a read/write the
    /// process made in `way` (the client's: [`starts_client`]) whose first byte was
    /// `first_byte`.
    pub fn begin(&mut self, way: u8, first_byte: u8) {
        self.client_way = way;
        self.first = 1;
        self.sides[side::CLIENT].untyped = u8::from(first_byte == 0);
    }

    /// The side of a read/write the process made in `way`.
    pub fn side_of(&self, way: u8) -> usize {
        if way == self.client_way {
            side::CLIENT
        } else {
            side::SERVER
        }
    }

    /// Starts a read/write of `side`, `readable` of whose bytes the probe can read: the
    /// server's reply to an encryption request, and a lost direction's resynchronisation.
    pub fn start(&mut self, side: usize, readable: u32, wire: &mut impl PgWire) -> PgStep {
        let side = side & 1;
        let awaited = side == side::SERVER && self.awaiting != 0 && self.sides[side].have == 0;
        if !awaited && self.sides[side].lost == 0 {
            // The common case: `step` reads the first header itself.
            return PgStep::Next(0);
        }
        let mut buf = [0; 8];
        let mut got = if readable > 0 {
            wire.read(0, &mut buf)
        } else {
            0
        };
        let mut at = 0;
        if awaited {
            let awaited = self.awaiting;
            self.awaiting = 0;
            if got == 0 {
                return PgStep::Stop;
            }
            let reply = buf[0];
            if reply == b'N' || reply == awaited {
                let mut record = Record {
                    side: side as u8,
                    header_len: 1,
                    // One store (an array literal would be a `memset` call in the probes).
                    header: u64::from(reply).to_le_bytes(),
                    length: 1,
                    head_at: 1,
                    start_ns: wire.now_ns(),
                    ..Record::default()
                };
                self.record(&mut record, wire);
                if reply != b'N' {
                    return PgStep::Done;
                }
                // What follows the reply, if anything, is framed normally.
                at = 1;
                got = if readable > 1 {
                    wire.read(1, &mut buf) + 1
                } else {
                    1
                };
            }
            // Anything else is not an answer to the request (an old server's error):
            // framed as a message.
        }
        let this = &mut self.sides[side];
        if this.lost == 0 {
            return PgStep::Next(at);
        }
        if got < 5 + at {
            return PgStep::Stop;
        }
        let plausible = if side == side::CLIENT && this.untyped != 0 && buf[0] == 0 {
            let (mut encryption, mut typed) = (0, false);
            got >= 8 && startup_body(&buf, &mut encryption, &mut typed).is_some()
        } else {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            body_length(side == side::SERVER, buf[0], len).is_some()
        };
        if !plausible {
            return PgStep::Stop;
        }
        if buf[0] != 0 {
            this.untyped = 0;
        }
        this.restart(false);
        PgStep::Next(at)
    }

    /// Frames from `at` of a read/write of `side` that moved `length` bytes, `readable` of
    /// which the probe can read: one message's header (and the skip of its body as far as
    /// the read/write goes), or the rest of a body.
    pub fn step(
        &mut self,
        side: usize,
        at: u32,
        length: u32,
        readable: u32,
        wire: &mut impl PgWire,
    ) -> PgStep {
        let side = side & 1;
        if at >= length {
            return PgStep::Stop;
        }
        let left = self.sides[side].left;
        if left > 0 {
            if self.sides[side].pending != 0 {
                self.continue_head(side, at, length, readable, wire);
            }
            let skip = left.min(length - at);
            self.sides[side].left = left - skip;
            return PgStep::Next(at + skip);
        }
        let server = side == side::SERVER;
        let untyped = !server && self.sides[side].untyped != 0;
        let size: u8 = if untyped { 8 } else { 5 };
        let have = self.sides[side].have.min(size);
        if have == 0 {
            self.sides[side].start_ns = wire.now_ns();
        }
        let need = u32::from(size - have);
        let mut buf = [0; 8];
        let got = if at < readable {
            wire.read(at, &mut buf).min(readable - at)
        } else {
            0
        };
        let take = need.min(got);
        if take < need && at + take < length {
            // The header's bytes were moved but cannot be read (a vectored read/write's
            // later pieces, a fault).
            return self.lose(side, wire);
        }
        let this = &mut self.sides[side];
        let mut i = 0;
        while i < 8 {
            if (i as u32) < take {
                this.header[(usize::from(have) + i) & 7] = buf[i];
            }
            i += 1;
        }
        this.have = have + take as u8;
        let at = at + take;
        if this.have < size {
            return PgStep::Next(at);
        }
        this.have = 0;
        let header = this.header;
        let (body, keep, head) = if untyped {
            let (mut encryption, mut typed) = (0, false);
            match startup_body(&header, &mut encryption, &mut typed) {
                Some(body) => {
                    if typed {
                        this.untyped = 0;
                    }
                    if encryption != 0 {
                        self.awaiting = encryption;
                    }
                    (body, true, false)
                }
                None => return self.lose(side, wire),
            }
        } else {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            match body_length(server, header[0], len) {
                Some(body) => {
                    let (keep, head) = recorded(server, header[0]);
                    (body, keep, head)
                }
                None => return self.lose(side, wire),
            }
        };
        if keep {
            let want = if head { body.min(HEAD) } else { 0 };
            let head_len = want.min(readable.saturating_sub(at));
            let mut record = Record {
                side: side as u8,
                header_len: size,
                header,
                length: body + u32::from(size),
                head_at: at,
                head_len,
                start_ns: self.sides[side].start_ns,
                ..Record::default()
            };
            if head_len < want && at + head_len >= length {
                // The read/write ends inside the head: the rest comes with the next one.
                let this = &mut self.sides[side];
                let kept = if head_len > 0 {
                    wire.stash(at, head_len, &mut this.head, 0)
                } else {
                    0
                };
                this.head_have = kept as u8;
                this.head_want = want as u8;
                this.pending = 1;
            } else {
                self.record(&mut record, wire);
            }
        }
        let skip = body.min(length - at);
        self.sides[side].left = body - skip;
        PgStep::Next(at + skip)
    }

    /// The rest of a pending record's head, from `at` of a read/write that continues its
    /// body: the record is written once the head is whole, or cannot be (its bytes cannot be
    /// read).
    #[inline(always)]
    fn continue_head(
        &mut self,
        side: usize,
        at: u32,
        length: u32,
        readable: u32,
        wire: &mut impl PgWire,
    ) {
        let this = &mut self.sides[side];
        let have = u32::from(this.head_have).min(HEAD);
        let need = (u32::from(this.head_want).min(HEAD) - have).min(this.left);
        let there = need.min(length - at);
        let take = there.min(readable.saturating_sub(at));
        let got = if take > 0 {
            wire.stash(at, take, &mut this.head, have)
        } else {
            0
        };
        this.head_have = (have + got) as u8;
        if got == need || got < there {
            self.record_stashed(side, wire);
        }
    }

    /// Writes the pending record of `side`, with the head it has.
    #[inline(always)]
    fn record_stashed(&mut self, side: usize, wire: &mut impl PgWire) {
        let this = &mut self.sides[side];
        this.pending = 0;
        // Only typed messages have heads: a type byte, then the length of the rest.
        let header = this.header;
        let rest = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut record = Record {
            side: side as u8,
            header_len: 5,
            header,
            length: rest + 1,
            head_len: u32::from(this.head_have),
            stashed: true,
            start_ns: this.start_ns,
            ..Record::default()
        };
        self.record(&mut record, wire);
    }

    /// Loses `side`'s framing: the parser is told, and the rest of the read/write skipped.
    #[inline(always)]
    pub fn lose(&mut self, side: usize, wire: &mut impl PgWire) -> PgStep {
        let side = side & 1;
        if self.sides[side].pending != 0 {
            // Its header was sound: what was seen of it counts.
            self.record_stashed(side, wire);
        }
        self.sides[side].restart(true);
        // One byte the parser did not see: its own loss of the framing.
        let mut record = Record {
            side: side as u8,
            flags: flags::LOST,
            length: 1,
            start_ns: wire.now_ns(),
            ..Record::default()
        };
        self.record(&mut record, wire);
        PgStep::Stop
    }

    #[inline(always)]
    fn record(&mut self, record: &mut Record, wire: &mut impl PgWire) {
        if self.first != 0 {
            record.flags |= flags::FIRST;
            self.first = 0;
        }
        wire.record(self, record);
    }

    /// Frames a whole read/write natively (the probes loop over [`PgConn::step`] one global
    /// function call at a time): for the agent's twin of the probes, and tests.
    pub fn feed(&mut self, way: u8, length: u32, readable: u32, wire: &mut impl PgWire) -> PgStep {
        let side = self.side_of(way);
        let mut at = match self.start(side, readable, wire) {
            PgStep::Next(at) => at,
            other => return other,
        };
        let mut count = 0;
        while at < length {
            if count >= MAX_MESSAGES {
                return self.lose(side, wire);
            }
            match self.step(side, at, length, readable, wire) {
                PgStep::Next(next) => at = next,
                other => return other,
            }
            count += 1;
        }
        PgStep::Stop
    }
}
