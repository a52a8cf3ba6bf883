//! `cargo xtask kernels`: the agent built from this checkout against the kernels users run.
//! Each Debian kernel of the matrix boots in a virtual machine and runs the smoke test
//! (`smoke`) there; the same test runs on the host's own kernel. The results are compared
//! with the ground truth, printed, and written to docs/kernels.md; any number that is not
//! exact, or any probe not attached, fails the command with the kernel, probe and reason.
mod debian;
mod doc;
mod outcome;
mod smoke;
mod vm;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

pub use debian::Suite;
use outcome::{Prepared, RESULT_FILE, Run, SmokeResult};
pub use smoke::{GuestOptions, run as guest};

use crate::{
    process::{cargo, is_root, last_lines, log_tail, output, run, target_dir, workspace_root},
    setup,
};

/// The hidden subcommand that runs the smoke test (in a guest, or on the host).
pub const GUEST_COMMAND: &str = "kernels-guest";
pub const DEFAULT_DOC: &str = "docs/kernels.md";
/// A VM takes one to five minutes (boot ~15 s under emulation; 5.10's verifier alone takes
/// 75 s over the framing programs; the workloads; up to 30 s waiting for counts that never
/// come); ten is a hang, even on a loaded machine.
const DEFAULT_VM_TIMEOUT_MINUTES: u64 = 10;
/// Boots after the first of a guest that stopped before any result (see `suite_run`).
const LOST_BOOT_RETRIES: u32 = 2;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Debian suites whose kernel to boot, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "SUITES",
        default_value = "bullseye,bookworm,trixie"
    )]
    pub suites: Vec<Suite>,

    /// Skip the smoke test on this machine's own kernel.
    #[arg(long)]
    pub no_host: bool,

    /// Test this agent binary instead of building one from this checkout.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,

    /// Folder holding the test workloads gt-workload and net-workload, instead of building
    /// them (`cargo build -p tests --bins`, which also compiles the agent's library).
    #[arg(long, value_name = "DIR")]
    pub bins: Option<PathBuf>,

    /// Build and use the debug profile (target/debug) instead of release.
    #[arg(long)]
    pub debug: bool,

    /// Markdown report to (over)write; a relative path is taken from the workspace root.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_DOC, conflicts_with = "no_doc")]
    pub doc: PathBuf,

    /// Do not write the report (the tables are still printed).
    #[arg(long)]
    pub no_doc: bool,

    /// Minutes a virtual machine may run before it is killed (and its kernel failed).
    #[arg(long, value_name = "MINUTES", default_value_t = DEFAULT_VM_TIMEOUT_MINUTES,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub vm_timeout: u64,
}

impl Options {
    /// The matrix as `cargo xtask test` runs it: the debug agent and workloads the
    /// integration tests just ran, as they are (building them again here could rebuild
    /// them: `cargo test` unifies features with the dev-dependencies), and the report under
    /// target/ so CI leaves the work tree clean (docs/kernels.md is refreshed by hand, from
    /// a release build).
    pub fn for_test_workflow() -> Result<Self> {
        let debug = target_dir()?.join("debug");
        Ok(Self {
            suites: Suite::ALL.to_vec(),
            no_host: false,
            agent: Some(debug.join("monitor-agent")),
            bins: Some(debug),
            debug: true,
            doc: target_dir()?.join("kernels").join("kernels.md"),
            no_doc: false,
            vm_timeout: DEFAULT_VM_TIMEOUT_MINUTES,
        })
    }

    fn profile(&self) -> &'static str {
        if self.debug { "debug" } else { "release" }
    }

    /// The equivalent command line, for the report's header.
    fn command_line(&self) -> String {
        let mut words = vec!["cargo xtask kernels".to_owned()];
        if self.suites != Suite::ALL {
            let names: Vec<&str> = self.suites.iter().map(|suite| suite.name()).collect();
            words.push(format!("--suites {}", names.join(",")));
        }
        if self.no_host {
            words.push("--no-host".to_owned());
        }
        if let Some(agent) = &self.agent {
            words.push(format!("--agent {}", agent.display()));
        }
        if let Some(bins) = &self.bins {
            words.push(format!("--bins {}", bins.display()));
        }
        if self.debug {
            words.push("--debug".to_owned());
        }
        if self.doc != Path::new(DEFAULT_DOC) {
            words.push(format!("--doc {}", self.doc.display()));
        }
        words.join(" ")
    }
}

pub fn kernels(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the smoke test attaches eBPF programs and installs kernel modules: run as root");
    }
    let began = Instant::now();
    setup::virtual_machines()?;
    let vng = setup::python_command("vng").context("vng not found after setup")?;
    let binaries = binaries(options)?;
    let cache = target_dir()?.join("kernels");
    let outputs = cache.join("runs");
    let guest = std::env::current_exe().context("locating this xtask binary")?;

    let mut runs = Vec::new();
    if !options.no_host {
        runs.push(host_run(&binaries, &outputs.join("host"))?);
    }
    for &suite in &options.suites {
        runs.push(suite_run(
            suite,
            &cache,
            &outputs.join(suite.name()),
            &VmPlan {
                vng: &vng,
                guest: &guest,
                binaries: &binaries,
                timeout: Duration::from_secs(options.vm_timeout * 60),
            },
        ));
    }

    println!("\n{}", doc::probe_table(&runs));
    println!("{}", doc::check_table(&runs));
    println!("{}", doc::run_table(&runs));
    println!(
        "kernels: {} kernel(s) in {:.0} s; outputs under {}",
        runs.len(),
        began.elapsed().as_secs_f64(),
        outputs.display()
    );
    if !options.no_doc {
        let path = workspace_root()?.join(&options.doc);
        let provenance = doc::Provenance {
            command: options.command_line(),
            date: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?
                .trim()
                .to_owned(),
            commit: commit()?,
            agent: binaries.description.clone(),
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, doc::markdown(&provenance, &runs))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("kernels: wrote {}", path.display());
    }
    let problems: Vec<String> = runs.iter().flat_map(Run::problems).collect();
    if !problems.is_empty() {
        bail!(
            "{} problem(s) on the kernel matrix (the series each check read, the agent's log \
             and /metrics are under {}/NAME/):\n  {}",
            problems.len(),
            outputs.display(),
            problems.join("\n  ")
        );
    }
    println!("kernels: every kernel exact, every probe attached");
    Ok(())
}

/// The agent and the workloads, and how to describe the agent in the report.
struct Binaries {
    agent: PathBuf,
    bins: PathBuf,
    description: String,
    /// The Python with `grpcio` and `h2` the gRPC and `h2c` workloads run, if there is one.
    python: Option<PathBuf>,
}

fn binaries(options: &Options) -> Result<Binaries> {
    let target = target_dir()?;
    let profile_dir = target.join(options.profile());
    let mut build = Vec::new();
    if options.agent.is_none() {
        build.extend(["-p", "monitor-agent"]);
    }
    if options.bins.is_none() {
        build.extend(["-p", "tests", "--bins"]);
    }
    if !build.is_empty() {
        // Either builds the eBPF probes (the tests crate links the agent's library).
        setup::toolchain()?;
        let mut cmd = cargo()?;
        cmd.arg("build").args(&build);
        if !options.debug {
            cmd.arg("--release");
        }
        run(&mut cmd)?;
    }
    let absolute = |path: &Path| -> Result<PathBuf> {
        fs::canonicalize(path).with_context(|| format!("{} not found", path.display()))
    };
    let agent = absolute(
        options
            .agent
            .as_deref()
            .unwrap_or(&profile_dir.join("monitor-agent")),
    )?;
    // A binary cargo built here is described by its profile, wherever the path came from.
    let built_here = ["debug", "release"].into_iter().find(|profile| {
        absolute(&target.join(profile).join("monitor-agent")).is_ok_and(|built| built == agent)
    });
    let description = match (built_here, &options.agent) {
        (Some(profile), _) => format!("{profile} build of this checkout"),
        (None, Some(given)) => format!("`{}` (given with --agent)", given.display()),
        (None, None) => format!("{} build of this checkout", options.profile()),
    };
    let bins = absolute(options.bins.as_deref().unwrap_or(&profile_dir))?;
    // The interpreter itself, not a version manager's shim (a script that would exec it
    // under another name).
    let python =
        output(Command::new("python3").args(["-c", "import grpc, h2, sys; print(sys.executable)"]))
            .ok()
            .map(|path| PathBuf::from(path.trim()));
    Ok(Binaries {
        agent,
        bins,
        description,
        python,
    })
}

/// `git rev-parse --short HEAD`, plus `-dirty` when anything differs from it (untracked
/// files included: a new source file changes the build as much as an edited one).
fn commit() -> Result<String> {
    let root = workspace_root()?;
    let git = |args: &[&str]| output(Command::new("git").arg("-C").arg(&root).args(args));
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let status = git(&["status", "--porcelain"])?;
    let dirty = if status.trim().is_empty() {
        ""
    } else {
        "-dirty"
    };
    Ok(format!("{}{dirty}", head.trim()))
}

/// The smoke test on this machine's kernel, in this process: the same code the guests run.
fn host_run(binaries: &Binaries, out: &Path) -> Result<Run> {
    println!("kernels: host: smoke test on this machine's kernel");
    let began = Instant::now();
    let options = GuestOptions {
        out: out.to_path_buf(),
        agent: binaries.agent.clone(),
        bins: binaries.bins.clone(),
        python: binaries.python.clone(),
        settle_seconds: smoke::DEFAULT_SETTLE_SECONDS,
    };
    smoke::run(&options)?;
    let elapsed = began.elapsed();
    println!("kernels: host: done in {:.0} s", elapsed.as_secs_f64());
    let mut run = collect("host", "", out, elapsed, None);
    run.release = run
        .result
        .as_ref()
        .map(|result| result.kernel.clone())
        .unwrap_or_default();
    Ok(run)
}

struct VmPlan<'a> {
    vng: &'a Path,
    /// This xtask binary, which the guest runs by its path.
    guest: &'a Path,
    binaries: &'a Binaries,
    timeout: Duration,
}

/// Fetches (or finds) the suite's kernel, boots it and collects what the guest wrote.
/// Never fails: a kernel that cannot be fetched or booted is a failed run of that kernel.
fn suite_run(suite: Suite, cache: &Path, out: &Path, plan: &VmPlan) -> Run {
    let name = suite.name();
    println!("kernels: {name}: preparing its kernel");
    let began = Instant::now();
    let kernel = match debian::prepare(suite, cache) {
        Ok(kernel) => kernel,
        Err(err) => {
            return Run {
                name: name.to_owned(),
                release: String::new(),
                package: None,
                prepared: None,
                elapsed: Duration::ZERO,
                result: None,
                failure: Some(format!("preparing the kernel failed: {err:#}")),
                agent_log: String::new(),
            };
        }
    };
    let prepared = Prepared {
        elapsed: began.elapsed(),
        downloaded: kernel.downloaded,
    };
    println!(
        "kernels: {name}: {} ({}) ready in {:.1} s ({})",
        kernel.release,
        kernel.package,
        prepared.elapsed.as_secs_f64(),
        if kernel.downloaded {
            "downloaded"
        } else {
            "cached"
        }
    );
    let mut booted = boot_and_test(&kernel, out, plan);
    // A virtual machine that ended on its own before the test wrote any result is booted
    // again, up to LOST_BOOT_RETRIES times. Under QEMU's software emulation the 6.12 guest
    // sometimes panics on an `int3` left in kernel text that another vCPU had just patched
    // back (a static key flipped: a tracepoint attached, a memory cgroup made) while it ran
    // `kmalloc`: the emulator's cross-vCPU code patching, not the probes (seen in CI at 22 s,
    // here at 40 s in `bpf(2)`'s `vmemdup_user`). Its console is printed and kept
    // (`NAME-lost-boot-N.log` beside the runs), so a crash is seen, not hidden by the retry.
    // A test that ran and failed, or timed out, is not tried again.
    let mut lost = 0;
    while matches!(&booted, Ok(boot) if !boot.timed_out)
        && !out.join(RESULT_FILE).exists()
        && lost < LOST_BOOT_RETRIES
    {
        lost += 1;
        println!("kernels: {name}: the virtual machine stopped before a result; booting again");
        print_last_words(name, out);
        if let Some(runs) = out.parent() {
            let kept = runs.join(format!("{name}-lost-boot-{lost}.log"));
            if fs::copy(out.join("vng.log"), &kept).is_ok() {
                println!(
                    "kernels: {name}: its whole console is in {}",
                    kept.display()
                );
            }
        }
        booted = boot_and_test(&kernel, out, plan);
    }
    let (elapsed, failure) = match booted {
        Ok(boot) if boot.timed_out => (
            boot.elapsed,
            Some(format!(
                "the virtual machine was killed after {:?}",
                plan.timeout
            )),
        ),
        Ok(boot) => (boot.elapsed, None),
        Err(err) => (Duration::ZERO, Some(format!("{err:#}"))),
    };
    println!(
        "kernels: {name}: virtual machine done in {:.0} s",
        elapsed.as_secs_f64()
    );
    let mut run = collect(name, &kernel.release, out, elapsed, failure);
    run.package = Some(kernel.package);
    run.prepared = Some(prepared);
    run
}

fn boot_and_test(kernel: &debian::Kernel, out: &Path, plan: &VmPlan) -> Result<vm::Boot> {
    // A fresh folder: a result left by an earlier run must not pass for this one's.
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = |path: &Path| vm::shell_quote(&path.to_string_lossy());
    // The guest's loopback starts down; everything else the test needs is shared in.
    let python = plan
        .binaries
        .python
        .as_deref()
        .map(|python| format!(" --python {}", path(python)))
        .unwrap_or_default();
    let script = format!(
        "ip link set lo up; exec {} {GUEST_COMMAND} --out {} --agent {} --bins {}{python} >{} \
         2>&1",
        path(plan.guest),
        path(out),
        path(&plan.binaries.agent),
        path(&plan.binaries.bins),
        path(&out.join("guest.log")),
    );
    vm::boot(plan.vng, &kernel.vmlinuz, out, &script, plan.timeout)
}

/// Prints the end of a guest's logs: its console (an oops, a panic, the OOM killer), what
/// the test and the agent said last. In CI this output is all there is of a lost guest.
fn print_last_words(name: &str, out: &Path) {
    for (log, lines) in [("vng.log", 60), ("guest.log", 10), ("agent.log", 20)] {
        let tail = last_lines(&out.join(log), lines);
        if !tail.is_empty() {
            eprintln!("kernels: {name}: the end of its {log}:");
            for line in tail {
                eprintln!("  {line}");
            }
        }
    }
}

/// Reads what a smoke test left in `out`; a missing result becomes the run's failure, with
/// the last lines of the logs that explain it.
fn collect(
    name: &str,
    release: &str,
    out: &Path,
    elapsed: Duration,
    failure: Option<String>,
) -> Run {
    let agent_log = fs::read_to_string(out.join("agent.log")).unwrap_or_default();
    let result_path = out.join(RESULT_FILE);
    let parsed = fs::read_to_string(&result_path)
        .with_context(|| format!("reading {}", result_path.display()))
        .and_then(|text| {
            serde_norway::from_str::<SmokeResult>(&text)
                .with_context(|| format!("parsing {}", result_path.display()))
        });
    let (result, failure) = match parsed {
        Ok(result) => {
            // Not a failure of what the agent reports, but worth seeing: once on a loaded
            // machine the agent on 5.10 did not finish detaching its probes.
            if !result.agent_exit.is_empty() && result.agent_exit != "exit status: 0" {
                eprintln!(
                    "kernels: warning: {}: the agent did not stop cleanly: {}",
                    out.display(),
                    result.agent_exit
                );
            }
            (Some(result), failure)
        }
        Err(err) => {
            let why = failure.unwrap_or_else(|| format!("{err:#}"));
            print_last_words(name, out);
            let logs: Vec<String> = ["guest.log", "vng.log"]
                .iter()
                .map(|log| (log, log_tail(&out.join(log), 5)))
                .filter(|(_, tail)| !tail.is_empty())
                .map(|(log, tail)| format!("{log}: {tail}"))
                .collect();
            (
                None,
                Some(format!("no smoke result: {why}; {}", logs.join("; "))),
            )
        }
    };
    let release = result
        .as_ref()
        .map_or(release, |result| result.kernel.as_str())
        .to_owned();
    Run {
        name: name.to_owned(),
        release,
        package: None,
        prepared: None,
        elapsed,
        result,
        failure,
        agent_log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_shows_only_what_differs_from_the_defaults() {
        let mut options = Options::for_test_workflow().unwrap();
        options.doc = PathBuf::from(DEFAULT_DOC);
        options.debug = false;
        options.agent = None;
        options.bins = None;
        assert_eq!(options.command_line(), "cargo xtask kernels");
        options.suites = vec![Suite::Bullseye, Suite::Trixie];
        options.no_host = true;
        options.agent = Some(PathBuf::from("/tmp/agent"));
        assert_eq!(
            options.command_line(),
            "cargo xtask kernels --suites bullseye,trixie --no-host --agent /tmp/agent"
        );
    }

    #[test]
    fn a_missing_result_is_a_failure_with_the_logs_tail() {
        let out =
            std::env::temp_dir().join(format!("xtask-kernels-collect-{}", std::process::id()));
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("guest.log"), "kernels-guest: kernel 5.10\nboom\n").unwrap();
        let run = collect("bullseye", "5.10.0-32-amd64", &out, Duration::ZERO, None);
        fs::remove_dir_all(&out).unwrap();
        assert!(run.result.is_none());
        let problems = run.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("bullseye (5.10.0-32-amd64): no smoke result: reading"));
        assert!(problems[0].ends_with("guest.log: kernels-guest: kernel 5.10 / boom"));
    }
}
