//! HTTP requests and gRPC calls served and made. HTTP/1.x: framed in the kernel, one record
//! per request (`REQUEST_EVENTS`, from `monitor-ebpf/src/framing.rs`), or, where the kernel
//! cannot, parsed here from the socket reads and writes it captures (`PAYLOAD_EVENTS`, from
//! `monitor-ebpf/src/payload.rs`) by the parsers of `monitor-protocols`. The agent runs one
//! or the other (`--probes.request-framing`) and drains both rings. HTTP/2 and gRPC: each
//! read/write of a connection that began with HTTP/2's preface (`HTTP2_EVENTS`, from
//! `monitor-ebpf/src/copied.rs`), framed here (`monitor_protocols::http2`).
use std::time::Instant;

use monitor_common::{Counter, Owner, map};

use super::signal::{Context, SeriesCount, Settings, Signal};
use crate::{
    probes::{
        Loaded,
        decode::{self, PayloadRecord, RequestRecord},
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
pub use exchanges::{Completed, OVERFLOW_ROUTE, RequestsSnapshot};

const FAMILIES: &[Family] = &[
    family::HTTP_SERVER_DURATION,
    family::HTTP_CLIENT_DURATION,
    family::RPC_SERVER_DURATION,
    family::RPC_CLIENT_DURATION,
    family::HTTP2_UNPARSEABLE,
    family::HTTP2_LOST,
    family::PAYLOAD_UNREADABLE,
    family::PAYLOAD_CONNECTIONS,
    family::PAYLOAD_CHUNKS_DROPPED,
];

const PAYLOAD_RING: RingSpec = RingSpec {
    map: map::PAYLOAD_EVENTS,
    label: "payload_events",
    produced: Counter::PayloadEventsProduced,
    dropped: Counter::PayloadEventsDropped,
};

const HTTP2_RING: RingSpec = RingSpec {
    map: map::HTTP2_EVENTS,
    label: "http2_events",
    produced: Counter::Http2EventsProduced,
    dropped: Counter::Http2EventsDropped,
};

const REQUEST_RING: RingSpec = RingSpec {
    map: map::REQUEST_EVENTS,
    label: "request_events",
    produced: Counter::RequestEventsProduced,
    dropped: Counter::RequestEventsDropped,
};

impl OwnedEvent for Completed {
    fn owner(&self) -> Owner {
        self.owner
    }
}

pub struct Http {
    payloads: EventRing<PayloadRecord>,
    framed: EventRing<RequestRecord>,
    http2: EventRing<PayloadRecord>,
    /// Parsed requests whose process no event has named yet.
    pending: Vec<(Completed, Instant)>,
    requests: Requests,
}

impl Http {
    pub fn take(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            payloads: EventRing::take(loaded, PAYLOAD_RING, decode::payload_event)?,
            framed: EventRing::take(loaded, REQUEST_RING, decode::request_event)?,
            http2: EventRing::take(loaded, HTTP2_RING, decode::db_event)?,
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
        Ok(vec![
            self.payloads.fd()?,
            self.framed.fd()?,
            self.http2.fd()?,
        ])
    }

    /// Parsing needs no name: only the few reads/writes that complete a request wait for
    /// their process to be named.
    fn drain(&mut self, ctx: &mut Context) {
        let now = ctx.now;
        let requests = &mut self.requests;
        let mut completed = Vec::new();
        self.payloads
            .drain(|event| requests.feed(&event, now, &mut completed));
        self.framed
            .drain(|event| completed.extend(Requests::framed(&event)));
        self.http2
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
            ctx.counter(Counter::Http2Unparseable),
        )
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        self.requests.series_counts()
    }

    fn rings(&self) -> Vec<RingRead> {
        vec![
            self.payloads.status(),
            self.framed.status(),
            self.http2.status(),
        ]
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[(map::HTTP_CONNS, Counter::HttpConnsFull)]
    }
}

/// The HTTP and gRPC families from one sweep's values; `unreadable` is the kernel's count of
/// captured reads/writes whose bytes could not be copied, `unparseable` of connections first
/// seen in the middle of HTTP/2.
pub fn published(
    requests: &RequestsSnapshot,
    policy: &LabelPolicy,
    unreadable: u64,
    unparseable: u64,
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
        Published::workload(
            RPC_SERVER_DURATION,
            &requests.rpc_server,
            policy,
            publish::histogram,
        ),
        Published::workload(
            RPC_CLIENT_DURATION,
            &requests.rpc_client,
            policy,
            publish::histogram,
        ),
        Published::single(HTTP2_UNPARSEABLE, unparseable as f64),
        Published::single(HTTP2_LOST, requests.http2_lost as f64),
        Published::single(PAYLOAD_UNREADABLE, unreadable as f64),
        Published::single(PAYLOAD_CONNECTIONS, requests.connections as f64),
        Published::single(PAYLOAD_CHUNKS_DROPPED, requests.chunks_dropped as f64),
    ]
}
