//! The bench request of the performance issue, shared by `benches/hot_path.rs` and
//! `examples/hot_path_profile.rs` (included with `#[path]`, so both measure the same bytes).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// The bench request of the performance issue: 100 SERVER spans, 6 attributes each
/// (~290 bytes/span), spread over `services` services, ending now.
pub fn request(services: usize, now: u64) -> Vec<u8> {
    use any_value::Value::{IntValue, StringValue};
    let routes = [
        "/api/orders",
        "/api/orders/{id}",
        "/api/cart",
        "/api/cart/items/{id}",
        "/healthz",
    ];
    let per = 100 / services;
    let resource_spans = (0..services)
        .map(|s| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", StringValue(format!("service-{s}"))),
                    kv(
                        "deployment.environment.name",
                        StringValue("production".into()),
                    ),
                    kv("service.version", StringValue("1.4.2".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..per)
                    .map(|i| {
                        let route = routes[i % routes.len()];
                        let lat = 1_000_000 + (i as u64 * 7_919_333) % 300_000_000;
                        Span {
                            trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
                            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                            name: format!("GET {route}"),
                            kind: span::SpanKind::Server as i32,
                            start_time_unix_nano: now - lat,
                            end_time_unix_nano: now,
                            attributes: vec![
                                kv("http.request.method", StringValue("GET".into())),
                                kv("http.route", StringValue(route.into())),
                                kv(
                                    "http.response.status_code",
                                    IntValue(if i % 20 == 0 { 503 } else { 200 }),
                                ),
                                kv("url.path", StringValue(route.replace("{id}", "12345"))),
                                kv("server.address", StringValue("api.example.com".into())),
                                kv(
                                    "user_agent.original",
                                    StringValue("Mozilla/5.0 (X11; Linux x86_64) bench/1.0".into()),
                                ),
                            ],
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}
