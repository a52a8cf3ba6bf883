//! The HTTP endpoint: the metrics (Prometheus text format, on `--web.telemetry-path`,
//! gzip-encoded when the scraper accepts it), `/healthz`, and a landing page; nothing else
//! (no debug or profiling endpoints). With `--web.config.file`: TLS, basic auth
//! and extra response headers. Always: a deadline for the TLS handshake and the request
//! headers (slow clients are cut off), a cap on requests in flight (503 beyond), a cap on
//! open connections (closed at once beyond), and a write timeout (a client that stops
//! reading is dropped, with what its request held).
use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body as HttpBody, Frame, SizeHint},
    header::{self, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, info, warn};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::{
    pipeline::thread::Snapshots,
    probes::ProbeState,
    series::publish::Published,
    settings::web::{BasicAuth, WebConfig, basic_credentials},
};

/// Where `/metrics` gets its series: the running pipeline (or a fixed set, in tests).
pub trait Source: Send + Sync {
    fn published(
        &self,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<Published>>> + Send + '_>>;
}

impl Source for Snapshots {
    fn published(
        &self,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<Published>>> + Send + '_>> {
        Box::pin(async move { Ok(self.take().await?.published) })
    }
}

pub struct Endpoints {
    pub source: Box<dyn Source>,
    pub probes: Vec<ProbeState>,
    /// Where the metrics are served (`--web.telemetry-path`).
    pub metrics_path: String,
    /// The OTLP push's counters, when it runs (`--otlp.endpoint`).
    pub export: Option<Arc<super::otlp::stats::Stats>>,
}

/// How the endpoint is served: `--web.config.file`, `--web.max-requests`,
/// `--web.max-connections`, `--web.read-header-timeout`, `--web.write-timeout`.
pub struct Settings {
    pub web: WebConfig,
    /// Requests in flight at once, `/healthz` aside; 0: no limit.
    pub max_requests: usize,
    /// Connections open at once; 0: no limit.
    pub max_connections: usize,
    /// For the TLS handshake, then for each request's headers (idle keep-alive included).
    pub header_timeout: Duration,
    /// How long a write may wait for a client that reads nothing.
    pub write_timeout: Duration,
}

/// Binds before anything is loaded, so a taken port fails fast and changes nothing.
pub fn bind(address: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} (--web.listen-address)"))?;
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    Ok(listener)
}

/// What every connection shares.
struct State {
    endpoints: Arc<Endpoints>,
    auth: Option<Arc<BasicAuth>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    limit: Option<Arc<Semaphore>>,
    /// bcrypt checks running at once (see `PASSWORD_CHECKS`).
    password_checks: Arc<Semaphore>,
    connections: Option<Arc<Semaphore>>,
    header_timeout: Duration,
    write_timeout: Duration,
}

impl State {
    fn new(
        endpoints: Arc<Endpoints>,
        settings: Settings,
    ) -> (State, Option<tokio_rustls::TlsAcceptor>) {
        let tls = settings.web.tls.map(tokio_rustls::TlsAcceptor::from);
        let state = State {
            endpoints,
            auth: settings.web.auth,
            headers: settings.web.headers,
            limit: (settings.max_requests > 0)
                .then(|| Arc::new(Semaphore::new(settings.max_requests))),
            password_checks: Arc::new(Semaphore::new(PASSWORD_CHECKS)),
            connections: (settings.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(settings.max_connections))),
            header_timeout: settings.header_timeout,
            write_timeout: settings.write_timeout,
        };
        (state, tls)
    }
}

pub async fn serve(
    listener: std::net::TcpListener,
    endpoints: Arc<Endpoints>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
    let (state, tls) = State::new(endpoints, settings);
    let state = Arc::new(state);
    let address = listener.local_addr().context("listener address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let auth = if state.auth.is_some() {
        ", basic auth required (not on /healthz)"
    } else {
        ""
    };
    info!(
        "serving {scheme}://{address}{}{auth}",
        state.endpoints.metrics_path
    );
    if state.auth.is_some() && tls.is_none() {
        warn!("basic auth without TLS: passwords cross the network in the clear");
    }
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
        // Held by the connection's task until it ends. Beyond the cap a connection is closed
        // at once: idle ones are cut after the header timeout, so the cap frees itself.
        let Ok(open) = try_place(state.connections.as_ref()) else {
            debug!("connection from {peer} closed: --web.max-connections open already");
            continue;
        };
        let state = Arc::clone(&state);
        let tls = tls.clone();
        let stream = super::write_timeout::WriteTimeout::new(stream, state.write_timeout);
        tokio::spawn(async move {
            let _open = open;
            let Some(acceptor) = tls else {
                return serve_connection(stream, state, peer).await;
            };
            // The handshake is the TLS slow-loris: it gets the header deadline too.
            match tokio::time::timeout(state.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, state, peer).await,
                Ok(Err(err)) => debug!("TLS handshake with {peer} failed: {err}"),
                Err(_) => debug!("TLS handshake with {peer} timed out"),
            }
        });
    }
}

async fn serve_connection<S>(stream: S, state: Arc<State>, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = state.header_timeout;
    let service = service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&request, &state).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(err) = connection.await {
        debug!("connection from {peer}: {err}");
    }
}

/// Request bodies are never read: every endpoint is a GET.
async fn handle<B>(request: &Request<B>, state: &State) -> Response<Body> {
    let mut response = authorize_and_respond(request, state).await;
    for (name, value) in &state.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn authorize_and_respond<B>(request: &Request<B>, state: &State) -> Response<Body> {
    // Liveness probes carry no credentials, and health tells only which probes are attached.
    if request.uri().path() == "/healthz" {
        return respond(request, &state.endpoints).await.map(Body::from);
    }
    // The permit is taken first, so that beyond the limit a request costs nothing (no bcrypt,
    // no rendering); it is held until the response body is sent.
    let Ok(permit) = try_place(state.limit.as_ref()) else {
        debug!("request refused: --web.max-requests in flight already");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight, retry later\n".into(),
        )
        .map(Body::from);
    };
    if let Some(auth) = &state.auth {
        let header = request.headers().get(header::AUTHORIZATION);
        let checked = authorized(auth, &state.password_checks, header).await;
        if checked == Check::Busy {
            debug!("request refused: {PASSWORD_CHECKS} password checks running already");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks in flight, retry later\n".into(),
            )
            .map(Body::from);
        }
        if checked == Check::Denied {
            let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n".into());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"monitor-agent\", charset=\"UTF-8\""),
            );
            return response.map(|body| Body {
                inner: body,
                _permit: permit,
            });
        }
    }
    respond(request, &state.endpoints).await.map(|body| Body {
        inner: body,
        _permit: permit,
    })
}

/// bcrypt checks at once: each takes a CPU for tens to hundreds of milliseconds, on
/// purpose. Beyond them a request that needs one is refused at once (503), so a burst of
/// wrong passwords costs at most this many CPUs and holds at most this many request slots,
/// while scrapes whose password was already checked (a SHA-256, no bcrypt) keep being served.
const PASSWORD_CHECKS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Allowed,
    Denied,
    /// A bcrypt check was needed and every slot for one was taken.
    Busy,
}

/// A place under `limit` (none needed without one), or an error when it is spent.
fn try_place(
    limit: Option<&Arc<Semaphore>>,
) -> Result<Option<OwnedSemaphorePermit>, tokio::sync::TryAcquireError> {
    limit
        .map(|limit| Arc::clone(limit).try_acquire_owned())
        .transpose()
}

/// A cached success costs a SHA-256; anything else one bcrypt, off the runtime's thread,
/// if a slot for one is free.
async fn authorized(
    auth: &Arc<BasicAuth>,
    checks: &Arc<Semaphore>,
    header: Option<&HeaderValue>,
) -> Check {
    let Some((user, password)) = header.and_then(basic_credentials) else {
        return Check::Denied;
    };
    if auth.cached(&user, &password) {
        return Check::Allowed;
    }
    let Ok(slot) = Arc::clone(checks).try_acquire_owned() else {
        return Check::Busy;
    };
    let auth = Arc::clone(auth);
    let verified = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        auth.verify(&user, &password)
    })
    .await
    .unwrap_or(false);
    if verified {
        Check::Allowed
    } else {
        Check::Denied
    }
}

/// A response body that holds its request's `--web.max-requests` permit until it is sent, so
/// slow readers count as in flight.
pub struct Body {
    inner: Full<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl From<Full<Bytes>> for Body {
    fn from(inner: Full<Bytes>) -> Body {
        Body {
            inner,
            _permit: None,
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn respond<B>(request: &Request<B>, endpoints: &Endpoints) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    let path = request.uri().path();
    if path == endpoints.metrics_path {
        let gzip = accepts_gzip(request.headers().get_all(header::ACCEPT_ENCODING));
        return metrics(endpoints.source.as_ref(), endpoints.export.as_deref(), gzip).await;
    }
    match path {
        "/healthz" => health(&endpoints.probes),
        "/" => text(StatusCode::OK, landing(&endpoints.metrics_path)),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("not found: try {} or /healthz\n", endpoints.metrics_path),
        ),
    }
}

/// Whether `Accept-Encoding` allows gzip: named (or `*`) without `q=0`, as Prometheus and
/// curl send it (`gzip`, `gzip, deflate`, `gzip;q=1.0, identity;q=0.5, *;q=0`).
fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|parameter| {
                let parameter = parameter.trim().to_ascii_lowercase();
                parameter
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(!refused),
                "*" => any = Some(!refused),
                _ => {}
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

fn gzipped(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    // The fastest level: a scrape is mostly repeated label text, which compresses about
    // tenfold even so, and the CPU it costs is the agent's.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// The snapshot is computed on the pipeline's thread; rendering and encoding happen here,
/// with the agent's own `process_*` figures read now.
async fn metrics(
    source: &dyn Source,
    export: Option<&super::otlp::stats::Stats>,
    gzip: bool,
) -> Response<Full<Bytes>> {
    let encoded = match source.published().await {
        Ok(mut published) => {
            published.extend(super::process::published(&super::process::Figures::read()));
            if let Some(export) = export {
                published.extend(export.published());
            }
            super::prometheus::encode(&super::prometheus::gather(&published))
        }
        Err(err) => Err(err),
    };
    let (body, content_type) = match encoded {
        Ok(encoded) => encoded,
        Err(err) => {
            warn!("serving metrics: {err:#}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serving metrics: {err:#}\n"),
            );
        }
    };
    let compressed = if gzip {
        match gzipped(&body) {
            Ok(compressed) => Some(compressed),
            Err(err) => {
                // Nothing is lost: the same body goes out uncompressed.
                warn!("gzip-encoding the metrics: {err}; sending them uncompressed");
                None
            }
        }
    } else {
        None
    };
    let gzipped = compressed.is_some();
    let mut response = Response::new(Full::new(Bytes::from(compressed.unwrap_or(body))));
    let headers = response.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    // Caches between must not hand a compressed body to a client that did not ask.
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// 200 while at least one probe runs (a degraded agent still serves what it has, so a
/// liveness probe must not restart it); 503 when nothing is attached. `ok` unless the kernel
/// refused a probe or a read of another process's `/proc` (a missing capability): one disabled with `--probes.disable` was the operator's choice, listed
/// after the first line so it stays visible without making the agent look broken.
pub fn health(probes: &[ProbeState]) -> Response<Full<Bytes>> {
    let refused: Vec<String> = probes
        .iter()
        .filter_map(|state| {
            Some(format!(
                "probe {} not attached: {}",
                state.probe.program,
                state.refusal()?
            ))
        })
        .collect();
    let disabled = probes
        .iter()
        .filter(|state| state.disabled())
        .map(|state| format!("probe {} disabled by --probes.disable", state.probe.program));
    let status = if probes.iter().any(ProbeState::attached) || probes.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let denied = crate::proc_access::health_lines();
    let first = if refused.is_empty() && denied.is_empty() && status == StatusCode::OK {
        "ok"
    } else {
        "degraded"
    };
    let body: String = std::iter::once(first.to_owned())
        .chain(refused)
        .chain(denied)
        .chain(disabled)
        .map(|line| line + "\n")
        .collect();
    text(status, body)
}

/// What someone who opens the address in a browser needs: what this is, which version, where
/// to go next.
fn landing(metrics_path: &str) -> String {
    format!(
        "monitor-agent {}: golden-signal metrics from eBPF, for applications nobody changed\n\n\
         {metrics_path}  Prometheus metrics (monitor_build_info has the version and kernel)\n\
         /healthz  probe health: ok, or degraded and the probes the kernel refused\n\n\
         Flags: monitor-agent --help. Metrics, probes, kernels and deployment: the project's \
         README.md, docs/kernels.md and docs/security.md.\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_landing_page_names_the_version_the_endpoints_and_the_docs() {
        for needle in [
            env!("CARGO_PKG_VERSION"),
            "/metrics",
            "/healthz",
            "--help",
            "README",
        ] {
            assert!(super::landing("/metrics").contains(needle), "{needle}");
        }
        assert!(super::landing("/custom/path").contains("/custom/path  Prometheus metrics"));
    }

    use http_body_util::BodyExt as _;

    use super::*;
    use crate::probes::{Detached, Hook};

    /// A pipeline that publishes nothing.
    struct Nothing;

    impl Source for Nothing {
        fn published(
            &self,
        ) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<Published>>> + Send + '_>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    fn state(max_requests: usize, web: &str) -> State {
        let endpoints = Arc::new(Endpoints {
            source: Box::new(Nothing),
            export: None,
            probes: Vec::new(),
            metrics_path: "/metrics".into(),
        });
        let web = WebConfig::parse(web, std::path::Path::new(".")).unwrap();
        let settings = Settings {
            web,
            max_requests,
            max_connections: 0,
            header_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
        };
        State::new(endpoints, settings).0
    }

    fn get(path: &str, authorization: Option<&str>) -> Request<()> {
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(()).unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    async fn body_text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn requests_beyond_the_limit_get_503_until_a_body_is_sent() {
        let state = state(2, "");
        let first = handle(&get("/metrics", None), &state).await;
        let second = handle(&get("/", None), &state).await;
        assert_eq!(
            (first.status(), second.status()),
            (StatusCode::OK, StatusCode::OK)
        );
        let refused = handle(&get("/metrics", None), &state).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        // /healthz is never refused: it is cheap and liveness must not flap under load.
        assert_eq!(
            handle(&get("/healthz", None), &state).await.status(),
            StatusCode::OK
        );
        // Sending a body (here: collecting it) releases its permit.
        body_text(first).await;
        assert_eq!(
            handle(&get("/metrics", None), &state).await.status(),
            StatusCode::OK
        );
        drop(second);
    }

    #[test]
    fn gzip_is_accepted_when_named_or_starred_without_q_zero() {
        let accepts = |values: &[&str]| {
            let values: Vec<HeaderValue> = values
                .iter()
                .map(|v| HeaderValue::from_str(v).unwrap())
                .collect();
            accepts_gzip(&values)
        };
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["deflate, GZIP;q=0.5"]));
        assert!(accepts(&["identity", "gzip"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0.0, *"]));
        assert!(!accepts(&["*;q=0"]));
    }

    #[tokio::test]
    async fn metrics_are_gzipped_when_asked_and_plain_otherwise_on_their_path() {
        use std::io::Read as _;
        let state = state(0, "");
        let plain = handle(&get("/metrics", None), &state).await;
        assert_eq!(plain.headers().get(header::CONTENT_ENCODING), None);
        assert_eq!(plain.headers()[header::VARY], "Accept-Encoding");
        let plain = body_text(plain).await;
        assert!(plain.contains("# TYPE process_open_fds gauge"), "{plain}");
        let request = Request::get("/metrics")
            .header(header::ACCEPT_ENCODING, "gzip, deflate")
            .body(())
            .unwrap();
        let zipped = handle(&request, &state).await;
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        let bytes = zipped.into_body().collect().await.unwrap().to_bytes();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        // The same families (the process figures move between two reads).
        let families = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|line| line.starts_with("# TYPE"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(families(&text), families(&plain));
    }

    #[tokio::test]
    async fn the_telemetry_path_moves_the_metrics_and_nothing_else() {
        let mut state = state(0, "");
        state.endpoints = Arc::new(Endpoints {
            source: Box::new(Nothing),
            export: None,
            probes: Vec::new(),
            metrics_path: "/internal/metrics".into(),
        });
        let status = |path: &'static str| {
            let state = &state;
            async move { handle(&get(path, None), state).await.status() }
        };
        assert_eq!(status("/internal/metrics").await, StatusCode::OK);
        assert_eq!(status("/metrics").await, StatusCode::NOT_FOUND);
        assert_eq!(status("/healthz").await, StatusCode::OK);
        let landing = body_text(handle(&get("/", None), &state).await).await;
        assert!(landing.contains("/internal/metrics  Prometheus metrics"));
        let missing = body_text(handle(&get("/nope", None), &state).await).await;
        assert_eq!(missing, "not found: try /internal/metrics or /healthz\n");
    }

    #[tokio::test]
    async fn zero_means_no_limit() {
        let state = state(0, "");
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(handle(&get("/metrics", None), &state).await);
        }
        assert!(
            held.iter()
                .all(|response| response.status() == StatusCode::OK)
        );
    }

    #[tokio::test]
    async fn basic_auth_everywhere_but_healthz() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let state = state(40, &format!("basic_auth_users:\n  alice: '{hash}'\n"));
        for authorization in [
            None,
            Some(basic("alice", "wrong")),
            Some(basic("bob", "right")),
            Some("Basic !!".into()),
        ] {
            for path in ["/metrics", "/", "/nowhere"] {
                let response = handle(&get(path, authorization.as_deref()), &state).await;
                assert_eq!(
                    response.status(),
                    StatusCode::UNAUTHORIZED,
                    "{path} {authorization:?}"
                );
                let challenge = response.headers().get(header::WWW_AUTHENTICATE).unwrap();
                assert!(challenge.to_str().unwrap().starts_with("Basic realm="));
            }
        }
        let right = basic("alice", "right");
        for _ in 0..2 {
            // The second time from the cache.
            let response = handle(&get("/metrics", Some(&right)), &state).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert!(state.auth.as_ref().unwrap().cached("alice", "right"));
        assert_eq!(
            handle(&get("/healthz", None), &state).await.status(),
            StatusCode::OK
        );
        // No debug endpoints, even for an authenticated client.
        for path in ["/debug/pprof/", "/debug/vars", "/metrics/extra"] {
            assert_eq!(
                handle(&get(path, Some(&right)), &state).await.status(),
                StatusCode::NOT_FOUND
            );
        }
    }

    fn probe_states(detached: &[Option<Detached>]) -> Vec<ProbeState> {
        crate::probes::PROBES
            .iter()
            .zip(detached)
            .map(|(probe, detached)| ProbeState {
                probe: *probe,
                hook: Hook {
                    program: probe.program,
                    tracepoint: probe.tracepoint,
                },
                detached: detached.clone(),
            })
            .collect()
    }

    async fn health_of(detached: &[Option<Detached>]) -> (StatusCode, String) {
        let response = health(&probe_states(detached));
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_is_ok_with_probes_disabled_on_purpose_and_degraded_on_refusals() {
        let refused = || Some(Detached::Refused("EINVAL".to_owned()));
        let disabled = || Some(Detached::Disabled);
        assert_eq!(
            health_of(&[None, None]).await,
            (StatusCode::OK, "ok\n".to_owned())
        );
        let probes = crate::probes::PROBES;
        assert_eq!(
            health_of(&[None, disabled()]).await,
            (
                StatusCode::OK,
                format!(
                    "ok\nprobe {} disabled by --probes.disable\n",
                    probes[1].program
                )
            )
        );
        assert_eq!(
            health_of(&[refused(), None, disabled()]).await,
            (
                StatusCode::OK,
                format!(
                    "degraded\nprobe {} not attached: EINVAL\nprobe {} disabled by \
                     --probes.disable\n",
                    probes[0].program, probes[2].program
                )
            )
        );
        let (status, body) = health_of(&[refused(), disabled()]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.starts_with("degraded\n"), "{body}");
    }

    #[tokio::test]
    async fn configured_headers_are_on_every_response() {
        let state = state(
            40,
            "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
        );
        for path in ["/metrics", "/healthz", "/nowhere"] {
            let response = handle(&get(path, None), &state).await;
            assert_eq!(
                response.headers().get("x-content-type-options").unwrap(),
                "nosniff",
                "{path}"
            );
        }
    }
}
