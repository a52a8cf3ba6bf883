//! Every kernel map of the monitor, with its sizing rationale. Sizes marked "at load" are
//! overridden by the agent (`EbpfLoader::map_max_entries`); the values here are defaults.
use aya_ebpf::{
    Global,
    bindings::{
        BPF_F_NO_PREALLOC, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
    },
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use monitor_common::{
    BlockKey, BlockStart, Counter, DbEvent, Histogram, ListenerKey, NetBytes, Owner, ProcessEvent,
    ProcessState, SchedCpu, SyscallErrorKey, SyscallKey, TcpConn, ThreadStart, capacity,
};

const EEXIST: i64 = 17;

/// The agent's own TGID (set at load): its scrapes and map reads are not what users watch.
#[unsafe(no_mangle)]
pub static AGENT_TGID: Global<u32> = Global::new(0);

/// Indexed by thread id, sized to `pid_max` at load so no two live threads share a slot.
/// Overwritten at every `sys_enter`, cleared at `sys_exit` and thread exit: it never fills,
/// and an array lookup is inlined by the verifier (no helper call, no hashing, no delete).
#[map]
pub static THREAD_START: Array<ThreadStart> =
    Array::with_max_entries(capacity::PID_MAX_FALLBACK, 0);

/// Indexed by TGID, sized to `pid_max` at load: the generation of the process that holds
/// that PID now, and whether an event has named it (see `SyscallKey`).
#[map]
pub static PROCESS_STATE: Array<ProcessState> =
    Array::with_max_entries(capacity::PID_MAX_FALLBACK, 0);

/// Indexed by TGID, sized to `pid_max` at load, written only by the agent: `generation + 1`
/// of a process incarnation the selection rules exclude (0: none). The probes skip it, so an
/// excluded process costs one inlined array read per syscall; a new generation (exec) is
/// not excluded until the agent has judged it.
#[map]
pub static EXCLUDED: Array<u32> = Array::with_max_entries(capacity::PID_MAX_FALLBACK, 0);

/// Whether the agent excluded this incarnation.
#[inline(always)]
pub fn is_excluded(tgid: u32, generation: u32) -> bool {
    EXCLUDED
        .get(tgid)
        .is_some_and(|&marked| marked == generation.wrapping_add(1))
}

/// Hot path, aggregated in the kernel. No prealloc: memory follows the keys in use, not
/// `max_entries × CPUs`. The agent folds and deletes keys of finished generations.
#[map]
pub static SYSCALL_STATS: PerCpuHashMap<SyscallKey, Histogram> =
    PerCpuHashMap::with_max_entries(capacity::SYSCALL_STATS, BPF_F_NO_PREALLOC);

#[map]
pub static SYSCALL_ERRORS: PerCpuHashMap<SyscallErrorKey, u64> =
    PerCpuHashMap::with_max_entries(capacity::SYSCALL_ERRORS, BPF_F_NO_PREALLOC);

/// Discrete process lifecycle events (exec, exit): names and clean-up.
#[map]
pub static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::PROCESS_EVENTS_BYTES, 0);

/// Listening sockets by (netns, port), filled at `listen()` in the owner's context: inbound
/// connections are set up in softirq context, where `current` is whoever was interrupted.
#[map]
pub static TCP_LISTENERS: HashMap<ListenerKey, Owner> =
    HashMap::with_max_entries(capacity::TCP_LISTENERS, BPF_F_NO_PREALLOC);

/// Block requests in flight, by the request's kernel address: issued when, by whom.
#[map]
pub static BLOCK_STARTS: LruHashMap<u64, BlockStart> =
    LruHashMap::with_max_entries(capacity::BLOCK_STARTS, 0);

/// Block I/O per (process incarnation, operation), summed per CPU.
#[map]
pub static BLOCK_IO: PerCpuHashMap<BlockKey, Histogram> =
    PerCpuHashMap::with_max_entries(capacity::BLOCK_IO, BPF_F_NO_PREALLOC);

/// Tracked sockets by kernel address, from connect/accept to `tcp_destroy_sock`. Most TCP
/// events fire in softirq or timer context; this map is how they find their process.
#[map]
pub static TCP_CONNS: HashMap<u64, TcpConn> =
    HashMap::with_max_entries(capacity::TCP_CONNS, BPF_F_NO_PREALLOC);

/// Socket payload bytes per process incarnation, summed in the kernel: one update per
/// send/receive call, far too frequent for the ring buffer.
#[map]
pub static NET_BYTES: PerCpuHashMap<Owner, NetBytes> =
    PerCpuHashMap::with_max_entries(capacity::NET_BYTES, BPF_F_NO_PREALLOC);

/// Discrete TCP events (a few per connection): opens, failures, closes, retransmits, resets.
#[map]
pub static TCP_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::TCP_EVENTS_BYTES, 0);

/// Payload-capture verdict per socket (`payload::Verdict`): judged on the first reads and
/// writes, then one lookup per call. LRU: a socket evicted is judged again, nothing leaks.
#[map]
pub static PAYLOAD_SOCKS: LruHashMap<u64, u32> =
    LruHashMap::with_max_entries(capacity::PAYLOAD_SOCKS, 0);

/// Captured socket reads and writes of connections that look like a request protocol.
#[map]
pub static PAYLOAD_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::PAYLOAD_EVENTS_BYTES, 0);

/// HTTP/1.x framing state per socket judged HTTP by the framing programs (`framing`). LRU:
/// a connection forgotten under pressure is judged again at its next request.
#[map]
pub static HTTP_CONNS: LruHashMap<u64, HttpConn> =
    LruHashMap::with_max_entries(capacity::HTTP_CONNS, 0);

/// Value of `HTTP_CONNS`: a connection's framing, and whose it is. A freed socket's address
/// is soon another socket's, possibly another process's and with the other role (wrk's
/// client socket, then nginx's accepted one); `tcp_destroy_sock` forgets the framing, and
/// where that probe is disabled the owner tells a new connection from the old one.
#[repr(C)]
pub struct HttpConn {
    pub conn: monitor_framing::Conn,
    pub tgid: u32,
}

/// Everything a read/write's framing works on, kept in this CPU's `FRAME_SCRATCH` value
/// rather than on the stack: the framing's global functions take scalars only (all 5.10's
/// verifier allows), so they find it there. The verifier also knows no value in map memory,
/// so it checks each path once, not once per constant a caller could have left on the
/// stack (a step taken, a side, the time not yet read, the address family).
#[repr(C)]
pub struct Scratch {
    pub io: monitor_framing::Io,
    pub cursor: monitor_framing::Cursor,
    /// The side being read (`monitor_framing`'s requests or responses).
    pub side: u64,
    /// The time of the read/write, once asked (0: not yet).
    pub now: u64,
    /// The window's next byte to step, and how many it holds.
    pub at: u32,
    pub got: u32,
    /// Bytes used when a byte ended a window's reading, and that byte's step
    /// (`framing::STEP_*`).
    pub used: u32,
    pub step: u8,
    /// How the turns ended (`framing::TURN_*`).
    pub turn: u8,
    /// The socket's address family.
    pub family: u16,
    /// The socket, its owner, and the caller's buffer (user memory).
    pub sk: u64,
    pub owner: Owner,
    pub buffer: u64,
    /// Where a vectored read/write's pieces are (`payload::UserBuffer`): kept here, not on
    /// the framing programs' stack, for an HTTP/2 socket's first copy after its judgement.
    pub vector: u64,
    pub pieces: u64,
}

/// Per CPU: where the framing copies a window of a read/write, keeps what it changes while
/// framing one (`Scratch`), and the all-zero connection new `HTTP_CONNS` entries are
/// created from (a `Conn` is too big for the BPF stack).
#[repr(C)]
pub struct FrameScratch {
    pub window: [u8; monitor_framing::WINDOW],
    pub state: Scratch,
    /// The connection being framed: a copy of its `HTTP_CONNS` value, written back after
    /// (the global functions cannot be handed a pointer to it).
    pub conn: HttpConn,
    pub blank: HttpConn,
}

#[map]
pub static FRAME_SCRATCH: PerCpuArray<FrameScratch> = PerCpuArray::with_max_entries(1, 0);

/// One record per request completed by the framing programs (`RequestEvent`).
#[map]
pub static REQUEST_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::REQUEST_EVENTS_BYTES, 0);

/// Unconnected UDP sockets that sent a DNS query (`dns`), and the TGID that sent it: their
/// reads are looked at for the answer. LRU: a socket forgotten only misses answers, and a
/// freed socket's address reused by another process is told apart by the TGID.
#[map]
pub static DNS_SOCKS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(capacity::DNS_SOCKS, 0);

/// One record per DNS message a process sent or received (`PayloadEvent`, from `dns`).
#[map]
pub static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::DNS_EVENTS_BYTES, 0);

/// Per CPU: the database read/write being copied (`database`), whose head and captured bytes
/// then go to `DB_EVENTS` as one record of just that length.
#[map]
pub static DB_SCRATCH: PerCpuArray<DbEvent> = PerCpuArray::with_max_entries(1, 0);

/// One record per read/write of a database connection (`DbEvent`'s head and bytes).
#[map]
pub static DB_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::DB_EVENTS_BYTES, 0);

/// One record per read/write of an HTTP/2 connection, cleartext or a TLS library's
/// plaintext (`DbEvent`'s head and bytes, copied by `database` too).
#[map]
pub static HTTP2_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::HTTP2_EVENTS_BYTES, 0);

/// Redis framing state per socket judged Redis (`redis`). LRU: a connection forgotten under
/// pressure is judged again at its next command.
#[map]
pub static REDIS_CONNS: LruHashMap<u64, RedisConn> =
    LruHashMap::with_max_entries(capacity::REDIS_CONNS, 0);

/// Value of `REDIS_CONNS`: a connection's framing, and whose it is (see `HttpConn`).
#[repr(C)]
pub struct RedisConn {
    pub conn: monitor_framing::resp::RespConn,
    pub tgid: u32,
    pub _pad: u32,
}

/// What a Redis read/write's framing works on besides its connection (see `Scratch`).
#[repr(C)]
pub struct RedisState {
    pub io: monitor_framing::Io,
    pub cursor: monitor_framing::Cursor,
    /// The side being read (commands or replies).
    pub side: u64,
    /// The time of the read/write, once asked (0: not yet).
    pub now: u64,
    /// The window's next byte to step, how many it holds, and where a run stopped.
    pub at: u32,
    pub got: u32,
    pub used: u32,
    pub step: u8,
    pub turn: u8,
    pub family: u16,
    pub sk: u64,
    pub owner: Owner,
    pub buffer: u64,
    /// The socket's peer and local port, read once per read/write for its records.
    pub remote: monitor_common::Endpoint,
    pub local_port: u16,
    /// A message to write (its side + 1; 0: none): see `redis::mon_redis_emit`.
    pub emit: u8,
    pub _pad: u8,
}

/// Per CPU: the window, the state and the connection a Redis read/write is framed with,
/// and the all-zero connection new entries are made from.
#[repr(C)]
pub struct RedisScratch {
    pub window: [u8; monitor_framing::WINDOW],
    pub state: RedisState,
    pub conn: RedisConn,
    pub blank: RedisConn,
}

#[map]
pub static REDIS_SCRATCH: PerCpuArray<RedisScratch> = PerCpuArray::with_max_entries(1, 0);

/// One record per Redis command or reply framed by `redis` (`RedisEvent`).
#[map]
pub static REDIS_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::REDIS_EVENTS_BYTES, 0);

/// PostgreSQL framing state per socket judged PostgreSQL (`postgres`). LRU: a connection
/// forgotten under pressure is judged again at its next query.
#[map]
pub static PG_CONNS: LruHashMap<u64, PgConnEntry> =
    LruHashMap::with_max_entries(capacity::PG_CONNS, 0);

/// Value of `PG_CONNS`: a connection's framing, and whose it is (see `HttpConn`).
#[repr(C)]
pub struct PgConnEntry {
    pub conn: monitor_framing::pg::PgConn,
    pub tgid: u32,
    pub _pad: u32,
}

/// The read/write a PostgreSQL connection's framing works on (see `Scratch`).
#[repr(C)]
pub struct PgState {
    /// The caller's buffer.
    pub address: u64,
    /// The time of the read/write, once asked (0: not yet).
    pub now: u64,
    /// Bytes moved, and those of them readable at `address`.
    pub length: u32,
    pub readable: u32,
    /// The side being framed (`monitor_framing::pg::side`).
    pub side: u32,
    pub _pad: u32,
}

/// Per CPU: the state and the connection a PostgreSQL read/write is framed with, and the
/// all-zero connection new entries are made from. Records are built in `DB_SCRATCH`.
#[repr(C)]
pub struct PgScratch {
    pub state: PgState,
    pub conn: PgConnEntry,
    pub blank: PgConnEntry,
}

#[map]
pub static PG_SCRATCH: PerCpuArray<PgScratch> = PerCpuArray::with_max_entries(1, 0);

/// Copies a value a word at a time. A plain assignment compiles to a call of the linker's
/// `memcpy`, which copies byte by byte: thousands of instructions per read/write.
///
/// # Safety
/// `dst` and `src` are valid, 8-byte aligned and do not overlap.
#[inline(always)]
pub unsafe fn copy_words<T>(dst: *mut T, src: *const T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8)) };
    let words = core::mem::size_of::<T>() / 8;
    let (dst, src) = (dst.cast::<u64>(), src.cast::<u64>());
    for word in 0..words {
        // SAFETY: by the caller; `word` < words stays inside both values. Volatile, or the
        // compiler turns the loop back into a call of `memcpy`.
        unsafe {
            core::ptr::write_volatile(dst.add(word), core::ptr::read_volatile(src.add(word)))
        };
    }
}

/// Per CPU: the task on it since when, and how long it waited first (`SchedCpu`).
#[map]
pub static SCHED_CPU: PerCpuArray<SchedCpu> = PerCpuArray::with_max_entries(1, 0);

/// Run-queue waits per process incarnation, summed per CPU: one update per context switch,
/// far too frequent for a ring buffer.
#[map]
pub static RUNQ_LATENCY: PerCpuHashMap<Owner, Histogram> =
    PerCpuHashMap::with_max_entries(capacity::RUNQ_LATENCY, BPF_F_NO_PREALLOC);

/// CPU time per process incarnation (nanoseconds), summed per CPU.
#[map]
pub static CPU_TIME: PerCpuHashMap<Owner, u64> =
    PerCpuHashMap::with_max_entries(capacity::CPU_TIME, BPF_F_NO_PREALLOC);

/// OOM kills per victim process incarnation (rare: a hash map, summed per CPU all the same
/// so every per-process map is read the same way).
#[map]
pub static OOM_KILLS: PerCpuHashMap<Owner, u64> =
    PerCpuHashMap::with_max_entries(capacity::OOM_KILLS, BPF_F_NO_PREALLOC);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::LEN, 0);

/// Submit flags for a record of a high-rate ring: wake the agent only once `batch_bytes` are
/// waiting. One wakeup per record costs the reader (and the CPU it steals from the workload)
/// more than reading the records; the agent also drains these rings on a short timer.
#[inline(always)]
pub fn batched_wakeup(ring: &RingBuf, batch_bytes: u64) -> u64 {
    if ring.query(BPF_RB_AVAIL_DATA.into()) >= batch_bytes {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

/// This CPU's value of `key` in `map`, created as `zero` if missing; a full map is counted.
#[inline(always)]
pub fn per_cpu_entry<K, V>(
    map: &PerCpuHashMap<K, V>,
    key: &K,
    zero: V,
    full: Counter,
) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    if let Err(err) = map.insert(key, &zero, BPF_NOEXIST.into()) {
        // EEXIST: another CPU created the key between our lookup and insert.
        if i64::from(err) != -EEXIST {
            bump(full);
            return None;
        }
    }
    map.get_ptr_mut(key)
}

#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot, written only by this CPU with preemption disabled.
        unsafe { *slot += 1 };
    }
}

/// Writes one `PROCESS_EVENTS` record for the current task; a full buffer is counted.
#[inline(always)]
pub fn emit_process_event(kind: u32, tgid: u32, generation: u32, parent_tgid: u32) {
    bump(Counter::ProcessEventsProduced);
    let Some(mut entry) = PROCESS_EVENTS.reserve::<ProcessEvent>(0) else {
        bump(Counter::ProcessEventsDropped);
        return;
    };
    entry.write(ProcessEvent {
        kind,
        tgid,
        generation,
        parent_tgid,
        // SAFETY: no preconditions; a plain helper call.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(0);
}
