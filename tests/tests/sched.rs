//! Saturation from the scheduler, against known ground truth: CPU-bound processes sharing
//! one CPU wait for it exactly as long as the others run.
use std::time::Duration;

use tests::{Agent, eventually, spawn_named_with, unique_comm};

const SPIN: &str = env!("CARGO_BIN_EXE_spin");

/// Two CPU-bound processes pinned to the same CPU for `T` seconds of wall time: each runs
/// about half of it and waits the other half, so together they ran for about `T` and waited
/// for about `T`. The CPU also serves whatever else is scheduled there (the agent, kernel
/// threads, the test itself), which takes from both sides: 15% is the tolerance, far below
/// what a wrong unit, a missing direction or a double count would give (×2, ×0.5, 0).
#[test]
fn two_spinners_on_one_cpu_run_and_wait_for_as_long_as_they_share_it() {
    const T: f64 = 3.0;
    let agent = Agent::start(&[]);
    let comm = unique_comm("spin");
    // The last CPU: the test harness runs wherever it likes.
    let cpu = (std::thread::available_parallelism().unwrap().get() - 1).to_string();
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            spawn_named_with(&comm, SPIN.as_ref(), |command| {
                command
                    .args([T.to_string(), cpu.clone()])
                    .stdout(std::process::Stdio::null());
            })
        })
        .collect();
    for mut spinner in spinners {
        assert!(spinner.wait().unwrap().success());
    }
    let (cpu_seconds, waited, waits) = eventually(
        Duration::from_secs(10),
        "the spinners' CPU time and waits",
        || {
            let scrape = agent.scrape();
            let cpu = scrape.sum("monitor_cpu_seconds_total", &[("comm", &comm)]);
            let waited = scrape.sum("monitor_runqueue_latency_seconds_sum", &[("comm", &comm)]);
            let waits = scrape.sum("monitor_runqueue_latency_seconds_count", &[("comm", &comm)]);
            // Both exited: their counts are final once both are in.
            (cpu > 0.5 * T && waited > 0.5 * T).then_some((cpu, waited, waits))
        },
    );
    assert!(
        (cpu_seconds - T).abs() <= 0.15 * T,
        "CPU time {cpu_seconds} s, expected {T} s ± 15%"
    );
    assert!(
        (waited - T).abs() <= 0.15 * T,
        "run-queue wait {waited} s, expected {T} s ± 15%"
    );
    // Time slices of a few milliseconds: hundreds of waits, each far below a second.
    assert!(waits >= 100.0, "{waits} waits");
    // A lone spinner on a CPU of its own (the other one): runs T, waits next to nothing.
    let alone = unique_comm("solo");
    let other_cpu = "0".to_owned();
    let mut solo = spawn_named_with(&alone, SPIN.as_ref(), |command| {
        command
            .args([T.to_string(), other_cpu])
            .stdout(std::process::Stdio::null());
    });
    assert!(solo.wait().unwrap().success());
    let (ran, waited) = eventually(Duration::from_secs(10), "the lone spinner", || {
        let scrape = agent.scrape();
        let ran = scrape.sum("monitor_cpu_seconds_total", &[("comm", &alone)]);
        let waited = scrape.sum("monitor_runqueue_latency_seconds_sum", &[("comm", &alone)]);
        (ran > 0.5 * T).then_some((ran, waited))
    });
    assert!(
        (ran - T).abs() <= 0.15 * T,
        "CPU time {ran} s, expected {T} s"
    );
    assert!(waited < 0.15 * T, "a lone spinner waited {waited} s");
}
