//! Debian's own kernels for the matrix: the `linux-image-amd64` of a suite, fetched with apt
//! through a private sources list (the machine's apt state is never touched), unpacked, its
//! modules installed under /lib/modules so the guest finds them through the shared root.
//!
//! Everything is cached under `target/kernels/SUITE/`: a second run downloads nothing. To
//! pick up a newer kernel of a suite, delete that folder.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::process::{find_program, output, run};

/// The deb822 file Debian 12 and later install; older systems only have the one-line list.
const DEB822_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
const ONE_LINE_SOURCES: &str = "/etc/apt/sources.list";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The meta-package whose dependency names the suite's current kernel package.
const META_PACKAGE: &str = "linux-image-amd64";
/// Written last by `prepare`: its presence means the cache below it is complete.
const MARKER: &str = "kernel.txt";

/// A Debian release in the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Suite {
    /// Debian 11, Linux 5.10.
    Bullseye,
    /// Debian 12, Linux 6.1.
    Bookworm,
    /// Debian 13, Linux 6.12.
    Trixie,
}

impl Suite {
    pub const ALL: [Suite; 3] = [Suite::Bullseye, Suite::Bookworm, Suite::Trixie];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
        }
    }
}

/// A kernel ready to boot: its image under a name the VM tool accepts, its modules in place.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// `uname -r` of the kernel, also its folder under /lib/modules.
    pub release: String,
    /// The Debian package it came from (`linux-image-5.10.0-32-amd64`).
    pub package: String,
    pub vmlinuz: PathBuf,
    /// Whether this run had to download it (false: it came from the cache).
    pub downloaded: bool,
}

/// The kernel of `suite`, from the cache under `cache_root` or downloaded into it; its
/// modules are (re)installed under /lib/modules when missing there.
pub fn prepare(suite: Suite, cache_root: &Path) -> Result<Kernel> {
    let dir = cache_root.join(suite.name());
    if let Some(kernel) = cached(&dir) {
        ensure_modules(&kernel, &dir)?;
        return Ok(kernel);
    }
    // An interrupted earlier run may have left anything here: start clean.
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let apt = PrivateApt::create(suite, &cache_root.join("apt").join(suite.name()))?;
    run(&mut apt.command("apt-get", &["update"]))?;
    let depends = output(&mut apt.command("apt-cache", &["depends", META_PACKAGE]))?;
    let package = kernel_package(&depends).with_context(|| {
        format!(
            "no linux-image-* dependency of {META_PACKAGE} in {}: {depends}",
            suite.name()
        )
    })?;
    run(apt
        .command("apt-get", &["download", &package])
        .current_dir(&dir))?;
    let deb = single_deb(&dir)?;
    let tree = unpack(&deb, &dir)?;
    let (release, image) = find_vmlinuz(&tree)?;
    let vmlinuz = vmlinuz_path(&dir, &release);
    fs::copy(&image, &vmlinuz)
        .with_context(|| format!("copying {} to {}", image.display(), vmlinuz.display()))?;
    let kernel = Kernel {
        release,
        package,
        vmlinuz,
        downloaded: true,
    };
    // Always, on a fresh download: modules left by another upload of the same release must
    // not pass for this one's.
    install_modules(&kernel, &tree)?;
    // The unpacked tree is only needed to install the modules; the .deb stays for next time.
    fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    let marker = format!("{}\t{}\n", kernel.release, kernel.package);
    fs::write(dir.join(MARKER), marker).context("writing the kernel cache marker")?;
    Ok(kernel)
}

/// Where the kernel image is kept: virtme-ng trips on `+` in its path (trixie's releases
/// have one).
fn vmlinuz_path(dir: &Path, release: &str) -> PathBuf {
    dir.join(format!("vmlinuz-{}", release.replace('+', "-")))
}

/// The kernel recorded by an earlier, completed `prepare`, if its files are all there.
fn cached(dir: &Path) -> Option<Kernel> {
    let marker = fs::read_to_string(dir.join(MARKER)).ok()?;
    let (release, package) = marker.trim_end().split_once('\t')?;
    let vmlinuz = vmlinuz_path(dir, release);
    if !vmlinuz.is_file() || single_deb(dir).is_err() {
        return None;
    }
    Some(Kernel {
        release: release.to_owned(),
        package: package.to_owned(),
        vmlinuz,
        downloaded: false,
    })
}

/// apt with its own sources list, lists and cache: one suite of the configured mirror,
/// whatever the machine itself tracks.
struct PrivateApt {
    options: Vec<String>,
}

impl PrivateApt {
    fn create(suite: Suite, dir: &Path) -> Result<Self> {
        let mirror = mirror_uri()?;
        let lists = dir.join("lists");
        let cache = dir.join("cache");
        for needed in [
            lists.join("partial"),
            cache.join("archives").join("partial"),
        ] {
            fs::create_dir_all(&needed)
                .with_context(|| format!("creating {}", needed.display()))?;
        }
        let sources = dir.join("sources.list");
        fs::write(&sources, sources_line(&mirror, suite.name()))
            .with_context(|| format!("writing {}", sources.display()))?;
        let options = [
            format!("Dir::Etc::SourceList={}", sources.display()),
            "Dir::Etc::SourceParts=/dev/null".to_owned(),
            format!("Dir::State::Lists={}", lists.display()),
            format!("Dir::Cache={}", cache.display()),
            // The files land in our own folder, which the unprivileged `_apt` user may not
            // be able to write; apt would warn and fall back to root anyway.
            "APT::Sandbox::User=root".to_owned(),
        ]
        .into_iter()
        .flat_map(|option| ["-o".to_owned(), option])
        .collect();
        Ok(Self { options })
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(&self.options)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }
}

fn sources_line(mirror: &str, suite: &str) -> String {
    format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n")
}

/// The Debian archive URI this machine's apt already uses (never a hard-coded host).
fn mirror_uri() -> Result<String> {
    let from = |path: &str, parse: fn(&str) -> Option<String>| {
        fs::read_to_string(path).ok().and_then(|text| parse(&text))
    };
    if let Some(uri) = from(DEB822_SOURCES, deb822_mirror) {
        return Ok(uri);
    }
    if let Some(uri) = from(ONE_LINE_SOURCES, one_line_mirror) {
        return Ok(uri);
    }
    bail!(
        "no Debian archive URI in {DEB822_SOURCES} (deb822 `URIs:`) or {ONE_LINE_SOURCES}: \
         configure apt for a Debian mirror first"
    )
}

/// Whether a suite is a release's main archive (`bookworm`, `bookworm-updates`), not its
/// security archive (another URI, without the kernels of the main suite).
fn is_main_archive_suite(suite: &str) -> bool {
    !suite.ends_with("-security") && !suite.contains('/')
}

/// A mirror apt can download from (`http://…`, `https://…`), not a `cdrom:` entry.
fn is_network_uri(uri: &str) -> bool {
    uri.contains("://")
}

/// The first `URIs:` of an enabled `deb` stanza of a main archive, in a deb822 sources file.
fn deb822_mirror(text: &str) -> Option<String> {
    // Stanzas are separated by blank lines; `#` lines are comments, and a line starting
    // with white space continues the previous field.
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let stanza = stanzas.last_mut()?;
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    stanzas.iter().find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let enabled = field("enabled").is_none_or(|value| !value.eq_ignore_ascii_case("no"));
        let binary = field("types")?.split_whitespace().any(|kind| kind == "deb");
        let main = field("suites")?
            .split_whitespace()
            .any(is_main_archive_suite);
        let uri = field("uris")?.split_whitespace().next()?;
        (enabled && binary && main && is_network_uri(uri))
            .then(|| uri.trim_end_matches('/').to_owned())
    })
}

/// The URI of the first `deb` line of a main archive in a one-line sources.list.
fn one_line_mirror(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let rest = line.strip_prefix("deb ")?.trim_start();
        // Options: `[signed-by=… arch=…]`, before the URI.
        let rest = match rest.strip_prefix('[') {
            Some(options) => options.split_once(']')?.1,
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        let suite = words.next()?;
        (is_main_archive_suite(suite) && is_network_uri(uri))
            .then(|| uri.trim_end_matches('/').to_owned())
    })
}

/// The versioned kernel package in `apt-cache depends linux-image-amd64`'s output: the
/// first `linux-image-*` dependency, or the first provider listed under it when it is
/// virtual (`<…>`, providers indented below).
fn kernel_package(depends: &str) -> Option<String> {
    let mut lines = depends.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((kind, name)) = line.trim().split_once(':') else {
            continue;
        };
        if !kind.trim_start_matches('|').ends_with("Depends") {
            continue;
        }
        let name = name.trim();
        if let Some(virtual_name) = name.strip_prefix('<').and_then(|n| n.strip_suffix('>')) {
            if !virtual_name.starts_with("linux-image-") {
                continue;
            }
            // Providers follow, one per line, without a `Kind:` prefix.
            while let Some(provider) = lines.next_if(|next| !next.contains(':')) {
                let provider = provider.trim();
                if provider.starts_with("linux-image-") {
                    return Some(provider.to_owned());
                }
            }
            continue;
        }
        if name.starts_with("linux-image-") && name != META_PACKAGE {
            return Some(name.to_owned());
        }
    }
    None
}

fn single_deb(dir: &Path) -> Result<PathBuf> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    match debs.len() {
        1 => Ok(debs.remove(0)),
        n => bail!("expected one .deb in {}, found {n}", dir.display()),
    }
}

/// `dpkg -x` into a fresh `unpacked/` next to the .deb.
fn unpack(deb: &Path, dir: &Path) -> Result<PathBuf> {
    let tree = dir.join("unpacked");
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    run(Command::new("dpkg").arg("-x").arg(deb).arg(&tree))?;
    Ok(tree)
}

/// The release and path of the one `boot/vmlinuz-<release>` in an unpacked kernel package.
fn find_vmlinuz(tree: &Path) -> Result<(String, PathBuf)> {
    let boot = tree.join("boot");
    let entries = fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))?;
    for entry in entries {
        let path = entry?.path();
        let release = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("vmlinuz-"));
        if let Some(release) = release {
            return Ok((release.to_owned(), path.clone()));
        }
    }
    bail!("no vmlinuz-* in {}", boot.display())
}

/// The modules folder of `release` inside an unpacked package: `lib/modules` up to bookworm,
/// `usr/lib/modules` from trixie on (merged /usr).
fn modules_in(tree: &Path, release: &str) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|base| tree.join(base).join(release))
        .find(|dir| dir.is_dir())
}

/// Whether /lib/modules/<release> holds a complete copy: depmod writes modules.dep.bin
/// last, so its presence means the copy and depmod both finished.
fn modules_installed(release: &str) -> bool {
    Path::new("/lib/modules")
        .join(release)
        .join("modules.dep.bin")
        .is_file()
}

/// The modules of a cached kernel, unpacked again from its .deb when /lib/modules lacks them
/// (CI machines start with a fresh /lib/modules but may restore target/).
fn ensure_modules(kernel: &Kernel, dir: &Path) -> Result<()> {
    if modules_installed(&kernel.release) {
        return Ok(());
    }
    let tree = unpack(&single_deb(dir)?, dir)?;
    install_modules(kernel, &tree)?;
    fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))
}

/// Copies the kernel's modules to /lib/modules/<release> and runs depmod. The guest sees
/// the host's root, so this is where it finds its drivers (virtio, 9p) and the agent its
/// kernel's module tree.
fn install_modules(kernel: &Kernel, tree: &Path) -> Result<()> {
    let source = modules_in(tree, &kernel.release)
        .with_context(|| format!("no lib/modules/{} in {}", kernel.release, kernel.package))?;
    let target = Path::new("/lib/modules").join(&kernel.release);
    if target.exists() {
        fs::remove_dir_all(&target).with_context(|| format!("removing {}", target.display()))?;
    }
    fs::create_dir_all("/lib/modules").context("creating /lib/modules")?;
    run(Command::new("cp").arg("-a").arg(&source).arg(&target))?;
    let depmod = find_program("depmod").context("depmod not found (package kmod)")?;
    run(Command::new(depmod).arg(&kernel.release))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Debian 12's file, with a placeholder host (`.invalid` is reserved).
    const DEB822: &str = "\
Types: deb
# http://snapshot.example.invalid/archive/debian/20250520T000000Z
URIs: http://mirror.example.invalid/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_gives_the_main_archive_not_security_nor_comments() {
        assert_eq!(
            deb822_mirror(DEB822).as_deref(),
            Some("http://mirror.example.invalid/debian")
        );
    }

    #[test]
    fn deb822_skips_disabled_source_and_security_stanzas() {
        let text = "\
Types: deb
URIs: http://security.example.invalid/debian-security
Suites: trixie-security
Components: main

Types: deb-src
URIs: http://src.example.invalid/debian
Suites: trixie
Components: main

Types: deb
URIs: http://off.example.invalid/debian
Suites: trixie
Enabled: no

Types: deb deb-src
URIs:
 http://multi.example.invalid/debian
 http://second.example.invalid/debian
Suites: trixie
Components: main
";
        assert_eq!(
            deb822_mirror(text).as_deref(),
            Some("http://multi.example.invalid/debian")
        );
        assert_eq!(deb822_mirror("# nothing\n"), None);
    }

    #[test]
    fn one_line_list_gives_the_first_main_deb_line() {
        let text = "\
# deb http://commented.example.invalid/debian bookworm main
deb-src http://src.example.invalid/debian bookworm main
deb http://security.example.invalid/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example.invalid/debian/ bookworm main contrib
deb http://later.example.invalid/debian bookworm main
";
        assert_eq!(
            one_line_mirror(text).as_deref(),
            Some("http://mirror.example.invalid/debian")
        );
        assert_eq!(one_line_mirror("deb cdrom:[Debian]/ bookworm main\n"), None);
    }

    #[test]
    fn the_private_sources_line_names_the_keyring_mirror_and_suite() {
        assert_eq!(
            sources_line("http://mirror.example.invalid/debian", "trixie"),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://mirror.example.invalid/debian trixie main\n"
        );
    }

    #[test]
    fn picks_the_versioned_kernel_package() {
        let bullseye = "linux-image-amd64\n  Depends: linux-image-5.10.0-32-amd64\n";
        assert_eq!(
            kernel_package(bullseye).as_deref(),
            Some("linux-image-5.10.0-32-amd64")
        );
        // Trixie's signed image; other dependencies before it are skipped.
        let trixie = "linux-image-amd64\n  PreDepends: linux-base\n  Depends: kmod\n \
                      |Depends: initramfs-tools\n  Depends: linux-image-6.12.117+deb13-amd64\n";
        assert_eq!(
            kernel_package(trixie).as_deref(),
            Some("linux-image-6.12.117+deb13-amd64")
        );
    }

    #[test]
    fn a_virtual_kernel_dependency_resolves_to_its_first_provider() {
        let depends = "linux-image-amd64\n  Depends: <linux-initramfs-tool>\n    dracut\n\
                       \x20 Depends: <linux-image-6.12-amd64>\n    \
                       linux-image-6.12.117+deb13-amd64-unsigned\n    \
                       linux-image-6.12.117+deb13-amd64\n  Recommends: apparmor\n";
        assert_eq!(
            kernel_package(depends).as_deref(),
            Some("linux-image-6.12.117+deb13-amd64-unsigned")
        );
        assert_eq!(kernel_package("linux-image-amd64\n  Depends: kmod\n"), None);
    }

    #[test]
    fn finds_modules_in_lib_or_usr_lib() {
        let tree = std::env::temp_dir().join(format!("xtask-kernels-{}", std::process::id()));
        let merged = tree.join("usr/lib/modules/6.12.1+deb13-amd64");
        fs::create_dir_all(&merged).unwrap();
        assert_eq!(modules_in(&tree, "6.12.1+deb13-amd64"), Some(merged));
        assert_eq!(modules_in(&tree, "5.10.0-32-amd64"), None);
        let classic = tree.join("lib/modules/5.10.0-32-amd64");
        fs::create_dir_all(&classic).unwrap();
        assert_eq!(modules_in(&tree, "5.10.0-32-amd64"), Some(classic));
        fs::remove_dir_all(&tree).unwrap();
    }
}
