//! The push's own health: requests by result and data points given up on, shared by the
//! delivery task (which counts) and `/metrics` and the pushes themselves (which publish).
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::series::{families::family, publish::Published};

/// The `exporter` label value.
pub const EXPORTER: &str = "otlp";

/// How one export request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the endpoint took the batch.
    Success,
    /// No answer, a timeout, or an answer that asks to retry (429, 502, 503, 504): the
    /// batch stays at the head of the queue and is tried again after a backoff.
    Failure,
    /// Any other answer (400 bad data, 401/403 a wrong key, 404 a wrong path, 413 too
    /// large): sending it again cannot help, so the batch is dropped.
    Rejected,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    success: AtomicU64,
    failure: AtomicU64,
    rejected: AtomicU64,
    dropped_points: AtomicU64,
}

impl Stats {
    pub fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Success => &self.success,
            Outcome::Failure => &self.failure,
            Outcome::Rejected => &self.rejected,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, points: u64) {
        self.dropped_points.fetch_add(points, Relaxed);
    }

    /// `monitor_export_requests_total` (every result, zeros included, so a rate works from
    /// the first failure) and `monitor_export_dropped_points_total`.
    pub fn published(&self) -> Vec<Published> {
        let requests = [Outcome::Success, Outcome::Failure, Outcome::Rejected].map(|outcome| {
            let counter = match outcome {
                Outcome::Success => &self.success,
                Outcome::Failure => &self.failure,
                Outcome::Rejected => &self.rejected,
            };
            (
                vec![EXPORTER, outcome.label()],
                counter.load(Relaxed) as f64,
            )
        });
        vec![
            Published::plain(family::EXPORT_REQUESTS, requests),
            Published::plain(
                family::EXPORT_DROPPED_POINTS,
                [(vec![EXPORTER], self.dropped_points.load(Relaxed) as f64)],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::publish::Value;

    #[test]
    fn counts_are_published_per_result() {
        let stats = Stats::default();
        stats.count(Outcome::Failure);
        stats.count(Outcome::Failure);
        stats.count(Outcome::Success);
        stats.dropped(30);
        let published = stats.published();
        assert_eq!(published[0].label_names, ["exporter", "result"]);
        let rows: Vec<(Vec<String>, Value)> = published[0].rows.clone();
        assert_eq!(
            rows,
            [
                (vec!["otlp".into(), "success".into()], Value::Counter(1.0)),
                (vec!["otlp".into(), "failure".into()], Value::Counter(2.0)),
                (vec!["otlp".into(), "rejected".into()], Value::Counter(0.0)),
            ]
        );
        assert_eq!(
            published[1].rows,
            [(vec!["otlp".to_owned()], Value::Counter(30.0))]
        );
    }
}
