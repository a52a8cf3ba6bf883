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
mod tests {
    use super::*;

    /// A fixture under `monitor-agent/tests/fixtures/cgroup/` (see its README for provenance).
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/cgroup/", $name))
        };
    }

    fn container(id: &str, runtime: Option<Runtime>) -> CgroupInfo {
        CgroupInfo {
            container_id: Some(id.to_owned()),
            runtime,
            ..CgroupInfo::default()
        }
    }

    fn in_pod(id: Option<&str>, runtime: Option<Runtime>, uid: &str, qos: QosClass) -> CgroupInfo {
        CgroupInfo {
            container_id: id.map(str::to_owned),
            runtime,
            pod_uid: Some(uid.to_owned()),
            qos: Some(qos),
        }
    }

    const ID: &str = "df2e7744c2580fbce9d3fa5b21997119d4d743df27bba2b4bee356ccf5ad9d3c";
    const OUTER: &str = "214d0e05f9315aeec0a18f3ee6cd72c9bfe3dde3efe77f64e8f79f247117e51d";
    const UID: &str = "92d99289-d70a-40c9-9c6b-7e6454ccaf80";
    const UID_SYSTEMD: &str = "92d99289_d70a_40c9_9c6b_7e6454ccaf80";

    fn v2(path: &str) -> CgroupInfo {
        parse_proc_cgroup(&format!("0::{path}\n"))
    }

    // Docker.

    #[test]
    fn docker_cgroupfs_hybrid_real() {
        assert_eq!(
            parse_proc_cgroup(fixture!("docker-cgroupfs-hybrid.real.txt")),
            container(
                "76ae117b06abf87a2a76846447a0b113dcd12ae5cd2a982217626a5a79842fcc",
                Some(Runtime::Docker)
            )
        );
    }

    #[test]
    fn docker_cgroupfs_v2() {
        assert_eq!(
            v2(&format!("/docker/{ID}")),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn docker_systemd_v1() {
        assert_eq!(
            parse_proc_cgroup(fixture!("docker-systemd-v1.txt")),
            container(
                "16059a6d1c7728a6dea6f33d376eab3771ceec2a8accd4bf290ac11ca61f231f",
                Some(Runtime::Docker)
            )
        );
    }

    #[test]
    fn docker_systemd_v2() {
        assert_eq!(
            v2(&format!("/system.slice/docker-{ID}.scope")),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn docker_daemon_itself_is_not_a_container() {
        assert_eq!(v2("/system.slice/docker.service"), CgroupInfo::default());
        assert_eq!(
            v2("/system.slice/containerd.service"),
            CgroupInfo::default()
        );
        assert_eq!(v2("/docker"), CgroupInfo::default());
    }

    // Kubernetes, cgroupfs driver.

    #[test]
    fn containerd_cgroupfs_burstable_v1() {
        assert_eq!(
            parse_proc_cgroup(fixture!("containerd-cgroupfs-burstable-v1.txt")),
            in_pod(
                Some("af2b3dd6f463641588952d8d4d455c856cafd8fb38d819e48df40a6fc0226c51"),
                None,
                "837d221b-791d-445e-9bb4-80e56d946c39",
                QosClass::Burstable
            )
        );
    }

    #[test]
    fn containerd_cgroupfs_guaranteed_v2() {
        assert_eq!(
            v2(&format!("/kubepods/pod{UID}/{ID}")),
            in_pod(Some(ID), None, UID, QosClass::Guaranteed)
        );
    }

    #[test]
    fn containerd_cgroupfs_besteffort_v2() {
        assert_eq!(
            v2(&format!("/kubepods/besteffort/pod{UID}/{ID}")),
            in_pod(Some(ID), None, UID, QosClass::BestEffort)
        );
    }

    #[test]
    fn kubepods_besteffort_cgroupfs_hybrid_real() {
        // Docker with `--cgroup-parent` in the kubelet's layout: the path does not tell the
        // runtime.
        assert_eq!(
            parse_proc_cgroup(fixture!("kubepods-besteffort-cgroupfs-hybrid.real.txt")),
            in_pod(
                Some("03f1381d95a5333943c9b361ed4cf303166d422a3568f05edc6fad9b4a017986"),
                None,
                "0b7b5c5e-6c55-4f0a-9b1c-3d2e1f0a9b8c",
                QosClass::BestEffort
            )
        );
    }

    #[test]
    fn crio_cgroupfs_besteffort_v1() {
        assert_eq!(
            parse_proc_cgroup(fixture!("crio-cgroupfs-besteffort-v1.txt")),
            in_pod(
                Some("121ac8eb5c4d144b7977a765347267196cbc784dbb2d0d4fbab314802805cc6f"),
                Some(Runtime::CriO),
                "b96b8398-c17f-49fa-9451-08427981b203",
                QosClass::BestEffort
            )
        );
    }

    #[test]
    fn crio_cgroupfs_burstable_v2() {
        assert_eq!(
            v2(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            in_pod(Some(ID), Some(Runtime::CriO), UID, QosClass::Burstable)
        );
    }

    // Kubernetes, systemd driver.

    #[test]
    fn containerd_systemd_burstable_v2() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/\
             cri-containerd-{ID}.scope"
        );
        assert_eq!(
            v2(&path),
            in_pod(
                Some(ID),
                Some(Runtime::Containerd),
                UID,
                QosClass::Burstable
            )
        );
    }

    #[test]
    fn containerd_systemd_besteffort_v1() {
        assert_eq!(
            parse_proc_cgroup(fixture!("containerd-systemd-besteffort-v1.txt")),
            in_pod(
                Some("2d3cc209611cb290ee389a77eadbd9119ec1c76d7bef4dee5bdf5785920d76eb"),
                Some(Runtime::Containerd),
                "c2070338-7b61-4894-8b07-5f12f1fe74c9",
                QosClass::BestEffort
            )
        );
    }

    #[test]
    fn containerd_systemd_guaranteed_v2() {
        let path =
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope");
        assert_eq!(
            v2(&path),
            in_pod(
                Some(ID),
                Some(Runtime::Containerd),
                UID,
                QosClass::Guaranteed
            )
        );
    }

    #[test]
    fn containerd_systemd_v1_colon_form_below_containerd_service() {
        // containerd's systemd driver on v1 names the cgroup `slice:prefix:id`; some hosts show
        // it below containerd's own unit.
        let text = format!(
            "5:memory:/system.slice/containerd.service/kubepods-burstable-pod{UID_SYSTEMD}.slice:\
             cri-containerd:{ID}\n0::/\n"
        );
        assert_eq!(
            parse_proc_cgroup(&text),
            in_pod(
                Some(ID),
                Some(Runtime::Containerd),
                UID,
                QosClass::Burstable
            )
        );
    }

    #[test]
    fn crio_systemd_burstable_v2() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/\
             crio-{ID}.scope"
        );
        assert_eq!(
            v2(&path),
            in_pod(Some(ID), Some(Runtime::CriO), UID, QosClass::Burstable)
        );
    }

    #[test]
    fn cri_dockerd_systemd_besteffort_v2() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/\
             docker-{ID}.scope"
        );
        assert_eq!(
            v2(&path),
            in_pod(Some(ID), Some(Runtime::Docker), UID, QosClass::BestEffort)
        );
    }

    #[test]
    fn crio_conmon_in_pod_slice_has_pod_but_no_container() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/\
             crio-conmon-{ID}.scope"
        );
        assert_eq!(v2(&path), in_pod(None, None, UID, QosClass::Burstable));
    }

    #[test]
    fn pause_sandbox_container_reports_its_own_id() {
        // Indistinguishable from the pod's other containers by path; see the module comment.
        let path = format!("/kubepods/besteffort/pod{UID}/{OUTER}");
        assert_eq!(
            v2(&path),
            in_pod(Some(OUTER), None, UID, QosClass::BestEffort)
        );
    }

    #[test]
    fn static_pod_uid_hash_is_kept_undashed() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod187bff14cccb94f179e943eacce55bb3.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            v2(&path),
            in_pod(
                Some(ID),
                Some(Runtime::Containerd),
                "187bff14cccb94f179e943eacce55bb3",
                QosClass::Burstable
            )
        );
    }

    #[test]
    fn process_in_pod_cgroup_itself_has_pod_but_no_container() {
        assert_eq!(
            v2(&format!("/kubepods/burstable/pod{UID}")),
            in_pod(None, None, UID, QosClass::Burstable)
        );
        assert_eq!(
            v2(&format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice")),
            in_pod(None, None, UID, QosClass::Guaranteed)
        );
    }

    #[test]
    fn kubepods_qos_cgroups_without_pod_are_nothing() {
        for path in [
            "/kubepods",
            "/kubepods/burstable",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-besteffort.slice",
        ] {
            assert_eq!(v2(path), CgroupInfo::default(), "{path}");
        }
    }

    #[test]
    fn malformed_pod_uids_are_ignored() {
        for path in [
            format!("/kubepods/burstable/pod{}/{ID}", &UID[..35]),
            format!("/kubepods/burstable/podnot-a-uid/{ID}"),
            // `pod<uid>` outside a kubepods hierarchy is not the kubelet's.
            format!("/user.slice/pod{UID}/{ID}"),
        ] {
            assert_eq!(v2(&path), container(ID, None), "{path}");
        }
    }

    // Podman.

    #[test]
    fn podman_systemd_v2() {
        assert_eq!(
            v2(&format!("/machine.slice/libpod-{ID}.scope")),
            container(ID, Some(Runtime::Podman))
        );
    }

    #[test]
    fn podman_container_subgroup_v2() {
        // Podman on v2 may move the container's processes into a child cgroup.
        assert_eq!(
            v2(&format!("/machine.slice/libpod-{ID}.scope/container")),
            container(ID, Some(Runtime::Podman))
        );
    }

    #[test]
    fn podman_rootless_v2() {
        let path =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        assert_eq!(v2(&path), container(ID, Some(Runtime::Podman)));
    }

    #[test]
    fn podman_cgroupfs_v1() {
        let text = format!(
            "7:pids:/libpod_parent/libpod-{ID}\n1:name=systemd:/libpod_parent/libpod-{ID}\n"
        );
        assert_eq!(
            parse_proc_cgroup(&text),
            container(ID, Some(Runtime::Podman))
        );
    }

    #[test]
    fn podman_conmon_is_not_a_container() {
        assert_eq!(
            v2(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            CgroupInfo::default()
        );
    }

    // Nested layouts.

    #[test]
    fn docker_in_docker_v1_is_the_inner_container() {
        let text =
            format!("4:memory:/docker/{OUTER}/docker/{ID}\n0::/docker/{OUTER}/docker/{ID}\n");
        assert_eq!(
            parse_proc_cgroup(&text),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn kind_node_in_docker_is_the_pod_container() {
        // kind/minikube: the kubelet runs in a Docker container, its pods below it.
        let path = format!(
            "/docker/{OUTER}/kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
        );
        assert_eq!(
            v2(&path),
            in_pod(Some(ID), Some(Runtime::CriO), UID, QosClass::BestEffort)
        );
        // The node's own processes (kubelet, containerd) are the node container's.
        assert_eq!(
            v2(&format!("/docker/{OUTER}/system.slice/containerd.service")),
            container(OUTER, Some(Runtime::Docker))
        );
    }

    #[test]
    fn docker_in_a_pod_is_the_inner_container() {
        let path = format!("/kubepods/burstable/pod{UID}/{OUTER}/docker/{ID}");
        assert_eq!(
            v2(&path),
            in_pod(Some(ID), Some(Runtime::Docker), UID, QosClass::Burstable)
        );
    }

    #[test]
    fn kubepods_below_a_prefix() {
        for prefix in ["/system.slice/k3s.service", "/kubelet"] {
            let path = format!("{prefix}/kubepods/besteffort/pod{UID}/{ID}");
            assert_eq!(
                v2(&path),
                in_pod(Some(ID), None, UID, QosClass::BestEffort),
                "{path}"
            );
        }
    }

    #[test]
    fn container_below_a_custom_cgroup_parent() {
        // `docker run --cgroup-parent actions_job` (GitHub Actions job containers) and the like.
        assert_eq!(v2(&format!("/actions_job/{ID}")), container(ID, None));
    }

    #[test]
    fn agent_in_private_cgroup_namespace_sees_relative_paths() {
        let path = format!(
            "/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/\
             cri-containerd-{ID}.scope"
        );
        assert_eq!(
            v2(&path),
            in_pod(
                Some(ID),
                Some(Runtime::Containerd),
                UID,
                QosClass::BestEffort
            )
        );
        assert_eq!(
            v2(&format!("/../docker-{ID}.scope")),
            container(ID, Some(Runtime::Docker))
        );
    }

    // Host processes.

    #[test]
    fn host_session_v1() {
        assert_eq!(
            parse_proc_cgroup(fixture!("host-session-v1.txt")),
            CgroupInfo::default()
        );
    }

    #[test]
    fn host_init_hybrid_real() {
        assert_eq!(
            parse_proc_cgroup(fixture!("host-init-hybrid.real.txt")),
            CgroupInfo::default()
        );
    }

    #[test]
    fn host_process_named_by_short_hex_hybrid_real() {
        assert_eq!(
            parse_proc_cgroup(fixture!("host-process-hybrid.real.txt")),
            CgroupInfo::default()
        );
    }

    #[test]
    fn host_processes_v2() {
        for path in [
            "/",
            "/init.scope",
            "/user.slice/user-0.slice/session-1.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome.scope",
            "/system.slice/sshd.service",
        ] {
            assert_eq!(v2(path), CgroupInfo::default(), "{path}");
        }
    }

    // Line choice and malformed input.

    #[test]
    fn v1_uses_the_line_that_names_a_container() {
        let text = format!("12:rdma:/\n5:memory:/\n4:pids:/docker/{ID}\n1:name=systemd:/\n0::/\n");
        assert_eq!(
            parse_proc_cgroup(&text),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn v1_prefers_a_line_with_pod_and_container() {
        // A (hypothetical) disagreement: the line that tells more wins, whatever its order.
        let text = format!(
            "1:name=systemd:/system.slice/docker-{OUTER}.scope\n\
             5:memory:/kubepods/burstable/pod{UID}/{ID}\n"
        );
        assert_eq!(
            parse_proc_cgroup(&text),
            in_pod(Some(ID), None, UID, QosClass::Burstable)
        );
    }

    #[test]
    fn v1_tie_prefers_memory_over_systemd_and_v2() {
        let text = format!(
            "0::/docker/{OUTER}\n1:name=systemd:/docker/{OUTER}\n4:cpu,cpuacct:/docker/{ID}\n"
        );
        assert_eq!(
            parse_proc_cgroup(&text),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn ids_must_be_64_hex() {
        for path in [
            format!("/docker/{}", &ID[..63]),
            format!("/docker/{ID}0"),
            format!("/docker/{}g", &ID[..63]),
            format!("/system.slice/docker-{}.scope", &ID[..12]),
        ] {
            assert_eq!(v2(&path), CgroupInfo::default(), "{path}");
        }
        assert_eq!(
            v2(&format!("/docker/{}", ID.to_ascii_uppercase())),
            container(ID, Some(Runtime::Docker))
        );
    }

    #[test]
    fn empty_and_garbage_input() {
        assert_eq!(parse_proc_cgroup(""), CgroupInfo::default());
        assert_eq!(parse_proc_cgroup("\n\n"), CgroupInfo::default());
        assert_eq!(
            parse_proc_cgroup("garbage\nno colons here\n1:only-two\n"),
            CgroupInfo::default()
        );
    }

    #[test]
    fn names() {
        assert_eq!(Runtime::Docker.as_str(), "docker");
        assert_eq!(Runtime::Containerd.as_str(), "containerd");
        assert_eq!(Runtime::CriO.as_str(), "cri-o");
        assert_eq!(Runtime::Podman.as_str(), "podman");
        assert_eq!(QosClass::BestEffort.as_str(), "BestEffort");
    }

    #[test]
    fn read_own_and_missing_process() {
        assert!(read(std::process::id()).is_some());
        // PID 0 has no /proc entry.
        assert_eq!(read(0), None);
    }
}
