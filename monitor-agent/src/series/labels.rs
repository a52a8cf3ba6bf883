//! Who a workload series is about (`Workload`), and which of those identity labels each
//! family carries (`LabelPolicy`): the one path every workload family's labels go through.
use std::collections::HashMap;

/// The identity of the process(es) behind a series. Empty strings are "not known / not in a
/// container / not in Kubernetes": Prometheus treats an empty label as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub comm: String,
    pub pid: Option<u32>,
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub service: String,
}

/// The identity labels, in exposition order (after the family's own labels; `pid` last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityLabel {
    Comm,
    Container,
    Pod,
    Namespace,
    Service,
    Pid,
}

impl IdentityLabel {
    pub const ALL: [IdentityLabel; 6] = [
        IdentityLabel::Comm,
        IdentityLabel::Container,
        IdentityLabel::Pod,
        IdentityLabel::Namespace,
        IdentityLabel::Service,
        IdentityLabel::Pid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityLabel::Comm => "comm",
            IdentityLabel::Container => "container",
            IdentityLabel::Pod => "pod",
            IdentityLabel::Namespace => "namespace",
            IdentityLabel::Service => "service",
            IdentityLabel::Pid => "pid",
        }
    }

    fn value(self, who: &Workload) -> String {
        match self {
            IdentityLabel::Comm => who.comm.clone(),
            IdentityLabel::Container => who.container.clone(),
            IdentityLabel::Pod => who.pod.clone(),
            IdentityLabel::Namespace => who.namespace.clone(),
            IdentityLabel::Service => who.service.clone(),
            IdentityLabel::Pid => who.pid.map(|pid| pid.to_string()).unwrap_or_default(),
        }
    }
}

impl std::str::FromStr for IdentityLabel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        IdentityLabel::ALL
            .into_iter()
            .find(|label| label.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not an identity label: use pid, comm, container, pod, \
                     namespace or service"
                )
            })
    }
}

/// Per-family label choice and constant labels.
#[derive(Clone, Debug)]
pub struct LabelPolicy {
    default: Vec<IdentityLabel>,
    families: HashMap<String, Vec<IdentityLabel>>,
    constant: Vec<(String, String)>,
}

impl Default for LabelPolicy {
    fn default() -> Self {
        Self::new(false, HashMap::new(), Vec::new())
    }
}

impl LabelPolicy {
    /// `pid`: whether families without their own choice carry `pid` (`--labels pid`).
    /// `families`: a family name → the identity labels it carries (order is ignored: the
    /// exposition order is `IdentityLabel::ALL`'s).
    pub fn new(
        pid: bool,
        families: HashMap<String, Vec<IdentityLabel>>,
        constant: Vec<(String, String)>,
    ) -> Self {
        let default = IdentityLabel::ALL
            .into_iter()
            .filter(|label| pid || *label != IdentityLabel::Pid)
            .collect();
        let families = families
            .into_iter()
            .map(|(family, chosen)| {
                let ordered = IdentityLabel::ALL
                    .into_iter()
                    .filter(|label| chosen.contains(label))
                    .collect();
                (family, ordered)
            })
            .collect();
        Self {
            default,
            families,
            constant,
        }
    }

    /// The identity labels `family` carries.
    pub fn identity(&self, family: &str) -> &[IdentityLabel] {
        self.families.get(family).unwrap_or(&self.default)
    }

    /// `who` with the labels `family` does not carry cleared: processes that differ only
    /// there share one series.
    pub fn project(&self, family: &str, who: &Workload) -> Workload {
        let carried = self.identity(family);
        let keep = |label| carried.contains(&label);
        Workload {
            comm: if keep(IdentityLabel::Comm) {
                who.comm.clone()
            } else {
                String::new()
            },
            pid: if keep(IdentityLabel::Pid) {
                who.pid
            } else {
                None
            },
            container: if keep(IdentityLabel::Container) {
                who.container.clone()
            } else {
                String::new()
            },
            pod: if keep(IdentityLabel::Pod) {
                who.pod.clone()
            } else {
                String::new()
            },
            namespace: if keep(IdentityLabel::Namespace) {
                who.namespace.clone()
            } else {
                String::new()
            },
            service: if keep(IdentityLabel::Service) {
                who.service.clone()
            } else {
                String::new()
            },
        }
    }

    /// Label names of a workload family: comm first (as before identities existed), its own
    /// labels, the other identity labels, the constant labels, pid last.
    pub fn label_names(&self, family: &str, own: &[&'static str]) -> Vec<String> {
        let identity = self.identity(family);
        let mut names = Vec::new();
        if identity.contains(&IdentityLabel::Comm) {
            names.push(IdentityLabel::Comm.as_str().to_owned());
        }
        names.extend(own.iter().map(|name| (*name).to_owned()));
        names.extend(
            identity
                .iter()
                .filter(|label| !matches!(label, IdentityLabel::Comm | IdentityLabel::Pid))
                .map(|label| label.as_str().to_owned()),
        );
        names.extend(self.constant.iter().map(|(name, _)| name.clone()));
        if identity.contains(&IdentityLabel::Pid) {
            names.push(IdentityLabel::Pid.as_str().to_owned());
        }
        names
    }

    /// Values in `label_names` order.
    pub fn label_values(&self, family: &str, who: &Workload, own: &[String]) -> Vec<String> {
        let identity = self.identity(family);
        let mut values = Vec::new();
        if identity.contains(&IdentityLabel::Comm) {
            values.push(who.comm.clone());
        }
        values.extend(own.iter().cloned());
        values.extend(
            identity
                .iter()
                .filter(|label| !matches!(label, IdentityLabel::Comm | IdentityLabel::Pid))
                .map(|label| label.value(who)),
        );
        values.extend(self.constant.iter().map(|(_, value)| value.clone()));
        if identity.contains(&IdentityLabel::Pid) {
            values.push(IdentityLabel::Pid.value(who));
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Workload {
        Workload {
            comm: "java".into(),
            pid: Some(42),
            container: "api".into(),
            pod: "shop-7d9".into(),
            namespace: "shop".into(),
            service: "checkout".into(),
        }
    }

    #[test]
    fn default_carries_every_identity_label_but_pid() {
        let policy = LabelPolicy::new(
            false,
            HashMap::new(),
            vec![("environment".into(), "prod".into())],
        );
        assert_eq!(
            policy.label_names("f", &["syscall"]),
            [
                "comm",
                "syscall",
                "container",
                "pod",
                "namespace",
                "service",
                "environment"
            ]
        );
        assert_eq!(
            policy.label_values("f", &policy.project("f", &who()), &["read".into()]),
            [
                "java", "read", "api", "shop-7d9", "shop", "checkout", "prod"
            ]
        );
        assert_eq!(policy.project("f", &who()).pid, None);
    }

    #[test]
    fn a_family_choice_drops_the_rest_and_merges_what_differed_there() {
        let families = HashMap::from([(
            "f".to_owned(),
            vec![IdentityLabel::Service, IdentityLabel::Namespace],
        )]);
        let policy = LabelPolicy::new(true, families, Vec::new());
        assert_eq!(
            policy.label_names("f", &["syscall"]),
            ["syscall", "namespace", "service"]
        );
        let mut other = who();
        other.comm = "python3".into();
        other.pid = Some(7);
        assert_eq!(policy.project("f", &who()), policy.project("f", &other));
        assert_eq!(
            policy.label_names("g", &[]),
            ["comm", "container", "pod", "namespace", "service", "pid"],
            "other families keep the default, pid included with --labels pid"
        );
    }
}
