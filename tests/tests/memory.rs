//! Memory saturation against known ground truth: a process in a memory cgroup allocating far
//! beyond the cgroup's limit is the OOM killer's one victim.
use std::{
    ffi::CString,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::PathBuf,
    time::Duration,
};

use tests::{Agent, eventually, spawn_named_with, unique_comm};

const HOG: &str = env!("CARGO_BIN_EXE_hog");

/// A memory cgroup limited to `limit` bytes, without swap, removed on drop (cgroup v2, or
/// v1's memory hierarchy).
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    fn new(name: &str, limit: u64) -> MemoryCgroup {
        let root = PathBuf::from("/sys/fs/cgroup");
        let v2 = root.join("cgroup.controllers").exists();
        let dir = if v2 {
            // The root must hand the memory controller down to its children.
            std::fs::write(root.join("cgroup.subtree_control"), "+memory").unwrap();
            root.join(name)
        } else {
            root.join("memory").join(name)
        };
        std::fs::create_dir_all(&dir).unwrap();
        let set = |file: &str, value: &str| {
            let path = dir.join(file);
            if path.exists() {
                std::fs::write(&path, value)
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            }
        };
        if v2 {
            set("memory.max", &limit.to_string());
            set("memory.swap.max", "0");
        } else {
            set("memory.limit_in_bytes", &limit.to_string());
            set("memory.memsw.limit_in_bytes", &limit.to_string());
            set("memory.swappiness", "0");
        }
        MemoryCgroup { dir }
    }

    fn procs(&self) -> CString {
        CString::new(self.dir.join("cgroup.procs").to_str().unwrap()).unwrap()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once its process is gone; the kernel may take a moment to let it go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// 200 MiB in a 32 MiB cgroup: exactly one OOM kill, under the victim's name.
#[test]
fn a_process_beyond_its_memory_limit_is_one_oom_kill_under_its_name() {
    let agent = Agent::start(&[]);
    let comm = unique_comm("hog");
    let cgroup = MemoryCgroup::new(&comm, 32 << 20);
    let procs = cgroup.procs();
    let mut hog = spawn_named_with(&comm, HOG.as_ref(), |command| {
        command.arg("200").stdout(std::process::Stdio::null());
        // SAFETY: between fork and exec the child only calls open/write/close on a path
        // prepared before the fork (no allocation): "0" moves the writing process itself.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let status = hog.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the hog must be killed by the OOM killer: {status:?}"
    );
    let kills = eventually(Duration::from_secs(10), "the OOM kill", || {
        agent
            .scrape()
            .value("monitor_oom_kills_total", &[("comm", &comm)])
    });
    assert_eq!(kills, 1.0);
    // Nobody else was killed in its name, and no second count came late.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        agent
            .scrape()
            .sum("monitor_oom_kills_total", &[("comm", &comm)]),
        1.0
    );
    drop(cgroup);
}
