//! The soak's markdown report: provenance, load, verdict, and the samples over time.
use std::{collections::BTreeSet, fmt::Write as _, process::Command, time::Duration};

use anyhow::Result;

use super::{
    load::{self, Done},
    sample::{Phase, Sample},
    verdict::{MAX_RSS_GROWTH, Verdict},
};
use crate::process::output;

pub fn markdown(
    duration: Duration,
    done: &Done,
    samples: &[Sample],
    verdict: &Verdict,
) -> Result<String> {
    let mut text = String::new();
    let date = output(Command::new("date").arg("-u"))?;
    let kernel = output(Command::new("uname").arg("-r"))?;
    writeln!(text, "# Reliability: soak\n")?;
    writeln!(
        text,
        "Produced by `cargo xtask soak --duration {}s` on {} (kernel {}, {} CPUs).\n",
        duration.as_secs(),
        date.trim(),
        kernel.trim(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )?;
    writeln!(
        text,
        "Load, against the release agent with default flags, for the whole run:\n"
    )?;
    writeln!(text, "{}\n", load::describe(done))?;
    writeln!(
        text,
        "Each sample reads the agent's RSS and, from `/metrics`, all four ring-buffer counters \
         of every ring, `monitor_series` of every workload family, `monitor_kernel_map_entries` \
         and `monitor_kernel_map_insert_failures_total`; a row missing from a scrape fails the \
         soak. The last sample (\"drained\") comes after the load stopped and the agent read \
         what its rings still held.\n"
    )?;
    writeln!(
        text,
        "Pass: RSS grows less than {:.0}% from the end of the warm-up to the end (the warm-up \
         is one series TTL, 5 min, the longest-lived state the agent keeps, at most half the \
         load); after the drain no ring lost or could not decode an event and each has \
         produced = read + lost; no kernel map refused a key; and each family the load feeds \
         has series in the load's last sample.\n",
        MAX_RSS_GROWTH * 100.0
    )?;
    writeln!(text, "**Result: {}**\n", verdict.summary())?;
    rings(&mut text, samples)?;
    series(&mut text, samples)?;
    maps(&mut text, samples)?;
    Ok(text)
}

fn time(sample: &Sample) -> String {
    match sample.phase {
        Phase::Load => sample.at.as_secs().to_string(),
        Phase::Drained => format!("{} (drained)", sample.at.as_secs()),
    }
}

/// The union of every sample's keys, so a table's columns cover them all.
fn columns<'a, I: Iterator<Item = &'a String>>(
    samples: &'a [Sample],
    keys: impl Fn(&'a Sample) -> I,
) -> Vec<&'a str> {
    let all: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| keys(s).map(String::as_str))
        .collect();
    all.into_iter().collect()
}

/// A cell that is absent shows as "–": never as a zero it was not.
fn cell(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

fn rings(text: &mut String, samples: &[Sample]) -> Result<()> {
    let names = columns(samples, |s| s.scrape.rings.keys());
    writeln!(text, "## Memory and ring buffers (events read / lost)\n")?;
    write!(text, "| t (s) | RSS (KiB) |")?;
    for ring in &names {
        write!(text, " {ring} read | lost |")?;
    }
    writeln!(text, "\n|---:|---:|{}", "---:|---:|".repeat(names.len()))?;
    for s in samples {
        write!(text, "| {} | {} |", time(s), s.rss_kib)?;
        for ring in &names {
            let books = s.scrape.rings.get(*ring);
            write!(
                text,
                " {} | {} |",
                cell(books.map(|b| b.read)),
                cell(books.map(|b| b.lost))
            )?;
        }
        writeln!(text)?;
    }
    if let Some(last) = samples.last() {
        writeln!(
            text,
            "\nThe rings' books in the last sample (t = {} s):\n",
            last.at.as_secs()
        )?;
        writeln!(
            text,
            "| ring | produced | read | lost | malformed | produced − read − lost |"
        )?;
        writeln!(text, "|---|---:|---:|---:|---:|---:|")?;
        for (ring, books) in &last.scrape.rings {
            let gap = i128::from(books.produced) - i128::from(books.read) - i128::from(books.lost);
            writeln!(
                text,
                "| {ring} | {} | {} | {} | {} | {gap} |",
                books.produced, books.read, books.lost, books.malformed
            )?;
        }
    }
    writeln!(text)?;
    Ok(())
}

/// `monitor_tcp_connect_duration_seconds` → `tcp_connect_duration`: the table stays readable.
fn short(family: &str) -> &str {
    let name = family.strip_prefix("monitor_").unwrap_or(family);
    name.strip_suffix("_seconds")
        .or_else(|| name.strip_suffix("_total"))
        .unwrap_or(name)
}

fn series(text: &mut String, samples: &[Sample]) -> Result<()> {
    let families = columns(samples, |s| s.scrape.series.keys());
    writeln!(text, "## Series per family\n")?;
    writeln!(
        text,
        "`monitor_series{{family=…}}`, each family named without `monitor_` and its unit \
         suffix.\n"
    )?;
    write!(text, "| t (s) | total |")?;
    for family in &families {
        write!(text, " {} |", short(family))?;
    }
    writeln!(text, "\n|---:|---:|{}", "---:|".repeat(families.len()))?;
    for s in samples {
        write!(text, "| {} | {} |", time(s), s.scrape.total_series())?;
        for family in &families {
            write!(text, " {} |", cell(s.scrape.series.get(*family).copied()))?;
        }
        writeln!(text)?;
    }
    writeln!(text)?;
    Ok(())
}

fn maps(text: &mut String, samples: &[Sample]) -> Result<()> {
    let maps = columns(samples, |s| s.scrape.map_entries.keys());
    writeln!(text, "## Kernel maps\n")?;
    writeln!(
        text,
        "Entries in use per hash map (`monitor_kernel_map_entries`), and the new keys any map \
         refused (`monitor_kernel_map_insert_failures_total`, summed over maps).\n"
    )?;
    write!(text, "| t (s) |")?;
    for map in &maps {
        write!(text, " {map} |")?;
    }
    writeln!(
        text,
        " insert failures |\n|---:|{}---:|",
        "---:|".repeat(maps.len())
    )?;
    for s in samples {
        write!(text, "| {} |", time(s))?;
        for map in &maps {
            write!(text, " {} |", cell(s.scrape.map_entries.get(*map).copied()))?;
        }
        writeln!(
            text,
            " {} |",
            s.scrape.insert_failures.values().sum::<u64>()
        )?;
    }
    if let Some(last) = samples.last() {
        let refused: Vec<String> = last
            .scrape
            .insert_failures
            .iter()
            .map(|(map, refused)| format!("{map} {refused}"))
            .collect();
        writeln!(
            text,
            "\nNew keys refused per map in the last sample (t = {} s): {}.",
            last.at.as_secs(),
            refused.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::sample::{Ring, Scrape};

    fn sample(at: u64, phase: Phase, families: &[(&str, u64)]) -> Sample {
        let books = Ring {
            produced: 9,
            read: 8,
            lost: 1,
            malformed: 0,
        };
        Sample {
            at: Duration::from_secs(at),
            phase,
            rss_kib: 1234,
            scrape: Scrape {
                rings: [("tcp_events".to_owned(), books)].into(),
                series: families.iter().map(|&(f, n)| (f.to_owned(), n)).collect(),
                map_entries: [("NET_BYTES".to_owned(), 6)].into(),
                insert_failures: [("NET_BYTES".to_owned(), 2), ("TCP_CONNS".to_owned(), 1)].into(),
            },
        }
    }

    #[test]
    fn tables_show_every_sample_and_no_invented_zero() {
        let samples = [
            sample(0, Phase::Load, &[("monitor_tcp_rtt_seconds", 0)]),
            sample(
                30,
                Phase::Load,
                &[
                    ("monitor_tcp_rtt_seconds", 4),
                    ("http_server_request_duration_seconds", 2),
                ],
            ),
            sample(33, Phase::Drained, &[("monitor_tcp_rtt_seconds", 4)]),
        ];
        let mut text = String::new();
        rings(&mut text, &samples).unwrap();
        series(&mut text, &samples).unwrap();
        maps(&mut text, &samples).unwrap();
        assert!(text.contains("| t (s) | RSS (KiB) | tcp_events read | lost |"));
        assert!(text.contains("| 33 (drained) | 1234 | 8 | 1 |"));
        assert!(text.contains("| tcp_events | 9 | 8 | 1 | 0 | 0 |"));
        assert!(text.contains("| t (s) | total | http_server_request_duration | tcp_rtt |"));
        assert!(text.contains("| 0 | 0 | – | 0 |"));
        assert!(text.contains("| 30 | 6 | 2 | 4 |"));
        assert!(text.contains("| 30 | 6 | 3 |"));
        assert!(text.contains("(t = 33 s): NET_BYTES 2, TCP_CONNS 1."));
    }

    #[test]
    fn family_names_lose_prefix_and_unit() {
        assert_eq!(
            short("monitor_tcp_connect_duration_seconds"),
            "tcp_connect_duration"
        );
        assert_eq!(short("monitor_network_bytes_total"), "network_bytes");
        assert_eq!(
            short("monitor_tcp_connections_active"),
            "tcp_connections_active"
        );
        assert_eq!(
            short("http_client_request_duration_seconds"),
            "http_client_request_duration"
        );
    }
}
