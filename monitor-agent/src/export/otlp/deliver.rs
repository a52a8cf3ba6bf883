//! The delivering loop: the queue's oldest batch to the endpoint, again and again until it is
//! taken or refused for good; after a failure, a backoff that doubles up to a cap. Logged on
//! changes only (the first failure, the recovery), so a collector down for an hour is two
//! lines, not one per try; every try is counted in `monitor_export_requests_total`.
use std::{sync::Arc, time::Duration};

use log::{debug, info, warn};

use super::{client::Client, queue::Queue, stats::Outcome, stats::Stats};

/// The first wait after a failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between tries (or `--otlp.interval`, if shorter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(client: Client, queue: Arc<Queue>, stats: Arc<Stats>, interval: Duration) {
    let cap = MAX_BACKOFF.min(interval);
    let mut backoff = INITIAL_BACKOFF.min(cap);
    let mut failing = false;
    let endpoint = client.endpoint().to_string();
    loop {
        let batch = queue.head().await;
        let answer = client.send(batch.body.clone()).await;
        stats.count(answer.outcome);
        match answer.outcome {
            Outcome::Success => {
                queue.remove(batch.id);
                backoff = INITIAL_BACKOFF.min(cap);
                if failing {
                    info!("OTLP push to {endpoint} works again ({})", answer.detail);
                    failing = false;
                } else {
                    debug!("OTLP push: {} points sent", batch.points);
                }
            }
            Outcome::Rejected => {
                if queue.remove(batch.id) {
                    stats.dropped(batch.points);
                }
                if !failing {
                    warn!(
                        "OTLP push to {endpoint} refused ({}): {} points dropped, not retried; \
                         check --otlp.endpoint and --otlp.headers (further refusals at debug level)",
                        answer.detail, batch.points
                    );
                    failing = true;
                } else {
                    debug!(
                        "OTLP push refused ({}): {} points dropped",
                        answer.detail, batch.points
                    );
                }
            }
            Outcome::Failure => {
                if !failing {
                    warn!(
                        "OTLP push to {endpoint} failed ({}); retrying with backoff up to \
                         {cap:?}, oldest batches dropped once {} are waiting; /metrics is not \
                         affected (further failures at debug level)",
                        answer.detail,
                        super::queue::BATCHES
                    );
                    failing = true;
                } else {
                    debug!(
                        "OTLP push failed ({}); next try in {backoff:?}",
                        answer.detail
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cap);
            }
        }
    }
}
