//! HTTP/1.0 and HTTP/1.1 from captured payload prefixes.
//!
//! # What is parsed
//!
//! Each direction is a stream of messages: a head (start line, header lines, blank line)
//! read line by line, then a body framed by `Transfer-Encoding: chunked` or
//! `Content-Length`, or by nothing (no body for requests; everything until the close for
//! responses). Responses to `HEAD`, `1xx`, `204` and `304` have no body whatever their
//! headers say. Interim `1xx` responses (`100 Continue`) are skipped: the final response
//! answers the request. Requests may be pipelined: responses answer them in order.
//!
//! # Role and timing
//!
//! The side that carries the first request line decides the role: read → [`Role::Server`],
//! written → [`Role::Client`]. A request starts at the chunk holding the first byte of its
//! request line (server: the read that received it; client: the write that sent it); it ends
//! at the chunk holding the first byte of its final response's status line (server: the
//! write that sent it; client: the read that received it). `duration_ns` is the difference of
//! those chunks' timestamps. An exchange is emitted as soon as the final status line is
//! seen: the rest of the response (headers, body) adds nothing to it.
//!
//! # Truncated captures: what is lost
//!
//! The bytes past a chunk's captured prefix are skipped by count, so:
//! - a `Content-Length` body is skipped exactly, however little of it was captured;
//! - a chunked body survives a gap that ends inside a chunk's data or its closing CRLF; a
//!   gap that swallows a chunk-size line loses the framing;
//! - a gap inside a head loses the rest of the head (its framing, `Host`); the start line,
//!   if captured (or at least its method, target path or status code), still counts. A
//!   request line cut inside its path gets a route ending in [`TRUNCATED_SEGMENT`].
//!
//! When the framing is lost, that direction resynchronises: it skips whole chunks until
//! one begins with a request line (or a status line). Messages that start in the middle of
//! a skipped chunk (pipelining) are lost with it. After a response-side resynchronisation,
//! older unanswered requests are dropped so that the next response pairs with the newest
//! request (right unless requests were pipelined, which clients rarely do); a response
//! with no request to answer is dropped.
//!
//! # Memory
//!
//! A head line is buffered only when it spans chunks, up to [`MAX_LINE`] bytes; a longer
//! line, or more than [`MAX_HEADER_LINES`] headers, gives the message up (resynchronising
//! as above). At most [`MAX_PENDING`] requests wait for responses (the oldest is dropped).
use std::{collections::VecDeque, fmt};

pub(crate) mod exchange;
pub mod kernel;

pub use exchange::{HttpExchange, HttpVersion, Method, split_host_port};

use crate::{
    chunk::{Chunk, Direction, Role},
    protocol::{Detection, Exchange, ParserStatus, Protocol, ProtocolParser},
    route::{self, normalize_route},
};

/// Longest head line kept across chunks.
pub const MAX_LINE: usize = 4096;
/// Most header lines in one head.
pub const MAX_HEADER_LINES: usize = 256;
/// Most requests awaiting a response.
pub const MAX_PENDING: usize = 8;
/// Longest `Host` kept.
pub const MAX_HOST_LEN: usize = 256;
/// Route segment replacing a path cut by the capture.
pub const TRUNCATED_SEGMENT: &str = "{truncated}";
/// Longest method token accepted (the standard ones have at most 7 letters).
const MAX_METHOD_LEN: usize = 32;

/// The HTTP/1.x protocol, for [`crate::PROTOCOLS`].
pub struct Http1;

impl Protocol for Http1 {
    fn name(&self) -> &'static str {
        "http"
    }

    fn detect(&self, first: &Chunk<'_>) -> Detection {
        detect(first)
    }

    fn parser(&self) -> Box<dyn ProtocolParser> {
        Box::new(HttpParser::new())
    }
}

/// Whether a connection's first chunk starts an HTTP/1.x request. A standard method
/// followed by a path is enough; any other method token needs the whole request line,
/// ending in `HTTP/1.x`, so that text protocols with verbs (SMTP, Redis inline commands)
/// are not taken for HTTP. Responses are not looked for: the role comes from the request.
pub fn detect(first: &Chunk<'_>) -> Detection {
    let data = first.data;
    let method_len = method_len(data);
    if method_len > MAX_METHOD_LEN {
        return Detection::NoMatch;
    }
    let need_more = if first.is_fully_captured() {
        Detection::NeedMore
    } else {
        Detection::NoMatch
    };
    if method_len == data.len() {
        return need_more;
    }
    if method_len == 0 || data[method_len] != b' ' {
        return Detection::NoMatch;
    }
    let Some(&target_start) = data.get(method_len + 1) else {
        return need_more;
    };
    if Method::from_token(&data[..method_len]) != Method::Other
        && matches!(target_start, b'/' | b'*')
    {
        return Detection::Match;
    }
    match data.iter().position(|&b| b == b'\n') {
        Some(end) if parse_request_line(strip_eol(&data[..=end]), false).is_some() => {
            Detection::Match
        }
        Some(_) => Detection::NoMatch,
        None => need_more,
    }
}

/// One HTTP/1.x connection.
pub struct HttpParser {
    /// Unknown until a chunk starts with a request line.
    role: Option<Role>,
    requests: Side,
    responses: Side,
    pairing: Pairing,
}

impl Default for HttpParser {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpParser {
    pub fn new() -> Self {
        Self {
            role: None,
            requests: Side::new(Kind::Request),
            responses: Side::new(Kind::Response),
            pairing: Pairing::default(),
        }
    }
}

impl ProtocolParser for HttpParser {
    fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> ParserStatus {
        if self.pairing.tunnel {
            return ParserStatus::Finished;
        }
        let role = match self.role {
            Some(role) => role,
            None if starts_request(chunk.data) => {
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
        let side = if chunk.direction == role.request_direction() {
            &mut self.requests
        } else {
            &mut self.responses
        };
        side.feed(chunk, &mut self.pairing, out);
        if self.pairing.tunnel {
            ParserStatus::Finished
        } else {
            ParserStatus::Active
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.requests.line.capacity()
            + self.responses.line.capacity()
            + self.pairing.buffered_bytes()
    }
}

/// A request waiting for its response.
struct Request {
    method: Method,
    route: String,
    host: Option<String>,
    start_ns: u64,
    version: HttpVersion,
}

impl Request {
    fn buffered_bytes(&self) -> usize {
        self.route.capacity() + self.host.as_ref().map_or(0, String::capacity)
    }
}

/// What the two directions share: requests waiting for responses.
struct Pairing {
    role: Role,
    /// The request whose head is being read.
    reading: Option<Request>,
    /// Requests whose head is over, oldest first.
    pending: VecDeque<Request>,
    /// The method of the request the current response answers (None: no request to
    /// answer), and its status: together they decide whether it has a body.
    answering: (Option<Method>, u16),
    /// The connection switched protocols or became a tunnel.
    tunnel: bool,
}

impl Default for Pairing {
    fn default() -> Self {
        Self {
            role: Role::Server,
            reading: None,
            pending: VecDeque::new(),
            answering: (None, 0),
            tunnel: false,
        }
    }
}

impl Pairing {
    fn request_started(&mut self, request: Request) {
        self.request_head_done();
        self.reading = Some(request);
    }

    fn host_header(&mut self, value: &[u8]) {
        if self.role != Role::Client {
            return;
        }
        if let Some(request) = self.reading.as_mut().filter(|r| r.host.is_none()) {
            request.host = valid_host(value);
        }
    }

    /// Also for a head given up: the request line still counts.
    fn request_head_done(&mut self) {
        if let Some(request) = self.reading.take() {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(request);
        }
    }

    fn response_started(&mut self, status: u16, now_ns: u64, out: &mut Vec<Exchange>) {
        // Servers may answer before reading the whole request (an error, a head cut by the
        // capture): the request is as complete as it will get.
        self.request_head_done();
        if (100..200).contains(&status) && status != 101 {
            self.answering = (self.pending.front().map(|request| request.method), status);
            return;
        }
        let request = self.pending.pop_front();
        let method = request.as_ref().map(|request| request.method);
        self.answering = (method, status);
        if status == 101 || (method == Some(Method::Connect) && (200..300).contains(&status)) {
            self.tunnel = true;
        }
        if let Some(request) = request {
            out.push(Exchange::Http(HttpExchange {
                role: self.role,
                method: request.method,
                status,
                route: request.route,
                duration_ns: now_ns.saturating_sub(request.start_ns),
                host: request.host,
                version: request.version,
            }));
        }
    }

    /// After responses were skipped, the next one most likely answers the newest request.
    fn responses_resynchronised(&mut self) {
        while self.pending.len() > 1 {
            self.pending.pop_front();
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.reading
            .iter()
            .chain(&self.pending)
            .map(Request::buffered_bytes)
            .sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Request,
    Response,
}

impl Kind {
    fn starts_message(self, data: &[u8]) -> bool {
        match self {
            Kind::Request => starts_request(data),
            Kind::Response => data.starts_with(b"HTTP/1."),
        }
    }

    /// Whether a message (or a blank line before one) can begin with this byte.
    fn may_start_with(self, byte: u8) -> bool {
        byte == b'\r'
            || byte == b'\n'
            || match self {
                Kind::Request => is_method_byte(byte),
                Kind::Response => byte == b'H',
            }
    }
}

/// One direction of the connection.
struct Side {
    kind: Kind,
    state: State,
    /// The start of a head line whose end is in a later chunk.
    line: Vec<u8>,
    message_start_ns: u64,
    header_lines: usize,
    framing: Framing,
}

#[derive(Debug)]
enum State {
    StartLine,
    Headers,
    Body(Body),
    /// Framing lost: skip chunks until one starts a message.
    Resync,
}

#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    /// A `Transfer-Encoding` header was seen, and whether its last coding is `chunked`.
    transfer_encoding: bool,
    chunked: bool,
    /// Unusable `Content-Length` (malformed or conflicting).
    invalid: bool,
}

impl Framing {
    fn request_body(&self) -> Result<Option<Body>, Lost> {
        if self.transfer_encoding {
            // A request body in any other coding cannot be delimited (RFC 9112, 6.3).
            return if self.chunked {
                Ok(Some(Body::Chunked(Chunked::START)))
            } else {
                Err(Lost)
            };
        }
        if self.invalid {
            return Err(Lost);
        }
        Ok(self.content_length.map(Body::Length))
    }

    fn response_body(&self, (method, status): (Option<Method>, u16)) -> Result<Option<Body>, Lost> {
        if method == Some(Method::Head) || matches!(status, 100..=199 | 204 | 304) {
            return Ok(None);
        }
        if self.transfer_encoding {
            return Ok(Some(if self.chunked {
                Body::Chunked(Chunked::START)
            } else {
                Body::UntilClose
            }));
        }
        if self.invalid {
            return Err(Lost);
        }
        Ok(Some(
            self.content_length.map_or(Body::UntilClose, Body::Length),
        ))
    }
}

impl Side {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            state: State::StartLine,
            line: Vec::new(),
            message_start_ns: 0,
            header_lines: 0,
            framing: Framing::default(),
        }
    }

    fn feed(&mut self, chunk: &Chunk<'_>, pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        if matches!(self.state, State::Resync) {
            if !self.kind.starts_message(chunk.data) {
                return;
            }
            if self.kind == Kind::Response {
                pairing.responses_resynchronised();
            }
            self.state = State::StartLine;
        }
        let mut rest = chunk.data;
        while !rest.is_empty() && !pairing.tunnel {
            let used = match &mut self.state {
                State::StartLine | State::Headers => {
                    self.head(rest, chunk.timestamp_ns, pairing, out)
                }
                State::Body(body) => match body.consume(rest) {
                    Ok((used, finished)) => {
                        if finished {
                            self.state = State::StartLine;
                        }
                        used
                    }
                    Err(Lost) => {
                        self.lose_sync();
                        return;
                    }
                },
                State::Resync => return,
            };
            rest = &rest[used..];
        }
        let gap = chunk.uncaptured();
        if gap > 0 && !pairing.tunnel {
            self.skip(gap, pairing, out);
        }
    }

    /// Consumes up to one head line from `data`; returns the bytes used.
    fn head(
        &mut self,
        data: &[u8],
        now_ns: u64,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> usize {
        let end = data.iter().position(|&b| b == b'\n');
        let part = &data[..end.map_or(data.len(), |end| end + 1)];
        if self.line.len() + part.len() > MAX_LINE {
            self.give_up(pairing);
            return part.len();
        }
        if self.line.is_empty() && matches!(self.state, State::StartLine) {
            if !self.kind.may_start_with(data[0]) {
                // Not worth buffering a line of: the framing was wrong somewhere.
                self.lose_sync();
                return data.len();
            }
            self.message_start_ns = now_ns;
        }
        if end.is_none() {
            self.line.reserve_exact(part.len());
            self.line.extend_from_slice(part);
            return part.len();
        }
        if self.line.is_empty() {
            self.line_complete(part, pairing, out);
        } else {
            // Freed, not kept: lines that span chunks are the exception.
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(part);
            self.line_complete(&line, pairing, out);
        }
        part.len()
    }

    fn line_complete(&mut self, line: &[u8], pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        let line = strip_eol(line);
        match self.state {
            // Blank lines before a start line are tolerated (RFC 9112, 2.2).
            State::StartLine if line.is_empty() => {}
            State::StartLine => {
                if self.start_line(line, false, pairing, out) {
                    self.state = State::Headers;
                    self.header_lines = 0;
                    self.framing = Framing::default();
                } else {
                    self.lose_sync();
                }
            }
            State::Headers if line.is_empty() => self.head_done(pairing),
            State::Headers => {
                self.header_lines += 1;
                if self.header_lines > MAX_HEADER_LINES {
                    self.give_up(pairing);
                } else {
                    self.header(line, pairing);
                }
            }
            State::Body(_) | State::Resync => unreachable!("head lines only come in a head"),
        }
    }

    /// Handles a start line; false if it is not one. `truncated`: the capture ended inside
    /// it, so it may lack its end.
    fn start_line(
        &mut self,
        line: &[u8],
        truncated: bool,
        pairing: &mut Pairing,
        out: &mut Vec<Exchange>,
    ) -> bool {
        match self.kind {
            Kind::Request => {
                let Some((method, target, version)) = parse_request_line(line, truncated) else {
                    return false;
                };
                let target = String::from_utf8_lossy(target);
                let host = match pairing.role {
                    Role::Client => {
                        route::authority_of(&target).and_then(|a| valid_host(a.as_bytes()))
                    }
                    Role::Server => None,
                };
                pairing.request_started(Request {
                    method,
                    route: request_route(&target, truncated),
                    host,
                    start_ns: self.message_start_ns,
                    version,
                });
                true
            }
            Kind::Response => {
                let Some(status) = parse_status_line(line, truncated) else {
                    return false;
                };
                pairing.response_started(status, self.message_start_ns, out);
                true
            }
        }
    }

    fn header(&mut self, line: &[u8], pairing: &mut Pairing) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let name = &line[..colon];
        let value = trim_ows(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_decimal(value);
            match (length, self.framing.content_length) {
                (Some(length), None) => self.framing.content_length = Some(length),
                (Some(length), Some(seen)) if length == seen => {}
                _ => self.framing.invalid = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.framing.transfer_encoding = true;
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            self.framing.chunked = trim_ows(last).eq_ignore_ascii_case(b"chunked");
        } else if self.kind == Kind::Request && name.eq_ignore_ascii_case(b"host") {
            pairing.host_header(value);
        }
    }

    fn head_done(&mut self, pairing: &mut Pairing) {
        let framing = std::mem::take(&mut self.framing);
        let body = match self.kind {
            Kind::Request => {
                pairing.request_head_done();
                framing.request_body()
            }
            Kind::Response => framing.response_body(pairing.answering),
        };
        self.state = match body {
            Ok(None | Some(Body::Length(0))) => State::StartLine,
            Ok(Some(body)) => State::Body(body),
            Err(Lost) => State::Resync,
        };
    }

    /// Bytes of this direction that were not captured.
    fn skip(&mut self, gap: u64, pairing: &mut Pairing, out: &mut Vec<Exchange>) {
        match &mut self.state {
            State::StartLine => {
                if !self.line.is_empty() {
                    let line = std::mem::take(&mut self.line);
                    self.start_line(strip_eol(&line), true, pairing, out);
                }
                if self.kind == Kind::Request {
                    pairing.request_head_done();
                }
                self.lose_sync();
            }
            State::Headers => self.give_up(pairing),
            State::Body(body) => match body.skip(gap) {
                Ok(true) => self.state = State::StartLine,
                Ok(false) => {}
                Err(Lost) => self.lose_sync(),
            },
            State::Resync => {}
        }
    }

    /// Abandons the current message; its start line, if seen, still counts.
    fn give_up(&mut self, pairing: &mut Pairing) {
        if self.kind == Kind::Request {
            pairing.request_head_done();
        }
        self.lose_sync();
    }

    fn lose_sync(&mut self) {
        self.state = State::Resync;
        self.line = Vec::new();
        self.framing = Framing::default();
    }
}

/// The framing of a body could not be followed.
#[derive(Debug)]
struct Lost;

#[derive(Debug)]
enum Body {
    /// Bytes left.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

#[derive(Debug)]
enum Chunked {
    /// Reading a chunk-size line; after `;` (extensions) or `\r` the rest is ignored.
    Size {
        size: u64,
        digits: u8,
        ignore_rest: bool,
    },
    /// Bytes of chunk data left.
    Data(u64),
    /// Bytes left of the CRLF after chunk data (a bare LF is accepted).
    DataEnd(u8),
    /// After the last chunk: trailer lines until a blank one.
    Trailers { line_empty: bool },
}

impl Chunked {
    const START: Self = Chunked::Size {
        size: 0,
        digits: 0,
        ignore_rest: false,
    };
}

impl Body {
    /// Consumes body bytes from `data`: (bytes used, whether the body ended).
    fn consume(&mut self, data: &[u8]) -> Result<(usize, bool), Lost> {
        match self {
            Body::Length(left) => {
                let used = usize::try_from(*left).map_or(data.len(), |left| left.min(data.len()));
                *left -= used as u64;
                Ok((used, *left == 0))
            }
            Body::UntilClose => Ok((data.len(), false)),
            Body::Chunked(chunked) => chunked.consume(data),
        }
    }

    /// Skips `gap` unseen bytes: whether the body ended exactly there. Lost if the gap
    /// hides framing (a chunk-size line, or the next message).
    fn skip(&mut self, gap: u64) -> Result<bool, Lost> {
        match self {
            Body::Length(left) if gap <= *left => {
                *left -= gap;
                Ok(*left == 0)
            }
            Body::Length(_) => Err(Lost),
            Body::UntilClose => Ok(false),
            Body::Chunked(chunked) => chunked.skip(gap).map(|()| false),
        }
    }
}

impl Chunked {
    fn consume(&mut self, data: &[u8]) -> Result<(usize, bool), Lost> {
        let mut at = 0;
        while at < data.len() {
            if let Chunked::Data(left) = self {
                let used = usize::try_from(*left)
                    .map_or(data.len() - at, |left| left.min(data.len() - at));
                *left -= used as u64;
                at += used;
                if *left == 0 {
                    *self = Chunked::DataEnd(2);
                }
                continue;
            }
            let byte = data[at];
            at += 1;
            match self {
                Chunked::Size {
                    size,
                    digits,
                    ignore_rest,
                } => match byte {
                    b'\n' if *digits == 0 => return Err(Lost),
                    b'\n' if *size == 0 => *self = Chunked::Trailers { line_empty: true },
                    b'\n' => *self = Chunked::Data(*size),
                    _ if *ignore_rest => {}
                    b';' | b' ' | b'\t' | b'\r' => *ignore_rest = true,
                    _ => {
                        let digit = (byte as char).to_digit(16).ok_or(Lost)?;
                        *size = size
                            .checked_mul(16)
                            .and_then(|size| size.checked_add(u64::from(digit)))
                            .ok_or(Lost)?;
                        *digits = digits.saturating_add(1);
                    }
                },
                Chunked::DataEnd(left) => match byte {
                    b'\r' if *left == 2 => *left = 1,
                    b'\n' => *self = Chunked::START,
                    _ => return Err(Lost),
                },
                Chunked::Trailers { line_empty } => match byte {
                    b'\n' if *line_empty => return Ok((at, true)),
                    b'\n' => *line_empty = true,
                    b'\r' => {}
                    _ => *line_empty = false,
                },
                Chunked::Data(_) => unreachable!("handled above"),
            }
        }
        Ok((at, false))
    }

    fn skip(&mut self, mut gap: u64) -> Result<(), Lost> {
        if let Chunked::Data(left) = self {
            if gap < *left {
                *left -= gap;
                return Ok(());
            }
            gap -= *left;
            *self = Chunked::DataEnd(2);
        }
        match self {
            Chunked::DataEnd(left) if gap < u64::from(*left) => {
                *left -= gap as u8;
                Ok(())
            }
            Chunked::DataEnd(left) if gap == u64::from(*left) => {
                *self = Chunked::START;
                Ok(())
            }
            _ if gap == 0 => Ok(()),
            _ => Err(Lost),
        }
    }
}

/// The route of a request target; a target the capture cut without reaching its query
/// may have lost part of its last segment, which is then not kept.
fn request_route(target: &str, truncated: bool) -> String {
    let cut_path = truncated && !target.contains(['?', '#']);
    if let Some(slash) = target.rfind('/').filter(|_| cut_path) {
        let mut route = normalize_route(&target[..=slash]);
        route.push_str(TRUNCATED_SEGMENT);
        route.shrink_to_fit();
        return route;
    }
    normalize_route(target)
}

fn is_method_byte(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte == b'-' || byte == b'_'
}

/// Length of the leading run of method bytes, stopping just past [`MAX_METHOD_LEN`].
fn method_len(data: &[u8]) -> usize {
    data.iter()
        .take(MAX_METHOD_LEN + 1)
        .take_while(|&&b| is_method_byte(b))
        .count()
}

/// A method token, a space and the first byte of a target: where a request can start.
fn starts_request(data: &[u8]) -> bool {
    let method_len = method_len(data);
    (1..=MAX_METHOD_LEN).contains(&method_len)
        && data.get(method_len) == Some(&b' ')
        && data
            .get(method_len + 1)
            .is_some_and(|b| b.is_ascii_graphic())
}

/// `METHOD SP target SP HTTP/1.x`; when truncated, the version (or the target's end) may be
/// missing (then it counts as 1.1). Returns the method, the raw target and the version.
fn parse_request_line(line: &[u8], truncated: bool) -> Option<(Method, &[u8], HttpVersion)> {
    let method_len = method_len(line);
    if !(1..=MAX_METHOD_LEN).contains(&method_len) || line.get(method_len) != Some(&b' ') {
        return None;
    }
    let rest = &line[method_len + 1..];
    let (target, version) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (&rest[..space], Some(&rest[space + 1..])),
        None => (rest, None),
    };
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let version_ok = match version {
        Some(version) => is_http1(version) || (truncated && b"HTTP/1.1".starts_with(version)),
        None => truncated,
    };
    let version = match version {
        Some(b"HTTP/1.0") => HttpVersion::Http10,
        _ => HttpVersion::Http11,
    };
    version_ok.then(|| (Method::from_token(&line[..method_len]), target, version))
}

fn is_http1(version: &[u8]) -> bool {
    version.len() == 8 && version.starts_with(b"HTTP/1.") && version[7].is_ascii_digit()
}

/// `HTTP/1.x SP 3DIGIT [SP reason]` → the status code.
fn parse_status_line(line: &[u8], truncated: bool) -> Option<u16> {
    let code = line.get(9..12)?;
    let well_ended = match line.get(12) {
        None => true,
        Some(&b) => b == b' ' || truncated,
    };
    let valid = is_http1(&line[..8])
        && line[8] == b' '
        && matches!(code[0], b'1'..=b'9')
        && code.iter().all(u8::is_ascii_digit)
        && well_ended;
    valid.then(|| code.iter().fold(0, |n, &d| n * 10 + u16::from(d - b'0')))
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A host name, IPv4 or bracketed IPv6 address, with an optional port.
fn valid_host(value: &[u8]) -> Option<String> {
    let valid = !value.is_empty()
        && value.len() <= MAX_HOST_LEN
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    valid.then(|| String::from_utf8_lossy(value).into_owned())
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |end| end + 1);
    &value[start..end]
}

impl fmt::Debug for HttpParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpParser")
            .field("role", &self.role)
            .field("requests", &self.requests.state)
            .field("responses", &self.responses.state)
            .field("pending", &self.pairing.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
