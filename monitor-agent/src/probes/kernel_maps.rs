//! Reading and freeing the kernel's maps. `ProcessMaps` are the ones every signal shares
//! (process generations, exclusions, listeners, counters); an `AggregateMap` is one signal's
//! per-CPU hash map, summed here, whose entries of finished process generations are deleted
//! once folded.
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap},
};
use log::debug;
use monitor_common::{Counter, ListenerKey, Owner, ProcessState, map};

use super::Loaded;
use crate::series::table::Observations;

/// A kernel map's fill, for the self-metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub map: &'static str,
    /// Entries in use; `None` for arrays, which are always full by construction.
    pub entries: Option<u64>,
    pub capacity: u64,
}

/// The maps that are no one signal's: who holds a PID now, whom to skip, the counters.
pub struct ProcessMaps {
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

impl ProcessMaps {
    pub fn take(loaded: &mut Loaded) -> anyhow::Result<Self> {
        let ebpf = &mut loaded.ebpf;
        Ok(Self {
            generations: take(ebpf, map::PROCESS_STATE)?,
            excluded: take(ebpf, map::EXCLUDED)?,
            listeners: take(ebpf, map::TCP_LISTENERS)?,
            counters: take(ebpf, map::COUNTERS)?,
            capacities: loaded.capacities.clone(),
        })
    }

    /// Tells the probes to skip the incarnation `owner` (selection rules).
    pub fn exclude(&mut self, owner: Owner) {
        let Owner { tgid, generation } = owner;
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

    /// Every listening port the probes know of (in any network namespace), with its owner.
    pub fn listeners(&self) -> Vec<(ListenerKey, Owner)> {
        self.listeners.iter().filter_map(Result::ok).collect()
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

    /// Every sized map's capacity, with the entries of the hash maps counted at this sweep
    /// (`entries`); other maps report capacity only.
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

/// A key of an `AggregateMap`: plain old data the kernel and the agent share.
pub trait MapKey: aya::Pod + Eq + std::fmt::Debug {}
impl<T: aya::Pod + Eq + std::fmt::Debug> MapKey for T {}

/// A value of an `AggregateMap`: plain old data, summed over CPUs.
pub trait MapValue: aya::Pod + Observations {}
impl<T: aya::Pod + Observations> MapValue for T {}

/// One signal's per-CPU hash map keyed by process generation (and more).
pub struct AggregateMap<K: MapKey, V: MapValue> {
    name: &'static str,
    map: PerCpuHashMap<MapData, K, V>,
}

impl<K: MapKey, V: MapValue> AggregateMap<K, V> {
    pub fn take(loaded: &mut Loaded, name: &'static str) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            map: take(&mut loaded.ebpf, name)?,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Every key with its value summed over CPUs. Keys first, then values: the kernel inserts
    /// concurrently and a key deleted meanwhile is simply skipped (a finished generation,
    /// already folded).
    pub fn rows(&self) -> Vec<(K, V)> {
        let keys: Vec<K> = self.map.keys().filter_map(Result::ok).collect();
        keys.into_iter()
            .filter_map(|key| {
                let per_cpu = self.map.get(&key, 0).ok()?;
                let mut total = V::default();
                for value in per_cpu.iter() {
                    total.add(value);
                }
                Some((key, total))
            })
            .collect()
    }

    /// Frees a finished key; one already gone (deleted meanwhile) is no error worth more than
    /// a debug line.
    pub fn remove(&mut self, key: &K) {
        if let Err(err) = self.map.remove(key) {
            debug!("removing {key:?} from {}: {err}", self.name);
        }
    }
}
