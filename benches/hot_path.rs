//! The per-span hot path: lean decode + validate + classify + aggregate into a shard,
//! and the stages one by one. Throughput in spans (elements/s).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use momentum::config::Config;
use momentum::pipeline::clock::{Clock, SystemClock};
use momentum::pipeline::router::resource_hash;
use momentum::pipeline::shard::ShardCore;
use momentum::pipeline::{Settings, Shared};
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::validate_spans;
use momentum::sli::classify::classify;
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
fn request(services: usize, now: u64) -> Vec<u8> {
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

fn bench(c: &mut Criterion) {
    let now = SystemClock.now_ns();
    let body = Bytes::from(request(5, now));
    let opts = DecodeOptions {
        max_value_bytes: 256,
    };
    let spans = decode_traces(body.clone(), &opts).unwrap().spans.len() as u64;
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(spans));

    g.bench_function("decode", |b| {
        b.iter(|| decode_traces(body.clone(), &opts).unwrap())
    });

    let batch = decode_traces(body.clone(), &opts).unwrap();
    g.bench_function("classify", |b| {
        b.iter(|| {
            batch
                .spans
                .iter()
                .filter(|s| classify(s, false) == momentum::sli::classify::Outcome::Error)
                .count()
        })
    });

    let set = Arc::new(Settings::from_config(Arc::new(Config::default())));
    let shared = Shared::new(Arc::new(SystemClock));
    let mut shard = ShardCore::new(set, shared.clone());
    let hashes: Vec<u64> = batch
        .resources
        .iter()
        .map(|r| resource_hash(&batch.buf, r))
        .collect();
    g.bench_function("aggregate", |b| b.iter(|| shard.ingest(&batch, &hashes)));

    g.bench_function("decode_classify_aggregate", |b| {
        b.iter(|| {
            let mut batch = decode_traces(body.clone(), &opts).unwrap();
            validate_spans(&mut batch, now, 60_000_000_000);
            let hashes: Vec<u64> = batch
                .resources
                .iter()
                .map(|r| resource_hash(&batch.buf, r))
                .collect();
            shard.ingest(&batch, &hashes);
        })
    });
    g.finish();

    // Window roll-up and snapshot: what a shard does on its tick for 200 pairs.
    let mut g = c.benchmark_group("window");
    let set = Arc::new(Settings::from_config(Arc::new(Config::default())));
    let mut shard = ShardCore::new(set, shared);
    let bodies: Vec<_> = (0..40).map(|_| Bytes::from(request(5, now))).collect();
    for b in &bodies {
        let mut batch = decode_traces(b.clone(), &opts).unwrap();
        let hashes: Vec<u64> = batch
            .resources
            .iter()
            .map(|r| resource_hash(&batch.buf, r))
            .collect();
        validate_spans(&mut batch, now, 60_000_000_000);
        shard.ingest(&batch, &hashes);
    }
    g.bench_function("tick_and_snapshot", |b| {
        b.iter_batched(
            || (),
            |_| {
                shard.tick();
                shard.view()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
