//! Memory saturation: processes the OOM killer chose, counted under the victim's process
//! incarnation (`OOM_KILLS`), from the raw tracepoint `mark_victim`.
//!
//! `mark_victim` passes the victim's task and uid on newer kernels (6.1 and later in the
//! matrix) and only its pid on older ones (5.10): `mon_oom_victim` reads the second argument,
//! so attaching it fails where there is none, and `mon_oom_victim_pid` runs there instead.
use aya_ebpf::{
    Global, bindings::BPF_NOEXIST, macros::raw_tracepoint, programs::RawTracePointContext,
};
use monitor_common::{Counter, Owner};

use crate::{
    maps::{AGENT_TGID, OOM_KILLS, PROCESS_STATE, bump},
    sock::read,
};

// Offset (bytes) set at load from BTF; see `monitor_common::global::KERNEL_OFFSETS`.
#[unsafe(no_mangle)]
pub(crate) static OFF_TASK_TGID: Global<u32> = Global::new(0);

const EEXIST: i64 = 17;

/// `mark_victim(task, uid)`.
#[raw_tracepoint(tracepoint = "mark_victim")]
pub fn mon_oom_victim(ctx: RawTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let uid: u64 = ctx.arg(1);
    // The uid is not needed; reading it is what keeps this program off kernels without it.
    if uid == u64::MAX {
        return 0;
    }
    if let Some(tgid) = read::<u32>(task, &OFF_TASK_TGID) {
        count(tgid);
    }
    0
}

/// `mark_victim(pid)`: the victim is a process's task chosen by the OOM killer, whose pid is
/// its process's (the thread-group leader's) in all but rare cases.
#[raw_tracepoint(tracepoint = "mark_victim")]
pub fn mon_oom_victim_pid(ctx: RawTracePointContext) -> i32 {
    let pid: u64 = ctx.arg(0);
    count(pid as u32);
    0
}

#[inline(always)]
fn count(tgid: u32) {
    if tgid == 0 || tgid == AGENT_TGID.load() {
        return;
    }
    // The victim still runs: its generation is the current one (it ends at its exit).
    let generation = PROCESS_STATE.get(tgid).map_or(0, |state| state.generation);
    let owner = Owner { tgid, generation };
    if let Some(kills) = OOM_KILLS.get_ptr_mut(owner) {
        // SAFETY: this CPU's copy of a per-CPU hash value.
        unsafe { *kills += 1 };
        return;
    }
    match OOM_KILLS.insert(owner, 1u64, BPF_NOEXIST.into()) {
        Ok(()) => {}
        Err(err) if i64::from(err) == -EEXIST => {
            if let Some(kills) = OOM_KILLS.get_ptr_mut(owner) {
                // SAFETY: as above.
                unsafe { *kills += 1 };
            }
        }
        Err(_) => bump(Counter::OomKillsFull),
    }
}
