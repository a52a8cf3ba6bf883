//! The running pipeline's state, behind one lock: kernel maps and ring buffer in, named and
//! aggregated series out. Scrapes and the periodic sweep both go through `refresh`.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use monitor_common::{Counter, Owner, SyscallErrorKey, SyscallKey, SyscallStats, map};

use crate::{
    aggregate::{SeriesTable, WorkloadLabels},
    decode::{PayloadEvent, ProcessEvent, TcpEvent},
    network::{Network, NetworkSnapshot},
    probes::{
        event_ring::EventRing,
        kernel_maps::{KernelMaps, MapFill},
    },
    process_names::{Incarnation, ProcessNames, read_proc_comm},
    requests::{Requests, RequestsSnapshot},
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

impl OwnedEvent for PayloadEvent {
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
}

/// A ring buffer's reader side, for the loss-accounting self-metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRead {
    pub map: &'static str,
    pub read: u64,
    pub malformed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyscallLabels {
    pub comm: String,
    pub pid: Option<u32>,
    pub nr: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorLabels {
    pub comm: String,
    pub pid: Option<u32>,
    pub nr: u32,
    pub errno: u32,
}

/// Everything one scrape exports, read under the lock and rendered outside it.
#[derive(Debug)]
pub struct Snapshot {
    pub syscalls: Vec<(SyscallLabels, SyscallStats)>,
    pub errors: Vec<(ErrorLabels, u64)>,
    pub kernel_counters: Vec<(Counter, u64)>,
    pub map_fill: Vec<MapFill>,
    pub rings: Vec<RingRead>,
    pub network: NetworkSnapshot,
    pub requests: RequestsSnapshot,
    /// (family, series in use, series expired so far).
    pub series: Vec<(&'static str, u64, u64)>,
}

#[derive(Clone, Copy, Debug)]
pub struct MonitorSettings {
    pub pid_label: bool,
    /// Idle time after which a finished process's series are dropped.
    pub ttl: Duration,
    /// How often `refresh` runs at the least.
    pub sweep_interval: Duration,
    /// Distinct `peer` values per comm before the rest share `network::OVERFLOW_PEER`.
    pub peers_per_comm: usize,
    /// Distinct HTTP routes per comm before the rest share one overflow value.
    pub routes_per_comm: usize,
}

pub struct Monitor {
    maps: KernelMaps,
    events: ProcessEvents,
    tcp_events: TcpEvents,
    payload_events: PayloadEvents,
    /// Events whose process no event has named yet, with when they arrived.
    pending_tcp: Vec<(TcpEvent, Instant)>,
    pending_payloads: Vec<(PayloadEvent, Instant)>,
    network: Network,
    requests: Requests,
    names: ProcessNames,
    syscalls: SeriesTable<SyscallLabels, SyscallStats>,
    errors: SeriesTable<ErrorLabels, u64>,
    pid_label: bool,
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

/// A kernel map key: whose it is, and the label set it adds to.
trait KernelKey: Copy {
    type Labels: Clone + Eq + std::hash::Hash;
    fn incarnation(&self) -> Incarnation;
    fn labels(&self, comm: String, pid: Option<u32>) -> Self::Labels;
}

impl KernelKey for SyscallKey {
    type Labels = SyscallLabels;
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn labels(&self, comm: String, pid: Option<u32>) -> SyscallLabels {
        SyscallLabels {
            comm,
            pid,
            nr: self.nr,
        }
    }
}

impl KernelKey for Owner {
    type Labels = WorkloadLabels;
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn labels(&self, comm: String, pid: Option<u32>) -> WorkloadLabels {
        WorkloadLabels {
            comm,
            pid,
            values: Vec::new(),
        }
    }
}

impl KernelKey for SyscallErrorKey {
    type Labels = ErrorLabels;
    fn incarnation(&self) -> Incarnation {
        Incarnation {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn labels(&self, comm: String, pid: Option<u32>) -> ErrorLabels {
        ErrorLabels {
            comm,
            pid,
            nr: self.nr,
            errno: self.errno,
        }
    }
}

/// Splits kernel rows into live series values and finished keys (retired into `table`).
struct Sorter<'a> {
    generations: Generations<'a>,
    names: &'a mut ProcessNames,
    /// Finished incarnations no event has named yet, since when.
    unnamed: &'a mut HashMap<Incarnation, Instant>,
    pid_label: bool,
    now: Instant,
}

/// How long a finished, unnamed incarnation's entries wait for its exec/exit event before it
/// is named from `/proc` (by then possibly another process) or `[unknown]`. Events can lag:
/// the ring buffer's consumer stops at a record another CPU has reserved but not submitted.
const UNNAMED_GRACE: Duration = Duration::from_secs(10);

impl Sorter<'_> {
    fn sort<K: KernelKey, V: crate::aggregate::Observations>(
        &mut self,
        rows: Vec<(K, V)>,
        mut retire: impl FnMut(K::Labels, &V, Instant),
    ) -> (HashMap<K::Labels, V>, Vec<K>) {
        let mut live: HashMap<K::Labels, V> = HashMap::new();
        let mut finished = Vec::new();
        for (key, value) in rows {
            let incarnation = key.incarnation();
            let current = self
                .generations
                .is_current(incarnation.tgid, incarnation.generation);
            if !current && !self.names.is_known(incarnation) {
                let since = *self.unnamed.entry(incarnation).or_insert(self.now);
                if self.now.duration_since(since) < UNNAMED_GRACE {
                    // Never exported yet: waiting delays its counts, it cannot lower them.
                    continue;
                }
            }
            let comm = self
                .names
                .resolve(incarnation, current, self.now, read_proc_comm);
            let labels = key.labels(comm, self.pid_label.then_some(incarnation.tgid));
            if current {
                live.entry(labels).or_default().add(&value);
            } else {
                retire(labels, &value, self.now);
                self.names.finish(incarnation, self.now);
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
    pid_label: bool,
    now: Instant,
    mut apply: impl FnMut(&E, &str, Option<u32>),
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
        let comm = names.resolve(incarnation, current, now, read_proc_comm);
        apply(&event, &comm, pid_label.then_some(incarnation.tgid));
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
    ) -> Self {
        let MonitorSettings {
            pid_label,
            ttl,
            sweep_interval,
            peers_per_comm,
            routes_per_comm,
        } = *settings;
        Self {
            maps,
            events,
            tcp_events,
            payload_events,
            pending_tcp: Vec::new(),
            pending_payloads: Vec::new(),
            network: Network::new(peers_per_comm),
            requests: Requests::new(routes_per_comm),
            names: ProcessNames::default(),
            syscalls: SeriesTable::default(),
            errors: SeriesTable::default(),
            pid_label,
            ttl,
            name_grace: (sweep_interval * 3).max(Duration::from_secs(30)),
            unnamed: HashMap::new(),
            events_paused_until: None,
        }
    }

    /// `--testing.pause-event-reader`: leave the ring buffer alone until `until`.
    pub fn pause_events_until(&mut self, until: Instant) {
        self.events_paused_until = Some(until);
    }

    /// Applies pending exec/exit events; called whenever the ring buffer is readable.
    pub fn drain_events(&mut self, now: Instant) {
        if self.events_paused_until.is_some_and(|until| now < until) {
            return;
        }
        let names = &mut self.names;
        self.events.drain(|event| names.apply(&event, now));
    }

    /// Applies the TCP events read so far (see `name_events`).
    pub fn drain_tcp_events(&mut self, now: Instant) {
        if self.events_paused_until.is_some_and(|until| now < until) {
            return;
        }
        let pending = &mut self.pending_tcp;
        self.tcp_events.drain(|event| pending.push((event, now)));
        let network = &mut self.network;
        name_events(
            &mut self.pending_tcp,
            &self.maps,
            &mut self.names,
            self.pid_label,
            now,
            |event, comm, pid| network.apply(event, comm, pid, now),
        );
    }

    /// Applies the captured socket reads/writes read so far (see `name_events`).
    pub fn drain_payload_events(&mut self, now: Instant) {
        if self.events_paused_until.is_some_and(|until| now < until) {
            return;
        }
        let pending = &mut self.pending_payloads;
        self.payload_events
            .drain(|event| pending.push((event, now)));
        let requests = &mut self.requests;
        name_events(
            &mut self.pending_payloads,
            &self.maps,
            &mut self.names,
            self.pid_label,
            now,
            |event, comm, pid| requests.apply(event, comm, pid, now),
        );
    }

    /// Names every kernel entry, folds and frees those of finished generations, and returns
    /// the exported series.
    pub fn refresh(&mut self, now: Instant) -> Snapshot {
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
            unnamed: &mut self.unnamed,
            pid_label: self.pid_label,
            now,
        };
        let syscalls = &mut self.syscalls;
        let (live_stats, finished_stats) = sorter.sort(stat_rows, |labels, value, now| {
            syscalls.retire(labels, value, now)
        });
        let errors = &mut self.errors;
        let (live_errors, finished_errors) = sorter.sort(error_rows, |labels, value, now| {
            errors.retire(labels, value, now)
        });
        let network = &mut self.network;
        let (live_bytes, finished_bytes) = sorter.sort(byte_rows, |labels, value, now| {
            network.retire_bytes(labels, value, now)
        });
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
        let mut series = vec![
            (
                crate::metrics::family::SYSCALL_DURATION.name,
                self.syscalls.len() as u64,
                self.syscalls.expired_total(),
            ),
            (
                crate::metrics::family::SYSCALL_ERRORS.name,
                self.errors.len() as u64,
                self.errors.expired_total(),
            ),
        ];
        series.extend(self.network.series_counts());
        let requests = self.requests.publish(now, self.ttl);
        series.extend(self.requests.series_counts());

        Snapshot {
            syscalls: self.syscalls.publish(live_stats, now, self.ttl),
            errors: self.errors.publish(live_errors, now, self.ttl),
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
            series,
        }
    }
}
