//! The OTLP metrics protobuf (opentelemetry-proto `metrics/v1`, `collector/metrics/v1`),
//! written by hand: a request is a handful of message types, so a small writer for varint,
//! fixed64 and length-delimited fields is all it takes (no code generator, no protoc).
//! Field numbers are those of the `.proto` files, named where they are used.
use super::{
    names::AttributeValue,
    points::{Data, HistogramPoint, Metric, NumberPoint},
};
use crate::settings::otlp::Temporality;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// A message under construction.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, VARINT);
            self.varint(value);
        }
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A `double` that is sent even when zero: `sum` is `optional`, and a number data
    /// point's value is a `oneof`, where presence is the point.
    fn double(&mut self, field: u32, value: f64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, text: &str) {
        if !text.is_empty() {
            self.bytes(field, text.as_bytes());
        }
    }

    /// A sub-message, written by `body`.
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        body(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// `AggregationTemporality`.
fn temporality(temporality: Temporality) -> u64 {
    match temporality {
        Temporality::Delta => 1,
        Temporality::Cumulative => 2,
    }
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string_value = 1; int_value = 3 }`.
fn key_value(w: &mut Writer, field: u32, key: &str, value: &AttributeValue) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |any| match value {
            AttributeValue::String(text) => any.bytes(1, text.as_bytes()),
            AttributeValue::Int(number) => {
                any.key(3, VARINT);
                any.varint(*number as u64);
            }
        });
    });
}

/// `NumberDataPoint { start_time_unix_nano = 2; time_unix_nano = 3; as_double = 4;
/// attributes = 7 }`.
fn number_point(w: &mut Writer, field: u32, point: &NumberPoint) {
    w.message(field, |p| {
        p.fixed64(2, point.start_ns);
        p.fixed64(3, point.time_ns);
        p.double(4, point.value);
        for (key, value) in &point.attributes {
            key_value(p, 7, key, value);
        }
    });
}

/// `HistogramDataPoint { start_time_unix_nano = 2; time_unix_nano = 3; count = 4; sum = 5;
/// bucket_counts = 6 (packed fixed64); explicit_bounds = 7 (packed double); attributes = 9 }`.
fn histogram_point(w: &mut Writer, field: u32, point: &HistogramPoint, bounds: &[u8]) {
    w.message(field, |p| {
        p.fixed64(2, point.start_ns);
        p.fixed64(3, point.time_ns);
        p.fixed64(4, point.count);
        p.double(5, point.sum);
        let counts: Vec<u8> = point
            .bucket_counts
            .iter()
            .flat_map(|count| count.to_le_bytes())
            .collect();
        p.bytes(6, &counts);
        p.bytes(7, bounds);
        for (key, value) in &point.attributes {
            key_value(p, 9, key, value);
        }
    });
}

/// `Metric { name = 1; description = 2; unit = 3; gauge = 5; sum = 7; histogram = 9 }`;
/// `Gauge { data_points = 1 }`, `Sum { data_points = 1; aggregation_temporality = 2;
/// is_monotonic = 3 }`, `Histogram { data_points = 1; aggregation_temporality = 2 }`.
fn metric(w: &mut Writer, field: u32, metric: &Metric, temporality: u64, bounds: &[u8]) {
    w.message(field, |m| {
        m.string(1, &metric.name);
        m.string(2, metric.description);
        m.string(3, metric.unit);
        match &metric.data {
            Data::Gauge(points) => m.message(5, |gauge| {
                for point in points {
                    number_point(gauge, 1, point);
                }
            }),
            Data::Sum(points) => m.message(7, |sum| {
                for point in points {
                    number_point(sum, 1, point);
                }
                sum.uint(2, temporality);
                sum.uint(3, 1);
            }),
            Data::Histogram(points) => m.message(9, |histogram| {
                for point in points {
                    histogram_point(histogram, 1, point, bounds);
                }
                histogram.uint(2, temporality);
            }),
        }
    });
}

/// Who sends: the resource attributes (`host.name`, `k8s.node.name`) and the scope.
#[derive(Clone, Debug)]
pub struct Origin {
    pub resource: Vec<(String, AttributeValue)>,
    pub scope_name: &'static str,
    pub scope_version: &'static str,
}

/// `ExportMetricsServiceRequest { resource_metrics = 1 }` →
/// `ResourceMetrics { resource = 1; scope_metrics = 2 }` (`Resource { attributes = 1 }`) →
/// `ScopeMetrics { scope = 1; metrics = 2 }` (`InstrumentationScope { name = 1; version = 2 }`).
pub fn request(origin: &Origin, metrics: &[Metric], temporality: Temporality) -> Vec<u8> {
    let temporality = self::temporality(temporality);
    let bounds: Vec<u8> = super::points::bounds()
        .iter()
        .flat_map(|bound| bound.to_le_bytes())
        .collect();
    let mut w = Writer::default();
    w.message(1, |resource_metrics| {
        resource_metrics.message(1, |resource| {
            for (key, value) in &origin.resource {
                key_value(resource, 1, key, value);
            }
        });
        resource_metrics.message(2, |scope_metrics| {
            scope_metrics.message(1, |scope| {
                scope.string(1, origin.scope_name);
                scope.string(2, origin.scope_version);
            });
            for m in metrics {
                metric(scope_metrics, 2, m, temporality, &bounds);
            }
        });
    });
    w.buf
}

#[cfg(test)]
mod tests;
