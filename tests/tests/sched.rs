//! Saturation from the scheduler, against known ground truth: CPU-bound processes sharing
//! one CPU wait for it exactly as long as the others run. Each spinner reports what it used
//! (`CLOCK_PROCESS_CPUTIME_ID`) and how long it lived: CPU time is its own ground truth, and
//! as it never sleeps, whatever of its life was not CPU time was waiting for a CPU.
use std::{process::Stdio, time::Duration};

use tests::{Agent, eventually, spawn_named_with, unique_comm};

const SPIN: &str = env!("CARGO_BIN_EXE_spin");

/// Runs `count` spinners as `comm` on CPU `cpu` for `seconds`; the sum of their own CPU
/// seconds and of their lifetimes.
fn spin(comm: &str, count: usize, cpu: usize, seconds: f64) -> (f64, f64) {
    let spinners: Vec<_> = (0..count)
        .map(|_| {
            spawn_named_with(comm, SPIN.as_ref(), |command| {
                command
                    .args([seconds.to_string(), cpu.to_string()])
                    .stdout(Stdio::piped());
            })
        })
        .collect();
    let (mut cpu_seconds, mut lived) = (0.0, 0.0);
    for spinner in spinners {
        let output = spinner.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
        cpu_seconds += fields.next().unwrap();
        lived += fields.next().unwrap();
    }
    (cpu_seconds, lived)
}

/// The agent's CPU seconds, total wait and wait count for `comm`, once both are in.
fn reported(agent: &Agent, comm: &str, at_least_cpu: f64) -> (f64, f64, f64) {
    eventually(Duration::from_secs(10), "the spinners' CPU time", || {
        let scrape = agent.scrape();
        let cpu = scrape.sum("monitor_cpu_seconds_total", &[("comm", comm)]);
        let waited = scrape.sum("monitor_runqueue_latency_seconds_sum", &[("comm", comm)]);
        let waits = scrape.sum("monitor_runqueue_latency_seconds_count", &[("comm", comm)]);
        (cpu >= at_least_cpu).then_some((cpu, waited, waits))
    })
}

/// Two spinners pinned to one CPU for `T` seconds: each runs part of the time and waits
/// while the other (or anything else scheduled there) runs. The agent's CPU time must match
/// the spinners' own to 5% (slices are charged at each switch and at exit, nothing is
/// sampled); their waits must match their lives minus their CPU time to 10% (the start-up,
/// before the loop, also has a few short waits and sleeps).
#[test]
fn two_spinners_on_one_cpu_run_and_wait_for_as_long_as_they_share_it() {
    const T: f64 = 3.0;
    let agent = Agent::start(&[]);
    let comm = unique_comm("spin");
    // The last CPU: the test harness runs wherever it likes.
    let last = std::thread::available_parallelism().unwrap().get() - 1;
    let (used, lived) = spin(&comm, 2, last, T);
    // Sharing one CPU, together they used about one CPU's worth of their time.
    assert!(used > 0.5 * T && used <= 1.05 * T, "spinners used {used} s");
    let (cpu_seconds, waited, waits) = reported(&agent, &comm, 0.9 * used);
    assert!(
        (cpu_seconds - used).abs() <= 0.05 * used,
        "CPU time {cpu_seconds} s, the spinners used {used} s"
    );
    let truth = lived - used;
    assert!(
        (waited - truth).abs() <= 0.10 * truth,
        "run-queue wait {waited} s, the spinners waited {truth} s ({lived} s lived)"
    );
    // Time slices of a few milliseconds: hundreds of waits.
    assert!(waits >= 100.0, "{waits} waits");
    // A lone spinner on a CPU of its own (the first): runs nearly all its life, and its
    // waits are the little the other tasks of that CPU take.
    let alone = unique_comm("solo");
    let (used, lived) = spin(&alone, 1, 0, T);
    let (cpu_seconds, waited, _) = reported(&agent, &alone, 0.9 * used);
    assert!(
        (cpu_seconds - used).abs() <= 0.05 * used,
        "CPU time {cpu_seconds} s, the spinner used {used} s"
    );
    assert!(
        waited <= (lived - used) + 0.05 * T,
        "a lone spinner waited {waited} s, out of {} s not on a CPU",
        lived - used
    );
}
