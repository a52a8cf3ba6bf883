//! The soak's load, one source per signal: stress-ng for CPU and process churn (the
//! process-event ring), the ground-truth workload for failing and sleeping syscalls, and a
//! Python HTTP/1.1 server and client on loopback for connects, refused connects, bytes and
//! requests (the TCP-event and payload rings).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc::RecvTimeoutError,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::process::{Supervised, find_program, log_tail, run, watch_lines};

/// stress-ng's arguments, before `--timeout`.
pub const STRESS_NG: [&str; 10] = [
    "--cpu",
    "1",
    "--cpu-load",
    "40",
    "--fork",
    "1",
    "--exec",
    "1",
    "--switch",
    "1",
];

/// gt-workload's arguments: failing openat, close(-1), nanosleeps, their milliseconds.
pub const GT_WORKLOAD: [&str; 4] = ["50", "50", "2", "5"];

/// Requests on one keep-alive connection before the client opens a new one.
const REQUESTS_PER_CONNECTION: u32 = 8;
/// The client's pause after each request: about four a second.
const REQUEST_PAUSE_MS: u32 = 250;
/// One connection in this many is followed by a connect to a closed port.
const REFUSED_EVERY: u32 = 3;
/// Every fourth request asks for a path the server does not have.
const MISSING_EVERY: u32 = 4;

const STOP_GRACE: Duration = Duration::from_secs(10);
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// http.client until SIGTERM: `client.py PORT PER_CONNECTION PAUSE_MS REFUSED_EVERY
/// MISSING_EVERY`. Exits with an error on any unexpected answer; on SIGTERM prints what it
/// did as `key=value` words.
const HTTP_CLIENT: &str = r#"
import http.client, signal, socket, sys, time
port, per_connection, pause_ms, refused_every, missing_every = (int(a) for a in sys.argv[1:6])
# Bound and never listening: the kernel answers its SYNs with RST, and no other program can
# take the port while this one holds it.
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
closed_port = closed.getsockname()[1]
counts = {"requests": 0, "ok": 0, "missing": 0, "connections": 0, "refused": 0}
def finish(*_):
    print(" ".join(f"{key}={value}" for key, value in counts.items()), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, finish)
while True:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    counts["connections"] += 1
    for _ in range(per_connection):
        missing = counts["requests"] % missing_every == missing_every - 1
        wanted = 404 if missing else 200
        connection.request("GET", "/missing" if missing else "/ok")
        response = connection.getresponse()
        response.read()
        if response.status != wanted:
            sys.exit(f"GET answered {response.status}, not {wanted}")
        counts["requests"] += 1
        counts["missing" if missing else "ok"] += 1
        time.sleep(pause_ms / 1000)
    connection.close()
    if counts["connections"] % refused_every == 0:
        try:
            socket.create_connection(("127.0.0.1", closed_port), timeout=10).close()
        except ConnectionRefusedError:
            counts["refused"] += 1
        else:
            sys.exit(f"a connect to the closed port {closed_port} succeeded")
"#;

pub fn ensure_stress_ng() -> Result<()> {
    if find_program("stress-ng").is_some() {
        return Ok(());
    }
    println!("setup: stress-ng (package stress-ng) ... installing");
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "stress-ng"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// CPU, process churn (exec and exit events, naming, series expiry) and context switches.
pub fn stress_ng(duration: Duration) -> Result<Supervised> {
    Supervised::spawn(
        "stress-ng",
        Command::new("stress-ng")
            .args(STRESS_NG)
            .args(["--timeout", &format!("{}s", duration.as_secs()), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// What the HTTP client did, as it reported on SIGTERM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    pub requests: u64,
    pub ok: u64,
    pub missing: u64,
    pub connections: u64,
    pub refused: u64,
}

impl ClientCounts {
    fn parse(text: &str) -> Result<ClientCounts> {
        let mut counts = ClientCounts::default();
        let mut seen = 0;
        for word in text.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .with_context(|| format!("`{word}` is not key=value"))?;
            let value = value
                .parse()
                .with_context(|| format!("`{word}`: not a count"))?;
            let slot = match key {
                "requests" => &mut counts.requests,
                "ok" => &mut counts.ok,
                "missing" => &mut counts.missing,
                "connections" => &mut counts.connections,
                "refused" => &mut counts.refused,
                _ => bail!("unknown count `{key}`"),
            };
            *slot = value;
            seen += 1;
        }
        if seen != 5 {
            bail!("expected five counts, got `{}`", text.trim());
        }
        Ok(counts)
    }
}

/// What the load did, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub gt_runs: u64,
    pub http: ClientCounts,
}

/// The load's description in the report, with what it did.
pub fn describe(done: &Done) -> String {
    let http = done.http;
    format!(
        "- `stress-ng {}`: CPU, process churn and context switches (the `process_events` \
         ring);\n\
         - the ground-truth workload (`gt-workload {}`: 50 failing openat, 50 close(-1), \
         2 × 5 ms nanosleep) every ~200 ms, {} runs: the syscall families;\n\
         - Python's `http.server` (HTTP/1.1 keep-alive, 200 on /ok, 404 on anything else) and \
         an `http.client` loop on loopback: {} requests ({} × 200, {} × 404, one in {} for \
         /missing), {} per connection with {} ms between them, over {} connections, plus {} \
         connects refused by a bound, never listening port (after one connection in {}): the \
         TCP families and network bytes (the `tcp_events` ring) and the HTTP server and client \
         families (the `payload_events` ring).",
        STRESS_NG.join(" "),
        GT_WORKLOAD.join(" "),
        done.gt_runs,
        http.requests,
        http.ok,
        http.missing,
        MISSING_EVERY,
        REQUESTS_PER_CONNECTION,
        REQUEST_PAUSE_MS,
        http.connections,
        http.refused,
        REFUSED_EVERY,
    )
}

/// The HTTP server and its client, running until `stop`.
pub struct Http {
    server: Supervised,
    client: Supervised,
    server_log: PathBuf,
    client_log: PathBuf,
    client_out: PathBuf,
}

impl Http {
    /// Starts the server, waits for its port, then starts the client. Scripts and logs go
    /// to `dir`.
    pub fn start(dir: &Path) -> Result<Http> {
        // Debian's interpreter itself: a version manager's shim would exec another binary
        // and rename the process mid-run.
        let python = Path::new("/usr/bin/python3");
        if !python.is_file() {
            bail!("{} missing (Debian package python3)", python.display());
        }
        let server_script = dir.join("http_server.py");
        let client_script = dir.join("http_client.py");
        fs::write(&server_script, crate::python::HTTP_SERVER)
            .context("writing the HTTP server script")?;
        fs::write(&client_script, HTTP_CLIENT).context("writing the HTTP client script")?;
        let server_log = dir.join("http-server.log");
        let client_log = dir.join("http-client.log");
        let client_out = dir.join("http-client.out");

        let mut server = Supervised::spawn(
            "http-server",
            Command::new(python)
                .arg(&server_script)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(create(&server_log)?),
        )?;
        let stdout = server
            .child_mut()
            .stdout
            .take()
            .context("no stdout pipe from the HTTP server")?;
        let port: u16 = match watch_lines(stdout).recv_timeout(SERVER_START_TIMEOUT) {
            Ok(line) => line
                .trim()
                .parse()
                .with_context(|| format!("the HTTP server printed {line:?}, not its port"))?,
            Err(RecvTimeoutError::Timeout) => {
                bail!("the HTTP server printed no port within {SERVER_START_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => bail!(
                "the HTTP server ended before it listened: {}",
                log_tail(&server_log, 5)
            ),
        };
        let client = Supervised::spawn(
            "http-client",
            Command::new(python)
                .arg(&client_script)
                .args([
                    port.to_string(),
                    REQUESTS_PER_CONNECTION.to_string(),
                    REQUEST_PAUSE_MS.to_string(),
                    REFUSED_EVERY.to_string(),
                    MISSING_EVERY.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(create(&client_out)?)
                .stderr(create(&client_log)?),
        )?;
        Ok(Http {
            server,
            client,
            server_log,
            client_log,
            client_out,
        })
    }

    /// Fails if either process is gone: the families it feeds would stop growing unnoticed.
    pub fn ensure_running(&mut self) -> Result<()> {
        for (child, log) in [
            (&mut self.server, &self.server_log),
            (&mut self.client, &self.client_log),
        ] {
            child
                .ensure_running()
                .with_context(|| format!("the load broke off; its log: {}", log_tail(log, 5)))?;
        }
        Ok(())
    }

    /// Stops the client, then the server, and returns what the client did.
    pub fn stop(mut self) -> Result<ClientCounts> {
        self.ensure_running()?;
        let status = self.client.stop(libc::SIGTERM, STOP_GRACE)?;
        self.server.stop(libc::SIGTERM, STOP_GRACE)?;
        if !status.is_some_and(|status| status.success()) {
            bail!(
                "the HTTP client did not end cleanly on SIGTERM ({status:?}): {}",
                log_tail(&self.client_log, 5)
            );
        }
        let out = fs::read_to_string(&self.client_out)
            .with_context(|| format!("reading {}", self.client_out.display()))?;
        ClientCounts::parse(&out).context("the HTTP client's counts")
    }
}

fn create(path: &Path) -> Result<fs::File> {
    fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_counts() {
        let counts =
            ClientCounts::parse("requests=40 ok=30 missing=10 connections=5 refused=1\n").unwrap();
        assert_eq!(
            counts,
            ClientCounts {
                requests: 40,
                ok: 30,
                missing: 10,
                connections: 5,
                refused: 1
            }
        );
        assert!(ClientCounts::parse("").is_err());
        assert!(ClientCounts::parse("requests=40 ok=30").is_err());
        assert!(ClientCounts::parse("requests=x ok=1 missing=1 connections=1 refused=1").is_err());
    }

    #[test]
    fn the_description_names_the_figures() {
        let done = Done {
            gt_runs: 7,
            http: ClientCounts {
                requests: 40,
                ok: 30,
                missing: 10,
                connections: 5,
                refused: 1,
            },
        };
        let text = describe(&done);
        assert!(text.contains("stress-ng --cpu 1 --cpu-load 40"));
        assert!(text.contains("7 runs"));
        assert!(text.contains("40 requests (30 × 200, 10 × 404"));
        assert!(text.contains("over 5 connections, plus 1 connects refused"));
    }
}
