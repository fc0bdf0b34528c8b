//! Pair identity, through the real decoder and shard: `service.namespace` prefixes the
//! service (`namespace/name`), the legacy `deployment.environment` stands in for
//! `deployment.environment.name`, an `slos[]` entry matches the prefixed name, and
//! version-based deployment detection is skipped for `unknown_service*` (it pools
//! unrelated programs) while a named service with the same versions deploys.

mod common;

use common::kv;
use momentum::pipeline::inline::Inline;
use momentum::receiver::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
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
