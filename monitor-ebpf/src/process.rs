//! Process lifecycle: generation bumps, and exec/exit events for naming and clean-up.
//!
//! Raw tracepoints, so no tracefs and no record offsets: `sched_process_exec` and
//! `sched_process_exit` both run in the context of the task concerned, which gives its
//! TGID and comm through helpers. Only the exec'ing process's parent is read from
//! `task_struct`, at offsets from BTF, and only when they were found.
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{ThreadStart, announced, event_kind};

use crate::{
    maps::{PROCESS_STATE, THREAD_START, emit_process_event},
    oom::OFF_TASK_TGID,
    sock::read,
};

// Offset (bytes) set at load from BTF; see `monitor_common::global::KERNEL_OFFSETS`.
#[unsafe(no_mangle)]
static OFF_TASK_REAL_PARENT: Global<u32> = Global::new(0);

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn mon_proc_exec(_ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The new program starts a new generation: its syscalls must not add to the old name's.
    // The event names it, so it counts as announced.
    let generation = next_generation(tgid, announced::NAMED);
    emit_process_event(event_kind::EXEC, tgid, generation, parent_tgid());
    0
}

/// `current->real_parent->tgid`; 0 when the offsets are not known (the agent runs this
/// program even where BTF lacks them: the parent only decides folding).
#[inline(always)]
fn parent_tgid() -> u32 {
    if OFF_TASK_REAL_PARENT.load() == 0 || OFF_TASK_TGID.load() == 0 {
        return 0;
    }
    // SAFETY: no preconditions; the result is only used as an address for probe reads.
    let task = unsafe { bpf_get_current_task() };
    read::<u64>(task, &OFF_TASK_REAL_PARENT)
        .filter(|&parent| parent != 0)
        .and_then(|parent| read::<u32>(parent, &OFF_TASK_TGID))
        .unwrap_or(0)
}

/// `sched_process_exit(task, group_dead)` (6.16+): the generation ends with the last thread,
/// so no straggler thread can add to it afterwards.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn mon_proc_exit(ctx: RawTracePointContext) -> i32 {
    let group_dead: u64 = ctx.arg(1);
    process_exit(group_dead & 0xff != 0)
}

/// Older kernels pass no `group_dead` (attaching `mon_proc_exit` fails there): end the
/// generation with the leader. Threads outliving their leader then count under the next one.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn mon_proc_exit_leader(_ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    process_exit((pid_tgid >> 32) as u32 == pid_tgid as u32)
}

#[inline(always)]
fn process_exit(process_ends: bool) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // A thread that dies inside a syscall (exit_group, a fatal signal) never reaches
    // sys_exit: clear its slot so the next thread with this id does not inherit it.
    if let Some(slot) = THREAD_START.get_ptr_mut(pid_tgid as u32) {
        // SAFETY: pointer into an array map value, valid for the program's duration.
        unsafe { *slot = ThreadStart::default() };
    }
    if process_ends {
        let tgid = (pid_tgid >> 32) as u32;
        crate::sched::process_ends(tgid);
        let generation = PROCESS_STATE.get(tgid).map_or(0, |state| state.generation);
        emit_process_event(event_kind::EXIT, tgid, generation, 0);
        next_generation(tgid, announced::ENDED);
    }
    0
}

/// Bumps the generation of `tgid` and returns the new one.
#[inline(always)]
fn next_generation(tgid: u32, announced: u32) -> u32 {
    match PROCESS_STATE.get_ptr_mut(tgid) {
        // SAFETY: pointer into an array map value; exec and exit of one TGID are serialised.
        Some(state) => unsafe {
            (*state).generation = (*state).generation.wrapping_add(1);
            (*state).announced = announced;
            (*state).generation
        },
        None => 0,
    }
}
