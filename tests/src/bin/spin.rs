//! `spin SECONDS CPU`: burns CPU on CPU number `CPU` until `SECONDS` of wall time have
//! passed, making no system call in the loop: the scheduler tests' CPU-bound workload. Prints
//! its own ground truth: the CPU seconds it used, the wall seconds it lived (from `main`),
//! and the seconds the kernel itself says it waited for a CPU since it was forked
//! (`/proc/self/schedstat`'s run_delay; 0 where the kernel keeps no such figure).
use std::time::{Duration, Instant};

fn main() {
    let born = Instant::now();
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args
        .next()
        .and_then(|text| text.parse().ok())
        .expect("usage: spin SECONDS CPU");
    let cpu: usize = args
        .next()
        .and_then(|text| text.parse().ok())
        .expect("usage: spin SECONDS CPU");
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get a
    // pointer to it and its size, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut spins: u64 = 0;
    while Instant::now() < deadline {
        // Instant::now is a vDSO call, no system call; a few thousand iterations between.
        for _ in 0..4096 {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
    std::hint::black_box(spins);
    println!(
        "{} {} {}",
        cpu_seconds(),
        born.elapsed().as_secs_f64(),
        run_delay_seconds()
    );
}

/// `/proc/self/schedstat`: "CPU-ns run-delay-ns timeslices"; all zero when the kernel keeps
/// no scheduler statistics (CONFIG_SCHED_INFO off).
fn run_delay_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/schedstat").unwrap_or_default();
    let delay: u64 = stat
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    delay as f64 / 1e9
}

/// CPU time this process used so far (all its threads; it has one).
fn cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec the call writes.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(ok, 0, "clock_gettime");
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}
