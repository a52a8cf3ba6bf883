//! Memory saturation: OOM kills per victim process (`monitor-ebpf/src/oom.rs`, `OOM_KILLS`).
use monitor_common::{Counter, Owner, map};

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

const FAMILIES: &[Family] = &[family::OOM_KILLS];

pub struct Oom {
    kills: AggregateMap<Owner, u64>,
    table: SeriesTable<WorkloadLabels, u64>,
}

impl Oom {
    pub fn take(loaded: &mut Loaded) -> anyhow::Result<Self> {
        Ok(Self {
            kills: AggregateMap::take(loaded, map::OOM_KILLS)?,
            table: SeriesTable::default(),
        })
    }
}

impl Signal for Oom {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let kills = sweep_map(&mut self.kills, &family::OOM_KILLS, &mut self.table, ctx);
        published(&kills, ctx.recorder.policy)
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[(map::OOM_KILLS, Counter::OomKillsFull)]
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![series_count(&family::OOM_KILLS, &self.table)]
    }
}

pub fn published(kills: &[(WorkloadLabels, u64)], policy: &LabelPolicy) -> Vec<Published> {
    vec![Published::workload(
        family::OOM_KILLS,
        kills,
        policy,
        publish::counter,
    )]
}
