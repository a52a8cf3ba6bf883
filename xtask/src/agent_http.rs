//! Talking to a running agent over plain HTTP/1.0: enough for `/healthz` and `/metrics`
//! without an HTTP client dependency in the xtask.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::process::Supervised;

const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel picks a free port; the agent binds it right after (a race we accept).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// `GET path` on the loopback port: the status code and the body, `None` if unreachable.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    // A timeout still leaves whatever arrived, and the status line comes first.
    let _ = stream.read_to_end(&mut response);
    parse_response(&String::from_utf8_lossy(&response))
}

fn parse_response(response: &str) -> Option<(u16, String)> {
    let mut status_line = response.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Some((status, body.to_owned()))
}

/// The agent answers /healthz once its probes are attached and it is serving.
pub fn wait_until_healthy(agent: &mut Supervised, port: u16) -> Result<()> {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        agent.ensure_running()?;
        if matches!(get(port, "/healthz"), Some((200, _))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("/healthz on port {port} did not answer 200 within {HEALTH_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        assert_eq!(
            parse_response("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nok\n"),
            Some((200, "ok\n".to_owned()))
        );
        assert_eq!(
            parse_response("HTTP/1.1 503 Service Unavailable\r\n").map(|r| r.0),
            Some(503)
        );
        assert_eq!(parse_response(""), None);
        assert_eq!(parse_response("200 HTTP/1.1\r\n"), None);
    }

    #[test]
    fn get_against_a_fake_server() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Read the whole request first: closing on unread bytes would reset the connection.
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            conn.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n").unwrap();
        });
        assert_eq!(get(port, "/healthz"), Some((200, "ok\n".to_owned())));
        server.join().unwrap();
    }
}
