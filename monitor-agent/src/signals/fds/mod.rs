//! Descriptor saturation: how close each process is to its open-files limit. Read from
//! `/proc` (no kernel probe: the count and the limit are there, exact, for any process), for
//! the running processes the agent has named, at most every `SCAN_EVERY`.
use std::{collections::HashMap, time::Duration};

use super::signal::{Context, ProcScan, SeriesCount, Signal, series_count};
use crate::{
    proc_access::{self, What},
    series::{
        families::{Family, family},
        labels::LabelPolicy,
        publish::{Published, Value},
        table::{SeriesTable, WorkloadLabels},
    },
};

const FAMILIES: &[Family] = &[family::FD_UTILIZATION];

#[derive(Default)]
pub struct Fds {
    /// The label sets exported now (for the series budget and `monitor_series`).
    table: SeriesTable<WorkloadLabels, u64>,
    /// The last scan: the highest ratio per label set, and when.
    last: Vec<(WorkloadLabels, f64)>,
    scan: ProcScan,
}

impl Fds {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Open descriptors of `tgid` over its soft `RLIMIT_NOFILE`; `None` if it is gone, cannot
/// be read, or has no limit.
pub fn utilization(tgid: u32) -> Option<f64> {
    let limits = std::fs::read_to_string(format!("/proc/{tgid}/limits")).ok()?;
    let soft = soft_open_files_limit(&limits)?;
    let path = std::path::PathBuf::from(format!("/proc/{tgid}/fd"));
    let open = proc_access::check(What::Fd, &path, std::fs::read_dir(&path))
        .ok()?
        .count();
    Some(open as f64 / soft as f64)
}

/// The soft limit of the `Max open files` row of `/proc/<pid>/limits`; `None` if unlimited.
fn soft_open_files_limit(limits: &str) -> Option<u64> {
    let row = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = row["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok().filter(|&soft| soft > 0)
}

impl Signal for Fds {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        if self.scan.due(ctx.now) {
            let mut highest: HashMap<WorkloadLabels, f64> = HashMap::new();
            for (owner, who) in ctx.naming.running(ctx.now) {
                let Some(ratio) = utilization(owner.tgid) else {
                    continue;
                };
                let labels =
                    ctx.recorder
                        .labels(family::FD_UTILIZATION.name, &self.table, &who, Vec::new());
                let entry = highest.entry(labels).or_insert(0.0);
                *entry = entry.max(ratio);
            }
            // A gauge of running processes: a label set whose processes all ended goes now.
            let present = highest.keys().map(|labels| (labels.clone(), 1)).collect();
            self.table.publish(present, ctx.now, Duration::ZERO);
            self.last = highest.into_iter().collect();
            self.last.sort_by(|a, b| a.0.cmp(&b.0));
        }
        published(&self.last, ctx.recorder.policy)
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![series_count(&family::FD_UTILIZATION, &self.table)]
    }
}

pub fn published(ratios: &[(WorkloadLabels, f64)], policy: &LabelPolicy) -> Vec<Published> {
    vec![Published::workload(
        family::FD_UTILIZATION,
        ratios,
        policy,
        |ratio| Value::Gauge(*ratio),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_and_unlimited_is_none() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1000                 524288               files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(1000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files_limit(unlimited), None);
        assert_eq!(soft_open_files_limit(""), None);
    }

    #[test]
    fn this_process_has_a_ratio_between_zero_and_one() {
        let ratio = utilization(std::process::id()).unwrap();
        assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    }
}
