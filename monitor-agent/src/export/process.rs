//! The agent's own process, as every Prometheus client library exports it (`process_*`):
//! CPU time, memory, descriptors and start time, read from `/proc/self` at each scrape, so a
//! dashboard or alert written for any exporter works on this one too. Parsing is pure; a
//! figure `/proc` does not give is left out rather than exported as 0.
use crate::series::{families::family, publish::Published};

/// `/proc/self/stat` fields after the command (which may hold spaces and parentheses).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Since boot, in clock ticks.
    pub start_ticks: u64,
    pub virtual_bytes: u64,
    pub resident_pages: u64,
}

/// Parses `/proc/<pid>/stat`: fields 14, 15 (utime, stime), 22 (starttime), 23 (vsize),
/// 24 (rss), counted from 1 at the pid.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let field = |number| crate::proc_stat::field(text, number);
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// What was read of the process; `None` where `/proc` did not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl Figures {
    /// This process, now.
    pub fn read() -> Figures {
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_stat(&text))
            .filter(|_| ticks > 0 && page > 0);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_boot_time(&text));
        let (ticks, page) = (ticks as f64, page as f64);
        Figures {
            cpu_seconds: stat.map(|stat| stat.cpu_ticks as f64 / ticks),
            resident_bytes: stat.map(|stat| stat.resident_pages as f64 * page),
            virtual_bytes: stat.map(|stat| stat.virtual_bytes as f64),
            start_time_seconds: stat
                .zip(boot)
                .map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / ticks),
            // The listing's own descriptor is one of them, as the client libraries count.
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as f64),
            max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft as f64),
        }
    }
}

/// One family per figure known.
pub fn published(figures: &Figures) -> Vec<Published> {
    [
        (family::PROCESS_CPU_SECONDS, figures.cpu_seconds),
        (family::PROCESS_RESIDENT_MEMORY, figures.resident_bytes),
        (family::PROCESS_VIRTUAL_MEMORY, figures.virtual_bytes),
        (family::PROCESS_START_TIME, figures.start_time_seconds),
        (family::PROCESS_OPEN_FDS, figures.open_fds),
        (family::PROCESS_MAX_FDS, figures.max_fds),
    ]
    .into_iter()
    .filter_map(|(family, value)| Some(Published::single(family, value?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_with_spaces_and_parentheses() {
        let text = "4242 (monitor (a) b) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    250 50 0 0 20 0 12 0 987654 123456789 2048 18446744073709551615 1 1 0 0 0 \
                    0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                cpu_ticks: 300,
                start_ticks: 987654,
                virtual_bytes: 123456789,
                resident_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3 4\nintr 5\nbtime 1764900000\nprocesses 77\n";
        assert_eq!(parse_boot_time(text), Some(1_764_900_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process_is_described() {
        let figures = Figures::read();
        assert!(figures.open_fds.unwrap() >= 3.0, "{figures:?}");
        assert!(figures.resident_bytes.unwrap() > 1e6, "{figures:?}");
        let names: Vec<&str> = published(&figures).iter().map(|p| p.family.name).collect();
        assert_eq!(
            names,
            [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_start_time_seconds",
                "process_open_fds",
                "process_max_fds",
            ]
        );
    }
}
