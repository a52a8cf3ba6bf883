//! The benchmark's workload: `syscall-loop N` times N `getppid` calls and prints the mean
//! nanoseconds per call, and nothing else, on stdout (`cargo xtask bench` parses it).
//!
//! getppid does almost no work in the kernel, so what is measured is the syscall path itself
//! plus whatever is hooked onto `sys_enter`/`sys_exit`.
use std::{hint::black_box, time::Instant};

use anyhow::{Context as _, Result, ensure};

fn main() -> Result<()> {
    let iterations = iterations()?;
    // Warm caches, TLB and branch predictors, and let freshly attached probes fault in
    // their maps, so the timed calls all see the steady state.
    getppid_calls(iterations / 10);
    let start = Instant::now();
    getppid_calls(iterations);
    let elapsed = start.elapsed();
    println!("{:.1}", elapsed.as_nanos() as f64 / iterations as f64);
    Ok(())
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
