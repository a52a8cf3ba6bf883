//! Accept-queue saturation: for each listening TCP port of a process, the connections waiting
//! to be accepted, the queue's limit, and the connection attempts the socket dropped. Read at
//! every sweep from the kernel's socket diagnostics (`diag`, what `ss -lnt` shows), once per
//! network namespace that holds a known listener (a pod's or a container's is joined through
//! one of its processes, which needs CAP_SYS_ADMIN); the owner of each port is the process
//! the probes saw call `listen()` (`TCP_LISTENERS`, seeded at start-up for older listeners).
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use log::debug;
use monitor_common::{ListenerKey, Owner};

use super::signal::{Context, SeriesCount, Signal, growth, series_count};
use crate::{
    proc_access::{self, What},
    series::{
        families::{Family, family},
        labels::LabelPolicy,
        publish::{self, Published, Value},
        table::{SeriesTable, WorkloadLabels},
    },
};

mod diag;

const FAMILIES: &[Family] = &[
    family::TCP_LISTEN_OVERFLOWS,
    family::TCP_ACCEPT_QUEUE_LENGTH,
    family::TCP_ACCEPT_QUEUE_MAX,
];

/// One sweep's accept queues per (label set with its port): waiting now, and the limit.
#[derive(Debug, Default)]
pub struct ListenSnapshot {
    pub queues: Vec<(WorkloadLabels, (u64, u64))>,
    pub overflows: Vec<(WorkloadLabels, u64)>,
}

pub struct Listen {
    /// The agent's network namespace (`TCP_LISTENERS` keys carry one).
    netns: Option<u32>,
    queues: SeriesTable<WorkloadLabels, u64>,
    overflows: SeriesTable<WorkloadLabels, u64>,
    /// Drops last read per socket inode: only what is new is added.
    seen_drops: HashMap<u32, u64>,
    /// Whether reading the agent's own namespace, or another one, failed already (said once).
    failed: bool,
    failed_elsewhere: bool,
}

impl Default for Listen {
    fn default() -> Self {
        Self::new()
    }
}

impl Listen {
    pub fn new() -> Self {
        let netns = std::fs::read_link("/proc/self/ns/net")
            .ok()
            .and_then(|link| {
                let link = link.to_str()?.to_owned();
                crate::probes::listeners::bracketed_inode(&link, "net")
            })
            .map(|inode| inode as u32);
        Self {
            netns,
            queues: SeriesTable::default(),
            overflows: SeriesTable::default(),
            seen_drops: HashMap::new(),
            failed: false,
            failed_elsewhere: false,
        }
    }

    /// The listening sockets of the network namespace `netns`, read through one of the
    /// processes `tgids` that is still in it when it is not the agent's own. A failure is
    /// said once (per kind) and is an empty list.
    fn sockets(&mut self, netns: u32, tgids: &[u32]) -> Vec<diag::Listener> {
        if Some(netns) == self.netns {
            return diag::listeners(None).unwrap_or_else(|err| {
                if !std::mem::replace(&mut self.failed, true) {
                    log::warn!(
                        "reading listening sockets (sock_diag netlink): {err}; no accept-queue \
                         metrics until it works"
                    );
                }
                Vec::new()
            });
        }
        // The first owner still in that namespace (the others may have gone or moved).
        let Some(namespace) = tgids.iter().find_map(|tgid| {
            let path = std::path::PathBuf::from(format!("/proc/{tgid}/ns/net"));
            let link = proc_access::check(What::NsNet, &path, std::fs::read_link(&path)).ok()?;
            let inode = crate::probes::listeners::bracketed_inode(link.to_str()?, "net")?;
            (inode as u32 == netns)
                .then(|| proc_access::check(What::NsNet, &path, std::fs::File::open(&path)).ok())?
        }) else {
            return Vec::new();
        };
        diag::listeners(Some(&namespace)).unwrap_or_else(|err| {
            if !std::mem::replace(&mut self.failed_elsewhere, true) {
                log::warn!(
                    "reading listening sockets of another network namespace (a pod's or a \
                     container's): {err}; their accept queues are not reported (joining a \
                     namespace needs CAP_SYS_ADMIN)"
                );
            } else {
                debug!("reading the listening sockets of network namespace {netns}: {err}");
            }
            Vec::new()
        })
    }
}

impl Signal for Listen {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        let known = ctx.kernel.listeners();
        // One dump per network namespace that holds a known listener, through its owners.
        let mut namespaces: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (key, owner) in &known {
            namespaces.entry(key.netns).or_default().push(owner.tgid);
        }
        let owners: HashMap<ListenerKey, Owner> = known.into_iter().collect();
        let listeners: Vec<(u32, diag::Listener)> = namespaces
            .iter()
            .flat_map(|(&netns, tgids)| {
                self.sockets(netns, tgids)
                    .into_iter()
                    .map(move |listener| (netns, listener))
            })
            .collect();
        let mut queues: HashMap<WorkloadLabels, (u64, u64)> = HashMap::new();
        let mut sockets = HashSet::new();
        for (netns, listener) in listeners {
            let key = ListenerKey {
                netns,
                port: listener.port,
                _pad: 0,
            };
            let Some(&owner) = owners.get(&key) else {
                continue;
            };
            let Some((current, who)) = ctx.naming.running_process(owner.tgid, ctx.now) else {
                continue;
            };
            if current.generation != owner.generation && owner.generation != 0 {
                debug!("port {} listed for an older {owner:?}", listener.port);
                continue;
            }
            let port = vec![listener.port.to_string()];
            let labels = ctx.recorder.labels(
                family::TCP_ACCEPT_QUEUE_LENGTH.name,
                &self.queues,
                &who,
                port.clone(),
            );
            let queue = queues.entry(labels).or_default();
            queue.0 += u64::from(listener.queued);
            queue.1 += u64::from(listener.max);
            let Some(drops) = listener.drops else {
                continue;
            };
            sockets.insert(listener.inode);
            let drops = u64::from(drops);
            let before = self.seen_drops.insert(listener.inode, drops);
            if let Some(new) = growth(before, drops) {
                ctx.recorder.record(
                    family::TCP_LISTEN_OVERFLOWS.name,
                    &mut self.overflows,
                    &who,
                    port,
                    &new,
                );
            }
        }
        self.seen_drops.retain(|inode, _| sockets.contains(inode));
        // A gauge of listening sockets now: a port no longer listened on goes at once.
        let present = queues.keys().map(|labels| (labels.clone(), 1)).collect();
        self.queues.publish(present, ctx.now, Duration::ZERO);
        let mut snapshot = ListenSnapshot {
            queues: queues.into_iter().collect(),
            overflows: self.overflows.publish(Default::default(), ctx.now, ctx.ttl),
        };
        snapshot.queues.sort_by(|a, b| a.0.cmp(&b.0));
        published(&snapshot, ctx.recorder.policy)
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        vec![
            series_count(&family::TCP_LISTEN_OVERFLOWS, &self.overflows),
            series_count(&family::TCP_ACCEPT_QUEUE_LENGTH, &self.queues),
            series_count(&family::TCP_ACCEPT_QUEUE_MAX, &self.queues),
        ]
    }
}

pub fn published(snapshot: &ListenSnapshot, policy: &LabelPolicy) -> Vec<Published> {
    vec![
        Published::workload(
            family::TCP_LISTEN_OVERFLOWS,
            &snapshot.overflows,
            policy,
            publish::counter,
        ),
        Published::workload(
            family::TCP_ACCEPT_QUEUE_LENGTH,
            &snapshot.queues,
            policy,
            |(queued, _)| Value::Gauge(*queued as f64),
        ),
        Published::workload(
            family::TCP_ACCEPT_QUEUE_MAX,
            &snapshot.queues,
            policy,
            |(_, max)| Value::Gauge(*max as f64),
        ),
    ]
}
