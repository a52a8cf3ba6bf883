//! Checks of setting values, kept apart from how a value is given: the command line and the
//! config file refuse a bad duration or label name in the same words, and neither has to
//! import the other for it.
use std::{net::SocketAddr, time::Duration};

use crate::series::labels::IdentityLabel;

/// `KEY=VALUE` for --label.const.
pub(crate) fn parse_constant_label(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    check_constant_label_name(name)?;
    if value.is_empty() {
        return Err(format!("`{name}` has an empty value"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A constant label's name: a valid Prometheus label name, not reserved by Prometheus, and not
/// a name the agent sets itself on any workload series.
pub(crate) fn check_constant_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a valid label name: letters, digits and _, not starting with a digit"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "`{name}` is reserved: names starting with __ are Prometheus's own"
        ));
    }
    let ours = IdentityLabel::ALL
        .iter()
        .map(|label| label.as_str())
        .chain(["le", "quantile"])
        .chain(
            crate::series::families::family::ALL
                .iter()
                .filter(|family| family.workload)
                .flat_map(|family| family.labels.iter().copied()),
        )
        .any(|label| label == name);
    if ours || name.starts_with("http_") || name.starts_with("server_") {
        return Err(format!(
            "`{name}` is set by the agent itself: choose another name"
        ));
    }
    Ok(())
}

/// An API server URL: http:// or https:// and a host.
pub(crate) fn parse_api_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(text.to_owned()),
        _ => Err(format!(
            "`{text}` is not an API server URL: expected https://HOST:PORT"
        )),
    }
}

/// `250ms`, `30s`, `5m`, `2h`: a whole number and a unit, nothing else.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // Prometheus' units and syntax: `1h30m`, each unit at most once, largest first.
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    /// Longer would be nonsense for any setting here, and `now + duration` must not overflow.
    const MAX_MILLIS: u64 = 100 * 365 * 24 * 3_600_000;
    let not_a_duration = || format!("`{text}` is not a duration: expected e.g. 30s, 5m, 1h30m");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(not_a_duration());
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    let mut last_unit: Option<u64> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(not_a_duration());
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too long"))?;
        rest = &rest[digits..];
        let Some(&(unit, per_unit)) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit)) else {
            return Err(format!("`{text}` has no unit: use ms, s, m, h, d, w or y"));
        };
        if last_unit.is_some_and(|last| per_unit >= last) {
            return Err(format!(
                "`{text}`: units go from the largest to the smallest, each once (e.g. 1h30m)"
            ));
        }
        last_unit = Some(per_unit);
        millis = number
            .checked_mul(per_unit)
            .and_then(|part| millis.checked_add(part))
            .filter(|&total| total <= MAX_MILLIS)
            .ok_or_else(|| format!("`{text}` is longer than 100 years"))?;
        rest = &rest[unit.len()..];
    }
    Ok(Duration::from_millis(millis))
}

/// A listen address as exporters take it: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` (the
/// IPv4 loopback, without asking a resolver) or `:PORT` (every IPv4 interface).
pub(crate) fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let usage = || format!("`{text}` is not IP:PORT, [IPv6]:PORT, localhost:PORT or :PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(usage)?;
    let port: u16 = port.parse().map_err(|_| usage())?;
    let ip = match host {
        "" => std::net::Ipv4Addr::UNSPECIFIED,
        "localhost" => std::net::Ipv4Addr::LOCALHOST,
        _ => return Err(usage()),
    };
    Ok(SocketAddr::from((ip, port)))
}

/// The metrics' path: absolute, plain (no query, fragment or space), and not one of the
/// other endpoints'.
pub(crate) fn parse_telemetry_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("`{text}` must start with /"));
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "`{text}` must be a plain path (no query, fragment or space)"
        ));
    }
    if text == "/" || text == "/healthz" {
        return Err(format!("`{text}` is taken (the landing page or /healthz)"));
    }
    Ok(text.to_owned())
}

/// The sweep interval: too short and the agent does nothing but sweep, too long and the
/// kernel maps fill with finished processes between sweeps.
pub(crate) fn parse_sweep_interval(text: &str) -> Result<Duration, String> {
    const RANGE: std::ops::RangeInclusive<Duration> =
        Duration::from_millis(100)..=Duration::from_secs(3600);
    let interval = parse_duration(text)?;
    if !RANGE.contains(&interval) {
        return Err(format!("`{text}` is outside 100ms to 1h"));
    }
    Ok(interval)
}

/// A duration that must not be zero (a zero timeout would cut every client off).
pub(crate) fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("`{text}` must be more than zero")),
        duration => Ok(duration),
    }
}

/// The kernel requires a BPF ring buffer's size to be a power-of-two multiple of the page.
pub(crate) fn parse_ring_bytes(text: &str) -> Result<u32, String> {
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of bytes"))?;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least 4096"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1d2h3m4s5ms"),
            Ok(Duration::from_millis(((26 * 60 + 3) * 60 + 4) * 1000 + 5))
        );
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1y"), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        for bad in [
            "", "5", "m", "5 m", "-5s", "5x", "1.5s", "30m1h", "1h1h", "1m1ms1s", "5s ",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Overflow is an error with a reason, never a panic or a wrapped value.
    #[test]
    fn huge_durations_are_errors() {
        for huge in [
            "99999999999999999999s",
            "5124095576030431h",
            "101y",
            "100y1ms",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(
                err.contains("longer than") || err.contains("too long"),
                "{huge}: {err}"
            );
        }
        assert!(parse_duration("100y").is_ok());
    }

    #[test]
    fn listen_addresses_as_exporters_write_them() {
        let parse = |text| parse_listen_address(text).map(|address| address.to_string());
        assert_eq!(parse("127.0.0.1:9655"), Ok("127.0.0.1:9655".into()));
        assert_eq!(parse("[::1]:9655"), Ok("[::1]:9655".into()));
        assert_eq!(parse("localhost:9655"), Ok("127.0.0.1:9655".into()));
        assert_eq!(parse(":9655"), Ok("0.0.0.0:9655".into()));
        for bad in [
            "not-an-address",
            "127.0.0.1:99999",
            "example.com:80",
            "9655",
            "localhost",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("IP:PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_sweep_interval_is_bounded() {
        assert_eq!(parse_sweep_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(
            parse_sweep_interval("100ms"),
            Ok(Duration::from_millis(100))
        );
        for bad in ["0s", "0", "99ms", "1h1s", "1000000h"] {
            assert!(parse_sweep_interval(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ring_buffer_sizes() {
        assert_eq!(parse_ring_bytes("4096"), Ok(4096));
        assert_eq!(parse_ring_bytes("262144"), Ok(262_144));
        for bad in ["0", "2048", "5000", "x"] {
            assert!(parse_ring_bytes(bad).is_err(), "{bad} accepted");
        }
    }
}
