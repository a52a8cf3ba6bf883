//! `cargo xtask setup`: check everything first, install only what is missing.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::process::{find_program, is_root, output, run, succeeds};

const BPF_LINKER: &str = "bpf-linker@0.13.0";
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";
/// The target of the static agent that `cargo xtask image` builds; here, where it is
/// installed, so that `image` depends on `setup` and not the other way round too.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Commands the integration tests and the benchmark shell out to, with their Debian package.
const SYSTEM_TOOLS: &[(&str, &str)] = &[
    ("promtool", "prometheus"),
    ("bpftrace", "bpftrace"),
    ("bpftool", "bpftool"),
    ("setpriv", "util-linux"),
    // The deployment tests (tests/tests/{deploy,prometheus_e2e,image}.rs): a real Prometheus
    // server, `systemd-analyze verify`/`security` for the unit, strace for the syscalls the
    // agent makes under the unit's filter, and a Docker engine for the image.
    ("prometheus", "prometheus"),
    ("systemd-analyze", "systemd"),
    ("strace", "strace"),
    ("dockerd", "docker.io"),
    // The request tests (tests/tests/http.rs): an unmodified web server and load generator.
    ("nginx", "nginx"),
    ("wrk", "wrk"),
    // The HTTP/2 benchmark's load generator (`bench --only http2`).
    ("h2load", "nghttp2-client"),
    // The DNS tests (tests/tests/dns.rs): an unmodified server answering a test zone, and
    // an unmodified client.
    ("dnsmasq", "dnsmasq-base"),
    ("dig", "bind9-dnsutils"),
    // The database tests and benchmark (tests/tests/db.rs, `bench --only databases`):
    // unmodified servers, clients and load generators.
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("pg_ctlcluster", "postgresql-15"),
    ("psql", "postgresql-client-15"),
    // The network tests (tests/tests/network.rs): namespaces, a veth pair, and firewall
    // rules that drop SYNs and segments inside them.
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    // C code in the agent's dependencies (ring) for the static musl build of the image.
    ("musl-gcc", "musl-tools"),
];

/// What `cargo xtask kernels` boots its virtual machines with (the guest runs the host's
/// busybox for its init, and the kernel's modules need depmod), with their Debian package.
const VM_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("depmod", "kmod"),
];

/// Python packages the tests import, pinned: (import name, pip requirement). `rotel` is
/// a real OTLP receiver (the Rotel collector's binary, shipped in the wheel) that the OTLP
/// push tests send to and read back from its debug output.
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("kubernetes_validate", "kubernetes-validate==1.37.0"),
    ("helm_python", "helm-python-sdk==0.2.2"),
    ("rotel", "rotel==0.0.1a15"),
    // gRPC's own server and client (C-core) for the HTTP/2 tests.
    ("grpc", "grpcio==1.85.3"),
    // hyper-h2, an HTTP/2 server reached through the `h2c` upgrade, for the HTTP/2 tests.
    ("hpack", "hpack==4.2.0"),
    ("hyperframe", "hyperframe==6.1.0"),
    ("h2", "h2==4.1.0"),
];

/// PyPI packages used as commands, pinned: (command, pip requirement). Checked by running
/// `COMMAND --version`, which must print the pinned version (an import name would not say
/// which version is on PATH). virtme-ng 1.42 boots Debian's 5.10, 6.1 and 6.12 kernels here.
const PYTHON_COMMANDS: &[(&str, &str)] = &[("vng", "virtme-ng==1.42")];

/// On stderr, like every other line xtask prints of its own: the stdout of a command such as
/// `cargo xtask slo` is its result.
fn progress(what: &str, state: &str) {
    eprintln!("setup: {what} ... {state}");
}

/// Toolchain and system packages: what `test` and `bench` need.
pub fn full() -> Result<()> {
    toolchain()?;
    cargo_fuzz()?;
    musl_target()?;
    system_packages()?;
    python_packages()?;
    python_commands()
}

/// What `cargo xtask kernels` needs to boot its kernels: QEMU, busybox, kmod and virtme-ng.
pub fn virtual_machines() -> Result<()> {
    install_missing_tools(VM_TOOLS)?;
    python_commands()
}

/// Only what building the agent needs (its build script compiles the eBPF probes).
pub fn toolchain() -> Result<()> {
    nightly()?;
    rust_src()?;
    bpf_linker()
}

/// What `cargo xtask fuzz` needs: libFuzzer builds use nightly-only sanitizer flags.
pub fn fuzzing() -> Result<()> {
    nightly()?;
    cargo_fuzz()
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(Path::new(&home).join(".cargo"))
}

/// Prepends $CARGO_HOME/bin to PATH when missing, for this process and its children.
/// Must run before any thread is spawned.
pub fn put_cargo_bin_on_path() -> Result<()> {
    let bin = cargo_home()?.join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|dir| dir == bin) {
        return Ok(());
    }
    let joined = env::join_paths(std::iter::once(bin).chain(env::split_paths(&path)))
        .context("cannot add $CARGO_HOME/bin to PATH")?;
    // SAFETY: called first thing in main, while the process is still single-threaded.
    unsafe { env::set_var("PATH", joined) };
    Ok(())
}

fn nightly() -> Result<()> {
    let what = "nightly toolchain";
    let list = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if lists_nightly(&list) {
        progress(what, "present");
        return Ok(());
    }
    progress(what, "installing");
    run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

/// Whether `rustup toolchain list` shows the floating `nightly` channel; a dated nightly
/// (`nightly-2025-01-01-…`) is not what `+nightly` selects.
fn lists_nightly(list: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| {
            name == "nightly"
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// The eBPF crate is built with `-Z build-std=core`, which needs the standard library source.
fn rust_src() -> Result<()> {
    let what = "rust-src for nightly";
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if lists_rust_src(&installed) {
        progress(what, "present");
        return Ok(());
    }
    progress(what, "installing");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn lists_rust_src(installed: &str) -> bool {
    installed.lines().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|name| name == "rust-src" || name.starts_with("rust-src-"))
    })
}

/// Checked by running it, not just finding it: bpf-linker loads nightly's libLLVM through a
/// RUNPATH into the prefix folder, so a removed folder or an updated nightly breaks it.
fn bpf_linker() -> Result<()> {
    let what = "bpf-linker";
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        progress(what, "present");
        return Ok(());
    }
    progress(what, "installing (builds from source, a few minutes)");
    let llvm = LlvmPrefix::prepare()?;
    run(Command::new("cargo")
        .args([
            "+nightly",
            "install",
            BPF_LINKER,
            "--locked",
            "--force",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{}", llvm.major)])
        .env("LLVM_PREFIX", &llvm.prefix))?;
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but `bpf-linker --version` still fails");
    }
    Ok(())
}

/// Unlike bpf-linker it links no LLVM of its own (the sanitizers come with nightly rustc),
/// so finding it is enough; any toolchain can build it.
fn cargo_fuzz() -> Result<()> {
    let what = "cargo-fuzz";
    if succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        progress(what, "present");
        return Ok(());
    }
    progress(what, "installing (builds from source, a minute or two)");
    run(Command::new("cargo").args(["install", CARGO_FUZZ, "--locked"]))?;
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        bail!("cargo-fuzz was installed but `cargo fuzz --version` still fails");
    }
    Ok(())
}

/// An LLVM "installation" made of symlinks to the libLLVM that ships with nightly rustc,
/// so bpf-linker emits bitcode the nightly compiler's LLVM can read, with no system LLVM.
struct LlvmPrefix {
    prefix: PathBuf,
    major: String,
}

impl LlvmPrefix {
    fn prepare() -> Result<Self> {
        let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
        let library = find_libllvm(&Path::new(sysroot.trim()).join("lib"))?;
        let file_name = library
            .file_name()
            .and_then(|name| name.to_str())
            .context("libLLVM path has no UTF-8 file name")?
            .to_owned();
        let major = llvm_major(&file_name)
            .with_context(|| format!("no LLVM major version in {file_name}"))?
            .to_owned();
        let prefix = cargo_home()?.join("llvm-prefix-nightly");
        let lib = prefix.join("lib");
        fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
        // `libLLVM.so` is what the build links against; the rust-shipped library's soname is
        // its own file name, which is what the dynamic loader looks for at run time.
        for link in ["libLLVM.so", file_name.as_str()] {
            replace_symlink(&library, &lib.join(link))?;
        }
        Ok(Self { prefix, major })
    }
}

fn find_libllvm(lib_dir: &Path) -> Result<PathBuf> {
    let entries =
        fs::read_dir(lib_dir).with_context(|| format!("reading {}", lib_dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libLLVM.so."))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))
}

/// `libLLVM.so.22.1-rust-1.97.0-nightly` → `22`.
fn llvm_major(file_name: &str) -> Option<&str> {
    let version = file_name.strip_prefix("libLLVM.so.")?;
    let major = version.split(['.', '-']).next()?;
    (!major.is_empty() && major.chars().all(|c| c.is_ascii_digit())).then_some(major)
}

/// Re-pointed every time: after a nightly update the old target no longer exists.
fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// Installs the Debian packages of any missing tool; kept apart so `build` and `run`, which
/// need none of them, never touch apt.
pub fn system_packages() -> Result<()> {
    // One apt run for both tables when something is missing.
    install_missing_tools(&[SYSTEM_TOOLS, VM_TOOLS].concat())
}

/// Checks each (program, Debian package) and installs the packages of those missing.
fn install_missing_tools(tools: &[(&str, &str)]) -> Result<()> {
    let mut missing = Vec::new();
    for &(program, package) in tools {
        let what = format!("{program} (package {package})");
        if find_program(program).is_some() {
            progress(&what, "present");
        } else {
            progress(&what, "missing");
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing packages {}: run `cargo xtask setup` as root, or install them yourself",
            missing.join(" ")
        );
    }
    progress(&format!("packages {}", missing.join(" ")), "installing");
    apt_install(&missing)?;
    let still_missing: Vec<&str> = tools
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(program, _)| *program)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "installed packages but {} still not found",
            still_missing.join(", ")
        );
    }
    Ok(())
}

/// The standard library for the static (musl) agent that `cargo xtask image` puts in the
/// container image; the eBPF part does not depend on it.
pub fn musl_target() -> Result<()> {
    let target = MUSL_TARGET;
    let what = format!("rust target {target}");
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|line| line.trim() == target) {
        progress(&what, "present");
        return Ok(());
    }
    progress(&what, "installing");
    run(Command::new("rustup").args(["target", "add", target]))
}

/// PyPI packages the tests import (`PYTHON_PACKAGES`), with `python3 -m pip`.
pub fn python_packages() -> Result<()> {
    let mut missing = Vec::new();
    for (module, requirement) in PYTHON_PACKAGES {
        let what = format!("python module {module} ({requirement})");
        if succeeds(Command::new("python3").args(["-c", &format!("import {module}")])) {
            progress(&what, "present");
        } else {
            progress(&what, "missing");
            missing.push(*requirement);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    pip_install(&missing)?;
    for (module, _) in PYTHON_PACKAGES {
        if !succeeds(Command::new("python3").args(["-c", &format!("import {module}")])) {
            bail!("installed the Python packages but `import {module}` still fails");
        }
    }
    Ok(())
}

fn pip_install(requirements: &[&str]) -> Result<()> {
    progress(&format!("pip {}", requirements.join(" ")), "installing");
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(requirements))
}

/// PyPI commands (`PYTHON_COMMANDS`), installed with `python3 -m pip` unless the pinned
/// version already answers `--version`.
fn python_commands() -> Result<()> {
    let mut missing = Vec::new();
    for &(command, requirement) in PYTHON_COMMANDS {
        let what = format!("{command} ({requirement})");
        if command_has_pinned_version(command, requirement) {
            progress(&what, "present");
        } else {
            progress(&what, "missing");
            missing.push(requirement);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    pip_install(&missing)?;
    for &(command, requirement) in PYTHON_COMMANDS {
        if !command_has_pinned_version(command, requirement) {
            bail!("installed {requirement} but `{command} --version` does not report it");
        }
    }
    Ok(())
}

fn command_has_pinned_version(command: &str, requirement: &str) -> bool {
    let Some(path) = python_command(command) else {
        return false;
    };
    let version = requirement
        .split_once("==")
        .map_or("", |(_, version)| version);
    output(Command::new(path).arg("--version"))
        .is_ok_and(|printed| reports_version(&printed, version))
}

/// Whether `--version` output (`virtme-ng 1.42`) names exactly `version`.
fn reports_version(printed: &str, version: &str) -> bool {
    printed.split_whitespace().any(|word| word == version)
}

/// A command installed by pip: in the scripts folder of the `python3` on PATH (where
/// `python3 -m pip` puts it, which a version manager's shims or a user's PATH may not
/// cover, and which wins over an older copy elsewhere on PATH), else on PATH.
pub fn python_command(name: &str) -> Option<PathBuf> {
    let scripts = output(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ]))
    .ok();
    scripts
        .map(|dir| Path::new(dir.trim()).join(name))
        .filter(|path| path.is_file())
        .or_else(|| find_program(name))
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update"]))?;
    run(apt(&["install", "-y", "--no-install-recommends"]).args(packages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nightly_is_recognised_in_toolchain_list() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n";
        assert!(lists_nightly(list));
        assert!(!lists_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\n"
        ));
        assert!(!lists_nightly(
            "nightly-2025-01-01-x86_64-unknown-linux-gnu\n"
        ));
    }

    #[test]
    fn rust_src_is_recognised_in_component_list() {
        assert!(lists_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64\n"
        ));
        assert!(!lists_rust_src(
            "rust-std-x86_64-unknown-linux-gnu\nrustc-x86_64\n"
        ));
    }

    #[test]
    fn versions_are_matched_as_whole_words() {
        assert!(reports_version("virtme-ng 1.42\n", "1.42"));
        assert!(!reports_version("virtme-ng 1.421\n", "1.42"));
        assert!(!reports_version("virtme-ng 1.41\n", "1.42"));
    }

    #[test]
    fn llvm_major_comes_from_the_library_file_name() {
        assert_eq!(
            llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"),
            Some("22")
        );
        assert_eq!(llvm_major("libLLVM.so.23-rust-1.99.0-nightly"), Some("23"));
        assert_eq!(llvm_major("libLLVM.so.x"), None);
    }

    #[test]
    fn replace_symlink_repoints_a_stale_link() {
        let dir = env::temp_dir().join(format!("xtask-symlink-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let link = dir.join("libLLVM.so");
        replace_symlink(Path::new("/nonexistent/old"), &link).unwrap();
        replace_symlink(Path::new("/nonexistent/new"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/nonexistent/new"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
