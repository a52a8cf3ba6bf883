//! TCP golden signals: connects, accepts, failures, closes, retransmits, resets, bytes.
//!
//! Raw tracepoints with the socket as argument; struct members are read at offsets the agent
//! finds in the running kernel's BTF (`monitor_common::global::KERNEL_OFFSETS`), so nothing
//! here depends on one kernel's layout. Only connect, listen and send/receive run in the
//! owner's context; every other event (handshake completion, FIN/RST processing, timers)
//! runs in softirq or timer context and finds its process through `TCP_CONNS`.
use aya_ebpf::{
    Global,
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{
    Counter, Endpoint, ListenerKey, NetBytes, Owner, TcpConn, TcpEvent, direction,
    payload_direction, tcp_event,
};

use crate::{
    maps::{
        AGENT_TGID, NET_BYTES, PAYLOAD_SOCKS, PROCESS_STATE, TCP_CONNS, TCP_EVENTS, TCP_LISTENERS,
        batched_wakeup, bump, is_excluded,
    },
    payload,
};

// Offsets (bytes) set at load from BTF; see `monitor_common::global::KERNEL_OFFSETS`.
#[unsafe(no_mangle)]
static OFF_SKC_FAMILY: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKC_DADDR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKC_V6_DADDR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKC_DPORT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(crate) static OFF_SKC_NUM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SKC_NET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_NET_INUM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SK_PROTOCOL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SK_ERR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SRTT_US: Global<u32> = Global::new(0);

/// About a thousand TCP events per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 64 * 1024;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const MSG_PEEK: i64 = 2;
const EEXIST: i64 = 17;

// `enum tcp_state` (include/net/tcp_states.h), stable kernel ABI.
const TCP_ESTABLISHED: u32 = 1;
const TCP_SYN_SENT: u32 = 2;
const TCP_SYN_RECV: u32 = 3;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// Reads a `T` at `base + offset` in kernel memory; `None` if the read faults.
#[inline(always)]
pub(crate) fn read<T>(base: u64, offset: &Global<u32>) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails instead of faulting;
    // the value is plain data (integers).
    unsafe { bpf_probe_read_kernel((base + u64::from(offset.load())) as *const T).ok() }
}

#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no preconditions; a plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// The calling process, unless it is the agent (its own scrapes are not workload traffic).
#[inline(always)]
fn current_owner() -> Option<Owner> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == AGENT_TGID.load() {
        return None;
    }
    let generation = PROCESS_STATE.get(tgid).map_or(0, |state| state.generation);
    if is_excluded(tgid, generation) {
        return None;
    }
    Some(Owner { tgid, generation })
}

/// The address family of a TCP socket over IPv4 or IPv6, `None` for any other socket: the
/// tracepoints below also fire for UDP, unix and MPTCP's meta sockets.
#[inline(always)]
fn tcp_family(sk: u64) -> Option<u16> {
    let family: u16 = read(sk, &OFF_SKC_FAMILY)?;
    ((family == AF_INET || family == AF_INET6)
        && read::<u16>(sk, &OFF_SK_PROTOCOL) == Some(IPPROTO_TCP))
    .then_some(family)
}

/// The peer of socket `sk` of address `family`.
#[inline(always)]
pub(crate) fn remote(sk: u64, family: u16) -> Endpoint {
    let port: u16 = read(sk, &OFF_SKC_DPORT).unwrap_or(0);
    let addr = if family == AF_INET6 {
        read::<[u8; 16]>(sk, &OFF_SKC_V6_DADDR).unwrap_or([0; 16])
    } else {
        let mut addr = [0; 16];
        let v4: [u8; 4] = read(sk, &OFF_SKC_DADDR).unwrap_or([0; 4]);
        addr[..4].copy_from_slice(&v4);
        addr
    };
    Endpoint {
        family,
        port: u16::from_be(port),
        addr,
    }
}

/// The listening port in its network namespace: two containers may both listen on :80.
#[inline(always)]
fn listener_key(sk: u64) -> ListenerKey {
    let net: u64 = read(sk, &OFF_SKC_NET).unwrap_or(0);
    let netns = if net == 0 {
        0
    } else {
        read(net, &OFF_NET_INUM).unwrap_or(0)
    };
    ListenerKey {
        netns,
        port: read(sk, &OFF_SKC_NUM).unwrap_or(0),
        _pad: 0,
    }
}

#[inline(always)]
fn emit(kind: u32, conn: &TcpConn, error: u32, srtt_us: u32, duration_ns: u64) {
    bump(Counter::TcpEventsProduced);
    let Some(mut entry) = TCP_EVENTS.reserve::<TcpEvent>(0) else {
        bump(Counter::TcpEventsDropped);
        return;
    };
    entry.write(TcpEvent {
        kind,
        direction: conn.direction,
        owner: conn.owner,
        local_port: conn.local_port,
        _pad: 0,
        error,
        remote: conn.remote,
        srtt_us,
        duration_ns,
    });
    entry.submit(batched_wakeup(&TCP_EVENTS, WAKEUP_BATCH_BYTES));
}

#[inline(always)]
fn track(sk: u64, conn: &TcpConn) {
    if TCP_CONNS.insert(sk, conn, BPF_ANY.into()).is_err() {
        bump(Counter::TcpConnsFull);
    }
}

/// `inet_sock_set_state(sk, oldstate, newstate)`.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn mon_tcp_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let old = ctx.arg::<u64>(1) as u32;
    let new = ctx.arg::<u64>(2) as u32;
    match (old, new) {
        (TCP_CLOSE, TCP_SYN_SENT) => on_connect(sk),
        (TCP_CLOSE, TCP_LISTEN) => on_listen(sk),
        (TCP_LISTEN, TCP_CLOSE) => on_unlisten(sk),
        (TCP_LISTEN, TCP_SYN_RECV) => on_accept(sk),
        (_, TCP_ESTABLISHED) => on_established(sk),
        (TCP_SYN_SENT, TCP_CLOSE) => on_connect_failed(sk),
        (_, TCP_CLOSE) => on_close(sk),
        _ => {}
    }
    0
}

/// CLOSE → SYN_SENT runs inside `connect()`: `current` is the owner.
#[inline(always)]
fn on_connect(sk: u64) {
    let Some(owner) = current_owner() else { return };
    let Some(family) = tcp_family(sk) else { return };
    let remote = remote(sk, family);
    track(
        sk,
        &TcpConn {
            owner,
            direction: direction::OUTBOUND,
            local_port: 0,
            _pad: 0,
            remote,
            _pad2: 0,
            start_ns: now_ns(),
            established_ns: 0,
        },
    );
}

/// CLOSE → LISTEN runs inside `listen()`.
#[inline(always)]
fn on_listen(sk: u64) {
    let Some(owner) = current_owner() else { return };
    if tcp_family(sk).is_none() {
        return;
    }
    if TCP_LISTENERS
        .insert(listener_key(sk), owner, BPF_ANY.into())
        .is_err()
    {
        bump(Counter::TcpListenersFull);
    }
}

/// Only the owner's close removes the entry: with SO_REUSEPORT another process may still
/// listen on the port.
#[inline(always)]
fn on_unlisten(sk: u64) {
    let key = listener_key(sk);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a copy is taken at once; a concurrent delete only makes it stale.
    let owner = unsafe { TCP_LISTENERS.get(key) }.copied();
    if owner.is_some_and(|owner| owner.tgid == tgid) {
        let _ = TCP_LISTENERS.remove(key);
    }
}

/// LISTEN → SYN_RECV is the new child socket, set up in softirq context: its owner is the
/// listening socket's.
#[inline(always)]
fn on_accept(sk: u64) {
    let key = listener_key(sk);
    // SAFETY: as in `on_unlisten`.
    let Some(owner) = (unsafe { TCP_LISTENERS.get(key) }).copied() else {
        return;
    };
    track(
        sk,
        &TcpConn {
            owner,
            direction: direction::INBOUND,
            local_port: key.port,
            _pad: 0,
            // A child of a TCP listener: no need to ask whether it is TCP.
            remote: remote(sk, read(sk, &OFF_SKC_FAMILY).unwrap_or(0)),
            _pad2: 0,
            start_ns: now_ns(),
            established_ns: 0,
        },
    );
}

#[inline(always)]
fn on_established(sk: u64) {
    let Some(conn) = TCP_CONNS.get_ptr_mut(sk) else {
        return;
    };
    // SAFETY: pointer into a hash map value, valid for this program run; state changes of
    // one socket are serialised by the socket lock.
    let conn = unsafe { &mut *conn };
    let now = now_ns();
    conn.established_ns = now;
    emit(tcp_event::OPEN, conn, 0, 0, now.wrapping_sub(conn.start_ns));
}

/// `tcp_done_with_error` sets `sk_err` before the state change, in every context, so it
/// says why: ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, … (0 when the application gave up).
#[inline(always)]
fn on_connect_failed(sk: u64) {
    // SAFETY: as in `on_established`.
    let Some(conn) = (unsafe { TCP_CONNS.get(sk) }).copied() else {
        return;
    };
    let error: i32 = read(sk, &OFF_SK_ERR).unwrap_or(0);
    let duration = now_ns().wrapping_sub(conn.start_ns);
    emit(tcp_event::CONNECT_FAIL, &conn, error as u32, 0, duration);
}

/// The entry stays until `tcp_destroy_sock`: an abortive close sends its reset after this.
#[inline(always)]
fn on_close(sk: u64) {
    let Some(conn) = TCP_CONNS.get_ptr_mut(sk) else {
        return;
    };
    // SAFETY: as in `on_established`.
    let conn = unsafe { &mut *conn };
    if conn.established_ns == 0 {
        return; // never established (a failed accept), or the close was already reported
    }
    let duration = now_ns().wrapping_sub(conn.established_ns);
    conn.established_ns = 0;
    // `srtt_us` holds 8 × the smoothed RTT in µs; 0 if no RTT sample was ever taken.
    let srtt_us = read::<u32>(sk, &OFF_SRTT_US).unwrap_or(0) >> 3;
    emit(tcp_event::CLOSE, conn, 0, srtt_us, duration);
}

/// `tcp_destroy_sock(sk)`: always a socket's last event.
#[raw_tracepoint(tracepoint = "tcp_destroy_sock")]
pub fn mon_tcp_destroy(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = TCP_CONNS.remove(sk);
    let _ = PAYLOAD_SOCKS.remove(sk);
    0
}

/// `tcp_retransmit_skb(sk, skb, err)`: counted when the retransmission was actually sent.
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn mon_tcp_retransmit(ctx: RawTracePointContext) -> i32 {
    if ctx.arg::<u64>(2) as i32 != 0 {
        return 0;
    }
    on_tracked(
        ctx.arg(0),
        tcp_event::RETRANSMIT,
        Counter::TcpRetransmitsUntracked,
    );
    0
}

/// `tcp_send_reset(sk, skb, reason)`; `sk` is NULL when no socket matched the segment.
#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn mon_tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if sk == 0 {
        bump(Counter::TcpResetsSentNoSocket);
        return 0;
    }
    on_tracked(sk, tcp_event::RESET_SENT, Counter::TcpResetsSentUntracked);
    0
}

/// `tcp_receive_reset(sk)`.
#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn mon_tcp_recv_reset(ctx: RawTracePointContext) -> i32 {
    on_tracked(
        ctx.arg(0),
        tcp_event::RESET_RECEIVED,
        Counter::TcpResetsReceivedUntracked,
    );
    0
}

#[inline(always)]
fn on_tracked(sk: u64, kind: u32, untracked: Counter) {
    // SAFETY: as in `on_established`.
    match unsafe { TCP_CONNS.get(sk) } {
        Some(conn) => emit(kind, conn, 0, 0, 0),
        None => bump(untracked),
    }
}

/// `sock_send_length(sk, ret, flags)`, inside `sock_sendmsg`: runs in the sender's context.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn mon_sock_send(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret > 0 {
        let sk = ctx.arg(0);
        if let Some((owner, family)) = add_bytes(sk, ret as u64, 0) {
            payload::capture(sk, owner, family, ret as u32, payload_direction::EGRESS);
        }
    }
    0
}

/// `sock_recv_length(sk, ret, flags)`, inside `sock_recvmsg`. A `MSG_PEEK` read leaves the
/// data queued for the next read: counting it would count those bytes twice.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn mon_sock_recv(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    let flags = ctx.arg::<u64>(2) as i32;
    if ret > 0 && i64::from(flags) & MSG_PEEK == 0 {
        let sk = ctx.arg(0);
        if let Some((owner, family)) = add_bytes(sk, 0, ret as u64) {
            payload::capture(sk, owner, family, ret as u32, payload_direction::INGRESS);
        }
    }
    0
}

/// Counts the bytes of a TCP socket's send/receive; returns its owner and address family
/// when it is one the agent counts.
#[inline(always)]
fn add_bytes(sk: u64, sent: u64, received: u64) -> Option<(Owner, u16)> {
    let owner = current_owner()?;
    let family = tcp_family(sk)?;
    let bytes = match NET_BYTES.get_ptr_mut(owner) {
        Some(bytes) => bytes,
        None => {
            let zero = NetBytes::default();
            if let Err(err) = NET_BYTES.insert(owner, zero, BPF_NOEXIST.into()) {
                if i64::from(err) != -EEXIST {
                    bump(Counter::NetBytesFull);
                    return Some((owner, family));
                }
            }
            match NET_BYTES.get_ptr_mut(owner) {
                Some(bytes) => bytes,
                None => return Some((owner, family)),
            }
        }
    };
    // SAFETY: pointer into this CPU's copy of a per-CPU hash value.
    unsafe {
        (*bytes).sent += sent;
        (*bytes).received += received;
    }
    Some((owner, family))
}
