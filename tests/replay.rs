//! A replay through the real binary, as a new user runs one: two services' recent history
//! sent in time order over OTLP/gRPC at full speed, in requests of at most 60 s of event
//! time, on 2 and 4 shards, several times each. Whichever shard gets ahead, every span is
//! counted and none is late, and the 30-day error budgets are exactly
//! 1 − bad/(requests × (1 − target)) in `/metrics` and the API, before and after a restart
//! on the same archive (see `docs/event-time.md`).

mod common;

use common::{config_yaml, grpc_export, kv, metric, poll, Proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;

/// One span of the replay.
struct Sp {
    service: &'static str,
    end: u64,
    dur: u64,
    err: bool,
}

/// Per service: (requests, errors, slower than 300 ms).
type Truth = [(&'static str, u64, u64, u64); 2];

/// ledger: 2,400 requests, audit: 600, end times spread evenly over the last 9.5 to 4
/// minutes; every 97th ledger and every 31st audit request fails, every 53rd / 43rd is slow.
fn history(now: u64) -> (Vec<ExportTraceServiceRequest>, Truth) {
    let (from, to) = (now - 9 * MIN - 30 * S, now - 4 * MIN);
    let mut spans = Vec::new();
    let mut truth: Truth = [("ledger", 0, 0, 0), ("audit", 0, 0, 0)];
    for (si, (service, n, every_err, every_slow)) in
        [("ledger", 2400u64, 97u64, 53u64), ("audit", 600, 31, 43)]
            .into_iter()
            .enumerate()
    {
        for i in 0..n {
            let err = i % every_err == 7;
            let slow = i % every_slow == 11;
            spans.push(Sp {
                service,
                end: from + (to - from) * i / n + si as u64 * 1_000,
                dur: if slow { 450_000_000 } else { 40_000_000 },
                err,
            });
            let t = &mut truth[si];
            t.1 += 1;
            t.2 += u64::from(err);
            t.3 += u64::from(slow);
        }
    }
    spans.sort_by_key(|s| s.end);
    // Requests of 50 s of event time (about 450 spans), one resource per service.
    let requests = spans
        .chunk_by(|a, b| (a.end - from) / (50 * S) == (b.end - from) / (50 * S))
        .map(|chunk| {
            let resource_spans = ["ledger", "audit"]
                .iter()
                .filter(|svc| chunk.iter().any(|s| s.service == **svc))
                .map(|svc| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", svc), kv("service.version", "1.0")],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: chunk
                            .iter()
                            .filter(|s| s.service == *svc)
                            .enumerate()
                            .map(|(i, s)| Span {
                                trace_id: (s.end as u128).to_be_bytes().to_vec(),
                                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                                name: "POST /entries".into(),
                                kind: span::SpanKind::Server as i32,
                                start_time_unix_nano: s.end - s.dur,
                                end_time_unix_nano: s.end,
                                status: s.err.then(|| Status {
                                    code: status::StatusCode::Error as i32,
                                    message: String::new(),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect();
            ExportTraceServiceRequest { resource_spans }
        })
        .collect();
    (requests, truth)
}

/// The (availability, latency) budgets of `service` in /metrics and in the API, once
/// the published snapshot holds its `requests` in the SLO window.
fn budgets(p: &Proc, service: &str, requests: u64) -> [(f64, f64); 2] {
    let v = poll(
        30,
        &format!("{service}: {requests} requests in the SLO window"),
        |last| {
            let (status, body) = p.admin_get(&format!("/api/v1/services/{service}"));
            *last = format!("{status} {body}");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status == 200 && v["windows"]["slo"]["requests"] == requests).then_some(v)
        },
    );
    let m = p.metrics();
    let api = |objective: &str| {
        v["slo"]["objectives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["objective"] == objective)
            .unwrap_or_else(|| panic!("no {objective} objective: {v}"))["error_budget_remaining"]
            .as_f64()
            .unwrap()
    };
    let exported = |objective: &str| {
        metric(
            &m,
            "momentum_slo_error_budget_remaining_ratio",
            &[("service_name", service), ("objective", objective)],
        )
        .unwrap_or_else(|| panic!("no {objective} budget for {service} in /metrics"))
    };
    [
        (exported("availability"), api("availability")),
        (exported("latency"), api("latency")),
    ]
}

fn run_once(shards: usize, round: usize) {
    let archive = tempfile::tempdir().unwrap();
    let yaml = config_yaml(&format!(
        "pipeline: {{ shards: {shards} }}\narchive: {{ dir: {} }}\nslos:\n  - service: \"*\"\n    window: 30d\n    objectives:\n      availability: 99.9\n      latency: {{ threshold: 300ms, target: 99 }}\n",
        archive.path().display()
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let (requests, truth) = history(now);
    let total: u64 = truth.iter().map(|t| t.1).sum();
    let p = Proc::start(&yaml);
    grpc_export(&p.grpc, requests);
    let m = p.wait_metrics(30, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]).unwrap_or(0.0)
            + metric(m, "momentum_pipeline_late_spans_total", &[]).unwrap_or(0.0)
            >= total as f64
    });
    let what = format!("{shards} shards, round {round}");
    assert_eq!(
        metric(&m, "momentum_pipeline_late_spans_total", &[]),
        Some(0.0),
        "{what}: no span of the replay is late"
    );
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(total as f64),
        "{what}"
    );
    let mut before = Vec::new();
    for (service, requests, errors, slow) in truth {
        let b = budgets(&p, service, requests);
        let exact = [
            1.0 - errors as f64 / (requests as f64 * (1.0 - 0.999)),
            1.0 - slow as f64 / (requests as f64 * (1.0 - 0.99)),
        ];
        for ((exported, api), want) in b.iter().zip(exact) {
            assert!(
                (exported - want).abs() < 1e-9 && (api - want).abs() < 1e-9,
                "{what}: {service} budget {exported} (/metrics), {api} (API), want {want}"
            );
        }
        before.push((service, requests, b));
    }
    assert!(p.stop().success(), "{what}: clean exit");

    // Restart on the same archive: the budgets are what they were, to the bit.
    let p = Proc::start(&yaml);
    for (service, requests, b) in before {
        assert_eq!(
            budgets(&p, service, requests),
            b,
            "{what}: {service} after a restart"
        );
    }
    assert!(p.stop().success());
}

#[test]
fn a_time_ordered_grpc_replay_counts_every_span_on_any_shard_count() {
    for round in 0..3 {
        for shards in [2, 4] {
            run_once(shards, round);
        }
    }
}
