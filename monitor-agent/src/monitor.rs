//! The running pipeline's state, behind one lock: kernel maps and ring buffer in, named and
//! aggregated series out. Scrapes and the periodic sweep both go through `refresh`.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use monitor_common::{Counter, SyscallErrorKey, SyscallKey, SyscallStats};

use crate::{
    aggregate::SeriesTable,
    probes::{
        kernel_maps::{KernelMaps, MapFill},
        process_events::ProcessEvents,
    },
    process_names::{Incarnation, ProcessNames, read_proc_comm},
};

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
    pub events_read: u64,
    pub events_malformed: u64,
    /// (family, series in use, series expired so far).
    pub series: Vec<(&'static str, u64, u64)>,
}

pub struct Monitor {
    maps: KernelMaps,
    events: ProcessEvents,
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
        table: &mut SeriesTable<K::Labels, V>,
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
                table.retire(labels, &value, self.now);
                self.names.finish(incarnation, self.now);
                finished.push(key);
            }
        }
        (live, finished)
    }
}

impl Monitor {
    /// `sweep_interval`: how often `refresh` runs at the least; a finished process's name is
    /// kept a few sweeps (its kernel entries are retired at the first one), not for the series
    /// TTL, so that process churn cannot grow the name table.
    pub fn new(
        maps: KernelMaps,
        events: ProcessEvents,
        pid_label: bool,
        ttl: Duration,
        sweep_interval: Duration,
    ) -> Self {
        Self {
            maps,
            events,
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

    /// Names every kernel entry, folds and frees those of finished generations, and returns
    /// the exported series.
    pub fn refresh(&mut self, now: Instant) -> Snapshot {
        // Events first: an exit must name its process before its entries are retired.
        self.drain_events(now);
        let stat_rows = self.maps.syscall_rows();
        let error_rows = self.maps.error_rows();
        let (stat_rows_len, error_rows_len) = (stat_rows.len(), error_rows.len());
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
        let (live_stats, finished_stats) = sorter.sort(stat_rows, &mut self.syscalls);
        let (live_errors, finished_errors) = sorter.sort(error_rows, &mut self.errors);
        for key in &finished_stats {
            self.maps.remove_syscall(key);
        }
        for key in &finished_errors {
            self.maps.remove_error(key);
        }
        self.names.prune(now, self.name_grace);
        let names = &self.names;
        self.unnamed.retain(|incarnation, since| {
            !names.is_known(*incarnation) && now.duration_since(*since) < UNNAMED_GRACE * 2
        });
        let map_fill = self.maps.fill(
            stat_rows_len - finished_stats.len(),
            error_rows_len - finished_errors.len(),
        );

        Snapshot {
            syscalls: self.syscalls.publish(live_stats, now, self.ttl),
            errors: self.errors.publish(live_errors, now, self.ttl),
            kernel_counters: Counter::ALL
                .iter()
                .map(|&c| (c, self.maps.counter(c)))
                .collect(),
            map_fill,
            events_read: self.events.read(),
            events_malformed: self.events.malformed(),
            series: vec![
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
            ],
        }
    }
}
