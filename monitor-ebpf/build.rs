use which::which;

fn main() {
    // Global BPF functions (`framing.rs`, `dns.rs`, `copied.rs`): exported, so they keep global linkage and the
    // verifier checks each once instead of at every call.
    println!(
        "cargo:rustc-link-arg=--export=mon_frame_turn,mon_frame_byte,mon_dns_message,mon_copy,mon_copy_piece,mon_judge,mon_redis,mon_redis_turn,mon_redis_byte,mon_redis_emit,mon_redis_peer,mon_pg_begin,mon_pg_step,mon_pg_end,mon_pg_peer"
    );
    // Cargo does not notice a new `bpf-linker`; relinking with the old one would hide a fix.
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
