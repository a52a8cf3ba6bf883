//! Accept-queue saturation against the kernel's own view: a server listening with a backlog
//! of 1 that never accepts, and 12 clients connecting to it. Its queue fills (what `ss -lnt`
//! shows is the ground truth for the gauges) and the attempts beyond it are dropped. Once in
//! the agent's network namespace, once in another one (as a pod's would be).
use std::{path::Path, process::Command, time::Duration};

use tests::{
    Agent, PYTHON_CONNECTS, PYTHON_NEVER_ACCEPTS, Spawned, TempDir, eventually, python3,
    require_program, spawn_as, unique_comm,
};

/// A network namespace made for the test (`ip netns add`) with its loopback up, deleted on
/// drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> NetNs {
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("running ip");
            assert!(status.success(), "ip {args:?}: {status}");
        };
        // A namespace left by an interrupted run; usually there is none.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        ip(&["netns", "add", name]);
        let netns = NetNs(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"]);
        netns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `python3 ARGS` as `comm`, inside `netns` when given: `ip netns exec` execs a symlink
/// named `comm`, so the process still carries that name.
fn python_in(netns: Option<&NetNs>, comm: &str, args: &[String]) -> Spawned {
    let Some(netns) = netns else {
        return spawn_as(comm, &python3(), args);
    };
    let dir = TempDir::new("netns-python");
    let link = dir.path().join(comm);
    std::os::unix::fs::symlink(python3(), &link).unwrap();
    let mut wrapped = vec![
        "netns".to_owned(),
        "exec".to_owned(),
        netns.0.clone(),
        link.to_str().unwrap().to_owned(),
    ];
    wrapped.extend_from_slice(args);
    // Ready means the program runs: the symlink has been exec'd and may go.
    spawn_as(
        &unique_comm("ipns"),
        &require_program("ip", "iproute2"),
        &wrapped,
    )
}

/// `ss -lnt` for one port (in `netns`, if given): (Recv-Q, Send-Q): for a listener, its
/// accept queue now and its limit.
fn ss(netns: Option<&NetNs>, port: u16) -> (f64, f64) {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &netns.0, "ss"]);
            command
        }
        None => Command::new("ss"),
    };
    let output = command
        .args(["-lntH", &format!("sport = :{port}")])
        .output()
        .expect("running ss (iproute2)");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut fields = text.split_whitespace().skip(1);
    let mut next = || {
        fields
            .next()
            .unwrap_or_else(|| panic!("ss: {text:?}"))
            .parse()
            .unwrap()
    };
    (next(), next())
}

/// The scenario, in `netns` or the agent's own namespace; processes named `comm` (server)
/// and `knocker` (clients).
fn full_queue_reported_as_ss_shows_it(netns: Option<&NetNs>, comm: &str, knocker: &str) {
    let agent = Agent::start(&[]);
    let server = python_in(netns, comm, &["-c".into(), PYTHON_NEVER_ACCEPTS.into()]);
    let port = server.port();
    let clients = python_in(
        netns,
        knocker,
        &[
            "-c".into(),
            PYTHON_CONNECTS.into(),
            port.to_string(),
            "12".into(),
        ],
    );
    let port_label = port.to_string();
    let labels = [("comm", comm), ("port", port_label.as_str())];
    // The clients' SYNs are retried for seconds: the queue and the drops settle only then, so
    // the agent is compared with `ss` until both agree.
    let (queued, max) = eventually(
        Duration::from_secs(20),
        "the accept queue as ss shows it",
        || {
            let scrape = agent.scrape();
            let reported = (
                scrape.value("monitor_tcp_accept_queue_length", &labels)?,
                scrape.value("monitor_tcp_accept_queue_max", &labels)?,
            );
            (reported == ss(netns, port)).then_some(reported)
        },
    );
    // A backlog of 1 holds two connections (the kernel's test is "more than the backlog").
    assert_eq!((queued, max), (2.0, 1.0));
    let overflows = eventually(Duration::from_secs(20), "listen drops", || {
        let drops = agent
            .scrape()
            .value("monitor_tcp_listen_overflows_total", &labels)?;
        (drops > 0.0).then_some(drops)
    });
    eprintln!("{comm}: queue {queued}/{max}, {overflows} attempts dropped");
    drop(clients);
    drop(server);
}

#[test]
fn a_full_accept_queue_is_reported_as_ss_shows_it_and_its_drops_counted() {
    full_queue_reported_as_ss_shows_it(None, &unique_comm("backlog"), &unique_comm("knock"));
}

/// A pod's listener lives in the pod's network namespace, which `ss` on the host does not
/// show: the agent reads it there.
#[test]
fn a_listener_in_another_network_namespace_is_read_in_that_namespace() {
    assert!(Path::new("/proc/self/ns/net").exists());
    let netns = NetNs::new(&unique_comm("monns"));
    full_queue_reported_as_ss_shows_it(
        Some(&netns),
        &unique_comm("podq"),
        &unique_comm("podknock"),
    );
}
