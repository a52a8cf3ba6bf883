//! The HTTP endpoint: `/metrics` (Prometheus text format), `/healthz`, and a landing page.
use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, info, warn};
use prometheus::{Encoder as _, Registry, TextEncoder};

use crate::probes::ProbeState;

/// A client that has not sent its request headers by then is cut off.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Endpoints {
    pub registry: Registry,
    pub probes: Vec<ProbeState>,
}

/// Binds before anything is loaded, so a taken port fails fast and changes nothing.
pub fn bind(address: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} (--web.listen-address)"))?;
    listener.set_nonblocking(true).context("setting the listener non-blocking")?;
    Ok(listener)
}

pub async fn serve(
    listener: std::net::TcpListener,
    endpoints: Arc<Endpoints>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
    info!("serving http://{}/metrics", listener.local_addr().context("listener address")?);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning, keep serving.
                    warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let endpoints = Arc::clone(&endpoints);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let endpoints = Arc::clone(&endpoints);
                async move { Ok::<_, Infallible>(respond(&request, &endpoints)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                debug!("connection from {peer}: {err}");
            }
        });
    }
}

fn respond(request: &Request<Incoming>, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match request.uri().path() {
        "/metrics" => metrics(&endpoints.registry),
        "/healthz" => health(&endpoints.probes),
        "/" => text(
            StatusCode::OK,
            "monitor-agent: golden-signal metrics from eBPF\n/metrics  Prometheus metrics\n\
             /healthz  probe health\n"
                .into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics or /healthz\n".into()),
    }
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(64 * 1024);
    if let Err(err) = encoder.encode(&registry.gather(), &mut body) {
        warn!("encoding metrics: {err}");
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {err}\n"));
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Ok(value) = header::HeaderValue::from_str(encoder.format_type()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// 200 while at least one probe runs (a degraded agent still serves what it has, so a
/// liveness probe must not restart it); 503 when nothing is attached.
pub fn health(probes: &[ProbeState]) -> Response<Full<Bytes>> {
    let failed: Vec<String> = probes
        .iter()
        .filter_map(|state| {
            let error = state.error.as_ref()?;
            Some(format!("probe {} not attached: {error}", state.program))
        })
        .collect();
    if failed.is_empty() {
        return text(StatusCode::OK, "ok\n".into());
    }
    let status = if failed.len() == probes.len() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    text(status, format!("degraded\n{}\n", failed.join("\n")))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
