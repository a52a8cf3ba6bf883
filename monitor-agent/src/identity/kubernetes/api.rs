//! The API's JSON → `PodMeta`: a `PodList`, and the lines of a watch stream.
#[cfg(test)]
mod tests;

use std::{collections::HashMap, fmt};

use anyhow::{Context as _, anyhow, bail};
use log::warn;
use serde::Deserialize;

use super::pod::{NAME_LABEL, PodMeta};

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
