//! The pods of the node by UID, deleted ones kept for their TTL.
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::{api::WatchEvent, pod::PodMeta};

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
