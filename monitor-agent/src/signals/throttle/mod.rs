//! CPU throttling: how long a process's cgroup was held off the CPU by its quota (CFS
//! bandwidth), read from the cgroup's own `cpu.stat` for the running processes the agent has
//! named, at most every `signal::PROC_SCAN_EVERY`. No kernel probe: the kernel keeps the exact figure
//! per cgroup (v1 `throttled_time` in ns, v2 `throttled_usec`), and only cgroups with a quota
//! (v1 `cpu.cfs_quota_us` > 0, v2 `cpu.max` not `max`) are looked at.
//!
//! A label set counts the throttling of every cgroup its processes ran in while it watched
//! them; two comms in one container each show the container's. Throttling of a cgroup from
//! before its first scan counts too (the figure is cumulative in the kernel), so a counter's
//! first value may be large: `rate()` does not mind.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use super::signal::{Context, ProcScan, SeriesCount, Signal, growth, series_count};
use crate::series::{
    families::{Family, family},
    labels::LabelPolicy,
    publish::{self, Published},
    table::{SeriesTable, WorkloadLabels},
};

const FAMILIES: &[Family] = &[family::CPU_THROTTLED];

/// Where the kernel's cgroup hierarchies with the CPU controller are mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuMounts {
    /// cgroup v1's `cpu` hierarchy: (mount point, the mount's root within the hierarchy).
    v1: Option<(PathBuf, String)>,
    /// The cgroup v2 hierarchy.
    v2: Option<(PathBuf, String)>,
}

impl CpuMounts {
    /// From `/proc/self/mountinfo`'s text.
    pub fn parse(mountinfo: &str) -> Self {
        let mut mounts = CpuMounts::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split_whitespace().collect();
            let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
                continue;
            };
            let mut right = right.split_whitespace();
            let (Some(fstype), _, Some(options)) = (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let mount = (PathBuf::from(point), (*root).to_owned());
            match fstype {
                "cgroup" if options.split(',').any(|option| option == "cpu") => {
                    mounts.v1.get_or_insert(mount);
                }
                "cgroup2" => {
                    mounts.v2.get_or_insert(mount);
                }
                _ => {}
            }
        }
        mounts
    }

    /// The directory of the cgroup that holds process `tgid`'s CPU controller, from its
    /// `/proc/<pid>/cgroup` text: v1's `cpu` hierarchy where it is mounted (hybrid hosts keep
    /// the CPU controller there), else v2's.
    pub fn cgroup_dir(&self, proc_cgroup: &str) -> Option<(PathBuf, Version)> {
        let mut v2_path = None;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                v2_path = Some(path);
            } else if controllers.split(',').any(|c| c == "cpu") {
                if let Some((point, root)) = &self.v1 {
                    return Some((under(point, root, path), Version::V1));
                }
            }
        }
        let (point, root) = self.v2.as_ref()?;
        Some((under(point, root, v2_path?), Version::V2))
    }
}

/// A cgroup's path as `/proc/<pid>/cgroup` gives it, under a mount of the hierarchy whose
/// root is `root` (not `/` inside a container that mounts only its own subtree).
fn under(point: &Path, root: &str, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(root)
        .unwrap_or(path)
        .trim_start_matches('/');
    point.join(relative)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Nanoseconds the cgroup in `dir` was throttled, if it has a quota.
pub fn throttled_ns(dir: &Path, version: Version) -> Option<u64> {
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let (has_quota, field, unit_ns) = match version {
        Version::V1 => (
            read("cpu.cfs_quota_us")?.trim().parse::<i64>().ok()? > 0,
            "throttled_time",
            1,
        ),
        Version::V2 => (
            read("cpu.max")?.split_whitespace().next()? != "max",
            "throttled_usec",
            1_000,
        ),
    };
    if !has_quota {
        return None;
    }
    stat_field(&read("cpu.stat")?, field).map(|value| value * unit_ns)
}

/// The value of `field` in a `cpu.stat` text (`name value` lines).
fn stat_field(stat: &str, field: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == field).then(|| value.trim().parse().ok())?
    })
}

pub struct Throttle {
    mounts: CpuMounts,
    table: SeriesTable<WorkloadLabels, u64>,
    /// The throttled time last read per (label set, cgroup): only what is new is added.
    seen: HashMap<(WorkloadLabels, PathBuf), u64>,
    last: Vec<(WorkloadLabels, u64)>,
    scan: ProcScan,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub fn new() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self {
            mounts: CpuMounts::parse(&mountinfo),
            table: SeriesTable::default(),
            seen: HashMap::new(),
            last: Vec::new(),
            scan: ProcScan::default(),
        }
    }
}

impl Signal for Throttle {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        if self.scan.due(ctx.now) {
            for (owner, who) in ctx.naming.running(ctx.now) {
                let Ok(text) = std::fs::read_to_string(format!("/proc/{}/cgroup", owner.tgid))
                else {
                    continue;
                };
                let Some((dir, version)) = self.mounts.cgroup_dir(&text) else {
                    continue;
                };
                let Some(now_ns) = throttled_ns(&dir, version) else {
                    continue;
                };
                let family = family::CPU_THROTTLED.name;
                let labels = ctx.recorder.labels(family, &self.table, &who, Vec::new());
                let before = self.seen.insert((labels, dir), now_ns);
                if let Some(new_ns) = growth(before, now_ns) {
                    ctx.recorder
                        .record(family, &mut self.table, &who, Vec::new(), &new_ns);
                }
            }
            self.last = self.table.publish(Default::default(), ctx.now, ctx.ttl);
            let live: HashSet<&WorkloadLabels> =
                self.last.iter().map(|(labels, _)| labels).collect();
            self.seen.retain(|(labels, _), _| live.contains(labels));
        }
        published(&self.last, ctx.recorder.policy)
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![series_count(&family::CPU_THROTTLED, &self.table)]
    }
}

pub fn published(throttled_ns: &[(WorkloadLabels, u64)], policy: &LabelPolicy) -> Vec<Published> {
    vec![Published::workload(
        family::CPU_THROTTLED,
        throttled_ns,
        policy,
        publish::seconds,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_cpu_hierarchy_is_preferred_where_it_is_mounted() {
        let mounts = CpuMounts::parse(HYBRID);
        // `cpuacct` alone is not the CPU controller.
        assert_eq!(
            mounts.v1,
            Some((PathBuf::from("/sys/fs/cgroup/cpu"), "/".into()))
        );
        let proc_cgroup = "4:memory:/m\n2:cpuacct:/a\n1:cpu:/docker/abc\n0::/\n";
        assert_eq!(
            mounts.cgroup_dir(proc_cgroup),
            Some((PathBuf::from("/sys/fs/cgroup/cpu/docker/abc"), Version::V1))
        );
    }

    #[test]
    fn v2_only_hosts_and_containers_with_their_own_root() {
        let mounts =
            CpuMounts::parse("25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(
            mounts.cgroup_dir("0::/kubepods/pod1/c2\n"),
            Some((
                PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c2"),
                Version::V2
            ))
        );
        let contained =
            CpuMounts::parse("25 20 0:22 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
        assert_eq!(
            contained.cgroup_dir("0::/kubepods/pod1/c2\n"),
            Some((PathBuf::from("/sys/fs/cgroup/c2"), Version::V2))
        );
        assert_eq!(CpuMounts::default().cgroup_dir("0::/x\n"), None);
    }

    #[test]
    fn throttled_time_only_with_a_quota_in_either_version() {
        let dir = std::env::temp_dir().join(format!("throttle-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        write("cpu.cfs_quota_us", "10000\n");
        write(
            "cpu.stat",
            "nr_periods 30\nnr_throttled 27\nthrottled_time 2430000000\n",
        );
        assert_eq!(throttled_ns(&dir, Version::V1), Some(2_430_000_000));
        write("cpu.cfs_quota_us", "-1\n");
        assert_eq!(throttled_ns(&dir, Version::V1), None);
        write("cpu.max", "10000 100000\n");
        write(
            "cpu.stat",
            "usage_usec 300\nnr_throttled 27\nthrottled_usec 2430000\n",
        );
        assert_eq!(throttled_ns(&dir, Version::V2), Some(2_430_000_000));
        write("cpu.max", "max 100000\n");
        assert_eq!(throttled_ns(&dir, Version::V2), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
