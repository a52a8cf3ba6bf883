//! Ring-buffer records → typed events. Pure: no kernel, no I/O, so every layout rule is
//! unit-tested here and a malformed record is an error value, never a panic in the reader.
use bytes::Buf as _;
use monitor_common::event_kind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessEventKind {
    Exec,
    Exit,
    Seen,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    pub kind: ProcessEventKind,
    pub tgid: u32,
    pub generation: u32,
    pub timestamp_ns: u64,
    pub comm: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Length { expected: usize, got: usize },
    Kind(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length { expected, got } => {
                write!(f, "record of {got} bytes, expected {expected}")
            }
            Self::Kind(kind) => write!(f, "unknown event kind {kind}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub fn process_event(record: &[u8]) -> Result<ProcessEvent, DecodeError> {
    let expected = size_of::<monitor_common::ProcessEvent>();
    if record.len() != expected {
        return Err(DecodeError::Length {
            expected,
            got: record.len(),
        });
    }
    let mut buf = record;
    let kind = match buf.get_u32_ne() {
        event_kind::EXEC => ProcessEventKind::Exec,
        event_kind::EXIT => ProcessEventKind::Exit,
        event_kind::SEEN => ProcessEventKind::Seen,
        other => return Err(DecodeError::Kind(other)),
    };
    let tgid = buf.get_u32_ne();
    let generation = buf.get_u32_ne();
    let _pad = buf.get_u32_ne();
    let timestamp_ns = buf.get_u64_ne();
    Ok(ProcessEvent {
        kind,
        tgid,
        generation,
        timestamp_ns,
        comm: comm(buf),
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
            _pad: 0,
            timestamp_ns: 123_456_789,
            comm: [0; 16],
        };
        event.comm[..comm.len()].copy_from_slice(comm);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&event.kind.to_ne_bytes());
        bytes.extend_from_slice(&event.tgid.to_ne_bytes());
        bytes.extend_from_slice(&event.generation.to_ne_bytes());
        bytes.extend_from_slice(&event._pad.to_ne_bytes());
        bytes.extend_from_slice(&event.timestamp_ns.to_ne_bytes());
        bytes.extend_from_slice(&event.comm);
        bytes
    }

    #[test]
    fn exec_and_exit() {
        let exec = process_event(&record(event_kind::EXEC, b"nginx")).unwrap();
        assert_eq!(
            exec,
            ProcessEvent {
                kind: ProcessEventKind::Exec,
                tgid: 4242,
                generation: 7,
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
