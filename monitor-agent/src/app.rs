//! Wiring: privileges, listener, probes, the pipeline's thread, the server; then a clean
//! shutdown.
use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use log::{LevelFilter, info, warn};
use tokio::io::unix::AsyncFd;

use crate::{
    export::{
        self,
        server::{self, Endpoints},
    },
    identity::{self, resolver::Resolver},
    pipeline::{self, Pipeline},
    privileges,
    probes::{self, LoadSettings},
    series::labels::LabelPolicy,
    settings::{Config, web::WebConfig},
    signals,
};

/// Where the pod watch connects, when `--kubernetes.node-name` is set.
fn kube_config(config: &Config) -> anyhow::Result<Option<identity::kubernetes::KubeConfig>> {
    let Some(node) = &config.kubernetes_node_name else {
        return Ok(None);
    };
    let ttl = config.kubernetes_deleted_pod_ttl;
    let kube = match &config.kubernetes_api_url {
        Some(url) => identity::kubernetes::KubeConfig {
            api_url: url.clone(),
            token: None,
            ca_file: None,
            node_name: node.clone(),
            deleted_ttl: ttl,
        },
        None => identity::kubernetes::KubeConfig::in_cluster(node.clone(), ttl)
            .context("--kubernetes.node-name is set but the in-cluster API is not usable")?,
    };
    Ok(Some(kube))
}

/// `web`: the endpoint's TLS, auth and headers, already checked (`--web.config.file`).
pub async fn run(config: Config, web: WebConfig) -> anyhow::Result<()> {
    privileges::check()?;
    let listener = server::bind(config.listen_address)?;
    // The Kubernetes API is checked before any probe is loaded: outside a pod,
    // --kubernetes.node-name fails first.
    let kube = kube_config(&config)?;
    let mut loaded = probes::load(&LoadSettings {
        syscall_stats_entries: config.syscall_stats_entries,
        syscall_errors_entries: config.syscall_errors_entries,
        process_events_bytes: config.process_events_bytes,
        tcp_conns_entries: config.tcp_conns_entries,
        net_bytes_entries: config.net_bytes_entries,
        tcp_events_bytes: config.tcp_events_bytes,
        payload_events_bytes: config.payload_events_bytes,
        request_events_bytes: config.request_events_bytes,
        disabled: config.disabled_probes.clone(),
        socket_io: config.socket_io,
        request_framing: config.request_framing,
        databases: config.databases,
        redis: config.redis,
        postgres: config.postgres,
        http2: config.http2,
        tls: config.tls,
        timed_syscalls: monitor_common::global::timed_syscalls(|nr| {
            config.syscall_histograms.contains(nr)
        }),
        kernel_log_level: kernel_log_level(config.log_level),
    })?;
    if loaded.probes.iter().all(|state| !state.attached()) {
        anyhow::bail!("no probe could be attached (see the warnings above)");
    }
    info!("per-thread maps sized for pid_max = {}", loaded.pid_slots);

    // The probes count what goes wrong instead of logging it (a line per event would flood
    // the log when the host is busiest), so a build whose probes log nothing has no log ring.
    let kernel_logs = match aya_log::EbpfLogger::init(&mut loaded.ebpf) {
        Ok(logger) => Some(logger),
        Err(aya_log::Error::MapNotFound) => {
            log::debug!("the probes log nothing (no AYA_LOGS map)");
            None
        }
        Err(err) => {
            warn!("probe logs unavailable: {err}");
            None
        }
    };
    let settings = pipeline::Settings {
        ttl: config.series_ttl,
        sweep_interval: config.sweep_interval,
        series_max: config.series_max,
        fold: crate::process::folding::FoldRule {
            names_per_parent: config.processes_names_per_parent,
            short_lived: config.processes_short_lived,
        },
        signals: signals::Settings {
            peers_per_comm: config.tcp_peers_per_comm,
            routes_per_comm: config.http_routes_per_comm,
            syscall_histograms: config.syscall_histograms.clone(),
        },
    };
    let policy = LabelPolicy::new(
        config.with_pid_label(),
        config.family_labels.clone(),
        config.constant_labels.clone(),
    );
    let pods = config
        .kubernetes_node_name
        .as_ref()
        .map(|_| identity::kubernetes::PodStore::new(config.kubernetes_deleted_pod_ttl));
    info!("selection: {}", config.selection.describe());
    // Created here, on the main runtime: the Docker lookups it starts run there.
    let resolver = Resolver::new(
        Some(config.docker_socket.clone()),
        pods.clone(),
        config.service_overrides.clone(),
        config.selection.clone(),
    );
    let mut pipeline = Pipeline::take(&mut loaded, &settings, policy, resolver)?;
    if let Some(pause) = config.pause_event_reader {
        warn!("test switch: reading no ring buffer for {pause:?}");
        pipeline.pause_events_until(Instant::now() + pause);
    }
    let (snapshots, running) = pipeline::thread::spawn(pipeline, config.sweep_interval)?;
    // The object goes to the TLS scan thread, which attaches uprobes to libraries as they
    // appear; it holds every probe attached until it stops.
    let probes::Loaded {
        ebpf,
        probes: probe_states,
        tls,
        ..
    } = loaded;
    let framed = probes::frames_in_kernel(&probe_states);
    let tls_scans = probes::tls::spawn(ebpf, config.tls.then_some(framed), tls)?;

    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(kube), Some(pods)) = (kube, pods) {
        tasks.spawn(identity::kubernetes::run(kube, pods));
    }
    if let Some(logger) = kernel_logs {
        tasks.spawn(forward_kernel_logs(logger));
    }

    let export = match config.otlp() {
        Some(otlp) => Some(export::otlp::spawn(
            &otlp,
            Arc::new(snapshots.clone()),
            config.kubernetes_node_name.clone(),
            &mut tasks,
        )?),
        None => None,
    };
    let endpoints = Arc::new(Endpoints {
        source: Box::new(snapshots),
        probes: probe_states,
        metrics_path: config.web_telemetry_path.clone(),
        export,
    });
    let settings = server::Settings {
        web,
        max_requests: config.web_max_requests,
        max_connections: config.web_max_connections,
        header_timeout: config.web_read_header_timeout,
        write_timeout: config.web_write_timeout,
    };
    server::serve(listener, endpoints, settings, shutdown_signal()).await?;

    info!("shutting down: detaching probes");
    tasks.shutdown().await;
    running.stop();
    tls_scans.stop();
    info!("probes detached, bye");
    Ok(())
}

async fn forward_kernel_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let mut ready = match watch_readable(logger) {
        Ok(ready) => ready,
        Err(err) => {
            warn!("probe logs unavailable: {err}");
            return;
        }
    };
    loop {
        let Ok(mut guard) = ready.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Registers the probes' log buffer with the runtime's reactor for read readiness.
fn watch_readable<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` (aya's `MapData` inside the logger) owns its fd and keeps it open,
    // unchanged, for as long as the `AsyncFd` owns `inner`.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(err) => {
            warn!("cannot listen for SIGTERM ({err}); only SIGINT stops the agent cleanly");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}

/// aya-log's levels: 1 error … 5 trace; 0 silences the probes' logging entirely.
fn kernel_log_level(level: LevelFilter) -> u8 {
    match level {
        LevelFilter::Off => 0,
        LevelFilter::Error => 1,
        LevelFilter::Warn => 2,
        LevelFilter::Info => 3,
        LevelFilter::Debug => 4,
        LevelFilter::Trace => 5,
    }
}
