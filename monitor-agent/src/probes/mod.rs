//! The kernel side as the agent sees it: load the embedded object, attach each probe on its
//! own, and hand out its maps (`kernel_maps`) and ring buffers (`event_ring`). Kernel struct
//! offsets for the network probes come from the running kernel's BTF (`btf`).
pub mod btf;
pub mod decode;
pub mod event_ring;
pub mod kernel_maps;
pub mod listeners;
mod object;
mod prealloc;
mod refusal;
pub mod tls;

use anyhow::Context as _;
use aya::{Ebpf, EbpfLoader, programs::RawTracePoint};
use log::{debug, info, warn};
use monitor_common::{capacity, global, map, program};

pub use object::object;

/// A program and the tracepoint it attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    pub program: &'static str,
    pub tracepoint: &'static str,
}

/// A probe: a program and the hook it attaches to, with the kernel feature it needs, and
/// the hook to use where the kernel refuses it (an older kernel's tracepoint signature, or
/// a tracepoint it does not have).
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The probe's name (`--probes.disable`) and its preferred program.
    pub program: &'static str,
    pub tracepoint: &'static str,
    pub fallback: Option<Hook>,
    /// What the kernel must offer, for the README and for errors.
    pub needs: &'static str,
    /// Reads kernel structs at offsets from BTF (`global::KERNEL_OFFSETS`).
    pub reads_structs: bool,
}

impl Probe {
    fn primary(&self) -> Hook {
        Hook {
            program: self.program,
            tracepoint: self.tracepoint,
        }
    }

    /// Whether this probe reads socket I/O (`--probes.socket-io` picks its hook).
    fn is_socket_io(&self) -> bool {
        self.fallback
            .is_some_and(|hook| hook.program == program::SOCK_IO_SYSCALL_EXIT)
    }
}

const NET_NEEDS: &str = "raw tracepoints (4.17+), kernel BTF (/sys/kernel/btf/vmlinux)";
const SCHED_NEEDS: &str = "raw tracepoints (4.17+), kernel BTF (task_struct.pid: the thread a \
    wakeup or switch names); sched_switch's prev_state (5.18+) spares sleepers a write";
const SOCKET_IO_NEEDS: &str = "raw tracepoints (4.17+), kernel BTF (/sys/kernel/btf/vmlinux); \
    the sock_*_length tracepoints (not in 6.1, in 6.12) or else the syscall-exit hook";

/// Socket I/O where the kernel has no `sock_send_length`/`sock_recv_length`: one program on
/// the exits of the read/write/send/recv system calls serves both directions.
const SOCKET_IO_FALLBACK: Hook = Hook {
    program: program::SOCK_IO_SYSCALL_EXIT,
    tracepoint: "sys_exit",
};

/// In attach order: process lifecycle first so generations exist before the first syscall
/// is keyed; `sys_enter` before `sys_exit` so exits find their start times; socket
/// destruction before the state changes that track sockets, so no entry outlives its socket.
pub const PROBES: [Probe; 17] = [
    Probe {
        program: program::PROCESS_EXEC,
        tracepoint: "sched_process_exec",
        fallback: None,
        needs: "raw tracepoints (4.17+), BPF ring buffer (5.8+)",
        reads_structs: false,
    },
    Probe {
        program: program::PROCESS_EXIT,
        tracepoint: "sched_process_exit",
        fallback: Some(Hook {
            program: program::PROCESS_EXIT_LEADER,
            tracepoint: "sched_process_exit",
        }),
        needs: "raw tracepoints (4.17+), BPF ring buffer (5.8+)",
        reads_structs: false,
    },
    Probe {
        program: program::SYS_ENTER,
        tracepoint: "sys_enter",
        fallback: None,
        needs: "raw tracepoints (4.17+)",
        reads_structs: false,
    },
    Probe {
        program: program::SYS_EXIT,
        tracepoint: "sys_exit",
        fallback: None,
        needs: "raw tracepoints (4.17+)",
        reads_structs: false,
    },
    Probe {
        program: program::TCP_DESTROY,
        tracepoint: "tcp_destroy_sock",
        fallback: None,
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_STATE,
        tracepoint: "inet_sock_set_state",
        fallback: None,
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_RETRANSMIT,
        tracepoint: "tcp_retransmit_skb",
        fallback: Some(Hook {
            program: program::TCP_RETRANSMIT_SENT,
            tracepoint: "tcp_retransmit_skb",
        }),
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_SEND_RESET,
        tracepoint: "tcp_send_reset",
        fallback: None,
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::TCP_RECEIVE_RESET,
        tracepoint: "tcp_receive_reset",
        fallback: None,
        needs: NET_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::SOCK_SEND,
        tracepoint: "sock_send_length",
        fallback: Some(SOCKET_IO_FALLBACK),
        needs: SOCKET_IO_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::SOCK_RECV,
        tracepoint: "sock_recv_length",
        fallback: Some(SOCKET_IO_FALLBACK),
        needs: SOCKET_IO_NEEDS,
        reads_structs: true,
    },
    // Wakeups before switches, so a switch finds the wait it ends.
    Probe {
        program: program::SCHED_WAKEUP,
        tracepoint: "sched_wakeup",
        fallback: None,
        needs: SCHED_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::SCHED_WAKEUP_NEW,
        tracepoint: "sched_wakeup_new",
        fallback: None,
        needs: SCHED_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::SCHED_SWITCH,
        tracepoint: "sched_switch",
        fallback: Some(Hook {
            program: program::SCHED_SWITCH_ANY,
            tracepoint: "sched_switch",
        }),
        needs: SCHED_NEEDS,
        reads_structs: true,
    },
    Probe {
        program: program::OOM_VICTIM,
        tracepoint: "mark_victim",
        fallback: Some(Hook {
            program: program::OOM_VICTIM_PID,
            tracepoint: "mark_victim",
        }),
        needs: "raw tracepoints (4.17+), kernel BTF (the victim's task_struct.tgid)",
        reads_structs: true,
    },
    // Issues before completions, so a completion finds its start.
    Probe {
        program: program::BLOCK_ISSUE,
        tracepoint: "block_rq_issue",
        fallback: Some(Hook {
            program: program::BLOCK_ISSUE_RQ,
            tracepoint: "block_rq_issue",
        }),
        needs: "raw tracepoints (4.17+)",
        reads_structs: false,
    },
    Probe {
        program: program::BLOCK_COMPLETE,
        tracepoint: "block_rq_complete",
        fallback: None,
        needs: "raw tracepoints (4.17+), kernel BTF (request.cmd_flags)",
        reads_structs: true,
    },
];

/// Where socket I/O (bytes, payload capture) is read: `--probes.socket-io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SocketIoHook {
    /// The `sock_*_length` tracepoints where the kernel has them, else the syscall exits.
    #[default]
    Auto,
    /// Only the `sock_send_length`/`sock_recv_length` tracepoints (not in Linux 6.1; in 6.12).
    Tracepoints,
    /// Only the exits of the read/write/send/recv system calls (any kernel; one more
    /// program on every system call exit).
    Syscalls,
}

/// Where HTTP/1.x requests are framed: `--probes.request-framing`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestFraming {
    /// In the kernel where its verifier accepts the framing programs (they need global BPF
    /// functions, 5.6+), else in user space.
    #[default]
    Auto,
    /// Only in the kernel: one record per request, no payload copied. Where the kernel
    /// refuses it, the socket I/O probes stay detached.
    Kernel,
    /// Only in user space: a prefix of every read/write of an HTTP socket is copied to the
    /// agent and parsed there (any kernel; more of the agent's CPU per request).
    User,
}

/// Each copying socket I/O program and the program that frames requests in the kernel on
/// the same hook.
const FRAMING_PROGRAMS: [(&str, &str); 3] = [
    (program::SOCK_SEND, program::SOCK_SEND_FRAMED),
    (program::SOCK_RECV, program::SOCK_RECV_FRAMED),
    (
        program::SOCK_IO_SYSCALL_EXIT,
        program::SOCK_IO_SYSCALL_EXIT_FRAMED,
    ),
];

/// The program that frames requests in the kernel on `hook`, for a socket I/O hook.
fn framed(hook: Hook) -> Option<Hook> {
    FRAMING_PROGRAMS
        .iter()
        .find(|(copying, _)| *copying == hook.program)
        .map(|&(_, program)| Hook {
            program,
            tracepoint: hook.tracepoint,
        })
}

fn is_framed(hook: &Hook) -> bool {
    FRAMING_PROGRAMS
        .iter()
        .any(|(_, framing)| *framing == hook.program)
}

/// Whether requests are framed in the kernel: a framing program runs.
pub fn frames_in_kernel(probes: &[ProbeState]) -> bool {
    probes
        .iter()
        .any(|state| state.attached() && is_framed(&state.hook))
}

/// Why a probe is not attached: an operator's choice is not a fault, and alerts and
/// `/healthz` must tell the two apart without parsing messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detached {
    /// Named by `--probes.disable`.
    Disabled,
    /// The kernel refused every hook, or the struct offsets it needs are unknown: why.
    Refused(String),
}

#[derive(Clone, Debug)]
pub struct ProbeState {
    pub probe: Probe,
    /// The hook that runs: `probe`'s own or its fallback (its own when none does).
    pub hook: Hook,
    /// `None` when attached; otherwise why not.
    pub detached: Option<Detached>,
}

impl ProbeState {
    pub fn attached(&self) -> bool {
        self.detached.is_none()
    }

    pub fn disabled(&self) -> bool {
        self.detached == Some(Detached::Disabled)
    }

    /// The hook as the probe metrics name it: a framing program under the name of the
    /// copying program it stands for, so that series and alerts do not depend on where the
    /// kernel lets requests be framed (`monitor_requests_framed_in_kernel` tells that).
    pub fn labelled_hook(&self) -> Hook {
        let program = FRAMING_PROGRAMS
            .iter()
            .find(|(_, framing)| *framing == self.hook.program)
            .map_or(self.hook.program, |&(copying, _)| copying);
        Hook {
            program,
            tracepoint: self.hook.tracepoint,
        }
    }

    /// The kernel's (or BTF's) reason, for a refused probe only.
    pub fn refusal(&self) -> Option<&str> {
        match &self.detached {
            Some(Detached::Refused(why)) => Some(why),
            _ => None,
        }
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
    pub request_events_bytes: u32,
    /// Programs of `PROBES` not to attach (`--probes.disable`).
    pub disabled: Vec<String>,
    pub socket_io: SocketIoHook,
    pub request_framing: RequestFraming,
    /// Copy database connections' reads/writes to the agent (`--probes.databases`).
    pub databases: bool,
    /// Frame Redis connections in the kernel (`--probes.redis`).
    pub redis: bool,
    /// Frame PostgreSQL connections in the kernel (`--probes.postgres`).
    pub postgres: bool,
    /// Copy HTTP/2 connections' reads/writes to the agent (`--probes.http2`).
    pub http2: bool,
    /// The TLS uprobes may run (`--probes.tls`).
    pub tls: bool,
    /// `global::TIMED_SYSCALLS`: the syscalls whose entry and exit read the clock.
    pub timed_syscalls: [u64; global::TIMED_SYSCALL_WORDS],
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
    /// The TLS library scans' findings (the `tls` room publishes them) and notices (the
    /// pipeline announces execs); `tls::spawn` starts the scans.
    pub tls: tls::TlsLink,
}

/// Loads the object; attaches every probe independently, so one the kernel refuses is
/// logged and reported while the others run.
pub fn load(settings: &LoadSettings) -> anyhow::Result<Loaded> {
    let pid_slots = pid_max();
    let agent_tgid = std::process::id();
    let offsets = kernel_offsets();
    let socket_io_directions = socket_io_directions(&settings.disabled);
    let databases = u32::from(settings.databases);
    let http2 = u32::from(settings.http2);
    let redis = u32::from(settings.redis);
    let postgres = u32::from(settings.postgres);
    let tls = u32::from(settings.tls);
    let mut loader = EbpfLoader::new();
    loader
        .override_global(global::AGENT_TGID, &agent_tgid, true)
        .override_global(global::SOCK_IO_DIRECTIONS, &socket_io_directions, true)
        .override_global(global::DATABASES, &databases, true)
        .override_global(global::HTTP2, &http2, true)
        .override_global(global::REDIS, &redis, true)
        .override_global(global::POSTGRES, &postgres, true)
        .override_global(global::TLS, &tls, true)
        .override_global(global::TIMED_SYSCALLS, &settings.timed_syscalls, true)
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
        .map_max_entries(map::PAYLOAD_EVENTS, settings.payload_events_bytes)
        .map_max_entries(map::REQUEST_EVENTS, settings.request_events_bytes);
    if let Ok(offsets) = &offsets {
        for (global, offset) in offsets {
            loader.override_global(global, offset, true);
        }
    }
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
        (map::BLOCK_STARTS, u64::from(capacity::BLOCK_STARTS)),
        (map::BLOCK_IO, u64::from(capacity::BLOCK_IO)),
        (
            map::PAYLOAD_EVENTS,
            u64::from(settings.payload_events_bytes),
        ),
        (map::HTTP_CONNS, u64::from(capacity::HTTP_CONNS)),
        (
            map::REQUEST_EVENTS,
            u64::from(settings.request_events_bytes),
        ),
        (map::DNS_SOCKS, u64::from(capacity::DNS_SOCKS)),
        (map::DNS_EVENTS, u64::from(capacity::DNS_EVENTS_BYTES)),
        (map::DB_EVENTS, u64::from(capacity::DB_EVENTS_BYTES)),
        (map::HTTP2_EVENTS, u64::from(capacity::HTTP2_EVENTS_BYTES)),
        (map::REDIS_CONNS, u64::from(capacity::REDIS_CONNS)),
        (map::REDIS_EVENTS, u64::from(capacity::REDIS_EVENTS_BYTES)),
        (map::PG_CONNS, u64::from(capacity::PG_CONNS)),
        (map::TLS_CALLS, u64::from(capacity::TLS_CALLS)),
        (map::TLS_SOCKS, u64::from(capacity::TLS_SOCKS)),
    ];
    let preallocated_object = preallocated_object(&capacities)?;
    let mut ebpf = loader
        .load(preallocated_object.as_deref().unwrap_or(object()))
        .context("loading the eBPF object (maps and BTF) into the kernel")?;

    let mut attached = Vec::new();
    let probes = PROBES
        .iter()
        .map(|probe| {
            let not_attached = |why: Detached| ProbeState {
                probe: *probe,
                hook: probe.primary(),
                detached: Some(why),
            };
            if settings.disabled.iter().any(|name| name == probe.program) {
                warn!(
                    "probe {} disabled by --probes.disable: its metrics stay empty",
                    probe.program
                );
                return not_attached(Detached::Disabled);
            }
            if let (true, Err(why)) = (probe.reads_structs, &offsets) {
                warn!(
                    "probe {} NOT attached: {why}; its metrics stay empty, the other probes \
                     keep running",
                    probe.program
                );
                return not_attached(Detached::Refused(why.clone()));
            }
            let hooks = hooks(probe, settings.socket_io, settings.request_framing);
            attach_probe(&mut ebpf, probe, &hooks, &mut attached)
        })
        .collect();
    Ok(Loaded {
        ebpf,
        probes,
        pid_slots,
        capacities,
        tls: tls::TlsLink::new(),
    })
}

/// On kernels whose verifier warns about run-time allocated maps (`prealloc`), a copy of the
/// object with every hash map preallocated; `None` where the object loads as built.
fn preallocated_object(capacities: &[(&str, u64)]) -> anyhow::Result<Option<Vec<u8>>> {
    let kernel = match aya::util::KernelVersion::current() {
        Ok(kernel) => kernel,
        Err(err) => {
            warn!("cannot tell the kernel version ({err}); loading maps as built");
            return Ok(None);
        }
    };
    if !prealloc::needed(kernel) {
        return Ok(None);
    }
    let (patched, maps) = prealloc::preallocate(object())?;
    let cpus = aya::util::nr_cpus().map_err(|(what, err)| anyhow::anyhow!("{what}: {err}"))?;
    let sizes: Vec<String> = maps
        .iter()
        .map(|map| {
            let entries = capacities
                .iter()
                .find(|(name, _)| *name == map.name)
                .map_or(map.max_entries, |&(_, entries)| entries as u32);
            let bytes = prealloc::bytes(map, entries, cpus);
            format!("{} {:.1} MiB", map.name, bytes as f64 / (1024.0 * 1024.0))
        })
        .collect();
    info!(
        "kernel {kernel} predates run-time allocation in tracing programs (6.1): hash maps \
         preallocated at load ({}, {cpus} CPUs); the --kernel.*-entries flags bound them",
        sizes.join(", ")
    );
    Ok(Some(patched))
}

/// What the shared syscall-exit hook of socket I/O records: the directions whose probe is
/// not disabled.
fn socket_io_directions(disabled: &[String]) -> u32 {
    let enabled = |program: &str| !disabled.iter().any(|name| name == program);
    let mut directions = 0;
    if enabled(program::SOCK_SEND) {
        directions |= global::SOCK_IO_SEND;
    }
    if enabled(program::SOCK_RECV) {
        directions |= global::SOCK_IO_RECV;
    }
    directions
}

/// The socket-I/O fallback reads the system call's number and arguments as x86_64 numbers
/// and registers them; elsewhere it would read the wrong calls, so it is not offered.
const SYSCALL_EXIT_CAPTURE: bool = cfg!(target_arch = "x86_64");

/// The hooks to try for `probe`, in order of preference. For socket I/O, every hook that
/// frames requests in the kernel comes before every hook that copies payloads (`auto`).
fn hooks(probe: &Probe, socket_io: SocketIoHook, framing: RequestFraming) -> Vec<Hook> {
    let primary = std::iter::once(probe.primary());
    let fallback = probe
        .fallback
        .filter(|_| SYSCALL_EXIT_CAPTURE || !probe.is_socket_io())
        .into_iter();
    let copying: Vec<Hook> = match (probe.is_socket_io(), socket_io) {
        (true, SocketIoHook::Tracepoints) => primary.collect(),
        (true, SocketIoHook::Syscalls) => fallback.collect(),
        _ => primary.chain(fallback).collect(),
    };
    if !probe.is_socket_io() {
        return copying;
    }
    let framing_hooks = copying.iter().filter_map(|&hook| framed(hook));
    match framing {
        RequestFraming::Auto => framing_hooks.chain(copying.iter().copied()).collect(),
        RequestFraming::Kernel => framing_hooks.collect(),
        RequestFraming::User => copying,
    }
}

/// Attaches the first hook of `probe` the kernel accepts. A hook another probe already
/// attached (a fallback that serves two probes) is shared, never attached twice: its
/// program would then run twice per event. Each refusal is one log line; the verifier's
/// whole log only at debug level.
///
/// Both directions of socket I/O must frame the same way (a connection's requests and
/// responses meet in one state): once one socket I/O hook runs, the other probe is offered
/// only hooks of its kind.
fn attach_probe(
    ebpf: &mut Ebpf,
    probe: &Probe,
    hooks: &[Hook],
    attached: &mut Vec<Hook>,
) -> ProbeState {
    let mut refusals = Vec::new();
    let kind = attached
        .iter()
        .find(|hook| framed(**hook).is_some() || is_framed(hook))
        .map(is_framed);
    let hooks = hooks.iter().copied().filter(|hook| {
        !probe.is_socket_io() || kind.is_none_or(|framed| framed == is_framed(hook))
    });
    for hook in hooks {
        if attached.contains(&hook) {
            info!(
                "probe {} uses {} on raw tracepoint {}, already attached",
                probe.program, hook.program, hook.tracepoint
            );
            return ProbeState {
                probe: *probe,
                hook,
                detached: None,
            };
        }
        match attach(ebpf, hook) {
            Ok(()) => {
                let instead = if refusals.is_empty() {
                    String::new()
                } else {
                    format!(" (instead of {})", refusals.join("; "))
                };
                info!(
                    "probe {} attached: {} on raw tracepoint {}{instead}",
                    probe.program, hook.program, hook.tracepoint
                );
                attached.push(hook);
                return ProbeState {
                    probe: *probe,
                    hook,
                    detached: None,
                };
            }
            Err(refusal) => {
                debug!(
                    "probe {}: {} on raw tracepoint {} refused; the kernel said:\n{}",
                    probe.program, hook.program, hook.tracepoint, refusal.detail
                );
                refusals.push(format!(
                    "{} on {}: {}",
                    hook.program, hook.tracepoint, refusal.summary
                ));
            }
        }
    }
    let why = refusals.join("; ");
    warn!(
        "probe {} NOT attached (needs {}): {why}; its metrics stay empty, the other probes \
         keep running",
        probe.program, probe.needs
    );
    ProbeState {
        probe: *probe,
        // Under the probe's own name, so that two probes sharing a fallback stay two series.
        hook: probe.primary(),
        detached: Some(Detached::Refused(why)),
    }
}

/// Loads and attaches one hook; a program the kernel refuses is unloaded again, so a
/// refused preferred hook leaves nothing behind.
fn attach(ebpf: &mut Ebpf, hook: Hook) -> Result<(), refusal::Refusal> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(hook.program)
        .ok_or_else(|| refusal::Refusal::plain("program missing from the object"))?
        .try_into()
        .map_err(|err: aya::programs::ProgramError| refusal::Refusal::plain(&err.to_string()))?;
    program
        .load()
        .map_err(|err| refusal::Refusal::of_load(&err))?;
    if let Err(err) = program.attach(hook.tracepoint) {
        let _ = program.unload();
        return Err(refusal::Refusal::of_attach(&err));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_named(program: &str) -> &'static Probe {
        PROBES
            .iter()
            .find(|probe| probe.program == program)
            .unwrap()
    }

    fn programs(hooks: &[Hook]) -> Vec<&str> {
        hooks.iter().map(|hook| hook.program).collect()
    }

    #[test]
    fn socket_io_tries_the_framing_programs_before_the_copying_ones() {
        let send = probe_named(program::SOCK_SEND);
        let all = |framing| hooks(send, SocketIoHook::Auto, framing);
        assert_eq!(
            programs(&all(RequestFraming::Auto)),
            [
                "mon_sock_send_framed",
                "mon_sock_io_exit_framed",
                "mon_sock_send",
                "mon_sock_io_exit"
            ]
        );
        assert_eq!(
            programs(&all(RequestFraming::Kernel)),
            ["mon_sock_send_framed", "mon_sock_io_exit_framed"]
        );
        assert_eq!(
            programs(&all(RequestFraming::User)),
            ["mon_sock_send", "mon_sock_io_exit"]
        );
        let syscalls = hooks(send, SocketIoHook::Syscalls, RequestFraming::Auto);
        assert_eq!(
            programs(&syscalls),
            ["mon_sock_io_exit_framed", "mon_sock_io_exit"]
        );
        // Other probes have no framing program.
        let exec = probe_named(program::PROCESS_EXEC);
        assert_eq!(
            programs(&hooks(exec, SocketIoHook::Auto, RequestFraming::Kernel)),
            ["mon_proc_exec"]
        );
    }

    #[test]
    fn a_framing_program_is_labelled_as_the_copying_one_it_stands_for() {
        let state = |program, tracepoint| ProbeState {
            probe: *probe_named(program::SOCK_RECV),
            hook: Hook {
                program,
                tracepoint,
            },
            detached: None,
        };
        let framed = state(program::SOCK_IO_SYSCALL_EXIT_FRAMED, "sys_exit");
        assert_eq!(framed.labelled_hook().program, "mon_sock_io_exit");
        assert_eq!(framed.labelled_hook().tracepoint, "sys_exit");
        assert!(frames_in_kernel(std::slice::from_ref(&framed)));
        let copying = state(program::SOCK_RECV, "sock_recv_length");
        assert_eq!(copying.labelled_hook(), copying.hook);
        assert!(!frames_in_kernel(&[copying]));
    }
}
