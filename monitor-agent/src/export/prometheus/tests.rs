use monitor_common::{Counter, NetBytes, hist, map, program};

use super::*;
use crate::{
    pipeline::health::{self, BuildInfo, Health, RingHealth, SeriesCount},
    probes::{self, Detached, Hook, PROBES, ProbeState, kernel_maps::MapFill},
    series::{
        families::{Family, family},
        labels::{IdentityLabel, LabelPolicy, Workload},
        table::{WorkloadLabels, observe},
    },
    signals::{
        block,
        db::{self, OperationsSnapshot},
        dns, fds,
        http::{self, RequestsSnapshot},
        listen::{self, ListenSnapshot},
        oom,
        sched::{self, SchedSnapshot},
        syscalls::{self, SyscallsSnapshot},
        tcp::{self, ConnCounts, NetworkSnapshot, OVERFLOW_PEER},
        throttle, tls,
    },
};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metrics.prom");

/// A workload in a pod, with a pid: every identity label set.
fn who(comm: &str, pid: u32) -> Workload {
    Workload {
        comm: comm.into(),
        pid: Some(pid),
        container: "api".into(),
        pod: "shop-7d9f".into(),
        namespace: "shop".into(),
        service: "checkout".into(),
    }
}

fn labels(comm: &str, pid: u32, values: &[&str]) -> WorkloadLabels {
    WorkloadLabels {
        who: who(comm, pid),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn syscalls_snapshot() -> SyscallsSnapshot {
    let mut sleeps = Histogram::ZERO;
    sleeps.buckets[hist::bucket(20_000_000)] = 5;
    sleeps.buckets[hist::LAST] = 1; // one call beyond the last finite bound
    sleeps.sum_ns = 100_000_000 + 40_000_000_000;
    let mut opens = Histogram::ZERO;
    opens.buckets[0] = 2;
    opens.buckets[3] = 1;
    opens.sum_ns = 2_500;
    SyscallsSnapshot {
        calls: vec![
            (labels("sleeper", 7, &["nanosleep"]), 6),
            (labels("sleeper", 7, &["mmap"]), 4),
            (labels("q\"b\\n\nl", 8, &["openat"]), 3),
            (WorkloadLabels::overflow(1), 3),
        ],
        durations: vec![
            (labels("sleeper", 7, &["nanosleep"]), sleeps),
            (labels("q\"b\\n\nl", 8, &["openat"]), opens),
            (WorkloadLabels::overflow(1), opens),
        ],
        errors: vec![(labels("q\"b\\n\nl", 8, &["openat", "ENOENT"]), 2)],
        unmatched_exits: 3,
    }
}

fn network_snapshot() -> NetworkSnapshot {
    let labels = |comm: &str, values: &[&str]| labels(comm, 9, values);
    let mut connect = Histogram::ZERO;
    observe(&mut connect, 40_000);
    NetworkSnapshot {
        connect_duration: vec![(labels("curl", &["[::1]:8080"]), connect)],
        connect_errors: vec![(labels("curl", &["10.0.0.9:5432", "refused"]), 3)],
        connections: vec![(
            labels("nginx", &["inbound", "80"]),
            ConnCounts {
                opened: 5,
                closed: 4,
            },
        )],
        retransmits: vec![(labels("curl", &[OVERFLOW_PEER]), 2)],
        resets: vec![(labels("nginx", &["received"]), 1)],
        bytes: vec![(
            labels("nginx", &[]),
            NetBytes {
                sent: 1_000,
                received: 200,
            },
        )],
        peer_overflow: vec![(labels("curl", &[]), 2)],
        ..NetworkSnapshot::default()
    }
}

fn requests_snapshot() -> RequestsSnapshot {
    let labels = |values: &[&str]| labels("nginx", 9, values);
    let mut served = Histogram::ZERO;
    observe(&mut served, 50_000_000);
    RequestsSnapshot {
        server: vec![
            (
                labels(&["GET", "404", "/users/{id}", "http", "1.1"]),
                served,
            ),
            (labels(&["GET", "200", "/health", "https", "2"]), served),
        ],
        client: vec![(
            labels(&["_OTHER", "200", "example.com", "8080", "https", "1.1"]),
            served,
        )],
        rpc_server: vec![(labels(&["grpc", "/shop.Cart/Add", "NOT_FOUND"]), served)],
        rpc_client: vec![(
            labels(&["grpc", "/shop.Cart/Add", "OK", "cart", "50051"]),
            served,
        )],
        connections: 3,
        chunks_dropped: 0,
        http2_lost: 1,
    }
}

fn sched_snapshot() -> SchedSnapshot {
    let mut waits = Histogram::ZERO;
    observe(&mut waits, 3_000);
    observe(&mut waits, 2_000_000);
    SchedSnapshot {
        waits: vec![(labels("nginx", 9, &[]), waits)],
        cpu_ns: vec![(labels("nginx", 9, &[]), 1_500_000_000)],
    }
}

fn ring(label: &'static str) -> RingHealth {
    RingHealth {
        label,
        produced: 0,
        lost: 0,
        read: 0,
        malformed: 0,
    }
}

fn health() -> Health {
    Health {
        rings: vec![
            RingHealth {
                produced: 12,
                lost: 1,
                read: 11,
                ..ring("process_events")
            },
            ring("tcp_events"),
            ring("payload_events"),
        ],
        map_fill: vec![
            MapFill {
                map: map::SYSCALL_STATS,
                entries: Some(2),
                capacity: 10_240,
            },
            MapFill {
                map: map::THREAD_START,
                entries: None,
                capacity: 32_768,
            },
        ],
        insert_failures: [
            map::SYSCALL_STATS,
            map::SYSCALL_ERRORS,
            map::TCP_CONNS,
            map::TCP_LISTENERS,
            map::NET_BYTES,
        ]
        .map(|name| (name, 0))
        .to_vec(),
        series: vec![SeriesCount {
            family: family::SYSCALL_DURATION.name,
            in_use: 3,
            expired: 4,
            dropped: 5,
        }],
        series_max: 10_000,
        proc_access_denied: vec![("fd", 6), ("ns_net", 0), ("exe", 7), ("docker_socket", 0)],
    }
}

fn probes() -> Vec<ProbeState> {
    PROBES
        .iter()
        .map(|probe| ProbeState {
            probe: *probe,
            hook: Hook {
                program: probe.program,
                tracepoint: probe.tracepoint,
            },
            detached: (probe.program == program::SYS_EXIT)
                .then(|| Detached::Refused("refused".to_owned())),
        })
        .collect()
}

/// Every family of the hand-made snapshot, as the signals and the health room publish it.
fn published(policy: &LabelPolicy, probes: &[ProbeState], build: &BuildInfo) -> Vec<Published> {
    let counter = |which: Counter| match which {
        Counter::TcpResetsSentNoSocket => 4,
        _ => 0,
    };
    let mut network = network_snapshot();
    for (labels, _) in &mut network.bytes {
        labels.who = policy.project(family::NETWORK_BYTES.name, &labels.who);
    }
    let mut published = syscalls::published(&syscalls_snapshot(), policy);
    published.extend(tcp::published(&network, policy, &counter));
    published.extend(http::published(&requests_snapshot(), policy, 0, 0));
    published.extend(tls::published(
        &probes::tls::TlsStatus {
            libraries: 2,
            uninstrumented: [(probes::tls::reason::GO, 3), (probes::tls::reason::NSS, 0)].into(),
            enabled: true,
        },
        5,
    ));
    let mut operated = Histogram::ZERO;
    observe(&mut operated, 120_000);
    published.extend(db::published(
        &OperationsSnapshot {
            client: vec![(
                labels(
                    "java",
                    11,
                    &["postgresql", "SELECT", "42P01", "10.0.0.5", "5432"],
                ),
                operated,
            )],
            server: vec![(labels("redis-server", 13, &["redis", "GET", ""]), operated)],
        },
        policy,
    ));
    let mut looked_up = Histogram::ZERO;
    observe(&mut looked_up, 800_000);
    published.extend(dns::published(
        &[
            (
                labels("nginx", 9, &["AAAA", "NOERROR", "10.96.0.10"]),
                looked_up,
            ),
            (
                labels("nginx", 9, &["A", "timeout", "10.96.0.10"]),
                looked_up,
            ),
        ],
        policy,
    ));
    published.extend(sched::published(&sched_snapshot(), policy));
    published.extend(oom::published(&[(labels("java", 11, &[]), 1)], policy));
    published.extend(fds::published(&[(labels("java", 11, &[]), 0.9)], policy));
    let mut written = Histogram::ZERO;
    observe(&mut written, 400_000);
    published.extend(block::published(
        &[(labels("postgres", 12, &["write"]), written)],
        policy,
    ));
    published.extend(listen::published(
        &ListenSnapshot {
            queues: vec![(labels("nginx", 9, &["8080"]), (3, 511))],
            overflows: vec![(labels("nginx", 9, &["8080"]), 17)],
        },
        policy,
    ));
    published.extend(throttle::published(
        &[(labels("java", 11, &[]), 2_430_000_000)],
        policy,
    ));
    published.extend(health::published(&health(), probes, build));
    published.extend(crate::export::process::published(
        &crate::export::process::Figures {
            cpu_seconds: Some(12.5),
            resident_bytes: Some(41_943_040.0),
            virtual_bytes: Some(1_073_741_824.0),
            start_time_seconds: Some(1_764_900_000.25),
            open_fds: Some(37.0),
            max_fds: Some(1_048_576.0),
        },
    ));
    let export = crate::export::otlp::stats::Stats::default();
    export.count(crate::export::otlp::stats::Outcome::Success);
    export.count(crate::export::otlp::stats::Outcome::Failure);
    export.dropped(2000);
    published.extend(export.published());
    published
}

/// The exposition format, byte for byte. Regenerate with `UPDATE_GOLDEN=1 cargo test`
/// after an intended change, and review the diff.
#[test]
fn golden_exposition() {
    let build = BuildInfo {
        version: "0.0.0-test",
        kernel: "6.18.0".into(),
    };
    // pid on, one family with its own label choice, one constant label.
    let choice = std::collections::HashMap::from([(
        family::NETWORK_BYTES.name.to_owned(),
        vec![IdentityLabel::Service, IdentityLabel::Namespace],
    )]);
    let policy = LabelPolicy::new(true, choice, vec![("environment".into(), "test".into())]);
    let mut families = render(&published(&policy, &probes(), &build));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let (text, _) = encode(&families).unwrap();
    let text = String::from_utf8(text).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file (UPDATE_GOLDEN=1)");
    assert_eq!(text, golden);
}

#[test]
fn gather_orders_families_by_name_and_series_by_label_values() {
    let policy = LabelPolicy::default();
    let build = BuildInfo {
        version: "0",
        kernel: "0".into(),
    };
    let families = gather(&published(&policy, &probes(), &build));
    let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    let resets = families
        .iter()
        .find(|f| f.name() == family::TCP_RESETS.name)
        .unwrap();
    let comms: Vec<&str> = resets
        .get_metric()
        .iter()
        .map(|m| m.get_label()[0].value())
        .collect();
    assert_eq!(comms, ["[kernel]", "nginx"]);
}

#[test]
fn disabled_probes_are_told_apart_from_refused_ones() {
    use family::{PROBE_ATTACHED, PROBE_DISABLED};
    let mut states = probes();
    states[0].detached = Some(Detached::Disabled);
    let build = BuildInfo {
        version: "0",
        kernel: "0".into(),
    };
    let families = render(&health::published(&health(), &states, &build));
    // The probes whose gauge in `family` has `value`.
    let probes_at = |family: Family, value: f64| -> Vec<String> {
        let found = families.iter().find(|f| f.name() == family.name).unwrap();
        found
            .get_metric()
            .iter()
            .filter(|m| m.get_gauge().get_value() == value)
            .map(|m| m.get_label()[0].value().to_owned())
            .collect()
    };
    assert_eq!(probes_at(PROBE_DISABLED, 1.0), [PROBES[0].program]);
    assert_eq!(
        probes_at(PROBE_ATTACHED, 0.0),
        [PROBES[0].program, program::SYS_EXIT]
    );
    assert_eq!(
        probes_at(PROBE_DISABLED, 0.0).len() + 1,
        probes_at(PROBE_ATTACHED, 0.0).len() + probes_at(PROBE_ATTACHED, 1.0).len(),
        "one row per hook in both families"
    );
}

#[test]
fn histogram_buckets_are_the_kernel_bounds_and_cumulative() {
    let (_, stats) = &syscalls_snapshot().durations[0];
    let histogram = histogram(stats);
    let buckets = histogram.get_bucket();
    assert_eq!(buckets.len(), hist::LAST);
    assert_eq!(buckets[0].upper_bound(), 256e-9);
    assert_eq!(buckets[17].upper_bound(), (1u64 << 25) as f64 / 1e9);
    assert_eq!(buckets[16].cumulative_count(), 0);
    assert_eq!(buckets[17].cumulative_count(), 5);
    assert_eq!(buckets[hist::LAST - 1].cumulative_count(), 5);
    assert_eq!(
        histogram.get_sample_count(),
        6,
        "the overflow bucket counts in +Inf only"
    );
    assert_eq!(histogram.get_sample_sum(), 40.1);
}

#[test]
fn every_signal_family_is_in_the_catalogue_once() {
    use crate::series::families::family::ALL;
    let published = published(&LabelPolicy::default(), &probes(), &BuildInfo::current());
    for family in &published {
        assert_eq!(
            ALL.iter().filter(|f| f.name == family.family.name).count(),
            1,
            "{}",
            family.family.name
        );
    }
    assert_eq!(
        published.len(),
        ALL.len(),
        "every catalogued family is published"
    );
}
