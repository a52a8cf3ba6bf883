//! CPU throttling against known ground truth: a busy process in a cgroup allowed 10 ms of CPU
//! per 100 ms period is held off the CPU for about 90% of the time, and the agent reports
//! exactly what the cgroup's own `cpu.stat` says.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tests::{Agent, Cgroup, eventually, spawn_named_with, unique_comm};

const SPIN: &str = env!("CARGO_BIN_EXE_spin");

/// What the kernel says the cgroup was throttled, in seconds.
fn throttled_seconds(cgroup: &Cgroup, v2: bool) -> f64 {
    let stat = std::fs::read_to_string(cgroup.dir.join("cpu.stat")).unwrap();
    let (field, per_second) = if v2 {
        ("throttled_usec", 1e6)
    } else {
        ("throttled_time", 1e9)
    };
    let value: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {stat}"));
    value as f64 / per_second
}

/// 10 ms per 100 ms and a process that never sleeps for 3 s: throttled about 2.7 s, and the
/// agent's counter equal to the cgroup's own figure.
#[test]
fn a_busy_process_under_a_cpu_quota_is_throttled_nine_tenths_of_the_time() {
    const SECONDS: f64 = 3.0;
    let agent = Agent::start(&[]);
    let comm = unique_comm("quota");
    let (cgroup, v2) = Cgroup::cpu_quota(&comm, 10_000, 100_000);
    let started = Instant::now();
    let spinner = spawn_named_with(&comm, SPIN.as_ref(), |command| {
        // On CPU 0 like the other spinners: the quota, not the CPU, holds it back. It would
        // spin on well past SECONDS; it is stopped then.
        command
            .args([(SECONDS + 60.0).to_string(), "0".into()])
            .stdout(Stdio::null());
        cgroup.join_at_exec(command);
    });
    // Stopped after SECONDS, not ended, so that it stays a running process of the cgroup
    // while the agent takes its last reading.
    let pid = spinner.id() as i32;
    std::thread::sleep(Duration::from_secs_f64(SECONDS).saturating_sub(started.elapsed()));
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    let truth = throttled_seconds(&cgroup, v2);
    let reported = eventually(Duration::from_secs(15), "the throttled time", || {
        let value = agent
            .scrape()
            .value("monitor_cpu_throttled_seconds_total", &[("comm", &comm)])?;
        ((value - truth).abs() < 1e-6).then_some(value)
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut spinner = spinner;
    let _ = spinner.wait();
    eprintln!("throttled {reported} s of {SECONDS} s (the cgroup says {truth} s)");
    // 9 of every 10 periods' time, give or take the period the process started in and the
    // one it was stopped in, and scheduling slack on a loaded machine: 0.7–1.0 of the time.
    assert!(
        (0.7 * SECONDS..=SECONDS).contains(&reported),
        "throttled {reported} s of {SECONDS} s"
    );
    drop(cgroup);
}
