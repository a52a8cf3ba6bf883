//! Preallocated hash maps for kernels whose verifier objects to the others.
//!
//! From 5.7 to 6.0 the verifier accepts a tracing program that uses a hash map allocated at
//! run time (`BPF_F_NO_PREALLOC`) but prints a kernel WARNING with a stack trace ("trace type
//! BPF program uses run-time allocation"), which taints the kernel and stops a host booted
//! with `panic_on_warn`. 6.1 made run-time allocation safe there (BPF memory allocator). On
//! those older kernels the maps are preallocated instead: their whole size is allocated at
//! load, `max_entries` × value size (× CPUs for per-CPU maps), which the `--kernel.*-entries`
//! flags bound. The flag lives in the object's map definitions (the legacy `maps` section:
//! `struct bpf_map_def`), which aya cannot override, so it is cleared in a copy of the object
//! before loading.
use anyhow::{Context as _, bail};
use aya::util::KernelVersion;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
/// `struct bpf_map_def { type, key_size, value_size, max_entries, map_flags, id, pinning }`.
const DEF_TYPE: usize = 0;
const DEF_VALUE_SIZE: usize = 8;
const DEF_MAX_ENTRIES: usize = 12;
const DEF_FLAGS: usize = 16;

/// Whether this kernel's verifier warns about run-time allocated maps in tracing programs.
pub fn needed(kernel: KernelVersion) -> bool {
    kernel < KernelVersion::new(6, 1, 0)
}

/// A map that was switched to preallocation, as defined in the object.
#[derive(Debug, PartialEq, Eq)]
pub struct Preallocated {
    pub name: String,
    pub per_cpu: bool,
    pub value_size: u32,
    pub max_entries: u32,
}

/// A copy of `object` whose hash maps are all preallocated, and which maps changed.
pub fn preallocate(object: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<Preallocated>)> {
    let file = object::File::parse(object).context("parsing the eBPF object")?;
    let section = file
        .section_by_name("maps")
        .context("the eBPF object has no `maps` section")?;
    let (section_start, section_size) = section
        .file_range()
        .context("the `maps` section has no file data")?;
    let mut patched = object.to_vec();
    let mut changed = Vec::new();
    for symbol in file.symbols() {
        if symbol.section_index() != Some(section.index()) || symbol.size() < 20 {
            continue;
        }
        // In a relocatable object a symbol's address is its offset in its section.
        if symbol.address() + 20 > section_size {
            bail!(
                "map symbol {:?} lies outside the `maps` section",
                symbol.name()
            );
        }
        let at = usize::try_from(section_start + symbol.address())?;
        let field = |offset: usize| {
            let bytes = &patched[at + offset..at + offset + 4];
            u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        };
        let map_type = field(DEF_TYPE);
        let flags = field(DEF_FLAGS);
        let is_hash = map_type == BPF_MAP_TYPE_HASH || map_type == BPF_MAP_TYPE_PERCPU_HASH;
        if !is_hash || flags & BPF_F_NO_PREALLOC == 0 {
            continue;
        }
        changed.push(Preallocated {
            name: symbol.name().unwrap_or("?").to_owned(),
            per_cpu: map_type == BPF_MAP_TYPE_PERCPU_HASH,
            value_size: field(DEF_VALUE_SIZE),
            max_entries: field(DEF_MAX_ENTRIES),
        });
        let flags = (flags & !BPF_F_NO_PREALLOC).to_le_bytes();
        patched[at + DEF_FLAGS..at + DEF_FLAGS + 4].copy_from_slice(&flags);
    }
    Ok((patched, changed))
}

/// Bytes the kernel allocates up front for a preallocated map of `max_entries` entries (the
/// values; keys and element headers are small beside per-CPU histograms).
pub fn bytes(map: &Preallocated, max_entries: u32, cpus: usize) -> u64 {
    let value = u64::from(map.value_size.next_multiple_of(8));
    let copies = if map.per_cpu { cpus as u64 } else { 1 };
    u64::from(max_entries) * value * copies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernels_before_6_1_need_it() {
        assert!(needed(KernelVersion::new(5, 10, 223)));
        assert!(needed(KernelVersion::new(6, 0, 19)));
        assert!(!needed(KernelVersion::new(6, 1, 0)));
        assert!(!needed(KernelVersion::new(6, 18, 0)));
    }

    #[test]
    fn every_run_time_allocated_hash_map_of_the_real_object_is_switched_and_nothing_else() {
        let object = crate::probes::object::object();
        let (patched, changed) = preallocate(object).unwrap();
        let names: Vec<&str> = changed.iter().map(|map| map.name.as_str()).collect();
        use monitor_common::map;
        let mut names = names;
        names.sort_unstable();
        let mut expected = [
            map::SYSCALL_STATS,
            map::SYSCALL_ERRORS,
            map::TCP_LISTENERS,
            map::TCP_CONNS,
            map::NET_BYTES,
            map::RUNQ_LATENCY,
            map::CPU_TIME,
            map::OOM_KILLS,
            map::BLOCK_IO,
        ];
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(patched.len(), object.len());
        let differing = patched
            .iter()
            .zip(object)
            .filter(|(after, before)| after != before)
            .count();
        assert_eq!(differing, expected.len(), "one flag byte per map");
        // Patched again, nothing is left to change.
        assert!(preallocate(&patched).unwrap().1.is_empty());
    }

    #[test]
    fn per_cpu_maps_cost_a_copy_per_cpu() {
        let map = Preallocated {
            name: "SYSCALL_STATS".into(),
            per_cpu: true,
            value_size: 232,
            max_entries: 10_240,
        };
        assert_eq!(bytes(&map, 10_240, 4), 10_240 * 232 * 4);
        let shared = Preallocated {
            per_cpu: false,
            value_size: 12,
            ..map
        };
        assert_eq!(bytes(&shared, 100, 4), 100 * 16);
    }
}
