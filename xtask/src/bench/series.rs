//! `--only series`: what one scrape costs a Prometheus, in series and bytes, for the two
//! scenarios issue #15 names: an idle machine, and the same after 80 short-lived programs
//! with distinct names ran from one shell loop. Under the defaults, and under the settings
//! that export what the agent did before its series defaults (`--syscalls.histograms all
//! --processes.names-per-parent 0`, and no budget in the way).
use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::{lab::Lab, report::Environment};
use crate::{
    agent_http::{free_port, get, wait_until_healthy},
    process::Supervised,
};

/// Programs the churn scenario runs, each under its own name.
const PROGRAMS: usize = 80;
/// How long the agent runs before the idle scrape: the machine's own activity by then.
const IDLE: Duration = Duration::from_secs(30);
/// After the loop: two sweeps at the default interval, so every program is named and folded.
const SETTLE: Duration = Duration::from_secs(12);
/// The targets of issue #15.
const IDLE_TARGET: u64 = 3_000;
const CHURN_TARGET: u64 = 8_000;

#[derive(Clone, Copy, Debug)]
struct Settings {
    name: &'static str,
    args: &'static [&'static str],
}

const SETTINGS: [Settings; 2] = [
    Settings {
        name: "defaults",
        args: &[],
    },
    // What the agent exported before its series defaults, uncapped: the budget would
    // otherwise hide how much there is.
    Settings {
        name: "every histogram, no folding, no budget",
        args: &[
            "--syscalls.histograms",
            "all",
            "--processes.names-per-parent",
            "0",
            "--series.max",
            "100000000",
        ],
    },
];

/// One scrape: its sample lines (Prometheus series) and its size.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Cost {
    series: u64,
    bytes: u64,
}

impl Cost {
    fn of(text: &str) -> Cost {
        Cost {
            series: text
                .lines()
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .count() as u64,
            bytes: text.len() as u64,
        }
    }
}

#[derive(Debug, Default)]
struct Run {
    idle: Cost,
    churn: Cost,
    /// Programs of the loop still exported under their own name.
    named: usize,
}

pub struct SeriesReport {
    environment: Environment,
    runs: Vec<(Settings, Vec<Run>)>,
}

pub fn suite(lab: &Lab, runs: u32, environment: Environment) -> Result<SeriesReport> {
    let programs = tempdir()?;
    for i in 1..=PROGRAMS {
        let link = programs.join(format!("churn-{i}"));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/ls", &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let mut results: Vec<(Settings, Vec<Run>)> = SETTINGS
        .iter()
        .map(|settings| (*settings, Vec::new()))
        .collect();
    for round in 1..=runs {
        for (settings, runs_of) in &mut results {
            let run = measure(lab, settings, &programs)
                .with_context(|| format!("round {round}, {}", settings.name))?;
            println!(
                "bench: round {round}/{runs} {:<28} idle {:>6} series, after the loop {:>6} \
                 ({} programs named)",
                settings.name, run.idle.series, run.churn.series, run.named
            );
            runs_of.push(run);
        }
    }
    let _ = fs::remove_dir_all(&programs);
    Ok(SeriesReport {
        environment,
        runs: results,
    })
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("xtask-series-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn measure(lab: &Lab, settings: &Settings, programs: &std::path::Path) -> Result<Run> {
    let port = free_port()?;
    let log = lab.logs().join("agent-series.log");
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut agent = Supervised::spawn(
        "monitor-agent",
        Command::new(lab.binary("monitor-agent")?)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(settings.args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file),
    )?;
    wait_until_healthy(&mut agent, port)?;
    thread::sleep(IDLE);
    let idle = scrape(port)?;
    // Brace expansion, so no other program (`seq`) runs under the loop's shell.
    let script = format!(
        "for i in {{1..{PROGRAMS}}}; do \"$0/churn-$i\" / > /dev/null || exit 1; done; exit 0"
    );
    let status = Command::new("bash")
        .args(["-c", &script])
        .arg(programs)
        .status()
        .context("running the loop")?;
    if !status.success() {
        bail!("the loop failed ({status})");
    }
    thread::sleep(SETTLE);
    let text = scrape_text(port)?;
    agent.ensure_running()?;
    let named = (1..=PROGRAMS)
        .filter(|i| text.contains(&format!("comm=\"churn-{i}\"")))
        .count();
    Ok(Run {
        idle,
        churn: Cost::of(&text),
        named,
    })
}

fn scrape_text(port: u16) -> Result<String> {
    match get(port, "/metrics") {
        Some((200, body)) => Ok(body),
        other => bail!("scrape failed: {other:?}"),
    }
}

fn scrape(port: u16) -> Result<Cost> {
    Ok(Cost::of(&scrape_text(port)?))
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

impl SeriesReport {
    fn medians(runs: &[Run]) -> (Cost, Cost, usize) {
        let pick = |f: fn(&Run) -> u64| median(runs.iter().map(f).collect());
        (
            Cost {
                series: pick(|run| run.idle.series),
                bytes: pick(|run| run.idle.bytes),
            },
            Cost {
                series: pick(|run| run.churn.series),
                bytes: pick(|run| run.churn.bytes),
            },
            median(runs.iter().map(|run| run.named as u64).collect()) as usize,
        )
    }

    pub fn table(&self) -> String {
        let mut out = String::from(
            "| settings | idle: series | idle: KiB | after 80 programs: series | KiB | \
             programs under their own name |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for (settings, runs) in &self.runs {
            let (idle, churn, named) = Self::medians(runs);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {named} of {PROGRAMS} |\n",
                settings.name,
                idle.series,
                idle.bytes / 1024,
                churn.series,
                churn.bytes / 1024
            ));
        }
        out
    }

    fn verdicts(&self) -> String {
        let Some((_, runs)) = self.runs.first() else {
            return String::new();
        };
        let (idle, churn, _) = Self::medians(runs);
        let verdict = |value: u64, target: u64| {
            if value <= target { "met" } else { "missed" }
        };
        format!(
            "- Targets (defaults): idle ≤ {IDLE_TARGET}: {} ({}); after the loop ≤ \
             {CHURN_TARGET}: {} ({}).\n",
            idle.series,
            verdict(idle.series, IDLE_TARGET),
            churn.series,
            verdict(churn.series, CHURN_TARGET)
        )
    }

    pub fn markdown(&self) -> String {
        let rounds = self.runs.first().map_or(0, |(_, runs)| runs.len());
        format!(
            "## Series per scrape\n\n{}\n\
             Series are the scrape's sample lines (each histogram bucket, `_sum` and `_count` \
             one), every family included (the agent's own too); medians of {rounds} round(s), \
             each a fresh agent: scraped after {} s on the machine as it is (\"idle\"), then \
             after a shell loop ran {PROGRAMS} programs named `churn-1` … `churn-{PROGRAMS}` \
             (`ls /` through symlinks) and {} s passed. \"Idle\" is whatever this machine ran \
             meanwhile: nothing but its own daemons on a quiet one.\n\n{}\n{}",
            self.environment.markdown(),
            IDLE.as_secs(),
            SETTLE.as_secs(),
            self.table(),
            self.verdicts()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrapes_cost_is_its_sample_lines_and_bytes() {
        let text = "# HELP a x\n# TYPE a counter\na 1\nb_bucket{le=\"1\"} 2\n\nb_count 2\n";
        assert_eq!(
            Cost::of(text),
            Cost {
                series: 3,
                bytes: text.len() as u64
            }
        );
        assert_eq!(median(vec![5, 1, 9]), 5);
    }
}
