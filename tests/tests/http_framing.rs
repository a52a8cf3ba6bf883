//! HTTP/1.x framing on the wire: where one message ends and the next begins, whatever the
//! writes and reads look like. Each test runs a real server and a real client (Python 3 over
//! raw sockets, so every `sendall` is a write the test chose), each under a unique `comm`;
//! the client prints every response it read (its ground truth), and the agent must report
//! exactly those requests, and nothing else, on both sides: pipelining, a 1 MiB chunked
//! body, messages split across writes, HTTP/1.0 bodies delimited by the close, a WebSocket
//! upgrade and a `CONNECT` tunnel (after which the bytes are no longer HTTP at all).
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    process::{Child, ChildStdout, Stdio},
    time::Duration,
};

use tests::{Agent, Scrape, Spawned, eventually, python3, spawn_as, spawn_named_with, unique_comm};

const SERVER: &str = "http_server_request_duration_seconds_count";
const CLIENT: &str = "http_client_request_duration_seconds_count";
const SERVER_LABELS: [&str; 4] = [
    "http_request_method",
    "http_response_status_code",
    "http_route",
    "network_protocol_version",
];
const CLIENT_LABELS: [&str; 5] = [
    "http_request_method",
    "http_response_status_code",
    "server_address",
    "server_port",
    "network_protocol_version",
];
/// How long a workload may take (10,000 WebSocket round trips included).
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Shared by every server and client script: raw sockets with Nagle off (each `send` leaves
/// as its own segment, so a write the test split stays split), a buffered reader that
/// parses heads and bodies (Content-Length, chunked, until close), and the client's ground
/// truth, printed as `seen METHOD TARGET STATUS [DETAIL]`, one line per response read.
const PRELUDE: &str = r#"
import base64, hashlib, os, socket, sys, time

REASONS = {101: "Switching Protocols", 200: "OK", 404: "Not Found"}
# Long enough for the peer, blocked in recv, to read each piece on its own.
PAUSE = 0.1

def nodelay(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock

def listen():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    print("ready", server.getsockname()[1], flush=True)
    return server

def accept(server):
    return Conn(nodelay(server.accept()[0]))

def connect(port):
    return Conn(nodelay(socket.create_connection(("127.0.0.1", port))))

class Conn:
    """A socket and what was read from it but not parsed yet; `reads` counts recv calls."""
    def __init__(self, sock):
        self.sock, self.buf, self.reads = sock, b"", 0
    def send(self, data):
        self.sock.sendall(data)
    def close(self):
        self.sock.close()
    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the peer")
        self.reads += 1
        self.buf += data
    def take(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
    def until(self, delimiter):
        while delimiter not in self.buf:
            self.fill()
        return self.take(self.buf.index(delimiter) + len(delimiter))
    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        return self.take(n)
    def to_close(self):
        try:
            while True:
                self.fill()
        except EOFError:
            return self.take(len(self.buf))
    def wait_close(self):
        rest = self.to_close()
        assert rest == b"", rest
    def head(self):
        """The start line's words and the headers (names lower-cased) of the next head."""
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        fields = (line.split(":", 1) for line in lines[1:] if line)
        return lines[0].split(" ", 2), {k.strip().lower(): v.strip() for k, v in fields}
    def response(self, method):
        """Reads one response to a `method` request: (status, body)."""
        start, headers = self.head()
        status = int(start[1])
        if method == "HEAD" or status < 200 or status in (204, 304) \
                or (method == "CONNECT" and status < 300):
            return status, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    assert self.until(b"\r\n") == b"\r\n", "trailers"
                    return status, bytes(body)
                body += self.exactly(size)
                assert self.exactly(2) == b"\r\n", "chunk data not followed by CRLF"
        if "content-length" in headers:
            return status, self.exactly(int(headers["content-length"]))
        return status, self.to_close()

def get(target, port, version="1.1", extra=""):
    return f"GET {target} HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()

def response(status, body=b"", version="1.1", length=True):
    framing = f"Content-Length: {len(body)}\r\n" if length else "Content-Type: text/plain\r\n"
    return f"HTTP/{version} {status} {REASONS[status]}\r\n{framing}\r\n".encode() + body

def status_for(target):
    return 404 if "missing" in target else 200

def seen(method, target, status, detail=""):
    print("seen", method, target, status, detail, flush=True)
"#;

/// One response the client read: the ground truth the agent's counts must equal.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    target: String,
    status: u16,
    detail: String,
}

impl Seen {
    /// The server side's `http_route`: the test's paths are plain (no identifiers, no
    /// query), so each is its own route; a `CONNECT` target (authority form) is
    /// `{authority}` (monitor-protocols/src/route.rs).
    fn route(&self) -> &str {
        if self.method == "CONNECT" {
            "{authority}"
        } else {
            &self.target
        }
    }
}

/// `seen METHOD TARGET STATUS [DETAIL]` lines of a client's output.
fn parse_seen(lines: &[String]) -> Vec<Seen> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("seen "))
        .map(|line| {
            let mut words = line.splitn(4, ' ');
            let mut word = || words.next().unwrap_or_default().trim().to_owned();
            Seen {
                method: word(),
                target: word(),
                status: word().parse().expect("a status code"),
                detail: word(),
            }
        })
        .collect()
}

/// `python3 -c PRELUDE+script args…`.
fn python_args(script: &str, args: &[String]) -> Vec<String> {
    let mut all = vec!["-c".to_owned(), format!("{PRELUDE}\n{script}")];
    all.extend_from_slice(args);
    all
}

/// A server script as `comm`, once it printed `ready PORT`.
fn server(comm: &str, script: &str, args: &[String]) -> Spawned {
    spawn_as(comm, &python3(), &python_args(script, args))
}

/// Waits for a server script's successful exit; its output lines after `ready`.
fn finish(server: Spawned) -> Vec<String> {
    server
        .finish(WORKLOAD_TIMEOUT)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A client script as `comm`, its stdin a pipe (for a go-ahead) and its stdout read by line.
struct Client {
    comm: String,
    child: Child,
    stdout: BufReader<ChildStdout>,
    lines: Vec<String>,
}

impl Client {
    fn spawn(comm: &str, script: &str, args: &[String]) -> Client {
        let mut child = spawn_named_with(comm, &python3(), |command| {
            command
                .args(python_args(script, args))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        });
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client {
            comm: comm.to_owned(),
            child,
            stdout,
            lines: Vec::new(),
        }
    }

    /// Reads output lines until one starts with `prefix`; every line read is kept.
    fn wait_for_line(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                let stderr = self.stderr();
                panic!(
                    "client {} ended before printing {prefix:?}: {:?}\n{}",
                    self.comm, self.lines, stderr
                );
            }
            let line = line.trim_end().to_owned();
            self.lines.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Lets a client that waits on its stdin go on.
    fn go(&mut self) {
        writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
    }

    fn stderr(&mut self) -> String {
        let mut stderr = String::new();
        let _ = self
            .child
            .stderr
            .take()
            .map(|mut s| s.read_to_string(&mut stderr));
        stderr
    }

    /// Waits for a successful exit; returns every line it printed.
    fn finish(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let status = tests::wait_timeout(&mut self.child, WORKLOAD_TIMEOUT);
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        self.lines.extend(rest.lines().map(str::to_owned));
        match status {
            Some(status) if status.success() => std::mem::take(&mut self.lines),
            status => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr();
                panic!(
                    "client {} failed ({status:?}): {:?}\n{}",
                    self.comm, self.lines, stderr
                )
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client to its end and returns what it saw and its other output lines.
fn run_client(comm: &str, script: &str, args: &[String]) -> (Vec<Seen>, Vec<String>) {
    let lines = Client::spawn(comm, script, args).finish();
    (parse_seen(&lines), lines)
}

/// The value of a `NAME VALUE` line of a workload's output.
fn reported(lines: &[String], name: &str) -> u64 {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{name} N` line in {lines:?}"))
}

/// The two processes of a test and how the client addressed the server.
struct Sides<'a> {
    server: &'a str,
    client: &'a str,
    port: u16,
    /// The client's `server_address`: the host of the `Host` header it sent.
    server_address: &'a str,
    /// `network_protocol_version`: the clients' request lines say which.
    version: &'a str,
}

impl<'a> Sides<'a> {
    /// A client that asked for the server by its loopback address.
    fn loopback(server: &'a str, client: &'a str, port: u16) -> Self {
        Sides {
            server,
            client,
            port,
            server_address: "127.0.0.1",
            version: "1.1",
        }
    }
}

/// Every series of one family of one comm: its label values (in `labels` order) → count.
type Counts = BTreeMap<Vec<String>, f64>;

fn counts_of(scrape: &Scrape, family: &str, comm: &str, labels: &[&str]) -> Counts {
    scrape
        .matching(family, &[("comm", comm)])
        .map(|sample| {
            let key = labels.iter().map(|l| sample.labels[*l].clone()).collect();
            (key, sample.value)
        })
        .collect()
}

/// What the agent must report for what the client saw: (family, comm, labels, counts).
fn expected<'a>(
    sides: &Sides<'a>,
    seen: &[Seen],
) -> Vec<(&'static str, &'a str, &'static [&'static str], Counts)> {
    let mut server = Counts::new();
    let mut client = Counts::new();
    for s in seen {
        let status = s.status.to_string();
        *server
            .entry(vec![
                s.method.clone(),
                status.clone(),
                s.route().to_owned(),
                sides.version.to_owned(),
            ])
            .or_default() += 1.0;
        *client
            .entry(vec![
                s.method.clone(),
                status,
                sides.server_address.to_owned(),
                sides.port.to_string(),
                sides.version.to_owned(),
            ])
            .or_default() += 1.0;
    }
    vec![
        (SERVER, sides.server, &SERVER_LABELS, server),
        (CLIENT, sides.client, &CLIENT_LABELS, client),
    ]
}

/// Waits (up to 15 s) until the server's and the client's request series are exactly what
/// the client saw, no series more or less, and still are a second later; panics with both
/// and the agent's lines for the two comms otherwise.
fn assert_counted(agent: &Agent, sides: &Sides, seen: &[Seen]) {
    let want = expected(sides, seen);
    let observe = |scrape: &Scrape| -> Vec<Counts> {
        want.iter()
            .map(|(family, comm, labels, _)| counts_of(scrape, family, comm, labels))
            .collect()
    };
    let wanted: Vec<Counts> = want.iter().map(|(.., counts)| counts.clone()).collect();
    let report = |scrape: &Scrape, got: &[Counts]| -> String {
        let lines: Vec<&str> = scrape
            .text
            .lines()
            .filter(|line| {
                line.starts_with("http_")
                    && line.contains("_count{")
                    && (line.contains(&format!("comm=\"{}\"", sides.server))
                        || line.contains(&format!("comm=\"{}\"", sides.client)))
            })
            .collect();
        format!(
            "server {} and client {} (port {}):\nexpected {wanted:?}\nreported {got:?}\n\
             agent's lines for them:\n{}",
            sides.server,
            sides.client,
            sides.port,
            lines.join("\n")
        )
    };
    let mut last = None;
    let reached = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(15), "the exact request counts", || {
            let scrape = agent.scrape();
            let done = observe(&scrape) == wanted;
            last = Some(scrape);
            done.then_some(())
        })
    }));
    if reached.is_err() {
        let scrape = last.expect("at least one scrape");
        panic!(
            "request counts never matched; {}",
            report(&scrape, &observe(&scrape))
        );
    }
    // Nothing late: a request counted twice, or a bogus one parsed out of later bytes.
    std::thread::sleep(Duration::from_secs(1));
    let scrape = agent.scrape();
    let got = observe(&scrape);
    assert!(
        got == wanted,
        "request counts changed; {}",
        report(&scrape, &got)
    );
}

/// One (method, target, status) a client should have seen.
fn got(method: &str, target: &str, status: u16) -> (String, String, u16) {
    (method.to_owned(), target.to_owned(), status)
}

/// What the client saw, without details: (method, target, status) in order.
fn exchanges(seen: &[Seen]) -> Vec<(String, String, u16)> {
    seen.iter()
        .map(|s| (s.method.clone(), s.target.clone(), s.status))
        .collect()
}

/// Reads the requests it is sent until it has three, then answers each with a write of its
/// own, in order; prints how many reads the three requests took.
const PIPELINE_SERVER: &str = r#"
conn = accept(listen())
targets = []
while len(targets) < 3:
    targets.append(conn.head()[0][1])
print("request_reads", conn.reads, flush=True)
for target in targets:
    conn.send(response(status_for(target), b"pipelined\n"))
conn.wait_close()
"#;

/// `PORT TARGET…`: every request in one write, then the responses in order.
const PIPELINE_CLIENT: &str = r#"
port, targets = int(sys.argv[1]), sys.argv[2:]
conn = connect(port)
conn.send(b"".join(get(target, port) for target in targets))
for target in targets:
    status, body = conn.response("GET")
    seen("GET", target, status)
"#;

#[test]
fn three_pipelined_requests_in_one_write_are_each_counted_on_both_sides() {
    let agent = Agent::start(&[]);
    let (server_comm, client_comm) = (unique_comm("pipsv"), unique_comm("pipcl"));
    let server_process = server(&server_comm, PIPELINE_SERVER, &[]);
    let port = server_process.port();
    let targets = ["/pipe/one", "/pipe/missing", "/pipe/three"];
    let mut args = vec![port.to_string()];
    args.extend(targets.map(String::from));
    let (seen_by_client, _) = run_client(&client_comm, PIPELINE_CLIENT, &args);
    let server_output = finish(server_process);
    assert_eq!(
        exchanges(&seen_by_client),
        [
            got("GET", "/pipe/one", 200),
            got("GET", "/pipe/missing", 404),
            got("GET", "/pipe/three", 200)
        ]
    );
    assert_eq!(
        reported(&server_output, "request_reads"),
        1,
        "the three requests should reach the server in one read"
    );
    assert_counted(
        &agent,
        &Sides::loopback(&server_comm, &client_comm, port),
        &seen_by_client,
    );
}

/// The chunked body's bytes: a status line over and over, so that a parser that lost the
/// body's framing and looks for the next message at the start of a write or read finds a
/// `500` answering the request that waits.
const FAKE_RESPONSES: &str = r#"
FAKE = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

def fake_body(length):
    return (FAKE * (length // len(FAKE) + 1))[:length]
"#;

/// `BODY_BYTES`: reads `GET /big` and the request pipelined behind it, then answers /big with
/// a chunked body of BODY_BYTES (`fake_body`) in chunks of 1 to 70,000 bytes, the encoded
/// body cut into writes of 3 to 250,000 bytes that start anywhere (inside chunk data, a size
/// line or a CRLF), every other one right at a fake status line in the data. The second
/// response follows `PAUSE` later, in a write of its own; a third request, sent after it,
/// is answered at once. Prints the number of body writes and of those starting with a fake.
const CHUNKED_SERVER: &str = r#"
body_bytes = int(sys.argv[1])
conn = accept(listen())
first, second = conn.head()[0][1], conn.head()[0][1]
assert first == "/big", first
body, encoded, sent, chunks = fake_body(body_bytes), bytearray(), 0, 0
sizes = [1, 13, 100, 511, 512, 513, 4096, 9000, 65529, 70000, 2, 300]
while sent < body_bytes:
    n = min(sizes[chunks % len(sizes)], body_bytes - sent)
    encoded += b"%x\r\n" % n + body[sent:sent + n] + b"\r\n"
    sent, chunks = sent + n, chunks + 1
encoded += b"0\r\n\r\n"
conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
at, writes, fakes, cuts = 0, 0, 0, [7, 1000, 100000, 3, 250000, 4096, 65536, 517]
while at < len(encoded):
    end = at + cuts[writes % len(cuts)]
    if writes % 2:
        fake = encoded.find(FAKE[:12], end)
        end = fake if fake != -1 else len(encoded)
    fakes += encoded.startswith(FAKE[:12], at)
    conn.send(bytes(encoded[at:end]))
    at, writes = end, writes + 1
print("body_writes", writes, flush=True)
print("fake_starts", fakes, flush=True)
time.sleep(PAUSE)
conn.send(response(status_for(second), b"after\n"))
conn.send(response(status_for(conn.head()[0][1]), b"again\n"))
conn.wait_close()
"#;

/// `PORT BODY_BYTES`: `GET /big` and `GET /after/missing` pipelined (two writes), checks the
/// body of /big byte for byte (its detail: `intact` or `corrupt`, and its length), reads the
/// 404, then `GET /again` on the same connection.
const CHUNKED_CLIENT: &str = r#"
port, body_bytes = int(sys.argv[1]), int(sys.argv[2])
conn = connect(port)
conn.send(get("/big", port))
conn.send(get("/after/missing", port))
status, body = conn.response("GET")
seen("GET", "/big", status, ("intact " if body == fake_body(body_bytes) else "corrupt ") + str(len(body)))
status, body = conn.response("GET")
seen("GET", "/after/missing", status)
conn.send(get("/again", port))
status, body = conn.response("GET")
seen("GET", "/again", status)
"#;

/// Framing must survive the whole body: the request pipelined behind /big is answered by the
/// response after the body's last chunk, not by a status line inside the body.
///
/// Only the kernel's framing passes it: the user-space path (`--probes.request-framing
/// user`, kernels before 5.17) copies 512 bytes of each read/write, the chunk-size lines of
/// this body fall outside them, and its parser then takes a status line inside the body for
/// the pipelined request's answer. So the test also checks that no payload was copied.
#[test]
fn a_one_mib_chunked_body_in_many_writes_keeps_the_connection_framed() {
    const BODY_BYTES: usize = 1 << 20;
    let agent = Agent::start(&[]);
    let (server_comm, client_comm) = (unique_comm("chksv"), unique_comm("chkcl"));
    let server_script = [FAKE_RESPONSES, CHUNKED_SERVER].concat();
    let server_process = server(&server_comm, &server_script, &[BODY_BYTES.to_string()]);
    let port = server_process.port();
    let client_script = [FAKE_RESPONSES, CHUNKED_CLIENT].concat();
    let args = [port.to_string(), BODY_BYTES.to_string()];
    let (seen_by_client, _) = run_client(&client_comm, &client_script, &args);
    let server_output = finish(server_process);
    assert_eq!(
        exchanges(&seen_by_client),
        [
            got("GET", "/big", 200),
            got("GET", "/after/missing", 404),
            got("GET", "/again", 200)
        ]
    );
    assert_eq!(seen_by_client[0].detail, format!("intact {BODY_BYTES}"));
    assert!(
        reported(&server_output, "body_writes") >= 10,
        "{server_output:?}"
    );
    assert!(
        reported(&server_output, "fake_starts") >= 5,
        "{server_output:?}"
    );
    assert_counted(
        &agent,
        &Sides::loopback(&server_comm, &client_comm, port),
        &seen_by_client,
    );
    assert_eq!(ring_produced(&agent, "payload_events"), 0.0);
    assert!(ring_produced(&agent, "request_events") >= 6.0);
}

/// Reads one request (printing how many reads its head took) and answers 404 with the status
/// line cut after `HTT`, the two pieces `PAUSE` apart.
const SPLIT_SERVER: &str = r#"
conn = accept(listen())
target = conn.head()[0][1]
print("request_reads", conn.reads, flush=True)
conn.send(b"HTT")
time.sleep(PAUSE)
conn.send(b"P/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
conn.wait_close()
"#;

/// `PORT`: `GET /split` written as `GE`, `T /split HT` and the rest, `PAUSE` apart, then
/// the response read at once (so that `HTT` is a read of its own); prints how many reads the
/// response took.
const SPLIT_CLIENT: &str = r#"
port = int(sys.argv[1])
conn = connect(port)
request = get("/split", port)
assert request[:13] == b"GET /split HT"
for piece in (request[:2], request[2:13]):
    conn.send(piece)
    time.sleep(PAUSE)
conn.send(request[13:])
status, body = conn.response("GET")
print("response_reads", conn.reads, flush=True)
seen("GET", "/split", status)
"#;

#[test]
fn a_request_split_over_three_writes_and_a_split_status_line_are_counted_once() {
    let agent = Agent::start(&[]);
    let (server_comm, client_comm) = (unique_comm("splsv"), unique_comm("splcl"));
    let server_process = server(&server_comm, SPLIT_SERVER, &[]);
    let port = server_process.port();
    let (seen_by_client, client_output) =
        run_client(&client_comm, SPLIT_CLIENT, &[port.to_string()]);
    let server_output = finish(server_process);
    assert_eq!(exchanges(&seen_by_client), [got("GET", "/split", 404)]);
    // The premise: each write was a read of its own on the other side.
    assert_eq!(reported(&server_output, "request_reads"), 3);
    assert_eq!(reported(&client_output, "response_reads"), 2);
    assert_counted(
        &agent,
        &Sides::loopback(&server_comm, &client_comm, port),
        &seen_by_client,
    );
}

/// `CONNECTIONS`: for each connection, reads one request and answers HTTP/1.0 without a
/// Content-Length (head, then the body in two writes), then closes: the close ends the body.
const HTTP10_SERVER: &str = r#"
server = listen()
for _ in range(int(sys.argv[1])):
    conn = accept(server)
    target = conn.head()[0][1]
    conn.send(response(status_for(target), version="1.0", length=False))
    conn.send(b"x" * 3000)
    conn.send(b"until the close\n")
    conn.close()
"#;

/// `PORT TARGET…`: one HTTP/1.0 connection per target, its response read until the close;
/// the detail is the body's length.
const HTTP10_CLIENT: &str = r#"
port = int(sys.argv[1])
for target in sys.argv[2:]:
    conn = connect(port)
    conn.send(get(target, port, version="1.0"))
    status, body = conn.response("GET")
    conn.close()
    seen("GET", target, status, len(body))
"#;

#[test]
fn http_1_0_responses_delimited_by_the_close_are_counted_per_connection() {
    let agent = Agent::start(&[]);
    let (server_comm, client_comm) = (unique_comm("h10sv"), unique_comm("h10cl"));
    let targets = [
        "/old/ok",
        "/old/missing",
        "/old/ok",
        "/old/ok",
        "/old/missing",
        "/old/ok",
    ];
    let server_process = server(&server_comm, HTTP10_SERVER, &[targets.len().to_string()]);
    let port = server_process.port();
    let mut args = vec![port.to_string()];
    args.extend(targets.map(String::from));
    let (seen_by_client, _) = run_client(&client_comm, HTTP10_CLIENT, &args);
    finish(server_process);
    let expected: Vec<_> = targets
        .iter()
        .map(|t| got("GET", t, if t.contains("missing") { 404 } else { 200 }))
        .collect();
    assert_eq!(exchanges(&seen_by_client), expected);
    assert!(
        seen_by_client.iter().all(|s| s.detail == "3016"),
        "{seen_by_client:?}"
    );
    assert_counted(
        &agent,
        &Sides {
            version: "1.0",
            ..Sides::loopback(&server_comm, &client_comm, port)
        },
        &seen_by_client,
    );
}

/// WebSocket framing, enough of it for both ends to check each other: text frames of under
/// 126 bytes, masked from the client, and the close frame (opcode 8; `None`).
const WEBSOCKET_FRAMES: &str = r#"
def frame(payload, opcode=0x1, mask=None):
    head = bytes([0x80 | opcode, (0x80 if mask else 0) | len(payload)])
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def read_frame(conn):
    first, second = conn.exactly(2)
    mask = conn.exactly(4) if second & 0x80 else None
    payload = conn.exactly(second & 0x7f)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return None if first & 0x0f == 0x8 else payload
"#;

/// Accepts the upgrade of `GET /chat` with `101 Switching Protocols`, then echoes every
/// frame until the close; prints how many it echoed.
const WEBSOCKET_SERVER: &str = r#"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
conn = accept(listen())
start, headers = conn.head()
assert start[1] == "/chat" and headers["upgrade"].lower() == "websocket", (start, headers)
digest = hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()
conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n")
echoed = 0
while (payload := read_frame(conn)) is not None:
    conn.send(frame(payload))
    echoed += 1
conn.send(frame(b"", opcode=0x8))
print("echoed", echoed, flush=True)
conn.wait_close()
"#;

/// `PORT FRAMES`: upgrades, reports the 101, waits for a line on stdin, then sends FRAMES
/// frames one at a time, each checked as it comes back, and closes.
const WEBSOCKET_CLIENT: &str = r#"
port, frames = int(sys.argv[1]), int(sys.argv[2])
conn = connect(port)
key = base64.b64encode(os.urandom(16)).decode()
conn.send(get("/chat", port, extra="Upgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"))
status, _ = conn.response("GET")
seen("GET", "/chat", status)
sys.stdin.readline()
for i in range(frames):
    payload = b"frame %d" % i
    conn.send(frame(payload, mask=os.urandom(4)))
    assert read_frame(conn) == payload, i
conn.send(frame(b"", opcode=0x8, mask=os.urandom(4)))
assert read_frame(conn) is None
print("frames", frames, flush=True)
"#;

/// Records the probes tried to write to ring `ring` so far.
fn ring_produced(agent: &Agent, ring: &str) -> f64 {
    agent
        .scrape()
        .value(
            "monitor_ringbuf_events_produced_total",
            &[("ringbuf", ring)],
        )
        .unwrap_or_else(|| panic!("monitor_ringbuf_events_produced_total{{ringbuf=\"{ring}\"}}"))
}

/// Records of the capture: reads/writes copied (user-space framing) and requests completed
/// (kernel framing). In the kernel's case only phantom requests would show; that its framing
/// stops looking at the socket is not visible from here, so the test also runs the copy
/// path, where every read/write looked at is a record.
fn capture_events(agent: &Agent) -> f64 {
    ring_produced(agent, "payload_events") + ring_produced(agent, "request_events")
}

/// After `101 Switching Protocols` the connection carries WebSocket frames, not HTTP: the
/// upgrade is one request on each side, the frames none, and capturing them is wasted work,
/// so the capture's produced counters must stay flat while 10,000 frames go each way.
/// The agent monitors only the two processes here, so that no other HTTP on the host (this
/// test's own scrapes included) moves the counters. Run with the framing in user space,
/// where every captured read/write is a record, and in the kernel.
#[test]
fn after_a_websocket_upgrade_frames_are_not_http_and_not_captured() {
    websocket_upgrade_stops_the_capture("user");
}

#[test]
fn after_a_websocket_upgrade_the_kernel_framing_stops() {
    websocket_upgrade_stops_the_capture("kernel");
}

fn websocket_upgrade_stops_the_capture(framing: &str) {
    const FRAMES: u64 = 10_000;
    /// Payload events the frames may cost at most (a close or a stray read).
    const FLAT: f64 = 10.0;
    let (server_comm, client_comm) = (unique_comm("wssv"), unique_comm("wscl"));
    let selection = format!("comm={server_comm},comm={client_comm}");
    let agent = Agent::start(&[
        "--select.include",
        &selection,
        "--probes.request-framing",
        framing,
    ]);
    let server_script = [WEBSOCKET_FRAMES, WEBSOCKET_SERVER].concat();
    let server_process = server(&server_comm, &server_script, &[]);
    let port = server_process.port();
    let client_script = [WEBSOCKET_FRAMES, WEBSOCKET_CLIENT].concat();
    let args = [port.to_string(), FRAMES.to_string()];
    let mut client = Client::spawn(&client_comm, &client_script, &args);
    client.wait_for_line("seen ");
    let upgrade = parse_seen(&client.lines);
    assert_eq!(exchanges(&upgrade), [got("GET", "/chat", 101)]);
    let sides = Sides {
        server: &server_comm,
        client: &client_comm,
        port,
        server_address: "127.0.0.1",
        version: "1.1",
    };
    assert_counted(&agent, &sides, &upgrade);

    // Processes the agent had not judged yet may have been captured since it started.
    let before = eventually(Duration::from_secs(10), "an idle capture", || {
        let first = capture_events(&agent);
        std::thread::sleep(Duration::from_millis(500));
        (capture_events(&agent) == first).then_some(first)
    });
    client.go();
    let client_output = client.finish();
    let server_output = finish(server_process);
    assert_eq!(reported(&client_output, "frames"), FRAMES);
    assert_eq!(reported(&server_output, "echoed"), FRAMES);
    let after = capture_events(&agent);

    // Nothing but the upgrade was counted, frames and close included.
    assert_counted(&agent, &sides, &parse_seen(&client_output));
    let increase = after - before;
    assert!(
        increase <= FLAT,
        "the {framing} capture did not stay flat after the upgrade: \
         monitor_ringbuf_events_produced_total (payload and request events) rose by {increase} \
         ({before} → {after}) for {FRAMES} frames each way ({} reads and writes), at most \
         {FLAT} allowed",
        4 * FRAMES
    );
}

/// The proxy, and the far end of the tunnel it opens: answers `CONNECT` with `200 Connection
/// Established`, then, until the close, answers the HTTP requests sent through the tunnel and
/// echoes the binary records (a TLS-like type byte and a 2-byte length); prints how many of
/// each it handled.
const CONNECT_PROXY: &str = r#"
conn = accept(listen())
start, headers = conn.head()
assert start[0] == "CONNECT", start
conn.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
requests = records = 0
while True:
    try:
        kind = conn.exactly(1)
    except EOFError:
        break
    if kind == b"\x17":
        header = conn.exactly(4)
        conn.send(kind + header + conn.exactly(int.from_bytes(header[2:], "big")))
        records += 1
    else:
        conn.buf = kind + conn.buf
        target = conn.head()[0][1]
        conn.send(response(status_for(target), b"inside the tunnel\n"))
        requests += 1
print("tunnelled", requests, records, flush=True)
"#;

/// `PORT ROUNDS`: `CONNECT upstream.test:443`, then ROUNDS times: an HTTP request through the
/// tunnel (the tunnel's `GET /inside`, and one of two pipelined in one write), and a binary
/// record echoed back. Tunnelled responses are reported as `inside …`, not `seen`: they are
/// not requests on this connection.
const CONNECT_CLIENT: &str = r#"
port, rounds = int(sys.argv[1]), int(sys.argv[2])
conn = connect(port)
conn.send(b"CONNECT upstream.test:443 HTTP/1.1\r\nHost: upstream.test:443\r\n\r\n")
status, _ = conn.response("CONNECT")
seen("CONNECT", "upstream.test:443", status)
for i in range(rounds):
    conn.send(b"GET /inside HTTP/1.1\r\n\r\n")
    print("inside", *conn.response("GET")[:1], flush=True)
    conn.send(get("/inside/a", port) + get("/inside/missing", port))
    print("inside", conn.response("GET")[0], conn.response("GET")[0], flush=True)
    record = os.urandom(200 + i)
    conn.send(b"\x17\x03\x03" + len(record).to_bytes(2, "big") + record)
    assert conn.exactly(5 + len(record))[5:] == record, i
"#;

#[test]
fn a_connect_tunnel_is_one_request_and_http_inside_it_is_not_counted() {
    const ROUNDS: u64 = 5;
    let agent = Agent::start(&[]);
    let (server_comm, client_comm) = (unique_comm("prxsv"), unique_comm("prxcl"));
    let server_process = server(&server_comm, CONNECT_PROXY, &[]);
    let port = server_process.port();
    let (seen_by_client, client_output) = run_client(
        &client_comm,
        CONNECT_CLIENT,
        &[port.to_string(), ROUNDS.to_string()],
    );
    let server_output = finish(server_process);
    assert_eq!(
        exchanges(&seen_by_client),
        [got("CONNECT", "upstream.test:443", 200)]
    );
    let inside: Vec<&String> = client_output
        .iter()
        .filter(|line| line.starts_with("inside"))
        .collect();
    assert_eq!(inside.len() as u64, 2 * ROUNDS, "{client_output:?}");
    assert!(
        server_output.contains(&format!("tunnelled {} {ROUNDS}", 3 * ROUNDS)),
        "{server_output:?}"
    );
    let sides = Sides {
        server: &server_comm,
        client: &client_comm,
        port,
        // The host of the Host header the client sent, as for any request.
        server_address: "upstream.test",
        version: "1.1",
    };
    assert_counted(&agent, &sides, &seen_by_client);
}
