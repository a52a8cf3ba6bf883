use super::*;

/// A test's name as the harness filters it (the module path without the crate).
fn test_path(name: &str) -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::{name}")
}

fn selector(text: &str) -> Selector {
    text.parse().unwrap()
}

/// A config file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("monitor-config-{name}-{}.yml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load(args: &[&str]) -> Config {
    load_from(std::iter::once("monitor-agent").chain(args.iter().copied())).unwrap()
}

#[test]
fn constant_labels() {
    let config = load(&["--label.const", "environment=prod,region=eu-1=a"]);
    assert_eq!(
        config.constant_labels,
        [
            ("environment".to_owned(), "prod".to_owned()),
            ("region".to_owned(), "eu-1=a".to_owned())
        ]
    );
    let config = load(&["--label.const", "a=1", "--label.const", "b=2"]);
    assert_eq!(config.constant_labels.len(), 2);
    for (bad, expected) in [
        ("environment", "KEY=VALUE"),
        ("environment=", "empty"),
        ("1env=x", "not a valid label name"),
        ("env-x=x", "not a valid label name"),
        ("__name__=x", "reserved"),
        ("comm=x", "set by the agent"),
        ("pid=x", "set by the agent"),
        ("namespace=x", "set by the agent"),
        ("service=x", "set by the agent"),
        ("syscall=x", "set by the agent"),
        ("peer=x", "set by the agent"),
        ("le=x", "set by the agent"),
        ("http_route=x", "set by the agent"),
        ("server_port=x", "set by the agent"),
    ] {
        let error = parse_constant_label(bad).unwrap_err();
        assert!(error.contains(expected), "{bad}: {error}");
        let error = load_from(["monitor-agent", "--label.const", bad]).unwrap_err();
        assert!(
            matches!(&error, LoadError::Usage(err) if err.exit_code() == 2),
            "{error}"
        );
    }
    let error = load_from(["monitor-agent", "--label.const", "a=1,a=2"]).unwrap_err();
    assert!(error.to_string().contains("`a` is given twice"), "{error}");
}

#[test]
fn new_flags_have_defaults() {
    let config = load(&[]);
    assert_eq!(config.config_file, None);
    assert_eq!(config.series_max, 50_000);
    assert!(config.constant_labels.is_empty());
    assert!(config.family_labels.is_empty());
    assert!(config.service_overrides.is_empty());
    assert!(config.selection.admits_all());
    assert_eq!(config.docker_socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(config.kubernetes_node_name, None);
    assert_eq!(config.kubernetes_api_url, None);
    assert_eq!(config.kubernetes_deleted_pod_ttl, Duration::from_secs(60));
    assert_eq!(config.web_telemetry_path, "/metrics");
    assert_eq!(
        load(&["--web.telemetry-path", "/probe/metrics"]).web_telemetry_path,
        "/probe/metrics"
    );
    let config = load(&[
        "--series.max",
        "5",
        "--select.include",
        "comm=nginx,namespace=shop",
        "--select.exclude",
        "comm=sshd",
        "--docker.socket",
        "/run/docker.sock",
        "--kubernetes.node-name",
        "node-1",
        "--kubernetes.api-url",
        "https://10.0.0.1:443",
        "--kubernetes.deleted-pod-ttl",
        "30s",
    ]);
    assert_eq!(config.series_max, 5);
    assert_eq!(config.selection.include().len(), 2);
    assert_eq!(config.selection.exclude(), [selector("comm=sshd")]);
    assert_eq!(config.docker_socket, PathBuf::from("/run/docker.sock"));
    assert_eq!(config.kubernetes_node_name.as_deref(), Some("node-1"));
    assert_eq!(
        config.kubernetes_api_url.as_deref(),
        Some("https://10.0.0.1:443")
    );
    assert_eq!(config.kubernetes_deleted_pod_ttl, Duration::from_secs(30));
}

#[test]
fn bad_new_flags_are_usage_errors() {
    for args in [
        &["--series.max", "0"][..],
        &["--series.max", "many"],
        &["--select.include", "nginx"],
        &["--select.exclude", "uid=0"],
        &["--kubernetes.api-url", "10.0.0.1:443"],
        &["--kubernetes.deleted-pod-ttl", "1"],
        &["--web.telemetry-path", "metrics"],
        &["--web.telemetry-path", "/healthz"],
        &["--web.telemetry-path", "/"],
        &["--web.telemetry-path", "/metrics?x=1"],
    ] {
        let error =
            load_from(std::iter::once("monitor-agent").chain(args.iter().copied())).unwrap_err();
        match error {
            LoadError::Usage(err) => {
                assert_eq!(err.exit_code(), 2, "{args:?}");
                assert!(err.to_string().contains(args[0]), "{args:?}: {err}");
            }
            other => panic!("{args:?}: {other}"),
        }
    }
}

/// `slo` runs instead of the agent: its own arguments, no agent flag beside it (it would be
/// ignored), and a run without it has no command.
#[test]
fn slo_is_a_command_of_its_own() {
    let slo = |file: &str, output: Option<&str>| {
        Some(Subcommand::Slo(crate::slo::Args {
            file: file.into(),
            output: output.map(PathBuf::from),
        }))
    };
    assert_eq!(load(&["slo", "s.yaml"]).command, slo("s.yaml", None));
    assert_eq!(
        load(&["slo", "s.yaml", "--output", "r.yaml"]).command,
        slo("s.yaml", Some("r.yaml"))
    );
    assert_eq!(
        load(&["slo", "-o", "r.yaml", "s.yaml"]).command,
        slo("s.yaml", Some("r.yaml"))
    );
    assert_eq!(load(&["--labels", "pid"]).command, None);
    for (args, kind) in [
        (
            &["--labels", "pid", "slo", "s.yaml"][..],
            ErrorKind::ArgumentConflict,
        ),
        (&["slo"], ErrorKind::MissingRequiredArgument),
        (
            &["slo", "s.yaml", "--labels", "pid"],
            ErrorKind::UnknownArgument,
        ),
        (&["help"], ErrorKind::InvalidSubcommand),
    ] {
        let error =
            load_from(std::iter::once("monitor-agent").chain(args.iter().copied())).unwrap_err();
        match error {
            LoadError::Usage(err) => assert_eq!(err.kind(), kind, "{args:?}: {err}"),
            other => panic!("{args:?}: {other}"),
        }
    }
}

#[test]
fn the_file_fills_what_flags_leave_at_their_defaults() {
    let file = TempFile::new(
        "fills",
        "series:\n  ttl: 9s\n  max: 100\nlabels:\n  pid: true\n  constant:\n    env: prod\n  \
         families:\n    monitor_tcp_rtt_seconds: [comm, pod]\ntcp:\n  peers_per_comm: 8\n\
         http:\n  routes_per_comm: 9\nidentity:\n  docker_socket: /d.sock\n  kubernetes:\n    \
         node_name: n1\n    api_url: https://k:6443\n    deleted_pod_ttl: 2m\n\
         service:\n  overrides:\n    - match: { comm: a }\n      service: b\n\
         selection:\n  include: [comm=x]\n  exclude: [comm=y]\n",
    );
    let config = load(&["--config.file", file.arg()]);
    assert_eq!(config.series_ttl, Duration::from_secs(9));
    assert_eq!(config.series_max, 100);
    assert!(config.with_pid_label());
    assert_eq!(config.constant_labels, [("env".into(), "prod".into())]);
    assert_eq!(
        config.family_labels["monitor_tcp_rtt_seconds"],
        [IdentityLabel::Comm, IdentityLabel::Pod]
    );
    assert_eq!(config.tcp_peers_per_comm, 8);
    assert_eq!(config.http_routes_per_comm, 9);
    assert_eq!(config.docker_socket, PathBuf::from("/d.sock"));
    assert_eq!(config.kubernetes_node_name.as_deref(), Some("n1"));
    assert_eq!(config.kubernetes_api_url.as_deref(), Some("https://k:6443"));
    assert_eq!(config.kubernetes_deleted_pod_ttl, Duration::from_secs(120));
    assert_eq!(config.service_overrides[0].service, "b");
    assert_eq!(config.selection.include(), [selector("comm=x")]);
    assert_eq!(config.selection.exclude(), [selector("comm=y")]);

    // The command line wins, setting by setting; lists are replaced, not merged.
    let config = load(&[
        "--config.file",
        file.arg(),
        "--series.ttl",
        "1s",
        "--series.max",
        "50000",
        "--label.const",
        "team=a",
        "--tcp.peers-per-comm",
        "64",
        "--docker.socket",
        "/var/run/docker.sock",
        "--kubernetes.node-name",
        "n2",
        "--select.include",
        "comm=z",
    ]);
    assert_eq!(config.series_ttl, Duration::from_secs(1));
    assert_eq!(
        config.series_max, 50_000,
        "given, even if equal to the default"
    );
    assert_eq!(config.tcp_peers_per_comm, 64);
    assert_eq!(config.constant_labels, [("team".into(), "a".into())]);
    assert_eq!(config.docker_socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(config.kubernetes_node_name.as_deref(), Some("n2"));
    assert_eq!(config.selection.include(), [selector("comm=z")]);
    // … and what it does not set still comes from the file.
    assert_eq!(config.http_routes_per_comm, 9);
    assert_eq!(config.kubernetes_api_url.as_deref(), Some("https://k:6443"));
    assert_eq!(config.selection.exclude(), [selector("comm=y")]);
    assert_eq!(config.service_overrides.len(), 1);
}

#[test]
fn pid_from_the_file_or_the_flag() {
    let on = TempFile::new("pid-on", "labels:\n  pid: true\n");
    let off = TempFile::new("pid-off", "labels:\n  pid: false\n");
    assert!(load(&["--config.file", on.arg()]).with_pid_label());
    assert!(!load(&["--config.file", off.arg()]).with_pid_label());
    assert!(load(&["--config.file", off.arg(), "--labels", "pid"]).with_pid_label());
}

#[test]
fn a_bad_file_is_a_file_error_naming_line_and_field() {
    let file = TempFile::new("bad", "series:\n  ttl: 5m\n  tll: 5m\n");
    let error = load_from(["monitor-agent", "--config.file", file.arg()]).unwrap_err();
    assert!(matches!(error, LoadError::File(_)), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "config file {}: line 3: series.tll: unknown field, expected `ttl` or `max`",
            file.arg()
        )
    );
    // Even when the command line sets the same setting: the file is wrong all the same.
    let error = load_from([
        "monitor-agent",
        "--config.file",
        file.arg(),
        "--series.ttl",
        "1m",
    ])
    .unwrap_err();
    assert!(matches!(error, LoadError::File(_)), "{error}");
    let error =
        load_from(["monitor-agent", "--config.file", "/nonexistent/monitor.yml"]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("config file /nonexistent/monitor.yml: cannot read it: "),
        "{error}"
    );
}

#[test]
fn every_setting_the_file_can_set_has_a_flag() {
    let command = Config::command();
    for id in id::ALL {
        assert!(
            command.get_arguments().any(|arg| arg.get_id() == id),
            "{id} is no argument"
        );
    }
}

/// clap reads the real environment, and changing it under other test threads is unsound:
/// the checks run in a child process of this test binary, with the variables set.
#[test]
fn the_environment_is_between_command_line_and_file() {
    const CHILD: &str = "MONITOR_CONFIG_TEST_CHILD";
    let file = TempFile::new(
        "env",
        "series:\n  ttl: 9s\n  max: 100\ntcp:\n  peers_per_comm: 8\n\
         selection:\n  exclude: [comm=file]\n",
    );
    if std::env::var_os(CHILD).is_some() {
        let config = load(&["--config.file", file.arg()]);
        assert_eq!(config.series_ttl, Duration::from_secs(7), "env over file");
        assert_eq!(config.series_max, 77, "env over file");
        assert_eq!(config.selection.exclude(), [selector("comm=env")]);
        assert_eq!(config.tcp_peers_per_comm, 8, "file over default");
        let config = load(&["--config.file", file.arg(), "--series.ttl", "3s"]);
        assert_eq!(config.series_ttl, Duration::from_secs(3), "flag over env");
        assert_eq!(config.series_max, 77);
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &test_path("the_environment_is_between_command_line_and_file"),
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("MONITOR_SERIES_TTL", "7s")
        .env("MONITOR_SERIES_MAX", "77")
        .env("MONITOR_SELECT_EXCLUDE", "comm=env")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_wrong_log_level_is_answered_with_the_right_ones() {
    let err = Config::try_parse_from(["monitor-agent", "--log.level", "loud"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[possible values: off, error, warn, info, debug, trace]"),
        "{err}"
    );
    let config = Config::try_parse_from(["monitor-agent", "--log.level", "debug"]).unwrap();
    assert_eq!(config.log_level, LevelFilter::Debug);
    let config = Config::try_parse_from(["monitor-agent", "--log.level", "WARN"]).unwrap();
    assert_eq!(config.log_level, LevelFilter::Warn);
}

#[test]
fn defaults_parse() {
    let config = Config::try_parse_from(["monitor-agent"]).unwrap();
    assert_eq!(config.listen_address.port(), 9655);
    assert!(!config.with_pid_label());
    assert_eq!(config.series_ttl, Duration::from_secs(300));
}

#[test]
fn probes_to_disable_are_known_names() {
    let config =
        Config::try_parse_from(["monitor-agent", "--probes.disable", "mon_sys_exit"]).unwrap();
    assert_eq!(config.disabled_probes, ["mon_sys_exit"]);
    assert!(Config::try_parse_from(["monitor-agent", "--probes.disable", "nope"]).is_err());
}

#[test]
fn pid_label_is_opt_in() {
    let config = Config::try_parse_from(["monitor-agent", "--labels", "pid"]).unwrap();
    assert!(config.with_pid_label());
    assert!(Config::try_parse_from(["monitor-agent", "--labels", "uid"]).is_err());
}

#[test]
fn otlp_settings_are_checked_and_their_secrets_never_shown() {
    let config = load_from([
        "monitor-agent",
        "--otlp.endpoint",
        "http://collector:4318/",
        "--otlp.headers",
        "api-key=s3cr3t,x-team=blue",
        "--otlp.temporality",
        "delta",
    ])
    .unwrap();
    let otlp = config.otlp().unwrap();
    assert_eq!(
        otlp.endpoint.to_string(),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(otlp.interval, Duration::from_secs(60));
    assert_eq!(otlp.temporality, Temporality::Delta);
    let headers: Vec<(&str, &str)> = otlp
        .headers
        .iter()
        .map(|header| (header.name.as_str(), header.value()))
        .collect();
    assert_eq!(headers, [("api-key", "s3cr3t"), ("x-team", "blue")]);
    let shown = format!("{config:?} {otlp:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("blue"),
        "{shown}"
    );

    assert!(load_from(["monitor-agent"]).unwrap().otlp().is_none());
    for bad in [
        &["--otlp.headers", "s3cr3t"][..],
        &["--otlp.endpoint", "http://user:s3cr3t@collector:4318"],
    ] {
        let Err(LoadError::Usage(err)) =
            load_from(std::iter::once("monitor-agent").chain(bad.iter().copied()))
        else {
            panic!("{bad:?} accepted");
        };
        let text = err.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
