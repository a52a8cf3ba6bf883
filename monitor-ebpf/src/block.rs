//! Block I/O: each request from issue (`block_rq_issue`, in the context of the task that
//! issued it: the writer for direct and synchronous I/O, a kernel thread for writeback) to
//! completion (`block_rq_complete`, in interrupt context or the issuer's), summed per process and operation
//! in a per-CPU histogram. The start is kept by request address; the operation is read from
//! `request.cmd_flags` (offset from BTF) when it completes.
use aya_ebpf::{Global, macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::{BlockKey, BlockStart, Counter, Histogram, block_op, hist};

use crate::{
    maps::{BLOCK_IO, BLOCK_STARTS, per_cpu_entry},
    sock::{current_owner, now_ns, read},
};

// Offset (bytes) set at load from BTF; see `monitor_common::global::KERNEL_OFFSETS`.
#[unsafe(no_mangle)]
static OFF_RQ_CMD_FLAGS: Global<u32> = Global::new(0);

/// `block_rq_issue(q, rq)` (before 5.11); refused where the tracepoint has one argument.
#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn mon_block_issue(ctx: RawTracePointContext) -> i32 {
    issued(ctx.arg(1));
    0
}

/// `block_rq_issue(rq)` (5.11 on): the fallback.
#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn mon_block_issue_rq(ctx: RawTracePointContext) -> i32 {
    issued(ctx.arg(0));
    0
}

#[inline(always)]
fn issued(rq: u64) {
    let Some(owner) = current_owner() else { return };
    let start = BlockStart {
        start_ns: now_ns(),
        owner,
    };
    // LRU: a request whose completion is never seen is evicted in time.
    let _ = BLOCK_STARTS.insert(rq, start, 0);
}

/// `block_rq_complete(rq, error, nr_bytes)`: also for a partial completion, which ends the
/// request's wait for the part done; the rest, if any, is not timed again.
#[raw_tracepoint(tracepoint = "block_rq_complete")]
pub fn mon_block_complete(ctx: RawTracePointContext) -> i32 {
    let rq: u64 = ctx.arg(0);
    // SAFETY: a copy is taken at once; the entry is removed right after.
    let Some(start) = (unsafe { BLOCK_STARTS.get(rq) }).copied() else {
        return 0;
    };
    let _ = BLOCK_STARTS.remove(rq);
    let took_ns = now_ns().saturating_sub(start.start_ns);
    let flags: u32 = read(rq, &OFF_RQ_CMD_FLAGS).unwrap_or(u32::MAX);
    let completed_bytes = ctx.arg::<u64>(2) as u32;
    let op = match flags & block_op::MASK {
        // `fsync` on a disk with a write cache: an empty write carrying the cache flush.
        block_op::WRITE if completed_bytes == 0 => block_op::FLUSH,
        op @ (block_op::READ | block_op::WRITE | block_op::FLUSH | block_op::DISCARD) => op,
        _ => block_op::OTHER,
    };
    let key = BlockKey {
        owner: start.owner,
        op,
        _pad: 0,
    };
    if let Some(stats) = per_cpu_entry(&BLOCK_IO, &key, Histogram::ZERO, Counter::BlockIoFull) {
        // SAFETY: this CPU's copy of a per-CPU hash value.
        let stats = unsafe { &mut *stats };
        if let Some(bucket) = stats.buckets.get_mut(hist::bucket(took_ns)) {
            *bucket += 1;
        }
        stats.sum_ns += took_ns;
    }
    0
}
