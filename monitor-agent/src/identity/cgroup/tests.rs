use super::*;

/// A fixture under `monitor-agent/tests/fixtures/cgroup/` (see its README for provenance).
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/cgroup/", $name))
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
    let path = format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope");
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
    let text =
        format!("7:pids:/libpod_parent/libpod-{ID}\n1:name=systemd:/libpod_parent/libpod-{ID}\n");
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
    let text = format!("4:memory:/docker/{OUTER}/docker/{ID}\n0::/docker/{OUTER}/docker/{ID}\n");
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
    let text =
        format!("0::/docker/{OUTER}\n1:name=systemd:/docker/{OUTER}\n4:cpu,cpuacct:/docker/{ID}\n");
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
