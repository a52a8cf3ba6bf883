//! Requests framed in the kernel (`monitor-framing`, run by the probes) made into
//! [`HttpExchange`]s, and [`KernelTwin`]: the same framing run natively over captured
//! chunks, so that the byte fixtures and the fuzzer exercise what the probes run, without
//! root, and compare it with [`HttpParser`](super::HttpParser).
use monitor_framing::{
    Conn, Io, Outcome, Pending, WINDOW, Wire, method, role, text_flags, verdict,
};

use super::{
    Method,
    exchange::{HttpExchange, HttpVersion},
    request_route, valid_host,
};
use crate::chunk::{Chunk, Direction, Role};

fn method_of(code: u8) -> Method {
    match code {
        method::GET => Method::Get,
        method::HEAD => Method::Head,
        method::POST => Method::Post,
        method::PUT => Method::Put,
        method::DELETE => Method::Delete,
        method::CONNECT => Method::Connect,
        method::OPTIONS => Method::Options,
        method::TRACE => Method::Trace,
        method::PATCH => Method::Patch,
        _ => Method::Other,
    }
}

/// The exchange of a request the kernel framed: `text` is the target prefix (server) or
/// the `Host` prefix (client), `flags` its `text_flags`. None for a role it cannot have.
pub fn exchange(
    role_code: u8,
    method_code: u8,
    status: u16,
    text: &[u8],
    flags: u8,
    duration_ns: u64,
) -> Option<HttpExchange> {
    let truncated = flags & text_flags::TRUNCATED != 0;
    let (role, route, host) = match role_code {
        role::SERVER => {
            let target = String::from_utf8_lossy(text);
            (Role::Server, request_route(&target, truncated), None)
        }
        // A cut host would name another server: the peer's address is used instead.
        role::CLIENT => (
            Role::Client,
            String::new(),
            valid_host(text).filter(|_| !truncated),
        ),
        _ => return None,
    };
    Some(HttpExchange {
        role,
        method: method_of(method_code),
        status,
        route,
        duration_ns,
        host,
        version: HttpVersion::Http1,
    })
}

/// One socket as the probes see it: judged on its first read/writes, then framed.
pub struct KernelTwin {
    verdict: u32,
    conn: Option<Box<Conn>>,
    window: Box<[u8; WINDOW]>,
}

/// The twin's side of one chunk.
struct ChunkWire<'a, 'b> {
    chunk: &'a Chunk<'a>,
    out: &'b mut Vec<HttpExchange>,
}

impl Wire for ChunkWire<'_, '_> {
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32 {
        let data = self.chunk.data;
        let start = (offset as usize).min(data.len());
        let end = (start + len as usize).min(data.len());
        window[..end - start].copy_from_slice(&data[start..end]);
        (end - start) as u32
    }

    fn now_ns(&mut self) -> u64 {
        self.chunk.timestamp_ns
    }

    fn completed(&mut self, request: &Pending, role: u8, status: u16, end_ns: u64) {
        let text = &request.text[..usize::from(request.text_len)];
        self.out.extend(exchange(
            role,
            request.method,
            status,
            text,
            request.flags,
            end_ns.saturating_sub(request.start_ns),
        ));
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
            verdict: 0,
            conn: None,
            window: Box::new([0; WINDOW]),
        }
    }

    /// Whether the socket was given up (not HTTP, or no longer).
    pub fn is_ignored(&self) -> bool {
        self.verdict == verdict::IGNORE
    }

    /// Frames one read/write as the probes do: `chunk.data` is what they can copy of it.
    pub fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<HttpExchange>) {
        if self.verdict == verdict::IGNORE || chunk.total_len == 0 {
            return;
        }
        let direction = match chunk.direction {
            Direction::Egress => monitor_framing::direction::EGRESS,
            Direction::Ingress => monitor_framing::direction::INGRESS,
        };
        let length = u32::try_from(chunk.total_len).unwrap_or(u32::MAX);
        let readable = u32::try_from(chunk.data.len()).unwrap_or(u32::MAX);
        let mut wire = ChunkWire { chunk, out };
        let mut loaded = 0;
        if self.conn.is_none() {
            let want = readable.min(length).min(WINDOW as u32);
            loaded = if want == 0 {
                0
            } else {
                wire.read(0, want, &mut self.window)
            };
            if !monitor_framing::starts_request(&self.window, loaded) {
                self.verdict = verdict::after_miss(self.verdict);
                return;
            }
            let mut conn = Box::new(Conn::ZERO);
            conn.begin(direction);
            self.conn = Some(conn);
            self.verdict = verdict::HTTP;
        }
        let conn = self.conn.as_mut().expect("created above");
        let io = Io {
            direction,
            length,
            readable,
            loaded,
        };
        if conn.feed(&io, &mut self.window, &mut wire) == Outcome::Done {
            self.conn = None;
            self.verdict = verdict::IGNORE;
        }
    }
}
