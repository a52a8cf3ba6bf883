//! Who is it: container and Kubernetes identity on every workload series, PID reuse that
//! cannot mix two processes, selection, and the global series budget under process churn.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tests::{
    Agent, Scrape, TempDir,
    docker::{self, Container, Docker, text},
    eventually, ground_truth, promtool_check, run_as, settles, unique_comm, workspace_root,
};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");
const FORK_FLOOD: &str = env!("CARGO_BIN_EXE_fork-flood");
const ERRORS: &str = "monitor_syscall_errors_total";

/// The scrape and the labels of `comm`'s ground-truth `close(-1)` series, once it has all
/// its EBADF errors (in a container the dynamic loader's own failing `openat`s differ, its
/// `close` calls do not).
fn workload_series(
    agent: &Agent,
    comm: &str,
) -> (Scrape, std::collections::BTreeMap<String, String>) {
    let selector = [("comm", comm), ("syscall", "close"), ("errno", "EBADF")];
    // A process resolved again while it runs (its pod's metadata expiring right then) has a
    // series under each identity, the errors under the one they were recorded with: the
    // series that holds them all is the one looked at.
    let complete = |sample: &&tests::Sample| sample.value == ground_truth::CLOSE_EBADF as f64;
    let scrape = eventually(Duration::from_secs(20), "the workload's series", || {
        let scrape = agent.scrape();
        let found = scrape.matching(ERRORS, &selector).any(|s| complete(&s));
        found.then_some(scrape)
    });
    let labels = scrape
        .matching(ERRORS, &selector)
        .find(complete)
        .unwrap()
        .labels
        .clone();
    (scrape, labels)
}

/// A root filesystem holding one dynamically linked binary and the libraries it loads, as a
/// tarball for `docker import` (no image can be pulled here).
fn rootfs_with(binary: &Path, name: &str, dir: &TempDir) -> PathBuf {
    let root = dir.path().join("rootfs");
    docker::copy_with_libraries(binary, &root, name);
    docker::tarball(&root, dir.path())
}

#[test]
fn a_container_workload_carries_its_container_and_a_host_one_does_not() {
    let docker = Docker::start();
    let socket = docker.socket.trim_start_matches("unix://").to_owned();
    let agent = Agent::start(&["--docker.socket", &socket]);
    let dir = TempDir::new("ctr-rootfs");
    let in_container = unique_comm("gtctr");
    let tarball = rootfs_with(WORKLOAD.as_ref(), &in_container, &dir);
    let tag = format!("monitor-itest-workload:{}", std::process::id());
    let import = docker.docker(&["import", tarball.to_str().unwrap(), &tag]);
    assert!(
        import.status.success(),
        "{}\n{}",
        text(&import),
        docker.log()
    );
    let name = format!("monitor-itest-{}", std::process::id());
    let mut run = docker.command();
    run.args(["run", "--name", &name, "--network", "none", &tag])
        .arg(format!("/{in_container}"))
        .args(ground_truth::args());
    let _container = Container(&docker, name.clone());
    let output = run.output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output),
        docker.log()
    );

    let (_, labels) = workload_series(&agent, &in_container);
    assert_eq!(labels.get("container"), Some(&name), "{labels:?}");
    assert_eq!(
        labels.get("service"),
        Some(&name),
        "no pod: the container's name"
    );
    assert_eq!(labels.get("pod").map(String::as_str), Some(""));

    let on_host = unique_comm("gthost");
    run_as(&on_host, WORKLOAD.as_ref(), &ground_truth::args());
    let (_, labels) = workload_series(&agent, &on_host);
    assert_eq!(
        labels.get("container").map(String::as_str),
        Some(""),
        "{labels:?}"
    );
    assert_eq!(
        labels.get("service"),
        Some(&on_host),
        "outside containers: the comm"
    );
}

/// A minimal Kubernetes API: the recorded pod list of node `test-node`, then a watch stream
/// that stays open and sends the recorded DELETED event when `delete` is set.
fn fake_kubernetes_api(delete: Arc<AtomicBool>) -> u16 {
    let fixtures = workspace_root().join("tests/fixtures/kubernetes");
    let list = std::fs::read_to_string(fixtures.join("pods-list.json")).unwrap();
    let deleted = std::fs::read_to_string(fixtures.join("pods-watch.jsonl"))
        .unwrap()
        .lines()
        .find(|line| line.contains("\"DELETED\""))
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            assert!(
                request_line.contains("spec.nodeName%3Dtest-node"),
                "{request_line}"
            );
            if !request_line.contains("watch=") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{list}",
                    list.len()
                );
                continue;
            }
            let delete = Arc::clone(&delete);
            let deleted = deleted.clone();
            std::thread::spawn(move || {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\n"
                );
                while !delete.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let line = format!("{deleted}\n");
                let _ = write!(stream, "{:x}\r\n{line}\r\n", line.len());
                // Keep the watch open: a closed one would be re-listed, re-adding the pod.
                std::thread::sleep(Duration::from_secs(600));
            });
        }
    });
    port
}

/// The web pod of the fixture, and its nginx container's id.
const POD_UID: &str = "62ba296f-6cab-4102-824e-e43c3c7feb27";
const CONTAINER_ID: &str = "c842e7e9efb61e3cc052505d39c50d0e0ae82d6b04405ac03322df3549cdf6e0";

/// A kubelet-style cgroup (v1 `pids` hierarchy) for the pod's container, removed on drop.
struct PodCgroup(PathBuf);

impl PodCgroup {
    fn create() -> PodCgroup {
        let pod =
            Path::new("/sys/fs/cgroup/pids/kubepods/besteffort").join(format!("pod{POD_UID}"));
        let dir = pod.join(CONTAINER_ID);
        std::fs::create_dir_all(&dir).expect("creating a cgroup under /sys/fs/cgroup/pids");
        PodCgroup(dir)
    }

    /// Runs the ground-truth workload as `comm` inside the cgroup.
    fn run(&self, comm: &str) {
        let dir = TempDir::new("podrun");
        let link = dir.path().join(comm);
        std::os::unix::fs::symlink(WORKLOAD, &link).unwrap();
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec {} \"$@\"",
            self.0.display(),
            link.display()
        );
        let output = Command::new("sh")
            .args(["-c", &script, "sh"])
            .args(ground_truth::args())
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        let _ = std::fs::remove_dir(self.0.parent().unwrap());
    }
}

#[test]
fn kubernetes_pods_label_their_processes_until_deleted_and_the_ttl_passes() {
    let delete = Arc::new(AtomicBool::new(false));
    let port = fake_kubernetes_api(Arc::clone(&delete));
    let api = format!("http://127.0.0.1:{port}");
    let agent = Agent::start(&[
        "--kubernetes.node-name",
        "test-node",
        "--kubernetes.api-url",
        &api,
        "--kubernetes.deleted-pod-ttl",
        "4s",
        // Identities are resolved at the sweeps: frequent ones keep the timing below tight.
        "--kernel.sweep-interval",
        "500ms",
        // Each attempt below is a new short-lived program name under this test process: past
        // 16 they would share comm="[short-lived]" (series_cost.rs tests that), and this test
        // follows each by its own name.
        "--processes.names-per-parent",
        "0",
        "--labels",
        "pid",
        "--label.const",
        "environment=itest",
    ]);
    let cgroup = PodCgroup::create();
    // The agent lists the pods at start-up: the first runs may come before the list.
    let mut attempt = 0;
    let (scrape, labels) = eventually(Duration::from_secs(20), "the pod's labels", || {
        attempt += 1;
        let comm = unique_comm(&format!("gtp{attempt}-"));
        cgroup.run(&comm);
        let (scrape, labels) = workload_series(&agent, &comm);
        (labels["pod"] == "web-7d4b9c8f6d-x2k9p").then_some((scrape, labels))
    });
    assert_eq!(labels["namespace"], "default");
    assert_eq!(labels["container"], "nginx");
    assert_eq!(
        labels["service"], "web",
        "the Deployment owning the ReplicaSet"
    );
    assert_eq!(labels["environment"], "itest");
    assert!(!labels["pid"].is_empty());
    promtool_check(&scrape.text).expect("promtool check metrics with every label set");

    delete.store(true, Ordering::SeqCst);
    let deleted_at = Instant::now();
    // Right after the deletion the pod's metadata is kept (its last processes' events are
    // still its own)...
    let comm = unique_comm("gtd");
    cgroup.run(&comm);
    let (_, labels) = workload_series(&agent, &comm);
    assert_eq!(
        labels["pod"], "web-7d4b9c8f6d-x2k9p",
        "labelled within the TTL"
    );
    // ...and after the 4 s TTL, a new process of that pod's cgroup is no longer labelled with
    // the pod (its metadata is gone); the container id still shows. Never sooner: a process
    // is resolved at the first sweep after it starts, so one that started more than a
    // sweep (and some slack) before the TTL ended must still have been labelled.
    let mut attempt = 0;
    let (started, labels) = eventually(
        Duration::from_secs(20),
        "the deleted pod's labels to go",
        || {
            attempt += 1;
            let comm = unique_comm(&format!("gtg{attempt}-"));
            let started = deleted_at.elapsed();
            cgroup.run(&comm);
            let (_, labels) = workload_series(&agent, &comm);
            labels["pod"].is_empty().then_some((started, labels))
        },
    );
    assert!(
        started >= Duration::from_secs(3),
        "unlabelled {started:?} after the deletion, before the 4 s TTL"
    );
    assert_eq!(labels["namespace"], "");
    assert_eq!(
        labels["container"],
        &CONTAINER_ID[..12],
        "no name left: the short id"
    );
}

#[test]
fn a_reused_pid_never_mixes_two_processes() {
    let agent = Agent::start(&["--labels", "pid"]);
    let first = unique_comm("gtpida");
    let (pid, _) = run_as(&first, WORKLOAD.as_ref(), &ground_truth::args());
    // Make the kernel hand the same PID to the next process (as checkpoint/restore tools
    // do); another process on the host may take it first, so try until it sticks.
    let second = unique_comm("gtpidb");
    let reused = (0..50).any(|_| {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("writing /proc/sys/kernel/ns_last_pid (root)");
        let (again, _) = run_as(&second, WORKLOAD.as_ref(), &ground_truth::args());
        again == pid
    });
    assert!(reused, "pid {pid} was never handed out again");
    let pid = pid.to_string();
    for comm in [&first, &second] {
        let scrape = eventually(Duration::from_secs(20), "both processes' series", || {
            let scrape = agent.scrape();
            scrape
                .value(ERRORS, &[("comm", comm), ("pid", &pid), ("errno", "EBADF")])
                .is_some()
                .then_some(scrape)
        });
        assert_eq!(
            scrape.value(ERRORS, &[("comm", comm), ("pid", &pid), ("errno", "EBADF")]),
            Some(ground_truth::CLOSE_EBADF as f64),
            "{comm} under pid {pid}: its own calls only"
        );
    }
}

#[test]
fn excluded_processes_are_not_recorded_and_the_others_exactly() {
    let skipped = unique_comm("gtskip");
    let kept = unique_comm("gtkeep");
    let agent = Agent::start(&["--select.exclude", &format!("comm={skipped}")]);
    run_as(&skipped, WORKLOAD.as_ref(), &ground_truth::args());
    run_as(&kept, WORKLOAD.as_ref(), &ground_truth::args());
    let (scrape, _) = workload_series(&agent, &kept);
    assert_eq!(
        scrape.value(ERRORS, &[("comm", &kept), ("errno", "EBADF")]),
        Some(ground_truth::CLOSE_EBADF as f64)
    );
    // Two sweeps later still nothing of the excluded one.
    std::thread::sleep(Duration::from_secs(1));
    let scrape = agent.scrape();
    assert!(
        !scrape.text.contains(&skipped),
        "an excluded process has series"
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn churn_of_5000_process_names_stays_within_the_series_budget() {
    /// README: "the agent's RSS grew by less than 16 MiB".
    const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
    const BUDGET: usize = 1_000;
    const CHILDREN: u32 = 5_000;
    let agent = Agent::start(&[
        "--series.max",
        &BUDGET.to_string(),
        "--kernel.sweep-interval",
        "1s",
    ]);
    let rss_before = rss_kib(agent.pid());
    let prefix = format!("ch{}-", std::process::id() % 1000);
    let output = Command::new(FORK_FLOOD)
        .args([CHILDREN.to_string(), prefix.clone()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // Each child makes two recorded calls (prctl, getppid; exit never returns): those not
    // in a series of their own are in the overflow series, which others add to as well.
    // (named children, their calls, the overflow series' calls)
    let calls = |scrape: &Scrape| {
        let (named, own_calls) = scrape
            .samples
            .iter()
            .filter(|sample| sample.name == "monitor_syscalls_total")
            .filter(|sample| sample.labels["comm"].starts_with(&prefix))
            .fold(
                (std::collections::HashSet::new(), 0.0),
                |(mut named, calls), sample| {
                    named.insert(sample.labels["comm"].clone());
                    (named, calls + sample.value)
                },
            );
        let overflow = scrape.value("monitor_syscalls_total", &[("comm", "[overflow]")]);
        (named, own_calls, overflow.unwrap_or(0.0))
    };
    // Until every child's calls are in (the per-CPU counts are folded at each sweep, and the
    // budget overflows long before the last child ends); if they never are, the failure
    // says how many.
    let scrape = settles(
        Duration::from_secs(30),
        || agent.scrape(),
        |scrape| {
            let dropped: f64 = scrape
                .matching("monitor_series_dropped_total", &[])
                .map(|sample| sample.value)
                .sum();
            let (_, own_calls, overflow) = calls(scrape);
            dropped > 0.0 && own_calls + overflow >= 2.0 * f64::from(CHILDREN)
        },
        |scrape| {
            let (_, own_calls, overflow) = calls(scrape);
            format!(
                "{own_calls} calls in the children's series + {overflow} in the overflow \
                 series, for {CHILDREN} children of two calls each (or no series dropped)"
            )
        },
    );
    let in_use: f64 = scrape
        .matching("monitor_series", &[])
        .map(|s| s.value)
        .sum();
    // The budget counts Prometheus series (a histogram label set is 30): what is in use is
    // within it, apart from the overflow series themselves.
    let overflow_series = scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("comm").map(String::as_str) == Some("[overflow]"))
        .count();
    assert!(
        in_use <= (BUDGET + overflow_series) as f64,
        "{in_use} series for a budget of {BUDGET} (+{overflow_series} overflow)"
    );
    // One overflow series per family, never more (its `_count` stands for the histograms;
    // the bytes family's one series is exported as two rows, one per direction).
    let mut overflow_per_family = std::collections::HashMap::<String, usize>::new();
    for sample in scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("comm").map(String::as_str) == Some("[overflow]"))
        .filter(|sample| !sample.name.ends_with("_bucket") && !sample.name.ends_with("_sum"))
    {
        let row = match sample.labels.get("direction") {
            Some(direction) if sample.name == "monitor_network_bytes_total" => {
                format!("{}/{direction}", sample.name)
            }
            _ => sample.name.clone(),
        };
        *overflow_per_family.entry(row).or_default() += 1;
    }
    assert!(
        overflow_per_family.values().all(|&series| series == 1),
        "{overflow_per_family:?}"
    );
    let (named, _, overflow) = calls(&scrape);
    assert!(
        named.len() <= BUDGET,
        "{} children kept their own series, over the budget of {BUDGET}",
        named.len()
    );
    assert!(
        overflow > 0.0,
        "no calls in the syscall family's overflow series"
    );
    let rss_after = rss_kib(agent.pid());
    println!("agent RSS: {rss_before} KiB before, {rss_after} KiB after {CHILDREN} processes");
    // The bound the README states for this churn.
    assert!(
        rss_after.saturating_sub(rss_before) <= RSS_GROWTH_BOUND_KIB,
        "agent RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}
