use std::{
    io::{Read as _, Write as _},
    os::unix::net::{UnixListener, UnixStream as StdUnixStream},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use tokio::sync::oneshot;

use super::*;

const ID: &str = "76ae117b06abf87a2a76846447a0b113dcd12ae5cd2a982217626a5a79842fcc";
const OTHER_ID: &str = "0c2dbb6bdd3f6c5bb39b3a5e3a0e4e1b7c83e1e2d6f4a1f3e9c8b7a6d5e4f3a2";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "monitor-agent-docker-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A current-thread runtime driven by a thread of its own, as the agent's main thread drives
/// its runtime: the tests call `name` from their own thread, which has none.
struct Runtime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Runtime {
    fn start() -> Runtime {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let _ = runtime.block_on(stopped);
        });
        Runtime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How the fake daemon answers one request.
enum Reply {
    /// Written in small pieces (so the client reads several times), then the connection closes.
    Send(Vec<u8>),
    /// Written, then the connection is held open, silent, until the client drops it.
    SendAndHold(Vec<u8>),
    /// The connection is closed without a word.
    Close,
}

/// A fake daemon on a unix socket: every request is answered by `reply(request line)` on a
/// thread of its own.
struct Fake {
    dir: TempDir,
    requests: Arc<Mutex<Vec<String>>>,
    runtime: Runtime,
}

impl Fake {
    fn serve(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Fake {
        let dir = TempDir::new();
        let listener = UnixListener::bind(dir.0.join("docker.sock")).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let reply = Arc::new(reply);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else {
                    return;
                };
                let (log, reply) = (Arc::clone(&log), Arc::clone(&reply));
                thread::spawn(move || {
                    let request = read_request(&mut stream);
                    let line = request.lines().next().unwrap_or_default().to_owned();
                    log.lock().unwrap().push(request);
                    match reply(&line) {
                        Reply::Send(bytes) => {
                            for piece in bytes.chunks(7) {
                                if stream.write_all(piece).is_err() {
                                    break;
                                }
                            }
                        }
                        Reply::SendAndHold(bytes) => {
                            let _ = stream.write_all(&bytes);
                            // Returns once the client has closed its end.
                            let _ = stream.read_to_end(&mut Vec::new());
                        }
                        Reply::Close => {}
                    }
                });
            }
        });
        Fake {
            dir,
            requests,
            runtime: Runtime::start(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.0.join("docker.sock")
    }

    /// A client that asks only when asked (no event follower), with these limits.
    fn docker_with(&self, limits: Limits) -> Docker {
        Docker::with_limits(self.socket(), self.runtime.handle.clone(), limits)
    }

    fn docker(&self) -> Docker {
        self.docker_with(Limits {
            follow_events: false,
            ..LIMITS
        })
    }

    /// The request lines received whose path starts with `prefix`.
    fn requests(&self, prefix: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.starts_with(&format!("GET {prefix}")))
            .cloned()
            .collect()
    }

    fn inspections(&self) -> usize {
        self.requests("/containers/").len() - self.requests(LIST_PATH).len()
    }
}

fn read_request(stream: &mut StdUnixStream) -> String {
    let mut request = Vec::new();
    let mut byte = [0];
    while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        request.push(byte[0]);
    }
    String::from_utf8(request).unwrap()
}

fn with_length(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// As Docker 20.10 answers an inspect: chunked, here in three chunks, one with an extension.
fn chunked(body: &str) -> Vec<u8> {
    let (a, rest) = body.split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    format!(
        "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x};name=value\r\n{b}\r\n{:X}\r\n{c}\r\n0\r\n\r\n",
        a.len(),
        b.len(),
        c.len()
    )
    .into_bytes()
}

fn inspect_json(name: &str) -> String {
    format!(
        r#"{{"Id":"{ID}","Created":"2026-11-27T14:14:08.155650849Z","Path":"/sleeper","Args":[],"State":{{"Status":"running","Running":true,"Pid":28121}},"Name":"{name}","RestartCount":0,"Config":{{"Labels":{{}}}}}}"#
    )
}

/// Asks until the answer is no longer pending; the answer and how long it took.
fn settle(docker: &Docker, id: &str) -> (Lookup, Duration) {
    let started = Instant::now();
    loop {
        let lookup = docker.name(id);
        if lookup != Lookup::Pending {
            return (lookup, started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still pending");
        thread::sleep(Duration::from_millis(2));
    }
}

fn failure(lookup: Lookup) -> String {
    match lookup {
        Lookup::Failed(error) => error,
        other => panic!("not a failure: {other:?}"),
    }
}

#[test]
fn a_name_is_pending_then_answered_then_cached() {
    let fake = Fake::serve(|_| Reply::Send(with_length("200 OK", &inspect_json("/web-1"))));
    let docker = fake.docker();
    assert_eq!(docker.name(ID), Lookup::Pending);
    assert_eq!(settle(&docker, ID).0, Lookup::Name("web-1".into()));
    for _ in 0..3 {
        assert_eq!(docker.name(ID), Lookup::Name("web-1".into()));
    }
    assert_eq!(fake.inspections(), 1);
}

#[test]
fn name_from_chunked_response() {
    let fake = Fake::serve(|_| Reply::Send(chunked(&inspect_json("/helpera-c1"))));
    assert_eq!(
        settle(&fake.docker(), ID).0,
        Lookup::Name("helpera-c1".into())
    );
}

#[test]
fn request_is_an_http11_get_of_the_inspect_path() {
    let fake = Fake::serve(|_| Reply::Send(with_length("200 OK", &inspect_json("/web-1"))));
    settle(&fake.docker(), ID);
    let requests = fake.requests("/");
    let lines: Vec<String> = requests[0].lines().map(str::to_ascii_lowercase).collect();
    assert_eq!(lines[0], format!("get /containers/{ID}/json http/1.1"));
    // Docker's server refuses HTTP/1.1 requests without a Host.
    assert!(lines.contains(&"host: docker".to_owned()), "{lines:?}");
}

#[test]
fn not_found_is_cached_briefly() {
    let not_found = with_length("404 Not Found", r#"{"message":"No such container"}"#);
    let answer = not_found.clone();
    let fake = Fake::serve(move |_| Reply::Send(answer.clone()));
    let docker = fake.docker();
    assert_eq!(settle(&docker, ID).0, Lookup::NotFound);
    assert_eq!(docker.name(ID), Lookup::NotFound);
    assert_eq!(fake.inspections(), 1);

    // Once the miss expires the daemon is asked again (the container may exist by now), and
    // the last answer stands meanwhile.
    let asked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&asked);
    let fake = Fake::serve(move |_| match count.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::Send(not_found.clone()),
        _ => Reply::Send(with_length("200 OK", &inspect_json("/new"))),
    });
    let docker = fake.docker_with(Limits {
        miss_ttl: Duration::ZERO,
        follow_events: false,
        ..LIMITS
    });
    assert_eq!(settle(&docker, ID).0, Lookup::NotFound);
    assert_eq!(
        docker.name(ID),
        Lookup::NotFound,
        "the last answer, while asking"
    );
    let started = Instant::now();
    while docker.name(ID) != Lookup::Name("new".into()) {
        assert!(started.elapsed() < Duration::from_secs(5));
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(fake.inspections(), 2);
}

#[test]
fn other_statuses_fail_with_the_daemons_words_and_are_cached() {
    let fake = Fake::serve(|_| {
        Reply::Send(with_length(
            "500 Internal Server Error",
            r#"{"message":"server is on fire"}"#,
        ))
    });
    let docker = fake.docker();
    let error = failure(settle(&docker, ID).0);
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("server is on fire"), "{error}");
    assert!(error.contains(ID), "{error}");
    assert!(error.contains("docker.sock"), "{error}");
    // The daemon did answer: not left alone, but this answer is kept for a while.
    assert_eq!(failure(docker.name(ID)), error);
    assert_eq!(fake.inspections(), 1);
    assert_eq!(docker.name(OTHER_ID), Lookup::Pending);
}

#[test]
fn bad_json_and_oversized_answers_fail() {
    let fake = Fake::serve(|_| Reply::Send(with_length("200 OK", "<html>proxy</html>")));
    let error = failure(settle(&fake.docker(), ID).0);
    assert!(error.contains("not container JSON"), "{error}");

    let fake = Fake::serve(|_| Reply::Send(with_length("200 OK", &inspect_json("/web-1"))));
    let docker = fake.docker_with(Limits {
        max_body: 64,
        follow_events: false,
        ..LIMITS
    });
    let error = failure(settle(&docker, ID).0);
    assert!(error.contains("larger than 64 bytes"), "{error}");
}

#[test]
fn a_missing_daemon_fails_fast() {
    let dir = TempDir::new();
    let runtime = Runtime::start();
    let docker = Docker::with_limits(
        dir.0.join("docker.sock"),
        runtime.handle.clone(),
        Limits {
            follow_events: false,
            ..LIMITS
        },
    );
    let (lookup, elapsed) = settle(&docker, ID);
    let error = failure(lookup);
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    assert!(error.contains("connecting"), "{error}");
    assert!(error.contains(&dir.0.display().to_string()), "{error}");
}

#[test]
fn a_silent_daemon_times_out_without_holding_up_the_caller() {
    // Accepts, reads the request, never answers (the connection stays open meanwhile).
    let fake = Fake::serve(|_| Reply::SendAndHold(Vec::new()));
    let docker = fake.docker();
    let started = Instant::now();
    assert_eq!(docker.name(ID), Lookup::Pending);
    assert!(started.elapsed() < Duration::from_millis(50));
    let (lookup, elapsed) = settle(&docker, ID);
    let error = failure(lookup);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(error.contains("within 1s"), "{error}");
    // Left alone for a while: another container's lookup does not wait for it either.
    assert_eq!(failure(docker.name(OTHER_ID)), error);
    assert_eq!(fake.inspections(), 1);
}

#[test]
fn an_unreachable_daemon_is_left_alone_then_probed_once() {
    let reachable = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = Arc::clone(&reachable);
    let fake = Fake::serve(move |_| match up.load(Ordering::SeqCst) {
        false => Reply::Close,
        true => Reply::Send(with_length("200 OK", &inspect_json("/back"))),
    });
    let docker = fake.docker_with(Limits {
        down_first: Duration::from_millis(300),
        follow_events: false,
        ..LIMITS
    });
    let error = failure(settle(&docker, ID).0);
    assert!(error.contains(ID), "{error}");
    // Within the back-off no container is asked for.
    for id in [ID, OTHER_ID] {
        assert_eq!(failure(docker.name(id)), error);
    }
    assert_eq!(fake.inspections(), 1);

    reachable.store(true, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(350));
    // One probe, and no other lookup while it runs.
    assert_eq!(docker.name(ID), Lookup::Pending);
    assert!(matches!(
        docker.name(OTHER_ID),
        Lookup::Failed(_) | Lookup::Pending
    ));
    assert_eq!(settle(&docker, ID).0, Lookup::Name("back".into()));
    assert_eq!(settle(&docker, OTHER_ID).0, Lookup::Name("back".into()));
    assert_eq!(fake.inspections(), 3);
}

#[test]
fn lookups_in_flight_are_bounded() {
    let fake = Fake::serve(|_| Reply::SendAndHold(Vec::new()));
    let docker = fake.docker_with(Limits {
        max_in_flight: 3,
        follow_events: false,
        ..LIMITS
    });
    let ids: Vec<String> = (0..10u32).map(|n| format!("{n:064x}")).collect();
    for id in &ids {
        assert_eq!(docker.name(id), Lookup::Pending);
    }
    let started = Instant::now();
    while fake.inspections() < 3 {
        assert!(started.elapsed() < Duration::from_secs(5));
        thread::sleep(Duration::from_millis(2));
    }
    // The others wait for a free slot (the held ones end at the 1 s timeout).
    thread::sleep(Duration::from_millis(100));
    assert_eq!(fake.inspections(), 3);
    assert_eq!(docker.shared.lock().in_flight, 3);
    assert_eq!(docker.name(&ids[9]), Lookup::Pending);
}

#[test]
fn the_cache_is_bounded() {
    let fake = Fake::serve(|line| {
        // "GET /containers/<id>/json HTTP/1.1": each container is named after its id's start.
        let id = &line["GET /containers/".len()..][..4];
        Reply::Send(with_length("200 OK", &inspect_json(&format!("/c-{id}"))))
    });
    let docker = fake.docker_with(Limits {
        max_entries: 4,
        follow_events: false,
        ..LIMITS
    });
    let ids: Vec<String> = (0..10u32).map(|n| format!("{n:04}{}", &ID[4..])).collect();
    for id in &ids {
        assert_eq!(
            settle(&docker, id).0,
            Lookup::Name(format!("c-{}", &id[..4]))
        );
        assert!(docker.shared.lock().entries.len() <= 4);
    }
    // The latest answers are the ones kept.
    let kept: Vec<bool> = {
        let state = docker.shared.lock();
        ids.iter()
            .map(|id| state.entries.contains_key(id))
            .collect()
    };
    assert_eq!(kept, [[false; 6].as_slice(), &[true; 4]].concat());
    assert_eq!(docker.name(&ids[9]), Lookup::Name("c-0009".into()));
    assert_eq!(fake.inspections(), 10);
}

#[test]
fn ids_that_would_break_the_request_are_refused() {
    // No daemon: these must fail before any I/O.
    let runtime = Runtime::start();
    let docker = Docker::with_limits(
        Path::new("/nonexistent/docker.sock").to_owned(),
        runtime.handle.clone(),
        Limits {
            follow_events: false,
            ..LIMITS
        },
    );
    for id in ["", "a b", "../../version", "id\r\nX: y"] {
        let error = failure(docker.name(id));
        assert!(error.contains("not a container id"), "{id:?}: {error}");
    }
    assert_eq!(docker.shared.lock().in_flight, 0);
}

/// A chunk of a chunked body.
fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

#[test]
fn running_created_and_renamed_containers_are_named_from_the_daemons_list_and_events() {
    let create = format!(
        r#"{{"status":"create","id":"{ID}","from":"sleeper:1","Type":"container","Action":"create","Actor":{{"ID":"{ID}","Attributes":{{"image":"sleeper:1","name":"web-1"}}}},"scope":"local","time":1795443248,"timeNano":1795443248155650849}}"#
    );
    let rename = format!(
        r#"{{"Type":"container","Action":"rename","Actor":{{"ID":"{ID}","Attributes":{{"name":"web-2","oldName":"/web-1"}}}},"scope":"local","time":1795443250,"timeNano":1795443250000000000}}"#
    );
    let (head, tail) = create.split_at(40);
    let stream = format!(
        "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}{}{}",
        chunk(head),
        chunk(&format!("{tail}\n")),
        chunk("not json\n"),
    );
    let renamed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rename_sent = Arc::clone(&renamed);
    let listed = format!(
        r#"[{{"Id":"{OTHER_ID}","Names":["/web-1/db","/db"],"Image":"postgres:16","State":"running","Labels":{{}}}}]"#
    );
    let fake = Fake::serve(move |line| {
        if line.starts_with(&format!("GET {LIST_PATH} ")) {
            return Reply::Send(with_length("200 OK", &listed));
        }
        if !line.starts_with("GET /events") {
            return Reply::Close;
        }
        // The second connection (after the first stream ended) brings the rename.
        match rename_sent.swap(true, Ordering::SeqCst) {
            false => Reply::Send(format!("{stream}0\r\n\r\n").into_bytes()),
            true => Reply::SendAndHold(
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                    chunk(&format!("{rename}\n"))
                )
                .into_bytes(),
            ),
        }
    });
    let docker = fake.docker_with(Limits {
        down_first: Duration::from_millis(50),
        ..LIMITS
    });
    let known = |name: &str| {
        let started = Instant::now();
        loop {
            let cached = docker
                .shared
                .lock()
                .entries
                .get(ID)
                .and_then(|entry| entry.answer.clone());
            if matches!(&cached, Some(Answer::Name(known)) if known == name) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{cached:?}");
            thread::sleep(Duration::from_millis(2));
        }
    };
    known("web-1");
    assert_eq!(docker.name(ID), Lookup::Name("web-1".into()));
    assert_eq!(docker.name(OTHER_ID), Lookup::Name("db".into()), "listed");
    known("web-2");
    assert_eq!(docker.name(ID), Lookup::Name("web-2".into()));
    assert_eq!(fake.inspections(), 0, "never asked: the stream told");
    let events = fake.requests("/events");
    assert!(
        events[0].starts_with(&format!("GET {EVENTS_PATH} HTTP/1.1")),
        "{events:?}"
    );
    drop(docker);
}

#[test]
fn a_resolver_made_in_the_runtime_names_containers_from_another_thread() {
    use crate::{
        identity::selection::Selection,
        identity::{
            cgroup::CgroupInfo,
            resolver::{Facts, Resolver},
        },
    };

    let fake = Fake::serve(|line| {
        if line.starts_with("GET /events") {
            Reply::SendAndHold(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec())
        } else if line.starts_with(&format!("GET {LIST_PATH} ")) {
            Reply::Send(with_length("200 OK", "[]"))
        } else {
            Reply::Send(with_length("200 OK", &inspect_json("/web-1")))
        }
    });
    // As the agent makes it: inside the runtime, which the resolver keeps for its lookups.
    let resolver = {
        let _inside = fake.runtime.handle.enter();
        Resolver::new(Some(fake.socket()), None, Vec::new(), Selection::default())
    };
    let facts = Facts {
        cgroup: CgroupInfo {
            container_id: Some(ID.into()),
            ..CgroupInfo::default()
        },
        exe: None,
    };
    let (identity, last) = resolver.identity(&facts, "sleeper");
    assert_eq!(identity.container, &ID[..12]);
    assert!(!last, "not final while Docker is being asked");
    let started = Instant::now();
    let (identity, last) = loop {
        let (identity, last) = resolver.identity(&facts, "sleeper");
        if last {
            break (identity, last);
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        thread::sleep(Duration::from_millis(2));
    };
    assert!(last);
    assert_eq!(identity.container, "web-1");
    assert_eq!(identity.service, "web-1");
}

#[test]
fn a_docker_can_be_used_from_any_thread() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Docker>();
}
