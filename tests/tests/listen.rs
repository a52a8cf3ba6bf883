//! Accept-queue saturation against the kernel's own view: a server listening with a backlog
//! of 1 that never accepts, and 12 clients connecting to it. Its queue fills (what `ss -lnt`
//! shows is the ground truth for the gauges) and the attempts beyond it are dropped.
use std::{process::Command, time::Duration};

use tests::{Agent, eventually, python3, spawn_as, unique_comm};

/// Listens with a backlog of 1 and never accepts, until killed.
const NEVER_ACCEPTS: &str = r#"
import socket, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print("ready", server.getsockname()[1], flush=True)
time.sleep(300)
"#;

/// Opens 12 connections without waiting for any (kept open until killed).
const TWELVE_CLIENTS: &str = r#"
import socket, sys, time
clients = []
for _ in range(12):
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", int(sys.argv[1])))
    clients.append(client)
print("ready", flush=True)
time.sleep(300)
"#;

/// `ss -lnt` for one port: (Recv-Q, Send-Q): for a listener, its accept queue now and its
/// limit.
fn ss(port: u16) -> (f64, f64) {
    let output = Command::new("ss")
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

#[test]
fn a_full_accept_queue_is_reported_as_ss_shows_it_and_its_drops_counted() {
    let agent = Agent::start(&[]);
    let comm = unique_comm("backlog");
    let server = spawn_as(&comm, &python3(), &["-c".into(), NEVER_ACCEPTS.into()]);
    let port = server.port();
    let clients = spawn_as(
        &unique_comm("knock"),
        &python3(),
        &["-c".into(), TWELVE_CLIENTS.into(), port.to_string()],
    );
    let port_label = port.to_string();
    let labels = [("comm", comm.as_str()), ("port", port_label.as_str())];
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
            (reported == ss(port)).then_some(reported)
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
