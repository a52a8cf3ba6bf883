//! Loss-accounting and churn workload: `fork-flood N [PREFIX]` forks N children that each
//! make one syscall and exit, and waits for them all. Every child produces two process events
//! (its first syscall names it; its exit ends it), so N children produce at least 2N events.
//! With PREFIX, child i first renames itself PREFIX<i>: N distinct process names.
fn main() {
    let mut args = std::env::args().skip(1);
    let children: u32 = args
        .next()
        .and_then(|arg| arg.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: fork-flood <children> [name-prefix]");
            std::process::exit(2);
        });
    let prefix = args.next();
    for i in 0..children {
        // Built before the fork: the child must not allocate.
        let name = prefix.as_ref().map(|prefix| {
            let mut name = format!("{prefix}{i}").into_bytes();
            name.truncate(15);
            name.push(0);
            name
        });
        // A raw clone, not fork(3): glibc's fork makes syscalls in the child before returning
        // (set_robust_list), and a process is named by its first syscall, which here must
        // come after the rename.
        // SAFETY: like fork(2) (SIGCHLD, no new stack); the child only makes raw syscalls and
        // exits: nothing that needs the parent's locks or allocator state.
        match unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) } {
            0 => unsafe {
                if let Some(name) = &name {
                    libc::syscall(libc::SYS_prctl, libc::PR_SET_NAME, name.as_ptr());
                }
                libc::syscall(libc::SYS_getppid);
                libc::syscall(libc::SYS_exit, 0);
                unreachable!()
            },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child as libc::pid_t, &mut status, 0) };
            }
        }
    }
}
