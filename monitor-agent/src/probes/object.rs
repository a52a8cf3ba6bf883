//! The eBPF object built from `monitor-ebpf` by this crate's build.rs.

pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"))
}
