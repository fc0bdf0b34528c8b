//! Trace decoding: the lean zero-copy decoder against prost's full decode.
//!
//! Input: one `ExportTraceServiceRequest` of 100 spans in 2 resources, 6 attributes per
//! span (HTTP server spans, ~290 bytes each). Throughput is in spans.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const SPANS: usize = 100;

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn span(i: usize) -> Span {
    let start = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
    Span {
        trace_id: (0..16).map(|b| (b * 7 + i) as u8).collect(),
        span_id: (0..8).map(|b| (b * 3 + i) as u8).collect(),
        parent_span_id: (0..8).map(|b| (b * 5 + i) as u8).collect(),
        name: "GET /v1/users/{id}".into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 12_345_678,
        attributes: vec![
            kv("http.request.method", s("GET")),
            kv("http.route", s("/v1/users/{id}")),
            kv(
                "http.response.status_code",
                Value::IntValue(if i % 10 == 0 { 503 } else { 200 }),
            ),
            kv("url.path", s(&format!("/v1/users/{}", 100_000 + i))),
            kv("server.address", s("users.svc.local")),
            kv("user_agent.original", s("okhttp/4.12.0")),
        ],
        status: Some(Status {
            message: String::new(),
            code: 0,
        }),
        ..Span::default()
    }
}

fn request() -> Vec<u8> {
    let resource = |name: &str| Resource {
        attributes: vec![
            kv("service.name", s(name)),
            kv("service.version", s("2.3.1")),
            kv("deployment.environment.name", s("production")),
            kv("host.name", s("node-17")),
        ],
        dropped_attributes_count: 0,
        entity_refs: vec![],
    };
    let half = SPANS / 2;
    let rs = |name: &str, range: std::ops::Range<usize>| ResourceSpans {
        resource: Some(resource(name)),
        scope_spans: vec![ScopeSpans {
            scope: None,
            spans: range.map(span).collect(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![rs("users", 0..half), rs("accounts", half..SPANS)],
    }
    .encode_to_vec()
}

fn bench_decode(c: &mut Criterion) {
    let bytes = Bytes::from(request());
    eprintln!(
        "request: {} bytes, {} spans, {:.0} bytes/span",
        bytes.len(),
        SPANS,
        bytes.len() as f64 / SPANS as f64
    );
    let opts = DecodeOptions::default();
    assert_eq!(
        decode_traces(bytes.clone(), &opts).unwrap().span_count(),
        SPANS
    );

    let mut g = c.benchmark_group("decode_traces_100_spans");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("lean", |b| {
        b.iter(|| decode_traces(black_box(bytes.clone()), &opts).unwrap())
    });
    g.bench_function("prost", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&bytes[..])).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
