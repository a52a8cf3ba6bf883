//! The running pipeline's state, behind one lock: kernel maps and ring buffer in, named and
//! aggregated series out. Scrapes and the periodic sweep both go through `refresh`.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use monitor_common::{Counter, Owner, SyscallErrorKey, SyscallKey, SyscallStats, map};

use crate::{
    identity::resolver::{Facts, Resolver},
    probes::decode::{PayloadEvent, ProcessEvent, ProcessEventKind, TcpEvent},
    probes::{
        event_ring::EventRing,
        kernel_maps::{KernelMaps, MapFill},
    },
    process::names::{Incarnation, ProcessNames, read_proc_comm},
    series::families::family,
    series::labels::{LabelPolicy, Workload},
    series::table::{Budget, Observations, Recorder, SeriesTable, WorkloadLabels},
    signals::http::{Completed, Requests, RequestsSnapshot},
    signals::syscall_names as names,
    signals::tcp::{Network, NetworkSnapshot},
};

pub type ProcessEvents = EventRing<ProcessEvent>;
pub type TcpEvents = EventRing<TcpEvent>;
pub type PayloadEvents = EventRing<PayloadEvent>;

/// Ring-buffer events that belong to one process incarnation and are applied once it is named.
trait OwnedEvent {
    fn incarnation(&self) -> Incarnation;
}

impl OwnedEvent for TcpEvent {
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
}

impl OwnedEvent for Completed {
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesCount {
    pub family: &'static str,
    pub in_use: u64,
    pub expired: u64,
    pub dropped: u64,
}

/// A ring buffer's reader side, for the loss-accounting self-metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRead {
    pub map: &'static str,
    pub read: u64,
    pub malformed: u64,
}

/// Everything one scrape exports, read under the lock and rendered outside it.
#[derive(Debug)]
pub struct Snapshot {
    pub syscalls: Vec<(WorkloadLabels, SyscallStats)>,
    pub errors: Vec<(WorkloadLabels, u64)>,
    pub kernel_counters: Vec<(Counter, u64)>,
    pub map_fill: Vec<MapFill>,
    pub rings: Vec<RingRead>,
    pub network: NetworkSnapshot,
    pub requests: RequestsSnapshot,
    /// Per workload family: series in use, expired so far, label sets refused by the budget.
    pub series: Vec<SeriesCount>,
    pub series_max: usize,
}

#[derive(Clone, Debug)]
pub struct MonitorSettings {
    /// Idle time after which a finished process's series are dropped.
    pub ttl: Duration,
    /// How often `refresh` runs at the least.
    pub sweep_interval: Duration,
    /// Distinct `peer` values per comm before the rest share `network::OVERFLOW_PEER`.
    pub peers_per_comm: usize,
    /// Distinct HTTP routes per comm before the rest share one overflow value.
    pub routes_per_comm: usize,
    /// Workload series over all families before new label sets go to the overflow series.
    pub series_max: usize,
}

pub struct Monitor {
    maps: KernelMaps,
    events: ProcessEvents,
    tcp_events: TcpEvents,
    payload_events: PayloadEvents,
    /// Events whose process no event has named yet, with when they arrived.
    pending_tcp: Vec<(TcpEvent, Instant)>,
    /// Parsed requests whose process no event has named yet.
    pending_exchanges: Vec<(Completed, Instant)>,
    network: Network,
    requests: Requests,
    names: ProcessNames,
    syscalls: SeriesTable<WorkloadLabels, SyscallStats>,
    errors: SeriesTable<WorkloadLabels, u64>,
    policy: LabelPolicy,
    budget: Budget,
    resolver: Resolver,
    ttl: Duration,
    name_grace: Duration,
    unnamed: HashMap<Incarnation, Instant>,
    events_paused_until: Option<Instant>,
}

/// A kernel key is finished once its generation no longer holds the PID: the process
/// exec'd or exited, so nothing will add to it again (bar a racing exit, swept next time).
struct Generations<'a> {
    maps: &'a KernelMaps,
    cache: HashMap<u32, Option<u32>>,
}

impl Generations<'_> {
    /// A key is retired only once its generation is known to have moved on: a lookup that
    /// fails says nothing, and retiring a live process's entries would name them too early.
    fn is_current(&mut self, tgid: u32, generation: u32) -> bool {
        let maps = self.maps;
        let now = *self
            .cache
            .entry(tgid)
            .or_insert_with(|| maps.generation(tgid));
        now.is_none_or(|now| now == generation)
    }
}

/// A kernel map key: whose it is, and its family's own label values.
trait KernelKey: Copy {
    const FAMILY: &'static str;
    fn incarnation(&self) -> Incarnation;
    fn values(&self) -> Vec<String>;
}

impl KernelKey for SyscallKey {
    const FAMILY: &'static str = family::SYSCALL_DURATION.name;
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn values(&self) -> Vec<String> {
        vec![names::syscall(self.nr)]
    }
}

impl KernelKey for SyscallErrorKey {
    const FAMILY: &'static str = family::SYSCALL_ERRORS.name;
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn values(&self) -> Vec<String> {
        vec![names::syscall(self.nr), names::errno(self.errno)]
    }
}

impl KernelKey for Owner {
    const FAMILY: &'static str = family::NETWORK_BYTES.name;
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn values(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Who `incarnation` is, as every workload family labels it (before projection); `None`
/// when the selection rules exclude it.
fn workload(
    names: &mut ProcessNames,
    resolver: &Resolver,
    incarnation: Incarnation,
    current: bool,
    now: Instant,
) -> Option<Workload> {
    let comm = names.resolve(incarnation, current, now, read_proc_comm);
    if current {
        names.learn_facts(incarnation, || Facts::read(incarnation.tgid));
    }
    let none = Facts::default();
    let facts = names.facts(incarnation).unwrap_or(&none);
    let (identity, admitted) = match names.identity(incarnation) {
        Some(settled) => settled.clone(),
        None => {
            let (identity, last) = resolver.identity(facts, &comm);
            let admitted = resolver.admits(facts, &comm, &identity);
            if last {
                names.settle_identity(incarnation, identity.clone(), admitted);
            }
            (identity, admitted)
        }
    };
    if !admitted {
        return None;
    }
    Some(Workload {
        comm,
        pid: Some(incarnation.tgid),
        container: identity.container,
        pod: identity.pod,
        namespace: identity.namespace,
        service: identity.service,
    })
}

/// Splits kernel rows into live series values and finished keys (retired into `table`).
struct Sorter<'a> {
    generations: Generations<'a>,
    names: &'a mut ProcessNames,
    resolver: &'a Resolver,
    /// Live incarnations the selection rules exclude: the probes are told to skip them.
    excluded: Vec<Incarnation>,
    /// Finished incarnations no event has named yet, since when.
    unnamed: &'a mut HashMap<Incarnation, Instant>,
    recorder: Recorder<'a>,
}

/// How long a finished, unnamed incarnation's entries wait for its exec/exit event before it
/// is named from `/proc` (by then possibly another process) or `[unknown]`. Events can lag:
/// the ring buffer's consumer stops at a record another CPU has reserved but not submitted.
const UNNAMED_GRACE: Duration = Duration::from_secs(10);

impl Sorter<'_> {
    fn sort<K: KernelKey, V: Observations>(
        &mut self,
        rows: Vec<(K, V)>,
        table: &mut SeriesTable<WorkloadLabels, V>,
    ) -> (HashMap<WorkloadLabels, V>, Vec<K>) {
        let now = self.recorder.now;
        let mut live: HashMap<WorkloadLabels, V> = HashMap::new();
        let mut finished = Vec::new();
        for (key, value) in rows {
            let incarnation = key.incarnation();
            let current = self
                .generations
                .is_current(incarnation.tgid, incarnation.generation);
            if !current && !self.names.is_known(incarnation) {
                let since = *self.unnamed.entry(incarnation).or_insert(now);
                if now.duration_since(since) < UNNAMED_GRACE {
                    // Never exported yet: waiting delays its counts, it cannot lower them.
                    continue;
                }
            }
            let Some(who) = workload(self.names, self.resolver, incarnation, current, now) else {
                // Not counted, and freed like a finished key.
                if current {
                    self.excluded.push(incarnation);
                }
                finished.push(key);
                continue;
            };
            // A live label set not in the table yet is admitted (or sent to the overflow
            // series) here, before `publish` creates it.
            let labels = self.recorder.labels(K::FAMILY, table, &who, key.values());
            if current {
                live.entry(labels).or_default().add(&value);
            } else {
                table.retire(labels, &value, now);
                self.names.finish(incarnation, now);
                finished.push(key);
            }
        }
        (live, finished)
    }
}

/// Applies events in arrival order once their process is named. An event of a process that
/// has already moved on (exec'd or exited) and that no exec/exit event has named yet waits,
/// up to `UNNAMED_GRACE`: the rings are read independently, and `/proc` would name the wrong
/// program or none. Order is kept per process: once one event waits, its later ones do too.
fn name_events<E: OwnedEvent>(
    pending: &mut Vec<(E, Instant)>,
    maps: &KernelMaps,
    names: &mut ProcessNames,
    resolver: &Resolver,
    now: Instant,
    mut apply: impl FnMut(&E, &Workload),
) {
    if pending.is_empty() {
        return;
    }
    let mut generations = Generations {
        maps,
        cache: HashMap::new(),
    };
    let mut held: std::collections::HashSet<Incarnation> = std::collections::HashSet::new();
    let mut waiting = Vec::new();
    for (event, since) in std::mem::take(pending) {
        let incarnation = event.incarnation();
        let current = generations.is_current(incarnation.tgid, incarnation.generation);
        let unnamed = !current && !names.is_known(incarnation);
        if held.contains(&incarnation) || (unnamed && now.duration_since(since) < UNNAMED_GRACE) {
            held.insert(incarnation);
            waiting.push((event, since));
            continue;
        }
        if let Some(who) = workload(names, resolver, incarnation, current, now) {
            apply(&event, &who);
        }
    }
    *pending = waiting;
}

impl Monitor {
    /// `sweep_interval`: how often `refresh` runs at the least; a finished process's name is
    /// kept a few sweeps (its kernel entries are retired at the first one), not for the series
    /// TTL, so that process churn cannot grow the name table.
    pub fn new(
        maps: KernelMaps,
        events: ProcessEvents,
        tcp_events: TcpEvents,
        payload_events: PayloadEvents,
        settings: &MonitorSettings,
        policy: LabelPolicy,
        resolver: Resolver,
    ) -> Self {
        let MonitorSettings {
            ttl,
            sweep_interval,
            peers_per_comm,
            routes_per_comm,
            series_max,
        } = *settings;
        Self {
            maps,
            events,
            tcp_events,
            payload_events,
            pending_tcp: Vec::new(),
            pending_exchanges: Vec::new(),
            network: Network::new(peers_per_comm),
            requests: Requests::new(routes_per_comm),
            names: ProcessNames::default(),
            syscalls: SeriesTable::default(),
            errors: SeriesTable::default(),
            policy,
            budget: Budget::new(series_max),
            resolver,
            ttl,
            name_grace: (sweep_interval * 3).max(Duration::from_secs(30)),
            unnamed: HashMap::new(),
            events_paused_until: None,
        }
    }

    fn events_paused(&self, now: Instant) -> bool {
        self.events_paused_until.is_some_and(|until| now < until)
    }

    /// `--testing.pause-event-reader`: leave the ring buffer alone until `until`.
    pub fn pause_events_until(&mut self, until: Instant) {
        self.events_paused_until = Some(until);
    }

    /// Applies pending exec/exit events; called whenever the ring buffer is readable.
    pub fn drain_events(&mut self, now: Instant) {
        if self.events_paused(now) {
            return;
        }
        let names = &mut self.names;
        self.events.drain(|event| {
            names.apply(&event, now);
            // Read while the process runs: by the sweep it may be gone.
            if event.kind != ProcessEventKind::Exit {
                let incarnation = Incarnation {
                    tgid: event.tgid,
                    generation: event.generation,
                };
                names.learn_facts(incarnation, || Facts::read(event.tgid));
            }
        });
    }

    /// Applies the TCP events read so far (see `name_events`).
    pub fn drain_tcp_events(&mut self, now: Instant) {
        if self.events_paused(now) {
            return;
        }
        let pending = &mut self.pending_tcp;
        self.tcp_events.drain(|event| pending.push((event, now)));
        let network = &mut self.network;
        let mut recorder = Recorder {
            policy: &self.policy,
            budget: &mut self.budget,
            now,
        };
        name_events(
            &mut self.pending_tcp,
            &self.maps,
            &mut self.names,
            &self.resolver,
            now,
            |event, who| network.apply(event, who, &mut recorder),
        );
    }

    /// Parses the captured socket reads/writes read so far, and records the requests they
    /// complete (see `name_events`).
    pub fn drain_payload_events(&mut self, now: Instant) {
        if self.events_paused(now) {
            return;
        }
        let requests = &mut self.requests;
        let mut completed = Vec::new();
        self.payload_events
            .drain(|event| requests.feed(&event, now, &mut completed));
        self.pending_exchanges
            .extend(completed.into_iter().map(|exchange| (exchange, now)));
        let mut recorder = Recorder {
            policy: &self.policy,
            budget: &mut self.budget,
            now,
        };
        name_events(
            &mut self.pending_exchanges,
            &self.maps,
            &mut self.names,
            &self.resolver,
            now,
            |exchange, who| requests.record(exchange, who, &mut recorder),
        );
    }

    /// Names every kernel entry, folds and frees those of finished generations, and returns
    /// the exported series.
    pub fn refresh(&mut self, now: Instant) -> Snapshot {
        // Expiries at the last publish freed budget.
        let in_use: usize = self
            .series_counts()
            .iter()
            .map(|count| count.in_use as usize)
            .sum();
        self.budget.recount(in_use);
        // Events first: an exit must name its process before its entries are retired.
        self.drain_events(now);
        self.drain_tcp_events(now);
        self.drain_payload_events(now);
        let stat_rows = self.maps.syscall_rows();
        let error_rows = self.maps.error_rows();
        let byte_rows = self.maps.net_bytes_rows();
        let (stat_rows_len, error_rows_len) = (stat_rows.len(), error_rows.len());
        let byte_rows_len = byte_rows.len();
        let mut sorter = Sorter {
            generations: Generations {
                maps: &self.maps,
                cache: HashMap::new(),
            },
            names: &mut self.names,
            resolver: &self.resolver,
            excluded: Vec::new(),
            unnamed: &mut self.unnamed,
            recorder: Recorder {
                policy: &self.policy,
                budget: &mut self.budget,
                now,
            },
        };
        let (live_stats, finished_stats) = sorter.sort(stat_rows, &mut self.syscalls);
        let (live_errors, finished_errors) = sorter.sort(error_rows, &mut self.errors);
        let (live_bytes, finished_bytes) = sorter.sort(byte_rows, self.network.bytes());
        let mut excluded = sorter.excluded;
        excluded.sort_unstable_by_key(|incarnation| (incarnation.tgid, incarnation.generation));
        excluded.dedup();
        for incarnation in excluded {
            self.maps.exclude(incarnation.tgid, incarnation.generation);
        }
        for key in &finished_stats {
            self.maps.remove_syscall(key);
        }
        for key in &finished_errors {
            self.maps.remove_error(key);
        }
        for key in &finished_bytes {
            self.maps.remove_net_bytes(key);
        }
        self.names.prune(now, self.name_grace);
        let names = &self.names;
        self.unnamed.retain(|incarnation, since| {
            !names.is_known(*incarnation) && now.duration_since(*since) < UNNAMED_GRACE * 2
        });
        let map_fill = self.maps.fill(&[
            (map::SYSCALL_STATS, stat_rows_len - finished_stats.len()),
            (map::SYSCALL_ERRORS, error_rows_len - finished_errors.len()),
            (map::NET_BYTES, byte_rows_len - finished_bytes.len()),
        ]);
        let network = self.network.publish(live_bytes, now, self.ttl);
        let requests = self.requests.publish(now, self.ttl);
        let syscalls = self.syscalls.publish(live_stats, now, self.ttl);
        let errors = self.errors.publish(live_errors, now, self.ttl);

        Snapshot {
            series: self.series_counts(),
            series_max: self.budget.max(),
            syscalls,
            errors,
            kernel_counters: Counter::ALL
                .iter()
                .map(|&c| (c, self.maps.counter(c)))
                .collect(),
            map_fill,
            rings: vec![
                RingRead {
                    map: map::PROCESS_EVENTS,
                    read: self.events.read(),
                    malformed: self.events.malformed(),
                },
                RingRead {
                    map: map::TCP_EVENTS,
                    read: self.tcp_events.read(),
                    malformed: self.tcp_events.malformed(),
                },
                RingRead {
                    map: map::PAYLOAD_EVENTS,
                    read: self.payload_events.read(),
                    malformed: self.payload_events.malformed(),
                },
            ],
            network,
            requests,
        }
    }

    /// Every workload family's series count.
    fn series_counts(&self) -> Vec<SeriesCount> {
        let mut counts = vec![
            (
                family::SYSCALL_DURATION.name,
                self.syscalls.len() as u64,
                self.syscalls.expired_total(),
            ),
            (
                family::SYSCALL_ERRORS.name,
                self.errors.len() as u64,
                self.errors.expired_total(),
            ),
        ];
        counts.extend(self.network.series_counts());
        counts.extend(self.requests.series_counts());
        counts
            .into_iter()
            .map(|(family, in_use, expired)| SeriesCount {
                family,
                in_use,
                expired,
                dropped: self.budget.dropped(family),
            })
            .collect()
    }
}
