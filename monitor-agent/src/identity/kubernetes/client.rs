//! HTTP/1.1 to the API server on hyper, TLS with rustls: the list, and the watch that applies
//! its events to the store.
#[cfg(test)]
mod tests;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::{Response, StatusCode, body::Incoming, header::HeaderValue};
use log::debug;

use super::{
    super::{
        http_get::{self, Connection},
        http_url::{self, HttpUrl, UrlError},
    },
    api::{ApiStatus, PodList, WatchEvent, parse_pod_list, parse_watch_event},
    config::{KubeConfig, read_token},
    pod::PodMeta,
    store::PodStore,
};

/// How long a connection may take (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole list request, body included.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// Asked of the server: it ends each watch after this long, and the client watches again.
const WATCH_SECONDS: u64 = 300;
/// Nothing at all on a watch for this long (not even its end): the connection is dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 60);
/// A node's pod list is small (kubelet caps pods per node); anything bigger is a mistake.
const MAX_LIST_BYTES: usize = 64 << 20;
const MAX_LINE_BYTES: usize = 16 << 20;
const MAX_ERROR_BYTES: usize = 64 << 10;
/// System CA bundles, first found wins, when no CA file is given for an https API.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The API server's URL; its path is a prefix (usually empty).
fn parse_api_url(url: &str) -> anyhow::Result<HttpUrl> {
    http_url::parse(url).map_err(|err| match err {
        // Not echoed: the part before '@' is a credential.
        UrlError::Credentials => anyhow!("API url: {err}"),
        other => anyhow!("API url {url:?}: {other}"),
    })
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

struct ApiResponse {
    response: Response<Incoming>,
    _connection: Connection,
}

pub(super) struct Client {
    endpoint: HttpUrl,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Option<String>,
    /// Where the token came from: read again for every request (kubelet rotates it).
    token_file: Option<PathBuf>,
    list_path: String,
}

impl Client {
    pub(super) fn new(config: &KubeConfig, token_file: Option<&Path>) -> anyhow::Result<Client> {
        let endpoint = parse_api_url(&config.api_url)?;
        let tls = if endpoint.https {
            Some(tls_connector(config.ca_file.as_deref())?)
        } else {
            None
        };
        let list_path = format!(
            "{}/api/v1/pods?fieldSelector={}",
            endpoint.path,
            encode_query(&format!("spec.nodeName={}", config.node_name))
        );
        Ok(Client {
            endpoint,
            tls,
            token: config.token.clone(),
            token_file: token_file.map(Path::to_path_buf),
            list_path,
        })
    }

    /// The URL of `path` (which starts with the endpoint's own path prefix), for messages.
    fn url(&self, path: &str) -> String {
        let scheme = if self.endpoint.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.endpoint.authority)
    }

    /// One GET on a new connection; the response's body streams as it arrives.
    async fn get(&self, path: &str) -> anyhow::Result<ApiResponse> {
        let io = tokio::time::timeout(CONNECT_TIMEOUT, self.endpoint.connect(self.tls.as_ref()))
            .await
            .map_err(|_| {
                anyhow!(
                    "connecting to {} took over {CONNECT_TIMEOUT:?}",
                    self.endpoint.authority
                )
            })??;
        let authorization =
            match self.token()? {
                Some(token) => Some(HeaderValue::try_from(format!("Bearer {token}")).map_err(
                    |_| anyhow!("the bearer token has characters a header cannot carry"),
                )?),
                None => None,
            };
        let (response, guard) =
            http_get::get(io, &self.endpoint.authority, path, authorization).await?;
        Ok(ApiResponse {
            response,
            _connection: guard,
        })
    }

    fn token(&self) -> anyhow::Result<Option<String>> {
        match &self.token_file {
            Some(path) => read_token(path).map(Some),
            None => Ok(self.token.clone()),
        }
    }

    pub(super) async fn list(&self) -> anyhow::Result<PodList> {
        let url = self.url(&self.list_path);
        let work = async {
            let ApiResponse {
                response,
                _connection,
            } = self.get(&self.list_path).await?;
            let status = response.status();
            if status != StatusCode::OK {
                bail!("{}", api_error(status, response.into_body()).await);
            }
            let body = Limited::new(response.into_body(), MAX_LIST_BYTES)
                .collect()
                .await
                .map_err(|err| anyhow!("reading the body: {err}"))?
                .to_bytes();
            parse_pod_list(&body)
        };
        tokio::time::timeout(LIST_TIMEOUT, work)
            .await
            .map_err(|_| anyhow!("no full answer within {LIST_TIMEOUT:?}"))?
            .with_context(|| format!("GET {url}"))
    }

    /// Watches from `*resource_version`, applying events to the store and moving
    /// `*resource_version` on, until the server ends the watch or it fails.
    pub(super) async fn watch(
        &self,
        resource_version: &mut String,
        store: &PodStore,
    ) -> anyhow::Result<WatchEnd> {
        let path = format!(
            "{}&watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}",
            self.list_path,
            encode_query(resource_version)
        );
        let url = self.url(&path);
        let started = Instant::now();
        let mut events = 0;
        let result = async {
            let ApiResponse {
                response,
                _connection,
            } = self.get(&path).await?;
            let status = response.status();
            if status == StatusCode::GONE {
                return Ok(WatchEnd::Expired(
                    api_error(status, response.into_body()).await,
                ));
            }
            if status != StatusCode::OK {
                bail!("{}", api_error(status, response.into_body()).await);
            }
            debug!("watching pods from resourceVersion {resource_version}");
            let mut body = response.into_body();
            let mut lines = LineBuffer::default();
            loop {
                let frame = match tokio::time::timeout(WATCH_IDLE, body.frame()).await {
                    Err(_) => bail!("nothing received for {WATCH_IDLE:?}"),
                    Ok(None) => break,
                    Ok(Some(frame)) => frame.context("reading the watch stream")?,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                lines.push(&data)?;
                while let Some(line) = lines.next_line() {
                    events += 1;
                    if let Some(end) = handle_line(&line, resource_version, store)? {
                        return Ok(end);
                    }
                }
            }
            if let Some(line) = lines.rest() {
                events += 1;
                if let Some(end) = handle_line(&line, resource_version, store)? {
                    return Ok(end);
                }
            }
            Ok(WatchEnd::Closed {
                events,
                lasted: started.elapsed(),
            })
        }
        .await;
        result.with_context(|| format!("GET {url}"))
    }
}

/// How a watch ended without failing.
#[derive(Debug)]
pub(super) enum WatchEnd {
    /// The resourceVersion is too old (410 Gone): list again. The server's words.
    Expired(String),
    /// The server closed the stream (its timeout): watch again from where it stopped.
    Closed { events: usize, lasted: Duration },
}

fn handle_line(
    line: &[u8],
    resource_version: &mut String,
    store: &PodStore,
) -> anyhow::Result<Option<WatchEnd>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let event = parse_watch_event(line)?;
    if let Some(rv) = event.resource_version() {
        rv.clone_into(resource_version);
    }
    match &event {
        WatchEvent::Added { pod, .. } => debug!("pod added: {}", describe(pod)),
        WatchEvent::Modified { pod, .. } => debug!("pod modified: {}", describe(pod)),
        WatchEvent::Deleted { pod, .. } => debug!("pod deleted: {}", describe(pod)),
        WatchEvent::Bookmark { .. } => debug!("watch bookmark at {resource_version}"),
        WatchEvent::Error(status) if status.is_gone() => {
            return Ok(Some(WatchEnd::Expired(status.to_string())));
        }
        WatchEvent::Error(status) => bail!("the server ended the watch: {status}"),
        WatchEvent::Unknown(kind) => debug!("ignoring a watch event of type {kind:?}"),
    }
    store.apply_event(event, Instant::now());
    store.prune(Instant::now());
    Ok(None)
}

fn describe(pod: &PodMeta) -> String {
    format!(
        "{}/{} (uid {}, service {}, {} containers)",
        pod.namespace,
        pod.name,
        pod.uid,
        pod.service.as_deref().unwrap_or("-"),
        pod.containers.len()
    )
}

/// A non-200 answer, in words: status, the API's own message, and a hint for the usual causes.
async fn api_error(status: StatusCode, body: Incoming) -> String {
    let body = match Limited::new(body, MAX_ERROR_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let detail = match serde_json::from_slice::<ApiStatus>(&body) {
        Ok(ApiStatus {
            message: Some(message),
            ..
        }) => message,
        _ => String::from_utf8_lossy(&body[..body.len().min(512)])
            .trim()
            .to_owned(),
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED => " (the token was refused: expired or from another cluster?)",
        StatusCode::FORBIDDEN => {
            " (the agent's service account needs get, list and watch on pods: check its \
             ClusterRole and ClusterRoleBinding)"
        }
        _ => "",
    };
    if detail.is_empty() {
        format!("HTTP {status}{hint}")
    } else {
        format!("HTTP {status}: {detail}{hint}")
    }
}

/// A TLS client that trusts `ca_file`, else the system's CA bundle (also the OTLP push's).
pub(crate) fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};

    let bundle = match ca_file {
        Some(path) => path.to_path_buf(),
        None => SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "no CA file given and no system CA bundle found (looked for {})",
                    SYSTEM_CA_BUNDLES.join(", ")
                )
            })?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&bundle)
        .with_context(|| format!("reading the CA bundle {}", bundle.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("a bad PEM block in {}", bundle.display()))?;
        // A system bundle may hold certificates webpki rejects; one bad CA is not fatal.
        if let Err(err) = roots.add(cert) {
            debug!("skipping a CA of {}: {err}", bundle.display());
        }
    }
    if roots.is_empty() {
        bail!("no usable CA certificate in {}", bundle.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Splits a byte stream into `\n`-terminated lines.
#[derive(Default)]
struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes before this offset hold no newline.
    scanned: usize,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > MAX_LINE_BYTES && !self.buf[self.scanned..].contains(&b'\n') {
            bail!("a watch event of over {MAX_LINE_BYTES} bytes");
        }
        Ok(())
    }

    /// The next complete line, without its `\n`.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        let newline = self.buf[self.scanned..].iter().position(|&b| b == b'\n');
        match newline {
            Some(offset) => {
                let end = self.scanned + offset;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                Some(line)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// What is left after the stream ended, if anything but whitespace.
    fn rest(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        let rest = std::mem::take(&mut self.buf);
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}
