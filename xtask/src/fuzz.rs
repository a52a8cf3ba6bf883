//! `cargo xtask fuzz`: the protocol parsers under libFuzzer, through cargo-fuzz (nightly).
use std::{fs, process::Command};

use anyhow::{Context as _, Result};

use crate::{
    process::{run, workspace_root},
    setup,
};

/// Targets in fuzz/fuzz_targets/, each with seeds in fuzz/corpus/<target>/ and optionally a
/// dictionary in fuzz/<target>.dict.
const TARGETS: &[&str] = &["http", "dns", "postgres", "redis", "http2", "hpack"];

/// Runs every target for `seconds`; fails on the first crash (saved under fuzz/artifacts/).
pub fn fuzz(seconds: u64) -> Result<()> {
    setup::fuzzing()?;
    let root = workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    for target in TARGETS {
        // libFuzzer writes what it discovers into its first corpus directory: a scratch one
        // (ignored by git), so the committed seeds stay a handful of readable files.
        let scratch = fuzz_dir.join("target").join("corpus").join(target);
        fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .args(["+nightly", "fuzz", "run", target])
            .arg(&scratch)
            .arg(fuzz_dir.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // Sanitizer builds share nothing with the workspace's: keep them in fuzz/target.
            .env_remove("CARGO_TARGET_DIR");
        let dict = fuzz_dir.join(format!("{target}.dict"));
        if dict.is_file() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        run(&mut cmd)?;
    }
    Ok(())
}
