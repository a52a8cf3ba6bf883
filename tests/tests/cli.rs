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
            monitor_agent::probes::PROBES.len(),
            "every probe while running"
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
