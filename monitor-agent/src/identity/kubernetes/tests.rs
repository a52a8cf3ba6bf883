//! The run loop's tests, and the fixtures and fake-server helpers the modules' tests share.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

use super::*;

// The recorded pod list and watch stream (`tests/fixtures/kubernetes` of the workspace, which
// the end-to-end tests serve too).
pub(super) const LIST: &str = include_str!("../../../../tests/fixtures/kubernetes/pods-list.json");
pub(super) const WATCH: &str =
    include_str!("../../../../tests/fixtures/kubernetes/pods-watch.jsonl");
pub(super) const CHECKOUT_UID: &str = "354a425b-4121-4335-bee8-3345ba93a851";
pub(super) const WEB_UID: &str = "62ba296f-6cab-4102-824e-e43c3c7feb27";
pub(super) const CHECKOUT_ID: &str =
    "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
pub(super) const SIDECAR_ID: &str =
    "82d979a24d74d74fe91dbe2c0cae2f4d0cd9129a99ff7936d9bf12c8a3e2f9c4";
pub(super) const MIGRATE_ID: &str =
    "9490be4058e03b7603b81fb5f077816aa0263395d83e7d54c4259f49ae2413f1";
pub(super) const WEB_ID: &str = "c842e7e9efb61e3cc052505d39c50d0e0ae82d6b04405ac03322df3549cdf6e0";
pub(super) const WEB_RESTARTED_ID: &str =
    "3416fe1e24f92dcd38cb3e1de705c5ae66acb2661c89accf2032c200b4ac1160";

pub(super) fn containers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect()
}

pub(super) fn listed() -> PodList {
    parse_pod_list(LIST.as_bytes()).unwrap()
}

pub(super) fn watch_events() -> Vec<WatchEvent> {
    WATCH
        .lines()
        .map(|line| parse_watch_event(line.as_bytes()).unwrap())
        .collect()
}

pub(super) fn pod(uid: &str) -> PodMeta {
    PodMeta {
        uid: uid.into(),
        name: format!("pod-{uid}"),
        namespace: "default".into(),
        service: None,
        containers: HashMap::new(),
    }
}

#[test]
fn in_cluster_says_what_is_missing() {
    let dir = std::env::temp_dir().join(format!("kube-sa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ttl = Duration::from_secs(30);
    let attempt = |host: Option<&str>, port: Option<&str>, node: &str| {
        KubeConfig::in_cluster_from(
            host.map(Into::into),
            port.map(Into::into),
            &dir,
            node.into(),
            ttl,
        )
        .map_err(|err| format!("{err:#}"))
    };
    let err = attempt(None, Some("443"), "n").unwrap_err();
    assert!(err.contains("KUBERNETES_SERVICE_HOST is not set"), "{err}");
    let err = attempt(Some("10.96.0.1"), None, "n").unwrap_err();
    assert!(err.contains("KUBERNETES_SERVICE_PORT is not set"), "{err}");
    let err = attempt(Some("10.96.0.1"), Some("https"), "n").unwrap_err();
    assert!(err.contains("not a port number"), "{err}");
    let err = attempt(Some("10.96.0.1"), Some("443"), " ").unwrap_err();
    assert!(err.contains("node name is empty"), "{err}");
    let err = attempt(Some("10.96.0.1"), Some("443"), "n").unwrap_err();
    assert!(
        err.contains("service-account token") && err.contains("token"),
        "{err}"
    );
    std::fs::write(dir.join("token"), "tok\n").unwrap();
    let err = attempt(Some("10.96.0.1"), Some("443"), "n").unwrap_err();
    assert!(err.contains("ca.crt is missing"), "{err}");
    std::fs::write(dir.join("ca.crt"), "").unwrap();
    let config = attempt(Some("fd00::1"), Some("6443"), "n").unwrap();
    assert_eq!(config.api_url, "https://[fd00::1]:6443");
    assert_eq!(config.token.as_deref(), Some("tok"));
    assert_eq!(config.ca_file, Some(dir.join("ca.crt")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let mut backoff = Backoff::new();
    let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
    assert!(delays[0] >= BACKOFF_FIRST && delays[0] <= BACKOFF_FIRST * 5 / 4);
    assert!(delays[1] >= BACKOFF_FIRST * 2);
    assert!(delays[9] >= BACKOFF_CAP && delays[9] <= BACKOFF_CAP * 5 / 4);
    backoff.reset();
    assert!(backoff.next_delay() <= BACKOFF_FIRST * 5 / 4);
}

// --- `run` against a scripted local API server -------------------------------------------

/// Reads one request's head; returns its request line and `Authorization` header.
pub(super) fn read_request(stream: &TcpStream) -> (String, Option<String>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    (request_line.trim_end().to_owned(), authorization)
}

fn respond_list(mut stream: TcpStream, body: &str) {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

fn start_watch(stream: &mut TcpStream) {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
}

fn chunk(stream: &mut TcpStream, data: &[u8]) {
    write!(stream, "{:x}\r\n", data.len()).unwrap();
    stream.write_all(data).unwrap();
    stream.write_all(b"\r\n").unwrap();
    stream.flush().unwrap();
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn run_lists_watches_and_relists() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // Server → test: what was just done. Test → server: go on.
    let (done_tx, done_rx) = mpsc::channel::<(&'static str, Instant, String)>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let note = |what, request: String| done_tx.send((what, Instant::now(), request));
        // 1: the list.
        let (stream, _) = listener.accept().unwrap();
        let (request, authorization) = read_request(&stream);
        assert_eq!(authorization.as_deref(), Some("Bearer test-token"));
        respond_list(stream, LIST);
        note("listed", request).unwrap();
        // 2: the watch: MODIFIED split across chunks, then DELETED, then 410.
        let (mut stream, _) = listener.accept().unwrap();
        let (request, _) = read_request(&stream);
        start_watch(&mut stream);
        let mut lines = WATCH.lines();
        let modified = format!("{}\n", lines.next().unwrap());
        let (head, tail) = modified.as_bytes().split_at(100);
        chunk(&mut stream, head);
        chunk(&mut stream, tail);
        note("modified", request).unwrap();
        go_rx.recv().unwrap();
        chunk(
            &mut stream,
            format!("{}\n", lines.next().unwrap()).as_bytes(),
        );
        note("deleted", String::new()).unwrap();
        go_rx.recv().unwrap();
        chunk(
            &mut stream,
            br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 48301 (49000)","reason":"Expired","code":410}}
"#,
        );
        // 3: the relist: the checkout pod is gone too.
        let (stream, _) = listener.accept().unwrap();
        let (request, _) = read_request(&stream);
        respond_list(
            stream,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"49000"},"items":[]}"#,
        );
        note("relisted", request).unwrap();
        // 4: the next watch, held open until the test ends.
        let (mut stream, _) = listener.accept().unwrap();
        let (request, _) = read_request(&stream);
        start_watch(&mut stream);
        note("watching", request).unwrap();
        let _ = go_rx.recv();
    });

    let ttl = Duration::from_millis(1500);
    let store = PodStore::new(Duration::ZERO);
    let config = KubeConfig {
        api_url: format!("http://{address}"),
        token: Some("test-token".into()),
        ca_file: None,
        node_name: "test-node".into(),
        deleted_ttl: ttl,
    };
    let task = tokio::spawn(run(config, store.clone()));
    // The server's notes, waited for without blocking the runtime `run` needs.
    let poll = async |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match done_rx.try_recv() {
                Ok((done, at, request)) => {
                    assert_eq!(done, what);
                    return (at, request);
                }
                Err(mpsc::TryRecvError::Empty) => {
                    assert!(Instant::now() < deadline, "timed out waiting for {what}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(err) => panic!("server gone: {err}"),
            }
        }
    };

    // The list request, then both pods.
    wait_for("the list", || store.len() == 2).await;
    let (_, request) = poll("listed").await;
    assert_eq!(
        request,
        "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node HTTP/1.1"
    );
    let web = store.get(WEB_UID).unwrap();
    assert_eq!(web.service.as_deref(), Some("web"));
    assert_eq!(
        store.get(CHECKOUT_UID).unwrap().service.as_deref(),
        Some("checkout")
    );

    // The watch from the list's resourceVersion; the MODIFIED event lands.
    wait_for("the MODIFIED event", || {
        store
            .get(WEB_UID)
            .unwrap()
            .containers
            .contains_key(WEB_RESTARTED_ID)
    })
    .await;
    let (_, request) = poll("modified").await;
    assert!(
        request.starts_with(
            "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node&watch=1\
             &resourceVersion=48213&allowWatchBookmarks=true"
        ),
        "{request}"
    );

    // DELETED: still there within the TTL, gone after it.
    go_tx.send(()).unwrap();
    let (deleted_at, _) = poll("deleted").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.get(WEB_UID).is_some(), "dropped before the TTL");
    wait_for("the deleted pod to go", || store.get(WEB_UID).is_none()).await;
    assert!(
        deleted_at.elapsed() >= ttl,
        "dropped after {:?}",
        deleted_at.elapsed()
    );
    assert_eq!(store.len(), 1);

    // 410 Gone: a relist, which marks the checkout pod deleted; then a watch from there.
    go_tx.send(()).unwrap();
    let (relisted_at, request) = poll("relisted").await;
    assert!(!request.contains("watch=1"), "{request}");
    let (_, request) = poll("watching").await;
    assert!(request.contains("&resourceVersion=49000&"), "{request}");
    assert!(store.get(CHECKOUT_UID).is_some(), "dropped before the TTL");
    wait_for("the vanished pod to go", || store.is_empty()).await;
    assert!(relisted_at.elapsed() >= ttl);

    task.abort();
    let _ = task.await;
    drop(go_tx);
    server.join().unwrap();
}
