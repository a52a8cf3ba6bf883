//! Where the API is, which node's pods to follow, and the service account's credentials.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};

/// Where a pod's service account is mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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

    pub(super) fn in_cluster_from(
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

pub(super) fn read_token(path: &Path) -> anyhow::Result<String> {
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
