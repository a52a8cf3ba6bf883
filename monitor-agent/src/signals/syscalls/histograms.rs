//! Which syscalls get a latency histogram (`--syscalls.histograms`). A histogram label set is
//! 30 Prometheus series and a counter one, so by default only the calls a program waits in
//! (file and network I/O, sync, sleeps and waits) get one; every syscall is counted in
//! `monitor_syscalls_total` and `monitor_syscall_errors_total` whatever this says.
use std::{collections::HashSet, str::FromStr};

/// The default set, `blocking`: calls whose time is time the caller waited on a disk, the
/// network, another process or a clock. Calls that return at CPU speed (mmap, brk, getpid,
/// fstat, close, ...) are left out: their latency says little and costs as much.
pub const BLOCKING: &[&str] = &[
    // file and socket reads and writes
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    // opening files (path walk, permission checks, network file systems)
    "open",
    "openat",
    "openat2",
    "creat",
    // network
    "connect",
    "accept",
    "accept4",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    // sync
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "msync",
    "flock",
    // asynchronous I/O completion
    "io_getevents",
    "io_pgetevents",
    "io_uring_enter",
    // sleeps and waits
    "nanosleep",
    "clock_nanosleep",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "futex",
    "futex_waitv",
    "wait4",
    "waitid",
    "pause",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "msgrcv",
    "msgsnd",
    "semop",
    "semtimedop",
    "mq_timedreceive",
    "mq_timedsend",
];

/// The syscalls with a latency histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistogramSyscalls {
    All,
    Only(HashSet<u32>),
}

impl Default for HistogramSyscalls {
    fn default() -> Self {
        "blocking"
            .parse()
            .expect("the blocking list names known syscalls")
    }
}

impl HistogramSyscalls {
    pub fn contains(&self, nr: u32) -> bool {
        match self {
            HistogramSyscalls::All => true,
            HistogramSyscalls::Only(numbers) => numbers.contains(&nr),
        }
    }
}

fn number(name: &str) -> Option<u32> {
    let sysno = syscalls::Sysno::from_str(name).ok()?;
    u32::try_from(sysno.id()).ok()
}

impl FromStr for HistogramSyscalls {
    type Err = String;

    /// `all`, `none`, or a comma-separated list of syscall names and `blocking` (the default
    /// set), e.g. `blocking,mmap`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "all" => return Ok(HistogramSyscalls::All),
            "none" | "" => return Ok(HistogramSyscalls::Only(HashSet::new())),
            _ => {}
        }
        let mut numbers = HashSet::new();
        for item in text.split(',').map(str::trim) {
            if item == "blocking" {
                // Syscalls this architecture lacks (open, select on arm64) are skipped.
                numbers.extend(BLOCKING.iter().filter_map(|name| number(name)));
                continue;
            }
            let nr = number(item).ok_or_else(|| {
                format!(
                    "`{item}` is not a syscall of this architecture: use all, none, blocking \
                     or syscall names such as read,mmap"
                )
            })?;
            numbers.insert(nr);
        }
        Ok(HistogramSyscalls::Only(numbers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(name: &str) -> u32 {
        number(name).unwrap()
    }

    #[test]
    fn blocking_by_default_and_names_add_to_it() {
        let default = HistogramSyscalls::default();
        assert!(default.contains(nr("read")));
        assert!(default.contains(nr("clock_nanosleep")));
        assert!(!default.contains(nr("mmap")));
        assert!(!default.contains(nr("close")));
        let more: HistogramSyscalls = "blocking, mmap".parse().unwrap();
        assert!(more.contains(nr("mmap")) && more.contains(nr("futex")));
        let only: HistogramSyscalls = "mmap".parse().unwrap();
        assert!(only.contains(nr("mmap")) && !only.contains(nr("read")));
    }

    #[test]
    fn all_none_and_a_bad_name() {
        assert!(
            "all"
                .parse::<HistogramSyscalls>()
                .unwrap()
                .contains(nr("getpid"))
        );
        assert!(
            !"none"
                .parse::<HistogramSyscalls>()
                .unwrap()
                .contains(nr("read"))
        );
        let err = "read,reed".parse::<HistogramSyscalls>().unwrap_err();
        assert!(err.starts_with("`reed` is not a syscall"), "{err}");
    }

    #[test]
    fn every_blocking_name_is_a_syscall_here() {
        let missing: Vec<_> = BLOCKING
            .iter()
            .filter(|name| number(name).is_none())
            .collect();
        assert!(missing.is_empty(), "{missing:?}");
    }
}
