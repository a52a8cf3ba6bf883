//! The agent's own CPU time while a workload runs: user + system time of its process (all
//! threads) from `/proc/<pid>/stat`, read before and after, against the wall time between.
use std::{fs, time::Duration};

use anyhow::{Context as _, Result, bail};

/// Requests/s the agent's CPU share is scaled to.
pub const PER_REQUESTS_PER_SEC: f64 = 10_000.0;

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks. They are fields 14 and 15;
/// the command name (field 2) may hold spaces and parentheses, so fields are counted from
/// its last `)`.
pub fn stat_ticks(stat: &str) -> Result<u64> {
    let (_, rest) = stat
        .rsplit_once(')')
        .with_context(|| format!("no `(comm)` in {stat:?}"))?;
    // After the `)`: field 3 (state) is index 0, so utime (14) is index 11 and stime 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize, name: &str| -> Result<u64> {
        fields
            .get(index)
            .with_context(|| format!("no {name} field in {stat:?}"))?
            .parse::<u64>()
            .with_context(|| format!("bad {name} field in {stat:?}"))
    };
    Ok(field(11, "utime")? + field(12, "stime")?)
}

fn ticks_per_second() -> Result<f64> {
    // SAFETY: plain libc call without pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        bail!("sysconf(_SC_CLK_TCK) returned {ticks}");
    }
    Ok(ticks as f64)
}

/// CPU time process `pid` has used so far.
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(Duration::from_secs_f64(
        stat_ticks(&stat)? as f64 / ticks_per_second()?,
    ))
}

/// CPU time the agent used during a workload, and the workload's wall time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AgentCpu {
    pub cpu: Duration,
    pub wall: Duration,
}

impl AgentCpu {
    /// The share of one CPU the agent kept busy (1.0 = a whole core).
    pub fn core_share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }

    /// The share of a core per 10,000 requests/s of the workload: the core share divided by
    /// (requests/s / 10,000).
    pub fn per_10k(&self, requests_per_sec: f64) -> f64 {
        self.core_share() / (requests_per_sec / PER_REQUESTS_PER_SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_of_a_stat_line() {
        // A real line's shape: utime 1200, stime 345.
        let stat = "4242 (monitor-agent) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1200 345 0 0 \
                    20 0 9 0 123456 100000000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 \
                    0 0 17 0 0 0 0 0 0";
        assert_eq!(stat_ticks(stat).unwrap(), 1545);
        // A command name with spaces and a `)` in it does not shift the fields.
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(stat_ticks(odd).unwrap(), 15);
        assert!(stat_ticks("7 (short) S 1 2 3").is_err());
        assert!(stat_ticks("no comm here").is_err());
        let bad = stat.replace(" 1200 ", " x ");
        assert!(stat_ticks(&bad).is_err());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spent = process_cpu(std::process::id()).unwrap();
        assert!(spent < Duration::from_secs(24 * 3600));
    }

    #[test]
    fn share_of_a_core_per_10k_requests_per_second() {
        let cpu = AgentCpu {
            cpu: Duration::from_millis(500),
            wall: Duration::from_secs(10),
        };
        assert!((cpu.core_share() - 0.05).abs() < 1e-12);
        // 5% of a core at 50,000 requests/s is 1% per 10,000 requests/s.
        assert!((cpu.per_10k(50_000.0) - 0.01).abs() < 1e-12);
        assert!((cpu.per_10k(10_000.0) - 0.05).abs() < 1e-12);
    }
}
