//! The release gate endpoint, `GET /api/v1/services/{name}/gate[?environment=E]`: 200 with
//! `{"allow": bool, "reasons": [...]}` either way, 404 for an unknown service, 400 listing
//! the environments when the service has several and none is named.

mod common;

use common::{config_yaml, grpc_export, kv, poll, Proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::Value;

const S: u64 = 1_000_000_000;

/// `n` requests of `shop` in `env` ending just before `end`, `errors` of them failed.
fn shop(env: &str, n: u64, errors: u64, end: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("deployment.environment.name", env),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
                        span_id: (i + 1).to_be_bytes().to_vec(),
                        name: "GET /cart".into(),
                        kind: span::SpanKind::Server as i32,
                        start_time_unix_nano: end - (n - i) * 100_000_000 - 20_000_000,
                        end_time_unix_nano: end - (n - i) * 100_000_000,
                        status: (i < errors).then(|| Status {
                            code: status::StatusCode::Error as i32,
                            message: String::new(),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn get(p: &Proc, path: &str) -> (u16, Value) {
    let (status, body) = p.admin_get(path);
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

/// Waits until `path` answers 200 with a document `done` accepts.
fn wait_gate(p: &Proc, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    poll(30, &format!("{path} to answer as waited for"), |last| {
        let (status, v) = get(p, path);
        *last = format!("{status} {v}");
        (status == 200 && done(&v)).then_some(v)
    })
}

#[test]
fn the_gate_answers_200_either_way_404_unknown_and_400_when_ambiguous() {
    let p = Proc::start(&config_yaml(
        "slos:\n  - service: shop\n    environment: \"*\"\n    objectives: { availability: 99 }\n",
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // prod: 100 requests, 5 failed: 5 % against a 1 % budget (remaining -4); staging clean.
    grpc_export(
        &p.grpc,
        vec![
            shop("prod", 100, 5, now - S),
            shop("staging", 50, 0, now - S),
        ],
    );
    let prod = wait_gate(&p, "/api/v1/services/shop/gate?environment=prod", |v| {
        v["allow"] == false
    });
    let reasons = prod["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .unwrap()
            .contains("error budget of objective availability exhausted")),
        "{prod}"
    );
    let staging = wait_gate(&p, "/api/v1/services/shop/gate?environment=staging", |_| {
        true
    });
    assert_eq!(staging["allow"], true, "{staging}");
    assert_eq!(staging["reasons"], serde_json::json!([]));
    // Two environments and none named: 400, listing them.
    let (status, v) = get(&p, "/api/v1/services/shop/gate");
    assert_eq!(status, 400, "{v}");
    let text = v.to_string();
    assert!(text.contains("prod") && text.contains("staging"), "{text}");
    // Unknown service, unknown environment: 404.
    let (status, _) = get(&p, "/api/v1/services/nope/gate");
    assert_eq!(status, 404);
    let (status, _) = get(&p, "/api/v1/services/shop/gate?environment=qa");
    assert_eq!(status, 404);
    assert!(p.stop().success());
}
