//! Saturation from the scheduler: how long each process's threads waited for a CPU once
//! runnable (woken, new, or their slice over while still runnable), and how long they ran.
//!
//! Raw tracepoints: `sched_wakeup(p)` and `sched_wakeup_new(p)` stamp the wait's start in the
//! woken thread's `THREAD_START` slot (its thread id read from `task_struct.pid`, offset
//! from BTF): an array store, no hashing. `sched_switch(preempt, prev, next, ..)` runs in
//! `prev`'s context, so `current` names the task leaving the CPU. The wait and the start of
//! the slice of the task switched in are kept per CPU and charged to its process when it
//! leaves, when `current` names it. Switches are tens of thousands a second per CPU: every
//! value is summed in per-CPU maps, nothing crosses a ring buffer.
//!
//! A task leaving the CPU still runnable (preempted, or its slice over: `preempt` is false
//! for those on the return to user mode, but their state is still TASK_RUNNING) waits from
//! then on. One going to sleep waits only once woken, and its wakeup stamps that; so from
//! 5.18, which passes the state it leaves in (`prev_state`), a sleeper's switch writes
//! nothing. Before 5.18 (`mon_sched_switch_any`) every task leaving is stamped, and a
//! sleeper's wakeup stamps it again before it can run.
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{Counter, Histogram, Owner, RUNNABLE_SHIFT, announced, hist};

use crate::{
    maps::{
        AGENT_TGID, CPU_TIME, PROCESS_STATE, RUNQ_LATENCY, SCHED_CPU, THREAD_START, is_excluded,
        per_cpu_entry,
    },
    sock::read,
};

// Offset (bytes) set at load from BTF; see `monitor_common::global::KERNEL_OFFSETS`.
#[unsafe(no_mangle)]
static OFF_TASK_PID: Global<u32> = Global::new(0);

#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn mon_sched_wakeup(ctx: RawTracePointContext) -> i32 {
    runnable(ctx.arg(0))
}

#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn mon_sched_wakeup_new(ctx: RawTracePointContext) -> i32 {
    runnable(ctx.arg(0))
}

/// The wait-start stamp for `now`; never 0, which means "not waiting".
#[inline(always)]
fn stamp(now: u64) -> u32 {
    ((now >> RUNNABLE_SHIFT) as u32).max(1)
}

/// Task `task` (its kernel address) is runnable from now on.
#[inline(always)]
fn runnable(task: u64) -> i32 {
    let Some(tid) = read::<u32>(task, &OFF_TASK_PID) else {
        return 0;
    };
    // SAFETY: no preconditions; a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(slot) = THREAD_START.get_ptr_mut(tid) {
        // SAFETY: pointer into an array map value; the scheduler probes alone write this
        // field, and a task is woken or switched on one CPU at a time.
        unsafe { (*slot).runnable_since = stamp(now) };
    }
    0
}

/// `sched_switch(preempt, prev, next, prev_state)` (5.18 on); refused where the tracepoint
/// has three arguments.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn mon_sched_switch(ctx: RawTracePointContext) -> i32 {
    let preempted = ctx.arg::<u64>(0) as u8 != 0;
    // TASK_RUNNING is 0; a task preempted while getting ready to sleep stays on the run
    // queue whatever its state says.
    let runnable = preempted || ctx.arg::<u64>(3) as u32 == 0;
    switch(ctx.arg(2), runnable)
}

/// `sched_switch(preempt, prev, next)` (before 5.18): the fallback.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn mon_sched_switch_any(ctx: RawTracePointContext) -> i32 {
    switch(ctx.arg(2), true)
}

/// The current task leaves the CPU for `next`; `runnable`: it may still be waiting to run
/// (not known to sleep).
#[inline(always)]
fn switch(next: u64, runnable: bool) -> i32 {
    // SAFETY: no preconditions; a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = SCHED_CPU.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot of a per-CPU array; switches on one CPU never overlap.
    let cpu = unsafe { &mut *cpu };
    // The task leaving the CPU (see the module's comment); the idle tasks (thread id 0 on
    // every CPU) are never stamped.
    let pid_tgid = bpf_get_current_pid_tgid();
    if pid_tgid as u32 != 0 {
        if runnable {
            if let Some(slot) = THREAD_START.get_ptr_mut(pid_tgid as u32) {
                // SAFETY: as in `runnable`.
                unsafe { (*slot).runnable_since = stamp(now) };
            }
        }
        if cpu.since_ns != 0 {
            charge(
                (pid_tgid >> 32) as u32,
                now.wrapping_sub(cpu.since_ns),
                cpu.waited_ns,
            );
        }
    }
    // The task switched in: its wait ends now, to be charged when it leaves.
    let mut since = 0;
    if let Some(tid) = read::<u32>(next, &OFF_TASK_PID).filter(|&tid| tid != 0) {
        if let Some(slot) = THREAD_START.get_ptr_mut(tid) {
            // SAFETY: as in `runnable`.
            unsafe {
                since = (*slot).runnable_since;
                (*slot).runnable_since = 0;
            }
        }
    }
    cpu.since_ns = now;
    // Both ends in the same truncated units (wrapping every 18 minutes).
    cpu.waited_ns = if since != 0 {
        u64::from(stamp(now).wrapping_sub(since)) << RUNNABLE_SHIFT
    } else {
        0
    };
    0
}

/// The current task's process ends (its generation is about to move on): charge the slice it
/// is in now to the generation that ran it, and stop the slice, so its last moments on the
/// CPU are not charged to the next generation (a process no event will name).
#[inline(always)]
pub fn process_ends(tgid: u32) {
    let Some(cpu) = SCHED_CPU.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU array; the task is running here, not switching.
    let cpu = unsafe { &mut *cpu };
    if cpu.since_ns != 0 {
        // SAFETY: no preconditions; a plain helper call.
        let now = unsafe { bpf_ktime_get_ns() };
        charge(tgid, now.wrapping_sub(cpu.since_ns), cpu.waited_ns);
    }
    cpu.since_ns = 0;
    cpu.waited_ns = 0;
}

/// Adds a slice of `ran_ns` on a CPU, after a run-queue wait of `waited_ns` (0: none seen),
/// to process `tgid`'s current incarnation.
#[inline(always)]
fn charge(tgid: u32, ran_ns: u64, waited_ns: u64) {
    if tgid == AGENT_TGID.load() {
        return;
    }
    let Some(state) = PROCESS_STATE.get(tgid) else {
        return;
    };
    // The dead process's last moments (its wait for the final switch, say) would otherwise
    // open a key for a generation no event will ever name.
    if state.announced == announced::ENDED {
        return;
    }
    let generation = state.generation;
    if is_excluded(tgid, generation) {
        return;
    }
    let owner = Owner { tgid, generation };
    if let Some(time) = per_cpu_entry(&CPU_TIME, &owner, 0u64, Counter::CpuTimeFull) {
        // SAFETY: this CPU's copy of a per-CPU hash value.
        unsafe { *time += ran_ns };
    }
    if waited_ns != 0 {
        if let Some(stats) = per_cpu_entry(
            &RUNQ_LATENCY,
            &owner,
            Histogram::ZERO,
            Counter::RunqLatencyFull,
        ) {
            // SAFETY: as above.
            let stats = unsafe { &mut *stats };
            if let Some(bucket) = stats.buckets.get_mut(hist::bucket(waited_ns)) {
                *bucket += 1;
            }
            stats.sum_ns += waited_ns;
        }
    }
}
