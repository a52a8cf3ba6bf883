//! What the agent costs a Prometheus: the series budget counts Prometheus series, latency
//! histograms are kept for the syscalls that block, and short-lived programs of a churning
//! parent share one set of series. Each against a shell loop with a known ground truth.
use std::{collections::BTreeMap, process::Command, time::Duration};

use tests::{Agent, Scrape, TempDir, eventually};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");
const ERRORS: &str = "monitor_syscall_errors_total";
const CALLS: &str = "monitor_syscalls_total";
const DURATION_COUNT: &str = "monitor_syscall_duration_seconds_count";
const SHORT_LIVED: &str = "[short-lived]";

/// The loop's programs: each makes this many failing openat(2) and close(2).
const OPENAT_ENOENT: u64 = 41;
const CLOSE_EBADF: u64 = 3;
/// Distinct program names the loop's parent keeps, and how many it runs.
const PLACES: usize = 4;
const JOBS: usize = 12;

fn openat_errors(scrape: &Scrape, comm: &str) -> Option<f64> {
    scrape.value(
        ERRORS,
        &[("comm", comm), ("syscall", "openat"), ("errno", "ENOENT")],
    )
}

#[test]
fn short_lived_programs_beyond_a_parents_names_share_one_series_set() {
    let agent = Agent::start(&[
        "--processes.names-per-parent",
        &PLACES.to_string(),
        "--processes.short-lived",
        "2s",
        "--kernel.sweep-interval",
        "1s",
    ]);
    // One shell runs JOBS short programs with distinct names, then one more that lives 3.6 s:
    // past its parent's places too, but long-lived, so it keeps its name.
    let dir = TempDir::new("series-cost");
    let prefix = format!("sc{}-", std::process::id() % 10_000);
    for i in 1..=JOBS + 1 {
        std::os::unix::fs::symlink(WORKLOAD, dir.path().join(format!("{prefix}{i}"))).unwrap();
    }
    let short = format!("{OPENAT_ENOENT} {CLOSE_EBADF} 1 1");
    let long = format!("{OPENAT_ENOENT} {CLOSE_EBADF} 4 900");
    // Brace expansion, not $(seq): a command substitution would run `seq` under the same
    // parent and take a place. `exit` last, so bash does not exec the last program in place.
    let script = format!(
        "for i in {{1..{JOBS}}}; do \"$0/{prefix}$i\" {short} || exit 1; done; \
         \"$0/{prefix}{last}\" {long} || exit 1; exit 0",
        last = JOBS + 1
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .arg(dir.path())
        // The dynamic loader's failing openat(2)s through cargo's library path would count.
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(output.status.success(), "{script}: {output:?}");
    let long_comm = format!("{prefix}{}", JOBS + 1);
    let folded = (JOBS - PLACES) as f64 * OPENAT_ENOENT as f64;
    let scrape = eventually(Duration::from_secs(15), "every program's series", || {
        let scrape = agent.scrape();
        let complete = openat_errors(&scrape, &long_comm).is_some()
            && openat_errors(&scrape, SHORT_LIVED) == Some(folded)
            && (1..=PLACES).all(|i| openat_errors(&scrape, &format!("{prefix}{i}")).is_some());
        complete.then_some(scrape)
    });
    for i in 1..=PLACES {
        let comm = format!("{prefix}{i}");
        assert_eq!(
            openat_errors(&scrape, &comm),
            Some(OPENAT_ENOENT as f64),
            "{comm}"
        );
    }
    for i in PLACES + 1..=JOBS {
        let comm = format!("{prefix}{i}");
        assert_eq!(
            scrape.matching(CALLS, &[("comm", &comm)]).count(),
            0,
            "{comm} is folded"
        );
    }
    assert_eq!(
        openat_errors(&scrape, &long_comm),
        Some(OPENAT_ENOENT as f64)
    );
    // Folded with its comm, the service a host process is given (its comm) folds too.
    let folded_sample = scrape
        .matching(ERRORS, &[("comm", SHORT_LIVED), ("syscall", "openat")])
        .next()
        .unwrap();
    assert_eq!(folded_sample.labels["service"], SHORT_LIVED);
    assert_eq!(
        scrape.value(
            ERRORS,
            &[
                ("comm", SHORT_LIVED),
                ("syscall", "close"),
                ("errno", "EBADF")
            ]
        ),
        Some((JOBS - PLACES) as f64 * CLOSE_EBADF as f64)
    );

    // Histograms by default for the calls that block (openat, nanosleep), not for close;
    // every call counted either way.
    let first = format!("{prefix}1");
    let of = |syscall| [("comm", first.as_str()), ("syscall", syscall)];
    assert_eq!(scrape.value(DURATION_COUNT, &of("nanosleep")), Some(1.0));
    let openat_calls = scrape.value(CALLS, &of("openat")).unwrap();
    assert!(openat_calls >= OPENAT_ENOENT as f64);
    assert_eq!(
        scrape.value(DURATION_COUNT, &of("openat")),
        Some(openat_calls)
    );
    assert!(scrape.value(CALLS, &of("close")).unwrap() >= CLOSE_EBADF as f64);
    assert_eq!(scrape.value(DURATION_COUNT, &of("close")), None);

    every_family_counts_its_exported_series(&scrape);
}

/// `monitor_series{family}` is the number of Prometheus series the family exports in the
/// same scrape: each bucket, `_sum` and `_count` of a histogram counted.
fn every_family_counts_its_exported_series(scrape: &Scrape) {
    let mut exported: BTreeMap<&str, f64> = BTreeMap::new();
    let counted: Vec<(&str, f64)> = scrape
        .matching("monitor_series", &[])
        .map(|sample| (sample.labels["family"].as_str(), sample.value))
        .collect();
    assert!(counted.len() > 10, "{counted:?}");
    for (family, _) in &counted {
        let series = scrape
            .samples
            .iter()
            .filter(|sample| {
                sample.name == *family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| sample.name == format!("{family}{suffix}"))
            })
            .count();
        exported.insert(family, series as f64);
    }
    for (family, value) in counted {
        assert_eq!(
            value, exported[family],
            "monitor_series{{family=\"{family}\"}}"
        );
    }
}

/// The names of the kernel threads running now that carry an instance number
/// (`ksoftirqd/0`, `kworker/u8:3-events_unbound`): PF_KTHREAD in `/proc/<pid>/stat`.
fn numbered_kernel_threads() -> std::collections::BTreeSet<String> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let flags: u64 = stat[close + 1..]
            .split_whitespace()
            .nth(6)
            .and_then(|flags| flags.parse().ok())
            .unwrap_or(0);
        let name = &stat[open + 1..close];
        if flags & PF_KTHREAD != 0 && name.bytes().any(|byte| byte.is_ascii_digit()) {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn kernel_threads_are_counted_without_their_instance_numbers() {
    const WAITS: &str = "monitor_runqueue_latency_seconds_count";
    let agent = Agent::start(&["--kernel.sweep-interval", "1s"]);
    // Kernel workers run every few seconds on any machine: their waits are in the scrape.
    let scrape = eventually(Duration::from_secs(20), "a kernel worker's waits", || {
        let scrape = agent.scrape();
        let worker = scrape.matching(WAITS, &[]).any(|sample| {
            let comm = &sample.labels["comm"];
            comm.starts_with("kworker/") && comm.contains('*')
        });
        worker.then_some(scrape)
    });
    let numbered = numbered_kernel_threads();
    assert!(
        !numbered.is_empty(),
        "no numbered kernel thread on this machine"
    );
    let named: Vec<&String> = scrape
        .samples
        .iter()
        .filter_map(|sample| sample.labels.get("comm"))
        .filter(|comm| numbered.contains(*comm))
        .collect();
    assert!(
        named.is_empty(),
        "kernel threads under their numbers: {named:?}"
    );
}

#[test]
fn every_syscall_gets_a_histogram_when_asked() {
    let agent = Agent::start(&["--syscalls.histograms", "all"]);
    let comm = tests::unique_comm("hsall");
    tests::run_as(
        &comm,
        WORKLOAD.as_ref(),
        &["1", &CLOSE_EBADF.to_string(), "1", "1"].map(String::from),
    );
    let of = [("comm", comm.as_str()), ("syscall", "close")];
    let scrape = eventually(Duration::from_secs(10), "the close histogram", || {
        let scrape = agent.scrape();
        scrape.value(DURATION_COUNT, &of).map(|_| scrape)
    });
    assert_eq!(scrape.value(DURATION_COUNT, &of), scrape.value(CALLS, &of));
}

#[test]
fn a_bad_syscall_list_is_a_usage_error() {
    let output = Command::new(tests::agent_bin())
        .args(["--syscalls.histograms", "blocking,reed"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`reed` is not a syscall"), "{stderr}");
}
