//! What a signal publishes at a sweep, in no exporter's format: per family, the label names
//! and one row of label values and a value per series. The Prometheus text exposition (and
//! any later exporter) is a translation of these.
use super::{
    families::{Family, Kind},
    labels::LabelPolicy,
    table::{Histogram, WorkloadLabels},
};

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram(Box<Histogram>),
}

/// One family's series at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub family: Family,
    pub label_names: Vec<String>,
    /// Label values in `label_names` order, and the value.
    pub rows: Vec<(Vec<String>, Value)>,
}

impl Published {
    /// A workload family's rows: comm, the family's own label values, the other identity
    /// labels, the constant labels, then pid, as `policy` gives them for this family.
    pub fn workload<V>(
        family: Family,
        rows: &[(WorkloadLabels, V)],
        policy: &LabelPolicy,
        value: impl Fn(&V) -> Value,
    ) -> Self {
        Self {
            family,
            label_names: policy.label_names(family.name, family.labels),
            rows: rows
                .iter()
                .map(|(labels, v)| {
                    let values = policy.label_values(family.name, &labels.who, &labels.values);
                    (values, value(v))
                })
                .collect(),
        }
    }

    /// A family without identity labels (the agent's own health, kernel-wide counters): a
    /// counter or a gauge as the family is typed.
    pub fn plain<'a>(family: Family, rows: impl IntoIterator<Item = (Vec<&'a str>, f64)>) -> Self {
        let value = |v: f64| match family.kind {
            Kind::Counter => Value::Counter(v),
            Kind::Gauge | Kind::Histogram => Value::Gauge(v),
        };
        Self {
            family,
            label_names: family
                .labels
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            rows: rows
                .into_iter()
                .map(|(labels, v)| (labels.into_iter().map(str::to_owned).collect(), value(v)))
                .collect(),
        }
    }

    /// A family of one unlabelled value.
    pub fn single(family: Family, value: f64) -> Self {
        Self::plain(family, [(Vec::new(), value)])
    }
}

/// Helpers for the common value types of workload rows.
pub fn counter(value: &u64) -> Value {
    Value::Counter(*value as f64)
}

/// A counter kept in nanoseconds, exported in seconds.
pub fn seconds(ns: &u64) -> Value {
    Value::Counter(*ns as f64 / 1e9)
}

pub fn histogram(value: &Histogram) -> Value {
    Value::Histogram(Box::new(*value))
}
