//! Running commands and supervising long-lived helper processes.
use std::{
    env, fs,
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

/// The workspace root: every path the commands use is anchored here, not at the caller's cwd.
pub fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("the xtask crate has no parent directory")
}

/// Where cargo puts build outputs, honouring CARGO_TARGET_DIR like cargo itself does.
pub fn target_dir() -> Result<PathBuf> {
    let root = workspace_root()?;
    Ok(match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir), // `join` keeps an absolute dir as it is
        None => root.join("target"),
    })
}

/// cargo in the workspace root. Through the rustup proxy rather than $CARGO so printed
/// commands can be pasted as they are; the RUSTUP_TOOLCHAIN that rustup exported for
/// `cargo xtask` still selects the same toolchain.
pub fn cargo() -> Result<Command> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()?);
    Ok(cmd)
}

/// The release agent and the workload helpers (`syscall-loop`, `hook-floor`, `gt-workload`, …)
/// that the benchmark and the soak run.
pub fn build_release_bins() -> Result<()> {
    run(cargo()?.args([
        "build",
        "--release",
        "-p",
        "monitor-agent",
        "-p",
        "tests",
        "--bins",
    ]))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The command as a shell line, for progress output and error messages.
pub fn display(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs a command in view of the user (inherited stdio) and fails unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    eprintln!("xtask: $ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a query command quietly and returns its stdout; its stderr explains a failure.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`{shown}` failed ({}): {}", out.status, stderr.trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// Whether a command starts and exits successfully, its output discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Looks a program up like the shell would. The sbin directories are searched too because
/// non-root PATHs often lack them, yet tools such as bpftool live there.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The newest PostgreSQL binaries Debian installed (`/usr/lib/postgresql/N/bin`).
pub fn postgres_bin() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql: `cargo xtask setup` installs postgresql-15")?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .context("no PostgreSQL server under /usr/lib/postgresql")
}

/// `program` run by the unprivileged user 65534 (nobody): PostgreSQL refuses root.
pub fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program);
    cmd
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// How long a killed helper may take to go.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A long-lived helper (agent, bpftrace, hook-floor). Dropping it kills the process, so a
/// failed benchmark never leaves probes attached behind it.
pub struct Supervised {
    name: String,
    child: Child,
}

impl Supervised {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let shown = display(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} (`{shown}`)"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))
    }

    /// Fails if the process is gone: a measurement taken after that would be meaningless.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exited()? {
            None => Ok(()),
            Some(status) => bail!("{} exited early ({status})", self.name),
        }
    }

    /// Asks the process to stop with `signal` and waits up to `grace` before killing it.
    /// Returns its exit status, or `None` when it had to be killed.
    pub fn stop(&mut self, signal: libc::c_int, grace: Duration) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.exited()? {
            return Ok(Some(status));
        }
        self.signal(signal)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "xtask: warning: {} ignored signal {signal} for {grace:?}; killing it",
            self.name
        );
        self.kill();
        Ok(None)
    }

    fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())
            .with_context(|| format!("pid of {} out of range", self.name))?;
        // SAFETY: plain syscall on a pid we spawned and have not reaped, so it is still ours.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending signal {signal} to {}", self.name));
        }
        Ok(())
    }

    fn kill(&mut self) {
        // Errors mean it is already gone, which is what we want.
        let _ = self.child.kill();
        // A process stuck in the kernel (uninterruptible sleep) outlives SIGKILL: wait a
        // while, not forever, so that whoever stops it reports it instead of hanging.
        let deadline = Instant::now() + KILL_WAIT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "xtask: warning: {} still running {KILL_WAIT:?} after SIGKILL (stuck in the kernel?)",
            self.name
        );
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Forwards a child's output lines over a channel from a background thread. The thread
/// keeps reading after the receiver is dropped, so a chatty child (bpftrace printing its
/// maps at exit) never blocks on a full pipe.
pub fn watch_lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for the first line matching `wanted`; fails on timeout or when the stream ends.
pub fn wait_for_line(
    lines: &Receiver<String>,
    wanted: impl Fn(&str) -> bool,
    timeout: Duration,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Ok(()),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => bail!("no {what} within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("output ended before {what}"));
            }
        }
    }
}

/// The last lines of a log file, to put a helper's own explanation into our error.
pub fn log_tail(path: &Path, lines: usize) -> String {
    last_lines(path, lines).join(" / ")
}

/// The last `lines` non-blank lines of a log (none when it cannot be read).
pub fn last_lines(path: &Path, lines: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let all: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_program_and_args() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "-p", "monitor-agent"]);
        assert_eq!(display(&cmd), "cargo build -p monitor-agent");
    }

    #[test]
    fn finds_sh_but_not_nonsense() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-xtask").is_none());
    }

    #[test]
    fn wait_for_line_skips_until_match_and_reports_end_of_output() {
        let lines = watch_lines(&b"starting\nAttaching 2 probes...\n"[..]);
        let found = wait_for_line(
            &lines,
            |l| l.starts_with("Attaching"),
            Duration::from_secs(5),
            "x",
        );
        assert!(found.is_ok());
        let lines = watch_lines(&b"oops\n"[..]);
        let err = wait_for_line(&lines, |l| l == "ready", Duration::from_secs(5), "`ready`");
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("ended before `ready`")
        );
    }

    #[test]
    fn supervised_stop_reports_exit_status() {
        let mut sleeper = Supervised::spawn("sleep", Command::new("sleep").arg("30")).unwrap();
        sleeper.ensure_running().unwrap();
        let status = sleeper.stop(libc::SIGTERM, Duration::from_secs(5)).unwrap();
        assert!(status.is_some_and(|s| !s.success()));
        assert!(sleeper.ensure_running().is_err());
    }
}
