//! Redis framed in the kernel: `monitor_framing::resp` run on each read and write of a
//! connection whose first one started like a command, with one `REDIS_EVENTS` record per
//! command and per reply (`RedisEvent`: its type byte, its timing, one word). No key, value
//! or argument leaves the kernel; bulk strings are skipped by count.
//!
//! Judged by `framing` (`mon_judge`, the `verdict::REDIS` sockets), then called from
//! `copied::mon_copy` in place of the copy. Built like the HTTP framing: a global function
//! per read/write (`mon_redis`), per turn (`mon_redis_turn`) and per run of bytes
//! (`mon_redis_byte`), each checked once by the verifier, every state in this CPU's
//! `REDIS_SCRATCH` value (the connection's included, copied from `REDIS_CONNS` and back).
//! Two more keep the deepest frames small, for the 512 bytes of stack a chain of calls may
//! use under the framing programs: `mon_redis_emit` writes a record once the function that
//! framed its message returned, and `mon_redis_peer` reads the socket's peer once per
//! read/write.
use aya_ebpf::bindings::BPF_ANY;
use monitor_common::{Counter, Owner, RedisEvent, capacity::REDIS_WORD};
use monitor_framing::{
    Cursor, Io, Outcome, Step, Turn, WINDOW, direction,
    resp::{self, RespConn, RespWire},
    verdict,
};

use crate::{
    maps::{
        PAYLOAD_SOCKS, REDIS_CONNS, REDIS_EVENTS, REDIS_SCRATCH, RedisScratch, RedisState,
        batched_wakeup, bump, copy_words,
    },
    payload::{FRAMED_FIRST, copy_prefix},
    sock::{local_port, now_ns, remote},
};

const _: () = assert!(resp::WORD == REDIS_WORD);

/// About 600 commands and replies per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 64 * 1024;

const STEP_NEXT: u8 = 0;
const STEP_STOP: u8 = 1;
const TURN_AGAIN: u8 = 0;
const TURN_STOP: u8 = 1;
const TURN_DONE: u8 = 2;

/// The framing's side of one read/write: this CPU's `REDIS_SCRATCH` value.
struct KernelWire {
    scratch: *mut RedisScratch,
}

impl KernelWire {
    #[inline(always)]
    fn here() -> Option<Self> {
        REDIS_SCRATCH
            .get_ptr_mut(0)
            .map(|scratch| KernelWire { scratch })
    }

    #[inline(always)]
    fn state(&mut self) -> &mut RedisState {
        // SAFETY: this CPU's scratch value (see `mon_redis`).
        unsafe { &mut (*self.scratch).state }
    }
}

impl RespWire for KernelWire {
    fn read(&mut self, offset: u32, len: u32, window: &mut [u8; WINDOW]) -> u32 {
        let mut size = u64::from(len);
        let buffer = self.state().buffer;
        // SAFETY: `window` holds WINDOW bytes; the helper checks the user address and fails
        // instead of faulting.
        let failed = unsafe {
            copy_prefix::<WINDOW>(window.as_mut_ptr(), &mut size, buffer + u64::from(offset))
        };
        if failed != 0 { 0 } else { size as u32 }
    }

    fn now_ns(&mut self) -> u64 {
        let state = self.state();
        if state.now == 0 {
            state.now = now_ns();
        }
        state.now
    }

    /// Only noted: the record is written by `mon_redis_emit`, called once the per-run or
    /// per-turn function that framed the message returned. Written here, deep in their
    /// calls, its stack would take the framing programs past the 512 bytes of BPF's.
    fn message(&mut self, _conn: &RespConn, side: usize) {
        self.state().emit = side as u8 + 1;
    }

    fn turns(
        &mut self,
        conn: &mut RespConn,
        side: usize,
        _io: &Io,
        cursor: &mut Cursor,
        _window: &mut [u8; WINDOW],
    ) -> Turn {
        let state = self.state();
        state.cursor = *cursor;
        state.side = side as u64;
        state.turn = TURN_AGAIN;
        changed_elsewhere(conn);
        let mut index = 0;
        while index < resp::MAX_TURNS {
            if mon_redis_turn(u64::from(index)) != 0 {
                break;
            }
            index += 1;
        }
        let state = self.state();
        *cursor = state.cursor;
        match state.turn {
            TURN_DONE => Turn::Done,
            TURN_STOP => Turn::Stop,
            _ => Turn::Again,
        }
    }

    fn scan(
        &mut self,
        conn: &mut RespConn,
        _side: usize,
        _window: &[u8; WINDOW],
        got: u32,
    ) -> (u32, Step) {
        let state = self.state();
        state.step = STEP_NEXT;
        state.at = 0;
        state.got = got;
        changed_elsewhere(conn);
        // Each call uses at least one byte, so `got` calls are enough.
        let mut index = 0;
        while index < WINDOW as u32 && index < got {
            let stop = mon_redis_byte(u64::from(index));
            emit_noted(self);
            if stop != 0 {
                break;
            }
            index += 1;
        }
        let state = self.state();
        match state.step {
            STEP_STOP => (state.used, Step::Skip),
            _ => (got, Step::Next),
        }
    }
}

/// Writes the record of a message `RespWire::message` noted, if any.
#[inline(always)]
fn emit_noted(wire: &mut KernelWire) {
    let noted = wire.state().emit;
    if noted != 0 {
        wire.state().emit = 0;
        mon_redis_emit(u64::from(noted));
    }
}

/// `conn` is this CPU's working copy, which the global functions reach through the map:
/// without this the compiler could keep its fields in registers across their calls.
#[inline(always)]
fn changed_elsewhere(conn: &mut RespConn) {
    core::hint::black_box(conn as *mut RespConn);
}

/// Frames one read/write of a Redis connection, as a global BPF function (scalar arguments,
/// as `copied::mon_copy`'s): `owner` is (TGID, generation << 32), `shape` the family and
/// direction << 16 (and `payload::FRAMED_FIRST` when the socket was judged on this
/// read/write), `lengths` the bytes moved and, << 32, those readable at `address`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_redis(sk: u64, owner: u64, shape: u64, lengths: u64, address: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 0;
    };
    let scratch = wire.scratch;
    let tgid = owner as u32;
    let way = (shape >> 16) as u8;
    // SAFETY: this CPU's scratch value; these programs run in the task's syscall and do not
    // nest.
    let (window, work) = unsafe { (&mut (*scratch).window, &mut (*scratch).conn) };
    // SAFETY: a value of REDIS_CONNS, read for its owner only.
    let stored = REDIS_CONNS
        .get_ptr_mut(sk)
        .filter(|entry| unsafe { (**entry).tgid } == tgid);
    match stored {
        // SAFETY: a value of REDIS_CONNS; a concurrent read/write of the same socket on
        // another CPU can only garble its framing, which resynchronises.
        Some(entry) => unsafe { copy_words(work, &*entry) },
        None if shape & FRAMED_FIRST != 0 => {
            // SAFETY: as above; `blank` is never written, so all zeroes.
            unsafe { copy_words(work, &(*scratch).blank) };
            work.tgid = tgid;
            work.conn.begin(way);
        }
        None => {
            // Evicted, or the address of a closed socket reused: judged again at the next
            // read/write.
            let _ = PAYLOAD_SOCKS.remove(sk);
            return 0;
        }
    }
    {
        let state = wire.state();
        state.now = 0;
        state.family = shape as u16;
        state.sk = sk;
        state.owner = Owner {
            tgid,
            generation: (owner >> 32) as u32,
        };
        state.buffer = address;
        let length = lengths as u32;
        state.io = Io {
            direction: if way == direction::INGRESS {
                direction::INGRESS
            } else {
                direction::EGRESS
            },
            length,
            readable: ((lengths >> 32) as u32).min(length),
            loaded: 0,
        };
    }
    mon_redis_peer(sk, shape & 0xffff);
    // Read back from the map, so the verifier knows none of its values.
    // SAFETY: a plain read of this CPU's scratch value.
    let io = unsafe { core::ptr::read_volatile(&wire.state().io) };
    wire.state().emit = 0;
    let outcome = work.conn.feed(&io, window, &mut wire);
    emit_noted(&mut wire);
    if outcome == Outcome::Done {
        let _ = PAYLOAD_SOCKS.insert(sk, verdict::IGNORE, BPF_ANY.into());
        if stored.is_some() {
            let _ = REDIS_CONNS.remove(sk);
        }
        return 0;
    }
    match stored {
        // SAFETY: as above.
        Some(entry) => unsafe { copy_words(entry, work) },
        None => {
            if REDIS_CONNS.insert(sk, work, BPF_ANY.into()).is_err() {
                bump(Counter::RedisConnsFull);
                let _ = PAYLOAD_SOCKS.remove(sk);
            }
        }
    }
    0
}

/// Reads socket `sk`'s peer (of address family `family`) and local port into this CPU's
/// scratch value, for the records of its read/write: a global BPF function, so that the
/// `Endpoint` built on the way is not on `mon_redis`'s stack under its deeper calls.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_redis_peer(sk: u64, family: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 0;
    };
    let state = wire.state();
    state.remote = remote(sk, family as u16);
    state.local_port = local_port(sk);
    0
}

/// Writes the `REDIS_EVENTS` record of the message `RespWire::message` noted, of side
/// `noted - 1`, from this CPU's scratch value: a global BPF function of its own.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_redis_emit(noted: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 0;
    };
    if noted == 0 {
        return 0;
    }
    let state = wire.state();
    let (owner, sk) = (state.owner, state.sk);
    let (family, port, local_port) = (state.remote.family, state.remote.port, state.local_port);
    let peer: *const u32 = state.remote.addr.as_ptr().cast();
    bump(Counter::RedisEventsProduced);
    let Some(mut entry) = REDIS_EVENTS.reserve::<RedisEvent>(0) else {
        bump(Counter::RedisEventsDropped);
        return 0;
    };
    // SAFETY: this CPU's scratch value, read only.
    let conn = unsafe { &(*wire.scratch).conn.conn };
    let side = (noted - 1) as usize & 1;
    let message = conn.message(side);
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points to a reserved ring-buffer record of the right size; every
    // field is written before it is submitted.
    unsafe {
        (*event).owner = owner;
        (*event).sk = sk;
        (*event).start_ns = message.start_ns;
        (*event).count = message.count;
        // Field by field, from what `mon_redis` read: building an `Endpoint` or zeroing the
        // padding here would call `memset`, a frame too deep for BPF's 512 bytes of stack
        // under the framing programs (5.10 counts every frame as at least 32 bytes).
        (*event).remote.family = family;
        (*event).remote.port = port;
        let addr: *mut u32 = (*event).remote.addr.as_mut_ptr().cast();
        for word in 0..4 {
            core::ptr::write_volatile(addr.add(word), core::ptr::read_volatile(peer.add(word)));
        }
        (*event).local_port = local_port;
        (*event).role = conn.role;
        (*event).side = side as u8;
        (*event).elements = message.elements;
        (*event).seq = message.seq;
        (*event).kind = message.kind;
        (*event).flags = message.flags;
        (*event).word_len = message.word_len;
        for pad in 0..5 {
            core::ptr::write_volatile(&mut (*event)._pad[pad], 0);
        }
        copy_words(&mut (*event).word, &message.word);
    }
    entry.submit(batched_wakeup(&REDIS_EVENTS, WAKEUP_BATCH_BYTES));
    0
}

/// One turn of a read/write (`RespConn::turn`): 0 to go on, 1 when it is done with.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_redis_turn(_index: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 1;
    };
    let scratch = wire.scratch;
    // SAFETY: disjoint fields of this CPU's scratch value; `wire` touches only `state`.
    let (conn, window, state) = unsafe {
        (
            &mut (*scratch).conn.conn,
            &mut (*scratch).window,
            &mut (*scratch).state,
        )
    };
    let side = state.side as usize;
    let turn = conn.turn(side, &state.io, &mut state.cursor, window, &mut wire);
    emit_noted(&mut wire);
    let code = match turn {
        Turn::Again => return 0,
        Turn::Stop => TURN_STOP,
        Turn::Done => TURN_DONE,
    };
    wire.state().turn = code;
    1
}

/// A run of a window's bytes from the next one (`RespConn::step_run`): 0 to go on, 1 to
/// stop (the window is used up, or the side's framing is lost).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_redis_byte(_index: u64) -> i64 {
    let Some(mut wire) = KernelWire::here() else {
        return 1;
    };
    let scratch = wire.scratch;
    // SAFETY: disjoint fields of this CPU's scratch value; `wire` touches only `state`.
    let (conn, window) = unsafe { (&mut (*scratch).conn.conn, &(*scratch).window) };
    let state = wire.state();
    let (at, got, side) = (state.at, state.got, state.side as usize);
    if at >= got {
        return 1;
    }
    let (next, step) = conn.step_run(side, window, at, got, &mut wire);
    let state = wire.state();
    if step != Step::Next {
        state.used = next;
        state.step = STEP_STOP;
        return 1;
    }
    state.at = next;
    0
}
