//! The secure endpoint, end to end with the real agent: a self-signed certificate and a bcrypt
//! hash made here, a web config file, HTTPS with and without the right credentials, plain HTTP
//! against the TLS port, slow-loris clients, the in-flight limit, and bad config files.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use tests::{Agent, agent_bin, free_port, parse_http_response, wait_timeout};

/// A directory with `server.crt`/`server.key` (self-signed for localhost) and a web config.
struct Setup {
    dir: PathBuf,
    cert_pem: String,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("monitor-web-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("server.crt"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), cert.key_pair.serialize_pem()).unwrap();
        Setup {
            dir,
            cert_pem: cert.cert.pem(),
        }
    }

    /// Writes `web.yml` (relative cert paths: resolved against the file's directory).
    fn config(&self, yaml: &str) -> PathBuf {
        let path = self.dir.join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn tls_client(&self) -> Arc<rustls::ClientConfig> {
        client_trusting(&self.cert_pem)
    }
}

/// A TLS client that trusts the one certificate `cert_pem`.
fn client_trusting(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const TLS_AND_AUTH: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

fn users(user: &str, password: &str, cost: u32) -> String {
    format!(
        "basic_auth_users:\n  {user}: '{}'\n",
        bcrypt::hash(password, cost).unwrap()
    )
}

/// The agent, started with a web config; ready once its TCP port accepts and `/healthz`
/// (exempt from auth) answers over HTTPS.
/// The agent with `config` as its web config, healthy once `/healthz` answers over TLS.
fn start_agent(setup: &Setup, config: &Path, extra: &[&str]) -> Agent {
    let tls = setup.tls_client();
    let config = config.to_str().unwrap();
    let args: Vec<&str> = ["--web.config.file", config]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    Agent::start_checked(&[], &args, |address| {
        matches!(https_get(&tls, address, "/healthz", None), Ok((200, _)))
    })
}

/// One HTTPS/1.1 request on its own connection: status and body.
fn https_get(
    tls: &Arc<rustls::ClientConfig>,
    address: SocketAddr,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let connection =
        rustls::ClientConnection::new(Arc::clone(tls), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let authorization = credentials.map_or(String::new(), |(user, password)| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Authorization: Basic {encoded}\r\n")
    });
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A peer that closes without close_notify: what arrived is still the whole response.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(err) => return Err(err),
    }
    parse_http_response(&String::from_utf8_lossy(&response))
}

#[test]
fn https_with_basic_auth() {
    let setup = Setup::new("auth");
    let config = setup.config(&format!(
        "{TLS_AND_AUTH}{}",
        users("prometheus", "s3cret", 4)
    ));
    let agent = start_agent(&setup, &config, &[]);
    let tls = setup.tls_client();
    let get = |credentials| https_get(&tls, agent.address, "/metrics", credentials).unwrap();

    let (status, _) = get(None);
    assert_eq!(status, 401, "no credentials");
    for wrong in [
        ("prometheus", "S3cret"),
        ("prometheus", ""),
        ("nobody", "s3cret"),
    ] {
        assert_eq!(get(Some(wrong)).0, 401, "{wrong:?}");
    }
    for _ in 0..3 {
        let (status, body) = get(Some(("prometheus", "s3cret")));
        assert_eq!(status, 200);
        assert!(body.contains("monitor_build_info"), "{body}");
    }
    assert!(agent.log().contains("serving https://"), "{}", agent.log());
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_response() {
    let setup = Setup::new("plain");
    let config = setup.config(TLS_AND_AUTH);
    let agent = start_agent(&setup, &config, &[]);
    match tests::http_get(agent.address, "/metrics") {
        Ok((status, body)) => panic!("plain HTTP answered {status}: {body}"),
        Err(err) => eprintln!("plain HTTP refused as expected: {err}"),
    }
    // Still serving HTTPS afterwards.
    assert_eq!(
        https_get(&setup.tls_client(), agent.address, "/metrics", None)
            .unwrap()
            .0,
        200
    );
}

/// Reads until the server closes the connection; returns how long that took (or panics after
/// `limit`).
fn time_until_closed(
    stream: &mut dyn std::io::Read,
    started: Instant,
    limit: Duration,
) -> Duration {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(
                    started.elapsed() < limit,
                    "still connected after {:?}",
                    started.elapsed()
                );
            }
            // A reset, or TLS noticing the missing close_notify: closed all the same.
            Err(_) => return started.elapsed(),
        }
    }
}

#[test]
fn slow_loris_clients_are_cut_off() {
    let setup = Setup::new("loris");
    let config = setup.config(TLS_AND_AUTH);
    let agent = start_agent(&setup, &config, &["--web.read-header-timeout", "1s"]);
    let limit = Duration::from_secs(5);

    // 1. Connects and never starts the TLS handshake.
    let mut tcp = TcpStream::connect(agent.address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let took = time_until_closed(&mut tcp, Instant::now(), limit);
    eprintln!("closed after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );

    // 2. Completes the handshake, then sends half a request line and stops.
    let tcp = TcpStream::connect(agent.address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(setup.tls_client(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: local")
        .unwrap();
    stream.flush().unwrap();
    let started = Instant::now();
    let took = time_until_closed(&mut stream, started, limit);
    eprintln!("closed after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );

    // The agent is unharmed.
    assert_eq!(
        https_get(&setup.tls_client(), agent.address, "/healthz", None)
            .unwrap()
            .0,
        200
    );
}

/// `--web.max-requests 1`: a request whose bcrypt check is slow (cost 14, over 1 s even
/// optimised) holds the only permit; a request arriving meanwhile is refused with 503 at once,
/// before any authentication, and the next one after it is served.
#[test]
fn requests_beyond_the_limit_get_503() {
    let setup = Setup::new("limit");
    let config = setup.config(&format!(
        "{TLS_AND_AUTH}{}",
        users("prometheus", "s3cret", 14)
    ));
    let agent = start_agent(&setup, &config, &["--web.max-requests", "1"]);
    let tls = setup.tls_client();

    let address = agent.address;
    let slow_tls = Arc::clone(&tls);
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let result = https_get(
            &slow_tls,
            address,
            "/metrics",
            Some(("prometheus", "wrong")),
        )
        .unwrap();
        (result.0, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) =
        https_get(&tls, address, "/metrics", Some(("prometheus", "s3cret"))).unwrap();
    let refused_in = started.elapsed();
    let (slow_status, slow_took) = slow.join().unwrap();
    eprintln!("503 in {refused_in:?}; the slow check took {slow_took:?}");
    assert!(
        slow_took > Duration::from_millis(300) + refused_in,
        "the bcrypt check ({slow_took:?}) was too fast to hold the permit: raise the cost"
    );
    assert_eq!(
        (status, body.as_str()),
        (503, "too many requests in flight, retry later\n")
    );
    assert_eq!(slow_status, 401);
    // /healthz is never limited; and with the permit back, the right password gets in.
    assert_eq!(https_get(&tls, address, "/healthz", None).unwrap().0, 200);
    assert_eq!(
        https_get(&tls, address, "/metrics", Some(("prometheus", "s3cret")))
            .unwrap()
            .0,
        200
    );
}

fn run_with_config(config: &Path) -> Output {
    Command::new(agent_bin())
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--web.config.file")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn bad_config_files_are_one_line_and_start_nothing() {
    let setup = Setup::new("bad");
    let missing = setup.dir.join("missing.yml");
    for (yaml, expected) in [
        (None, &["missing.yml: cannot read it", "No such file"][..]),
        (
            Some("tls_server_config: [unclosed\n"),
            &["web.yml", "line"][..],
        ),
        (
            Some(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_flie: x\n",
            ),
            &["web.yml", "unknown field `cert_flie`", "line 4"][..],
        ),
        (
            Some("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n"),
            &["web.yml", "cert_file", "nowhere.crt", "No such file"][..],
        ),
        (
            Some("basic_auth_users:\n  alice: not-a-hash\n"),
            &["web.yml: line 2 column 3: basic_auth_users.alice: not a bcrypt hash"][..],
        ),
    ] {
        let path = match yaml {
            Some(yaml) => setup.config(yaml),
            None => missing.clone(),
        };
        let output = run_with_config(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{yaml:?}: bad input exits 2: {output:?}"
        );
        assert!(
            stderr.starts_with("monitor-agent: error: web config "),
            "{yaml:?}: {stderr}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{yaml:?}: one line expected: {stderr}"
        );
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{yaml:?}: {needle:?} missing from {stderr:?}"
            );
        }
        assert!(
            !stderr.contains("attached"),
            "{yaml:?}: something started: {stderr}"
        );
    }
}

#[test]
fn empty_config_file_serves_plain_http() {
    let setup = Setup::new("empty");
    let config = setup.config("# nothing: plain HTTP, no auth\n");
    let address = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(agent_bin())
        .args(["--web.listen-address", &address, "--web.config.file"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address: SocketAddr = address.parse().unwrap();
    let answered = tests::eventually(Duration::from_secs(30), "plain /metrics", || {
        tests::http_get(address, "/metrics")
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    assert!(answered.1.contains("monitor_build_info"));
    let _ = child.kill();
    let _ = wait_timeout(&mut child, Duration::from_secs(10));
}

/// `--web.max-connections 1` and `--web.write-timeout 2s`: a client pipelines hundreds of
/// scrapes and reads none of the answers. Its connection holds the only slot, so others are
/// closed at once, until its writes have made no progress for 2 s: then it is dropped and
/// the next client is served. Without the timeout the slot would be held for as long as the
/// silent client keeps its socket.
#[test]
fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let agent = Agent::start(&["--web.max-connections", "1", "--web.write-timeout", "2s"]);
    // Wait until the agent's own /healthz poll has let go of its connection.
    std::thread::sleep(Duration::from_millis(200));
    let mut silent = TcpStream::connect(agent.address).unwrap();
    silent
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", agent.address);
    // Far more than the socket buffers of both ends hold, whatever the page's size.
    // (Should the agent stop reading them first, what was written is plenty.)
    let _ = silent.write_all(request.repeat(2000).as_bytes());
    let mut refused = 0;
    let served_after = loop {
        match tests::http_get(agent.address, "/healthz") {
            Ok((200, _)) => break started.elapsed(),
            Ok((status, body)) => panic!("{status}: {body}"),
            Err(_) => refused += 1,
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still refused after {:?}: the silent client was never dropped",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{refused} connections closed at once; served after {served_after:?}");
    assert!(refused > 0, "the one connection slot was not held");
    assert!(
        served_after >= Duration::from_millis(1500),
        "{served_after:?}"
    );
    // The silent client's connection was closed by the agent: what it reads ends.
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut drained = Vec::new();
    let end = silent.read_to_end(&mut drained);
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?} after {} bytes",
        drained.len()
    );
}

/// A burst of 60 wrong passwords at once (bcrypt cost 12) while a scraper whose password was
/// checked before keeps scraping: at most two bcrypt checks run at a time, the rest of the
/// burst is refused at once (503) without holding a request slot, and the scraper is
/// answered 200 throughout. Without that limit the burst's checks would hold 40 request
/// slots (`--web.max-requests`) for seconds and refuse the scraper.
#[test]
fn a_burst_of_wrong_passwords_does_not_starve_a_known_scraper() {
    let setup = Setup::new("burst");
    let config = setup.config(&format!(
        "{TLS_AND_AUTH}{}",
        users("prometheus", "s3cret", 12)
    ));
    let agent = start_agent(&setup, &config, &[]);
    let tls = setup.tls_client();
    let address = agent.address;
    let scrape = || https_get(&tls, address, "/metrics", Some(("prometheus", "s3cret")));
    // Checked once with bcrypt; from now on a hash comparison.
    assert_eq!(scrape().unwrap().0, 200);
    let burst: Vec<_> = (0..60)
        .map(|_| {
            let tls = Arc::clone(&tls);
            std::thread::spawn(move || {
                https_get(&tls, address, "/metrics", Some(("prometheus", "wrong")))
                    .map(|(status, _)| status)
                    .unwrap_or(0)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut answered = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        answered.push((scrape().unwrap().0, started.elapsed()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses: Vec<u16> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    let count = |wanted: u16| statuses.iter().filter(|&&s| s == wanted).count();
    eprintln!(
        "burst: {} × 401, {} × 503, {} other; the scraper: {answered:?}",
        count(401),
        count(503),
        statuses.len() - count(401) - count(503)
    );
    assert!(
        answered.iter().all(|(status, _)| *status == 200),
        "{answered:?}"
    );
    assert!(count(503) > 0, "the burst was never refused: {statuses:?}");
    assert_eq!(count(401) + count(503), statuses.len(), "{statuses:?}");
}

/// The certificate files are replaced while the agent runs (key first, as a careless renewal
/// might: for a moment they do not match): the agent keeps serving the old certificate until
/// the pair loads, then serves the new one, without a restart.
#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let setup = Setup::new("renew");
    let config = setup.config(TLS_AND_AUTH);
    let agent = start_agent(&setup, &config, &[]);
    let old = setup.tls_client();
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let new = client_trusting(&renewed.cert.pem());
    let healthz = |client: &Arc<rustls::ClientConfig>| {
        https_get(client, agent.address, "/healthz", None).map(|(status, _)| status)
    };
    assert_eq!(healthz(&old).unwrap(), 200);
    assert!(healthz(&new).is_err(), "a client trusting only the new one");

    std::fs::write(
        setup.dir.join("server.key"),
        renewed.key_pair.serialize_pem(),
    )
    .unwrap();
    // Mismatched for over a second: looked at, refused, the old pair still served.
    std::thread::sleep(Duration::from_millis(1500));
    // Fresh clients throughout: one that resumes an earlier session is shown no certificate.
    assert_eq!(healthz(&client_trusting(&setup.cert_pem)).unwrap(), 200);
    std::fs::write(setup.dir.join("server.crt"), renewed.cert.pem()).unwrap();
    tests::eventually(Duration::from_secs(10), "the renewed certificate", || {
        healthz(&new).ok().filter(|&status| status == 200)
    });
    assert!(
        healthz(&client_trusting(&setup.cert_pem)).is_err(),
        "the old certificate is still served"
    );
    let log = agent.log();
    assert!(
        log.contains("still serving the previous certificate"),
        "{log}"
    );
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}
