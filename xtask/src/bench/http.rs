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

/// The nginx configuration: one worker answering `GET /ok` from memory, no logging. With
/// `tls`, the port speaks TLS with the certificate and key in `root` (`make_certificate`).
pub fn nginx_config(root: &Path, port: u16, tls: bool) -> String {
    let root = root.display();
    let listen = if tls {
        format!(
            "listen 127.0.0.1:{port} ssl;\n\
             \x20   ssl_certificate {root}/{CERTIFICATE};\n\
             \x20   ssl_certificate_key {root}/{CERTIFICATE_KEY};"
        )
    } else {
        format!("listen 127.0.0.1:{port};")
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n\
         pid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  keepalive_requests {KEEPALIVE_REQUESTS};\n\
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
    /// Whether the port speaks TLS.
    tls: bool,
    pub port: u16,
    pub version: String,
}

impl Nginx {
    /// nginx serving plain HTTP.
    pub fn start(placement: Placement) -> Result<Self> {
        Self::start_with(placement, false)
    }

    /// nginx serving HTTPS with a self-signed certificate made for this run.
    pub fn start_tls(placement: Placement) -> Result<Self> {
        Self::start_with(placement, true)
    }

    fn start_with(placement: Placement, tls: bool) -> Result<Self> {
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
            tls,
            port: free_port()?,
            version,
        };
        if tls {
            make_certificate(&nginx.dir)?;
        }
        let config = nginx.dir.join("nginx.conf");
        fs::write(&config, nginx_config(&nginx.dir, nginx.port, tls))
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

    /// Plain HTTP: until `GET /ok` answers 200. TLS: until the port accepts (this crate
    /// speaks no TLS); the untimed warm-up's wrk run is the first request, and fails the
    /// suite if it is not answered.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            self.ensure_running()?;
            let listening = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            if listening && (self.tls || matches!(get(self.port, "/ok"), Some((200, _)))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let what = if self.tls {
                    "accept connections"
                } else {
                    "answer GET /ok with 200"
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
        if self.tls { "https" } else { "http" }
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

/// The load generator: `wrk` with a fixed shape, pinned by `placement`.
pub struct Wrk {
    program: PathBuf,
    cpu: Option<usize>,
    pub version: String,
}

impl Wrk {
    pub fn new(placement: Placement) -> Result<Self> {
        let program = find_program("wrk")
            .context("wrk is not installed (`cargo xtask setup` installs it)")?;
        let version = version_line(Command::new(&program).arg("--version"));
        Ok(Self {
            program,
            cpu: placement.wrk,
            version,
        })
    }

    pub fn command(&self, url: &str, seconds: u64) -> Command {
        let mut cmd = pinned(self.cpu, &self.program);
        cmd.arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{WRK_CONNECTIONS}"))
            .arg(format!("-d{seconds}s"))
            .arg("--latency")
            .arg(url);
        cmd
    }

    /// The command line as the report shows it, with a placeholder for nginx's free port;
    /// `scheme` is `http` or `https`.
    pub fn shown(&self, scheme: &str, seconds: u64) -> String {
        let shown = display(&self.command(&format!("{scheme}://127.0.0.1:<port>/ok"), seconds));
        // The program's full path is noise in the report; its name is what matters.
        shown.replace(&self.program.display().to_string(), "wrk")
    }

    pub fn run(&self, url: &str, seconds: u64) -> Result<WrkResult> {
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
        parse_wrk(&stdout).with_context(|| format!("`{shown}` printed:\n{stdout}"))
    }
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
    count_requests(metrics, |_| true)
}

/// `agent_saw` of the requests read or written through a TLS library only
/// (`url_scheme="https"`); `lost` is all rings' still, TLS or not.
pub fn agent_saw_https(metrics: &str) -> AgentSaw {
    count_requests(metrics, |labels| labels.contains("url_scheme=\"https\""))
}

/// nginx's and wrk's request counts in the series whose labels `wanted` accepts.
fn count_requests(metrics: &str, wanted: impl Fn(&str) -> bool) -> AgentSaw {
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
                if labels.contains("comm=\"wrk\"") && wanted(labels) =>
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
        let config = nginx_config(Path::new("/tmp/x"), 8080, false);
        assert!(config.contains("worker_processes 1;\n"));
        assert!(config.contains("    listen 127.0.0.1:8080;\n"));
        assert!(config.contains("    location = /ok { return 200 \"ok\\n\"; }\n"));
        assert!(config.contains("  access_log off;\n"));
        assert!(config.contains("pid /tmp/x/nginx.pid;\n"));
        assert!(!config.contains("ssl"));
    }

    #[test]
    fn the_tls_config_differs_only_in_the_listen_line_and_the_certificate() {
        let plain = nginx_config(Path::new("/tmp/x"), 8080, false);
        let tls = nginx_config(Path::new("/tmp/x"), 8080, true);
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
