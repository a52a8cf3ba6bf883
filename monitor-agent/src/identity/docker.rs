//! Container names from the Docker Engine API.
//!
//! A cgroup path gives a container id; people know containers by name. Outside Kubernetes the
//! only place that knows the name is the Docker daemon: `GET /containers/<id>/json` on its
//! unix socket. The agent asks once per container, so a small blocking HTTP/1.1 client over
//! `UnixStream` does (no HTTP stack, no async runtime needed by the caller): one request per
//! connection (`Connection: close`), the response read to EOF, then de-chunked if need be
//! (Docker answers `200` chunked and errors with `Content-Length`).
//!
//! Every lookup, whatever its outcome, is bounded by one timeout (1 s) and cached:
//! names for 5 minutes (a `docker rename` shows eventually), "no such container" and failures
//! for 30 s, so a hung or absent daemon costs one timeout per container per 30 s, not one per
//! lookup, while a container that was just created gets its name soon.
use std::{
    collections::HashMap,
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

/// Bound on one lookup: connect, request and the whole response.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a name is trusted.
const NAME_TTL: Duration = Duration::from_secs(300);
/// How long "no such container" and failures are remembered.
const MISS_TTL: Duration = Duration::from_secs(30);
/// An inspect response is a few KiB; anything far larger is not one.
const MAX_RESPONSE: usize = 4 << 20;
/// Expired cache entries are dropped when the cache reaches this size.
const PRUNE_AT: usize = 1024;

/// A Docker daemon, asked for container names.
pub struct Docker {
    socket: PathBuf,
    timeout: Duration,
    name_ttl: Duration,
    miss_ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    outcome: Outcome,
    until: Instant,
}

#[derive(Clone)]
enum Outcome {
    Name(Option<String>),
    /// The error of the failed lookup, `{:#}`-formatted.
    Failed(String),
}

/// The one field of `GET /containers/<id>/json` the agent needs.
#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Name")]
    name: Option<String>,
}

/// Docker's error body.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl Docker {
    /// A client of the daemon listening on `socket` (usually `/var/run/docker.sock`). Does no
    /// I/O: a daemon that is not there yet is found when asked.
    pub fn new(socket: PathBuf) -> Self {
        Docker {
            socket,
            timeout: TIMEOUT,
            name_ttl: NAME_TTL,
            miss_ttl: MISS_TTL,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The name of container `id` (without Docker's leading `/`); `None` when the daemon
    /// does not know it (not a Docker container, or gone). Blocks for at most the timeout.
    pub fn container_name(&self, id: &str) -> anyhow::Result<Option<String>> {
        // The id goes into the request line: only what Docker ids and names are made of.
        if id.is_empty()
            || !id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
        {
            bail!("not a container id: {id:?}");
        }
        let now = Instant::now();
        if let Some(cached) = self.lock().get(id).filter(|cached| cached.until > now) {
            return match &cached.outcome {
                Outcome::Name(name) => Ok(name.clone()),
                Outcome::Failed(error) => Err(anyhow!("{error} (cached, not retried yet)")),
            };
        }
        // Not under the lock: other lookups need not wait for this one's I/O.
        let result = self.inspect(id);
        let (outcome, ttl) = match &result {
            Ok(Some(name)) => (Outcome::Name(Some(name.clone())), self.name_ttl),
            Ok(None) => (Outcome::Name(None), self.miss_ttl),
            Err(err) => (Outcome::Failed(format!("{err:#}")), self.miss_ttl),
        };
        let mut cache = self.lock();
        if cache.len() >= PRUNE_AT {
            let now = Instant::now();
            cache.retain(|_, cached| cached.until > now);
        }
        let until = Instant::now() + ttl;
        cache.insert(id.to_owned(), Cached { outcome, until });
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inspect(&self, id: &str) -> anyhow::Result<Option<String>> {
        let context = || {
            format!(
                "Docker API at {}: inspecting container {id}",
                self.socket.display()
            )
        };
        let response = self
            .get(&format!("/containers/{id}/json"))
            .with_context(context)?;
        match response.status {
            200 => {
                let inspect: Inspect = serde_json::from_slice(&response.body)
                    .context("response is not container JSON")
                    .with_context(context)?;
                Ok(inspect
                    .name
                    .map(|name| name.trim_start_matches('/').to_owned())
                    .filter(|name| !name.is_empty()))
            }
            404 => Ok(None),
            status => Err(anyhow!("HTTP {status}: {}", error_message(&response.body)))
                .with_context(context),
        }
    }

    /// One `GET` on a new connection, bounded by the timeout as a whole.
    fn get(&self, path: &str) -> anyhow::Result<Response> {
        let deadline = Instant::now() + self.timeout;
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or_else(|| anyhow!("no complete response within {:?}", self.timeout))
        };
        // Connecting to a unix socket does not wait for the daemon to accept.
        let mut stream = UnixStream::connect(&self.socket).context("connecting")?;
        stream.set_write_timeout(Some(left()?))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: monitor-agent\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .context("sending the request")?;
        let mut raw = Vec::new();
        let mut buffer = [0; 8192];
        loop {
            stream.set_read_timeout(Some(left()?))?;
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => raw.extend_from_slice(&buffer[..read]),
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    bail!("no complete response within {:?}", self.timeout)
                }
                Err(err) => return Err(err).context("reading the response"),
            }
            if raw.len() > MAX_RESPONSE {
                bail!("response larger than {MAX_RESPONSE} bytes");
            }
        }
        parse_response(&raw)
    }
}

/// A response's status and (de-chunked) body.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// Parses a whole HTTP/1.1 response, read to EOF.
fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let head_end = find(raw, b"\r\n\r\n").context("response ends within its headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("response headers not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => code.parse().ok(),
        _ => None,
    }
    .with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut chunked, mut length) = (false, None);
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    let rest = &raw[head_end + 4..];
    // Chunked wins over a Content-Length sent along (RFC 9112, 6.3).
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .with_context(|| format!("body cut short: {} of {length} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body: `<hex size>[;ext]\r\n<data>\r\n`… up to a `0` chunk (trailers
/// ignored).
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").context("chunked body cut short in a size line")?;
        let line = std::str::from_utf8(&rest[..line_end]).context("chunk size not UTF-8")?;
        let digits = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(digits, 16)
            .with_context(|| format!("bad chunk size line {line:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let data = size
            .checked_add(2)
            .and_then(|end| rest.get(..end))
            .context("chunked body cut short in a chunk")?;
        let (chunk, crlf) = data.split_at(size);
        if crlf != b"\r\n" {
            bail!("chunk of {size} bytes not followed by CRLF");
        }
        body.extend_from_slice(chunk);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Docker's `{"message": …}`, else the start of the body.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => error.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::net::UnixListener,
        path::Path,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        thread,
    };

    use super::*;

    const ID: &str = "76ae117b06abf87a2a76846447a0b113dcd12ae5cd2a982217626a5a79842fcc";

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

    /// A fake daemon: answers the n-th connection with `responses[n]` (written in small
    /// pieces, so the client has to read several times), then stops listening.
    struct Fake {
        dir: TempDir,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn serve(responses: Vec<Vec<u8>>) -> Fake {
            let dir = TempDir::new();
            let listener = UnixListener::bind(dir.0.join("docker.sock")).unwrap();
            let connections = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (counter, log) = (connections.clone(), requests.clone());
            thread::spawn(move || {
                for response in responses {
                    let (mut stream, _) = listener.accept().unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                    log.lock().unwrap().push(read_request(&mut stream));
                    for piece in response.chunks(7) {
                        if stream.write_all(piece).is_err() {
                            break;
                        }
                    }
                }
            });
            Fake {
                dir,
                connections,
                requests,
            }
        }

        fn socket(&self) -> PathBuf {
            self.dir.0.join("docker.sock")
        }

        fn docker(&self) -> Docker {
            Docker::new(self.socket())
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    fn read_request(stream: &mut UnixStream) -> String {
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
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
             Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
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

    #[test]
    fn name_from_content_length_response() {
        let fake = Fake::serve(vec![with_length("200 OK", &inspect_json("/web-1"))]);
        assert_eq!(
            fake.docker().container_name(ID).unwrap().as_deref(),
            Some("web-1")
        );
    }

    #[test]
    fn name_from_chunked_response() {
        let fake = Fake::serve(vec![chunked(&inspect_json("/helpera-c1"))]);
        assert_eq!(
            fake.docker().container_name(ID).unwrap().as_deref(),
            Some("helpera-c1")
        );
    }

    #[test]
    fn request_is_one_http11_get_that_closes() {
        let fake = Fake::serve(vec![with_length("200 OK", &inspect_json("/web-1"))]);
        fake.docker().container_name(ID).unwrap();
        let requests = fake.requests.lock().unwrap();
        let lines: Vec<&str> = requests[0].lines().collect();
        assert_eq!(lines[0], format!("GET /containers/{ID}/json HTTP/1.1"));
        assert!(lines.contains(&"Host: docker"), "{lines:?}");
        assert!(lines.contains(&"Connection: close"), "{lines:?}");
    }

    #[test]
    fn not_found_is_none() {
        let body = format!(r#"{{"message":"No such container: {ID}"}}"#);
        let fake = Fake::serve(vec![with_length("404 Not Found", &body)]);
        assert_eq!(fake.docker().container_name(ID).unwrap(), None);
    }

    #[test]
    fn other_statuses_are_errors_with_status_and_message() {
        let body = r#"{"message":"server is on fire"}"#;
        let fake = Fake::serve(vec![with_length("500 Internal Server Error", body)]);
        let error = format!("{:#}", fake.docker().container_name(ID).unwrap_err());
        assert!(error.contains("HTTP 500"), "{error}");
        assert!(error.contains("server is on fire"), "{error}");
        assert!(error.contains(ID), "{error}");
        assert!(error.contains("docker.sock"), "{error}");
    }

    #[test]
    fn bad_json_is_an_error() {
        let fake = Fake::serve(vec![with_length("200 OK", "<html>proxy</html>")]);
        let error = format!("{:#}", fake.docker().container_name(ID).unwrap_err());
        assert!(error.contains("not container JSON"), "{error}");
    }

    #[test]
    fn names_are_cached() {
        let fake = Fake::serve(vec![with_length("200 OK", &inspect_json("/web-1"))]);
        let docker = fake.docker();
        for _ in 0..3 {
            assert_eq!(docker.container_name(ID).unwrap().as_deref(), Some("web-1"));
        }
        assert_eq!(fake.connections(), 1);
    }

    #[test]
    fn misses_are_cached_briefly() {
        let not_found = with_length("404 Not Found", r#"{"message":"No such container"}"#);
        let fake = Fake::serve(vec![not_found.clone()]);
        let docker = fake.docker();
        assert_eq!(docker.container_name(ID).unwrap(), None);
        assert_eq!(docker.container_name(ID).unwrap(), None);
        assert_eq!(fake.connections(), 1);

        // Once the miss expires the daemon is asked again (the container may exist by now).
        let fake = Fake::serve(vec![
            not_found,
            with_length("200 OK", &inspect_json("/new")),
        ]);
        let docker = Docker {
            miss_ttl: Duration::ZERO,
            ..fake.docker()
        };
        assert_eq!(docker.container_name(ID).unwrap(), None);
        assert_eq!(docker.container_name(ID).unwrap().as_deref(), Some("new"));
        assert_eq!(fake.connections(), 2);
    }

    #[test]
    fn failures_are_remembered_briefly() {
        let fake = Fake::serve(vec![with_length("500 Internal Server Error", "{}")]);
        let docker = fake.docker();
        assert!(docker.container_name(ID).is_err());
        let error = format!("{:#}", docker.container_name(ID).unwrap_err());
        assert!(
            error.contains("HTTP 500") && error.contains("cached"),
            "{error}"
        );
        assert_eq!(fake.connections(), 1);
    }

    #[test]
    fn missing_socket_fails_fast() {
        let dir = TempDir::new();
        let docker = Docker::new(dir.0.join("docker.sock"));
        let started = Instant::now();
        let error = format!("{:#}", docker.container_name(ID).unwrap_err());
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(error.contains("connecting"), "{error}");
        assert!(error.contains(&dir.0.display().to_string()), "{error}");
    }

    #[test]
    fn silent_daemon_times_out() {
        let dir = TempDir::new();
        let socket = dir.0.join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // Accepts, reads the request, never answers (the connection stays open meanwhile).
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            read_request(&mut stream);
            thread::sleep(Duration::from_secs(5));
        });
        let started = Instant::now();
        let error = format!("{:#}", Docker::new(socket).container_name(ID).unwrap_err());
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        assert!(error.contains("within 1s"), "{error}");
    }

    #[test]
    fn ids_that_would_break_the_request_are_refused() {
        // No daemon: these must fail before any I/O.
        let docker = Docker::new(Path::new("/nonexistent/docker.sock").to_owned());
        for id in ["", "a b", "../../version", "id\r\nX: y"] {
            let error = format!("{:#}", docker.container_name(id).unwrap_err());
            assert!(error.contains("not a container id"), "{id:?}: {error}");
        }
    }

    #[test]
    fn responses_parsed() {
        let parse = |raw: &[u8]| parse_response(raw);
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap(),
            Response {
                status: 204,
                body: Vec::new()
            }
        );
        // Without length or chunking the body runs to EOF.
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{}")
                .unwrap()
                .body,
            b"{}"
        );
        // Extra bytes after Content-Length are ignored.
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}junk")
                .unwrap()
                .body,
            b"{}"
        );
        // Chunked, with trailers, and chunked wins over Content-Length.
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
                  2\r\n{\"\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n"
            )
            .unwrap()
            .body,
            b"{\"}"
        );
    }

    #[test]
    fn broken_responses_are_errors() {
        for raw in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno-colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
        ] {
            assert!(
                parse_response(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
