//! Bad input and lifecycle: usage errors exit 2 and start nothing; missing privileges and a
//! taken port are one line and a non-zero exit; SIGTERM/SIGINT exit cleanly and detach.
use std::{
    net::TcpListener,
    process::{Command, Output},
    time::Duration,
};

use tests::{Agent, agent_bin, free_port, loaded_program_ids, programs_held_by};

fn agent(args: &[&str]) -> Output {
    Command::new(agent_bin()).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Nothing was loaded: the log line of the first attached probe never appears.
fn assert_started_nothing(output: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
    assert!(!text.contains("attached"), "something started: {text}");
}

/// A run that fails (not bad input): exit 1, one line, the one prefix.
fn assert_one_line_error(output: &Output, expected: &[&str]) {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stderr(output);
    assert!(text.starts_with("monitor-agent: error: "), "{text}");
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "one line expected: {text}"
    );
    for needle in expected {
        assert!(text.contains(needle), "{needle:?} missing from {text:?}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = agent(&["--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).starts_with("monitor-agent: error: "));
    assert!(stderr(&output).contains("--no-such-flag"));
    assert!(stderr(&output).contains("Usage:"));
    assert_started_nothing(&output);
}

#[test]
fn bad_values_are_usage_errors() {
    for args in [
        &["--web.listen-address", "not-an-address"][..],
        &["--web.listen-address", "127.0.0.1:99999"],
        &["--series.ttl", "5"],
        &["--labels", "uid"],
        &["--kernel.syscall-stats-entries", "0"],
        &["--log.level", "loud"],
        // A zero sweep interval panicked in the sweep task once the probes were loaded.
        &["--kernel.sweep-interval", "0s"],
        &["--kernel.sweep-interval", "1000000000h"],
        // 5124095576030431 h in milliseconds overflows 64 bits.
        &["--series.ttl", "5124095576030431h"],
        &["--series.ttl", "30m1h"],
    ] {
        let output = agent(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            stderr(&output).contains(args[0]),
            "{args:?} not named: {}",
            stderr(&output)
        );
        assert_started_nothing(&output);
    }
}

#[test]
fn help_explains_the_flags() {
    let output = agent(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--web.listen-address",
        "--labels",
        "--series.ttl",
        "0.0.0.0:9655",
        "CAP_BPF",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn not_root_names_the_missing_capabilities() {
    let address = format!("127.0.0.1:{}", free_port());
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(agent_bin())
        .args(["--web.listen-address", &address])
        .output()
        .expect("setpriv (util-linux)");
    assert_one_line_error(&output, &["CAP_BPF", "CAP_PERFMON"]);
    assert_started_nothing(&output);
}

#[test]
fn root_without_bpf_capabilities_names_them() {
    let address = format!("127.0.0.1:{}", free_port());
    let output = Command::new("setpriv")
        .args(["--bounding-set=-bpf,-perfmon,-sys_admin", "--inh-caps=-all"])
        .arg(agent_bin())
        .args(["--web.listen-address", &address])
        .output()
        .expect("setpriv (util-linux)");
    assert_one_line_error(&output, &["CAP_BPF + CAP_PERFMON"]);
}

#[test]
fn port_in_use_is_one_line_and_loads_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = agent(&["--web.listen-address", &address]);
    assert_one_line_error(&output, &["cannot listen on", &address, "in use"]);
    assert_started_nothing(&output);
}

#[test]
fn sigterm_and_sigint_exit_cleanly_and_detach() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let agent = Agent::start(&[]);
        // By the agent's own descriptors: programs an earlier test's agent left for the
        // kernel to free would make a machine-wide count drift.
        let ours = programs_held_by(agent.pid());
        assert_eq!(
            ours.len(),
            monitor_agent::probes::PROBES.len() + monitor_agent::probes::tls::LOADED_PROGRAMS,
            "every probe, and the TLS uprobes, while running"
        );
        let (status, log) = agent.stop_with(signal);
        assert!(status.success(), "signal {signal}: {status}\n{log}");
        assert!(log.contains("probes detached"), "{log}");
        // The kernel frees programs after an RCU grace period, not at close(2).
        tests::eventually(
            Duration::from_secs(10),
            "the agent's programs to be freed",
            || loaded_program_ids().is_disjoint(&ours).then_some(()),
        );
    }
}

/// Log pipelines get one record per line in the format they asked for, start to shutdown.
#[test]
fn logs_come_as_json_or_logfmt_records_one_per_line() {
    for format in ["json", "logfmt"] {
        let agent = Agent::start(&["--log.format", format, "--log.level", "debug"]);
        let (status, log) = agent.stop_with(libc::SIGTERM);
        assert!(status.success(), "{format}: {status}\n{log}");
        let records: Vec<&str> = log.lines().filter(|line| !line.is_empty()).collect();
        assert!(records.len() > 10, "{format}: {log}");
        for record in &records {
            if format == "json" {
                let value: serde_json::Value = serde_json::from_str(record)
                    .unwrap_or_else(|err| panic!("not JSON ({err}): {record}"));
                assert!(
                    value["level"].is_string() && value["msg"].is_string(),
                    "{record}"
                );
            } else {
                assert!(
                    record.starts_with("ts=")
                        && record.contains(" level=")
                        && record.contains(" msg="),
                    "not logfmt: {record}"
                );
            }
        }
        assert!(
            records
                .iter()
                .any(|record| record.contains("probes detached")),
            "{format}: {log}"
        );
    }
}

/// Outside a pod, `--kubernetes.node-name` without an API URL is one line, before anything
/// is loaded (it used to fail after every probe was attached).
#[test]
fn kubernetes_outside_a_pod_fails_before_loading() {
    let output = Command::new(agent_bin())
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--kubernetes.node-name", "node-1"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    assert_one_line_error(
        &output,
        &["--kubernetes.node-name", "KUBERNETES_SERVICE_HOST"],
    );
    assert_started_nothing(&output);
}

/// `monitor-agent slo` as an operator without a checkout runs it: an unprivileged user (no
/// capability at all), the agent's own settings in the environment ignored, the example SLO
/// file in, exactly the shipped rule file out; nothing loaded, exit 0.
#[test]
fn slo_command_needs_no_privilege_and_makes_the_shipped_rules() {
    let dir = tests::TempDir::new("slo-command");
    // The example at the same relative path as in the checkout (the header names it), in a
    // directory the unprivileged user can read and, for --output, write.
    std::fs::create_dir_all(dir.path().join("deploy/slo")).unwrap();
    let example = tests::workspace_root().join("deploy/slo/example.yaml");
    std::fs::copy(&example, dir.path().join("deploy/slo/example.yaml")).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let shipped = std::fs::read_to_string(
        tests::workspace_root().join("deploy/prometheus/slo-example.rules.yaml"),
    )
    .unwrap();

    let unprivileged = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(agent_bin())
            .args(args)
            .current_dir(dir.path())
            // What the agent would read for a run, even wrong: not for this command.
            .env("MONITOR_CONFIG_FILE", "/nonexistent/monitor.yml")
            .env("MONITOR_WEB_CONFIG_FILE", "/nonexistent/web.yml")
            .env("MONITOR_SERIES_TTL", "not-a-duration")
            .output()
            .expect("setpriv (util-linux)")
    };
    let output = unprivileged(&["slo", "deploy/slo/example.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout) == shipped,
        "monitor-agent slo deploy/slo/example.yaml differs from \
         deploy/prometheus/slo-example.rules.yaml: regenerate it with `cargo xtask slo \
         deploy/slo/example.yaml --output deploy/prometheus/slo-example.rules.yaml`\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The example's 250 ms threshold is not a bound: said once, on stderr, not in the rules.
    assert_eq!(
        stderr(&output),
        "monitor-agent: note: SLO checkout-latency: threshold 0.25 s is not a histogram \
         bound; using the next bound up, 0.268435456 s\n"
    );
    assert_started_nothing(&output);

    let output = unprivileged(&[
        "slo",
        "deploy/slo/example.yaml",
        "--output",
        "slo.rules.yaml",
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(std::fs::read_to_string(dir.path().join("slo.rules.yaml")).unwrap() == shipped);
}

/// A wrong SLO file is bad input like a wrong flag: one line naming the file and what is
/// wrong, exit 2, no rules written. A rule file that cannot be written is a failed run: 1.
#[test]
fn slo_command_bad_file_is_one_line_and_a_usage_error() {
    let dir = tests::TempDir::new("slo-bad");
    let example =
        std::fs::read_to_string(tests::workspace_root().join("deploy/slo/example.yaml")).unwrap();
    let rules = dir.path().join("slo.rules.yaml");
    let typo_line = format!(
        "line {}",
        1 + example
            .lines()
            .position(|line| line.trim_start().starts_with("objective:"))
            .unwrap()
    );
    for (name, text, expected) in [
        (
            "typo.yaml",
            example.replacen("objective:", "objectiv:", 1),
            &["typo.yaml", "unknown field `objectiv`", &typo_line][..],
        ),
        (
            "objective.yaml",
            example.replacen("objective: 99.9", "objective: 100", 1),
            &["SLO checkout-availability", "objective 100"],
        ),
        (
            "threshold.yaml",
            example.replacen("threshold: 0.25", "threshold: 20", 1),
            &["SLO checkout-latency", "17.179869184"],
        ),
        ("missing.yaml", String::new(), &["cannot read SLO file"]),
    ] {
        let file = dir.path().join(name);
        if !text.is_empty() {
            std::fs::write(&file, text).unwrap();
        }
        let output = Command::new(agent_bin())
            .arg("slo")
            .arg(&file)
            .arg("--output")
            .arg(&rules)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        let text = stderr(&output);
        assert!(text.starts_with("monitor-agent: error: "), "{name}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{name}: {text}");
        for needle in expected {
            assert!(
                text.contains(needle),
                "{name}: {needle:?} missing from {text:?}"
            );
        }
        assert!(!rules.exists(), "{name}: rules written");
        assert_started_nothing(&output);
    }

    let output = agent(&[
        "slo",
        tests::workspace_root()
            .join("deploy/slo/example.yaml")
            .to_str()
            .unwrap(),
        "--output",
        dir.path()
            .join("no-such-dir/slo.rules.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_one_line_error(&output, &["cannot write", "no-such-dir"]);
}
