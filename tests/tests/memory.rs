//! Memory saturation against known ground truth: a process in a memory cgroup allocating far
//! beyond the cgroup's limit is the OOM killer's one victim.
use std::{os::unix::process::ExitStatusExt as _, time::Duration};

use tests::{Agent, Cgroup, eventually, spawn_named_with, unique_comm};

const HOG: &str = env!("CARGO_BIN_EXE_hog");

/// 200 MiB in a 32 MiB cgroup: exactly one OOM kill, under the victim's name.
#[test]
fn a_process_beyond_its_memory_limit_is_one_oom_kill_under_its_name() {
    let agent = Agent::start(&[]);
    let comm = unique_comm("hog");
    let cgroup = Cgroup::memory_limit(&comm, 32 << 20);
    let mut hog = spawn_named_with(&comm, HOG.as_ref(), |command| {
        command.arg("200").stdout(std::process::Stdio::null());
        cgroup.join_at_exec(command);
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
