//! HTTPS through the TLS library: nginx over TLS, curl (`SSL_read`/`SSL_write`) and Python's
//! `http.client` (`SSL_read_ex`/`SSL_write_ex`) as clients, each under a unique `comm`, all on
//! Debian's OpenSSL 3; then the same nginx in a container with its own copy of libssl, which
//! the agent must find in the container's memory map. The agent must count exactly the
//! requests each side made, by status, with `url_scheme="https"`, and never take the
//! ciphertext for HTTP. Processes whose TLS cannot be seen are counted by reason.
use std::{path::PathBuf, process::Stdio, time::Duration};

use tests::{
    Agent, Scrape, TempDir,
    docker::{self, Container, Docker, text},
    eventually, python3, spawn_named_with, unique_comm,
    web::{self, curl_as, nginx, scrape_when, urls},
};

const SERVER: &str = "http_server_request_duration_seconds";
const CLIENT: &str = "http_client_request_duration_seconds";
const LIBRARIES: &str = "monitor_tls_libraries_instrumented";
const UNSEEN: &str = "monitor_tls_uninstrumented_processes";

/// `python3 -c CLIENT PORT PATH…`: one keep-alive HTTPS connection (certificate unchecked),
/// a GET per path; prints each status it read.
const PYTHON_CLIENT: &str = r#"
import http.client, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
connection = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=context)
for path in sys.argv[2:]:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    print(response.status, flush=True)
"#;

fn python_client(comm: &str, port: u16, paths: &[&str]) -> Vec<u16> {
    let child = spawn_named_with(comm, &python3(), |command| {
        command
            .args(["-c", PYTHON_CLIENT, &port.to_string()])
            .args(paths)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    web::status_codes("python client", child)
}

fn served<'a>(comm: &'a str, status: &'a str, route: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("comm", comm),
        ("http_request_method", "GET"),
        ("http_response_status_code", status),
        ("http_route", route),
        ("url_scheme", "https"),
    ]
}

fn made<'a>(comm: &'a str, status: &'a str, port: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("comm", comm),
        ("http_request_method", "GET"),
        ("http_response_status_code", status),
        ("server_address", "127.0.0.1"),
        ("server_port", port),
        ("url_scheme", "https"),
    ]
}

/// Series of `family` for `comm` with `url_scheme="http"`: the ciphertext taken for HTTP.
fn cleartext_series(scrape: &Scrape, family: &str, comm: &str) -> usize {
    scrape
        .matching(
            &format!("{family}_count"),
            &[("comm", comm), ("url_scheme", "http")],
        )
        .count()
}

/// Waits until the agent has instrumented `at_least` library files.
fn wait_libraries(agent: &Agent, at_least: f64) {
    eventually(
        Duration::from_secs(20),
        "TLS libraries instrumented",
        || (agent.scrape().value(LIBRARIES, &[]) >= Some(at_least)).then_some(()),
    );
}

/// nginx over TLS on the host; curl and Python each make their requests over one
/// connection. Both sides of every request, exactly, as https.
fn nginx_curl_and_python_exact(agent: &Agent) {
    const CURL_OK: usize = 4;
    const CURL_MISSING: usize = 2;
    const PYTHON_OK: usize = 5;
    const PYTHON_MISSING: usize = 3;
    let server = unique_comm("tlsngx");
    let curl = unique_comm("tlscurl");
    let python = unique_comm("tlspy");
    // The host's libssl is instrumented at start-up, before any process maps it.
    wait_libraries(agent, 1.0);
    let (_nginx, port) = nginx(&server, true);
    let mut requests = urls("https", port, "/ok", CURL_OK);
    requests.extend(urls("https", port, "/missing", CURL_MISSING));
    let codes = curl_as(&curl, &requests);
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), CURL_OK);
    assert_eq!(codes.iter().filter(|&&c| c == 404).count(), CURL_MISSING);
    let mut paths = vec!["/ok"; PYTHON_OK];
    paths.extend(vec!["/missing"; PYTHON_MISSING]);
    let codes = python_client(&python, port, &paths);
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), PYTHON_OK);
    assert_eq!(codes.iter().filter(|&&c| c == 404).count(), PYTHON_MISSING);

    let port = port.to_string();
    scrape_when(
        agent,
        SERVER,
        &[
            (served(&server, "200", "/ok"), (CURL_OK + PYTHON_OK) as f64),
            (
                served(&server, "404", "/missing"),
                (CURL_MISSING + PYTHON_MISSING) as f64,
            ),
        ],
    );
    let scrape = scrape_when(
        agent,
        CLIENT,
        &[
            (made(&curl, "200", &port), CURL_OK as f64),
            (made(&curl, "404", &port), CURL_MISSING as f64),
            (made(&python, "200", &port), PYTHON_OK as f64),
            (made(&python, "404", &port), PYTHON_MISSING as f64),
        ],
    );
    for (family, comm) in [(SERVER, &server), (CLIENT, &curl), (CLIENT, &python)] {
        assert_eq!(cleartext_series(&scrape, family, comm), 0, "{comm}");
    }
}

/// Framed in the kernel (the default): the plaintext goes through the same framing as
/// cleartext sockets.
#[test]
fn nginx_over_tls_exact_counts_for_curl_and_python_on_both_sides() {
    let agent = Agent::start(&[]);
    nginx_curl_and_python_exact(&agent);
    let scrape = agent.scrape();
    assert_eq!(
        scrape.value("monitor_requests_framed_in_kernel", &[]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("monitor_tls_unattributed_calls_total", &[]),
        Some(0.0)
    );
}

/// Where the framing runs in user space, the plaintext is copied to the agent instead, with
/// the same counts.
#[test]
fn nginx_over_tls_exact_with_the_framing_in_user_space_too() {
    let agent = Agent::start(&["--probes.request-framing", "user"]);
    nginx_curl_and_python_exact(&agent);
    assert_eq!(
        agent
            .scrape()
            .value("monitor_requests_framed_in_kernel", &[]),
        Some(0.0)
    );
}

/// `--probes.tls=false`: no uprobes, no https series (and the ciphertext is still not HTTP).
#[test]
fn with_tls_probes_off_https_is_not_seen_and_not_mistaken_for_http() {
    let agent = Agent::start(&["--probes.tls=false"]);
    let server = unique_comm("tlsoff");
    let curl = unique_comm("tlsoffc");
    let (_nginx, port) = nginx(&server, true);
    let codes = curl_as(&curl, &urls("https", port, "/ok", 3));
    assert_eq!(codes, [200, 200, 200]);
    // A cleartext request after them: once it is counted, the HTTPS ones would have been.
    let plain = unique_comm("tlsoffp");
    let (_plain_nginx, plain_port) = nginx(&plain, false);
    assert_eq!(curl_as(&curl, &urls("http", plain_port, "/ok", 1)), [200]);
    let scrape = scrape_when(
        &agent,
        SERVER,
        &[(vec![("comm", plain.as_str()), ("url_scheme", "http")], 1.0)],
    );
    assert_eq!(scrape.value(LIBRARIES, &[]), Some(0.0));
    assert_eq!(
        scrape
            .matching(&format!("{SERVER}_count"), &[("comm", server.as_str())])
            .count(),
        0
    );
    // The idle scan thread waits for its stop: it must not spin (a core per second).
    std::thread::sleep(Duration::from_secs(3));
    let scrape = agent.scrape();
    let cpu = scrape.value("process_cpu_seconds_total", &[]).unwrap();
    let alive = scrape.value("process_start_time_seconds", &[]).unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - alive;
    assert!(
        cpu < wall / 2.0,
        "the agent used {cpu} s of CPU in {wall} s"
    );
}

/// `python3 -c` that maps GnuTLS (and no libssl) and waits: a process whose TLS goes unseen.
const PYTHON_GNUTLS: &str = r#"
import ctypes, time
ctypes.CDLL("libgnutls.so.30")
print("ready", flush=True)
time.sleep(300)
"#;

/// Processes mapping GnuTLS and no libssl are counted as unseen, for as long as they run.
#[test]
fn processes_with_only_gnutls_are_counted_as_unseen_while_they_run() {
    let agent = Agent::start(&[]);
    let unseen = |agent: &Agent| agent.scrape().value(UNSEEN, &[("reason", "gnutls")]);
    let before = eventually(Duration::from_secs(20), "a first TLS scan", || {
        unseen(&agent)
    });
    let comm = unique_comm("gnutls");
    let workloads: Vec<_> = (0..2)
        .map(|_| tests::spawn_as(&comm, &python3(), &["-c".into(), PYTHON_GNUTLS.into()]))
        .collect();
    eventually(Duration::from_secs(20), "two more gnutls processes", || {
        (unseen(&agent) == Some(before + 2.0)).then_some(())
    });
    drop(workloads);
    eventually(Duration::from_secs(20), "the gnutls processes gone", || {
        (unseen(&agent) == Some(before)).then_some(())
    });
}

/// A root filesystem for nginx: the binary, the libraries it loads (copies: a libssl that
/// is a different file from the host's), the users nginx looks up, its configuration and
/// certificate, as a tarball for `docker import` (no image can be pulled here).
fn nginx_rootfs(dir: &TempDir, port: u16) -> PathBuf {
    let root = dir.path().join("rootfs");
    let nginx = tests::require_program("nginx", "nginx");
    docker::copy_with_libraries(&nginx, &root, "/usr/sbin/nginx");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let web = root.join("web");
    std::fs::create_dir_all(&web).unwrap();
    web::self_signed_certificate(&web);
    std::fs::write(
        web.join("nginx.conf"),
        web::nginx_config("/web", port, true),
    )
    .unwrap();
    docker::tarball(&root, dir.path())
}

/// nginx in a container with its own libssl: the agent finds that file in the container's
/// memory map and instruments it too; curl on the host reaches it over TLS. dockerd and
/// containerd are Go programs, whose TLS is counted as unseen.
#[test]
fn nginx_in_a_container_with_its_own_libssl_exact_on_both_sides() {
    const OK: usize = 6;
    const MISSING: usize = 2;
    let docker = Docker::start();
    let socket = docker.socket.trim_start_matches("unix://").to_owned();
    let agent = Agent::start(&["--docker.socket", &socket]);
    wait_libraries(&agent, 1.0);
    let before = agent.scrape().value(LIBRARIES, &[]).unwrap();
    let dir = TempDir::new("tls-rootfs");
    let port = tests::free_port();
    let tarball = nginx_rootfs(&dir, port);
    let tag = format!("monitor-itest-nginx:{}", std::process::id());
    let import = docker.docker(&["import", tarball.to_str().unwrap(), &tag]);
    assert!(
        import.status.success(),
        "{}\n{}",
        text(&import),
        docker.log()
    );
    let name = format!("monitor-itest-tls-{}", std::process::id());
    let _container = Container(&docker, name.clone());
    let run = docker
        .command()
        .args([
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "host",
            &tag,
        ])
        .args([
            "/usr/sbin/nginx",
            "-e",
            "/web/error.log",
            "-c",
            "/web/nginx.conf",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}\n{}", text(&run), docker.log());
    web::wait_listening(port);
    wait_libraries(&agent, before + 1.0);

    let curl = unique_comm("tlsctrc");
    let mut requests = urls("https", port, "/ok", OK);
    requests.extend(urls("https", port, "/missing", MISSING));
    let codes = curl_as(&curl, &requests);
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), OK);
    let in_container = |status, route| {
        let mut labels = served("nginx", status, route);
        labels.push(("container", name.as_str()));
        labels
    };
    scrape_when(
        &agent,
        SERVER,
        &[
            (in_container("200", "/ok"), OK as f64),
            (in_container("404", "/missing"), MISSING as f64),
        ],
    );
    let port = port.to_string();
    let scrape = scrape_when(
        &agent,
        CLIENT,
        &[
            (made(&curl, "200", &port), OK as f64),
            (made(&curl, "404", &port), MISSING as f64),
        ],
    );
    assert!(
        scrape.value(UNSEEN, &[("reason", "go")]) >= Some(1.0),
        "dockerd is a Go program: {:?}",
        scrape.value(UNSEEN, &[("reason", "go")])
    );
}
