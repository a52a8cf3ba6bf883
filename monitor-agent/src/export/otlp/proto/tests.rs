//! The writer's output read back by a separate, minimal protobuf reader (wire types only,
//! no knowledge of the writer), field by field against the OTLP `.proto` numbers.
use super::*;
use crate::export::otlp::points::bounds;

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
}

fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// Every (field number, value) of one message, in order.
fn fields(bytes: &[u8]) -> Vec<(u32, Field)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let (number, wire) = ((key >> 3) as u32, key & 7);
        let field = match wire {
            0 => Field::Varint(read_varint(bytes, &mut at)),
            1 => {
                let value = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                at += 8;
                Field::Fixed64(value)
            }
            2 => {
                let len = read_varint(bytes, &mut at) as usize;
                let value = bytes[at..at + len].to_vec();
                at += len;
                Field::Bytes(value)
            }
            other => panic!("wire type {other} at {at}"),
        };
        out.push((number, field));
    }
    assert_eq!(at, bytes.len(), "the message ends on a field boundary");
    out
}

fn all(bytes: &[u8], number: u32) -> Vec<Field> {
    fields(bytes)
        .into_iter()
        .filter(|(n, _)| *n == number)
        .map(|(_, field)| field)
        .collect()
}

fn one(bytes: &[u8], number: u32) -> Field {
    let mut found = all(bytes, number);
    assert_eq!(found.len(), 1, "field {number} once in {:?}", fields(bytes));
    found.remove(0)
}

fn message(bytes: &[u8], number: u32) -> Vec<u8> {
    match one(bytes, number) {
        Field::Bytes(inner) => inner,
        other => panic!("field {number} is {other:?}"),
    }
}

fn text(bytes: &[u8], number: u32) -> String {
    String::from_utf8(message(bytes, number)).unwrap()
}

fn key_value(bytes: &[u8]) -> (String, Field) {
    let any = message(bytes, 2);
    let (number, value) = fields(&any).remove(0);
    let value = match (number, value) {
        (1, Field::Bytes(text)) => Field::Bytes(text),
        (3, Field::Varint(int)) => Field::Varint(int),
        other => panic!("AnyValue {other:?}"),
    };
    (text(bytes, 1), value)
}

/// The repeated `KeyValue` field `number` of a message, read back.
fn key_values(bytes: &[u8], number: u32) -> Vec<(String, Field)> {
    all(bytes, number)
        .iter()
        .map(|field| match field {
            Field::Bytes(kv) => key_value(kv),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn origin() -> Origin {
    Origin {
        resource: vec![
            ("host.name".into(), AttributeValue::String("node-a".into())),
            (
                "k8s.node.name".into(),
                AttributeValue::String("node-a".into()),
            ),
        ],
        scope_name: "monitor-agent",
        scope_version: "1.2.3",
    }
}

fn metrics() -> Vec<Metric> {
    let attributes = vec![
        (
            "syscall".to_owned(),
            AttributeValue::String("openat".into()),
        ),
        (
            "http.response.status_code".to_owned(),
            AttributeValue::Int(404),
        ),
    ];
    let mut bucket_counts = vec![0; bounds().len() + 1];
    bucket_counts[3] = 2;
    bucket_counts[bounds().len()] = 1;
    vec![
        Metric {
            name: "monitor_syscall_errors_total".into(),
            description: "Errors.",
            unit: "",
            data: Data::Sum(vec![NumberPoint {
                attributes: attributes.clone(),
                start_ns: 1_000,
                time_ns: 2_000,
                value: 37.0,
            }]),
        },
        Metric {
            name: "monitor_series_budget".into(),
            description: "Budget.",
            unit: "",
            data: Data::Gauge(vec![NumberPoint {
                attributes: vec![],
                start_ns: 0,
                time_ns: 2_000,
                value: 0.0,
            }]),
        },
        Metric {
            name: "http.server.request.duration".into(),
            description: "Requests.",
            unit: "s",
            data: Data::Histogram(vec![HistogramPoint {
                attributes,
                start_ns: 1_000,
                time_ns: 2_000,
                count: 3,
                sum: 0.25,
                bucket_counts,
            }]),
        },
    ]
}

#[test]
fn a_request_reads_back_as_the_otlp_messages() {
    let bytes = request(&origin(), &metrics(), Temporality::Cumulative);
    // ExportMetricsServiceRequest.resource_metrics
    let resource_metrics = message(&bytes, 1);
    let resource = message(&resource_metrics, 1);
    let attributes = key_values(&resource, 1);
    assert_eq!(
        attributes,
        [
            ("host.name".into(), Field::Bytes(b"node-a".to_vec())),
            ("k8s.node.name".into(), Field::Bytes(b"node-a".to_vec())),
        ]
    );
    let scope_metrics = message(&resource_metrics, 2);
    let scope = message(&scope_metrics, 1);
    assert_eq!(
        (text(&scope, 1), text(&scope, 2)),
        ("monitor-agent".into(), "1.2.3".into())
    );
    let metrics: Vec<Vec<u8>> = all(&scope_metrics, 2)
        .into_iter()
        .map(|field| match field {
            Field::Bytes(metric) => metric,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(metrics.len(), 3);

    // The counter: a monotonic cumulative Sum of one double point.
    let sum_metric = &metrics[0];
    assert_eq!(text(sum_metric, 1), "monitor_syscall_errors_total");
    assert_eq!(text(sum_metric, 2), "Errors.");
    assert!(all(sum_metric, 3).is_empty(), "no unit");
    let sum = message(sum_metric, 7);
    assert_eq!(one(&sum, 2), Field::Varint(2), "CUMULATIVE");
    assert_eq!(one(&sum, 3), Field::Varint(1), "is_monotonic");
    let point = message(&sum, 1);
    assert_eq!(one(&point, 2), Field::Fixed64(1_000));
    assert_eq!(one(&point, 3), Field::Fixed64(2_000));
    assert_eq!(one(&point, 4), Field::Fixed64(37f64.to_bits()));
    let point_attributes = key_values(&point, 7);
    assert_eq!(
        point_attributes,
        [
            ("syscall".into(), Field::Bytes(b"openat".to_vec())),
            ("http.response.status_code".into(), Field::Varint(404)),
        ]
    );

    // The gauge: a value of 0 is still sent (as_double is a oneof), and no start time.
    let gauge = message(&metrics[1], 5);
    let point = message(&gauge, 1);
    assert_eq!(one(&point, 4), Field::Fixed64(0f64.to_bits()));
    assert!(all(&point, 2).is_empty());

    // The histogram: explicit bounds in seconds, one more count than bounds.
    assert_eq!(text(&metrics[2], 3), "s");
    let histogram = message(&metrics[2], 9);
    assert_eq!(one(&histogram, 2), Field::Varint(2));
    let point = message(&histogram, 1);
    assert_eq!(one(&point, 4), Field::Fixed64(3), "count");
    assert_eq!(one(&point, 5), Field::Fixed64(0.25f64.to_bits()), "sum");
    let counts: Vec<u64> = message(&point, 6)
        .chunks(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    let read_bounds: Vec<f64> = message(&point, 7)
        .chunks(8)
        .map(|chunk| f64::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(read_bounds, bounds());
    assert_eq!(counts.len(), read_bounds.len() + 1);
    assert_eq!((counts[3], counts[read_bounds.len()]), (2, 1));
    assert_eq!(all(&point, 9).len(), 2, "attributes");
}

#[test]
fn delta_is_aggregation_temporality_one() {
    let bytes = request(&origin(), &metrics(), Temporality::Delta);
    let scope_metrics = message(&message(&bytes, 1), 2);
    let Field::Bytes(sum_metric) = all(&scope_metrics, 2).remove(0) else {
        panic!()
    };
    assert_eq!(one(&message(&sum_metric, 7), 2), Field::Varint(1));
}

#[test]
fn varints_take_as_many_bytes_as_they_need() {
    for (value, expected) in [
        (0u64, vec![0u8]),
        (1, vec![1]),
        (127, vec![0x7f]),
        (128, vec![0x80, 0x01]),
        (300, vec![0xac, 0x02]),
        (
            u64::MAX,
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
    ] {
        let mut writer = Writer::default();
        writer.varint(value);
        assert_eq!(writer.buf, expected, "{value}");
        assert_eq!(read_varint(&writer.buf, &mut 0), value);
    }
}
