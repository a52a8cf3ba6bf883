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
        labels::Workload,
        publish::Published,
        table::{Observations, Recorder, SeriesTable, WorkloadLabels},
    },
};

/// How often the rooms that read `/proc` or cgroup files for every running process (`fds`,
/// `throttle`) do so: a file or directory read per process, not for every early sweep.
pub const PROC_SCAN_EVERY: Duration = Duration::from_secs(5);

/// When a `PROC_SCAN_EVERY` room last scanned: `due` says whether to scan now, and notes it.
#[derive(Debug, Default)]
pub struct ProcScan(Option<Instant>);

impl ProcScan {
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self
            .0
            .is_none_or(|at| now.duration_since(at) >= PROC_SCAN_EVERY);
        if due {
            self.0 = Some(now);
        }
        due
    }
}

/// What a cumulative figure the kernel keeps (a cgroup's throttled time, a socket's drops)
/// added since it was last read (`before`): all of it at first sight, and all of it when it
/// went back (a new object under the old name counts from zero). `None` when nothing is new
/// and the series already exists.
pub fn growth(before: Option<u64>, now: u64) -> Option<u64> {
    match before {
        None => Some(now),
        Some(before) if before > now => Some(now),
        Some(before) => Some(now - before).filter(|&new| new > 0),
    }
}

/// Whose cap a label value a workload chooses (a route, a server) counts against: the
/// service, in its namespace, as the family's label choice shows it (on a host, the service
/// is the comm).
pub fn cap_key(who: &Workload) -> String {
    let service = if who.service.is_empty() {
        &who.comm
    } else {
        &who.service
    };
    format!("{}/{service}", who.namespace)
}

/// What the signals are built with, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Distinct `peer` values per comm before the rest share `tcp::OVERFLOW_PEER`.
    pub peers_per_comm: usize,
    /// Distinct HTTP routes per comm before the rest share one overflow value.
    pub routes_per_comm: usize,
    /// The syscalls with a latency histogram (all are counted).
    pub syscall_histograms: super::syscalls::histograms::HistogramSyscalls,
}

/// (family name, Prometheus series in use, series expired so far).
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

/// (family, Prometheus series, series expired so far) of one table.
pub fn series_count<L: Clone + Eq + std::hash::Hash, V: Observations>(
    family: &Family,
    table: &SeriesTable<L, V>,
) -> SeriesCount {
    let series = family.series_per_label_set() as u64;
    (
        family.name,
        table.len() as u64 * series,
        table.expired_total() * series,
    )
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
    let (published, finished) = sweep_rows(rows, family, table, ctx);
    for key in &finished {
        map.remove(key);
    }
    ctx.map_entries.push((map.name(), total - finished.len()));
    published
}

/// `sweep_map`'s naming and publishing of rows already read, for a room that publishes one
/// map's rows in more than one table: the keys of finished processes are returned, for the
/// caller to free once every table has retired them.
pub fn sweep_rows<K, V>(
    rows: Vec<(K, V)>,
    family: &Family,
    table: &mut SeriesTable<WorkloadLabels, V>,
    ctx: &mut Context,
) -> (Vec<(WorkloadLabels, V)>, Vec<K>)
where
    K: KernelKey,
    V: Observations,
{
    let (live, finished) = ctx.naming.sort(rows, family.name, table, &mut ctx.recorder);
    (table.publish(live, ctx.now, ctx.ttl), finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_what_is_new_all_of_it_after_a_reset_and_none_when_idle() {
        assert_eq!(growth(None, 0), Some(0));
        assert_eq!(growth(None, 40), Some(40));
        assert_eq!(growth(Some(40), 55), Some(15));
        assert_eq!(growth(Some(40), 40), None);
        assert_eq!(growth(Some(40), 7), Some(7));
    }

    #[test]
    fn a_proc_scan_is_due_at_first_then_once_per_period() {
        let start = Instant::now();
        let mut scan = ProcScan::default();
        assert!(scan.due(start));
        assert!(!scan.due(start + PROC_SCAN_EVERY / 2));
        assert!(scan.due(start + PROC_SCAN_EVERY));
        assert!(!scan.due(start + PROC_SCAN_EVERY));
    }
}
