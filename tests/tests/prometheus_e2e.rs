//! A real Prometheus (the Debian package) scrapes the real agent with the shipped scrape
//! config and rules, while a workload fails syscalls at a known pace. Its HTTP API must
//! return the workload's exact totals and its rates, every shipped rule must evaluate
//! cleanly, and every Grafana panel's PromQL must run (and find the workload).
use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tests::{
    Agent, Server, TempDir, eventually, free_port, http_get, require_program, run_as, unique_comm,
    workspace_root,
};

/// Per run of gt-workload: failing openat, close(-1), 1 ms nanosleeps.
const OPENAT: u64 = 10;
const CLOSE: u64 = 4;
const SLEEPS: u64 = 5;
/// One run a second, on absolute deadlines.
const RUNS: u64 = 30;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    address: SocketAddr,
    server: Server,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    /// Prometheus with deploy/prometheus/prometheus.yml, its rules beside it, scraping
    /// `target` every second.
    fn start(target: SocketAddr) -> Prometheus {
        let binary = require_program("prometheus", "prometheus");
        let dir = TempDir::new("prom-e2e");
        let shipped = workspace_root().join("deploy/prometheus");
        let config = std::fs::read_to_string(shipped.join("prometheus.yml")).unwrap();
        assert!(config.contains("- localhost:9655") && config.contains("scrape_interval: 15s"));
        let config = config
            .replace("- localhost:9655", &format!("- {target}"))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        for rules in ["golden-signals.rules.yaml", "slo-example.rules.yaml"] {
            std::fs::copy(shipped.join(rules), dir.path().join(rules)).unwrap();
        }
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("prometheus.log");
        let server = Server::spawn(
            "prometheus",
            Command::new(binary)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
            Duration::from_secs(20),
        );
        let mut prometheus = Prometheus {
            address,
            server,
            log,
            _dir: dir,
        };
        eventually(Duration::from_secs(30), "Prometheus to be ready", || {
            prometheus
                .server
                .ensure_running(&std::fs::read_to_string(&prometheus.log).unwrap_or_default());
            matches!(http_get(address, "/-/ready"), Ok((200, _))).then_some(())
        });
        prometheus
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http_get(self.address, path).expect("Prometheus API");
        let value: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
        assert_eq!(value["status"], "success", "{path}: {body}");
        value
    }

    /// An instant query's result vector.
    fn query(&self, expr: &str, at: f64) -> Vec<Value> {
        let value = self.get(&format!(
            "/api/v1/query?query={}&time={at:.3}",
            encode(expr)
        ));
        value["data"]["result"].as_array().unwrap().clone()
    }

    /// The single value of an instant query, if it has one sample.
    fn scalar(&self, expr: &str, at: f64) -> Option<f64> {
        let result = self.query(expr, at);
        assert!(result.len() <= 1, "{expr}: {result:?}");
        result
            .first()
            .map(|sample| sample["value"][1].as_str().unwrap().parse().unwrap())
    }
}

#[test]
fn prometheus_scrapes_exact_totals_and_rates_and_runs_rules_and_dashboard() {
    let agent = Agent::start(&[]);
    let prometheus = Prometheus::start(agent.address);
    eventually(
        Duration::from_secs(30),
        "the first scrape of the agent",
        || (prometheus.scalar("up{job=\"monitor-agent\"}", now()) == Some(1.0)).then_some(()),
    );

    let comm = unique_comm("promwl");
    let workload = env!("CARGO_BIN_EXE_gt-workload");
    let args = [OPENAT, CLOSE, SLEEPS, 1].map(|n| n.to_string());
    let started = Instant::now();
    let t0 = now();
    for run in 0..RUNS {
        let deadline = started + Duration::from_secs(run);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        run_as(&comm, workload.as_ref(), &args);
    }
    assert!(
        started.elapsed() < Duration::from_secs(RUNS + 2),
        "the workload fell behind its pace"
    );

    // Exact: the largest value Prometheus stored is the workload's total.
    let selector = |syscall: &str, errno: &str| {
        format!(
            "monitor_syscall_errors_total{{job=\"monitor-agent\", comm=\"{comm}\", syscall=\"{syscall}\", errno=\"{errno}\"}}"
        )
    };
    let openat = selector("openat", "ENOENT");
    let mut last = None;
    let done = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        last = prometheus.scalar(&format!("max_over_time({openat}[5m])"), now());
        last == Some((RUNS * OPENAT) as f64)
    });
    assert!(
        done,
        "max_over_time({openat}[5m]) = {last:?} after 20 s, expected {}; agent: {:?}",
        RUNS * OPENAT,
        agent.scrape().value(
            "monitor_syscall_errors_total",
            &[("comm", &comm), ("syscall", "openat"), ("errno", "ENOENT")]
        )
    );
    let at = now();
    let close = selector("close", "EBADF");
    let sleeps =
        format!("monitor_syscall_duration_seconds_count{{comm=\"{comm}\", syscall=\"nanosleep\"}}");
    assert_eq!(
        prometheus.scalar(&format!("max_over_time({close}[5m])"), at),
        Some((RUNS * CLOSE) as f64)
    );
    assert_eq!(
        prometheus.scalar(&format!("max_over_time({sleeps}[5m])"), at),
        Some((RUNS * SLEEPS) as f64)
    );
    // No other errno for this workload's openat.
    let all_openat = format!(
        "sum(max_over_time(monitor_syscall_errors_total{{comm=\"{comm}\", syscall=\"openat\"}}[5m]))"
    );
    assert_eq!(
        prometheus.scalar(&all_openat, at),
        Some((RUNS * OPENAT) as f64)
    );

    // Rates over 20 s in the middle of the run (t0+5 s … t0+25 s): 10 openat errors, 4 close
    // errors and 5 nanosleeps a second. The counter steps by a whole run at once, so the
    // 20 samples of the window see 19 or 20 steps (±5 %), and rate() extrapolates the first
    // to last sample span to the window (≤ +5 %, the samples being 1 s apart): ±15 % holds
    // both with room for scrape jitter; a wrong unit or a doubled count cannot pass.
    let mid = t0 + 25.0;
    for (expr, per_second) in [(&openat, OPENAT), (&close, CLOSE), (&sleeps, SLEEPS)] {
        let rate = prometheus
            .scalar(&format!("rate({expr}[20s])"), mid)
            .unwrap_or_else(|| panic!("no rate of {expr}"));
        let expected = per_second as f64;
        assert!(
            (rate - expected).abs() <= 0.15 * expected,
            "rate({expr}[20s]) = {rate}, expected {expected}/s ± 15 %"
        );
    }
    // The error ratio of the shipped recording rule: 14 failed calls of the workload's
    // calls a second, so strictly between 0 and 1.
    let ratio = eventually(
        Duration::from_secs(20),
        "the golden-signal recording rules",
        || {
            prometheus.scalar(
                &format!("comm:monitor_syscall_errors:ratio_rate5m{{comm=\"{comm}\"}}"),
                now(),
            )
        },
    );
    assert!(ratio > 0.0 && ratio < 1.0, "error ratio {ratio}");

    // Every shipped rule evaluates without error against real series.
    let rules = prometheus.get("/api/v1/rules");
    let mut count = 0;
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            count += 1;
            assert_eq!(
                rule["health"], "ok",
                "rule {} in {}: {}",
                rule["name"], group["name"], rule["lastError"]
            );
        }
    }
    assert_eq!(count, 11 + 65, "golden-signal and SLO rules loaded");

    // The dashboard: every panel's queries run; the workload panels find the workload.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/grafana/golden-signals.json"))
            .unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let concrete = expr
                .replace("$__rate_interval", "20s")
                .replace("$comm", &comm)
                .replace("$syscall", ".*")
                .replace("$instance", ".*");
            assert!(!concrete.contains('$'), "unknown variable in {expr}");
            let result = prometheus.query(&concrete, mid);
            queries += 1;
            if expr.contains("monitor_syscall") {
                assert!(
                    !result.is_empty(),
                    "panel {:?}: no series for {comm}: {concrete}",
                    panel["title"]
                );
            }
        }
    }
    assert!(queries >= 10, "{queries} dashboard queries");
}
