//! Wiring: privileges, listener, probes, readers, registry, server; then a clean shutdown.
use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context as _;
use log::{LevelFilter, info, warn};
use tokio::io::unix::AsyncFd;

use crate::{
    export::prometheus::MonitorCollector,
    export::server::{self, Endpoints},
    identity::{self, resolver::Resolver},
    pipeline::{Monitor, MonitorSettings},
    privileges,
    probes::decode,
    probes::{self, LoadSettings, event_ring::EventRing, kernel_maps::KernelMaps},
    series::labels::LabelPolicy,
    settings::Config,
    settings::web::WebConfig,
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

pub async fn run(config: Config) -> anyhow::Result<()> {
    privileges::check()?;
    let listener = server::bind(config.listen_address)?;
    // The web config is checked in full here, before any probe is loaded.
    let web = match &config.web_config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::none(),
    };
    // So is the Kubernetes API: outside a pod, --kubernetes.node-name fails before loading.
    let kube = kube_config(&config)?;
    let mut loaded = probes::load(&LoadSettings {
        syscall_stats_entries: config.syscall_stats_entries,
        syscall_errors_entries: config.syscall_errors_entries,
        process_events_bytes: config.process_events_bytes,
        tcp_conns_entries: config.tcp_conns_entries,
        net_bytes_entries: config.net_bytes_entries,
        tcp_events_bytes: config.tcp_events_bytes,
        payload_events_bytes: config.payload_events_bytes,
        disabled: config.disabled_probes.clone(),
        socket_io: config.socket_io,
        kernel_log_level: kernel_log_level(config.log_level),
    })?;
    if loaded.probes.iter().all(|state| !state.attached()) {
        anyhow::bail!("no probe could be attached (see the warnings above)");
    }
    info!("per-thread maps sized for pid_max = {}", loaded.pid_slots);

    let kernel_logs = match aya_log::EbpfLogger::init(&mut loaded.ebpf) {
        Ok(logger) => Some(logger),
        Err(err) => {
            warn!("probe logs unavailable: {err}");
            None
        }
    };
    let mut maps = KernelMaps::take(&mut loaded.ebpf, loaded.capacities.clone())?;
    let tracks_connections = loaded
        .probes
        .iter()
        .any(|state| state.probe.program == monitor_common::program::TCP_STATE && state.attached());
    if tracks_connections {
        // After attaching, so a listen() racing the scan is recorded by the probe anyway.
        maps.seed_listeners();
    }
    let events = EventRing::take(
        &mut loaded.ebpf,
        monitor_common::map::PROCESS_EVENTS,
        decode::process_event,
    )?;
    let events_ready = watch_readable(events.fd().context("duplicating the ring buffer fd")?)
        .context("polling the process-event ring buffer")?;
    let tcp_events = EventRing::take(
        &mut loaded.ebpf,
        monitor_common::map::TCP_EVENTS,
        decode::tcp_event,
    )?;
    let tcp_ready = watch_readable(tcp_events.fd().context("duplicating the ring buffer fd")?)
        .context("polling the TCP-event ring buffer")?;
    let payload_events = EventRing::take(
        &mut loaded.ebpf,
        monitor_common::map::PAYLOAD_EVENTS,
        decode::payload_event,
    )?;
    let payload_ready = watch_readable(
        payload_events
            .fd()
            .context("duplicating the ring buffer fd")?,
    )
    .context("polling the payload ring buffer")?;
    let settings = MonitorSettings {
        ttl: config.series_ttl,
        sweep_interval: config.sweep_interval,
        peers_per_comm: config.tcp_peers_per_comm,
        routes_per_comm: config.http_routes_per_comm,
        series_max: config.series_max,
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
    let resolver = Resolver::new(
        Some(config.docker_socket.clone()),
        pods.clone(),
        config.service_overrides.clone(),
        config.selection.clone(),
    );
    let mut monitor = Monitor::new(
        maps,
        events,
        tcp_events,
        payload_events,
        &settings,
        policy.clone(),
        resolver,
    );
    if let Some(pause) = config.pause_event_reader {
        warn!("test switch: reading no process events for {pause:?}");
        monitor.pause_events_until(Instant::now() + pause);
    }
    let monitor = Arc::new(Mutex::new(monitor));

    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(MonitorCollector::new(
            Arc::clone(&monitor),
            loaded.probes.clone(),
            policy,
        )))
        .context("registering the collector")?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(read_events(
        events_ready,
        Arc::clone(&monitor),
        Monitor::drain_events,
        None,
    ));
    tasks.spawn(read_events(
        tcp_ready,
        Arc::clone(&monitor),
        Monitor::drain_tcp_events,
        Some(BATCH_POLL),
    ));
    tasks.spawn(read_events(
        payload_ready,
        Arc::clone(&monitor),
        Monitor::drain_payload_events,
        Some(BATCH_POLL),
    ));
    tasks.spawn(sweep(Arc::clone(&monitor), config.sweep_interval));
    if let (Some(kube), Some(pods)) = (kube, pods) {
        tasks.spawn(identity::kubernetes::run(kube, pods));
    }
    if let Some(logger) = kernel_logs {
        tasks.spawn(forward_kernel_logs(logger));
    }

    let endpoints = Arc::new(Endpoints {
        registry,
        probes: loaded.probes.clone(),
    });
    let settings = server::Settings {
        web,
        max_requests: config.web_max_requests,
        header_timeout: config.web_read_header_timeout,
    };
    server::serve(listener, endpoints, settings, shutdown_signal()).await?;

    info!("shutting down: detaching probes");
    tasks.shutdown().await;
    drop(loaded);
    info!("probes detached, bye");
    Ok(())
}

/// Applies a ring buffer's events as they come: exec/exit events so names are known before
/// their processes' entries are retired, TCP events so the buffer does not fill between sweeps.
///
/// The TCP and payload probes wake the reader only once a batch is waiting (see
/// `maps::batched_wakeup` in the probes); `poll_every` drains what a quiet moment leaves below
/// the batch size.
async fn read_events(
    ready: AsyncFd<std::os::fd::OwnedFd>,
    monitor: Arc<Mutex<Monitor>>,
    drain: fn(&mut Monitor, Instant),
    poll_every: Option<std::time::Duration>,
) {
    let mut timer = poll_every.map(|every| {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    loop {
        let tick = async {
            match timer.as_mut() {
                Some(timer) => {
                    timer.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            readable = ready.readable() => {
                let mut guard = match readable {
                    Ok(guard) => guard,
                    Err(err) => {
                        warn!("ring buffer polling failed, its events wait for the next sweep: {err}");
                        return;
                    }
                };
                drain(&mut lock(&monitor), Instant::now());
                guard.clear_ready();
            }
            () = tick => drain(&mut lock(&monitor), Instant::now()),
        }
    }
}

/// How often the batched rings (TCP events, payloads) are drained when no batch is full.
const BATCH_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Folds and frees finished processes' kernel entries even when nobody scrapes.
async fn sweep(monitor: Arc<Mutex<Monitor>>, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        lock(&monitor).refresh(Instant::now());
    }
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

/// Registers a ring buffer's fd with the runtime's reactor for read readiness.
fn watch_readable<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd (an `OwnedFd`, or aya's `MapData` inside the logger) and
    // keeps it open, unchanged, for as long as the `AsyncFd` owns `inner`.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

fn lock(monitor: &Mutex<Monitor>) -> std::sync::MutexGuard<'_, Monitor> {
    // A panic elsewhere must not stop the metrics: the state is still consistent per call.
    monitor
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
