use super::*;
use crate::series::families::family;

fn counter(values: &[(&str, f64)]) -> Published {
    Published {
        family: family::SYSCALL_UNMATCHED_EXITS,
        label_names: vec!["syscall".into()],
        rows: values
            .iter()
            .map(|(label, value)| (vec![(*label).to_owned()], Value::Counter(*value)))
            .collect(),
    }
}

fn histogram(counts: &[(usize, u64)], sum_ns: u64) -> Published {
    let mut h = Histogram::ZERO;
    for (bucket, count) in counts {
        h.buckets[*bucket] = *count;
    }
    h.sum_ns = sum_ns;
    Published {
        family: family::HTTP_SERVER_DURATION,
        label_names: vec![
            "comm".into(),
            "http_request_method".into(),
            "http_response_status_code".into(),
            "http_route".into(),
            "pod".into(),
        ],
        rows: vec![(
            vec![
                "nginx".into(),
                "GET".into(),
                "200".into(),
                "/".into(),
                String::new(),
            ],
            Value::Histogram(Box::new(h)),
        )],
    }
}

fn sums(metric: &Metric) -> Vec<(String, u64, f64)> {
    let Data::Sum(points) = &metric.data else {
        panic!("{metric:?}")
    };
    points
        .iter()
        .map(|p| {
            let AttributeValue::String(label) = &p.attributes[0].1 else {
                panic!()
            };
            (label.clone(), p.start_ns, p.value)
        })
        .collect()
}

#[test]
fn cumulative_points_keep_their_series_start_until_a_reset() {
    let mut points = Points::new(Temporality::Cumulative, 100);
    let first = points.convert(&[counter(&[("read", 5.0)])], 1000);
    assert_eq!(first[0].name, "monitor_syscall_unmatched_exits_total");
    assert_eq!(sums(&first[0]), [("read".into(), 100, 5.0)]);
    let second = points.convert(&[counter(&[("read", 7.0), ("write", 2.0)])], 2000);
    // A new series started after the previous push.
    assert_eq!(
        sums(&second[0]),
        [("read".into(), 100, 7.0), ("write".into(), 1000, 2.0)]
    );
    // read went backwards (expired, came back): a new start.
    let third = points.convert(&[counter(&[("read", 1.0), ("write", 3.0)])], 3000);
    assert_eq!(
        sums(&third[0]),
        [("read".into(), 2000, 1.0), ("write".into(), 1000, 3.0)]
    );
    let fourth = points.convert(&[counter(&[("read", 4.0)])], 4000);
    assert_eq!(sums(&fourth[0]), [("read".into(), 2000, 4.0)]);
}

#[test]
fn delta_points_are_changes_since_the_previous_push() {
    let mut points = Points::new(Temporality::Delta, 100);
    let first = points.convert(&[counter(&[("read", 5.0)])], 1000);
    assert_eq!(sums(&first[0]), [("read".into(), 100, 5.0)]);
    let second = points.convert(&[counter(&[("read", 7.0), ("write", 2.0)])], 2000);
    assert_eq!(
        sums(&second[0]),
        [("read".into(), 1000, 2.0), ("write".into(), 1000, 2.0)]
    );
    // A reset: the new value is all new.
    let third = points.convert(&[counter(&[("read", 1.0), ("write", 2.0)])], 3000);
    assert_eq!(
        sums(&third[0]),
        [("read".into(), 2000, 1.0), ("write".into(), 2000, 0.0)]
    );
    // write vanished and comes back: counted from 0 again, not against its old value.
    points.convert(&[counter(&[("read", 1.0)])], 4000);
    let fifth = points.convert(&[counter(&[("write", 1.0)])], 5000);
    assert_eq!(sums(&fifth[0]), [("write".into(), 4000, 1.0)]);
    assert_eq!(points.series.len(), 1, "vanished series are forgotten");
}

#[test]
fn histograms_keep_the_kernel_buckets_with_semantic_names() {
    let mut points = Points::new(Temporality::Delta, 100);
    let first = points.convert(
        &[histogram(&[(3, 2), (hist::LAST, 1)], 3_000_000_000)],
        1000,
    );
    assert_eq!(first[0].name, "http.server.request.duration");
    assert_eq!(first[0].unit, "s");
    let Data::Histogram(p) = &first[0].data else {
        panic!()
    };
    assert_eq!(p[0].count, 3);
    assert_eq!(p[0].sum, 3.0);
    assert_eq!(p[0].bucket_counts.len(), bounds().len() + 1);
    assert_eq!(p[0].bucket_counts[3], 2);
    assert_eq!(p[0].bucket_counts[hist::LAST], 1);
    let keys: Vec<&str> = p[0].attributes.iter().map(|(k, _)| k.as_str()).collect();
    // The empty pod label is absent.
    assert_eq!(
        keys,
        [
            "process.executable.name",
            "http.request.method",
            "http.response.status_code",
            "http.route"
        ]
    );
    assert_eq!(p[0].attributes[2].1, AttributeValue::Int(200));
    let second = points.convert(
        &[histogram(&[(3, 5), (hist::LAST, 1)], 3_500_000_000)],
        2000,
    );
    let Data::Histogram(p) = &second[0].data else {
        panic!()
    };
    assert_eq!((p[0].count, p[0].sum, p[0].start_ns), (3, 0.5, 1000));
    assert_eq!(p[0].bucket_counts[3], 3);
    assert_eq!(p[0].bucket_counts[hist::LAST], 0);
}

#[test]
fn bounds_are_the_prometheus_le_values() {
    let bounds = bounds();
    assert_eq!(bounds.len(), hist::LAST);
    assert_eq!(bounds[0], 256e-9);
    assert_eq!(bounds[hist::LAST - 1], (1u64 << 34) as f64 / 1e9);
}

#[test]
fn gauges_have_no_start_and_are_never_deltas() {
    let mut points = Points::new(Temporality::Delta, 100);
    let gauge = Published::single(family::SERIES_BUDGET, 10.0);
    points.convert(std::slice::from_ref(&gauge), 1000);
    let second = points.convert(&[gauge], 2000);
    assert_eq!(
        second[0].data,
        Data::Gauge(vec![NumberPoint {
            attributes: vec![],
            start_ns: 0,
            time_ns: 2000,
            value: 10.0
        }])
    );
}
