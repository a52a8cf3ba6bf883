//! `build`, `run` and `test`: thin sequences of cargo invocations.
use std::{ffi::OsString, os::unix::process::CommandExt as _, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    imports,
    process::{cargo, display, is_root, run as run_cmd, target_dir},
    setup,
};

pub fn build(release: bool) -> Result<()> {
    setup::toolchain()?;
    build_agent(release)
}

pub fn build_agent(release: bool) -> Result<()> {
    let mut cmd = cargo()?;
    cmd.args(["build", "-p", "monitor-agent"]);
    if release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)
}

pub fn run(debug: bool, agent_args: &[OsString]) -> Result<()> {
    // Checked before building so nobody waits for a release build only to be refused.
    if !is_root() {
        bail!("the agent loads and attaches eBPF programs: run as root");
    }
    setup::toolchain()?;
    build_agent(!debug)?;
    let profile = if debug { "debug" } else { "release" };
    let binary = target_dir()?.join(profile).join("monitor-agent");
    let mut cmd = Command::new(&binary);
    cmd.args(agent_args);
    eprintln!("xtask: $ {}", display(&cmd));
    // exec, not spawn: the agent takes over this process, so Ctrl-C and SIGTERM reach it
    // directly and its exit status is ours. exec only returns on failure.
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", binary.display()))
}

pub fn test(filter: Option<&str>) -> Result<()> {
    // First: it needs nothing installed and takes a moment, so a new import cycle fails the
    // run before minutes of setup and builds.
    imports::check(false)?;
    setup::full()?;
    run_cmd(cargo()?.args([
        "test",
        "-p",
        "monitor-common",
        "-p",
        "monitor-agent",
        "-p",
        "monitor-protocols",
        "-p",
        "xtask",
    ]))?;
    if !is_root() {
        bail!("integration tests load eBPF programs: run as root (the unit tests passed)");
    }
    build_agent(false)?;
    let mut integration = cargo()?;
    integration
        .args(["test", "-p", "tests", "--"])
        .args(filter)
        // The tests share the kernel's tracepoints and the agent's port range; one at a time
        // keeps their observations their own.
        .arg("--test-threads=1")
        .env(
            "MONITOR_AGENT_BIN",
            target_dir()?.join("debug").join("monitor-agent"),
        );
    run_cmd(&mut integration)?;
    if filter.is_none() {
        // The kernels users run are not this one: the same agent on Debian's 5.10, 6.1 and
        // 6.12 in virtual machines. Debug, as just built (no release build in CI); the
        // report goes under target/ so a CI run never dirties the work tree.
        crate::kernels::kernels(&crate::kernels::Options::for_test_workflow()?)?;
        // The protocol parsers see bytes any process on the host sends: 45 s of
        // coverage-guided fuzzing of each on every run, a crash fails the run.
        crate::fuzz::fuzz(FUZZ_SECONDS)?;
    }
    Ok(())
}

/// How long `test` fuzzes the protocol parsers.
const FUZZ_SECONDS: u64 = 45;
