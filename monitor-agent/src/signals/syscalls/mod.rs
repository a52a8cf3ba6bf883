//! Syscall counts, latency and errors per process: `SYSCALL_STATS` and `SYSCALL_ERRORS`,
//! aggregated per CPU in the kernel (`monitor-ebpf/src/syscalls.rs`), summed and named here.
//! Every syscall is counted; the latency histogram is published for the syscalls
//! `histograms` names.
use monitor_common::{Counter, Histogram, Owner, SyscallErrorKey, SyscallKey, map};

use super::signal::{Context, SeriesCount, Settings, Signal, series_count, sweep_map, sweep_rows};
use crate::{
    probes::{Loaded, kernel_maps::AggregateMap},
    process::naming::KernelKey,
    series::{
        families::{Family, family},
        labels::LabelPolicy,
        publish::{self, Published},
        table::{Observations as _, SeriesTable, WorkloadLabels},
    },
};

pub mod histograms;
pub mod names;

use histograms::HistogramSyscalls;

const FAMILIES: &[Family] = &[
    family::SYSCALLS,
    family::SYSCALL_DURATION,
    family::SYSCALL_ERRORS,
    family::SYSCALL_UNMATCHED_EXITS,
];

impl KernelKey for SyscallKey {
    fn owner(&self) -> Owner {
        Owner {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn values(&self) -> Vec<String> {
        vec![names::syscall(self.nr)]
    }
}

impl KernelKey for SyscallErrorKey {
    fn owner(&self) -> Owner {
        Owner {
            tgid: self.tgid,
            generation: self.generation,
        }
    }
    fn values(&self) -> Vec<String> {
        vec![names::syscall(self.nr), names::errno(self.errno)]
    }
}

pub struct Syscalls {
    stats: AggregateMap<SyscallKey, Histogram>,
    errors: AggregateMap<SyscallErrorKey, u64>,
    histograms: HistogramSyscalls,
    calls: SeriesTable<WorkloadLabels, u64>,
    durations: SeriesTable<WorkloadLabels, Histogram>,
    error_counts: SeriesTable<WorkloadLabels, u64>,
}

/// The syscall families' values at one sweep.
#[derive(Debug, Default)]
pub struct SyscallsSnapshot {
    pub calls: Vec<(WorkloadLabels, u64)>,
    pub durations: Vec<(WorkloadLabels, Histogram)>,
    pub errors: Vec<(WorkloadLabels, u64)>,
    pub unmatched_exits: u64,
}

impl Syscalls {
    pub fn take(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            stats: AggregateMap::take(loaded, map::SYSCALL_STATS)?,
            errors: AggregateMap::take(loaded, map::SYSCALL_ERRORS)?,
            histograms: settings.syscall_histograms.clone(),
            calls: SeriesTable::default(),
            durations: SeriesTable::default(),
            error_counts: SeriesTable::default(),
        })
    }
}

impl Signal for Syscalls {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        // One read of the map feeds both tables; its finished keys are freed once both
        // have retired them.
        let rows = self.stats.rows();
        let total = rows.len();
        let counts = rows
            .iter()
            .map(|(key, histogram)| (*key, histogram.observations()))
            .collect();
        let histograms = &self.histograms;
        let timed = rows
            .into_iter()
            .filter(|(key, _)| histograms.contains(key.nr))
            .collect();
        let (calls, finished) = sweep_rows(counts, &family::SYSCALLS, &mut self.calls, ctx);
        let (durations, _) = sweep_rows(timed, &family::SYSCALL_DURATION, &mut self.durations, ctx);
        for key in &finished {
            self.stats.remove(key);
        }
        ctx.map_entries
            .push((self.stats.name(), total - finished.len()));
        let snapshot = SyscallsSnapshot {
            calls,
            durations,
            errors: sweep_map(
                &mut self.errors,
                &family::SYSCALL_ERRORS,
                &mut self.error_counts,
                ctx,
            ),
            unmatched_exits: ctx.counter(Counter::UnmatchedExits),
        };
        published(&snapshot, ctx.recorder.policy)
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[
            (map::SYSCALL_STATS, Counter::SyscallStatsFull),
            (map::SYSCALL_ERRORS, Counter::SyscallErrorsFull),
        ]
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![
            series_count(&family::SYSCALLS, &self.calls),
            series_count(&family::SYSCALL_DURATION, &self.durations),
            series_count(&family::SYSCALL_ERRORS, &self.error_counts),
        ]
    }
}

pub fn published(snapshot: &SyscallsSnapshot, policy: &LabelPolicy) -> Vec<Published> {
    use family::*;
    vec![
        Published::workload(SYSCALLS, &snapshot.calls, policy, publish::counter),
        Published::workload(
            SYSCALL_DURATION,
            &snapshot.durations,
            policy,
            publish::histogram,
        ),
        Published::workload(SYSCALL_ERRORS, &snapshot.errors, policy, publish::counter),
        Published::single(SYSCALL_UNMATCHED_EXITS, snapshot.unmatched_exits as f64),
    ]
}
