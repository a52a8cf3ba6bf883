//! Every metric family the agent exports, defined once, and how a `Snapshot` becomes them.
//! Families are built at scrape time from the kernel maps (a custom `Collector`), not
//! copied on a timer, so a scrape always sees the kernel's current counts.
use std::sync::{Arc, Mutex};

use monitor_common::{Counter, SyscallStats, hist, map};
use prometheus::{
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

use crate::{
    pipeline::{Monitor, Snapshot},
    probes::{Hook, ProbeState},
    series::families::{Family, Kind, family},
    series::labels::{LabelPolicy, Workload},
    series::table::{Histogram, WorkloadLabels},
};

/// Comm of resets the kernel sends for no socket.
pub const KERNEL_COMM: &str = "[kernel]";

/// A ring buffer as exported (`ringbuf` label), with the kernel counters of its writers.
struct Ring {
    map: &'static str,
    label: &'static str,
    produced: Counter,
    dropped: Counter,
}

const RINGS: [Ring; 3] = [
    Ring {
        map: map::PROCESS_EVENTS,
        label: "process_events",
        produced: Counter::ProcessEventsProduced,
        dropped: Counter::ProcessEventsDropped,
    },
    Ring {
        map: map::TCP_EVENTS,
        label: "tcp_events",
        produced: Counter::TcpEventsProduced,
        dropped: Counter::TcpEventsDropped,
    },
    Ring {
        map: map::PAYLOAD_EVENTS,
        label: "payload_events",
        produced: Counter::PayloadEventsProduced,
        dropped: Counter::PayloadEventsDropped,
    },
];

/// Static facts for `monitor_build_info`.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub version: &'static str,
    pub kernel: String,
}

impl BuildInfo {
    pub fn current() -> Self {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            version: env!("CARGO_PKG_VERSION"),
            kernel,
        }
    }
}

trait FamilyExt {
    fn label_names(&self, policy: &LabelPolicy) -> Vec<String>;
    fn build(&self, metrics: Vec<proto::Metric>) -> MetricFamily;
    fn sample(&self, label_values: &[&str], value: f64) -> proto::Metric;
}

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    }
}

impl FamilyExt for Family {
    /// Every label name of the family under `policy`.
    fn label_names(&self, policy: &LabelPolicy) -> Vec<String> {
        if self.workload {
            policy.label_names(self.name, self.labels)
        } else {
            self.labels.iter().map(|name| (*name).to_owned()).collect()
        }
    }

    fn build(&self, metrics: Vec<proto::Metric>) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_owned());
        family.set_help(self.help.to_owned());
        family.set_field_type(metric_type(self.kind));
        family.set_metric(metrics);
        family
    }

    /// A single-valued (counter or gauge) sample.
    fn sample(&self, label_values: &[&str], value: f64) -> proto::Metric {
        let mut metric = metric_with_labels(self.labels, label_values);
        if self.kind == Kind::Counter {
            metric.set_counter(counter_value(value));
        } else {
            metric.set_gauge(gauge_value(value));
        }
        metric
    }
}

fn metric_with_labels(names: &[&str], values: &[&str]) -> proto::Metric {
    let pairs = names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect();
    let mut metric = proto::Metric::default();
    metric.set_label(pairs);
    metric
}

/// One sample per row of a `WorkloadLabels` family: comm, the family's own label values, then
/// pid when the pid label is on.
fn workload_rows<V>(
    family: &Family,
    rows: &[(WorkloadLabels, V)],
    policy: &LabelPolicy,
    set: impl Fn(&mut proto::Metric, &V),
) -> Vec<proto::Metric> {
    let names = policy.label_names(family.name, family.labels);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    rows.iter()
        .map(|(labels, value)| {
            let values = policy.label_values(family.name, &labels.who, &labels.values);
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let mut metric = metric_with_labels(&names, &values);
            set(&mut metric, value);
            metric
        })
        .collect()
}

/// One row per hook: two probes may share one (the syscall-exit hook of socket I/O), and a
/// series must not repeat. A shared hook is attached if either probe attached it.
fn hooks_attached(probes: &[ProbeState]) -> Vec<(Hook, bool)> {
    hooks_where(probes, ProbeState::attached)
}

/// The same rows as `hooks_attached`, so that alerts can match the two families one to one.
fn hooks_disabled(probes: &[ProbeState]) -> Vec<(Hook, bool)> {
    hooks_where(probes, ProbeState::disabled)
}

fn hooks_where(probes: &[ProbeState], holds: fn(&ProbeState) -> bool) -> Vec<(Hook, bool)> {
    let mut rows: Vec<(Hook, bool)> = Vec::new();
    for state in probes {
        match rows.iter_mut().find(|(hook, _)| *hook == state.hook) {
            Some((_, value)) => *value |= holds(state),
            None => rows.push((state.hook, holds(state))),
        }
    }
    rows
}

fn counter_value(value: f64) -> proto::Counter {
    let mut counter = proto::Counter::default();
    counter.set_value(value);
    counter
}

fn gauge_value(value: f64) -> proto::Gauge {
    let mut gauge = proto::Gauge::default();
    gauge.set_value(value);
    gauge
}

fn histogram(stats: &SyscallStats) -> proto::Histogram {
    let mut cumulative = 0;
    let buckets = (0..hist::LAST)
        .map(|index| {
            cumulative += stats.buckets[index];
            let mut bucket = proto::Bucket::default();
            bucket.set_cumulative_count(cumulative);
            let upper_ns = hist::upper_bound_ns(index).unwrap_or(u64::MAX);
            bucket.set_upper_bound(upper_ns as f64 / 1e9);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_bucket(buckets);
    histogram.set_sample_count(cumulative + stats.buckets[hist::LAST]);
    histogram.set_sample_sum(stats.sum_ns as f64 / 1e9);
    histogram
}

/// Renders one scrape. Pure: the golden test feeds it a hand-made snapshot.
pub fn render(
    snapshot: &Snapshot,
    probes: &[ProbeState],
    policy: &LabelPolicy,
    build: &BuildInfo,
) -> Vec<MetricFamily> {
    use crate::series::families::family::*;
    let set_histogram = |m: &mut proto::Metric, v: &Histogram| m.set_histogram(histogram(v));
    let set_counter = |m: &mut proto::Metric, v: &u64| m.set_counter(counter_value(*v as f64));
    let durations = workload_rows(&SYSCALL_DURATION, &snapshot.syscalls, policy, set_histogram);
    let errors = workload_rows(&SYSCALL_ERRORS, &snapshot.errors, policy, set_counter);

    let counter = |which: Counter| {
        snapshot
            .kernel_counters
            .iter()
            .find(|(c, _)| *c == which)
            .map_or(0, |&(_, v)| v) as f64
    };
    let network = &snapshot.network;
    let kernel = WorkloadLabels {
        who: policy.project(
            TCP_RESETS.name,
            &Workload {
                comm: KERNEL_COMM.to_owned(),
                ..Workload::default()
            },
        ),
        values: vec!["sent".to_owned()],
    };
    let kernel_resets = counter(Counter::TcpResetsSentNoSocket) as u64;
    let resets: Vec<_> = network
        .resets
        .iter()
        .cloned()
        .chain([(kernel, kernel_resets)])
        .collect();
    let resets = workload_rows(&TCP_RESETS, &resets, policy, set_counter);
    // One row per direction: the kernel counts both in one value per process.
    let bytes: Vec<(WorkloadLabels, u64)> = network
        .bytes
        .iter()
        .flat_map(|(labels, value)| {
            [("sent", value.sent), ("received", value.received)].map(|(direction, count)| {
                let mut labels = labels.clone();
                labels.values = vec![direction.to_owned()];
                (labels, count)
            })
        })
        .collect();
    let mut families = vec![
        TCP_CONNECT_DURATION.build(workload_rows(
            &TCP_CONNECT_DURATION,
            &network.connect_duration,
            policy,
            set_histogram,
        )),
        TCP_CONNECT_ERRORS.build(workload_rows(
            &TCP_CONNECT_ERRORS,
            &network.connect_errors,
            policy,
            set_counter,
        )),
        TCP_CONNECTIONS_OPENED.build(workload_rows(
            &TCP_CONNECTIONS_OPENED,
            &network.connections,
            policy,
            |m, v| m.set_counter(counter_value(v.opened as f64)),
        )),
        TCP_CONNECTIONS_ACTIVE.build(workload_rows(
            &TCP_CONNECTIONS_ACTIVE,
            &network.connections,
            policy,
            |m, v| m.set_gauge(gauge_value(v.active() as f64)),
        )),
        TCP_RETRANSMITS.build(workload_rows(
            &TCP_RETRANSMITS,
            &network.retransmits,
            policy,
            set_counter,
        )),
        TCP_RESETS.build(resets),
        TCP_RTT.build(workload_rows(&TCP_RTT, &network.rtt, policy, set_histogram)),
        TCP_CONNECTION_DURATION.build(workload_rows(
            &TCP_CONNECTION_DURATION,
            &network.connection_duration,
            policy,
            set_histogram,
        )),
        NETWORK_BYTES.build(workload_rows(&NETWORK_BYTES, &bytes, policy, set_counter)),
        TCP_PEER_OVERFLOW.build(
            network
                .peer_overflow
                .iter()
                .map(|(labels, count)| TCP_PEER_OVERFLOW.sample(&[&labels.who.comm], *count as f64))
                .collect(),
        ),
        HTTP_SERVER_DURATION.build(workload_rows(
            &HTTP_SERVER_DURATION,
            &snapshot.requests.server,
            policy,
            set_histogram,
        )),
        HTTP_CLIENT_DURATION.build(workload_rows(
            &HTTP_CLIENT_DURATION,
            &snapshot.requests.client,
            policy,
            set_histogram,
        )),
        PAYLOAD_UNREADABLE.build(vec![
            PAYLOAD_UNREADABLE.sample(&[], counter(Counter::PayloadUnreadable)),
        ]),
        PAYLOAD_CONNECTIONS.build(vec![
            PAYLOAD_CONNECTIONS.sample(&[], snapshot.requests.connections as f64),
        ]),
        PAYLOAD_CHUNKS_DROPPED.build(vec![
            PAYLOAD_CHUNKS_DROPPED.sample(&[], snapshot.requests.chunks_dropped as f64),
        ]),
        TCP_UNTRACKED_EVENTS.build(
            [
                ("retransmit", Counter::TcpRetransmitsUntracked),
                ("reset_sent", Counter::TcpResetsSentUntracked),
                ("reset_received", Counter::TcpResetsReceivedUntracked),
            ]
            .iter()
            .map(|&(event, which)| TCP_UNTRACKED_EVENTS.sample(&[event], counter(which)))
            .collect(),
        ),
    ];
    let ring_sample = |family: &Family, value: &dyn Fn(&Ring) -> f64| {
        family.build(
            RINGS
                .iter()
                .map(|ring| family.sample(&[ring.label], value(ring)))
                .collect(),
        )
    };
    let ring_read = |map: &str| snapshot.rings.iter().find(|ring| ring.map == map).copied();
    families.extend([
        ring_sample(&RINGBUF_PRODUCED, &|ring| counter(ring.produced)),
        ring_sample(&RINGBUF_READ, &|ring| {
            ring_read(ring.map).map_or(0.0, |read| read.read as f64)
        }),
        ring_sample(&RINGBUF_LOST, &|ring| counter(ring.dropped)),
        ring_sample(&RINGBUF_MALFORMED, &|ring| {
            ring_read(ring.map).map_or(0.0, |read| read.malformed as f64)
        }),
    ]);
    families.extend([
        SYSCALL_DURATION.build(durations),
        SYSCALL_ERRORS.build(errors),
        SYSCALL_UNMATCHED_EXITS.build(vec![
            SYSCALL_UNMATCHED_EXITS.sample(&[], counter(Counter::UnmatchedExits)),
        ]),
        BUILD_INFO.build(vec![
            BUILD_INFO.sample(&[build.version, &build.kernel], 1.0),
        ]),
        PROBE_ATTACHED.build(
            hooks_attached(probes)
                .into_iter()
                .map(|(hook, attached)| {
                    let labels = [hook.program, hook.tracepoint];
                    PROBE_ATTACHED.sample(&labels, f64::from(u8::from(attached)))
                })
                .collect(),
        ),
        PROBE_DISABLED.build(
            hooks_disabled(probes)
                .into_iter()
                .map(|(hook, disabled)| {
                    let labels = [hook.program, hook.tracepoint];
                    PROBE_DISABLED.sample(&labels, f64::from(u8::from(disabled)))
                })
                .collect(),
        ),
        MAP_INSERT_FAILURES.build(
            [
                (map::SYSCALL_STATS, Counter::SyscallStatsFull),
                (map::SYSCALL_ERRORS, Counter::SyscallErrorsFull),
                (map::TCP_CONNS, Counter::TcpConnsFull),
                (map::TCP_LISTENERS, Counter::TcpListenersFull),
                (map::NET_BYTES, Counter::NetBytesFull),
            ]
            .iter()
            .map(|&(name, which)| MAP_INSERT_FAILURES.sample(&[name], counter(which)))
            .collect(),
        ),
    ]);
    families.push(
        MAP_ENTRIES.build(
            snapshot
                .map_fill
                .iter()
                .filter_map(|fill| Some(MAP_ENTRIES.sample(&[fill.map], fill.entries? as f64)))
                .collect(),
        ),
    );
    families.push(
        MAP_MAX_ENTRIES.build(
            snapshot
                .map_fill
                .iter()
                .map(|fill| MAP_MAX_ENTRIES.sample(&[fill.map], fill.capacity as f64))
                .collect(),
        ),
    );
    families.push(
        SERIES.build(
            snapshot
                .series
                .iter()
                .map(|count| SERIES.sample(&[count.family], count.in_use as f64))
                .collect(),
        ),
    );
    families.push(
        SERIES_EXPIRED.build(
            snapshot
                .series
                .iter()
                .map(|count| SERIES_EXPIRED.sample(&[count.family], count.expired as f64))
                .collect(),
        ),
    );
    families.push(
        SERIES_DROPPED.build(
            snapshot
                .series
                .iter()
                .map(|count| SERIES_DROPPED.sample(&[count.family], count.dropped as f64))
                .collect(),
        ),
    );
    families.push(SERIES_BUDGET.build(vec![SERIES_BUDGET.sample(&[], snapshot.series_max as f64)]));
    // The text format has no way to say "a family with no series"; leave them out.
    families.retain(|family| !family.get_metric().is_empty());
    families
}

/// The registry's view of the running monitor: refreshes and renders at every scrape.
pub struct MonitorCollector {
    monitor: Arc<Mutex<Monitor>>,
    probes: Vec<ProbeState>,
    policy: LabelPolicy,
    build: BuildInfo,
    descs: Vec<Desc>,
}

impl MonitorCollector {
    pub fn new(monitor: Arc<Mutex<Monitor>>, probes: Vec<ProbeState>, policy: LabelPolicy) -> Self {
        let descs = family::ALL
            .iter()
            .filter_map(|family| {
                let labels = family.label_names(&policy);
                Desc::new(
                    family.name.to_owned(),
                    family.help.to_owned(),
                    labels,
                    Default::default(),
                )
                .ok()
            })
            .collect();
        Self {
            monitor,
            probes,
            policy,
            build: BuildInfo::current(),
            descs,
        }
    }
}

impl Collector for MonitorCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = {
            let mut monitor = self
                .monitor
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            monitor.refresh(std::time::Instant::now())
        };
        render(&snapshot, &self.probes, &self.policy, &self.build)
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::program;
    use prometheus::Encoder as _;

    use super::*;
    use monitor_common::NetBytes;

    use crate::{
        pipeline::{RingRead, SeriesCount},
        probes::{Detached, Hook, PROBES, kernel_maps::MapFill},
        series::labels::IdentityLabel,
        signals::http::RequestsSnapshot,
        signals::tcp::{ConnCounts, NetworkSnapshot},
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

    fn snapshot() -> Snapshot {
        let mut sleeps = SyscallStats::ZERO;
        sleeps.buckets[hist::bucket(20_000_000)] = 5;
        sleeps.buckets[hist::LAST] = 1; // one call beyond the last finite bound
        sleeps.sum_ns = 100_000_000 + 40_000_000_000;
        let mut opens = SyscallStats::ZERO;
        opens.buckets[0] = 2;
        opens.buckets[3] = 1;
        opens.sum_ns = 2_500;
        Snapshot {
            syscalls: vec![
                (labels("sleeper", 7, &["nanosleep"]), sleeps),
                (labels("q\"b\\n\nl", 8, &["openat"]), opens),
                (WorkloadLabels::overflow(1), opens),
            ],
            errors: vec![(labels("q\"b\\n\nl", 8, &["openat", "ENOENT"]), 2)],
            kernel_counters: vec![
                (Counter::ProcessEventsProduced, 12),
                (Counter::ProcessEventsDropped, 1),
                (Counter::UnmatchedExits, 3),
                (Counter::TcpResetsSentNoSocket, 4),
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
            rings: vec![RingRead {
                map: map::PROCESS_EVENTS,
                read: 11,
                malformed: 0,
            }],
            network: network_snapshot(),
            requests: requests_snapshot(),
            series: vec![SeriesCount {
                family: family::SYSCALL_DURATION.name,
                in_use: 3,
                expired: 4,
                dropped: 5,
            }],
            series_max: 10_000,
        }
    }

    fn network_snapshot() -> NetworkSnapshot {
        let labels = |comm: &str, values: &[&str]| labels(comm, 9, values);
        let mut connect = Histogram::ZERO;
        crate::series::table::observe(&mut connect, 40_000);
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
            retransmits: vec![(labels("curl", &[crate::signals::tcp::OVERFLOW_PEER]), 2)],
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
        crate::series::table::observe(&mut served, 50_000_000);
        RequestsSnapshot {
            server: vec![(labels(&["GET", "404", "/users/{id}"]), served)],
            client: vec![(labels(&["_OTHER", "200", "example.com", "8080"]), served)],
            connections: 3,
            chunks_dropped: 0,
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
        let mut snapshot = snapshot();
        for (labels, _) in &mut snapshot.network.bytes {
            labels.who = policy.project(family::NETWORK_BYTES.name, &labels.who);
        }
        let mut families = render(&snapshot, &probes(), &policy, &build);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&families, &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &text).unwrap();
        }
        let golden = std::fs::read_to_string(GOLDEN).expect("golden file (UPDATE_GOLDEN=1)");
        assert_eq!(text, golden);
    }

    #[test]
    fn disabled_probes_are_told_apart_from_refused_ones() {
        use family::{PROBE_ATTACHED, PROBE_DISABLED};
        let mut states = probes();
        states[0].detached = Some(Detached::Disabled);
        let policy = LabelPolicy::new(false, Default::default(), Vec::new());
        let build = BuildInfo {
            version: "0",
            kernel: "0".into(),
        };
        let families = render(&snapshot(), &states, &policy, &build);
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
        let (_, stats) = &snapshot().syscalls[0];
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
}
