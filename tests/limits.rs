//! Limits a noisy or churning fleet cannot get past, through the real receiver and shards.

use std::sync::atomic::Ordering;

use momentum::pipeline::inline::Inline;
use momentum::receiver::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_750_003_200 * S;

fn request(service: &str, names: impl Iterator<Item = String>, end: u64) -> Vec<u8> {
    let spans = names
        .enumerate()
        .map(|(i, name)| Span {
            trace_id: vec![3; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name,
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: end - 1_000_000,
            end_time_unix_nano: end,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `limits.max_operations_per_service` (500 by default): one service with an id in its
/// span names fills its own 500 operation series and the rest go to its `__overflow__`
/// operation, counted; a service that starts afterwards still gets a series for each of
/// its operations.
#[test]
fn one_noisy_service_cannot_take_every_other_services_operations() {
    let mut p = Inline::new(Default::default(), 2, T0 + 10 * S);
    let n = 1_000_000u64;
    let per_request = 5_000u64;
    for r in 0..n / per_request {
        let names = (r * per_request..(r + 1) * per_request).map(|i| format!("GET /orders/{i}"));
        p.send(Signal::Traces, &request("noisy", names, T0 + r * 1_000_000))
            .expect("admitted");
    }
    let names = (0..20).map(|i| format!("GET /quiet/{i}"));
    p.send(Signal::Traces, &request("quiet", names, T0 + S))
        .expect("admitted");
    p.settle();
    let (pairs, ops) = p.snapshot();
    let ops_of = |service: &str| -> Vec<(String, u64)> {
        ops.iter()
            .filter(|o| &*pairs[o.pair].service == service)
            .map(|o| (o.operation.to_string(), o.totals.requests))
            .collect()
    };
    let quiet = ops_of("quiet");
    assert_eq!(quiet.len(), 20, "{quiet:?}");
    assert!(quiet
        .iter()
        .all(|(name, n)| name.starts_with("GET /quiet/") && *n == 1));
    let noisy = ops_of("noisy");
    assert_eq!(noisy.len(), 501, "500 operations and the overflow");
    let overflow: Vec<_> = noisy.iter().filter(|(n, _)| n == "__overflow__").collect();
    assert_eq!(overflow, [&("__overflow__".to_string(), n - 500)]);
    let c = &p.shared.counters;
    assert_eq!(c.overflow_operation.load(Ordering::SeqCst), n - 500);
    assert_eq!(c.processed.load(Ordering::SeqCst), n + 20);
    assert_eq!(
        p.shared.series.load(Ordering::SeqCst),
        520,
        "the process-wide series count holds every operation but the overflow"
    );
}
