//! Delivery scenario: two days of history for three services replayed in time order —
//! steady deploys, an overlapping canary, a rollback, an explicit failed deployment, a
//! deploy followed by an outage, CI pipeline runs whose revisions match deploys, a late
//! straggler of an old version and a build-metadata-only version change. Every figure is
//! checked against values computed here from the scenario's own timeline.

use std::sync::Arc;

use bytes::Bytes;
use momentum::archive::EventRow;
use momentum::delivery::records::split_span_records;
use momentum::inline::Inline;
use momentum::pipeline::clock::{Clock, ManualClock};
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::{validate_spans, Signal};
use momentum::view::PairView;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const T0: u64 = 1_750_003_200 * S; // 00:00 UTC

#[derive(Clone)]
struct Sp {
    t: u64,
    service: &'static str,
    version: String,
    err: bool,
    attrs: Vec<(&'static str, String)>,
    kind: span::SpanKind,
    dur: u64,
}

fn req(t: u64, service: &'static str, version: &str) -> Sp {
    Sp {
        t,
        service,
        version: version.into(),
        err: false,
        attrs: vec![],
        kind: span::SpanKind::Server,
        dur: 20_000_000,
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request(spans: &[Sp]) -> Vec<u8> {
    let resource_spans = spans
        .iter()
        .map(|s| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s.service),
                    kv("service.version", &s.version),
                    kv("deployment.environment.name", "prod"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "GET /".into(),
                    kind: s.kind as i32,
                    start_time_unix_nano: s.t - s.dur,
                    end_time_unix_nano: s.t,
                    attributes: s.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                    status: s.err.then(|| Status {
                        code: status::StatusCode::Error as i32,
                        message: String::new(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

/// The decoded batch of [`request`] (for the router's split, tested on its own).
fn batch(spans: &[Sp]) -> momentum::model::TraceBatch {
    decode_traces(
        Bytes::from(request(spans)),
        &DecodeOptions {
            max_value_bytes: 256,
        },
    )
    .unwrap()
}

struct Run {
    p: Inline,
    clock: Arc<ManualClock>,
    events: Vec<EventRow>,
}

impl Run {
    fn new() -> Self {
        Run::with("")
    }

    fn with(extra: &str) -> Self {
        let p = Inline::from_yaml(
            &format!(
                "slos:\n  - service: \"*\"\n    objectives: {{ availability: 99.9 }}\n{extra}"
            ),
            1,
            T0,
        );
        Run {
            clock: p.clock.clone(),
            p,
            events: vec![],
        }
    }

    fn deliver(&mut self, spans: &[Sp]) {
        let last = spans.iter().map(|s| s.t).max().unwrap();
        self.clock.set(self.clock.now_ns().max(last + S));
        self.p
            .send(Signal::Traces, &request(spans))
            .expect("admitted");
        self.events.extend(self.p.take_events());
    }

    /// Sends a logs request; answers how many of its records carry deployment
    /// attributes.
    fn deliver_logs(&mut self, req: &ExportLogsServiceRequest) -> u64 {
        let before = self.counter(|c| &c.deployment_log_records);
        self.p
            .send(Signal::Logs, &req.encode_to_vec())
            .expect("admitted");
        self.events.extend(self.p.take_events());
        self.counter(|c| &c.deployment_log_records) - before
    }

    fn tick(&mut self) {
        self.p.settle();
        self.events.extend(self.p.take_events());
    }

    fn pair(&mut self, service: &str) -> PairView {
        self.tick();
        let (pairs, _) = self.p.snapshot();
        pairs.into_iter().find(|p| &*p.service == service).unwrap()
    }

    fn pair_env(&mut self, service: &str, env: &str) -> PairView {
        self.tick();
        let (pairs, _) = self.p.snapshot();
        pairs
            .into_iter()
            .find(|p| &*p.service == service && &*p.environment == env)
            .unwrap()
    }

    fn events(&self, service: &str, kind: &str) -> Vec<(u64, Option<String>, Option<String>)> {
        self.events
            .iter()
            .filter(|e| &*e.service == service && e.kind == kind)
            .map(|e| (e.time_ns, e.version.clone(), e.previous_version.clone()))
            .collect()
    }
}

#[test]
fn two_days_of_delivery_history() {
    let mut spans: Vec<Sp> = Vec::new();
    let end = T0 + 2 * DAY;
    // api: steady deploys every 12h (blue/green), v1 → v2 → v3 → v4; v3's switch only
    // changes build metadata ("3.0.0+b1" → "3.0.0+b2" twelve hours later is v4).
    let api_versions = ["1.0.0", "2.0.0", "3.0.0+b1", "3.0.0+b2"];
    let mut t = T0;
    while t < end {
        let v = api_versions[((t - T0) / (12 * HOUR)) as usize];
        spans.push(req(t, "api", v));
        t += MIN;
    }
    // A straggler: one late span of 1.0.0 an hour after 2.0.0 took over.
    spans.push(req(T0 + 13 * HOUR + 30 * S, "api", "1.0.0"));
    // Pipelines for api: revision 2.0.0 built from T0+10h (two runs; the earliest start
    // counts), 3.0.0+b1 from T0+23h; a failed run; a duplicate run id.
    let pipeline = |t: u64, dur: u64, result: &str, id: &str, rev: &str| Sp {
        t,
        service: "api",
        version: String::new(),
        err: false,
        attrs: vec![
            ("cicd.pipeline.name", "build".into()),
            ("cicd.pipeline.result", result.into()),
            ("cicd.pipeline.run.id", id.into()),
            ("vcs.ref.head.revision", rev.into()),
        ],
        kind: span::SpanKind::Server,
        dur,
    };
    spans.push(pipeline(
        T0 + 10 * HOUR + 20 * MIN,
        20 * MIN,
        "success",
        "r1",
        "2.0.0",
    ));
    spans.push(pipeline(T0 + 11 * HOUR, 30 * MIN, "failure", "r2", "2.0.0"));
    spans.push(pipeline(
        T0 + 11 * HOUR + MIN,
        30 * MIN,
        "failure",
        "r2",
        "2.0.0",
    ));
    spans.push(pipeline(
        T0 + 23 * HOUR + 30 * MIN,
        30 * MIN,
        "success",
        "r3",
        "3.0.0+b1",
    ));

    // web: v1, then a 40-minute canary alternating v1/v2 from T0+6h, then v2 only.
    let mut t = T0;
    let mut k = 0;
    while t < end {
        let canary = (T0 + 6 * HOUR..T0 + 6 * HOUR + 40 * MIN).contains(&t);
        let v = if t < T0 + 6 * HOUR || (canary && k % 2 == 0) {
            "1"
        } else {
            "2"
        };
        spans.push(req(t, "web", v));
        t += MIN;
        k += 1;
    }
    // web: an explicit failed deployment record of version 3 at T0+30h (a deploy span).
    let mut d = req(T0 + 30 * HOUR, "web", "2");
    d.attrs = vec![
        ("deployment.id", "dep-9".into()),
        ("deployment.status", "failed".into()),
        ("service.version", "3".into()),
    ];
    d.kind = span::SpanKind::Internal;
    spans.push(d);

    // cart: v1; v2 at T0+8h runs 20 minutes, then v1 only again (a rollback);
    // v3 at T0+30h followed by a 15-minute outage 10 minutes later.
    let mut t = T0;
    while t < end {
        let v = if (T0 + 8 * HOUR..T0 + 8 * HOUR + 20 * MIN).contains(&t) {
            "2"
        } else if t >= T0 + 30 * HOUR {
            "3"
        } else {
            "1"
        };
        let mut s = req(t, "cart", v);
        s.err = (T0 + 30 * HOUR + 10 * MIN..T0 + 30 * HOUR + 25 * MIN).contains(&t);
        spans.push(s);
        t += MIN;
    }

    spans.sort_by_key(|s| s.t);
    let mut run = Run::new();
    for chunk in spans.chunks(20) {
        run.deliver(chunk);
    }
    // Half an hour of clock after the traffic (every deployment is decided by then).
    run.clock.set(end + 30 * MIN);
    let api = run.pair("api");
    let web = run.pair("web");
    let cart = run.pair("cart");

    // api: three version changes, the build-metadata one included; the straggler is no
    // rollback.
    let api_deps = run.events("api", "deployment");
    let expect: Vec<(u64, Option<String>, Option<String>)> = (1..4)
        .map(|i| {
            (
                T0 + i as u64 * 12 * HOUR,
                Some(api_versions[i].to_string()),
                Some(api_versions[i - 1].to_string()),
            )
        })
        .collect();
    assert_eq!(api_deps, expect);
    assert!(
        run.events("api", "rollback").is_empty(),
        "a late straggler is not a rollback"
    );
    assert_eq!(api.delivery.decided, [3, 0]);
    assert_eq!(api.delivery.change_failure, Some(0.0));
    // Lead time: 2.0.0 deployed at T0+12h, earliest run start T0+10h (r1 started at
    // 10h20m − 20m = 10h) → 2h; 3.0.0+b1 at T0+24h, run started at 23h → 1h.
    assert_eq!(api.delivery.lead_times, vec![3600.0, 7200.0]);
    // Deploy frequency: 3 deployments over min(lookback 30d, time since first seen).
    let age_days = (api.clock_ns - T0) as f64 / DAY as f64;
    let f = api.delivery.deploy_frequency.unwrap();
    assert!((f - 3.0 / age_days).abs() < 1e-9, "{f}");
    // Pipelines: runs by result (the duplicate run id counted once), failure ratio.
    let build = &api.delivery.pipelines[0];
    assert_eq!(&*build.name, "build");
    let mut by = build.by_result.clone();
    by.sort();
    assert_eq!(
        by,
        vec![("failure".to_string(), 1), ("success".to_string(), 2)]
    );
    assert_eq!(build.failure, Some(1.0 / 3.0));
    assert_eq!(
        api.totals.requests as usize,
        (2 * DAY / MIN) as usize + 1,
        "pipeline spans are not requests"
    );

    // web: the canary is one deployment at the first v2 span, never a rollback; the
    // explicit failed record of version 3 is a failed deployment.
    let web_deps = run.events("web", "deployment");
    assert_eq!(
        web_deps[0].0,
        T0 + 6 * HOUR + MIN,
        "first span of the new version"
    );
    assert_eq!(web_deps[0].1.as_deref(), Some("2"));
    assert_eq!(web_deps[1].0, T0 + 30 * HOUR);
    assert_eq!(web_deps.len(), 2);
    assert!(run.events("web", "rollback").is_empty());
    assert_eq!(web.delivery.decided, [1, 1]);
    assert_eq!(web.delivery.change_failure, Some(0.5));

    // cart: v2 deployed at 8h, rolled back to v1: the rollback's time is the last span of
    // v2 (8h19m); v2 failed (undone within the change failure window); v3 at 30h is
    // followed by an incident within the hour: failed.
    let cart_deps = run.events("cart", "deployment");
    assert_eq!(
        cart_deps.iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![T0 + 8 * HOUR, T0 + 30 * HOUR]
    );
    let rb = run.events("cart", "rollback");
    assert_eq!(
        rb,
        vec![(
            T0 + 8 * HOUR + 19 * MIN,
            Some("1".to_string()),
            Some("2".to_string())
        )]
    );
    assert_eq!(cart.delivery.rollbacks, 1);
    let incidents = run.events("cart", "incident_open");
    assert_eq!(incidents.len(), 1);
    assert!(
        incidents[0].0 > T0 + 30 * HOUR + 10 * MIN && incidents[0].0 < T0 + 30 * HOUR + 15 * MIN
    );
    // Decided: v2 failed, the rollback succeeded, v3 failed.
    assert_eq!(cart.delivery.decided, [1, 2]);
    assert_eq!(cart.delivery.change_failure, Some(2.0 / 3.0));

    // The momentum index from the anchor table of docs/momentum-index.md, computed here.
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    let c = &api.delivery.components;
    // api: ~1.5 deploys/day (above the 1/day anchor: 1.0), median lead time 1h (1.0),
    // no failed deployment (1.0), no incident (absent), budget untouched (1.0).
    assert!(
        close(c.throughput, 1.0) && close(c.lead_time, 1.0) && close(c.stability, 1.0),
        "{c:?}"
    );
    assert_eq!(c.recovery, None);
    assert!(close(c.reliability, 1.0));
    assert!(close(api.delivery.index, 100.0));
    // cart: CFR 2/3 lies between the anchors 0.64 → 0.25 and 1.0 → 0.
    let c = &cart.delivery.components;
    let stability = 0.25 * (1.0 - (2.0 / 3.0 - 0.64) / (1.0 - 0.64));
    assert!(close(c.stability, stability), "{c:?}");
    let ttr = {
        let opened = run.events("cart", "incident_open")[0].0;
        let resolved = run.events("cart", "incident_resolved")[0].0;
        (resolved - opened) as f64 / 1e9
    };
    assert!(ttr < 3600.0, "restored within the hour: recovery 1.0");
    assert!(close(c.recovery, 1.0));
    assert!(close(c.reliability, 0.0), "budget overspent, clamped at 0");
    assert_eq!(c.lead_time, None, "no pipeline matched cart's versions");
    assert!(close(c.throughput, 1.0));
    assert!(close(
        cart.delivery.index,
        100.0 * (1.0 + stability + 1.0 + 0.0) / 4.0
    ));
    // web: 2 deployments (~1/day → 1.0), CFR 0.5 between 0.15 → 0.5 and 0.64 → 0.25.
    let c = &web.delivery.components;
    let stability = 0.5 - (0.5 - 0.15) / (0.64 - 0.15) * 0.25;
    assert!(close(c.stability, stability), "{c:?}");
    let f = web.delivery.deploy_frequency.unwrap();
    let throughput = if f >= 1.0 {
        1.0
    } else {
        0.75 + 0.25 * (f.log10() - (1.0f64 / 7.0).log10()) / (0.0 - (1.0f64 / 7.0).log10())
    };
    assert!(close(c.throughput, throughput), "{f} {c:?}");
}

fn log(time: u64, observed: u64, attrs: &[(&str, &str)]) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn logs(resource: &[(&str, &str)], records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn log_records_carry_explicit_deployments_to_their_pair() {
    let mut run = Run::new();
    // web reports v1 for an hour and 40 minutes (up to t + 40m).
    let traffic: Vec<Sp> = (0..=100).map(|i| req(T0 + i * MIN, "web", "1")).collect();
    for c in traffic.chunks(20) {
        run.deliver(c);
    }
    let t = T0 + HOUR;
    assert_eq!(run.clock.now_ns(), t + 40 * MIN + S);
    let res = [
        ("service.name", "web"),
        ("deployment.environment.name", "prod"),
        ("service.version", "2"),
        ("vcs.ref.head.revision", "r-resource"),
    ];
    let n = run.deliver_logs(&logs(
        &res,
        vec![
            // ordinary log records: not deployment records
            log(t, t, &[("message", "hello")]),
            log(t, t, &[("deployment.environment.name", "prod")]),
            // version 2 from the resource, status failed, the record's own time
            log(
                t,
                t + MIN,
                &[("deployment.id", "d-2"), ("deployment.status", "failed")],
            ),
            // the same deployment.id again: one deployment
            log(t + MIN, 0, &[("deployment.id", "d-2")]),
            // no time: the observed time counts; the record's own version and revision win
            log(
                0,
                t + 30 * MIN,
                &[
                    ("deployment.id", "d-3"),
                    ("service.version", "3"),
                    ("vcs.ref.head.revision", "r-3"),
                ],
            ),
            // another pair named by the record: cart in staging
            log(
                t + 40 * MIN,
                0,
                &[
                    ("deployment.status", "succeeded"),
                    ("service.name", "cart"),
                    ("deployment.environment.name", "staging"),
                    ("service.version", "7"),
                ],
            ),
            // no time at all, and far in the future: invalid, counted, no clock move
            log(0, 0, &[("deployment.id", "d-none")]),
            log(t + 100 * DAY, 0, &[("deployment.id", "d-future")]),
        ],
    ));
    assert_eq!(n, 6, "six log records carry deployment attributes");
    assert_eq!(run.counter(|c| &c.invalid_records), 2);
    // The records moved their pairs' clocks to their event times, never to the future
    // one: cart, new, started at the fleet floor (web's newest span − lateness) and its
    // record moved it on.
    let cart = run.pair_env("cart", "staging");
    assert_eq!(cart.clock_ns, t + 40 * MIN);
    assert_eq!(cart.delivery.pending, 1);
    assert_eq!(
        run.pair("web").clock_ns,
        t + 40 * MIN,
        "its own newest span"
    );
    // web goes on reporting version 3; outcomes: d-2 failed by its status, d-3
    // succeeded once decided; version 3's spans are no new deployment.
    let v3: Vec<Sp> = (0..30)
        .map(|i| req(t + 31 * MIN + i * 5 * MIN, "web", "3"))
        .collect();
    for c in v3.chunks(10) {
        run.deliver(c);
    }
    let web = run.pair("web");
    assert_eq!(web.delivery.decided, [1, 1]);
    assert_eq!(web.delivery.change_failure, Some(0.5));
    assert_eq!(web.delivery.current_version.as_deref(), Some("3"));
    assert_eq!(run.events("web", "deployment").len(), 2);
    // The deployment events, now that every outcome is decided.
    let deps: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.kind == "deployment")
        .map(|e| {
            (
                e.service.to_string(),
                e.environment.to_string(),
                e.time_ns,
                e.version.clone(),
                e.attributes.clone(),
            )
        })
        .collect();
    // Written once decided (with the result), so in decision order: sorted by time here.
    let mut deps = deps;
    deps.sort_by_key(|d| d.2);
    assert_eq!(deps.len(), 3, "{deps:?}");
    assert_eq!(deps[0].0, "web");
    assert_eq!((deps[0].2, deps[0].3.as_deref()), (t, Some("2")));
    assert!(
        deps[0].4.contains("\"revision\":\"r-resource\""),
        "{deps:?}"
    );
    assert_eq!((deps[1].2, deps[1].3.as_deref()), (t + 30 * MIN, Some("3")));
    assert!(deps[1].4.contains("\"revision\":\"r-3\""), "{deps:?}");
    assert_eq!(
        (deps[2].0.as_str(), deps[2].1.as_str(), deps[2].2),
        ("cart", "staging", t + 40 * MIN)
    );
    assert_eq!(
        deps[2].3.as_deref(),
        Some("7"),
        "the record's version, not web's"
    );
    assert!(run.events("web", "rollback").is_empty());
}

#[test]
fn deployment_spans_naming_another_service_count_for_that_pair() {
    let mut run = Run::new();
    let mut traffic: Vec<Sp> = (0..60).map(|i| req(T0 + i * MIN, "cart", "1")).collect();
    // A CD system's span (resource argo, version 9) announcing cart 2.
    let mut cd = req(T0 + 30 * MIN, "argo", "9");
    cd.kind = span::SpanKind::Internal;
    cd.attrs = vec![
        ("deployment.id", "argo-42".into()),
        ("service.name", "cart".into()),
        ("service.version", "2".into()),
    ];
    // argo's own deployment record, naming itself: it counts for argo.
    let mut own = req(T0 + 31 * MIN, "argo", "9");
    own.attrs = vec![
        ("deployment.status", "succeeded".into()),
        ("service.name", "argo".into()),
    ];
    traffic.push(cd.clone());
    traffic.push(own);
    traffic.sort_by_key(|s| s.t);
    // Ordinary spans are left alone by the split.
    let mut plain = batch(&traffic[..5]);
    assert!(split_span_records(&mut plain).is_empty());
    // The CD span: one record for cart, the span flagged so argo's shard skips it.
    let mut b = batch(&[cd]);
    validate_spans(&mut b, T0 + HOUR, MIN);
    let recs = split_span_records(&mut b);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].name, "cart");
    assert_eq!(recs[0].environment, "prod", "the resource's environment");
    assert_eq!(recs[0].records[0].version, "2");
    assert_eq!(recs[0].records[0].id.as_deref(), Some("argo-42"));
    for c in traffic.chunks(7) {
        run.deliver(c);
    }
    let argo = run.pair("argo");
    assert_eq!(argo.delivery.pending, 1, "only argo's own record");
    // Deployment events are written once decided: move past change_failure_window +
    // rollback_quiet_period.
    run.clock.set(T0 + 4 * HOUR);
    run.tick();
    let mut deps: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.kind == "deployment")
        .map(|e| (e.service.to_string(), e.time_ns, e.version.clone()))
        .collect();
    deps.sort_by_key(|d| d.1);
    assert_eq!(
        deps,
        vec![
            ("cart".to_string(), T0 + 30 * MIN, Some("2".to_string())),
            ("argo".to_string(), T0 + 31 * MIN, Some("9".to_string())),
        ]
    );
}

/// One `cicd.pipeline.run.duration` point: (pipeline, result, cumulative, start, time,
/// bucket counts over bounds 60 s, 300 s, 900 s, sum).
struct Hp(&'static str, &'static str, bool, u64, u64, [u64; 4], f64);

fn run_histograms(points: &[Hp]) -> ExportMetricsServiceRequest {
    let metrics = points
        .iter()
        .map(
            |Hp(name, result, cumulative, start, time, counts, sum)| Metric {
                name: "cicd.pipeline.run.duration".into(),
                unit: "s".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    aggregation_temporality: if *cumulative {
                        AggregationTemporality::Cumulative
                    } else {
                        AggregationTemporality::Delta
                    } as i32,
                    data_points: vec![HistogramDataPoint {
                        attributes: vec![
                            kv("cicd.pipeline.name", name),
                            kv("cicd.pipeline.result", result),
                        ],
                        start_time_unix_nano: *start,
                        time_unix_nano: *time,
                        count: counts.iter().sum(),
                        sum: Some(*sum),
                        bucket_counts: counts.to_vec(),
                        explicit_bounds: vec![60.0, 300.0, 900.0],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        )
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "ci"),
                    kv("deployment.environment.name", "prod"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

impl Run {
    fn deliver_metrics(&mut self, req: &ExportMetricsServiceRequest) {
        let before = self.counter(|c| &c.unusable_metric_points);
        self.p
            .send(Signal::Metrics, &req.encode_to_vec())
            .expect("admitted");
        assert_eq!(self.counter(|c| &c.unusable_metric_points), before);
        self.events.extend(self.p.take_events());
    }

    fn counter(
        &self,
        f: impl Fn(&momentum::pipeline::Counters) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        f(&self.p.shared.counters).load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn pipeline_run_histograms_give_runs_durations_and_failure_ratio_and_spans_win() {
    // Two cumulative streams fit; delta streams need no slot.
    let mut run = Run::with("limits: { max_metric_streams: 2 }\n");
    run.clock.set(T0 + 5 * MIN);
    let pipeline_span = |t: u64, name: &str, result: &str, id: &str| Sp {
        t,
        service: "ci",
        version: String::new(),
        err: false,
        attrs: vec![
            ("cicd.pipeline.name", name.into()),
            ("cicd.pipeline.result", result.into()),
            ("cicd.pipeline.run.id", id.into()),
        ],
        kind: span::SpanKind::Server,
        dur: 2 * MIN,
    };
    // "deploy" is reported as spans: its histogram points are left out.
    run.deliver(&[pipeline_span(T0 + 5 * MIN, "deploy", "success", "d1")]);
    run.clock.set(T0 + 10 * MIN + S);
    run.deliver_metrics(&run_histograms(&[
        // build/success, cumulative, started at the process start: counts in full
        Hp(
            "build",
            "success",
            true,
            T0,
            T0 + 10 * MIN,
            [1, 2, 1, 0],
            700.0,
        ),
        // "test": histogram runs first (delta)
        Hp(
            "test",
            "failure",
            false,
            T0,
            T0 + 10 * MIN,
            [0, 3, 0, 0],
            600.0,
        ),
    ]));
    run.clock.set(T0 + 20 * MIN + S);
    run.deliver_metrics(&run_histograms(&[
        // build/success again: the delta is [0, 1, 0, 1], 2 runs, 1300 s
        Hp(
            "build",
            "success",
            true,
            T0,
            T0 + 20 * MIN,
            [1, 3, 1, 1],
            2000.0,
        ),
        Hp(
            "build",
            "failure",
            true,
            T0,
            T0 + 20 * MIN,
            [0, 0, 2, 0],
            1000.0,
        ),
        // delta: no stream slot taken, left out of the failure ratio
        Hp(
            "build",
            "cancellation",
            false,
            T0,
            T0 + 20 * MIN,
            [1, 0, 0, 0],
            30.0,
        ),
        // a third cumulative stream: over max_metric_streams
        Hp(
            "lint",
            "success",
            true,
            T0,
            T0 + 20 * MIN,
            [1, 0, 0, 0],
            10.0,
        ),
        // spans of deploy were seen within the lookback: left out
        Hp(
            "deploy",
            "failure",
            false,
            T0,
            T0 + 20 * MIN,
            [0, 1, 0, 0],
            100.0,
        ),
    ]));
    // "test" now arrives as a span: its histogram runs leave the lookback figures.
    run.clock.set(T0 + 30 * MIN + S);
    run.deliver(&[pipeline_span(T0 + 30 * MIN, "test", "success", "t1")]);
    assert_eq!(run.counter(|c| &c.overflow_metric_stream), 1, "lint only");
    assert_eq!(
        run.counter(|c| &c.superseded_run_points),
        1,
        "deploy's point"
    );
    let ci = run.pair("ci");
    let get = |name: &str| {
        ci.delivery
            .pipelines
            .iter()
            .find(|p| &*p.name == name)
            .unwrap_or_else(|| panic!("no pipeline {name}"))
            .clone()
    };
    let build = get("build");
    let mut by = build.by_result.clone();
    by.sort();
    assert_eq!(
        by,
        vec![
            ("cancellation".into(), 1),
            ("failure".into(), 2),
            ("success".into(), 6)
        ]
    );
    // failed / counted runs: 2 / (6 + 2); cancellation left out.
    assert_eq!(build.failure, Some(0.25));
    // Durations by bucket upper bound (the unbounded bucket: its lower bound 900 s):
    // 60 s ×2, 300 s ×3, 900 s ×4 → p50 (5th of 9) 300 s, p90 (9th) 900 s.
    use momentum::sli::rank::of_weighted as weighted_nearest_rank;
    assert_eq!(weighted_nearest_rank(&build.durations, 0.5), Some(300.0));
    assert_eq!(weighted_nearest_rank(&build.durations, 0.9), Some(900.0));
    assert_eq!(build.duration_count, 9);
    assert_eq!(build.duration_sum_s, 700.0 + 1300.0 + 1000.0 + 30.0);
    assert!(ci.delivery.pipelines.iter().all(|p| &*p.name != "lint"));
    // deploy: its one span only.
    let deploy = get("deploy");
    assert_eq!(deploy.by_result, vec![("success".into(), 1)]);
    assert_eq!(deploy.failure, Some(0.0));
    // test: the span wins for the lookback figures; counters keep what they counted.
    let test = get("test");
    assert_eq!(test.failure, Some(0.0));
    assert_eq!(test.durations.len(), 1, "{:?}", test.durations);
    assert!((test.durations[0].0 - 120.0).abs() < 1e-6 && test.durations[0].1 == 1);
    let mut by = test.by_result.clone();
    by.sort();
    assert_eq!(by, vec![("failure".into(), 3), ("success".into(), 1)]);
    // A later histogram point of test within the lookback is left out too.
    run.clock.set(T0 + 40 * MIN + S);
    run.deliver_metrics(&run_histograms(&[Hp(
        "test",
        "failure",
        false,
        T0,
        T0 + 40 * MIN,
        [1, 0, 0, 0],
        5.0,
    )]));
    assert_eq!(run.counter(|c| &c.superseded_run_points), 2);
    assert_eq!(
        run.pair("ci").clock_ns,
        T0 + 40 * MIN,
        "run points move the clock"
    );
}

/// Lead time joins a deployment with the earliest run of its revision on *another* pair
/// (the process-wide revision index): a run that arrives before its deployment, one that
/// arrives after it (filled in when it comes), and the lookback cut-off (a deployment
/// older than `lookback` is no longer filled in, nor in the lookback's lead times).
#[test]
fn lead_time_joins_runs_of_another_pair_arriving_before_or_after_the_deployment() {
    let mut run = Run::with("delivery: { lookback: 3h }\n");
    let ci = |t: u64, dur: u64, id: &str, rev: &str| Sp {
        t,
        service: "ci",
        version: String::new(),
        err: false,
        attrs: vec![
            ("cicd.pipeline.name", "build".into()),
            ("cicd.pipeline.result", "success".into()),
            ("cicd.pipeline.run.id", id.into()),
            ("vcs.ref.head.revision", rev.into()),
        ],
        kind: span::SpanKind::Server,
        dur,
    };
    // pay: v1, v2 from T0+60m, v3 from T0+120m, v4 from T0+200m; a request a minute.
    let version = |t: u64| match (t - T0) / MIN {
        0..60 => "v1",
        60..120 => "v2",
        120..200 => "v3",
        _ => "v4",
    };
    let mut t = T0;
    while t < T0 + 290 * MIN {
        let mut batch = vec![req(t, "pay", version(t))];
        // v2's run starts at T0+30m and is sent as it ends (T0+40m), before the deploy
        if t == T0 + 40 * MIN {
            batch.push(ci(T0 + 40 * MIN, 10 * MIN, "r2", "v2"));
        }
        // v3's run (from T0+100m) is only sent at T0+150m, after v3 is deployed
        if t == T0 + 150 * MIN {
            batch.push(ci(T0 + 110 * MIN, 10 * MIN, "r3", "v3"));
        }
        // v1's run arrives at T0+280m: v1 was never a deployment, nothing to fill
        if t == T0 + 280 * MIN {
            batch.push(ci(T0 + 279 * MIN, MIN, "r1", "v1"));
        }
        run.deliver(&batch);
        t += MIN;
    }
    // v4's run (from T0+185m) arrives at T0+289m+: v4 (T0+200m) is inside the lookback
    run.deliver(&[ci(T0 + 195 * MIN, 10 * MIN, "r4", "v4")]);
    // It is visible from its request's fleet floor on: a few more minutes of traffic.
    for m in 290..296 {
        run.deliver(&[req(T0 + m * MIN, "pay", "v4")]);
    }
    let pay = run.pair("pay");
    let d = &pay.delivery;
    assert_eq!(run.events("pay", "deployment").len(), 3, "v2, v3, v4");
    // v2 → 30 min, v3 → 20 min (filled after the fact), v4 → 15 min. By the end
    // (clock T0+295m) v2 (T0+60m) is older than the 3h lookback.
    assert_eq!(d.lead_times, vec![900.0, 1200.0], "{d:?}");
    assert_eq!(
        d.lead_count, 3,
        "every lead time filled is counted once: {d:?}"
    );
    assert!(
        (d.lead_sum_s - (1800.0 + 1200.0 + 900.0)).abs() < 1e-9,
        "{d:?}"
    );
}

#[test]
fn explicit_records_and_detections_merge_in_either_order_within_the_window_only() {
    // api in prod, a request a minute for a day. change_failure_window 1h, quiet 10m.
    // Each case deploys a new version by switching all traffic to it (the detection at
    // its first span) and/or sends an explicit log record for it:
    //   v2  detection at 1h, record `failed` 20m later: one deployment, failed
    //   v3  record `succeeded` at 4h, detection 10m later: one deployment, succeeded
    //   v4  detection at 7h, record 90m later: two deployments (≥ the window apart)
    //   v5  record at 11h, detection 2h later: two deployments
    //   v6  detection at 16h, an outage 75m later (after the window): succeeded
    //   v7  detection at 20h, an outage 20m later: failed
    let at = |h: u64, m: u64| T0 + h * HOUR + m * MIN;
    let switches = [
        (at(1, 0), "2"),
        (at(4, 10), "3"),
        (at(7, 0), "4"),
        (at(13, 0), "5"),
        (at(16, 0), "6"),
        (at(20, 0), "7"),
    ];
    let records = [
        (at(1, 20), "2", "failed"),
        (at(4, 0), "3", "succeeded"),
        (at(8, 30), "4", "succeeded"),
        (at(11, 0), "5", "succeeded"),
    ];
    let outages = [(at(17, 15), at(17, 30)), (at(20, 20), at(20, 35))];
    let mut run = Run::new();
    let mut pending: Vec<Sp> = Vec::new();
    for m in 0..24 * 60 {
        let t = T0 + m * MIN;
        for &(rt, version, status) in records.iter().filter(|r| r.0 == t) {
            if !pending.is_empty() {
                run.deliver(&std::mem::take(&mut pending));
            }
            run.clock.set(run.clock.now_ns().max(rt + S));
            let n = run.deliver_logs(&logs(
                &[
                    ("service.name", "api"),
                    ("deployment.environment.name", "prod"),
                ],
                vec![log(
                    rt,
                    rt,
                    &[("deployment.status", status), ("service.version", version)],
                )],
            ));
            assert_eq!(n, 1);
        }
        let version = switches
            .iter()
            .rev()
            .find(|s| s.0 <= t)
            .map_or("1", |s| s.1);
        let mut s = req(t, "api", version);
        s.err = outages.iter().any(|o| (o.0..o.1).contains(&t));
        pending.push(s);
        if pending.len() == 20 {
            run.deliver(&std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        run.deliver(&pending);
    }
    // The last deployment (20h) is decided at 21h10m, before the last span.
    let api = run.pair("api");
    assert_eq!(api.slo.as_ref().unwrap().incidents_total, 2, "two outages");

    let mut deps: Vec<(u64, String, String)> = run
        .events
        .iter()
        .filter(|e| e.kind == "deployment" && &*e.service == "api")
        .map(|e| {
            (
                e.time_ns,
                e.version.clone().unwrap_or_default(),
                e.result.clone().unwrap_or_default(),
            )
        })
        .collect();
    deps.sort();
    let d = |t: u64, v: &str, r: &str| (t, v.to_string(), r.to_string());
    assert_eq!(
        deps,
        vec![
            d(at(1, 0), "2", "failed"),
            d(at(4, 0), "3", "succeeded"),
            d(at(7, 0), "4", "succeeded"),
            d(at(8, 30), "4", "succeeded"),
            d(at(11, 0), "5", "succeeded"),
            d(at(13, 0), "5", "succeeded"),
            d(at(16, 0), "6", "succeeded"),
            d(at(20, 0), "7", "failed"),
        ],
        "one deployment per merged pair, two when the window apart; outcomes"
    );
    assert_eq!(api.delivery.decided, [6, 2], "succeeded, failed");
    assert_eq!(api.delivery.change_failure, Some(0.25), "2 of 8 decided");
    assert_eq!(api.delivery.pending, 0);
}
