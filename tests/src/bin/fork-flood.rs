//! Loss-accounting workload: `fork-flood N` forks N children that each make one syscall and
//! exit, and waits for them all. Every child produces two process events (its first syscall
//! names it; its exit ends it), so N children produce at least 2N events.
fn main() {
    let children: u32 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: fork-flood <children>");
            std::process::exit(2);
        });
    for _ in 0..children {
        // SAFETY: the child only makes raw syscalls and _exit()s: nothing that needs the
        // parent's locks or allocator state.
        match unsafe { libc::fork() } {
            0 => unsafe {
                libc::syscall(libc::SYS_getppid);
                libc::_exit(0);
            },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
    }
}
