//! TCP golden signals: connects, accepts, failures, closes, retransmits, resets (bytes and
//! payloads are `socket_io`'s).
//!
//! Raw tracepoints with the socket as argument; struct members are read at offsets the agent
//! finds in the running kernel's BTF (`monitor_common::global::KERNEL_OFFSETS`), so nothing
//! here depends on one kernel's layout. Only connect and listen run in the owner's context; every other event (handshake completion, FIN/RST processing, timers)
//! runs in softirq or timer context and finds its process through `TCP_CONNS`.
use aya_ebpf::{
    Global, bindings::BPF_ANY, helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::{Counter, ListenerKey, TcpConn, TcpEvent, direction, tcp_event};

use crate::{
    maps::{HTTP_CONNS, PAYLOAD_SOCKS, TCP_CONNS, TCP_EVENTS, TCP_LISTENERS, batched_wakeup, bump},
    sock::{TLS_TAG, current_owner, family, local_port, now_ns, read, remote, tcp_family},
};

// Offsets (bytes) set at load from BTF; see `monitor_common::global::KERNEL_OFFSETS`.
#[unsafe(no_mangle)]
static OFF_SKC_NET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_NET_INUM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SK_ERR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SRTT_US: Global<u32> = Global::new(0);

/// About a thousand TCP events per wakeup of the agent.
const WAKEUP_BATCH_BYTES: u64 = 64 * 1024;

// `enum tcp_state` (include/net/tcp_states.h), stable kernel ABI.
const TCP_ESTABLISHED: u32 = 1;
const TCP_SYN_SENT: u32 = 2;
const TCP_SYN_RECV: u32 = 3;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

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
        port: local_port(sk),
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
            remote: remote(sk, family(sk)),
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
    // The plaintext of a TLS connection is keyed apart (`sock::TLS_TAG`).
    for key in [sk, sk | TLS_TAG] {
        let _ = PAYLOAD_SOCKS.remove(key);
        let _ = HTTP_CONNS.remove(key);
    }
    0
}

/// `tcp_retransmit_skb(sk, skb, err)` (after 6.12): counted when the retransmission was sent.
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn mon_tcp_retransmit(ctx: RawTracePointContext) -> i32 {
    if ctx.arg::<u64>(2) as i32 != 0 {
        return 0;
    }
    on_retransmit(ctx.arg(0));
    0
}

/// `tcp_retransmit_skb(sk, skb)` up to 6.12 at least, which fires only after a successful send.
/// Reading a third argument there makes the attach fail (EINVAL), hence two programs.
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn mon_tcp_retransmit_sent(ctx: RawTracePointContext) -> i32 {
    on_retransmit(ctx.arg(0));
    0
}

#[inline(always)]
fn on_retransmit(sk: u64) {
    on_tracked(sk, tcp_event::RETRANSMIT, Counter::TcpRetransmitsUntracked);
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
