//! Syscall latency and errors, aggregated in the kernel per (process generation, syscall).
//!
//! Raw tracepoints `sys_enter`/`sys_exit`: the cheapest syscall hook here and independent of
//! tracefs record layouts. The enter side does one inlined array store; the exit side one
//! inlined array read, one per-CPU hash lookup and, for failures only, one more. The exit
//! of a `sendmmsg`/`recvmmsg` also goes to `dns`, which only this hook can see whole.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{
    Counter, Histogram, Owner, SyscallErrorKey, SyscallKey, announced, event_kind, global, hist,
    payload_direction,
};

use crate::{
    dns,
    maps::{
        AGENT_TGID, PROCESS_STATE, SYSCALL_ERRORS, SYSCALL_STATS, THREAD_START, bump,
        emit_process_event, is_excluded,
    },
    payload::{NR_RECVMMSG, NR_SENDMMSG},
};

/// The kernel's `MAX_ERRNO`: return values in `[-4095, -1]` are errors, anything else is not.
const MAX_ERRNO: i64 = 4095;
const EEXIST: i64 = 17;

/// `global::TIMED_SYSCALLS` (set at load; every syscall until then).
#[unsafe(no_mangle)]
static TIMED_SYSCALLS: [u64; global::TIMED_SYSCALL_WORDS] = [u64::MAX; global::TIMED_SYSCALL_WORDS];

/// The entry time of a syscall that is only counted: not 0, which means "no entry seen".
const UNTIMED: u64 = 1;

/// Whether syscall `nr` has a latency histogram, so its entry and exit read the clock: on
/// this VM the two reads are two thirds of the probes' time per call.
#[inline(always)]
fn timed(nr: u64) -> bool {
    let word = (nr / 64) as usize;
    if word >= global::TIMED_SYSCALL_WORDS {
        return true;
    }
    // SAFETY: `word` is in bounds; a volatile read, or the compiler would use the initial
    // value instead of the one the agent set at load.
    let bits = unsafe {
        core::ptr::read_volatile(core::ptr::addr_of!(TIMED_SYSCALLS).cast::<u64>().add(word))
    };
    bits & (1 << (nr % 64)) != 0
}

/// A new key's first value, from read-only data: built on the stack, its 232 bytes would
/// leave too little of the 512 for the calls the exit probe makes (`dns::multiple`).
static ZERO: Histogram = Histogram::ZERO;

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn mon_sys_enter(ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == AGENT_TGID.load() {
        return 0;
    }
    if let Some(slot) = THREAD_START.get_ptr_mut(pid_tgid as u32) {
        let nr: i64 = ctx.arg(1);
        let start_ns = if timed(nr as u64) {
            // SAFETY: no preconditions; a plain helper call.
            unsafe { bpf_ktime_get_ns() }
        } else {
            UNTIMED
        };
        // SAFETY: pointer into an array map value; only this thread writes these fields of
        // its own slot (`runnable_since` is the scheduler probes').
        unsafe {
            (*slot).start_ns = start_ns;
            (*slot).nr = nr as u32;
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn mon_sys_exit(ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == AGENT_TGID.load() {
        return 0;
    }
    let Some(slot) = THREAD_START.get_ptr_mut(pid_tgid as u32) else {
        return 0;
    };
    // SAFETY: pointer into an array map value; only this thread writes its own slot.
    // Clearing only the start time keeps the exit path free of a memset call.
    let start = unsafe {
        let start = *slot;
        (*slot).start_ns = 0;
        start
    };
    if start.start_ns == 0 {
        bump(Counter::UnmatchedExits);
        return 0;
    }
    // Counted only (in the first bucket: its histogram is not published).
    let duration_ns = if start.start_ns == UNTIMED {
        0
    } else {
        // SAFETY: no preconditions; a plain helper call.
        unsafe { bpf_ktime_get_ns() }.wrapping_sub(start.start_ns)
    };
    let generation = current_generation(tgid, pid_tgid as u32 == tgid);
    if is_excluded(tgid, generation) {
        return 0;
    }
    let key = SyscallKey {
        tgid,
        generation,
        nr: start.nr,
    };
    record_latency(&key, duration_ns);

    let ret: i64 = ctx.arg(1);
    if ret > 0 && (start.nr == NR_SENDMMSG || start.nr == NR_RECVMMSG) {
        let direction = if start.nr == NR_SENDMMSG {
            payload_direction::EGRESS
        } else {
            payload_direction::INGRESS
        };
        dns::multiple(ctx.arg(0), ret, Owner { tgid, generation }, direction);
    }
    if (-MAX_ERRNO..0).contains(&ret) {
        let key = SyscallErrorKey {
            tgid,
            generation,
            nr: start.nr,
            errno: (-ret) as u32,
        };
        record_error(&key);
    }
    0
}

/// The generation keying this call. The first call a generation's leader makes names it,
/// once: fork children and processes older than the agent get their name from the kernel at
/// first sight, not from a `/proc` read that may come after they are gone.
#[inline(always)]
fn current_generation(tgid: u32, leader: bool) -> u32 {
    let Some(state) = PROCESS_STATE.get_ptr_mut(tgid) else {
        return 0;
    };
    // SAFETY: pointer into an array map value; only the leader thread writes `announced`
    // outside exec/exit, which it cannot be running concurrently with.
    let state = unsafe { &mut *state };
    if leader && state.announced != announced::NAMED {
        state.announced = announced::NAMED;
        emit_process_event(event_kind::SEEN, tgid, state.generation, 0);
    }
    state.generation
}

#[inline(always)]
fn record_latency(key: &SyscallKey, duration_ns: u64) {
    let stats = match SYSCALL_STATS.get_ptr_mut(key) {
        Some(stats) => stats,
        None => {
            // A reference on purpose: by value, the histogram would be copied to the stack.
            #[allow(clippy::needless_borrows_for_generic_args)]
            let inserted = SYSCALL_STATS.insert(key, &ZERO, BPF_NOEXIST.into());
            if let Err(err) = inserted {
                // EEXIST: another CPU created the key between our lookup and insert.
                if i64::from(err) != -EEXIST {
                    // Counted, and reported by the agent once per sweep: a log line per
                    // refused key would flood the log exactly when the host is busiest.
                    bump(Counter::SyscallStatsFull);
                    return;
                }
            }
            match SYSCALL_STATS.get_ptr_mut(key) {
                Some(stats) => stats,
                None => return,
            }
        }
    };
    // SAFETY: pointer into this CPU's copy of a per-CPU hash value.
    let stats = unsafe { &mut *stats };
    if let Some(bucket) = stats.buckets.get_mut(hist::bucket(duration_ns)) {
        *bucket += 1;
    }
    stats.sum_ns += duration_ns;
}

#[inline(always)]
fn record_error(key: &SyscallErrorKey) {
    if let Some(count) = SYSCALL_ERRORS.get_ptr_mut(key) {
        // SAFETY: pointer into this CPU's copy of a per-CPU hash value.
        unsafe { *count += 1 };
        return;
    }
    match SYSCALL_ERRORS.insert(key, 1u64, BPF_NOEXIST.into()) {
        Ok(()) => {}
        Err(err) if i64::from(err) == -EEXIST => {
            if let Some(count) = SYSCALL_ERRORS.get_ptr_mut(key) {
                // SAFETY: as above.
                unsafe { *count += 1 };
            }
        }
        Err(_) => bump(Counter::SyscallErrorsFull),
    }
}
