//! The exposition as scrapers take it, from the real agent: at the path `--web.telemetry-path`
//! gives it, gzip-encoded when asked (and then still clean for `promtool check metrics`), with
//! the agent's own `process_*` figures equal to what `/proc` says of its process.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use tests::{Agent, Scrape, http_get, promtool_check};

/// GET `path` asking for gzip: the status line's code, the headers (lowercased) and the raw
/// body.
fn get_gzip(address: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8(response[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        response[end + 4..].to_vec(),
    )
}

/// `/proc/<pid>/stat` fields, counted from 1 at the pid (the command may hold spaces).
fn stat_field(pid: u32, number: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    rest.split_whitespace()
        .nth(number - 3)
        .unwrap()
        .parse()
        .unwrap()
}

fn ticks_per_second() -> f64 {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The agent's CPU seconds so far, by the kernel.
fn cpu_seconds(pid: u32) -> f64 {
    (stat_field(pid, 14) + stat_field(pid, 15)) / ticks_per_second()
}

#[test]
fn gzip_at_the_telemetry_path_with_the_agents_own_process_figures() {
    let agent = Agent::start(&["--web.telemetry-path", "/probe/metrics"]);
    let pid = agent.pid();
    // Moved, not copied: /metrics is gone, /healthz stays.
    assert_eq!(http_get(agent.address, "/metrics").unwrap().0, 404);
    assert_eq!(http_get(agent.address, "/healthz").unwrap().0, 200);
    let (status, plain) = http_get(agent.address, "/probe/metrics").unwrap();
    assert_eq!(status, 200);

    let cpu_before = cpu_seconds(pid);
    let (status, headers, body) = get_gzip(agent.address, "/probe/metrics");
    let cpu_after = cpu_seconds(pid);
    assert_eq!(status, 200);
    assert!(headers.contains("\r\ncontent-encoding: gzip"), "{headers}");
    // Label sets repeat line after line: the body shrinks several times over.
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    assert!(
        body.len() * 4 < text.len(),
        "{} bytes gzipped, {} plain",
        body.len(),
        text.len()
    );
    // The same exposition either way (the series themselves move between two scrapes).
    for text in [&plain, &text] {
        assert!(text.contains("# TYPE monitor_build_info gauge"), "{text}");
    }
    if let Err(findings) = promtool_check(&text) {
        panic!("promtool on the decoded scrape: {findings}");
    }

    let scrape = Scrape::parse(&text);
    let figure = |name: &str| {
        scrape
            .value(name, &[])
            .unwrap_or_else(|| panic!("no {name}"))
    };
    // CPU: read between the kernel's figure before and after the scrape.
    let cpu = figure("process_cpu_seconds_total");
    assert!(
        cpu_before <= cpu && cpu <= cpu_after,
        "{cpu_before} <= {cpu} <= {cpu_after}"
    );
    // Start: boot time plus the start in ticks, as the kernel has it.
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap();
    let started = boot + stat_field(pid, 22) / ticks_per_second();
    assert!((figure("process_start_time_seconds") - started).abs() < 0.01);
    // The soft limit, as /proc/<pid>/limits shows it.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find_map(|line| {
            line.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap();
    assert_eq!(figure("process_max_fds"), soft);
    // Descriptors and memory move while the agent works: near what /proc shows now.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    let open = figure("process_open_fds");
    assert!((open - fds).abs() <= 4.0, "{open} open, /proc lists {fds}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: f64 = status
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap();
    let resident = figure("process_resident_memory_bytes");
    assert!(
        (resident - rss_kib * 1024.0).abs() <= 0.1 * rss_kib * 1024.0,
        "{resident} resident, VmRSS {rss_kib} KiB"
    );
    assert!(figure("process_virtual_memory_bytes") >= resident);
}
