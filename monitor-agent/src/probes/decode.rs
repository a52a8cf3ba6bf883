//! Ring-buffer records → typed records. The wire layouts are defined once, in
//! `monitor-common`; this is the one place that reads them, and what it returns is their typed
//! view (`*Record`: enums instead of integer codes, addresses as `SocketAddr`, the owner as
//! one `Owner`). Pure: no kernel, no I/O, so every layout rule is unit-tested here and a
//! malformed record is an error value, never a panic in the reader.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Buf as _;
use monitor_common::{
    Owner,
    capacity::{DB_CAPTURE, PAYLOAD_CAPTURE, REDIS_WORD},
    direction, event_kind, payload_direction, payload_flags, tcp_event,
};
pub use monitor_protocols::Direction as Flow;
use monitor_protocols::redis::kernel::RedisMessage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessEventKind {
    Exec,
    Exit,
    Seen,
}

/// `monitor_common::ProcessEvent`, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRecord {
    pub kind: ProcessEventKind,
    pub owner: Owner,
    /// Exec events: the parent's TGID, when the probe could read it.
    pub parent_tgid: Option<u32>,
    pub timestamp_ns: u64,
    pub comm: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpEventKind {
    Open,
    ConnectFail,
    Close,
    Retransmit,
    ResetSent,
    ResetReceived,
}

/// Who opened a connection (`monitor_common::direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
}

/// `monitor_common::TcpEvent`, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRecord {
    pub kind: TcpEventKind,
    pub direction: Direction,
    pub owner: Owner,
    pub local_port: u16,
    /// `sk_err` of a failed connect.
    pub error: u32,
    /// IPv4-mapped IPv6 addresses are written as IPv4: one peer, one label value.
    pub remote: SocketAddr,
    pub srtt_us: u32,
    pub duration_ns: u64,
}

/// `monitor_common::PayloadEvent`, typed: one captured socket read or write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadRecord {
    /// Egress: the process wrote the bytes; ingress: it read them.
    pub flow: Flow,
    /// Bytes the syscall moved; `data` is a prefix of them.
    pub length: u32,
    /// The first read/write captured of this socket: a new connection, whatever came before
    /// on the same kernel socket address.
    pub first: bool,
    /// `DNS_EVENTS`: a message read from or written to a TCP stream (its length first).
    pub stream: bool,
    pub owner: Owner,
    pub sk: u64,
    pub timestamp_ns: u64,
    pub remote: SocketAddr,
    pub local_port: u16,
    pub data: Vec<u8>,
}

/// `monitor_common::RequestEvent`, typed: one HTTP/1.x request framed in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub owner: Owner,
    pub sk: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub remote: SocketAddr,
    pub local_port: u16,
    pub status: u16,
    /// `monitor_framing::role`, `method` and `text_flags`, as the kernel wrote them.
    pub role: u8,
    pub method: u8,
    pub flags: u8,
    /// The request target's start (server) or the `Host` value (client).
    pub text: Vec<u8>,
}

/// `monitor_common::RedisEvent`, typed: one Redis command or reply framed in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisRecord {
    pub owner: Owner,
    pub sk: u64,
    pub remote: SocketAddr,
    pub local_port: u16,
    /// `monitor_framing::role` of the connection.
    pub role: u8,
    /// A command (else a reply, or the loss of the replies' framing).
    pub command: bool,
    pub message: RedisMessage,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Length { expected: usize, got: usize },
    Kind(u32),
    Direction(u32),
    Family(u16),
    Captured(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length { expected, got } => {
                write!(f, "record of {got} bytes, expected {expected}")
            }
            Self::Kind(kind) => write!(f, "unknown event kind {kind}"),
            Self::Direction(direction) => write!(f, "unknown direction {direction}"),
            Self::Family(family) => write!(f, "unknown address family {family}"),
            Self::Captured(bytes) => {
                write!(f, "{bytes} captured bytes, more than the record holds")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

fn check_length<T>(record: &[u8]) -> Result<(), DecodeError> {
    let expected = size_of::<T>();
    if record.len() != expected {
        return Err(DecodeError::Length {
            expected,
            got: record.len(),
        });
    }
    Ok(())
}

pub fn process_event(record: &[u8]) -> Result<ProcessRecord, DecodeError> {
    check_length::<monitor_common::ProcessEvent>(record)?;
    let mut buf = record;
    let kind = match buf.get_u32_ne() {
        event_kind::EXEC => ProcessEventKind::Exec,
        event_kind::EXIT => ProcessEventKind::Exit,
        event_kind::SEEN => ProcessEventKind::Seen,
        other => return Err(DecodeError::Kind(other)),
    };
    let tgid = buf.get_u32_ne();
    let generation = buf.get_u32_ne();
    let parent_tgid = buf.get_u32_ne();
    let timestamp_ns = buf.get_u64_ne();
    Ok(ProcessRecord {
        kind,
        owner: Owner { tgid, generation },
        parent_tgid: (parent_tgid != 0).then_some(parent_tgid),
        timestamp_ns,
        comm: comm(buf),
    })
}

pub fn tcp_event(record: &[u8]) -> Result<TcpRecord, DecodeError> {
    check_length::<monitor_common::TcpEvent>(record)?;
    let mut buf = record;
    let kind = match buf.get_u32_ne() {
        tcp_event::OPEN => TcpEventKind::Open,
        tcp_event::CONNECT_FAIL => TcpEventKind::ConnectFail,
        tcp_event::CLOSE => TcpEventKind::Close,
        tcp_event::RETRANSMIT => TcpEventKind::Retransmit,
        tcp_event::RESET_SENT => TcpEventKind::ResetSent,
        tcp_event::RESET_RECEIVED => TcpEventKind::ResetReceived,
        other => return Err(DecodeError::Kind(other)),
    };
    let direction = match buf.get_u32_ne() {
        direction::OUTBOUND => Direction::Outbound,
        direction::INBOUND => Direction::Inbound,
        other => return Err(DecodeError::Direction(other)),
    };
    let tgid = buf.get_u32_ne();
    let generation = buf.get_u32_ne();
    let local_port = buf.get_u16_ne();
    let _pad = buf.get_u16_ne();
    let error = buf.get_u32_ne();
    let remote = endpoint(&mut buf)?;
    let srtt_us = buf.get_u32_ne();
    let duration_ns = buf.get_u64_ne();
    Ok(TcpRecord {
        kind,
        direction,
        owner: Owner { tgid, generation },
        local_port,
        error,
        remote,
        srtt_us,
        duration_ns,
    })
}

/// `monitor_common::Endpoint`; IPv4-mapped IPv6 addresses come out as IPv4.
fn endpoint(buf: &mut &[u8]) -> Result<SocketAddr, DecodeError> {
    let family = buf.get_u16_ne();
    let port = buf.get_u16_ne();
    let mut addr = [0u8; 16];
    buf.copy_to_slice(&mut addr);
    let ip = match family {
        2 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        10 => {
            let v6 = Ipv6Addr::from(addr);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        other => return Err(DecodeError::Family(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

pub fn payload_event(record: &[u8]) -> Result<PayloadRecord, DecodeError> {
    check_length::<monitor_common::PayloadEvent>(record)?;
    payload(record, PAYLOAD_CAPTURE)
}

/// A `DB_EVENTS` record: a `PayloadEvent`'s head, then exactly its captured bytes.
pub fn db_event(record: &[u8]) -> Result<PayloadRecord, DecodeError> {
    let event = payload(record, DB_CAPTURE)?;
    let expected = std::mem::offset_of!(monitor_common::DbEvent, data) + event.data.len();
    if record.len() != expected {
        return Err(DecodeError::Length {
            expected,
            got: record.len(),
        });
    }
    Ok(event)
}

/// A `PayloadEvent`'s head and the `captured` bytes after it (at most `capacity`).
fn payload(record: &[u8], capacity: usize) -> Result<PayloadRecord, DecodeError> {
    let head = std::mem::offset_of!(monitor_common::PayloadEvent, data);
    if record.len() < head {
        return Err(DecodeError::Length {
            expected: head,
            got: record.len(),
        });
    }
    let mut buf = record;
    let flow = match buf.get_u32_ne() {
        payload_direction::EGRESS => Flow::Egress,
        payload_direction::INGRESS => Flow::Ingress,
        other => return Err(DecodeError::Direction(other)),
    };
    let captured = buf.get_u32_ne();
    let length = buf.get_u32_ne();
    let flags = buf.get_u32_ne();
    let tgid = buf.get_u32_ne();
    let generation = buf.get_u32_ne();
    let sk = buf.get_u64_ne();
    let timestamp_ns = buf.get_u64_ne();
    let remote = endpoint(&mut buf)?;
    let local_port = buf.get_u16_ne();
    let _pad2 = buf.get_u16_ne();
    if captured as usize > capacity || captured as usize > buf.len() {
        return Err(DecodeError::Captured(captured));
    }
    Ok(PayloadRecord {
        flow,
        length,
        first: flags & payload_flags::FIRST != 0,
        stream: flags & payload_flags::STREAM != 0,
        owner: Owner { tgid, generation },
        sk,
        timestamp_ns,
        remote,
        local_port,
        data: buf[..captured as usize].to_vec(),
    })
}

pub fn redis_event(record: &[u8]) -> Result<RedisRecord, DecodeError> {
    check_length::<monitor_common::RedisEvent>(record)?;
    let mut buf = record;
    let tgid = buf.get_u32_ne();
    let generation = buf.get_u32_ne();
    let sk = buf.get_u64_ne();
    let start_ns = buf.get_u64_ne();
    let count = buf.get_i64_ne();
    let remote = endpoint(&mut buf)?;
    let local_port = buf.get_u16_ne();
    let role = buf.get_u8();
    let side = buf.get_u8();
    let elements = buf.get_u32_ne();
    let seq = buf.get_u32_ne();
    let kind = buf.get_u8();
    let flags = buf.get_u8();
    let word_len = buf.get_u8();
    buf.advance(5);
    if usize::from(word_len) > buf.len() {
        return Err(DecodeError::Captured(u32::from(word_len)));
    }
    let mut word = [0; REDIS_WORD];
    buf.copy_to_slice(&mut word);
    Ok(RedisRecord {
        owner: Owner { tgid, generation },
        sk,
        remote,
        local_port,
        role,
        command: side == 0,
        message: RedisMessage {
            start_ns,
            count,
            elements,
            seq,
            kind,
            flags,
            word_len,
            _pad: [0; 5],
            word,
        },
    })
}

pub fn request_event(record: &[u8]) -> Result<RequestRecord, DecodeError> {
    check_length::<monitor_common::RequestEvent>(record)?;
    let mut buf = record;
    let tgid = buf.get_u32_ne();
    let generation = buf.get_u32_ne();
    let sk = buf.get_u64_ne();
    let start_ns = buf.get_u64_ne();
    let end_ns = buf.get_u64_ne();
    let remote = endpoint(&mut buf)?;
    let local_port = buf.get_u16_ne();
    let status = buf.get_u16_ne();
    let role = buf.get_u8();
    let method = buf.get_u8();
    let flags = buf.get_u8();
    let text_len = buf.get_u8();
    buf.advance(4);
    if usize::from(text_len) > buf.len() {
        return Err(DecodeError::Captured(u32::from(text_len)));
    }
    Ok(RequestRecord {
        owner: Owner { tgid, generation },
        sk,
        start_ns,
        end_ns,
        remote,
        local_port,
        status,
        role,
        method,
        flags,
        text: buf[..usize::from(text_len)].to_vec(),
    })
}

/// A task's comm: up to 16 bytes, NUL-terminated when shorter, not necessarily UTF-8
/// (anyone can `prctl(PR_SET_NAME)` arbitrary bytes). Invalid bytes become U+FFFD.
pub fn comm(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, comm: &[u8]) -> Vec<u8> {
        let mut event = monitor_common::ProcessEvent {
            kind,
            tgid: 4242,
            generation: 7,
            parent_tgid: 77,
            timestamp_ns: 123_456_789,
            comm: [0; 16],
        };
        event.comm[..comm.len()].copy_from_slice(comm);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&event.kind.to_ne_bytes());
        bytes.extend_from_slice(&event.tgid.to_ne_bytes());
        bytes.extend_from_slice(&event.generation.to_ne_bytes());
        bytes.extend_from_slice(&event.parent_tgid.to_ne_bytes());
        bytes.extend_from_slice(&event.timestamp_ns.to_ne_bytes());
        bytes.extend_from_slice(&event.comm);
        bytes
    }

    #[test]
    fn exec_and_exit() {
        let exec = process_event(&record(event_kind::EXEC, b"nginx")).unwrap();
        assert_eq!(
            exec,
            ProcessRecord {
                kind: ProcessEventKind::Exec,
                owner: Owner {
                    tgid: 4242,
                    generation: 7
                },
                parent_tgid: Some(77),
                timestamp_ns: 123_456_789,
                comm: "nginx".into()
            }
        );
        let exit = process_event(&record(event_kind::EXIT, b"nginx")).unwrap();
        assert_eq!(exit.kind, ProcessEventKind::Exit);
    }

    #[test]
    fn full_length_comm_has_no_terminator() {
        let event = process_event(&record(event_kind::EXEC, b"0123456789abcdef")).unwrap();
        assert_eq!(event.comm, "0123456789abcdef");
    }

    #[test]
    fn hostile_comm_is_lossy_not_fatal() {
        assert_eq!(comm(b"a\xffb\"\\\n\0junk"), "a\u{fffd}b\"\\\n");
    }

    fn tcp_record(family: u16, addr: &[u8]) -> Vec<u8> {
        let mut remote = monitor_common::Endpoint {
            family,
            port: 8080,
            addr: [0; 16],
        };
        remote.addr[..addr.len()].copy_from_slice(addr);
        let event = monitor_common::TcpEvent {
            kind: tcp_event::CONNECT_FAIL,
            direction: direction::OUTBOUND,
            owner: monitor_common::Owner {
                tgid: 10,
                generation: 2,
            },
            local_port: 0,
            _pad: 0,
            error: 111,
            remote,
            srtt_us: 0,
            duration_ns: 5_000,
        };
        let mut bytes = Vec::new();
        for word in [
            event.kind,
            event.direction,
            event.owner.tgid,
            event.owner.generation,
        ] {
            bytes.extend_from_slice(&word.to_ne_bytes());
        }
        for half in [event.local_port, event._pad] {
            bytes.extend_from_slice(&half.to_ne_bytes());
        }
        bytes.extend_from_slice(&event.error.to_ne_bytes());
        bytes.extend_from_slice(&remote.family.to_ne_bytes());
        bytes.extend_from_slice(&remote.port.to_ne_bytes());
        bytes.extend_from_slice(&remote.addr);
        bytes.extend_from_slice(&event.srtt_us.to_ne_bytes());
        bytes.extend_from_slice(&event.duration_ns.to_ne_bytes());
        bytes
    }

    #[test]
    fn tcp_events_and_their_peers() {
        let v4 = tcp_event(&tcp_record(2, &[10, 200, 0, 2])).unwrap();
        assert_eq!(v4.kind, TcpEventKind::ConnectFail);
        assert_eq!(v4.direction, Direction::Outbound);
        assert_eq!((v4.owner.tgid, v4.owner.generation, v4.error), (10, 2, 111));
        assert_eq!(v4.remote.to_string(), "10.200.0.2:8080");
        assert_eq!(v4.duration_ns, 5_000);
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        let v4_mapped = tcp_event(&tcp_record(10, &mapped)).unwrap();
        assert_eq!(v4_mapped.remote.to_string(), "127.0.0.1:8080");
        let loopback6 = tcp_event(&tcp_record(10, &Ipv6Addr::LOCALHOST.octets())).unwrap();
        assert_eq!(loopback6.remote.to_string(), "[::1]:8080");
        assert_eq!(tcp_event(&tcp_record(1, &[])), Err(DecodeError::Family(1)));
    }

    #[test]
    fn payload_events_carry_only_the_captured_prefix() {
        let mut record = Vec::new();
        for word in [
            payload_direction::INGRESS,
            3,
            700,
            payload_flags::FIRST,
            42,
            1,
        ] {
            record.extend_from_slice(&u32::to_ne_bytes(word));
        }
        record.extend_from_slice(&0xffff_8880_dead_beefu64.to_ne_bytes());
        record.extend_from_slice(&99u64.to_ne_bytes());
        record.extend_from_slice(&2u16.to_ne_bytes());
        record.extend_from_slice(&80u16.to_ne_bytes());
        record.extend_from_slice(&[127, 0, 0, 1]);
        record.extend_from_slice(&[0; 12]);
        record.extend_from_slice(&[0x1f, 0x90, 0, 0]); // local port 8080 (native order below)
        record[60..62].copy_from_slice(&8080u16.to_ne_bytes());
        record.extend_from_slice(b"GET");
        record.resize(size_of::<monitor_common::PayloadEvent>(), 0xaa);
        let event = payload_event(&record).unwrap();
        assert_eq!(event.flow, Flow::Ingress);
        assert!(event.first);
        assert_eq!(
            (event.length, event.owner.tgid, event.owner.generation),
            (700, 42, 1)
        );
        assert_eq!(event.remote.to_string(), "127.0.0.1:80");
        assert_eq!(event.local_port, 8080);
        assert_eq!(event.data, b"GET");
        record[4..8].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(payload_event(&record), Err(DecodeError::Captured(10_000)));

        // The same head as a database record: exactly as long as the bytes it carries.
        record.truncate(64 + 3);
        record[4..8].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(db_event(&record).unwrap().data, b"GET");
        record.push(0);
        assert_eq!(
            db_event(&record),
            Err(DecodeError::Length {
                expected: 67,
                got: 68
            })
        );
        record.truncate(66);
        assert_eq!(db_event(&record), Err(DecodeError::Captured(3)));
        assert!(matches!(
            db_event(&record[..40]),
            Err(DecodeError::Length { .. })
        ));
    }

    #[test]
    fn request_events_carry_only_the_text_used() {
        let mut record = Vec::new();
        record.extend_from_slice(&42u32.to_ne_bytes());
        record.extend_from_slice(&3u32.to_ne_bytes());
        record.extend_from_slice(&0xffff_8880_dead_beefu64.to_ne_bytes());
        record.extend_from_slice(&1_000u64.to_ne_bytes());
        record.extend_from_slice(&251_000u64.to_ne_bytes());
        record.extend_from_slice(&10u16.to_ne_bytes());
        record.extend_from_slice(&40_000u16.to_ne_bytes());
        record.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        record.extend_from_slice(&8080u16.to_ne_bytes());
        record.extend_from_slice(&404u16.to_ne_bytes());
        record.extend_from_slice(&[1, 1, 0, 6, 0, 0, 0, 0]);
        record.extend_from_slice(b"/users");
        record.resize(size_of::<monitor_common::RequestEvent>(), 0xaa);
        let event = request_event(&record).unwrap();
        assert_eq!((event.owner.tgid, event.owner.generation), (42, 3));
        assert_eq!((event.start_ns, event.end_ns), (1_000, 251_000));
        assert_eq!(event.remote.to_string(), "[::1]:40000");
        assert_eq!((event.local_port, event.status), (8080, 404));
        assert_eq!((event.role, event.method, event.flags), (1, 1, 0));
        assert_eq!(event.text, b"/users");
        record[59] = 65;
        assert_eq!(request_event(&record), Err(DecodeError::Captured(65)));
        assert!(matches!(
            request_event(&record[..10]),
            Err(DecodeError::Length { .. })
        ));
    }

    #[test]
    fn redis_events_decode_their_message() {
        let mut record = Vec::new();
        record.extend_from_slice(&7u32.to_ne_bytes());
        record.extend_from_slice(&1u32.to_ne_bytes());
        record.extend_from_slice(&0xffff_8880_0000_1000u64.to_ne_bytes());
        record.extend_from_slice(&5_000u64.to_ne_bytes());
        record.extend_from_slice(&(-3i64).to_ne_bytes());
        record.extend_from_slice(&2u16.to_ne_bytes());
        record.extend_from_slice(&6379u16.to_ne_bytes());
        record.extend_from_slice(&[127, 0, 0, 1]);
        record.extend_from_slice(&[0; 12]);
        record.extend_from_slice(&51_000u16.to_ne_bytes());
        record.extend_from_slice(&[2, 1]);
        record.extend_from_slice(&3u32.to_ne_bytes());
        record.extend_from_slice(&9u32.to_ne_bytes());
        record.extend_from_slice(&[b'-', 2, 9, 0, 0, 0, 0, 0]);
        record.extend_from_slice(b"WRONGTYPE");
        record.resize(size_of::<monitor_common::RedisEvent>(), 0);
        let event = redis_event(&record).unwrap();
        assert_eq!((event.owner.tgid, event.owner.generation), (7, 1));
        assert_eq!(event.remote.to_string(), "127.0.0.1:6379");
        assert_eq!(
            (event.local_port, event.role, event.command),
            (51_000, 2, false)
        );
        let message = event.message;
        assert_eq!((message.start_ns, message.count), (5_000, -3));
        assert_eq!((message.elements, message.seq), (3, 9));
        assert_eq!((message.kind, message.flags), (b'-', 2));
        assert_eq!(&message.word[..usize::from(message.word_len)], b"WRONGTYPE");
        record[66] = 33;
        assert_eq!(redis_event(&record), Err(DecodeError::Captured(33)));
        assert!(matches!(
            redis_event(&record[..100]),
            Err(DecodeError::Length { .. })
        ));
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(
            process_event(&[0; 12]),
            Err(DecodeError::Length {
                expected: 40,
                got: 12
            })
        );
        assert_eq!(process_event(&record(99, b"x")), Err(DecodeError::Kind(99)));
    }
}
