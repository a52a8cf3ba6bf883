//! DNS lookups a process made: the DNS messages it sent to port 53 and read back (records of
//! the `DNS_EVENTS` ring, from `monitor-ebpf/src/dns.rs`), read and paired into lookups by
//! `monitor_protocols::dns`, with a cap per service on the servers a lookup names.
use std::{net::IpAddr, time::Instant};

use foldhash::{HashMap, HashMapExt, HashSet};
use monitor_common::{Counter, Owner, map};
use monitor_protocols::dns::{self, Lookup, Lookups};

use super::signal::{Context, SeriesCount, Settings, Signal, cap_key, series_count};
use crate::{
    probes::{
        Loaded,
        decode::{self, Flow, PayloadRecord},
        event_ring::{EventRing, RingRead, RingSpec},
    },
    process::{folding::monotonic_ns, naming::OwnedEvent},
    series::{
        families::{Family, family},
        labels::{LabelPolicy, Workload},
        publish::{self, Published},
        table::{Histogram, Recorder, SeriesTable, ValueCap, WorkloadLabels, observe},
    },
};

const FAMILIES: &[Family] = &[family::DNS_LOOKUP_DURATION];

const RING: RingSpec = RingSpec {
    map: map::DNS_EVENTS,
    label: "dns_events",
    produced: Counter::DnsEventsProduced,
    dropped: Counter::DnsEventsDropped,
};

/// The `server_address` of every server past a service's cap (`--tcp.peers-per-comm`).
pub const OVERFLOW_SERVER: &str = crate::signals::tcp::OVERFLOW_PEER;

/// Who asked, and which server: what a query carries to its lookup's series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub owner: Owner,
    pub server: IpAddr,
}

/// A lookup, waiting for its process to be named.
#[derive(Clone, Debug)]
pub struct Done(pub Lookup<Asked>);

impl OwnedEvent for Done {
    fn owner(&self) -> Owner {
        self.0.context.owner
    }
}

pub struct Dns {
    ring: EventRing<PayloadRecord>,
    /// Queries awaiting their answers, by (TGID, socket).
    lookups: Lookups<(u32, u64), Asked>,
    pending: Vec<(Done, Instant)>,
    /// Distinct servers per service.
    servers: ValueCap,
    lookups_table: SeriesTable<WorkloadLabels, Histogram>,
}

impl Dns {
    pub fn take(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            ring: EventRing::take(loaded, RING, decode::payload_event)?,
            lookups: Lookups::default(),
            pending: Vec::new(),
            servers: ValueCap::new(settings.peers_per_comm),
            lookups_table: SeriesTable::default(),
        })
    }

    /// Ends the lookups whose answer is overdue, and names and records every ended one.
    fn settle(&mut self, done: Vec<Lookup<Asked>>, ctx: &mut Context) {
        let now = ctx.now;
        let mut done = done;
        self.lookups.expire(monotonic_ns(), &mut done);
        self.pending
            .extend(done.into_iter().map(|lookup| (Done(lookup), now)));
        let (servers, table, recorder) = (
            &mut self.servers,
            &mut self.lookups_table,
            &mut ctx.recorder,
        );
        ctx.naming.name_events(&mut self.pending, now, |done, who| {
            record(&done.0, who, servers, table, recorder)
        });
    }
}

/// Feeds one captured message to the lookups; ended ones go to `done`.
pub fn feed(
    lookups: &mut Lookups<(u32, u64), Asked>,
    event: &PayloadRecord,
    done: &mut Vec<Lookup<Asked>>,
) {
    let message = if event.stream {
        dns::parse_stream(&event.data)
    } else {
        dns::parse(&event.data)
    };
    let Some(message) = message else { return };
    let sent = event.flow == Flow::Egress;
    lookups.message(
        (event.owner.tgid, event.sk),
        sent,
        &message,
        event.timestamp_ns,
        || Asked {
            owner: event.owner,
            server: event.remote.ip(),
        },
        done,
    );
}

/// Records an ended lookup of the process `who`.
fn record(
    lookup: &Lookup<Asked>,
    who: &Workload,
    servers: &mut ValueCap,
    table: &mut SeriesTable<WorkloadLabels, Histogram>,
    rec: &mut Recorder,
) {
    use family::DNS_LOOKUP_DURATION;
    let mut histogram = Histogram::ZERO;
    observe(&mut histogram, lookup.duration_ns);
    let owner = cap_key(&rec.policy.project(DNS_LOOKUP_DURATION.name, who));
    let server = lookup.context.server.to_string();
    let server = if servers.admit(&owner, &server) {
        server
    } else {
        OVERFLOW_SERVER.to_owned()
    };
    let values = vec![
        dns::question_type(lookup.qtype).to_owned(),
        lookup.outcome.label().to_owned(),
        server,
    ];
    rec.record(DNS_LOOKUP_DURATION.name, table, who, values, &histogram);
}

impl Signal for Dns {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn ring_fds(&self) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
        Ok(vec![self.ring.fd()?])
    }

    fn drain(&mut self, ctx: &mut Context) {
        let lookups = &mut self.lookups;
        let mut done = Vec::new();
        self.ring.drain(|event| feed(lookups, &event, &mut done));
        self.settle(done, ctx);
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        // Timeouts are due whether or not a message came.
        self.settle(Vec::new(), ctx);
        let series = self.lookups_table.publish(HashMap::new(), ctx.now, ctx.ttl);
        // A place in a cap is freed when the last series that holds its server expires.
        let live: HashSet<(String, String)> = series
            .iter()
            .map(|(labels, _)| (cap_key(&labels.who), labels.values[2].clone()))
            .collect();
        self.servers
            .retain(|owner, server| live.contains(&(owner.to_owned(), server.to_owned())));
        published(&series, ctx.recorder.policy)
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![series_count(
            &family::DNS_LOOKUP_DURATION,
            &self.lookups_table,
        )]
    }

    fn rings(&self) -> Vec<RingRead> {
        vec![self.ring.status()]
    }
}

/// The DNS family from one sweep's series.
pub fn published(series: &[(WorkloadLabels, Histogram)], policy: &LabelPolicy) -> Vec<Published> {
    vec![Published::workload(
        family::DNS_LOOKUP_DURATION,
        series,
        policy,
        publish::histogram,
    )]
}
