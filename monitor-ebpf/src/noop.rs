//! Empty programs on the syscall and scheduler tracepoints: the cost floor of any hook there,
//! attached only by the benchmark (`cargo xtask bench`) to compare the real probes against.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn noop_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn noop_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The scheduler's: the floor of the run-queue and CPU-time probes (`mon_sched_*`).
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn noop_sched_switch(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn noop_sched_wakeup(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn noop_sched_wakeup_new(_ctx: RawTracePointContext) -> i32 {
    0
}
