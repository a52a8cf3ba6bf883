//! The monitor's kernel half. One module per concern, all maps in `maps`, the wire types in
//! `monitor-common`. Built for `bpfel-unknown-none` by `monitor-agent/build.rs`.
#![no_std]
#![no_main]
// `#[inline(always)]` on closures: one left out of line becomes a BPF function whose
// environment rustc describes in BTF with a member wider than the struct, and the kernel
// then refuses the object's BTF (and with it the global functions the framing needs).
#![feature(stmt_expr_attributes)]

mod block;
mod copied;
mod dns;
mod framing;
mod maps;
mod network;
mod noop;
mod oom;
mod payload;
mod postgres;
mod process;
mod redis;
mod sched;
mod sock;
mod socket_io;
mod syscalls;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}

// GPL-compatible: bpf_probe_read and friends need it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
