//! Limits a noisy or churning fleet cannot get past, through the real receiver and shards,
//! and against the real binary under a cardinality attack.

mod common;

use std::sync::atomic::Ordering;

use momentum::inline::Inline;
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

/// A cardinality attack through the binary at the default limits: 1,000,000 distinct
/// span names for one service, then 100,000 distinct service names. Memory stays bounded,
/// every span is accounted for in a real series or an `__overflow__` one (and in the
/// overflow counters), and `/metrics` keeps answering, small, during the attack.
#[test]
fn a_cardinality_attack_stays_bounded_and_every_span_is_accounted_for() {
    let p = common::Proc::start(&common::config_yaml(""));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // /metrics during the attack: every answer is 200; its size and time are recorded.
    let scraper = {
        let (admin, done) = (p.admin.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut scrapes, mut max_bytes, mut ms) = (0u32, 0usize, Vec::new());
            while !done.load(Ordering::Relaxed) || scrapes == 0 {
                let t = std::time::Instant::now();
                // as Prometheus scrapes: gzip
                let gz = [("accept-encoding", "gzip")];
                let (status, headers, body) =
                    common::http_request(&admin, "GET", "/metrics", &gz, &[]);
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(status, 200, "/metrics during the attack");
                assert!(headers
                    .iter()
                    .any(|(k, v)| k == "content-encoding" && v == "gzip"));
                max_bytes = max_bytes.max(body.len());
                scrapes += 1;
            }
            ms.sort_by(f64::total_cmp);
            let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
            (scrapes, max_bytes, (at(0.5), at(0.99), at(1.0)))
        })
    };
    let post = |body: &[u8]| {
        let (status, _, answer) = common::http_request(
            &p.http,
            "POST",
            "/v1/traces",
            &[("content-type", "application/x-protobuf")],
            body,
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    };
    let per_request = 5_000u64;
    for r in 0..1_000_000 / per_request {
        let names = (r * per_request..(r + 1) * per_request).map(|i| format!("GET /orders/{i}"));
        post(&request("noisy", names, now - 1_000_000));
    }
    // 100,000 services, one span each, 1,000 resources a request.
    for r in 0..100u64 {
        let mut req = ExportTraceServiceRequest::default();
        for i in 0..1_000u64 {
            let one = request(
                &format!("svc-{}", r * 1_000 + i),
                std::iter::once("GET /".to_string()),
                now - 1_000_000,
            );
            req.resource_spans.extend(
                ExportTraceServiceRequest::decode(&one[..])
                    .unwrap()
                    .resource_spans,
            );
        }
        post(&req.encode_to_vec());
    }
    let total = 1_100_000.0;
    // The exports follow the shards' published views (every 500 ms): wait for the last.
    let m = p.wait_metrics(60, |m| {
        common::family_sum(m, "momentum_sli_requests_total", "") == total
    });
    assert_eq!(
        common::metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(total)
    );
    done.store(true, Ordering::Relaxed);
    let (scrapes, max_bytes, (p50, p99, max_ms)) = scraper.join().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    let peak_mib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0;
    eprintln!(
        "cardinality attack: peak RSS {peak_mib:.1} MiB; /metrics {scrapes} scrapes during it, \
         largest {max_bytes} bytes gzip, median {p50:.1} ms, p99 {p99:.1} ms, slowest {max_ms:.1} ms; \
         after: {} bytes uncompressed",
        m.len()
    );
    // Quiet now: the scrape alone, plain and gzip (figures for the notes, not asserted).
    let time = |h: &[(&str, &str)]| {
        let mut ms: Vec<f64> = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                let (status, _, _) = common::http_request(&p.admin, "GET", "/metrics", h, &[]);
                assert_eq!(status, 200);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[2]
    };
    eprintln!(
        "after the attack, median of 5 scrapes: plain {:.1} ms, gzip {:.1} ms",
        time(&[]),
        time(&[("accept-encoding", "gzip")])
    );
    // Every span is in exactly one series, real or overflow.
    assert_eq!(
        common::family_sum(&m, "momentum_sli_requests_total", ""),
        total
    );
    assert_eq!(
        common::family_sum(&m, "momentum_operation_requests_total", ""),
        total
    );
    let overflow = |kind: &str| {
        common::metric(&m, "momentum_series_overflow_total", &[("kind", kind)]).unwrap()
    };
    let overflow_service_spans = common::family_sum(
        &m,
        "momentum_sli_requests_total",
        "service_name=\"__overflow__\"",
    );
    assert!(
        overflow_service_spans >= 98_000.0,
        "{overflow_service_spans}"
    );
    assert_eq!(overflow("service"), overflow_service_spans);
    let overflow_ops = common::family_sum(
        &m,
        "momentum_operation_requests_total",
        "operation=\"__overflow__\"",
    );
    assert_eq!(
        overflow_ops,
        1_000_000.0 - 500.0,
        "the noisy service's overflow"
    );
    assert_eq!(overflow("operation"), overflow_ops);
    // Bounded: the default limits hold the pairs and the operations.
    let pairs = common::metric(&m, "momentum_series_active", &[("kind", "service")]).unwrap();
    assert!(pairs <= 2_001.0, "{pairs} pairs");
    assert!(peak_mib < 256.0, "peak RSS {peak_mib:.1} MiB");
    assert!(
        max_bytes < 2 << 20,
        "/metrics of {max_bytes} bytes on the wire"
    );
    assert!(p.stop().success());
}
