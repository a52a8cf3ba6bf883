//! Every `--otlp.interval`: a snapshot (asked of the pipeline as a scrape asks it, so the
//! pipeline never waits on the push), the agent's own `process_*` and export figures, OTLP
//! points in the chosen temporality, encoded into requests of a bounded size, queued.
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use log::{debug, warn};
use tokio::time::{Instant, MissedTickBehavior};

use super::{
    points::{Data, Metric, Points},
    proto::{self, Origin},
    queue::Queue,
    stats::Stats,
};
use crate::export::{process, server::Source};

/// Data points per request: a large node's snapshot is sent as several requests, each
/// well under the receivers' usual size limits (4 MiB on a collector's gRPC side).
pub const MAX_POINTS_PER_REQUEST: usize = 2000;

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or_default()
}

/// The collecting loop; ends only with its task.
pub async fn run(
    source: Arc<dyn Source>,
    mut points: Points,
    origin: Arc<Origin>,
    interval: Duration,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
) {
    // The first push comes one interval after start-up, as the OpenTelemetry SDKs do.
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut published = match source.published().await {
            Ok(published) => published,
            Err(err) => {
                warn!("OTLP push: no snapshot: {err:#}");
                continue;
            }
        };
        published.extend(process::published(&process::Figures::read()));
        published.extend(stats.published());
        // The main runtime has one thread, shared with the scrapes: the conversion and the
        // encoding (milliseconds for a large node) run beside it, on the blocking pool.
        let now = now_ns();
        let temporality = points.temporality();
        let origin = Arc::clone(&origin);
        let work = tokio::task::spawn_blocking(move || {
            let metrics = points.convert(&published, now);
            let requests = requests(&origin, &metrics, &points, MAX_POINTS_PER_REQUEST);
            (points, metrics.len(), requests)
        });
        let (metrics, requests) = match work.await {
            Ok((back, metrics, requests)) => {
                points = back;
                (metrics, requests)
            }
            Err(err) => {
                // Only a panic gets here; the series' state went with it, so every series
                // starts again from now.
                warn!("OTLP push: encoding failed ({err}); series restart from now");
                points = Points::new(temporality, now);
                continue;
            }
        };
        debug!(
            "OTLP push: {metrics} metrics in {} requests queued",
            requests.len()
        );
        for (body, count) in requests {
            queue.push(Bytes::from(body), count);
        }
    }
}

/// `metrics` as encoded requests of at most `max_points` points each, with their counts.
pub fn requests(
    origin: &Origin,
    metrics: &[Metric],
    points: &Points,
    max_points: usize,
) -> Vec<(Vec<u8>, u64)> {
    let max_points = max_points.max(1);
    let mut requests = Vec::new();
    let mut current: Vec<Metric> = Vec::new();
    let mut count = 0;
    for metric in metrics {
        let mut rest = metric.clone();
        while rest.points() > 0 {
            let room = max_points - count;
            let (head, tail) = split(rest, room);
            count += head.points();
            current.push(head);
            if count == max_points {
                let batch = std::mem::take(&mut current);
                requests.push((
                    proto::request(origin, &batch, points.temporality()),
                    count as u64,
                ));
                count = 0;
            }
            match tail {
                Some(tail) => rest = tail,
                None => break,
            }
        }
    }
    if count > 0 {
        requests.push((
            proto::request(origin, &current, points.temporality()),
            count as u64,
        ));
    }
    requests
}

/// The first `n` points of `metric`, and the rest if any.
fn split(metric: Metric, n: usize) -> (Metric, Option<Metric>) {
    if metric.points() <= n {
        return (metric, None);
    }
    let with = |data| Metric {
        name: metric.name.clone(),
        description: metric.description,
        unit: metric.unit,
        data,
    };
    match &metric.data {
        Data::Gauge(points) => (
            with(Data::Gauge(points[..n].to_vec())),
            Some(with(Data::Gauge(points[n..].to_vec()))),
        ),
        Data::Sum(points) => (
            with(Data::Sum(points[..n].to_vec())),
            Some(with(Data::Sum(points[n..].to_vec()))),
        ),
        Data::Histogram(points) => (
            with(Data::Histogram(points[..n].to_vec())),
            Some(with(Data::Histogram(points[n..].to_vec()))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::otlp::{names::AttributeValue, points::NumberPoint},
        settings::otlp::Temporality,
    };

    fn metric(name: &str, points: usize) -> Metric {
        Metric {
            name: name.into(),
            description: "",
            unit: "",
            data: Data::Sum(
                (0..points)
                    .map(|n| NumberPoint {
                        attributes: vec![("n".into(), AttributeValue::Int(n as i64))],
                        start_ns: 1,
                        time_ns: 2,
                        value: n as f64,
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn requests_hold_at_most_the_bound_and_every_point_once() {
        let origin = Origin {
            resource: vec![],
            scope_name: "monitor-agent",
            scope_version: "0",
        };
        let points = Points::new(Temporality::Cumulative, 0);
        let metrics = [metric("a", 3), metric("b", 6), metric("c", 1)];
        let sent = requests(&origin, &metrics, &points, 4);
        let counts: Vec<u64> = sent.iter().map(|(_, count)| *count).collect();
        assert_eq!(counts, [4, 4, 2]);
        // The split metric's pieces, in order: b's first point goes with a, the next four
        // alone, the last with c.
        let (first, rest) = split(metric("b", 6), 1);
        assert_eq!(first.points(), 1);
        let (middle, last) = split(rest.unwrap(), 4);
        assert_eq!((middle.points(), last.unwrap().points()), (4, 1));
        assert_eq!(split(metric("c", 2), 2).1, None);
        assert!(requests(&origin, &[], &points, 4).is_empty());
    }
}
