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

/// One program's cumulative counters as the kernel keeps them while statistics are on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramCounters {
    pub id: u64,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The counters of every BPF program that this benchmark's child `holder` holds, in load
/// order (the agent loads its probes in attach order).
pub fn held_counters(holder: &str) -> Result<Vec<ProgramCounters>> {
    let pid = child_named(holder).with_context(|| format!("no child process named {holder}"))?;
    let held = held_program_ids(pid)?;
    let json = output(Command::new("bpftool").args(["-j", "prog", "show"]))?;
    parse_counters(&json, &held)
}

/// What each program did between two readings of `held_counters`: the counters' growth.
/// A program missing from `before` (loaded in between) counts from zero.
pub fn deltas(before: &[ProgramCounters], after: &[ProgramCounters]) -> Vec<ProgramCounters> {
    after
        .iter()
        .map(|now| {
            let then = before.iter().find(|then| then.id == now.id);
            let (time, runs) = then.map_or((0, 0), |then| (then.run_time_ns, then.run_cnt));
            ProgramCounters {
                run_time_ns: now.run_time_ns.saturating_sub(time),
                run_cnt: now.run_cnt.saturating_sub(runs),
                ..now.clone()
            }
        })
        .collect()
}

/// bpftool leaves `run_time_ns` and `run_cnt` out for a program that has not run since
/// statistics were turned on: zero, not an error.
fn parse_counters(json: &str, held: &[u64]) -> Result<Vec<ProgramCounters>> {
    let programs: Vec<serde_json::Value> =
        serde_json::from_str(json).context("parsing `bpftool -j prog show`")?;
    let mut counters: Vec<ProgramCounters> = programs
        .iter()
        .filter_map(|program| {
            let id = program["id"].as_u64().filter(|id| held.contains(id))?;
            Some(ProgramCounters {
                id,
                name: program["name"].as_str().unwrap_or("?").to_owned(),
                run_time_ns: program["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: program["run_cnt"].as_u64().unwrap_or(0),
            })
        })
        .collect();
    if counters.is_empty() {
        bail!("bpftool shows none of the {} programs held", held.len());
    }
    counters.sort_by_key(|c| c.id);
    Ok(counters)
}

/// What every program of the agent ran during one workload run, per request of that run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelCost {
    /// Requests the workload completed in the window the counters grew over.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Each program's growth over that window (`deltas`).
    pub programs: Vec<ProgramCounters>,
}

impl KernelCost {
    fn per_request(&self, value: u64) -> f64 {
        value as f64 / self.requests as f64
    }

    /// How often the program ran per request (run_cnt growth / requests).
    pub fn runs_per_request(&self, program: &ProgramCounters) -> f64 {
        self.per_request(program.run_cnt)
    }

    /// Its own time per run; `None` when it did not run.
    pub fn ns_per_run(program: &ProgramCounters) -> Option<f64> {
        (program.run_cnt > 0).then(|| program.run_time_ns as f64 / program.run_cnt as f64)
    }

    /// Its time per request: run_time_ns growth / requests.
    pub fn ns_per_request(&self, program: &ProgramCounters) -> f64 {
        self.per_request(program.run_time_ns)
    }

    /// Every program's time together, per request.
    pub fn total_ns_per_request(&self) -> f64 {
        self.per_request(self.programs.iter().map(|p| p.run_time_ns).sum())
    }

    pub fn total_runs_per_request(&self) -> f64 {
        self.per_request(self.programs.iter().map(|p| p.run_cnt).sum())
    }

    pub fn table(&self) -> String {
        let mut out = String::from(
            "| program | runs | runs per request | ns per run | ns per request |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for program in &self.programs {
            let ns_per_run =
                Self::ns_per_run(program).map_or("–".to_owned(), |ns| format!("{ns:.0}"));
            out.push_str(&format!(
                "| `{}` | {} | {:.2} | {ns_per_run} | {:.1} |\n",
                program.name,
                program.run_cnt,
                self.runs_per_request(program),
                self.ns_per_request(program)
            ));
        }
        out.push_str(&format!(
            "| all programs | {} | {:.2} | | **{:.1}** |\n",
            self.programs.iter().map(|p| p.run_cnt).sum::<u64>(),
            self.total_runs_per_request(),
            self.total_ns_per_request()
        ));
        out
    }
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
    fn counters_of_every_held_program_and_their_growth() {
        let before = parse_counters(SHOW, &[9, 8, 7]).unwrap();
        // In load order; one that never ran counts zero; others' programs are left out.
        assert_eq!(before.iter().map(|c| c.id).collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(before[2].name, "noop_sys_enter");
        assert_eq!((before[2].run_cnt, before[2].run_time_ns), (0, 0));
        let mut after = before.clone();
        after[0].run_cnt += 500;
        after[0].run_time_ns += 60_000;
        after.push(ProgramCounters {
            id: 13,
            name: "late".into(),
            run_time_ns: 7,
            run_cnt: 1,
        });
        let grown = deltas(&before, &after);
        assert_eq!((grown[0].run_cnt, grown[0].run_time_ns), (500, 60_000));
        assert_eq!((grown[1].run_cnt, grown[1].run_time_ns), (0, 0));
        assert_eq!((grown[3].run_cnt, grown[3].run_time_ns), (1, 7));
        assert_eq!(grown[0].name, "mon_sys_enter");
        assert!(parse_counters(SHOW, &[99]).is_err());
    }

    fn counters(name: &str, run_cnt: u64, run_time_ns: u64) -> ProgramCounters {
        ProgramCounters {
            id: 0,
            name: name.into(),
            run_time_ns,
            run_cnt,
        }
    }

    fn cost() -> KernelCost {
        KernelCost {
            requests: 1000,
            requests_per_sec: 100.0,
            programs: vec![
                counters("mon_sys_enter", 8000, 400_000),
                counters("mon_sock_send", 2000, 300_000),
                counters("mon_oom_victim", 0, 0),
            ],
        }
    }

    #[test]
    fn runs_and_time_per_request() {
        let cost = cost();
        let [enter, send, oom] = &cost.programs[..] else {
            unreachable!()
        };
        assert_eq!(cost.runs_per_request(enter), 8.0);
        assert_eq!(cost.runs_per_request(send), 2.0);
        assert_eq!(KernelCost::ns_per_run(enter), Some(50.0));
        assert_eq!(KernelCost::ns_per_run(send), Some(150.0));
        assert_eq!(KernelCost::ns_per_run(oom), None);
        assert_eq!(cost.ns_per_request(enter), 400.0);
        assert_eq!(cost.ns_per_request(send), 300.0);
        assert_eq!(cost.total_ns_per_request(), 700.0);
        assert_eq!(cost.total_runs_per_request(), 10.0);
    }

    #[test]
    fn kernel_cost_table_has_a_row_per_program_and_the_total() {
        let table = cost().table();
        assert!(
            table.starts_with(
                "| program | runs | runs per request | ns per run | ns per request |\n"
            )
        );
        assert!(table.contains("| `mon_sys_enter` | 8000 | 8.00 | 50 | 400.0 |\n"));
        assert!(table.contains("| `mon_sock_send` | 2000 | 2.00 | 150 | 300.0 |\n"));
        assert!(table.contains("| `mon_oom_victim` | 0 | 0.00 | – | 0.0 |\n"));
        assert!(table.ends_with("| all programs | 10000 | 10.00 | | **700.0** |\n"));
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
