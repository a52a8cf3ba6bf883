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
use crate::chunk::{Chunk, Role};

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
        version: if flags & text_flags::HTTP_1_0 != 0 {
            HttpVersion::Http10
        } else {
            HttpVersion::Http11
        },
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
        self.chunk.copy_window(offset, len, window)
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
        let direction = chunk.direction.framing_way();
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
        if conn.feed(&io, &mut self.window, &mut wire).0 == Outcome::Done {
            self.conn = None;
            self.verdict = verdict::IGNORE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chunk::Direction, test_io::io};

    /// Frames `ios` (direction, bytes readable, bytes moved) of one connection; the
    /// outcome of each.
    fn framed(ios: &[(Direction, &[u8], usize)]) -> Vec<(Outcome, u32)> {
        let mut conn = Box::new(Conn::ZERO);
        let mut window = Box::new([0; WINDOW]);
        let mut out = Vec::new();
        conn.begin(monitor_framing::direction::INGRESS);
        ios.iter()
            .map(|&(direction, data, moved)| {
                let chunk = io(direction, data, 1).chunk();
                let io = Io {
                    direction: direction.framing_way(),
                    length: moved as u32,
                    readable: data.len() as u32,
                    loaded: 0,
                };
                let mut wire = ChunkWire {
                    chunk: &chunk,
                    out: &mut out,
                };
                conn.feed(&io, &mut window, &mut wire)
            })
            .collect()
    }

    /// A `101` ends the framing where its head ends, also when its head spans two writes:
    /// the probes look there for an `h2c` server's preface. A head past what can be read
    /// ends it there.
    #[test]
    fn an_upgrade_ends_the_framing_at_the_end_of_its_head() {
        const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n";
        const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n";
        let settings: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
        let whole = [SWITCHING, settings].concat();
        let upgrade = (Direction::Ingress, UPGRADE, UPGRADE.len());
        let outcomes = framed(&[upgrade, (Direction::Egress, &whole, whole.len())]);
        assert_eq!(outcomes[1], (Outcome::Done, SWITCHING.len() as u32));

        let (start, end) = SWITCHING.split_at(20);
        let rest = [end, settings].concat();
        let outcomes = framed(&[
            upgrade,
            (Direction::Egress, start, start.len()),
            (Direction::Egress, &rest, rest.len()),
        ]);
        assert_eq!(outcomes[1].0, Outcome::Framing);
        assert_eq!(outcomes[2], (Outcome::Done, end.len() as u32));

        let outcomes = framed(&[upgrade, (Direction::Egress, start, whole.len())]);
        assert_eq!(outcomes[1], (Outcome::Done, start.len() as u32));

        // A head garbled after its status: HTTP ends there all the same.
        let garbled = b"HTTP/1.1 101 Switching Protocols\r\nUp\x01grade: h2c\r\n\r\n";
        let outcomes = framed(&[upgrade, (Direction::Egress, garbled, garbled.len())]);
        assert_eq!(outcomes[1].0, Outcome::Done);
    }
}
