//! Reads of other processes' `/proc` entries (and of the Docker socket) that the kernel
//! refused. With only CAP_BPF + CAP_PERFMON the probes load, but `/proc/<pid>/fd` of another
//! user's process cannot be listed (CAP_DAC_READ_SEARCH) and its `fd/*`, `exe` and `ns/net`
//! links cannot be read (ptrace access rules: CAP_SYS_PTRACE): older listeners go unseeded,
//! `exe=` selectors never match, descriptor use is not reported. Each refusal is counted
//! (`monitor_proc_access_denied_total{what}`), the first of each kind is a warning naming
//! what it costs, and `/healthz` says degraded, so a missing capability is never silent.
//! A refusal the agent's capabilities cannot explain (a security module, a sandbox's init
//! that even full root may not read) is counted and logged too, but is no fault of the
//! deployment: `/healthz` stays ok.
use std::{
    path::Path,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::privileges;

/// What was being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// `/proc/<pid>/fd` listed or one of its links read.
    Fd,
    /// `/proc/<pid>/ns/net` read or opened.
    NsNet,
    /// `/proc/<pid>/exe` read.
    Exe,
    /// The Docker API socket connected to.
    DockerSocket,
}

pub const ALL: [What; 4] = [What::Fd, What::NsNet, What::Exe, What::DockerSocket];

impl What {
    /// The `what` label.
    pub fn label(self) -> &'static str {
        match self {
            What::Fd => "fd",
            What::NsNet => "ns_net",
            What::Exe => "exe",
            What::DockerSocket => "docker_socket",
        }
    }

    /// What a refusal costs.
    fn consequence(self) -> &'static str {
        match self {
            What::Fd => {
                "reading /proc/<pid>/fd of another user's process: listeners older than the \
                 agent are not attributed and descriptor use is not reported for it"
            }
            What::NsNet => {
                "reading /proc/<pid>/ns/net of another user's process: its listeners are not \
                 found at start-up"
            }
            What::Exe => {
                "reading /proc/<pid>/exe of another user's process: exe= selectors and service \
                 overrides never match it"
            }
            What::DockerSocket => {
                "connecting to the Docker socket: containers are shown by their ids"
            }
        }
    }

    /// The capabilities the read needs, by number and name.
    fn needs(self) -> &'static [(u32, &'static str)] {
        const PTRACE: (u32, &str) = (privileges::CAP_SYS_PTRACE, "CAP_SYS_PTRACE");
        const DAC: (u32, &str) = (privileges::CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH");
        match self {
            What::Fd => &[DAC, PTRACE],
            What::NsNet | What::Exe => &[PTRACE],
            What::DockerSocket => &[],
        }
    }

    /// What the operator can do about it; `None` when the agent already holds what the read
    /// needs (a security module, or a sandbox's own init, refuses even a privileged reader).
    fn remedy(self) -> Option<String> {
        self.remedy_given(*EFFECTIVE.get_or_init(privileges::effective))
    }

    /// `remedy` for an agent holding `effective` capabilities.
    fn remedy_given(self, effective: Option<u64>) -> Option<String> {
        if self == What::DockerSocket {
            return Some(
                "give the agent the socket's group (systemd: SupplementaryGroups=docker)".into(),
            );
        }
        let missing: Vec<&str> = self
            .needs()
            .iter()
            .filter(|(cap, _)| effective.is_none_or(|caps| caps & (1 << cap) == 0))
            .map(|(_, name)| *name)
            .collect();
        (!missing.is_empty()).then(|| format!("grant {}", missing.join(" + ")))
    }

    fn index(self) -> usize {
        self as usize
    }
}

static DENIED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static WARNED: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];
static EFFECTIVE: OnceLock<Option<u64>> = OnceLock::new();

/// Whether `err` is the kernel refusing access (as opposed to a process gone meanwhile).
pub fn is_denial(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::PermissionDenied
}

/// Counts `err` if it is a refusal (the first of each kind is a warning naming `path`), and
/// hands it back for the caller's own handling.
pub fn check<T>(what: What, path: &Path, result: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(err) = &result {
        if is_denial(err) {
            denied(what, path, err);
        }
    }
    result
}

/// Counts one refusal; warns at the first of its kind.
pub fn denied(what: What, path: &Path, err: &dyn std::fmt::Display) {
    DENIED[what.index()].fetch_add(1, Ordering::Relaxed);
    if WARNED[what.index()].swap(true, Ordering::Relaxed) {
        return;
    }
    let counted = format!(
        "first refusal: {}: {err}; counted in monitor_proc_access_denied_total{{what=\"{}\"}}",
        path.display(),
        what.label()
    );
    match what.remedy() {
        Some(remedy) => log::warn!(
            "permission denied {}; {remedy} ({counted}, and /healthz says degraded)",
            what.consequence()
        ),
        None => log::warn!(
            "permission denied {}, although the agent holds the capabilities it needs: a \
             security module or the process's user namespace refuses it ({counted})",
            what.consequence()
        ),
    }
}

/// Refusals so far, per kind, in `ALL`'s order.
pub fn counts() -> [(What, u64); 4] {
    ALL.map(|what| (what, DENIED[what.index()].load(Ordering::Relaxed)))
}

/// One line per kind refused so far that the operator can remedy, for `/healthz` (which
/// then says degraded).
pub fn health_lines() -> Vec<String> {
    counts()
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .filter_map(|(what, count)| {
            Some(format!(
                "permission denied {count} times {}; {}",
                what.consequence(),
                what.remedy()?
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_name_the_missing_capabilities_only() {
        let dac = 1 << privileges::CAP_DAC_READ_SEARCH;
        let both = dac | 1 << privileges::CAP_SYS_PTRACE;
        assert_eq!(
            What::Fd.remedy_given(Some(0)).as_deref(),
            Some("grant CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE")
        );
        assert_eq!(
            What::Fd.remedy_given(Some(dac)).as_deref(),
            Some("grant CAP_SYS_PTRACE")
        );
        assert_eq!(
            What::Exe.remedy_given(None).as_deref(),
            Some("grant CAP_SYS_PTRACE")
        );
        for what in [What::Fd, What::NsNet, What::Exe] {
            assert_eq!(what.remedy_given(Some(both)), None, "{what:?}");
        }
        assert!(What::DockerSocket.remedy_given(Some(u64::MAX)).is_some());
    }

    #[test]
    fn only_refusals_are_counted_and_each_kind_apart() {
        let before = counts();
        let gone = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert!(check::<()>(What::Exe, Path::new("/proc/1/exe"), Err(gone)).is_err());
        let refused = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(check::<()>(What::Exe, Path::new("/proc/1/exe"), Err(refused)).is_err());
        let refused = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(check::<()>(What::Exe, Path::new("/proc/1/exe"), Err(refused)).is_err());
        assert_eq!(check(What::Fd, Path::new("/proc/1/fd"), Ok(7)).unwrap(), 7);
        let after = counts();
        assert_eq!(after[2].1 - before[2].1, 2, "EACCES and EPERM, not ENOENT");
        assert_eq!(after[0].1, before[0].1);
        let docker = std::io::Error::from_raw_os_error(libc::EACCES);
        let _ = check::<()>(
            What::DockerSocket,
            Path::new("/run/docker.sock"),
            Err(docker),
        );
        assert!(
            health_lines()
                .iter()
                .any(|line| line.contains("Docker socket") && line.contains("SupplementaryGroups"))
        );
    }
}
