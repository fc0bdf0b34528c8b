//! A restart in the middle of an outage changes nothing but the counters: four hours of
//! history replayed in time order over OTLP/gRPC, SIGTERM five minutes into a ten-minute
//! outage, a restart on the same archive and the rest of the replay, against the same
//! replay without the restart. The clocks start from the restored checkpoint, so no span
//! after the restart is late, and the windows, burn rates, budgets, the incident that
//! spans the restart and its time to restore are the same (see `docs/event-time.md`).

mod common;

use common::{config_yaml, grpc_export, kv, metric, poll, Proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::Value;

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;

/// (end, error, slow) of `till`'s requests: one every 2 s from `from`; half fail during
/// the outage, every 400th is slow.
fn spans(from: u64, till: u64, outage: (u64, u64)) -> Vec<(u64, bool, bool)> {
    let mut out = Vec::new();
    let mut t = from;
    let mut i = 0u64;
    while t < till {
        let err = (outage.0..outage.1).contains(&t) && i % 2 == 0;
        out.push((t, err, i % 400 == 3));
        t += 2 * S;
        i += 1;
    }
    out
}

/// Requests of 60 s of event time.
fn requests(spans: &[(u64, bool, bool)]) -> Vec<ExportTraceServiceRequest> {
    spans
        .chunk_by(|a, b| a.0 / MIN == b.0 / MIN)
        .map(|chunk| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "ledger"), kv("service.version", "7")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: chunk
                        .iter()
                        .map(|&(end, err, slow)| Span {
                            trace_id: (end as u128).to_be_bytes().to_vec(),
                            span_id: end.to_be_bytes().to_vec(),
                            name: "POST /entries".into(),
                            kind: span::SpanKind::Server as i32,
                            start_time_unix_nano: end - if slow { 500_000_000 } else { 30_000_000 },
                            end_time_unix_nano: end,
                            status: err.then(|| Status {
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
        })
        .collect()
}

/// The pair's document once its SLO window holds `requests`, without what restarts with
/// the process (counters) and the latency sketches of the open minute.
fn state(p: &Proc, requests: usize) -> Value {
    poll(
        30,
        &format!("{requests} requests in the SLO window"),
        |last| {
            let (status, body) = p.admin_get("/api/v1/services/ledger");
            *last = format!("{status} {body}");
            let mut v: Value = serde_json::from_str(&body).ok()?;
            if status != 200 || v["windows"]["slo"]["requests"] != requests {
                return None;
            }
            let slo = v["slo"].as_object_mut()?;
            slo.remove("incidents_total");
            Some(serde_json::json!({
                "clock": v["clock_unix_nano"],
                "windows": v["windows"],
                "slo": v["slo"],
                "current_version": v["delivery"]["current_version"],
                "deployments": v["delivery"]["deployments_in_lookback"],
            }))
        },
    )
}

fn late(p: &Proc) -> f64 {
    metric(&p.metrics(), "momentum_pipeline_late_spans_total", &[]).unwrap_or(-1.0)
}

#[test]
fn a_restart_in_the_middle_of_an_outage_changes_nothing_but_the_counters() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Four hours ending 5 minutes ago (minute-aligned); the outage runs 20 to 10 minutes
    // before the end, SIGTERM comes 5 minutes into it (a minute boundary).
    let end = (now - 5 * MIN) / MIN * MIN;
    let from = end - 240 * MIN;
    let outage = (end - 20 * MIN, end - 10 * MIN);
    let split = outage.0 + 5 * MIN;
    let all = spans(from, end, outage);
    let cut = all.partition_point(|s| s.0 < split);
    let errors = all.iter().filter(|s| s.1).count();
    assert!(errors > 100, "the outage fails {errors} requests");

    let yaml = |dir: &std::path::Path| {
        config_yaml(&format!(
            "archive: {{ dir: {} }}\nslos:\n  - service: ledger\n    window: 30d\n    objectives:\n      availability: 99.9\n      latency: {{ threshold: 300ms, target: 99 }}\n",
            dir.display()
        ))
    };

    // Without a restart.
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(&yaml(dir.path()));
    grpc_export(&p.grpc, requests(&all));
    let straight = state(&p, all.len());
    assert_eq!(late(&p), 0.0);
    assert!(p.stop().success());

    // With SIGTERM five minutes into the outage and a restart on the same archive.
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(&yaml(dir.path()));
    grpc_export(&p.grpc, requests(&all[..cut]));
    let before = state(&p, cut);
    assert!(
        !before["slo"]["incident"].is_null(),
        "the incident is open at the SIGTERM: {before}"
    );
    assert!(p.stop().success());
    let p = Proc::start(&yaml(dir.path()));
    assert_eq!(
        state(&p, cut)["slo"]["incident"],
        before["slo"]["incident"],
        "the open incident is restored"
    );
    grpc_export(&p.grpc, requests(&all[cut..]));
    let restarted = state(&p, all.len());
    assert_eq!(late(&p), 0.0, "no span after the restart is late");
    assert!(p.stop().success());

    assert!(
        straight["slo"]["incident"].is_null(),
        "the incident resolved: {straight}"
    );
    let ttr = straight["slo"]["time_to_restore_median_seconds"].as_f64();
    assert!(ttr.is_some_and(|t| t > 600.0), "{straight}");
    assert_eq!(
        restarted, straight,
        "a restart mid-outage changes nothing but the counters"
    );
}
