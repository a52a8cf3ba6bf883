//! The monitor's kernel half. One module per concern, all maps in `maps`, the wire types in
//! `monitor-common`. Built for `bpfel-unknown-none` by `monitor-agent/build.rs`.
#![no_std]
#![no_main]

mod block;
mod database;
mod dns;
mod framing;
mod maps;
mod network;
mod noop;
mod oom;
mod payload;
mod process;
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
