//! The pods of this node, from the Kubernetes API: one list, then a watch from the list's
//! resourceVersion (`fieldSelector=spec.nodeName=<node>`), kept in a [`PodStore`] that maps a
//! pod UID (what the cgroup path gives) to its name, namespace, service and container names.
//!
//! Plain HTTP/1.1 over hyper's connection API, one connection per request: there are only two
//! requests in flight over a pod's life (the list, then one long-lived watch), so no pool. TLS
//! is rustls with the ring provider, trusting the service-account CA (or the system bundle).
//! Deleted pods stay in the store for `deleted_ttl`, so the processes that outlive their pod's
//! deletion event by a moment are still labelled.
//!
//! `pod` is what is kept of a pod, `config` where the API is, `store` holds the pods, `api`
//! decodes the API's objects, `client` speaks HTTP to it; this file is the loop that ties them
//! together.
mod api;
pub(crate) mod client;
mod config;
mod pod;
mod store;
#[cfg(test)]
mod tests;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use log::{debug, info, warn};

pub use self::{
    api::{ApiStatus, PodList, WatchEvent, parse_pod_list, parse_watch_event},
    config::{KubeConfig, SERVICE_ACCOUNT_DIR},
    pod::{NAME_LABEL, PodMeta},
    store::PodStore,
};
use self::{
    client::{Client, WatchEnd},
    config::read_token,
};

/// Reconnect delays: doubling from the first, capped.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A watch that ends this fast without a single event counts as a failure (backoff).
const WATCH_MIN_LIFE: Duration = Duration::from_secs(1);

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
