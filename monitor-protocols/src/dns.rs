//! DNS lookups from the messages a process sent and received: [`parse`] reads a message's
//! header and question (from the first bytes the probes copied), [`Lookups`] pairs each
//! query with its answer, by connection, id and question, and gives up on a query after
//! [`TIMEOUT_NS`].
//!
//! Question names are users' data (and unbounded in number): they are hashed here to match
//! an answer to its query and never kept, shown or logged. Only the question's type and
//! the answer's response code come out.
use std::collections::HashMap;

/// A query with no answer after this long counts as a timeout (glibc's default `timeout:5`).
pub const TIMEOUT_NS: u64 = 5_000_000_000;

/// Queries awaiting their answer, over all processes; a query beyond is not followed.
pub const MAX_PENDING: usize = 16_384;

const HEADER_LEN: usize = 12;
/// RFC 1035: a name is at most 255 bytes on the wire, a label at most 63.
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: u8 = 63;

/// A DNS message's header and first question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// QR: an answer, not a query.
    pub response: bool,
    /// RCODE (the header's 4 bits; extended codes need the OPT record, not read).
    pub rcode: u8,
    pub question: Question,
}

/// What a query asked, enough to tell it from another with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    pub qtype: u16,
    pub qclass: u16,
    /// FNV-1a of the name, letters folded to lowercase (servers echo the question as asked,
    /// but case randomisation is allowed to come back changed).
    pub name_hash: u64,
}

/// Reads a standard query or its answer (opcode QUERY, exactly one question). `bytes` is
/// the message from its first byte; it may be cut anywhere after the question. Anything
/// else (an update, a notify, a truncated question, a compression pointer in the question)
/// is `None`.
pub fn parse(bytes: &[u8]) -> Option<Message> {
    let header = bytes.get(..HEADER_LEN)?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 || questions != 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    let mut name_hash = FNV_OFFSET;
    loop {
        let len = *bytes.get(at)?;
        if len == 0 {
            at += 1;
            break;
        }
        if len > MAX_LABEL_LEN {
            return None;
        }
        let label = bytes.get(at + 1..at + 1 + usize::from(len))?;
        name_hash = fnv(name_hash, len);
        for &byte in label {
            name_hash = fnv(name_hash, byte.to_ascii_lowercase());
        }
        at += 1 + usize::from(len);
        if at - HEADER_LEN > MAX_NAME_LEN {
            return None;
        }
    }
    let tail = bytes.get(at..at + 4)?;
    Some(Message {
        id,
        response: flags & 0x8000 != 0,
        rcode: (flags & 0xf) as u8,
        question: Question {
            qtype: u16::from_be_bytes([tail[0], tail[1]]),
            qclass: u16::from_be_bytes([tail[2], tail[3]]),
            name_hash,
        },
    })
}

/// A message read from a TCP stream: its 2-byte length first (RFC 1035 4.2.2).
pub fn parse_stream(bytes: &[u8]) -> Option<Message> {
    parse(bytes.get(2..)?)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The `dns_question_type` label: the type's mnemonic, `_OTHER` for the rest (a process
/// may ask any of 65,536 types; the label must stay small).
pub fn question_type(qtype: u16) -> &'static str {
    match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => "_OTHER",
    }
}

/// The `dns_response_code` label of an answer's RCODE (RFC 6895's names).
pub fn response_code(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "_OTHER",
    }
}

/// The `dns_response_code` of a query that got no answer in time.
pub const TIMEOUT: &str = "timeout";

/// How a lookup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this RCODE.
    Answered(u8),
    TimedOut,
}

impl Outcome {
    /// The `dns_response_code` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered(rcode) => response_code(rcode),
            Outcome::TimedOut => TIMEOUT,
        }
    }
}

/// A query and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup<C> {
    /// What the caller gave with the query (whose, and to which server).
    pub context: C,
    pub qtype: u16,
    pub outcome: Outcome,
    /// From the query to its answer; [`TIMEOUT_NS`] for a timeout.
    pub duration_ns: u64,
}

/// Queries awaiting their answers. `S` names the socket a message went through (the
/// caller's connection key): an answer is looked for only on the query's own socket.
pub struct Lookups<S, C> {
    pending: HashMap<(S, u16, Question), (u64, C)>,
}

impl<S: Eq + std::hash::Hash + Clone, C> Default for Lookups<S, C> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
        }
    }
}

impl<S: Eq + std::hash::Hash + Clone, C> Lookups<S, C> {
    /// A message sent (`sent`) or received on socket `socket` at `at_ns`: a query starts a
    /// lookup, an answer to a pending one ends it (into `done`). Answers to nothing known
    /// (late, duplicated, or to a query sent before the agent) and queries beyond
    /// [`MAX_PENDING`] are ignored; false is returned for those and for a query repeated
    /// while pending, which keeps its first send time (a retry is part of the same wait).
    pub fn message(
        &mut self,
        socket: S,
        sent: bool,
        message: &Message,
        at_ns: u64,
        context: impl FnOnce() -> C,
        done: &mut Vec<Lookup<C>>,
    ) -> bool {
        let key = (socket, message.id, message.question);
        match (sent, message.response) {
            (true, false) => {
                if self.pending.contains_key(&key) || self.pending.len() >= MAX_PENDING {
                    return false;
                }
                self.pending.insert(key, (at_ns, context()));
                true
            }
            (false, true) => match self.pending.remove(&key) {
                Some((start_ns, context)) => {
                    done.push(Lookup {
                        context,
                        qtype: message.question.qtype,
                        outcome: Outcome::Answered(message.rcode),
                        duration_ns: at_ns.saturating_sub(start_ns),
                    });
                    true
                }
                None => false,
            },
            // A process answering (a server) or reading queries: not a lookup of its own.
            _ => false,
        }
    }

    /// Ends, as timeouts, the lookups asked [`TIMEOUT_NS`] or longer before `now_ns`.
    pub fn expire(&mut self, now_ns: u64, done: &mut Vec<Lookup<C>>) {
        let expired: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, (start_ns, _))| now_ns.saturating_sub(*start_ns) >= TIMEOUT_NS)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            if let Some((_, context)) = self.pending.remove(&key) {
                done.push(Lookup {
                    context,
                    qtype: key.2.qtype,
                    outcome: Outcome::TimedOut,
                    duration_ns: TIMEOUT_NS,
                });
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests;
