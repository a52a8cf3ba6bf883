//! A process incarnation → its container, pod, namespace and service, and whether the
//! selection rules keep it.
//!
//! What a process *is* (its cgroup, its executable) is read from `/proc` once, when it is
//! first named: while it runs. What those facts *mean* (the container's name, the pod's
//! name and namespace) is looked up at every sweep, because the Docker daemon and the
//! Kubernetes API answer later than the process starts, and a deleted pod's metadata goes
//! away after its TTL. Nothing here waits for them: a name not known yet makes the identity
//! not final, and the caller asks again later.
use std::path::PathBuf;

use log::warn;
use tokio::runtime::Handle;

use super::{
    cgroup::{self, CgroupInfo},
    docker::Docker,
    kubernetes::PodStore,
};
use crate::{
    identity::selection::{Selection, SelectorKey, ServiceOverride},
    proc_access::{self, What},
};

/// What `/proc` said about a process when it was named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub cgroup: CgroupInfo,
    pub exe: Option<String>,
}

impl Facts {
    /// Reads the facts of a running process; a process already gone has none (all `None`).
    pub fn read(tgid: u32) -> Facts {
        Facts {
            cgroup: cgroup::read(tgid).unwrap_or_default(),
            exe: {
                let path = PathBuf::from(format!("/proc/{tgid}/exe"));
                proc_access::check(What::Exe, &path, std::fs::read_link(&path)).ok()
            }
            .and_then(|path| path.to_str().map(str::to_owned)),
        }
    }
}

/// The identity labels of a process (empty: not in a container / not in Kubernetes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub service: String,
}

/// Ids are shown as Docker shows them when no name is known.
const SHORT_ID: usize = 12;

pub struct Resolver {
    docker: Option<Docker>,
    pods: Option<PodStore>,
    overrides: Vec<ServiceOverride>,
    selection: Selection,
}

impl Resolver {
    /// Called within the tokio runtime when Docker is to be asked: its lookups run there,
    /// whatever thread `identity` is called from later.
    pub fn new(
        docker_socket: Option<PathBuf>,
        pods: Option<PodStore>,
        overrides: Vec<ServiceOverride>,
        selection: Selection,
    ) -> Self {
        let docker = docker_socket.and_then(|socket| match Handle::try_current() {
            Ok(runtime) => Some(Docker::new(socket, runtime)),
            Err(_) => {
                warn!(
                    "no async runtime to ask the Docker daemon at {} from: containers are \
                     shown by their ids",
                    socket.display()
                );
                None
            }
        });
        Self {
            docker,
            pods,
            overrides,
            selection,
        }
    }

    /// A resolver that knows no runtime and selects everything (tests, and hosts without
    /// containers).
    pub fn plain() -> Self {
        Self::new(None, None, Vec::new(), Selection::default())
    }

    /// Whether any selection rule is set (if not, nothing needs judging).
    pub fn selects_all(&self) -> bool {
        self.selection.admits_all()
    }

    /// Identity of a process with these facts, named `comm`, and whether it is final (every
    /// name its facts point to was found: callers keep a final identity, so that series do
    /// not change labels while the process runs). The service is the first of: a configured
    /// override, the pod's `app.kubernetes.io/name` label or owning workload, the container's
    /// name, the comm. Never waits: a container name Docker has not given yet leaves the
    /// identity not final.
    pub fn identity(&self, facts: &Facts, comm: &str) -> (Identity, bool) {
        let pod = facts
            .cgroup
            .pod_uid
            .as_deref()
            .and_then(|uid| self.pods.as_ref()?.get(uid));
        let id = facts.cgroup.container_id.as_deref();
        let pod_found = facts.cgroup.pod_uid.is_none() || pod.is_some();
        let named = match (id, &pod) {
            (None, _) => Some(String::new()),
            (Some(id), Some(pod)) if pod.containers.contains_key(id) => {
                Some(pod.containers[id].clone())
            }
            (Some(id), _) => self
                .docker
                .as_ref()
                .and_then(|docker| docker.name(id).into_name()),
        };
        let container_found = named.is_some();
        let container = named
            .or_else(|| id.map(|id| id[..id.len().min(SHORT_ID)].to_owned()))
            .unwrap_or_default();
        let (pod_name, namespace, pod_service) = match pod {
            Some(pod) => (pod.name, pod.namespace, pod.service),
            None => (String::new(), String::new(), None),
        };
        let service = ServiceOverride::first_match(
            &self.overrides,
            &selector_facts(facts, comm, &container, &namespace),
        )
        .map(str::to_owned)
        .or(pod_service)
        .or_else(|| (!container.is_empty()).then(|| container.clone()))
        .unwrap_or_else(|| comm.to_owned());
        let identity = Identity {
            container,
            pod: pod_name,
            namespace,
            service,
        };
        (identity, pod_found && container_found)
    }

    /// Whether the selection rules keep a process with this identity.
    pub fn admits(&self, facts: &Facts, comm: &str, identity: &Identity) -> bool {
        self.selection.admits(&selector_facts(
            facts,
            comm,
            &identity.container,
            &identity.namespace,
        ))
    }
}

/// What selectors and service overrides match on; an empty value is no value (never matches).
fn selector_facts<'a>(
    facts: &'a Facts,
    comm: &'a str,
    container: &'a str,
    namespace: &'a str,
) -> impl Fn(SelectorKey) -> Option<String> + 'a {
    let known = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    move |key| match key {
        SelectorKey::Comm => Some(comm.to_owned()),
        SelectorKey::Exe => facts.exe.clone(),
        SelectorKey::Container => known(container),
        SelectorKey::Namespace => known(namespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_container() -> Facts {
        Facts {
            cgroup: CgroupInfo {
                container_id: Some("ab".repeat(32)),
                ..CgroupInfo::default()
            },
            exe: Some("/usr/bin/java".into()),
        }
    }

    #[test]
    fn host_processes_have_only_a_service_their_comm() {
        let (identity, last) = Resolver::plain().identity(&Facts::default(), "sshd");
        assert_eq!(
            identity,
            Identity {
                service: "sshd".into(),
                ..Identity::default()
            }
        );
        assert!(last, "nothing more to learn");
    }

    #[test]
    fn an_unnamed_container_shows_its_short_id_and_serves_as_service() {
        let (identity, last) = Resolver::plain().identity(&in_container(), "java");
        assert_eq!(identity.container, "abababababab");
        assert_eq!(identity.service, "abababababab");
        assert!(!last, "its name may still be learnt");
    }

    #[test]
    fn overrides_come_first_and_selection_sees_the_facts() {
        let rule: crate::identity::selection::Selector = "exe=/usr/bin/*".parse().unwrap();
        let overrides = vec![ServiceOverride {
            matchers: vec![rule],
            service: "checkout".into(),
        }];
        let exclude: crate::identity::selection::Selector = "comm=jav?".parse().unwrap();
        let selection = Selection::new(Vec::new(), vec![exclude]);
        let resolver = Resolver::new(None, None, overrides, selection);
        let facts = in_container();
        let (identity, _) = resolver.identity(&facts, "java");
        assert_eq!(identity.service, "checkout");
        assert!(!resolver.admits(&facts, "java", &identity));
        assert!(resolver.admits(&facts, "python3", &identity));
    }
}
