//! `cargo xtask slo`: the agent's own `monitor-agent slo` (monitor-agent/src/slo/), built from
//! this checkout and run with the same arguments, so the README's commands keep working and
//! there is one generator.
use std::{os::unix::process::CommandExt as _, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::{
    process::{display, target_dir},
    setup, workflow,
};

/// Builds the debug agent (as `cargo xtask test` does) and execs its `slo` subcommand: its
/// output, its notes on stderr and its exit status are the agent's.
pub fn slo(input: &Path, output: Option<&Path>) -> Result<()> {
    setup::toolchain()?;
    workflow::build_agent(false)?;
    let binary = target_dir()?.join("debug").join("monitor-agent");
    let mut cmd = Command::new(&binary);
    cmd.arg("slo").arg(input);
    if let Some(output) = output {
        cmd.arg("--output").arg(output);
    }
    eprintln!("xtask: $ {}", display(&cmd));
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", binary.display()))
}
