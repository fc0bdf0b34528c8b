//! Churning service names never push real services into the overflow: 30 days of event
//! time with 100 new services a day, each active for its day, on the default limits
//! (`max_services` 2000, `series_idle` 1h). Once the table is full the least recently
//! seen idle pair gives its slot up and its state waits on disk; the heap stays flat;
//! a service evicted weeks ago that reports again shows the budget it had.

mod common;

use common::{config_yaml, kv, metric, poll, Proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

const S: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * S;
const DAY: u64 = 24 * HOUR;

/// One span for each of `services`, ending at `end`; the first `errors` fail.
fn request(services: &[String], end: u64, errors: usize) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .enumerate()
            .map(|(i, s)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: (end as u128 + i as u128).to_be_bytes().to_vec(),
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: "GET /".into(),
                        kind: span::SpanKind::Server as i32,
                        start_time_unix_nano: end - 10_000_000,
                        end_time_unix_nano: end,
                        status: (i < errors).then(|| Status {
                            code: status::StatusCode::Error as i32,
                            message: String::new(),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn post(p: &Proc, body: &[u8]) {
    let (status, _, answer) = common::http_request(
        &p.http,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

fn heap(p: &Proc) -> f64 {
    metric(
        &p.metrics(),
        "momentum_process_memory_bytes",
        &[("kind", "heap")],
    )
    .unwrap()
}

#[test]
fn thirty_days_of_churn_never_overflow_and_an_evicted_service_comes_back_as_it_was() {
    let archive = tempfile::tempdir().unwrap();
    let p = Proc::start(&config_yaml(&format!(
        "archive: {{ dir: {} }}\nslos:\n  - service: \"*\"\n    window: 30d\n    objectives: {{ availability: 99.9 }}\n",
        archive.path().display()
    )));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // hour-aligned, so which hours the 30-day window holds at the end is known
    let start = (now - 31 * DAY) / HOUR * HOUR;
    let mut sent = 0u64;
    let mut heap_day = Vec::new();
    for day in 0..30u64 {
        let services: Vec<String> = (0..100).map(|i| format!("pr-{day:02}-{i:03}")).collect();
        for hour in 0..24u64 {
            // on day 0 the first service fails every other hour
            let errors = usize::from(day == 0 && hour % 2 == 0);
            post(
                &p,
                &request(&services, start + day * DAY + hour * HOUR + S, errors),
            );
            sent += 100;
        }
        heap_day.push(heap(&p));
    }
    // pr-00-000 (12 errors in 24 requests, evicted long ago) reports once more, 30 days
    // after its first request: its 30-day window (720 hourly buckets, the open one
    // included) then holds its hours 1–23 (11 errors) and the new request.
    let back = vec!["pr-00-000".to_string()];
    post(&p, &request(&back, start + 30 * DAY + S, 0));
    sent += 1;
    let m = p.wait_metrics(60, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(sent as f64)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(sent as f64)
    );
    assert_eq!(
        metric(&m, "momentum_pipeline_late_spans_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "momentum_series_overflow_total", &[("kind", "service")]),
        Some(0.0),
        "no day's services went to the overflow"
    );
    let evicted = metric(&m, "momentum_series_evicted_total", &[("kind", "service")]).unwrap();
    assert!(
        evicted >= 1000.0,
        "3,001 pairs through a 2,000-pair table: {evicted} evicted"
    );
    let v = poll(30, "pr-00-000 back in the API", |last| {
        let (status, body) = p.admin_get("/api/v1/services/pr-00-000");
        *last = format!("{status} {body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["windows"]["slo"]["requests"] == 24).then_some(v)
    });
    let budget = v["slo"]["objectives"][0]["error_budget_remaining"]
        .as_f64()
        .unwrap();
    assert_eq!(v["windows"]["slo"]["errors"], 11, "{v}");
    let want = 1.0 - 11.0 / (24.0 * 0.001);
    assert!(
        (budget - want).abs() < 1e-9,
        "the budget it had ({want}), not a fresh one: {budget}"
    );
    // The table filled on day 20; from then on the pairs' heap stays flat. What still
    // grows is the archive writer's buffer of closed rows (2,400 sli rows a day here, each
    // with its sketch, about 17 MiB over the 9 days), bounded by its 64k-row flush: the
    // bound is 25 % over the day-21 figure.
    let (full, end) = (heap_day[20], heap_day[29]);
    eprintln!(
        "heap by day (MiB): {:?}; evicted {evicted}",
        heap_day
            .iter()
            .map(|h| (h / 1048576.0).round())
            .collect::<Vec<_>>()
    );
    assert!(
        end <= full * 1.25,
        "heap grew from {full} on day 21 to {end} on day 30"
    );
    assert!(p.stop().success());
}
