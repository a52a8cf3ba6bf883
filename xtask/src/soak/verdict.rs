//! Whether a soak passed: memory levelled off, every ring's books balance with nothing lost
//! or malformed, no kernel map refused a key, and every family the load feeds holds series.
use std::time::Duration;

use super::sample::{GUARDED_MAPS, Phase, REQUIRED_FAMILIES, RINGS, Sample};

/// The agent's default `--series.ttl`.
pub const SERIES_TTL: Duration = Duration::from_secs(300);
/// RSS growth allowed from the end of the warm-up to the end of the run.
pub const MAX_RSS_GROWTH: f64 = 0.10;

pub struct Verdict {
    pub baseline_kib: u64,
    pub final_kib: u64,
    pub growth: f64,
    /// Each failed check, naming its ring, family or map; empty when the soak passed.
    pub failures: Vec<String>,
    /// The drained sample's read events per ring and the load's last series count, for the
    /// summary of a pass.
    read: Vec<(String, u64)>,
    series: u64,
    families: usize,
}

impl Verdict {
    /// Warm-up lasts one series TTL (the agent's default, 5 min: the longest-lived state, so
    /// every table has turned over once), at least a fifth and at most half of the load.
    ///
    /// Series are judged on the load's last sample (the drain may already expire some), the
    /// rings on the drained one: before it, events in flight leave produced above read + lost
    /// without anything being wrong.
    pub fn of(samples: &[Sample]) -> Verdict {
        let load: Vec<&Sample> = samples.iter().filter(|s| s.phase == Phase::Load).collect();
        let end = load.last().map_or(Duration::ZERO, |s| s.at);
        let warm_up = SERIES_TTL.max(end / 5).min(end / 2);
        let baseline_kib = load
            .iter()
            .find(|s| s.at >= warm_up)
            .or(load.first())
            .map_or(0, |s| s.rss_kib);
        let final_kib = samples.last().map_or(0, |s| s.rss_kib);
        let growth = if baseline_kib == 0 {
            0.0
        } else {
            final_kib as f64 / baseline_kib as f64 - 1.0
        };
        let mut failures = Vec::new();
        if baseline_kib == 0 {
            failures.push("no RSS sampled during the load".to_owned());
        } else if growth >= MAX_RSS_GROWTH {
            failures.push(format!(
                "RSS grew {:+.1}% after the warm-up",
                growth * 100.0
            ));
        }
        let (mut series, mut families) = (0, 0);
        match load.last() {
            None => failures.push("no sample during the load".to_owned()),
            Some(last) => {
                for family in REQUIRED_FAMILIES {
                    match last.scrape.series.get(family) {
                        None => failures.push(format!("family {family} not exported")),
                        Some(0) => failures.push(format!(
                            "family {family} has no series at the end of the load"
                        )),
                        Some(_) => {}
                    }
                }
                series = last.scrape.total_series();
                families = last.scrape.series.len();
            }
        }
        let mut read = Vec::new();
        match samples.last().filter(|s| s.phase == Phase::Drained) {
            None => failures.push("no sample after the load stopped and the rings drained".into()),
            Some(drained) => {
                let scrape = &drained.scrape;
                for ring in RINGS {
                    if !scrape.rings.contains_key(ring) {
                        failures.push(format!("ring {ring} not reported"));
                    }
                }
                for (ring, books) in &scrape.rings {
                    if books.lost > 0 {
                        failures.push(format!("{ring}: {} events lost", books.lost));
                    }
                    if books.malformed > 0 {
                        failures.push(format!("{ring}: {} malformed events", books.malformed));
                    }
                    if !books.balanced() {
                        failures.push(format!(
                            "{ring}: {} produced ≠ {} read + {} lost after the drain",
                            books.produced, books.read, books.lost
                        ));
                    }
                    read.push((ring.clone(), books.read));
                }
                for map in GUARDED_MAPS {
                    if !scrape.insert_failures.contains_key(map) {
                        failures.push(format!("insert failures of {map} not reported"));
                    }
                }
                for (map, refused) in &scrape.insert_failures {
                    if *refused > 0 {
                        failures.push(format!("{map} refused {refused} new keys"));
                    }
                }
            }
        }
        Verdict {
            baseline_kib,
            final_kib,
            growth,
            failures,
            read,
            series,
            families,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn summary(&self) -> String {
        let rss = format!(
            "RSS {} KiB after warm-up → {} KiB at the end ({:+.1}%, limit +{:.0}%)",
            self.baseline_kib,
            self.final_kib,
            self.growth * 100.0,
            MAX_RSS_GROWTH * 100.0,
        );
        if !self.passed() {
            return format!("{rss}; FAIL: {}", self.failures.join("; "));
        }
        let read: Vec<String> = self
            .read
            .iter()
            .map(|(ring, read)| format!("{ring} {read}"))
            .collect();
        format!(
            "{rss}; events read after the drain: {}, none lost or malformed, produced = read + \
             lost on every ring; {} series over {} families, each of the {} the load feeds \
             with series; no map insert failures: PASS",
            read.join(", "),
            self.series,
            self.families,
            REQUIRED_FAMILIES.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::sample::{Ring, Scrape};

    /// A scrape of a healthy agent: every ring balanced, every family with a series.
    fn healthy() -> Scrape {
        let books = Ring {
            produced: 100,
            read: 100,
            lost: 0,
            malformed: 0,
        };
        Scrape {
            rings: RINGS.map(|ring| (ring.to_owned(), books)).into(),
            series: REQUIRED_FAMILIES.map(|f| (f.to_owned(), 2)).into(),
            map_entries: [("SYSCALL_STATS".to_owned(), 10)].into(),
            insert_failures: GUARDED_MAPS.map(|map| (map.to_owned(), 0)).into(),
        }
    }

    fn sample(at: u64, rss_kib: u64, phase: Phase) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            phase,
            rss_kib,
            scrape: healthy(),
        }
    }

    /// Ten minutes of load and a drained sample, all healthy.
    fn run() -> Vec<Sample> {
        vec![
            sample(0, 1000, Phase::Load),
            sample(300, 6000, Phase::Load),
            sample(600, 6100, Phase::Load),
            sample(605, 6100, Phase::Drained),
        ]
    }

    fn fails_with(samples: &[Sample], words: &str) {
        let verdict = Verdict::of(samples);
        assert!(!verdict.passed(), "passed: {}", verdict.summary());
        assert!(
            verdict.failures.iter().any(|f| f.contains(words)),
            "{:?} lacks {words:?}",
            verdict.failures
        );
        assert!(verdict.summary().contains(words));
    }

    #[test]
    fn a_healthy_run_passes() {
        let verdict = Verdict::of(&run());
        assert!(verdict.passed(), "{}", verdict.summary());
        assert!(verdict.summary().ends_with("PASS"));
        assert!(verdict.summary().contains("tcp_events 100"));
    }

    #[test]
    fn growth_is_measured_from_the_end_of_the_warm_up() {
        // Ten minutes: the warm-up is the 5-minute series TTL.
        let mut samples = run();
        samples.insert(1, sample(120, 5000, Phase::Load));
        samples[4].rss_kib = 6400;
        let verdict = Verdict::of(&samples);
        assert_eq!(verdict.baseline_kib, 6000);
        assert!((verdict.growth - 0.4 / 6.0).abs() < 1e-9);
        assert!(verdict.passed());
        samples[4].rss_kib = 6700;
        fails_with(&samples, "RSS grew +11.7%");
        // Two minutes: at most half of the load, whose end is its last sample, not the drain's.
        let short = [
            sample(0, 1000, Phase::Load),
            sample(60, 2000, Phase::Load),
            sample(120, 2100, Phase::Load),
            sample(240, 2100, Phase::Drained),
        ];
        assert_eq!(Verdict::of(&short).baseline_kib, 2000);
    }

    #[test]
    fn a_missing_or_empty_family_fails() {
        let mut samples = run();
        samples[2]
            .scrape
            .series
            .remove("http_client_request_duration_seconds");
        fails_with(
            &samples,
            "family http_client_request_duration_seconds not exported",
        );
        let mut samples = run();
        *samples[2]
            .scrape
            .series
            .get_mut("monitor_tcp_connect_errors_total")
            .unwrap() = 0;
        fails_with(&samples, "monitor_tcp_connect_errors_total has no series");
        // Judged at the end of the load: series that expire during the drain are fine.
        let mut samples = run();
        samples[3].scrape.series.clear();
        assert!(Verdict::of(&samples).passed());
    }

    #[test]
    fn a_lost_or_malformed_event_fails() {
        let mut samples = run();
        let books = samples[3].scrape.rings.get_mut("payload_events").unwrap();
        books.lost = 1;
        books.read -= 1;
        fails_with(&samples, "payload_events: 1 events lost");
        let mut samples = run();
        samples[3]
            .scrape
            .rings
            .get_mut("process_events")
            .unwrap()
            .malformed = 2;
        fails_with(&samples, "process_events: 2 malformed events");
    }

    #[test]
    fn unbalanced_books_after_the_drain_fail() {
        let mut samples = run();
        samples[3].scrape.rings.get_mut("tcp_events").unwrap().read = 97;
        fails_with(&samples, "tcp_events: 100 produced ≠ 97 read + 0 lost");
        // Without a drained sample nothing says the rings were read to the end.
        let mut samples = run();
        samples.pop();
        fails_with(&samples, "no sample after the load stopped");
        let mut samples = run();
        samples[3].scrape.rings.remove("payload_events");
        fails_with(&samples, "ring payload_events not reported");
    }

    #[test]
    fn a_refused_map_insert_fails() {
        let mut samples = run();
        *samples[3]
            .scrape
            .insert_failures
            .get_mut("TCP_CONNS")
            .unwrap() = 4;
        fails_with(&samples, "TCP_CONNS refused 4 new keys");
        let mut samples = run();
        samples[3].scrape.insert_failures.remove("NET_BYTES");
        fails_with(&samples, "insert failures of NET_BYTES not reported");
    }
}
