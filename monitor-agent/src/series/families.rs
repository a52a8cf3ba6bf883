//! Every metric family the agent exports, defined once: name, help, type, own labels.
//! A leaf: exporters (Prometheus text, later OTLP) and signals import it, it imports nothing.

/// How a family's values are exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

pub mod label {
    pub const COMM: &str = "comm";
    pub const PID: &str = "pid";
    pub const SYSCALL: &str = "syscall";
    pub const ERRNO: &str = "errno";
    pub const PROBE: &str = "probe";
    pub const TRACEPOINT: &str = "tracepoint";
    pub const RINGBUF: &str = "ringbuf";
    pub const MAP: &str = "map";
    pub const FAMILY: &str = "family";
    pub const VERSION: &str = "version";
    pub const OPERATION: &str = "operation";
    pub const KERNEL: &str = "kernel";
    pub const PEER: &str = "peer";
    pub const REASON: &str = "reason";
    pub const DIRECTION: &str = "direction";
    pub const PORT: &str = "port";
    pub const EVENT: &str = "event";
    pub const HTTP_METHOD: &str = "http_request_method";
    pub const HTTP_STATUS: &str = "http_response_status_code";
    pub const HTTP_ROUTE: &str = "http_route";
    pub const URL_SCHEME: &str = "url_scheme";
    pub const NETWORK_PROTOCOL_VERSION: &str = "network_protocol_version";
    pub const RPC_SYSTEM_NAME: &str = "rpc_system_name";
    pub const RPC_METHOD: &str = "rpc_method";
    pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc_response_status_code";
    pub const SERVER_ADDRESS: &str = "server_address";
    pub const SERVER_PORT: &str = "server_port";
    pub const DB_SYSTEM_NAME: &str = "db_system_name";
    pub const DB_OPERATION_NAME: &str = "db_operation_name";
    pub const DB_RESPONSE_STATUS_CODE: &str = "db_response_status_code";
    pub const DNS_QUESTION_TYPE: &str = "dns_question_type";
    pub const DNS_RESPONSE_CODE: &str = "dns_response_code";
    pub const EXPORTER: &str = "exporter";
    pub const RESULT: &str = "result";
    pub const WHAT: &str = "what";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// The family's own labels. Workload families also carry the identity labels their
    /// `LabelPolicy` gives them (comm first, pid last) and the constant labels.
    pub labels: &'static [&'static str],
    pub workload: bool,
}

impl Family {
    /// Prometheus series one label set of this family exports: a histogram's buckets (the
    /// finite ones and `+Inf`), `_sum` and `_count`; one for a counter or a gauge, times the
    /// rows a label set is exported as (bytes: one per direction).
    pub fn series_per_label_set(&self) -> usize {
        let rows = if self.name == family::NETWORK_BYTES.name {
            2
        } else {
            1
        };
        let series = match self.kind {
            Kind::Histogram => monitor_common::hist::LAST + 1 + 2,
            Kind::Counter | Kind::Gauge => 1,
        };
        rows * series
    }
}

/// What admitting one label set to the table of family `name` costs the series budget: the
/// family's series and those of the families published from the same table.
pub fn admission_cost(name: &str) -> usize {
    use family::*;
    let sharing: &[Family] = match name {
        n if n == TCP_CONNECTIONS_OPENED.name => &[TCP_CONNECTIONS_OPENED, TCP_CONNECTIONS_ACTIVE],
        n if n == TCP_ACCEPT_QUEUE_LENGTH.name => &[TCP_ACCEPT_QUEUE_LENGTH, TCP_ACCEPT_QUEUE_MAX],
        _ => return by_name(name).map_or(1, |family| family.series_per_label_set()),
    };
    sharing.iter().map(Family::series_per_label_set).sum()
}

/// The family called `name`.
pub fn by_name(name: &str) -> Option<Family> {
    family::ALL
        .iter()
        .copied()
        .find(|family| family.name == name)
}

pub mod family {
    use super::{Family, Kind, label};

    pub const SYSCALL_DURATION: Family = Family {
        name: "monitor_syscall_duration_seconds",
        help: "Time from syscall entry to exit, per process name and syscall, for the \
               syscalls --syscalls.histograms names (by default those that block: file and \
               network I/O, sync, sleeps and waits). Buckets are the kernel's log2 \
               nanosecond buckets.",
        kind: Kind::Histogram,
        labels: &[label::SYSCALL],
        workload: true,
    };
    pub const SYSCALLS: Family = Family {
        name: "monitor_syscalls_total",
        help: "Syscalls completed, per process name and syscall (traffic), every syscall; the \
               latency histogram is kept for the syscalls --syscalls.histograms names.",
        kind: Kind::Counter,
        labels: &[label::SYSCALL],
        workload: true,
    };
    pub const SYSCALL_ERRORS: Family = Family {
        name: "monitor_syscall_errors_total",
        help: "Syscalls that returned an error, per process name, syscall and errno.",
        kind: Kind::Counter,
        labels: &[label::SYSCALL, label::ERRNO],
        workload: true,
    };
    pub const SYSCALL_UNMATCHED_EXITS: Family = Family {
        name: "monitor_syscall_unmatched_exits_total",
        help: "Syscall exits with no recorded entry (fork children's first return, calls in \
               flight at start-up); not in any latency series.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const TCP_CONNECT_DURATION: Family = Family {
        name: "monitor_tcp_connect_duration_seconds",
        help: "Outbound TCP handshakes that succeeded: SYN sent to ESTABLISHED, per process \
               name and peer (remote ip:port).",
        kind: Kind::Histogram,
        labels: &[label::PEER],
        workload: true,
    };
    pub const TCP_CONNECT_ERRORS: Family = Family {
        name: "monitor_tcp_connect_errors_total",
        help: "Outbound TCP connects that failed after the SYN was sent, by reason: the \
               socket's error at SYN_SENT to CLOSE (refused ECONNREFUSED, timeout ETIMEDOUT, \
               unreachable EHOSTUNREACH/ENETUNREACH, reset ECONNRESET, other: anything else, \
               including the application giving up).",
        kind: Kind::Counter,
        labels: &[label::PEER, label::REASON],
        workload: true,
    };
    pub const TCP_CONNECTIONS_OPENED: Family = Family {
        name: "monitor_tcp_connections_opened_total",
        help: "TCP connections that reached ESTABLISHED. port: the local listening port \
               (inbound) or the remote port (outbound).",
        kind: Kind::Counter,
        labels: &[label::DIRECTION, label::PORT],
        workload: true,
    };
    pub const TCP_CONNECTIONS_ACTIVE: Family = Family {
        name: "monitor_tcp_connections_active",
        help: "TCP connections established and not yet closed (opened since the agent started).",
        kind: Kind::Gauge,
        labels: &[label::DIRECTION, label::PORT],
        workload: true,
    };
    pub const TCP_LISTEN_OVERFLOWS: Family = Family {
        name: "monitor_tcp_listen_overflows_total",
        help: "Connection attempts a listening socket of the process dropped (sk_drops of the \
               socket: its accept queue was full, or the SYN could not be answered), per local \
               port; sockets in the agent's network namespace.",
        kind: Kind::Counter,
        labels: &[label::PORT],
        workload: true,
    };
    pub const TCP_ACCEPT_QUEUE_LENGTH: Family = Family {
        name: "monitor_tcp_accept_queue_length",
        help: "Connections waiting to be accepted on the process's listening sockets, per \
               local port (Recv-Q of ss -lnt); sockets in the agent's network namespace.",
        kind: Kind::Gauge,
        labels: &[label::PORT],
        workload: true,
    };
    pub const TCP_ACCEPT_QUEUE_MAX: Family = Family {
        name: "monitor_tcp_accept_queue_max",
        help: "The accept queue's limit (the listen() backlog, capped by somaxconn) of the \
               process's listening sockets, per local port (Send-Q of ss -lnt).",
        kind: Kind::Gauge,
        labels: &[label::PORT],
        workload: true,
    };
    pub const TCP_RETRANSMITS: Family = Family {
        name: "monitor_tcp_retransmits_total",
        help: "TCP segments retransmitted (SYNs included), per process name and peer.",
        kind: Kind::Counter,
        labels: &[label::PEER],
        workload: true,
    };
    pub const TCP_RESETS: Family = Family {
        name: "monitor_tcp_resets_total",
        help: "TCP resets sent and received. comm=\"[kernel]\": resets the kernel sent for no \
               socket (e.g. a SYN to a closed port).",
        kind: Kind::Counter,
        labels: &[label::DIRECTION],
        workload: true,
    };
    pub const TCP_RTT: Family = Family {
        name: "monitor_tcp_rtt_seconds",
        help: "Smoothed round-trip time of each TCP connection when it closes, per process \
               name and peer (connections without an RTT sample are left out).",
        kind: Kind::Histogram,
        labels: &[label::PEER],
        workload: true,
    };
    pub const TCP_CONNECTION_DURATION: Family = Family {
        name: "monitor_tcp_connection_duration_seconds",
        help: "Lifetime of TCP connections, ESTABLISHED to CLOSE.",
        kind: Kind::Histogram,
        labels: &[label::DIRECTION],
        workload: true,
    };
    pub const NETWORK_BYTES: Family = Family {
        name: "monitor_network_bytes_total",
        help: "TCP payload bytes sent and received through the socket layer (sendmsg/recvmsg, \
               read/write, sendfile, splice to a socket); MSG_PEEK reads are not counted.",
        kind: Kind::Counter,
        labels: &[label::DIRECTION],
        workload: true,
    };
    pub const TCP_PEER_OVERFLOW: Family = Family {
        name: "monitor_tcp_peer_overflow_total",
        help: "Observations whose peer was beyond the per-comm cap (--tcp.peers-per-comm) and \
               were counted under peer=\"other\".",
        kind: Kind::Counter,
        labels: &[label::COMM],
        workload: false,
    };
    pub const TCP_UNTRACKED_EVENTS: Family = Family {
        name: "monitor_tcp_untracked_events_total",
        help: "TCP events on sockets the probes do not track (opened before the agent started, \
               or not admitted by a full TCP_CONNS), so in no workload series.",
        kind: Kind::Counter,
        labels: &[label::EVENT],
        workload: false,
    };
    pub const HTTP_SERVER_DURATION: Family = Family {
        name: "http_server_request_duration_seconds",
        help: "HTTP requests served, seen on the wire: from the request's first byte read \
               (HTTP/2: its headers) to the response's first byte written. http_route is the \
               path without its query, identifiers replaced by {id}; url_scheme is https for \
               requests read through a TLS library (OpenSSL); network_protocol_version is 1.1 \
               (HTTP/1.x) or 2. gRPC calls are in rpc_server_call_duration_seconds instead.",
        kind: Kind::Histogram,
        labels: &[
            label::HTTP_METHOD,
            label::HTTP_STATUS,
            label::HTTP_ROUTE,
            label::URL_SCHEME,
            label::NETWORK_PROTOCOL_VERSION,
        ],
        workload: true,
    };
    pub const HTTP_CLIENT_DURATION: Family = Family {
        name: "http_client_request_duration_seconds",
        help: "HTTP requests made, seen on the wire: from the request's first byte written \
               (HTTP/2: its headers) to the response's first byte read; url_scheme is https for \
               requests written through a TLS library (OpenSSL); network_protocol_version is \
               1.1 (HTTP/1.x) or 2. gRPC calls are in rpc_client_call_duration_seconds instead.",
        kind: Kind::Histogram,
        labels: &[
            label::HTTP_METHOD,
            label::HTTP_STATUS,
            label::SERVER_ADDRESS,
            label::SERVER_PORT,
            label::URL_SCHEME,
            label::NETWORK_PROTOCOL_VERSION,
        ],
        workload: true,
    };
    pub const RPC_SERVER_DURATION: Family = Family {
        name: "rpc_server_call_duration_seconds",
        help: "gRPC calls served, seen on the wire (HTTP/2, cleartext or through OpenSSL): from \
               the request's headers read to the response's trailers written. rpc_method is \
               /package.Service/Method (_OTHER for a path that is not one), \
               rpc_response_status_code the grpc-status by name (OK, NOT_FOUND, ...).",
        kind: Kind::Histogram,
        labels: &[
            label::RPC_SYSTEM_NAME,
            label::RPC_METHOD,
            label::RPC_RESPONSE_STATUS_CODE,
        ],
        workload: true,
    };
    pub const RPC_CLIENT_DURATION: Family = Family {
        name: "rpc_client_call_duration_seconds",
        help: "gRPC calls made, seen on the wire (HTTP/2, cleartext or through OpenSSL): from \
               the request's headers written to the response's trailers read.",
        kind: Kind::Histogram,
        labels: &[
            label::RPC_SYSTEM_NAME,
            label::RPC_METHOD,
            label::RPC_RESPONSE_STATUS_CODE,
            label::SERVER_ADDRESS,
            label::SERVER_PORT,
        ],
        workload: true,
    };
    pub const HTTP2_UNPARSEABLE: Family = Family {
        name: "monitor_http2_unparseable_connections_total",
        help: "Connections first seen in the middle of HTTP/2 (opened before the agent): their \
               header compression started unseen, so their requests are not decoded, only \
               counted here.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const HTTP2_LOST: Family = Family {
        name: "monitor_http2_connections_lost_total",
        help: "HTTP/2 connections given up part-way: a frame head or header block past the \
               4 KiB of a read/write copied, or one that could not be decoded. Their later \
               requests are not counted.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const DB_CLIENT_DURATION: Family = Family {
        name: "db_client_operation_duration_seconds",
        help: "Database operations a process sent (Redis commands, PostgreSQL queries and \
               executions), seen on the wire: from the operation written to its response's \
               first byte read. db_operation_name is the command or the statement's first \
               keyword, db_response_status_code the error (Redis's prefix, PostgreSQL's \
               SQLSTATE), empty on success.",
        kind: Kind::Histogram,
        labels: &[
            label::DB_SYSTEM_NAME,
            label::DB_OPERATION_NAME,
            label::DB_RESPONSE_STATUS_CODE,
            label::SERVER_ADDRESS,
            label::SERVER_PORT,
        ],
        workload: true,
    };
    pub const DB_SERVER_DURATION: Family = Family {
        name: "db_server_operation_duration_seconds",
        help: "Database operations a process served (Redis commands, PostgreSQL queries and \
               executions), seen on the wire: from the operation read to its response's first \
               byte written.",
        kind: Kind::Histogram,
        labels: &[
            label::DB_SYSTEM_NAME,
            label::DB_OPERATION_NAME,
            label::DB_RESPONSE_STATUS_CODE,
        ],
        workload: true,
    };
    pub const DNS_LOOKUP_DURATION: Family = Family {
        name: "dns_lookup_duration_seconds",
        help: "DNS queries a process sent (UDP or TCP, to port 53), seen on the wire: from the \
               query written to its answer read, matched by id and question. \
               dns_response_code is the answer's RCODE, or timeout when none came within 5 s \
               (observed as 5 s). Question names are never exported.",
        kind: Kind::Histogram,
        labels: &[
            label::DNS_QUESTION_TYPE,
            label::DNS_RESPONSE_CODE,
            label::SERVER_ADDRESS,
        ],
        workload: true,
    };
    pub const PAYLOAD_UNREADABLE: Family = Family {
        name: "monitor_payload_unreadable_total",
        help: "Socket reads/writes of captured connections whose bytes could not be read \
               (sendfile, splice, io_uring, or a fault): their requests may be missed.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const TLS_LIBRARIES: Family = Family {
        name: "monitor_tls_libraries_instrumented",
        help: "TLS library files (OpenSSL libssl: the host's, each container's own copy) with \
               uprobes on SSL_read and SSL_write, whose processes' HTTPS is seen.",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const TLS_UNINSTRUMENTED: Family = Family {
        name: "monitor_tls_uninstrumented_processes",
        help: "Running processes whose TLS traffic the agent cannot see, by reason: go (Go's \
               crypto/tls compiled in), gnutls or nss (those libraries and no libssl), \
               attach_failed (the kernel refused uprobes on their libssl).",
        kind: Kind::Gauge,
        labels: &[label::REASON],
        workload: false,
    };
    pub const TLS_NO_SOCKET: Family = Family {
        name: "monitor_tls_unattributed_calls_total",
        help: "TLS reads/writes with plaintext but no socket to tie them to (a memory BIO, as \
               Python's asyncio uses): not framed.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const PAYLOAD_CONNECTIONS: Family = Family {
        name: "monitor_payload_connections",
        help: "Connections whose captured payload the protocol parsers follow now.",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const PAYLOAD_CHUNKS_DROPPED: Family = Family {
        name: "monitor_payload_chunks_dropped_total",
        help: "Captured reads/writes of new connections dropped because the agent already \
               followed its maximum of connections.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const BUILD_INFO: Family = Family {
        name: "monitor_build_info",
        help: "Always 1; the agent's version and the kernel it runs on.",
        kind: Kind::Gauge,
        labels: &[label::VERSION, label::KERNEL],
        workload: false,
    };
    pub const PROBE_ATTACHED: Family = Family {
        name: "monitor_probe_attached",
        help: "1 if the probe is attached, 0 if the kernel refused it (see the agent's log).",
        kind: Kind::Gauge,
        labels: &[label::PROBE, label::TRACEPOINT],
        workload: false,
    };
    pub const REQUESTS_FRAMED_IN_KERNEL: Family = Family {
        name: "monitor_requests_framed_in_kernel",
        help: "1 if HTTP requests are framed in the kernel (one record per request), 0 if read/write prefixes are copied and parsed in the agent \
               (--probes.request-framing; the metrics are the same).",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const PROBE_DISABLED: Family = Family {
        name: "monitor_probe_disabled",
        help: "1 if the probe was disabled on purpose with --probes.disable (so \
               monitor_probe_attached is 0 without any fault), else 0.",
        kind: Kind::Gauge,
        labels: &[label::PROBE, label::TRACEPOINT],
        workload: false,
    };
    pub const RINGBUF_PRODUCED: Family = Family {
        name: "monitor_ringbuf_events_produced_total",
        help: "Events the probes tried to write into the ring buffer (read + lost, once drained).",
        kind: Kind::Counter,
        labels: &[label::RINGBUF],
        workload: false,
    };
    pub const RINGBUF_READ: Family = Family {
        name: "monitor_ringbuf_events_read_total",
        help: "Events the agent read from the ring buffer.",
        kind: Kind::Counter,
        labels: &[label::RINGBUF],
        workload: false,
    };
    pub const RINGBUF_LOST: Family = Family {
        name: "monitor_ringbuf_events_lost_total",
        help: "Events lost in the kernel because the ring buffer was full.",
        kind: Kind::Counter,
        labels: &[label::RINGBUF],
        workload: false,
    };
    pub const RINGBUF_MALFORMED: Family = Family {
        name: "monitor_ringbuf_events_malformed_total",
        help: "Events read but not decodable (skipped).",
        kind: Kind::Counter,
        labels: &[label::RINGBUF],
        workload: false,
    };
    pub const MAP_ENTRIES: Family = Family {
        name: "monitor_kernel_map_entries",
        help: "Entries in use in a kernel hash map.",
        kind: Kind::Gauge,
        labels: &[label::MAP],
        workload: false,
    };
    pub const MAP_MAX_ENTRIES: Family = Family {
        name: "monitor_kernel_map_max_entries",
        help: "Capacity of a kernel map.",
        kind: Kind::Gauge,
        labels: &[label::MAP],
        workload: false,
    };
    pub const MAP_INSERT_FAILURES: Family = Family {
        name: "monitor_kernel_map_insert_failures_total",
        help: "New keys a full kernel map refused; their events went uncounted.",
        kind: Kind::Counter,
        labels: &[label::MAP],
        workload: false,
    };
    pub const SERIES: Family = Family {
        name: "monitor_series",
        help: "Prometheus series currently exported per workload family (each histogram \
               bucket, _sum and _count is one series). Their total is held under --series.max, \
               apart from each family's one overflow label set.",
        kind: Kind::Gauge,
        labels: &[label::FAMILY],
        workload: false,
    };
    pub const SERIES_DROPPED: Family = Family {
        name: "monitor_series_dropped_total",
        help: "Label sets refused because the global series budget (--series.max) was spent; \
               their observations went to the family's overflow series (comm=\"[overflow]\").",
        kind: Kind::Counter,
        labels: &[label::FAMILY],
        workload: false,
    };
    pub const SERIES_BUDGET: Family = Family {
        name: "monitor_series_budget",
        help: "The global budget of workload series, in Prometheus series (--series.max).",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    // The push exporters' own health (`export::otlp`); on /metrics and in the pushes.
    pub const EXPORT_REQUESTS: Family = Family {
        name: "monitor_export_requests_total",
        help: "Export requests sent by a push exporter (exporter=\"otlp\"), by result: \
               success (accepted), failure (no answer, a timeout, or 429/502/503/504: \
               retried with backoff), rejected (any other answer: the batch is dropped).",
        kind: Kind::Counter,
        labels: &[label::EXPORTER, label::RESULT],
        workload: false,
    };
    pub const EXPORT_DROPPED_POINTS: Family = Family {
        name: "monitor_export_dropped_points_total",
        help: "Data points a push exporter gave up on: the oldest batches, dropped when its \
               bounded queue was full (the endpoint slow or down), and batches the endpoint \
               rejected.",
        kind: Kind::Counter,
        labels: &[label::EXPORTER],
        workload: false,
    };
    // The agent's own process, as every Prometheus client library exports it (read at each
    // scrape by `export::process`).
    pub const PROCESS_CPU_SECONDS: Family = Family {
        name: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        kind: Kind::Counter,
        labels: &[],
        workload: false,
    };
    pub const PROCESS_RESIDENT_MEMORY: Family = Family {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const PROCESS_VIRTUAL_MEMORY: Family = Family {
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size in bytes.",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const PROCESS_OPEN_FDS: Family = Family {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const PROCESS_MAX_FDS: Family = Family {
        name: "process_max_fds",
        help: "Maximum number of open file descriptors (the soft limit).",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const PROCESS_START_TIME: Family = Family {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        kind: Kind::Gauge,
        labels: &[],
        workload: false,
    };
    pub const RUNQUEUE_LATENCY: Family = Family {
        name: "monitor_runqueue_latency_seconds",
        help: "Each wait of a thread of the process between becoming runnable (woken, new, or \
               preempted while runnable) and running on a CPU (saturation). Buckets are the \
               kernel's log2 nanosecond buckets.",
        kind: Kind::Histogram,
        labels: &[],
        workload: true,
    };
    pub const CPU_SECONDS: Family = Family {
        name: "monitor_cpu_seconds_total",
        help: "Time the process's threads ran on a CPU, counted when a thread leaves the CPU.",
        kind: Kind::Counter,
        labels: &[],
        workload: true,
    };
    pub const CPU_THROTTLED: Family = Family {
        name: "monitor_cpu_throttled_seconds_total",
        help: "Time the process's cgroup was throttled by its CPU quota (CFS bandwidth), from \
               the cgroup's cpu.stat; only cgroups with a quota (cgroup v1 and v2).",
        kind: Kind::Counter,
        labels: &[],
        workload: true,
    };
    pub const BLOCK_IO_DURATION: Family = Family {
        name: "monitor_block_io_duration_seconds",
        help: "Block requests the process issued, from issue to completion, by operation \
               (read, write, flush, discard; other). Writeback issued by kernel threads \
               counts under them.",
        kind: Kind::Histogram,
        labels: &[label::OPERATION],
        workload: true,
    };
    pub const OOM_KILLS: Family = Family {
        name: "monitor_oom_kills_total",
        help: "Processes the OOM killer chose to kill, under the victim's identity.",
        kind: Kind::Counter,
        labels: &[],
        workload: true,
    };
    pub const FD_UTILIZATION: Family = Family {
        name: "monitor_fd_utilization_ratio",
        help: "Open file descriptors over the soft limit (RLIMIT_NOFILE), the highest among the \
               label set's running processes (read from /proc every 5 s).",
        kind: Kind::Gauge,
        labels: &[],
        workload: true,
    };
    pub const PROC_ACCESS_DENIED: Family = Family {
        name: "monitor_proc_access_denied_total",
        help: "Reads of other processes' /proc entries (fd, ns_net, exe) or of the Docker \
               socket (docker_socket) that the kernel refused: the agent lacks CAP_SYS_PTRACE / \
               CAP_DAC_READ_SEARCH (or the socket's group), so what they feed is missing.",
        kind: Kind::Counter,
        labels: &[label::WHAT],
        workload: false,
    };
    pub const SERIES_EXPIRED: Family = Family {
        name: "monitor_series_expired_total",
        help: "Prometheus series dropped after the series TTL of idleness, per metric family.",
        kind: Kind::Counter,
        labels: &[label::FAMILY],
        workload: false,
    };

    pub const ALL: &[Family] = &[
        SERIES_DROPPED,
        SERIES_BUDGET,
        HTTP_SERVER_DURATION,
        HTTP_CLIENT_DURATION,
        RPC_SERVER_DURATION,
        RPC_CLIENT_DURATION,
        HTTP2_UNPARSEABLE,
        HTTP2_LOST,
        DB_CLIENT_DURATION,
        DB_SERVER_DURATION,
        DNS_LOOKUP_DURATION,
        PAYLOAD_UNREADABLE,
        TLS_LIBRARIES,
        TLS_UNINSTRUMENTED,
        TLS_NO_SOCKET,
        PAYLOAD_CONNECTIONS,
        PAYLOAD_CHUNKS_DROPPED,
        SYSCALL_DURATION,
        SYSCALLS,
        SYSCALL_ERRORS,
        SYSCALL_UNMATCHED_EXITS,
        TCP_CONNECT_DURATION,
        TCP_CONNECT_ERRORS,
        TCP_CONNECTIONS_OPENED,
        TCP_CONNECTIONS_ACTIVE,
        TCP_LISTEN_OVERFLOWS,
        TCP_ACCEPT_QUEUE_LENGTH,
        TCP_ACCEPT_QUEUE_MAX,
        TCP_RETRANSMITS,
        TCP_RESETS,
        TCP_RTT,
        TCP_CONNECTION_DURATION,
        NETWORK_BYTES,
        TCP_PEER_OVERFLOW,
        TCP_UNTRACKED_EVENTS,
        RUNQUEUE_LATENCY,
        CPU_SECONDS,
        CPU_THROTTLED,
        BLOCK_IO_DURATION,
        OOM_KILLS,
        FD_UTILIZATION,
        BUILD_INFO,
        PROC_ACCESS_DENIED,
        PROBE_ATTACHED,
        PROBE_DISABLED,
        REQUESTS_FRAMED_IN_KERNEL,
        RINGBUF_PRODUCED,
        RINGBUF_READ,
        RINGBUF_LOST,
        RINGBUF_MALFORMED,
        MAP_ENTRIES,
        MAP_MAX_ENTRIES,
        MAP_INSERT_FAILURES,
        SERIES,
        SERIES_EXPIRED,
        EXPORT_REQUESTS,
        EXPORT_DROPPED_POINTS,
        PROCESS_CPU_SECONDS,
        PROCESS_RESIDENT_MEMORY,
        PROCESS_VIRTUAL_MEMORY,
        PROCESS_OPEN_FDS,
        PROCESS_MAX_FDS,
        PROCESS_START_TIME,
    ];
}
