//! Empty programs on the syscall tracepoints: the cost floor of any syscall hook, attached
//! only by the benchmark (`cargo xtask bench`) to compare the real probes against.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn noop_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn noop_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
