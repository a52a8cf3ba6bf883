//! Naming what the kernel reports: a kernel map key or a ring-buffer event carries only a
//! process generation (`Owner`); this turns it into the `Workload` its series are labelled
//! with, or says it must wait, or that the selection rules exclude it.
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use monitor_common::Owner;

use super::{
    folding::{Fold, SHORT_LIVED_COMM},
    names::{ProcessNames, read_proc_comm},
};
use crate::{
    identity::resolver::{Facts, Resolver},
    probes::kernel_maps::ProcessMaps,
    series::{
        labels::Workload,
        table::{Observations, Recorder, SeriesTable, WorkloadLabels},
    },
};

/// How long a finished, unnamed incarnation's entries wait for its exec/exit event before it
/// is named from `/proc` (by then possibly another process) or `[unknown]`. Events can lag:
/// the ring buffer's consumer stops at a record another CPU has reserved but not submitted.
pub const UNNAMED_GRACE: Duration = Duration::from_secs(10);

/// Events held at most for processes whose folding is not decided yet (`folding`).
const FOLD_WAIT_MAX: usize = 4096;

/// A kernel map key: whose it is, and its family's own label values.
pub trait KernelKey: Copy {
    fn owner(&self) -> Owner;
    fn values(&self) -> Vec<String>;
}

/// A map keyed by the process incarnation alone (bytes, CPU time, run-queue waits): no label
/// of its own.
impl KernelKey for Owner {
    fn owner(&self) -> Owner {
        *self
    }
    fn values(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A ring-buffer event that belongs to one process incarnation, applied once it is named.
pub trait OwnedEvent {
    fn owner(&self) -> Owner;
}

/// What naming an incarnation gave.
enum Named {
    Is(Workload),
    /// The selection rules exclude it.
    Excluded,
    /// Not yet: it may still be folded (`folding`).
    Later,
}

/// The naming state of one drain or sweep: borrowed from the pipeline for its duration.
pub struct Naming<'a> {
    maps: &'a ProcessMaps,
    names: &'a mut ProcessNames,
    resolver: &'a Resolver,
    /// Finished incarnations no event has named yet, since when.
    unnamed: &'a mut HashMap<Owner, Instant>,
    /// Live incarnations the selection rules exclude: the probes are told to skip them.
    pub excluded: Vec<Owner>,
    /// Which generation holds each PID, read once per drain or sweep.
    generations: HashMap<u32, Option<u32>>,
    /// `running`'s list and the sweep it was made for: the rooms that scan every running
    /// process (`fds`, `throttle`) share one list per sweep.
    running: &'a mut RunningList,
}

/// The running processes as listed at one sweep (`Naming::running`).
pub type RunningList = Option<(Instant, Vec<(Owner, Workload)>)>;

impl<'a> Naming<'a> {
    pub fn new(
        maps: &'a ProcessMaps,
        names: &'a mut ProcessNames,
        resolver: &'a Resolver,
        unnamed: &'a mut HashMap<Owner, Instant>,
        running: &'a mut RunningList,
    ) -> Self {
        Self {
            maps,
            names,
            resolver,
            unnamed,
            excluded: Vec::new(),
            generations: HashMap::new(),
            running,
        }
    }

    /// A key is finished once its generation no longer holds the PID: the process exec'd or
    /// exited, so nothing will add to it again (bar a racing exit, swept next time). It is
    /// retired only once its generation is known to have moved on: a lookup that fails says
    /// nothing, and retiring a live process's entries would name them too early.
    fn is_current(&mut self, owner: Owner) -> bool {
        let maps = self.maps;
        let now = *self
            .generations
            .entry(owner.tgid)
            .or_insert_with(|| maps.generation(owner.tgid));
        now.is_none_or(|now| now == owner.generation)
    }

    /// Who `owner` is, as every workload family labels it (before projection).
    fn workload(&mut self, owner: Owner, current: bool, now: Instant) -> Named {
        let names = &mut *self.names;
        let comm = names.resolve(owner, current, now, read_proc_comm);
        if current {
            names.learn_facts(owner, || Facts::read(owner.tgid));
        }
        let none = Facts::default();
        let facts = names.facts(owner).unwrap_or(&none);
        let (identity, admitted) = match names.identity(owner) {
            Some(settled) => settled.clone(),
            None => {
                let (identity, last) = self.resolver.identity(facts, &comm);
                let admitted = self.resolver.admits(facts, &comm, &identity);
                if last {
                    names.settle_identity(owner, identity.clone(), admitted);
                }
                (identity, admitted)
            }
        };
        if !admitted {
            return Named::Excluded;
        }
        let mut who = Workload {
            comm,
            pid: Some(owner.tgid),
            container: identity.container,
            pod: identity.pod,
            namespace: identity.namespace,
            service: identity.service,
        };
        match names.fold(owner, current) {
            Fold::Own => {}
            Fold::Folded => {
                // A service named after the process (a host process's default) folds with it.
                if who.service == who.comm {
                    who.service = SHORT_LIVED_COMM.to_owned();
                }
                who.comm = SHORT_LIVED_COMM.to_owned();
            }
            Fold::Later => return Named::Later,
        }
        Named::Is(who)
    }

    /// The processes running now (named, their generation still the current one) with their
    /// workload, excluded ones left out: for signals read from `/proc` rather than the kernel.
    pub fn running(&mut self, now: Instant) -> Vec<(Owner, Workload)> {
        if let Some((at, list)) = self.running.as_ref() {
            if *at == now {
                return list.clone();
            }
        }
        let list: Vec<_> = self
            .names
            .running()
            .into_iter()
            .filter_map(|owner| self.if_running(owner, now))
            .collect();
        *self.running = Some((now, list.clone()));
        list
    }

    /// Process `tgid` as `running` would list it, for a signal that needs a few processes
    /// (the owners of listening sockets), not all of them.
    pub fn running_process(&mut self, tgid: u32, now: Instant) -> Option<(Owner, Workload)> {
        let maps = self.maps;
        let generation = (*self
            .generations
            .entry(tgid)
            .or_insert_with(|| maps.generation(tgid)))?;
        let owner = Owner { tgid, generation };
        if !self.names.is_running(owner) {
            return None;
        }
        self.if_running(owner, now)
    }

    /// `owner` with its workload, if it is named, current, not excluded and not waiting for
    /// its folding decision.
    fn if_running(&mut self, owner: Owner, now: Instant) -> Option<(Owner, Workload)> {
        if !self.is_current_known(owner) {
            return None;
        }
        match self.workload(owner, true, now) {
            Named::Is(who) => Some((owner, who)),
            Named::Excluded | Named::Later => None,
        }
    }

    /// Current, and known to be: a failed generation lookup does not count as current here.
    fn is_current_known(&mut self, owner: Owner) -> bool {
        let maps = self.maps;
        let now = *self
            .generations
            .entry(owner.tgid)
            .or_insert_with(|| maps.generation(owner.tgid));
        now == Some(owner.generation)
    }

    /// Splits kernel rows into live series values and finished keys; a finished key's value
    /// is retired into `table` and the key returned, for the caller to free.
    pub fn sort<K: KernelKey, V: Observations>(
        &mut self,
        rows: Vec<(K, V)>,
        family: &'static str,
        table: &mut SeriesTable<WorkloadLabels, V>,
        recorder: &mut Recorder,
    ) -> (HashMap<WorkloadLabels, V>, Vec<K>) {
        let now = recorder.now;
        let mut live: HashMap<WorkloadLabels, V> = HashMap::new();
        let mut finished = Vec::new();
        for (key, value) in rows {
            let owner = key.owner();
            let current = self.is_current(owner);
            if !current && !self.names.is_known(owner) {
                let since = *self.unnamed.entry(owner).or_insert(now);
                if now.duration_since(since) < UNNAMED_GRACE {
                    // Never exported yet: waiting delays its counts, it cannot lower them.
                    continue;
                }
            }
            let who = match self.workload(owner, current, now) {
                Named::Is(who) => who,
                Named::Excluded => {
                    // Not counted, and freed like a finished key.
                    if current {
                        self.excluded.push(owner);
                    }
                    finished.push(key);
                    continue;
                }
                // Stays in the kernel map, unexported, until it can be named.
                Named::Later => continue,
            };
            // A live label set not in the table yet is admitted (or sent to the overflow
            // series) here, before `publish` creates it.
            let labels = recorder.labels(family, table, &who, key.values());
            if current {
                live.entry(labels).or_default().add(&value);
            } else {
                table.retire(labels, &value, now);
                self.names.finish(owner, now);
                finished.push(key);
            }
        }
        (live, finished)
    }

    /// Applies events in arrival order once their process is named. An event of a process
    /// that has already moved on (exec'd or exited) and that no exec/exit event has named yet
    /// waits, up to `UNNAMED_GRACE`: the rings are read independently, and `/proc` would name
    /// the wrong program or none. Order is kept per process: once one event waits, its later
    /// ones do too.
    pub fn name_events<E: OwnedEvent>(
        &mut self,
        pending: &mut Vec<(E, Instant)>,
        now: Instant,
        mut apply: impl FnMut(&E, &Workload),
    ) {
        let mut held: HashSet<Owner> = HashSet::new();
        let mut waiting = Vec::new();
        for (event, since) in std::mem::take(pending) {
            let owner = event.owner();
            let current = self.is_current(owner);
            let unnamed = !current && !self.names.is_known(owner);
            if held.contains(&owner) || (unnamed && now.duration_since(since) < UNNAMED_GRACE) {
                held.insert(owner);
                waiting.push((event, since));
                continue;
            }
            match self.workload(owner, current, now) {
                Named::Is(who) => apply(&event, &who),
                Named::Excluded => {}
                // Events wait for a folding decision only while few do: a busy young process
                // must not grow the queue (and each drain's pass over it) for seconds, so
                // past the limit it keeps its own name, the decision that is always right.
                Named::Later if waiting.len() >= FOLD_WAIT_MAX => {
                    self.names.keep_name(owner);
                    if let Named::Is(who) = self.workload(owner, current, now) {
                        apply(&event, &who);
                    }
                }
                Named::Later => {
                    held.insert(owner);
                    waiting.push((event, since));
                }
            }
        }
        *pending = waiting;
    }
}
