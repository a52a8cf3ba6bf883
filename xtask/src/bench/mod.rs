//! `cargo xtask bench`: per-syscall overhead of the agent, in units of an empty hook.
mod lab;
mod report;

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    process::{build_release_bins, is_root, output, run, workspace_root},
    setup,
};
use lab::{Lab, Measured};
use report::{Condition, Environment, Report, Series};

pub const DEFAULT_OUTPUT: &str = "docs/benchmarks.md";
const TRACEFS: &str = "/sys/kernel/tracing";

pub struct Options {
    pub iterations: u64,
    pub runs: u32,
    pub output: PathBuf,
}

pub fn bench(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the benchmark attaches eBPF programs: run as root");
    }
    setup::full()?;
    build_release_bins()?;
    mount_tracefs();
    let lab = Lab::new(options.iterations)?;
    println!("bench: helper logs in {}", lab.logs().display());
    let series = measure(&lab, options)?;
    let report = Report {
        environment: environment(options)?,
        iterations: options.iterations,
        runs: options.runs,
        series,
    };
    println!("\n{}\n{}", report.table(), report.ratios());
    let path = workspace_root()?.join(&options.output);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, report.markdown()).with_context(|| format!("writing {}", path.display()))?;
    println!("bench: wrote {}", path.display());
    Ok(())
}

/// Rounds of every condition in turn, so slow drift (thermal, frequency, background load)
/// lands on all conditions alike instead of on whichever ran last.
fn measure(lab: &Lab, options: &Options) -> Result<Vec<Series>> {
    let mut all: Vec<Series> = Condition::ALL.into_iter().map(Series::new).collect();
    for round in 1..=options.runs {
        for series in &mut all {
            if series.unavailable.is_some() {
                continue; // it failed once; retrying every round would only repeat the reason
            }
            let name = series.condition.name();
            let measured = lab
                .measure(series.condition)
                .with_context(|| format!("round {round}, condition {name}"))?;
            match measured {
                Measured::NsPerCall(ns) => {
                    println!(
                        "bench: round {round}/{} {name:<8} {ns:>8.1} ns/call",
                        options.runs
                    );
                    series.runs.push(ns);
                }
                Measured::Unavailable(reason) => {
                    println!(
                        "bench: round {round}/{} {name:<8} n/a: {reason}",
                        options.runs
                    );
                    series.unavailable = Some(reason);
                }
            }
        }
    }
    Ok(all)
}

/// bpftrace resolves tracepoints through tracefs; minimal systems do not mount it. A
/// failure only costs the bpftrace condition, so it is a warning.
fn mount_tracefs() {
    let mounted =
        fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| tracefs_mounted(&mounts));
    if mounted {
        return;
    }
    println!("bench: mounting tracefs at {TRACEFS} (bpftrace needs it)");
    if let Err(err) = run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS])) {
        eprintln!("bench: warning: {err:#}; the bpftrace condition may be unavailable");
    }
}

fn tracefs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
    })
}

fn environment(options: &Options) -> Result<Environment> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Ok(Environment {
        date: output(Command::new("date").arg("-u"))?.trim().to_owned(),
        kernel: output(Command::new("uname").arg("-r"))?.trim().to_owned(),
        cpu: cpu_model(&cpuinfo).unwrap_or("unknown").to_owned(),
        nproc: output(&mut Command::new("nproc"))?.trim().to_owned(),
        command: command_line(options),
    })
}

fn cpu_model(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim())
    })
}

/// The command that reproduces the report; `--output` only when it differs from the default.
fn command_line(options: &Options) -> String {
    let mut line = format!(
        "cargo xtask bench --iterations {} --runs {}",
        options.iterations, options.runs
    );
    if options.output.as_path() != std::path::Path::new(DEFAULT_OUTPUT) {
        line.push_str(&format!(" --output {}", options.output.display()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_tracefs_at_its_mount_point_only() {
        let mounted = "sysfs /sys sysfs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n";
        assert!(tracefs_mounted(mounted));
        let elsewhere = "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n";
        assert!(!tracefs_mounted(elsewhere));
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 2GHz\n\
                       processor\t: 1\nmodel name\t: Test CPU @ 2GHz\n";
        assert_eq!(cpu_model(cpuinfo), Some("Test CPU @ 2GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn command_line_mentions_output_only_when_not_default() {
        let mut options = Options {
            iterations: 1000,
            runs: 3,
            output: PathBuf::from(DEFAULT_OUTPUT),
        };
        assert_eq!(
            command_line(&options),
            "cargo xtask bench --iterations 1000 --runs 3"
        );
        options.output = PathBuf::from("/tmp/b.md");
        assert_eq!(
            command_line(&options),
            "cargo xtask bench --iterations 1000 --runs 3 --output /tmp/b.md"
        );
    }
}
