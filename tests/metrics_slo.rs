//! Services that export duration histograms and no spans get their SLO from them: error
//! budgets, burn rates, a page alert and an incident, and a version change is a
//! deployment — for explicit-bucket and exponential histograms, delta and cumulative. A
//! pair with both spans and metrics counts metrics only while they are fresh (no double
//! count), and its spans take over once no point has arrived for 10 minutes.
//!
//! Every expected value is worked out here from the scenario: 60 minutes, 100 requests
//! a minute (1 slower than the 300 ms threshold), 50 of them HTTP 500 in minutes 41–46,
//! version 1.0 until minute 30 and 2.0 after; SLO 99.9 % availability, 300 ms @ 99 %, 30d.

use momentum::archive::EventRow;
use momentum::inline::Inline;
use momentum::receiver::Signal;
use momentum::view::PairView;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, AggregationTemporality,
    ExponentialHistogram, ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric,
    ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const T0: u64 = 1_750_003_200 * S;

const CONFIG: &str = "slos:\n  - service: \"*\"\n    window: 30d\n    objectives:\n      availability: 99.9\n      latency: { threshold: 300ms, target: 99 }\n";

/// The four encodings, one metrics-only service each.
const SERVICES: [(&str, bool, bool); 4] = [
    // (service, exponential, cumulative)
    ("explicit-delta", false, false),
    ("explicit-cumulative", false, true),
    ("exponential-delta", true, false),
    ("exponential-cumulative", true, true),
];

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn status(code: i64) -> KeyValue {
    KeyValue {
        key: "http.response.status_code".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(code)),
        }),
        ..Default::default()
    }
}

/// Minute k's requests: (fast 200s, slow 200s, fast 500s).
fn minute(k: u64) -> (u64, u64, u64) {
    let errors = if (41..=46).contains(&k) { 50 } else { 0 };
    (100 - errors - 1, 1, errors)
}

/// The first minute of the process that reports minute `k`: version 2.0 is a new
/// process from minute 31 on, so its cumulative streams start again there.
fn process_start(k: u64) -> u64 {
    if k <= 30 {
        1
    } else {
        31
    }
}

/// Counts since the process started, up to and including minute `k` (cumulative), or of
/// minute `k` alone (delta): (fast 200, slow 200, fast 500).
fn counts(k: u64, cumulative: bool) -> (u64, u64, u64) {
    if !cumulative {
        return minute(k);
    }
    (process_start(k)..=k).fold((0, 0, 0), |a, i| {
        let m = minute(i);
        (a.0 + m.0, a.1 + m.1, a.2 + m.2)
    })
}

/// One `http.server.request.duration` metric of `service` for minute `k`: a point per
/// status code. Explicit bounds 0.1, 0.25, 0.5, 1 s (fast requests take 50 ms, slow ones
/// 700 ms); exponential scale 0 (fast in (2^-5, 2^-4], slow in (0.5, 1]).
fn duration_metric(k: u64, exponential: bool, cumulative: bool) -> Metric {
    let time = T0 + k * MIN;
    let start = if cumulative {
        T0 + (process_start(k) - 1) * MIN
    } else {
        time - MIN
    };
    let (fast, slow, errors) = counts(k, cumulative);
    let temporality = if cumulative {
        AggregationTemporality::Cumulative
    } else {
        AggregationTemporality::Delta
    } as i32;
    let points = [(200, fast, slow), (500, errors, 0)];
    let data = if exponential {
        metric::Data::ExponentialHistogram(ExponentialHistogram {
            aggregation_temporality: temporality,
            data_points: points
                .iter()
                .map(|&(code, f, s)| ExponentialHistogramDataPoint {
                    attributes: vec![kv("http.request.method", "POST"), status(code)],
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: f + s,
                    sum: Some(f as f64 * 0.05 + s as f64 * 0.7),
                    scale: 0,
                    zero_count: 0,
                    positive: Some(Buckets {
                        offset: -5,
                        bucket_counts: vec![f, 0, 0, 0, s],
                    }),
                    ..Default::default()
                })
                .collect(),
        })
    } else {
        metric::Data::Histogram(Histogram {
            aggregation_temporality: temporality,
            data_points: points
                .iter()
                .map(|&(code, f, s)| HistogramDataPoint {
                    attributes: vec![kv("http.request.method", "POST"), status(code)],
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: f + s,
                    sum: Some(f as f64 * 0.05 + s as f64 * 0.7),
                    bucket_counts: vec![f, 0, 0, s, 0],
                    explicit_bounds: vec![0.1, 0.25, 0.5, 1.0],
                    ..Default::default()
                })
                .collect(),
        })
    };
    Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(data),
        ..Default::default()
    }
}

fn resource(service: &str, version: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("service.version", version)],
        ..Default::default()
    })
}

/// Minute k of every metrics-only service, and of `mixed` while k ≤ 30.
fn metrics_request(k: u64) -> Vec<u8> {
    let version = if k <= 30 { "1.0" } else { "2.0" };
    let mut resource_metrics: Vec<ResourceMetrics> = SERVICES
        .iter()
        .map(|&(service, exponential, cumulative)| ResourceMetrics {
            resource: resource(service, version),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![duration_metric(k, exponential, cumulative)],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    if k <= 30 {
        resource_metrics.push(ResourceMetrics {
            resource: resource("mixed", "1.0"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![duration_metric(k, false, false)],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest { resource_metrics }.encode_to_vec()
}

/// Minute k of `mixed`'s spans: 10 fast requests ending inside the minute.
fn spans_request(k: u64) -> Vec<u8> {
    let spans = (0..10u64)
        .map(|i| {
            let end = T0 + (k - 1) * MIN + (i + 1) * 5 * S;
            Span {
                trace_id: vec![7; 16],
                span_id: (k * 100 + i + 1).to_be_bytes().to_vec(),
                name: "POST /orders".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: end - 50_000_000,
                end_time_unix_nano: end,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("mixed", "1.0"),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

struct Run {
    p: Inline,
    events: Vec<EventRow>,
}

impl Run {
    /// Live: the wall clock a second after each minute's data.
    fn minutes(&mut self, ks: std::ops::RangeInclusive<u64>) {
        for k in ks {
            self.p.clock.set(T0 + k * MIN + S);
            self.p
                .send(Signal::Metrics, &metrics_request(k))
                .expect("metrics admitted");
            self.p
                .send(Signal::Traces, &spans_request(k))
                .expect("spans admitted");
            self.p.settle();
            self.events.extend(self.p.take_events());
        }
    }

    fn pair(&mut self, service: &str) -> PairView {
        let v = self.p.pair(service, "").expect("the pair");
        self.events.extend(self.p.take_events());
        v
    }

    fn events(&self, service: &str, kind: &str) -> Vec<&EventRow> {
        self.events
            .iter()
            .filter(|e| &*e.service == service && e.kind == kind)
            .collect()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn metrics_only_services_get_budgets_burn_rates_alerts_incidents_and_deployments() {
    let mut run = Run {
        p: Inline::from_yaml(CONFIG, 1, T0),
        events: Vec::new(),
    };
    run.minutes(1..=60);
    assert_eq!(
        run.p
            .shared
            .counters
            .late_metric_points
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // Whole scenario: 6,000 requests, 300 errors, 60 slower than the threshold.
    let (requests, errors, slow) = (6000u64, 300u64, 60u64);
    for (service, _, _) in SERVICES {
        let v = run.pair(service);
        let what = format!("{service}: {v:?}");
        let slo_window = v.windows[7].expect("SLO window");
        assert_eq!(
            (slo_window.requests, slo_window.errors, slo_window.good),
            (requests, errors, requests - slow),
            "{what}"
        );
        let slo = v.slo.as_ref().expect("an SLO for a metrics-only service");
        let (avail, lat) = (&slo.states[0], &slo.states[1]);
        let budget = 1.0 - errors as f64 / (requests as f64 * (1.0 - 0.999));
        assert!(close(avail.budget_remaining, budget), "{what}");
        let budget = 1.0 - slow as f64 / (requests as f64 * (1.0 - 0.99));
        assert!(close(lat.budget_remaining, budget), "{what}");
        // 1h window: every minute (the clock is at minute 60); 5m: minutes 56–60.
        assert!(close(avail.burn[2], 300.0 / 6000.0 / 0.001), "{what}");
        assert!(close(avail.burn[0], 0.0), "{what}");
        assert!(close(lat.burn[0], 5.0 / 500.0 / 0.01), "{what}");
        // The outage pages and opens an incident, which resolves once the 5m window
        // burns ≤ 1 again.
        let pages: Vec<_> = run
            .events(service, "alert_start")
            .into_iter()
            .filter(|e| e.result.as_deref() == Some("page"))
            .collect();
        assert!(!pages.is_empty(), "{service}: no page alert");
        let first = pages.iter().map(|e| e.time_ns).min().unwrap();
        assert!(
            (T0 + 40 * MIN..=T0 + 46 * MIN).contains(&first),
            "{service}: paged at minute {}",
            (first - T0) as f64 / MIN as f64
        );
        assert_eq!(run.events(service, "incident_open").len(), 1, "{service}");
        assert_eq!(
            run.events(service, "incident_resolved").len(),
            1,
            "{service}"
        );
        // Version 2.0's first points (minute 31) are a deployment, pending until the
        // change failure window (1h) has passed.
        assert_eq!(v.delivery.deployments, 1, "{service}: {:?}", v.delivery);
        assert_eq!(v.delivery.pending, 1, "{service}: {:?}", v.delivery);
        assert_eq!(v.delivery.current_version.as_deref(), Some("2.0"));
    }
}

#[test]
fn metrics_are_the_source_while_fresh_then_spans_take_over() {
    let mut run = Run {
        p: Inline::from_yaml(CONFIG, 1, T0),
        events: Vec::new(),
    };
    // Minutes 1–30: metrics (100 a minute) and spans (10 a minute) for `mixed`.
    run.minutes(1..=30);
    let v = run.pair("mixed");
    assert_eq!(
        v.windows[7].unwrap().requests,
        30 * 100,
        "metrics are the source: spans are not counted on top"
    );
    assert_eq!(v.totals.requests, 30 * 100, "nor in the request counter");
    assert!(v.metric_bound_ns.is_some(), "{v:?}");
    // Minutes 31–60: spans only. Up to 10 minutes after the last point metrics stay the
    // source; from then on the spans' windows are (all 600 spans since the start).
    run.minutes(31..=39);
    let v = run.pair("mixed");
    assert_eq!(v.windows[7].unwrap().requests, 30 * 100, "{v:?}");
    run.minutes(40..=60);
    let v = run.pair("mixed");
    assert_eq!(
        v.windows[7].unwrap().requests,
        60 * 10,
        "spans took over: {v:?}"
    );
    assert_eq!(v.metric_bound_ns, None);
    let slo = v.slo.as_ref().unwrap();
    assert!(close(slo.states[0].budget_remaining, 1.0), "no span failed");
}
