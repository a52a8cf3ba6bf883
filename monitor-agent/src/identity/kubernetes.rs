//! The pods of this node, from the Kubernetes API: one list, then a watch from the list's
//! resourceVersion (`fieldSelector=spec.nodeName=<node>`), kept in a [`PodStore`] that maps a
//! pod UID (what the cgroup path gives) to its name, namespace, service and container names.
//!
//! Plain HTTP/1.1 over hyper's connection API, one connection per request: there are only two
//! requests in flight over a pod's life (the list, then one long-lived watch), so no pool. TLS
//! is rustls with the ring provider, trusting the service-account CA (or the system bundle).
//! Deleted pods stay in the store for `deleted_ttl`, so the processes that outlive their pod's
//! deletion event by a moment are still labelled.
use std::{
    collections::HashMap,
    fmt::{self, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{ACCEPT, AUTHORIZATION, HOST, HeaderValue, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use log::{debug, info, warn};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where a pod's service account is mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The label that names a pod's application, first choice for `service`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// How long a connection may take (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole list request, body included.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// Asked of the server: it ends each watch after this long, and the client watches again.
const WATCH_SECONDS: u64 = 300;
/// Nothing at all on a watch for this long (not even its end): the connection is dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 60);
/// Reconnect delays: doubling from the first, capped.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A watch that ends this fast without a single event counts as a failure (backoff).
const WATCH_MIN_LIFE: Duration = Duration::from_secs(1);
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

/// What the agent knows of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// `app.kubernetes.io/name`, else the owning workload's name, else `None`.
    pub service: Option<String>,
    /// Container ID (no `runtime://` prefix, lowercase) → container name; init and ephemeral
    /// containers included, containers not started yet (no ID) left out.
    pub containers: HashMap<String, String>,
}

/// Where the API is and which node's pods to follow.
#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// `https://host:port` (or `http://` for tests), optionally with a path prefix.
    pub api_url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// PEM CA bundle for an https API; `None`: the system bundle.
    pub ca_file: Option<PathBuf>,
    pub node_name: String,
    /// How long a deleted pod stays in the store.
    pub deleted_ttl: Duration,
}

impl KubeConfig {
    /// The API as seen from a pod: `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` and the
    /// mounted service-account token and CA.
    pub fn in_cluster(node_name: impl Into<String>, deleted_ttl: Duration) -> anyhow::Result<Self> {
        Self::in_cluster_from(
            std::env::var("KUBERNETES_SERVICE_HOST").ok(),
            std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            Path::new(SERVICE_ACCOUNT_DIR),
            node_name.into(),
            deleted_ttl,
        )
    }

    fn in_cluster_from(
        host: Option<String>,
        port: Option<String>,
        account_dir: &Path,
        node_name: String,
        deleted_ttl: Duration,
    ) -> anyhow::Result<Self> {
        const NOT_IN_POD: &str = "not running in a Kubernetes pod?";
        let host = host
            .filter(|host| !host.trim().is_empty())
            .ok_or_else(|| anyhow!("KUBERNETES_SERVICE_HOST is not set ({NOT_IN_POD})"))?;
        let port = port
            .filter(|port| !port.trim().is_empty())
            .ok_or_else(|| anyhow!("KUBERNETES_SERVICE_PORT is not set ({NOT_IN_POD})"))?;
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| anyhow!("KUBERNETES_SERVICE_PORT is {port:?}, not a port number"))?;
        if node_name.trim().is_empty() {
            bail!(
                "the node name is empty: pass the pod's spec.nodeName to the agent \
                 (downward API, fieldRef: spec.nodeName)"
            );
        }
        let host = host.trim();
        // An IPv6 service address needs brackets in a URL.
        let api_url = if host.contains(':') && !host.starts_with('[') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        };
        let token_path = account_dir.join("token");
        let token = read_token(&token_path)?;
        let ca_file = account_dir.join("ca.crt");
        std::fs::metadata(&ca_file).with_context(|| {
            format!(
                "the service-account CA {} is missing (automountServiceAccountToken: false?)",
                ca_file.display()
            )
        })?;
        Ok(KubeConfig {
            api_url,
            token: Some(token),
            ca_file: Some(ca_file),
            node_name,
            deleted_ttl,
        })
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the service-account token {} (automountServiceAccountToken: false?)",
            path.display()
        )
    })?;
    let token = token.trim();
    if token.is_empty() {
        bail!("the service-account token {} is empty", path.display());
    }
    Ok(token.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The store.

/// Pods by UID, shared between the watch task (writer) and the identity lookups (readers).
#[derive(Clone)]
pub struct PodStore {
    inner: Arc<Mutex<StoreInner>>,
}

struct StoreInner {
    pods: HashMap<String, StoredPod>,
    deleted_ttl: Duration,
    /// The first deleted pod's removal time: `prune` has nothing to do before it.
    next_expiry: Option<Instant>,
}

struct StoredPod {
    meta: PodMeta,
    deleted_at: Option<Instant>,
}

impl PodStore {
    /// `run` sets the TTL from its `KubeConfig` again, so the config is what counts.
    pub fn new(deleted_ttl: Duration) -> Self {
        PodStore {
            inner: Arc::new(Mutex::new(StoreInner {
                pods: HashMap::new(),
                deleted_ttl,
                next_expiry: None,
            })),
        }
    }

    /// The pod with this UID (canonical dashed form), deleted ones too until their TTL ends.
    pub fn get(&self, uid: &str) -> Option<PodMeta> {
        self.get_at(uid, Instant::now())
    }

    fn get_at(&self, uid: &str, now: Instant) -> Option<PodMeta> {
        let mut inner = self.lock();
        inner.prune(now);
        inner.pods.get(uid).map(|pod| pod.meta.clone())
    }

    /// Pods held, deleted ones within their TTL included.
    pub fn len(&self) -> usize {
        let mut inner = self.lock();
        inner.prune(Instant::now());
        inner.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set_deleted_ttl(&self, ttl: Duration) {
        let mut inner = self.lock();
        if inner.deleted_ttl != ttl {
            inner.deleted_ttl = ttl;
            inner.next_expiry = inner.earliest_expiry();
        }
    }

    /// A full list: its pods replace what is held; pods missing from it are marked deleted
    /// (their deletion happened while no watch was running). Returns how many were marked.
    pub fn apply_list(&self, pods: Vec<PodMeta>, now: Instant) -> usize {
        let mut inner = self.lock();
        let mut listed: HashMap<String, PodMeta> =
            pods.into_iter().map(|pod| (pod.uid.clone(), pod)).collect();
        let mut gone = 0;
        for (uid, stored) in inner.pods.iter_mut() {
            match listed.remove(uid) {
                Some(meta) => {
                    stored.meta = meta;
                    stored.deleted_at = None;
                }
                None if stored.deleted_at.is_none() => {
                    stored.deleted_at = Some(now);
                    gone += 1;
                }
                None => {}
            }
        }
        for (uid, meta) in listed {
            inner.pods.insert(
                uid,
                StoredPod {
                    meta,
                    deleted_at: None,
                },
            );
        }
        inner.next_expiry = inner.earliest_expiry();
        inner.prune(now);
        gone
    }

    /// One watch event: ADDED/MODIFIED insert or replace (and undo a deletion mark), DELETED
    /// marks the pod deleted as of `now`. Bookmarks, errors and unknown types change nothing.
    pub fn apply_event(&self, event: WatchEvent, now: Instant) {
        let mut inner = self.lock();
        match event {
            WatchEvent::Added { pod, .. } | WatchEvent::Modified { pod, .. } => {
                inner.pods.insert(
                    pod.uid.clone(),
                    StoredPod {
                        meta: pod,
                        deleted_at: None,
                    },
                );
            }
            WatchEvent::Deleted { pod, .. } => {
                let expiry = now + inner.deleted_ttl;
                let stored = inner.pods.entry(pod.uid.clone()).or_insert(StoredPod {
                    meta: pod.clone(),
                    deleted_at: None,
                });
                // The final state has the last container IDs; keep the first deletion time.
                stored.meta = pod;
                if stored.deleted_at.is_none() {
                    stored.deleted_at = Some(now);
                    inner.next_expiry = Some(inner.next_expiry.map_or(expiry, |e| e.min(expiry)));
                }
            }
            WatchEvent::Bookmark { .. } | WatchEvent::Error(_) | WatchEvent::Unknown(_) => {}
        }
        inner.prune(now);
    }

    /// Drops the pods deleted `deleted_ttl` or more before `now`; returns how many.
    pub fn prune(&self, now: Instant) -> usize {
        self.lock().prune(now)
    }

    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        // A panic elsewhere cannot leave the map half-updated in a way that matters here.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StoreInner {
    fn prune(&mut self, now: Instant) -> usize {
        match self.next_expiry {
            Some(expiry) if expiry <= now => {}
            _ => return 0,
        }
        let ttl = self.deleted_ttl;
        let before = self.pods.len();
        self.pods.retain(|_, pod| match pod.deleted_at {
            Some(deleted_at) => deleted_at + ttl > now,
            None => true,
        });
        self.next_expiry = self.earliest_expiry();
        before - self.pods.len()
    }

    fn earliest_expiry(&self) -> Option<Instant> {
        self.pods
            .values()
            .filter_map(|pod| pod.deleted_at)
            .min()
            .map(|deleted_at| deleted_at + self.deleted_ttl)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: the API's JSON → `PodMeta`.

/// A parsed `PodList`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodList {
    /// Where the watch starts.
    pub resource_version: String,
    pub pods: Vec<PodMeta>,
}

/// One line of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Added {
        pod: PodMeta,
        resource_version: Option<String>,
    },
    Modified {
        pod: PodMeta,
        resource_version: Option<String>,
    },
    Deleted {
        pod: PodMeta,
        resource_version: Option<String>,
    },
    /// Only moves the resourceVersion on.
    Bookmark { resource_version: Option<String> },
    /// The server gave up on the watch; 410 Gone means relist.
    Error(ApiStatus),
    /// An event type this agent does not know (the type is kept for the log).
    Unknown(String),
}

impl WatchEvent {
    /// Where a new watch would resume after this event.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added {
                resource_version, ..
            }
            | WatchEvent::Modified {
                resource_version, ..
            }
            | WatchEvent::Deleted {
                resource_version, ..
            }
            | WatchEvent::Bookmark { resource_version } => resource_version.as_deref(),
            WatchEvent::Error(_) | WatchEvent::Unknown(_) => None,
        }
    }
}

/// A `Status` object: the API's error body, and the object of a watch ERROR event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ApiStatus {
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl ApiStatus {
    /// The resourceVersion is too old to watch from: list again.
    pub fn is_gone(&self) -> bool {
        self.code == Some(410) || matches!(self.reason.as_deref(), Some("Expired" | "Gone"))
    }
}

impl fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{code}")?,
            None => f.write_str("no code")?,
        }
        if let Some(reason) = &self.reason {
            write!(f, " {reason}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawList {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<ListMeta>,
    #[serde(default)]
    items: Option<Vec<RawPod>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct RawPod {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    status: Option<RawPodStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Deserialize)]
struct OwnerReference {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodStatus {
    #[serde(default)]
    container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    ephemeral_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Deserialize)]
struct ContainerStatus {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "containerID")]
    container_id: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

/// A `PodList` body. Items without a UID (never seen from a real API) are skipped.
pub fn parse_pod_list(body: &[u8]) -> anyhow::Result<PodList> {
    let list: RawList = serde_json::from_slice(body).context("not a PodList (bad JSON)")?;
    if let Some(kind) = list.kind.as_deref() {
        if kind != "PodList" {
            bail!("expected a PodList, got a {kind}");
        }
    }
    let resource_version = list
        .metadata
        .and_then(|meta| meta.resource_version)
        .filter(|rv| !rv.is_empty())
        .ok_or_else(|| anyhow!("the PodList has no metadata.resourceVersion"))?;
    let mut pods = Vec::new();
    for raw in list.items.unwrap_or_default() {
        match pod_meta(raw) {
            Ok((pod, _)) => pods.push(pod),
            Err(err) => warn!("skipping a listed pod: {err:#}"),
        }
    }
    Ok(PodList {
        resource_version,
        pods,
    })
}

/// One watch line: `{"type":"ADDED","object":{...}}`.
pub fn parse_watch_event(line: &[u8]) -> anyhow::Result<WatchEvent> {
    let event: RawEvent = serde_json::from_slice(line).context("not a watch event (bad JSON)")?;
    let pod_event = |object| raw_pod(object).and_then(pod_meta);
    Ok(match event.kind.as_str() {
        "ADDED" => {
            let (pod, resource_version) = pod_event(event.object)?;
            WatchEvent::Added {
                pod,
                resource_version,
            }
        }
        "MODIFIED" => {
            let (pod, resource_version) = pod_event(event.object)?;
            WatchEvent::Modified {
                pod,
                resource_version,
            }
        }
        "DELETED" => {
            let (pod, resource_version) = pod_event(event.object)?;
            WatchEvent::Deleted {
                pod,
                resource_version,
            }
        }
        "BOOKMARK" => {
            let raw = raw_pod(event.object)?;
            WatchEvent::Bookmark {
                resource_version: raw
                    .metadata
                    .and_then(|meta| meta.resource_version)
                    .filter(|rv| !rv.is_empty()),
            }
        }
        "ERROR" => WatchEvent::Error(
            serde_json::from_value(event.object).context("a watch ERROR without a Status")?,
        ),
        other => WatchEvent::Unknown(other.to_owned()),
    })
}

fn raw_pod(object: serde_json::Value) -> anyhow::Result<RawPod> {
    serde_json::from_value(object).context("the event's object is not a Pod")
}

fn pod_meta(raw: RawPod) -> anyhow::Result<(PodMeta, Option<String>)> {
    let meta = raw
        .metadata
        .ok_or_else(|| anyhow!("a pod without metadata"))?;
    let name = meta.name.unwrap_or_default();
    let namespace = meta.namespace.unwrap_or_default();
    let uid = meta
        .uid
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| anyhow!("pod {namespace}/{name} has no metadata.uid"))?;
    let labels = meta.labels.unwrap_or_default();
    let owners = meta.owner_references.unwrap_or_default();
    let service = service_name(&labels, &owners);
    let mut containers = HashMap::new();
    if let Some(status) = raw.status {
        let all = [
            status.init_container_statuses,
            status.container_statuses,
            status.ephemeral_container_statuses,
        ];
        for status in all.into_iter().flatten().flatten() {
            if let Some(id) = status.container_id.as_deref().and_then(container_id) {
                containers.insert(id, status.name);
            }
        }
    }
    let pod = PodMeta {
        uid: uid.to_ascii_lowercase(),
        name,
        namespace,
        service,
        containers,
    };
    Ok((pod, meta.resource_version.filter(|rv| !rv.is_empty())))
}

/// `containerd://<id>`, `docker://<id>`, `cri-o://<id>` → `<id>` (lowercase); empty → `None`.
fn container_id(raw: &str) -> Option<String> {
    let id = raw.split_once("://").map_or(raw, |(_, id)| id).trim();
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// The `service` rule: the name label, else the controlling owner's workload.
fn service_name(labels: &HashMap<String, String>, owners: &[OwnerReference]) -> Option<String> {
    if let Some(name) = labels.get(NAME_LABEL).filter(|name| !name.is_empty()) {
        return Some(name.clone());
    }
    let owner = owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .or_else(|| owners.first())?;
    if owner.name.is_empty() {
        return None;
    }
    match owner.kind.as_str() {
        "ReplicaSet" => Some(deployment_name(
            &owner.name,
            labels.get("pod-template-hash").map(String::as_str),
        )),
        // Static pods' mirrors: the "owner" is the node, not a workload.
        "Node" => None,
        // StatefulSet, DaemonSet, Job, and custom controllers: their name as is.
        _ => Some(owner.name.clone()),
    }
}

/// A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`: strip the hash (the pod's
/// `pod-template-hash` label says which it is; without it, the last `-<suffix>`).
fn deployment_name(replica_set: &str, template_hash: Option<&str>) -> String {
    let by_label = template_hash
        .filter(|hash| !hash.is_empty())
        .and_then(|hash| replica_set.strip_suffix(hash))
        .and_then(|rest| rest.strip_suffix('-'));
    let base = by_label.or_else(|| replica_set.rsplit_once('-').map(|(base, _)| base));
    match base {
        Some(base) if !base.is_empty() => base.to_owned(),
        _ => replica_set.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// The parts of `api_url` a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path prefix, no trailing slash (usually empty).
    base_path: String,
}

fn parse_api_url(url: &str) -> anyhow::Result<Endpoint> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        bail!("API url {url:?} does not start with https:// or http://");
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    if authority.contains('@') || path.contains(['?', '#']) {
        bail!("API url {url:?}: only scheme://host[:port][/path] is supported");
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| anyhow!("API url {url:?}: unclosed '[' in the host"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => bail!("API url {url:?}: junk after the IPv6 address"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("API url {url:?} has no host");
    }
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| anyhow!("API url {url:?}: bad port {port:?}"))?,
        None => default_port,
    };
    Ok(Endpoint {
        https,
        host: host.to_owned(),
        port,
        authority: authority.to_owned(),
        base_path: path.trim_end_matches('/').to_owned(),
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

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Ends the connection task when the response is dropped.
struct ConnectionGuard(tokio::task::JoinHandle<()>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ApiResponse {
    response: Response<Incoming>,
    _connection: ConnectionGuard,
}

struct Client {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Option<String>,
    /// Where the token came from: read again for every request (kubelet rotates it).
    token_file: Option<PathBuf>,
    list_path: String,
}

impl Client {
    fn new(config: &KubeConfig, token_file: Option<&Path>) -> anyhow::Result<Client> {
        let endpoint = parse_api_url(&config.api_url)?;
        let tls = if endpoint.https {
            Some(tls_connector(config.ca_file.as_deref())?)
        } else {
            None
        };
        let list_path = format!(
            "{}/api/v1/pods?fieldSelector={}",
            endpoint.base_path,
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

    fn url(&self, path: &str) -> String {
        let scheme = if self.endpoint.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.endpoint.authority)
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Io>> {
        let address = (self.endpoint.host.as_str(), self.endpoint.port);
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {}", self.endpoint.authority))?;
        tcp.set_nodelay(true).ok();
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls_pki_types::ServerName::try_from(self.endpoint.host.clone())
            .map_err(|err| anyhow!("{:?} is not a TLS server name: {err}", self.endpoint.host))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", self.endpoint.authority))?;
        Ok(Box::new(stream))
    }

    /// One GET on a new connection; the response's body streams as it arrives.
    async fn get(&self, path: &str) -> anyhow::Result<ApiResponse> {
        let io = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                anyhow!(
                    "connecting to {} took over {CONNECT_TIMEOUT:?}",
                    self.endpoint.authority
                )
            })??;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
                .await
                .context("HTTP handshake")?;
        let guard = ConnectionGuard(tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!("API connection ended: {err}");
            }
        }));
        let mut request = Request::get(path)
            .header(HOST, &self.endpoint.authority)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("monitor-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .context("building the request")?;
        if let Some(token) = self.token()? {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| anyhow!("the bearer token has characters a header cannot carry"))?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let response = sender
            .send_request(request)
            .await
            .context("sending the request")?;
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

    async fn list(&self) -> anyhow::Result<PodList> {
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
    async fn watch(
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
enum WatchEnd {
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

fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
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

/// Doubling delays with a cap and some jitter (so a fleet of agents does not reconnect in
/// step after an API server restart).
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.subsec_nanos());
        // Up to a quarter more.
        delay + delay.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

/// Follows the pods of `config.node_name` into `store`, forever: list, watch from the list's
/// resourceVersion, watch again when the server ends the watch, list again when the
/// resourceVersion has expired (410 Gone), reconnect with capped exponential backoff on errors.
pub async fn run(config: KubeConfig, store: PodStore) {
    store.set_deleted_ttl(config.deleted_ttl);
    // A token equal to the service-account file's content is followed through the file.
    let token_file = Path::new(SERVICE_ACCOUNT_DIR).join("token");
    let token_file = match (&config.token, read_token(&token_file)) {
        (Some(token), Ok(current)) if *token == current => Some(token_file),
        _ => None,
    };
    info!(
        "following the pods of node {:?} through the Kubernetes API at {} (deleted pods kept {:?})",
        config.node_name, config.api_url, config.deleted_ttl
    );
    if config.token.is_some() && config.api_url.starts_with("http://") {
        warn!(
            "the Kubernetes API url is plain http: the bearer token crosses the network in clear"
        );
    }
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        let client = match Client::new(&config, token_file.as_deref()) {
            Ok(client) => client,
            Err(err) => {
                let delay = backoff.next_delay();
                warn!("cannot set up the Kubernetes API client, retrying in {delay:.1?}: {err:#}");
                failing = true;
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let list = match client.list().await {
            Ok(list) => list,
            Err(err) => {
                let delay = backoff.next_delay();
                warn!(
                    "listing the pods of node {:?} failed, retrying in {delay:.1?}: {err:#}",
                    config.node_name
                );
                failing = true;
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let count = list.pods.len();
        let gone = store.apply_list(list.pods, Instant::now());
        let gone = if gone > 0 {
            format!(", {gone} deleted since the last list")
        } else {
            String::new()
        };
        info!(
            "{count} pods on node {:?} at resourceVersion {}{gone}{}; watching for changes",
            config.node_name,
            list.resource_version,
            if failing {
                " (API reachable again)"
            } else {
                ""
            }
        );
        if count == 0 {
            warn!(
                "no pods listed on node {:?}: is the node name right (it must be the pod's \
                 spec.nodeName)?",
                config.node_name
            );
        }
        backoff.reset();
        failing = false;
        let mut resource_version = list.resource_version;
        loop {
            store.prune(Instant::now());
            match client.watch(&mut resource_version, &store).await {
                Ok(WatchEnd::Expired(why)) => {
                    info!("the watch's resourceVersion expired ({why}): listing again");
                    break;
                }
                Ok(WatchEnd::Closed { events, lasted })
                    if events > 0 || lasted >= WATCH_MIN_LIFE =>
                {
                    backoff.reset();
                    if failing {
                        info!("watching pods again from resourceVersion {resource_version}");
                        failing = false;
                    } else {
                        debug!(
                            "the server ended the watch after {lasted:.0?} ({events} events): \
                             watching again from resourceVersion {resource_version}"
                        );
                    }
                }
                Ok(WatchEnd::Closed { .. }) => {
                    let delay = backoff.next_delay();
                    warn!(
                        "the pod watch ended at once without events, watching again in \
                         {delay:.1?} from resourceVersion {resource_version}"
                    );
                    failing = true;
                    tokio::time::sleep(delay).await;
                }
                Err(err) => {
                    let delay = backoff.next_delay();
                    warn!(
                        "the pod watch failed, reconnecting in {delay:.1?} from resourceVersion \
                         {resource_version}: {err:#}"
                    );
                    failing = true;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader, Write as _},
        net::{TcpListener, TcpStream},
        sync::mpsc,
    };

    use super::*;

    const LIST: &str = include_str!("../../../tests/fixtures/kubernetes/pods-list.json");
    const WATCH: &str = include_str!("../../../tests/fixtures/kubernetes/pods-watch.jsonl");
    const CHECKOUT_UID: &str = "354a425b-4121-4335-bee8-3345ba93a851";
    const WEB_UID: &str = "62ba296f-6cab-4102-824e-e43c3c7feb27";
    const CHECKOUT_ID: &str = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14";
    const SIDECAR_ID: &str = "82d979a24d74d74fe91dbe2c0cae2f4d0cd9129a99ff7936d9bf12c8a3e2f9c4";
    const MIGRATE_ID: &str = "9490be4058e03b7603b81fb5f077816aa0263395d83e7d54c4259f49ae2413f1";
    const WEB_ID: &str = "c842e7e9efb61e3cc052505d39c50d0e0ae82d6b04405ac03322df3549cdf6e0";
    const WEB_RESTARTED_ID: &str =
        "3416fe1e24f92dcd38cb3e1de705c5ae66acb2661c89accf2032c200b4ac1160";

    fn containers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect()
    }

    fn listed() -> PodList {
        parse_pod_list(LIST.as_bytes()).unwrap()
    }

    fn watch_events() -> Vec<WatchEvent> {
        WATCH
            .lines()
            .map(|line| parse_watch_event(line.as_bytes()).unwrap())
            .collect()
    }

    fn pod(uid: &str) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            name: format!("pod-{uid}"),
            namespace: "default".into(),
            service: None,
            containers: HashMap::new(),
        }
    }

    #[test]
    fn parses_the_recorded_list() {
        let list = listed();
        assert_eq!(list.resource_version, "48213");
        let mut pods = list.pods;
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            pods,
            vec![
                PodMeta {
                    uid: CHECKOUT_UID.into(),
                    name: "checkout-svc-0".into(),
                    namespace: "shop".into(),
                    // The label wins over the StatefulSet's name.
                    service: Some("checkout".into()),
                    containers: containers(&[
                        (CHECKOUT_ID, "checkout"),
                        (SIDECAR_ID, "metrics-sidecar"),
                        (MIGRATE_ID, "migrate"),
                    ]),
                },
                PodMeta {
                    uid: WEB_UID.into(),
                    name: "web-7d4b9c8f6d-x2k9p".into(),
                    namespace: "default".into(),
                    service: Some("web".into()),
                    containers: containers(&[(WEB_ID, "nginx")]),
                },
            ]
        );
    }

    #[test]
    fn parses_the_recorded_watch_events() {
        let events = watch_events();
        assert_eq!(events.len(), 2);
        let WatchEvent::Modified {
            pod,
            resource_version,
        } = &events[0]
        else {
            panic!("not MODIFIED: {:?}", events[0]);
        };
        assert_eq!(resource_version.as_deref(), Some("48255"));
        assert_eq!(pod.uid, WEB_UID);
        assert_eq!(pod.service.as_deref(), Some("web"));
        assert_eq!(pod.containers, containers(&[(WEB_RESTARTED_ID, "nginx")]));
        let WatchEvent::Deleted { pod, .. } = &events[1] else {
            panic!("not DELETED: {:?}", events[1]);
        };
        assert_eq!(pod.uid, WEB_UID);
        assert_eq!(events[1].resource_version(), Some("48301"));
    }

    #[test]
    fn parses_bookmarks_errors_and_unknown_types() {
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"50000","annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},"status":{}}}"#;
        assert_eq!(
            parse_watch_event(bookmark).unwrap(),
            WatchEvent::Bookmark {
                resource_version: Some("50000".into())
            }
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 48213 (48900)","reason":"Expired","code":410}}"#;
        let WatchEvent::Error(status) = parse_watch_event(gone).unwrap() else {
            panic!("not an error");
        };
        assert!(status.is_gone());
        assert_eq!(
            status.to_string(),
            "410 Expired: too old resource version: 48213 (48900)"
        );
        let other = br#"{"type":"ERROR","object":{"kind":"Status","code":500,"message":"boom"}}"#;
        let WatchEvent::Error(status) = parse_watch_event(other).unwrap() else {
            panic!("not an error");
        };
        assert!(!status.is_gone());
        assert_eq!(
            parse_watch_event(br#"{"type":"SOMETHING","object":{}}"#).unwrap(),
            WatchEvent::Unknown("SOMETHING".into())
        );
        assert!(parse_watch_event(b"{\"type\":\"ADDED\",").is_err());
        let no_uid = br#"{"type":"ADDED","object":{"metadata":{"name":"x","namespace":"y"}}}"#;
        let err = parse_watch_event(no_uid).unwrap_err();
        assert!(
            format!("{err:#}").contains("y/x has no metadata.uid"),
            "{err:#}"
        );
    }

    #[test]
    fn rejects_what_is_not_a_pod_list() {
        let err = parse_pod_list(br#"{"kind":"Status","code":403}"#).unwrap_err();
        assert!(err.to_string().contains("got a Status"), "{err}");
        let err = parse_pod_list(br#"{"kind":"PodList","items":[]}"#).unwrap_err();
        assert!(err.to_string().contains("resourceVersion"), "{err}");
        let empty = parse_pod_list(
            br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":null}"#,
        )
        .unwrap();
        assert!(empty.pods.is_empty());
    }

    #[test]
    fn container_ids_lose_their_runtime_prefix() {
        let id = "AbCd".repeat(16);
        for raw in [
            format!("containerd://{id}"),
            format!("docker://{id}"),
            format!("cri-o://{id}"),
            id.clone(),
        ] {
            assert_eq!(container_id(&raw), Some(id.to_ascii_lowercase()), "{raw}");
        }
        assert_eq!(container_id(""), None);
        assert_eq!(container_id("containerd://"), None);
    }

    #[test]
    fn service_comes_from_the_label_then_the_owner() {
        let owner = |kind: &str, name: &str| OwnerReference {
            kind: kind.into(),
            name: name.into(),
            controller: Some(true),
        };
        let none = HashMap::new();
        let hash: HashMap<String, String> =
            [("pod-template-hash".to_string(), "7d4b9c8f6d".to_string())].into();
        let cases = [
            (
                &hash,
                owner("ReplicaSet", "web-api-7d4b9c8f6d"),
                Some("web-api"),
            ),
            (
                &none,
                owner("ReplicaSet", "web-api-7d4b9c8f6d"),
                Some("web-api"),
            ),
            // The label names the hash even when it does not look like one.
            (&hash, owner("ReplicaSet", "odd-7d4b9c8f6d"), Some("odd")),
            (&none, owner("ReplicaSet", "plain"), Some("plain")),
            (&none, owner("StatefulSet", "db-main"), Some("db-main")),
            (
                &none,
                owner("DaemonSet", "node-exporter"),
                Some("node-exporter"),
            ),
            (
                &none,
                owner("Job", "backup-28391234"),
                Some("backup-28391234"),
            ),
            (&none, owner("Node", "worker-1"), None),
        ];
        for (labels, owner, want) in cases {
            let got = service_name(labels, std::slice::from_ref(&owner));
            assert_eq!(got.as_deref(), want, "{} {}", owner.kind, owner.name);
        }
        assert_eq!(service_name(&none, &[]), None);
        let labelled: HashMap<String, String> = [(NAME_LABEL.to_string(), "shop".into())].into();
        assert_eq!(
            service_name(&labelled, &[owner("ReplicaSet", "web-1")]).as_deref(),
            Some("shop")
        );
        // The controlling owner, not the first one.
        let owners = [
            OwnerReference {
                kind: "ConfigMap".into(),
                name: "cm".into(),
                controller: None,
            },
            owner("DaemonSet", "agent"),
        ];
        assert_eq!(service_name(&none, &owners).as_deref(), Some("agent"));
    }

    #[test]
    fn deleted_pods_stay_for_the_ttl_and_not_longer() {
        let ttl = Duration::from_secs(60);
        let store = PodStore::new(ttl);
        let t0 = Instant::now();
        store.apply_list(listed().pods, t0);
        assert_eq!(store.len(), 2);
        let mut events = watch_events().into_iter();
        store.apply_event(events.next().unwrap(), t0);
        let web = store.get(WEB_UID).unwrap();
        assert_eq!(web.containers, containers(&[(WEB_RESTARTED_ID, "nginx")]));

        let deleted_at = t0 + Duration::from_secs(5);
        store.apply_event(events.next().unwrap(), deleted_at);
        assert_eq!(store.prune(deleted_at + ttl - Duration::from_millis(1)), 0);
        assert!(
            store
                .get_at(WEB_UID, deleted_at + ttl - Duration::from_millis(1))
                .is_some()
        );
        assert_eq!(store.len(), 2);
        assert!(store.get_at(WEB_UID, deleted_at + ttl).is_none());
        assert_eq!(store.len(), 1);
        assert!(store.get(CHECKOUT_UID).is_some());

        // A second DELETED does not push the expiry back.
        let a = pod("a");
        store.apply_event(
            WatchEvent::Deleted {
                pod: a.clone(),
                resource_version: None,
            },
            t0,
        );
        store.apply_event(
            WatchEvent::Deleted {
                pod: a.clone(),
                resource_version: None,
            },
            t0 + Duration::from_secs(30),
        );
        assert_eq!(store.prune(t0 + ttl), 1);

        // MODIFIED after DELETED (same UID) brings the pod back for good.
        store.apply_event(
            WatchEvent::Deleted {
                pod: a.clone(),
                resource_version: None,
            },
            t0,
        );
        store.apply_event(
            WatchEvent::Modified {
                pod: a,
                resource_version: None,
            },
            t0,
        );
        assert_eq!(store.prune(t0 + ttl * 10), 0);
        assert!(store.get("a").is_some());
    }

    #[test]
    fn a_list_marks_missing_pods_deleted() {
        let ttl = Duration::from_secs(60);
        let store = PodStore::new(ttl);
        let t0 = Instant::now();
        store.apply_list(vec![pod("a"), pod("b")], t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(store.apply_list(vec![pod("b"), pod("c")], t1), 1);
        assert_eq!(store.len(), 3);
        assert!(
            store
                .get_at("a", t1 + ttl - Duration::from_millis(1))
                .is_some()
        );
        assert!(store.get_at("a", t1 + ttl).is_none());
        assert!(store.get_at("b", t1 + ttl).is_some());
        assert!(store.get_at("c", t1 + ttl).is_some());
    }

    #[test]
    fn api_urls() {
        let url = parse_api_url("https://10.96.0.1:443").unwrap();
        assert_eq!(
            url,
            Endpoint {
                https: true,
                host: "10.96.0.1".into(),
                port: 443,
                authority: "10.96.0.1:443".into(),
                base_path: String::new(),
            }
        );
        let url = parse_api_url("https://[fd00::1]").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("fd00::1", 443));
        let url = parse_api_url("http://127.0.0.1:8001/proxy/").unwrap();
        assert_eq!((url.https, url.port), (false, 8001));
        assert_eq!(url.base_path, "/proxy");
        assert!(parse_api_url("ftp://x").is_err());
        assert!(parse_api_url("https://:443").is_err());
        assert!(parse_api_url("https://host:port").is_err());
        assert_eq!(
            encode_query("spec.nodeName=test-node"),
            "spec.nodeName%3Dtest-node"
        );
    }

    #[test]
    fn in_cluster_says_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("kube-sa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ttl = Duration::from_secs(30);
        let attempt = |host: Option<&str>, port: Option<&str>, node: &str| {
            KubeConfig::in_cluster_from(
                host.map(Into::into),
                port.map(Into::into),
                &dir,
                node.into(),
                ttl,
            )
            .map_err(|err| format!("{err:#}"))
        };
        let err = attempt(None, Some("443"), "n").unwrap_err();
        assert!(err.contains("KUBERNETES_SERVICE_HOST is not set"), "{err}");
        let err = attempt(Some("10.96.0.1"), None, "n").unwrap_err();
        assert!(err.contains("KUBERNETES_SERVICE_PORT is not set"), "{err}");
        let err = attempt(Some("10.96.0.1"), Some("https"), "n").unwrap_err();
        assert!(err.contains("not a port number"), "{err}");
        let err = attempt(Some("10.96.0.1"), Some("443"), " ").unwrap_err();
        assert!(err.contains("node name is empty"), "{err}");
        let err = attempt(Some("10.96.0.1"), Some("443"), "n").unwrap_err();
        assert!(
            err.contains("service-account token") && err.contains("token"),
            "{err}"
        );
        std::fs::write(dir.join("token"), "tok\n").unwrap();
        let err = attempt(Some("10.96.0.1"), Some("443"), "n").unwrap_err();
        assert!(err.contains("ca.crt is missing"), "{err}");
        std::fs::write(dir.join("ca.crt"), "").unwrap();
        let config = attempt(Some("fd00::1"), Some("6443"), "n").unwrap();
        assert_eq!(config.api_url, "https://[fd00::1]:6443");
        assert_eq!(config.token.as_deref(), Some("tok"));
        assert_eq!(config.ca_file, Some(dir.join("ca.crt")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_are_split_across_chunks() {
        let mut lines = LineBuffer::default();
        lines.push(b"{\"a\"").unwrap();
        assert_eq!(lines.next_line(), None);
        lines.push(b":1}\n{\"b\":2}\n{\"c\"").unwrap();
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"b\":2}"[..]));
        assert_eq!(lines.next_line(), None);
        assert_eq!(lines.rest().as_deref(), Some(&b"{\"c\""[..]));
        assert_eq!(lines.rest(), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= BACKOFF_FIRST && delays[0] <= BACKOFF_FIRST * 5 / 4);
        assert!(delays[1] >= BACKOFF_FIRST * 2);
        assert!(delays[9] >= BACKOFF_CAP && delays[9] <= BACKOFF_CAP * 5 / 4);
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_FIRST * 5 / 4);
    }

    #[tokio::test]
    async fn api_errors_carry_the_servers_message_and_a_hint() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            read_request(&stream);
            let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:monitoring:agent\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#;
            write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        let config = KubeConfig {
            api_url: format!("http://{address}"),
            token: None,
            ca_file: None,
            node_name: "test-node".into(),
            deleted_ttl: Duration::from_secs(1),
        };
        let err = Client::new(&config, None)
            .unwrap()
            .list()
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.starts_with(&format!(
                "GET http://{address}/api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node: \
                 HTTP 403 Forbidden: pods is forbidden: User \"system:serviceaccount:monitoring"
            )),
            "{err}"
        );
        assert!(err.contains("needs get, list and watch on pods"), "{err}");
        server.join().unwrap();
    }

    /// A CA and a certificate for 127.0.0.1 signed by it, as an API server has.
    fn test_ca() -> (String, rustls::ServerConfig) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        (ca.pem(), server)
    }

    #[tokio::test]
    async fn lists_over_https_trusting_the_ca_file() {
        let (ca_pem, server_config) = test_ca();
        let (other_ca_pem, _) = test_ca();
        let dir = std::env::temp_dir().join(format!("kube-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_file, other_ca_file) = (dir.join("ca.crt"), dir.join("other.crt"));
        std::fs::write(&ca_file, ca_pem).unwrap();
        std::fs::write(&other_ca_file, other_ca_pem).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server_config = Arc::new(server_config);
        let server = std::thread::spawn(move || {
            let mut authorizations = Vec::new();
            for _ in 0..2 {
                let (tcp, _) = listener.accept().unwrap();
                let connection = rustls::ServerConnection::new(Arc::clone(&server_config)).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                // The second client does not trust this server: its handshake fails here.
                let mut reader = BufReader::new(&mut tls);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some(value) = header.strip_prefix("authorization: ") {
                        authorizations.push(value.to_owned());
                    }
                }
                write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{LIST}",
                    LIST.len()
                )
                .unwrap();
                tls.conn.send_close_notify();
                tls.flush().unwrap();
            }
            authorizations
        });

        let mut config = KubeConfig {
            api_url: format!("https://{address}"),
            token: Some("tls-token".into()),
            ca_file: Some(ca_file),
            node_name: "test-node".into(),
            deleted_ttl: Duration::from_secs(1),
        };
        let list = Client::new(&config, None).unwrap().list().await.unwrap();
        assert_eq!(list.pods.len(), 2);

        config.ca_file = Some(other_ca_file);
        let err = Client::new(&config, None)
            .unwrap()
            .list()
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("TLS handshake with 127.0.0.1:"), "{err}");
        assert!(
            err.contains(&format!("GET https://{address}/api/v1/pods?")),
            "{err}"
        );

        assert_eq!(server.join().unwrap(), vec!["Bearer tls-token".to_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // --- `run` against a scripted local API server -------------------------------------------

    /// Reads one request's head; returns its request line and `Authorization` header.
    fn read_request(stream: &TcpStream) -> (String, Option<String>) {
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut authorization = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_owned());
                }
            }
        }
        (request_line.trim_end().to_owned(), authorization)
    }

    fn respond_list(mut stream: TcpStream, body: &str) {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    }

    fn start_watch(stream: &mut TcpStream) {
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                  Transfer-Encoding: chunked\r\n\r\n",
            )
            .unwrap();
    }

    fn chunk(stream: &mut TcpStream, data: &[u8]) {
        write!(stream, "{:x}\r\n", data.len()).unwrap();
        stream.write_all(data).unwrap();
        stream.write_all(b"\r\n").unwrap();
        stream.flush().unwrap();
    }

    async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn run_lists_watches_and_relists() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // Server → test: what was just done. Test → server: go on.
        let (done_tx, done_rx) = mpsc::channel::<(&'static str, Instant, String)>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let note = |what, request: String| done_tx.send((what, Instant::now(), request));
            // 1: the list.
            let (stream, _) = listener.accept().unwrap();
            let (request, authorization) = read_request(&stream);
            assert_eq!(authorization.as_deref(), Some("Bearer test-token"));
            respond_list(stream, LIST);
            note("listed", request).unwrap();
            // 2: the watch: MODIFIED split across chunks, then DELETED, then 410.
            let (mut stream, _) = listener.accept().unwrap();
            let (request, _) = read_request(&stream);
            start_watch(&mut stream);
            let mut lines = WATCH.lines();
            let modified = format!("{}\n", lines.next().unwrap());
            let (head, tail) = modified.as_bytes().split_at(100);
            chunk(&mut stream, head);
            chunk(&mut stream, tail);
            note("modified", request).unwrap();
            go_rx.recv().unwrap();
            chunk(
                &mut stream,
                format!("{}\n", lines.next().unwrap()).as_bytes(),
            );
            note("deleted", String::new()).unwrap();
            go_rx.recv().unwrap();
            chunk(
                &mut stream,
                br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 48301 (49000)","reason":"Expired","code":410}}
"#,
            );
            // 3: the relist: the checkout pod is gone too.
            let (stream, _) = listener.accept().unwrap();
            let (request, _) = read_request(&stream);
            respond_list(
                stream,
                r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"49000"},"items":[]}"#,
            );
            note("relisted", request).unwrap();
            // 4: the next watch, held open until the test ends.
            let (mut stream, _) = listener.accept().unwrap();
            let (request, _) = read_request(&stream);
            start_watch(&mut stream);
            note("watching", request).unwrap();
            let _ = go_rx.recv();
        });

        let ttl = Duration::from_millis(1500);
        let store = PodStore::new(Duration::ZERO);
        let config = KubeConfig {
            api_url: format!("http://{address}"),
            token: Some("test-token".into()),
            ca_file: None,
            node_name: "test-node".into(),
            deleted_ttl: ttl,
        };
        let task = tokio::spawn(run(config, store.clone()));
        // The server's notes, waited for without blocking the runtime `run` needs.
        let poll = async |what: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match done_rx.try_recv() {
                    Ok((done, at, request)) => {
                        assert_eq!(done, what);
                        return (at, request);
                    }
                    Err(mpsc::TryRecvError::Empty) => {
                        assert!(Instant::now() < deadline, "timed out waiting for {what}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(err) => panic!("server gone: {err}"),
                }
            }
        };

        // The list request, then both pods.
        wait_for("the list", || store.len() == 2).await;
        let (_, request) = poll("listed").await;
        assert_eq!(
            request,
            "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node HTTP/1.1"
        );
        let web = store.get(WEB_UID).unwrap();
        assert_eq!(web.service.as_deref(), Some("web"));
        assert_eq!(
            store.get(CHECKOUT_UID).unwrap().service.as_deref(),
            Some("checkout")
        );

        // The watch from the list's resourceVersion; the MODIFIED event lands.
        wait_for("the MODIFIED event", || {
            store
                .get(WEB_UID)
                .unwrap()
                .containers
                .contains_key(WEB_RESTARTED_ID)
        })
        .await;
        let (_, request) = poll("modified").await;
        assert!(
            request.starts_with(
                "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dtest-node&watch=1\
                 &resourceVersion=48213&allowWatchBookmarks=true"
            ),
            "{request}"
        );

        // DELETED: still there within the TTL, gone after it.
        go_tx.send(()).unwrap();
        let (deleted_at, _) = poll("deleted").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(store.get(WEB_UID).is_some(), "dropped before the TTL");
        wait_for("the deleted pod to go", || store.get(WEB_UID).is_none()).await;
        assert!(
            deleted_at.elapsed() >= ttl,
            "dropped after {:?}",
            deleted_at.elapsed()
        );
        assert_eq!(store.len(), 1);

        // 410 Gone: a relist, which marks the checkout pod deleted; then a watch from there.
        go_tx.send(()).unwrap();
        let (relisted_at, request) = poll("relisted").await;
        assert!(!request.contains("watch=1"), "{request}");
        let (_, request) = poll("watching").await;
        assert!(request.contains("&resourceVersion=49000&"), "{request}");
        assert!(store.get(CHECKOUT_UID).is_some(), "dropped before the TTL");
        wait_for("the vanished pod to go", || store.is_empty()).await;
        assert!(relisted_at.elapsed() >= ttl);

        task.abort();
        let _ = task.await;
        drop(go_tx);
        server.join().unwrap();
    }
}
