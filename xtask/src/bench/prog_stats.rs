//! Each program's own run time, from the kernel's BPF statistics: `run_time_ns / run_cnt` as
//! `bpftool prog show` reports them while `kernel.bpf_stats_enabled` is 1. The accounting
//! itself costs a little per run, the same for every program, so the empty hooks measured
//! the same way are the reference.
use std::{fs, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::process::output;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` on while it lives; restored to what it was when dropped.
pub struct StatsEnabled {
    previous: String,
}

impl StatsEnabled {
    pub fn new() -> Result<Self> {
        let previous = fs::read_to_string(SYSCTL).with_context(|| format!("reading {SYSCTL}"))?;
        fs::write(SYSCTL, "1").with_context(|| format!("writing 1 to {SYSCTL}"))?;
        Ok(Self { previous })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        if let Err(err) = fs::write(SYSCTL, self.previous.trim()) {
            eprintln!("bench: warning: cannot restore {SYSCTL}: {err}");
        }
    }
}

/// One program's measured run time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramTime {
    pub name: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// A table of measured run times, or why there is none.
pub fn markdown(times: &Result<Vec<ProgramTime>, String>) -> String {
    let times = match times {
        Ok(times) => times,
        Err(why) => {
            return format!(
                "Not measured in this run: {}.\n",
                why.replace(['|', '\n'], " ")
            );
        }
    };
    let mut out = String::from("| program | runs | ns per run |\n|---|---:|---:|\n");
    for time in times {
        out.push_str(&format!(
            "| `{}` | {} | {:.0} |\n",
            time.name, time.runs, time.ns_per_run
        ));
    }
    out
}

/// The run times of the programs called `names` (the kernel keeps 15 characters of a name)
/// that this benchmark's child process `holder` (`monitor-agent`, `hook-floor`) holds, from
/// `bpftool -j prog show`: another agent on the machine (a test's) has programs of the same
/// names.
pub fn program_times(holder: &str, names: &[&str]) -> Result<Vec<ProgramTime>> {
    let pid = child_named(holder).with_context(|| format!("no child process named {holder}"))?;
    let held = held_program_ids(pid)?;
    let json = output(Command::new("bpftool").args(["-j", "prog", "show"]))?;
    parse(&json, names, &held)
}

/// A child of this process by its `comm`.
fn child_named(comm: &str) -> Option<u32> {
    let me = std::process::id();
    fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`: the comm may hold spaces, so split at its last `)`.
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == me && name == comm).then_some(pid)
    })
}

/// IDs of the BPF programs process `pid` holds (the `prog_id` of its fds' fdinfo).
fn held_program_ids(pid: u32) -> Result<Vec<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?;
    Ok(entries
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect())
}

fn parse(json: &str, names: &[&str], held: &[u64]) -> Result<Vec<ProgramTime>> {
    let programs: Vec<serde_json::Value> =
        serde_json::from_str(json).context("parsing `bpftool -j prog show`")?;
    let programs: Vec<serde_json::Value> = programs
        .into_iter()
        .filter(|program| program["id"].as_u64().is_some_and(|id| held.contains(&id)))
        .collect();
    names
        .iter()
        .map(|&name| {
            // bpftool prints the whole name from the program's BTF where there is BTF, else
            // the kernel's 15 bytes of it (so `mon_sched_wakeup` and `mon_sched_wakeup_new`
            // differ only in full).
            let short = &name[..name.len().min(15)];
            let found: Vec<&serde_json::Value> = programs
                .iter()
                .filter(|program| {
                    program["name"]
                        .as_str()
                        .is_some_and(|shown| shown == name || (shown.len() == 15 && shown == short))
                })
                .collect();
            let [program] = found.as_slice() else {
                bail!("{} programs named {short} loaded, not one", found.len());
            };
            let field = |key: &str| {
                program[key]
                    .as_u64()
                    .with_context(|| format!("{short}: no {key} (are BPF statistics on?)"))
            };
            let (time, runs) = (field("run_time_ns")?, field("run_cnt")?);
            if runs == 0 {
                bail!("{short} never ran");
            }
            Ok(ProgramTime {
                name: name.to_owned(),
                runs,
                ns_per_run: time as f64 / runs as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = r#"[{"id":7,"type":"raw_tracepoint","name":"mon_sys_enter","run_time_ns":1200000,"run_cnt":10000},
        {"id":10,"type":"raw_tracepoint","name":"mon_sched_switch","run_time_ns":4000000,"run_cnt":10000},
        {"id":11,"type":"raw_tracepoint","name":"mon_sched_switch_new","run_time_ns":9000000,"run_cnt":10000},
        {"id":12,"type":"raw_tracepoint","name":"mon_long_name_c","run_time_ns":5000000,"run_cnt":10000},
        {"id":8,"type":"raw_tracepoint","name":"mon_sys_exit","run_time_ns":1870000,"run_cnt":10000},
        {"id":9,"type":"raw_tracepoint","name":"noop_sys_enter"}]"#;

    #[test]
    fn run_time_per_run_of_each_named_program() {
        let times = parse(SHOW, &["mon_sys_enter", "mon_sys_exit"], &[7, 8, 9]).unwrap();
        assert_eq!(times[0].ns_per_run, 120.0);
        assert_eq!(times[1].ns_per_run, 187.0);
        assert_eq!(times[1].runs, 10_000);
        // A name longer than the kernel's 15 bytes, shown whole by bpftool (from BTF).
        // Another whose first 15 bytes are the same is not it.
        let times = parse(SHOW, &["mon_sched_switch"], &[10, 11]).unwrap();
        assert_eq!(times[0].ns_per_run, 400.0);
        // Without BTF, the kernel's 15 bytes of the name.
        let times = parse(SHOW, &["mon_long_name_cut"], &[12]).unwrap();
        assert_eq!(times[0].ns_per_run, 500.0);
    }

    #[test]
    fn missing_statistics_or_programs_are_errors() {
        let err = parse(SHOW, &["noop_sys_enter"], &[9])
            .unwrap_err()
            .to_string();
        assert!(err.contains("run_time_ns"), "{err}");
        let err = parse(SHOW, &["noop_sys_exit"], &[9])
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 programs"), "{err}");
        // Programs another process holds are not this run's.
        let err = parse(SHOW, &["mon_sys_exit"], &[7])
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 programs"), "{err}");
    }
}
