//! Connections framed by the agent, not here: each read/write is copied, up to `DB_CAPTURE`
//! bytes, to the agent. Databases' wire protocols (Redis, PostgreSQL) where the probes do
//! not frame them (`--probes.databases`), whose first read/write starts like a client's
//! message (`monitor_framing::starts_database`), go to `DB_EVENTS`
//! (`monitor_protocols::redis`, `postgres`); those the probes frame pass through here too,
//! and `mon_copy` hands them to `redis` and `postgres`. HTTP/2, whose first starts with the
//! client's preface (`monitor_framing::starts_http2`), goes to `HTTP2_EVENTS`
//! (`monitor_protocols::http2`: its header compression needs every header block from the
//! connection's start, more state than a BPF map value should hold). Both are judged by
//! `framing`, where HTTP/1.x is. Records are as long as what they carry: the copy is made
//! in this CPU's `DB_SCRATCH` and output from there.
use monitor_common::{Counter, DbEvent, Owner, capacity::DB_CAPTURE, payload_flags};
use monitor_framing::verdict;

use crate::{
    maps::{DB_EVENTS, DB_SCRATCH, HTTP2_EVENTS, PAYLOAD_SOCKS, batched_wakeup, bump},
    payload::{
        FRAMED_FIRST, MSGHDR, MSGHDR_IOV, MSGHDR_IOVLEN, UserBuffer, copy_prefix, read_user,
    },
    postgres, redis,
    sock::{local_port, now_ns, remote},
};

/// The head every record carries before its bytes.
const HEAD: u64 = core::mem::offset_of!(DbEvent, data) as u64;

/// About 1 000 small commands or replies per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 128 * 1024;

/// `shape` bits above the family (16) and direction (16).
const SHAPE_HTTP2: u64 = 1 << 32;
const SHAPE_FIRST: u64 = 1 << 33;
/// `address` is a `struct iovec` array and `lengths` the bytes moved and, << 32, its count.
const SHAPE_VECTOR: u64 = 1 << 34;
/// With `SHAPE_VECTOR`: `address` is a `struct user_msghdr`, whose array and count are read.
const SHAPE_MSGHDR: u64 = 1 << 35;

/// One read/write of `length` bytes by `owner` on socket `sk`, in `user`'s buffer, of a
/// socket whose verdict `verdict::is_copied`: copied to `DB_EVENTS` or, for `http2`,
/// `HTTP2_EVENTS`, or framed (Redis, PostgreSQL: see `mon_copy`); `first` when the socket was judged on it. HTTP/2 is
/// framed across the whole read/write, so a vectored one has every piece copied; a
/// database's first piece is enough to find its messages.
#[inline(always)]
pub fn capture(
    http2: bool,
    first: bool,
    (sk, owner): (u64, Owner),
    (family, direction): (u16, u32),
    length: u32,
    user: UserBuffer,
) {
    let owner = u64::from(owner.tgid) | u64::from(owner.generation) << 32;
    let mut shape = u64::from(family) | u64::from(direction & 0xffff) << 16;
    if first {
        shape |= SHAPE_FIRST;
    }
    let (mut lengths, mut address) = (
        u64::from(length) | user.size.min(u64::from(length)) << 32,
        user.address,
    );
    if http2 {
        shape |= SHAPE_HTTP2;
        if user.pieces > 1 {
            shape |= SHAPE_VECTOR;
            if user.pieces == MSGHDR {
                shape |= SHAPE_MSGHDR;
                lengths = u64::from(length);
            } else {
                lengths = u64::from(length) | user.pieces.min(MAX_PIECES) << 32;
            }
            address = user.vector;
        }
    }
    mon_copy(sk, owner, shape, lengths, address);
}

/// Pieces of a vectored read/write copied one by one (gRPC's C core writes a request's
/// headers in 24); the bytes of any further pieces are one record of their count alone.
const MAX_PIECES: u64 = 32;

/// The copies of one read/write, as a global BPF function (5.6+, scalar arguments):
/// checked once on its own, not inside the framing programs that call it, which are near
/// their limits. `owner` is (TGID, generation << 32), `shape` the family, direction << 16
/// and the `SHAPE_*` bits, `lengths` the bytes moved and, << 32, those readable at
/// `address` (or, `SHAPE_VECTOR`, the pieces of the iovec array at `address`). Each
/// piece's copy is a global function of its own (`mon_copy_piece`): inlined in the loop, the
/// 6.1 verifier walked a million instructions and gave up.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_copy(sk: u64, owner: u64, shape: u64, lengths: u64, address: u64) -> i64 {
    // A Redis or PostgreSQL socket's read/write is framed, not copied. Told apart here by
    // its verdict, not by the caller: any more code in the framing programs took one of
    // them (5.10's system-call exit path) past 512 bytes of stack, across its chain of calls.
    if shape & SHAPE_HTTP2 == 0 {
        // SAFETY: a copy is taken at once.
        let judged = unsafe { PAYLOAD_SOCKS.get(sk) }.copied().unwrap_or(0);
        if judged == verdict::REDIS || judged == verdict::POSTGRES {
            let first = if shape & SHAPE_FIRST != 0 {
                FRAMED_FIRST
            } else {
                0
            };
            let shape = (shape & 0xffff_ffff) | first;
            if judged == verdict::REDIS {
                return redis::mon_redis(sk, owner, shape, lengths, address);
            }
            return postgres::frame(sk, owner, shape, lengths, address);
        }
    }
    let vector = shape & SHAPE_VECTOR != 0;
    let (mut pieces, mut address) = (lengths >> 32, address);
    if vector && shape & SHAPE_MSGHDR != 0 {
        let (Some(iov), Some(count)) = (
            read_user::<u64>(address + MSGHDR_IOV),
            read_user::<u64>(address + MSGHDR_IOVLEN),
        ) else {
            return 0;
        };
        (pieces, address) = (count.min(MAX_PIECES), iov);
    }
    let mut left = lengths & 0xffff_ffff;
    let mut shape = shape & !SHAPE_VECTOR;
    let mut piece = 0;
    // One more turn than pieces: the bytes of pieces past them, as a record of their count.
    while piece <= MAX_PIECES {
        let (moved, readable, base) = if !vector {
            (left, pieces, address)
        } else if piece < pieces {
            let at = address + piece * 16;
            let (Some(base), Some(size)) = (read_user::<u64>(at), read_user::<u64>(at + 8)) else {
                return 0;
            };
            let moved = size.min(left);
            (moved, moved, base)
        } else {
            (left, 0, 0)
        };
        mon_copy_piece(sk, owner, shape, moved | readable << 32, base);
        left -= moved.min(left);
        if !vector || left == 0 {
            break;
        }
        shape &= !SHAPE_FIRST;
        piece += 1;
    }
    0
}

/// One copy and its record, as a global BPF function: `lengths` are the bytes moved and,
/// << 32, those readable at `address`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_copy_piece(
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
        (*event).flags = if shape & SHAPE_FIRST != 0 {
            payload_flags::FIRST
        } else {
            0
        };
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
    // One output call per ring: a call site that could be given either map would be
    // refused by the older verifiers.
    if shape & SHAPE_HTTP2 != 0 {
        bump(Counter::Http2EventsProduced);
        let wakeup = batched_wakeup(&HTTP2_EVENTS, WAKEUP_BATCH_BYTES);
        if HTTP2_EVENTS.output::<[u8]>(record, wakeup).is_err() {
            bump(Counter::Http2EventsDropped);
        }
    } else {
        bump(Counter::DbEventsProduced);
        let wakeup = batched_wakeup(&DB_EVENTS, WAKEUP_BATCH_BYTES);
        if DB_EVENTS.output::<[u8]>(record, wakeup).is_err() {
            bump(Counter::DbEventsDropped);
        }
    }
    0
}
