//! Real web servers and clients for the request tests: nginx (plain or TLS, on the host or
//! in a container's own root), curl, and the scrape that waits for exact request counts.
use std::{path::Path, process::Stdio, time::Duration};

use crate::{
    Agent, Scrape, Server, TempDir, eventually, require_program, settles, spawn_named_with,
};

/// How long a server gets to stop on SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);

/// A server for the test's duration, and the directory it runs from.
pub type Running = (Server, TempDir);

/// nginx's configuration: one worker, `/ok` answered 200, anything else 404, everything it
/// writes under `root`; with `tls`, the listener speaks TLS with `root`/cert.pem and key.pem.
pub fn nginx_config(root: &str, port: u16, tls: bool) -> String {
    nginx_config_with(root, port, tls, false)
}

/// `nginx_config`, HTTP/2 only with `http2` (cleartext: prior knowledge; TLS: ALPN `h2`).
pub fn nginx_config_with(root: &str, port: u16, tls: bool, http2: bool) -> String {
    let http2 = if http2 { " http2" } else { "" };
    let (ssl, certificates) = if tls {
        (
            " ssl",
            format!(
                "    ssl_certificate {root}/cert.pem;\n    ssl_certificate_key {root}/key.pem;\n"
            ),
        )
    } else {
        ("", String::new())
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {root}/nginx.pid;\n\
         error_log {root}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n\
         proxy_temp_path {root}/proxy;\n  fastcgi_temp_path {root}/fastcgi;\n\
         uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n  keepalive_requests 1000;\n\
         server {{\n    listen 127.0.0.1:{port}{ssl}{http2};\n{certificates}\
         location = /ok {{ return 200 \"ok\\n\"; }}\n\
         location / {{ return 404; }}\n  }}\n}}\n"
    )
}

/// A self-signed certificate and its key, as `dir`/cert.pem and `dir`/key.pem.
pub fn self_signed_certificate(dir: &Path) {
    let openssl = require_program("openssl", "openssl");
    let output = std::process::Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    assert!(output.status.success(), "openssl req: {output:?}");
}

/// nginx on the host as `comm`, on a free port (`tls`: over TLS); returns once it accepts.
pub fn nginx(comm: &str, tls: bool) -> (Running, u16) {
    nginx_with(comm, tls, false)
}

/// `nginx`, speaking HTTP/2 only with `http2`.
pub fn nginx_with(comm: &str, tls: bool, http2: bool) -> (Running, u16) {
    let nginx = require_program("nginx", "nginx");
    let dir = TempDir::new("nginx");
    let port = crate::free_port();
    let root = dir.path().display().to_string();
    if tls {
        self_signed_certificate(dir.path());
    }
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, nginx_config_with(&root, port, tls, http2)).unwrap();
    let child = spawn_named_with(comm, &nginx, |command| {
        command
            .args(["-e", &format!("{root}/error.log"), "-c"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    });
    let running = (Server::adopt("nginx", child, GRACE), dir);
    wait_listening(port);
    (running, port)
}

/// Returns once something accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16) {
    eventually(Duration::from_secs(10), "nginx listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// curl, as `comm`, fetching every URL in turn over one keep-alive connection; returns the
/// status codes curl itself saw (the client-side ground truth). Certificates are not
/// checked: the tests' servers sign their own.
pub fn curl_as(comm: &str, urls: &[String]) -> Vec<u16> {
    curl_with(comm, &[], urls)
}

/// `curl_as` with more of curl's options (`--http2-prior-knowledge`).
pub fn curl_with(comm: &str, options: &[&str], urls: &[String]) -> Vec<u16> {
    let curl = require_program("curl", "curl");
    let child = spawn_named_with(comm, &curl, |command| {
        command.args(options).args([
            "--silent",
            "--show-error",
            "--insecure",
            "--write-out",
            "%{http_code}\\n",
        ]);
        for url in urls {
            command.args(["--output", "/dev/null", url]);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    });
    status_codes("curl", child)
}

/// The status codes a client that prints one per line saw, once it ended (successfully).
pub fn status_codes(client: &str, child: std::process::Child) -> Vec<u16> {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{client} failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|code| code.parse().unwrap())
        .collect()
}

/// `count` URLs of `path` on 127.0.0.1:`port`, over `scheme`.
pub fn urls(scheme: &str, port: u16, path: &str, count: usize) -> Vec<String> {
    vec![format!("{scheme}://127.0.0.1:{port}{path}"); count]
}

/// The `_count` of `family`'s series with `labels`.
pub fn count(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.value(&format!("{family}_count"), labels)
}

/// Waits until every (labels, count) pair is reported exactly, then returns the scrape.
pub fn scrape_when(agent: &Agent, family: &str, expected: &[(Vec<(&str, &str)>, f64)]) -> Scrape {
    settles(
        Duration::from_secs(15),
        || agent.scrape(),
        |scrape| {
            expected
                .iter()
                .all(|(labels, n)| count(scrape, family, labels) == Some(*n))
        },
        |scrape| {
            let seen: Vec<&str> = (scrape.text.lines())
                .filter(|l| l.starts_with(family))
                .collect();
            format!(
                "expected {expected:?} in {family}; the agent reported:\n{}",
                seen.join("\n")
            )
        },
    )
}
