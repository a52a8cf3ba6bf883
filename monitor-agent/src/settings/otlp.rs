//! The OTLP push's settings (`--otlp.*`): the endpoint URL, the request headers (secrets:
//! their values never reach `Debug`, a log line or an error message), the temporality.
use std::{fmt, time::Duration};

use clap::ValueEnum;

use crate::identity::http_url::{HttpUrl, UrlError};

/// How sums and histograms are reported: `cumulative` (since the series started, as
/// Prometheus counts) or `delta` (since the previous export), for back ends that want deltas.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Values since the series started, as on /metrics.
    Cumulative,
    /// Values since the previous export.
    Delta,
}

/// Where the metrics are sent, parsed once at start-up: its path is `<prefix>/v1/metrics`.
pub type Endpoint = HttpUrl;

/// `--otlp.endpoint`: the metrics go to `<URL>/v1/metrics`, as the OTLP exporters' base
/// endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`) says. No user or password in the URL (they would
/// be logged with it): credentials go in `--otlp.headers`.
pub(crate) fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let mut url = crate::identity::http_url::parse(text).map_err(|err| match err {
        UrlError::Scheme => format!(
            "`{text}` is not an OTLP/HTTP URL: expected http://HOST:PORT or https://HOST[:PORT]"
        ),
        // Not echoed: the part before '@' is a credential.
        UrlError::Credentials => {
            "the URL carries a user or password; give credentials with --otlp.headers".into()
        }
        other => format!("`{text}`: {other}"),
    })?;
    url.path.push_str("/v1/metrics");
    Ok(url)
}

/// `--otlp.interval`: at least a second, so a typo cannot turn the push into a flood.
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = super::checks::parse_duration(text)?;
    if interval < Duration::from_secs(1) {
        return Err(format!("`{text}` is under the minimum of 1s"));
    }
    Ok(interval)
}

/// One `--otlp.headers` item as given, before it is checked: kept opaque so that clap, which
/// echoes a value it refuses, never sees one it could refuse (see [`parse_headers`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RawHeader(String);

impl fmt::Debug for RawHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawHeader(<redacted>)")
    }
}

pub(crate) fn raw_header(text: &str) -> Result<RawHeader, String> {
    Ok(RawHeader(text.to_owned()))
}

/// A request header sent with every export; its value (an API key, usually) is secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    value: String,
}

impl Header {
    /// The secret itself: only for the request.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

/// Headers reserved by the exporter itself.
const RESERVED: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
];

/// `KEY=VALUE` items (value may hold `=`; both sides trimmed). Errors name the item by its
/// position and the key when there is one, never the value.
pub fn parse_headers(items: &[RawHeader]) -> Result<Vec<Header>, String> {
    let mut headers: Vec<Header> = Vec::with_capacity(items.len());
    for (index, RawHeader(item)) in items.iter().enumerate() {
        let position = index + 1;
        let Some((name, value)) = item.split_once('=') else {
            return Err(format!(
                "item {position} is not KEY=VALUE (the value is not shown: it may be a secret)"
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!(
                "item {position}: the key is not an HTTP header name (letters, digits, -, _, .)"
            ));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("`{name}` is set by the agent itself"));
        }
        if value.is_empty() || value.chars().any(|c| c.is_control() || !c.is_ascii()) {
            return Err(format!(
                "`{name}`: the value is empty or has characters a header cannot carry"
            ));
        }
        if headers
            .iter()
            .any(|seen| seen.name.eq_ignore_ascii_case(name))
        {
            return Err(format!("`{name}` is given twice"));
        }
        headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(headers)
}

/// Everything the push needs, checked.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    pub endpoint: Endpoint,
    pub interval: Duration,
    pub headers: Vec<Header>,
    pub temporality: Temporality,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(items: &[&str]) -> Vec<RawHeader> {
        items.iter().map(|item| raw_header(item).unwrap()).collect()
    }

    #[test]
    fn endpoints_get_the_metrics_path() {
        let endpoint = parse_endpoint("http://collector:4318").unwrap();
        assert_eq!(
            (endpoint.https, endpoint.host.as_str(), endpoint.port),
            (false, "collector", 4318)
        );
        assert_eq!(endpoint.path, "/v1/metrics");
        assert_eq!(endpoint.to_string(), "http://collector:4318/v1/metrics");
        let endpoint = parse_endpoint("https://otlp.example.com/otlp/").unwrap();
        assert_eq!(
            (endpoint.port, endpoint.path.as_str()),
            (443, "/otlp/v1/metrics")
        );
        let endpoint = parse_endpoint("http://[::1]:4318").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("::1", 4318));
        assert_eq!(endpoint.authority, "[::1]:4318");
    }

    #[test]
    fn bad_endpoints_are_refused_without_echoing_credentials() {
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://:4318",
            "http://host:0",
            "http://host:port",
            "http://host/v1?x=1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        let err = parse_endpoint("https://user:hunter2@otlp.example.com").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn intervals_are_at_least_a_second() {
        assert_eq!(parse_interval("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_interval("500ms").is_err());
        assert!(parse_interval("0s").is_err());
    }

    #[test]
    fn headers_are_parsed_and_their_values_never_shown() {
        let headers = parse_headers(&raw(&["api-key=s3cr3t", " DD-API-KEY = a=b=c "])).unwrap();
        assert_eq!(headers[0].name, "api-key");
        assert_eq!(headers[0].value(), "s3cr3t");
        assert_eq!(headers[1].name, "DD-API-KEY");
        assert_eq!(headers[1].value(), "a=b=c");
        let shown = format!("{headers:?} {:?}", raw(&["api-key=s3cr3t"]));
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("a=b=c"),
            "{shown}"
        );
        assert!(shown.contains("api-key"), "{shown}");
    }

    #[test]
    fn bad_headers_are_refused_without_their_values() {
        for (items, expected) in [
            (vec!["s3cr3t"], "item 1 is not KEY=VALUE"),
            (vec!["a=1", "=s3cr3t"], "item 2: the key"),
            (vec!["bad key=s3cr3t"], "item 1: the key"),
            (vec!["api-key="], "`api-key`: the value is empty"),
            (vec!["api-key=s3\ncr3t"], "`api-key`: the value"),
            (vec!["Host=s3cr3t"], "`Host` is set by the agent"),
            (vec!["k=s3cr3t", "K=s3cr3t"], "`K` is given twice"),
        ] {
            let err = parse_headers(&raw(&items)).unwrap_err();
            assert!(err.starts_with(expected), "{items:?}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }
}
