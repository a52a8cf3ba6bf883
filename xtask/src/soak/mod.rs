//! `cargo xtask soak`: the release agent under a load that feeds every signal for a long
//! while; its memory must level off, every ring must account for every event, and every
//! family the load feeds must hold series. Figures go to docs/reliability.md.
mod load;
mod report;
mod sample;
mod verdict;

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    agent_http::{free_port, wait_until_healthy},
    process::{Supervised, build_release_bins, is_root, target_dir, workspace_root},
    setup,
};
use sample::{Phase, Ring, Sample};
use verdict::Verdict;

pub const DEFAULT_OUTPUT: &str = "docs/reliability.md";
/// Quiet after the load stops, before the drained sample: the agent reads its rings as they
/// fill and at every scrape, so this only lets the last events of the stopped processes land.
const DRAIN_PAUSE: Duration = Duration::from_secs(3);
/// Scrapes to try for balanced books after the drain, one a second.
const DRAIN_TRIES: u32 = 10;

pub struct Options {
    pub duration: Duration,
    pub sample_every: Duration,
    pub output: PathBuf,
}

pub fn soak(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the soak attaches eBPF programs: run as root");
    }
    setup::full()?;
    load::ensure_stress_ng()?;
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

    let mut stress = load::stress_ng(options.duration)?;
    let mut http = load::Http::start(&logs)?;
    let workload = release.join("gt-workload");

    let watch = Watch {
        pid,
        port,
        started: Instant::now(),
    };
    let started = watch.started;
    let mut samples: Vec<Sample> = Vec::new();
    let mut done = load::Done::default();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < options.duration {
        let status = Command::new(&workload)
            .args(load::GT_WORKLOAD)
            .status()
            .context("running gt-workload")?;
        if !status.success() {
            bail!("gt-workload failed ({status})");
        }
        done.gt_runs += 1;
        if started.elapsed() >= next_sample {
            http.ensure_running()?;
            samples.push(watch.sample(&mut agent, Phase::Load, samples.last())?);
            next_sample += options.sample_every;
        }
        thread::sleep(Duration::from_millis(200));
    }
    http.ensure_running()?;
    samples.push(watch.sample(&mut agent, Phase::Load, samples.last())?);

    done.http = http.stop()?;
    stress.stop(libc::SIGTERM, Duration::from_secs(10))?;
    let last = samples.last();
    let drained = drain(|| watch.sample(&mut agent, Phase::Drained, last))?;
    samples.push(drained);
    agent.stop(libc::SIGTERM, Duration::from_secs(10))?;

    let verdict = Verdict::of(&samples);
    let report = report::markdown(options.duration, &done, &samples, &verdict)?;
    let path = workspace_root()?.join(&options.output);
    fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    println!("soak: wrote {}", path.display());
    println!("soak: {}", verdict.summary());
    if !verdict.passed() {
        bail!("soak failed: {}", verdict.summary());
    }
    Ok(())
}

/// Where the agent runs and since when.
struct Watch {
    pid: u32,
    port: u16,
    started: Instant,
}

impl Watch {
    /// A sample, checked to hold every row the one before it had.
    fn sample(
        &self,
        agent: &mut Supervised,
        phase: Phase,
        earlier: Option<&Sample>,
    ) -> Result<Sample> {
        agent.ensure_running()?;
        let sample = sample::take(self.pid, self.port, self.started.elapsed(), phase)?;
        if let Some(earlier) = earlier {
            sample.scrape.ensure_keeps(&earlier.scrape)?;
        }
        print_sample(&sample);
        Ok(sample)
    }
}

/// The sample the rings are judged on. Each scrape makes the agent read its rings before it
/// reads the kernel's produced and lost counters, so the books balance unless an event lands
/// in between: this machine is shared, and the scrape's own connection is traced. Such a gap
/// is gone at the next scrape, while one left by events the agent never read stays: a few
/// tries tell them apart.
fn drain(mut take: impl FnMut() -> Result<Sample>) -> Result<Sample> {
    thread::sleep(DRAIN_PAUSE);
    let mut tries = 1;
    loop {
        let sample = take()?;
        if tries == DRAIN_TRIES || sample.scrape.rings.values().all(Ring::balanced) {
            return Ok(sample);
        }
        tries += 1;
        thread::sleep(Duration::from_secs(1));
    }
}

fn print_sample(sample: &Sample) {
    let scrape = &sample.scrape;
    let rings: Vec<String> = scrape
        .rings
        .iter()
        .map(|(ring, books)| {
            format!(
                "{ring} {}/{}/{}/{}",
                books.produced, books.read, books.lost, books.malformed
            )
        })
        .collect();
    let maps: Vec<String> = scrape
        .map_entries
        .iter()
        .map(|(map, entries)| format!("{map} {entries}"))
        .collect();
    println!(
        "soak: {:>5}s{} rss {} KiB; produced/read/lost/malformed {}; {} series over {} \
         families; map entries {}; {} insert failures",
        sample.at.as_secs(),
        if sample.phase == Phase::Drained {
            " (drained)"
        } else {
            ""
        },
        sample.rss_kib,
        rings.join(", "),
        scrape.total_series(),
        scrape.series.len(),
        maps.join(", "),
        scrape.insert_failures.values().sum::<u64>()
    );
}
