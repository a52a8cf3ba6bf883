//! Descriptor saturation against known ground truth: a process holding a known number of
//! descriptors under a known soft limit.
use std::time::Duration;

use tests::{Agent, eventually, spawn_as, unique_comm};

/// Lowers its soft RLIMIT_NOFILE to 1000, opens descriptors until exactly 900 are open
/// (counted in /proc/self/fd, less the one listing it), then waits to be killed.
const HOLDER: &str = r#"
import os, resource, sys, time
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
held = []
while len(os.listdir("/proc/self/fd")) - 1 < 900:
    held.append(os.open("/dev/null", os.O_RDONLY))
print("ready", len(os.listdir("/proc/self/fd")) - 1, flush=True)
time.sleep(120)
"#;

#[test]
fn nine_hundred_descriptors_under_a_limit_of_a_thousand_is_a_ratio_of_0_9() {
    let agent = Agent::start(&["--kernel.sweep-interval", "1s"]);
    let comm = unique_comm("fds");
    let holder = spawn_as(
        &comm,
        &tests::python3(),
        &["-c".to_owned(), HOLDER.to_owned()],
    );
    assert_eq!(holder.ready, "ready 900");
    // The agent reads /proc every 5 s: a first value may predate the 900 descriptors.
    let mut last = None;
    let reached = (0..150).any(|_| {
        last = agent
            .scrape()
            .value("monitor_fd_utilization_ratio", &[("comm", &comm)]);
        std::thread::sleep(Duration::from_millis(100));
        last == Some(0.9)
    });
    assert!(reached, "ratio {last:?} after 15 s, expected exactly 0.9");
    // The gauge is of running processes: it goes with the last one.
    drop(holder);
    eventually(Duration::from_secs(15), "the ratio to go", || {
        agent
            .scrape()
            .value("monitor_fd_utilization_ratio", &[("comm", &comm)])
            .is_none()
            .then_some(())
    });
}
