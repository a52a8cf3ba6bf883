//! The command line: every flag, its default and its environment variable, in one place.
use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};
use log::LevelFilter;
use monitor_common::capacity;

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9655";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "monitor-agent",
    version,
    about = "Golden-signal metrics for unmodified applications, from eBPF probes, for Prometheus.",
    long_about = "Golden-signal metrics for unmodified applications, from eBPF probes, for Prometheus.\n\n\
        Attaches raw tracepoints to every syscall and to the TCP stack on this host, aggregates \
        syscall latency and errors, connects, resets, retransmits, RTT and bytes per process, and \
        serves them on /metrics (Prometheus text format) and its own \
        health on /healthz. Needs root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN on older kernels)."
)]
pub struct Config {
    /// Address on which to expose /metrics and /healthz.
    #[arg(
        long = "web.listen-address",
        env = "MONITOR_WEB_LISTEN_ADDRESS",
        value_name = "HOST:PORT",
        default_value = DEFAULT_LISTEN_ADDRESS
    )]
    pub listen_address: SocketAddr,

    /// Web configuration file enabling TLS and/or basic authentication, in the format the
    /// Prometheus exporters share (tls_server_config, basic_auth_users with bcrypt hashes,
    /// http_server_config.headers). Checked in full before anything is loaded; relative paths in
    /// it are relative to the file. Authentication applies to every path except /healthz, which
    /// stays open for liveness probes (it tells only which probes are attached).
    #[arg(
        long = "web.config.file",
        env = "MONITOR_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Maximum number of requests in flight (authenticating, rendering or sending), /healthz
    /// aside; more get 503 at once. 0 means no limit.
    #[arg(
        long = "web.max-requests",
        env = "MONITOR_WEB_MAX_REQUESTS",
        value_name = "N",
        default_value_t = 40
    )]
    pub web_max_requests: usize,

    /// Time a client has for the TLS handshake, then for each request's headers (an idle
    /// keep-alive connection included); slower clients are disconnected.
    #[arg(long = "web.read-header-timeout", value_name = "DURATION", default_value = "10s",
          value_parser = parse_nonzero_duration)]
    pub web_read_header_timeout: Duration,

    /// Extra labels on workload series, comma-separated. `pid` splits every series per process
    /// instead of aggregating per `comm`: only for hosts with few, long-lived processes.
    #[arg(
        long = "labels",
        env = "MONITOR_LABELS",
        value_enum,
        value_delimiter = ','
    )]
    pub labels: Vec<ExtraLabel>,

    /// How long the series of exited processes stay exported after their last change
    /// (e.g. 30s, 5m, 1h).
    #[arg(long = "series.ttl", env = "MONITOR_SERIES_TTL", value_name = "DURATION",
          default_value = "5m", value_parser = parse_duration)]
    pub series_ttl: Duration,

    /// How often the kernel maps are swept: finished processes' entries are folded into their
    /// series and freed, so the maps do not fill between scrapes.
    #[arg(long = "kernel.sweep-interval", value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Capacity of the kernel's per-(process, syscall) latency map.
    #[arg(long = "kernel.syscall-stats-entries", value_name = "N",
          default_value_t = capacity::SYSCALL_STATS, value_parser = clap::value_parser!(u32).range(1..))]
    pub syscall_stats_entries: u32,

    /// Capacity of the kernel's per-(process, syscall, errno) error map.
    #[arg(long = "kernel.syscall-errors-entries", value_name = "N",
          default_value_t = capacity::SYSCALL_ERRORS, value_parser = clap::value_parser!(u32).range(1..))]
    pub syscall_errors_entries: u32,

    /// Bytes of the process-event ring buffer: a power of two, at least one page (4096).
    #[arg(long = "kernel.process-events-bytes", value_name = "BYTES",
          default_value_t = capacity::PROCESS_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub process_events_bytes: u32,

    /// Capacity of the kernel's table of tracked TCP sockets (connect/accept to close).
    /// Sockets beyond it go untracked and are counted in
    /// monitor_kernel_map_insert_failures_total{map="TCP_CONNS"}.
    #[arg(long = "kernel.tcp-conns-entries", value_name = "N",
          default_value_t = capacity::TCP_CONNS, value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_conns_entries: u32,

    /// Capacity of the kernel's per-process socket byte counters.
    #[arg(long = "kernel.net-bytes-entries", value_name = "N",
          default_value_t = capacity::NET_BYTES, value_parser = clap::value_parser!(u32).range(1..))]
    pub net_bytes_entries: u32,

    /// Bytes of the TCP-event ring buffer: a power of two, at least one page (4096).
    #[arg(long = "kernel.tcp-events-bytes", value_name = "BYTES",
          default_value_t = capacity::TCP_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub tcp_events_bytes: u32,

    /// Bytes of the ring buffer of captured socket reads/writes (HTTP): a power of two, at
    /// least one page (4096). Each capture takes 576 bytes.
    #[arg(long = "kernel.payload-events-bytes", value_name = "BYTES",
          default_value_t = capacity::PAYLOAD_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub payload_events_bytes: u32,

    /// Distinct http_route values per process name on http_server_request_duration_seconds;
    /// further routes are counted under http_route="_overflow". A process name's routes are
    /// forgotten when its series expire (--series.ttl).
    #[arg(
        long = "http.routes-per-comm",
        env = "MONITOR_HTTP_ROUTES_PER_COMM",
        value_name = "N",
        default_value_t = 100
    )]
    pub http_routes_per_comm: usize,

    /// Distinct `peer` label values per process name on the TCP families; further peers are
    /// counted under peer="other" (and in monitor_tcp_peer_overflow_total). A peer's place
    /// is freed when its series expire (--series.ttl).
    #[arg(
        long = "tcp.peers-per-comm",
        env = "MONITOR_TCP_PEERS_PER_COMM",
        value_name = "N",
        default_value_t = 64
    )]
    pub tcp_peers_per_comm: usize,

    /// Probes not to attach, comma-separated. Their metrics stay empty and /healthz reports
    /// the agent as degraded.
    #[arg(long = "probes.disable", value_name = "PROBE", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(
              crate::probes::PROBES.iter().map(|probe| probe.program)))]
    pub disabled_probes: Vec<String>,

    /// For tests only: read no process events for this long after start-up, so that a test
    /// can overfill the ring buffer and check the loss accounting.
    #[arg(long = "testing.pause-event-reader", hide = true, value_name = "DURATION",
          value_parser = parse_duration)]
    pub pause_event_reader: Option<Duration>,

    /// Log level: error, warn, info, debug or trace. RUST_LOG refines it per module.
    #[arg(
        long = "log.level",
        env = "MONITOR_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub log_level: LevelFilter,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraLabel {
    /// The process ID (TGID).
    Pid,
}

impl Config {
    pub fn with_pid_label(&self) -> bool {
        self.labels.contains(&ExtraLabel::Pid)
    }
}

/// `250ms`, `30s`, `5m`, `2h`: a whole number and a unit, nothing else.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: expected e.g. 30s, 5m, 1h"))?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{text}` has no unit: use ms, s, m or h")),
    };
    Ok(Duration::from_secs(number * seconds_per_unit))
}

/// A duration that must not be zero (a zero timeout would cut every client off).
fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("`{text}` must be more than zero")),
        duration => Ok(duration),
    }
}

/// The kernel requires a BPF ring buffer's size to be a power-of-two multiple of the page.
fn parse_ring_bytes(text: &str) -> Result<u32, String> {
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of bytes"))?;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least 4096"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "5", "m", "5 m", "-5s", "5d", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn defaults_parse() {
        let config = Config::try_parse_from(["monitor-agent"]).unwrap();
        assert_eq!(config.listen_address.port(), 9655);
        assert!(!config.with_pid_label());
        assert_eq!(config.series_ttl, Duration::from_secs(300));
    }

    #[test]
    fn ring_buffer_sizes() {
        assert_eq!(parse_ring_bytes("4096"), Ok(4096));
        assert_eq!(parse_ring_bytes("262144"), Ok(262_144));
        for bad in ["0", "2048", "5000", "x"] {
            assert!(parse_ring_bytes(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn probes_to_disable_are_known_names() {
        let config =
            Config::try_parse_from(["monitor-agent", "--probes.disable", "mon_sys_exit"]).unwrap();
        assert_eq!(config.disabled_probes, ["mon_sys_exit"]);
        assert!(Config::try_parse_from(["monitor-agent", "--probes.disable", "nope"]).is_err());
    }

    #[test]
    fn pid_label_is_opt_in() {
        let config = Config::try_parse_from(["monitor-agent", "--labels", "pid"]).unwrap();
        assert!(config.with_pid_label());
        assert!(Config::try_parse_from(["monitor-agent", "--labels", "uid"]).is_err());
    }
}
