//! Block I/O: requests each process issued, from issue to completion, per operation
//! (`monitor-ebpf/src/block.rs`, `BLOCK_IO`: per-CPU histograms by process and operation).
use monitor_common::{BlockKey, Counter, Owner, block_op, map};

use super::signal::{Context, SeriesCount, Signal, series_count, sweep_map};
use crate::{
    probes::{Loaded, kernel_maps::AggregateMap},
    process::naming::KernelKey,
    series::{
        families::{Family, family},
        labels::LabelPolicy,
        publish::{self, Published},
        table::{Histogram, SeriesTable, WorkloadLabels},
    },
};

const FAMILIES: &[Family] = &[family::BLOCK_IO_DURATION];

/// The `operation` label of a `block_op`.
pub fn operation(op: u32) -> &'static str {
    match op {
        block_op::READ => "read",
        block_op::WRITE => "write",
        block_op::FLUSH => "flush",
        block_op::DISCARD => "discard",
        _ => "other",
    }
}

impl KernelKey for BlockKey {
    fn owner(&self) -> Owner {
        self.owner
    }
    fn values(&self) -> Vec<String> {
        vec![operation(self.op).to_owned()]
    }
}

pub struct Block {
    io: AggregateMap<BlockKey, Histogram>,
    table: SeriesTable<WorkloadLabels, Histogram>,
}

impl Block {
    pub fn take(loaded: &mut Loaded) -> anyhow::Result<Self> {
        Ok(Self {
            io: AggregateMap::take(loaded, map::BLOCK_IO)?,
            table: SeriesTable::default(),
        })
    }
}

impl Signal for Block {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let io = sweep_map(
            &mut self.io,
            &family::BLOCK_IO_DURATION,
            &mut self.table,
            ctx,
        );
        published(&io, ctx.recorder.policy)
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[(map::BLOCK_IO, Counter::BlockIoFull)]
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![series_count(&family::BLOCK_IO_DURATION, &self.table)]
    }
}

pub fn published(io: &[(WorkloadLabels, Histogram)], policy: &LabelPolicy) -> Vec<Published> {
    vec![Published::workload(
        family::BLOCK_IO_DURATION,
        io,
        policy,
        publish::histogram,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_label_and_the_rest_are_other() {
        let names: Vec<_> = [0, 1, 2, 3, 9, block_op::OTHER]
            .into_iter()
            .map(operation)
            .collect();
        assert_eq!(
            names,
            ["read", "write", "flush", "discard", "other", "other"]
        );
    }
}
