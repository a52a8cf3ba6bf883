//! Developer commands for the monitor: `cargo xtask <command>` (aliased in .cargo/config.toml).
//!
//! Everything shells out with `std::process::Command`, so each step prints the exact
//! command it runs and can be repeated by hand.
mod bench;
mod process;
mod setup;
mod workflow;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set-up, build, run, test and benchmark commands for the monitor",
    long_about = "Set-up, build, run, test and benchmark commands for the monitor.\n\n\
        The agent embeds eBPF probes built with the nightly toolchain and bpf-linker; every \
        command installs what it needs first (see `cargo xtask setup --help`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install or check the toolchain pieces and system packages the other commands need.
    #[command(long_about = "Install or check everything the other commands need. \
        Idempotent: a second run only checks.\n\n\
        Toolchain: the nightly toolchain with rust-src (the eBPF probes are built for the BPF \
        target with -Z build-std) and bpf-linker (built against nightly's own LLVM).\n\
        System packages (apt, needs root): promtool (prometheus), bpftrace, bpftool and \
        setpriv (util-linux), used by the integration tests and the benchmark.")]
    Setup,

    /// Build the agent (and its embedded eBPF probes).
    #[command(
        long_about = "Build the agent. Its build script builds the eBPF probes \
        (monitor-ebpf) with the nightly toolchain and bpf-linker, so the agent always embeds \
        probes from this checkout. Checks the toolchain first, not the system packages."
    )]
    Build {
        /// Build with the release profile (target/release) instead of debug.
        #[arg(long)]
        release: bool,
    },

    /// Build the agent and run it in the foreground (as root).
    #[command(
        long_about = "Build the agent with the release profile and run it in the \
        foreground, replacing this process so signals (Ctrl-C, SIGTERM) reach the agent \
        directly. Must be run as root: the agent loads and attaches eBPF programs.\n\n\
        Example: cargo xtask run -- --web.listen-address 127.0.0.1:9655 --log.level debug"
    )]
    Run {
        /// Build and run the debug profile (target/debug) instead of release.
        #[arg(long)]
        debug: bool,

        /// Arguments for the agent (see `monitor-agent --help`), after `--`.
        #[arg(last = true, value_name = "AGENT_ARGS")]
        agent_args: Vec<OsString>,
    },

    /// Run the unit tests, then the root-only integration tests.
    #[command(long_about = "Run the whole test suite, as CI does.\n\n\
        1. full setup (toolchain and system packages);\n\
        2. unit tests of monitor-common, monitor-agent and xtask (no root needed);\n\
        3. integration tests (the `tests` crate) against a freshly built debug agent, one \
        test at a time. They load eBPF programs, so this step requires root and fails \
        (never skips) without it.")]
    Test {
        /// Only run integration tests whose name contains this substring.
        #[arg(long, value_name = "SUBSTRING")]
        filter: Option<String>,
    },

    /// Measure the per-syscall overhead of the agent against an empty hook and bpftrace.
    #[command(
        long_about = "Measure what the agent adds to every system call (as root).\n\n\
        A tight getppid loop (target/release/syscall-loop) is timed under four conditions: \
        none (nothing attached), empty (two empty raw-tracepoint programs on \
        sys_enter/sys_exit: the floor of any syscall hook), agent (the release agent) and \
        bpftrace (a per-syscall latency histogram script). Conditions are interleaved \
        within each round so drift affects all of them alike; each reports the median of \
        its runs. The report, with the ratio (agent - none) / (empty - none), is written \
        as markdown and printed."
    )]
    Bench {
        /// getppid calls per measured run (after a warm-up of a tenth of that).
        #[arg(long, default_value_t = 2_000_000, value_name = "N",
            value_parser = clap::value_parser!(u64).range(1..))]
        iterations: u64,

        /// Rounds; each round measures every condition once.
        #[arg(long, default_value_t = 5, value_name = "R",
            value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,

        /// Markdown report to (over)write; a relative path is taken from the workspace root.
        #[arg(long, default_value = bench::DEFAULT_OUTPUT, value_name = "FILE")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Cmd) -> anyhow::Result<()> {
    // Before anything else runs (and while single-threaded): children such as aya-build
    // must find the bpf-linker that `cargo install` puts in $CARGO_HOME/bin.
    setup::put_cargo_bin_on_path()?;
    match command {
        Cmd::Setup => setup::full(),
        Cmd::Build { release } => workflow::build(release),
        Cmd::Run { debug, agent_args } => workflow::run(debug, &agent_args),
        Cmd::Test { filter } => workflow::test(filter.as_deref()),
        Cmd::Bench {
            iterations,
            runs,
            output,
        } => bench::bench(&bench::Options {
            iterations,
            runs,
            output,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_passes_everything_after_double_dash_to_the_agent() {
        let cli = Cli::try_parse_from(["xtask", "run", "--", "--log.level", "debug"]).unwrap();
        let Cmd::Run { debug, agent_args } = cli.command else {
            panic!("not run")
        };
        assert!(!debug);
        assert_eq!(agent_args, ["--log.level", "debug"]);
    }

    #[test]
    fn bench_defaults() {
        let cli = Cli::try_parse_from(["xtask", "bench"]).unwrap();
        let Cmd::Bench {
            iterations,
            runs,
            output,
        } = cli.command
        else {
            panic!("not bench")
        };
        assert_eq!((iterations, runs), (2_000_000, 5));
        assert_eq!(output, PathBuf::from("docs/benchmarks.md"));
    }

    #[test]
    fn bench_rejects_zero_runs() {
        assert!(Cli::try_parse_from(["xtask", "bench", "--runs", "0"]).is_err());
    }
}
