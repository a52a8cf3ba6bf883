//! OTLP push (`--otlp.endpoint`): the same series as /metrics, sent every `--otlp.interval`
//! as OTLP/HTTP protobuf, beside the scrape endpoint and never in its way. The steps, one
//! per module, in the order the data flows:
//!
//! 1. `collect`: a snapshot, as a scrape takes one, every interval;
//! 2. `names`: Prometheus names to OpenTelemetry semantic-convention ones where one exists;
//! 3. `points`: series to data points, cumulative or delta, with their start times;
//! 4. `proto`: the `ExportMetricsServiceRequest` protobuf, in requests of bounded size;
//! 5. `queue`: a bounded queue (the oldest batch dropped when full, and counted);
//! 6. `deliver` and `client`: POSTed, retried with backoff, counted in `stats`.
pub mod client;
pub mod collect;
pub mod deliver;
pub mod names;
pub mod points;
pub mod proto;
pub mod queue;
pub mod stats;

use std::sync::Arc;

use log::info;

use crate::{
    export::server::Source,
    settings::otlp::{OtlpSettings, Temporality},
};
use names::AttributeValue;

/// The resource: this host, and this node when in Kubernetes.
pub fn origin(host_name: Option<String>, node_name: Option<String>) -> proto::Origin {
    let mut resource = Vec::new();
    if let Some(host) = host_name {
        resource.push(("host.name".to_owned(), AttributeValue::String(host)));
    }
    if let Some(node) = node_name {
        resource.push(("k8s.node.name".to_owned(), AttributeValue::String(node)));
    }
    proto::Origin {
        resource,
        scope_name: "monitor-agent",
        scope_version: env!("CARGO_PKG_VERSION"),
    }
}

/// The kernel's host name (the node's, for a DaemonSet on the host network).
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Starts the push's two tasks on `tasks` (the main runtime); returns its counters for
/// /metrics. Fails only on settings that cannot work (no CA bundle for https).
pub fn spawn(
    settings: &OtlpSettings,
    source: Arc<dyn Source>,
    node_name: Option<String>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<Arc<stats::Stats>> {
    let client = client::Client::new(settings.endpoint.clone(), &settings.headers)?;
    let stats = Arc::new(stats::Stats::default());
    let queue = Arc::new(queue::Queue::new(queue::BATCHES, Arc::clone(&stats)));
    let header_names: Vec<&str> = settings.headers.iter().map(|h| h.name.as_str()).collect();
    let temporality = match settings.temporality {
        Temporality::Cumulative => "cumulative",
        Temporality::Delta => "delta",
    };
    info!(
        "OTLP push to {} every {:?}, {temporality} temporality{}",
        settings.endpoint,
        settings.interval,
        if header_names.is_empty() {
            String::new()
        } else {
            format!(", with headers {}", header_names.join(", "))
        }
    );
    let points = points::Points::new(settings.temporality, collect::now_ns());
    tasks.spawn(collect::run(
        source,
        points,
        Arc::new(origin(host_name(), node_name)),
        settings.interval,
        Arc::clone(&queue),
        Arc::clone(&stats),
    ));
    tasks.spawn(deliver::run(
        client,
        queue,
        Arc::clone(&stats),
        settings.interval,
    ));
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_host_and_the_node_when_known() {
        let origin = origin(Some("vm-1".into()), Some("node-a".into()));
        assert_eq!(
            origin.resource,
            [
                (
                    "host.name".to_owned(),
                    AttributeValue::String("vm-1".into())
                ),
                (
                    "k8s.node.name".to_owned(),
                    AttributeValue::String("node-a".into())
                ),
            ]
        );
        let keys: Vec<String> = super::origin(Some("vm-1".into()), None)
            .resource
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["host.name"]);
        assert_eq!(
            host_name().as_deref(),
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .as_deref()
                .map(str::trim)
        );
    }
}
