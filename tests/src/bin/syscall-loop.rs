//! The benchmark's workload: `syscall-loop N` times N `getppid` calls in batches and prints
//! the nanoseconds per call of the fastest batch, and nothing else, on stdout (`cargo xtask
//! bench` parses it).
//!
//! getppid does almost no work in the kernel, so what is measured is the syscall path itself
//! plus whatever is hooked onto `sys_enter`/`sys_exit`. On a virtual machine, steal time and
//! host interrupts land on some batches and not others; the fastest batch is the one least
//! disturbed, which is what the hook costs. The loop stays on one CPU so the per-CPU maps
//! and caches it warms are the ones it uses.
use std::{hint::black_box, time::Instant};

use anyhow::{Context as _, Result, ensure};

fn main() -> Result<()> {
    let iterations = iterations()?;
    pin_to_last_cpu();
    // Warm caches, TLB and branch predictors, and let freshly attached probes fault in
    // their maps, so the timed calls all see the steady state.
    getppid_calls(iterations / 10);
    let batch = (iterations / BATCHES).max(1);
    let fastest = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            getppid_calls(batch);
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!("{fastest:.1}");
    Ok(())
}

const BATCHES: u64 = 20;

/// Best effort: an unpinned loop is still a valid, noisier measurement.
fn pin_to_last_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it for cpus < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn iterations() -> Result<u64> {
    let arg = std::env::args()
        .nth(1)
        .context("usage: syscall-loop <iterations>")?;
    let iterations: u64 = arg
        .parse()
        .with_context(|| format!("iterations must be a whole number, not {arg:?}"))?;
    ensure!(iterations > 0, "iterations must be at least 1");
    Ok(iterations)
}

fn getppid_calls(count: u64) {
    for _ in 0..count {
        // The raw syscall rather than libc's getppid(): no libc version may answer it from
        // a cache without entering the kernel.
        // SAFETY: getppid takes no arguments and cannot fail.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
}
