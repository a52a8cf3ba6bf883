//! One look at the agent: its RSS and, from one `/metrics` scrape, every ring buffer's books,
//! every workload family's series count and the kernel maps' fill. A figure the scrape lacks
//! is an error naming it, never a zero: a soak that cannot see a ring cannot say it lost
//! nothing.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::agent_http::get;

pub const PRODUCED: &str = "monitor_ringbuf_events_produced_total";
pub const READ: &str = "monitor_ringbuf_events_read_total";
pub const LOST: &str = "monitor_ringbuf_events_lost_total";
pub const MALFORMED: &str = "monitor_ringbuf_events_malformed_total";
pub const SERIES: &str = "monitor_series";
pub const MAP_ENTRIES: &str = "monitor_kernel_map_entries";
pub const INSERT_FAILURES: &str = "monitor_kernel_map_insert_failures_total";

/// Every ring buffer the agent reads. Any further ring a scrape shows is checked as well.
pub const RINGS: [&str; 3] = ["process_events", "tcp_events", "payload_events"];

/// The families the soak's load feeds: each must be exported from the first scrape and hold
/// series by the end of the load. Other families the agent exports are followed too.
pub const REQUIRED_FAMILIES: [&str; 8] = [
    "monitor_syscall_duration_seconds",
    "monitor_syscall_errors_total",
    "monitor_tcp_connect_duration_seconds",
    "monitor_tcp_connect_errors_total",
    "monitor_tcp_connections_opened_total",
    "monitor_network_bytes_total",
    "http_server_request_duration_seconds",
    "http_client_request_duration_seconds",
];

/// The hash maps the load fills, whose entries the agent counts at each sweep.
pub const COUNTED_MAPS: [&str; 3] = ["SYSCALL_STATS", "SYSCALL_ERRORS", "NET_BYTES"];

/// The maps whose refused inserts the agent counts: without their rows, "no insert failures"
/// would only mean "not reported".
pub const GUARDED_MAPS: [&str; 5] = [
    "SYSCALL_STATS",
    "SYSCALL_ERRORS",
    "TCP_CONNS",
    "TCP_LISTENERS",
    "NET_BYTES",
];

/// Whether the load was still running when the sample was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Load,
    /// After the load stopped and the agent read what its rings still held.
    Drained,
}

/// One ring buffer's books.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    pub produced: u64,
    pub read: u64,
    pub lost: u64,
    pub malformed: u64,
}

impl Ring {
    /// Every event the probes tried to write was either read or counted lost.
    pub fn balanced(&self) -> bool {
        self.produced == self.read + self.lost
    }
}

/// The agent's self-metrics the soak follows, from one scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scrape {
    pub rings: BTreeMap<String, Ring>,
    /// `monitor_series` per family.
    pub series: BTreeMap<String, u64>,
    pub map_entries: BTreeMap<String, u64>,
    pub insert_failures: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub phase: Phase,
    pub rss_kib: u64,
    pub scrape: Scrape,
}

/// The agent's RSS and self-metrics now.
pub fn take(pid: u32, port: u16, at: Duration, phase: Phase) -> Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in the agent's status")?;
    let (code, body) = get(port, "/metrics").context("scraping /metrics: no answer")?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    let scrape = Scrape::parse(&body).with_context(|| format!("the scrape at {at:?}"))?;
    Ok(Sample {
        at,
        phase,
        rss_kib,
        scrape,
    })
}

fn row(family: &str, label: &str, value: &str) -> String {
    format!("{family}{{{label}=\"{value}\"}}")
}

fn missing(family: &str, label: &str, value: &str) -> anyhow::Error {
    anyhow::anyhow!("{} is missing from /metrics", row(family, label, value))
}

impl Scrape {
    /// Reads the followed families out of a Prometheus text exposition.
    pub fn parse(text: &str) -> Result<Scrape> {
        let ring_rows = |family| rows(text, family, "ringbuf").map(|rows| (family, rows));
        let produced = ring_rows(PRODUCED)?;
        let read = ring_rows(READ)?;
        let lost = ring_rows(LOST)?;
        let malformed = ring_rows(MALFORMED)?;
        let mut names: BTreeSet<&str> = RINGS.into_iter().collect();
        for (_, rows) in [&produced, &read, &lost, &malformed] {
            names.extend(rows.keys().map(String::as_str));
        }
        let counter = |(family, rows): &(&str, BTreeMap<String, u64>), ring: &str| {
            rows.get(ring)
                .copied()
                .ok_or_else(|| missing(family, "ringbuf", ring))
        };
        let mut rings = BTreeMap::new();
        for ring in names {
            let books = Ring {
                produced: counter(&produced, ring)?,
                read: counter(&read, ring)?,
                lost: counter(&lost, ring)?,
                malformed: counter(&malformed, ring)?,
            };
            rings.insert(ring.to_owned(), books);
        }
        let series = rows(text, SERIES, "family")?;
        let map_entries = rows(text, MAP_ENTRIES, "map")?;
        let insert_failures = rows(text, INSERT_FAILURES, "map")?;
        let required = [
            (SERIES, "family", &series, &REQUIRED_FAMILIES[..]),
            (MAP_ENTRIES, "map", &map_entries, &COUNTED_MAPS[..]),
            (INSERT_FAILURES, "map", &insert_failures, &GUARDED_MAPS[..]),
        ];
        for (family, label, rows, names) in required {
            if let Some(name) = names.iter().find(|name| !rows.contains_key(**name)) {
                return Err(missing(family, label, name));
            }
        }
        Ok(Scrape {
            rings,
            series,
            map_entries,
            insert_failures,
        })
    }

    /// Fails when a row an earlier scrape had is gone: read as nothing, it would hide a ring's
    /// losses or a family's series.
    pub fn ensure_keeps(&self, earlier: &Scrape) -> Result<()> {
        let kept = |family: &str, label: &str, now: Vec<&String>, before: Vec<&String>| match before
            .into_iter()
            .find(|name| !now.contains(name))
        {
            Some(name) => Err(anyhow::anyhow!(
                "{} was in an earlier scrape and is missing from /metrics now",
                row(family, label, name)
            )),
            None => Ok(()),
        };
        kept(
            PRODUCED,
            "ringbuf",
            self.rings.keys().collect(),
            earlier.rings.keys().collect(),
        )?;
        kept(
            SERIES,
            "family",
            self.series.keys().collect(),
            earlier.series.keys().collect(),
        )?;
        kept(
            MAP_ENTRIES,
            "map",
            self.map_entries.keys().collect(),
            earlier.map_entries.keys().collect(),
        )?;
        kept(
            INSERT_FAILURES,
            "map",
            self.insert_failures.keys().collect(),
            earlier.insert_failures.keys().collect(),
        )
    }

    pub fn total_series(&self) -> u64 {
        self.series.values().sum()
    }
}

/// Every row of `family`, by the value of its label `key`. Names that merely start with
/// `family` (`monitor_series_expired_total` for `monitor_series`) are other families.
fn rows(text: &str, family: &str, key: &str) -> Result<BTreeMap<String, u64>> {
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line
            .strip_prefix(family)
            .and_then(|rest| rest.strip_prefix('{'))
        else {
            continue;
        };
        let (labels, value) = labels(rest).with_context(|| format!("malformed row `{line}`"))?;
        let name = labels
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
            .with_context(|| format!("`{line}` has no {key} label"))?;
        let value = count(value).with_context(|| format!("the value of `{line}`"))?;
        if rows.insert(name, value).is_some() {
            bail!("{family} has two rows for {key} `{line}`");
        }
    }
    Ok(rows)
}

/// `k="v",k2="v2"} value`: the labels, unescaped, and what follows the closing brace.
fn labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// A sample's value (a timestamp may follow) as a whole count.
fn count(text: &str) -> Result<u64> {
    let word = text.split_whitespace().next().context("no value")?;
    let value: f64 = word
        .parse()
        .with_context(|| format!("`{word}` is not a number"))?;
    // f64 holds every integer up to 2^53 exactly, far beyond any count of a soak.
    if !(0.0..=9_007_199_254_740_992.0).contains(&value) || value.fract() != 0.0 {
        bail!("`{word}` is not a whole count");
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrape with every followed row, the way the agent writes them.
    fn exposition() -> String {
        let mut text = String::from("# HELP monitor_series Label sets currently exported.\n");
        for ring in RINGS {
            text += &format!("{PRODUCED}{{ringbuf=\"{ring}\"}} 12\n");
            text += &format!("{READ}{{ringbuf=\"{ring}\"}} 11\n");
            text += &format!("{LOST}{{ringbuf=\"{ring}\"}} 1\n");
            text += &format!("{MALFORMED}{{ringbuf=\"{ring}\"}} 0\n");
        }
        for family in REQUIRED_FAMILIES {
            text += &format!("{SERIES}{{family=\"{family}\"}} 3\n");
            text += &format!("monitor_series_expired_total{{family=\"{family}\"}} 9\n");
        }
        for map in COUNTED_MAPS {
            text += &format!("{MAP_ENTRIES}{{map=\"{map}\"}} 5\n");
        }
        for map in GUARDED_MAPS {
            text += &format!("{INSERT_FAILURES}{{map=\"{map}\"}} 0\n");
        }
        text
    }

    #[test]
    fn reads_every_followed_row() {
        let scrape = Scrape::parse(&exposition()).unwrap();
        assert_eq!(scrape.rings.len(), 3);
        let books = Ring {
            produced: 12,
            read: 11,
            lost: 1,
            malformed: 0,
        };
        assert_eq!(scrape.rings["tcp_events"], books);
        assert!(books.balanced());
        assert_eq!(scrape.series.len(), REQUIRED_FAMILIES.len());
        assert_eq!(scrape.total_series(), 3 * REQUIRED_FAMILIES.len() as u64);
        assert_eq!(scrape.map_entries["NET_BYTES"], 5);
        assert_eq!(scrape.insert_failures["TCP_CONNS"], 0);
    }

    #[test]
    fn rows_beyond_the_required_ones_are_followed() {
        let text = exposition()
            + "monitor_series{family=\"monitor_tcp_rtt_seconds\"} 4\n"
            + "monitor_kernel_map_entries{map=\"THREAD_START\"} 2\n";
        let scrape = Scrape::parse(&text).unwrap();
        assert_eq!(scrape.series["monitor_tcp_rtt_seconds"], 4);
        assert_eq!(scrape.map_entries["THREAD_START"], 2);
        // A ring must carry all four counters, whichever ring it is.
        let text = exposition() + "monitor_ringbuf_events_read_total{ringbuf=\"dns_events\"} 2\n";
        let err = Scrape::parse(&text).unwrap_err().to_string();
        assert!(err.contains("monitor_ringbuf_events_produced_total{ringbuf=\"dns_events\"}"));
    }

    #[test]
    fn a_missing_row_is_an_error_naming_it() {
        let cases = [
            (
                "monitor_ringbuf_events_lost_total{ringbuf=\"payload_events\"}",
                "monitor_ringbuf_events_lost_total{ringbuf=\"payload_events\"} 1\n",
            ),
            (
                "monitor_series{family=\"http_client_request_duration_seconds\"}",
                "monitor_series{family=\"http_client_request_duration_seconds\"} 3\n",
            ),
            (
                "monitor_kernel_map_entries{map=\"NET_BYTES\"}",
                "monitor_kernel_map_entries{map=\"NET_BYTES\"} 5\n",
            ),
            (
                "monitor_kernel_map_insert_failures_total{map=\"TCP_CONNS\"}",
                "monitor_kernel_map_insert_failures_total{map=\"TCP_CONNS\"} 0\n",
            ),
        ];
        for (named, line) in cases {
            let text = exposition().replace(line, "");
            assert_ne!(text, exposition(), "{line}");
            let err = Scrape::parse(&text).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn a_row_that_disappears_later_is_an_error() {
        let earlier = Scrape::parse(&exposition()).unwrap();
        let mut now = earlier.clone();
        now.ensure_keeps(&earlier).unwrap();
        now.series.remove("monitor_tcp_connect_errors_total");
        let err = now.ensure_keeps(&earlier).unwrap_err().to_string();
        assert!(err.contains("monitor_series{family=\"monitor_tcp_connect_errors_total\"}"));
        let mut now = earlier.clone();
        now.rings.remove("tcp_events");
        assert!(now.ensure_keeps(&earlier).is_err());
    }

    #[test]
    fn labels_are_unescaped_and_values_must_be_counts() {
        let text = "m{a=\"x,\\\"}\\n\",ringbuf=\"r\"} 7 1700000000000\n";
        assert_eq!(rows(text, "m", "ringbuf").unwrap()["r"], 7);
        assert_eq!(rows(text, "m", "a").unwrap()["x,\"}\n"], 7);
        assert!(rows("m{ringbuf=\"r\"} 1.5\n", "m", "ringbuf").is_err());
        assert!(rows("m{ringbuf=\"r\"} NaN\n", "m", "ringbuf").is_err());
        assert!(rows("m{ringbuf=\"r\"} -1\n", "m", "ringbuf").is_err());
        assert!(rows("m{ringbuf=\"r\"}\n", "m", "ringbuf").is_err());
        assert!(rows("m{other=\"r\"} 1\n", "m", "ringbuf").is_err());
        assert!(rows("m{ringbuf=\"r\"} 1\nm{ringbuf=\"r\"} 2\n", "m", "ringbuf").is_err());
        // Unlabelled rows and other families are not this family's rows.
        assert!(
            rows("m 3\nmore{ringbuf=\"r\"} 1\n", "m", "ringbuf")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            rows("m{ringbuf=\"r\"} 1e3\n", "m", "ringbuf").unwrap()["r"],
            1000
        );
    }
}
