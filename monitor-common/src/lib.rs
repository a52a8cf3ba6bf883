//! The wire contract between the eBPF probes (`monitor-ebpf`) and the agent (`monitor-agent`).
//!
//! Everything that crosses the kernel/user boundary is defined here once: map and program
//! names, map key and value layouts, ring-buffer records and the histogram bucket scheme.
//! Layout rules: `#[repr(C)]`, fixed-width integers, explicit padding, no `bool` or Rust
//! `enum` on the wire, and a compile-time size check per type.
#![no_std]

/// Program names (the Rust function names in `monitor-ebpf`, which aya looks up).
pub mod program {
    pub const SYS_ENTER: &str = "mon_sys_enter";
    pub const SYS_EXIT: &str = "mon_sys_exit";
    pub const PROCESS_EXEC: &str = "mon_proc_exec";
    pub const PROCESS_EXIT: &str = "mon_proc_exit";
    /// Fallback for kernels whose `sched_process_exit` lacks `group_dead` (before 6.16).
    pub const PROCESS_EXIT_LEADER: &str = "mon_proc_exit_leader";
    /// Empty hooks on the same tracepoints: the benchmark's floor, never attached by the agent.
    pub const NOOP_SYS_ENTER: &str = "noop_sys_enter";
    pub const NOOP_SYS_EXIT: &str = "noop_sys_exit";
    pub const NOOP_SCHED_SWITCH: &str = "noop_sched_switch";
    pub const NOOP_SCHED_WAKEUP: &str = "noop_sched_wakeup";
    pub const NOOP_SCHED_WAKEUP_NEW: &str = "noop_sched_wakeup_new";
    /// TCP lifecycle (`inet_sock_set_state`): connects, accepts, failures, closes.
    pub const TCP_STATE: &str = "mon_tcp_state";
    /// `tcp_destroy_sock`: the last event of a socket, frees its `TCP_CONNS` entry.
    pub const TCP_DESTROY: &str = "mon_tcp_destroy";
    pub const TCP_RETRANSMIT: &str = "mon_tcp_retransmit";
    /// Fallback for kernels whose `tcp_retransmit_skb` has no `err` argument (6.12 and older):
    /// there it fires only for retransmissions that were sent.
    pub const TCP_RETRANSMIT_SENT: &str = "mon_tcp_retransmit_sent";
    pub const TCP_SEND_RESET: &str = "mon_tcp_send_reset";
    pub const TCP_RECEIVE_RESET: &str = "mon_tcp_recv_reset";
    /// `sock_send_length` / `sock_recv_length`: bytes through `sock_sendmsg`/`sock_recvmsg`.
    pub const SOCK_SEND: &str = "mon_sock_send";
    pub const SOCK_RECV: &str = "mon_sock_recv";
    /// Fallback for both on kernels without those tracepoints (6.1 and older): the exits of the
    /// read/write/send/recv system calls, the socket found from the file descriptor.
    pub const SOCK_IO_SYSCALL_EXIT: &str = "mon_sock_io_exit";
    /// The same three hooks with HTTP/1.x framed in the kernel (global functions, 5.6+): one
    /// `REQUEST_EVENTS` record per completed request instead of a copy of every read and
    /// write. Where the kernel refuses them, the copying programs above run instead.
    pub const SOCK_SEND_FRAMED: &str = "mon_sock_send_framed";
    pub const SOCK_RECV_FRAMED: &str = "mon_sock_recv_framed";
    pub const SOCK_IO_SYSCALL_EXIT_FRAMED: &str = "mon_sock_io_exit_framed";
    /// Scheduler: a task became runnable (woken, or new), and a CPU switched tasks.
    pub const SCHED_WAKEUP: &str = "mon_sched_wakeup";
    pub const SCHED_WAKEUP_NEW: &str = "mon_sched_wakeup_new";
    pub const SCHED_SWITCH: &str = "mon_sched_switch";
    pub const SCHED_SWITCH_ANY: &str = "mon_sched_switch_any";
    /// Memory: the OOM killer chose a victim (`mark_victim(task, uid)`, or `(pid)` before).
    pub const OOM_VICTIM: &str = "mon_oom_victim";
    pub const OOM_VICTIM_PID: &str = "mon_oom_victim_pid";
    /// Block I/O: a request went to the device and came back (`block_rq_complete`). The issue
    /// hook reads `block_rq_issue(q, rq)` (before 5.11), a second argument that later
    /// kernels refuse to attach: there the fallback reads `block_rq_issue(rq)`. The other
    /// order would attach the one-argument reader on 5.10 too, reading `q` as the request.
    pub const BLOCK_ISSUE: &str = "mon_block_issue";
    pub const BLOCK_ISSUE_RQ: &str = "mon_block_issue_rq";
    pub const BLOCK_COMPLETE: &str = "mon_block_complete";
    /// TLS (uprobes on libssl): the entry of `SSL_read`/`SSL_write`, and of their `_ex`
    /// forms; their returns, copying the plaintext or framing it in the kernel like the
    /// socket I/O programs.
    pub const SSL_CALL: &str = "mon_ssl_call";
    pub const SSL_CALL_EX: &str = "mon_ssl_call_ex";
    pub const SSL_READ_RET: &str = "mon_ssl_read_ret";
    pub const SSL_WRITE_RET: &str = "mon_ssl_write_ret";
    pub const SSL_READ_RET_FRAMED: &str = "mon_ssl_read_ret_framed";
    pub const SSL_WRITE_RET_FRAMED: &str = "mon_ssl_write_ret_framed";
    /// The return of `SSL_do_handshake`: the connection's socket, before its first read.
    pub const SSL_HANDSHAKE_RET: &str = "mon_ssl_handshake_ret";
}

/// Map names (the `static` names in `monitor-ebpf`).
pub mod map {
    pub const THREAD_START: &str = "THREAD_START";
    pub const PROCESS_STATE: &str = "PROCESS_STATE";
    pub const EXCLUDED: &str = "EXCLUDED";
    pub const SYSCALL_STATS: &str = "SYSCALL_STATS";
    pub const SYSCALL_ERRORS: &str = "SYSCALL_ERRORS";
    pub const PROCESS_EVENTS: &str = "PROCESS_EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const TCP_LISTENERS: &str = "TCP_LISTENERS";
    pub const TCP_CONNS: &str = "TCP_CONNS";
    pub const NET_BYTES: &str = "NET_BYTES";
    pub const TCP_EVENTS: &str = "TCP_EVENTS";
    pub const PAYLOAD_SOCKS: &str = "PAYLOAD_SOCKS";
    pub const PAYLOAD_EVENTS: &str = "PAYLOAD_EVENTS";
    pub const HTTP_CONNS: &str = "HTTP_CONNS";
    pub const FRAME_SCRATCH: &str = "FRAME_SCRATCH";
    pub const REQUEST_EVENTS: &str = "REQUEST_EVENTS";
    pub const DNS_SOCKS: &str = "DNS_SOCKS";
    pub const DNS_EVENTS: &str = "DNS_EVENTS";
    pub const DB_SCRATCH: &str = "DB_SCRATCH";
    pub const DB_EVENTS: &str = "DB_EVENTS";
    pub const HTTP2_EVENTS: &str = "HTTP2_EVENTS";
    pub const REDIS_CONNS: &str = "REDIS_CONNS";
    pub const REDIS_SCRATCH: &str = "REDIS_SCRATCH";
    pub const REDIS_EVENTS: &str = "REDIS_EVENTS";
    pub const PG_CONNS: &str = "PG_CONNS";
    pub const PG_SCRATCH: &str = "PG_SCRATCH";
    pub const SCHED_CPU: &str = "SCHED_CPU";
    pub const RUNQ_LATENCY: &str = "RUNQ_LATENCY";
    pub const CPU_TIME: &str = "CPU_TIME";
    pub const OOM_KILLS: &str = "OOM_KILLS";
    pub const BLOCK_STARTS: &str = "BLOCK_STARTS";
    pub const BLOCK_IO: &str = "BLOCK_IO";
    pub const TLS_CALLS: &str = "TLS_CALLS";
    pub const TLS_SOCKS: &str = "TLS_SOCKS";

    /// Every map of the object, for tools that look for leftovers.
    pub const ALL: [&str; 34] = [
        THREAD_START,
        PROCESS_STATE,
        EXCLUDED,
        SYSCALL_STATS,
        SYSCALL_ERRORS,
        PROCESS_EVENTS,
        COUNTERS,
        TCP_LISTENERS,
        TCP_CONNS,
        NET_BYTES,
        TCP_EVENTS,
        PAYLOAD_SOCKS,
        PAYLOAD_EVENTS,
        HTTP_CONNS,
        FRAME_SCRATCH,
        REQUEST_EVENTS,
        DNS_SOCKS,
        DNS_EVENTS,
        DB_SCRATCH,
        DB_EVENTS,
        HTTP2_EVENTS,
        REDIS_CONNS,
        REDIS_SCRATCH,
        REDIS_EVENTS,
        PG_CONNS,
        PG_SCRATCH,
        SCHED_CPU,
        RUNQ_LATENCY,
        CPU_TIME,
        OOM_KILLS,
        BLOCK_STARTS,
        BLOCK_IO,
        TLS_CALLS,
        TLS_SOCKS,
    ];
}

/// Load-time globals (`aya_ebpf::Global`), set with `EbpfLoader::override_global`.
pub mod global {
    /// TGID of the agent itself: its own syscalls are not recorded.
    pub const AGENT_TGID: &str = "AGENT_TGID";

    /// Byte offsets of kernel struct members the network probes read, found in the running
    /// kernel's BTF at start-up (never hard-coded): (global, `struct.member` path, size).
    /// The probes see them as constants (`.rodata` is frozen at load).
    pub const KERNEL_OFFSETS: [(&str, &str, u32); 22] = [
        ("OFF_SKC_FAMILY", "sock_common.skc_family", 2),
        ("OFF_SKC_DADDR", "sock_common.skc_daddr", 4),
        ("OFF_SKC_V6_DADDR", "sock_common.skc_v6_daddr", 16),
        ("OFF_SKC_DPORT", "sock_common.skc_dport", 2),
        ("OFF_SKC_NUM", "sock_common.skc_num", 2),
        ("OFF_SKC_NET", "sock_common.skc_net", 8),
        ("OFF_NET_INUM", "net.ns.inum", 4),
        ("OFF_SK_PROTOCOL", "sock.sk_protocol", 2),
        ("OFF_SK_ERR", "sock.sk_err", 4),
        ("OFF_SRTT_US", "tcp_sock.srtt_us", 4),
        // From a file descriptor to its socket, for the system-call exit path of socket I/O
        // (`program::SOCK_IO_SYSCALL_EXIT`): current->files->fdt->fd[fd]->private_data->sk.
        ("OFF_TASK_FILES", "task_struct.files", 8),
        ("OFF_FILES_FDT", "files_struct.fdt", 8),
        ("OFF_FDT_MAX_FDS", "fdtable.max_fds", 4),
        ("OFF_FDT_FD", "fdtable.fd", 8),
        ("OFF_FILE_INODE", "file.f_inode", 8),
        ("OFF_FILE_PRIVATE_DATA", "file.private_data", 8),
        ("OFF_INODE_MODE", "inode.i_mode", 2),
        ("OFF_SOCKET_SK", "socket.sk", 8),
        // The OOM victim's process (`mark_victim(task, uid)`), and an exec'ing process's
        // parent (`real_parent->tgid`).
        ("OFF_TASK_TGID", "task_struct.tgid", 4),
        ("OFF_TASK_REAL_PARENT", "task_struct.real_parent", 8),
        // The thread a scheduler event names (`sched_wakeup(p)`, `sched_switch(.., next)`).
        ("OFF_TASK_PID", "task_struct.pid", 4),
        // A block request's operation (`REQ_OP_*` in the low bits of `request.cmd_flags`).
        ("OFF_RQ_CMD_FLAGS", "request.cmd_flags", 4),
    ];

    /// Which directions the system-call exit path of socket I/O records (bit 0: sends, bit
    /// 1: receives): it serves both `program::SOCK_SEND` and `program::SOCK_RECV`, so
    /// `--probes.disable` of one of them must still reach it.
    pub const SOCK_IO_DIRECTIONS: &str = "SOCK_IO_DIRECTIONS";
    pub const SOCK_IO_SEND: u32 = 1;
    pub const SOCK_IO_RECV: u32 = 2;

    /// 1 when the reads/writes of database connections are copied to the agent
    /// (`--probes.databases`), 0 when such connections are ignored like any other.
    pub const DATABASES: &str = "DATABASES";

    /// 1 when Redis connections are framed in the kernel (`--probes.redis`), one
    /// `REDIS_EVENTS` record per command and reply.
    pub const REDIS: &str = "REDIS";

    /// 1 when PostgreSQL connections are framed in the kernel (`--probes.postgres`): a
    /// `DB_EVENTS` record per message that starts, names or answers an operation.
    pub const POSTGRES: &str = "POSTGRES";

    /// 1 when the reads/writes of HTTP/2 connections are copied to the agent
    /// (`--probes.http2`), which frames them and decodes their headers (HPACK).
    pub const HTTP2: &str = "HTTP2";

    /// 1 when the TLS uprobes may run (`--probes.tls`): only then do the socket I/O probes
    /// look for a TLS call in progress on the thread.
    pub const TLS: &str = "TLS";

    /// Bit `nr % 64` of word `nr / 64` set when syscall `nr` is timed: it has a latency
    /// histogram (`--syscalls.histograms`). The others are only counted, and their entry and
    /// exit skip the clock. Numbers past the words are timed.
    pub const TIMED_SYSCALLS: &str = "TIMED_SYSCALLS";
    pub const TIMED_SYSCALL_WORDS: usize = 8;

    /// `TIMED_SYSCALLS`' words for the syscalls `timed` says have a histogram.
    pub fn timed_syscalls(timed: impl Fn(u32) -> bool) -> [u64; TIMED_SYSCALL_WORDS] {
        let mut words = [0u64; TIMED_SYSCALL_WORDS];
        let mut nr = 0;
        while nr < TIMED_SYSCALL_WORDS * 64 {
            if timed(nr as u32) {
                words[nr / 64] |= 1 << (nr % 64);
            }
            nr += 1;
        }
        words
    }
}

/// Default sizes, overridable at load time (`EbpfLoader::map_max_entries`).
pub mod capacity {
    /// Distinct (process incarnation, syscall) pairs held in the kernel between sweeps.
    pub const SYSCALL_STATS: u32 = 10_240;
    /// Distinct (process incarnation, syscall, errno) triples held between sweeps.
    pub const SYSCALL_ERRORS: u32 = 4_096;
    /// Bytes of the process-event ring buffer (a power-of-two multiple of the page size).
    pub const PROCESS_EVENTS_BYTES: u32 = 256 * 1024;
    /// Fallback for the per-thread and per-process arrays when `pid_max` cannot be read.
    pub const PID_MAX_FALLBACK: u32 = 32_768;
    /// TCP sockets tracked from connect/accept to destruction (no prealloc).
    pub const TCP_CONNS: u32 = 65_536;
    /// Listening sockets (netns, port) whose owner inbound connections are attributed to.
    pub const TCP_LISTENERS: u32 = 4_096;
    /// Distinct process incarnations with socket traffic between sweeps.
    pub const NET_BYTES: u32 = 10_240;
    /// Bytes of the TCP-event ring buffer.
    pub const TCP_EVENTS_BYTES: u32 = 1024 * 1024;
    /// Sockets with a payload-capture verdict (LRU: forgotten sockets are simply re-judged).
    pub const PAYLOAD_SOCKS: u32 = 65_536;
    /// Bytes of the payload ring buffer: about 7 000 captured reads/writes in flight.
    pub const PAYLOAD_EVENTS_BYTES: u32 = 4 * 1024 * 1024;
    /// HTTP connections framed in the kernel at once (LRU, about 400 bytes each: a forgotten
    /// connection is judged again at its next request).
    pub const HTTP_CONNS: u32 = 8_192;
    /// Bytes of the request ring buffer: about 15 000 completed requests (128 bytes and an
    /// 8-byte header each) in flight, a quarter of a second at 60 000 requests/s.
    pub const REQUEST_EVENTS_BYTES: u32 = 2 * 1024 * 1024;
    /// Bytes of a request's target (server) or `Host` (client) a request record carries.
    pub const REQUEST_TEXT: usize = 64;
    /// Unconnected UDP sockets that sent a DNS query, whose reads are looked at for its
    /// answer (LRU: connected sockets need no entry, their peer port says it).
    pub const DNS_SOCKS: u32 = 16_384;
    /// Bytes of the DNS ring buffer: about 900 DNS messages (their first 512 bytes) in flight.
    pub const DNS_EVENTS_BYTES: u32 = 512 * 1024;
    /// Bytes of a database connection's read/write copied to the agent: a pipeline of about
    /// a hundred small Redis commands, a PostgreSQL driver's Parse/Bind/Execute/Sync.
    pub const DB_CAPTURE: usize = 4096;
    /// Bytes of the database ring buffer: records are as long as what they carry, so about
    /// 40 000 small commands or replies (or 1 000 of the longest) in flight.
    pub const DB_EVENTS_BYTES: u32 = 4 * 1024 * 1024;
    /// Bytes of the HTTP/2 ring buffer, whose records are `DB_EVENTS`' (up to `DB_CAPTURE`
    /// bytes of a read/write): about 20 000 small frames' reads/writes in flight.
    pub const HTTP2_EVENTS_BYTES: u32 = 2 * 1024 * 1024;
    /// Redis connections framed in the kernel at once (LRU, about 400 bytes each: a
    /// forgotten connection is judged again at its next command).
    pub const REDIS_CONNS: u32 = 8_192;
    /// Bytes of the Redis ring buffer: about 18 000 commands and replies (104 bytes and an
    /// 8-byte header each) in flight, a tenth of a second of a pipelined benchmark.
    pub const REDIS_EVENTS_BYTES: u32 = 2 * 1024 * 1024;
    /// Bytes of a Redis command's name, or a reply's word, a record carries.
    pub const REDIS_WORD: usize = 32;
    /// PostgreSQL connections framed in the kernel at once (LRU, 64 bytes each: a forgotten
    /// connection is judged again at its next query).
    pub const PG_CONNS: u32 = 8_192;
    /// Process incarnations with run-queue waits or CPU time between sweeps.
    pub const RUNQ_LATENCY: u32 = 4_096;
    pub const CPU_TIME: u32 = 4_096;
    /// OOM victims between sweeps.
    pub const OOM_KILLS: u32 = 1_024;
    /// Block requests in flight (LRU by request: one completed unseen is forgotten).
    pub const BLOCK_STARTS: u32 = 16_384;
    /// Distinct (process incarnation, operation) pairs with block I/O between sweeps.
    pub const BLOCK_IO: u32 = 4_096;
    /// Payload bytes copied per socket read or write: a request line and its headers.
    pub const PAYLOAD_CAPTURE: usize = 512;
    /// Threads inside a TLS library's read or write at once.
    pub const TLS_CALLS: u32 = 16_384;
    /// TLS connections (`SSL *`) whose socket is remembered (LRU).
    pub const TLS_SOCKS: u32 = 16_384;
}

/// Slots of the per-CPU `COUNTERS` array: self-observability counters kept in the kernel.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Process events the probes tried to write to `PROCESS_EVENTS`: once drained,
    /// produced = read by the agent + dropped, exactly.
    ProcessEventsProduced = 0,
    /// Process events lost because `PROCESS_EVENTS` had no room (failed reserve).
    ProcessEventsDropped = 1,
    /// `SYSCALL_STATS` refused a new key (full): that syscall exit went uncounted.
    SyscallStatsFull = 2,
    /// `SYSCALL_ERRORS` refused a new key (full): that error went uncounted.
    SyscallErrorsFull = 3,
    /// A `sys_exit` with no recorded `sys_enter` (a fork child's first return, or a call
    /// already in flight when the probes attached): counted here, not in any series.
    UnmatchedExits = 4,
    /// TCP events the probes tried to write to `TCP_EVENTS` (read + dropped, once drained).
    TcpEventsProduced = 5,
    /// TCP events lost because `TCP_EVENTS` had no room.
    TcpEventsDropped = 6,
    /// `TCP_CONNS` refused a socket (full): that connection goes untracked.
    TcpConnsFull = 7,
    /// `TCP_LISTENERS` refused a listening socket: its inbound connections go unattributed.
    TcpListenersFull = 8,
    /// `NET_BYTES` refused a key: that send/receive went uncounted.
    NetBytesFull = 9,
    /// Resets the kernel sent for no socket (a SYN or segment to a closed port).
    TcpResetsSentNoSocket = 10,
    /// Resets sent or received on sockets the probes do not track (opened before the agent
    /// started, or refused by a full `TCP_CONNS`).
    TcpResetsSentUntracked = 11,
    TcpResetsReceivedUntracked = 12,
    /// Retransmits on untracked sockets.
    TcpRetransmitsUntracked = 13,
    /// Socket reads/writes the probes tried to write to `PAYLOAD_EVENTS`.
    PayloadEventsProduced = 14,
    /// Captured reads/writes lost because `PAYLOAD_EVENTS` had no room.
    PayloadEventsDropped = 15,
    /// Reads/writes on a socket being captured whose user buffer could not be found or read
    /// (a syscall without a plain buffer such as `sendfile` or io_uring, or a fault).
    PayloadUnreadable = 16,
    /// `RUNQ_LATENCY` refused a key (full): that wait went uncounted.
    RunqLatencyFull = 17,
    /// `CPU_TIME` refused a key (full): that time slice went uncounted.
    CpuTimeFull = 18,
    /// `OOM_KILLS` refused a key (full): that OOM kill went uncounted.
    OomKillsFull = 19,
    /// `BLOCK_IO` refused a key (full): that block request went uncounted.
    BlockIoFull = 20,
    /// Completed requests the probes tried to write to `REQUEST_EVENTS` (read + dropped).
    RequestEventsProduced = 21,
    /// Completed requests lost because `REQUEST_EVENTS` had no room.
    RequestEventsDropped = 22,
    /// `HTTP_CONNS` refused a new connection (an update failed): its requests go uncounted
    /// until it is judged again.
    HttpConnsFull = 23,
    /// DNS messages the probes tried to write to `DNS_EVENTS` (read + dropped, once drained).
    DnsEventsProduced = 24,
    /// DNS messages lost because `DNS_EVENTS` had no room.
    DnsEventsDropped = 25,
    /// Database reads/writes the probes tried to write to `DB_EVENTS` (read + dropped).
    DbEventsProduced = 26,
    /// Database reads/writes lost because `DB_EVENTS` had no room.
    DbEventsDropped = 27,
    /// TLS reads/writes with no socket to tie them to (a memory BIO, or an `SSL *` whose
    /// socket was forgotten and that made no socket call this time): not framed.
    TlsNoSocket = 28,
    /// HTTP/2 reads/writes the probes tried to write to `HTTP2_EVENTS` (read + dropped).
    Http2EventsProduced = 29,
    /// HTTP/2 reads/writes lost because `HTTP2_EVENTS` had no room.
    Http2EventsDropped = 30,
    /// Connections first seen in the middle of HTTP/2 (opened before the agent, or before
    /// their socket was judged): without the start, the header tables cannot be followed,
    /// so they are ignored and counted here.
    Http2Unparseable = 31,
    /// Redis commands and replies the probes tried to write to `REDIS_EVENTS` (read +
    /// dropped).
    RedisEventsProduced = 32,
    /// Redis commands and replies lost because `REDIS_EVENTS` had no room.
    RedisEventsDropped = 33,
    /// `REDIS_CONNS` refused a new connection: its commands go uncounted until it is
    /// judged again.
    RedisConnsFull = 34,
    /// `PG_CONNS` refused a new connection: its operations go uncounted until it is
    /// judged again.
    PgConnsFull = 35,
}

impl Counter {
    pub const ALL: [Counter; 36] = [
        Counter::ProcessEventsProduced,
        Counter::ProcessEventsDropped,
        Counter::SyscallStatsFull,
        Counter::SyscallErrorsFull,
        Counter::UnmatchedExits,
        Counter::TcpEventsProduced,
        Counter::TcpEventsDropped,
        Counter::TcpConnsFull,
        Counter::TcpListenersFull,
        Counter::NetBytesFull,
        Counter::TcpResetsSentNoSocket,
        Counter::TcpResetsSentUntracked,
        Counter::TcpResetsReceivedUntracked,
        Counter::TcpRetransmitsUntracked,
        Counter::PayloadEventsProduced,
        Counter::PayloadEventsDropped,
        Counter::PayloadUnreadable,
        Counter::RunqLatencyFull,
        Counter::CpuTimeFull,
        Counter::OomKillsFull,
        Counter::BlockIoFull,
        Counter::RequestEventsProduced,
        Counter::RequestEventsDropped,
        Counter::HttpConnsFull,
        Counter::DnsEventsProduced,
        Counter::DnsEventsDropped,
        Counter::DbEventsProduced,
        Counter::DbEventsDropped,
        Counter::TlsNoSocket,
        Counter::Http2EventsProduced,
        Counter::Http2EventsDropped,
        Counter::Http2Unparseable,
        Counter::RedisEventsProduced,
        Counter::RedisEventsDropped,
        Counter::RedisConnsFull,
        Counter::PgConnsFull,
    ];
    pub const LEN: u32 = Self::ALL.len() as u32;
}

/// Latency histogram: log2 buckets over nanoseconds.
///
/// Bucket `i < LAST` counts durations `d` with `d <= 2^(MIN_SHIFT + i)` ns that did not fit
/// bucket `i - 1`; bucket `LAST` counts everything above `2^(MIN_SHIFT + LAST - 1)` ns. The
/// upper bounds are exactly representable, so the exported Prometheus `le` bounds are the
/// kernel's own and no count is ever interpolated.
pub mod hist {
    /// Number of buckets, the last one being the overflow (`+Inf`) bucket.
    pub const BUCKETS: usize = 28;
    /// The first bucket holds everything up to `2^MIN_SHIFT` ns (256 ns).
    pub const MIN_SHIFT: u32 = 8;
    pub const LAST: usize = BUCKETS - 1;

    /// Bucket of a duration, branch-light and loop-free so the verifier accepts it.
    #[inline(always)]
    pub fn bucket(duration_ns: u64) -> usize {
        if duration_ns <= 1 << MIN_SHIFT {
            return 0;
        }
        // ceil(log2(d)) for d >= 2 is the bit width of d - 1.
        let ceil_log2 = 64 - (duration_ns - 1).leading_zeros();
        let index = (ceil_log2 - MIN_SHIFT) as usize;
        if index > LAST { LAST } else { index }
    }

    /// Upper bound of bucket `index` in nanoseconds; `None` for the overflow bucket.
    pub fn upper_bound_ns(index: usize) -> Option<u64> {
        (index < LAST).then(|| 1u64 << (MIN_SHIFT as usize + index))
    }
}

/// Key of `SYSCALL_STATS`: one process incarnation and one syscall.
///
/// `generation` is `PROCESS_STATE[tgid].generation` at the time of the call. The kernel bumps it on every
/// exec and on process exit, so a key never mixes two programs run under one PID, nor two
/// processes that reused a PID; the agent knows a key is finished when its generation is no
/// longer the current one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyscallKey {
    pub tgid: u32,
    pub generation: u32,
    pub nr: u32,
}

/// A log2 latency histogram (`hist` buckets, nanoseconds): the value of `SYSCALL_STATS` (per
/// CPU), and the agent's type for every duration it exports (HTTP, TCP connect, RTT, ...).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; hist::BUCKETS],
    pub sum_ns: u64,
}

impl Histogram {
    pub const ZERO: Histogram = Histogram {
        buckets: [0; hist::BUCKETS],
        sum_ns: 0,
    };
}

impl Default for Histogram {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Key of `SYSCALL_ERRORS`: a syscall that returned `-errno`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyscallErrorKey {
    pub tgid: u32,
    pub generation: u32,
    pub nr: u32,
    pub errno: u32,
}

/// Value of `THREAD_START`, indexed by thread id: the syscall a thread is in and since when,
/// and since when it waits for a CPU. The syscall probes and the scheduler probes write only
/// their own fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadStart {
    /// `bpf_ktime_get_ns()` at `sys_enter`; 0 means "not in a recorded syscall".
    pub start_ns: u64,
    pub nr: u32,
    /// `bpf_ktime_get_ns() >> RUNNABLE_SHIFT` when the thread became runnable (woken, or
    /// left the CPU still runnable); 0: not waiting, or not known to. In the padding the
    /// struct had anyway: 256 ns units in 32 bits wrap after 18 minutes, far beyond any wait
    /// for a CPU, and both ends are truncated alike, so a wait is off by less than 256 ns,
    /// as often up as down (the histogram's first bound is 256 ns).
    pub runnable_since: u32,
}

/// See `ThreadStart::runnable_since`.
pub const RUNNABLE_SHIFT: u32 = 8;

/// Value of `PROCESS_STATE`, indexed by TGID: which generation holds that PID now.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessState {
    /// Bumped on exec and on process exit.
    pub generation: u32,
    /// `announced::*`: whether an event has named this generation; reset with every bump.
    pub announced: u32,
}

/// Values of `ProcessState::announced`.
pub mod announced {
    /// No event has named this generation yet (also a process older than the agent).
    pub const NOT_YET: u32 = 0;
    /// An exec or a first syscall of its leader named it.
    pub const NAMED: u32 = 1;
    /// Its process exited and no other has taken the PID yet: what still runs under this
    /// PID is the dead process's last moments, which belong to no generation.
    pub const ENDED: u32 = 2;
}

/// Value of `SCHED_CPU` (one per CPU): the task on this CPU now, since when, and how long it
/// waited for it. Both are charged to that task's process when it leaves the CPU, where
/// `current` names it without reading `task_struct`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedCpu {
    /// `bpf_ktime_get_ns()` when it was switched in; 0: unknown (before the agent).
    pub since_ns: u64,
    /// Its run-queue wait before that, if it was seen becoming runnable; 0: none.
    pub waited_ns: u64,
}

/// Value of `BLOCK_STARTS`, keyed by the request's kernel address: when it was issued, by
/// whom (the task that issued it: the writer for direct and synchronous I/O, a kernel
/// thread for writeback).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStart {
    pub start_ns: u64,
    pub owner: Owner,
}

/// Key of `BLOCK_IO`: a process incarnation and a block operation (`block_op`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub owner: Owner,
    pub op: u32,
    pub _pad: u32,
}

/// `BlockKey::op`: the kernel's `REQ_OP_*` numbers that the metrics name.
pub mod block_op {
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const FLUSH: u32 = 2;
    pub const DISCARD: u32 = 3;
    /// Any other operation (write-zeroes, zone management, driver-private).
    pub const OTHER: u32 = 255;
    /// `REQ_OP_BITS`: the operation is the low 8 bits of `cmd_flags`.
    pub const MASK: u32 = 0xff;
}

/// Kinds of `ProcessEvent`.
pub mod event_kind {
    /// A successful exec: `generation` is the new program's, `comm` its name.
    pub const EXEC: u32 = 1;
    /// The process exited (its last thread, or its leader on older kernels): `generation` is
    /// the one that ended.
    pub const EXIT: u32 = 2;
    /// First syscall of a generation no event has named yet (a fork child, or a process
    /// already running when the agent started), seen from its leader thread.
    pub const SEEN: u32 = 3;
}

/// Record of the `PROCESS_EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    pub kind: u32,
    pub tgid: u32,
    pub generation: u32,
    /// `EXEC`: the TGID of the process's parent (`real_parent`), which short-lived processes
    /// are folded under; 0 when not known (other kinds, or no BTF offsets).
    pub parent_tgid: u32,
    pub timestamp_ns: u64,
    pub comm: [u8; 16],
}

/// Key of `NET_BYTES` and the owner of a tracked socket: one process incarnation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    pub tgid: u32,
    pub generation: u32,
}

/// Value of `NET_BYTES` (per CPU): TCP payload bytes through the socket layer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetBytes {
    pub sent: u64,
    pub received: u64,
}

/// Key of `TCP_LISTENERS`: a listening port in a network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub netns: u32,
    pub port: u16,
    pub _pad: u16,
}

/// Direction of a connection (`TcpConn::direction`, `TcpEvent::direction`).
pub mod direction {
    /// This process called `connect()`.
    pub const OUTBOUND: u32 = 1;
    /// Accepted on a listening socket this process owns.
    pub const INBOUND: u32 = 2;
}

/// The remote end of a connection, as the kernel holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `AF_INET` (2) or `AF_INET6` (10): which of `addr` is meaningful.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// IPv4 in the first 4 bytes (network order), else the IPv6 address.
    pub addr: [u8; 16],
}

/// Value of `TCP_CONNS`, keyed by the socket's kernel address: who owns a tracked socket and
/// where its lifecycle is. Inserted at connect (CLOSE→SYN_SENT) or accept (LISTEN→SYN_RECV),
/// deleted at `tcp_destroy_sock`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    pub owner: Owner,
    pub direction: u32,
    /// Local port: for inbound connections the listening port.
    pub local_port: u16,
    pub _pad: u16,
    pub remote: Endpoint,
    pub _pad2: u32,
    /// `bpf_ktime_get_ns()` at SYN_SENT (outbound) or SYN_RECV (inbound).
    pub start_ns: u64,
    /// At ESTABLISHED; 0 until then, and once the close has been reported.
    pub established_ns: u64,
}

/// Kinds of `TcpEvent`.
pub mod tcp_event {
    /// ESTABLISHED; `duration_ns` is the handshake (SYN sent → established, outbound).
    pub const OPEN: u32 = 1;
    /// SYN_SENT → CLOSE: `error` is `sk_err` (111 refused, 110 timed out, …),
    /// `duration_ns` the attempt.
    pub const CONNECT_FAIL: u32 = 2;
    /// An established connection reached CLOSE: `duration_ns` since ESTABLISHED, `srtt_us`
    /// the smoothed RTT then (0: no sample).
    pub const CLOSE: u32 = 3;
    pub const RETRANSMIT: u32 = 4;
    pub const RESET_SENT: u32 = 5;
    pub const RESET_RECEIVED: u32 = 6;
}

/// Record of the `TCP_EVENTS` ring buffer: one discrete event of a tracked socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpEvent {
    pub kind: u32,
    pub direction: u32,
    pub owner: Owner,
    pub local_port: u16,
    pub _pad: u16,
    pub error: u32,
    pub remote: Endpoint,
    pub srtt_us: u32,
    pub duration_ns: u64,
}

/// Directions of `PayloadEvent` (the monitored process's view).
pub mod payload_direction {
    /// The process wrote the bytes.
    pub const EGRESS: u32 = 1;
    /// The process read the bytes.
    pub const INGRESS: u32 = 2;
}

/// `PayloadEvent::flags`.
pub mod payload_flags {
    /// The first read/write captured since the socket was judged: a new connection, even if
    /// the kernel reuses the address of a closed socket with the same peer.
    pub const FIRST: u32 = 1;
    /// `DNS_EVENTS`: the message came over TCP, its 2-byte length first.
    pub const STREAM: u32 = 2;
}

/// One read or write of a socket, with up to `N` bytes of it: the records of the payload
/// rings.
/// - `PayloadEvent`, the `PAYLOAD_EVENTS` record: a socket whose traffic looks like a request
///   protocol. Also the `DNS_EVENTS` record: one DNS message a process sent or received (over
///   TCP, a read/write that starts with one), `remote` the server it was sent to.
/// - `DbEvent`, the `DB_SCRATCH` value: a socket that started like a database's wire
///   protocol. A `DB_EVENTS` record is only its head and its `captured` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Captured<const N: usize> {
    pub direction: u32,
    /// Bytes in `data` (at most `N`).
    pub captured: u32,
    /// Bytes the syscall moved.
    pub length: u32,
    /// `payload_flags`.
    pub flags: u32,
    pub owner: Owner,
    /// The socket's kernel address: the connection's identity while it lives.
    pub sk: u64,
    pub timestamp_ns: u64,
    pub remote: Endpoint,
    pub local_port: u16,
    pub _pad2: u16,
    pub data: [u8; N],
}

pub type PayloadEvent = Captured<{ capacity::PAYLOAD_CAPTURE }>;
pub type DbEvent = Captured<{ capacity::DB_CAPTURE }>;

/// Record of the `REQUEST_EVENTS` ring buffer: one HTTP/1.x request framed in the kernel,
/// from its first byte to its response's status line. No body byte, no query string.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RequestEvent {
    pub owner: Owner,
    /// The socket's kernel address.
    pub sk: u64,
    /// When the request's first byte was seen, and its response's status line.
    pub start_ns: u64,
    pub end_ns: u64,
    pub remote: Endpoint,
    pub local_port: u16,
    pub status: u16,
    /// `monitor_framing::role`, `method` and `text_flags`.
    pub role: u8,
    pub method: u8,
    pub flags: u8,
    /// Bytes of `text` used.
    pub text_len: u8,
    pub _pad: [u8; 4],
    /// Server: the request target, up to `?`/`#`. Client: the `Host` header's value.
    pub text: [u8; capacity::REQUEST_TEXT],
}

/// A Redis command or reply framed by the probes (`REDIS_EVENTS`): where it went, and what
/// `monitor_framing::resp::Message` says of it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RedisEvent {
    pub owner: Owner,
    /// The socket's kernel address.
    pub sk: u64,
    /// When its first byte was seen.
    pub start_ns: u64,
    /// A RESP2 subscription confirmation's count (`resp::flags::COUNT`).
    pub count: i64,
    pub remote: Endpoint,
    pub local_port: u16,
    /// `monitor_framing::role` of the connection.
    pub role: u8,
    /// 0: a command; 1: a reply (or a loss of the replies' framing).
    pub side: u8,
    /// A top-level aggregate's elements; an inline command's words.
    pub elements: u32,
    /// The connection's read/write that carried its first byte.
    pub seq: u32,
    /// Its type byte; `monitor_framing::resp::flags`; bytes of `word` used.
    pub kind: u8,
    pub flags: u8,
    pub word_len: u8,
    pub _pad: [u8; 5],
    /// A command's name, or a reply's error word or first element.
    pub word: [u8; capacity::REDIS_WORD],
}

const _: () = {
    assert!(core::mem::size_of::<RedisEvent>() == 72 + capacity::REDIS_WORD);
    assert!(core::mem::size_of::<RequestEvent>() == 64 + capacity::REQUEST_TEXT);
    assert!(core::mem::size_of::<PayloadEvent>() == 64 + capacity::PAYLOAD_CAPTURE);
    assert!(core::mem::size_of::<DbEvent>() == 64 + capacity::DB_CAPTURE);
    assert!(core::mem::size_of::<Owner>() == 8);
    assert!(core::mem::size_of::<NetBytes>() == 16);
    assert!(core::mem::size_of::<ListenerKey>() == 8);
    assert!(core::mem::size_of::<Endpoint>() == 20);
    assert!(core::mem::size_of::<TcpConn>() == 56);
    assert!(core::mem::size_of::<TcpEvent>() == 56);
    assert!(core::mem::size_of::<SyscallKey>() == 12);
    assert!(core::mem::size_of::<Histogram>() == 8 * (hist::BUCKETS + 1));
    assert!(core::mem::size_of::<SyscallErrorKey>() == 16);
    assert!(core::mem::size_of::<ThreadStart>() == 16);
    assert!(core::mem::size_of::<ProcessState>() == 8);
    assert!(core::mem::size_of::<ProcessEvent>() == 40);
    assert!(core::mem::size_of::<SchedCpu>() == 16);
    assert!(core::mem::size_of::<BlockStart>() == 16);
    assert!(core::mem::size_of::<BlockKey>() == 16);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, made only of integers with explicit padding, so
    // every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::SyscallKey {}
    unsafe impl aya::Pod for super::Histogram {}
    unsafe impl aya::Pod for super::SyscallErrorKey {}
    unsafe impl aya::Pod for super::ThreadStart {}
    unsafe impl aya::Pod for super::ProcessState {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::NetBytes {}
    unsafe impl aya::Pod for super::ListenerKey {}
    unsafe impl aya::Pod for super::TcpConn {}
    unsafe impl aya::Pod for super::TcpEvent {}
    unsafe impl aya::Pod for super::PayloadEvent {}
    unsafe impl aya::Pod for super::DbEvent {}
    unsafe impl aya::Pod for super::RequestEvent {}
    unsafe impl aya::Pod for super::RedisEvent {}
    unsafe impl aya::Pod for super::SchedCpu {}
    unsafe impl aya::Pod for super::BlockStart {}
    unsafe impl aya::Pod for super::BlockKey {}
}

#[cfg(test)]
mod tests {
    use super::hist::*;

    #[test]
    fn timed_syscalls_are_one_bit_each() {
        let words = crate::global::timed_syscalls(|nr| nr == 0 || nr == 65 || nr == 511);
        assert_eq!(words[0], 1);
        assert_eq!(words[1], 2);
        assert_eq!(words[7], 1 << 63);
        assert_eq!(words[2..7], [0; 5]);
    }

    #[test]
    fn bucket_edges_are_inclusive_upper_bounds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(256), 0);
        assert_eq!(bucket(257), 1);
        assert_eq!(bucket(512), 1);
        assert_eq!(bucket(513), 2);
        for i in 0..LAST {
            let ub = upper_bound_ns(i).unwrap();
            assert_eq!(bucket(ub), i, "upper bound of bucket {i}");
            assert_eq!(bucket(ub + 1), i + 1, "just above bucket {i}");
        }
        assert_eq!(upper_bound_ns(LAST), None);
        assert_eq!(bucket(u64::MAX), LAST);
    }

    #[test]
    fn twenty_milliseconds_lands_between_2_pow_24_and_2_pow_25() {
        let b = bucket(20_000_000);
        assert_eq!(upper_bound_ns(b), Some(1 << 25));
        assert_eq!(upper_bound_ns(b - 1), Some(1 << 24));
    }
}
