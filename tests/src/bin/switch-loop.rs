//! The benchmark's context-switch workload: `switch-loop N` passes a byte back and forth N
//! times between two threads over two pipes, both threads on one CPU, so that every pass is a
//! wakeup and a context switch. Prints the nanoseconds per round trip (two switches, two
//! wakeups, four pipe system calls) of its fastest batch, and nothing else, on stdout (`cargo
//! xtask bench` parses it). The fastest batch, as in `syscall-loop`: on a virtual machine it
//! is the one least disturbed by steal time.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::fd::FromRawFd as _,
    time::Instant,
};

use anyhow::{Context as _, Result, ensure};

const BATCHES: u64 = 20;

fn main() -> Result<()> {
    let arg = std::env::args()
        .nth(1)
        .context("usage: switch-loop <round trips>")?;
    let trips: u64 = arg
        .parse()
        .with_context(|| format!("round trips must be a whole number, not {arg:?}"))?;
    ensure!(trips > 0, "round trips must be at least 1");
    let (mut ping_out, mut ping_in) = pipe()?;
    let (mut pong_out, mut pong_in) = pipe()?;
    let cpu = pin_to_last_cpu(None);
    let echo = std::thread::spawn(move || {
        pin_to_last_cpu(Some(cpu));
        let mut byte = [0u8; 1];
        while ping_out.read_exact(&mut byte).is_ok() {
            if pong_in.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let mut round_trips = |count: u64| -> Result<()> {
        let mut byte = [7u8; 1];
        for _ in 0..count {
            ping_in.write_all(&byte)?;
            pong_out.read_exact(&mut byte)?;
        }
        Ok(())
    };
    round_trips(trips / 10)?;
    let batch = (trips / BATCHES).max(1);
    let mut fastest = f64::INFINITY;
    for _ in 0..BATCHES {
        let start = Instant::now();
        round_trips(batch)?;
        fastest = fastest.min(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    drop(ping_in);
    echo.join().expect("the echo thread panicked");
    println!("{fastest:.1}");
    Ok(())
}

/// (read end, write end).
fn pipe() -> Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into a two-element array.
    ensure!(
        unsafe { libc::pipe(fds.as_mut_ptr()) } == 0,
        "pipe: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Pins the calling thread to `cpu`, or to the last CPU; returns the CPU. Best effort: an
/// unpinned pair still switches, with wakeups across CPUs instead.
fn pin_to_last_cpu(cpu: Option<usize>) -> usize {
    let cpu =
        cpu.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) - 1);
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
    cpu
}
