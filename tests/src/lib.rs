//! Harness for the root integration tests: start the real agent binary, scrape its real
//! endpoint, run workloads under a chosen `comm`, and read Prometheus text exactly.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// The agent under test: `MONITOR_AGENT_BIN` (set by `cargo xtask test`), else the debug build.
pub fn agent_bin() -> PathBuf {
    let bin = std::env::var_os("MONITOR_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/monitor-agent")
        });
    assert!(
        bin.exists(),
        "{} missing: run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Agent {
    child: Option<Child>,
    pub address: SocketAddr,
    log: PathBuf,
}

impl Agent {
    /// Starts the agent on a free loopback port and waits until `/healthz` answers 200.
    pub fn start(extra_args: &[&str]) -> Agent {
        Agent::start_via(&[], extra_args)
    }

    /// Like `start`, with the agent run through `wrapper` (e.g. `setpriv …`, `unshare …`).
    pub fn start_via(wrapper: &[&str], extra_args: &[&str]) -> Agent {
        Agent::start_checked(wrapper, extra_args, |address| {
            matches!(http_get(address, "/healthz"), Ok((200, _)))
        })
    }

    /// Starts the agent and waits until `healthy(address)` holds (e.g. over TLS).
    pub fn start_checked(
        wrapper: &[&str],
        extra_args: &[&str],
        mut healthy: impl FnMut(SocketAddr) -> bool,
    ) -> Agent {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::temp_dir().join(format!("monitor-agent-{}.log", address.port()));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = match wrapper {
            [] => Command::new(agent_bin()),
            [program, args @ ..] => {
                let mut command = Command::new(program);
                command.args(args).arg(agent_bin());
                command
            }
        };
        let child = command
            .arg("--web.listen-address")
            .arg(address.to_string())
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawning the agent");
        let mut agent = Agent {
            child: Some(child),
            address,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if healthy(agent.address) {
                return agent;
            }
            if let Some(status) = agent.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited during start-up ({status}):\n{}", agent.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent not healthy after 30 s:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn scrape(&self) -> Scrape {
        let (status, body) = http_get(self.address, "/metrics").expect("scraping /metrics");
        assert_eq!(status, 200, "{body}");
        Scrape::parse(&body)
    }

    /// Sends `signal`, waits for the exit, and returns the exit status and the whole log.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status =
            wait_timeout(&mut child, Duration::from_secs(20)).expect("agent did not stop in 20 s");
        (status, self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A minimal HTTP/1.0 GET: status and body.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    parse_http_response(&response)
}

/// Status and body of an HTTP/1.x response; an error unless it starts with a status line.
pub fn parse_http_response(response: &str) -> std::io::Result<(u16, String)> {
    let status = response
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line in {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// A `comm` no other process on the host has: `prefix` plus this test process's PID.
pub fn unique_comm(prefix: &str) -> String {
    let comm = format!("{prefix}{}", std::process::id());
    assert!(
        comm.len() <= 15,
        "comm {comm} longer than the kernel's 15 bytes"
    );
    comm
}

/// Runs `binary` so that its `comm` is `comm`: the kernel names a task after the basename
/// of the path it was exec'd through, so a symlink does it without touching the binary.
/// Returns the workload's PID and its output; panics if it failed.
pub fn run_as(
    comm: impl AsRef<std::ffi::OsStr>,
    binary: &Path,
    args: &[String],
) -> (u32, std::process::Output) {
    let comm = comm.as_ref();
    let child = spawn_named(comm, binary, args);
    let pid = child.id();
    let output = child.wait_with_output().expect("waiting for the workload");
    assert!(
        output.status.success(),
        "workload {comm:?} failed: {output:?}"
    );
    (pid, output)
}

/// Spawns `binary` exec'd through a symlink named `comm`, stdout and stderr piped.
fn spawn_named(comm: &std::ffi::OsStr, binary: &Path, args: &[String]) -> Child {
    spawn_named_with(comm, binary, |command| {
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    })
}

/// Spawns `binary` exec'd through a symlink named `comm` (the kernel names a task after the
/// basename of the path it was exec'd through), `configure` setting its arguments and stdio.
/// Each call has its own link directory: tests run in parallel threads of one process, and a
/// shared directory removed by one could vanish under another's exec. The link can go as
/// soon as `spawn` returns, because the kernel took the name at exec.
pub fn spawn_named_with(
    comm: impl AsRef<std::ffi::OsStr>,
    binary: &Path,
    configure: impl FnOnce(&mut Command),
) -> Child {
    static SPAWNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SPAWNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("monitor-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(comm.as_ref());
    std::os::unix::fs::symlink(binary, &link).unwrap();
    let mut command = Command::new(&link);
    // cargo test sets LD_LIBRARY_PATH to a dozen directories; the dynamic loader's failing
    // openat(2)s through them would be real, counted, and not the workload's ground truth.
    command.env_remove("LD_LIBRARY_PATH");
    configure(&mut command);
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("running {}: {err}", binary.display()));
    let _ = std::fs::remove_dir_all(&dir);
    child
}

/// A workload running as a chosen `comm` next to the test (a server its clients need),
/// started by `spawn_as`; killed on drop if the test did not `finish` it.
pub struct Spawned {
    pub comm: String,
    /// The workload's first line of output, its readiness signal (e.g. `ready 41234`).
    pub ready: String,
    child: Option<Child>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

/// Like `run_as`, without waiting: returns once the workload printed its first line, a line
/// that must start with `ready`. Panics, with the workload's stderr, if it exits first.
pub fn spawn_as(comm: &str, binary: &Path, args: &[String]) -> Spawned {
    use std::io::BufRead as _;
    let mut child = spawn_named(comm.as_ref(), binary, args);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    if !ready.starts_with("ready") {
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        panic!(
            "workload {comm} {args:?} not ready: {ready:?}, {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Spawned {
        comm: comm.to_owned(),
        ready: ready.trim_end().to_owned(),
        child: Some(child),
        stdout,
    }
}

impl Spawned {
    /// The port in a `ready <port>` line.
    pub fn port(&self) -> u16 {
        self.ready
            .strip_prefix("ready ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{}: no port in {:?}", self.comm, self.ready))
    }

    /// Waits up to `timeout` for the exit; panics unless it succeeded. Returns the rest of
    /// its stdout.
    pub fn finish(mut self, timeout: Duration) -> String {
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut stdout = String::new();
        let _ = self.stdout.read_to_string(&mut stdout);
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        match status {
            Some(status) if status.success() => stdout,
            Some(status) => panic!("workload {} failed ({status}): {stdout}{stderr}", self.comm),
            None => panic!(
                "workload {} still running after {timeout:?}: {stdout}{stderr}",
                self.comm
            ),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Observes until `done` holds of an observation, for `timeout` at most, and returns it;
/// past that, panics with `report` of the last one (what was seen, not only that it timed
/// out).
pub fn settles<T>(
    timeout: Duration,
    mut observe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
    report: impl FnOnce(&T) -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = observe();
        if done(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?}: {}", report(&seen));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ground-truth workload (`gt-workload`) and what the agent must report for it.
pub mod ground_truth {
    use std::{path::Path, time::Duration};

    use super::{Agent, Scrape, eventually, run_as};

    pub const OPENAT_ENOENT: u64 = 37;
    pub const CLOSE_EBADF: u64 = 23;
    pub const NANOSLEEPS: u64 = 5;
    pub const SLEEP_MS: u64 = 20;
    const DURATION: &str = "monitor_syscall_duration_seconds";
    const ERRORS: &str = "monitor_syscall_errors_total";

    pub fn args() -> Vec<String> {
        [OPENAT_ENOENT, CLOSE_EBADF, NANOSLEEPS, SLEEP_MS]
            .map(|n| n.to_string())
            .to_vec()
    }

    /// Scrapes until the workload's nanosleep series is complete (its exit may be in flight).
    pub fn scrape_when_reported(agent: &Agent, comm: &str) -> Scrape {
        eventually(Duration::from_secs(10), "the workload's series", || {
            let scrape = agent.scrape();
            let count = scrape.value(
                &format!("{DURATION}_count"),
                &[("comm", comm), ("syscall", "nanosleep")],
            )?;
            (count >= NANOSLEEPS as f64).then_some(scrape)
        })
    }

    /// Runs the workload as `comm` and asserts the exact counts, errnos and latency buckets.
    pub fn run_and_check(agent: &Agent, comm: &str, workload: &Path) -> Scrape {
        run_as(comm, workload, &args());
        let scrape = scrape_when_reported(agent, comm);
        let errors = |syscall, errno| {
            scrape.value(
                ERRORS,
                &[("comm", comm), ("syscall", syscall), ("errno", errno)],
            )
        };
        assert_eq!(
            errors("openat", "ENOENT"),
            Some(OPENAT_ENOENT as f64),
            "{}",
            agent.log()
        );
        assert_eq!(errors("close", "EBADF"), Some(CLOSE_EBADF as f64));
        let all_openat_errors: f64 = scrape
            .matching(ERRORS, &[("comm", comm), ("syscall", "openat")])
            .map(|s| s.value)
            .sum();
        assert_eq!(
            all_openat_errors, OPENAT_ENOENT as f64,
            "no other openat failed"
        );

        let sleep = [("comm", comm), ("syscall", "nanosleep")];
        let count = scrape.value(&format!("{DURATION}_count"), &sleep);
        assert_eq!(count, Some(NANOSLEEPS as f64));
        assert!(
            scrape.value(ERRORS, &sleep).is_none(),
            "no nanosleep failed"
        );

        // All K sleeps in the one bucket whose bounds contain 20 ms, none below it.
        let buckets = scrape.buckets(DURATION, &sleep);
        let target = SLEEP_MS as f64 / 1000.0;
        let upper = buckets
            .iter()
            .position(|&(le, _)| le >= target)
            .expect("a bucket ≥ 20 ms");
        assert!(upper > 0, "20 ms must not be in the first bucket");
        let (lower_le, below) = buckets[upper - 1];
        let (upper_le, at_or_below) = buckets[upper];
        assert!(lower_le < target && target <= upper_le);
        assert_eq!(
            below, 0.0,
            "no sleep finished in under {lower_le} s: {buckets:?}"
        );
        assert_eq!(
            at_or_below, NANOSLEEPS as f64,
            "every sleep ≤ {upper_le} s: {buckets:?}"
        );
        // Exactly the kernel's log2 bounds: 2^25 ns holds 20 ms.
        assert_eq!(upper_le, (1u64 << 25) as f64 / 1e9);
        let sum = scrape.value(&format!("{DURATION}_sum"), &sleep).unwrap();
        assert!(
            sum >= target * NANOSLEEPS as f64,
            "sum {sum} below {NANOSLEEPS} × 20 ms"
        );
        assert_eq!(
            scrape.value(
                "monitor_ringbuf_events_lost_total",
                &[("ringbuf", "process_events")]
            ),
            Some(0.0)
        );
        scrape
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("bad sample line {line:?}")))
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// Samples of `name` carrying at least the given labels.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample of `name` with the given labels; `None` if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} is ambiguous: {found:#?}"
        );
        found.first().map(|sample| sample.value)
    }
}

impl Scrape {
    /// Cumulative counts of the histogram `family`'s series with these labels, as (le, count)
    /// ascending.
    pub fn buckets(&self, family: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let name = format!("{family}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .matching(&name, labels)
            .map(|sample| {
                let le = &sample.labels["le"];
                (
                    if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    },
                    sample.value,
                )
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// The sum of all samples of `name` carrying at least these labels (0 if there are none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name_and_labels, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let Some((name, rest)) = name_and_labels.split_once('{') else {
        return Some(Sample {
            name: name_and_labels.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The workspace root, where `deploy/` lives.
/// IDs of the BPF programs process `pid` holds open (the `prog_id` of its fds' fdinfo):
/// what one agent loaded, whatever else runs on the machine; empty once it has exited.
pub fn programs_held_by(pid: u32) -> std::collections::BTreeSet<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Default::default();
    };
    fds.filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("prog_id:"))?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// IDs of the agent's programs (named `mon_…`) loaded in the kernel now, by any process.
pub fn loaded_program_ids() -> std::collections::BTreeSet<u32> {
    let output = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(" name mon_"))
        .filter_map(|line| line.split(':').next()?.trim().parse().ok())
        .collect()
}

/// Debian's Python interpreter, not a version manager's shim: a shim is a script that execs
/// another binary, which would rename the process a test runs under a unique comm.
pub fn python3() -> PathBuf {
    std::fs::canonicalize("/usr/bin/python3").expect("/usr/bin/python3 (Debian package python3)")
}

/// The `python3` on PATH, where `cargo xtask setup` installs the PyPI packages the tests
/// import (`grpcio`), as the binary itself: a wrapper script (pyenv's shim) would exec it
/// under another name than the test's `comm`.
pub fn pip_python3() -> PathBuf {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 on PATH (cargo xtask setup)");
    assert!(output.status.success(), "{output:?}");
    let path = String::from_utf8(output.stdout).unwrap();
    std::fs::canonicalize(path.trim()).unwrap()
}

/// Listens on a port of 127.0.0.1 with a backlog of 1 and never accepts, until killed; prints
/// `ready PORT` once listening.
pub const PYTHON_NEVER_ACCEPTS: &str = r#"
import socket, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print("ready", server.getsockname()[1], flush=True)
time.sleep(300)
"#;

/// `python3 -c SCRIPT PORT COUNT`: opens COUNT connections to 127.0.0.1:PORT without waiting
/// for any, prints `ready`, and keeps them open until killed.
pub const PYTHON_CONNECTS: &str = r#"
import socket, sys, time
clients = []
for _ in range(int(sys.argv[2])):
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", int(sys.argv[1])))
    clients.append(client)
print("ready", flush=True)
time.sleep(300)
"#;

/// `python3 -c SCRIPT PATH COUNT BLOCK`: overwrites the file's first COUNT blocks with
/// O_DIRECT, one `pwrite` each (one request to the device each, issued by the writer);
/// prints `written` and waits for a line on stdin (or its end); then `fdatasync`s.
pub const PYTHON_DIRECT_WRITER: &str = r#"
import mmap, os, sys
path, count, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
buffer = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
buffer.write(b"d" * block)
for i in range(count):
    assert os.pwrite(fd, buffer, i * block) == block
print("written", flush=True)
sys.stdin.readline()
os.fdatasync(fd)
os.close(fd)
"#;

/// Python's http.server (HTTP/1.1, keep-alive), run as `python3 SCRIPT SLOW_SECONDS`: 500 for
/// /fail, 200 after SLOW_SECONDS for /slow, 200 for anything else (query strings ignored).
/// It prints its port once listening.
pub const PYTHON_HTTP_SERVER: &str = r#"
import http.server, sys, time
slow = float(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(slow)
        status = 500 if path == "/fail" else 200
        body = b"hello\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A program the deployment tests need, found on PATH (sbin included), or a failure that
/// says which package `cargo xtask setup` installs it from.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: `cargo xtask setup` installs it (package {package})")
        })
}

/// `promtool check metrics` on an exposition: `Err` with its findings unless it is clean.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut promtool = Command::new(require_program("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && findings.trim().is_empty() {
        Ok(())
    } else {
        Err(findings)
    }
}

/// Two network namespaces joined by a veth pair, with IPv4 and IPv6 addresses: a client side
/// and a server side whose firewall the test controls. Every pair has its own stacks, so
/// the addresses repeat across pairs without clashing; only the names must be unique, and
/// they are per process and per pair. Dropping it deletes both namespaces, which removes
/// the veth pair and the firewall rules with them.
pub struct NetnsPair {
    /// Also the name of the client's veth end, and likewise for the server.
    pub client: String,
    pub server: String,
    ip: PathBuf,
}

impl NetnsPair {
    pub const CLIENT_V4: &str = "10.200.0.1";
    pub const SERVER_V4: &str = "10.200.0.2";
    pub const CLIENT_V6: &str = "fd00:200::1";
    pub const SERVER_V6: &str = "fd00:200::2";

    pub fn create() -> NetnsPair {
        static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stem = format!("mt{}x{n}", std::process::id());
        // Made before the namespaces exist, so that a failure half-way still cleans up.
        let pair = NetnsPair {
            client: format!("{stem}c"),
            server: format!("{stem}s"),
            ip: require_program("ip", "iproute2"),
        };
        let (c, s) = (&pair.client, &pair.server);
        // Interface names are limited to 15 bytes. Made straight inside the namespaces, the
        // veth ends never appear in the host's namespace at all.
        assert!(c.len() <= 15, "interface name {c} too long");
        let (c4, s4, c6, s6) = (
            Self::CLIENT_V4,
            Self::SERVER_V4,
            Self::CLIENT_V6,
            Self::SERVER_V6,
        );
        for step in [
            format!("netns add {c}"),
            format!("netns add {s}"),
            format!("link add {c} netns {c} type veth peer name {s} netns {s}"),
            format!("-n {c} addr add {c4}/24 dev {c}"),
            format!("-n {s} addr add {s4}/24 dev {s}"),
            // nodad: usable at once, not after duplicate address detection.
            format!("-n {c} addr add {c6}/64 dev {c} nodad"),
            format!("-n {s} addr add {s6}/64 dev {s} nodad"),
            format!("-n {c} link set lo up"),
            format!("-n {s} link set lo up"),
            format!("-n {c} link set {c} up"),
            format!("-n {s} link set {s} up"),
        ] {
            run_checked(Command::new(&pair.ip).args(step.split_whitespace()));
        }
        pair
    }

    /// Runs `iptables` (or `ip6tables`) with `rule` inside the server's namespace.
    pub fn server_firewall(&self, v6: bool, rule: &[&str]) {
        let program = require_program(if v6 { "ip6tables" } else { "iptables" }, "iptables");
        run_checked(
            Command::new(&self.ip)
                .args(["netns", "exec", &self.server])
                .arg(program)
                .args(rule),
        );
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for name in [&self.client, &self.server] {
            let _ = Command::new(&self.ip)
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn run_checked(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A helper server (Prometheus, dockerd) killed by PID when dropped: SIGTERM, then SIGKILL
/// after `grace`.
pub struct Server {
    pub name: String,
    child: Option<Child>,
    grace: Duration,
}

impl Server {
    pub fn spawn(name: &str, command: &mut Command, grace: Duration) -> Server {
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name}: {err}"));
        Server::adopt(name, child, grace)
    }

    /// Takes charge of a server the test started itself (e.g. with `spawn_named_with`).
    pub fn adopt(name: &str, child: Child, grace: Duration) -> Server {
        Server {
            name: name.to_owned(),
            child: Some(child),
            grace,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Panics if the server has exited.
    pub fn ensure_running(&mut self, log: &str) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("{} exited ({status}):\n{log}", self.name);
        }
    }
}

impl Server {
    /// SIGTERM, then SIGKILL after the grace period; waits for the exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_timeout(&mut child, self.grace).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_need_a_status_line() {
        let ok = parse_http_response("HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody").unwrap();
        assert_eq!(ok, (200, "body".to_owned()));
        assert_eq!(
            parse_http_response("HTTP/1.1 503 No\r\n\r\n").unwrap().0,
            503
        );
        assert!(parse_http_response("\x15\x03\x03 alert").is_err());
        assert!(parse_http_response("").is_err());
    }

    #[test]
    fn parses_escaped_labels_and_special_values() {
        let scrape = Scrape::parse(
            "# HELP x y\nx{a=\"q\\\"uo\\\\te\\n\",b=\"2\"} 3\ny 4.5\nz{le=\"+Inf\"} +Inf\n",
        );
        assert_eq!(scrape.value("x", &[("a", "q\"uo\\te\n")]), Some(3.0));
        assert_eq!(scrape.value("y", &[]), Some(4.5));
        assert_eq!(scrape.value("z", &[("le", "+Inf")]), Some(f64::INFINITY));
        assert_eq!(scrape.value("x", &[("b", "3")]), None);
    }
}

/// A Docker engine started by hand for one test (the Debian `docker.io` package), and its
/// containers.
pub mod web;

pub mod docker {
    use std::{
        process::{Command, Output, Stdio},
        time::Duration,
    };

    use crate::{Server, TempDir, eventually, require_program};

    pub struct Docker {
        pub socket: String,
        _server: Server,
        dir: TempDir,
    }

    impl Docker {
        /// dockerd with its own data root, exec root, socket and pidfile under a temp dir; no
        /// bridge or iptables (containers use the host network), vfs storage (no overlay mounts).
        pub fn start() -> Docker {
            let dockerd = require_program("dockerd", "docker.io");
            require_program("docker", "docker.io");
            let dir = TempDir::new("dockerd");
            let socket = format!("unix://{}", dir.path().join("docker.sock").display());
            let log = dir.path().join("dockerd.log");
            let server = Server::spawn(
                "dockerd",
                Command::new(dockerd)
                    .arg(format!("--data-root={}", dir.path().join("data").display()))
                    .arg(format!("--exec-root={}", dir.path().join("exec").display()))
                    .arg(format!(
                        "--pidfile={}",
                        dir.path().join("docker.pid").display()
                    ))
                    .args([
                        "-H",
                        &socket,
                        "--bridge=none",
                        "--iptables=false",
                        "--ip6tables=false",
                        "--storage-driver=vfs",
                    ])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap()),
                Duration::from_secs(30),
            );
            let docker = Docker {
                socket,
                _server: server,
                dir,
            };
            eventually(Duration::from_secs(60), "dockerd to answer", || {
                docker.docker(&["version"]).status.success().then_some(())
            });
            docker
        }

        pub fn command(&self) -> Command {
            let mut command = Command::new("docker");
            command
                .env("DOCKER_HOST", &self.socket)
                .env("DOCKER_BUILDKIT", "0")
                .stdin(Stdio::null());
            command
        }

        pub fn docker(&self, args: &[&str]) -> Output {
            self.command().args(args).output().expect("docker")
        }

        pub fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
        }
    }

    impl Drop for Docker {
        fn drop(&mut self) {
            // Fields drop after this: first dockerd is stopped, then the temp dir removed. The
            // network-namespace bind mount dockerd may leave behind would keep the dir busy.
            let netns = self.dir.path().join("exec/netns/default");
            self._server.stop();
            if let Ok(path) = std::ffi::CString::new(netns.to_str().unwrap()) {
                // SAFETY: umount2 on a path we own; failure (not mounted) is fine.
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }

    /// Copies `binary` to `dest` under `root`, with every library `ldd` says it loads at
    /// the same path: a root filesystem for a container whose files are its own.
    pub fn copy_with_libraries(binary: &std::path::Path, root: &std::path::Path, dest: &str) {
        let copy = |from: &std::path::Path, to: &str| {
            let target = root.join(to.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(from, &target).unwrap();
        };
        copy(binary, dest);
        let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line
                .split("=>")
                .last()
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|path| path.starts_with('/'));
            if let Some(path) = path {
                copy(std::path::Path::new(path), path);
            }
        }
    }

    /// `root` as a tarball in `dir`, for `docker import` (no image can be pulled here).
    pub fn tarball(root: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
        let tarball = dir.join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        tarball
    }

    pub fn text(output: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// A container removed (forcibly) on drop.
    pub struct Container<'a>(pub &'a Docker, pub String);

    impl Drop for Container<'_> {
        fn drop(&mut self) {
            let _ = self.0.docker(&["rm", "-f", &self.1]);
        }
    }
}

/// A cgroup directory a test made (under a v1 controller's hierarchy or v2's), removed on
/// drop once its processes are gone.
pub struct Cgroup {
    pub dir: PathBuf,
}

impl Cgroup {
    pub fn create(dir: PathBuf) -> Cgroup {
        std::fs::create_dir_all(&dir).unwrap();
        Cgroup { dir }
    }

    /// A CPU cgroup with a quota of `quota_us` per `period_us` (cgroup v1's `cpu` hierarchy
    /// where it is mounted, else v2), and whether it is v2.
    pub fn cpu_quota(name: &str, quota_us: u64, period_us: u64) -> (Cgroup, bool) {
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let cgroup = Cgroup::create(v1.join(name));
            cgroup.set_if_present("cpu.cfs_period_us", &period_us.to_string());
            cgroup.set_if_present("cpu.cfs_quota_us", &quota_us.to_string());
            return (cgroup, false);
        }
        let root = PathBuf::from("/sys/fs/cgroup");
        // The root must hand the cpu controller down to its children.
        std::fs::write(root.join("cgroup.subtree_control"), "+cpu").unwrap();
        let cgroup = Cgroup::create(root.join(name));
        cgroup.set_if_present("cpu.max", &format!("{quota_us} {period_us}"));
        (cgroup, true)
    }

    /// A memory cgroup limited to `limit` bytes, without swap (cgroup v2, or v1's memory
    /// hierarchy).
    pub fn memory_limit(name: &str, limit: u64) -> Cgroup {
        let root = PathBuf::from("/sys/fs/cgroup");
        let v2 = root.join("cgroup.controllers").exists();
        let cgroup = if v2 {
            // The root must hand the memory controller down to its children.
            std::fs::write(root.join("cgroup.subtree_control"), "+memory").unwrap();
            Cgroup::create(root.join(name))
        } else {
            Cgroup::create(root.join("memory").join(name))
        };
        let limit = limit.to_string();
        if v2 {
            cgroup.set_if_present("memory.max", &limit);
            cgroup.set_if_present("memory.swap.max", "0");
        } else {
            cgroup.set_if_present("memory.limit_in_bytes", &limit);
            cgroup.set_if_present("memory.memsw.limit_in_bytes", &limit);
            cgroup.set_if_present("memory.swappiness", "0");
        }
        cgroup
    }

    /// Writes `value` to the cgroup's `file`, if the kernel has that file.
    pub fn set_if_present(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        if path.exists() {
            std::fs::write(&path, value).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
    }

    /// Makes the process `command` starts join this cgroup before its program runs.
    pub fn join_at_exec(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt as _;
        let procs =
            std::ffi::CString::new(self.dir.join("cgroup.procs").to_str().unwrap()).unwrap();
        // SAFETY: between fork and exec the child only calls open/write/close on a path
        // prepared before the fork (no allocation): "0" moves the writing process itself.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once its process is gone; the kernel may take a moment to let it go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The capability sets the shipped deployments grant, read from the files themselves (so a
/// test run under them cannot drift from what ships), as setpriv(1) names them (`bpf`,
/// `sys_ptrace`, …).
pub mod shipped {
    use super::workspace_root;

    fn read(path: &str) -> String {
        std::fs::read_to_string(workspace_root().join(path))
            .unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    /// The DaemonSet container's `capabilities.add` (it runs as UID 0, all others dropped).
    pub fn daemonset_capabilities() -> Vec<String> {
        let manifest = read("deploy/kubernetes/monitor-agent.yaml");
        let lists: Vec<&str> = manifest
            .lines()
            .filter_map(|line| line.trim().strip_prefix("add: ["))
            .collect();
        assert_eq!(lists.len(), 1, "one capabilities.add list in the manifest");
        let list = lists[0].strip_suffix(']').expect("add: [...] on one line");
        list.split(',')
            .map(|cap| cap.trim().trim_matches('"').to_ascii_lowercase())
            .collect()
    }

    /// The systemd unit's ambient capabilities (its bounding set must say the same).
    pub fn unit_capabilities() -> Vec<String> {
        let unit = read("deploy/systemd/monitor-agent.service");
        let value = |key: &str| -> Vec<String> {
            let values: Vec<&str> = unit
                .lines()
                .filter_map(|line| line.strip_prefix(key))
                .collect();
            assert_eq!(values.len(), 1, "one {key} line in the unit");
            values[0]
                .split_whitespace()
                .map(|cap| {
                    cap.strip_prefix("CAP_")
                        .unwrap_or_else(|| panic!("{key}: {cap}"))
                        .to_ascii_lowercase()
                })
                .collect()
        };
        let ambient = value("AmbientCapabilities=");
        assert_eq!(ambient, value("CapabilityBoundingSet="));
        ambient
    }

    /// setpriv's `-all,+a,+b` for a capability list.
    pub fn setpriv_set(caps: &[String]) -> String {
        std::iter::once("-all".to_owned())
            .chain(caps.iter().map(|cap| format!("+{cap}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}
