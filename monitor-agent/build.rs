use anyhow::{Context as _, anyhow};

/// Builds `monitor-ebpf` for the BPF target (nightly + bpf-linker; `cargo xtask setup`
/// installs both) so the agent always embeds probes built from this very checkout.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("monitor-agent has no parent directory")?
        .join("monitor-ebpf");
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
