//! The HTTP suite's moving parts: an nginx of its own (config in a temp dir, stopped on
//! drop; plain HTTP, or HTTPS with a self-signed certificate for the https suite), `wrk`
//! runs against it, and parsers for wrk's report and the agent's request counts.
use std::{
    env, fs,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    agent_http::{free_port, get},
    process::{Supervised, display, find_program, log_tail, output},
};

/// wrk's threads and open connections: one client thread on its own CPU keeping 16
/// requests in flight, enough to keep a one-worker nginx busy.
pub const WRK_THREADS: u32 = 1;
pub const WRK_CONNECTIONS: u32 = 16;
/// Requests per keep-alive connection before nginx closes it (nginx's default since 1.19.10,
/// spelled out so the report does not depend on the installed version).
pub const KEEPALIVE_REQUESTS: u32 = 1000;
/// The same for HTTP/2: h2load does not open a new connection when nginx ends one (its
/// GOAWAY fails the client), so its connections last the whole run.
pub const H2_KEEPALIVE_REQUESTS: u32 = 100_000_000;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The TLS certificate and key nginx reads, in its own dir (made by `make_certificate`).
const CERTIFICATE: &str = "cert.pem";
const CERTIFICATE_KEY: &str = "key.pem";
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where nginx and wrk run: on different CPUs when there are two or more, so the scheduler
/// cannot put both on one CPU in some runs and not in others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub nginx: Option<usize>,
    pub wrk: Option<usize>,
}

impl Placement {
    pub fn for_cpus(cpus: usize) -> Self {
        if cpus >= 2 {
            Self {
                nginx: Some(0),
                wrk: Some(cpus - 1),
            }
        } else {
            Self {
                nginx: None,
                wrk: None,
            }
        }
    }

    pub fn detect() -> Self {
        Self::for_cpus(thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// `program args…`, behind `taskset -c CPU` when pinned.
pub fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// What nginx's port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Http,
    /// TLS, with the certificate and key `make_certificate` made.
    Https,
    /// HTTP/2 in cleartext, with prior knowledge (nginx before 1.25 answers no HTTP/1.x
    /// there).
    H2c,
}

/// The nginx configuration: one worker answering `GET /ok` from memory, no logging. With
/// `Listener::Https`, the certificate and key are in `root` (`make_certificate`).
pub fn nginx_config(root: &Path, port: u16, listener: Listener) -> String {
    let root = root.display();
    let listen = match listener {
        Listener::Https => format!(
            "listen 127.0.0.1:{port} ssl;\n\
             \x20   ssl_certificate {root}/{CERTIFICATE};\n\
             \x20   ssl_certificate_key {root}/{CERTIFICATE_KEY};"
        ),
        Listener::H2c => format!("listen 127.0.0.1:{port} http2;"),
        Listener::Http => format!("listen 127.0.0.1:{port};"),
    };
    let keepalive = if listener == Listener::H2c {
        H2_KEEPALIVE_REQUESTS
    } else {
        KEEPALIVE_REQUESTS
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n\
         pid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  keepalive_requests {keepalive};\n\
         \x20 client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n\
         \x20 fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n\
         \x20 scgi_temp_path {root}/scgi;\n\
         \x20 server {{\n    {listen}\n\
         \x20   location = /ok {{ return 200 \"ok\\n\"; }}\n\
         \x20   location / {{ return 404; }}\n  }}\n}}\n"
    )
}

/// Makes nginx's certificate and key in `dir`: a self-signed ECDSA P-256 certificate for
/// `localhost`, valid one day, with an unencrypted key. Nothing outlives the run, and P-256
/// is what a production server most likely uses, so the handshakes cost what they would there.
fn make_certificate(dir: &Path) -> Result<()> {
    let openssl = find_program("openssl").context("openssl is not installed")?;
    let mut cmd = Command::new(openssl);
    cmd.args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join(CERTIFICATE_KEY))
        .arg("-out")
        .arg(dir.join(CERTIFICATE));
    output(&mut cmd).context("making a self-signed certificate for nginx")?;
    Ok(())
}

/// A running nginx in a temp dir of its own. Dropping it stops nginx (master and worker)
/// and removes the dir, so an error anywhere in the suite leaves nothing behind.
pub struct Nginx {
    process: Option<Supervised>,
    dir: PathBuf,
    listener: Listener,
    pub port: u16,
    pub version: String,
}

impl Nginx {
    /// nginx serving plain HTTP.
    pub fn start(placement: Placement) -> Result<Self> {
        Self::start_with(placement, Listener::Http)
    }

    /// nginx serving HTTPS with a self-signed certificate made for this run, or HTTP/2 in
    /// cleartext.
    pub fn start_with(placement: Placement, listener: Listener) -> Result<Self> {
        let program = find_program("nginx")
            .context("nginx is not installed (`cargo xtask setup` installs it)")?;
        let version = version_line(Command::new(&program).arg("-v"));
        let dir = env::temp_dir().join(format!("xtask-bench-nginx-{}", std::process::id()));
        // A leftover of a killed earlier run with the same pid holds nothing we need.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut nginx = Self {
            process: None,
            dir,
            listener,
            port: free_port()?,
            version,
        };
        if listener == Listener::Https {
            make_certificate(&nginx.dir)?;
        }
        let config = nginx.dir.join("nginx.conf");
        fs::write(&config, nginx_config(&nginx.dir, nginx.port, listener))
            .with_context(|| format!("writing {}", config.display()))?;
        let error_log = nginx.dir.join("error.log");
        let mut cmd = pinned(placement.nginx, &program);
        cmd.arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        println!("bench: $ {}", display(&cmd));
        nginx.process = Some(Supervised::spawn("nginx", &mut cmd)?);
        nginx.wait_ready().with_context(|| {
            format!(
                "nginx did not come up ({}): {}",
                error_log.display(),
                log_tail(&error_log, 5)
            )
        })?;
        Ok(nginx)
    }

    /// Plain HTTP: until `GET /ok` answers 200. TLS and HTTP/2: until the port accepts
    /// (this crate speaks neither); the untimed warm-up's run is the first request, and
    /// fails the suite if it is not answered.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            self.ensure_running()?;
            let listening = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            let plain = self.listener == Listener::Http;
            if listening && (!plain || matches!(get(self.port, "/ok"), Some((200, _)))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let what = if plain {
                    "answer GET /ok with 200"
                } else {
                    "accept connections"
                };
                bail!(
                    "nginx on port {} did not {what} within {READY_TIMEOUT:?}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A run in which nginx died measured nothing.
    pub fn ensure_running(&mut self) -> Result<()> {
        match &mut self.process {
            Some(process) => process.ensure_running(),
            None => bail!("nginx is not running"),
        }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/ok", self.scheme(), self.port)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.listener == Listener::Https {
            "https"
        } else {
            "http"
        }
    }

    /// SIGTERM makes the master stop its worker and exit. Should the master have to be
    /// killed instead, its worker would outlive it: it is killed too.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        let workers = children(process.child_mut().id());
        let stopped = process.stop(libc::SIGTERM, STOP_GRACE)?;
        if stopped.is_none() {
            for pid in workers {
                // SAFETY: plain syscall; a pid that is gone already only yields ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        Ok(())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("bench: warning: stopping nginx: {err:#}");
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The direct children of a process, from procfs (empty when unreadable).
fn children(pid: u32) -> Vec<libc::pid_t> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// The first line a `-v` flag prints (nginx to stderr, wrk to stdout with a failing exit
/// status), for the report; `unknown` when there is none.
fn version_line(cmd: &mut Command) -> String {
    let Ok(out) = cmd.stdin(Stdio::null()).output() else {
        return "unknown".into();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().next().unwrap_or("").trim();
    let line = line.strip_prefix("nginx version:").unwrap_or(line);
    let line = line.split(" Copyright").next().unwrap_or(line).trim();
    if line.is_empty() {
        "unknown".into()
    } else {
        line.to_owned()
    }
}

/// Which program loads nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Wrk,
    /// nghttp2's `h2load`, for HTTP/2: the same shape as wrk's (one thread, WRK_CONNECTIONS
    /// connections, one request at a time on each), each request's latency in a log file.
    H2load,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Wrk => "wrk",
            Tool::H2load => "h2load",
        }
    }
}

/// The load generator: `wrk` (or `h2load`) with a fixed shape, pinned by `placement`.
pub struct Wrk {
    tool: Tool,
    program: PathBuf,
    cpu: Option<usize>,
    pub version: String,
    /// `h2load`'s per-request log, read and removed after each run.
    log: PathBuf,
}

impl Wrk {
    pub fn new(placement: Placement) -> Result<Self> {
        Self::of(Tool::Wrk, placement)
    }

    pub fn of(tool: Tool, placement: Placement) -> Result<Self> {
        let (program, version_flag) = match tool {
            Tool::Wrk => (
                find_program("wrk")
                    .context("wrk is not installed (`cargo xtask setup` installs it)")?,
                "--version",
            ),
            Tool::H2load => (
                find_program("h2load").context(
                    "h2load is not installed (Debian package nghttp2-client; `cargo xtask \
                     setup` installs it)",
                )?,
                "--version",
            ),
        };
        let version = version_line(Command::new(&program).arg(version_flag));
        Ok(Self {
            tool,
            program,
            cpu: placement.wrk,
            version,
            log: env::temp_dir().join(format!("xtask-bench-h2load-{}.log", std::process::id())),
        })
    }

    pub fn name(&self) -> &'static str {
        self.tool.name()
    }

    pub fn command(&self, url: &str, seconds: u64) -> Command {
        let mut cmd = pinned(self.cpu, &self.program);
        cmd.arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{WRK_CONNECTIONS}"));
        match self.tool {
            Tool::Wrk => cmd.arg(format!("-d{seconds}s")).arg("--latency"),
            Tool::H2load => cmd
                .arg("-m1")
                .arg(format!("-D{seconds}"))
                .arg(format!("--log-file={}", self.log.display())),
        };
        cmd.arg(url);
        cmd
    }

    /// The command line as the report shows it, with a placeholder for nginx's free port;
    /// `scheme` is `http` or `https`.
    pub fn shown(&self, scheme: &str, seconds: u64) -> String {
        let shown = display(&self.command(&format!("{scheme}://127.0.0.1:<port>/ok"), seconds));
        // The program's full path is noise in the report; its name is what matters.
        shown
            .replace(&self.program.display().to_string(), self.name())
            .replace(&self.log.display().to_string(), "<file>")
    }

    pub fn run(&self, url: &str, seconds: u64) -> Result<WrkResult> {
        let _ = fs::remove_file(&self.log);
        let mut cmd = self.command(url, seconds);
        let shown = display(&cmd);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start `{shown}`"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "`{shown}` failed ({}): {} {}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        match self.tool {
            Tool::Wrk => parse_wrk(&stdout),
            Tool::H2load => {
                let log = fs::read_to_string(&self.log)
                    .with_context(|| format!("reading {}", self.log.display()));
                let _ = fs::remove_file(&self.log);
                parse_h2load(&stdout, &log?)
            }
        }
        .with_context(|| format!("`{shown}` printed:\n{stdout}"))
    }
}

/// h2load's report and its per-request log (start µs, status, µs to the response's end;
/// tab-separated). As with wrk, a run with failures or non-2xx answers is an error.
pub fn parse_h2load(stdout: &str, log: &str) -> Result<WrkResult> {
    let mut requests_per_sec = None;
    let mut requests = None;
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            requests_per_sec = rest
                .split(", ")
                .find_map(|part| part.strip_suffix(" req/s"))
                .and_then(|rate| rate.parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            let count = |what: &str| {
                rest.split(", ")
                    .find_map(|part| part.strip_suffix(what))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            };
            let bad = ["failed", "errored", "timeout"].map(|what| count(&format!(" {what}")));
            if bad.iter().any(|n| *n != Some(0)) {
                bail!("h2load counted failed, errored or timed-out requests");
            }
            requests = count(" succeeded");
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            let others = rest
                .split(", ")
                .filter(|part| !part.ends_with(" 2xx"))
                .any(|part| !part.starts_with("0 "));
            if others {
                bail!("h2load got answers other than 2xx");
            }
        }
    }
    let mut latencies: Vec<f64> = log
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if latencies.is_empty() {
        bail!("h2load logged no request");
    }
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).max(1) - 1];
    Ok(WrkResult {
        requests_per_sec: requests_per_sec.context("no `finished in …, N req/s` line")?,
        requests: requests.context("no `requests: … N succeeded` line")?,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
    })
}

/// What one wrk run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    /// Requests completed in the run.
    pub requests: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// wrk's report (`--latency`). A run with socket errors or non-2xx/3xx answers measured
/// something else than serving `/ok`, so it is an error rather than a figure.
pub fn parse_wrk(stdout: &str) -> Result<WrkResult> {
    let mut requests_per_sec = None;
    let mut requests = None;
    let mut p50_us = None;
    let mut p99_us = None;
    for line in stdout.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = Some(
                value
                    .trim()
                    .parse::<f64>()
                    .with_context(|| format!("bad Requests/sec line {line:?}"))?,
            );
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = Some(
                count
                    .trim()
                    .parse::<u64>()
                    .with_context(|| format!("bad request count in {line:?}"))?,
            );
        } else if let Some(value) = line.strip_prefix("50%") {
            p50_us = Some(duration_us(value.trim())?);
        } else if let Some(value) = line.strip_prefix("99%") {
            p99_us = Some(duration_us(value.trim())?);
        } else if line.starts_with("Socket errors:") || line.starts_with("Non-2xx or 3xx") {
            bail!("wrk reported failures: {line}");
        }
    }
    let requests_per_sec = requests_per_sec.context("no Requests/sec line")?;
    if !requests_per_sec.is_finite() || requests_per_sec <= 0.0 {
        bail!("implausible {requests_per_sec} requests/s");
    }
    Ok(WrkResult {
        requests_per_sec,
        requests: requests.context("no `N requests in` line")?,
        p50_us: p50_us.context("no 50% latency line (was --latency given?)")?,
        p99_us: p99_us.context("no 99% latency line (was --latency given?)")?,
    })
}

/// wrk's durations (`186.00us`, `1.23ms`, `2.00s`, `1.50m`) in µs.
fn duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in duration {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("bad duration {text:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown unit in duration {text:?}"),
    };
    Ok(number * scale)
}

/// What the agent counted while wrk ran, from its /metrics: evidence that it did the
/// per-request work being measured, not merely that it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AgentSaw {
    /// `http_server_request_duration_seconds_count` of nginx.
    pub server: f64,
    /// `http_client_request_duration_seconds_count` of wrk.
    pub client: f64,
    /// `monitor_ringbuf_events_lost_total`, all rings.
    pub lost: f64,
}

pub fn agent_saw(metrics: &str) -> AgentSaw {
    count_requests(metrics, "wrk", |_| true)
}

/// `agent_saw` of the requests read or written through a TLS library only
/// (`url_scheme="https"`); `lost` is all rings' still, TLS or not.
pub fn agent_saw_https(metrics: &str) -> AgentSaw {
    count_requests(metrics, "wrk", |labels| {
        labels.contains("url_scheme=\"https\"")
    })
}

/// `agent_saw` of nginx's and h2load's HTTP/2 requests (`network_protocol_version="2"`).
pub fn agent_saw_http2(metrics: &str) -> AgentSaw {
    count_requests(metrics, "h2load", |labels| {
        labels.contains("network_protocol_version=\"2\"")
    })
}

/// nginx's and the `client`'s request counts in the series whose labels `wanted` accepts.
fn count_requests(metrics: &str, client: &str, wanted: impl Fn(&str) -> bool) -> AgentSaw {
    let client = format!("comm=\"{client}\"");
    let mut saw = AgentSaw::default();
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "http_server_request_duration_seconds_count"
                if labels.contains("comm=\"nginx\"") && wanted(labels) =>
            {
                saw.server += value;
            }
            "http_client_request_duration_seconds_count"
                if labels.contains(&client) && wanted(labels) =>
            {
                saw.client += value;
            }
            "monitor_ringbuf_events_lost_total" => saw.lost += value,
            _ => {}
        }
    }
    saw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `wrk -t1 -c16 -d3s --latency` report (wrk 4.1.0).
    const REPORT: &str = "Running 3s test @ http://127.0.0.1:18089/ok
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   210.64us  145.07us   4.22ms   93.63%
    Req/Sec    64.19k    13.55k   87.87k    61.29%
  Latency Distribution
     50%  186.00us
     75%  274.00us
     90%  329.00us
     99%    4.73ms
  197629 requests in 3.10s, 28.27MB read
Requests/sec:  63751.37
Transfer/sec:      9.12MB
";

    #[test]
    fn parses_rate_count_and_percentiles() {
        let result = parse_wrk(REPORT).unwrap();
        assert_eq!(
            result,
            WrkResult {
                requests_per_sec: 63751.37,
                requests: 197_629,
                p50_us: 186.0,
                p99_us: 4730.0,
            }
        );
    }

    #[test]
    fn failures_and_missing_lines_are_errors() {
        let errors = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        assert!(
            parse_wrk(&errors)
                .unwrap_err()
                .to_string()
                .contains("read 3")
        );
        let non_2xx = REPORT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 5\nRequests/sec",
        );
        assert!(parse_wrk(&non_2xx).is_err());
        let no_latency: String = REPORT.lines().filter(|l| !l.contains('%')).collect();
        assert!(parse_wrk(&no_latency).is_err());
        assert!(parse_wrk("").is_err());
        let zero = REPORT.replace("63751.37", "0.00");
        assert!(parse_wrk(&zero).is_err());
    }

    #[test]
    fn durations_in_every_wrk_unit() {
        assert_eq!(duration_us("186.00us").unwrap(), 186.0);
        assert_eq!(duration_us("1.50ms").unwrap(), 1500.0);
        assert_eq!(duration_us("2.00s").unwrap(), 2e6);
        assert_eq!(duration_us("1.00m").unwrap(), 60e6);
        assert!(duration_us("12").is_err());
        assert!(duration_us("3.0xs").is_err());
    }

    #[test]
    fn counts_what_the_agent_saw_of_nginx_and_wrk() {
        let metrics = "# HELP http_server_request_duration_seconds x\n\
            http_server_request_duration_seconds_count{comm=\"nginx\",http_request_method=\"GET\",\
            http_response_status_code=\"200\",http_route=\"/ok\",pid=\"9\"} 100\n\
            http_server_request_duration_seconds_count{comm=\"nginx\",http_request_method=\"GET\",\
            http_response_status_code=\"404\",http_route=\"/\",pid=\"9\"} 2\n\
            http_server_request_duration_seconds_count{comm=\"python3\",pid=\"8\"} 7\n\
            http_server_request_duration_seconds_bucket{comm=\"nginx\",le=\"+Inf\"} 100\n\
            http_client_request_duration_seconds_count{comm=\"wrk\",pid=\"10\"} 99\n\
            monitor_ringbuf_events_lost_total{ring=\"payload\"} 3\n\
            monitor_ringbuf_events_lost_total{ring=\"tcp\"} 1\n";
        assert_eq!(
            agent_saw(metrics),
            AgentSaw {
                server: 102.0,
                client: 99.0,
                lost: 4.0
            }
        );
    }

    #[test]
    fn version_lines_of_nginx_and_wrk() {
        let nginx = "echo 'nginx version: nginx/1.22.1' >&2";
        assert_eq!(
            version_line(Command::new("sh").args(["-c", nginx])),
            "nginx/1.22.1"
        );
        let wrk = "echo 'wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer'; echo Usage; exit 1";
        assert_eq!(
            version_line(Command::new("sh").args(["-c", wrk])),
            "wrk 4.1.0 [epoll]"
        );
        assert_eq!(version_line(&mut Command::new("/nonexistent")), "unknown");
    }

    #[test]
    fn nginx_and_wrk_go_to_different_cpus_when_there_are_two() {
        assert_eq!(
            Placement::for_cpus(2),
            Placement {
                nginx: Some(0),
                wrk: Some(1)
            }
        );
        assert_eq!(Placement::for_cpus(8).wrk, Some(7));
        assert_eq!(Placement::for_cpus(1).nginx, None);
        let config = nginx_config(Path::new("/tmp/x"), 8080, Listener::Http);
        assert!(config.contains("worker_processes 1;\n"));
        assert!(config.contains("    listen 127.0.0.1:8080;\n"));
        assert!(config.contains("    location = /ok { return 200 \"ok\\n\"; }\n"));
        assert!(config.contains("  access_log off;\n"));
        assert!(config.contains("pid /tmp/x/nginx.pid;\n"));
        assert!(!config.contains("ssl"));
    }

    #[test]
    fn the_tls_config_differs_only_in_the_listen_line_and_the_certificate() {
        let plain = nginx_config(Path::new("/tmp/x"), 8080, Listener::Http);
        let tls = nginx_config(Path::new("/tmp/x"), 8080, Listener::Https);
        assert!(tls.contains(
            "    listen 127.0.0.1:8080 ssl;\n    ssl_certificate /tmp/x/cert.pem;\n    \
             ssl_certificate_key /tmp/x/key.pem;\n    location = /ok"
        ));
        let without_tls = tls
            .replace(" ssl;", ";")
            .replace("    ssl_certificate /tmp/x/cert.pem;\n", "")
            .replace("    ssl_certificate_key /tmp/x/key.pem;\n", "");
        assert_eq!(without_tls, plain);
    }

    #[test]
    fn the_h2c_config_speaks_http2_and_keeps_connections_for_the_run() {
        let plain = nginx_config(Path::new("/tmp/x"), 8080, Listener::Http);
        let h2c = nginx_config(Path::new("/tmp/x"), 8080, Listener::H2c);
        assert!(h2c.contains("    listen 127.0.0.1:8080 http2;\n"));
        assert!(h2c.contains("  keepalive_requests 100000000;\n"));
        let as_plain = h2c
            .replace(" http2;", ";")
            .replace("keepalive_requests 100000000;", "keepalive_requests 1000;");
        assert_eq!(as_plain, plain);
    }

    /// A real `h2load -t1 -c16 -m1 -D3 --log-file=…` report (nghttp2 1.52.0), its progress
    /// lines left out, and lines of its log.
    const H2LOAD: &str = "starting benchmark...
Application protocol: h2c

finished in 3.00s, 43171.00 req/s, 2.84MB/s
requests: 129513 total, 129529 started, 129513 done, 129513 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 129513 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.52MB (8937181) total, 5.93MB (6216624) headers (space savings 51.02%), 379.43KB (388539) data
                     min         max         mean         sd        +/- sd
time for request:      109us      2.19ms       226us        92us    89.66%
";

    #[test]
    fn parses_h2loads_rate_count_and_the_percentiles_of_its_log() {
        let log: String = (1..=200)
            .map(|us| format!("1796518297796341\t200\t{us}\n"))
            .collect();
        assert_eq!(
            parse_h2load(H2LOAD, &log).unwrap(),
            WrkResult {
                requests_per_sec: 43171.0,
                requests: 129513,
                p50_us: 100.0,
                p99_us: 198.0,
            }
        );
        let failed = H2LOAD.replace("0 failed", "3 failed");
        assert!(parse_h2load(&failed, &log).is_err());
        let not_found = H2LOAD.replace("0 4xx", "7 4xx");
        assert!(parse_h2load(&not_found, &log).is_err());
        assert!(parse_h2load(H2LOAD, "").is_err(), "no latencies");
        assert!(parse_h2load("finished in 3.00s\n", &log).is_err());
    }

    #[test]
    fn counts_what_the_agent_saw_of_http2_only() {
        let metrics = "\
http_server_request_duration_seconds_count{comm=\"nginx\",network_protocol_version=\"2\"} 40
http_server_request_duration_seconds_count{comm=\"nginx\",network_protocol_version=\"1.1\"} 5
http_client_request_duration_seconds_count{comm=\"h2load\",network_protocol_version=\"2\"} 39
http_client_request_duration_seconds_count{comm=\"wrk\",network_protocol_version=\"2\"} 7
monitor_ringbuf_events_lost_total{ringbuf=\"http2_events\"} 2
";
        assert_eq!(
            agent_saw_http2(metrics),
            AgentSaw {
                server: 40.0,
                client: 39.0,
                lost: 2.0
            }
        );
    }

    #[test]
    fn counts_what_the_agent_saw_through_tls_only() {
        let metrics = "\
            http_server_request_duration_seconds_count{comm=\"nginx\",http_route=\"/ok\",\
            url_scheme=\"https\",pid=\"9\"} 100\n\
            http_server_request_duration_seconds_count{comm=\"nginx\",http_route=\"/ok\",\
            url_scheme=\"http\",pid=\"9\"} 5\n\
            http_client_request_duration_seconds_count{comm=\"wrk\",server_port=\"443\",\
            url_scheme=\"https\",pid=\"10\"} 98\n\
            http_client_request_duration_seconds_count{comm=\"curl\",url_scheme=\"https\"} 4\n\
            monitor_ringbuf_events_lost_total{ring=\"payload\"} 2\n";
        assert_eq!(
            agent_saw_https(metrics),
            AgentSaw {
                server: 100.0,
                client: 98.0,
                lost: 2.0
            }
        );
        assert_eq!(agent_saw(metrics).server, 105.0);
        assert_eq!(agent_saw_https("").server, 0.0);
    }
}
