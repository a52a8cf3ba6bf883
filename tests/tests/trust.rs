//! Trust: no silent loss when a ring buffer or a map overflows, no leaked kernel objects
//! after crashes, degraded runs that say so, the documented minimal privileges, no secrets.
use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use monitor_common::program;
use tests::{Agent, agent_bin, eventually, free_port, ground_truth, http_get, unique_comm};

const FLOOD: &str = env!("CARGO_BIN_EXE_fork-flood");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");
fn ringbuf(scrape: &tests::Scrape, counter: &str) -> f64 {
    ring(scrape, "process_events", counter)
}

fn ring(scrape: &tests::Scrape, ring: &str, counter: &str) -> f64 {
    scrape
        .value(
            &format!("monitor_ringbuf_events_{counter}_total"),
            &[("ringbuf", ring)],
        )
        .unwrap()
}

fn flood(children: u32) {
    let status = Command::new(FLOOD)
        .arg(children.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "fork-flood: {status}");
}

#[test]
fn ring_buffer_overflow_is_counted_and_produced_equals_read_plus_lost() {
    // One page holds 4096 / 48 = 85 records; 1000 children produce ≥ 2000 events, over
    // 20 times the capacity, while the reader is paused.
    const CHILDREN: u32 = 1000;
    let pause = Duration::from_secs(8);
    let started = Instant::now();
    let agent = Agent::start(&[
        "--kernel.process-events-bytes",
        "4096",
        "--testing.pause-event-reader",
        "8s",
    ]);
    flood(CHILDREN);
    let during = agent.scrape();
    assert!(
        started.elapsed() < pause,
        "the flood outlasted the pause; the test proves nothing"
    );
    assert_eq!(ringbuf(&during, "read"), 0.0, "the reader is paused");
    assert!(
        ringbuf(&during, "lost") > 0.0,
        "a full buffer must count its losses"
    );

    let after = eventually(Duration::from_secs(30), "produced == read + lost", || {
        let scrape = agent.scrape();
        let (produced, read, lost) = (
            ringbuf(&scrape, "produced"),
            ringbuf(&scrape, "read"),
            ringbuf(&scrape, "lost"),
        );
        (started.elapsed() > pause && read > 0.0 && produced == read + lost).then_some(scrape)
    });
    let produced = ringbuf(&after, "produced");
    assert!(
        produced >= f64::from(2 * CHILDREN),
        "{produced} events from {CHILDREN} children"
    );
    assert!(ringbuf(&after, "lost") >= ringbuf(&during, "lost"));
}

/// The same conservation for the TCP-event and payload rings, one page each: 300 loopback
/// connections each carrying one request and its response make about 1200 TCP events
/// (opens and closes of both ends) and 1200 payload captures (user-space framing), many
/// times what a page holds, while the reader is paused.
#[test]
fn tcp_and_payload_rings_count_what_they_lose() {
    rings_count_what_they_lose(
        &[
            "--probes.request-framing",
            "user",
            "--kernel.payload-events-bytes",
            "4096",
        ],
        "payload_events",
    );
}

/// And for the ring of requests framed in the kernel: 600 requests (each seen by its server
/// and by its client) in one page.
#[test]
fn tcp_and_request_rings_count_what_they_lose() {
    rings_count_what_they_lose(
        &[
            "--probes.request-framing",
            "kernel",
            "--kernel.request-events-bytes",
            "4096",
        ],
        "request_events",
    );
}

fn rings_count_what_they_lose(agent_args: &[&str], requests_ring: &str) {
    use std::io::{Read as _, Write as _};
    const CONNECTIONS: usize = 300;
    let pause = Duration::from_secs(8);
    let started = Instant::now();
    let mut args = vec![
        "--kernel.tcp-events-bytes",
        "4096",
        "--testing.pause-event-reader",
        "8s",
    ];
    args.extend_from_slice(agent_args);
    let agent = Agent::start(&args);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    for _ in 0..CONNECTIONS {
        let mut client = std::net::TcpStream::connect(address).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"GET /ring HTTP/1.1\r\n\r\n").unwrap();
        let mut request = [0; 64];
        let _ = server.read(&mut request).unwrap();
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let mut response = [0; 64];
        let _ = client.read(&mut response).unwrap();
    }
    let during = agent.scrape();
    assert!(
        started.elapsed() < pause,
        "the connections outlasted the pause; the test proves nothing"
    );
    let rings = ["tcp_events", requests_ring];
    for name in rings {
        assert_eq!(
            ring(&during, name, "read"),
            0.0,
            "{name}: the reader is paused"
        );
        assert!(
            ring(&during, name, "lost") > 0.0,
            "{name}: a full buffer counts its losses"
        );
    }
    eventually(Duration::from_secs(30), "produced == read + lost", || {
        let scrape = agent.scrape();
        let balanced = rings.iter().all(|name| {
            let (produced, read, lost) = (
                ring(&scrape, name, "produced"),
                ring(&scrape, name, "read"),
                ring(&scrape, name, "lost"),
            );
            read > 0.0 && produced == read + lost
        });
        (started.elapsed() > pause && balanced).then_some(())
    });
}

#[test]
fn full_kernel_maps_count_refusals_and_the_agent_keeps_working() {
    // Only the test's own processes: nothing else on the machine competes for the 8 entries
    // (the first sweeps free what others took before they were excluded).
    let prefix = unique_comm("fl");
    let agent = Agent::start(&[
        "--kernel.syscall-stats-entries",
        "8",
        "--kernel.syscall-errors-entries",
        "1",
        "--kernel.sweep-interval",
        "500ms",
        "--select.include",
        &format!("comm={prefix}*"),
    ]);
    // The capacity the kernel enforces, read from the kernel, not from the agent's gauge.
    let (_, maps) = kernel_objects_of(agent.pid());
    for (map, capacity) in [("SYSCALL_STATS", 8), ("SYSCALL_ERRORS", 1)] {
        let id = maps
            .iter()
            .find(|(_, name)| name.as_str() == map)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{map} not held by the agent: {maps:?}"));
        let shown = Command::new("bpftool")
            .args(["map", "show", "id", &id.to_string()])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.contains(&format!("max_entries {capacity} ")),
            "{map}: {shown}"
        );
    }
    // A process that keeps calling getppid, its key in the map before the map fills. Python's
    // start-up alone makes more than 8 distinct syscalls, and a live process keeps its keys:
    // so the interpreter forks and exits, and its child, which only loops on getppid and
    // poll, takes places the sweeps free once the parent has finished. The child leaves when
    // the test drops its stdout (poll reports POLLERR on the pipe's write end).
    let ticker = tests::spawn_as(
        &format!("{prefix}t"),
        &tests::python3(),
        &[
            "-c".to_owned(),
            "import os, select\n\
             if os.fork():\n    os._exit(0)\n\
             hangup = select.poll()\nhangup.register(1, 0)\n\
             print('ready', flush=True)\n\
             while True:\n    os.getppid()\n    if hangup.poll(10):\n        os._exit(0)\n"
                .to_owned(),
        ],
    );
    let getppid = |scrape: &tests::Scrape| {
        scrape.value(
            "monitor_syscalls_total",
            &[("comm", ticker.comm.as_str()), ("syscall", "getppid")],
        )
    };
    // Its key goes in when a sweep (every 500 ms) has freed the parent's places and it calls
    // before others fill them: a race it wins within seconds, unless the machine is busy with
    // processes the agent has not named (and excluded) yet.
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(30), "the ticker's series", || {
            getppid(&agent.scrape())
        })
    }));
    if waited.is_err() {
        // What holds the map's places: every syscall series and the map's own figures.
        let text = agent.scrape().text;
        let held: Vec<&str> = text
            .lines()
            .filter(|line| {
                line.starts_with("monitor_syscalls_total") || line.contains("map=\"SYSCALL_STATS\"")
            })
            .collect();
        panic!(
            "no getppid series for {} in 30 s; the agent shows:\n{}",
            ticker.comm,
            held.join("\n")
        );
    }
    // The workload alone needs more than 8 (process, syscall) keys and 2 error keys.
    tests::run_as(
        format!("{prefix}w"),
        WORKLOAD.as_ref(),
        &ground_truth::args(),
    );
    let failures = |scrape: &tests::Scrape, map| {
        scrape
            .value("monitor_kernel_map_insert_failures_total", &[("map", map)])
            .unwrap()
    };
    let scrape = eventually(Duration::from_secs(10), "refusals to be counted", || {
        let scrape = agent.scrape();
        (failures(&scrape, "SYSCALL_STATS") > 0.0 && failures(&scrape, "SYSCALL_ERRORS") > 0.0)
            .then_some(scrape)
    });
    for (map, capacity) in [("SYSCALL_STATS", 8.0), ("SYSCALL_ERRORS", 1.0)] {
        let labels = [("map", map)];
        assert_eq!(
            scrape.value("monitor_kernel_map_max_entries", &labels),
            Some(capacity)
        );
        assert!(scrape.value("monitor_kernel_map_entries", &labels).unwrap() <= capacity);
    }
    // After the map filled, a series whose key fits keeps growing.
    let before = getppid(&scrape).unwrap();
    eventually(
        Duration::from_secs(10),
        "the ticker's series to grow",
        || (getppid(&agent.scrape()).unwrap() > before).then_some(()),
    );
    assert_eq!(http_get(agent.address, "/healthz").unwrap().0, 200);
    drop(ticker);
}

/// The kernel's BPF objects of one kind (`prog` or `map`) now: ID → (name, `bpftool`'s whole
/// description of it).
fn kernel_objects(what: &str) -> BTreeMap<u32, (String, String)> {
    let output = Command::new("bpftool")
        .args([what, "show"])
        .output()
        .expect("bpftool");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // Each object starts with "<id>: <type>  name <name>  ..." and continues indented.
    let mut objects = BTreeMap::new();
    let mut last = None;
    for line in text.lines() {
        match line.split_once(':') {
            Some((id, _)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                let id: u32 = id.parse().unwrap();
                let name = line
                    .split(" name ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap_or_default()
                    .to_owned();
                objects.insert(id, (name, line.to_owned()));
                last = Some(id);
            }
            _ => {
                if let Some((_, description)) = last.and_then(|id| objects.get_mut(&id)) {
                    description.push_str(line);
                }
            }
        }
    }
    objects
}

/// The programs and maps process `pid` holds through its fds (`prog_id:`/`map_id:` in
/// fdinfo; a link's fd names its program), with the maps its programs use, by ID and name.
fn kernel_objects_of(pid: u32) -> (BTreeMap<u32, String>, BTreeMap<u32, String>) {
    let (mut program_ids, mut map_ids) = (BTreeSet::new(), BTreeSet::new());
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        for line in text.lines() {
            let id = |prefix| {
                line.strip_prefix(prefix)
                    .and_then(|id: &str| id.trim().parse::<u32>().ok())
            };
            program_ids.extend(id("prog_id:"));
            map_ids.extend(id("map_id:"));
        }
    }
    let programs = kernel_objects("prog");
    let maps = kernel_objects("map");
    for id in &program_ids {
        // A program holds its maps: "map_ids 1,2,3".
        let description = &programs[id].1;
        map_ids.extend(
            description
                .split("map_ids ")
                .nth(1)
                .and_then(|ids| ids.split_whitespace().next())
                .into_iter()
                .flat_map(|ids| ids.split(','))
                .filter_map(|id| id.parse::<u32>().ok()),
        );
    }
    let named = |ids: BTreeSet<u32>, objects: &BTreeMap<u32, (String, String)>| {
        ids.into_iter()
            .map(|id| (id, objects[&id].0.clone()))
            .collect()
    };
    (named(program_ids, &programs), named(map_ids, &maps))
}

/// Names as the kernel keeps them: at most 15 bytes.
fn kernel_name(name: &str) -> String {
    name[..name.len().min(15)].to_owned()
}

/// What the agent must hold while it runs: every program attached (the `probe` label of each
/// `monitor_probe_attached` series at 1), every map of the object and its `.rodata` (the
/// load-time globals).
fn expected_objects(agent: &Agent) -> (BTreeSet<String>, BTreeSet<String>) {
    let scrape = agent.scrape();
    // The socket I/O probes are named after their copying programs; where requests are
    // framed in the kernel, the framing programs stand in for them.
    let framed = scrape.value("monitor_requests_framed_in_kernel", &[]) == Some(1.0);
    // And the TLS uprobes' programs, loaded by default (attached per library file).
    let tls = if framed {
        [program::SSL_READ_RET_FRAMED, program::SSL_WRITE_RET_FRAMED]
    } else {
        [program::SSL_READ_RET, program::SSL_WRITE_RET]
    };
    let programs = scrape
        .matching("monitor_probe_attached", &[])
        .filter(|sample| sample.value == 1.0)
        .map(|sample| {
            let probe = &sample.labels["probe"];
            if framed && probe.starts_with("mon_sock_") {
                kernel_name(&format!("{probe}_framed"))
            } else {
                kernel_name(probe)
            }
        })
        .chain(
            [
                program::SSL_CALL,
                program::SSL_CALL_EX,
                program::SSL_HANDSHAKE_RET,
            ]
            .into_iter()
            .chain(tls)
            .map(kernel_name),
        )
        .collect();
    let maps = monitor_common::map::ALL
        .iter()
        .copied()
        .chain([".rodata"])
        .map(kernel_name)
        .collect();
    (programs, maps)
}

#[test]
fn a_hundred_sigkills_under_load_leak_no_kernel_objects() {
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                flood(50);
            }
        })
    };
    let (mut killed_programs, mut killed_maps) = (BTreeSet::new(), BTreeSet::new());
    for round in 0..100 {
        let agent = Agent::start(&[]);
        // The scanner finds exactly the agent's objects, by ID, while it runs.
        let (programs, maps) = kernel_objects_of(agent.pid());
        if round == 0 {
            let (want_programs, want_maps) = expected_objects(&agent);
            // bpftool prints a program's full name from its BTF where it has one, the
            // kernel's 15 bytes otherwise; compare what both have.
            let names = |objects: &BTreeMap<u32, String>| -> BTreeSet<String> {
                objects.values().map(|name| kernel_name(name)).collect()
            };
            assert_eq!(names(&programs), want_programs, "the agent's programs");
            // The compiler may split constants into more read-only sections
            // (`.rodata.cst4`), each a map of its own: the object decides, not the test.
            let mut maps_held = names(&maps);
            maps_held.retain(|name| name == ".rodata" || !name.starts_with(".rodata"));
            assert_eq!(maps_held, want_maps, "the agent's maps");
        } else {
            assert!(
                !programs.is_empty() && !maps.is_empty(),
                "round {round}: the agent holds no kernel object?"
            );
        }
        killed_programs.extend(programs.into_keys());
        killed_maps.extend(maps.into_keys());
        let (status, log) = agent.stop_with(libc::SIGKILL);
        assert!(
            !status.success(),
            "round {round}: SIGKILL must kill it\n{log}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    // Objects are freed once their last fd closes, after an RCU grace period.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let programs = kernel_objects("prog");
        let maps = kernel_objects("map");
        let left: Vec<&String> = killed_programs
            .iter()
            .filter_map(|id| programs.get(id))
            .chain(killed_maps.iter().filter_map(|id| maps.get(id)))
            .map(|(_, description)| description)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "objects of killed agents still loaded 30 s later: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(killed_programs.len() >= 100 && killed_maps.len() >= 100);
    let agent = Agent::start(&[]);
    assert_eq!(
        agent
            .scrape()
            .value("monitor_probe_attached", &[("probe", "mon_sys_exit")]),
        Some(1.0)
    );
}

fn assert_all_probes_attached(agent: &Agent) {
    let scrape = agent.scrape();
    let attached: Vec<_> = scrape.matching("monitor_probe_attached", &[]).collect();
    // One row per probe (no probe shares a hook with another here).
    assert_eq!(
        attached.len(),
        monitor_agent::probes::PROBES.len(),
        "{}",
        scrape.text
    );
    assert!(
        attached.iter().all(|sample| sample.value == 1.0),
        "{attached:?}\n{}",
        agent.log()
    );
    assert_eq!(
        http_get(agent.address, "/healthz").unwrap(),
        (200, "ok\n".to_owned())
    );
}

fn start_wrapped(wrapper: &[String]) -> Agent {
    Agent::start_via(&wrapper.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

/// In a private mount namespace, run `setup` (a shell snippet), then the agent.
fn in_mount_namespace(setup: &str) -> Vec<String> {
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn runs_without_tracefs_even_where_it_cannot_be_mounted() {
    // An empty read-only tmpfs where tracefs would be: absent, and nothing can be mounted.
    let wrapper = in_mount_namespace("mount -t tmpfs -o ro,size=4k none /sys/kernel/tracing");
    let agent = start_wrapped(&wrapper);
    assert_all_probes_attached(&agent);
}

/// The syscall probes need no BTF file; the network probes read `struct sock` members at
/// offsets only the kernel's BTF gives, so without it they stay detached, visibly.
#[test]
fn runs_without_kernel_btf() {
    let wrapper = in_mount_namespace("mount --bind /dev/null /sys/kernel/btf/vmlinux");
    let agent = start_wrapped(&wrapper);
    let scrape = agent.scrape();
    // Exactly the probes that read kernel structs at BTF offsets are refused. The `probe`
    // label names the hook that runs: a probe's own program or its fallback's.
    let reads_structs = |program: &str| {
        monitor_agent::probes::PROBES
            .iter()
            .find(|probe| {
                probe.program == program
                    || probe.fallback.is_some_and(|hook| hook.program == program)
            })
            .unwrap_or_else(|| panic!("{program} is no probe"))
            .reads_structs
    };
    for state in scrape.matching("monitor_probe_attached", &[]) {
        let needs_btf = reads_structs(&state.labels["probe"]);
        assert_eq!(state.value, if needs_btf { 0.0 } else { 1.0 }, "{state:?}");
    }
    assert!(reads_structs("mon_tcp_state") && !reads_structs("mon_sys_exit"));
    // Refused, not disabled: these must keep the detached-probe alert firing.
    for state in scrape.matching("monitor_probe_disabled", &[]) {
        assert_eq!(state.value, 0.0, "{state:?}");
    }
    let (status, body) = http_get(agent.address, "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.starts_with("degraded") && body.contains("mon_tcp_state"),
        "{body}"
    );
    assert!(
        agent.log().contains("kernel BTF unavailable"),
        "{}",
        agent.log()
    );
    ground_truth::run_and_check(&agent, &unique_comm("nobtf"), WORKLOAD.as_ref());
}

/// A probe disabled on purpose is visible (its gauges, the log, `/healthz`) but is no fault:
/// `/healthz` stays `ok`, and `monitor_probe_disabled` lets alerts leave it alone. Kernel
/// refusals stay `degraded` (`runs_without_kernel_btf`).
#[test]
fn a_disabled_probe_is_reported_apart_from_refused_ones() {
    let agent = Agent::start(&["--probes.disable", "mon_sys_exit"]);
    let scrape = agent.scrape();
    for (family, sys_exit, sys_enter) in [
        ("monitor_probe_attached", 0.0, 1.0),
        ("monitor_probe_disabled", 1.0, 0.0),
    ] {
        assert_eq!(
            scrape.value(family, &[("probe", "mon_sys_exit")]),
            Some(sys_exit),
            "{family}"
        );
        assert_eq!(
            scrape.value(family, &[("probe", "mon_sys_enter")]),
            Some(sys_enter),
            "{family}"
        );
    }
    let (status, body) = http_get(agent.address, "/healthz").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\nprobe mon_sys_exit disabled by --probes.disable\n")
    );
    assert!(
        agent.log().contains("mon_sys_exit disabled"),
        "{}",
        agent.log()
    );
}

#[test]
fn no_probe_at_all_is_a_one_line_error() {
    let every_probe: Vec<&str> = monitor_agent::probes::PROBES
        .iter()
        .map(|probe| probe.program)
        .collect();
    let output = Command::new(agent_bin())
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--probes.disable", &every_probe.join(",")])
        .args(["--log.level", "off"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no probe could be attached"), "{stderr}");
}

/// Root with only these capabilities: what the README documents as sufficient.
fn with_only_capabilities(caps: &str) -> Vec<String> {
    [
        "setpriv",
        &format!("--bounding-set=-all,{caps}"),
        "--inh-caps=-all",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn cap_bpf_and_cap_perfmon_suffice_and_each_is_needed() {
    let wrapper = with_only_capabilities("+bpf,+perfmon");
    let agent = start_wrapped(&wrapper);
    ground_truth::run_and_check(&agent, &unique_comm("lpriv"), WORKLOAD.as_ref());
    drop(agent);

    for (caps, missing) in [("+bpf", "CAP_PERFMON"), ("+perfmon", "CAP_BPF")] {
        let wrapper = with_only_capabilities(caps);
        let output = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .arg(agent_bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{caps}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("missing capabilities {missing}:")),
            "{stderr}"
        );
    }
}

#[test]
fn secrets_in_arguments_environment_and_query_strings_stay_out() {
    let agent = Agent::start(&["--log.level", "trace"]);
    let secret = |kind: &str| format!("s3cr3t-{kind}-{}", std::process::id());
    let status = Command::new("sh")
        .args(["-c", "exit 0", &secret("ARG")])
        .env("API_TOKEN", secret("ENV"))
        .status()
        .unwrap();
    assert!(status.success());
    let (status, _) = http_get(
        agent.address,
        &format!("/metrics?token={}", secret("QUERY")),
    )
    .unwrap();
    assert_eq!(status, 200);
    let scrape = agent.scrape();
    assert!(
        scrape
            .matching("monitor_syscalls_total", &[("comm", "sh")])
            .next()
            .is_some()
    );
    let log = agent.log();
    for kind in ["ARG", "ENV", "QUERY"] {
        assert!(
            !scrape.text.contains(&secret(kind)),
            "{kind} secret in /metrics"
        );
        assert!(!log.contains(&secret(kind)), "{kind} secret in the log");
    }
}
