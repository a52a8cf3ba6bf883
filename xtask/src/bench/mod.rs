//! `cargo xtask bench`: per-syscall overhead of the agent, in units of an empty hook, and
//! its connection-rate and throughput overhead, and nginx's requests/s under wrk, against the
//! no-monitor floor and bpftrace (and, for nginx, the agent with one probe family at a time;
//! over HTTPS, the agent with and without its OpenSSL uprobes).
mod cpu;
mod databases;
mod doc;
mod families;
mod http;
mod http2;
mod http_report;
mod https;
mod lab;
mod net_report;
mod prog_stats;
mod report;
mod series;
mod worker;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    process::{build_release_bins, cargo, is_root, output, run, workspace_root},
    setup,
};
pub use doc::Suite;
use families::Family;
use http::{Nginx, Placement, Wrk};
use http_report::{HttpReport, NginxSection};
use lab::{Lab, Measured, SyscallLoop, interleave, net_workload};
use net_report::{NetReport, WorkloadSeries};
use report::{Condition, Environment, Report, Series};
pub use worker::{WORKER_COMMAND, Workload, run as net_worker};

pub const DEFAULT_OUTPUT: &str = "docs/benchmarks.md";
const TRACEFS: &str = "/sys/kernel/tracing";
/// The transfers' write sizes: a bulk copy, and small messages where per-call costs show.
const BULK_CHUNK: u64 = 64 * 1024;
const SMALL_CHUNK: u64 = 1024;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Run one suite only; the report's other sections are kept as they were. All when absent.
    #[arg(long, value_enum, value_name = "SUITE")]
    pub only: Option<Suite>,

    /// Rounds per suite; each round measures every condition once.
    #[arg(long, default_value_t = 7, value_name = "R",
        value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,

    /// syscalls: getppid calls per measured run (after a warm-up of a tenth of that).
    #[arg(long, default_value_t = 2_000_000, value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,

    /// network: loopback connections per measured run (after a warm-up of a tenth).
    #[arg(long, default_value_t = 20_000, value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,

    /// network: bytes per measured run of the bulk transfer, in 64 KiB writes.
    #[arg(long, default_value_t = 1_000_000_000, value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub bulk_bytes: u64,

    /// network: bytes per measured run of the small-write transfer, in 1 KiB writes.
    #[arg(long, default_value_t = 100_000_000, value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub small_bytes: u64,

    /// http, https, http2: seconds of each measured wrk (h2load) run (after one untimed
    /// warm-up of half as long).
    #[arg(long, default_value_t = 10, value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub http_seconds: u64,

    /// databases: requests per redis-benchmark test (SET, then GET, each with pipelines of
    /// 1 and of 16).
    #[arg(long, default_value_t = 200_000, value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub db_requests: u64,

    /// databases: seconds of each pgbench run.
    #[arg(long, default_value_t = 5, value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub db_seconds: u64,

    /// Markdown report to write; a relative path is taken from the workspace root.
    #[arg(long, default_value = DEFAULT_OUTPUT, value_name = "FILE")]
    pub output: PathBuf,
}

impl Options {
    fn suites(&self) -> Vec<Suite> {
        match self.only {
            Some(suite) => vec![suite],
            None => Suite::ALL.to_vec(),
        }
    }

    fn workloads(&self) -> [Workload; 3] {
        [
            Workload::Conn {
                count: self.connections,
            },
            Workload::Bulk {
                bytes: self.bulk_bytes,
                chunk: BULK_CHUNK,
            },
            Workload::Bulk {
                bytes: self.small_bytes,
                chunk: SMALL_CHUNK,
            },
        ]
    }
}

pub fn bench(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the benchmark attaches eBPF programs: run as root");
    }
    let suites = options.suites();
    let path = workspace_root()?.join(&options.output);
    let previous = fs::read_to_string(&path).ok();
    if doc::loses_figures(&suites, previous.as_deref()) {
        eprintln!(
            "bench: warning: {} has no marked section for what this run skips; that part \
             will read `not measured yet`",
            path.display()
        );
    }
    setup::full()?;
    if suites.contains(&Suite::Syscalls) {
        build_release_bins()?;
    } else {
        // The network workloads are this binary, the HTTP ones nginx, wrk, h2load; only the
        // agent needs building.
        run(cargo()?.args(["build", "--release", "-p", "monitor-agent"]))?;
    }
    mount_tracefs();
    let lab = Lab::new()?;
    println!("bench: helper logs in {}", lab.logs().display());
    let environment = environment(options)?;
    let mut sections = Vec::new();
    for suite in suites {
        let markdown = match suite {
            Suite::Syscalls => {
                let report = syscall_suite(&lab, options, environment.clone())?;
                println!("\n{}\n{}", report.table(), report.ratios());
                report.markdown()
            }
            Suite::Series => {
                let report = series::suite(&lab, options.runs, environment.clone())?;
                println!("\n{}", report.table());
                report.markdown()
            }
            Suite::Network => {
                let report = network_suite(&lab, options, environment.clone())?;
                println!("\n{}", report.table());
                report.markdown()
            }
            Suite::Databases => {
                let report = databases::suite(
                    &lab,
                    options.runs,
                    options.db_requests,
                    options.db_seconds,
                    environment.clone(),
                )?;
                println!("\n{}", report.table());
                report.markdown()
            }
            Suite::Http => {
                let report = http_suite(&lab, options, environment.clone())?;
                println!(
                    "\n{}\n{}\n{}\n{}",
                    report.table(),
                    report.breakdown_table(),
                    report.kernel_section(),
                    report.targets()
                );
                report.markdown()
            }
            Suite::Https => nginx_section(https::suite, &lab, options, environment.clone())?,
            Suite::Http2 => nginx_section(http2::suite, &lab, options, environment.clone())?,
        };
        sections.push((suite, markdown));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let document = doc::compose(&sections, previous.as_deref());
    fs::write(&path, document).with_context(|| format!("writing {}", path.display()))?;
    println!("bench: wrote {}", path.display());
    Ok(())
}

fn syscall_suite(lab: &Lab, options: &Options, environment: Environment) -> Result<Report> {
    let syscall_loop = SyscallLoop {
        path: lab.binary("syscall-loop")?,
        iterations: options.iterations,
    };
    // A round trip costs about a hundred getppid calls here: a twentieth as many keeps the
    // two workloads' times alike.
    let switch_loop = SyscallLoop {
        path: lab.binary("switch-loop")?,
        iterations: (options.iterations / 20).max(1_000),
    };
    let mut series: Vec<Series> = Condition::ALL.into_iter().map(Series::new).collect();
    let switch_conditions = [Condition::None, Condition::Empty, Condition::Agent];
    let mut switch_series: Vec<Series> = switch_conditions.into_iter().map(Series::new).collect();
    let unavailable = interleave(
        options.runs,
        &Condition::ALL,
        |condition| {
            lab.under(condition, report::BPFTRACE_SCRIPT, || {
                let per_call = syscall_loop.run()?;
                let per_trip = if switch_conditions.contains(&condition) {
                    Some(switch_loop.run()?)
                } else {
                    None
                };
                Ok((per_call, per_trip))
            })
        },
        |at, condition, (ns, trip)| {
            println!("bench: {at} {:<8} {ns:>8.1} ns/call", condition.name());
            if let Some(s) = series.iter_mut().find(|s| s.condition == condition) {
                s.runs.push(ns);
            }
            if let Some(trip) = trip {
                println!(
                    "bench: {at} {:<8} {trip:>8.1} ns/round trip",
                    condition.name()
                );
                if let Some(s) = switch_series.iter_mut().find(|s| s.condition == condition) {
                    s.runs.push(trip);
                }
            }
        },
    )?;
    for (condition, reason) in unavailable {
        if let Some(s) = series.iter_mut().find(|s| s.condition == condition) {
            s.unavailable = Some(reason);
        }
    }
    let program_times = program_times(lab, &syscall_loop).map_err(|err| {
        eprintln!("bench: warning: programs' own run times not measured: {err:#}");
        format!("{err:#}")
    });
    Ok(Report {
        environment,
        iterations: options.iterations,
        runs: options.runs,
        series,
        program_times,
        switches: report::Switches {
            trips: switch_loop.iterations,
            series: switch_series,
        },
    })
}

/// One more loop under the empty hooks and one under the agent, with the kernel's BPF
/// statistics on, read while each condition's programs are still loaded.
fn program_times(lab: &Lab, syscall_loop: &SyscallLoop) -> Result<Vec<prog_stats::ProgramTime>> {
    let _stats = prog_stats::StatsEnabled::new()?;
    let mut times = Vec::new();
    for (condition, holder, programs) in [
        (
            Condition::Empty,
            "hook-floor",
            ["noop_sys_enter", "noop_sys_exit"],
        ),
        (
            Condition::Agent,
            "monitor-agent",
            ["mon_sys_enter", "mon_sys_exit"],
        ),
    ] {
        let measured = lab.under(condition, report::BPFTRACE_SCRIPT, || {
            syscall_loop.run()?;
            prog_stats::program_times(holder, &programs)
        })?;
        match measured {
            Measured::Done(found) => times.extend(found),
            Measured::Unavailable(why) => bail!("{} unavailable: {why}", condition.name()),
        }
    }
    Ok(times)
}

/// One start of each condition per round serves every workload: starting the agent or
/// bpftrace takes seconds, the workloads about as long.
fn network_suite(lab: &Lab, options: &Options, environment: Environment) -> Result<NetReport> {
    let workloads = options.workloads();
    let mut results: Vec<WorkloadSeries> = workloads.into_iter().map(WorkloadSeries::new).collect();
    let run_all = || -> Result<Vec<f64>> {
        workloads
            .iter()
            .map(|&workload| net_workload(workload).with_context(|| net_report::label(workload)))
            .collect()
    };
    let unavailable = interleave(
        options.runs,
        &net_report::CONDITIONS,
        |condition| lab.under(condition, net_report::BPFTRACE_SCRIPT, run_all),
        |at, condition, values| {
            for (ws, value) in results.iter_mut().zip(values) {
                println!(
                    "bench: {at} {:<8} {:<20} {value:>10.2} {}",
                    condition.name(),
                    net_report::label(ws.workload),
                    ws.workload.unit()
                );
                if let Some(s) = ws.series_mut(condition) {
                    s.runs.push(value);
                }
            }
        },
    )?;
    for (condition, reason) in unavailable {
        for ws in &mut results {
            if let Some(s) = ws.series_mut(condition) {
                s.unavailable = Some(reason.clone());
            }
        }
    }
    Ok(NetReport {
        environment,
        runs: options.runs,
        workloads: results,
    })
}

impl Options {
    /// The untimed warm-up before the first measured wrk run.
    fn http_warmup_seconds(&self) -> u64 {
        (self.http_seconds / 2).max(1)
    }
}

/// One nginx serves every run; the conditions come and go around it. nginx is stopped when
/// `nginx` is dropped, on success and on any error alike.
fn http_suite(lab: &Lab, options: &Options, environment: Environment) -> Result<HttpReport> {
    let plan = lab.probe_plan()?.clone();
    for family in Family::ALL {
        println!(
            "bench: {} attaches {} ({})",
            family.condition_name(),
            plan.kept(family).join(", "),
            plan.agent_args(family).join(" ")
        );
    }
    let placement = Placement::detect();
    let wrk = Wrk::new(placement)?;
    let mut nginx = Nginx::start(placement)?;
    let url = nginx.url();
    let seconds = options.http_seconds;
    let warmup = options.http_warmup_seconds();
    println!(
        "bench: $ {}",
        crate::process::display(&wrk.command(&url, seconds))
    );
    println!("bench: http warm-up, {warmup} s");
    wrk.run(&url, warmup).context("warm-up")?;
    let series = http_report::Rounds {
        lab,
        wrk: &wrk,
        url: &url,
        seconds,
        runs: options.runs,
        conditions: &http_report::CONDITIONS,
        bpftrace_script: http_report::BPFTRACE_SCRIPT,
        saw: http::agent_saw,
        kind: "",
    }
    .measure(&mut nginx)?;
    let kernel = lab.kernel_cost(&wrk, &url, seconds).map_err(|err| {
        eprintln!("bench: warning: the probes' kernel time per request not measured: {err:#}");
        format!("{err:#}")
    });
    nginx.stop()?;
    Ok(HttpReport {
        environment,
        runs: options.runs,
        setup: http_report::Setup {
            warmup_seconds: warmup,
            wrk_command: wrk.shown(nginx.scheme(), seconds),
            nginx_version: nginx.version.clone(),
            wrk_version: wrk.version.clone(),
            placement,
        },
        series,
        plan,
        kernel,
    })
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

/// How an https or http2 section is measured: see `http_report::Section`.
type NginxSuite<R> = fn(&Lab, u32, (u64, u64), Environment) -> Result<R>;

/// Measures a section against its own nginx, prints its figures and returns its markdown.
fn nginx_section<R: NginxSection>(
    suite: NginxSuite<R>,
    lab: &Lab,
    options: &Options,
    environment: Environment,
) -> Result<String> {
    let timing = (options.http_seconds, options.http_warmup_seconds());
    let report = suite(lab, options.runs, timing, environment)?;
    println!("\n{}", report.console());
    Ok(report.markdown())
}

/// The command that reproduces the report: every option that shaped it, none that did not.
fn command_line(options: &Options) -> String {
    let mut line = String::from("cargo xtask bench");
    if let Some(suite) = options.only {
        line.push_str(&format!(" --only {}", suite.name()));
    }
    line.push_str(&format!(" --runs {}", options.runs));
    let suites = options.suites();
    if suites.contains(&Suite::Syscalls) {
        line.push_str(&format!(" --iterations {}", options.iterations));
    }
    if suites.contains(&Suite::Network) {
        line.push_str(&format!(
            " --connections {} --bulk-bytes {} --small-bytes {}",
            options.connections, options.bulk_bytes, options.small_bytes
        ));
    }
    if suites.contains(&Suite::Databases) {
        line.push_str(&format!(
            " --db-requests {} --db-seconds {}",
            options.db_requests, options.db_seconds
        ));
    }
    if [Suite::Http, Suite::Https, Suite::Http2]
        .iter()
        .any(|suite| suites.contains(suite))
    {
        line.push_str(&format!(" --http-seconds {}", options.http_seconds));
    }
    if options.output.as_path() != Path::new(DEFAULT_OUTPUT) {
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

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|cli| cli.options)
    }

    #[test]
    fn defaults_run_both_suites_at_full_size() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.suites(), Suite::ALL);
        assert_eq!((options.iterations, options.runs), (2_000_000, 7));
        assert_eq!(
            options.workloads(),
            [
                Workload::Conn { count: 20_000 },
                Workload::Bulk {
                    bytes: 1_000_000_000,
                    chunk: 65_536
                },
                Workload::Bulk {
                    bytes: 100_000_000,
                    chunk: 1024
                },
            ]
        );
        assert_eq!(options.output, PathBuf::from(DEFAULT_OUTPUT));
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--connections", "0"]).is_err());
        assert!(parse(&["--only", "disks"]).is_err());
        assert_eq!(options.http_seconds, 10);
        assert_eq!(options.http_warmup_seconds(), 5);
        assert!(parse(&["--http-seconds", "0"]).is_err());
        assert_eq!(parse(&["--only", "http"]).unwrap().suites(), [Suite::Http]);
        assert_eq!(
            parse(&["--only", "https"]).unwrap().suites(),
            [Suite::Https]
        );
    }

    #[test]
    fn command_line_names_only_the_options_that_shaped_the_run() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            command_line(&options),
            "cargo xtask bench --runs 7 --iterations 2000000 --connections 20000 \
             --bulk-bytes 1000000000 --small-bytes 100000000 --db-requests 200000 \
             --db-seconds 5 --http-seconds 10"
        );
        let options = parse(&["--only", "syscalls", "--iterations", "1000", "--runs", "3"]);
        assert_eq!(
            command_line(&options.unwrap()),
            "cargo xtask bench --only syscalls --runs 3 --iterations 1000"
        );
        let options = parse(&[
            "--only",
            "network",
            "--connections",
            "500",
            "--output",
            "/tmp/b.md",
        ]);
        assert_eq!(
            command_line(&options.unwrap()),
            "cargo xtask bench --only network --runs 7 --connections 500 \
             --bulk-bytes 1000000000 --small-bytes 100000000 --output /tmp/b.md"
        );
        let options = parse(&["--only", "http", "--runs", "2", "--http-seconds", "3"]);
        assert_eq!(
            command_line(&options.unwrap()),
            "cargo xtask bench --only http --runs 2 --http-seconds 3"
        );
        let options = parse(&["--only", "databases", "--runs", "3", "--db-seconds", "2"]);
        assert_eq!(
            command_line(&options.unwrap()),
            "cargo xtask bench --only databases --runs 3 --db-requests 200000 --db-seconds 2"
        );
        let options = parse(&["--only", "https", "--runs", "3", "--http-seconds", "5"]);
        assert_eq!(
            command_line(&options.unwrap()),
            "cargo xtask bench --only https --runs 3 --http-seconds 5"
        );
    }
}
