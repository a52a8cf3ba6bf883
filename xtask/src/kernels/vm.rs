//! One virtual machine: virtme-ng (`vng`) boots a kernel over QEMU with the host's root
//! filesystem shared read-only, runs one command and powers off. Only `out` is writable from
//! the guest, which is how results come back.
use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::process::display;

/// How one boot ended. vng exits 255 even when the guest's command succeeded, so its status
/// says nothing: the files the guest wrote are the verdict.
pub struct Boot {
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// Boots `vmlinuz` and runs `script` (a shell command line) in the guest, killing the whole
/// VM after `timeout`. vng's own output goes to `out/vng.log`.
pub fn boot(
    vng: &Path,
    vmlinuz: &Path,
    out: &Path,
    script: &str,
    timeout: Duration,
) -> Result<Boot> {
    let log_path = out.join("vng.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log.try_clone().context("duplicating the vng log handle")?;
    let mut cmd = Command::new(vng);
    cmd.arg("-r")
        .arg(vmlinuz)
        .args(["--memory", "2G", "--cpus", "2"])
        // /dev/kvm exists on the CI machines but guests hang under it (MSR errors): software
        // emulation is slower and works.
        .arg("--disable-kvm")
        // The kernel's console goes to vng.log: when a guest dies without a result, its last
        // lines (an oops, a panic, the OOM killer) are the only account of why.
        .arg("--verbose")
        .arg("--rwdir")
        .arg(out)
        .args(["--exec", script])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: vng starts a shell, virtme-run and QEMU, and a timeout must
        // end all of them, not leave QEMU running.
        .process_group(0);
    let shown = display(&cmd);
    eprintln!("xtask: $ {shown}");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let group = libc::pid_t::try_from(child.id()).context("vng's pid out of range")?;
    loop {
        if child
            .try_wait()
            .context("checking on the virtual machine")?
            .is_some()
        {
            return Ok(Boot {
                elapsed: started.elapsed(),
                timed_out: false,
            });
        }
        if started.elapsed() >= timeout {
            eprintln!("xtask: the virtual machine ran past {timeout:?}; stopping it");
            signal_group(group, libc::SIGTERM);
            let grace = Instant::now() + Duration::from_secs(10);
            while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(100));
            }
            // SIGKILL for whatever is left of the group (QEMU ignores nothing, but a stuck
            // 9p server thread can delay its exit).
            signal_group(group, libc::SIGKILL);
            let _ = child.wait();
            return Ok(Boot {
                elapsed: started.elapsed(),
                timed_out: true,
            });
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Signals every process of the group vng leads; errors mean they are already gone.
fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) on the process group of a child we started and have not reaped, so
    // the group id is still ours.
    unsafe { libc::kill(-group, signal) };
}

/// Single-quotes a word for the guest's shell.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for vng that starts a long-lived child the way vng starts QEMU: a timeout
    /// must end both.
    #[test]
    fn a_timeout_ends_the_whole_process_group() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-vm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-vng");
        fs::write(
            &fake,
            "#!/bin/sh\nsleep 300 &\necho $! > \"$(dirname \"$0\")/child.pid\"\nwait\n",
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let boot = boot(
            &fake,
            Path::new("/vmlinuz"),
            &dir,
            "true",
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(boot.timed_out);
        let child: libc::pid_t = fs::read_to_string(dir.join("child.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed, the orphan goes to init, which may not reap it at once (a zombie is gone
        // too); give it a moment.
        let gone = (0..50).any(|_| {
            thread::sleep(Duration::from_millis(20));
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // `pid (comm) STATE …`: no such process, or a zombie.
            stat.rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z'))
        });
        fs::remove_dir_all(&dir).unwrap();
        assert!(gone, "the child of the timed-out VM survived");
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("/work/main/target"), "'/work/main/target'");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
    }
}
