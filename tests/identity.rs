//! Pair identity, through the real decoder and shard: `service.namespace` prefixes the
//! service (`namespace/name`), the legacy `deployment.environment` stands in for
//! `deployment.environment.name`, an `slos[]` entry matches the prefixed name, and
//! version-based deployment detection is skipped for `unknown_service*` (it pools
//! unrelated programs) while a named service with the same versions deploys. One set of
//! rules resolves the pair for spans, metric points, log records and archived span rows:
//! a service name longer than `limits.max_value_bytes` and a repeated key land every
//! signal in the same pair.

mod common;

use common::kv;
use momentum::inline::Inline;
use momentum::receiver::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const T0: u64 = 1_750_000_000 * S;

/// One SERVER span ending at `end` under a resource of `attrs`.
fn request(attrs: &[(&str, &str)], end: u64) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: end.to_be_bytes().to_vec(),
                    name: "GET /".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: end - 10_000_000,
                    end_time_unix_nano: end,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_namespace_prefixes_the_service_and_the_legacy_environment_key_counts() {
    let mut p = Inline::from_yaml(
        "slos:\n  - service: shop/cart\n    objectives: { availability: 99 }\n",
        2,
        T0,
    );
    let res = [
        ("service.namespace", "shop"),
        ("service.name", "cart"),
        ("deployment.environment", "staging"),
    ];
    for k in 0..5 {
        p.clock.set(T0 + (k + 1) * S);
        p.send(Signal::Traces, &request(&res, T0 + k * S)).unwrap();
    }
    // The same name without the namespace is another pair, without the SLO.
    p.send(
        Signal::Traces,
        &request(&[("service.name", "cart")], T0 + 5 * S),
    )
    .unwrap();
    let cart = p
        .pair("shop/cart", "staging")
        .expect("the pair shop/cart in staging");
    assert_eq!(cart.totals.requests, 5);
    assert!(cart.slo.is_some(), "the slos[] entry for shop/cart matches");
    let plain = p.pair("cart", "").expect("cart without namespace");
    assert_eq!(plain.totals.requests, 1);
    assert!(plain.slo.is_none());
    // `.name` wins over the legacy key.
    p.send(
        Signal::Traces,
        &request(
            &[
                ("service.name", "cart"),
                ("deployment.environment", "legacy"),
                ("deployment.environment.name", "prod"),
            ],
            T0 + 5 * S,
        ),
    )
    .unwrap();
    assert_eq!(p.pair("cart", "prod").map(|c| c.totals.requests), Some(1));
    assert!(p.pair("cart", "legacy").is_none());
}

#[test]
fn version_changes_of_unknown_service_are_no_deployments() {
    let mut p = Inline::from_yaml("", 1, T0);
    // Three resources change version the same way over 30 minutes, the change at 10
    // minutes overlapping the old version for a minute: a named service (the control),
    // `unknown_service` (no service.name) and an SDK's `unknown_service:java`.
    let named = |v: &'static str| vec![("service.name", "billing"), ("service.version", v)];
    let unnamed = |v: &'static str| vec![("service.version", v)];
    let sdk = |v: &'static str| {
        vec![
            ("service.name", "unknown_service:java"),
            ("service.version", v),
        ]
    };
    let resources: [&dyn Fn(&'static str) -> Vec<(&'static str, &'static str)>; 3] =
        [&named, &unnamed, &sdk];
    for m in 0..30u64 {
        let t = T0 + m * MIN;
        p.clock.set(t + S);
        for r in resources {
            if m <= 10 {
                p.send(Signal::Traces, &request(&r("1"), t)).unwrap();
            }
            if m >= 9 {
                p.send(Signal::Traces, &request(&r("2"), t + S / 2))
                    .unwrap();
            }
        }
    }
    let mut deployments = |service: &str| {
        let v = p.pair(service, "").unwrap_or_else(|| panic!("{service}"));
        (
            v.totals.requests,
            v.delivery.deployments,
            v.delivery.pending,
        )
    };
    assert_eq!(
        deployments("billing"),
        (32, 1, 1),
        "the control deploys once"
    );
    assert_eq!(deployments("unknown_service"), (32, 0, 0));
    assert_eq!(deployments("unknown_service:java"), (32, 0, 0));
}

/// One delta `http.server.request.duration` point of `count` requests (all fast, none
/// failed) ending at `end`, under a resource of `attrs`.
fn metric_points(attrs: &[(&str, &str)], end: u64, count: u64) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            attributes: vec![kv("http.route", "/")],
                            start_time_unix_nano: end - MIN,
                            time_unix_nano: end,
                            count,
                            explicit_bounds: vec![0.1, 1.0],
                            bucket_counts: vec![count, 0, 0],
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// One explicit deployment log record (`deployment.id`, succeeded) at `time`.
fn deployment_log(attrs: &[(&str, &str)], time: u64) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: time,
                    attributes: vec![
                        kv("deployment.id", "d-1"),
                        kv("deployment.status", "succeeded"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_long_service_name_and_a_repeated_key_are_one_pair_in_every_signal() {
    // 16 bytes at most: "checkout-servicé…" is cut before the 2-byte "é" that straddles
    // byte 16, to "checkout-servic"; the namespace is 4 bytes and stays whole.
    let mut p = Inline::from_yaml("limits:\n  max_value_bytes: 16\n", 2, T0);
    let long = "checkout-servic\u{e9}-with-a-long-tail";
    // Repeated keys: the last string occurrence wins everywhere.
    let res = [
        ("service.namespace", "shop"),
        ("service.name", "first-occurrence"),
        ("service.name", long),
        ("deployment.environment.name", "staging"),
        ("deployment.environment.name", "production-eu-west-1"),
        ("service.version", "1.0"),
        ("service.version", "1.1"),
    ];
    let (service, env) = ("shop/checkout-servic", "production-eu-we");

    p.clock.set(T0 + 2 * S);
    p.send(Signal::Traces, &request(&res, T0 + S)).unwrap();
    p.send(Signal::Metrics, &metric_points(&res, T0 + S, 5))
        .unwrap();
    p.send(Signal::Logs, &deployment_log(&res, T0 + S)).unwrap();
    p.drain();

    let (pairs, _) = p.snapshot();
    let names: Vec<(String, String)> = pairs
        .iter()
        .map(|v| (v.service.to_string(), v.environment.to_string()))
        .collect();
    assert_eq!(
        names,
        vec![(service.to_string(), env.to_string())],
        "spans, metric points and log records all land in one pair"
    );
    let pair = p.pair(service, env).unwrap();
    assert!(
        pair.totals.requests >= 1,
        "the requests counted: {:?}",
        pair.totals
    );
    assert_eq!(pair.delivery.current_version.as_deref(), Some("1.1"));
    assert_eq!(
        pair.delivery.recent.len(),
        1,
        "the log's deployment record is the pair's: {:?}",
        pair.delivery.recent
    );
    let c = &p.shared.counters;
    assert_eq!(
        c.sli_metric_points
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the metric point was used"
    );

    // The span archive resolves the same pair from the same body.
    let mut rows = Vec::new();
    momentum::archive::spans::rows_of(&request(&res, T0 + S), 16, &mut rows).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (&*rows[0].service, &*rows[0].environment, &*rows[0].version),
        (service, env, "1.1")
    );
}
