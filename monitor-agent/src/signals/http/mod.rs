//! HTTP/1.x requests served and made, parsed from the socket reads and writes the kernel
//! captures (`PAYLOAD_EVENTS`, from `monitor-ebpf/src/payload.rs`) by the parsers of
//! `monitor-protocols`.
use std::time::Instant;

use monitor_common::{Counter, Owner, map};

use super::signal::{Context, SeriesCount, Settings, Signal};
use crate::{
    probes::{
        Loaded,
        decode::{self, PayloadRecord},
        event_ring::{EventRing, RingRead, RingSpec},
    },
    process::naming::OwnedEvent,
    series::{
        families::{Family, family},
        labels::LabelPolicy,
        publish::{self, Published},
    },
};

mod exchanges;

use exchanges::Requests;
pub use exchanges::{
    Completed, IDLE_CONNECTION, MAX_CONNECTIONS, OVERFLOW_ROUTE, RequestsSnapshot,
};

const FAMILIES: &[Family] = &[
    family::HTTP_SERVER_DURATION,
    family::HTTP_CLIENT_DURATION,
    family::PAYLOAD_UNREADABLE,
    family::PAYLOAD_CONNECTIONS,
    family::PAYLOAD_CHUNKS_DROPPED,
];

const RING: RingSpec = RingSpec {
    map: map::PAYLOAD_EVENTS,
    label: "payload_events",
    produced: Counter::PayloadEventsProduced,
    dropped: Counter::PayloadEventsDropped,
};

impl OwnedEvent for Completed {
    fn owner(&self) -> Owner {
        self.owner
    }
}

pub struct Http {
    payloads: EventRing<PayloadRecord>,
    /// Parsed requests whose process no event has named yet.
    pending: Vec<(Completed, Instant)>,
    requests: Requests,
}

impl Http {
    pub fn take(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            payloads: EventRing::take(loaded, RING, decode::payload_event)?,
            pending: Vec::new(),
            requests: Requests::new(settings.routes_per_comm, settings.peers_per_comm),
        })
    }
}

impl Signal for Http {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn ring_fds(&self) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
        Ok(vec![self.payloads.fd()?])
    }

    /// Parsing needs no name: only the few reads/writes that complete a request wait for
    /// their process to be named.
    fn drain(&mut self, ctx: &mut Context) {
        let now = ctx.now;
        let requests = &mut self.requests;
        let mut completed = Vec::new();
        self.payloads
            .drain(|event| requests.feed(&event, now, &mut completed));
        self.pending
            .extend(completed.into_iter().map(|exchange| (exchange, now)));
        let recorder = &mut ctx.recorder;
        ctx.naming
            .name_events(&mut self.pending, now, |exchange, who| {
                requests.record(exchange, who, recorder)
            });
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let snapshot = self.requests.publish(ctx.now, ctx.ttl);
        published(
            &snapshot,
            ctx.recorder.policy,
            ctx.counter(Counter::PayloadUnreadable),
        )
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        self.requests.series_counts()
    }

    fn rings(&self) -> Vec<RingRead> {
        vec![self.payloads.status()]
    }
}

/// The HTTP families from one sweep's values; `unreadable` is the kernel's count of captured
/// reads/writes whose bytes could not be copied.
pub fn published(
    requests: &RequestsSnapshot,
    policy: &LabelPolicy,
    unreadable: u64,
) -> Vec<Published> {
    use family::*;
    vec![
        Published::workload(
            HTTP_SERVER_DURATION,
            &requests.server,
            policy,
            publish::histogram,
        ),
        Published::workload(
            HTTP_CLIENT_DURATION,
            &requests.client,
            policy,
            publish::histogram,
        ),
        Published::single(PAYLOAD_UNREADABLE, unreadable as f64),
        Published::single(PAYLOAD_CONNECTIONS, requests.connections as f64),
        Published::single(PAYLOAD_CHUNKS_DROPPED, requests.chunks_dropped as f64),
    ]
}
