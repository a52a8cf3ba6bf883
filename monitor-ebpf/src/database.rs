//! Databases' wire protocols (Redis, PostgreSQL): a connection whose first read/write starts
//! like a client's message (`monitor_framing::starts_database`, judged by `framing` where
//! HTTP is judged) has each read/write copied, up to `DB_CAPTURE` bytes, to `DB_EVENTS`;
//! the agent frames them (`monitor_protocols::redis`, `postgres`). Records are as long as
//! what they carry: the copy is made in this CPU's `DB_SCRATCH` and output from there.
use monitor_common::{Counter, DbEvent, Owner, capacity::DB_CAPTURE};

use crate::{
    maps::{DB_EVENTS, DB_SCRATCH, batched_wakeup, bump},
    payload::copy_prefix,
    sock::{local_port, now_ns, remote},
};

/// The head every record carries before its bytes.
const HEAD: u64 = core::mem::offset_of!(DbEvent, data) as u64;

/// About 1 000 small commands or replies per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 128 * 1024;

/// One read/write of `length` bytes by `owner` on socket `sk`, whose first `readable` are
/// in the caller's buffer at `address`.
#[inline(always)]
pub fn capture(
    sk: u64,
    owner: Owner,
    family: u16,
    direction: u32,
    (length, readable): (u32, u32),
    address: u64,
) {
    let owner = u64::from(owner.tgid) | u64::from(owner.generation) << 32;
    let shape = u64::from(family) | u64::from(direction & 0xffff) << 16;
    let lengths = u64::from(length) | u64::from(readable) << 32;
    mon_db_capture(sk, owner, shape, lengths, address);
}

/// The copy and the record, as a global BPF function (5.6+, scalar arguments): checked once
/// on its own, not inside the framing programs that call it, which are near their limits.
/// `owner` is (TGID, generation << 32), `shape` the family and direction << 16, `lengths`
/// the bytes moved and, << 32, those readable at `address`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_db_capture(
    sk: u64,
    owner: u64,
    shape: u64,
    lengths: u64,
    address: u64,
) -> i64 {
    let Some(event) = DB_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let mut captured = lengths >> 32;
    // SAFETY: this CPU's scratch value, a map value of the right size; these programs run
    // in the task's syscall and do not nest.
    let copied =
        unsafe { copy_prefix::<DB_CAPTURE>((*event).data.as_mut_ptr(), &mut captured, address) };
    if copied != 0 {
        captured = 0;
    }
    // SAFETY: as above; every head field is written before the record is output.
    unsafe {
        (*event).direction = (shape >> 16) as u32 & 0xffff;
        (*event).captured = captured as u32;
        (*event).length = lengths as u32;
        (*event).flags = 0;
        (*event).owner = Owner {
            tgid: owner as u32,
            generation: (owner >> 32) as u32,
        };
        (*event).sk = sk;
        (*event).timestamp_ns = now_ns();
        (*event).remote = remote(sk, shape as u16);
        (*event).local_port = local_port(sk);
        (*event)._pad2 = 0;
    }
    // The record's length, bounded for the verifier by the scratch value's size (a volatile
    // read, or the compiler reuses what it knows of `captured` and drops the bound).
    // SAFETY: a plain read of a local.
    let size =
        (HEAD + unsafe { core::ptr::read_volatile(&captured) }).min(HEAD + DB_CAPTURE as u64);
    // SAFETY: `size` bytes from the start of this CPU's scratch value, which holds them.
    let record = unsafe { core::slice::from_raw_parts(event.cast::<u8>(), size as usize) };
    bump(Counter::DbEventsProduced);
    if DB_EVENTS
        .output::<[u8]>(record, batched_wakeup(&DB_EVENTS, WAKEUP_BATCH_BYTES))
        .is_err()
    {
        bump(Counter::DbEventsDropped);
    }
    0
}
