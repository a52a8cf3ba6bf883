//! Socket I/O: payload bytes per process, and requests framed in the kernel (`framing`, the
//! `_framed` programs) or payloads copied for user space (`payload`, where the verifier
//! refuses the framing), from whichever hook the running kernel offers. Every hook ends in
//! `on_socket_io`, so what is recorded does not depend on where it was seen:
//! - `sock_send_length` / `sock_recv_length` (not in 6.1, in 6.12): inside `sock_sendmsg`/`sock_recvmsg`,
//!   the socket as an argument; non-socket I/O never reaches the probe.
//! - `sys_exit` (any kernel): the exits of the read/write/send/recv system calls, the socket
//!   found from the file descriptor. It runs on every system call exit, so it filters on the
//!   syscall number first; the agent attaches it only where the tracepoints are missing.
use aya_ebpf::{
    Global,
    bindings::{BPF_NOEXIST, pt_regs},
    helpers::bpf_probe_read_kernel,
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{Counter, NetBytes, global, payload_direction};

use crate::{
    dns, framing,
    maps::{NET_BYTES, bump},
    payload::{
        self, NR_READ, NR_READV, NR_RECVFROM, NR_RECVMSG, NR_SENDMSG, NR_SENDTO, SyscallRegs,
    },
    payload::{NR_WRITE, NR_WRITEV},
    sock::{IPPROTO_UDP, current_owner, inet_socket, remote_port, socket_of_fd},
    tls,
};

/// `global::SOCK_IO_DIRECTIONS`: what the `sys_exit` hook records (set at load).
#[unsafe(no_mangle)]
static SOCK_IO_DIRECTIONS: Global<u32> = Global::new(global::SOCK_IO_SEND | global::SOCK_IO_RECV);

const MSG_PEEK: u64 = 2;
const EEXIST: i64 = 17;

/// `sock_send_length(sk, ret, flags)`, inside `sock_sendmsg`: runs in the sender's context.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn mon_sock_send(ctx: RawTracePointContext) -> i32 {
    on_send::<false>(ctx)
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn mon_sock_send_framed(ctx: RawTracePointContext) -> i32 {
    on_send::<true>(ctx)
}

/// `sock_recv_length(sk, ret, flags)`, inside `sock_recvmsg`.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn mon_sock_recv(ctx: RawTracePointContext) -> i32 {
    on_recv::<false>(ctx)
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn mon_sock_recv_framed(ctx: RawTracePointContext) -> i32 {
    on_recv::<true>(ctx)
}

/// `sys_exit(regs, ret)` for kernels without the `sock_*_length` tracepoints.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn mon_sock_io_exit(ctx: RawTracePointContext) -> i32 {
    on_syscall_exit::<false>(ctx)
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn mon_sock_io_exit_framed(ctx: RawTracePointContext) -> i32 {
    on_syscall_exit::<true>(ctx)
}

#[inline(always)]
fn on_send<const FRAMED: bool>(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret > 0 {
        on_socket_io::<FRAMED>(
            ctx.arg(0),
            ret as u32,
            payload_direction::EGRESS,
            payload::current_regs_at,
            payload::current_regs,
        );
    }
    0
}

/// A `MSG_PEEK` read leaves the data queued for the next read: counting it would count
/// those bytes twice.
#[inline(always)]
fn on_recv<const FRAMED: bool>(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    let flags = ctx.arg::<u64>(2);
    if ret > 0 && flags & MSG_PEEK == 0 {
        on_socket_io::<FRAMED>(
            ctx.arg(0),
            ret as u32,
            payload_direction::INGRESS,
            payload::current_regs_at,
            payload::current_regs,
        );
    }
    0
}

#[inline(always)]
fn on_syscall_exit<const FRAMED: bool>(ctx: RawTracePointContext) -> i32 {
    let ret: i64 = ctx.arg(1);
    if ret <= 0 {
        return 0;
    }
    let regs_at: u64 = ctx.arg(0);
    // The syscall number alone first: most exits are not socket I/O.
    let Some(nr) = read_at::<u64>(regs_at + core::mem::offset_of!(pt_regs, orig_rax) as u64) else {
        return 0;
    };
    let (direction, wanted) = match nr {
        NR_WRITE | NR_WRITEV | NR_SENDTO | NR_SENDMSG => {
            (payload_direction::EGRESS, global::SOCK_IO_SEND)
        }
        NR_READ | NR_READV | NR_RECVFROM | NR_RECVMSG => {
            (payload_direction::INGRESS, global::SOCK_IO_RECV)
        }
        _ => return 0,
    };
    if SOCK_IO_DIRECTIONS.load() & wanted == 0 {
        return 0;
    }
    let Some(regs) = SyscallRegs::read(regs_at) else {
        return 0;
    };
    // recvfrom(fd, buf, len, flags, …) and recvmsg(fd, msg, flags): as above, a peek is
    // counted by the read that consumes the data.
    let flags = match nr {
        NR_RECVFROM => regs.arg3(),
        NR_RECVMSG => regs.arg2(),
        _ => 0,
    };
    if flags & MSG_PEEK != 0 {
        return 0;
    }
    let Some(sk) = socket_of_fd(regs.arg0()) else {
        return 0;
    };
    let length = u32::try_from(ret).unwrap_or(u32::MAX);
    on_socket_io::<FRAMED>(sk, length, direction, || regs_at, || Some(regs));
    0
}

/// Counts `length` bytes moved through TCP socket `sk` and offers the call to request
/// framing (`FRAMED`) or payload capture; DNS messages (UDP, or TCP to port 53) go to `dns`
/// instead. Only for processes the agent watches. `regs_at` finds where the syscall's saved
/// registers are, `regs` reads them (the buffer, a datagram's destination); each is asked
/// only for sockets that need it.
#[inline(always)]
fn on_socket_io<const FRAMED: bool>(
    sk: u64,
    length: u32,
    direction: u32,
    regs_at: impl FnOnce() -> u64,
    regs: impl FnOnce() -> Option<SyscallRegs>,
) {
    let Some(owner) = current_owner() else { return };
    let Some((family, protocol)) = inet_socket(sk) else {
        return;
    };
    if protocol == IPPROTO_UDP {
        dns::observe(sk, owner, family, false, length, direction, regs_at);
        return;
    }
    let (sent, received) = if direction == payload_direction::EGRESS {
        (u64::from(length), 0)
    } else {
        (0, u64::from(length))
    };
    add_bytes(owner, sent, received);
    if tls::note_socket(sk) {
        return;
    }
    if remote_port(sk) == dns::PORT {
        dns::observe(sk, owner, family, true, length, direction, regs_at);
        return;
    }
    let buffer = #[inline(always)]
    || regs().and_then(|regs| payload::user_buffer(&regs));
    if FRAMED {
        framing::frame(sk, owner, family, length, direction, buffer);
    } else {
        payload::capture(sk, owner, family, length, direction, buffer);
    }
}

#[inline(always)]
fn add_bytes(owner: monitor_common::Owner, sent: u64, received: u64) {
    let bytes = match NET_BYTES.get_ptr_mut(owner) {
        Some(bytes) => bytes,
        None => {
            if let Err(err) = NET_BYTES.insert(owner, NetBytes::default(), BPF_NOEXIST.into()) {
                // EEXIST: another CPU created the key between our lookup and insert.
                if i64::from(err) != -EEXIST {
                    bump(Counter::NetBytesFull);
                    return;
                }
            }
            match NET_BYTES.get_ptr_mut(owner) {
                Some(bytes) => bytes,
                None => return,
            }
        }
    };
    // SAFETY: pointer into this CPU's copy of a per-CPU hash value.
    unsafe {
        (*bytes).sent += sent;
        (*bytes).received += received;
    }
}

#[inline(always)]
fn read_at<T>(address: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails instead of faulting;
    // the value is plain data.
    unsafe { bpf_probe_read_kernel(address as *const T).ok() }
}
