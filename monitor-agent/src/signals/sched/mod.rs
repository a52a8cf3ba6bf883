//! Saturation from the scheduler: run-queue waits and CPU time per process, summed per CPU
//! in the kernel (`monitor-ebpf/src/sched.rs`: `RUNQ_LATENCY`, `CPU_TIME`).
use monitor_common::{Counter, Histogram, Owner, map};

use super::signal::{Context, SeriesCount, Signal, series_count, sweep_map};
use crate::{
    probes::{Loaded, kernel_maps::AggregateMap},
    series::{
        families::{Family, family},
        labels::LabelPolicy,
        publish::{self, Published},
        table::{SeriesTable, WorkloadLabels},
    },
};

const FAMILIES: &[Family] = &[family::RUNQUEUE_LATENCY, family::CPU_SECONDS];

pub struct Sched {
    waits: AggregateMap<Owner, Histogram>,
    cpu: AggregateMap<Owner, u64>,
    wait_table: SeriesTable<WorkloadLabels, Histogram>,
    cpu_table: SeriesTable<WorkloadLabels, u64>,
}

/// The scheduler families' values at one sweep; CPU time in nanoseconds.
#[derive(Debug, Default)]
pub struct SchedSnapshot {
    pub waits: Vec<(WorkloadLabels, Histogram)>,
    pub cpu_ns: Vec<(WorkloadLabels, u64)>,
}

impl Sched {
    pub fn take(loaded: &mut Loaded) -> anyhow::Result<Self> {
        Ok(Self {
            waits: AggregateMap::take(loaded, map::RUNQ_LATENCY)?,
            cpu: AggregateMap::take(loaded, map::CPU_TIME)?,
            wait_table: SeriesTable::default(),
            cpu_table: SeriesTable::default(),
        })
    }
}

impl Signal for Sched {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let snapshot = SchedSnapshot {
            waits: sweep_map(
                &mut self.waits,
                &family::RUNQUEUE_LATENCY,
                &mut self.wait_table,
                ctx,
            ),
            cpu_ns: sweep_map(
                &mut self.cpu,
                &family::CPU_SECONDS,
                &mut self.cpu_table,
                ctx,
            ),
        };
        published(&snapshot, ctx.recorder.policy)
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[
            (map::RUNQ_LATENCY, Counter::RunqLatencyFull),
            (map::CPU_TIME, Counter::CpuTimeFull),
        ]
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![
            series_count(&family::RUNQUEUE_LATENCY, &self.wait_table),
            series_count(&family::CPU_SECONDS, &self.cpu_table),
        ]
    }
}

pub fn published(snapshot: &SchedSnapshot, policy: &LabelPolicy) -> Vec<Published> {
    vec![
        Published::workload(
            family::RUNQUEUE_LATENCY,
            &snapshot.waits,
            policy,
            publish::histogram,
        ),
        Published::workload(
            family::CPU_SECONDS,
            &snapshot.cpu_ns,
            policy,
            publish::seconds,
        ),
    ]
}
