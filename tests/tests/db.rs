//! Database operations from the wire: unmodified servers (redis-server; PostgreSQL run from
//! a fresh `initdb` as an unprivileged user) and clients (a Python RESP client, redis-cli,
//! psql, pgbench with prepared statements and a pipeline), each under a unique `comm`; the
//! agent must count exactly the operations each side made, by system, operation and error
//! code, and never export a key, a value or statement text.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    Agent, Scrape, Server, TempDir, eventually, free_port, python3, require_program, run_as,
    spawn_named_with, unique_comm,
};

const CLIENT: &str = "db_client_operation_duration_seconds_count";
const SERVER: &str = "db_server_operation_duration_seconds_count";

/// A family's sample, by its labels, and the count expected of it.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// Waits until every (family, labels, count) is reported exactly; the scrape then.
fn scrape_when(agent: &Agent, expected: &[Expected<'_>]) -> Scrape {
    let mut last = String::new();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            Duration::from_secs(20),
            "the expected operation counts",
            || {
                let scrape = agent.scrape();
                last = scrape.text.clone();
                expected
                    .iter()
                    .all(|(family, labels, n)| scrape.value(family, labels) == Some(*n))
                    .then_some(scrape)
            },
        )
    }))
    .unwrap_or_else(|_| {
        let seen: Vec<&str> = last.lines().filter(|l| l.starts_with("db_")).collect();
        panic!(
            "expected {expected:?}; the agent reported:\n{}",
            seen.join("\n")
        )
    })
}

/// Every operation `comm` made, as (family, operation, status) → count: nothing else may be
/// there.
fn operations_of(scrape: &Scrape, family: &str, comm: &str) -> Vec<(String, String, f64)> {
    let mut found: Vec<(String, String, f64)> = scrape
        .matching(family, &[("comm", comm)])
        .map(|sample| {
            (
                sample.labels["db_operation_name"].clone(),
                sample.labels["db_response_status_code"].clone(),
                sample.value,
            )
        })
        .collect();
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    found
}

fn owned(expected: &[(&str, &str, f64)]) -> Vec<(String, String, f64)> {
    expected
        .iter()
        .map(|(op, status, n)| ((*op).to_owned(), (*status).to_owned(), *n))
        .collect()
}

/// `python3 -c SCRIPT PORT SETS GETS WRONG`: a RESP client over raw sockets, every reply
/// checked. One connection: SETS SETs, GETS GETs, an LPUSH, WRONG GETs of the list
/// (WRONGTYPE), a pipeline of 100 SETs in one write, MULTI/SET/INCR/EXEC, then HELLO 3 and
/// a GET answered in RESP3. A second connection subscribes to a channel, a third publishes
/// three messages to it: the subscriber's wait for them is not an operation.
const PYTHON_RESP: &str = r#"
import socket, sys
port, sets, gets, wrong = (int(arg) for arg in sys.argv[1:5])
def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=30)
def command(*words):
    out = b"*%d\r\n" % len(words)
    for word in words:
        out += b"$%d\r\n%s\r\n" % (len(word), word)
    return out
def read_until(connection, data, done):
    while not done(data):
        more = connection.recv(65536)
        assert more, "redis-server closed the connection"
        data += more
    return data
def lines(connection, count):
    return read_until(connection, b"", lambda data: data.count(b"\r\n") >= count)
main = connect()
for i in range(sets):
    main.sendall(command(b"SET", b"user:%d" % i, b"secret-value")); assert lines(main, 1) == b"+OK\r\n"
for i in range(gets):
    main.sendall(command(b"GET", b"user:%d" % i)); assert lines(main, 2) == b"$12\r\nsecret-value\r\n"
main.sendall(command(b"LPUSH", b"list", b"x")); lines(main, 1)
for i in range(wrong):
    main.sendall(command(b"GET", b"list")); assert lines(main, 1).startswith(b"-WRONGTYPE")
main.sendall(b"".join(command(b"SET", b"piped:%d" % i, b"v") for i in range(100)))
assert lines(main, 100) == b"+OK\r\n" * 100
main.sendall(command(b"MULTI")); assert lines(main, 1) == b"+OK\r\n"
main.sendall(command(b"SET", b"counter", b"1")); assert lines(main, 1) == b"+QUEUED\r\n"
main.sendall(command(b"INCR", b"counter")); assert lines(main, 1) == b"+QUEUED\r\n"
main.sendall(command(b"EXEC")); assert lines(main, 3) == b"*2\r\n+OK\r\n:2\r\n"
main.sendall(command(b"HELLO", b"3")); read_until(main, b"", lambda data: b"modules" in data and data.endswith(b"*0\r\n"))
main.sendall(command(b"GET", b"counter")); assert lines(main, 2) == b"$1\r\n2\r\n"
subscriber = connect()
subscriber.sendall(command(b"SUBSCRIBE", b"news")); lines(subscriber, 6)
publisher = connect()
for i in range(3):
    publisher.sendall(command(b"PUBLISH", b"news", b"hello %d" % i)); assert lines(publisher, 1) == b":1\r\n"
got = read_until(subscriber, b"", lambda data: data.count(b"message") >= 3)
print("done")
"#;

/// A redis-server under the comm `comm`, on a free port, listening: it and its port.
fn start_redis(comm: &str) -> (Server, u16) {
    let port = free_port();
    let redis = require_program("redis-server", "redis-server");
    let child = spawn_named_with(comm, &redis, |command| {
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null());
    });
    let server = Server::adopt("redis-server", child, Duration::from_secs(5));
    eventually(Duration::from_secs(10), "redis-server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (server, port)
}

#[test]
fn redis_commands_are_counted_exactly_on_both_sides() {
    let agent = Agent::start(&[]);
    let server_comm = unique_comm("rdss");
    let (mut server, port) = start_redis(&server_comm);

    let client = unique_comm("rdsc");
    let cli = unique_comm("rdcli");
    let (sets, gets, wrong) = (7, 5, 3);
    run_as(
        &client,
        &python3(),
        &[
            "-c".into(),
            PYTHON_RESP.into(),
            port.to_string(),
            sets.to_string(),
            gets.to_string(),
            wrong.to_string(),
        ],
    );
    // redis-cli, one connection per command, as scripts use it.
    let redis_cli = require_program("redis-cli", "redis-tools");
    for key in ["a", "b"] {
        run_as(
            &cli,
            &redis_cli,
            &[
                "-p".into(),
                port.to_string(),
                "SET".into(),
                key.into(),
                "1".into(),
            ],
        );
    }
    server.ensure_running("");

    let sets = f64::from(sets);
    let python = owned(&[
        ("EXEC", "", 1.0),
        ("GET", "", f64::from(gets) + 1.0),
        ("GET", "WRONGTYPE", f64::from(wrong)),
        ("HELLO", "", 1.0),
        ("INCR", "", 1.0),
        ("LPUSH", "", 1.0),
        ("MULTI", "", 1.0),
        ("PUBLISH", "", 3.0),
        ("SET", "", sets + 100.0 + 1.0),
        ("SUBSCRIBE", "", 1.0),
    ]);
    let port_label = port.to_string();
    let sent = |comm, op, status| {
        vec![
            ("comm", comm),
            ("db_system_name", "redis"),
            ("db_operation_name", op),
            ("db_response_status_code", status),
            ("server_address", "127.0.0.1"),
            ("server_port", port_label.as_str()),
        ]
    };
    let scrape = scrape_when(
        &agent,
        &[
            (CLIENT, sent(&client, "SET", ""), sets + 101.0),
            (CLIENT, sent(&client, "SUBSCRIBE", ""), 1.0),
            (CLIENT, sent(&cli, "SET", ""), 2.0),
            (
                SERVER,
                vec![("comm", &server_comm), ("db_operation_name", "PUBLISH")],
                3.0,
            ),
        ],
    );
    assert_eq!(operations_of(&scrape, CLIENT, &client), python);
    assert_eq!(
        operations_of(&scrape, CLIENT, &cli),
        owned(&[("SET", "", 2.0)])
    );
    // The server saw every command of both clients, answered the same way.
    let mut served = python.clone();
    served
        .iter_mut()
        .find(|(op, status, _)| op == "SET" && status.is_empty())
        .unwrap()
        .2 += 2.0;
    assert_eq!(operations_of(&scrape, SERVER, &server_comm), served);
    // Keys and values are users' data.
    for secret in ["user:", "secret-value", "piped:", "news", "hello"] {
        assert!(!scrape.text.contains(secret), "{secret} in the exposition");
    }
    server.stop();
}

/// `--probes.redis=false`: the same commands are not followed.
#[test]
fn redis_is_not_followed_with_probes_redis_false() {
    let agent = Agent::start(&["--probes.redis=false"]);
    let server_comm = unique_comm("rdoff");
    let (mut server, port) = start_redis(&server_comm);
    let cli = unique_comm("rdocli");
    let redis_cli = require_program("redis-cli", "redis-tools");
    let set = [
        "-p".into(),
        port.to_string(),
        "SET".into(),
        "k".into(),
        "1".into(),
    ];
    run_as(&cli, &redis_cli, &set);
    assert_not_followed(&agent, &cli, &[&cli, &server_comm], "--probes.redis=false");
    server.stop();
}

/// That none of `comms` has database operations, once `waited`'s system calls are seen:
/// those are folded at a sweep, long after any database record was read.
fn assert_not_followed(agent: &Agent, waited: &str, comms: &[&str], flags: &str) {
    let scrape = eventually(Duration::from_secs(20), "the system calls", || {
        let scrape = agent.scrape();
        let seen = scrape
            .matching(
                "monitor_syscall_duration_seconds_count",
                &[("comm", waited)],
            )
            .next()
            .is_some();
        seen.then_some(scrape)
    });
    for comm in comms {
        assert!(
            operations_of(&scrape, CLIENT, comm).is_empty()
                && operations_of(&scrape, SERVER, comm).is_empty(),
            "{comm}'s operations counted with {flags}"
        );
    }
}

/// `--probes.postgres=false`: the server's queries (the start's readiness checks) are not
/// followed.
#[test]
fn postgresql_is_not_followed_with_probes_postgres_false() {
    let agent = Agent::start(&["--probes.postgres=false"]);
    let server_comm = unique_comm("pgoff");
    let mut postgres = Postgres::start(&server_comm);
    let flags = "--probes.postgres=false";
    assert_not_followed(&agent, &server_comm, &[&server_comm], flags);
    postgres.server.stop();
}

/// The newest PostgreSQL server binaries Debian installed (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql: `cargo xtask setup` installs postgresql-15")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql")
}

/// `command` run by the unprivileged user 65534 (nobody), exec'd through `link` (its comm).
fn as_nobody(link: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(link)
        .env_remove("LD_LIBRARY_PATH");
    command
}

/// A PostgreSQL cluster made by `initdb` in a temporary directory, served by `postgres`
/// running as nobody under the comm `comm`, trusting local TCP connections.
struct Postgres {
    server: Server,
    port: u16,
    _dir: TempDir,
}

impl Postgres {
    fn start(comm: &str) -> Postgres {
        let dir = TempDir::new("db-pg");
        let bin = postgres_bin();
        let links = dir.path().join("bin");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&links).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        for path in [dir.path(), &links] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let chown = Command::new("chown")
            .args(["65534:65534", data.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(chown.success());
        let initdb = links.join("initdb");
        std::os::unix::fs::symlink(bin.join("initdb"), &initdb).unwrap();
        let output = as_nobody(&initdb)
            .args([
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "initdb: {output:?}");
        let postgres = links.join(comm);
        std::os::unix::fs::symlink(bin.join("postgres"), &postgres).unwrap();
        let port = free_port();
        let child = as_nobody(&postgres)
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args([
                "-k",
                data.to_str().unwrap(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server::adopt("postgres", child, Duration::from_secs(10));
        let psql = bin.join("psql");
        eventually(
            Duration::from_secs(30),
            "postgres accepting queries",
            || {
                Command::new(&psql)
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                    .args(["-qAt", "-c", "SELECT 'ready'"])
                    .output()
                    .ok()
                    .filter(|output| output.stdout.starts_with(b"ready"))
            },
        );
        Postgres {
            server,
            port,
            _dir: dir,
        }
    }

    fn connection_args(&self) -> Vec<String> {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// PostgreSQL framed in the kernel, the agent's default.
#[test]
fn postgresql_queries_are_counted_exactly_on_both_sides() {
    postgresql_counted_exactly(&[]);
}

/// PostgreSQL copied to the agent and framed there, as before it was framed in the kernel.
#[test]
fn postgresql_copied_to_the_agent_is_counted_exactly_too() {
    postgresql_counted_exactly(&["--probes.postgres=false", "--probes.databases"]);
}

/// psql (the simple protocol, an SSLRequest refused first) and pgbench (prepared
/// statements, a failing pipeline), each operation counted on both sides.
fn postgresql_counted_exactly(flags: &[&str]) {
    let agent = Agent::start(flags);
    let server_comm = unique_comm("pgs");
    let mut postgres = Postgres::start(&server_comm);
    let psql_comm = unique_comm("pgpsql");
    let bench_comm = unique_comm("pgbn");

    // psql: the simple query protocol, one Query message per -c; errors do not stop it.
    let (selects, missing) = (6, 4);
    let mut args = postgres.connection_args();
    args.push("-qAt".into());
    // Asks for TLS first (the server has none and refuses: plain text follows).
    args.extend(["-d".into(), "sslmode=prefer".into()]);
    for i in 0..selects {
        args.extend(["-c".into(), format!("SELECT {i}")]);
    }
    for _ in 0..missing {
        args.extend([
            "-c".into(),
            "SELECT * FROM missing_table WHERE email = 'a@b.c'".into(),
        ]);
    }
    // The binaries themselves (Debian's /usr/bin/psql is a wrapper that picks one by its own
    // name), through links that outlive them: PostgreSQL's programs look for their own
    // executable at start.
    let links = TempDir::new("db-pg-links");
    let link = |comm: &str, program: &str| {
        let link = links.path().join(comm);
        if !link.exists() {
            std::os::unix::fs::symlink(postgres_bin().join(program), &link).unwrap();
        }
        let mut command = Command::new(link);
        command.env_remove("LD_LIBRARY_PATH");
        command
    };
    let output = link(&psql_comm, "psql").args(&args).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stderr)
            .matches("does not exist")
            .count(),
        missing,
        "{output:?}"
    );

    // pgbench: the extended protocol with prepared statements (Parse once, then Bind,
    // Execute, Sync per transaction), and a pipeline (several Executes, one Sync) of
    // which one statement fails.
    let dir = TempDir::new("db-pgbench");
    let simple = dir.path().join("select.sql");
    std::fs::write(&simple, "SELECT 1;\n").unwrap();
    let pipelined = dir.path().join("pipeline.sql");
    std::fs::write(
        &pipelined,
        "\\startpipeline\nSELECT 2;\nSELECT 3;\nINSERT INTO missing_table VALUES (1);\n\\endpipeline\n",
    )
    .unwrap();
    let transactions = 25;
    let mut prepared = postgres.connection_args();
    prepared.extend(["-n", "-M", "prepared", "-t"].map(str::to_owned));
    prepared.push(transactions.to_string());
    prepared.extend(["-f".into(), simple.display().to_string(), "postgres".into()]);
    let output = link(&bench_comm, "pgbench")
        .args(&prepared)
        .output()
        .unwrap();
    assert!(output.status.success(), "pgbench: {output:?}");
    // The failing pipeline ends pgbench's only transaction with an error.
    let mut piped = postgres.connection_args();
    piped.extend(["-n", "-M", "extended", "-t", "1", "-f"].map(str::to_owned));
    piped.extend([pipelined.display().to_string(), "postgres".into()]);
    let output = link(&bench_comm, "pgbench").args(&piped).output().unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("missing_table"),
        "the pipeline's INSERT failed: {output:?}"
    );
    postgres.server.ensure_running("");

    let port = postgres.port.to_string();
    let sent = |comm, op, status| {
        vec![
            ("comm", comm),
            ("db_system_name", "postgresql"),
            ("db_operation_name", op),
            ("db_response_status_code", status),
            ("server_address", "127.0.0.1"),
            ("server_port", port.as_str()),
        ]
    };
    let scrape = scrape_when(
        &agent,
        &[
            (CLIENT, sent(&psql_comm, "SELECT", ""), f64::from(selects)),
            (
                CLIENT,
                sent(&psql_comm, "SELECT", "42P01"),
                f64::from(missing as u32),
            ),
            (
                CLIENT,
                sent(&bench_comm, "SELECT", ""),
                f64::from(transactions) + 2.0,
            ),
            (CLIENT, sent(&bench_comm, "INSERT", "42P01"), 1.0),
        ],
    );
    assert_eq!(
        operations_of(&scrape, CLIENT, &psql_comm),
        owned(&[
            ("SELECT", "", f64::from(selects)),
            ("SELECT", "42P01", missing as f64)
        ])
    );
    assert_eq!(
        operations_of(&scrape, CLIENT, &bench_comm),
        owned(&[
            ("INSERT", "42P01", 1.0),
            ("SELECT", "", f64::from(transactions) + 2.0)
        ])
    );
    // The server: the same operations, plus the readiness checks' SELECTs (a psql of the
    // test's own comm each).
    let served = operations_of(&scrape, SERVER, &server_comm);
    let count = |op: &str, status: &str| {
        served
            .iter()
            .find(|(o, s, _)| o == op && s == status)
            .map_or(0.0, |(_, _, n)| *n)
    };
    assert_eq!(count("SELECT", "42P01"), missing as f64);
    assert_eq!(count("INSERT", "42P01"), 1.0);
    assert!(count("SELECT", "") >= f64::from(selects + transactions + 2));
    // Statement text is users' data: not even a table name.
    for secret in ["missing_table", "a@b.c", "email"] {
        assert!(!scrape.text.contains(secret), "{secret} in the exposition");
    }
    postgres.server.stop();
}
