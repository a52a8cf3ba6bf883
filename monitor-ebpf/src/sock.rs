//! Reading kernel sockets: member offsets from the running kernel's BTF, the owner of the
//! current call, and a TCP socket's family and peer. Shared by the TCP lifecycle probes
//! (`network`), socket I/O (`socket_io`) and payload capture (`payload`); imports no probe.
use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
};
use monitor_common::{Endpoint, Owner};

use crate::maps::{AGENT_TGID, PROCESS_STATE, is_excluded};

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
pub static OFF_SKC_NUM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SK_PROTOCOL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_TASK_FILES: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_FILES_FDT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_FDT_MAX_FDS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_FDT_FD: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_FILE_INODE: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_FILE_PRIVATE_DATA: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_INODE_MODE: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SOCKET_SK: Global<u32> = Global::new(0);

/// Set in a socket's address (a `struct sock` is 8-byte aligned) to key the plaintext of a
/// TLS connection apart from its ciphertext (`tls`). Stripped by every read of the socket.
pub const TLS_TAG: u64 = 1;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// Reads a `T` at `base + offset` in kernel memory; `None` if the read faults.
#[inline(always)]
pub fn read<T>(base: u64, offset: &Global<u32>) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails instead of faulting;
    // the value is plain data (integers).
    unsafe { bpf_probe_read_kernel((base + u64::from(offset.load())) as *const T).ok() }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: no preconditions; a plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// The calling process, unless it is the agent (its own scrapes are not workload traffic)
/// or excluded by the selection rules.
#[inline(always)]
pub fn current_owner() -> Option<Owner> {
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
/// hooks also fire for UDP, unix and MPTCP's meta sockets.
#[inline(always)]
pub fn tcp_family(sk: u64) -> Option<u16> {
    inet_socket(sk)
        .filter(|&(_, protocol)| protocol == IPPROTO_TCP)
        .map(|(family, _)| family)
}

/// The address family and protocol (`IPPROTO_TCP`, `IPPROTO_UDP`) of a TCP or UDP socket
/// over IPv4 or IPv6, `None` for any other socket.
#[inline(always)]
pub fn inet_socket(sk: u64) -> Option<(u16, u16)> {
    let family: u16 = read(sk, &OFF_SKC_FAMILY)?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let protocol: u16 = read(sk, &OFF_SK_PROTOCOL)?;
    (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP).then_some((family, protocol))
}

/// The peer's port, in host order (0: an unconnected UDP socket).
#[inline(always)]
pub fn remote_port(sk: u64) -> u16 {
    u16::from_be(read(sk, &OFF_SKC_DPORT).unwrap_or(0))
}

/// The address family of any socket (a child of a TCP listener needs no TCP check).
#[inline(always)]
pub fn family(sk: u64) -> u16 {
    read(sk, &OFF_SKC_FAMILY).unwrap_or(0)
}

/// The local port, in host order.
#[inline(always)]
pub fn local_port(sk: u64) -> u16 {
    read(sk & !TLS_TAG, &OFF_SKC_NUM).unwrap_or(0)
}

/// The peer of socket `sk` of address `family`.
#[inline(always)]
pub fn remote(sk: u64, family: u16) -> Endpoint {
    let sk = sk & !TLS_TAG;
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

/// The `struct sock` behind file descriptor `fd` of the current process, if it is a socket:
/// `current->files->fdt->fd[fd]`, a socket inode, then `((struct socket *)private_data)->sk`.
#[inline(always)]
pub fn socket_of_fd(fd: u64) -> Option<u64> {
    // SAFETY: no preconditions; the task pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, &OFF_TASK_FILES)?;
    let fdt: u64 = read(files, &OFF_FILES_FDT)?;
    let max_fds: u32 = read(fdt, &OFF_FDT_MAX_FDS)?;
    if fd >= u64::from(max_fds) {
        return None;
    }
    let fds: u64 = read(fdt, &OFF_FDT_FD)?;
    let file: u64 = read_kernel(fds + fd * 8)?;
    if file == 0 {
        return None;
    }
    let inode: u64 = read(file, &OFF_FILE_INODE)?;
    let mode: u16 = read(inode, &OFF_INODE_MODE)?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, &OFF_FILE_PRIVATE_DATA)?;
    read(socket, &OFF_SOCKET_SK)
}

#[inline(always)]
fn read_kernel<T>(address: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails instead of faulting;
    // the value is plain data.
    unsafe { bpf_probe_read_kernel(address as *const T).ok() }
}
