//! TLS plaintext from the libraries' own calls: uprobes on OpenSSL's `SSL_read`, `SSL_write`
//! and their `_ex` forms (1.1.1 and 3), attached by the agent to each libssl file it finds.
//! What the application reads or writes goes to the same HTTP framing (or payload copy) as
//! cleartext socket I/O, under the socket's address with `TLS_TAG` set: its own verdict and
//! framing state, apart from the ciphertext's, and the agent tells `https` by the tag.
//!
//! Which socket: a call's entry notes the thread in `TLS_CALLS`; the socket I/O probes,
//! which see the read/write the library makes inside the call, write the socket there
//! (`note_socket`), and do not frame those bytes as the socket's own. A call that makes none
//! (a read served from the library's buffer) finds the socket its `SSL *` last used, in
//! `TLS_SOCKS`, which the handshake (`SSL_do_handshake`) fills first. A call on a memory BIO
//! (no socket ever, e.g. Python's asyncio) is counted (`Counter::TlsNoSocket`), not framed.
use aya_ebpf::{
    Global,
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, LruHashMap},
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{Counter, capacity, payload_direction};

use crate::{
    framing,
    maps::bump,
    payload,
    sock::{TLS_TAG, current_owner, tcp_family},
};

/// `global::TLS`: whether the agent may attach these probes (set at load).
#[unsafe(no_mangle)]
static TLS: Global<u32> = Global::new(0);

/// A TLS read or write in progress on one thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    /// The `SSL *`.
    ssl: u64,
    /// The caller's buffer.
    buffer: u64,
    /// `_ex` forms: where the bytes moved are written (`size_t *`); 0 for the others, whose
    /// return value is that count.
    moved_at: u64,
    /// The socket the library read or wrote during the call (0: none yet).
    sk: u64,
}

/// Key of `TLS_SOCKS`: an `SSL *` is an address in its process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslKey {
    tgid: u32,
    _pad: u32,
    ssl: u64,
}

/// TLS calls in progress, by thread (`pid_tgid`); an entry lives from a call's entry to its
/// return.
#[map]
static TLS_CALLS: HashMap<u64, TlsCall> = HashMap::with_max_entries(capacity::TLS_CALLS, 0);

/// The socket each `SSL *` last read or wrote. LRU: one forgotten is found again at the
/// connection's next call that reaches the socket.
#[map]
static TLS_SOCKS: LruHashMap<SslKey, u64> = LruHashMap::with_max_entries(capacity::TLS_SOCKS, 0);

#[inline(always)]
fn enter(ctx: &ProbeContext, moved_at: u64) -> u32 {
    let (Some(ssl), Some(buffer)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    if current_owner().is_none() {
        return 0;
    }
    let call = TlsCall {
        ssl,
        buffer,
        moved_at,
        sk: 0,
    };
    let _ = TLS_CALLS.insert(bpf_get_current_pid_tgid(), call, BPF_ANY.into());
    0
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`, and `SSL_write` likewise; also the entry
/// of `SSL_do_handshake(SSL *ssl)`, whose second argument means nothing and is not used.
#[uprobe]
pub fn mon_ssl_call(ctx: ProbeContext) -> u32 {
    enter(&ctx, 0)
}

/// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`, and
/// `SSL_write_ex(…, size_t *written)` likewise.
#[uprobe]
pub fn mon_ssl_call_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, ctx.arg::<u64>(3).unwrap_or(0))
}

/// The return of `int SSL_do_handshake(SSL *ssl)` (which `SSL_accept` and `SSL_connect`
/// call): the socket the handshake read or wrote is the connection's from its first byte,
/// for the first `SSL_read` that needs no socket call (its record came with the handshake's).
#[uretprobe]
pub fn mon_ssl_handshake_ret(_ctx: RetProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a copy is taken at once; only this thread writes its entry.
    let Some(call) = (unsafe { TLS_CALLS.get(thread) }).copied() else {
        return 0;
    };
    let _ = TLS_CALLS.remove(thread);
    if call.sk != 0 {
        remember(thread, &call);
    }
    0
}

/// `TLS_SOCKS`' entry for the call's `SSL *`: its socket now.
#[inline(always)]
fn remember(thread: u64, call: &TlsCall) -> Option<u64> {
    let key = SslKey {
        tgid: (thread >> 32) as u32,
        _pad: 0,
        ssl: call.ssl,
    };
    // SAFETY: a copy is taken at once.
    let known = unsafe { TLS_SOCKS.get(key) }.copied();
    if call.sk == 0 {
        return known;
    }
    // An LRU update costs more than the lookup: only when the socket changed.
    if known != Some(call.sk) {
        let _ = TLS_SOCKS.insert(key, call.sk, BPF_ANY.into());
    }
    Some(call.sk)
}

#[uretprobe]
pub fn mon_ssl_read_ret(ctx: RetProbeContext) -> u32 {
    leave::<false>(&ctx, payload_direction::INGRESS)
}

#[uretprobe]
pub fn mon_ssl_write_ret(ctx: RetProbeContext) -> u32 {
    leave::<false>(&ctx, payload_direction::EGRESS)
}

#[uretprobe]
pub fn mon_ssl_read_ret_framed(ctx: RetProbeContext) -> u32 {
    leave::<true>(&ctx, payload_direction::INGRESS)
}

#[uretprobe]
pub fn mon_ssl_write_ret_framed(ctx: RetProbeContext) -> u32 {
    leave::<true>(&ctx, payload_direction::EGRESS)
}

#[inline(always)]
fn leave<const FRAMED: bool>(ctx: &RetProbeContext, direction: u32) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a copy is taken at once; only this thread writes its entry.
    let Some(call) = (unsafe { TLS_CALLS.get(thread) }).copied() else {
        return 0;
    };
    let _ = TLS_CALLS.remove(thread);
    // An `int`: the register's upper half is not part of it.
    let ret = ctx.ret::<u64>() as i32;
    let length = if call.moved_at == 0 {
        i64::from(ret)
    } else if ret == 1 {
        // SAFETY: a user address the library wrote the count to; the helper checks it.
        unsafe { bpf_probe_read_user(call.moved_at as *const u64) }.map_or(0, |n| n as i64)
    } else {
        0
    };
    if length <= 0 {
        return 0;
    }
    let Some(owner) = current_owner() else {
        return 0;
    };
    let Some(sk) = remember(thread, &call) else {
        bump(Counter::TlsNoSocket);
        return 0;
    };
    let Some(family) = tcp_family(sk) else {
        return 0;
    };
    let length = u32::try_from(length).unwrap_or(u32::MAX);
    let buffer = || Some(payload::UserBuffer::plain(call.buffer, u64::from(length)));
    if FRAMED {
        framing::frame(sk | TLS_TAG, owner, family, length, direction, buffer);
    } else {
        payload::capture(sk | TLS_TAG, owner, family, length, direction, buffer);
    }
    0
}

/// Called by the socket I/O probes for every TCP read/write: inside a TLS call, the socket
/// is the call's, and true is returned. Its bytes are then the library's (ciphertext, or
/// with kTLS the plaintext this call frames already): not to be framed as the socket's own.
#[inline(always)]
pub fn note_socket(sk: u64) -> bool {
    if TLS.load() == 0 {
        return false;
    }
    match TLS_CALLS.get_ptr_mut(bpf_get_current_pid_tgid()) {
        Some(call) => {
            // SAFETY: this thread's own entry, written by it alone.
            unsafe { (*call).sk = sk };
            true
        }
        None => false,
    }
}
