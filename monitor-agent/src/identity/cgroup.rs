//! Which container and pod a process runs in, from its cgroup path.
//!
//! `/proc/<pid>/cgroup` names the cgroup of a process in every hierarchy: one
//! `id:controllers:path` line per cgroup v1 hierarchy, one `0::path` line for cgroup v2, and
//! both kinds on hybrid hosts (v1 controllers, v2 mounted at `/sys/fs/cgroup/unified`).
//! Container runtimes and the kubelet name the cgroups they create after the container id and
//! the pod UID, so the path alone tells the identity, without asking any runtime:
//!
//! - Docker, cgroupfs driver: `/docker/<id>`
//! - Docker, systemd driver: `/system.slice/docker-<id>.scope`
//! - Podman: `/machine.slice/libpod-<id>.scope`, `/libpod_parent/libpod-<id>`
//! - kubelet, cgroupfs driver: `/kubepods/pod<uid>/<id>` (Guaranteed), or
//!   `/kubepods/burstable/…`, `/kubepods/besteffort/…`; `crio-<id>` for CRI-O
//! - kubelet, systemd driver: `/kubepods.slice/kubepods-burstable.slice/`
//!   `kubepods-burstable-pod<uid with _ for ->.slice/cri-containerd-<id>.scope` (`crio-<id>`,
//!   `docker-<id>` for CRI-O and cri-dockerd); `kubepods-pod<uid>.slice` for Guaranteed
//! - containerd's systemd driver on v1:
//!   `/system.slice/containerd.service/kubepods-…-pod<uid>.slice:cri-containerd:<id>`
//!
//! Decisions:
//! - The path is read as a list of names (split at `/`, and at `:` for the last layout); the
//!   innermost container id wins (Docker in Docker, a kind/minikube node in a Docker container:
//!   the process belongs to the inner container), and a pod found below a container id
//!   discards that id (it was the node's container, not the pod's).
//! - Only a full 64-hex name counts as a container id; shorter hex names (some sandboxes put
//!   processes in `/process_api/<32 hex>`) are not containers.
//! - The runtime is set only when the path says it: a `docker-`, `cri-containerd-`, `crio-`,
//!   `libpod-` or `nerdctl-` prefix, or a bare id right after a `docker`, `cri-containerd`,
//!   `crio` or `libpod` name (`/docker/<id>`, `…slice:cri-containerd:<id>`). A bare id below a
//!   kubelet pod cgroup gets no runtime: containerd and Docker (cri-dockerd) both make that path.
//!   Nor does one below a custom parent (`docker run --cgroup-parent actions_job`).
//! - `conmon` cgroups (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) hold the runtime's
//!   monitor, not the container: no container id, but a pod UID when they are in the pod's slice
//!   (their cost is the pod's).
//! - The pod sandbox ("pause") container has a cgroup like any other container of the pod; its
//!   id is reported as is. The pod's container list does not know it, so the pause process gets
//!   the pod's labels and an empty container name, which is what it is.
//! - Pod UIDs are dashed (`_` of systemd slice names back to `-`) and lowercase. Static pods
//!   have the kubelet's 32-hex hash of their manifest as UID, kept as is (not a UUID; the API
//!   server's mirror pod carries it in its `kubernetes.io/config.mirror` annotation).
//! - On v1 and hybrid hosts the line that tells the most (container and pod, then container,
//!   then pod) is used; on a tie the `memory`/`pids`/`cpu` hierarchies come first, then
//!   `name=systemd`, then v2 (which, on hybrid hosts, not every runtime manages).
//! - Paths are relative to the reader's cgroup namespace. An agent in a private cgroup namespace
//!   sees other containers as `/../../<their path>`; `..` is skipped so the names still count,
//!   but the part of the path above the agent's own cgroup is lost, hence the agent should run
//!   in the host's cgroup namespace.
use std::cmp::Reverse;

/// A container runtime, as far as a cgroup path tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

/// Kubernetes QoS class of a pod, from the kubelet's cgroup hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The name Kubernetes uses (`status.qosClass`).
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// What a process's cgroup says about it; all `None` for a process outside containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Full 64-hex container id, lowercase.
    pub container_id: Option<String>,
    /// Set only together with `container_id`, and only when the path names the runtime.
    pub runtime: Option<Runtime>,
    /// Pod UID, dashed 8-4-4-4-12 (or the 32-hex hash of a static pod).
    pub pod_uid: Option<String>,
    /// Set together with `pod_uid`.
    pub qos: Option<QosClass>,
}

/// Prefixes runtimes put before the container id in a cgroup name (`.scope` stripped).
const PREFIXES: [(&str, Runtime); 5] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
    ("nerdctl-", Runtime::Containerd),
];

/// Parses the content of `/proc/<pid>/cgroup` (v1, v2 or hybrid).
pub fn parse_proc_cgroup(text: &str) -> CgroupInfo {
    text.lines()
        .filter_map(|line| {
            // `hierarchy-id:controllers:path`; the path may itself contain ':'.
            let mut fields = line.splitn(3, ':');
            let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            Some((parse_path(path), hierarchy_rank(controllers)))
        })
        .max_by_key(|(info, rank)| (score(info), Reverse(*rank)))
        .map(|(info, _)| info)
        .unwrap_or_default()
}

/// Reads and parses `/proc/<pid>/cgroup`; `None` when the process is gone (or unreadable).
pub fn read(pid: u32) -> Option<CgroupInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Some(parse_proc_cgroup(&text))
}

/// How much a line tells: container and pod, container, pod, nothing.
fn score(info: &CgroupInfo) -> u8 {
    2 * info.container_id.is_some() as u8 + info.pod_uid.is_some() as u8
}

/// Lower is preferred among lines that tell as much (see the module comment).
fn hierarchy_rank(controllers: &str) -> u8 {
    let mut names = controllers.split(',');
    if names.any(|name| matches!(name, "memory" | "pids" | "cpu")) {
        0
    } else if controllers == "name=systemd" {
        1
    } else if controllers.is_empty() {
        2
    } else {
        3
    }
}

/// One cgroup path → identity.
fn parse_path(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    let mut previous: Option<&str> = None;
    let names = path
        .split('/')
        .filter(|segment| !matches!(*segment, "" | "." | ".."))
        .flat_map(|segment| segment.split(':'));
    for name in names {
        if let Some((uid, qos)) = pod(name, previous) {
            // Anything found above the pod (a kind node's container) is not the pod's.
            info = CgroupInfo {
                pod_uid: Some(uid),
                qos: Some(qos),
                ..CgroupInfo::default()
            };
        } else if let Some((id, runtime)) = container(name, previous) {
            info.container_id = Some(id);
            info.runtime = runtime;
        }
        previous = Some(name);
    }
    info
}

/// A container's cgroup name → its id and, when the name tells, the runtime.
fn container(name: &str, previous: Option<&str>) -> Option<(String, Option<Runtime>)> {
    let name = name.strip_suffix(".scope").unwrap_or(name);
    for (prefix, runtime) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            // `crio-conmon-<id>`, `libpod-conmon-<id>` fail here: not the container.
            return is_container_id(rest).then(|| (rest.to_ascii_lowercase(), Some(runtime)));
        }
    }
    if !is_container_id(name) {
        return None;
    }
    let runtime = match previous {
        // Docker's cgroupfs driver, and the `slice:prefix:id` names of the systemd drivers.
        Some("docker") => Some(Runtime::Docker),
        Some("cri-containerd") => Some(Runtime::Containerd),
        Some("crio") => Some(Runtime::CriO),
        Some("libpod") => Some(Runtime::Podman),
        _ => None,
    };
    Some((name.to_ascii_lowercase(), runtime))
}

/// A kubelet pod cgroup name → the pod UID and QoS class.
///
/// cgroupfs driver: `pod<uid>` below `kubepods` (Guaranteed) or `kubepods/<qos>`.
/// systemd driver: `kubepods-pod<uid>.slice` or `kubepods-<qos>-pod<uid>.slice`.
fn pod(name: &str, previous: Option<&str>) -> Option<(String, QosClass)> {
    if let Some(slice) = name
        .strip_suffix(".slice")
        .and_then(|slice| slice.strip_prefix("kubepods-"))
    {
        let (qos, uid) = if let Some(uid) = slice.strip_prefix("burstable-pod") {
            (QosClass::Burstable, uid)
        } else if let Some(uid) = slice.strip_prefix("besteffort-pod") {
            (QosClass::BestEffort, uid)
        } else {
            (QosClass::Guaranteed, slice.strip_prefix("pod")?)
        };
        return Some((pod_uid(uid)?, qos));
    }
    let uid = name.strip_prefix("pod")?;
    let qos = match previous? {
        "kubepods" => QosClass::Guaranteed,
        "burstable" => QosClass::Burstable,
        "besteffort" => QosClass::BestEffort,
        _ => return None,
    };
    Some((pod_uid(uid)?, qos))
}

/// `c2070338_7b61_…` or `c2070338-7b61-…` → dashed lowercase; also the 32-hex static pod UID.
fn pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-").to_ascii_lowercase();
    let groups: Vec<&str> = uid.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let well_formed = (lengths == [8, 4, 4, 4, 12] || lengths == [32])
        && groups.iter().all(|group| is_hex(group));
    well_formed.then_some(uid)
}

fn is_container_id(name: &str) -> bool {
    name.len() == 64 && is_hex(name)
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;
