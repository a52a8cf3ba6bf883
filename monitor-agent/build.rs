use anyhow::{Context as _, anyhow};

/// Builds `monitor-ebpf` for the BPF target (nightly + bpf-linker; `cargo xtask setup`
/// installs both) so the agent always embeds probes built from this very checkout.
fn main() -> anyhow::Result<()> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("monitor-agent has no parent directory")?;
    // aya-build watches the probes' own crate only; the crates they compile in must
    // rebuild them too, or the agent would embed probes built from older sources.
    for shared in ["monitor-common", "monitor-framing"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(shared).display()
        );
    }
    let root = workspace.join("monitor-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
