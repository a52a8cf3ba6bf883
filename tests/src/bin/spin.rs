//! `spin SECONDS CPU`: burns CPU on CPU number `CPU` until `SECONDS` of wall time have
//! passed, making no system call in the loop: the scheduler tests' CPU-bound workload.
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args
        .next()
        .and_then(|text| text.parse().ok())
        .expect("usage: spin SECONDS CPU");
    let cpu: usize = args
        .next()
        .and_then(|text| text.parse().ok())
        .expect("usage: spin SECONDS CPU");
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get a
    // pointer to it and its size, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut spins: u64 = 0;
    while Instant::now() < deadline {
        // Instant::now is a vDSO call, no system call; a few thousand iterations between.
        for _ in 0..4096 {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
    println!("{spins}");
}
