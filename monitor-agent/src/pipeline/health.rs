//! The agent's own health: probes attached, ring buffers' produced/read/lost, kernel maps'
//! fill, the series budget. Published like any signal's families, so every exporter shows
//! them the same way.
use crate::{
    probes::{Hook, ProbeState, kernel_maps::MapFill},
    series::{families::family, publish::Published},
};

/// Static facts for `monitor_build_info`.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub version: &'static str,
    pub kernel: String,
}

impl BuildInfo {
    pub fn current() -> Self {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            version: env!("CARGO_PKG_VERSION"),
            kernel,
        }
    }
}

/// One ring buffer's books: the kernel's counts (produced, lost) and the reader's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingHealth {
    pub label: &'static str,
    pub produced: u64,
    pub lost: u64,
    pub read: u64,
    pub malformed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesCount {
    pub family: &'static str,
    pub in_use: u64,
    pub expired: u64,
    pub dropped: u64,
}

/// What one sweep measured of the agent itself.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub rings: Vec<RingHealth>,
    pub map_fill: Vec<MapFill>,
    /// Per hash map: new keys refused because it was full.
    pub insert_failures: Vec<(&'static str, u64)>,
    /// Per workload family: series in use, expired so far, label sets refused by the budget.
    pub series: Vec<SeriesCount>,
    pub series_max: usize,
    /// Per kind (`what`): reads of other processes' `/proc` (or the Docker socket) refused.
    pub proc_access_denied: Vec<(&'static str, u64)>,
}

/// One row per hook: two probes may share one (the syscall-exit hook of socket I/O), and a
/// series must not repeat. A shared hook counts if either probe's state holds.
fn hooks_where(probes: &[ProbeState], holds: fn(&ProbeState) -> bool) -> Vec<(Hook, bool)> {
    let mut rows: Vec<(Hook, bool)> = Vec::new();
    for state in probes {
        let hook = state.labelled_hook();
        match rows.iter_mut().find(|(row, _)| *row == hook) {
            Some((_, value)) => *value |= holds(state),
            None => rows.push((hook, holds(state))),
        }
    }
    rows
}

pub fn published(health: &Health, probes: &[ProbeState], build: &BuildInfo) -> Vec<Published> {
    use family::*;
    let rings = |f: fn(&RingHealth) -> u64| {
        health
            .rings
            .iter()
            .map(move |ring| (vec![ring.label], f(ring) as f64))
    };
    // The same rows in both probe families, so alerts can match them one to one.
    let hooks = |holds: fn(&ProbeState) -> bool| {
        hooks_where(probes, holds).into_iter().map(|(hook, value)| {
            (
                vec![hook.program, hook.tracepoint],
                f64::from(u8::from(value)),
            )
        })
    };
    let series = |f: fn(&SeriesCount) -> u64| {
        health
            .series
            .iter()
            .map(move |count| (vec![count.family], f(count) as f64))
    };
    vec![
        Published::plain(RINGBUF_PRODUCED, rings(|ring| ring.produced)),
        Published::plain(RINGBUF_READ, rings(|ring| ring.read)),
        Published::plain(RINGBUF_LOST, rings(|ring| ring.lost)),
        Published::plain(RINGBUF_MALFORMED, rings(|ring| ring.malformed)),
        Published::plain(
            BUILD_INFO,
            [(vec![build.version, build.kernel.as_str()], 1.0)],
        ),
        Published::plain(PROBE_ATTACHED, hooks(ProbeState::attached)),
        Published::plain(PROBE_DISABLED, hooks(ProbeState::disabled)),
        Published::single(
            REQUESTS_FRAMED_IN_KERNEL,
            f64::from(u8::from(crate::probes::frames_in_kernel(probes))),
        ),
        Published::plain(
            MAP_INSERT_FAILURES,
            health
                .insert_failures
                .iter()
                .map(|&(map, failures)| (vec![map], failures as f64)),
        ),
        Published::plain(
            MAP_ENTRIES,
            health
                .map_fill
                .iter()
                .filter_map(|fill| Some((vec![fill.map], fill.entries? as f64))),
        ),
        Published::plain(
            MAP_MAX_ENTRIES,
            health
                .map_fill
                .iter()
                .map(|fill| (vec![fill.map], fill.capacity as f64)),
        ),
        Published::plain(SERIES, series(|count| count.in_use)),
        Published::plain(SERIES_EXPIRED, series(|count| count.expired)),
        Published::plain(SERIES_DROPPED, series(|count| count.dropped)),
        Published::single(SERIES_BUDGET, health.series_max as f64),
        Published::plain(
            PROC_ACCESS_DENIED,
            health
                .proc_access_denied
                .iter()
                .map(|&(what, count)| (vec![what], count as f64)),
        ),
    ]
}
