//! What the agent keeps of a pod: the one type the store, the API decoding and the client
//! share.
use std::collections::HashMap;

/// The label that names a pod's application, first choice for `service`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

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
