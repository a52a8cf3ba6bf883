//! What the HTTP parser produces. Apart from the parser because [`Exchange`](crate::Exchange)
//! holds it: the protocol contract sits between the two.
use std::fmt;

use crate::chunk::Role;

/// A request method; anything but the nine standard ones is [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    /// Methods are case-sensitive: `get` is not `GET`.
    pub fn from_token(token: &[u8]) -> Self {
        match token {
            b"GET" => Self::Get,
            b"HEAD" => Self::Head,
            b"POST" => Self::Post,
            b"PUT" => Self::Put,
            b"DELETE" => Self::Delete,
            b"CONNECT" => Self::Connect,
            b"OPTIONS" => Self::Options,
            b"TRACE" => Self::Trace,
            b"PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }

    /// The `http_request_method` label value: the method, or `_OTHER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => "_OTHER",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request and the final response that answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpExchange {
    pub role: Role,
    pub method: Method,
    /// The final (non-1xx) status code; `101` for an upgrade.
    pub status: u16,
    /// The path without query or fragment, identifiers replaced: see
    /// [`normalize_route`](crate::route::normalize_route).
    pub route: String,
    /// From the request's first chunk to its response's first chunk (see the module docs).
    pub duration_ns: u64,
    /// Client side only: the `Host` header (or the authority of an absolute-form target),
    /// as sent, possibly with a port: see [`split_host_port`].
    pub host: Option<String>,
    pub version: HttpVersion,
}

/// The protocol version an exchange was framed in (`network_protocol_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    /// From the request line: `HTTP/1.0`.
    Http10,
    /// Any other `HTTP/1.x` request line.
    Http11,
    Http2,
}

impl HttpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "1.0",
            Self::Http11 => "1.1",
            Self::Http2 => "2",
        }
    }
}

/// `example.com:8080` → (`example.com`, Some(8080)); `[::1]:80` → (`::1`, Some(80));
/// a missing or malformed port is None.
pub fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some((address, after)) = host.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return (
            address,
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}
