//! A snapshot's published families as OTLP metrics and data points, in the chosen
//! temporality. Each counter and histogram series keeps its start time and last cumulative
//! value here, from one push to the next: a cumulative point carries the series' own start
//! (moved on when its value went backwards: the series expired and came back), a delta point
//! the change since the previous push. Series absent from a snapshot are forgotten, so this
//! holds no more than one snapshot's series.
use std::collections::HashMap;

use monitor_common::hist;

use super::names::{self, AttributeValue};
use crate::{
    series::{
        publish::{Published, Value},
        table::Histogram,
    },
    settings::otlp::Temporality,
};

#[derive(Clone, Debug, PartialEq)]
pub struct NumberPoint {
    pub attributes: Vec<(String, AttributeValue)>,
    pub start_ns: u64,
    pub time_ns: u64,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HistogramPoint {
    pub attributes: Vec<(String, AttributeValue)>,
    pub start_ns: u64,
    pub time_ns: u64,
    pub count: u64,
    pub sum: f64,
    /// One count per bucket of [`bounds`], and the last for everything above.
    pub bucket_counts: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Gauge(Vec<NumberPoint>),
    /// A monotonic sum: a Prometheus counter.
    Sum(Vec<NumberPoint>),
    Histogram(Vec<HistogramPoint>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub description: &'static str,
    pub unit: &'static str,
    pub data: Data,
}

impl Metric {
    pub fn points(&self) -> usize {
        match &self.data {
            Data::Gauge(points) | Data::Sum(points) => points.len(),
            Data::Histogram(points) => points.len(),
        }
    }
}

/// The explicit bucket bounds, in seconds: the kernel's log2 bounds, the `le` values of
/// /metrics (the kernel's last bucket is the overflow one).
pub fn bounds() -> Vec<f64> {
    (0..hist::LAST)
        .map(|index| hist::upper_bound_ns(index).unwrap_or(u64::MAX) as f64 / 1e9)
        .collect()
}

#[derive(Clone, Debug)]
enum Last {
    Number(f64),
    Histogram(Box<Histogram>),
}

#[derive(Clone, Debug)]
struct Series {
    start_ns: u64,
    last: Last,
}

/// Turns snapshots into metrics, one push after the other.
#[derive(Debug)]
pub struct Points {
    temporality: Temporality,
    /// When the counting started: the first start time of every series seen at the first push.
    agent_start_ns: u64,
    previous_ns: Option<u64>,
    series: HashMap<(&'static str, Vec<String>), Series>,
}

impl Points {
    pub fn new(temporality: Temporality, agent_start_ns: u64) -> Self {
        Points {
            temporality,
            agent_start_ns,
            previous_ns: None,
            series: HashMap::new(),
        }
    }

    pub fn temporality(&self) -> Temporality {
        self.temporality
    }

    /// The metrics of `published`, observed at `now_ns`. Families without series are left
    /// out, as on /metrics.
    pub fn convert(&mut self, published: &[Published], now_ns: u64) -> Vec<Metric> {
        // A series first seen now started after the previous push (or with the agent).
        let since = self.previous_ns.unwrap_or(self.agent_start_ns);
        let mut previous = std::mem::take(&mut self.series);
        let mut metrics = Vec::with_capacity(published.len());
        for family in published.iter().filter(|family| !family.rows.is_empty()) {
            let (name, unit) = names::metric(family.family.name);
            let mut gauges = Vec::new();
            let mut sums = Vec::new();
            let mut histograms = Vec::new();
            for (values, value) in &family.rows {
                let attributes = attributes(&family.label_names, values);
                let key = (family.family.name, values.clone());
                let before = previous.remove(&key);
                match value {
                    Value::Gauge(value) => gauges.push(NumberPoint {
                        attributes,
                        start_ns: 0,
                        time_ns: now_ns,
                        value: *value,
                    }),
                    Value::Counter(value) => {
                        let last = match &before {
                            Some(Series {
                                start_ns,
                                last: Last::Number(last),
                            }) if last <= value => Some((*start_ns, *last)),
                            _ => None,
                        };
                        let (start_ns, point_value, series_start) = match (self.temporality, last) {
                            (Temporality::Cumulative, Some((start, _))) => (start, *value, start),
                            (Temporality::Cumulative, None) => (since, *value, since),
                            (Temporality::Delta, Some((start, last))) => {
                                (since, value - last, start)
                            }
                            (Temporality::Delta, None) => (since, *value, since),
                        };
                        sums.push(NumberPoint {
                            attributes,
                            start_ns,
                            time_ns: now_ns,
                            value: point_value,
                        });
                        self.series.insert(
                            key,
                            Series {
                                start_ns: series_start,
                                last: Last::Number(*value),
                            },
                        );
                    }
                    Value::Histogram(histogram) => {
                        let last = match &before {
                            Some(Series {
                                start_ns,
                                last: Last::Histogram(last),
                            }) if grew(last, histogram) => Some((*start_ns, last.as_ref())),
                            _ => None,
                        };
                        let (start_ns, point, series_start) = match (self.temporality, last) {
                            (Temporality::Cumulative, Some((start, _))) => {
                                (start, **histogram, start)
                            }
                            (Temporality::Cumulative, None) => (since, **histogram, since),
                            (Temporality::Delta, Some((start, last))) => {
                                (since, minus(histogram, last), start)
                            }
                            (Temporality::Delta, None) => (since, **histogram, since),
                        };
                        histograms.push(histogram_point(attributes, start_ns, now_ns, &point));
                        self.series.insert(
                            key,
                            Series {
                                start_ns: series_start,
                                last: Last::Histogram(histogram.clone()),
                            },
                        );
                    }
                }
            }
            let description = family.family.help;
            for data in [
                (!gauges.is_empty()).then_some(Data::Gauge(gauges)),
                (!sums.is_empty()).then_some(Data::Sum(sums)),
                (!histograms.is_empty()).then_some(Data::Histogram(histograms)),
            ]
            .into_iter()
            .flatten()
            {
                metrics.push(Metric {
                    name: name.clone(),
                    description,
                    unit,
                    data,
                });
            }
        }
        self.previous_ns = Some(now_ns);
        metrics
    }
}

/// Labels as attributes; an empty value is an absent label (as Prometheus reads it).
fn attributes(names: &[String], values: &[String]) -> Vec<(String, AttributeValue)> {
    names
        .iter()
        .zip(values)
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| names::attribute(name, value))
        .collect()
}

/// No bucket went down: the same series, counting on.
fn grew(before: &Histogram, now: &Histogram) -> bool {
    before
        .buckets
        .iter()
        .zip(&now.buckets)
        .all(|(before, now)| before <= now)
        && before.sum_ns <= now.sum_ns
}

fn minus(now: &Histogram, before: &Histogram) -> Histogram {
    let mut delta = *now;
    for (bucket, before) in delta.buckets.iter_mut().zip(&before.buckets) {
        *bucket -= before;
    }
    delta.sum_ns -= before.sum_ns;
    delta
}

fn histogram_point(
    attributes: Vec<(String, AttributeValue)>,
    start_ns: u64,
    time_ns: u64,
    histogram: &Histogram,
) -> HistogramPoint {
    HistogramPoint {
        attributes,
        start_ns,
        time_ns,
        count: histogram.buckets.iter().sum(),
        sum: histogram.sum_ns as f64 / 1e9,
        bucket_counts: histogram.buckets.to_vec(),
    }
}

#[cfg(test)]
mod tests;
