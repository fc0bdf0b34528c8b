//! A restart in the middle of an outage changes nothing but the counters: four hours of
//! history replayed in time order over OTLP/gRPC, SIGTERM five minutes into a ten-minute
//! outage, a restart on the same archive and the rest of the replay, against the same
//! replay without the restart. The clocks start from the restored checkpoint, so no span
//! after the restart is late, and the windows, burn rates, budgets, the incident that
//! spans the restart and its time to restore are the same (see `docs/event-time.md`).
//! Restored at once: the open incident, the page alert that was firing (its gauge, not a
//! new start), and the revision index — a CI run before the restart gives the lead time
//! of a deployment after it.

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

/// The version ledger runs at `t`: 7, then 8 from `deploy` on.
fn version(t: u64, deploy: u64) -> &'static str {
    if t < deploy {
        "7"
    } else {
        "8"
    }
}

/// Requests of 60 s of event time, a resource per version.
fn requests(spans: &[(u64, bool, bool)], deploy: u64) -> Vec<ExportTraceServiceRequest> {
    spans
        .chunk_by(|a, b| a.0 / MIN == b.0 / MIN && version(a.0, deploy) == version(b.0, deploy))
        .map(|chunk| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "ledger"),
                        kv("service.version", version(chunk[0].0, deploy)),
                    ],
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

/// The CI run that built revision 8, of another service (`ci`), from `start` for 4
/// minutes.
fn ci_run(start: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "ci")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![9; 16],
                    span_id: vec![9; 8],
                    name: "pipeline build".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 4 * MIN,
                    attributes: vec![
                        kv("cicd.pipeline.name", "build"),
                        kv("cicd.pipeline.result", "success"),
                        kv("cicd.pipeline.run.id", "run-8"),
                        kv("vcs.ref.head.revision", "8"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
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
                "lead_time": v["delivery"]["lead_time_median_seconds"],
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
    // Version 8 from 8 minutes before the end (after the restart), built by a CI run of
    // another service 3 hours before it (before the restart).
    let deploy = end - 8 * MIN;
    let run_start = deploy - 180 * MIN;
    let all = spans(from, end, outage);
    // The run goes in time order, after the minutes of requests up to its end: sent
    // first, its end would move the fleet clock past the first hour of requests and make
    // them late.
    let with_run = |mut reqs: Vec<ExportTraceServiceRequest>| {
        let at = ((run_start + 4 * MIN - from) / MIN) as usize;
        assert!(at < reqs.len());
        reqs.insert(at, ci_run(run_start));
        reqs
    };
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
    grpc_export(&p.grpc, with_run(requests(&all, deploy)));
    let straight = state(&p, all.len());
    assert_eq!(late(&p), 0.0);
    assert!(p.stop().success());

    // With SIGTERM five minutes into the outage and a restart on the same archive.
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(&yaml(dir.path()));
    grpc_export(&p.grpc, with_run(requests(&all[..cut], deploy)));
    let before = state(&p, cut);
    assert!(
        !before["slo"]["incident"].is_null(),
        "the incident is open at the SIGTERM: {before}"
    );
    assert!(p.stop().success());
    assert_eq!(
        before["slo"]["objectives"][0]["alerts_firing"][0], "page",
        "the page fires at the SIGTERM: {before}"
    );
    let p = Proc::start(&yaml(dir.path()));
    assert_eq!(
        state(&p, cut),
        before,
        "the open incident, the firing page, windows and budgets are restored"
    );
    // The firing page is a gauge of the restored state; the counter of alerts started
    // restarts at 0 and no new start is counted for an alert that never stopped.
    let m = p.metrics();
    let page = [
        ("service_name", "ledger"),
        ("objective", "availability"),
        ("severity", "page"),
    ];
    assert_eq!(metric(&m, "momentum_slo_alert", &page), Some(1.0));
    assert_eq!(metric(&m, "momentum_slo_alerts_total", &page), Some(0.0));
    assert_eq!(
        metric(
            &m,
            "momentum_recovery_incident_open",
            &[("service_name", "ledger")]
        ),
        Some(1.0)
    );
    grpc_export(&p.grpc, requests(&all[cut..], deploy));
    let restarted = state(&p, all.len());
    assert_eq!(late(&p), 0.0, "no span after the restart is late");
    assert!(p.stop().success());

    assert!(
        straight["slo"]["incident"].is_null(),
        "the incident resolved: {straight}"
    );
    let first_v8 = all.iter().find(|s| s.0 >= deploy).unwrap().0;
    assert_eq!(
        straight["lead_time"].as_f64(),
        Some((first_v8 - run_start) as f64 / 1e9),
        "lead time of version 8 from its CI run: {straight}"
    );
    let ttr = straight["slo"]["time_to_restore_median_seconds"].as_f64();
    assert!(ttr.is_some_and(|t| t > 600.0), "{straight}");
    assert_eq!(
        restarted, straight,
        "a restart mid-outage changes nothing but the counters"
    );
}
