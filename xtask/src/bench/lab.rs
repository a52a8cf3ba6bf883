//! One measurement under one condition: start what the condition attaches, wait until it
//! is really attached, time the syscall loop, tear it down.
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::report::{BPFTRACE_SCRIPT, Condition};
use crate::{
    agent_http::{free_port, wait_until_healthy},
    process::{Supervised, log_tail, output, target_dir, wait_for_line, watch_lines},
};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// bpftrace parses kernel BTF before attaching, which can take a while on a cold cache.
const BPFTRACE_ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// bpftrace prints "Attaching N probes..." before it has attached them all.
const BPFTRACE_SETTLE: Duration = Duration::from_secs(1);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// On SIGINT bpftrace prints every histogram before exiting.
const BPFTRACE_STOP_GRACE: Duration = Duration::from_secs(30);

pub enum Measured {
    NsPerCall(f64),
    Unavailable(String),
}

/// The release binaries under test and where their logs go.
pub struct Lab {
    syscall_loop: PathBuf,
    hook_floor: PathBuf,
    agent: PathBuf,
    logs: PathBuf,
    iterations: u64,
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
    pub fn new(iterations: u64) -> Result<Self> {
        let release = target_dir()?.join("release");
        let binary = |name: &str| -> Result<PathBuf> {
            let path = release.join(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: the release build did not produce it",
                    path.display()
                );
            }
            Ok(path)
        };
        let logs = target_dir()?.join("xtask-bench");
        fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Self {
            syscall_loop: binary("syscall-loop")?,
            hook_floor: binary("hook-floor")?,
            agent: binary("monitor-agent")?,
            logs,
            iterations,
        })
    }

    pub fn logs(&self) -> &Path {
        &self.logs
    }

    pub fn measure(&self, condition: Condition) -> Result<Measured> {
        match condition {
            Condition::None => self.syscall_loop().map(Measured::NsPerCall),
            Condition::Empty => self.with_hook_floor(),
            Condition::Agent => self.with_agent(),
            Condition::Bpftrace => self.with_bpftrace(),
        }
    }

    fn syscall_loop(&self) -> Result<f64> {
        let stdout = output(Command::new(&self.syscall_loop).arg(self.iterations.to_string()))?;
        parse_ns_per_call(&stdout)
    }

    fn log(&self, name: &'static str) -> Result<Log> {
        let path = self.logs.join(format!("{name}.log"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Log { name, path, file })
    }

    fn with_hook_floor(&self) -> Result<Measured> {
        let log = self.log("hook-floor")?;
        let mut floor = spawn_until_line(
            "hook-floor",
            // Held open by us: hook-floor exits at EOF, so it cannot outlive xtask.
            Command::new(&self.hook_floor).stdin(Stdio::piped()),
            &log,
            |line| line.trim() == "ready",
            READY_TIMEOUT,
            "`ready`",
        )?;
        let ns = self.syscall_loop()?;
        floor.ensure_running().with_context(|| log.explain())?;
        floor.stop(libc::SIGTERM, STOP_GRACE)?;
        Ok(Measured::NsPerCall(ns))
    }

    fn with_agent(&self) -> Result<Measured> {
        let log = self.log("agent")?;
        let port = free_port()?;
        let mut agent = Supervised::spawn(
            "monitor-agent",
            Command::new(&self.agent)
                .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(log.file.try_clone()?)
                .stderr(log.file.try_clone()?),
        )?;
        wait_until_healthy(&mut agent, port).with_context(|| log.explain())?;
        let ns = self.syscall_loop()?;
        agent.ensure_running().with_context(|| log.explain())?;
        match agent.stop(libc::SIGTERM, STOP_GRACE)? {
            Some(status) if !status.success() => {
                eprintln!(
                    "bench: warning: agent exited with {status} on SIGTERM ({})",
                    log.explain()
                );
            }
            _ => {}
        }
        Ok(Measured::NsPerCall(ns))
    }

    /// bpftrace is a point of comparison, not the subject: if it cannot run here the
    /// condition is reported as unavailable instead of failing the whole benchmark.
    fn with_bpftrace(&self) -> Result<Measured> {
        let log = self.log("bpftrace")?;
        let mut bpftrace = match start_bpftrace(&log) {
            Ok(bpftrace) => bpftrace,
            Err(err) => return Ok(Measured::Unavailable(format!("{err:#}"))),
        };
        let ns = self.syscall_loop()?;
        if let Err(err) = bpftrace.ensure_running().with_context(|| log.explain()) {
            return Ok(Measured::Unavailable(format!("{err:#}")));
        }
        bpftrace.stop(libc::SIGINT, BPFTRACE_STOP_GRACE)?;
        Ok(Measured::NsPerCall(ns))
    }
}

fn start_bpftrace(log: &Log) -> Result<Supervised> {
    let mut bpftrace = spawn_until_line(
        "bpftrace",
        Command::new("bpftrace")
            .args(["-e", BPFTRACE_SCRIPT])
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

fn parse_ns_per_call(stdout: &str) -> Result<f64> {
    let text = stdout.trim();
    let ns: f64 = text
        .parse()
        .with_context(|| format!("syscall-loop printed {text:?}, not a number of ns per call"))?;
    if !ns.is_finite() || ns <= 0.0 {
        bail!("syscall-loop printed an implausible {ns} ns per call");
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_loop_output() {
        assert_eq!(parse_ns_per_call("123.4\n").unwrap(), 123.4);
        assert!(parse_ns_per_call("").is_err());
        assert!(parse_ns_per_call("NaN").is_err());
        assert!(parse_ns_per_call("-1.0").is_err());
    }
}
