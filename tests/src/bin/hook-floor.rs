//! The benchmark's floor: attaches the monitor's empty programs to the `sys_enter` and
//! `sys_exit` raw tracepoints, the least any per-syscall hook can cost, and to the scheduler's
//! `sched_switch`, `sched_wakeup` and `sched_wakeup_new`, the least any per-switch hook can
//! cost (a workload that does not switch never runs them). Prints `ready` once all are
//! attached, then holds them until stdin reaches EOF or the process
//! is killed (SIGTERM/SIGKILL), when the kernel detaches them.
use std::io::{self, Write as _};

use anyhow::{Context as _, Result};
use aya::{Ebpf, EbpfLoader, programs::RawTracePoint};
use monitor_common::program::{
    NOOP_SCHED_SWITCH, NOOP_SCHED_WAKEUP, NOOP_SCHED_WAKEUP_NEW, NOOP_SYS_ENTER, NOOP_SYS_EXIT,
};

fn main() -> Result<()> {
    raise_memlock_limit();
    // The agent's maps come along with the object at their default sizes; the empty
    // programs never touch them.
    let mut ebpf = EbpfLoader::new()
        .load(monitor_agent::probes::object())
        .context("loading the monitor's eBPF object (are you root?)")?;
    for (program, tracepoint) in [
        (NOOP_SYS_ENTER, "sys_enter"),
        (NOOP_SYS_EXIT, "sys_exit"),
        (NOOP_SCHED_SWITCH, "sched_switch"),
        (NOOP_SCHED_WAKEUP, "sched_wakeup"),
        (NOOP_SCHED_WAKEUP_NEW, "sched_wakeup_new"),
    ] {
        attach(&mut ebpf, program, tracepoint)?;
    }

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ready").context("writing to stdout")?;
    stdout.flush().context("flushing stdout")?;

    // Waiting on stdin rather than forever: when the benchmark that holds our stdin dies,
    // EOF arrives and the hooks go with us instead of lingering attached.
    io::copy(&mut io::stdin().lock(), &mut io::sink()).context("reading stdin")?;
    drop(ebpf);
    Ok(())
}

fn attach(ebpf: &mut Ebpf, program: &str, tracepoint: &str) -> Result<()> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {program} is not a raw tracepoint"))?;
    prog.load().with_context(|| format!("loading {program}"))?;
    prog.attach(tracepoint)
        .with_context(|| format!("attaching {program} to {tracepoint}"))?;
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it. Best
/// effort: if it fails, loading reports the real problem.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: passes a valid, initialised rlimit by pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
