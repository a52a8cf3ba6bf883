//! HTTP/2 (RFC 9113) and gRPC on it: frames, streams and header blocks, from the client's
//! preface on. A connection is claimed by its preface, so the header tables (HPACK, one per
//! direction) are followed from their start; a connection first seen later is not claimed
//! (the kernel counts it, `Http2Unparseable`), as its header blocks could not be decoded.
//!
//! Each direction is a run of frames: a 9-byte head, then the payload. Only header blocks
//! are read (`HEADERS`, `CONTINUATION`, and `PUSH_PROMISE`, decoded only to keep the table
//! in step); every other payload is skipped by count, even past what was captured. A frame
//! head or header block past the captured bytes of a read/write loses the connection: the
//! table cannot be followed without it, so the parser stops ([`ParserStatus::Finished`]).
//!
//! A stream's request is its first header block in the request direction; it is answered
//! by the first final (non-1xx) `:status`. A gRPC call (`content-type: application/grpc…`)
//! ends with its trailers' `grpc-status` (or, with none, `UNKNOWN`), and is an
//! [`Exchange::Grpc`], not an HTTP one: its duration runs to the trailers, the call's end.
//!
//! Only the fields the metrics need are read: `:method`, `:path` (cut at `?` and `#` before
//! it is kept anywhere), `:status`, `:authority`, `content-type` and `grpc-status`. The
//! decoder passes on no other field and keeps no other value in its tables.
pub mod exchange;
pub mod hpack;
mod huffman;

use std::collections::HashMap;

use crate::{
    chunk::{Chunk, Direction, Role},
    http::exchange::{HttpExchange, HttpVersion, Method},
    protocol::{Detection, Exchange, ParserStatus, Protocol, ProtocolParser},
    route::normalize_route,
};
use exchange::{GrpcExchange, GrpcStatus};
use hpack::Decoder;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest header block (all its fragments) read; a longer one loses the connection.
pub const MAX_HEADER_BLOCK: usize = 8 * 1024;
/// Streams awaiting their answer per connection; further streams are not followed.
pub const MAX_OPEN_STREAMS: usize = 256;

const FRAME_HEAD: usize = 9;
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const PUSH_PROMISE: u8 = 5;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

pub struct Http2;

impl Protocol for Http2 {
    fn name(&self) -> &'static str {
        "http2"
    }

    fn detect(&self, first: &Chunk<'_>) -> Detection {
        let data = first.data;
        if starts_server_preface(data) {
            return Detection::Match;
        }
        let seen = data.len().min(PREFACE.len());
        if data[..seen] != PREFACE[..seen] {
            Detection::NoMatch
        } else if seen < PREFACE.len() {
            if first.is_fully_captured() {
                Detection::NeedMore
            } else {
                Detection::NoMatch
            }
        } else {
            Detection::Match
        }
    }

    fn parser(&self) -> Box<dyn ProtocolParser> {
        Box::new(Http2Parser::new())
    }
}

/// The fields the metrics read (see the module docs); the decoders keep no other.
fn wanted(name: &[u8]) -> bool {
    matches!(
        name,
        b":method" | b":path" | b":status" | b":authority" | b"content-type" | b"grpc-status"
    )
}

/// What a stream's request said, until it is answered.
struct Stream {
    method: Method,
    route: String,
    authority: Option<String>,
    grpc: bool,
    start_ns: u64,
    /// The final `:status` of a gRPC call's response, whose trailers are still to come.
    answered: bool,
}

/// One direction's frames.
struct Side {
    decoder: Decoder,
    /// Bytes of the preface still to skip (the client's direction only).
    preface: usize,
    head: [u8; FRAME_HEAD],
    head_len: usize,
    /// The frame being read: its type, flags and stream, and the payload bytes to come.
    frame: Option<(u8, u8, u32)>,
    remaining: usize,
    /// The payload of the header-carrying frame being read.
    payload: Vec<u8>,
    /// A header block waiting for its `CONTINUATION`s: its stream, whether it ended the
    /// stream, whether it is a `PUSH_PROMISE`'s, and its fragments so far.
    block: Option<(u32, bool, bool)>,
    fragments: Vec<u8>,
}

impl Side {
    fn new(preface: usize) -> Self {
        Self {
            decoder: Decoder::new(wanted),
            preface,
            head: [0; FRAME_HEAD],
            head_len: 0,
            frame: None,
            remaining: 0,
            payload: Vec::new(),
            block: None,
            fragments: Vec::new(),
        }
    }

    fn reads_payload(kind: u8) -> bool {
        matches!(kind, HEADERS | CONTINUATION | PUSH_PROMISE | RST_STREAM)
    }
}

/// A header block decoded: the fields the metrics read.
#[derive(Default)]
struct Fields {
    method: Option<Method>,
    path: Option<String>,
    status: Option<u16>,
    authority: Option<String>,
    grpc: bool,
    grpc_status: Option<GrpcStatus>,
}

impl Fields {
    fn read(&mut self, name: &[u8], value: &[u8]) {
        let text = || String::from_utf8_lossy(value).into_owned();
        match name {
            b":method" => self.method = Some(Method::from_token(value)),
            b":path" => self.path = Some(text()),
            b":status" => {
                self.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok())
            }
            b":authority" => self.authority = Some(text()),
            b"content-type" => self.grpc = value.starts_with(b"application/grpc"),
            b"grpc-status" => {
                self.grpc_status = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(GrpcStatus::from_code)
            }
            _ => {}
        }
    }
}

/// A server's connection preface: a SETTINGS frame on stream 0 that is not an
/// acknowledgement. After an `h2c` upgrade the kernel may copy it before the client's
/// preface (`monitor_framing::starts_server_settings`, which it looks for only then).
fn starts_server_preface(data: &[u8]) -> bool {
    let mut window = [0; monitor_framing::WINDOW];
    let len = data.len().min(FRAME_HEAD);
    window[..len].copy_from_slice(&data[..len]);
    monitor_framing::starts_server_settings(&window, len as u32)
}

pub struct Http2Parser {
    /// Set by the first chunk fed: the client's preface is in the requests' direction, the
    /// server's in the responses'.
    role: Option<Role>,
    requests: Side,
    responses: Side,
    streams: HashMap<u32, Stream>,
}

impl Default for Http2Parser {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a connection can no longer be followed.
struct Lost;

impl Http2Parser {
    pub fn new() -> Self {
        Self {
            role: None,
            requests: Side::new(PREFACE.len()),
            responses: Side::new(0),
            streams: HashMap::new(),
        }
    }

    /// The direction of requests, or of responses.
    fn side(&mut self, is_request: bool) -> &mut Side {
        if is_request {
            &mut self.requests
        } else {
            &mut self.responses
        }
    }

    fn feed_side(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> Result<(), Lost> {
        let role = *self.role.get_or_insert_with(|| {
            match (chunk.direction, starts_server_preface(chunk.data)) {
                (Direction::Egress, false) | (Direction::Ingress, true) => Role::Client,
                (Direction::Ingress, false) | (Direction::Egress, true) => Role::Server,
            }
        });
        let is_request = chunk.direction == role.request_direction();
        let mut data = chunk.data;
        let side = self.side(is_request);
        let skip = side.preface.min(data.len());
        side.preface -= skip;
        data = &data[skip..];
        while !data.is_empty() {
            let side = self.side(is_request);
            let Some((kind, ..)) = side.frame else {
                let take = (FRAME_HEAD - side.head_len).min(data.len());
                side.head[side.head_len..side.head_len + take].copy_from_slice(&data[..take]);
                side.head_len += take;
                data = &data[take..];
                if side.head_len == FRAME_HEAD {
                    let head = side.head;
                    side.head_len = 0;
                    side.frame = Some((
                        head[3],
                        head[4],
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                    ));
                    side.remaining = usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]);
                    if Side::reads_payload(head[3]) && side.remaining > MAX_HEADER_BLOCK {
                        return Err(Lost);
                    }
                    side.payload.clear();
                    if side.remaining == 0 {
                        self.frame_done(is_request, chunk.timestamp_ns, out)?;
                    }
                }
                continue;
            };
            let take = side.remaining.min(data.len());
            if Side::reads_payload(kind) {
                side.payload.extend_from_slice(&data[..take]);
            }
            side.remaining -= take;
            data = &data[take..];
            if side.remaining == 0 {
                self.frame_done(is_request, chunk.timestamp_ns, out)?;
            }
        }
        // The bytes the kernel did not copy: a payload skipped by count can run past them,
        // anything else is lost.
        let uncaptured = usize::try_from(chunk.uncaptured()).unwrap_or(usize::MAX);
        if uncaptured > 0 {
            let side = self.side(is_request);
            match side.frame {
                Some((kind, _, _)) if !Side::reads_payload(kind) && uncaptured < side.remaining => {
                    side.remaining -= uncaptured;
                }
                Some((kind, _, _))
                    if !Side::reads_payload(kind) && uncaptured == side.remaining =>
                {
                    self.frame_done(is_request, chunk.timestamp_ns, out)?;
                }
                _ => return Err(Lost),
            }
        }
        Ok(())
    }

    /// The current frame of one direction has been read whole.
    fn frame_done(
        &mut self,
        is_request: bool,
        now_ns: u64,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        let side = self.side(is_request);
        let Some((kind, flags, stream)) = side.frame.take() else {
            return Ok(());
        };
        let payload = std::mem::take(&mut side.payload);
        let result = self.frame(is_request, (kind, flags, stream), &payload, now_ns, out);
        let side = self.side(is_request);
        // The buffer is reused; a large one is not kept.
        if payload.capacity() <= 1024 {
            side.payload = payload;
            side.payload.clear();
        }
        result
    }

    fn frame(
        &mut self,
        is_request: bool,
        (kind, flags, stream): (u8, u8, u32),
        payload: &[u8],
        now_ns: u64,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        let side = self.side(is_request);
        if side.block.is_some() && kind != CONTINUATION {
            // A header block must be continued by the very next frame.
            return Err(Lost);
        }
        match kind {
            HEADERS | PUSH_PROMISE => {
                let mut fragment = payload;
                if flags & PADDED != 0 {
                    let (&pad, rest) = fragment.split_first().ok_or(Lost)?;
                    let pad = usize::from(pad);
                    if pad > rest.len() {
                        return Err(Lost);
                    }
                    fragment = &rest[..rest.len() - pad];
                }
                let skip = if kind == PUSH_PROMISE {
                    4
                } else if flags & PRIORITY != 0 {
                    5
                } else {
                    0
                };
                fragment = fragment.get(skip..).ok_or(Lost)?;
                side.fragments.clear();
                side.fragments.extend_from_slice(fragment);
                let block = (stream, flags & END_STREAM != 0, kind == PUSH_PROMISE);
                if flags & END_HEADERS != 0 {
                    self.block_done(is_request, block, now_ns, out)?;
                } else {
                    side.block = Some(block);
                }
            }
            CONTINUATION => {
                let Some(block) = side.block else {
                    return Err(Lost);
                };
                if block.0 != stream || side.fragments.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(Lost);
                }
                side.fragments.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    side.block = None;
                    self.block_done(is_request, block, now_ns, out)?;
                }
            }
            DATA if !is_request && flags & END_STREAM != 0 => {
                // A gRPC response that ends without trailers: no status was sent.
                if let Some(open) = self.streams.remove(&stream) {
                    if open.grpc && open.answered {
                        self.complete_grpc(open, GrpcStatus::Unknown, now_ns, out);
                    }
                }
            }
            RST_STREAM => {
                self.streams.remove(&stream);
            }
            _ => {}
        }
        Ok(())
    }

    /// A whole header block of one direction: decoded (to keep the table in step), then
    /// read for the stream.
    fn block_done(
        &mut self,
        is_request: bool,
        (stream, ends_stream, promise): (u32, bool, bool),
        now_ns: u64,
        out: &mut Vec<Exchange>,
    ) -> Result<(), Lost> {
        let side = self.side(is_request);
        let mut fields = Fields::default();
        let block = std::mem::take(&mut side.fragments);
        let decoded = side
            .decoder
            .decode(&block, |name, value| fields.read(name, value));
        side.fragments = block;
        side.fragments.clear();
        if side.fragments.capacity() > 1024 {
            side.fragments = Vec::new();
        }
        decoded.map_err(|_| Lost)?;
        if promise {
            return Ok(());
        }
        if is_request {
            self.request(stream, fields, now_ns);
        } else {
            self.response(stream, fields, ends_stream, now_ns, out);
        }
        Ok(())
    }

    fn request(&mut self, stream: u32, fields: Fields, now_ns: u64) {
        if self.streams.contains_key(&stream) || self.streams.len() >= MAX_OPEN_STREAMS {
            // Trailers of a request, or one stream too many.
            return;
        }
        let Some(method) = fields.method else {
            return;
        };
        // A request without `:path` (CONNECT) gets what an empty path gets.
        let path = fields.path.as_deref().unwrap_or_default();
        let route = if fields.grpc {
            grpc_method(path)
        } else {
            normalize_route(path)
        };
        self.streams.insert(
            stream,
            Stream {
                method,
                route,
                authority: fields.authority,
                grpc: fields.grpc,
                start_ns: now_ns,
                answered: false,
            },
        );
    }

    fn response(
        &mut self,
        stream: u32,
        fields: Fields,
        ends_stream: bool,
        now_ns: u64,
        out: &mut Vec<Exchange>,
    ) {
        let Some(open) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Some(status) = fields.status {
            if (100..200).contains(&status) {
                return;
            }
            if !open.grpc {
                let open = self.streams.remove(&stream).expect("looked up above");
                let role = self.role.unwrap_or(Role::Server);
                out.push(Exchange::Http(HttpExchange {
                    role,
                    method: open.method,
                    status,
                    route: open.route,
                    duration_ns: now_ns.saturating_sub(open.start_ns),
                    host: open.authority.filter(|_| role == Role::Client),
                    version: HttpVersion::Http2,
                }));
                return;
            }
            open.answered = true;
        }
        if !open.grpc {
            return;
        }
        match fields.grpc_status {
            Some(status) => {
                let open = self.streams.remove(&stream).expect("looked up above");
                self.complete_grpc(open, status, now_ns, out);
            }
            None if ends_stream => {
                let open = self.streams.remove(&stream).expect("looked up above");
                self.complete_grpc(open, GrpcStatus::Unknown, now_ns, out);
            }
            None => {}
        }
    }

    fn complete_grpc(
        &self,
        open: Stream,
        status: GrpcStatus,
        now_ns: u64,
        out: &mut Vec<Exchange>,
    ) {
        let role = self.role.unwrap_or(Role::Server);
        out.push(Exchange::Grpc(GrpcExchange {
            role,
            method: open.route,
            status,
            duration_ns: now_ns.saturating_sub(open.start_ns),
            authority: open.authority.filter(|_| role == Role::Client),
        }));
    }
}

/// A gRPC call's `:path`, `/package.Service/Method`, as sent; anything else (a query, more
/// or fewer segments, bytes outside a name's) is not a method, and gets the route `_OTHER`.
pub fn grpc_method(path: &str) -> String {
    let name = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    match path.strip_prefix('/').and_then(|rest| rest.split_once('/')) {
        Some((service, method)) if name(service) && name(method) => path.to_owned(),
        _ => "_OTHER".to_owned(),
    }
}

impl ProtocolParser for Http2Parser {
    fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Exchange>) -> ParserStatus {
        match self.feed_side(chunk, out) {
            Ok(()) => ParserStatus::Active,
            Err(Lost) => ParserStatus::Finished,
        }
    }

    fn buffered_bytes(&self) -> usize {
        let side = |side: &Side| {
            side.payload.capacity() + side.fragments.capacity() + side.decoder.held_bytes()
        };
        let streams: usize = self
            .streams
            .values()
            .map(|stream| {
                std::mem::size_of::<Stream>()
                    + stream.route.capacity()
                    + stream.authority.as_ref().map_or(0, String::capacity)
            })
            .sum();
        side(&self.requests) + side(&self.responses) + streams
    }
}

#[cfg(test)]
mod tests;
