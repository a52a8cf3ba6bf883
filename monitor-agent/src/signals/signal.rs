//! What a signal is to the pipeline: the `Signal` trait, the `Context` it works in, and the
//! helpers every room uses. Rooms import this, never `signals` itself (which registers them).
use std::{
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use monitor_common::Counter;

use crate::{
    probes::{
        event_ring::RingRead,
        kernel_maps::{AggregateMap, MapKey, MapValue, ProcessMaps},
    },
    process::naming::{KernelKey, Naming},
    series::{
        families::Family,
        publish::Published,
        table::{Observations, Recorder, SeriesTable, WorkloadLabels},
    },
};

/// How often the rooms that read `/proc` or cgroup files for every running process (`fds`,
/// `throttle`) do so: a file or directory read per process, not for every early sweep.
pub const PROC_SCAN_EVERY: Duration = Duration::from_secs(5);

/// What the signals are built with, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Distinct `peer` values per comm before the rest share `tcp::OVERFLOW_PEER`.
    pub peers_per_comm: usize,
    /// Distinct HTTP routes per comm before the rest share one overflow value.
    pub routes_per_comm: usize,
}

/// (family name, label sets in use, label sets expired so far).
pub type SeriesCount = (&'static str, u64, u64);

pub trait Signal: Send {
    /// The families it publishes (workload ones count against the series budget).
    fn families(&self) -> &'static [Family];

    /// Ring buffers the pipeline should wait on; when one is readable, or at the batch poll,
    /// `drain` runs.
    fn ring_fds(&self) -> anyhow::Result<Vec<OwnedFd>> {
        Ok(Vec::new())
    }

    /// Reads what its rings hold and records what can be named.
    fn drain(&mut self, _ctx: &mut Context) {}

    /// The sweep: reads its kernel maps, retires finished keys, expires idle series, and
    /// returns its families' current values.
    fn publish(&mut self, ctx: &mut Context) -> Vec<Published>;

    /// Its workload families' series counts, for the budget and `monitor_series`.
    fn series_counts(&self) -> Vec<SeriesCount>;

    /// Its kernel hash maps and the counter of the inserts each refused when full.
    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[]
    }

    /// Its ring buffers' reader counts.
    fn rings(&self) -> Vec<RingRead> {
        Vec::new()
    }
}

/// What a signal works with during one drain or sweep, lent by the pipeline.
pub struct Context<'a> {
    pub now: Instant,
    /// Idle time after which a series with no live kernel part is dropped.
    pub ttl: Duration,
    pub naming: Naming<'a>,
    pub recorder: Recorder<'a>,
    pub kernel: &'a ProcessMaps,
    /// Entries counted in each hash map at this sweep, for `monitor_kernel_map_entries`.
    pub map_entries: Vec<(&'static str, usize)>,
}

impl Context<'_> {
    pub fn counter(&self, counter: Counter) -> u64 {
        self.kernel.counter(counter)
    }
}

/// (family, series, expired) of one table.
pub fn series_count<L: Clone + Eq + std::hash::Hash, V: Observations>(
    family: &Family,
    table: &SeriesTable<L, V>,
) -> SeriesCount {
    (family.name, table.len() as u64, table.expired_total())
}

/// Sweeps one aggregate map: finished keys retired into `table` and freed, its entries
/// counted, and `table`'s values (retired + live) published.
pub fn sweep_map<K, V>(
    map: &mut AggregateMap<K, V>,
    family: &Family,
    table: &mut SeriesTable<WorkloadLabels, V>,
    ctx: &mut Context,
) -> Vec<(WorkloadLabels, V)>
where
    K: KernelKey + MapKey,
    V: MapValue,
{
    let rows = map.rows();
    let total = rows.len();
    let (live, finished) = ctx.naming.sort(rows, family.name, table, &mut ctx.recorder);
    for key in &finished {
        map.remove(key);
    }
    ctx.map_entries.push((map.name(), total - finished.len()));
    table.publish(live, ctx.now, ctx.ttl)
}
