//! One measurement under one condition: start what the condition attaches, wait until it
//! is really attached, time the workload, tear it down.
use std::{
    cell::OnceCell,
    env,
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    cpu::{AgentCpu, process_cpu},
    families::ProbePlan,
    http::Wrk,
    prog_stats::{self, KernelCost, StatsEnabled},
    report::Condition,
    worker::{WORKER_COMMAND, Workload},
};
use crate::{
    agent_http::{free_port, get, wait_until_healthy},
    process::{Supervised, log_tail, output, target_dir, wait_for_line, watch_lines},
};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// bpftrace parses kernel BTF before attaching, which can take a while on a cold cache.
const BPFTRACE_ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// bpftrace prints "Attaching N probes..." before it has attached them all.
const BPFTRACE_SETTLE: Duration = Duration::from_secs(1);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lets the agent drain the events of the work's last moments before /metrics is read.
const SCRAPE_SETTLE: Duration = Duration::from_secs(1);
/// On SIGINT bpftrace prints every histogram before exiting.
const BPFTRACE_STOP_GRACE: Duration = Duration::from_secs(30);

pub enum Measured<T> {
    Done(T),
    Unavailable(String),
}

impl<T> Measured<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Measured<U> {
        match self {
            Measured::Done(value) => Measured::Done(f(value)),
            Measured::Unavailable(reason) => Measured::Unavailable(reason),
        }
    }
}

/// What a run under a condition yielded besides the work's own value. Only the agent
/// conditions fill these in.
pub struct Observed<T> {
    pub value: T,
    /// The agent's /metrics right after the work (`None`: it did not answer).
    pub metrics: Option<String>,
    /// The agent's CPU time during the work (`None`: unreadable).
    pub cpu: Option<AgentCpu>,
}

impl<T> Observed<T> {
    fn plain(value: T) -> Self {
        Self {
            value,
            metrics: None,
            cpu: None,
        }
    }
}

/// The release binaries under test and where their logs go.
pub struct Lab {
    release: PathBuf,
    agent: PathBuf,
    logs: PathBuf,
    /// The agent's probes, read from its `--help` when a family condition first needs them.
    plan: OnceCell<ProbePlan>,
}

/// A helper's stdout/stderr file: kept out of the benchmark's output, quoted on failure.
struct Log {
    name: &'static str,
    path: PathBuf,
    file: File,
}

impl Log {
    /// Turns a helper failure into an error that carries the helper's own last words.
    fn explain(&self) -> String {
        let tail = log_tail(&self.path, 5);
        if tail.is_empty() {
            format!("{} failed (log: {})", self.name, self.path.display())
        } else {
            format!(
                "{} failed (log: {}): {tail}",
                self.name,
                self.path.display()
            )
        }
    }
}

impl Lab {
    pub fn new() -> Result<Self> {
        let release = target_dir()?.join("release");
        let logs = target_dir()?.join("xtask-bench");
        fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let agent = release_binary(&release, "monitor-agent")?;
        Ok(Self {
            release,
            agent,
            logs,
            plan: OnceCell::new(),
        })
    }

    /// The agent's probes by family, from the possible values of its `--probes.disable`.
    pub fn probe_plan(&self) -> Result<&ProbePlan> {
        if let Some(plan) = self.plan.get() {
            return Ok(plan);
        }
        let help = output(Command::new(&self.agent).arg("--help"))?;
        let plan = ProbePlan::from_help(&help).with_context(|| {
            format!(
                "reading the probe names from `{} --help`",
                self.agent.display()
            )
        })?;
        Ok(self.plan.get_or_init(|| plan))
    }

    pub fn logs(&self) -> &Path {
        &self.logs
    }

    /// A release binary of the workspace, checked to exist.
    pub fn binary(&self, name: &str) -> Result<PathBuf> {
        release_binary(&self.release, name)
    }

    /// Runs `work` once with `condition` attached, and detaches it again. `bpftrace_script`
    /// is what the bpftrace condition runs.
    pub fn under<T>(
        &self,
        condition: Condition,
        bpftrace_script: &str,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<Measured<T>> {
        match condition {
            Condition::None => work().map(Measured::Done),
            Condition::Empty => self.with_hook_floor(work),
            Condition::Agent
            | Condition::AgentOnly(_)
            | Condition::AgentUserFraming
            | Condition::AgentDatabases
            | Condition::AgentNoTls
            | Condition::AgentNoHttp2
            | Condition::AgentNoDbFraming => Ok(self
                .with_agent(condition, work, false)?
                .map(|observed| observed.value)),
            Condition::Bpftrace => self.with_bpftrace(bpftrace_script, work),
        }
    }

    /// One more load run under the whole agent with the kernel's BPF statistics on: what every
    /// program the agent holds ran during it, per request.
    pub fn kernel_cost(&self, wrk: &Wrk, url: &str, seconds: u64) -> Result<KernelCost> {
        let _stats = StatsEnabled::new()?;
        match self.under(Condition::Agent, "", || {
            let before = prog_stats::held_counters("monitor-agent")?;
            let result = wrk.run(url, seconds)?;
            let after = prog_stats::held_counters("monitor-agent")?;
            if result.requests == 0 {
                bail!("{} completed no requests", wrk.name());
            }
            Ok(KernelCost {
                requests: result.requests,
                requests_per_sec: result.requests_per_sec,
                programs: prog_stats::deltas(&before, &after),
            })
        })? {
            Measured::Done(cost) => Ok(cost),
            Measured::Unavailable(why) => bail!("agent unavailable: {why}"),
        }
    }

    /// `under`, and under the agent also its /metrics as they were right after `work` and
    /// its CPU time during `work`.
    pub fn under_observed<T>(
        &self,
        condition: Condition,
        bpftrace_script: &str,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<Measured<Observed<T>>> {
        if condition.is_agent() {
            self.with_agent(condition, work, true)
        } else {
            Ok(self
                .under(condition, bpftrace_script, work)?
                .map(Observed::plain))
        }
    }

    /// The agent's command-line arguments under `condition`, besides its listen address.
    fn agent_args(&self, condition: Condition) -> Result<Vec<String>> {
        Ok(match condition {
            Condition::AgentOnly(family) => self.probe_plan()?.agent_args(family).to_vec(),
            Condition::AgentUserFraming => {
                vec!["--probes.request-framing".into(), "user".into()]
            }
            Condition::AgentDatabases => [
                "--probes.redis=false",
                "--probes.postgres=false",
                "--probes.databases",
            ]
            .map(String::from)
            .to_vec(),
            Condition::AgentNoTls => vec!["--probes.tls=false".into()],
            Condition::AgentNoHttp2 => vec!["--probes.http2=false".into()],
            Condition::AgentNoDbFraming => ["--probes.redis=false", "--probes.postgres=false"]
                .map(String::from)
                .to_vec(),
            _ => Vec::new(),
        })
    }

    fn log(&self, name: &'static str) -> Result<Log> {
        let path = self.logs.join(format!("{name}.log"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Log { name, path, file })
    }

    fn with_hook_floor<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<Measured<T>> {
        let log = self.log("hook-floor")?;
        let mut floor = spawn_until_line(
            "hook-floor",
            // Held open by us: hook-floor exits at EOF, so it cannot outlive xtask.
            Command::new(self.binary("hook-floor")?).stdin(Stdio::piped()),
            &log,
            |line| line.trim() == "ready",
            READY_TIMEOUT,
            "`ready`",
        )?;
        let value = work()?;
        floor.ensure_running().with_context(|| log.explain())?;
        floor.stop(libc::SIGTERM, STOP_GRACE)?;
        Ok(Measured::Done(value))
    }

    fn with_agent<T>(
        &self,
        condition: Condition,
        work: impl FnOnce() -> Result<T>,
        scrape: bool,
    ) -> Result<Measured<Observed<T>>> {
        let log = self.log("agent")?;
        let port = free_port()?;
        let mut agent = Supervised::spawn(
            "monitor-agent",
            Command::new(&self.agent)
                .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
                .args(self.agent_args(condition)?)
                .stdin(Stdio::null())
                .stdout(log.file.try_clone()?)
                .stderr(log.file.try_clone()?),
        )?;
        wait_until_healthy(&mut agent, port).with_context(|| log.explain())?;
        let pid = agent.child_mut().id();
        let cpu_before = process_cpu(pid);
        let started = Instant::now();
        let value = work()?;
        let wall = started.elapsed();
        let cpu = match (cpu_before, process_cpu(pid)) {
            (Ok(before), Ok(after)) => Some(AgentCpu {
                cpu: after.saturating_sub(before),
                wall,
            }),
            (Err(err), _) | (_, Err(err)) => {
                eprintln!("bench: warning: the agent's CPU time: {err:#}");
                None
            }
        };
        agent.ensure_running().with_context(|| log.explain())?;
        let metrics = if scrape {
            thread::sleep(SCRAPE_SETTLE);
            match get(port, "/metrics") {
                Some((200, body)) => Some(body),
                other => {
                    let status = other.map_or("no answer".to_owned(), |(s, _)| s.to_string());
                    eprintln!("bench: warning: agent /metrics: {status}");
                    None
                }
            }
        } else {
            None
        };
        match agent.stop(libc::SIGTERM, STOP_GRACE)? {
            Some(status) if !status.success() => {
                eprintln!(
                    "bench: warning: agent exited with {status} on SIGTERM ({})",
                    log.explain()
                );
            }
            _ => {}
        }
        Ok(Measured::Done(Observed {
            value,
            metrics,
            cpu,
        }))
    }

    /// bpftrace is a point of comparison, not the subject: if it cannot run here the
    /// condition is reported as unavailable instead of failing the whole benchmark.
    fn with_bpftrace<T>(
        &self,
        script: &str,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<Measured<T>> {
        let log = self.log("bpftrace")?;
        let mut bpftrace = match start_bpftrace(script, &log) {
            Ok(bpftrace) => bpftrace,
            Err(err) => return Ok(Measured::Unavailable(format!("{err:#}"))),
        };
        let value = work()?;
        if let Err(err) = bpftrace.ensure_running().with_context(|| log.explain()) {
            return Ok(Measured::Unavailable(format!("{err:#}")));
        }
        bpftrace.stop(libc::SIGINT, BPFTRACE_STOP_GRACE)?;
        Ok(Measured::Done(value))
    }
}

fn release_binary(release: &Path, name: &str) -> Result<PathBuf> {
    let path = release.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: the release build did not produce it",
            path.display()
        );
    }
    Ok(path)
}

/// `syscall-loop`: prints the ns per getppid call of its fastest batch.
pub struct SyscallLoop {
    pub path: PathBuf,
    pub iterations: u64,
}

impl SyscallLoop {
    pub fn run(&self) -> Result<f64> {
        let stdout = output(Command::new(&self.path).arg(self.iterations.to_string()))?;
        parse_positive("syscall-loop", "ns per call", &stdout)
    }
}

/// One network workload, run by this very binary (`cargo xtask bench-net-worker`).
pub fn net_workload(workload: Workload) -> Result<f64> {
    let me = env::current_exe().context("locating the xtask binary for the network worker")?;
    let stdout = output(Command::new(me).arg(WORKER_COMMAND).args(workload.args()))?;
    parse_positive("bench-net-worker", workload.unit(), &stdout)
}

fn start_bpftrace(script: &str, log: &Log) -> Result<Supervised> {
    let mut bpftrace = spawn_until_line(
        "bpftrace",
        Command::new("bpftrace")
            .args(["-e", script])
            .stdin(Stdio::null()),
        log,
        |line| line.starts_with("Attaching"),
        BPFTRACE_ATTACH_TIMEOUT,
        "`Attaching` line",
    )?;
    thread::sleep(BPFTRACE_SETTLE);
    bpftrace.ensure_running().with_context(|| log.explain())?;
    Ok(bpftrace)
}

/// Starts a helper with stderr to its log and waits for the stdout line saying it is ready.
/// The watcher thread keeps draining stdout afterwards, so a chatty helper (bpftrace prints
/// its maps at exit) never blocks on a full pipe.
fn spawn_until_line(
    name: &str,
    cmd: &mut Command,
    log: &Log,
    wanted: impl Fn(&str) -> bool,
    timeout: Duration,
    what: &str,
) -> Result<Supervised> {
    let mut child = Supervised::spawn(
        name,
        cmd.stdout(Stdio::piped()).stderr(log.file.try_clone()?),
    )?;
    let stdout = child
        .child_mut()
        .stdout
        .take()
        .with_context(|| format!("{name} stdout not piped"))?;
    let lines = watch_lines(stdout);
    wait_for_line(&lines, wanted, timeout, what).with_context(|| log.explain())?;
    Ok(child)
}

/// A helper's whole stdout: one positive number in `unit`.
fn parse_positive(helper: &str, unit: &str, stdout: &str) -> Result<f64> {
    let text = stdout.trim();
    let value: f64 = text
        .parse()
        .with_context(|| format!("{helper} printed {text:?}, not a number of {unit}"))?;
    if !value.is_finite() || value <= 0.0 {
        bail!("{helper} printed an implausible {value} {unit}");
    }
    Ok(value)
}

/// Rounds of every condition in turn, so slow drift (thermal, frequency, background load)
/// lands on all conditions alike instead of on whichever ran last. Returns the conditions
/// that could not be measured, with the reason.
pub fn interleave<T>(
    runs: u32,
    conditions: &[Condition],
    mut measure: impl FnMut(Condition) -> Result<Measured<T>>,
    mut record: impl FnMut(&str, Condition, T),
) -> Result<Vec<(Condition, String)>> {
    let mut unavailable: Vec<(Condition, String)> = Vec::new();
    for round in 1..=runs {
        let at = format!("round {round}/{runs}");
        for &condition in conditions {
            if unavailable.iter().any(|(c, _)| *c == condition) {
                continue; // it failed once; retrying every round would only repeat the reason
            }
            let name = condition.name();
            let measured = measure(condition).with_context(|| format!("{at}, condition {name}"))?;
            match measured {
                Measured::Done(value) => record(&at, condition, value),
                Measured::Unavailable(reason) => {
                    println!("bench: {at} {name:<14} n/a: {reason}");
                    unavailable.push((condition, reason));
                }
            }
        }
    }
    Ok(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_helpers_single_number() {
        assert_eq!(parse_positive("l", "ns", "123.4\n").unwrap(), 123.4);
        assert!(parse_positive("l", "ns", "").is_err());
        assert!(parse_positive("l", "ns", "NaN").is_err());
        assert!(parse_positive("l", "ns", "-1.0").is_err());
        let err = parse_positive("bench-net-worker", "µs per connection", "oops").unwrap_err();
        assert!(
            err.to_string()
                .contains("not a number of µs per connection")
        );
    }
}
