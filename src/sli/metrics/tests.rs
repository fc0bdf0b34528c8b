use super::*;

fn pt(start: u64, count: u64) -> MetricPoint {
    MetricPoint {
        stream: 7,
        start_ns: start,
        time_ns: start + 10,
        count,
        good: count / 2,
        bound_ns: 0,
        error: false,
        cumulative: true,
    }
}

#[test]
fn cumulative_first_point_baseline_and_resets() {
    let mut s = Streams::default();
    // Started before the process: baseline only.
    assert_eq!(s.delta(&pt(50, 100), 100, 0), (0, 0));
    assert_eq!(s.delta(&pt(50, 130), 100, 0), (30, 15));
    // Lower count: reset, counts in full.
    assert_eq!(s.delta(&pt(50, 4), 100, 0), (4, 2));
    // Newer start time: reset.
    assert_eq!(s.delta(&pt(200, 10), 100, 0), (10, 5));
    assert_eq!(s.delta(&pt(200, 10), 100, 0), (0, 0));
    // A new stream started after the process: counts in full.
    let mut p = pt(150, 6);
    p.stream = 8;
    assert_eq!(s.delta(&p, 100, 0), (6, 3));
    // Delta points add themselves.
    p.cumulative = false;
    assert_eq!(s.delta(&p, 100, 0), (6, 3));
}

#[test]
fn idle_streams_expire_and_a_returning_stream_is_not_counted_twice() {
    // Twice: once with a tick removing the idle stream, once without: same counts.
    for tick in [true, false] {
        let mut s = Streams::default();
        // Stream 7 started after the process (counts in full), last point at 1,010.
        let mut a = pt(1_000, 40);
        assert_eq!(s.delta(&a, 100, 0), (40, 20));
        // Stream 9 is still reporting at 5,000.
        let mut b = pt(4_990, 3);
        b.stream = 9;
        s.delta(&b, 100, 0);
        if tick {
            assert_eq!(s.expire(4_000), 1, "stream 7 idle since 1,010");
            assert!(!s.contains(7) && s.contains(9));
        }
        // Stream 7 comes back with its cumulative count: a baseline, not 45 again.
        (a.count, a.good) = (45, 22);
        a.time_ns = 6_000;
        assert_eq!(s.delta(&a, 100, 4_000), (0, 0), "tick: {tick}");
        (a.count, a.good) = (47, 23);
        assert_eq!(s.delta(&a, 100, 4_000), (2, 1));
        // A stream first seen now that started after the process counts in full.
        let mut c = pt(4_500, 5);
        c.stream = 11;
        assert_eq!(s.delta(&c, 100, 4_000), (5, 2));
    }
}

#[test]
fn latency_good_uses_the_bounds_at_or_under_the_threshold_with_units() {
    use opentelemetry_proto::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, ExponentialHistogram,
        ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
        ScopeMetrics,
    };
    let hist = |name: &str, unit: &str, bounds: Vec<f64>, counts: Vec<u64>| Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: AggregationTemporality::Delta as i32,
            data_points: vec![HistogramDataPoint {
                count: counts.iter().sum(),
                explicit_bounds: bounds,
                bucket_counts: counts,
                time_unix_nano: 10,
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    // base 2 (scale 0): bucket i holds (2^i, 2^(i+1)]; offset -3 → (1/8,1/4], (1/4,1/2]…
    let exp = Metric {
        name: HTTP_METRIC.into(),
        unit: "s".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            aggregation_temporality: AggregationTemporality::Delta as i32,
            data_points: vec![ExponentialHistogramDataPoint {
                count: 12,
                zero_count: 1,
                scale: 0,
                positive: Some(Buckets {
                    offset: -3,
                    bucket_counts: vec![2, 4, 5],
                }),
                time_unix_nano: 10,
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    // seconds; 0.3 is not a bound: the next lower bound 0.25 is used
                    hist(HTTP_METRIC, "s", vec![0.1, 0.25, 0.5], vec![3, 4, 5, 6]),
                    // rpc in ms: bounds 100, 300 (= 0.3 s, inclusive), 1000
                    hist(
                        RPC_METRIC,
                        "ms",
                        vec![100.0, 300.0, 1000.0],
                        vec![1, 2, 3, 4],
                    ),
                    exp,
                    hist("http.client.request.duration", "s", vec![1.0], vec![1, 1]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (pairs, unusable) = extract(&req, 256, |_, _| Some(0.3));
    assert_eq!(unusable, 0);
    let pts = &pairs[0].points;
    assert_eq!(pts.len(), 3, "client histograms are not server requests");
    assert_eq!((pts[0].count, pts[0].good), (18, 7));
    assert_eq!((pts[1].count, pts[1].good), (10, 3));
    // zero bucket 1 + (1/8,1/4] 2; (1/4,1/2] crosses 0.3 and is left out
    assert_eq!((pts[2].count, pts[2].good), (12, 3));
    // The bound each counted up to, for /api (the README's How it works).
    let bounds: Vec<u64> = pts.iter().map(|p| p.bound_ns).collect();
    assert_eq!(bounds, [250_000_000, 300_000_000, 250_000_000]);
}

#[test]
fn error_rules_on_point_attributes() {
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }),
        ..Default::default()
    };
    assert!(point_is_error(&[kv(
        "http.response.status_code",
        Value::IntValue(503)
    )]));
    assert!(!point_is_error(&[kv(
        "http.response.status_code",
        Value::IntValue(404)
    )]));
    assert!(point_is_error(&[kv(
        "rpc.grpc.status_code",
        Value::IntValue(14)
    )]));
    assert!(!point_is_error(&[kv(
        "rpc.grpc.status_code",
        Value::IntValue(5)
    )]));
    assert!(point_is_error(&[kv(
        "rpc.status_code",
        Value::StringValue("INTERNAL".into())
    )]));
    assert!(point_is_error(&[kv(
        "error.type",
        Value::StringValue("timeout".into())
    )]));
    assert!(!point_is_error(&[]));
    assert_eq!(unit_seconds("", RPC_METRIC), Some(1e-3));
    assert_eq!(unit_seconds("ms", HTTP_METRIC), Some(1e-3));
    assert_eq!(unit_seconds("By", HTTP_METRIC), None);
}

#[test]
fn pipeline_run_points_in_seconds_from_explicit_and_exponential_histograms() {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, ExponentialHistogram,
        ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
        ScopeMetrics,
    };
    let attrs = vec![KeyValue {
        key: "cicd.pipeline.result".into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue("failure".into())),
        }),
        ..Default::default()
    }];
    let explicit = Metric {
        name: PIPELINE_METRIC.into(),
        unit: "ms".into(),
        data: Some(Data::Histogram(Histogram {
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            data_points: vec![HistogramDataPoint {
                attributes: attrs.clone(),
                count: 3,
                sum: Some(2500.0),
                explicit_bounds: vec![1000.0],
                bucket_counts: vec![1, 2],
                time_unix_nano: 10,
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let exp = Metric {
        name: PIPELINE_METRIC.into(),
        unit: "s".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            aggregation_temporality: AggregationTemporality::Delta as i32,
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: attrs,
                count: 3,
                zero_count: 1,
                scale: 0,
                positive: Some(Buckets {
                    offset: 1,
                    bucket_counts: vec![2],
                }),
                time_unix_nano: 10,
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![explicit, exp],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (pairs, unusable) = extract(&req, 256, |_, _| None);
    assert_eq!(unusable, 0);
    assert!(pairs[0].points.is_empty(), "pipeline runs are not requests");
    let r = &pairs[0].runs;
    assert_eq!(
        (r[0].name.as_str(), r[0].result.as_str()),
        ("unnamed", "failure")
    );
    assert!(r[0].cumulative && (r[0].sum_s - 2.5).abs() < 1e-12);
    assert_eq!(
        (r[0].bounds.clone(), r[0].counts.clone()),
        (vec![1.0], vec![1, 2])
    );
    // zero bucket (bound 0), (2, 4] → bound 4, then the empty unbounded bucket
    assert_eq!(
        (r[1].bounds.clone(), r[1].counts.clone()),
        (vec![0.0, 4.0], vec![1, 2, 0])
    );
    assert!(!r[1].cumulative);
}
