//! Ground-truth workload: makes exactly the syscalls its arguments say, each checked, so a
//! test knows what the monitor must report. Raw `syscall(2)` calls, because libc wrappers
//! may pick other syscalls (glibc's `nanosleep` is `clock_nanosleep`).
//!
//! usage: gt-workload <failing-openat> <close(-1)> <nanosleeps> <sleep-ms>
use std::ffi::CStr;

const MISSING: &CStr = c"/nonexistent-monitor-ground-truth/missing";

fn main() {
    // args_os: argv[0] may be a hostile, non-UTF-8 name (the hostile-names test runs us so).
    let args: Vec<u64> = std::env::args_os()
        .skip(1)
        .map(|arg| {
            arg.to_str()
                .and_then(|a| a.parse().ok())
                .expect("arguments are whole numbers")
        })
        .collect();
    let &[openat_enoent, close_ebadf, nanosleeps, sleep_ms] = args.as_slice() else {
        eprintln!("usage: gt-workload <failing-openat> <close(-1)> <nanosleeps> <sleep-ms>");
        std::process::exit(2);
    };
    for _ in 0..openat_enoent {
        // SAFETY: a valid NUL-terminated path; the call fails before touching anything.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                MISSING.as_ptr(),
                libc::O_RDONLY,
            )
        };
        expect_errno("openat", ret, libc::ENOENT);
    }
    for _ in 0..close_ebadf {
        // SAFETY: closing fd -1 is an error by definition, nothing is closed.
        let ret = unsafe { libc::syscall(libc::SYS_close, -1) };
        expect_errno("close", ret, libc::EBADF);
    }
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: (sleep_ms * 1_000_000) as libc::c_long,
    };
    for _ in 0..nanosleeps {
        // SAFETY: `pause` outlives the call; no remainder is requested.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_nanosleep,
                &pause as *const libc::timespec,
                std::ptr::null::<u8>(),
            )
        };
        assert_eq!(
            ret,
            0,
            "nanosleep failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn expect_errno(what: &str, ret: libc::c_long, errno: i32) {
    let err = std::io::Error::last_os_error();
    assert!(
        ret == -1 && err.raw_os_error() == Some(errno),
        "{what}: ret {ret}, {err}"
    );
}
