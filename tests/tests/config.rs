//! `--config.file`: a bad file is one line naming the file, the line and the field, exit 1,
//! and nothing loaded; a good file starts the agent.
use std::{
    path::Path,
    process::{Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use tests::{
    Agent, TempDir, agent_bin, free_port, ground_truth, http_get, loaded_program_ids,
    programs_held_by, run_as, unique_comm,
};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");

/// One test at a time: the good-file test loads the probes, which the bad-file tests must not
/// mistake for their own.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether another agent than `ours` runs (another test binary's): its programs are not ours.
fn other_agent_running(ours: u32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != ours)
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "monitor-agent")
        })
}

/// Runs the agent to its exit, watching that no `mon_` program appears meanwhile or after.
fn run_loading_nothing(args: &[&str]) -> Output {
    let before = loaded_program_ids();
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new(agent_bin())
        .args(["--web.listen-address", &address])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let check = |when: &str| {
        // The child's own program fds: exact whatever else runs on the machine.
        assert_eq!(
            programs_held_by(pid).len(),
            0,
            "the agent holds programs {when} {args:?}"
        );
        // Machine-wide, for a load that came and went between two looks; other agents
        // (other test binaries) make it unusable, the check above never is.
        let new: Vec<u32> = loaded_program_ids().difference(&before).copied().collect();
        assert!(
            new.is_empty() || other_agent_running(pid),
            "programs {new:?} loaded {when} {args:?}"
        );
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        check("while running");
        assert!(Instant::now() < deadline, "agent still running: {args:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = waiter.join().unwrap();
    check("after");
    output
}

fn assert_one_line_file_error(output: &Output, path: &Path, line: usize, field: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "bad input exits 2: {output:?}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let expected = format!(
        "monitor-agent: error: config file {}: line {line}: {field}: ",
        path.display()
    );
    assert!(
        stderr.starts_with(&expected),
        "{expected:?} expected: {stderr}"
    );
    assert!(!stderr.contains("attached"), "something started: {stderr}");
}

#[test]
fn bad_config_files_are_one_line_naming_line_and_field_and_load_nothing() {
    let _serial = serial();
    let dir = TempDir::new("monitor-config");
    let path = dir.path().join("monitor.yml");
    for (yaml, line, field, needle) in [
        (
            "series:\n  ttl: 5m\n  maxx: 10\n",
            3,
            "series.maxx",
            "unknown field",
        ),
        ("series:\n  ttl: 5m\n  max: lots\n", 3, "series.max", "lots"),
        (
            "identity:\n  kubernetes:\n    deleted_pod_ttl: 5\n",
            3,
            "identity.kubernetes.deleted_pod_ttl",
            "no unit",
        ),
        (
            "selection:\n  include:\n    - comm=nginx\n    - nginx\n",
            4,
            "selection.include[1]",
            "KEY=PATTERN",
        ),
        (
            "labels:\n  families:\n    monitor_syscall_duration_seconds: [comm, uid]\n",
            3,
            "labels.families.monitor_syscall_duration_seconds[1]",
            "uid",
        ),
    ] {
        std::fs::write(&path, yaml).unwrap();
        let output = run_loading_nothing(&["--config.file", path.to_str().unwrap()]);
        assert_one_line_file_error(&output, &path, line, field);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
}

#[test]
fn a_bad_file_is_refused_even_from_the_environment_and_before_privileges() {
    let _serial = serial();
    let dir = TempDir::new("monitor-config-env");
    let path = dir.path().join("monitor.yml");
    std::fs::write(&path, "labels:\n  pid: maybe\n").unwrap();
    // As nobody: the file is checked before the privileges are.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(agent_bin())
        .env("MONITOR_CONFIG_FILE", &path)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_one_line_file_error(&output, &path, 2, "labels.pid");
    let missing = dir.path().join("missing.yml");
    let output = run_loading_nothing(&["--config.file", missing.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "bad input exits 2: {output:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "monitor-agent: error: config file {}: cannot read it",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn bad_new_flags_are_usage_errors() {
    let _serial = serial();
    for args in [
        &["--select.include", "nginx"][..],
        &["--select.exclude", "user=root"],
        &["--label.const", "comm=x"],
        &["--label.const", "environment"],
        &["--series.max", "0"],
        &["--kubernetes.deleted-pod-ttl", "5"],
    ] {
        let output = run_loading_nothing(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(args[0]), "{args:?} not named: {stderr}");
        assert!(
            stderr.starts_with("monitor-agent: error: "),
            "{args:?}: one prefix for every error: {stderr}"
        );
    }
}

/// A good file starts the agent, and each of its settings shows in the scrape: the constant
/// label, a family's label choice, a service override and an exclusion.
#[test]
fn a_good_config_file_is_accepted_and_applied() {
    let _serial = serial();
    let dir = TempDir::new("monitor-config-good");
    let path = dir.path().join("monitor.yml");
    let served = unique_comm("cfgsvc");
    let skipped = unique_comm("cfgskip");
    std::fs::write(
        &path,
        format!(
            "series:\n  ttl: 5m\n  max: 10000\n\
             labels:\n  pid: false\n  constant:\n    environment: test\n  families:\n    \
             monitor_syscall_duration_seconds: [comm, service]\n\
             tcp:\n  peers_per_comm: 64\nhttp:\n  routes_per_comm: 100\n\
             identity:\n  docker_socket: /nonexistent/docker.sock\n\
             service:\n  overrides:\n    - match: {{ comm: \"cfgsvc*\" }}\n      \
             service: checkout\n\
             selection:\n  exclude: [\"comm={skipped}\"]\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--config.file", path.to_str().unwrap()]);
    let (status, body) = http_get(agent.address, "/healthz").unwrap();
    assert_eq!(status, 200, "{body}");
    // The scanner the bad-file tests rely on does see a running agent's programs.
    assert!(
        !programs_held_by(agent.pid()).is_empty(),
        "no program fd found"
    );

    run_as(&skipped, WORKLOAD.as_ref(), &ground_truth::args());
    // Run after the excluded one: once its series are in, the excluded one's would be too.
    let scrape = ground_truth::run_and_check(&agent, &served, WORKLOAD.as_ref());
    let this = [("comm", served.as_str())];
    let errors: Vec<_> = scrape
        .matching("monitor_syscall_errors_total", &this)
        .collect();
    assert!(!errors.is_empty());
    for sample in &errors {
        assert_eq!(
            sample.labels.get("environment").map(String::as_str),
            Some("test")
        );
        assert_eq!(
            sample.labels.get("service").map(String::as_str),
            Some("checkout")
        );
        // Families not listed keep every identity label but pid.
        assert!(sample.labels.contains_key("container") && sample.labels.contains_key("pod"));
    }
    let durations: Vec<_> = scrape
        .matching("monitor_syscall_duration_seconds_count", &this)
        .collect();
    assert!(!durations.is_empty());
    for sample in &durations {
        let mut names: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["comm", "environment", "service", "syscall"],
            "{sample:?}"
        );
    }
    assert!(
        !scrape.text.contains(&format!("comm=\"{skipped}\"")),
        "the excluded process was exported"
    );
}
