//! The Prometheus text exposition of a snapshot: each published family becomes a
//! `MetricFamily`, ordered as Prometheus client registries order them (families by name,
//! series by label values) so the output is stable from scrape to scrape.
use monitor_common::hist;
use prometheus::{
    Encoder as _, TextEncoder,
    proto::{self, MetricFamily, MetricType},
};

use crate::series::{
    families::Kind,
    publish::{Published, Value},
    table::Histogram,
};

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    }
}

fn metric(names: &[String], values: &[String], value: &Value) -> proto::Metric {
    let pairs = names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name(name.clone());
            pair.set_value(value.clone());
            pair
        })
        .collect();
    let mut metric = proto::Metric::default();
    metric.set_label(pairs);
    match value {
        Value::Counter(v) => {
            let mut counter = proto::Counter::default();
            counter.set_value(*v);
            metric.set_counter(counter);
        }
        Value::Gauge(v) => {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(*v);
            metric.set_gauge(gauge);
        }
        Value::Histogram(h) => metric.set_histogram(histogram(h)),
    }
    metric
}

/// The kernel's log2 buckets as cumulative Prometheus buckets, in seconds; the kernel's last
/// bucket (beyond the last finite bound) counts in `+Inf` only.
fn histogram(stats: &Histogram) -> proto::Histogram {
    let mut cumulative = 0;
    let buckets = (0..hist::LAST)
        .map(|index| {
            cumulative += stats.buckets[index];
            let mut bucket = proto::Bucket::default();
            bucket.set_cumulative_count(cumulative);
            let upper_ns = hist::upper_bound_ns(index).unwrap_or(u64::MAX);
            bucket.set_upper_bound(upper_ns as f64 / 1e9);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_bucket(buckets);
    histogram.set_sample_count(cumulative + stats.buckets[hist::LAST]);
    histogram.set_sample_sum(stats.sum_ns as f64 / 1e9);
    histogram
}

/// Each published family as a `MetricFamily`, series in published order. The text format
/// has no way to say "a family with no series": those are left out.
pub fn render(published: &[Published]) -> Vec<MetricFamily> {
    published
        .iter()
        .filter(|family| !family.rows.is_empty())
        .map(|published| {
            let mut family = MetricFamily::default();
            family.set_name(published.family.name.to_owned());
            family.set_help(published.family.help.to_owned());
            family.set_field_type(metric_type(published.family.kind));
            family.set_metric(
                published
                    .rows
                    .iter()
                    .map(|(values, value)| metric(&published.label_names, values, value))
                    .collect(),
            );
            family
        })
        .collect()
}

/// `render`, then ordered: families by name, series by their label values.
pub fn gather(published: &[Published]) -> Vec<MetricFamily> {
    let mut families = render(published);
    families.sort_by(|a, b| a.name().cmp(b.name()));
    for family in &mut families {
        family
            .mut_metric()
            .sort_by(|a, b| label_values(a).cmp(label_values(b)));
    }
    families
}

fn label_values(metric: &proto::Metric) -> impl Iterator<Item = &str> {
    metric.get_label().iter().map(|pair| pair.value())
}

/// The text exposition format and its content type.
pub fn encode(families: &[MetricFamily]) -> anyhow::Result<(Vec<u8>, String)> {
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(64 * 1024);
    encoder.encode(families, &mut body)?;
    Ok((body, encoder.format_type().to_owned()))
}

#[cfg(test)]
mod tests;
