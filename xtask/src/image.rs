//! `cargo xtask image`: the agent as a static (musl) binary in a `FROM scratch` image.
use std::{fs, process::Command};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    process::{cargo, find_program, output, run, target_dir, workspace_root},
    setup::{self, MUSL_TARGET},
};

pub const CONTAINERFILE: &str = "deploy/Containerfile";

pub struct Options<'a> {
    pub tag: &'a str,
    pub engine: &'a str,
}

pub fn image(options: &Options) -> Result<()> {
    setup::toolchain()?;
    setup::musl_target()?;
    ensure!(
        find_program(options.engine).is_some(),
        "{} not found: install docker.io (or podman) and start its daemon",
        options.engine
    );
    ensure!(
        find_program("musl-gcc").is_some(),
        "musl-gcc not found (C code in the agent's dependencies needs it for the musl target): \
         apt-get install musl-tools, or run `cargo xtask setup`"
    );
    let binary = build_static()?;
    // A context holding only the binary: nothing else can leak into the image.
    let context = target_dir()?.join("image-context");
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("emptying {}", context.display()))?;
    }
    fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    fs::copy(&binary, context.join("monitor-agent"))
        .with_context(|| format!("copying {}", binary.display()))?;
    let version = env!("CARGO_PKG_VERSION");
    run(Command::new(options.engine)
        .args(["build", "--file"])
        .arg(workspace_root()?.join(CONTAINERFILE))
        .args([
            "--tag",
            options.tag,
            "--build-arg",
            &format!("VERSION={version}"),
        ])
        .arg(&context)
        // The classic builder: BuildKit may be absent, and a scratch image needs nothing of it.
        .env("DOCKER_BUILDKIT", "0"))?;
    println!(
        "image: {} ({} bytes of agent)",
        options.tag,
        fs::metadata(&binary)?.len()
    );
    Ok(())
}

/// Builds the release agent for the musl target and checks that it is really static.
pub fn build_static() -> Result<std::path::PathBuf> {
    run(cargo()?.args([
        "build",
        "--release",
        "-p",
        "monitor-agent",
        "--target",
        MUSL_TARGET,
    ]))?;
    let binary = target_dir()?
        .join(MUSL_TARGET)
        .join("release")
        .join("monitor-agent");
    let bytes = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    if let Some(interpreter) = elf_interpreter(&bytes)? {
        bail!(
            "{} is dynamically linked (interpreter {interpreter})",
            binary.display()
        );
    }
    // `file` says "static-pie linked"; its absence is no reason to fail.
    if find_program("file").is_some() {
        eprintln!(
            "xtask: {}",
            output(Command::new("file").arg(&binary))?.trim()
        );
    }
    Ok(binary)
}

/// The PT_INTERP path of a 64-bit little-endian ELF file, `None` for a static binary.
pub fn elf_interpreter(elf: &[u8]) -> Result<Option<String>> {
    ensure!(
        elf.len() >= 64 && elf[..4] == *b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at = |at: usize| -> Result<usize> {
        let bytes = elf.get(at..at + 8).context("truncated ELF file")?;
        Ok(u64::from_le_bytes(bytes.try_into().unwrap()) as usize)
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let header = phoff + i * phentsize;
        let kind = elf
            .get(header..header + 4)
            .context("truncated program headers")?;
        if u32::from_le_bytes(kind.try_into().unwrap()) == 3 {
            let (offset, size) = (u64_at(header + 8)?, u64_at(header + 32)?);
            let path = elf
                .get(offset..offset + size)
                .context("truncated PT_INTERP")?;
            return Ok(Some(
                String::from_utf8_lossy(path)
                    .trim_end_matches('\0')
                    .to_owned(),
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_has_an_interpreter() {
        // This test binary itself is linked dynamically against glibc.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let interpreter = elf_interpreter(&me).unwrap().expect("dynamically linked");
        assert!(interpreter.contains("ld-linux"), "{interpreter}");
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn containerfile_is_from_scratch_and_copies_the_context_binary() {
        let text = fs::read_to_string(workspace_root().unwrap().join(CONTAINERFILE)).unwrap();
        let from: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(from, ["FROM scratch"]);
        assert!(text.contains("COPY monitor-agent /usr/bin/monitor-agent"));
    }

    #[test]
    fn workspace_root_is_found() {
        assert!(workspace_root().unwrap().join("Cargo.toml").exists());
    }
}
