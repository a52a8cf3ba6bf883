//! PostgreSQL framed in the kernel: `monitor_framing::pg` run on each read and write of a
//! connection whose first one started like a client's (a startup packet, a `Query` or a
//! `Parse`). Each message's header is read and its body skipped by count; only the messages
//! that start, name or answer an operation become `DB_EVENTS` records, each its header and
//! at most `pg::HEAD` bytes of its body. Result sets (RowDescription, DataRow) and every
//! other message never leave the kernel.
//!
//! Judged by `framing` (`mon_judge`, the `verdict::POSTGRES` sockets), then framed by
//! `copied::mon_copy` in place of the copy (`frame`): global functions to begin and end a
//! read/write (`mon_pg_begin`, `mon_pg_end`), one per message (`mon_pg_step`), and one that
//! reads the socket's peer (`mon_pg_peer`), each checked once by the verifier. The
//! connection's state is worked on in this CPU's `PG_SCRATCH` value (copied from `PG_CONNS`
//! and back); records are built in `DB_SCRATCH`, whose head `mon_pg_peer` fills once per
//! read/write.
use aya_ebpf::{bindings::BPF_ANY, helpers::generated::bpf_probe_read_kernel};
use monitor_common::{Counter, DbEvent, Owner, payload_flags};
use monitor_framing::{
    direction,
    pg::{self, PgConn, PgStep, PgWire, Record},
    verdict,
};

use crate::{
    maps::{
        DB_EVENTS, DB_SCRATCH, PAYLOAD_SOCKS, PG_CONNS, PG_SCRATCH, PgScratch, batched_wakeup,
        bump, copy_words,
    },
    payload::{FRAMED_FIRST, copy_prefix, read_user},
    sock::{local_port, now_ns, remote},
};

/// The head every record carries before its bytes.
const HEAD: u64 = core::mem::offset_of!(DbEvent, data) as u64;

/// About 1 000 messages per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 128 * 1024;

/// `mon_pg_step`'s answers besides an offset.
const STEP_STOP: i64 = -1;
const STEP_DONE: i64 = -2;

/// The framing's side of one read/write: this CPU's `PG_SCRATCH` value.
struct KernelWire {
    scratch: *mut PgScratch,
}

impl KernelWire {
    #[inline(always)]
    fn here() -> Option<Self> {
        PG_SCRATCH
            .get_ptr_mut(0)
            .map(|scratch| KernelWire { scratch })
    }
}

impl PgWire for KernelWire {
    #[inline(always)]
    fn read(&mut self, offset: u32, buf: &mut [u8; 8]) -> u32 {
        // SAFETY: this CPU's scratch value (see `mon_pg_begin`).
        let state = unsafe { &(*self.scratch).state };
        let mut size = u64::from(state.readable.saturating_sub(offset));
        // SAFETY: `buf` holds 8 bytes; the helper checks the user address and fails instead
        // of faulting.
        let failed = unsafe {
            copy_prefix::<8>(
                buf.as_mut_ptr(),
                &mut size,
                state.address + u64::from(offset),
            )
        };
        if failed != 0 { 0 } else { size as u32 }
    }

    #[inline(always)]
    fn stash(&mut self, offset: u32, len: u32, head: &mut [u8; pg::HEAD as usize], at: u32) -> u32 {
        // SAFETY: as above.
        let state = unsafe { &(*self.scratch).state };
        let mut size = u64::from(len.min(state.readable.saturating_sub(offset)));
        // SAFETY: `at + len` <= HEAD (the framing's own bound); masked for the verifier,
        // which then sees at most 127 bytes from `head`, all in this CPU's scratch value.
        let failed = unsafe {
            copy_prefix::<{ pg::HEAD as usize }>(
                head.as_mut_ptr().add((at & (pg::HEAD - 1)) as usize),
                &mut size,
                state.address + u64::from(offset),
            )
        };
        if failed != 0 { 0 } else { size as u32 }
    }

    #[inline(always)]
    fn now_ns(&mut self) -> u64 {
        // SAFETY: as above.
        let state = unsafe { &mut (*self.scratch).state };
        if state.now == 0 {
            state.now = now_ns();
        }
        state.now
    }

    #[inline(always)]
    fn record(&mut self, conn: &PgConn, record: &Record) {
        let Some(event) = DB_SCRATCH.get_ptr_mut(0) else {
            return;
        };
        // SAFETY: as above.
        let address = unsafe { (*self.scratch).state.address };
        let header_len = u64::from(record.header_len) & 15;
        let mut head_len = u64::from(record.head_len);
        // SAFETY: this CPU's `DB_SCRATCH` value, whose head `mon_pg_peer` filled for this
        // read/write; its data holds 4 KiB, past the header's 16 bytes and the head's (at
        // most 128 as masked). The helpers check their sources and fail instead of faulting.
        let captured = unsafe {
            let data = (*event).data.as_mut_ptr();
            // One 8-byte store: byte by byte, a header of known zeroes becomes a `memset`.
            core::ptr::write_unaligned(data.cast::<u64>(), u64::from_le_bytes(record.header));
            let failed = if record.stashed {
                // One helper call, not a copy loop: the verifier would walk the loop in each
                // of the places this is inlined, minutes on an emulated 5.10.
                let head = conn.sides[usize::from(record.side) & 1].head.as_ptr();
                let size = head_len & (2 * u64::from(pg::HEAD) - 1);
                bpf_probe_read_kernel(
                    data.add(header_len as usize).cast(),
                    size as u32,
                    head.cast(),
                )
            } else if head_len == 0 {
                0
            } else {
                copy_prefix::<{ pg::HEAD as usize }>(
                    data.add(header_len as usize),
                    &mut head_len,
                    address + u64::from(record.head_at),
                )
            };
            if failed != 0 {
                head_len = 0;
            }
            (*event).direction = u32::from(if record.side as usize == pg::side::CLIENT {
                conn.client_way
            } else if conn.client_way == direction::EGRESS {
                direction::INGRESS
            } else {
                direction::EGRESS
            });
            (*event).length = record.length;
            (*event).flags = if record.flags & pg::flags::FIRST != 0 {
                payload_flags::FIRST
            } else {
                0
            };
            (*event).timestamp_ns = record.start_ns;
            let captured = if record.flags & pg::flags::LOST != 0 {
                0
            } else {
                header_len + head_len
            };
            (*event).captured = captured as u32;
            captured
        };
        // The record's length, bounded for the verifier (a volatile read, or the compiler
        // reuses what it knows of `captured` and drops the bound).
        // SAFETY: a plain read of a local.
        let size = HEAD + (unsafe { core::ptr::read_volatile(&captured) } & 127);
        // SAFETY: `size` bytes from the start of this CPU's scratch value, which holds them.
        let bytes = unsafe { core::slice::from_raw_parts(event.cast::<u8>(), size as usize) };
        bump(Counter::DbEventsProduced);
        if DB_EVENTS
            .output::<[u8]>(bytes, batched_wakeup(&DB_EVENTS, WAKEUP_BATCH_BYTES))
            .is_err()
        {
            bump(Counter::DbEventsDropped);
        }
    }
}

/// Frames one read/write of a PostgreSQL connection: `owner` is (TGID, generation << 32),
/// `shape` the family and direction << 16 (and `payload::FRAMED_FIRST` when the socket was
/// judged on this read/write), `lengths` the bytes moved and, << 32, those readable at
/// `address`. Inlined in `copied::mon_copy`, so that the calls it makes (`mon_pg_begin`,
/// `mon_pg_step` for each message, `mon_pg_end`) are one frame deep under it, not two:
/// 5.10 allows 512 bytes of stack across a chain of calls, and the framing programs use
/// 192 of them.
#[inline(always)]
pub fn frame(sk: u64, owner: u64, shape: u64, lengths: u64, address: u64) -> i64 {
    if mon_pg_begin(sk, owner, shape, lengths, address) != 0 {
        return 0;
    }
    let length = i64::from(lengths as u32);
    let mut at = mon_pg_step(OP_START, 0);
    let mut count = 0;
    while count < pg::MAX_MESSAGES && at >= 0 && at < length {
        at = mon_pg_step(OP_STEP, at as u64);
        count += 1;
    }
    if at >= 0 && at < length {
        at = mon_pg_step(OP_LOSE, 0);
    }
    mon_pg_end(sk, owner, u64::from(at == STEP_DONE))
}

/// Starts a read/write (see `frame`): this CPU's `PG_SCRATCH` value gets the connection's
/// framing (from `PG_CONNS`, or a new one where the socket was judged on this read/write)
/// and the read/write's place; `DB_SCRATCH` the head of its records. 0 to frame it, 1 not
/// to (the connection was forgotten: it is judged again).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_pg_begin(sk: u64, owner: u64, shape: u64, lengths: u64, address: u64) -> i64 {
    let Some(scratch) = PG_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let tgid = owner as u32;
    let way = (shape >> 16) as u8;
    // SAFETY: this CPU's scratch value; these programs run in the task's syscall and do not
    // nest.
    let work = unsafe { &mut (*scratch).conn };
    // SAFETY: a value of PG_CONNS, read for its owner only.
    let stored = PG_CONNS
        .get_ptr(sk)
        .filter(|entry| unsafe { (**entry).tgid } == tgid);
    match stored {
        // SAFETY: a value of PG_CONNS; a concurrent read/write of the same socket on another
        // CPU can only garble its framing, which resynchronises.
        Some(entry) => unsafe { copy_words(work, &*entry) },
        None if shape & FRAMED_FIRST != 0 => {
            // SAFETY: as above; `blank` is never written, so all zeroes.
            unsafe { copy_words(work, &(*scratch).blank) };
            work.tgid = tgid;
            let first_byte = read_user::<u8>(address).unwrap_or(b'?');
            work.conn.begin(way, first_byte);
        }
        None => {
            // Evicted, or the address of a closed socket reused: judged again at the next
            // read/write.
            let _ = PAYLOAD_SOCKS.remove(sk);
            return 1;
        }
    }
    let length = lengths as u32;
    // SAFETY: this CPU's scratch value, see above.
    unsafe {
        let state = &mut (*scratch).state;
        state.address = address;
        state.now = 0;
        state.length = length;
        state.readable = ((lengths >> 32) as u32).min(length);
        state.side = work.conn.side_of(way) as u32;
    }
    mon_pg_peer(sk, owner, shape & 0xffff);
    0
}

/// Ends a read/write (see `frame`): the connection's framing back to `PG_CONNS`, or, when
/// it is `done` with (encrypted), the socket ignored from now on.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_pg_end(sk: u64, owner: u64, done: u64) -> i64 {
    let Some(scratch) = PG_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch value, see `mon_pg_begin`.
    let work = unsafe { &(*scratch).conn };
    // SAFETY: a value of PG_CONNS, read for its owner only.
    let stored = PG_CONNS
        .get_ptr_mut(sk)
        .filter(|entry| unsafe { (**entry).tgid } == owner as u32);
    if done != 0 {
        let _ = PAYLOAD_SOCKS.insert(sk, verdict::IGNORE, BPF_ANY.into());
        if stored.is_some() {
            let _ = PG_CONNS.remove(sk);
        }
        return 0;
    }
    match stored {
        // SAFETY: a value of PG_CONNS, see `mon_pg_begin`.
        Some(entry) => unsafe { copy_words(entry, work) },
        None => {
            if PG_CONNS.insert(sk, work, BPF_ANY.into()).is_err() {
                bump(Counter::PgConnsFull);
                let _ = PAYLOAD_SOCKS.remove(sk);
            }
        }
    }
    0
}

/// Fills the head of this read/write's records in `DB_SCRATCH`: whose they are, and socket
/// `sk`'s peer (of address family `family`). A global BPF function, so that the `Endpoint`
/// built on the way (and the `memset` that zeroes it) is not under `mon_pg_step`'s frame.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_pg_peer(sk: u64, owner: u64, family: u64) -> i64 {
    let Some(event) = DB_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's `DB_SCRATCH` value; these programs do not nest.
    unsafe {
        (*event).owner = Owner {
            tgid: owner as u32,
            generation: (owner >> 32) as u32,
        };
        (*event).sk = sk;
        (*event).remote = remote(sk, family as u16);
        (*event).local_port = local_port(sk);
        (*event)._pad2 = 0;
    }
    0
}

/// `mon_pg_step`'s operations: a read/write's start (`PgConn::start`), one message from an
/// offset (`PgConn::step`), the loss of the side's framing (`PgConn::lose`, past
/// `pg::MAX_MESSAGES`).
const OP_START: u64 = 0;
const OP_STEP: u64 = 1;
const OP_LOSE: u64 = 2;

/// One operation (`OP_*`) of the framing on this CPU's read/write, from offset `at`: the
/// next offset, or `STEP_STOP`/`STEP_DONE`. A global BPF function, checked once whatever
/// the number of messages.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_pg_step(op: u64, at: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return STEP_STOP;
    };
    let scratch = wire.scratch;
    // SAFETY: this CPU's scratch value; `wire` reads only its `state`.
    let (conn, side, length, readable) = unsafe {
        let state = &(*scratch).state;
        (
            &mut (*scratch).conn.conn,
            state.side as usize,
            state.length,
            state.readable,
        )
    };
    let step = match op {
        OP_START => conn.start(side, readable, &mut wire),
        OP_STEP => conn.step(side, at as u32, length, readable, &mut wire),
        _ => conn.lose(side, &mut wire),
    };
    match step {
        PgStep::Next(next) => i64::from(next),
        PgStep::Stop => STEP_STOP,
        PgStep::Done => STEP_DONE,
    }
}
