//! Redis's RESP (2 and 3) framed like HTTP/1.x: one connection fed one socket read or write
//! at a time, compiled into the probes (`monitor-ebpf/src/redis.rs`) and natively
//! (`monitor_protocols::redis::kernel`, where the fixtures and the fuzzer compare it with the
//! user-space parser).
//!
//! The framing finds where each **message** starts and ends, a command or a reply, and hands
//! each to [`RespWire::message`] as a [`Message`]: its type byte, when its first byte was
//! seen, and one word. A command's word is its name, never an argument; a reply's is an
//! error's first word (`WRONGTYPE`), or an array's or push's first element when it is a bulk
//! string (what a subscriber's `message` or a `subscribe` confirmation is). Pairing the
//! replies with the commands they answer (pipelines, `MULTI`, the subscribed mode) is the
//! agent's, over these messages, where a FIFO of a hundred pipelined commands costs nothing.
//!
//! As in the HTTP framing: a byte-at-a-time state machine over windows the caller copies,
//! every loop bounded by a constant, all state in [`RespConn`] (a map value); bulk strings
//! are skipped by count, never read, but for the one word kept; at most [`MAX_WINDOWS`]
//! windows are read per read/write, past which the side is lost until a read/write starts a
//! message again. A reply's side that loses its framing says so ([`flags::LOST`]): which of
//! the pending commands were answered is then unknown.
use crate::{Cursor, Io, MAX_MISSES, MAX_WINDOWS, Outcome, Step, Turn, WINDOW, direction, masked};

/// Bytes of a command's name or a reply's word kept (as `monitor_protocols::redis`).
pub const WORD: usize = 32;
/// Nesting of aggregates followed in a reply; deeper loses the framing.
pub const MAX_DEPTH: usize = 16;
/// Arguments a command may have (Redis refuses more and closes the connection).
const MAX_ARGS: u64 = 1024 * 1024;
/// Larger lengths or counts are not RESP.
const MAX_NUMBER: u64 = 1 << 53;
/// Bytes after the first that one [`RespConn::step_run`] steps at most (see `crate::RUN`).
pub const RUN: u32 = 32;
/// Turns per read/write at most: each skips a bulk string's bytes or reads a window.
pub const MAX_TURNS: u32 = 2 * MAX_WINDOWS + 2;

/// [`Message::kind`] of an inline command (`PING\r\n`, typed by hand).
pub const INLINE: u8 = b' ';

/// [`Message::flags`].
pub mod flags {
    /// The word went on past [`WORD`](super::WORD) bytes: it is no label.
    pub const SPOILED: u8 = 1;
    /// The word's capture ended where it should: a space or the end of its line or string.
    pub const WORD_DONE: u8 = 2;
    /// The aggregate's first element was a bulk string: `word` is it.
    pub const FIRST_BULK: u8 = 4;
    /// `count` holds the aggregate's third element, an integer (a RESP2 subscription
    /// confirmation's count of subscriptions left).
    pub const COUNT: u8 = 8;
    /// The framing was lost inside this message: what was read of it.
    pub const PARTIAL: u8 = 16;
    /// The side's framing was lost (with [`PARTIAL`], in this message).
    pub const LOST: u8 = 32;
    /// The aggregate's first element was read to its end.
    pub const FIRST_DONE: u8 = 64;
}

/// A command or reply, as far as the framing read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// When its first byte was seen (a reply's attributes included).
    pub start_ns: u64,
    /// See [`flags::COUNT`].
    pub count: i64,
    /// A top-level aggregate's elements (a map's twice its pairs); an inline command's words.
    pub elements: u32,
    /// The connection's read/write (from 1) that carried its first byte.
    pub seq: u32,
    /// Its type byte (`*`, `+`, `-`, …), or [`INLINE`].
    pub kind: u8,
    /// [`flags`].
    pub flags: u8,
    /// Bytes of `word` used.
    pub word_len: u8,
    pub _pad: [u8; 5],
    pub word: [u8; WORD],
}

/// One direction's parsing state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RespSide {
    message: Message,
    /// A length or count being read; an inline command's words; a count element's value.
    number: u64,
    /// Bytes of the bulk string being read still to come (its CRLF apart).
    remaining: u64,
    /// Elements still to read per level of aggregate, [`ATTRIBUTE`] marking a level that is
    /// an attribute (no element of its parent).
    left: [u32; MAX_DEPTH],
    state: u8,
    /// The type byte whose length line, line or bulk is being read.
    kind: u8,
    depth: u8,
    /// `bit::*`.
    bits: u8,
    _pad: [u8; 4],
}

/// Per-connection state: a kernel map value, all zeroes when new.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RespConn {
    sides: [RespSide; 2],
    /// Read/writes framed so far.
    seq: u32,
    /// `crate::role`, set by [`RespConn::begin`].
    pub role: u8,
    /// Whether a command was ever read whole, and until then how many read/writes found
    /// the framing lost: a socket that is not Redis after all is given up.
    proven: u8,
    misses: u8,
    /// Whether a command came as an array. Client libraries always send arrays and
    /// hand-typed sessions never do: a connection that sent one does not resume on an
    /// inline word, which may as well be the text of a value read in parts.
    arrays: u8,
}

const REQUESTS: usize = 0;
const RESPONSES: usize = 1;

const ATTRIBUTE: u32 = 1 << 31;

// `RespSide::state`.
const START: u8 = 0;
const NUMBER: u8 = 1;
const NUMBER_LF: u8 = 2;
const LINE: u8 = 3;
const LINE_LF: u8 = 4;
const BULK: u8 = 5;
const BULK_CR: u8 = 6;
const BULK_LF: u8 = 7;
const INLINE_LINE: u8 = 8;
const LOST: u8 = 9;

/// `RespSide::bits`.
mod bit {
    /// Inside a message (or the attributes before a reply).
    pub const ACTIVE: u8 = 1;
    /// The number being read has a `-`.
    pub const NEGATIVE: u8 = 2;
    /// The line or bulk being read is the message's word.
    pub const WORD: u8 = 4;
    /// An error's word: it ends at the first space.
    pub const ERROR_WORD: u8 = 8;
    /// The line being read is the count element ([`super::flags::COUNT`]).
    pub const COUNT: u8 = 16;
    /// Inline: inside a word.
    pub const IN_WORD: u8 = 32;
    /// The number being read has a digit.
    pub const DIGITS: u8 = 64;
}

/// The caller's side of one read/write (see `crate::Wire`).
pub trait RespWire {
    /// Copies `len` (1..=`WINDOW`) bytes of the read/write, from `offset`, to the start of
    /// `window`; the number copied, 0 if they could not be read.
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32;
    /// The time of this read/write (ns), fetched once.
    fn now_ns(&mut self) -> u64;
    /// The message of the side `side` (0: commands, 1: replies) ended, or was lost:
    /// [`RespConn::message`]. (Not handed over by value: a copy on the probes' stack would
    /// take them past its 512 bytes.)
    fn message(&mut self, conn: &RespConn, side: usize);

    /// Frames one read/write: [`RespConn::turn`] until it stops (the probes call a global
    /// function per turn instead).
    fn turns(
        &mut self,
        conn: &mut RespConn,
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

    /// Steps side `side` through `window[..got]`: the bytes used and the [`Step`] that
    /// ended it (the probes call a global function per run of bytes instead).
    fn scan(
        &mut self,
        conn: &mut RespConn,
        side: usize,
        window: &[u8; WINDOW],
        got: u32,
    ) -> (u32, Step)
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

/// Whether a read/write whose first `len` bytes are in `window` starts a command the way
/// clients send them: `*<1-7 digits>\r\n$`, or a read/write shorter than that which begins
/// one (a client that writes `*3\r` then the rest). How a socket becomes a Redis
/// connection, and where a lost command side starts again.
pub fn starts_command(window: &[u8; WINDOW], len: u32) -> bool {
    if len == 0 || window[0] != b'*' {
        return false;
    }
    let len = len as usize;
    let mut at = 1;
    while at < 9 {
        if at >= len {
            return true;
        }
        let byte = window[masked(at, WINDOW)];
        if !byte.is_ascii_digit() {
            let tail = *b"\r\n$";
            let mut i = 0;
            while i < tail.len() {
                if at + i >= len {
                    return at > 1;
                }
                if window[masked(at + i, WINDOW)] != tail[i] {
                    return false;
                }
                i += 1;
            }
            return at > 1;
        }
        at += 1;
    }
    false
}

/// Inline commands (typed by hand: `PING\r\n`) that may open a connection, as
/// `monitor_protocols::redis` has them but `AUTH`, which other protocols share (FTP's
/// `AUTH TLS`): few, as other text protocols have verbs too.
const INLINE_STARTERS: [&[u8]; 9] = [
    b"PING", b"HELLO", b"SELECT", b"INFO", b"QUIT", b"ECHO", b"CLIENT", b"COMMAND", b"MONITOR",
];

/// Whether a read/write starts with one of the [`INLINE_STARTERS`], all uppercase or all
/// lowercase, then a space or the line's end.
pub fn starts_inline(window: &[u8; WINDOW], len: u32) -> bool {
    let word = word_len(window, len, 8);
    if word == 0 || word >= len as usize {
        return false;
    }
    let lower = window[0].is_ascii_lowercase();
    let mut i = 0;
    while i < INLINE_STARTERS.len() {
        let starter = INLINE_STARTERS[i];
        if starter.len() == word {
            let mut j = 0;
            let mut same = true;
            while j < 8 && j < word {
                let byte = window[j];
                let wanted = if lower {
                    starter.get(j).copied().unwrap_or(0).to_ascii_lowercase()
                } else {
                    starter.get(j).copied().unwrap_or(0)
                };
                same &= byte == wanted;
                j += 1;
            }
            if same {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Whether a read/write starts with a word of letters, up to [`WORD`] of them, then a space
/// or the line's end: where the commands of a connection that never sent an array resume.
fn starts_word(window: &[u8; WINDOW], len: u32) -> bool {
    let word = word_len(window, len, WORD);
    word > 0 && word < len as usize
}

/// The letters `window` starts with, up to `max`, if a space or a line's end follows them
/// within `len` bytes (else 0).
fn word_len(window: &[u8; WINDOW], len: u32, max: usize) -> usize {
    let len = len as usize;
    let mut at = 0;
    while at <= max && at < WINDOW {
        if at >= len {
            return 0;
        }
        let byte = window[masked(at, WINDOW)];
        if matches!(byte, b' ' | b'\r' | b'\n') {
            return at;
        }
        if !byte.is_ascii_alphabetic() {
            return 0;
        }
        at += 1;
    }
    0
}

/// Whether a byte starts a RESP value.
fn is_type(byte: u8) -> bool {
    matches!(
        byte,
        b'+' | b'-'
            | b':'
            | b','
            | b'('
            | b'_'
            | b'#'
            | b'$'
            | b'='
            | b'!'
            | b'*'
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

impl RespConn {
    /// Makes a zeroed connection whose first command was just seen going `direction`.
    pub fn begin(&mut self, way: u8) {
        self.role = if way == direction::INGRESS {
            crate::role::SERVER
        } else {
            crate::role::CLIENT
        };
    }

    /// Frames one read or write. [`Outcome::Done`] when the socket turned out not to be
    /// Redis: the caller stops framing it.
    pub fn feed<W: RespWire>(
        &mut self,
        io: &Io,
        window: &mut [u8; WINDOW],
        wire: &mut W,
    ) -> Outcome {
        let k = crate::side_of(self.role, io.direction);
        self.seq = self.seq.wrapping_add(1);
        if self.sides[k].state == LOST && self.proven == 0 {
            self.misses += 1;
            if self.misses >= MAX_MISSES {
                return Outcome::Done;
            }
        }
        let mut cursor = Cursor::default();
        if wire.turns(self, k, io, &mut cursor, window) == Turn::Done {
            return Outcome::Done;
        }
        // Out of turns inside a message's lines: what they hold is unknown.
        if cursor.offset < io.length && !matches!(self.sides[k].state, BULK | LOST) {
            self.lose(k, wire);
        }
        Outcome::Framing
    }

    /// One turn of framing a read/write on side `side`: skips a bulk string's bytes, or
    /// reads a window and steps through it. The body of the probes' per-turn function.
    pub fn turn<W: RespWire>(
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
        let st = self.sides[k].state;
        if st == BULK && self.sides[k].bits & bit::WORD == 0 {
            let s = &mut self.sides[k];
            let skip = s.remaining.min(u64::from(length - cursor.offset));
            s.remaining -= skip;
            cursor.offset += skip as u32;
            if s.remaining == 0 {
                s.state = BULK_CR;
            }
            return Turn::Again;
        }
        if st == LOST && cursor.offset > 0 {
            return Turn::Stop;
        }
        if cursor.offset >= readable || cursor.windows >= MAX_WINDOWS {
            if st != LOST {
                self.lose(k, wire);
            }
            return Turn::Stop;
        }
        let want = (readable - cursor.offset).min(WINDOW as u32);
        let got = wire.read(cursor.offset, want, window);
        cursor.windows += 1;
        if got == 0 {
            if st != LOST {
                self.lose(k, wire);
            }
            return Turn::Stop;
        }
        if st == LOST {
            // Only a read/write that starts a message can resynchronise.
            let starts = if k == REQUESTS {
                starts_command(window, got) || (self.arrays == 0 && starts_word(window, got))
            } else {
                is_type(window[0])
            };
            if !starts {
                return Turn::Stop;
            }
            self.sides[k].clear();
        }
        let (used, step) = wire.scan(self, k, window, got);
        cursor.offset += used;
        if step == Step::Done {
            return Turn::Done;
        }
        if self.sides[k].state == LOST {
            return Turn::Stop;
        }
        Turn::Again
    }

    /// Steps side `side` through `window[..got]` from `at` (< `got`): the byte at `at`, whatever
    /// its state (or a bulk string's bytes not kept, in one go), then up to [`RUN`] more while
    /// they only add to what is being read (digits, a line's or a kept word's bytes). The
    /// index after the last byte used, and the [`Step`] that stopped the reading (`Next`
    /// when none did). The body of the probes' per-run function: a verifier walks one full
    /// step and a run of cheap ones, not every transition once per byte.
    #[inline(always)]
    pub fn step_run<W: RespWire>(
        &mut self,
        side: usize,
        window: &[u8; WINDOW],
        at: u32,
        got: u32,
        wire: &mut W,
    ) -> (u32, Step) {
        let k = side & 1;
        let mut at = at;
        let s = &mut self.sides[k];
        // Read back, so a verifier meets one unknown state, not each constant a handler
        // could have stored.
        if crate::reloaded(&s.state) == BULK
            && crate::reloaded(&s.bits) & bit::WORD == 0
            && s.remaining > 0
        {
            let skip = s.remaining.min(u64::from(got.saturating_sub(at)));
            s.remaining -= skip;
            if s.remaining == 0 {
                s.state = BULK_CR;
            }
            // Then its CR, if there.
            return (self.sides[k].run(window, at + skip as u32, got), Step::Next);
        }
        let step = self.step(k, window[masked(at as usize, WINDOW)], wire);
        at += 1;
        if step != Step::Next {
            return (at, step);
        }
        (self.sides[k].run(window, at, got), Step::Next)
    }

    fn step<W: RespWire>(&mut self, k: usize, byte: u8, wire: &mut W) -> Step {
        let s = &mut self.sides[k];
        match crate::reloaded(&s.state) {
            START => self.begin_value(k, byte, wire),
            NUMBER => {
                match byte {
                    b'0'..=b'9' if s.number < MAX_NUMBER => {
                        s.number = s.number * 10 + u64::from(byte - b'0');
                        s.bits |= bit::DIGITS;
                    }
                    b'-' if s.bits & (bit::DIGITS | bit::NEGATIVE) == 0 => s.bits |= bit::NEGATIVE,
                    b'\r' if s.bits & bit::DIGITS != 0 => s.state = NUMBER_LF,
                    _ => return self.lose(k, wire),
                }
                Step::Next
            }
            NUMBER_LF if byte == b'\n' => self.number_done(k, wire),
            LINE => {
                match byte {
                    b'\r' => s.state = LINE_LF,
                    b'\n' => return self.lose(k, wire),
                    _ if s.bits & bit::COUNT != 0 => match byte {
                        b'0'..=b'9' if s.number < MAX_NUMBER => {
                            s.number = s.number * 10 + u64::from(byte - b'0');
                        }
                        b'-' if s.number == 0 => s.bits |= bit::NEGATIVE,
                        // Not a count after all.
                        _ => s.bits &= !bit::COUNT,
                    },
                    _ => capture(s, byte),
                }
                Step::Next
            }
            LINE_LF if byte == b'\n' => {
                if s.bits & bit::COUNT != 0 {
                    let value = s.number as i64;
                    s.message.count = if s.bits & bit::NEGATIVE != 0 {
                        -value
                    } else {
                        value
                    };
                    s.message.flags |= flags::COUNT;
                }
                word_done(s);
                self.value_done(k, wire);
                Step::Next
            }
            BULK => {
                // Only a word's bytes come here: the others are skipped in `step_run`.
                if s.remaining > 0 {
                    capture(s, byte);
                    s.remaining -= 1;
                }
                if s.remaining == 0 {
                    s.state = BULK_CR;
                    self.bulk_read(k, wire);
                }
                Step::Next
            }
            BULK_CR if byte == b'\r' => {
                s.state = BULK_LF;
                Step::Next
            }
            BULK_LF if byte == b'\n' => {
                self.value_done(k, wire);
                Step::Next
            }
            INLINE_LINE => self.inline(k, byte, wire),
            LOST => Step::Skip,
            _ => self.lose(k, wire),
        }
    }

    /// A value's first byte.
    fn begin_value<W: RespWire>(&mut self, k: usize, byte: u8, wire: &mut W) -> Step {
        let seq = self.seq;
        let top = self.sides[k].depth == 0;
        if top && self.sides[k].bits & bit::ACTIVE == 0 {
            let now = wire.now_ns();
            let s = &mut self.sides[k];
            s.message.clear(now, seq);
            s.bits = bit::ACTIVE;
        }
        let s = &mut self.sides[k];
        s.bits &= bit::ACTIVE;
        s.number = 0;
        s.kind = byte;
        if k == REQUESTS {
            if top {
                s.message.kind = byte;
                if byte == b'*' {
                    s.state = NUMBER;
                    return Step::Next;
                }
                s.message.kind = INLINE;
                s.state = INLINE_LINE;
                return self.inline(k, byte, wire);
            }
            if byte != b'$' {
                return self.lose(k, wire);
            }
            s.state = NUMBER;
            return Step::Next;
        }
        s.state = match byte {
            b'+' | b'-' | b':' | b',' | b'(' | b'_' | b'#' => LINE,
            b'$' | b'=' | b'!' | b'*' | b'%' | b'~' | b'>' | b'|' => NUMBER,
            _ => return self.lose(k, wire),
        };
        if top {
            if byte != b'|' {
                s.message.kind = byte;
            }
            if byte == b'-' {
                s.bits |= bit::WORD | bit::ERROR_WORD;
            }
        } else if let Some(index) = first_level_index(s) {
            if index == 2 && byte == b':' {
                s.bits |= bit::COUNT;
            }
        }
        Step::Next
    }

    /// A length line's number was read.
    fn number_done<W: RespWire>(&mut self, k: usize, wire: &mut W) -> Step {
        let s = &mut self.sides[k];
        let negative = s.bits & bit::NEGATIVE != 0;
        let value = s.number;
        let kind = s.kind;
        s.bits &= bit::ACTIVE;
        if negative {
            // RESP2's nulls: `$-1`, `*-1`.
            if value == 1 && (kind == b'$' || kind == b'*') && k == RESPONSES {
                self.value_done(k, wire);
                return Step::Next;
            }
            return self.lose(k, wire);
        }
        if matches!(kind, b'$' | b'=' | b'!') {
            s.remaining = value;
            s.state = BULK;
            let word = if k == REQUESTS {
                s.depth == 1 && first_level_index(s) == Some(0)
            } else if s.depth == 0 {
                kind == b'!'
            } else {
                kind == b'$'
                    && first_level_index(s) == Some(0)
                    && matches!(s.message.kind, b'*' | b'>')
            };
            if word {
                s.bits |= bit::WORD;
                if kind == b'!' {
                    s.bits |= bit::ERROR_WORD;
                }
                if s.depth == 1 {
                    s.message.flags |= flags::FIRST_BULK;
                }
            }
            if value == 0 {
                s.state = BULK_CR;
                self.bulk_read(k, wire);
            }
            return Step::Next;
        }
        // An aggregate.
        if k == REQUESTS {
            if value == 0 {
                // Redis runs nothing for an empty array, and answers nothing.
                s.bits = 0;
                s.state = START;
                return Step::Next;
            }
            if value > MAX_ARGS {
                return self.lose(k, wire);
            }
            self.arrays = 1;
        }
        let attribute = kind == b'|';
        let elements = if kind == b'%' || attribute {
            value * 2
        } else {
            value
        };
        s.state = START;
        if s.depth == 0 && !attribute {
            s.message.elements = elements.min(u64::from(u32::MAX)) as u32;
        }
        if elements == 0 {
            if !attribute {
                self.value_done(k, wire);
            }
            return Step::Next;
        }
        let depth = usize::from(s.depth);
        if depth >= MAX_DEPTH || elements >= u64::from(ATTRIBUTE) {
            return self.lose(k, wire);
        }
        let mark = if attribute { ATTRIBUTE } else { 0 };
        s.left[masked(depth, MAX_DEPTH)] = elements as u32 | mark;
        s.depth += 1;
        Step::Next
    }

    /// A bulk string's bytes are over (its CRLF follows): a command's name is complete.
    fn bulk_read<W: RespWire>(&mut self, k: usize, wire: &mut W) {
        let s = &mut self.sides[k];
        if s.bits & bit::WORD == 0 {
            return;
        }
        word_done(s);
        if k == REQUESTS {
            self.proven = 1;
            wire.message(self, k);
        }
    }

    /// A whole value at the current depth: counted in its aggregate, and a reply that ends
    /// at the top is handed over.
    fn value_done<W: RespWire>(&mut self, k: usize, wire: &mut W) {
        let s = &mut self.sides[k];
        s.state = START;
        let mut level = 0;
        while level <= MAX_DEPTH {
            if s.depth == 0 {
                s.bits = 0;
                if k == RESPONSES {
                    wire.message(self, k);
                }
                return;
            }
            let top = masked(usize::from(s.depth) - 1, MAX_DEPTH);
            if top == 0 && s.left[0] & ATTRIBUTE == 0 && first_level_index(s) == Some(0) {
                s.message.flags |= flags::FIRST_DONE;
            }
            s.left[top] -= 1;
            if s.left[top] & !ATTRIBUTE > 0 {
                return;
            }
            s.depth -= 1;
            if s.left[top] & ATTRIBUTE != 0 {
                return;
            }
            level += 1;
        }
    }

    /// An inline command's byte (`SET a 1\r\n`): only its first word is kept.
    fn inline<W: RespWire>(&mut self, k: usize, byte: u8, wire: &mut W) -> Step {
        let s = &mut self.sides[k];
        if byte == b'\n' {
            s.state = START;
            s.bits = 0;
            // A blank line runs nothing, and is answered nothing.
            if s.number > 0 {
                s.message.elements = s.number.min(u64::from(u32::MAX)) as u32;
                s.message.flags |= flags::WORD_DONE;
                self.proven = 1;
                wire.message(self, k);
            }
            return Step::Next;
        }
        inline_byte(s, byte);
        Step::Next
    }

    /// The side's framing is lost: what was read of a reply is handed over, marked, and the
    /// side skips read/writes until one starts a message. Inlined: as a function of its own
    /// it is one frame more under the probes' per-run function, past the 512 bytes of stack
    /// 5.10 allows the chain of calls.
    #[inline(always)]
    fn lose<W: RespWire>(&mut self, k: usize, wire: &mut W) -> Step {
        let s = &mut self.sides[k];
        let active = s.bits & bit::ACTIVE != 0 && s.message.kind != 0;
        // An inline command whose first word was read whole is known, if not its end.
        let inline_known = s.state == INLINE_LINE
            && (s.number > 1 || (s.number == 1 && s.bits & bit::IN_WORD == 0));
        if k == REQUESTS && inline_known {
            s.message.elements = 1;
            s.message.flags |= flags::WORD_DONE;
            wire.message(self, k);
        }
        let s = &mut self.sides[k];
        s.state = LOST;
        s.depth = 0;
        s.bits = 0;
        if k == RESPONSES {
            if active {
                s.message.flags |= flags::PARTIAL;
            } else {
                s.message.clear(0, 0);
            }
            s.message.flags |= flags::LOST;
            wire.message(self, k);
        }
        Step::Skip
    }

    /// The message side `side` read last (see [`RespWire::message`]).
    pub fn message(&self, side: usize) -> &Message {
        &self.sides[side & 1].message
    }
}

impl Message {
    /// Empties it for a message starting at `start_ns` in read/write `seq`. Each field
    /// written on its own (volatile): the compiler would make one call of `memset` of
    /// neighbouring zeroes, a frame more on the probes' stack (5.10 counts every frame as at
    /// least 32 bytes, of its 512 for the chain of calls).
    #[inline(always)]
    fn clear(&mut self, start_ns: u64, seq: u32) {
        // SAFETY: plain writes of fields of `self`.
        unsafe {
            core::ptr::write_volatile(&mut self.start_ns, start_ns);
            core::ptr::write_volatile(&mut self.count, 0);
            core::ptr::write_volatile(&mut self.elements, 0);
            core::ptr::write_volatile(&mut self.seq, seq);
            core::ptr::write_volatile(&mut self.kind, 0);
            core::ptr::write_volatile(&mut self.flags, 0);
            core::ptr::write_volatile(&mut self.word_len, 0);
            let mut i = 0;
            while i < WORD {
                core::ptr::write_volatile(&mut self.word[i], 0);
                i += 1;
            }
        }
    }
}

impl RespSide {
    /// Back to the start of a message, as new (see [`Message::clear`]).
    #[inline(always)]
    fn clear(&mut self) {
        self.message.clear(0, 0);
        // SAFETY: plain writes of fields of `self` (volatile, as in `Message::clear`).
        unsafe {
            core::ptr::write_volatile(&mut self.number, 0);
            core::ptr::write_volatile(&mut self.remaining, 0);
            core::ptr::write_volatile(&mut self.state, START);
            core::ptr::write_volatile(&mut self.kind, 0);
            core::ptr::write_volatile(&mut self.depth, 0);
            core::ptr::write_volatile(&mut self.bits, 0);
        }
    }

    /// Steps through `window[at..got]` while its bytes need no full step ([`RespSide::add`]),
    /// [`RUN`] at most: where it stopped.
    #[inline(always)]
    fn run(&mut self, window: &[u8; WINDOW], at: u32, got: u32) -> u32 {
        let mut at = at;
        let mut run = 0;
        while run < RUN {
            if at >= got || !self.add(window[masked(at as usize, WINDOW)]) {
                break;
            }
            at += 1;
            run += 1;
        }
        at
    }

    /// A byte that needs no full step, taken: a number's digit or its CR, a line's byte or
    /// its CR, a kept word's byte but its last, a bulk string's CR, an inline command's byte
    /// but its LF. False, and nothing done, for any other. Nothing here hands a message over
    /// or skips bytes by count (as a run of them is walked by a verifier byte by byte, either
    /// took the 6.18 verifier past its million instructions).
    #[inline(always)]
    fn add(&mut self, byte: u8) -> bool {
        let state = crate::reloaded(&self.state);
        let bits = crate::reloaded(&self.bits);
        match state {
            NUMBER if byte.is_ascii_digit() && self.number < MAX_NUMBER => {
                self.number = self.number * 10 + u64::from(byte - b'0');
                self.bits |= bit::DIGITS;
            }
            NUMBER if byte == b'\r' && bits & bit::DIGITS != 0 => self.state = NUMBER_LF,
            LINE if byte == b'\r' => self.state = LINE_LF,
            LINE if byte != b'\n' && bits & bit::COUNT == 0 => capture(self, byte),
            BULK if bits & bit::WORD != 0 && self.remaining > 1 => {
                capture(self, byte);
                self.remaining -= 1;
            }
            BULK_CR if byte == b'\r' => self.state = BULK_LF,
            INLINE_LINE if byte != b'\n' => inline_byte(self, byte),
            _ => return false,
        }
        true
    }
}

/// The index of the element being read in a top-level aggregate (not an attribute), if the
/// side is at its first level.
fn first_level_index(s: &RespSide) -> Option<u32> {
    if s.depth != 1 || s.left[0] & ATTRIBUTE != 0 {
        return None;
    }
    Some(s.message.elements.wrapping_sub(s.left[0]))
}

/// A byte of an inline command's line but its end: only its first word is kept, and the
/// words counted.
#[inline(always)]
fn inline_byte(s: &mut RespSide, byte: u8) {
    if matches!(byte, b' ' | b'\t' | b'\r') {
        s.bits &= !bit::IN_WORD;
        return;
    }
    if s.bits & bit::IN_WORD == 0 {
        s.bits |= bit::IN_WORD;
        s.number += 1;
    }
    if s.number == 1 {
        push(&mut s.message, byte);
    }
}

/// A byte of a line or bulk string, kept if it is the message's word.
#[inline(always)]
fn capture(s: &mut RespSide, byte: u8) {
    if s.bits & bit::WORD == 0 {
        return;
    }
    if s.bits & bit::ERROR_WORD != 0 && byte == b' ' {
        word_done(s);
        return;
    }
    push(&mut s.message, byte);
}

fn word_done(s: &mut RespSide) {
    if s.bits & bit::WORD != 0 {
        s.message.flags |= flags::WORD_DONE;
        s.bits &= !(bit::WORD | bit::ERROR_WORD);
    }
}

fn push(message: &mut Message, byte: u8) {
    let len = usize::from(message.word_len);
    if len < WORD {
        message.word[masked(len, WORD)] = byte;
        message.word_len += 1;
    } else {
        message.flags |= flags::SPOILED;
    }
}
