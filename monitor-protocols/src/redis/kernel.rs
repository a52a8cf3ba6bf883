//! Redis framed in the kernel (`monitor_framing::resp`, run by the probes): the commands and
//! replies it reports, paired here into [`RedisExchange`]s by [`Messages`], with the same
//! pairing as [`RedisParser`](super::RedisParser): pipelines, `MULTI`/`EXEC`, the
//! subscribed mode. [`KernelTwin`] runs that framing natively over captured chunks, so that
//! the byte fixtures and the fuzzer exercise what the probes run, without root, and compare
//! it with the parser.
use monitor_framing::{
    Io, MAX_MISSES, Outcome, WINDOW,
    resp::{self, Message, RespConn, RespWire, flags},
    role,
};

/// What the probes report of a command or reply (`monitor_common::RedisEvent`'s core).
pub use monitor_framing::resp::Message as RedisMessage;

use super::{Pairing, Pending, Special, Word, confirmation_kind, is_message};
use crate::{
    chunk::{Chunk, Role},
    protocol::Exchange,
};

/// The role a connection's framing decided (`monitor_framing::role`), if any.
pub fn role_of(code: u8) -> Option<Role> {
    match code {
        role::SERVER => Some(Role::Server),
        role::CLIENT => Some(Role::Client),
        _ => None,
    }
}

/// One connection's commands and replies, as the kernel framed them, paired.
pub struct Messages {
    pairing: Pairing,
}

impl Messages {
    pub fn new(role: Role) -> Self {
        let mut pairing = Pairing::new();
        pairing.role = role;
        Self { pairing }
    }

    pub fn role(&self) -> Role {
        self.pairing.role
    }

    /// Whether the connection streams the server's activity now (`MONITOR`): nothing more
    /// of it is an operation.
    pub fn is_finished(&self) -> bool {
        self.pairing.finished
    }

    /// One message of the connection, in the order the framing reported them: `command`
    /// when it went the way the connection's commands go.
    pub fn feed(&mut self, command: bool, message: &Message, out: &mut Vec<Exchange>) {
        let pairing = &mut self.pairing;
        if pairing.finished {
            return;
        }
        let seq = u64::from(message.seq);
        if command {
            let name = word(message);
            pairing.queue(Pending {
                name,
                start_ns: message.start_ns,
                seq,
                special: Special::of(&name, u64::from(message.elements.saturating_sub(1))),
            });
            return;
        }
        if message.kind != 0 {
            self.reply(message, seq, out);
        }
        if message.flags & flags::LOST != 0 {
            self.pairing.replies_lost();
        }
    }

    fn reply(&mut self, message: &Message, seq: u64, out: &mut Vec<Exchange>) {
        let pairing = &mut self.pairing;
        let start_ns = message.start_ns;
        let kind = message.kind;
        let push = kind == b'>';
        let classified =
            push || (kind == b'*' && (pairing.subscribed || pairing.awaits_confirmation()));
        match kind {
            _ if classified => {
                let partial = message.flags & flags::PARTIAL != 0;
                if partial && message.flags & flags::FIRST_DONE == 0 {
                    // What it is (a message, a reply) was never read: not counted.
                    return;
                }
                let first = word(message);
                let first = (message.flags & flags::FIRST_BULK != 0)
                    .then(|| first.as_bytes())
                    .flatten();
                self.classify(first, push, message, seq, out);
            }
            b'-' | b'!' => {
                let label = word(message).error_label();
                pairing.reply(start_ns, seq, Some(label), out);
            }
            _ => pairing.reply(start_ns, seq, None, out),
        }
    }

    /// An array or push that may be out of band, by its first element (None: no short bulk
    /// string there), as `Replies::classify`.
    fn classify(
        &mut self,
        first: Option<&[u8]>,
        push: bool,
        message: &Message,
        seq: u64,
        out: &mut Vec<Exchange>,
    ) {
        let pairing = &mut self.pairing;
        let confirmation = first.and_then(|kind| Some((kind, confirmation_kind(kind)?)));
        if let Some((kind, subscribing)) = confirmation {
            pairing.confirmation(kind, message.start_ns, seq, out);
            if !push {
                // RESP2: the connection's mode follows its confirmations' counts.
                pairing.subscribed |= subscribing;
                if message.flags & flags::COUNT != 0 {
                    pairing.subscribed = message.count > 0;
                }
            }
        } else if push || (pairing.subscribed && first.is_some_and(is_message)) {
            // Out of band.
        } else {
            pairing.reply(message.start_ns, seq, None, out);
        }
    }
}

/// A message's word: no label unless its capture ended where it should, within the cap.
fn word(message: &Message) -> Word {
    let mut word = Word::default();
    word.extend(&message.word[..usize::from(message.word_len).min(resp::WORD)]);
    if message.flags & flags::SPOILED != 0 || message.flags & flags::WORD_DONE == 0 {
        word.spoiled = true;
    }
    word
}

/// One socket as the probes see it: judged on its first read/writes, then framed.
pub struct KernelTwin {
    /// Read/writes that started no command, before the socket is judged.
    misses: u8,
    ignored: bool,
    conn: Option<Box<RespConn>>,
    messages: Option<Messages>,
    window: Box<[u8; WINDOW]>,
}

/// The twin's side of one chunk.
struct ChunkWire<'a> {
    chunk: &'a Chunk<'a>,
    messages: Vec<(usize, Message)>,
}

impl RespWire for ChunkWire<'_> {
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32 {
        self.chunk.copy_window(offset, len, window)
    }

    fn now_ns(&mut self) -> u64 {
        self.chunk.timestamp_ns
    }

    fn message(&mut self, conn: &RespConn, side: usize) {
        self.messages.push((side, *conn.message(side)));
    }
}

impl Default for KernelTwin {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelTwin {
    pub fn new() -> Self {
        Self {
            misses: 0,
            ignored: false,
            conn: None,
            messages: None,
            window: Box::new([0; WINDOW]),
        }
    }

    /// Whether the socket was given up (not Redis).
    pub fn is_ignored(&self) -> bool {
        self.ignored
    }

    /// Frames one read/write as the probes do: `chunk.data` is what they can copy of it.
    pub fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) {
        if self.ignored {
            return;
        }
        let way = chunk.direction.framing_way();
        let (length, readable) = chunk.framed_sizes();
        let io = Io {
            direction: way,
            length,
            readable,
            loaded: 0,
        };
        let mut wire = ChunkWire {
            chunk,
            messages: Vec::new(),
        };
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let loaded = wire.read(0, io.readable.min(WINDOW as u32), &mut self.window);
                let starts = resp::starts_command(&self.window, loaded)
                    || resp::starts_inline(&self.window, loaded);
                if !starts {
                    self.misses += 1;
                    self.ignored = self.misses >= MAX_MISSES;
                    return;
                }
                let mut conn = Box::new(RespConn::default());
                conn.begin(way);
                self.conn.insert(conn)
            }
        };
        if conn.feed(&io, &mut self.window, &mut wire) == Outcome::Done {
            self.ignored = true;
            return;
        }
        let Some(role) = role_of(conn.role) else {
            return;
        };
        let messages = self.messages.get_or_insert_with(|| Messages::new(role));
        for (side, message) in &wire.messages {
            messages.feed(*side == 0, message, out);
        }
    }
}
