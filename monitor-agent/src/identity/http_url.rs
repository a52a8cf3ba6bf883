//! The URLs the agent's own HTTP clients call (the Kubernetes API, the OTLP endpoint):
//! `http(s)://host[:port][/path]` and nothing else. No user or password (they would be logged
//! with the URL: credentials go in headers), no query or fragment. And the connection to one,
//! TCP then TLS for https. Imports nothing of the agent.
use std::fmt;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncRead, AsyncWrite};

/// A connection to an `HttpUrl`, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// The `Host` header value: host and port as written.
    pub authority: String,
    /// The path, without a trailing slash (usually empty).
    pub path: String,
}

impl HttpUrl {
    /// A new connection: TCP, and TLS with `tls` (which an https URL is given by its client).
    pub async fn connect(
        &self,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> anyhow::Result<Box<dyn Io>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        tcp.set_nodelay(true).ok();
        let Some(tls) = tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .map_err(|err| anyhow!("{:?} is not a TLS server name: {err}", self.host))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", self.authority))?;
        Ok(Box::new(stream))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

/// What is wrong with a URL. Its text never names the URL: the caller decides whether it
/// may be shown (not when it carries a password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    Scheme,
    Credentials,
    Unsupported,
    UnclosedBracket,
    AfterIpv6,
    NoHost,
    Port(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme => write!(f, "does not start with http:// or https://"),
            UrlError::Credentials => write!(f, "carries a user or password"),
            UrlError::Unsupported => write!(f, "only scheme://host[:port][/path] is supported"),
            UrlError::UnclosedBracket => write!(f, "unclosed '[' in the host"),
            UrlError::AfterIpv6 => write!(f, "junk after the IPv6 address"),
            UrlError::NoHost => write!(f, "has no host"),
            UrlError::Port(port) => write!(f, "`{port}` is not a port (1-65535)"),
        }
    }
}

pub fn parse(text: &str) -> Result<HttpUrl, UrlError> {
    let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(UrlError::Scheme);
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlError::Credentials);
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        return Err(UrlError::Unsupported);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UrlError::UnclosedBracket)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(UrlError::AfterIpv6)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        None if https => 443,
        None => 80,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| UrlError::Port(port.to_owned()))?,
    };
    Ok(HttpUrl {
        https,
        host: host.to_owned(),
        port,
        authority: authority.to_owned(),
        path: path.trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_paths() {
        let url = parse("https://[fd00::1]:6443/proxy/").unwrap();
        assert_eq!(
            (
                url.https,
                url.host.as_str(),
                url.port,
                url.authority.as_str()
            ),
            (true, "fd00::1", 6443, "[fd00::1]:6443")
        );
        assert_eq!(url.path, "/proxy");
        assert_eq!(parse("http://collector").unwrap().port, 80);
        assert_eq!(parse("https://collector").unwrap().port, 443);
    }

    #[test]
    fn what_is_refused() {
        let cases = [
            ("ftp://x", UrlError::Scheme),
            ("https://user:pw@x", UrlError::Credentials),
            ("http://x/a?b=c", UrlError::Unsupported),
            ("http://x/a b", UrlError::Unsupported),
            ("http://[fd00::1", UrlError::UnclosedBracket),
            ("http://[fd00::1]x", UrlError::AfterIpv6),
            ("https://:443", UrlError::NoHost),
            ("https://host:port", UrlError::Port("port".into())),
            ("https://host:0", UrlError::Port("0".into())),
        ];
        for (text, error) in cases {
            assert_eq!(parse(text), Err(error), "{text}");
        }
    }
}
