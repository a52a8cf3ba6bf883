//! Developer commands for the monitor: `cargo xtask <command>` (aliased in .cargo/config.toml).
//!
//! Everything shells out with `std::process::Command`, so each step prints the exact
//! command it runs and can be repeated by hand.
mod agent_http;
mod bench;
mod fuzz;
mod image;
mod imports;
mod kernels;
mod process;
mod python;
mod setup;
mod slo;
mod soak;
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
        target with -Z build-std), bpf-linker (built against nightly's own LLVM) and \
        cargo-fuzz (for `cargo xtask fuzz`).\n\
        System packages (apt, needs root): promtool (prometheus), bpftrace, bpftool and \
        setpriv (util-linux), used by the integration tests and the benchmark; qemu-system-x86, \
        busybox-static and kmod, and virtme-ng (pip), for `cargo xtask kernels`.")]
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
        1. the import-cycle check (`cargo xtask imports`), which needs nothing installed;\n\
        2. full setup (toolchain and system packages);\n\
        3. unit tests of monitor-common, monitor-agent, monitor-protocols and xtask (no root \
        needed);\n\
        4. integration tests (the `tests` crate) against a freshly built debug agent, one \
        test at a time. They load eBPF programs, so this step requires root and fails \
        (never skips) without it;\n\
        5. without --filter: the kernel matrix (`cargo xtask kernels --debug`: Debian's 5.10, \
        6.1 and 6.12 kernels in virtual machines, plus this machine's), against the same debug \
        agent, its report written to target/kernels/kernels.md rather than docs/ so the work \
        tree stays clean; 3 to 4 minutes (the first run also downloads ~230 MB of kernels, \
        seconds here);\n\
        6. without --filter: 45 s of fuzzing of each protocol parser (`cargo xtask fuzz`).")]
    Test {
        /// Only run integration tests whose name contains this substring.
        #[arg(long, value_name = "SUBSTRING")]
        filter: Option<String>,
    },

    /// Check that no crate's modules import from each other in a loop.
    #[command(
        long_about = "Check that no crate's modules import from each other in a \
        loop (the first step of `cargo xtask test`).\n\n\
        Crates: monitor-agent, monitor-ebpf, monitor-protocols, monitor-common and xtask. \
        Each .rs file under a crate's src/ is a module (foo.rs and foo/mod.rs are foo, \
        foo/bar.rs is foo::bar, lib.rs or main.rs the root). A module depends on another when \
        a `use` declaration or a path in its code (crate::, self::, super::, or a child \
        module's name) leads into it or to an item in it; comments and string literals are \
        skipped, and items of inline `mod x { }` blocks belong to their file. Prints each \
        crate's module and edge counts, and every cycle as a loop with the file and line of \
        each of its imports; fails if any crate has one."
    )]
    Imports {
        /// Also print each crate's edges between top-level modules (`a → b` for any import
        /// from a module under `a` of one under `b`).
        #[arg(long)]
        rooms: bool,
    },

    /// Measure the agent's per-syscall, connection-rate, throughput and HTTP overhead (as root).
    #[command(
        long_about = "Measure what the agent adds to system calls and TCP (as root).\n\n\
        syscalls: a tight getppid loop (target/release/syscall-loop) is timed under four \
        conditions: none (nothing attached), empty (two empty raw-tracepoint programs on \
        sys_enter/sys_exit: the floor of any syscall hook), agent (the release agent) and \
        bpftrace (a per-syscall latency histogram script); the ratio is \
        (agent - none) / (empty - none).\n\n\
        network: a loopback connect/accept/close loop, a bulk transfer in 64 KiB writes and \
        one in 1 KiB writes (run by this binary, pinned to one CPU) are timed under none, \
        agent and bpftrace (a script tracing syscalls and the same TCP tracepoints); the \
        overhead is (agent - none) / none per connection or write.\n\n\
        http: a one-worker nginx started by the benchmark (pinned to the first CPU) serves \
        `wrk -t1 -c16 --latency` (pinned to the last) under none, agent, the agent with only \
        its syscall hooks, only its TCP probes and only its request capture (each with process \
        lifecycle; --probes.disable the rest), and bpftrace (syscall histograms plus \
        per-socket request timing); the loss is (none - condition) / none of the requests/s \
        (target at most 5%, goal 3% for the agent). One more agent run with BPF statistics on \
        gives each program's runs and ns per request (target at most 500 ns in all, goal 250); \
        the agent's own CPU per 10k requests/s is read from /proc (target at most 1% of a \
        core).\n\n\
        Conditions are interleaved within each round so drift affects all of them alike. \
        Each syscall or network run reports its fastest of 20 batches (the least disturbed by \
        the hypervisor), each http run wrk's requests/s; each condition the median of its runs. The report is written as markdown (one \
        section per suite) and printed."
    )]
    Bench(bench::Options),

    /// Internal: one network workload of `cargo xtask bench`, which runs and times it.
    #[command(name = bench::WORKER_COMMAND, hide = true)]
    BenchNetWorker {
        #[command(subcommand)]
        workload: bench::Workload,
    },

    /// Build the container image: a static (musl) agent on an empty base.
    #[command(long_about = "Build the container image.\n\n\
        Builds the release agent for x86_64-unknown-linux-musl (a static binary; its embedded \
        eBPF probes do not depend on the target), checks that it has no ELF interpreter, and \
        builds deploy/Containerfile (FROM scratch) with a context holding only that binary. \
        The engine must be running; DOCKER_HOST is honoured.\n\n\
        Example: cargo xtask image --tag registry.example/monitor-agent:0.1.0")]
    Image {
        /// Name and tag of the image.
        #[arg(long, default_value = concat!("monitor-agent:", env!("CARGO_PKG_VERSION")))]
        tag: String,

        /// Container engine CLI: docker or podman.
        #[arg(long, default_value = "docker", value_parser = ["docker", "podman"])]
        engine: String,
    },

    /// Turn an SLO file into Prometheus rules: runs `monitor-agent slo` (built first).
    #[command(
        long_about = "Generate Prometheus rules from an SLO file (YAML), with the \
        agent's own generator: builds the debug agent and runs `monitor-agent slo INPUT \
        [--output OUTPUT]` (its output, notes and exit status; see `monitor-agent slo --help` \
        for the SLO file and the rules). Without a checkout, run the shipped binary or image \
        the same way.\n\n\
        Example: cargo xtask slo deploy/slo/example.yaml --output deploy/prometheus/slo-example.rules.yaml"
    )]
    Slo {
        /// The SLO file.
        input: PathBuf,

        /// Rule file to (over)write; stdout when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },

    /// Boot Debian's kernels in virtual machines and check the agent on each (as root).
    #[command(
        long_about = "Run a ground-truth smoke test of the agent on several kernels \
        (as root).\n\
        \n\
        Kernels: the `linux-image-amd64` of each Debian suite (bullseye 5.10, bookworm 6.1, \
        trixie 6.12), fetched with apt from the mirror this machine's apt configuration names \
        (a private sources list: the machine's own apt state is untouched), cached under \
        target/kernels/SUITE/ (delete that folder to fetch a newer one), its modules installed \
        under /lib/modules. Each boots with virtme-ng over QEMU (software emulation) with this \
        machine's root filesystem shared in, so the agent and workloads built here run there \
        unchanged; one VM at a time, each killed after --vm-timeout.\n\
        \n\
        Smoke test (in each VM, and on this machine's own kernel unless --no-host): the agent \
        starts, then workloads with known outcomes run under process names of their own: \
        gt-workload (37 failing openat, 23 close(-1), 5 nanosleeps), net-workload (5 \
        accepted connects carrying 1000 bytes each, 3 refused), and Python's http.server and \
        http.client over one keep-alive connection (7 × 200 on /ok, 3 × 404 on /missing). \
        Each expected number is compared with the agent's /metrics, and every \
        monitor_probe_attached series with /healthz.\n\
        \n\
        Prints a probe table and a ground-truth table, writes them with a static section on \
        minimum kernel versions to --doc, and fails when any number is not exact or any probe \
        is not attached, naming the kernel, the probe or check, and the reason. Builds the \
        release agent and the test workloads first unless --agent/--bins are given. Each \
        kernel's files (result.yaml, metrics.txt, healthz.txt, agent.log, guest.log, vng.log) \
        stay under target/kernels/runs/NAME/.\n\
        \n\
        Example: cargo xtask kernels --suites bullseye --no-host --agent target/release/monitor-agent"
    )]
    Kernels(kernels::Options),

    /// Internal: the smoke test of `cargo xtask kernels`, run inside each virtual machine.
    #[command(name = kernels::GUEST_COMMAND, hide = true)]
    KernelsGuest(kernels::GuestOptions),

    /// Run the release agent under a load feeding every signal and check it (as root).
    #[command(long_about = "Soak test: the release agent runs for --duration under \
        stress-ng (CPU, fork, exec, context switches), the ground-truth syscall workload, and \
        a Python HTTP/1.1 server and client on loopback (keep-alive requests answered 200 and \
        404, new connections every few seconds, connects refused by a closed port).\n\n\
        Every --sample-every the agent's RSS is read, and from /metrics every ring's produced, \
        read, lost and malformed counts, monitor_series of every workload family, and the \
        kernel maps' entries and insert failures; a row missing from a scrape (or gone since \
        an earlier one) fails the soak, naming it. After the load stops, a last sample is \
        taken once the rings are drained.\n\n\
        Passes when RSS grows less than 10% after the warm-up (one series TTL, at most half \
        the run); after the drain no ring lost or could not decode an event and each has \
        produced = read + lost; no kernel map refused a key; and each family the load feeds \
        (syscall, TCP connect, connections, network bytes, HTTP server and client) has series \
        at the end of the load. Writes the figures to --output (logs under \
        target/xtask-soak/). Not part of `cargo xtask test`: it takes 10 minutes by default.")]
    Soak {
        /// How long to run (s, m or h).
        #[arg(long, default_value = "10m")]
        duration: String,

        /// How often to sample RSS and the metrics.
        #[arg(long, default_value = "30s")]
        sample_every: String,

        /// Markdown report to (over)write, relative to the workspace root.
        #[arg(long, default_value = soak::DEFAULT_OUTPUT)]
        output: PathBuf,
    },

    /// Fuzz the protocol parsers (monitor-protocols) with cargo-fuzz.
    #[command(
        long_about = "Fuzz the protocol parsers with libFuzzer, through cargo-fuzz \
        and the nightly toolchain (both installed if missing).\n\n\
        Each target in fuzz/fuzz_targets/ runs for --seconds from the seeds in \
        fuzz/corpus/<target>/; what it discovers goes to fuzz/target/corpus/<target>/. Fails \
        on the first crash, whose input is saved under fuzz/artifacts/<target>/."
    )]
    Fuzz {
        /// How long to run each target.
        #[arg(long, default_value_t = 60, value_name = "N",
            value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
}

/// `90s`, `10m`, `1h`.
fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is not a duration"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => anyhow::bail!("`{text}`: use s, m or h"),
    };
    Ok(std::time::Duration::from_secs(seconds))
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
        Cmd::Imports { rooms } => imports::check(rooms),
        Cmd::Bench(options) => bench::bench(&options),
        Cmd::BenchNetWorker { workload } => bench::net_worker(workload),
        Cmd::Image { tag, engine } => image::image(&image::Options {
            tag: &tag,
            engine: &engine,
        }),
        Cmd::Kernels(options) => kernels::kernels(&options),
        Cmd::KernelsGuest(options) => kernels::guest(&options),
        Cmd::Slo { input, output } => slo::slo(&input, output.as_deref()),
        Cmd::Soak {
            duration,
            sample_every,
            output,
        } => soak::soak(&soak::Options {
            duration: parse_duration(&duration)?,
            sample_every: parse_duration(&sample_every)?,
            output,
        }),
        Cmd::Fuzz { seconds } => fuzz::fuzz(seconds),
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
        let Cmd::Bench(options) = cli.command else {
            panic!("not bench")
        };
        assert_eq!((options.iterations, options.runs), (2_000_000, 7));
        assert_eq!(options.only, None);
        assert_eq!(options.output, PathBuf::from("docs/benchmarks.md"));
    }

    #[test]
    fn the_benchmark_reaches_its_network_worker() {
        let args = ["xtask", bench::WORKER_COMMAND, "conn", "--count", "5"];
        let Cmd::BenchNetWorker { workload } = Cli::try_parse_from(args).unwrap().command else {
            panic!("not the worker")
        };
        assert_eq!(workload, bench::Workload::Conn { count: 5 });
    }

    #[test]
    fn fuzz_runs_a_minute_by_default() {
        let cli = Cli::try_parse_from(["xtask", "fuzz"]).unwrap();
        let Cmd::Fuzz { seconds } = cli.command else {
            panic!("not fuzz")
        };
        assert_eq!(seconds, 60);
        assert!(Cli::try_parse_from(["xtask", "fuzz", "--seconds", "0"]).is_err());
    }

    #[test]
    fn kernels_defaults_and_suite_list() {
        let cli = Cli::try_parse_from(["xtask", "kernels"]).unwrap();
        let Cmd::Kernels(options) = cli.command else {
            panic!("not kernels")
        };
        assert_eq!(options.suites, kernels::Suite::ALL);
        assert_eq!(options.doc, PathBuf::from(kernels::DEFAULT_DOC));
        assert!(!options.no_host && !options.no_doc && !options.debug);
        let cli = Cli::try_parse_from(["xtask", "kernels", "--suites", "trixie,bullseye"]).unwrap();
        let Cmd::Kernels(options) = cli.command else {
            panic!("not kernels")
        };
        assert_eq!(
            options.suites,
            [kernels::Suite::Trixie, kernels::Suite::Bullseye]
        );
        assert!(Cli::try_parse_from(["xtask", "kernels", "--suites", "sid"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "kernels", "--no-doc", "--doc", "x.md"]).is_err());
    }

    #[test]
    fn the_matrix_reaches_its_guest_command() {
        let args = [
            "xtask",
            kernels::GUEST_COMMAND,
            "--out",
            "/o",
            "--agent",
            "/a",
            "--bins",
            "/b",
        ];
        let Cmd::KernelsGuest(options) = Cli::try_parse_from(args).unwrap().command else {
            panic!("not the guest")
        };
        assert_eq!(options.out, PathBuf::from("/o"));
    }

    #[test]
    fn bench_rejects_zero_runs() {
        assert!(Cli::try_parse_from(["xtask", "bench", "--runs", "0"]).is_err());
    }
}
