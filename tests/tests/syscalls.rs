//! Ground truth: a workload makes a known number of failing and slow syscalls under a unique
//! `comm`; the real agent, with the real probes in this kernel, must report exactly that.
use std::time::Duration;

use tests::{Agent, Scrape, eventually, run_as, unique_comm};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");
const DURATION: &str = "monitor_syscall_duration_seconds";
const ERRORS: &str = "monitor_syscall_errors_total";

const OPENAT_ENOENT: u64 = 37;
const CLOSE_EBADF: u64 = 23;
const NANOSLEEPS: u64 = 5;
const SLEEP_MS: u64 = 20;

fn workload_args() -> Vec<String> {
    [OPENAT_ENOENT, CLOSE_EBADF, NANOSLEEPS, SLEEP_MS].map(|n| n.to_string()).to_vec()
}

/// Scrapes until the workload's nanosleep series is there (its exit may still be in flight).
fn scrape_with(agent: &Agent, comm: &str) -> Scrape {
    eventually(Duration::from_secs(10), "the workload's series", || {
        let scrape = agent.scrape();
        let count = scrape.value(
            &format!("{DURATION}_count"),
            &[("comm", comm), ("syscall", "nanosleep")],
        )?;
        (count >= NANOSLEEPS as f64).then_some(scrape)
    })
}

/// Cumulative counts of a histogram series as (le, count), ascending.
fn buckets(scrape: &Scrape, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let name = format!("{DURATION}_bucket");
    let mut buckets: Vec<(f64, f64)> = scrape
        .matching(&name, labels)
        .map(|sample| {
            let le = &sample.labels["le"];
            (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, sample.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

#[test]
fn exact_counts_errors_and_latency_buckets_for_a_known_workload() {
    let agent = Agent::start(&[]);
    let comm = unique_comm("gtwl");
    run_as(&comm, WORKLOAD.as_ref(), &workload_args());
    let scrape = scrape_with(&agent, &comm);
    let comm = comm.as_str();

    let errors = |syscall, errno| {
        scrape.value(ERRORS, &[("comm", comm), ("syscall", syscall), ("errno", errno)])
    };
    assert_eq!(errors("openat", "ENOENT"), Some(OPENAT_ENOENT as f64), "{}", agent.log());
    assert_eq!(errors("close", "EBADF"), Some(CLOSE_EBADF as f64));
    let all_openat_errors: f64 =
        scrape.matching(ERRORS, &[("comm", comm), ("syscall", "openat")]).map(|s| s.value).sum();
    assert_eq!(all_openat_errors, OPENAT_ENOENT as f64, "no other openat failed");

    let sleep = [("comm", comm), ("syscall", "nanosleep")];
    let count = scrape.value(&format!("{DURATION}_count"), &sleep);
    assert_eq!(count, Some(NANOSLEEPS as f64));
    assert!(scrape.value(ERRORS, &sleep).is_none(), "no nanosleep failed");

    // All K sleeps in the one bucket whose bounds contain 20 ms, none below it.
    let buckets = buckets(&scrape, &sleep);
    let target = SLEEP_MS as f64 / 1000.0;
    let upper = buckets.iter().position(|&(le, _)| le >= target).expect("a bucket above 20 ms");
    assert!(upper > 0, "20 ms must not be in the first bucket");
    let (lower_le, below) = buckets[upper - 1];
    let (upper_le, at_or_below) = buckets[upper];
    assert!(lower_le < target && target <= upper_le);
    assert_eq!(below, 0.0, "no sleep finished in under {lower_le} s: {buckets:?}");
    assert_eq!(at_or_below, NANOSLEEPS as f64, "every sleep ≤ {upper_le} s: {buckets:?}");
    // Exactly the kernel's log2 bounds: 2^25 ns holds 20 ms.
    assert_eq!(upper_le, (1u64 << 25) as f64 / 1e9);
    let sum = scrape.value(&format!("{DURATION}_sum"), &sleep).unwrap();
    assert!(sum >= target * NANOSLEEPS as f64, "sum {sum} below {NANOSLEEPS} × 20 ms");

    assert_eq!(
        scrape.value("monitor_ringbuf_events_lost_total", &[("ringbuf", "process_events")]),
        Some(0.0)
    );
    for probe in ["mon_sys_enter", "mon_sys_exit", "mon_proc_exec"] {
        assert_eq!(scrape.value("monitor_probe_attached", &[("probe", probe)]), Some(1.0));
    }
    assert!(
        scrape.matching(DURATION, &[]).all(|s| !s.labels.contains_key("pid"))
            && !scrape.text.contains("pid=\""),
        "pid label is opt-in"
    );
}

#[test]
fn agent_does_not_record_itself() {
    let agent = Agent::start(&[]);
    // Scrapes make the agent read maps and write sockets: none of that may show up.
    for _ in 0..3 {
        agent.scrape();
    }
    let scrape = agent.scrape();
    assert_eq!(scrape.matching(&format!("{DURATION}_count"), &[("comm", "monitor-agent")]).count(), 0);
}

#[test]
fn pid_label_is_opt_in_and_names_the_process() {
    let agent = Agent::start(&["--labels", "pid"]);
    let comm = unique_comm("gtpid");
    let (pid, _) = run_as(&comm, WORKLOAD.as_ref(), &workload_args());
    let scrape = scrape_with(&agent, &comm);
    let pid = pid.to_string();
    assert_eq!(
        scrape.value(ERRORS, &[("comm", &comm), ("pid", &pid), ("syscall", "close")]),
        Some(CLOSE_EBADF as f64)
    );
}

#[test]
fn counters_survive_process_exit_then_expire_after_the_ttl() {
    let agent = Agent::start(&["--series.ttl", "2s", "--kernel.sweep-interval", "100ms"]);
    let comm = unique_comm("gtttl");
    // Two runs under one comm: the first is retired (its kernel entries freed) before the
    // second, and the counter must be the sum, not the last run's.
    run_as(&comm, WORKLOAD.as_ref(), &workload_args());
    std::thread::sleep(Duration::from_millis(500));
    run_as(&comm, WORKLOAD.as_ref(), &workload_args());
    let scrape = scrape_with(&agent, &comm);
    assert_eq!(
        scrape.value(ERRORS, &[("comm", &comm), ("syscall", "close")]),
        Some(2.0 * CLOSE_EBADF as f64)
    );
    eventually(Duration::from_secs(15), "the exited workload's series to expire", || {
        let scrape = agent.scrape();
        (scrape.matching(ERRORS, &[("comm", &comm)]).count() == 0).then_some(())
    });
    let expired = agent.scrape().value("monitor_series_expired_total", &[("family", ERRORS)]);
    assert!(expired.unwrap_or(0.0) >= 1.0);
}
