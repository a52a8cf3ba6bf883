//! The running pipeline: the process-event ring and every signal in, one `Snapshot` of
//! exporter-neutral series out. It owns all of its state (no lock): it runs on its own thread
//! (`thread`), and scrapes ask it for a snapshot through a channel.
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use log::{info, warn};
use monitor_common::{Counter, Owner, map};

use crate::{
    identity::resolver::{Facts, Resolver},
    probes::{
        Loaded, ProbeState, decode,
        event_ring::{EventRing, RingSpec},
        kernel_maps::ProcessMaps,
    },
    process::{
        folding::FoldRule,
        names::ProcessNames,
        naming::{Naming, RunningList, UNNAMED_GRACE},
    },
    series::{
        labels::LabelPolicy,
        publish::Published,
        table::{Budget, Recorder},
    },
    signals::{self, Context, Signal},
};

pub mod health;
pub mod thread;

pub use health::{BuildInfo, Health, SeriesCount};

/// Everything one scrape exports, exporter-neutral.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub published: Vec<Published>,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// Idle time after which a finished process's series are dropped.
    pub ttl: Duration,
    /// How often `refresh` runs at the least.
    pub sweep_interval: Duration,
    /// Workload series over all families before new label sets go to the overflow series.
    pub series_max: usize,
    /// Which short-lived processes share `[short-lived]`'s series.
    pub fold: FoldRule,
    pub signals: signals::Settings,
}

/// Exits after which the next sweep comes early: each finished process leaves its keys in
/// the kernel maps until a sweep frees them, so under process churn (cron bursts, CI steps,
/// `stress-ng --exec`) the maps would fill between regular sweeps.
const EARLY_SWEEP_EXITS: u64 = 128;
/// The least time between two sweeps, early or not (also `--kernel.sweep-interval`'s floor).
const MIN_SWEEP_GAP: Duration = Duration::from_millis(100);

/// The flag that sizes `map`, where there is one.
fn size_flag(map: &str) -> Option<&'static str> {
    Some(match map {
        map::SYSCALL_STATS => "--kernel.syscall-stats-entries",
        map::SYSCALL_ERRORS => "--kernel.syscall-errors-entries",
        map::TCP_CONNS => "--kernel.tcp-conns-entries",
        map::NET_BYTES => "--kernel.net-bytes-entries",
        _ => return None,
    })
}

/// How often a full map is reported in the log at most.
const FULL_MAP_WARNING_EVERY: Duration = Duration::from_secs(60);

const PROCESS_RING: RingSpec = RingSpec {
    map: map::PROCESS_EVENTS,
    label: "process_events",
    produced: Counter::ProcessEventsProduced,
    dropped: Counter::ProcessEventsDropped,
};

pub struct Pipeline {
    maps: ProcessMaps,
    events: EventRing<decode::ProcessRecord>,
    signals: Vec<Box<dyn Signal>>,
    names: ProcessNames,
    resolver: Resolver,
    policy: LabelPolicy,
    budget: Budget,
    ttl: Duration,
    name_grace: Duration,
    unnamed: HashMap<Owner, Instant>,
    /// The running processes, listed once per sweep for the rooms that scan them all.
    running: RunningList,
    events_paused_until: Option<Instant>,
    /// Process exits read since the last sweep, and when that was (`sweep_due`).
    exits_since_sweep: u64,
    last_sweep: Option<Instant>,
    /// Per map: refused inserts at the last warning, and when it was (`warn_full_maps`).
    full_maps_warned: HashMap<&'static str, (u64, Instant)>,
    probes: Vec<ProbeState>,
    build: BuildInfo,
    /// Where exec'd processes are announced to the TLS library scans.
    tls_notices: std::sync::mpsc::SyncSender<crate::probes::tls::Notice>,
}

impl Pipeline {
    /// Takes the maps and rings of the process room and of every signal out of `loaded`.
    ///
    /// `sweep_interval`: how often `refresh` runs at the least; a finished process's name is
    /// kept a few sweeps (its kernel entries are retired at the first one), not for the series
    /// TTL, so that process churn cannot grow the name table.
    pub fn take(
        loaded: &mut Loaded,
        settings: &Settings,
        policy: LabelPolicy,
        resolver: Resolver,
    ) -> anyhow::Result<Self> {
        let mut maps = ProcessMaps::take(loaded)?;
        let tracks_connections = loaded.probes.iter().any(|state| {
            state.probe.program == monitor_common::program::TCP_STATE && state.attached()
        });
        if tracks_connections {
            // After attaching, so a listen() racing the scan is recorded by the probe anyway.
            let seeded = maps.seed_listeners();
            info!("{seeded} TCP listeners that predate the agent recorded");
        }
        Ok(Self {
            events: EventRing::take(loaded, PROCESS_RING, decode::process_event)?,
            signals: signals::all(loaded, &settings.signals)?,
            maps,
            names: ProcessNames::new(settings.fold),
            tls_notices: loaded.tls.notices.clone(),
            resolver,
            policy,
            budget: Budget::new(settings.series_max),
            ttl: settings.ttl,
            name_grace: (settings.sweep_interval * 3).max(Duration::from_secs(30)),
            unnamed: HashMap::new(),
            running: None,
            events_paused_until: None,
            exits_since_sweep: 0,
            last_sweep: None,
            full_maps_warned: HashMap::new(),
            probes: loaded.probes.clone(),
            build: BuildInfo::current(),
        })
    }

    fn events_paused(&self, now: Instant) -> bool {
        self.events_paused_until.is_some_and(|until| now < until)
    }

    /// `--testing.pause-event-reader`: leave the ring buffers alone until `until`.
    pub fn pause_events_until(&mut self, until: Instant) {
        self.events_paused_until = Some(until);
    }

    /// Ring buffers to wait on: (the signal's index, its fds).
    pub fn signal_ring_fds(&self) -> anyhow::Result<Vec<(usize, std::os::fd::OwnedFd)>> {
        let mut fds = Vec::new();
        for (index, signal) in self.signals.iter().enumerate() {
            fds.extend(signal.ring_fds()?.into_iter().map(|fd| (index, fd)));
        }
        Ok(fds)
    }

    pub fn process_ring_fd(&self) -> anyhow::Result<std::os::fd::OwnedFd> {
        self.events.fd()
    }

    /// Applies pending exec/exit events; called whenever their ring buffer is readable.
    pub fn drain_process_events(&mut self, now: Instant) {
        if self.events_paused(now) {
            return;
        }
        let names = &mut self.names;
        let exits = &mut self.exits_since_sweep;
        let tls_notices = &self.tls_notices;
        self.events.drain(|event| {
            match event.kind {
                decode::ProcessEventKind::Exit => *exits += 1,
                decode::ProcessEventKind::Exec => {
                    crate::probes::tls::announce_exec(tls_notices, event.owner.tgid);
                }
                decode::ProcessEventKind::Seen => {}
            }
            names.apply(&event, now);
            // Read while the process runs: by the sweep it may be gone.
            if event.kind != decode::ProcessEventKind::Exit {
                names.learn_facts(event.owner, || Facts::read(event.owner.tgid));
            }
        });
    }

    /// Whether enough processes ended since the last sweep that their kernel entries should
    /// be freed now rather than at the next regular sweep.
    pub fn sweep_due(&self, now: Instant) -> bool {
        self.exits_since_sweep >= EARLY_SWEEP_EXITS
            && self
                .last_sweep
                .is_none_or(|last| now.duration_since(last) >= MIN_SWEEP_GAP)
    }

    /// Lets one signal read its rings (see `Signal::drain`).
    pub fn drain_signal(&mut self, index: usize, now: Instant) {
        if self.events_paused(now) {
            return;
        }
        let (mut ctx, signal) = self.lend(index, now);
        signal.drain(&mut ctx);
        let excluded = std::mem::take(&mut ctx.naming.excluded);
        drop(ctx);
        self.exclude(excluded);
    }

    /// A signal and the context it works in, borrowed from disjoint fields.
    fn lend(&mut self, index: usize, now: Instant) -> (Context<'_>, &mut Box<dyn Signal>) {
        let ctx = Context {
            now,
            ttl: self.ttl,
            naming: Naming::new(
                &self.maps,
                &mut self.names,
                &self.resolver,
                &mut self.unnamed,
                &mut self.running,
            ),
            recorder: Recorder {
                policy: &self.policy,
                budget: &mut self.budget,
                now,
            },
            kernel: &self.maps,
            map_entries: Vec::new(),
        };
        (ctx, &mut self.signals[index])
    }

    fn exclude(&mut self, mut excluded: Vec<Owner>) {
        excluded.sort_unstable_by_key(|owner| (owner.tgid, owner.generation));
        excluded.dedup();
        for owner in excluded {
            self.maps.exclude(owner);
        }
    }

    /// Names every kernel entry, folds and frees those of finished generations, and returns
    /// the exported series.
    pub fn refresh(&mut self, now: Instant) -> Snapshot {
        self.last_sweep = Some(now);
        // Expiries at the last publish freed budget.
        let in_use: u64 = self.series_counts().iter().map(|count| count.in_use).sum();
        self.budget.recount(in_use as usize);
        // Events first: an exit must name its process before its entries are retired.
        self.drain_process_events(now);
        self.exits_since_sweep = 0;
        for index in 0..self.signals.len() {
            self.drain_signal(index, now);
        }
        let mut published = Vec::new();
        let mut map_entries = Vec::new();
        for index in 0..self.signals.len() {
            let (mut ctx, signal) = self.lend(index, now);
            published.extend(signal.publish(&mut ctx));
            map_entries.append(&mut ctx.map_entries);
            let excluded = std::mem::take(&mut ctx.naming.excluded);
            drop(ctx);
            self.exclude(excluded);
        }
        self.names.prune(now, self.name_grace);
        self.names.prune_parents(now, self.ttl);
        let names = &self.names;
        self.unnamed.retain(|owner, since| {
            !names.is_known(*owner) && now.duration_since(*since) < UNNAMED_GRACE * 2
        });
        let health = self.health(&map_entries);
        self.warn_full_maps(&health.insert_failures, now);
        published.extend(health::published(&health, &self.probes, &self.build));
        Snapshot { published }
    }

    fn health(&self, map_entries: &[(&'static str, usize)]) -> Health {
        let counter = |c| self.maps.counter(c);
        let mut rings = vec![self.events.status()];
        let mut insert_failures = Vec::new();
        for signal in &self.signals {
            rings.extend(signal.rings());
            insert_failures.extend(
                signal
                    .map_insert_failures()
                    .iter()
                    .map(|&(map, which)| (map, counter(which))),
            );
        }
        Health {
            rings: rings
                .into_iter()
                .map(|ring| health::RingHealth {
                    label: ring.spec.label,
                    produced: counter(ring.spec.produced),
                    lost: counter(ring.spec.dropped),
                    read: ring.read,
                    malformed: ring.malformed,
                })
                .collect(),
            map_fill: self.maps.fill(map_entries),
            insert_failures,
            series: self.series_counts(),
            series_max: self.budget.max(),
            proc_access_denied: crate::proc_access::counts()
                .into_iter()
                .map(|(what, count)| (what.label(), count))
                .collect(),
        }
    }

    /// One warning per map and minute while a map refuses keys: the probes only count them
    /// (a line per refusal would flood the log when the host is busiest).
    fn warn_full_maps(&mut self, failures: &[(&'static str, u64)], now: Instant) {
        for &(map, refused) in failures {
            let (warned_at_count, warned_at) = match self.full_maps_warned.get(map) {
                Some(&(count, at)) => (count, Some(at)),
                None => (0, None),
            };
            if refused > warned_at_count
                && warned_at.is_none_or(|at| now.duration_since(at) >= FULL_MAP_WARNING_EVERY)
            {
                let remedy = match size_flag(map) {
                    Some(flag) => format!("raise {flag}"),
                    None => "its size is fixed in this version (no flag)".to_owned(),
                };
                warn!(
                    "kernel map {map} is full: {} new keys refused (their events uncounted, \
                     see monitor_kernel_map_insert_failures_total); {remedy}",
                    refused - warned_at_count
                );
                self.full_maps_warned.insert(map, (refused, now));
            }
        }
    }

    /// Every workload family's series count.
    fn series_counts(&self) -> Vec<SeriesCount> {
        self.signals
            .iter()
            .flat_map(|signal| signal.series_counts())
            .map(|(family, in_use, expired)| SeriesCount {
                family,
                in_use,
                expired,
                dropped: self.budget.dropped(family),
            })
            .collect()
    }
}
