//! Privileges told honestly: the agent run with exactly the capabilities a shipped deployment
//! grants (read from the DaemonSet manifest and the systemd unit), against a server that runs
//! as another user and was listening before the agent started. With those capabilities the
//! server's listener is attributed (seeded from its `/proc/<pid>/fd`) and an `exe=` selector
//! matches it (its `/proc/<pid>/exe`); with only CAP_BPF + CAP_PERFMON neither works, and the
//! agent says so: `monitor_proc_access_denied_total{what}` counts the refusals and `/healthz`
//! says degraded.
use std::time::Duration;

use tests::{
    Agent, PYTHON_CONNECTS, Sample, Scrape, Spawned, TempDir, eventually, http_get, python3,
    require_program, shipped, spawn_as, unique_comm,
};

/// `python3 -c SCRIPT BACKLOG`: listens on 127.0.0.1 with that backlog, never accepts, prints
/// `ready PORT`, and wakes every 200 ms (so the agent sees it run, and names it).
const PYTHON_LISTENS: &str = r#"
import socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(int(sys.argv[1]))
print("ready", server.getsockname()[1], flush=True)
while True:
    time.sleep(0.2)
"#;

const BACKLOG: u32 = 7;
const CLIENTS: u32 = 3;
/// The server's user (nobody), and the user of an agent run as the unit's dynamic user:
/// two different unprivileged users.
const SERVER_UID: &str = "65534";
const UNIT_UID: &str = "61999";

/// The server, as `comm`, running as another user: setpriv execs a link named `comm` to
/// python3, so the process carries that name.
fn server_as_nobody(comm: &str) -> (Spawned, TempDir) {
    let dir = TempDir::new("privileges-server");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let link = dir.path().join(comm);
    std::os::unix::fs::symlink(python3(), &link).unwrap();
    let server = spawn_as(
        &unique_comm("prsetpriv"),
        &require_program("setpriv", "util-linux"),
        &[
            format!("--reuid={SERVER_UID}"),
            format!("--regid={SERVER_UID}"),
            "--clear-groups".to_owned(),
            link.to_str().unwrap().to_owned(),
            "-c".to_owned(),
            PYTHON_LISTENS.to_owned(),
            BACKLOG.to_string(),
        ],
    );
    (server, dir)
}

/// setpriv arguments giving the agent exactly `caps`: as root (the DaemonSet's `runAsUser: 0`,
/// capabilities beyond the list dropped from the bounding set) or as an unprivileged user
/// holding them as ambient capabilities (the unit's `DynamicUser` + `AmbientCapabilities`).
fn wrapper(caps: &[String], as_root: bool) -> Vec<String> {
    let set = shipped::setpriv_set(caps);
    let mut wrapper = vec![
        require_program("setpriv", "util-linux")
            .to_str()
            .unwrap()
            .to_owned(),
    ];
    if !as_root {
        wrapper.extend([
            format!("--reuid={UNIT_UID}"),
            format!("--regid={UNIT_UID}"),
            "--clear-groups".to_owned(),
            "--no-new-privs".to_owned(),
            format!("--ambient-caps={set}"),
        ]);
    }
    wrapper.extend([format!("--inh-caps={set}"), format!("--bounding-set={set}")]);
    wrapper
}

fn start_agent(wrapper: &[String], extra_args: &[&str]) -> Agent {
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let include = format!("exe={}", python3().display());
    let mut args = vec!["--select.include", &include];
    args.extend_from_slice(extra_args);
    Agent::start_via(&wrapper, &args)
}

fn denied(scrape: &Scrape, what: &str) -> f64 {
    scrape
        .value("monitor_proc_access_denied_total", &[("what", what)])
        .unwrap_or_else(|| panic!("no monitor_proc_access_denied_total{{what={what:?}}}"))
}

/// The server started before the agent is attributed and selected by its executable: its
/// accept queue (3 connections waiting, limit 7) under its own name and port, and its own
/// syscalls. `/healthz` is ok: nothing the deployment could grant is missing.
fn older_listener_of_another_user_is_attributed(caps: &[String], as_root: bool) {
    let comm = unique_comm("prsrv");
    let (server, _dir) = server_as_nobody(&comm);
    let port = server.port().to_string();
    let agent = start_agent(&wrapper(caps, as_root), &[]);
    let _clients = spawn_as(
        &unique_comm("prknock"),
        &python3(),
        &[
            "-c".to_owned(),
            PYTHON_CONNECTS.to_owned(),
            port.clone(),
            CLIENTS.to_string(),
        ],
    );
    let labels = [("comm", comm.as_str()), ("port", port.as_str())];
    eventually(
        Duration::from_secs(20),
        "the older listener's accept queue, and the server's own syscalls",
        || {
            let scrape = agent.scrape();
            let queue = (
                scrape.value("monitor_tcp_accept_queue_length", &labels)?,
                scrape.value("monitor_tcp_accept_queue_max", &labels)?,
            );
            let calls = scrape.sum("monitor_syscall_duration_seconds_count", &[("comm", &comm)]);
            (queue == (f64::from(CLIENTS), f64::from(BACKLOG)) && calls > 0.0).then_some(())
        },
    );
    let (status, health) = http_get(agent.address, "/healthz").unwrap();
    assert_eq!((status, health.as_str()), (200, "ok\n"), "{}", agent.log());
    assert!(
        !agent.log().contains("; grant CAP_"),
        "a refusal blamed on a missing capability:\n{}",
        agent.log()
    );
}

#[test]
fn daemonset_capabilities_attribute_another_users_older_listener() {
    let caps = shipped::daemonset_capabilities();
    older_listener_of_another_user_is_attributed(&caps, true);
}

#[test]
fn systemd_unit_capabilities_attribute_another_users_older_listener() {
    let caps = shipped::unit_capabilities();
    older_listener_of_another_user_is_attributed(&caps, false);
}

/// With only CAP_BPF + CAP_PERFMON the probes load, but each refused read of another user's
/// `/proc` is counted by kind, the first of each is a warning naming the capability to grant,
/// `/healthz` says degraded, and the older server stays unattributed and unselected. A Docker
/// socket only root may open (as the unit's dynamic user finds Docker's) is counted too.
#[test]
fn without_ptrace_and_dac_read_search_denials_are_counted_and_degraded() {
    let comm = unique_comm("prdeny");
    let (server, _dir) = server_as_nobody(&comm);
    let port = server.port().to_string();
    let bpf_only = ["bpf".to_owned(), "perfmon".to_owned()];
    let docker_dir = TempDir::new("privileges-docker");
    let socket = docker_dir.path().join("docker.sock");
    let _docker = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        docker_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let agent = start_agent(
        &wrapper(&bpf_only, false),
        &["--docker.socket", socket.to_str().unwrap()],
    );
    eventually(
        Duration::from_secs(20),
        "refusals of fd, ns_net, exe and the Docker socket counted",
        || {
            let scrape = agent.scrape();
            ["fd", "ns_net", "exe", "docker_socket"]
                .iter()
                .all(|what| denied(&scrape, what) > 0.0)
                .then_some(())
        },
    );
    let (status, health) = http_get(agent.address, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    assert!(health.starts_with("degraded\n"), "{health}");
    for line in [
        "reading /proc/<pid>/fd of another user's process: listeners older than the agent are \
         not attributed and descriptor use is not reported for it; grant CAP_DAC_READ_SEARCH + \
         CAP_SYS_PTRACE",
        "reading /proc/<pid>/exe of another user's process: exe= selectors and service \
         overrides never match it; grant CAP_SYS_PTRACE",
        "connecting to the Docker socket: containers are shown by their ids; give the agent \
         the socket's group (systemd: SupplementaryGroups=docker)",
    ] {
        assert!(health.contains(line), "{line:?} not in {health}");
    }
    let log = agent.log();
    for what in ["fd", "ns_net", "exe", "docker_socket"] {
        let warning = format!("counted in monitor_proc_access_denied_total{{what=\"{what}\"}}");
        assert_eq!(log.matches(&warning).count(), 1, "{warning}:\n{log}");
    }
    // Several sweeps later the server is still unknown to the agent.
    std::thread::sleep(Duration::from_secs(3));
    let scrape = agent.scrape();
    let seen: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("comm") == Some(&comm))
        .collect();
    assert!(
        seen.is_empty(),
        "the server (port {port}) was seen: {seen:?}"
    );
}
