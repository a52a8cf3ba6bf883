//! `hog MIB`: allocates and touches `MIB` mebibytes, a mebibyte at a time, then exits 0. In
//! a memory cgroup with a lower limit, the OOM killer ends it first: the OOM test's victim.
fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .expect("usage: hog MIB");
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        // Non-zero bytes: every page is written, so every page is charged.
        held.push(vec![0xa5; 1 << 20]);
    }
    println!("{}", std::hint::black_box(held).len());
}
