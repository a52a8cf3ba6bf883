//! A real Prometheus (the Debian package) scrapes the real agent with the shipped scrape
//! config and rules, while a workload fails syscalls at a known pace. Its HTTP API must
//! return the workload's exact totals and its rates, every shipped rule must evaluate
//! cleanly, and every Grafana panel's PromQL must run (and find the workload). Beside it, a
//! second process name is held in every kind of saturation (a CPU quota, a full accept
//! queue, an OOM kill, direct block I/O), so the saturation row has something to show.
use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tests::{
    Agent, Cgroup, PYTHON_CONNECTS, PYTHON_DIRECT_WRITER, PYTHON_NEVER_ACCEPTS, Server, Spawned,
    TempDir, eventually, free_port, http_get, python3, require_program, run_as, spawn_as,
    spawn_named_with, unique_comm, workspace_root,
};

/// Per run of gt-workload: failing openat, close(-1), 1 ms nanosleeps.
const OPENAT: u64 = 10;
const CLOSE: u64 = 4;
const SLEEPS: u64 = 5;
/// One run a second, on absolute deadlines.
const RUNS: u64 = 30;

/// Processes of one name (its `service` too, on a host) in every kind of saturation, kept
/// until dropped: a spinner under a CPU quota, a listener whose accept queue is full, a hog
/// the OOM killer ended, a direct-I/O writer.
struct Saturated {
    comm: String,
    _spinner: KillOnDrop,
    _listener: Spawned,
    _knockers: Spawned,
    _cgroups: [Cgroup; 2],
    _dir: TempDir,
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Saturated {
    fn start() -> Saturated {
        let comm = unique_comm("promsat");
        let (quota, _) = Cgroup::cpu_quota(&comm, 10_000, 100_000);
        let spinner = spawn_named_with(&comm, env!("CARGO_BIN_EXE_spin").as_ref(), |command| {
            command.args(["300", "0"]).stdout(Stdio::null());
            quota.join_at_exec(command);
        });
        let spinner = KillOnDrop(spinner);
        let python = python3();
        let listener = spawn_as(&comm, &python, &["-c".into(), PYTHON_NEVER_ACCEPTS.into()]);
        let knockers = spawn_as(
            &unique_comm("knock"),
            &python,
            &[
                "-c".into(),
                PYTHON_CONNECTS.into(),
                listener.port().to_string(),
                "12".into(),
            ],
        );
        let memory = Cgroup::memory_limit(&format!("{comm}-oom"), 32 << 20);
        let mut hog = spawn_named_with(&comm, env!("CARGO_BIN_EXE_hog").as_ref(), |command| {
            command.arg("200").stdout(Stdio::null());
            memory.join_at_exec(command);
        });
        assert!(!hog.wait().unwrap().success(), "the hog outlived its limit");
        let dir = TempDir::new("prom-e2e-block");
        let path = dir.path().join("data");
        std::fs::write(&path, vec![b'p'; 16 * 4096]).unwrap();
        let writer = spawn_named_with(&comm, &python, |command| {
            command
                .args([
                    "-c",
                    PYTHON_DIRECT_WRITER,
                    path.to_str().unwrap(),
                    "16",
                    "4096",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
        });
        assert!(writer.wait_with_output().unwrap().status.success());
        Saturated {
            comm,
            _spinner: spinner,
            _listener: listener,
            _knockers: knockers,
            _cgroups: [quota, memory],
            _dir: dir,
        }
    }
}

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
    /// `target` every second; the example SLO rules loaded too, as the config says to.
    fn start(target: SocketAddr) -> Prometheus {
        let shipped = workspace_root().join("deploy/prometheus");
        let config = std::fs::read_to_string(shipped.join("prometheus.yml")).unwrap();
        assert!(config.contains("- localhost:9655") && config.contains("scrape_interval: 15s"));
        // The example SLOs would page for any real checkout or postgres: never by default.
        let loaded: Vec<&str> = config
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect();
        assert!(
            !loaded.iter().any(|line| line.contains("slo-example")),
            "prometheus.yml loads the example SLOs"
        );
        let enable = "  # - slo-example.rules.yaml\n";
        assert!(config.contains(enable), "how to enable the example SLOs");
        let config = config
            .replace(enable, "  - slo-example.rules.yaml\n")
            .replace("- localhost:9655", &format!("- {target}"))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
        let rules = ["golden-signals.rules.yaml", "slo-example.rules.yaml"]
            .map(|name| (name, std::fs::read_to_string(shipped.join(name)).unwrap()));
        Prometheus::with_config(&config, &rules)
    }

    /// Prometheus with `config`, and `files` (name, text) beside it.
    fn with_config(config: &str, files: &[(&str, String)]) -> Prometheus {
        let binary = require_program("prometheus", "prometheus");
        let dir = TempDir::new("prom-e2e");
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
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

    let saturated = Saturated::start();
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
    // The error ratio of the shipped recording rule against the ground truth: the workload's
    // failed calls (known) over all its calls (the agent's exact total, which includes the
    // program's start-up calls). Every run makes the same calls at the same pace, so the ratio
    // of the rates is the ratio of the totals, within the rate window's jitter (±15 %).
    let total_calls = agent
        .scrape()
        .sum("monitor_syscalls_total", &[("comm", &comm)]);
    let truth = (RUNS * (OPENAT + CLOSE)) as f64 / total_calls;
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
    assert!(
        (ratio - truth).abs() <= 0.15 * truth,
        "error ratio {ratio}, ground truth {truth} ({} failed of {total_calls} calls)",
        RUNS * (OPENAT + CLOSE)
    );

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
    assert_eq!(count, 18 + 65, "golden-signal and SLO rules loaded");

    // The dashboard: every panel's queries run; the workload panels find the workload, the
    // saturation row (one per service) the saturated processes (a host process's service is
    // its comm).
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
                .replace("$service", &saturated.comm)
                .replace("$syscall", ".*")
                .replace("$instance", ".*");
            assert!(!concrete.contains('$'), "unknown variable in {expr}");
            // Per node: with many agents, an aggregation without `instance` would add
            // different hosts' processes into one series.
            assert_eq!(
                aggregations_dropping_instance(expr),
                Vec::<String>::new(),
                "panel {:?}: aggregations that drop `instance`",
                panel["title"]
            );
            let result = prometheus.query(&concrete, mid);
            queries += 1;
            // Every panel shows something in this scenario, and a workload panel shows the
            // workload (its `$comm` filter is the workload's name).
            assert!(
                !result.is_empty(),
                "panel {:?}: no data: {concrete}",
                panel["title"]
            );
            let instance = agent.address.to_string();
            assert!(
                result
                    .iter()
                    .all(|series| series["metric"]["instance"].as_str() == Some(&instance)),
                "panel {:?}: series without their instance: {result:?}",
                panel["title"]
            );
            for (variable, label, value) in [
                ("$comm", "comm", &comm),
                ("$service", "service", &saturated.comm),
            ] {
                if expr.contains(variable) {
                    assert!(
                        result
                            .iter()
                            .all(|series| series["metric"][label].as_str() == Some(value)),
                        "panel {:?}: {result:?}",
                        panel["title"]
                    );
                }
            }
        }
    }
    assert!(queries >= 18, "{queries} dashboard queries");
    drop(saturated);
}

/// PromQL's aggregation operators that make new series from the labels they group by.
/// (`topk`, `bottomk`, `limitk` and `limit_ratio` return input series, labels and all.)
const AGGREGATIONS: [&str; 10] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "quantile",
];

/// Each aggregation in `expr` whose result loses the `instance` label: no grouping, a `by`
/// without it, or a `without` that names it. As written in `expr`, for the failure message.
fn aggregations_dropping_instance(expr: &str) -> Vec<String> {
    // Label values may hold anything: blank out quoted strings, keeping the offsets.
    let mut code: Vec<u8> = expr.as_bytes().to_vec();
    let mut quote = None;
    for byte in code.iter_mut() {
        match quote {
            Some(q) if *byte == q => quote = None,
            Some(_) => *byte = b' ',
            None if *byte == b'"' || *byte == b'\'' || *byte == b'`' => quote = Some(*byte),
            None => {}
        }
    }
    let code = String::from_utf8(code).unwrap();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // `(labels)` at the start of `rest` (after blanks): the labels and what follows.
    let labels = |rest: &str| -> Option<(Vec<String>, usize)> {
        let trimmed = rest.trim_start();
        let inner = trimmed.strip_prefix('(')?;
        let end = inner.find(')')?;
        let names = inner[..end]
            .split(',')
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        Some((names, rest.len() - trimmed.len() + 1 + end + 1))
    };
    // `by (…)` or `without (…)` at the start of `rest`: does the result keep `instance`?
    let grouping = |rest: &str| -> Option<bool> {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("by") {
            let (names, _) = labels(after)?;
            return Some(names.iter().any(|name| name == "instance"));
        }
        if let Some(after) = trimmed.strip_prefix("without") {
            let (names, _) = labels(after)?;
            return Some(!names.iter().any(|name| name == "instance"));
        }
        None
    };
    let mut dropping = Vec::new();
    for (start, _) in code.match_indices(|c: char| c.is_ascii_lowercase()) {
        if start > 0 && code[..start].ends_with(word) {
            continue;
        }
        let name_end = code[start..]
            .find(|c: char| !word(c))
            .map_or(code.len(), |n| start + n);
        if !AGGREGATIONS.contains(&&code[start..name_end]) {
            continue;
        }
        let rest = &code[name_end..];
        let keeps = match grouping(rest) {
            // `sum by (…) (…)`
            Some(keeps) => keeps,
            None if rest.trim_start().starts_with('(') => {
                // `sum(…)`, maybe followed by `by (…)`: find the closing parenthesis.
                let open = name_end + rest.len() - rest.trim_start().len();
                let mut depth = 0;
                let close = code[open..]
                    .char_indices()
                    .find_map(|(i, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        (depth == 0).then_some(open + i)
                    })
                    .expect("balanced parentheses");
                grouping(&code[close + 1..]).unwrap_or(false)
            }
            // A label or metric named like an operator (`count` in `{count="1"}` is blanked).
            None => continue,
        };
        if !keeps {
            let shown: String = expr[start..].chars().take(60).collect();
            dropping.push(shown);
        }
    }
    dropping
}

/// The check above, on expressions whose answer is known: it cannot pass everything.
#[test]
fn aggregations_that_drop_instance_are_found() {
    for keeps in [
        "sum by (instance, comm) (rate(x[1m]))",
        "sum(rate(x[1m])) by (comm, instance)",
        "topk(10, sum by (instance) (x))",
        "topk(10, x)",
        "histogram_quantile(0.99, sum by (instance, le) (rate(x_bucket[1m])))",
        "max without (pid) (x)",
        "max_over_time(x[5m]) / count_over_time(x{sum=\"sum(x)\"}[5m])",
    ] {
        assert_eq!(
            aggregations_dropping_instance(keeps),
            Vec::<String>::new(),
            "{keeps}"
        );
    }
    for (drops, found) in [
        ("sum by (comm) (rate(x[1m]))", 1),
        ("sum(rate(x[1m]))", 1),
        ("sum(rate(x[1m])) by (comm)", 1),
        ("topk(10, sum by (comm) (x))", 1),
        ("max without (instance) (x)", 1),
        ("sum by (comm) (x) / sum by (instance, comm) (y)", 1),
        ("histogram_quantile(0.5, sum by (le) (x)) + count(y)", 2),
    ] {
        assert_eq!(
            aggregations_dropping_instance(drops).len(),
            found,
            "{drops}"
        );
    }
}

/// The agent's own pod, as Kubernetes service discovery would name the target.
const AGENT_POD: &str = "monitor-agent-x7k2p";

/// A Prometheus with `job` (one `scrape_configs` item, at column 0) as its only job.
fn prometheus_with_job(job: &str, rule_files: &[(&str, String)]) -> Prometheus {
    let rules: String = rule_files
        .iter()
        .map(|(name, _)| format!("  - {name}\n"))
        .collect();
    let job: String = job.lines().map(|line| format!("  {line}\n")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}\
         scrape_configs:\n{job}"
    );
    Prometheus::with_config(&config, rule_files)
}

/// deploy/prometheus/kubernetes-scrape.yaml as shipped, its Kubernetes discovery replaced by
/// the one target it would find: the agent, with the `__meta_kubernetes_*` labels of its pod.
/// Its relabelling then sets `namespace` and `pod` to the agent's pod, as in a cluster.
#[test]
fn kubernetes_scrape_config_keeps_the_workloads_own_namespace_and_pod() {
    let agent = Agent::start(&[]);
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/kubernetes-scrape.yaml"))
            .unwrap();
    let discovery =
        "  kubernetes_sd_configs:\n    - role: pod\n      namespaces:\n        names: [monitor]\n";
    assert!(shipped.contains(discovery), "{shipped}");
    let target = format!(
        "  static_configs:\n    - targets: ['{}']\n      labels:\n\
         \x20       __meta_kubernetes_namespace: monitor\n\
         \x20       __meta_kubernetes_pod_name: {AGENT_POD}\n\
         \x20       __meta_kubernetes_pod_node_name: node-a\n\
         \x20       __meta_kubernetes_pod_label_app_kubernetes_io_name: monitor-agent\n\
         \x20       __meta_kubernetes_pod_container_port_name: metrics\n",
        agent.address
    );
    let job = shipped
        .replace(discovery, &target)
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
    let prometheus = prometheus_with_job(&job, &[]);

    let comm = unique_comm("k8swl");
    let args = [OPENAT, CLOSE, SLEEPS, 1].map(|n| n.to_string());
    run_as(&comm, env!("CARGO_BIN_EXE_gt-workload").as_ref(), &args);
    let expr = format!("monitor_syscall_errors_total{{comm=\"{comm}\", syscall=\"openat\"}}");
    let series = eventually(Duration::from_secs(30), "the workload's series", || {
        let result = prometheus.query(&expr, now());
        (!result.is_empty()).then_some(result)
    });
    assert_eq!(series.len(), 1, "{series:?}");
    let labels = series[0]["metric"].as_object().unwrap();
    // A host process: the agent exported namespace="" and pod="", which is what must stay
    // (absent), not the agent's own pod; and nothing renamed to exported_*.
    assert!(
        !labels.contains_key("namespace") && !labels.contains_key("pod"),
        "the workload's namespace/pod were overwritten by the agent pod's: {labels:?}"
    );
    assert!(
        !labels.keys().any(|key| key.starts_with("exported_")),
        "{labels:?}"
    );
    assert_eq!(labels["node"], "node-a", "{labels:?}");
    // Where the agent sets no namespace or pod (its own families), the target's say which
    // agent it is.
    let own = prometheus.query("monitor_build_info", now());
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["metric"]["pod"], AGENT_POD, "{own:?}");
    assert_eq!(own[0]["metric"]["namespace"], "monitor", "{own:?}");
    assert_eq!(own[0]["metric"]["job"], "monitor-agent", "{own:?}");
}

/// argv: port of a listener, a closed port, TCP connects that succeed, TCP connects that
/// are refused, UDP connect(2)s (no handshake: not a TCP outcome).
const CONNECTS: &str = r#"
import socket, sys
port, closed, ok, refused, udp = map(int, sys.argv[1:6])
for _ in range(ok):
    socket.create_connection(("127.0.0.1", port)).close()
for _ in range(refused):
    s = socket.socket()
    assert s.connect_ex(("127.0.0.1", closed)) != 0
    s.close()
for _ in range(udp):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", closed))
    s.close()
"#;

/// Runs `binary` as `comm` with `args`; panics unless it succeeds. Returns its stdout.
fn run_named(comm: &str, binary: &std::path::Path, args: &[String]) -> String {
    let child = tests::spawn_named_with(comm, binary, |command| {
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{comm}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `curl` as `comm`, fetching `path` `count` times for each (path, count), over one
/// keep-alive connection.
fn curl(comm: &str, port: u16, requests: &[(&str, usize)]) {
    let curl = require_program("curl", "curl");
    let mut args: Vec<String> = vec!["--silent".into(), "--show-error".into()];
    for &(path, count) in requests {
        for _ in 0..count {
            args.extend(["--output".into(), "/dev/null".into()]);
            args.push(format!("http://127.0.0.1:{port}{path}"));
        }
    }
    run_named(comm, &curl, &args);
}

/// The SLO generator's rules, loaded into a real Prometheus scraping the real agent, must
/// give the workload's exact error ratios: K good, M failed and S slow requests; A good and
/// B refused TCP connects beside C UDP connect()s.
#[test]
fn generated_slo_rules_give_the_ground_truth_error_ratios() {
    const WARM: usize = 2;
    const K: usize = 20;
    const M: usize = 5;
    const S: usize = 3;
    const A: usize = 6;
    const B: usize = 3;
    const C: usize = 5;
    let agent = Agent::start(&[]);
    let server_comm = unique_comm("slosrv");
    let client_comm = unique_comm("slocurl");
    let connect_comm = unique_comm("slocon");
    let dir = TempDir::new("slo-e2e");
    for (name, text) in [
        ("server.py", tests::PYTHON_HTTP_SERVER),
        ("connects.py", CONNECTS),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut child = tests::spawn_named_with(&server_comm, &tests::python3(), |command| {
        command
            .arg(dir.path().join("server.py"))
            // /slow: slower than the 0.25 s threshold and its 0.268435456 s bucket bound.
            .arg("0.3")
            .stdout(Stdio::piped());
    });
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _server = Server::adopt("python3", child, Duration::from_secs(5));
    let port: u16 = line.trim().parse().expect("the server's port");
    let closed = free_port();
    let connects = |ok: usize, refused: usize, udp: usize| {
        let args = [port as usize, closed as usize, ok, refused, udp].map(|n| n.to_string());
        let mut all = vec![dir.path().join("connects.py").display().to_string()];
        all.extend(args);
        run_named(&connect_comm, &tests::python3(), &all);
    };

    // Every series exists before Prometheus's first scrape, so that all of them have samples
    // at the same instants: rate() then extrapolates each by the same factor, and the ratio
    // of the increases is exact.
    curl(
        &client_comm,
        port,
        &[("/ok", WARM), ("/fail", WARM), ("/slow", WARM)],
    );
    connects(WARM, WARM, 0);
    let server = [("comm", server_comm.as_str())];
    let connector = [("comm", connect_comm.as_str())];
    eventually(Duration::from_secs(20), "the warm-up in the agent", || {
        let scrape = agent.scrape();
        (scrape.sum("http_server_request_duration_seconds_count", &server) == (3 * WARM) as f64
            && scrape.sum("monitor_tcp_connect_errors_total", &connector) == WARM as f64
            && scrape.sum("monitor_tcp_connect_duration_seconds_count", &connector) == WARM as f64)
            .then_some(())
    });

    let slos = format!(
        "slos:\n\
         \x20 - name: e2e-availability\n    objective: 99\n    sli:\n      kind: http-availability\n      selector: 'comm=\"{server_comm}\"'\n\
         \x20 - name: e2e-latency\n    objective: 99\n    sli:\n      kind: http-latency\n      selector: 'comm=\"{server_comm}\"'\n      threshold: 0.25\n\
         \x20 - name: e2e-connect\n    objective: 99\n    sli:\n      kind: connect-availability\n      selector: 'comm=\"{connect_comm}\"'\n"
    );
    let slo_file = dir.path().join("slos.yaml");
    std::fs::write(&slo_file, slos).unwrap();
    let rules_file = dir.path().join("slo.rules.yaml");
    let output = Command::new(tests::agent_bin())
        .arg("slo")
        .arg(&slo_file)
        .arg("--output")
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "monitor-agent slo: {output:?}");
    let rules = std::fs::read_to_string(&rules_file).unwrap();
    let job = format!(
        "- job_name: monitor-agent\n  static_configs:\n    - targets: ['{}']\n",
        agent.address
    );
    let prometheus = prometheus_with_job(&job, &[("slo.rules.yaml", rules)]);
    eventually(Duration::from_secs(30), "three scrapes", || {
        (prometheus.scalar("count_over_time(up[5m])", now()) >= Some(3.0)).then_some(())
    });

    curl(
        &client_comm,
        port,
        &[("/ok", K), ("/fail", M), ("/slow", S)],
    );
    connects(A, B, C);
    let total = |family: &str, comm: &str| {
        prometheus.scalar(
            &format!("sum(max_over_time({family}{{comm=\"{comm}\"}}[5m]))"),
            now(),
        )
    };
    eventually(
        Duration::from_secs(30),
        "the workload in Prometheus",
        || {
            (total("http_server_request_duration_seconds_count", &server_comm)
                == Some((3 * WARM + K + M + S) as f64)
                && total("monitor_tcp_connect_errors_total", &connect_comm)
                    == Some((WARM + B) as f64)
                && total("monitor_tcp_connect_duration_seconds_count", &connect_comm)
                    == Some((WARM + A) as f64))
            .then_some(())
        },
    );
    // rate() clamps its extrapolation where a counter would have started from zero; a few
    // seconds of samples put that clamp out of reach for every series alike.
    std::thread::sleep(Duration::from_secs(8));

    let requests = (K + M + S) as f64;
    for (slo, truth) in [
        ("e2e-availability", M as f64 / requests),
        ("e2e-latency", S as f64 / requests),
        ("e2e-connect", B as f64 / (A + B) as f64),
    ] {
        let expr = format!("slo:sli_error:ratio_rate5m{{slo=\"{slo}\"}}");
        let ratio = eventually(Duration::from_secs(10), "the SLO recording rules", || {
            prometheus.scalar(&expr, now())
        });
        assert!(
            (ratio - truth).abs() <= 1e-9 * truth,
            "{slo}: error ratio {ratio}, ground truth {truth}\n{}",
            prometheus.get("/api/v1/rules")
        );
    }
}
