//! Numbers the kernel hands us, as the names users search for.

/// `openat`, from the running architecture's syscall table.
pub fn syscall(nr: u32) -> String {
    match syscalls::Sysno::new(nr as usize) {
        Some(sysno) => sysno.name().to_owned(),
        None => format!("syscall_{nr}"),
    }
}

/// `ENOENT`. Includes the kernel-internal restart codes (512..=530) that can reach `sys_exit`
/// when a signal interrupts a call, which libc never shows.
pub fn errno(errno: u32) -> String {
    let kernel_internal = match errno {
        512 => Some("ERESTARTSYS"),
        513 => Some("ERESTARTNOINTR"),
        514 => Some("ERESTARTNOHAND"),
        515 => Some("ENOIOCTLCMD"),
        516 => Some("ERESTART_RESTARTBLOCK"),
        517 => Some("EPROBE_DEFER"),
        518 => Some("EOPENSTALE"),
        519 => Some("ENOPARAM"),
        521 => Some("EBADHANDLE"),
        522 => Some("ENOTSYNC"),
        523 => Some("EBADCOOKIE"),
        524 => Some("ENOTSUPP"),
        525 => Some("ETOOSMALL"),
        526 => Some("ESERVERFAULT"),
        527 => Some("EBADTYPE"),
        528 => Some("EJUKEBOX"),
        529 => Some("EIOCBQUEUED"),
        530 => Some("ERECALLCONFLICT"),
        _ => None,
    };
    if let Some(name) = kernel_internal {
        return name.to_owned();
    }
    match i32::try_from(errno).map(nix::errno::Errno::from_raw) {
        Ok(nix::errno::Errno::UnknownErrno) | Err(_) => format!("errno_{errno}"),
        Ok(known) => format!("{known:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_syscalls() {
        assert_eq!(syscall(0), "read");
        assert_eq!(syscall(3), "close");
        assert_eq!(syscall(35), "nanosleep");
        assert_eq!(syscall(257), "openat");
        assert_eq!(syscall(9999), "syscall_9999");
    }

    #[test]
    fn errnos() {
        assert_eq!(errno(2), "ENOENT");
        assert_eq!(errno(9), "EBADF");
        assert_eq!(errno(11), "EAGAIN");
        assert_eq!(errno(512), "ERESTARTSYS");
        assert_eq!(errno(4000), "errno_4000");
    }
}
