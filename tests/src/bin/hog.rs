//! `hog MIB [CGROUP]`: allocates and touches `MIB` mebibytes, a mebibyte at a time, then
//! exits 0. In a memory cgroup with a lower limit, the OOM killer ends it first: the OOM
//! test's victim. Given a cgroup folder, it moves itself there before allocating (the
//! kernel matrix's guest runs it so; the root tests move it at exec).
fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args
        .next()
        .and_then(|text| text.parse().ok())
        .expect("usage: hog MIB [CGROUP]");
    if let Some(cgroup) = args.next() {
        let procs = std::path::Path::new(&cgroup).join("cgroup.procs");
        // "0" is the writing process itself.
        std::fs::write(&procs, "0").unwrap_or_else(|err| panic!("{}: {err}", procs.display()));
    }
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        // Non-zero bytes: every page is written, so every page is charged.
        held.push(vec![0xa5; 1 << 20]);
    }
    println!("{}", std::hint::black_box(held).len());
}
