//! Ground truth: a workload makes a known number of failing and slow syscalls under a unique
//! `comm`; the real agent, with the real probes in this kernel, must report exactly that.
use std::time::Duration;

use tests::{
    Agent, eventually,
    ground_truth::{self, CLOSE_EBADF},
    run_as, unique_comm,
};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");
const DURATION: &str = "monitor_syscall_duration_seconds";
const ERRORS: &str = "monitor_syscall_errors_total";

#[test]
fn exact_counts_errors_and_latency_buckets_for_a_known_workload() {
    let agent = Agent::start(&[]);
    let scrape = ground_truth::run_and_check(&agent, &unique_comm("gtwl"), WORKLOAD.as_ref());
    for probe in ["mon_sys_enter", "mon_sys_exit", "mon_proc_exec"] {
        assert_eq!(
            scrape.value("monitor_probe_attached", &[("probe", probe)]),
            Some(1.0)
        );
    }
    assert!(
        scrape
            .matching(DURATION, &[])
            .all(|s| !s.labels.contains_key("pid"))
            && !scrape.text.contains("pid=\""),
        "pid label is opt-in"
    );
}

#[test]
fn agent_does_not_record_itself() {
    // By PID: other tests' agents run at the same time under the same comm, and each records
    // the others (one agent per host is the deployment; only itself is excluded).
    let agent = Agent::start(&["--labels", "pid"]);
    // Scrapes make the agent read maps and write sockets: none of that may show up.
    for _ in 0..3 {
        agent.scrape();
    }
    // Positive control in the same scrape: a workload's exact counts, under its own pid, so
    // an agent that recorded nothing at all cannot pass.
    let comm = unique_comm("gtself");
    let scrape = ground_truth::run_and_check(&agent, &comm, WORKLOAD.as_ref());
    assert!(
        scrape
            .matching(ERRORS, &[("comm", &comm)])
            .all(|sample| sample.labels.get("pid").is_some_and(|pid| !pid.is_empty())),
        "the workload's series carry its pid"
    );
    let pid = agent.pid().to_string();
    let own: Vec<_> = scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("pid") == Some(&pid))
        .collect();
    assert!(
        own.is_empty(),
        "the agent's own activity was recorded: {own:?}"
    );
}

#[test]
fn pid_label_is_opt_in_and_names_the_process() {
    let agent = Agent::start(&["--labels", "pid"]);
    let comm = unique_comm("gtpid");
    let (pid, _) = run_as(&comm, WORKLOAD.as_ref(), &ground_truth::args());
    let scrape = ground_truth::scrape_when_reported(&agent, &comm);
    let pid = pid.to_string();
    assert_eq!(
        scrape.value(
            ERRORS,
            &[("comm", &comm), ("pid", &pid), ("syscall", "close")]
        ),
        Some(CLOSE_EBADF as f64)
    );
}

#[test]
fn counters_survive_process_exit_then_expire_after_the_ttl() {
    let agent = Agent::start(&["--series.ttl", "2s", "--kernel.sweep-interval", "100ms"]);
    let comm = unique_comm("gtttl");
    // Two runs under one comm: the first is retired (its kernel entries freed) before the
    // second, and the counter must be the sum, not the last run's.
    run_as(&comm, WORKLOAD.as_ref(), &ground_truth::args());
    std::thread::sleep(Duration::from_millis(500));
    run_as(&comm, WORKLOAD.as_ref(), &ground_truth::args());
    let scrape = ground_truth::scrape_when_reported(&agent, &comm);
    assert_eq!(
        scrape.value(ERRORS, &[("comm", &comm), ("syscall", "close")]),
        Some(2.0 * CLOSE_EBADF as f64)
    );
    eventually(
        Duration::from_secs(15),
        "the exited workload's series to expire",
        || {
            let scrape = agent.scrape();
            (scrape.matching(ERRORS, &[("comm", &comm)]).count() == 0).then_some(())
        },
    );
    let expired = agent
        .scrape()
        .value("monitor_series_expired_total", &[("family", ERRORS)]);
    assert!(expired.unwrap_or(0.0) >= 1.0);
}
