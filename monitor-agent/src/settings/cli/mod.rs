//! The command line: every flag, its default and its environment variable, in one place, and
//! how the configuration file (`--config.file`, read by `settings::file`) fills the rest.
//!
//! Precedence: command line > environment > file > built-in default. clap records where each
//! value came from (`ArgMatches::value_source`); the file only replaces values that clap took
//! from their default (or that have none), see [`load_from`].
use std::{
    collections::HashMap, ffi::OsString, fmt, net::SocketAddr, path::PathBuf, time::Duration,
};

use clap::{
    ArgMatches, Args, Command, CommandFactory as _, FromArgMatches, Parser, ValueEnum,
    error::ErrorKind, parser::ValueSource,
};
use log::LevelFilter;
use monitor_common::capacity;

use crate::{
    identity::selection::{Selection, Selector, ServiceOverride},
    series::labels::IdentityLabel,
    settings::{
        checks::{
            parse_api_url, parse_constant_label, parse_duration, parse_listen_address,
            parse_nonzero_duration, parse_ring_bytes, parse_sweep_interval, parse_telemetry_path,
        },
        file::{FileConfig, FileError},
        otlp::{
            Endpoint, Header, OtlpSettings, RawHeader, Temporality, parse_endpoint, parse_headers,
            parse_interval, raw_header,
        },
    },
};

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9655";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "monitor-agent",
    version,
    about = "Golden-signal metrics for unmodified applications, from eBPF probes, for Prometheus.",
    long_about = "Golden-signal metrics for unmodified applications, from eBPF probes, for Prometheus.\n\n\
        Attaches raw tracepoints to every syscall and to the TCP stack on this host, aggregates \
        syscall latency and errors, connects, resets, retransmits, RTT and bytes per process, and \
        serves them on /metrics (Prometheus text format) and its own \
        health on /healthz. Needs root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN on older kernels), \
        and CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH to read other users' /proc (exe= selectors, \
        listeners older than the agent).\n\n\
        Settings come from the command line, then the environment (MONITOR_*), then \
        --config.file, then the defaults shown: the first that sets a value wins.\n\n\
        `monitor-agent slo FILE` instead turns an SLO file into Prometheus rules and exits \
        (no probe, no privilege needed; `monitor-agent slo --help`).",
    // A command runs instead of the agent: flags given with it would be silently ignored.
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Config {
    /// A command to run instead of the agent (`slo`); `None` runs the agent. When it is
    /// set, no other setting is read from a file and nothing is started.
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// YAML file with the settings for series, labels, identity, service overrides and process
    /// selection (schema: README, "Configuration file"); per-family label choice and service
    /// overrides exist only there. Checked in full before anything is loaded: a mistake is one
    /// line naming the file, line and field, and exit 1. A setting also given on the command
    /// line or in the environment is taken from there, not from the file.
    #[arg(long = "config.file", env = "MONITOR_CONFIG_FILE", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Address on which to expose /metrics and /healthz: IP:PORT, [IPv6]:PORT, localhost:PORT,
    /// or :PORT for every IPv4 interface (as the Prometheus exporters write it).
    #[arg(
        long = "web.listen-address",
        env = "MONITOR_WEB_LISTEN_ADDRESS",
        value_name = "HOST:PORT",
        default_value = DEFAULT_LISTEN_ADDRESS,
        value_parser = parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Path under which to expose the metrics; /healthz and / stay where they are.
    #[arg(
        long = "web.telemetry-path",
        env = "MONITOR_WEB_TELEMETRY_PATH",
        value_name = "PATH",
        default_value = "/metrics",
        value_parser = parse_telemetry_path
    )]
    pub web_telemetry_path: String,

    /// Web configuration file enabling TLS and/or basic authentication, in the format the
    /// Prometheus exporters share (tls_server_config, basic_auth_users with bcrypt hashes,
    /// http_server_config.headers). Checked in full before anything is loaded; relative paths in
    /// it are relative to the file. Authentication applies to every path except /healthz, which
    /// stays open for liveness probes (it tells only which probes are attached).
    #[arg(
        long = "web.config.file",
        env = "MONITOR_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Maximum number of requests in flight (authenticating, rendering or sending), /healthz
    /// aside; more get 503 at once. 0 means no limit.
    #[arg(
        long = "web.max-requests",
        env = "MONITOR_WEB_MAX_REQUESTS",
        value_name = "N",
        default_value_t = 40
    )]
    pub web_max_requests: usize,

    /// Maximum number of open connections, idle keep-alive ones included; more are closed
    /// at once. 0 means no limit.
    #[arg(
        long = "web.max-connections",
        env = "MONITOR_WEB_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 256
    )]
    pub web_max_connections: usize,

    /// Time a client has for the TLS handshake, then for each request's headers (an idle
    /// keep-alive connection included); slower clients are disconnected.
    #[arg(long = "web.read-header-timeout", value_name = "DURATION", default_value = "10s",
          value_parser = parse_nonzero_duration)]
    pub web_read_header_timeout: Duration,

    /// Time a response may wait for a client that reads none of it (its socket buffer
    /// full); such a client is disconnected, freeing its rendered page and request slot. A
    /// slow reader that keeps reading is served to the end.
    #[arg(long = "web.write-timeout", value_name = "DURATION", default_value = "30s",
          value_parser = parse_nonzero_duration)]
    pub web_write_timeout: Duration,

    /// Extra labels on workload series, comma-separated. `pid` splits every series per process
    /// instead of aggregating per `comm`: only for hosts with few, long-lived processes.
    #[arg(
        long = "labels",
        env = "MONITOR_LABELS",
        value_enum,
        value_delimiter = ','
    )]
    pub labels: Vec<ExtraLabel>,

    /// How long the series of exited processes stay exported after their last change
    /// (e.g. 30s, 5m, 1h).
    #[arg(long = "series.ttl", env = "MONITOR_SERIES_TTL", value_name = "DURATION",
          default_value = "5m", value_parser = parse_duration)]
    pub series_ttl: Duration,

    /// Hard limit on the workload series, all families together, counted in Prometheus series
    /// (a histogram label set is 30: its buckets, _sum and _count). Beyond it, a label set not
    /// seen before is counted in its family's single overflow series instead, so memory and
    /// scrape size stay bounded whatever the workload does; series that exist keep being
    /// updated, and a place is freed when a series expires (--series.ttl). The defaults keep a
    /// typical process to about 160 series: 50000 is a ceiling for a busy node, not a target.
    #[arg(long = "series.max", env = "MONITOR_SERIES_MAX", value_name = "N",
          default_value_t = 50_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub series_max: usize,

    /// Constant label on every workload series, KEY=VALUE (e.g. environment=prod); repeat the
    /// flag or separate with commas. KEY must be a valid Prometheus label name and not one the
    /// agent sets itself (comm, pid, container, pod, namespace, service, or a family's own
    /// labels such as syscall, peer or http_route).
    #[arg(long = "label.const", env = "MONITOR_LABEL_CONST", value_name = "KEY=VALUE",
          value_delimiter = ',', value_parser = parse_constant_label)]
    pub constant_labels: Vec<(String, String)>,

    /// Which identity labels each workload family carries (file only: labels.families).
    /// A family not listed carries all but pid (and pid too with --labels pid).
    #[arg(skip)]
    pub family_labels: HashMap<String, Vec<IdentityLabel>>,

    /// Service label rules (file only: service.overrides); the first matching rule wins.
    #[arg(skip)]
    pub service_overrides: Vec<ServiceOverride>,

    #[command(flatten)]
    pub selection: Selection,

    /// Docker API socket, asked for container names (GET /containers/ID/json). If it is
    /// missing (no Docker here, or not mounted into the agent's container), the container
    /// label is the container's ID instead of its name.
    #[arg(
        long = "docker.socket",
        env = "MONITOR_DOCKER_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: PathBuf,

    /// This node's name in Kubernetes; in a DaemonSet, pass spec.nodeName (env valueFrom
    /// fieldRef). When set, the pods of this node are watched through the Kubernetes API for
    /// the pod, namespace and service labels; unset, Kubernetes is not asked at all.
    #[arg(
        long = "kubernetes.node-name",
        env = "MONITOR_KUBERNETES_NODE_NAME",
        value_name = "NAME"
    )]
    pub kubernetes_node_name: Option<String>,

    /// URL of the Kubernetes API server (e.g. https://10.0.0.1:443). Default: in-cluster, from
    /// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT with the pod's service-account
    /// token and CA. Used only with --kubernetes.node-name.
    #[arg(long = "kubernetes.api-url", env = "MONITOR_KUBERNETES_API_URL", value_name = "URL",
          value_parser = parse_api_url)]
    pub kubernetes_api_url: Option<String>,

    /// How long a deleted pod's metadata is kept, so that the last events of its exiting
    /// processes are still labelled with its pod, namespace and service.
    #[arg(long = "kubernetes.deleted-pod-ttl", env = "MONITOR_KUBERNETES_DELETED_POD_TTL",
          value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub kubernetes_deleted_pod_ttl: Duration,

    /// How often the kernel maps are swept: finished processes' entries are folded into their
    /// series and freed, so the maps do not fill between scrapes.
    #[arg(long = "kernel.sweep-interval", value_name = "DURATION", default_value = "5s",
          value_parser = parse_sweep_interval)]
    pub sweep_interval: Duration,

    /// Capacity of the kernel's per-(process, syscall) latency map.
    #[arg(long = "kernel.syscall-stats-entries", value_name = "N",
          default_value_t = capacity::SYSCALL_STATS, value_parser = clap::value_parser!(u32).range(1..))]
    pub syscall_stats_entries: u32,

    /// Capacity of the kernel's per-(process, syscall, errno) error map.
    #[arg(long = "kernel.syscall-errors-entries", value_name = "N",
          default_value_t = capacity::SYSCALL_ERRORS, value_parser = clap::value_parser!(u32).range(1..))]
    pub syscall_errors_entries: u32,

    /// Bytes of the process-event ring buffer: a power of two, at least one page (4096).
    #[arg(long = "kernel.process-events-bytes", value_name = "BYTES",
          default_value_t = capacity::PROCESS_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub process_events_bytes: u32,

    /// Capacity of the kernel's table of tracked TCP sockets (connect/accept to close).
    /// Sockets beyond it go untracked and are counted in
    /// monitor_kernel_map_insert_failures_total{map="TCP_CONNS"}.
    #[arg(long = "kernel.tcp-conns-entries", value_name = "N",
          default_value_t = capacity::TCP_CONNS, value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_conns_entries: u32,

    /// Capacity of the kernel's per-process socket byte counters.
    #[arg(long = "kernel.net-bytes-entries", value_name = "N",
          default_value_t = capacity::NET_BYTES, value_parser = clap::value_parser!(u32).range(1..))]
    pub net_bytes_entries: u32,

    /// Bytes of the TCP-event ring buffer: a power of two, at least one page (4096).
    #[arg(long = "kernel.tcp-events-bytes", value_name = "BYTES",
          default_value_t = capacity::TCP_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub tcp_events_bytes: u32,

    /// Bytes of the ring buffer of captured socket reads/writes (HTTP): a power of two, at
    /// least one page (4096). Each capture takes 576 bytes.
    #[arg(long = "kernel.payload-events-bytes", value_name = "BYTES",
          default_value_t = capacity::PAYLOAD_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub payload_events_bytes: u32,

    /// Bytes of the ring buffer of requests framed in the kernel (HTTP): a power of two, at
    /// least one page (4096). Each request takes 136 bytes.
    #[arg(long = "kernel.request-events-bytes", value_name = "BYTES",
          default_value_t = capacity::REQUEST_EVENTS_BYTES, value_parser = parse_ring_bytes)]
    pub request_events_bytes: u32,

    /// Distinct program names each parent process's children keep as their own comm. A
    /// later new name that exits within --processes.short-lived of its exec is counted as
    /// comm="[short-lived]" (other identity labels kept), so a shell loop, CI runner or job
    /// scheduler running many differently named programs adds one set of series, not one per
    /// name. Programs that live longer always keep their name. 0: never fold.
    #[arg(
        long = "processes.names-per-parent",
        env = "MONITOR_PROCESSES_NAMES_PER_PARENT",
        value_name = "N",
        default_value_t = 16
    )]
    pub processes_names_per_parent: usize,

    /// How long a process beyond its parent's --processes.names-per-parent must live to
    /// keep its own comm; until then its series wait (they appear once it has).
    #[arg(long = "processes.short-lived", env = "MONITOR_PROCESSES_SHORT_LIVED",
          value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub processes_short_lived: Duration,

    /// Syscalls that get a latency histogram (monitor_syscall_duration_seconds, 30 series per
    /// process name and syscall): `blocking` (file and network I/O, sync, sleeps and waits;
    /// the list is in the README), `all`, `none`, or syscall names, e.g. `blocking,mmap`.
    /// Every syscall is counted in monitor_syscalls_total and its errors in
    /// monitor_syscall_errors_total whatever this says.
    #[arg(
        long = "syscalls.histograms",
        env = "MONITOR_SYSCALLS_HISTOGRAMS",
        value_name = "LIST",
        default_value = "blocking"
    )]
    pub syscall_histograms: crate::signals::syscalls::histograms::HistogramSyscalls,

    /// Distinct http_route values per service (in its namespace; on a host, the process
    /// name) on http_server_request_duration_seconds; further routes are counted under
    /// http_route="_overflow". A route's place is freed when its own series expire
    /// (--series.ttl).
    #[arg(
        long = "http.routes-per-comm",
        env = "MONITOR_HTTP_ROUTES_PER_COMM",
        value_name = "N",
        default_value_t = 100
    )]
    pub http_routes_per_comm: usize,

    /// Distinct `peer` label values per process name on the TCP families; further peers are
    /// counted under peer="other" (and in monitor_tcp_peer_overflow_total). Also distinct
    /// remote ports (`port`) of outbound connections per process name, then port="other", and
    /// distinct servers (server_address and server_port) per service on
    /// http_client_request_duration_seconds; further ones are "other". A place is freed when
    /// its series expire (--series.ttl).
    #[arg(
        long = "tcp.peers-per-comm",
        env = "MONITOR_TCP_PEERS_PER_COMM",
        value_name = "N",
        default_value_t = 64
    )]
    pub tcp_peers_per_comm: usize,

    /// Probes not to attach, comma-separated. Their metrics stay empty; they show as
    /// monitor_probe_disabled 1 and under /healthz's `ok` line, not as a fault.
    #[arg(long = "probes.disable", value_name = "PROBE", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(
              crate::probes::PROBES.iter().map(|probe| probe.program)))]
    pub disabled_probes: Vec<String>,

    /// Where socket bytes and request payloads are read. auto: the sock_send_length and
    /// sock_recv_length tracepoints where the kernel has them (not 6.1; 6.12 does), else the exits
    /// of the read/write/send/recv system calls; tracepoints or syscalls: only that hook.
    /// The syscall hook works on every kernel but runs on every system call exit.
    #[arg(
        long = "probes.socket-io",
        env = "MONITOR_PROBES_SOCKET_IO",
        value_name = "HOOK",
        value_enum,
        default_value_t = crate::probes::SocketIoHook::Auto
    )]
    pub socket_io: crate::probes::SocketIoHook,

    /// Where HTTP/1.x requests are framed. auto: in the kernel where its verifier accepts
    /// the framing programs (global BPF functions, Linux 5.6+), one record per
    /// request and no payload copied; else a prefix of every read/write of an HTTP socket is
    /// copied to the agent and parsed there. kernel or user: only that way (kernel leaves the
    /// socket I/O probes detached where the kernel refuses it). The metrics are the same.
    #[arg(
        long = "probes.request-framing",
        env = "MONITOR_PROBES_REQUEST_FRAMING",
        value_name = "WHERE",
        value_enum,
        default_value_t = crate::probes::RequestFraming::Auto
    )]
    pub request_framing: crate::probes::RequestFraming,

    /// Copy the reads and writes of database connections the kernel does not frame (up to
    /// 4 KiB each) to the agent, which frames them: PostgreSQL with --probes.postgres=false,
    /// Redis with --probes.redis=false. Off by default: copying costs more than framing in
    /// the kernel (docs/benchmarks.md). Needs requests framed in the kernel
    /// (--probes.request-framing auto or kernel).
    #[arg(long = "probes.databases", env = "MONITOR_PROBES_DATABASES")]
    pub databases: bool,

    /// Follow Redis connections (RESP2 and RESP3, found by their first command) into
    /// db_client_operation_duration_seconds and db_server_operation_duration_seconds with
    /// db_system_name="redis". They are framed in the kernel: one record per command and
    /// reply, carrying the command's name or the error's prefix, never a key or a value.
    /// Costs about 2 µs of kernel time per operation of a client and its server (a
    /// saturated redis-server lost 18-33% of its throughput, 60% with 16-command pipelines:
    /// docs/benchmarks.md); false: Redis connections are judged once and ignored. Needs
    /// requests framed in the kernel (--probes.request-framing auto or kernel).
    #[arg(
        long = "probes.redis",
        env = "MONITOR_PROBES_REDIS",
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value_t = true
    )]
    pub redis: bool,

    /// Follow PostgreSQL connections (protocol 3, found by their startup packet or first
    /// Query/Parse) into db_client_operation_duration_seconds and
    /// db_server_operation_duration_seconds with db_system_name="postgresql": the simple and
    /// the extended query protocol, pipelines included. They are framed in the kernel: each
    /// message's header is read and its body skipped; only the messages that start, name or
    /// answer an operation reach the agent, with at most 64 bytes of their body, reduced
    /// there to the statement's first keyword or the error's SQLSTATE. Result sets never
    /// leave the kernel. Costs about 5 µs of kernel time per query of a client and its
    /// server, one header read per message (a saturated pgbench -S lost 21% of its
    /// throughput, 13% with this off: docs/benchmarks.md). false: PostgreSQL connections are
    /// judged once and ignored (or copied, with --probes.databases). Needs requests framed
    /// in the kernel (--probes.request-framing auto or kernel).
    #[arg(
        long = "probes.postgres",
        env = "MONITOR_PROBES_POSTGRES",
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value_t = true
    )]
    pub postgres: bool,

    /// Follow HTTP/2 (cleartext with prior knowledge or after an h2c upgrade, and inside TLS
    /// with --probes.tls) into the HTTP families with network_protocol_version="2", and gRPC
    /// calls into rpc_server_call_duration_seconds and rpc_client_call_duration_seconds. A
    /// connection is found by the client's preface in the kernel; each of its reads and
    /// writes (up to 4 KiB) is then copied to the agent, which frames it and decodes its
    /// headers (HPACK), keeping only :method, :path, :status, content-type and grpc-status.
    /// Connections opened before the agent cannot be decoded: they are counted in
    /// monitor_http2_unparseable_connections_total.
    #[arg(
        long = "probes.http2",
        env = "MONITOR_PROBES_HTTP2",
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value_t = true
    )]
    pub http2: bool,

    /// See HTTPS: uprobes on OpenSSL's SSL_read and SSL_write (1.1.1 and 3, and their _ex
    /// forms) in every libssl file the processes map, the host's and each container's own
    /// copy, found in /proc/PID/maps after each exec and every 10 s. The plaintext is framed
    /// like cleartext HTTP, with url_scheme="https". Go's crypto/tls, GnuTLS and NSS are not seen: they are
    /// counted in monitor_tls_uninstrumented_processes. Each SSL_read/SSL_write call then
    /// takes two breakpoint traps (docs/benchmarks.md: a saturated nginx over TLS served far
    /// fewer requests/s). false: no uprobes at all.
    #[arg(
        long = "probes.tls",
        env = "MONITOR_PROBES_TLS",
        value_name = "BOOL",
        action = clap::ArgAction::Set,
        default_value_t = true
    )]
    pub tls: bool,

    /// Push the metrics with OTLP/HTTP (protobuf) to URL/v1/metrics as well, e.g.
    /// http://otel-collector:4318 (an OpenTelemetry Collector, Datadog's or New Relic's OTLP
    /// endpoint). http:// or https:// (checked against the system's CA bundle). Off when
    /// unset. The push never delays /metrics: a slow or unreachable endpoint only fills a
    /// bounded queue, whose oldest batches are then dropped.
    #[arg(
        long = "otlp.endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint_text: Option<String>,

    /// `--otlp.endpoint`, checked (by `load_from`: clap would echo a refused URL, and one
    /// with a password in it must not be).
    #[arg(skip)]
    pub otlp_endpoint: Option<Endpoint>,

    /// How often the metrics are pushed with --otlp.endpoint (at least 1s).
    #[arg(long = "otlp.interval", env = "MONITOR_OTLP_INTERVAL", value_name = "DURATION",
          default_value = "60s", value_parser = parse_interval)]
    pub otlp_interval: Duration,

    /// Request headers sent with every push, KEY=VALUE, comma-separated or repeated: API
    /// keys (e.g. api-key=... for New Relic, dd-api-key=... for Datadog). Their values are
    /// secrets: never logged, never on /metrics, never echoed in an error. Prefer the
    /// environment variable (or a file-backed one) over the command line, which other local
    /// users can read in /proc.
    #[arg(long = "otlp.headers", env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true,
          value_name = "KEY=VALUE", value_delimiter = ',', value_parser = raw_header)]
    pub otlp_raw_headers: Vec<RawHeader>,

    /// `--otlp.headers`, checked (by `load_from`).
    #[arg(skip)]
    pub otlp_headers: Vec<Header>,

    /// How counters and histograms are pushed: cumulative (since the series started, as
    /// on /metrics) or delta (since the previous push; for back ends that prefer deltas).
    #[arg(long = "otlp.temporality", env = "MONITOR_OTLP_TEMPORALITY", value_name = "TEMPORALITY",
          value_enum, default_value_t = Temporality::Cumulative)]
    pub otlp_temporality: Temporality,

    /// For tests only: read no process events for this long after start-up, so that a test
    /// can overfill the ring buffer and check the loss accounting.
    #[arg(long = "testing.pause-event-reader", hide = true, value_name = "DURATION",
          value_parser = parse_duration)]
    pub pause_event_reader: Option<Duration>,

    /// Log level: off, error, warn, info, debug or trace. RUST_LOG refines it per module.
    #[arg(
        long = "log.level",
        env = "MONITOR_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info",
        ignore_case = true,
        // Named values, so that a wrong one is answered with the list of right ones.
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::PossibleValuesParser::new(LOG_LEVELS),
            |level: String| level.parse::<LevelFilter>().unwrap_or(LevelFilter::Info),
        )
    )]
    pub log_level: LevelFilter,

    /// Log format: text (for people), logfmt or json (for log pipelines: one record per
    /// line, multi-line messages escaped).
    #[arg(
        long = "log.format",
        env = "MONITOR_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t = crate::logging::Format::Text
    )]
    pub log_format: crate::logging::Format,
}

/// What the binary can do besides running the agent.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    /// Turn an SLO file into Prometheus recording rules and burn-rate alerts, then exit.
    #[command(
        long_about = "Turn an SLO file (YAML) into Prometheus recording rules and \
        multi-window, multi-burn-rate alerts, then exit. Loads no probe and needs no \
        privilege: any user, on any machine, or in the container image.\n\n\
        Each SLO names an SLI kind (http-availability, http-latency, syscall-availability, \
        syscall-latency, connect-availability), a PromQL selector, an objective in percent \
        and a window (default 30d). The output records its error ratio over 5m … 3d and the \
        window, labelled slo, sloth_service, sloth_slo and sloth_id (as Sloth does, for its \
        and Pyrra-style dashboards), and alerts on multi-window, multi-burn-rate conditions: \
        page at 14.4x (1h and 5m) or 6x (6h and 30m), ticket at 3x (1d and 2h) or 1x (3d and \
        6h), scaled for windows other than 30 days. A latency threshold between two of the \
        agent's histogram bounds (2^k ns) is snapped up to the next bound, said on stderr. \
        See deploy/slo/example.yaml.\n\n\
        Exit status: 0 when the rules are written, 2 for a bad or unreadable SLO file (one \
        line on stderr), 1 when the rules cannot be written.\n\n\
        Example: monitor-agent slo my-slos.yaml --output /etc/prometheus/slo.rules.yaml"
    )]
    Slo(crate::slo::Args),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraLabel {
    /// The process ID (TGID).
    Pid,
}

impl Config {
    pub fn with_pid_label(&self) -> bool {
        self.labels.contains(&ExtraLabel::Pid)
    }

    /// The OTLP push, when `--otlp.endpoint` is set.
    pub fn otlp(&self) -> Option<OtlpSettings> {
        Some(OtlpSettings {
            endpoint: self.otlp_endpoint.clone()?,
            interval: self.otlp_interval,
            headers: self.otlp_headers.clone(),
            temporality: self.otlp_temporality,
        })
    }
}

/// Why [`load_from`] gave no configuration.
#[derive(Debug)]
pub enum LoadError {
    /// A bad command line or environment: clap's own message, exit status 2 (`exit()`).
    Usage(clap::Error),
    /// The file named by --config.file is unreadable or wrong: one line, exit status 1.
    File(FileError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Usage(err) => write!(f, "{err}"),
            LoadError::File(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// The clap ids (field names) of the settings the file can also set.
mod id {
    pub const SERIES_TTL: &str = "series_ttl";
    pub const SERIES_MAX: &str = "series_max";
    pub const LABELS: &str = "labels";
    pub const CONSTANT_LABELS: &str = "constant_labels";
    pub const TCP_PEERS_PER_COMM: &str = "tcp_peers_per_comm";
    pub const HTTP_ROUTES_PER_COMM: &str = "http_routes_per_comm";
    pub const SYSCALL_HISTOGRAMS: &str = "syscall_histograms";
    pub const PROCESSES_NAMES_PER_PARENT: &str = "processes_names_per_parent";
    pub const PROCESSES_SHORT_LIVED: &str = "processes_short_lived";
    pub const DOCKER_SOCKET: &str = "docker_socket";
    pub const KUBERNETES_NODE_NAME: &str = "kubernetes_node_name";
    pub const KUBERNETES_API_URL: &str = "kubernetes_api_url";
    pub const KUBERNETES_DELETED_POD_TTL: &str = "kubernetes_deleted_pod_ttl";
    pub const SELECT_INCLUDE: &str = "select_include";
    pub const SELECT_EXCLUDE: &str = "select_exclude";

    #[cfg(test)]
    pub const ALL: [&str; 15] = [
        SERIES_TTL,
        SERIES_MAX,
        LABELS,
        CONSTANT_LABELS,
        TCP_PEERS_PER_COMM,
        HTTP_ROUTES_PER_COMM,
        SYSCALL_HISTOGRAMS,
        PROCESSES_NAMES_PER_PARENT,
        PROCESSES_SHORT_LIVED,
        DOCKER_SOCKET,
        KUBERNETES_NODE_NAME,
        KUBERNETES_API_URL,
        KUBERNETES_DELETED_POD_TTL,
        SELECT_INCLUDE,
        SELECT_EXCLUDE,
    ];
}

/// The configuration from `args` (program name first), the environment and `--config.file`:
/// command line > environment > file > default. clap parses the first two and records each
/// value's source; the file then fills every setting whose value is clap's default or absent.
/// Lists (`--label.const`, `--select.*`) are replaced whole, never merged with the file's.
/// A command (`slo`) takes only its own arguments: no environment, no file.
pub fn load_from<I, T>(args: I) -> Result<Config, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Config::command();
    // A command (first, as it must be) is not the agent: the agent's environment, which a
    // shell or a pod may well hold, is none of its business and must not fail it.
    let names_a_command = args.get(1).is_some_and(|first| {
        command
            .get_subcommands()
            .any(|sub| first.to_str() == Some(sub.get_name()))
    });
    if names_a_command {
        command = command.mut_args(|arg| arg.env(None));
    }
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(LoadError::Usage)?;
    let mut config = Config::from_arg_matches(&matches)
        .map_err(|err| LoadError::Usage(err.format(&mut command)))?;
    if let Some(name) = repeated_name(&config.constant_labels) {
        return Err(LoadError::Usage(command.error(
            ErrorKind::ValueValidation,
            format!("--label.const: `{name}` is given twice"),
        )));
    }
    if let Some(text) = &config.otlp_endpoint_text {
        config.otlp_endpoint = Some(parse_endpoint(text).map_err(|err| {
            LoadError::Usage(command.error(
                ErrorKind::ValueValidation,
                format!("--otlp.endpoint: {err}"),
            ))
        })?);
    }
    config.otlp_headers = parse_headers(&config.otlp_raw_headers).map_err(|err| {
        LoadError::Usage(
            command.error(ErrorKind::ValueValidation, format!("--otlp.headers: {err}")),
        )
    })?;
    // A command reads its own input, not the agent's settings file.
    if let (Some(path), None) = (&config.config_file, &config.command) {
        let file = FileConfig::load(path).map_err(LoadError::File)?;
        config.apply_file(file, &matches);
    }
    Ok(config)
}

fn repeated_name(labels: &[(String, String)]) -> Option<&str> {
    labels.iter().enumerate().find_map(|(index, (name, _))| {
        labels[..index]
            .iter()
            .any(|(seen, _)| seen == name)
            .then_some(name.as_str())
    })
}

impl Config {
    /// Takes from `file` every setting that neither the command line nor the environment set.
    fn apply_file(&mut self, file: FileConfig, matches: &ArgMatches) {
        let unset = |id: &str| {
            matches!(
                matches.value_source(id),
                None | Some(ValueSource::DefaultValue)
            )
        };
        fn fill<T>(slot: &mut T, value: Option<T>, unset: bool) {
            if let (Some(value), true) = (value, unset) {
                *slot = value;
            }
        }
        fill(&mut self.series_ttl, file.series_ttl, unset(id::SERIES_TTL));
        fill(&mut self.series_max, file.series_max, unset(id::SERIES_MAX));
        let labels = file.pid_label.map(|pid| {
            if pid {
                vec![ExtraLabel::Pid]
            } else {
                Vec::new()
            }
        });
        fill(&mut self.labels, labels, unset(id::LABELS));
        fill(
            &mut self.constant_labels,
            file.constant_labels,
            unset(id::CONSTANT_LABELS),
        );
        fill(
            &mut self.tcp_peers_per_comm,
            file.tcp_peers_per_comm,
            unset(id::TCP_PEERS_PER_COMM),
        );
        fill(
            &mut self.http_routes_per_comm,
            file.http_routes_per_comm,
            unset(id::HTTP_ROUTES_PER_COMM),
        );
        fill(
            &mut self.syscall_histograms,
            file.syscall_histograms,
            unset(id::SYSCALL_HISTOGRAMS),
        );
        fill(
            &mut self.processes_names_per_parent,
            file.processes_names_per_parent,
            unset(id::PROCESSES_NAMES_PER_PARENT),
        );
        fill(
            &mut self.processes_short_lived,
            file.processes_short_lived,
            unset(id::PROCESSES_SHORT_LIVED),
        );
        fill(
            &mut self.docker_socket,
            file.docker_socket,
            unset(id::DOCKER_SOCKET),
        );
        fill(
            &mut self.kubernetes_node_name,
            file.kubernetes_node_name.map(Some),
            unset(id::KUBERNETES_NODE_NAME),
        );
        fill(
            &mut self.kubernetes_api_url,
            file.kubernetes_api_url.map(Some),
            unset(id::KUBERNETES_API_URL),
        );
        fill(
            &mut self.kubernetes_deleted_pod_ttl,
            file.kubernetes_deleted_pod_ttl,
            unset(id::KUBERNETES_DELETED_POD_TTL),
        );
        let mut include = self.selection.include().to_vec();
        fill(&mut include, file.select_include, unset(id::SELECT_INCLUDE));
        let mut exclude = self.selection.exclude().to_vec();
        fill(&mut exclude, file.select_exclude, unset(id::SELECT_EXCLUDE));
        self.selection = Selection::new(include, exclude);
        self.family_labels = file.family_labels;
        self.service_overrides = file.service_overrides;
    }
}

/// `--select.include` and `--select.exclude` as clap reads them. `Config::selection` is a
/// [`Selection`] all the same (see the impls below): the rules stay free of clap, and a
/// `Config` holds the flags' selection however it was parsed.
#[derive(Args)]
struct SelectFlags {
    /// Monitor only processes matching one of these selectors. SELECTOR is KEY=PATTERN, KEY
    /// one of comm, exe (full path), container, namespace; PATTERN a glob matched against the
    /// whole value (`*` any run of characters, `?` one). Repeat the flag or separate with
    /// commas. A process is monitored if it matches no --select.exclude and, when any
    /// --select.include is given, at least one of them. A process without a value for a key
    /// (e.g. not in a container) never matches a selector on that key.
    #[arg(id = "select_include", long = "select.include", env = "MONITOR_SELECT_INCLUDE",
          value_name = "SELECTOR", value_delimiter = ',', value_parser = parse_selector)]
    include: Vec<Selector>,

    /// Do not monitor processes matching any of these selectors (KEY=PATTERN, as for
    /// --select.include); an exclude wins over an include.
    #[arg(id = "select_exclude", long = "select.exclude", env = "MONITOR_SELECT_EXCLUDE",
          value_name = "SELECTOR", value_delimiter = ',', value_parser = parse_selector)]
    exclude: Vec<Selector>,
}

impl FromArgMatches for Selection {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = SelectFlags::from_arg_matches(matches)?;
        Ok(Selection::new(flags.include, flags.exclude))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let mut flags = SelectFlags {
            include: self.include().to_vec(),
            exclude: self.exclude().to_vec(),
        };
        flags.update_from_arg_matches(matches)?;
        *self = Selection::new(flags.include, flags.exclude);
        Ok(())
    }
}

impl Args for Selection {
    fn group_id() -> Option<clap::Id> {
        SelectFlags::group_id()
    }

    fn augment_args(command: Command) -> Command {
        SelectFlags::augment_args(command)
    }

    fn augment_args_for_update(command: Command) -> Command {
        SelectFlags::augment_args_for_update(command)
    }
}

fn parse_selector(text: &str) -> Result<Selector, String> {
    text.parse()
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

#[cfg(test)]
mod tests;
