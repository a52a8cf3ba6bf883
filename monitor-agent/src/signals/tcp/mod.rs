//! TCP: connections, handshakes, retransmits, resets, RTT (events of the `TCP_EVENTS` ring,
//! from `monitor-ebpf/src/network.rs`) and payload bytes per process (`NET_BYTES`, per CPU,
//! from `monitor-ebpf/src/socket_io.rs`).
use std::time::Instant;

use monitor_common::{Counter, NetBytes, Owner, map};

use super::signal::{Context, SeriesCount, Settings, Signal, series_count, sweep_map};
use crate::{
    probes::{
        Loaded,
        decode::{self, TcpRecord},
        event_ring::{EventRing, RingRead, RingSpec},
        kernel_maps::AggregateMap,
    },
    process::naming::OwnedEvent,
    series::{
        families::{Family, family},
        labels::{LabelPolicy, Workload},
        publish::{self, Published, Value},
        table::{SeriesTable, WorkloadLabels},
    },
};

mod network;

use network::Network;
pub use network::{ConnCounts, NetworkSnapshot, OVERFLOW_PEER};

const FAMILIES: &[Family] = &[
    family::TCP_CONNECT_DURATION,
    family::TCP_CONNECT_ERRORS,
    family::TCP_CONNECTIONS_OPENED,
    family::TCP_CONNECTIONS_ACTIVE,
    family::TCP_RETRANSMITS,
    family::TCP_RESETS,
    family::TCP_RTT,
    family::TCP_CONNECTION_DURATION,
    family::NETWORK_BYTES,
    family::TCP_PEER_OVERFLOW,
    family::TCP_UNTRACKED_EVENTS,
];

const RING: RingSpec = RingSpec {
    map: map::TCP_EVENTS,
    label: "tcp_events",
    produced: Counter::TcpEventsProduced,
    dropped: Counter::TcpEventsDropped,
};

/// Comm of resets the kernel sends for no socket.
pub const KERNEL_COMM: &str = "[kernel]";

impl OwnedEvent for TcpRecord {
    fn owner(&self) -> Owner {
        self.owner
    }
}

pub struct Tcp {
    events: EventRing<TcpRecord>,
    /// Events whose process no event has named yet, with when they arrived.
    pending: Vec<(TcpRecord, Instant)>,
    bytes_map: AggregateMap<Owner, NetBytes>,
    bytes: SeriesTable<WorkloadLabels, NetBytes>,
    network: Network,
}

impl Tcp {
    pub fn take(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            events: EventRing::take(loaded, RING, decode::tcp_event)?,
            pending: Vec::new(),
            bytes_map: AggregateMap::take(loaded, map::NET_BYTES)?,
            bytes: SeriesTable::default(),
            network: Network::new(settings.peers_per_comm),
        })
    }
}

impl Signal for Tcp {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn ring_fds(&self) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
        Ok(vec![self.events.fd()?])
    }

    fn drain(&mut self, ctx: &mut Context) {
        let now = ctx.now;
        let pending = &mut self.pending;
        self.events.drain(|event| pending.push((event, now)));
        let network = &mut self.network;
        let recorder = &mut ctx.recorder;
        ctx.naming
            .name_events(&mut self.pending, now, |event, who| {
                network.apply(event, who, recorder)
            });
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let bytes = sweep_map(
            &mut self.bytes_map,
            &family::NETWORK_BYTES,
            &mut self.bytes,
            ctx,
        );
        let mut snapshot = self.network.publish(ctx.now, ctx.ttl);
        snapshot.bytes = bytes;
        let kernel = ctx.kernel;
        published(&snapshot, ctx.recorder.policy, &|c| kernel.counter(c))
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[
            (map::TCP_CONNS, Counter::TcpConnsFull),
            (map::TCP_LISTENERS, Counter::TcpListenersFull),
            (map::NET_BYTES, Counter::NetBytesFull),
        ]
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        let mut counts = self.network.series_counts();
        // The kernel's own resets (comm="[kernel]") are one series more, always exported.
        for (family, in_use, _) in &mut counts {
            if *family == family::TCP_RESETS.name {
                *in_use += 1;
            }
        }
        counts.push(series_count(&family::NETWORK_BYTES, &self.bytes));
        counts
    }

    fn rings(&self) -> Vec<RingRead> {
        vec![self.events.status()]
    }
}

/// The TCP families from one sweep's values and the kernel's counters.
pub fn published(
    network: &NetworkSnapshot,
    policy: &LabelPolicy,
    counter: &dyn Fn(Counter) -> u64,
) -> Vec<Published> {
    use family::*;
    // Resets the kernel sent for no socket are counted in the kernel, under no process.
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
    let resets: Vec<_> = network
        .resets
        .iter()
        .cloned()
        .chain([(kernel, counter(Counter::TcpResetsSentNoSocket))])
        .collect();
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
    let histogram = publish::histogram;
    let counter_of = publish::counter;
    vec![
        Published::workload(
            TCP_CONNECT_DURATION,
            &network.connect_duration,
            policy,
            histogram,
        ),
        Published::workload(
            TCP_CONNECT_ERRORS,
            &network.connect_errors,
            policy,
            counter_of,
        ),
        Published::workload(TCP_CONNECTIONS_OPENED, &network.connections, policy, |v| {
            Value::Counter(v.opened as f64)
        }),
        Published::workload(TCP_CONNECTIONS_ACTIVE, &network.connections, policy, |v| {
            Value::Gauge(v.active() as f64)
        }),
        Published::workload(TCP_RETRANSMITS, &network.retransmits, policy, counter_of),
        Published::workload(TCP_RESETS, &resets, policy, counter_of),
        Published::workload(TCP_RTT, &network.rtt, policy, histogram),
        Published::workload(
            TCP_CONNECTION_DURATION,
            &network.connection_duration,
            policy,
            histogram,
        ),
        Published::workload(NETWORK_BYTES, &bytes, policy, counter_of),
        Published::plain(
            TCP_PEER_OVERFLOW,
            network
                .peer_overflow
                .iter()
                .map(|(labels, count)| (vec![labels.who.comm.as_str()], *count as f64)),
        ),
        Published::plain(
            TCP_UNTRACKED_EVENTS,
            [
                ("retransmit", Counter::TcpRetransmitsUntracked),
                ("reset_sent", Counter::TcpResetsSentUntracked),
                ("reset_received", Counter::TcpResetsReceivedUntracked),
            ]
            .map(|(event, which)| (vec![event], counter(which) as f64)),
        ),
    ]
}
