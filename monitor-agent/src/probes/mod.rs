//! The kernel side as the agent sees it: load the embedded object, attach each probe on its
//! own, and hand out its maps (`kernel_maps`) and ring buffers (`event_ring`). Kernel struct
//! offsets for the network probes come from the running kernel's BTF (`btf`).
pub mod btf;
pub mod event_ring;
pub mod kernel_maps;
pub mod listeners;

use anyhow::Context as _;
use aya::{Ebpf, EbpfLoader, programs::RawTracePoint};
use log::{debug, info, warn};
use monitor_common::{capacity, global, map, program};

/// The eBPF object built from `monitor-ebpf` by this crate's build.rs.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"))
}

/// A probe: a program and the hook it attaches to, with the kernel feature it needs.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub program: &'static str,
    /// Tried when the kernel refuses `program` (an older kernel's tracepoint signature).
    pub fallback: Option<&'static str>,
    pub tracepoint: &'static str,
    /// What the kernel must offer, for the README and for errors.
    pub needs: &'static str,
    /// Reads kernel structs at offsets from BTF (`global::KERNEL_OFFSETS`).
    pub reads_structs: bool,
}

const NET_NEEDS: &str = "raw tracepoints (4.17+), kernel BTF (/sys/kernel/btf/vmlinux)";

/// In attach order: process lifecycle first so generations exist before the first syscall
/// is keyed; `sys_enter` before `sys_exit` so exits find their start times; socket
/// destruction before the state changes that track sockets, so no entry outlives its socket.
pub const PROBES: [Probe; 11] = [
    Probe {
        program: program::PROCESS_EXEC,
        fallback: None,
        tracepoint: "sched_process_exec",
        needs: "raw tracepoints (4.17+), BPF ring buffer (5.8+)",
        reads_structs: false,
    },
    Probe {
        program: program::PROCESS_EXIT,
        fallback: Some(program::PROCESS_EXIT_LEADER),
        tracepoint: "sched_process_exit",
        needs: "raw tracepoints (4.17+), BPF ring buffer (5.8+)",
        reads_structs: false,
    },
    Probe {
        program: program::SYS_ENTER,
        fallback: None,
        tracepoint: "sys_enter",
        needs: "raw tracepoints (4.17+)",
        reads_structs: false,
    },
    Probe {
        program: program::SYS_EXIT,
        fallback: None,
        tracepoint: "sys_exit",
        needs: "raw tracepoints (4.17+), per-CPU hash maps without prealloc (tracing, 6.1+)",
        reads_structs: false,
    },
    Probe {
        program: program::TCP_DESTROY,
        fallback: None,
        tracepoint: "tcp_destroy_sock",
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_STATE,
        fallback: None,
        tracepoint: "inet_sock_set_state",
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_RETRANSMIT,
        fallback: None,
        tracepoint: "tcp_retransmit_skb",
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_SEND_RESET,
        fallback: None,
        tracepoint: "tcp_send_reset",
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_RECEIVE_RESET,
        fallback: None,
        tracepoint: "tcp_receive_reset",
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::SOCK_SEND,
        fallback: None,
        tracepoint: "sock_send_length",
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::SOCK_RECV,
        fallback: None,
        tracepoint: "sock_recv_length",
        needs: NET_NEEDS,
        reads_structs: true,
    },
];

#[derive(Clone, Debug)]
pub struct ProbeState {
    pub probe: Probe,
    /// The program that runs: `probe.program` or its fallback.
    pub program: &'static str,
    /// `None` when attached; otherwise why not.
    pub error: Option<String>,
}

impl ProbeState {
    pub fn attached(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct LoadSettings {
    pub syscall_stats_entries: u32,
    pub syscall_errors_entries: u32,
    pub process_events_bytes: u32,
    pub tcp_conns_entries: u32,
    pub net_bytes_entries: u32,
    pub tcp_events_bytes: u32,
    pub payload_events_bytes: u32,
    /// Programs of `PROBES` not to attach (`--probes.disable`).
    pub disabled: Vec<String>,
    /// `aya-log` level inside the kernel (1 error … 5 trace), so disabled logs cost nothing.
    pub kernel_log_level: u8,
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub probes: Vec<ProbeState>,
    /// Slots of the per-thread and per-process arrays (`pid_max`).
    pub pid_slots: u32,
    /// `max_entries` of each sized map, as loaded.
    pub capacities: Vec<(&'static str, u64)>,
}

/// Loads the object; attaches every probe independently, so one the kernel refuses is
/// logged and reported while the others run.
pub fn load(settings: &LoadSettings) -> anyhow::Result<Loaded> {
    let pid_slots = pid_max();
    let agent_tgid = std::process::id();
    let offsets = kernel_offsets();
    let mut loader = EbpfLoader::new();
    loader
        .override_global(global::AGENT_TGID, &agent_tgid, true)
        .override_global("AYA_LOG_LEVEL", &settings.kernel_log_level, false)
        .map_max_entries(map::THREAD_START, pid_slots)
        .map_max_entries(map::PROCESS_STATE, pid_slots)
        .map_max_entries(map::EXCLUDED, pid_slots)
        .map_max_entries(map::SYSCALL_STATS, settings.syscall_stats_entries)
        .map_max_entries(map::SYSCALL_ERRORS, settings.syscall_errors_entries)
        .map_max_entries(map::PROCESS_EVENTS, settings.process_events_bytes)
        .map_max_entries(map::TCP_CONNS, settings.tcp_conns_entries)
        .map_max_entries(map::NET_BYTES, settings.net_bytes_entries)
        .map_max_entries(map::TCP_EVENTS, settings.tcp_events_bytes)
        .map_max_entries(map::PAYLOAD_EVENTS, settings.payload_events_bytes);
    if let Ok(offsets) = &offsets {
        for (global, offset) in offsets {
            loader.override_global(global, offset, true);
        }
    }
    let mut ebpf = loader
        .load(object())
        .context("loading the eBPF object (maps and BTF) into the kernel")?;

    let probes = PROBES
        .iter()
        .map(|probe| {
            if settings.disabled.iter().any(|name| name == probe.program) {
                warn!(
                    "probe {} disabled by --probes.disable: its metrics stay empty",
                    probe.program
                );
                let error = Some("disabled by --probes.disable".to_owned());
                return ProbeState {
                    probe: *probe,
                    program: probe.program,
                    error,
                };
            }
            if let (true, Err(why)) = (probe.reads_structs, &offsets) {
                warn!(
                    "probe {} NOT attached: {why}; its metrics stay empty, the other probes \
                     keep running",
                    probe.program
                );
                return ProbeState {
                    probe: *probe,
                    program: probe.program,
                    error: Some(why.clone()),
                };
            }
            attach_probe(&mut ebpf, probe)
        })
        .collect();
    let capacities = vec![
        (map::THREAD_START, u64::from(pid_slots)),
        (map::PROCESS_STATE, u64::from(pid_slots)),
        (map::EXCLUDED, u64::from(pid_slots)),
        (
            map::SYSCALL_STATS,
            u64::from(settings.syscall_stats_entries),
        ),
        (
            map::SYSCALL_ERRORS,
            u64::from(settings.syscall_errors_entries),
        ),
        (
            map::PROCESS_EVENTS,
            u64::from(settings.process_events_bytes),
        ),
        (map::TCP_CONNS, u64::from(settings.tcp_conns_entries)),
        (map::TCP_LISTENERS, u64::from(capacity::TCP_LISTENERS)),
        (map::NET_BYTES, u64::from(settings.net_bytes_entries)),
        (map::TCP_EVENTS, u64::from(settings.tcp_events_bytes)),
        (map::PAYLOAD_SOCKS, u64::from(capacity::PAYLOAD_SOCKS)),
        (
            map::PAYLOAD_EVENTS,
            u64::from(settings.payload_events_bytes),
        ),
    ];
    Ok(Loaded {
        ebpf,
        probes,
        pid_slots,
        capacities,
    })
}

fn attach_probe(ebpf: &mut Ebpf, probe: &Probe) -> ProbeState {
    let mut error = match attach(ebpf, probe.program, probe.tracepoint) {
        Ok(()) => None,
        Err(err) => Some(format!("{err:#}")),
    };
    let mut program = probe.program;
    if let (Some(first_error), Some(fallback)) = (&error, probe.fallback) {
        info!("probe {program} refused ({first_error}); trying its fallback {fallback}");
        program = fallback;
        error = attach(ebpf, fallback, probe.tracepoint)
            .err()
            .map(|err| format!("{err:#}"));
    }
    match &error {
        None => info!(
            "probe {program} attached to raw tracepoint {}",
            probe.tracepoint
        ),
        Some(err) => warn!(
            "probe {program} NOT attached to raw tracepoint {} (needs {}): {err}; its metrics \
             stay empty, the other probes keep running",
            probe.tracepoint, probe.needs
        ),
    }
    ProbeState {
        probe: *probe,
        program,
        error,
    }
}

fn attach(ebpf: &mut Ebpf, name: &str, tracepoint: &str) -> anyhow::Result<()> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    program.load().context("the verifier refused the program")?;
    program.attach(tracepoint).context("attach failed")?;
    Ok(())
}

/// Every offset of `global::KERNEL_OFFSETS`, or why the struct-reading probes cannot run.
fn kernel_offsets() -> Result<Vec<(&'static str, u32)>, String> {
    let started = std::time::Instant::now();
    let btf = btf::Btf::from_sys_fs().map_err(|err| format!("kernel BTF unavailable: {err}"))?;
    let offsets = global::KERNEL_OFFSETS
        .iter()
        .map(|&(global, path, size)| {
            let field = btf.field(path)?;
            if field.size != size {
                return Err(format!(
                    "kernel BTF: {path} is {} bytes, the probes read {size}",
                    field.size
                ));
            }
            Ok((global, field.offset))
        })
        .collect::<Result<Vec<_>, String>>()?;
    debug!(
        "kernel struct offsets from {} in {:?}: {offsets:?}",
        btf::VMLINUX,
        started.elapsed()
    );
    Ok(offsets)
}

/// Thread and process ids are below `pid_max`, so arrays of that size never collide.
fn pid_max() -> u32 {
    match std::fs::read_to_string("/proc/sys/kernel/pid_max") {
        Ok(text) => text.trim().parse().unwrap_or(capacity::PID_MAX_FALLBACK),
        Err(err) => {
            warn!(
                "cannot read /proc/sys/kernel/pid_max ({err}); sizing per-thread maps for {} ids",
                capacity::PID_MAX_FALLBACK
            );
            capacity::PID_MAX_FALLBACK
        }
    }
}
