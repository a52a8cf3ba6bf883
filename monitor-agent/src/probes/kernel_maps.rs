//! Reading and freeing the kernel's aggregation maps. Values are per CPU in the kernel and
//! summed here; entries of finished process generations are deleted once folded.
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap},
};
use log::debug;
use monitor_common::{
    Counter, ListenerKey, NetBytes, Owner, ProcessState, SyscallErrorKey, SyscallKey, SyscallStats,
    map,
};

/// A kernel map's fill, for the self-metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub map: &'static str,
    /// Entries in use; `None` for arrays, which are always full by construction.
    pub entries: Option<u64>,
    pub capacity: u64,
}

pub struct KernelMaps {
    stats: PerCpuHashMap<MapData, SyscallKey, SyscallStats>,
    errors: PerCpuHashMap<MapData, SyscallErrorKey, u64>,
    net_bytes: PerCpuHashMap<MapData, Owner, NetBytes>,
    generations: Array<MapData, ProcessState>,
    excluded: Array<MapData, u32>,
    listeners: aya::maps::HashMap<MapData, ListenerKey, Owner>,
    counters: PerCpuArray<MapData, u64>,
    capacities: Vec<(&'static str, u64)>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> anyhow::Result<T> {
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl KernelMaps {
    /// `capacities`: each map's `max_entries` as loaded, for the fill self-metrics.
    pub fn take(ebpf: &mut Ebpf, capacities: Vec<(&'static str, u64)>) -> anyhow::Result<Self> {
        Ok(Self {
            stats: take(ebpf, map::SYSCALL_STATS)?,
            errors: take(ebpf, map::SYSCALL_ERRORS)?,
            net_bytes: take(ebpf, map::NET_BYTES)?,
            generations: take(ebpf, map::PROCESS_STATE)?,
            excluded: take(ebpf, map::EXCLUDED)?,
            listeners: take(ebpf, map::TCP_LISTENERS)?,
            counters: take(ebpf, map::COUNTERS)?,
            capacities,
        })
    }

    /// Every (process generation, syscall) with its histogram summed over CPUs.
    pub fn syscall_rows(&self) -> Vec<(SyscallKey, SyscallStats)> {
        rows(&self.stats)
    }

    pub fn error_rows(&self) -> Vec<(SyscallErrorKey, u64)> {
        rows(&self.errors)
    }

    pub fn net_bytes_rows(&self) -> Vec<(Owner, NetBytes)> {
        rows(&self.net_bytes)
    }

    pub fn remove_net_bytes(&mut self, key: &Owner) {
        remove(&mut self.net_bytes, map::NET_BYTES, key);
    }

    pub fn remove_syscall(&mut self, key: &SyscallKey) {
        remove(&mut self.stats, map::SYSCALL_STATS, key);
    }

    pub fn remove_error(&mut self, key: &SyscallErrorKey) {
        remove(&mut self.errors, map::SYSCALL_ERRORS, key);
    }

    /// Tells the probes to skip the incarnation `(tgid, generation)` (selection rules).
    pub fn exclude(&mut self, tgid: u32, generation: u32) {
        if let Err(err) = self.excluded.set(tgid, generation.wrapping_add(1), 0) {
            debug!("marking {tgid} excluded in {}: {err}", map::EXCLUDED);
        }
    }

    /// Records the TCP listeners that predate the agent (see `probes::listeners`).
    pub fn seed_listeners(&mut self) -> usize {
        let generations = &self.generations;
        super::listeners::seed(&mut self.listeners, |tgid| {
            generations.get(&tgid, 0).ok().map(|state| state.generation)
        })
    }

    /// The generation that currently holds `tgid`.
    pub fn generation(&self, tgid: u32) -> Option<u32> {
        self.generations
            .get(&tgid, 0)
            .inspect_err(|err| debug!("reading {}[{tgid}]: {err}", map::PROCESS_STATE))
            .ok()
            .map(|state| state.generation)
    }

    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters
            .get(&(counter as u32), 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// `entries`: the hash maps whose keys were just counted; other maps report capacity only.
    pub fn fill(&self, entries: &[(&'static str, usize)]) -> Vec<MapFill> {
        self.capacities
            .iter()
            .map(|&(name, capacity)| MapFill {
                map: name,
                entries: entries
                    .iter()
                    .find(|(counted, _)| *counted == name)
                    .map(|&(_, n)| n as u64),
                capacity,
            })
            .collect()
    }
}

/// Frees a finished key; one already gone (deleted meanwhile) is no error worth more than a
/// debug line.
fn remove<K: aya::Pod + std::fmt::Debug, V: aya::Pod>(
    map: &mut PerCpuHashMap<MapData, K, V>,
    name: &str,
    key: &K,
) {
    if let Err(err) = map.remove(key) {
        debug!("removing {key:?} from {name}: {err}");
    }
}

/// Keys first, then values: the kernel inserts concurrently and a key deleted meanwhile is
/// simply skipped (it was a finished generation, already folded).
fn rows<K: aya::Pod + Eq, V: aya::Pod + crate::series::table::Observations>(
    map: &PerCpuHashMap<MapData, K, V>,
) -> Vec<(K, V)> {
    let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
    keys.into_iter()
        .filter_map(|key| {
            let per_cpu = map.get(&key, 0).ok()?;
            let mut total = V::default();
            for value in per_cpu.iter() {
                total.add(value);
            }
            Some((key, total))
        })
        .collect()
}
