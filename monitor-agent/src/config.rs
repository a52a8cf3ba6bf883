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
        Attaches raw tracepoints to every syscall on this host, aggregates latency and errors per \
        process in the kernel, and serves them on /metrics (Prometheus text format) and its own \
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

    /// Extra labels on workload series, comma-separated. `pid` splits every series per process
    /// instead of aggregating per `comm`: only for hosts with few, long-lived processes.
    #[arg(long = "labels", env = "MONITOR_LABELS", value_enum, value_delimiter = ',')]
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

    /// Log level: error, warn, info, debug or trace. RUST_LOG refines it per module.
    #[arg(long = "log.level", env = "MONITOR_LOG_LEVEL", value_name = "LEVEL", default_value = "info")]
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
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
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
    fn pid_label_is_opt_in() {
        let config = Config::try_parse_from(["monitor-agent", "--labels", "pid"]).unwrap();
        assert!(config.with_pid_label());
        assert!(Config::try_parse_from(["monitor-agent", "--labels", "uid"]).is_err());
    }
}
