//! Payload capture for request protocols (HTTP/1.x): a bounded prefix of each socket read
//! and write, for sockets whose traffic looks like a request protocol.
//!
//! Called by `socket_io` once a socket read or write has moved its data, from either of its
//! hooks (the `sock_*_length` tracepoints inside the syscall, or the syscall's exit): a
//! write's bytes are still in the caller's buffer and a read's have just been copied there.
//! The buffer is found from the syscall's own arguments (the task's user registers), so no
//! `sys_enter` bookkeeping is needed. Each socket is judged on its first reads/writes: a few
//! chunks that do not start like a request or response, and it is ignored for good at one
//! hash lookup per call. So is a socket that leaves HTTP: a `101 Switching Protocols`
//! (WebSocket, h2c) or a `2xx` answer to `CONNECT` (a tunnel) is the last chunk captured.
use aya_ebpf::{
    bindings::{BPF_ANY, pt_regs},
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs},
    },
};
use monitor_common::{Counter, Owner, PayloadEvent, capacity::PAYLOAD_CAPTURE, payload_flags};

use crate::{
    maps::{PAYLOAD_EVENTS, PAYLOAD_SOCKS, batched_wakeup, bump},
    sock::{local_port, now_ns, remote},
};

/// About 400 captures per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 256 * 1024;

/// `PAYLOAD_SOCKS` values: 1..=MAX_MISSES count chunks that started no message.
const CAPTURE: u32 = 100;
/// Captured, and a `CONNECT` request was seen: a `2xx` answer makes it a tunnel.
const CONNECTING: u32 = 101;
const IGNORE: u32 = 200;
const MAX_MISSES: u32 = 3;

// x86_64 syscall numbers of the calls with one plain user buffer or iovec.
pub const NR_READ: u64 = 0;
pub const NR_WRITE: u64 = 1;
pub const NR_READV: u64 = 19;
pub const NR_WRITEV: u64 = 20;
pub const NR_SENDTO: u64 = 44;
pub const NR_RECVFROM: u64 = 45;
pub const NR_SENDMSG: u64 = 46;
pub const NR_RECVMSG: u64 = 47;
pub const NR_RECVMMSG: u32 = 299;
pub const NR_SENDMMSG: u32 = 307;
/// `struct user_msghdr`: `msg_iov` follows `msg_name` and `msg_namelen`, and `msg_iovlen`
/// follows it (UAPI, stable).
pub const MSGHDR_IOV: u64 = 16;
pub const MSGHDR_IOVLEN: u64 = 24;

/// The first four bytes of an HTTP/1.x request or response. Values, not references: a
/// table of pointers would need relocations inside `.rodata`, which BPF loaders lack.
const MESSAGE_STARTS: [[u8; 4]; 10] = [
    *b"GET ", *b"POST", *b"PUT ", *b"HEAD", *b"DELE", *b"PATC", *b"OPTI", *b"CONN", *b"TRAC",
    *b"HTTP",
];

/// The `shape` bit `copied::mon_copy` hands `redis::mon_redis` and `postgres::frame`: the
/// socket was judged on this read/write.
pub const FRAMED_FIRST: u64 = 1 << 32;

#[inline(always)]
pub fn read_user<T>(address: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user checks the address and fails instead of faulting; the
    // value is plain integers.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(address as *const T).ok() }
}

/// The saved user registers of a system call that the capture reads: its number and its
/// first, second, third and fourth arguments. Read as the one run of `struct pt_regs` from
/// `r10` to `orig_rax` (72 bytes, where the whole struct is 168): the stack of the framing
/// programs, callbacks included, must stay within the 512 bytes the verifiers allow.
#[derive(Clone, Copy)]
pub struct SyscallRegs([u64; SyscallRegs::WORDS]);

impl SyscallRegs {
    const FIRST: usize = core::mem::offset_of!(pt_regs, r10);
    const WORDS: usize = (core::mem::offset_of!(pt_regs, orig_rax) - Self::FIRST) / 8 + 1;

    /// The registers saved at `regs`, a `struct pt_regs` in kernel memory.
    #[inline(always)]
    pub fn read(regs: u64) -> Option<Self> {
        // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting;
        // the value is plain integers.
        unsafe { bpf_probe_read_kernel((regs + Self::FIRST as u64) as *const [u64; Self::WORDS]) }
            .ok()
            .map(Self)
    }

    #[inline(always)]
    fn word(&self, offset: usize) -> u64 {
        self.0[(offset - Self::FIRST) / 8]
    }

    pub fn nr(&self) -> u64 {
        self.word(core::mem::offset_of!(pt_regs, orig_rax))
    }

    pub fn arg0(&self) -> u64 {
        self.word(core::mem::offset_of!(pt_regs, rdi))
    }

    pub fn arg1(&self) -> u64 {
        self.word(core::mem::offset_of!(pt_regs, rsi))
    }

    pub fn arg2(&self) -> u64 {
        self.word(core::mem::offset_of!(pt_regs, rdx))
    }

    pub fn arg3(&self) -> u64 {
        self.word(core::mem::offset_of!(pt_regs, r10))
    }

    pub fn arg4(&self) -> u64 {
        self.word(core::mem::offset_of!(pt_regs, r8))
    }
}

/// The registers of the syscall in progress, from the task's saved user registers
/// (`bpf_task_pt_regs`, 5.15+: only the in-syscall tracepoint hook uses it).
#[inline(always)]
pub fn current_regs() -> Option<SyscallRegs> {
    // SAFETY: plain helper calls; `bpf_task_pt_regs` of the current task returns its saved
    // user registers, read through bpf_probe_read_kernel, which cannot fault.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    if regs == 0 {
        return None;
    }
    SyscallRegs::read(regs)
}

/// Where the current task's saved user registers are (`struct pt_regs`, kernel memory), as
/// a plain number (0 if unknown): the verifier types `bpf_task_pt_regs`'s result as a
/// pointer, which a global function (`dns::mon_dns_message`) may not be passed. Copying its
/// bytes through a helper leaves a number it only reads through probe reads.
#[inline(always)]
pub fn current_regs_at() -> u64 {
    // SAFETY: a plain helper call; the pointer is not dereferenced here.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) };
    // SAFETY: reads the 8 bytes of a local of this frame.
    unsafe { bpf_probe_read_kernel(core::ptr::from_ref(&regs).cast::<u64>()) }.unwrap_or(0)
}

/// A syscall's user buffer: its first (or only) piece, and where a vectored call's pieces
/// are. Only what the call's arguments say without reading more of the user's memory: the
/// framing programs' stack has no room for another read (5.10 counts it against 512 bytes
/// with their callees'), and only HTTP/2's copies need the pieces (`copied::mon_copy` reads
/// them).
#[derive(Clone, Copy)]
pub struct UserBuffer {
    pub address: u64,
    pub size: u64,
    /// `readv`/`writev`: the `struct iovec` array; `sendmsg`/`recvmsg`: the `struct
    /// user_msghdr`; 0 for a plain buffer.
    pub vector: u64,
    /// `readv`/`writev`: the pieces; `sendmsg`/`recvmsg`: `MSGHDR`; 0 for a plain buffer.
    pub pieces: u64,
}

/// `UserBuffer::pieces` of a `struct user_msghdr`, whose `msg_iovlen` was not read.
pub const MSGHDR: u64 = u64::MAX;

impl UserBuffer {
    pub fn plain(address: u64, size: u64) -> Self {
        Self {
            address,
            size,
            vector: 0,
            pieces: 0,
        }
    }
}

/// The user buffer of a syscall, from its arguments.
#[inline(always)]
pub fn user_buffer(regs: &SyscallRegs) -> Option<UserBuffer> {
    let first = |iov: u64, vector: u64, pieces: u64| -> Option<UserBuffer> {
        Some(UserBuffer {
            address: read_user(iov)?,
            size: read_user(iov + 8)?,
            vector,
            pieces,
        })
    };
    match regs.nr() {
        NR_READ | NR_WRITE | NR_SENDTO | NR_RECVFROM => {
            Some(UserBuffer::plain(regs.arg1(), regs.arg2()))
        }
        NR_READV | NR_WRITEV => first(regs.arg1(), regs.arg1(), regs.arg2()),
        NR_SENDMSG | NR_RECVMSG => first(read_user(regs.arg1() + MSGHDR_IOV)?, regs.arg1(), MSGHDR),
        _ => None, // sendfile, splice, io_uring, sendmmsg: no single user buffer
    }
}

/// Copies the first `*len` bytes (at most `CAP`, to which `*len` is cut) of the user buffer
/// at `src` to `dst`; the helper's result. Verifiers before 5.13 or so forget a bound learnt
/// on a register once the compiler spills it to the stack (as it does in these large
/// inlined programs), and then refuse the helper's size ("R2 unbounded memory access"). So
/// the size is bounded by a mask right at the call, on a value read back through a volatile
/// load: the compiler cannot prove the mask redundant and drop it. Shared by payload capture
/// (`PAYLOAD_CAPTURE` bytes) and the framing's windows.
///
/// # Safety
/// `dst` must have room for `CAP` bytes.
#[inline(always)]
pub unsafe fn copy_prefix<const CAP: usize>(dst: *mut u8, len: &mut u64, src: u64) -> i64 {
    const { assert!(CAP.is_power_of_two()) };
    let cap = CAP as u64;
    if *len >= cap {
        *len = cap;
        // SAFETY: the caller's `dst` holds CAP bytes; the helper cannot fault.
        return unsafe { bpf_probe_read_user(dst.cast(), CAP as u32, src as *const _) };
    }
    // SAFETY: a plain read of a local.
    let size = unsafe { core::ptr::read_volatile(len) } & (cap - 1);
    // SAFETY: `size` < CAP; as above.
    unsafe { bpf_probe_read_user(dst.cast(), size as u32, src as *const _) }
}

/// Whether a chunk starts like a request or response: its first four bytes, or all of a
/// shorter chunk, begin one (clients may write `GE` then `T / HTTP/1.1`).
#[inline(always)]
fn starts_message(data: &[u8; PAYLOAD_CAPTURE], captured: usize) -> bool {
    if captured == 0 {
        return false;
    }
    // Constant indexes only: a loop over them left a bounds check (and its panic) behind.
    let head = [data[0], data[1], data[2], data[3]];
    let byte_fits = |start: &[u8; 4], i: usize| i >= captured || start[i] == head[i];
    MESSAGE_STARTS.iter().any(|start| {
        byte_fits(start, 0) && byte_fits(start, 1) && byte_fits(start, 2) && byte_fits(start, 3)
    })
}

/// Byte by byte: a slice comparison would be a call to `bcmp`, which BPF has not.
#[inline(always)]
fn begins_with<const N: usize>(data: &[u8; PAYLOAD_CAPTURE], prefix: &[u8; N]) -> bool {
    let mut i = 0;
    while i < N {
        if data[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The verdict after a captured chunk that starts with `data`: a request `CONNECT` waits for
/// its answer, an upgrade or an accepted tunnel ends the capture.
#[inline(always)]
fn verdict_after(verdict: u32, data: &[u8; PAYLOAD_CAPTURE], captured: usize) -> u32 {
    if captured >= 8 && begins_with(data, b"CONNECT ") {
        return CONNECTING;
    }
    let status_line = captured >= 13 && begins_with(data, b"HTTP/1.") && data[8] == b' ';
    if !status_line {
        return verdict;
    }
    match (data[9], data[10], data[11]) {
        (b'1', b'0', b'1') => IGNORE,
        (b'2', _, _) if verdict == CONNECTING => IGNORE,
        // 1xx interim: the tunnel's final answer is still to come.
        (b'1', _, _) => verdict,
        _ => CAPTURE,
    }
}

/// Captures one socket read or write of `length` bytes, unless the socket was judged not
/// to carry a request protocol. `buffer` finds the caller's buffer (address, size); it is
/// asked only for sockets still being captured or judged.
#[inline(always)]
pub fn capture(
    sk: u64,
    owner: Owner,
    family: u16,
    length: u32,
    direction: u32,
    buffer: impl FnOnce() -> Option<UserBuffer>,
) {
    // SAFETY: a copy is taken at once; a concurrent update only makes it stale.
    let verdict = unsafe { PAYLOAD_SOCKS.get(sk) }.copied().unwrap_or(0);
    if verdict == IGNORE {
        return;
    }
    let Some(UserBuffer {
        address: buffer,
        size,
        ..
    }) = buffer()
    else {
        if verdict == CAPTURE || verdict == CONNECTING {
            bump(Counter::PayloadUnreadable);
        }
        return;
    };
    let Some(mut entry) = PAYLOAD_EVENTS.reserve::<PayloadEvent>(0) else {
        bump(Counter::PayloadEventsProduced);
        bump(Counter::PayloadEventsDropped);
        return;
    };
    let event = entry.as_mut_ptr();
    let mut captured = u64::from(length).min(size);
    // SAFETY: `event` points to a reserved ring-buffer record of the right size.
    let copied = unsafe {
        copy_prefix::<PAYLOAD_CAPTURE>((*event).data.as_mut_ptr(), &mut captured, buffer)
    };
    if copied != 0 {
        captured = 0;
    }
    // SAFETY: as above; `data` was written by the helper up to `captured`.
    let starts = unsafe { starts_message(&(*event).data, captured as usize) };
    let capturing = verdict == CAPTURE || verdict == CONNECTING;
    let mut next = verdict;
    if !capturing {
        next = if starts {
            CAPTURE
        } else if verdict + 1 >= MAX_MISSES {
            IGNORE
        } else {
            verdict + 1
        };
        if !starts {
            let _ = PAYLOAD_SOCKS.insert(sk, next, BPF_ANY.into());
            entry.discard(0);
            return;
        }
    }
    if starts {
        // SAFETY: as above.
        next = unsafe { verdict_after(next, &(*event).data, captured as usize) };
    }
    if next != verdict {
        let _ = PAYLOAD_SOCKS.insert(sk, next, BPF_ANY.into());
    }
    bump(Counter::PayloadEventsProduced);
    if captured == 0 {
        bump(Counter::PayloadUnreadable);
    }
    // SAFETY: as above; every header field is written before the record is submitted.
    unsafe {
        (*event).direction = direction;
        (*event).captured = captured as u32;
        (*event).length = length;
        (*event).flags = if capturing { 0 } else { payload_flags::FIRST };
        (*event).owner = owner;
        (*event).sk = sk;
        (*event).timestamp_ns = now_ns();
        (*event).remote = remote(sk, family);
        (*event).local_port = local_port(sk);
        (*event)._pad2 = 0;
    }
    entry.submit(batched_wakeup(&PAYLOAD_EVENTS, WAKEUP_BATCH_BYTES));
}
