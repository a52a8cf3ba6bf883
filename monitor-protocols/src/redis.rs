//! Redis (RESP2 and RESP3) from captured payload prefixes.
//!
//! # What is parsed
//!
//! Commands are arrays of bulk strings (`*3\r\n$3\r\nSET\r\n…`) or inline lines typed by hand
//! (`SET a b\r\n`); only the first element, the command name, is kept. Replies are any RESP2
//! or RESP3 value, nested aggregates included; each is walked to its end so that the next one
//! is found, but only its first byte (and, for an error, its first word) matters. Commands may
//! be pipelined: replies answer them in order, from a FIFO of at most [`MAX_PENDING`]
//! commands. When it is full the oldest command is dropped, and the reply that answers it is
//! still expected and dropped in turn, so that later replies keep pairing with their commands.
//!
//! # What counts as an exchange
//!
//! Every command is one operation answered by the first reply that follows in order:
//! - `MULTI`, each queued command (answered `+QUEUED`) and `EXEC` are all operations, each
//!   answered by its own reply. The replies inside `EXEC`'s array are not replies of their
//!   own; the queued commands' latencies are their queueing round trips, the work is `EXEC`'s.
//! - A RESP3 attribute (`|`) is metadata in front of a reply: not a reply of its own. The
//!   reply's timing starts at the attribute, where the server started answering.
//! - A RESP3 push (`>`) is out of band: never a reply, whatever is pending (but for the
//!   subscription confirmations below). Neither is a RESP2 `message`/`pmessage`/`smessage`
//!   array once the connection is subscribed, so a subscriber waiting for messages shows no
//!   slow operation.
//! - `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their `UNSUBSCRIBE` counterparts are answered
//!   by one confirmation per channel, RESP2 arrays or RESP3 pushes (`subscribe`, `ch`, count).
//!   Each such command counts once, answered by its first confirmation (or by an error); its
//!   other confirmations (one per channel named, or any number for an `UNSUBSCRIBE` without
//!   channels) are absorbed. A confirmation never answers any other command.
//! - After `MONITOR` is accepted, the connection only streams the server's activity: it is
//!   left alone ([`ParserStatus::Finished`]).
//!
//! # Role and timing
//!
//! The side that carries the first command decides the role: read → [`Role::Server`],
//! written → [`Role::Client`]. `duration_ns` runs from the chunk holding the command's first
//! byte to the chunk holding its reply's first byte.
//!
//! # Truncated captures: what is lost
//!
//! Bulk strings are skipped by count, across chunks and past the captured prefix; so is a
//! command's name cut by the capture (the command still counts, as [`OTHER`]); an error reply
//! cut inside its first word counts too, its prefix [`OTHER`]. Any other gap
//! (one that hides a length line, a simple line's end, or the start of the next command or
//! reply) loses that direction's framing, and the messages in the gap are not counted:
//! - Commands: the command being read is dropped, unless its name was already seen. Commands
//!   resume at the next chunk that starts with a complete `*<n>\r\n$<len>\r\n` header, or an
//!   inline command word on a connection that never sent an array (on one that did, it is more
//!   likely the text of a value read in parts). A reply is only paired with a command written
//!   (or read) in an earlier chunk than the reply's, so that the replies to lost commands,
//!   which arrive before the client's next command, are dropped rather than credited to it.
//! - Replies: the pending commands are dropped (which of their replies were in the gap is
//!   unknown). Replies resume at the next chunk that starts with a well-formed RESP line while
//!   a command is pending: the rest of a long reply arrives before the client's next command,
//!   and might otherwise look like a start. An array or push whose first element (what it is:
//!   a message, a confirmation) was cut is not counted.
//!
//! # Memory
//!
//! Framing state is a few counters and fixed arrays (nesting up to [`MAX_DEPTH`], names up to
//! 32 bytes): nothing is buffered across chunks but the pending commands.
use std::{collections::VecDeque, fmt, mem::size_of};

pub(crate) mod exchange;
pub mod kernel;

pub use exchange::{OTHER, RedisExchange, is_command_label, is_error_label};

use crate::{
    chunk::{Chunk, Direction, Role},
    protocol::{Detection, Exchange, ParserStatus, Protocol, ProtocolParser},
};

/// Most commands awaiting a reply; a pipeline longer than this loses its oldest commands.
pub const MAX_PENDING: usize = 128;
/// Deepest nesting of aggregates followed in a reply (real replies rarely exceed 8).
pub const MAX_DEPTH: usize = 32;
/// Longest command name or error prefix kept.
const MAX_WORD: usize = 32;
/// Redis itself refuses a command with more arguments (and closes the connection).
const MAX_ARGS: i64 = 1024 * 1024;
/// Inline commands that may open a connection. Short on purpose: other text protocols have
/// verbs too, and only these are common first commands of a hand-typed Redis session.
const INLINE_STARTERS: &[&[u8]] = &[
    b"PING", b"HELLO", b"AUTH", b"SELECT", b"INFO", b"QUIT", b"ECHO", b"CLIENT", b"COMMAND",
    b"MONITOR",
];
/// `AUTH` arguments that say FTP or POP3 (`AUTH TLS`, SASL mechanisms) rather than a password.
const NOT_REDIS_AUTH: &[&[u8]] = &[
    b"TLS",
    b"SSL",
    b"TLS-C",
    b"PLAIN",
    b"LOGIN",
    b"CRAM-MD5",
    b"XOAUTH2",
    b"GSSAPI",
];

/// The Redis protocol, for [`crate::PROTOCOLS`].
pub struct Redis;

impl Protocol for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn detect(&self, first: &Chunk<'_>) -> Detection {
        detect(first)
    }

    fn parser(&self) -> Box<dyn ProtocolParser> {
        Box::new(RedisParser::new())
    }
}

/// Whether a connection's first chunk starts a Redis command: an array header followed by
/// the command name's length (`*<1-3 digits>\r\n$<digits>\r\n`), or one of a few inline
/// commands. Replies are not looked for: `+OK` is too short to be evidence, and the role
/// comes from the command.
pub fn detect(first: &Chunk<'_>) -> Detection {
    let short = if first.is_fully_captured() {
        Detection::NeedMore
    } else {
        Detection::NoMatch
    };
    let verdict = match first.data.first() {
        None => Err(short),
        Some(b'*') => array_start(first.data, 3, short),
        Some(_) => inline_start(first.data, short),
    };
    verdict.err().unwrap_or(Detection::Match)
}

/// `*<n>\r\n$<len>\r\n` then name bytes as far as captured; `Err` holds the verdict when not.
fn array_start(data: &[u8], max_count_digits: usize, short: Detection) -> Result<(), Detection> {
    let (_, at) = header_number(data, 1, max_count_digits, short)?;
    match data.get(at) {
        None => return Err(short),
        Some(b'$') => {}
        Some(_) => return Err(Detection::NoMatch),
    }
    let (len, at) = header_number(data, at + 1, 2, short)?;
    let name = data.get(at..).unwrap_or_default();
    if name.iter().take(len).all(|&b| is_name_byte(b)) {
        Ok(())
    } else {
        Err(Detection::NoMatch)
    }
}

/// A non-zero decimal of at most `max_digits` at `at`, then CRLF: (value, index past LF).
fn header_number(
    data: &[u8],
    at: usize,
    max_digits: usize,
    short: Detection,
) -> Result<(usize, usize), Detection> {
    let mut value = 0usize;
    let mut end = at;
    loop {
        match data.get(end) {
            None => return Err(short),
            Some(&b) if b.is_ascii_digit() && end - at < max_digits => {
                value = value * 10 + usize::from(b - b'0');
                end += 1;
            }
            Some(b'\r') if end > at && value > 0 => break,
            Some(_) => return Err(Detection::NoMatch),
        }
    }
    match data.get(end + 1) {
        None => Err(short),
        Some(b'\n') => Ok((value, end + 2)),
        Some(_) => Err(Detection::NoMatch),
    }
}

/// One of [`INLINE_STARTERS`], all uppercase or all lowercase, ending the line or followed
/// by an argument.
fn inline_start(data: &[u8], short: Detection) -> Result<(), Detection> {
    let word_len = data
        .iter()
        .take(8)
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let word = &data[..word_len];
    let one_case =
        word.iter().all(u8::is_ascii_uppercase) || word.iter().all(u8::is_ascii_lowercase);
    let known = |complete: bool| {
        one_case
            && INLINE_STARTERS.iter().any(|starter| {
                starter.len() >= word_len
                    && starter[..word_len].eq_ignore_ascii_case(word)
                    && (!complete || starter.len() == word_len)
            })
    };
    let Some(&next) = data.get(word_len) else {
        return Err(if word_len > 0 && known(false) {
            short
        } else {
            Detection::NoMatch
        });
    };
    if word_len == 0 || !known(true) {
        return Err(Detection::NoMatch);
    }
    match next {
        b' ' => {
            let argument = data[word_len + 1..]
                .split(|&b| matches!(b, b' ' | b'\r' | b'\n'))
                .next()
                .unwrap_or_default();
            let tls_or_sasl = word.eq_ignore_ascii_case(b"AUTH")
                && NOT_REDIS_AUTH
                    .iter()
                    .any(|not| not.eq_ignore_ascii_case(argument));
            if tls_or_sasl {
                Err(Detection::NoMatch)
            } else {
                Ok(())
            }
        }
        b'\n' => Ok(()),
        b'\r' => match data.get(word_len + 1) {
            None => Err(short),
            Some(b'\n') => Ok(()),
            Some(_) => Err(Detection::NoMatch),
        },
        _ => Err(Detection::NoMatch),
    }
}

/// Whether a chunk starts a command cleanly: a complete array header up to the name, or an
/// inline word of letters ended within the chunk. Where the request side (re)starts.
fn starts_command(data: &[u8]) -> bool {
    match data.first() {
        Some(b'*') => array_start(data, 7, Detection::NoMatch).is_ok(),
        Some(b) if b.is_ascii_alphabetic() => {
            let word_len = data
                .iter()
                .take(MAX_WORD + 1)
                .take_while(|b| b.is_ascii_alphabetic())
                .count();
            word_len <= MAX_WORD && matches!(data.get(word_len), Some(b' ' | b'\r' | b'\n'))
        }
        _ => false,
    }
}

/// Whether a chunk starts with a well-formed RESP line: where the reply side restarts.
fn starts_reply(data: &[u8]) -> bool {
    let Some(end) = data.windows(2).position(|pair| pair == b"\r\n") else {
        return false;
    };
    let (&kind, body) = match data[..end].split_first() {
        Some(split) => split,
        None => return false,
    };
    let number = |body: &[u8]| {
        let digits = body.strip_prefix(b"-").unwrap_or(body);
        !digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit)
    };
    match kind {
        b'+' | b'-' => body
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)),
        b':' | b'(' => number(body),
        b'$' | b'*' => body == b"-1" || (number(body) && !body.starts_with(b"-")),
        b'=' | b'!' | b'%' | b'~' | b'>' | b'|' => number(body) && !body.starts_with(b"-"),
        b',' => {
            !body.is_empty()
                && body
                    .iter()
                    .all(|&b| b.is_ascii_digit() || b".-+eEinfa".contains(&b))
        }
        b'_' => body.is_empty(),
        b'#' => body == b"t" || body == b"f",
        _ => false,
    }
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_-.|".contains(&byte)
}

/// One Redis connection.
pub struct RedisParser {
    /// Unknown until a chunk starts with a command.
    role: Option<Role>,
    /// Chunks fed so far: orders each reply after the commands it may answer.
    seq: u64,
    requests: Requests,
    replies: Replies,
    pairing: Pairing,
}

impl Default for RedisParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisParser {
    pub fn new() -> Self {
        Self {
            role: None,
            seq: 0,
            requests: Requests::new(),
            replies: Replies::new(),
            pairing: Pairing::new(),
        }
    }
}

impl ProtocolParser for RedisParser {
    fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> ParserStatus {
        if self.pairing.finished {
            return ParserStatus::Finished;
        }
        self.seq = self.seq.saturating_add(1);
        let role = match self.role {
            Some(role) => role,
            None if starts_command(chunk.data) => {
                let role = match chunk.direction {
                    Direction::Ingress => Role::Server,
                    Direction::Egress => Role::Client,
                };
                self.role = Some(role);
                self.pairing.role = role;
                role
            }
            None => return ParserStatus::Active,
        };
        if chunk.direction == role.request_direction() {
            self.requests.feed(chunk, self.seq, &mut self.pairing);
        } else {
            self.replies.feed(chunk, self.seq, &mut self.pairing, out);
        }
        if self.pairing.finished {
            ParserStatus::Finished
        } else {
            ParserStatus::Active
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.pairing.pending.capacity() * size_of::<Pending>()
    }
}

/// The framing of a direction could not be followed.
#[derive(Debug)]
struct Lost;

/// A command name or error prefix as captured: at most [`MAX_WORD`] bytes, and whether more
/// were there (or some were not captured), in which case it is no label.
#[derive(Clone, Copy, Default)]
struct Word {
    bytes: [u8; MAX_WORD],
    len: u8,
    /// Longer than [`MAX_WORD`], or partly uncaptured.
    spoiled: bool,
}

impl Word {
    fn push(&mut self, byte: u8) {
        match self.bytes.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.spoiled = true,
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.spoiled {
                return;
            }
            self.push(byte);
        }
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        let bytes = &self.bytes[..usize::from(self.len)];
        (!self.spoiled && !bytes.is_empty()).then_some(bytes)
    }

    fn command_label(&self) -> String {
        match self.as_bytes() {
            Some(name) if name.iter().all(|&b| is_name_byte(b)) => {
                String::from_utf8_lossy(name).to_ascii_uppercase()
            }
            _ => OTHER.to_owned(),
        }
    }

    fn error_label(&self) -> String {
        match self.as_bytes() {
            Some(prefix)
                if prefix
                    .iter()
                    .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                String::from_utf8_lossy(prefix).into_owned()
            }
            _ => OTHER.to_owned(),
        }
    }
}

/// A decimal length line being read (`*3\r\n`, `$-1\r\n`), across chunks.
#[derive(Clone, Copy, Default, Debug)]
struct Num {
    value: i64,
    digits: u8,
    negative: bool,
    cr: bool,
}

impl Num {
    /// Consumes bytes up to the line's LF: (bytes used, the value once the line ended).
    fn feed(&mut self, data: &[u8]) -> Result<(usize, Option<i64>), Lost> {
        for (at, &byte) in data.iter().enumerate() {
            if self.cr {
                return if byte == b'\n' && self.digits > 0 {
                    let value = if self.negative {
                        -self.value
                    } else {
                        self.value
                    };
                    Ok((at + 1, Some(value)))
                } else {
                    Err(Lost)
                };
            }
            match byte {
                // 18 digits cannot overflow an i64.
                b'0'..=b'9' if self.digits < 18 => {
                    self.value = self.value * 10 + i64::from(byte - b'0');
                    self.digits += 1;
                }
                b'-' if self.digits == 0 && !self.negative => self.negative = true,
                b'\r' => self.cr = true,
                _ => return Err(Lost),
            }
        }
        Ok((data.len(), None))
    }
}

/// What is special about a command's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    None,
    /// A (un)subscription: answered by confirmations; `left` of them still due for it
    /// (0: unknown, one is enough), `answered` once the first was counted.
    Subscription {
        left: u32,
        answered: bool,
    },
    /// Accepted, it turns the connection into a stream of the server's activity.
    Monitor,
    /// Leaves the subscribed mode.
    Reset,
}

impl Special {
    fn of(name: &Word, arguments: u64) -> Self {
        let Some(name) = name.as_bytes() else {
            return Special::None;
        };
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        if confirmation_kind(name).is_some() {
            Special::Subscription {
                left: u32::try_from(arguments).unwrap_or(0),
                answered: false,
            }
        } else if is(b"MONITOR") {
            Special::Monitor
        } else if is(b"RESET") {
            Special::Reset
        } else {
            Special::None
        }
    }
}

/// Whether a (case-insensitive) name is a subscription command, the same as its
/// confirmations' kind: true for the subscribing ones.
fn confirmation_kind(name: &[u8]) -> Option<bool> {
    const KINDS: &[(&[u8], bool)] = &[
        (b"subscribe", true),
        (b"psubscribe", true),
        (b"ssubscribe", true),
        (b"unsubscribe", false),
        (b"punsubscribe", false),
        (b"sunsubscribe", false),
    ];
    KINDS
        .iter()
        .find(|(kind, _)| kind.eq_ignore_ascii_case(name))
        .map(|&(_, subscribing)| subscribing)
}

/// A message published to a subscribed RESP2 connection (never a reply).
fn is_message(kind: &[u8]) -> bool {
    matches!(kind, b"message" | b"pmessage" | b"smessage")
}

/// A command waiting for its reply.
struct Pending {
    name: Word,
    start_ns: u64,
    /// The chunk that carried its first byte.
    seq: u64,
    special: Special,
}

/// What the two directions share: commands waiting for replies.
struct Pairing {
    role: Role,
    pending: VecDeque<Pending>,
    /// Replies still due to commands dropped from a full FIFO: they are dropped in turn.
    orphans: u32,
    /// A RESP2 connection in subscribed mode, where `message` arrays are pushed to it.
    subscribed: bool,
    /// `MONITOR` was accepted.
    finished: bool,
}

impl Pairing {
    fn new() -> Self {
        Self {
            role: Role::Server,
            pending: VecDeque::new(),
            orphans: 0,
            subscribed: false,
            finished: false,
        }
    }

    fn queue(&mut self, command: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.orphans = self.orphans.saturating_add(1);
        }
        self.pending.push_back(command);
    }

    /// The oldest pending command, if a reply starting in chunk `seq` can answer it.
    fn front_for(&mut self, seq: u64) -> Option<&mut Pending> {
        self.pending.front_mut().filter(|command| command.seq < seq)
    }

    fn awaits_confirmation(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|command| matches!(command.special, Special::Subscription { .. }))
    }

    fn exchange(&self, command: &Pending, reply_ns: u64, error: Option<String>) -> Exchange {
        Exchange::Redis(RedisExchange {
            role: self.role,
            command: command.name.command_label(),
            error,
            duration_ns: reply_ns.saturating_sub(command.start_ns),
        })
    }

    /// A reply (not a push) started at `start_ns` in chunk `seq`.
    fn reply(&mut self, start_ns: u64, seq: u64, error: Option<String>, out: &mut Vec<Exchange>) {
        if self.orphans > 0 {
            self.orphans -= 1;
            return;
        }
        if self.front_for(seq).is_none() {
            // Nothing it can answer: the reply of a command lost with the framing.
            return;
        }
        let Some(command) = self.pending.pop_front() else {
            return;
        };
        if error.is_none() {
            match command.special {
                Special::Monitor => self.finished = true,
                Special::Reset => self.subscribed = false,
                Special::None | Special::Subscription { .. } => {}
            }
        }
        out.push(self.exchange(&command, start_ns, error));
    }

    /// A subscription confirmation of this kind (`subscribe`, `punsubscribe`…).
    fn confirmation(&mut self, kind: &[u8], start_ns: u64, seq: u64, out: &mut Vec<Exchange>) {
        let Some(command) = self.front_for(seq) else {
            return;
        };
        let Special::Subscription { left, answered } = command.special else {
            return;
        };
        if command
            .name
            .as_bytes()
            .is_none_or(|name| !name.eq_ignore_ascii_case(kind))
        {
            // One of several confirmations of an earlier command: absorbed.
            return;
        }
        command.special = Special::Subscription {
            left: left.saturating_sub(1),
            answered: true,
        };
        if !answered {
            let exchange = self
                .pending
                .front()
                .map(|command| self.exchange(command, start_ns, None));
            out.extend(exchange);
        }
        if left <= 1 {
            self.pending.pop_front();
        }
    }

    /// The replies' framing was lost: which pending commands were answered is unknown.
    fn replies_lost(&mut self) {
        self.pending.clear();
        self.orphans = 0;
    }
}

/// The command direction.
struct Requests {
    state: Req,
    /// The command being read.
    start_ns: u64,
    seq: u64,
    name: Word,
    arguments: u64,
    /// Arguments (the name included) still to read.
    left: u64,
    /// The argument being read is the name.
    reading_name: bool,
    /// A command came as an array. Client libraries always send arrays and hand-typed
    /// sessions never do: a connection that sent one does not resume on an inline word, which
    /// may as well be the text of a value read in parts.
    arrays_seen: bool,
}

#[derive(Clone, Copy, Debug)]
enum Req {
    /// Between commands.
    Idle,
    /// After `*`: the element count.
    Count(Num),
    /// Expecting an argument's `$`.
    ArgStart,
    /// After `$`: the argument's length.
    ArgLen(Num),
    /// Argument bytes left, then bytes of its CRLF left.
    Arg { left: u64, crlf: u8 },
    /// An inline command line, up to its LF: words seen, and whether inside one.
    Inline { words: u32, in_word: bool },
    /// Framing lost: skip chunks until one starts a command.
    Resync,
}

impl Requests {
    fn new() -> Self {
        Self {
            state: Req::Idle,
            start_ns: 0,
            seq: 0,
            name: Word::default(),
            arguments: 0,
            left: 0,
            reading_name: false,
            arrays_seen: false,
        }
    }

    fn feed(&mut self, chunk: &Chunk<'_>, seq: u64, pairing: &mut Pairing) {
        if matches!(self.state, Req::Resync) {
            let inline = chunk.data.first() != Some(&b'*');
            if !starts_command(chunk.data) || (inline && self.arrays_seen) {
                return;
            }
            self.state = Req::Idle;
        }
        let mut rest = chunk.data;
        while !rest.is_empty() {
            match self.step(rest, chunk.timestamp_ns, seq, pairing) {
                Ok(used) => rest = rest.get(used..).unwrap_or_default(),
                Err(Lost) => {
                    self.state = Req::Resync;
                    return;
                }
            }
        }
        let gap = chunk.uncaptured();
        if gap > 0 && self.skip(gap, pairing).is_err() {
            self.state = Req::Resync;
        }
    }

    /// Consumes at least one byte of `data` (never empty): the bytes used.
    fn step(
        &mut self,
        data: &[u8],
        now_ns: u64,
        seq: u64,
        pairing: &mut Pairing,
    ) -> Result<usize, Lost> {
        let byte = data[0];
        match self.state {
            Req::Idle => {
                self.start_ns = now_ns;
                self.seq = seq;
                self.name = Word::default();
                self.arguments = 0;
                if byte == b'*' {
                    self.state = Req::Count(Num::default());
                    Ok(1)
                } else {
                    self.state = Req::Inline {
                        words: 0,
                        in_word: false,
                    };
                    self.inline(data, pairing)
                }
            }
            Req::Count(mut num) => {
                let (used, value) = num.feed(data)?;
                self.state = match value {
                    None => Req::Count(num),
                    // Redis runs nothing for an empty (or null) array, and answers nothing.
                    Some(..=0) => Req::Idle,
                    Some(count) if count > MAX_ARGS => return Err(Lost),
                    Some(count) => {
                        self.left = count.unsigned_abs();
                        self.arguments = self.left - 1;
                        self.reading_name = true;
                        self.arrays_seen = true;
                        Req::ArgStart
                    }
                };
                Ok(used)
            }
            Req::ArgStart if byte == b'$' => {
                self.state = Req::ArgLen(Num::default());
                Ok(1)
            }
            Req::ArgStart => Err(Lost),
            Req::ArgLen(mut num) => {
                let (used, value) = num.feed(data)?;
                self.state = match value {
                    None => Req::ArgLen(num),
                    Some(..0) => return Err(Lost),
                    Some(len) => {
                        let left = len.unsigned_abs();
                        if left == 0 {
                            self.argument_read(pairing);
                        }
                        Req::Arg { left, crlf: 2 }
                    }
                };
                Ok(used)
            }
            Req::Arg { left, crlf } if left > 0 => {
                let take = usize::try_from(left).map_or(data.len(), |left| left.min(data.len()));
                if self.reading_name {
                    self.name.extend(&data[..take]);
                }
                let left = left - take as u64;
                if left == 0 {
                    self.argument_read(pairing);
                }
                self.state = Req::Arg { left, crlf };
                Ok(take)
            }
            Req::Arg { crlf, .. } => {
                let expected = if crlf == 2 { b'\r' } else { b'\n' };
                if byte != expected {
                    return Err(Lost);
                }
                self.state = if crlf == 2 {
                    Req::Arg { left: 0, crlf: 1 }
                } else {
                    self.argument_done()
                };
                Ok(1)
            }
            Req::Inline { .. } => self.inline(data, pairing),
            Req::Resync => Ok(data.len()),
        }
    }

    /// Reads an inline line as far as `data` goes: only its first word matters, and the
    /// number of words (a subscription's channels).
    fn inline(&mut self, data: &[u8], pairing: &mut Pairing) -> Result<usize, Lost> {
        let Req::Inline {
            mut words,
            mut in_word,
        } = self.state
        else {
            return Err(Lost);
        };
        for (at, &byte) in data.iter().enumerate() {
            if byte == b'\n' {
                // A blank line runs nothing, and is answered nothing.
                if words > 0 {
                    self.arguments = u64::from(words - 1);
                    self.queue(pairing);
                }
                self.state = Req::Idle;
                return Ok(at + 1);
            }
            let blank = matches!(byte, b' ' | b'\t' | b'\r');
            if !blank && !in_word {
                words = words.saturating_add(1);
            }
            if !blank && words == 1 {
                self.name.push(byte);
            }
            in_word = !blank;
        }
        self.state = Req::Inline { words, in_word };
        Ok(data.len())
    }

    /// An argument's bytes are over (its CRLF may follow).
    fn argument_read(&mut self, pairing: &mut Pairing) {
        if self.reading_name {
            self.reading_name = false;
            self.queue(pairing);
        }
    }

    /// An argument and its CRLF are over: the next state.
    fn argument_done(&mut self) -> Req {
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            Req::Idle
        } else {
            Req::ArgStart
        }
    }

    fn queue(&mut self, pairing: &mut Pairing) {
        pairing.queue(Pending {
            name: self.name,
            start_ns: self.start_ns,
            seq: self.seq,
            special: Special::of(&self.name, self.arguments),
        });
    }

    /// `gap` uncaptured bytes follow the chunk's captured prefix.
    fn skip(&mut self, gap: u64, pairing: &mut Pairing) -> Result<(), Lost> {
        match self.state {
            Req::Arg { left, crlf } if gap <= left + u64::from(crlf) => {
                if left > 0 && self.reading_name {
                    // The name was cut: the command counts, its name is no label.
                    self.name.spoiled = true;
                    self.argument_read(pairing);
                }
                let rest = left + u64::from(crlf) - gap;
                self.state = match rest {
                    0 => self.argument_done(),
                    // Only the CRLF (or part of it) is left.
                    1 | 2 if gap >= left => Req::Arg {
                        left: 0,
                        crlf: rest as u8,
                    },
                    _ => Req::Arg {
                        left: left - gap,
                        crlf,
                    },
                };
                Ok(())
            }
            Req::Inline { words, in_word } => {
                // The first word was seen whole: that command is known, the rest is not.
                if words > 1 || (words == 1 && !in_word) {
                    self.arguments = 0;
                    self.queue(pairing);
                }
                Err(Lost)
            }
            _ => Err(Lost),
        }
    }
}

/// One level of an aggregate being read.
#[derive(Clone, Copy, Default)]
struct Frame {
    /// Elements still to read.
    left: u64,
    /// Elements in all (the index of the next one is `len - left`).
    len: u64,
    /// An attribute: metadata, no element of its parent.
    attribute: bool,
}

/// What a top-level value waits for before it is known to be a reply or not.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Await {
    /// Decided (emitted or ignored), or nothing to decide yet.
    Nothing,
    /// An error (`-` line or `!` blob): its first word.
    ErrorWord,
    /// A `*` array (on a subscribed connection, or answering a subscription) or a `>` push:
    /// its first element, a bulk string naming what it is.
    Kind { push: bool },
}

/// What the bytes being read are captured for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Capture {
    Nothing,
    /// The first word of an error.
    ErrorWord {
        done: bool,
    },
    /// The first element of an array or push.
    Kind,
    /// The subscription count of a RESP2 confirmation.
    Count,
}

/// The reply direction.
struct Replies {
    state: Rep,
    frames: [Frame; MAX_DEPTH],
    depth: usize,
    /// Inside a top-level value (or the attributes before it).
    active: bool,
    start_ns: u64,
    seq: u64,
    awaiting: Await,
    capture: Capture,
    word: Word,
    count: Num,
    /// The top-level value is a RESP2 confirmation whose third element is the number of
    /// subscriptions left.
    confirmation: bool,
}

#[derive(Clone, Copy, Debug)]
enum Rep {
    /// Expecting a value's type byte.
    Start,
    /// A simple value's line (`+ - : , ( _ #`), up to its LF: whether its CR was seen.
    Line { cr: bool },
    /// After an aggregate's or blob's type byte: its length.
    Len { kind: u8, num: Num },
    /// Blob bytes left, then bytes of its CRLF left.
    Blob { left: u64, crlf: u8 },
    /// Framing lost: skip chunks until one starts a reply.
    Resync,
}

impl Replies {
    fn new() -> Self {
        Self {
            // Fed only once a chunk started with a command: what follows answers it.
            state: Rep::Start,
            frames: [Frame::default(); MAX_DEPTH],
            depth: 0,
            active: false,
            start_ns: 0,
            seq: 0,
            awaiting: Await::Nothing,
            capture: Capture::Nothing,
            word: Word::default(),
            count: Num::default(),
            confirmation: false,
        }
    }

    fn feed(
        &mut self,
        chunk: &Chunk<'_>,
        seq: u64,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) {
        if matches!(self.state, Rep::Resync) {
            if !(starts_reply(chunk.data) && pairing.front_for(seq).is_some()) {
                return;
            }
            self.state = Rep::Start;
        }
        let mut rest = chunk.data;
        while !rest.is_empty() && !pairing.finished {
            match self.step(rest, chunk.timestamp_ns, seq, pairing, out) {
                Ok(used) => rest = rest.get(used..).unwrap_or_default(),
                Err(Lost) => {
                    self.lose(pairing);
                    return;
                }
            }
        }
        let gap = chunk.uncaptured();
        if gap > 0 && !pairing.finished && self.skip(gap, pairing, out).is_err() {
            self.lose(pairing);
        }
    }

    fn lose(&mut self, pairing: &mut Pairing) {
        self.state = Rep::Resync;
        self.depth = 0;
        self.active = false;
        self.awaiting = Await::Nothing;
        self.capture = Capture::Nothing;
        self.confirmation = false;
        pairing.replies_lost();
    }

    /// Consumes at least one byte of `data` (never empty): the bytes used.
    fn step(
        &mut self,
        data: &[u8],
        now_ns: u64,
        seq: u64,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> Result<usize, Lost> {
        let byte = data[0];
        match self.state {
            Rep::Start => {
                self.begin(byte, now_ns, seq, pairing, out)?;
                Ok(1)
            }
            Rep::Line { cr: true } if byte == b'\n' => {
                self.capture_end(pairing, out);
                self.value_done(pairing, out);
                self.state = Rep::Start;
                Ok(1)
            }
            Rep::Line { cr: true } => Err(Lost),
            Rep::Line { cr: false } => {
                let end = data.iter().position(|&b| b == b'\r' || b == b'\n');
                let line = &data[..end.unwrap_or(data.len())];
                self.capture_bytes(line, pairing, out)?;
                match end.map(|end| data[end]) {
                    Some(b'\r') => self.state = Rep::Line { cr: true },
                    Some(_) => return Err(Lost),
                    None => {}
                }
                Ok(end.map_or(data.len(), |end| end + 1))
            }
            Rep::Len { kind, mut num } => {
                let (used, value) = num.feed(data)?;
                match value {
                    None => self.state = Rep::Len { kind, num },
                    Some(len) => self.length(kind, len, pairing, out)?,
                }
                Ok(used)
            }
            Rep::Blob { left, crlf } if left > 0 => {
                let take = usize::try_from(left).map_or(data.len(), |left| left.min(data.len()));
                self.capture_bytes(&data[..take], pairing, out)?;
                self.state = Rep::Blob {
                    left: left - take as u64,
                    crlf,
                };
                Ok(take)
            }
            Rep::Blob { crlf, .. } => {
                let expected = if crlf == 2 { b'\r' } else { b'\n' };
                if byte != expected {
                    return Err(Lost);
                }
                if crlf == 2 {
                    self.state = Rep::Blob { left: 0, crlf: 1 };
                } else {
                    self.state = Rep::Start;
                    self.capture_end(pairing, out);
                    self.value_done(pairing, out);
                }
                Ok(1)
            }
            Rep::Resync => Ok(data.len()),
        }
    }

    /// A value's type byte.
    fn begin(
        &mut self,
        byte: u8,
        now_ns: u64,
        seq: u64,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        self.state = match byte {
            b'+' | b'-' | b':' | b',' | b'(' | b'_' | b'#' => Rep::Line { cr: false },
            b'$' | b'=' | b'!' | b'*' | b'%' | b'~' | b'>' | b'|' => Rep::Len {
                kind: byte,
                num: Num::default(),
            },
            _ => return Err(Lost),
        };
        self.capture = Capture::Nothing;
        if self.depth == 0 && !self.active {
            self.active = true;
            self.start_ns = now_ns;
            self.seq = seq;
        }
        if byte == b'|' {
            // Metadata before a value decides nothing.
            return Ok(());
        }
        if self.depth == 0 {
            self.awaiting = Await::Nothing;
            match byte {
                b'>' => self.awaiting = Await::Kind { push: true },
                b'*' if pairing.subscribed || pairing.awaits_confirmation() => {
                    self.awaiting = Await::Kind { push: false };
                }
                b'-' | b'!' => {
                    self.awaiting = Await::ErrorWord;
                    self.capture = Capture::ErrorWord { done: false };
                    self.word = Word::default();
                }
                _ => pairing.reply(self.start_ns, self.seq, None, out),
            }
            return Ok(());
        }
        let Some(frame) = self.frames.first().filter(|_| self.depth == 1) else {
            return Ok(());
        };
        if frame.attribute {
            return Ok(());
        }
        let index = frame.len - frame.left;
        if matches!(self.awaiting, Await::Kind { .. }) && index == 0 {
            if byte == b'$' {
                self.capture = Capture::Kind;
                self.word = Word::default();
            } else {
                self.classify(None, pairing, out);
            }
        } else if self.confirmation && index == 2 && byte == b':' {
            self.capture = Capture::Count;
            self.count = Num::default();
        }
        Ok(())
    }

    /// An aggregate's or blob's length line is over.
    fn length(
        &mut self,
        kind: u8,
        len: i64,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        if len < 0 {
            // RESP2 nulls: `$-1`, `*-1`.
            if len == -1 && matches!(kind, b'$' | b'*') {
                self.state = Rep::Start;
                self.capture_end(pairing, out);
                self.value_done(pairing, out);
                return Ok(());
            }
            return Err(Lost);
        }
        let len = len.unsigned_abs();
        if matches!(kind, b'$' | b'=' | b'!') {
            self.state = Rep::Blob { left: len, crlf: 2 };
            return Ok(());
        }
        self.state = Rep::Start;
        let elements = if matches!(kind, b'%' | b'|') {
            len * 2
        } else {
            len
        };
        let attribute = kind == b'|';
        if elements == 0 {
            if !attribute {
                self.value_done(pairing, out);
            }
            return Ok(());
        }
        let Some(frame) = self.frames.get_mut(self.depth) else {
            return Err(Lost);
        };
        *frame = Frame {
            left: elements,
            len: elements,
            attribute,
        };
        self.depth += 1;
        Ok(())
    }

    /// Bytes of a line or blob, for whatever is being captured.
    fn capture_bytes(
        &mut self,
        bytes: &[u8],
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        match self.capture {
            Capture::Nothing => {}
            Capture::ErrorWord { done: true } => {}
            Capture::ErrorWord { done: false } => {
                let space = bytes.iter().position(|&b| b == b' ');
                self.word.extend(&bytes[..space.unwrap_or(bytes.len())]);
                if space.is_some() || self.word.spoiled {
                    self.capture = Capture::ErrorWord { done: true };
                    self.error_decided(pairing, out);
                }
            }
            Capture::Kind => self.word.extend(bytes),
            Capture::Count => {
                let mut count = self.count;
                count.feed(bytes)?;
                self.count = count;
            }
        }
        Ok(())
    }

    /// The line or blob being captured is over.
    fn capture_end(&mut self, pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        match std::mem::replace(&mut self.capture, Capture::Nothing) {
            Capture::Nothing | Capture::ErrorWord { done: true } => {}
            Capture::ErrorWord { done: false } => self.error_decided(pairing, out),
            Capture::Kind => {
                let word = self.word;
                self.classify(word.as_bytes(), pairing, out);
            }
            Capture::Count => {
                let (_, value) = Num {
                    cr: true,
                    ..self.count
                }
                .feed(b"\n")
                .unwrap_or_default();
                if let Some(count) = value {
                    pairing.subscribed = count > 0;
                }
            }
        }
    }

    fn error_decided(&mut self, pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        if self.awaiting == Await::ErrorWord {
            self.awaiting = Await::Nothing;
            let label = self.word.error_label();
            pairing.reply(self.start_ns, self.seq, Some(label), out);
        }
    }

    /// The first element of a top-level array or push says what it is (None: no short
    /// bulk string there).
    fn classify(&mut self, kind: Option<&[u8]>, pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        let Await::Kind { push } = self.awaiting else {
            return;
        };
        self.awaiting = Await::Nothing;
        let confirmation = kind.and_then(|kind| Some((kind, confirmation_kind(kind)?)));
        if let Some((kind, subscribing)) = confirmation {
            pairing.confirmation(kind, self.start_ns, self.seq, out);
            if !push {
                // RESP2: the connection's mode follows its confirmations.
                self.confirmation = true;
                pairing.subscribed |= subscribing;
            }
        } else if push || (pairing.subscribed && kind.is_some_and(is_message)) {
            // Out of band.
        } else {
            pairing.reply(self.start_ns, self.seq, None, out);
        }
    }

    /// A complete value (scalar or aggregate) at the current depth.
    fn value_done(&mut self, pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        loop {
            let Some(frame) = self
                .depth
                .checked_sub(1)
                .and_then(|top| self.frames.get_mut(top))
            else {
                // A top-level value is over; one still undecided was a short array.
                self.classify(None, pairing, out);
                self.active = false;
                self.awaiting = Await::Nothing;
                self.confirmation = false;
                return;
            };
            frame.left = frame.left.saturating_sub(1);
            if frame.left > 0 {
                return;
            }
            let attribute = frame.attribute;
            self.depth -= 1;
            if attribute {
                return;
            }
        }
    }

    /// `gap` uncaptured bytes follow the chunk's captured prefix.
    fn skip(
        &mut self,
        gap: u64,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        match self.state {
            Rep::Blob { left, crlf } if gap <= left + u64::from(crlf) => {
                if left > 0 {
                    self.word.spoiled = true;
                    if self.capture == Capture::Kind {
                        // What the array is (a message, a reply) was cut: not counted.
                        self.capture = Capture::Nothing;
                        self.awaiting = Await::Nothing;
                    }
                }
                let rest = left + u64::from(crlf) - gap;
                if rest == 0 {
                    self.state = Rep::Start;
                    self.capture_end(pairing, out);
                    self.value_done(pairing, out);
                } else if gap >= left {
                    self.state = Rep::Blob {
                        left: 0,
                        crlf: rest as u8,
                    };
                } else {
                    self.state = Rep::Blob {
                        left: left - gap,
                        crlf,
                    };
                }
                Ok(())
            }
            _ => {
                // An error cut inside its first word is still an error reply.
                if self.capture == (Capture::ErrorWord { done: false }) {
                    self.word.spoiled = true;
                    self.error_decided(pairing, out);
                }
                Err(Lost)
            }
        }
    }
}

impl fmt::Debug for RedisParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisParser")
            .field("role", &self.role)
            .field("requests", &self.requests.state)
            .field("replies", &self.replies.state)
            .field("pending", &self.pairing.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
