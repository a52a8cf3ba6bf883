//! The wire contract between the eBPF probes (`monitor-ebpf`) and the agent (`monitor-agent`).
//!
//! Everything that crosses the kernel/user boundary is defined here once: map and program
//! names, map key and value layouts, ring-buffer records and the histogram bucket scheme.
//! Layout rules: `#[repr(C)]`, fixed-width integers, explicit padding, no `bool` or Rust
//! `enum` on the wire, and a compile-time size check per type.
#![no_std]

/// Program names (the Rust function names in `monitor-ebpf`, which aya looks up).
pub mod program {
    pub const SYS_ENTER: &str = "mon_sys_enter";
    pub const SYS_EXIT: &str = "mon_sys_exit";
    pub const PROCESS_EXEC: &str = "mon_proc_exec";
    pub const PROCESS_EXIT: &str = "mon_proc_exit";
    /// Fallback for kernels whose `sched_process_exit` lacks `group_dead` (before 6.16).
    pub const PROCESS_EXIT_LEADER: &str = "mon_proc_exit_leader";
    /// Empty hooks on the same tracepoints: the benchmark's floor, never attached by the agent.
    pub const NOOP_SYS_ENTER: &str = "noop_sys_enter";
    pub const NOOP_SYS_EXIT: &str = "noop_sys_exit";
}

/// Map names (the `static` names in `monitor-ebpf`).
pub mod map {
    pub const THREAD_START: &str = "THREAD_START";
    pub const PROCESS_STATE: &str = "PROCESS_STATE";
    pub const SYSCALL_STATS: &str = "SYSCALL_STATS";
    pub const SYSCALL_ERRORS: &str = "SYSCALL_ERRORS";
    pub const PROCESS_EVENTS: &str = "PROCESS_EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
}

/// Load-time globals (`aya_ebpf::Global`), set with `EbpfLoader::override_global`.
pub mod global {
    /// TGID of the agent itself: its own syscalls are not recorded.
    pub const AGENT_TGID: &str = "AGENT_TGID";
}

/// Default sizes, overridable at load time (`EbpfLoader::map_max_entries`).
pub mod capacity {
    /// Distinct (process incarnation, syscall) pairs held in the kernel between sweeps.
    pub const SYSCALL_STATS: u32 = 10_240;
    /// Distinct (process incarnation, syscall, errno) triples held between sweeps.
    pub const SYSCALL_ERRORS: u32 = 4_096;
    /// Bytes of the process-event ring buffer (a power-of-two multiple of the page size).
    pub const PROCESS_EVENTS_BYTES: u32 = 256 * 1024;
    /// Fallback for the per-thread and per-process arrays when `pid_max` cannot be read.
    pub const PID_MAX_FALLBACK: u32 = 32_768;
}

/// Slots of the per-CPU `COUNTERS` array: self-observability counters kept in the kernel.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Process events the probes tried to write to `PROCESS_EVENTS`: once drained,
    /// produced = read by the agent + dropped, exactly.
    ProcessEventsProduced = 0,
    /// Process events lost because `PROCESS_EVENTS` had no room (failed reserve).
    ProcessEventsDropped = 1,
    /// `SYSCALL_STATS` refused a new key (full): that syscall exit went uncounted.
    SyscallStatsFull = 2,
    /// `SYSCALL_ERRORS` refused a new key (full): that error went uncounted.
    SyscallErrorsFull = 3,
    /// A `sys_exit` with no recorded `sys_enter` (a fork child's first return, or a call
    /// already in flight when the probes attached): counted here, not in any series.
    UnmatchedExits = 4,
}

impl Counter {
    pub const ALL: [Counter; 5] = [
        Counter::ProcessEventsProduced,
        Counter::ProcessEventsDropped,
        Counter::SyscallStatsFull,
        Counter::SyscallErrorsFull,
        Counter::UnmatchedExits,
    ];
    pub const LEN: u32 = Self::ALL.len() as u32;
}

/// Latency histogram: log2 buckets over nanoseconds.
///
/// Bucket `i < LAST` counts durations `d` with `d <= 2^(MIN_SHIFT + i)` ns that did not fit
/// bucket `i - 1`; bucket `LAST` counts everything above `2^(MIN_SHIFT + LAST - 1)` ns. The
/// upper bounds are exactly representable, so the exported Prometheus `le` bounds are the
/// kernel's own and no count is ever interpolated.
pub mod hist {
    /// Number of buckets, the last one being the overflow (`+Inf`) bucket.
    pub const BUCKETS: usize = 28;
    /// The first bucket holds everything up to `2^MIN_SHIFT` ns (256 ns).
    pub const MIN_SHIFT: u32 = 8;
    pub const LAST: usize = BUCKETS - 1;

    /// Bucket of a duration, branch-light and loop-free so the verifier accepts it.
    #[inline(always)]
    pub fn bucket(duration_ns: u64) -> usize {
        if duration_ns <= 1 << MIN_SHIFT {
            return 0;
        }
        // ceil(log2(d)) for d >= 2 is the bit width of d - 1.
        let ceil_log2 = 64 - (duration_ns - 1).leading_zeros();
        let index = (ceil_log2 - MIN_SHIFT) as usize;
        if index > LAST { LAST } else { index }
    }

    /// Upper bound of bucket `index` in nanoseconds; `None` for the overflow bucket.
    pub fn upper_bound_ns(index: usize) -> Option<u64> {
        (index < LAST).then(|| 1u64 << (MIN_SHIFT as usize + index))
    }
}

/// Key of `SYSCALL_STATS`: one process incarnation and one syscall.
///
/// `generation` is `PROCESS_STATE[tgid].generation` at the time of the call. The kernel bumps it on every
/// exec and on process exit, so a key never mixes two programs run under one PID, nor two
/// processes that reused a PID; the agent knows a key is finished when its generation is no
/// longer the current one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyscallKey {
    pub tgid: u32,
    pub generation: u32,
    pub nr: u32,
}

/// Value of `SYSCALL_STATS` (per CPU): the latency histogram of completed calls.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallStats {
    pub buckets: [u64; hist::BUCKETS],
    pub sum_ns: u64,
}

impl SyscallStats {
    pub const ZERO: SyscallStats = SyscallStats {
        buckets: [0; hist::BUCKETS],
        sum_ns: 0,
    };
}

impl Default for SyscallStats {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Key of `SYSCALL_ERRORS`: a syscall that returned `-errno`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyscallErrorKey {
    pub tgid: u32,
    pub generation: u32,
    pub nr: u32,
    pub errno: u32,
}

/// Value of `THREAD_START`, indexed by thread id: the syscall a thread is in and since when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadStart {
    /// `bpf_ktime_get_ns()` at `sys_enter`; 0 means "not in a recorded syscall".
    pub start_ns: u64,
    pub nr: u32,
    pub _pad: u32,
}

/// Value of `PROCESS_STATE`, indexed by TGID: which generation holds that PID now.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessState {
    /// Bumped on exec and on process exit.
    pub generation: u32,
    /// Non-zero once an event has named this generation; reset with every bump.
    pub announced: u32,
}

/// Kinds of `ProcessEvent`.
pub mod event_kind {
    /// A successful exec: `generation` is the new program's, `comm` its name.
    pub const EXEC: u32 = 1;
    /// The process exited (its last thread, or its leader on older kernels): `generation` is
    /// the one that ended.
    pub const EXIT: u32 = 2;
    /// First syscall of a generation no event has named yet (a fork child, or a process
    /// already running when the agent started), seen from its leader thread.
    pub const SEEN: u32 = 3;
}

/// Record of the `PROCESS_EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    pub kind: u32,
    pub tgid: u32,
    pub generation: u32,
    pub _pad: u32,
    pub timestamp_ns: u64,
    pub comm: [u8; 16],
}

const _: () = {
    assert!(core::mem::size_of::<SyscallKey>() == 12);
    assert!(core::mem::size_of::<SyscallStats>() == 8 * (hist::BUCKETS + 1));
    assert!(core::mem::size_of::<SyscallErrorKey>() == 16);
    assert!(core::mem::size_of::<ThreadStart>() == 16);
    assert!(core::mem::size_of::<ProcessState>() == 8);
    assert!(core::mem::size_of::<ProcessEvent>() == 40);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, made only of integers with explicit padding, so
    // every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::SyscallKey {}
    unsafe impl aya::Pod for super::SyscallStats {}
    unsafe impl aya::Pod for super::SyscallErrorKey {}
    unsafe impl aya::Pod for super::ThreadStart {}
    unsafe impl aya::Pod for super::ProcessState {}
    unsafe impl aya::Pod for super::ProcessEvent {}
}

#[cfg(test)]
mod tests {
    use super::hist::*;

    #[test]
    fn bucket_edges_are_inclusive_upper_bounds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(256), 0);
        assert_eq!(bucket(257), 1);
        assert_eq!(bucket(512), 1);
        assert_eq!(bucket(513), 2);
        for i in 0..LAST {
            let ub = upper_bound_ns(i).unwrap();
            assert_eq!(bucket(ub), i, "upper bound of bucket {i}");
            assert_eq!(bucket(ub + 1), i + 1, "just above bucket {i}");
        }
        assert_eq!(upper_bound_ns(LAST), None);
        assert_eq!(bucket(u64::MAX), LAST);
    }

    #[test]
    fn twenty_milliseconds_lands_between_2_pow_24_and_2_pow_25() {
        let b = bucket(20_000_000);
        assert_eq!(upper_bound_ns(b), Some(1 << 25));
        assert_eq!(upper_bound_ns(b - 1), Some(1 << 24));
    }
}
