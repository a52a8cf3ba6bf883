//! OTLP push against a real receiver: Rotel (an OpenTelemetry collector, from the `rotel`
//! wheel that `cargo xtask setup` installs), printing every data point it receives with its
//! debug exporter. Ground truth: the syscall workload's exact error counts and latency
//! buckets, and an unmodified HTTP server's and client's exact request counts, must arrive
//! under the OpenTelemetry names, with the same values /metrics shows; then the receiver is
//! down at start-up and comes up later.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::{
    Agent, Scrape, Server, TempDir, eventually, free_port,
    ground_truth::{self, CLOSE_EBADF, NANOSLEEPS, OPENAT_ENOENT},
    require_program, run_as, spawn_named_with, unique_comm,
};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");
/// Sent as a header with every push: it must show up nowhere the agent writes.
const SECRET: &str = "s3cr3t-otlp-key-4242";

/// Rotel's binary, inside the `rotel` package of the `python3` that setup installed into.
fn rotel_agent() -> PathBuf {
    let output = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("running python3");
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        output.status.success() && path.is_file(),
        "rotel's binary not found (`cargo xtask setup` installs pip package rotel): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// A Rotel receiver on 127.0.0.1:`http_port` (OTLP/HTTP), printing what it receives.
struct Receiver {
    _server: Server,
    dir: TempDir,
    output: PathBuf,
}

impl Receiver {
    fn start(http_port: u16) -> Receiver {
        let dir = TempDir::new("rotel");
        let output = dir.path().join("received.txt");
        let out = std::fs::File::create(&output).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = Command::new(rotel_agent());
        command
            .args(["start", "--otlp-http-endpoint"])
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{}", free_port()))
            .args(["--exporter", "blackhole", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed", "--pid-file"])
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.path().join("rotel.log"))
            .stdout(out)
            .stderr(err);
        let server = Server::spawn("rotel", &mut command, Duration::from_secs(5));
        eventually(Duration::from_secs(20), "rotel listening", || {
            std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()
        });
        Receiver {
            _server: server,
            dir,
            output,
        }
    }

    fn received(&self) -> Received {
        Received::parse(&std::fs::read_to_string(&self.output).unwrap_or_default())
    }
}

/// One data point as the receiver printed it.
#[derive(Clone, Debug, Default)]
struct Point {
    metric: String,
    unit: String,
    data_type: String,
    temporality: String,
    resource: BTreeMap<String, String>,
    attributes: BTreeMap<String, String>,
    time: u64,
    /// A number point's value, or a histogram's count.
    value: f64,
    bounds: Vec<f64>,
    buckets: Vec<u64>,
}

struct Received {
    points: Vec<Point>,
}

impl Received {
    /// Parses the debug exporter's text (the OpenTelemetry Collector's `detailed` format).
    fn parse(text: &str) -> Received {
        #[derive(PartialEq)]
        enum Section {
            Other,
            Resource,
            Descriptor,
            Point,
        }
        let mut section = Section::Other;
        let mut resource = BTreeMap::new();
        let mut metric = Point::default();
        let mut points: Vec<Point> = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.starts_with("ResourceMetrics #") {
                resource.clear();
                section = Section::Other;
            } else if line == "Resource attributes:" {
                section = Section::Resource;
            } else if line.starts_with("ScopeMetrics #") {
                section = Section::Other;
            } else if line == "Descriptor:" {
                metric = Point {
                    resource: resource.clone(),
                    ..Point::default()
                };
                section = Section::Descriptor;
            } else if line.starts_with("NumberDataPoints #")
                || line.starts_with("HistogramDataPoints #")
            {
                points.push(metric.clone());
                section = Section::Point;
            } else if let Some(field) = line.trim_start().strip_prefix("-> ") {
                let Some((key, value)) = field.split_once(": ") else {
                    continue;
                };
                // `Str(x)`, `Int(42)`: the value inside.
                let inner = value
                    .split_once('(')
                    .and_then(|(_, rest)| rest.strip_suffix(')'))
                    .unwrap_or(value)
                    .to_owned();
                match section {
                    Section::Resource => {
                        resource.insert(key.to_owned(), inner);
                    }
                    Section::Descriptor => match key {
                        "Name" => metric.metric = value.to_owned(),
                        "Unit" => metric.unit = value.to_owned(),
                        "DataType" => metric.data_type = value.to_owned(),
                        "AggregationTemporality" => metric.temporality = value.to_owned(),
                        _ => {}
                    },
                    Section::Point => {
                        let point = points.last_mut().unwrap();
                        point.attributes.insert(key.to_owned(), inner);
                    }
                    Section::Other => {}
                }
            } else if section == Section::Point {
                let point = points.last_mut().unwrap();
                if let Some(time) = line.strip_prefix("Timestamp: ") {
                    point.time = time.parse().unwrap();
                } else if let Some(value) = line
                    .strip_prefix("Value: ")
                    .or_else(|| line.strip_prefix("Count: "))
                {
                    point.value = value.parse().unwrap();
                } else if line.starts_with("ExplicitBounds #") {
                    let (_, bound) = line.split_once(": ").unwrap();
                    point.bounds.push(bound.parse().unwrap());
                } else if line.starts_with("Buckets #") {
                    let (_, count) = line.split_once("Count: ").unwrap();
                    point.buckets.push(count.parse().unwrap());
                }
            }
        }
        Received { points }
    }

    /// Every point of `metric` carrying at least `attributes`.
    fn matching(&self, metric: &str, attributes: &[(&str, &str)]) -> Vec<&Point> {
        self.points
            .iter()
            .filter(|point| {
                point.metric == metric
                    && attributes
                        .iter()
                        .all(|(k, v)| point.attributes.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The newest point of the series (cumulative: its value now).
    fn latest(&self, metric: &str, attributes: &[(&str, &str)]) -> Option<&Point> {
        self.matching(metric, attributes)
            .into_iter()
            .max_by_key(|p| p.time)
    }

    fn value(&self, metric: &str, attributes: &[(&str, &str)]) -> Option<f64> {
        self.latest(metric, attributes).map(|p| p.value)
    }
}

fn otlp_args(port: u16) -> Vec<String> {
    [
        "--otlp.endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--otlp.interval",
        "1s",
        "--otlp.headers",
        &format!("x-test-key={SECRET}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start_agent(args: &[String]) -> Agent {
    Agent::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Python's http.server as `comm` (`tests::PYTHON_HTTP_SERVER`); returns it and its port.
fn python_server(comm: &str) -> ((Server, TempDir), u16) {
    let dir = TempDir::new("otlphttp");
    let script = dir.path().join("server.py");
    std::fs::write(&script, tests::PYTHON_HTTP_SERVER).unwrap();
    let mut child = spawn_named_with(comm, &tests::python3(), |command| {
        command.arg(&script).arg("0").stdout(Stdio::piped());
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    (
        (Server::adopt("python3", child, Duration::from_secs(5)), dir),
        port,
    )
}

/// curl as `comm`, fetching every URL in turn over one keep-alive connection.
fn curl_as(comm: &str, urls: &[String]) {
    let curl = require_program("curl", "curl");
    let child = spawn_named_with(comm, &curl, |command| {
        command.args(["--silent", "--show-error"]);
        for url in urls {
            command.args(["--output", "/dev/null", url]);
        }
        command.stdout(Stdio::null()).stderr(Stdio::piped());
    });
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "curl failed: {output:?}");
}

/// Waits until the receiver has `check`'s answer (the agent's log and the receiver's
/// last output on a timeout).
fn received_when<T>(
    receiver: &Receiver,
    agent: &Agent,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&Received) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check(&receiver.received()) {
            return value;
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(&receiver.output).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\nagent log:\n{}\nreceiver output (end):\n{tail}\nreceiver dir: {}",
                agent.log(),
                receiver.dir.path().display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

const ERRORS: &str = "monitor_syscall_errors_total";
const DURATION: &str = "monitor_syscall_duration_seconds";
const COMM: &str = "process.executable.name";

/// The workload's errors as the receiver has them now, if complete.
fn workload_errors(received: &Received, comm: &str) -> Option<(f64, f64)> {
    let openat = received.value(
        ERRORS,
        &[(COMM, comm), ("syscall", "openat"), ("errno", "ENOENT")],
    )?;
    let close = received.value(
        ERRORS,
        &[(COMM, comm), ("syscall", "close"), ("errno", "EBADF")],
    )?;
    let sleeps = received.value(DURATION, &[(COMM, comm), ("syscall", "nanosleep")])?;
    (sleeps >= NANOSLEEPS as f64).then_some((openat, close))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn pushed_metrics_have_the_workloads_exact_counts_under_opentelemetry_names() {
    const FAILS: usize = 9;
    const OKS: usize = 4;
    let port = free_port();
    let receiver = Receiver::start(port);
    let agent = start_agent(&otlp_args(port));

    // Ground truth 1: the syscall workload (N failing openat, M close(-1), K 20 ms sleeps).
    // Its latency buckets are compared with /metrics rather than with a fixed bucket: on a
    // busy 2-CPU machine a 20 ms sleep can overrun into the next one.
    let comm = unique_comm("otlpgt");
    run_as(&comm, WORKLOAD.as_ref(), &ground_truth::args());
    let scrape = ground_truth::scrape_when_reported(&agent, &comm);
    // Ground truth 2: a real server and client, K requests of each kind.
    let server = unique_comm("otlpsrv");
    let client = unique_comm("otlpcli");
    let (_python, http_port) = python_server(&server);
    let mut urls = vec![format!("http://127.0.0.1:{http_port}/fail"); FAILS];
    urls.extend(vec![format!("http://127.0.0.1:{http_port}/ok"); OKS]);
    curl_as(&client, &urls);

    let http_port_text = http_port.to_string();
    let served = |status: &'static str, route: &'static str| {
        [
            (COMM, server.as_str()),
            ("http.request.method", "GET"),
            ("http.response.status_code", status),
            ("http.route", route),
        ]
    };
    let made = |status: &'static str| {
        [
            (COMM, client.as_str()),
            ("http.request.method", "GET"),
            ("http.response.status_code", status),
            ("server.port", http_port_text.as_str()),
        ]
    };
    let received = received_when(
        &receiver,
        &agent,
        Duration::from_secs(30),
        "the workloads' series",
        |received| {
            workload_errors(received, &comm)?;
            let requests = [
                received.value("http.server.request.duration", &served("500", "/fail"))?,
                received.value("http.server.request.duration", &served("200", "/ok"))?,
                received.value("http.client.request.duration", &made("500"))?,
                received.value("http.client.request.duration", &made("200"))?,
            ];
            (requests == [FAILS as f64, OKS as f64, FAILS as f64, OKS as f64]).then(|| Received {
                points: received.points.clone(),
            })
        },
    );

    // Exact counts, as on /metrics.
    let (openat, close) = workload_errors(&received, &comm).unwrap();
    assert_eq!((openat, close), (OPENAT_ENOENT as f64, CLOSE_EBADF as f64));
    let errors = received
        .latest(ERRORS, &[(COMM, &comm), ("syscall", "openat")])
        .unwrap();
    assert_eq!(errors.data_type, "Sum");
    assert_eq!(errors.temporality, "AGGREGATION_TEMPORALITY_CUMULATIVE");
    assert_eq!(
        errors.resource.get("host.name"),
        Some(&host_name()),
        "{errors:?}"
    );
    assert_eq!(
        errors.resource.get("k8s.node.name"),
        None,
        "not in Kubernetes"
    );
    assert_eq!(
        scrape.value(
            ERRORS,
            &[("comm", &comm), ("syscall", "openat"), ("errno", "ENOENT")]
        ),
        Some(openat)
    );

    // The latency histogram: the /metrics bounds, and every sleep in the bucket that holds
    // 20 ms, (2^24 ns, 2^25 ns].
    let sleeps = received
        .latest(DURATION, &[(COMM, &comm), ("syscall", "nanosleep")])
        .unwrap();
    assert_eq!(
        (sleeps.data_type.as_str(), sleeps.unit.as_str()),
        ("Histogram", "s")
    );
    assert_eq!(sleeps.value, NANOSLEEPS as f64);
    let le: Vec<f64> = scrape
        .buckets(DURATION, &[("comm", &comm), ("syscall", "nanosleep")])
        .iter()
        .map(|(le, _)| *le)
        .filter(|le| le.is_finite())
        .collect();
    assert_eq!(sleeps.bounds, le, "the same bounds as /metrics");
    assert_eq!(sleeps.bounds.len() + 1, sleeps.buckets.len());
    // Bucket by bucket what /metrics has (cumulative there): every sleep, none lost.
    let scraped: Vec<u64> = scrape
        .buckets(DURATION, &[("comm", &comm), ("syscall", "nanosleep")])
        .iter()
        .scan(0.0, |below, (_, cumulative)| {
            let count = cumulative - *below;
            *below = *cumulative;
            Some(count as u64)
        })
        .collect();
    assert_eq!(sleeps.buckets, scraped, "{sleeps:?}");
    assert_eq!(sleeps.buckets.iter().sum::<u64>(), NANOSLEEPS);
    // None faster than 2^24 ns (16.8 ms): the 20 ms sleeps are where they belong.
    let at = sleeps
        .bounds
        .iter()
        .position(|bound| *bound == (1u64 << 24) as f64 / 1e9)
        .unwrap();
    assert_eq!(sleeps.buckets[..=at].iter().sum::<u64>(), 0, "{sleeps:?}");

    // HTTP under the semantic conventions: the name, the unit, the attributes.
    let served_fail = received
        .latest("http.server.request.duration", &served("500", "/fail"))
        .unwrap();
    assert_eq!(
        (served_fail.data_type.as_str(), served_fail.unit.as_str()),
        ("Histogram", "s")
    );
    assert!(
        received
            .matching("http_server_request_duration_seconds", &[])
            .is_empty(),
        "the Prometheus name is not pushed for a family with a convention"
    );

    // The push's own counters, and the secret nowhere.
    let metrics = agent.scrape();
    let sent = metrics
        .value(
            "monitor_export_requests_total",
            &[("exporter", "otlp"), ("result", "success")],
        )
        .unwrap();
    assert!(sent >= 1.0, "{}", metrics.text);
    assert_eq!(
        metrics.value(
            "monitor_export_requests_total",
            &[("exporter", "otlp"), ("result", "rejected")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metrics.value(
            "monitor_export_dropped_points_total",
            &[("exporter", "otlp")]
        ),
        Some(0.0)
    );
    assert!(
        !metrics.text.contains(SECRET),
        "the header's value on /metrics"
    );
    tests::promtool_check(&metrics.text).expect("promtool check metrics with the push on");
    let log = agent.log();
    assert!(
        !log.contains(SECRET),
        "the header's value in the log:\n{log}"
    );
    assert!(log.contains("OTLP push to http://127.0.0.1:"), "{log}");
}

#[test]
fn pushed_deltas_add_up_to_the_exact_counts() {
    let port = free_port();
    let receiver = Receiver::start(port);
    let mut args = otlp_args(port);
    args.extend(["--otlp.temporality".to_owned(), "delta".to_owned()]);
    let agent = start_agent(&args);
    let comm = unique_comm("otlpdt");
    run_as(&comm, WORKLOAD.as_ref(), &ground_truth::args());
    let total = |received: &Received, syscall: &str, errno: &str| -> f64 {
        received
            .matching(
                ERRORS,
                &[
                    (COMM, comm.as_str()),
                    ("syscall", syscall),
                    ("errno", errno),
                ],
            )
            .iter()
            .map(|point| point.value)
            .sum()
    };
    // Several pushes go by: the deltas of each series add up to its count, once.
    received_when(
        &receiver,
        &agent,
        Duration::from_secs(30),
        "three pushes after the workload's series",
        |received| {
            let pushes = received
                .matching(ERRORS, &[(COMM, comm.as_str()), ("syscall", "close")])
                .len();
            (pushes >= 3).then_some(())
        },
    );
    let received = receiver.received();
    assert_eq!(total(&received, "openat", "ENOENT"), OPENAT_ENOENT as f64);
    assert_eq!(total(&received, "close", "EBADF"), CLOSE_EBADF as f64);
    let sleeps: f64 = received
        .matching(DURATION, &[(COMM, comm.as_str()), ("syscall", "nanosleep")])
        .iter()
        .map(|point| point.value)
        .sum();
    assert_eq!(sleeps, NANOSLEEPS as f64);
    let point = received.latest(ERRORS, &[(COMM, comm.as_str())]).unwrap();
    assert_eq!(point.temporality, "AGGREGATION_TEMPORALITY_DELTA");
}

fn export_requests(scrape: &Scrape, result: &str) -> f64 {
    scrape
        .value(
            "monitor_export_requests_total",
            &[("exporter", "otlp"), ("result", result)],
        )
        .unwrap_or_else(|| panic!("no monitor_export_requests_total{{result={result}}}"))
}

#[test]
fn an_unreachable_receiver_blocks_nothing_and_gets_the_data_once_up() {
    let port = free_port();
    let agent = start_agent(&otlp_args(port));
    // Down: every push fails, the queue fills and drops its oldest batches, scrapes stay
    // quick and whole.
    let scrape = eventually(
        Duration::from_secs(60),
        "failed pushes and dropped points",
        || {
            let started = Instant::now();
            let scrape = agent.scrape();
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "a scrape took {:?} while the receiver was down",
                started.elapsed()
            );
            let dropped = scrape.value(
                "monitor_export_dropped_points_total",
                &[("exporter", "otlp")],
            )?;
            (export_requests(&scrape, "failure") >= 3.0 && dropped > 0.0).then_some(scrape)
        },
    );
    assert_eq!(export_requests(&scrape, "success"), 0.0);
    assert!(scrape.value("monitor_build_info", &[]).is_some());

    // The workload runs while the receiver is still down: its counts must arrive later.
    let comm = unique_comm("otlpdn");
    run_as(&comm, WORKLOAD.as_ref(), &ground_truth::args());
    std::thread::sleep(Duration::from_secs(2));
    let receiver = Receiver::start(port);
    let (openat, close) = received_when(
        &receiver,
        &agent,
        Duration::from_secs(40),
        "the workload's series after the receiver came up",
        |received| workload_errors(received, &comm),
    );
    assert_eq!((openat, close), (OPENAT_ENOENT as f64, CLOSE_EBADF as f64));
    let scrape = agent.scrape();
    assert!(
        export_requests(&scrape, "success") >= 1.0,
        "{}",
        scrape.text
    );
    let log = agent.log();
    assert!(log.contains("works again"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert_eq!(
        log.matches("OTLP push to").count(),
        3,
        "start-up, the first failure, the recovery: one line each\n{log}"
    );
}

fn agent_output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(tests::agent_bin());
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn the_flags_are_in_help_and_bad_values_are_one_line_without_the_secret() {
    // --help shows every flag, and never the value of the headers' environment variable.
    let help = agent_output(
        &["--help"],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t")],
    );
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--otlp.endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "--otlp.interval",
        "--otlp.headers",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "--otlp.temporality",
        "cumulative",
        "delta",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
    assert!(!text.contains("s3cr3t"), "{text}");

    for (args, env, named) in [
        (
            &["--otlp.endpoint", "grpc://collector:4317"][..],
            &[][..],
            "--otlp.endpoint",
        ),
        (
            &["--otlp.endpoint", "https://user:s3cr3t@otlp.example.com"],
            &[],
            "--otlp.endpoint",
        ),
        (&["--otlp.interval", "100ms"], &[], "--otlp.interval"),
        (
            &["--otlp.temporality", "sideways"],
            &[],
            "--otlp.temporality",
        ),
        (&["--otlp.headers", "api-key:s3cr3t"], &[], "--otlp.headers"),
        (&["--otlp.headers", "a=1,=s3cr3t"], &[], "--otlp.headers"),
        (
            &[],
            &[("OTEL_EXPORTER_OTLP_HEADERS", "s3cr3t")],
            "--otlp.headers",
        ),
    ] {
        let output = agent_output(args, env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with("monitor-agent: error: "), "{stderr}");
        assert!(stderr.lines().next().unwrap().contains(named), "{stderr}");
        assert!(
            !stderr.contains("s3cr3t"),
            "the secret was echoed: {stderr}"
        );
        assert!(!stderr.contains("attached"), "something started: {stderr}");
    }
}

/// deploy/otel-collector/: each example takes OTLP/HTTP in on 4318, sends metrics out with the
/// vendor's exporter, and reads its API key from the environment, never from the file. (No
/// OpenTelemetry Collector contrib build is installable here to run them; this checks their
/// shape with PyYAML, which the deployment tests' kubernetes-validate brings.)
#[test]
fn collector_examples_take_otlp_in_and_keep_their_keys_in_the_environment() {
    let dir = tests::workspace_root().join("deploy/otel-collector");
    for (file, exporter, key) in [
        ("datadog.yaml", "datadog", "${env:DD_API_KEY}"),
        (
            "newrelic.yaml",
            "otlphttp/newrelic",
            "${env:NEW_RELIC_LICENSE_KEY}",
        ),
    ] {
        let path = dir.join(file);
        let output = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{file}: {output:?}");
        let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            config["receivers"]["otlp"]["protocols"]["http"]["endpoint"], "0.0.0.0:4318",
            "{file}"
        );
        let pipeline = &config["service"]["pipelines"]["metrics"];
        assert_eq!(pipeline["receivers"], serde_json::json!(["otlp"]), "{file}");
        assert_eq!(
            pipeline["exporters"],
            serde_json::json!([exporter]),
            "{file}"
        );
        let exporter = &config["exporters"][exporter];
        let configured_key = exporter["api"]["key"]
            .as_str()
            .or_else(|| exporter["headers"]["api-key"].as_str());
        assert_eq!(configured_key, Some(key), "{file}");
        for processor in pipeline["processors"].as_array().unwrap() {
            let name = processor.as_str().unwrap();
            assert!(config["processors"].get(name).is_some(), "{file}: {name}");
        }
    }
}

/// An https endpoint is spoken to over TLS and its certificate checked against the system's
/// CA bundle: a self-signed one is refused by the agent (a fatal alert, no request sent),
/// counted as a failure, and the headers never leave the agent.
#[test]
fn an_https_endpoint_with_an_untrusted_certificate_gets_no_request() {
    use std::{io::Read as _, sync::Arc};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The first connection's handshake: what the server saw.
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let connection = rustls::ServerConnection::new(config).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let mut request = Vec::new();
        let result = stream.read_to_end(&mut request);
        (result.map_err(|err| err.to_string()), request)
    });
    let agent = Agent::start(&[
        "--otlp.endpoint",
        &format!("https://localhost:{port}"),
        "--otlp.interval",
        "1s",
        "--otlp.headers",
        &format!("x-test-key={SECRET}"),
    ]);
    let (result, request) = server.join().unwrap();
    let error = result.expect_err("the handshake must fail");
    assert!(
        error.contains("UnknownCA") || error.contains("BadCertificate"),
        "the agent did not refuse the certificate: {error}"
    );
    assert!(request.is_empty(), "a request crossed: {request:?}");
    let scrape = eventually(Duration::from_secs(20), "a failed push counted", || {
        let scrape = agent.scrape();
        (export_requests(&scrape, "failure") >= 1.0).then_some(scrape)
    });
    assert_eq!(export_requests(&scrape, "success"), 0.0);
    let log = agent.log();
    assert!(log.contains("TLS handshake with localhost:"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
}
