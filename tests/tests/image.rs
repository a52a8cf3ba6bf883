//! The container image: `cargo xtask image` builds it (static musl agent, FROM scratch) on a
//! Docker engine this test starts; run with the documented flags, the agent in it reports a
//! host workload's syscalls exactly, and without capabilities it refuses to start; its `slo`
//! command makes the shipped example's rules with none.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    Scrape, agent_bin,
    docker::{Container, Docker, text},
    eventually, free_port, http_get, run_as, unique_comm, workspace_root,
};

#[test]
fn image_builds_from_scratch_and_reports_host_syscalls() {
    let docker = Docker::start();
    let tag = format!("monitor-agent:itest-{}", std::process::id());
    // Its own target dir: the musl build must not wait on the lock of the running `cargo test`.
    let xtask = agent_bin().with_file_name("xtask");
    assert!(
        xtask.exists(),
        "{} missing: run `cargo xtask test`",
        xtask.display()
    );
    let target: PathBuf = agent_bin()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("image-build");
    let output = Command::new(&xtask)
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &target)
        .env("DOCKER_HOST", &docker.socket)
        .args(["image", "--tag", &tag])
        .stdin(Stdio::null())
        .output()
        .expect("cargo xtask image");
    assert!(
        output.status.success(),
        "xtask image:\n{}\ndockerd:\n{}",
        text(&output),
        docker.log()
    );

    // One layer holding one file: the static agent.
    let inspect = docker.docker(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}} {{json .Config.Entrypoint}} {{.Size}}",
        &tag,
    ]);
    let inspect = text(&inspect);
    let fields: Vec<&str> = inspect.split_whitespace().collect();
    assert_eq!(
        fields[..2],
        ["1", "[\"/usr/bin/monitor-agent\"]"],
        "{inspect}"
    );
    let size: u64 = fields[2].parse().unwrap();
    assert!(size < 20 << 20, "image of {size} bytes");

    // The documented run: host PID namespace, host network (loopback here), read-only, all
    // capabilities dropped but those the DaemonSet grants as this engine knows them, Docker's
    // default seccomp profile, no host mounts. (Docker 20.10 does not know CAP_BPF/CAP_PERFMON
    // by name: CAP_SYS_ADMIN stands in for both.) CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH read
    // other users' /proc: without them /healthz says degraded.
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let name = format!("monitor-agent-itest-{}", std::process::id());
    let output = docker.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--pid=host",
        "--network=host",
        "--read-only",
        "--cap-drop=ALL",
        "--cap-add=SYS_ADMIN",
        "--cap-add=SYS_PTRACE",
        "--cap-add=DAC_READ_SEARCH",
        "--security-opt=no-new-privileges",
        &tag,
        "--web.listen-address",
        &address.to_string(),
    ]);
    assert!(output.status.success(), "docker run:\n{}", text(&output));
    let container = Container(&docker, name.clone());
    eventually(
        Duration::from_secs(30),
        "the containerised agent to be healthy",
        || {
            matches!(http_get(address, "/healthz"), Ok((200, ref body)) if body.trim() == "ok")
                .then_some(())
        },
    );
    let comm = unique_comm("imgwl");
    run_as(
        &comm,
        Path::new(env!("CARGO_BIN_EXE_gt-workload")),
        &["9", "4", "2", "1"].map(String::from),
    );
    let scrape = eventually(
        Duration::from_secs(10),
        "the host workload's series",
        || {
            let scrape = Scrape::parse(&http_get(address, "/metrics").ok()?.1);
            let count = scrape.value(
                "monitor_syscall_duration_seconds_count",
                &[("comm", &comm), ("syscall", "nanosleep")],
            )?;
            (count >= 2.0).then_some(scrape)
        },
    );
    let errors = |syscall, errno| {
        scrape.value(
            "monitor_syscall_errors_total",
            &[("comm", &comm), ("syscall", syscall), ("errno", errno)],
        )
    };
    assert_eq!(
        errors("openat", "ENOENT"),
        Some(9.0),
        "{}",
        text(&docker.docker(&["logs", &name]))
    );
    assert_eq!(errors("close", "EBADF"), Some(4.0));
    assert_eq!(
        scrape.value(
            "monitor_syscall_duration_seconds_count",
            &[("comm", &comm), ("syscall", "nanosleep")]
        ),
        Some(2.0)
    );
    drop(container);

    // Without the capability the agent says what is missing and exits.
    let output = docker.docker(&[
        "run",
        "--rm",
        "--pid=host",
        "--network=host",
        "--cap-drop=ALL",
        &tag,
        "--web.listen-address",
        "127.0.0.1:1",
    ]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("missing capabilities CAP_BPF + CAP_PERFMON"),
        "{}",
        text(&output)
    );

    // `slo` in the image, as the README runs it: no capability, no network, the SLO file
    // mounted read-only; the rules are the shipped example's (the header names /slo.yaml).
    let example = workspace_root().join("deploy/slo/example.yaml");
    let output = docker.docker(&[
        "run",
        "--rm",
        "--cap-drop=ALL",
        "--network=none",
        "--read-only",
        "-v",
        &format!("{}:/slo.yaml:ro", example.display()),
        &tag,
        "slo",
        "/slo.yaml",
    ]);
    assert!(
        output.status.success(),
        "slo in the image:\n{}",
        text(&output)
    );
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/slo-example.rules.yaml"))
            .unwrap();
    let rules = String::from_utf8_lossy(&output.stdout);
    let body = |rules: &str| rules.split_once('\n').map(|(_, body)| body.to_owned());
    assert!(
        rules.starts_with("# Generated by `monitor-agent slo /slo.yaml`")
            && body(&rules) == body(&shipped),
        "{rules}"
    );
    let _ = docker.docker(&["rmi", "-f", &tag]);
}
