//! `cargo xtask soak`: the release agent under a mixed host load for a long while; its memory
//! must level off and it must lose no event. Figures go to docs/reliability.md.
use std::{
    fmt::Write as _,
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    agent_http::{free_port, get, wait_until_healthy},
    process::{Supervised, build_release_bins, is_root, output, run, target_dir, workspace_root},
    setup,
};

pub const DEFAULT_OUTPUT: &str = "docs/reliability.md";
/// The agent's default `--series.ttl`.
const SERIES_TTL: Duration = Duration::from_secs(300);
/// RSS growth allowed from the end of the warm-up to the end of the run.
const MAX_RSS_GROWTH: f64 = 0.10;

pub struct Options {
    pub duration: Duration,
    pub sample_every: Duration,
    pub output: PathBuf,
}

/// One look at the agent during the run.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    syscall_series: f64,
    events_read: f64,
    events_lost: f64,
    stats_entries: f64,
}

pub fn soak(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the soak attaches eBPF programs: run as root");
    }
    setup::full()?;
    ensure_stress_ng()?;
    build_release_bins()?;
    let release = target_dir()?.join("release");
    let logs = target_dir()?.join("xtask-soak");
    fs::create_dir_all(&logs).context("creating the soak log directory")?;
    let log = fs::File::create(logs.join("agent.log")).context("creating the agent log")?;

    let port = free_port()?;
    let mut agent = Supervised::spawn(
        "monitor-agent",
        Command::new(release.join("monitor-agent"))
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    wait_until_healthy(&mut agent, port)?;
    let pid = agent.child_mut().id();

    // CPU, process churn (exec and exit events, naming, series expiry) and context switches
    // from stress-ng; failing and sleeping syscalls from the ground-truth workload.
    let seconds = options.duration.as_secs().to_string();
    let mut stress = Supervised::spawn(
        "stress-ng",
        Command::new("stress-ng")
            .args([
                "--cpu",
                "1",
                "--cpu-load",
                "40",
                "--fork",
                "1",
                "--exec",
                "1",
            ])
            .args([
                "--switch",
                "1",
                "--timeout",
                &format!("{seconds}s"),
                "--quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let workload = release.join("gt-workload");

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < options.duration {
        let status = Command::new(&workload)
            .args(["50", "50", "2", "5"])
            .status()
            .context("running gt-workload")?;
        if !status.success() {
            bail!("gt-workload failed ({status})");
        }
        if started.elapsed() >= next_sample {
            agent.ensure_running()?;
            let sample = take_sample(pid, port, started.elapsed())?;
            println!(
                "soak: {:>5}s rss {} KiB, {} series, {} events read, {} lost",
                sample.at.as_secs(),
                sample.rss_kib,
                sample.syscall_series,
                sample.events_read,
                sample.events_lost
            );
            samples.push(sample);
            next_sample += options.sample_every;
        }
        thread::sleep(Duration::from_millis(200));
    }
    samples.push(take_sample(pid, port, started.elapsed())?);
    stress.stop(libc::SIGTERM, Duration::from_secs(10))?;
    agent.stop(libc::SIGTERM, Duration::from_secs(10))?;

    let verdict = Verdict::of(&samples);
    let report = markdown(options, &samples, &verdict)?;
    let path = workspace_root()?.join(&options.output);
    fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    println!("soak: wrote {}", path.display());
    println!("soak: {}", verdict.summary());
    if !verdict.passed() {
        bail!("soak failed: {}", verdict.summary());
    }
    Ok(())
}

fn ensure_stress_ng() -> Result<()> {
    if crate::process::find_program("stress-ng").is_some() {
        return Ok(());
    }
    println!("setup: stress-ng (package stress-ng) ... installing");
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "stress-ng"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn take_sample(pid: u32, port: u16, at: Duration) -> Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in the agent's status")?;
    let (code, body) = get(port, "/metrics").context("scraping /metrics")?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    let value = |name: &str, labels: &str| metric_value(&body, name, labels).unwrap_or(0.0);
    Ok(Sample {
        at,
        rss_kib,
        syscall_series: value(
            "monitor_series",
            "family=\"monitor_syscall_duration_seconds\"",
        ),
        events_read: value(
            "monitor_ringbuf_events_read_total",
            "ringbuf=\"process_events\"",
        ),
        events_lost: value(
            "monitor_ringbuf_events_lost_total",
            "ringbuf=\"process_events\"",
        ),
        stats_entries: value("monitor_kernel_map_entries", "map=\"SYSCALL_STATS\""),
    })
}

/// The value of `name{labels}` in a Prometheus text exposition (labels as written).
fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

struct Verdict {
    baseline_kib: u64,
    final_kib: u64,
    growth: f64,
    lost: f64,
}

impl Verdict {
    /// Warm-up lasts one series TTL (the agent's default, 5 min: the longest-lived state, so
    /// every table has turned over once), at least a fifth and at most half of the run.
    fn of(samples: &[Sample]) -> Verdict {
        let end = samples.last().map_or(Duration::ZERO, |s| s.at);
        let warm_up = SERIES_TTL.max(end / 5).min(end / 2);
        let baseline = samples
            .iter()
            .find(|s| s.at >= warm_up)
            .or(samples.first())
            .map_or(0, |s| s.rss_kib);
        let final_kib = samples.last().map_or(0, |s| s.rss_kib);
        let growth = if baseline == 0 {
            0.0
        } else {
            final_kib as f64 / baseline as f64 - 1.0
        };
        let lost = samples.last().map_or(0.0, |s| s.events_lost);
        Verdict {
            baseline_kib: baseline,
            final_kib,
            growth,
            lost,
        }
    }

    fn passed(&self) -> bool {
        self.growth < MAX_RSS_GROWTH && self.lost == 0.0
    }

    fn summary(&self) -> String {
        format!(
            "RSS {} KiB after warm-up → {} KiB at the end ({:+.1}%, limit +{:.0}%), {} events lost: {}",
            self.baseline_kib,
            self.final_kib,
            self.growth * 100.0,
            MAX_RSS_GROWTH * 100.0,
            self.lost,
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

fn markdown(options: &Options, samples: &[Sample], verdict: &Verdict) -> Result<String> {
    let mut text = String::new();
    let date = output(Command::new("date").arg("-u"))?;
    let kernel = output(Command::new("uname").arg("-r"))?;
    writeln!(text, "# Reliability: soak\n")?;
    writeln!(
        text,
        "Produced by `cargo xtask soak --duration {}s` on {} (kernel {}, {} CPUs).\n",
        options.duration.as_secs(),
        date.trim(),
        kernel.trim(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )?;
    writeln!(
        text,
        "Load: `stress-ng --cpu 1 --cpu-load 40 --fork 1 --exec 1 --switch 1` plus the \
         ground-truth workload (50 failing openat, 50 close(-1), 2 × 5 ms nanosleep) every \
         ~200 ms, against the release agent with default flags. Pass: RSS grows less than \
         {:.0}% from the end of the warm-up to the end, and no process event is lost. The \
         warm-up is one series TTL (5 min, the longest-lived state the agent keeps), at most \
         half the run.\n",
        MAX_RSS_GROWTH * 100.0
    )?;
    writeln!(text, "**Result: {}**\n", verdict.summary())?;
    writeln!(
        text,
        "| t (s) | RSS (KiB) | syscall series | SYSCALL_STATS entries | events read | events lost |"
    )?;
    writeln!(text, "|---:|---:|---:|---:|---:|---:|")?;
    for s in samples {
        writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} |",
            s.at.as_secs(),
            s.rss_kib,
            s.syscall_series,
            s.stats_entries,
            s.events_read,
            s.events_lost
        )?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64, rss_kib: u64, lost: f64) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            rss_kib,
            syscall_series: 0.0,
            events_read: 0.0,
            events_lost: lost,
            stats_entries: 0.0,
        }
    }

    #[test]
    fn growth_is_measured_from_the_end_of_the_warm_up() {
        // Ten minutes: the warm-up is the 5-minute series TTL.
        let samples = [
            sample(0, 1000, 0.0),
            sample(120, 5000, 0.0),
            sample(300, 6000, 0.0),
            sample(600, 6400, 0.0),
        ];
        let verdict = Verdict::of(&samples);
        assert_eq!(verdict.baseline_kib, 6000);
        assert!((verdict.growth - 0.4 / 6.0).abs() < 1e-9);
        assert!(verdict.passed());
        let leaking = [
            sample(0, 1000, 0.0),
            sample(300, 6000, 0.0),
            sample(600, 6700, 0.0),
        ];
        assert!(!Verdict::of(&leaking).passed());
        let lossy = [
            sample(0, 1000, 0.0),
            sample(300, 1000, 0.0),
            sample(600, 1000, 3.0),
        ];
        assert!(!Verdict::of(&lossy).passed());
        // Two minutes: at most half the run.
        let short = [
            sample(0, 1000, 0.0),
            sample(60, 2000, 0.0),
            sample(120, 2100, 0.0),
        ];
        assert_eq!(Verdict::of(&short).baseline_kib, 2000);
    }

    #[test]
    fn reads_a_labelled_value() {
        let text = "# HELP x\nmonitor_series{family=\"a\"} 12\nmonitor_series{family=\"b\"} 3\n";
        assert_eq!(
            metric_value(text, "monitor_series", "family=\"b\""),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "monitor_series", "family=\"c\""), None);
    }
}
