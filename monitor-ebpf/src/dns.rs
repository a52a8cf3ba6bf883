//! DNS lookups: each DNS message a process sends to port 53 or receives back, as one
//! `DNS_EVENTS` record with the message's first bytes (its header and question), which the
//! agent matches into lookups (`monitor_protocols::dns`). Nothing is parsed here: a UDP
//! datagram is one message, and over TCP a message starts a read/write (its 2-byte length
//! first), so the kernel's part is only to pick the sockets.
//!
//! Called by `socket_io` for every UDP read/write and for TCP ones whose peer port is 53.
//! A UDP socket is a resolver's when its peer is port 53 (`connect`ed, as glibc's and most
//! stub resolvers' are), or when it sent a datagram to port 53 (`sendto`/`sendmsg` with an
//! address, as forwarders do): that socket is remembered in `DNS_SOCKS`, so its reads are
//! looked at for the answers. Servers' sockets (port 53 is theirs) are not followed.
//! `sendmmsg`/`recvmmsg` (glibc sends its A and AAAA queries in one call) are read at the
//! call's exit by the syscall probe (`multiple`), where each message's buffer and length
//! are known; without the syscall probe they are not seen.
use aya_ebpf::bindings::BPF_ANY;
use monitor_common::{
    Counter, Endpoint, Owner, PayloadEvent, capacity::PAYLOAD_CAPTURE, payload_direction,
    payload_flags,
};

use crate::{
    maps::{DNS_EVENTS, DNS_SOCKS, batched_wakeup, bump},
    payload::{self, NR_SENDMSG, NR_SENDTO, SyscallRegs, copy_prefix, read_user},
    sock::{
        AF_INET, AF_INET6, IPPROTO_UDP, inet_socket, local_port, now_ns, remote, remote_port,
        socket_of_fd,
    },
};

pub const PORT: u16 = 53;

/// A DNS header is 12 bytes: anything shorter is not a message.
const HEADER_LEN: u64 = 12;

/// DNS is a trickle next to request traffic: wake the agent at 16 messages, or its timer.
const WAKEUP_BATCH_BYTES: u64 = 16 * core::mem::size_of::<PayloadEvent>() as u64;

/// Messages of one `sendmmsg`/`recvmmsg` looked at: glibc sends its A and AAAA queries in
/// one call, dig one query per call.
const MAX_MMSG: u64 = 4;
/// `struct mmsghdr`: a `struct user_msghdr` (56 bytes), then `msg_len`, padded to 64.
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN: u64 = 56;
/// `struct user_msghdr`: `msg_name` first, `msg_iov` at 16.
const MSGHDR_IOV: u64 = 16;

/// `mon_dns_message`'s `shape` bits above the family (16 bits) and direction (16 bits).
const SHAPE_STREAM: u64 = 1 << 32;
/// `at` is the user address of a `struct mmsghdr`, not the kernel address of `pt_regs`.
const SHAPE_MMSG: u64 = 1 << 33;

/// Where one message's bytes are in the caller's memory, and the address it was sent to
/// (`msg_name`/`dest_addr`, 0 for none).
struct Buffer {
    address: u64,
    size: u64,
    name: u64,
}

impl Buffer {
    /// The buffer of a read/write/send/recv call, from its registers.
    #[inline(always)]
    fn of_call(regs: &SyscallRegs) -> Option<Self> {
        let payload::UserBuffer { address, size, .. } = payload::user_buffer(regs)?;
        let name = match regs.nr() {
            NR_SENDTO => regs.arg4(),
            NR_SENDMSG => read_user(regs.arg1())?,
            _ => 0,
        };
        Some(Buffer {
            address,
            size,
            name,
        })
    }

    /// The buffer of one message of a `sendmmsg`/`recvmmsg`, from its `struct mmsghdr`.
    #[inline(always)]
    fn of_mmsghdr(header: u64) -> Option<Self> {
        let iov: u64 = read_user(header + MSGHDR_IOV)?;
        Some(Buffer {
            address: read_user(iov)?,
            size: read_user(iov + 8)?,
            name: read_user(header)?,
        })
    }
}

/// One read or write of `length` bytes by `owner` on UDP socket `sk`, or (`stream`) on a
/// TCP connection to port 53. `regs_at` finds the call's saved registers.
#[inline(always)]
pub fn observe(
    sk: u64,
    owner: Owner,
    family: u16,
    stream: bool,
    length: u32,
    direction: u32,
    regs_at: impl FnOnce() -> u64,
) {
    let shape = shape(family, direction) | if stream { SHAPE_STREAM } else { 0 };
    mon_dns_message(sk, owner_word(owner), shape, u64::from(length), regs_at());
}

/// The exit of a `sendmmsg`/`recvmmsg` that moved `count` messages (`regs_at` its saved
/// registers), from the syscall probe: the socket hooks see each message of the call but
/// cannot tell which of the caller's buffers it came from.
#[inline(always)]
pub fn multiple(regs_at: u64, count: i64, owner: Owner, direction: u32) {
    let Some(regs) = SyscallRegs::read(regs_at) else {
        return;
    };
    let Some(sk) = socket_of_fd(regs.arg0()) else {
        return;
    };
    let Some((family, protocol)) = inet_socket(sk) else {
        return;
    };
    if protocol != IPPROTO_UDP {
        return;
    }
    let (vector, shape) = (regs.arg1(), shape(family, direction) | SHAPE_MMSG);
    let mut index = 0;
    while index < MAX_MMSG {
        if index >= count as u64 {
            break;
        }
        let header = vector + index * MMSGHDR_SIZE;
        let Some(length) = read_user::<u32>(header + MMSGHDR_LEN) else {
            return;
        };
        mon_dns_message(sk, owner_word(owner), shape, u64::from(length), header);
        index += 1;
    }
}

#[inline(always)]
fn shape(family: u16, direction: u32) -> u64 {
    u64::from(family) | u64::from(direction & 0xffff) << 16
}

#[inline(always)]
fn owner_word(owner: Owner) -> u64 {
    u64::from(owner.tgid) | u64::from(owner.generation) << 32
}

/// One DNS message candidate: `length` bytes moved by `owner` (TGID, generation << 32) on
/// socket `sk`; `shape` is the family, the direction and the `SHAPE_*` bits; `at` finds the
/// buffer (see `SHAPE_MMSG`). A global BPF function (5.6+, scalar arguments): the verifier
/// checks it once, on its own, instead of in every socket program that calls it, whose
/// HTTP framing is already near its limits.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mon_dns_message(sk: u64, owner: u64, shape: u64, length: u64, at: u64) -> i64 {
    let owner = Owner {
        tgid: owner as u32,
        generation: (owner >> 32) as u32,
    };
    let family = shape as u16;
    let direction = (shape >> 16) as u32 & 0xffff;
    let stream = shape & SHAPE_STREAM != 0;
    let egress = direction == payload_direction::EGRESS;
    // Over TCP the caller checked the port. A UDP socket's reads are looked at when it is
    // connected to port 53, or sent a query unconnected; its writes when they may go to 53.
    let peer_port = if stream { PORT } else { remote_port(sk) };
    let wanted = peer_port == PORT
        || (peer_port == 0
            && (egress
                // SAFETY: a copy is taken at once.
                || unsafe { DNS_SOCKS.get(sk) }.is_some_and(|tgid| *tgid == owner.tgid)));
    if !wanted {
        return 0;
    }
    // One call site for each step below: every inlined copy would take its own stack.
    let buffer = if shape & SHAPE_MMSG != 0 {
        Buffer::of_mmsghdr(at)
    } else {
        SyscallRegs::read(at).and_then(|regs| Buffer::of_call(&regs))
    };
    let Some(buffer) = buffer else { return 0 };
    let server = if peer_port == PORT {
        remote(sk, family)
    } else if egress {
        // Unconnected: the destination is the call's.
        match destination(buffer.name) {
            Some(server) if server.port == PORT => {
                let _ = DNS_SOCKS.insert(sk, owner.tgid, BPF_ANY.into());
                server
            }
            _ => return 0,
        }
    } else {
        // An unconnected socket's answer: the agent finds its server from the query.
        Endpoint {
            family,
            ..Endpoint::default()
        }
    };
    let flags = if stream { payload_flags::STREAM } else { 0 };
    capture(sk, owner, length as u32, direction, &buffer, server, flags);
    0
}

/// The address at `name`, a `struct sockaddr_in` or `sockaddr_in6` in user memory.
#[inline(always)]
fn destination(name: u64) -> Option<Endpoint> {
    if name == 0 {
        return None;
    }
    // Family, port (network order), then the IPv4 address, or flow info and the IPv6 one.
    let head: [u16; 2] = read_user(name)?;
    let family = head[0];
    let mut addr = [0; 16];
    if family == AF_INET {
        let v4: [u8; 4] = read_user(name + 4)?;
        addr[..4].copy_from_slice(&v4);
    } else if family == AF_INET6 {
        addr = read_user(name + 8)?;
    } else {
        return None;
    }
    Some(Endpoint {
        family,
        port: u16::from_be(head[1]),
        addr,
    })
}

/// Sends the start of the message, up to `PAYLOAD_CAPTURE` bytes.
#[inline(always)]
fn capture(
    sk: u64,
    owner: Owner,
    length: u32,
    direction: u32,
    buffer: &Buffer,
    server: Endpoint,
    flags: u32,
) {
    let mut captured = u64::from(length).min(buffer.size);
    if captured < HEADER_LEN {
        return;
    }
    bump(Counter::DnsEventsProduced);
    let Some(mut entry) = DNS_EVENTS.reserve::<PayloadEvent>(0) else {
        bump(Counter::DnsEventsDropped);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points to a reserved ring-buffer record of the right size.
    let copied = unsafe {
        copy_prefix::<PAYLOAD_CAPTURE>((*event).data.as_mut_ptr(), &mut captured, buffer.address)
    };
    if copied != 0 {
        captured = 0;
    }
    // SAFETY: as above; every header field is written before the record is submitted (one
    // that could not be copied goes too, with nothing captured: the agent counts it).
    unsafe {
        (*event).direction = direction;
        (*event).captured = captured as u32;
        (*event).length = length;
        (*event).flags = flags;
        (*event).owner = owner;
        (*event).sk = sk;
        (*event).timestamp_ns = now_ns();
        (*event).remote = server;
        (*event).local_port = local_port(sk);
        (*event)._pad2 = 0;
    }
    entry.submit(batched_wakeup(&DNS_EVENTS, WAKEUP_BATCH_BYTES));
}
