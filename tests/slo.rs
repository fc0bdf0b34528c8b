//! SLO scenario tests on event time with an injected clock, through the real decoder
//! and shard: burn rates, page alert instants, incident open/resolve, time to restore,
//! error budget and the release gate — each checked against values computed here
//! independently, from the event list and the SPEC §5 definitions.

use std::sync::Arc;

use momentum::archive::EventRow;
use momentum::pipeline::clock::{Clock, ManualClock};
use momentum::pipeline::inline::Inline;
use momentum::receiver::Signal;
use momentum::view::PairView;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const RES: u64 = 10 * S;
const T0: u64 = 1_750_000_000 * S; // a multiple of 10s

const CONFIG: &str = "slos:\n  - service: shop\n    environment: \"*\"\n    window: 30d\n    objectives:\n      availability: 99.9\n      latency: { threshold: 300ms, target: 99 }\n";

#[derive(Clone, Copy)]
struct Req {
    end: u64,
    lat: u64,
    err: bool,
}

struct Harness {
    p: Inline,
    clock: Arc<ManualClock>,
    events: Vec<EventRow>,
}

impl Harness {
    fn new(now: u64) -> Self {
        let p = Inline::from_yaml(CONFIG, 1, now);
        Harness {
            clock: p.clock.clone(),
            p,
            events: Vec::new(),
        }
    }

    fn deliver(&mut self, env: &str, reqs: &[Req]) {
        if let Some(last) = reqs.last() {
            self.clock.set(self.clock.now_ns().max(last.end + 100 * MS));
        }
        self.p
            .send(Signal::Traces, &request(env, reqs))
            .expect("admitted");
        self.events.extend(self.p.take_events());
    }

    fn pair(&mut self, env: &str) -> PairView {
        let (pairs, _) = self.p.snapshot();
        self.events.extend(self.p.take_events());
        pairs
            .into_iter()
            .find(|p| &*p.environment == env)
            .expect("pair")
    }

    fn tick(&mut self) {
        self.p.settle();
        self.events.extend(self.p.take_events());
    }

    fn events(&self, kind: &str, env: &str) -> Vec<u64> {
        self.events
            .iter()
            .filter(|e| {
                e.kind == kind && &*e.environment == env && e.result.as_deref() != Some("ticket")
            })
            .map(|e| e.time_ns)
            .collect()
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

fn request(env: &str, reqs: &[Req]) -> Vec<u8> {
    let spans = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| Span {
            trace_id: vec![1; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "GET /cart".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: r.end - r.lat,
            end_time_unix_nano: r.end,
            status: r.err.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("deployment.environment.name", env),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// The independent model: SPEC §5 windows over the raw requests.
struct Model<'a> {
    reqs: &'a [Req],
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct C {
    requests: u64,
    errors: u64,
    slow: u64,
}

impl Model<'_> {
    /// Window of length w at boundary b: the newest ⌈w/g⌉ buckets of granularity g of the
    /// clock b − 1, counting only buckets that end by b.
    fn window(&self, w: u64, b: u64) -> C {
        let g = if w <= 2 * HOUR {
            RES
        } else if w <= 3 * DAY {
            5 * MIN
        } else {
            HOUR
        };
        let n = w.div_ceil(g);
        let cur = (b - 1) / g;
        let start = (cur + 1).saturating_sub(n) * g;
        let mut c = C::default();
        for r in self.reqs {
            if r.end >= start && r.end < b {
                c.requests += 1;
                c.errors += u64::from(r.err);
                c.slow += u64::from(r.lat > 300 * MS);
            }
        }
        c
    }

    fn burn_avail(&self, w: u64, b: u64) -> f64 {
        let c = self.window(w, b);
        if c.requests == 0 {
            0.0
        } else {
            c.errors as f64 / c.requests as f64 / 0.001
        }
    }

    fn burn_latency(&self, w: u64, b: u64) -> f64 {
        let c = self.window(w, b);
        if c.requests == 0 {
            0.0
        } else {
            c.slow as f64 / c.requests as f64 / 0.01
        }
    }

    fn page(&self, b: u64, burn: impl Fn(u64, u64) -> f64, bad: impl Fn(&C) -> u64) -> bool {
        let pair = |l: u64, s: u64, f: f64| {
            bad(&self.window(l, b)) >= 2 && burn(l, b) > f && burn(s, b) > f
        };
        pair(HOUR, 5 * MIN, 14.4) || pair(6 * HOUR, 30 * MIN, 6.0)
    }
}

/// One request per second; every 2000th an error, every 200th takes 301ms, every 200th
/// (offset) exactly 300ms; during `outage` every request fails.
fn traffic(from: u64, to: u64, outage: Option<(u64, u64)>) -> Vec<Req> {
    let mut out = Vec::new();
    let mut t = from + 500 * MS;
    let mut k = 0u64;
    while t < to {
        let in_outage = outage.is_some_and(|(a, b)| t >= a && t < b);
        let lat = match k % 200 {
            7 => 301 * MS,
            107 => 300 * MS,
            _ => 100 * MS + (k % 50) * MS,
        };
        out.push(Req {
            end: t,
            lat,
            err: in_outage || k % 2000 == 1999,
        });
        t += S;
        k += 1;
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn outage_scenario_burn_rates_alerts_incident_and_budget() {
    let out_start = T0 + 6 * HOUR;
    let out_end = out_start + 20 * MIN;
    let end = out_end + 2 * HOUR;
    let reqs = traffic(T0, end, Some((out_start, out_end)));
    let model = Model { reqs: &reqs };
    let mut h = Harness::new(T0);
    let mut gate_before = None;
    let mut gate_during = None;
    let mut checked = 0;
    let checkpoints = [
        T0 + 5 * HOUR + 7 * MIN,
        out_start + 3 * MIN,
        out_start + 15 * MIN,
        out_end + 90 * MIN,
    ];
    for chunk in reqs.chunks(60) {
        h.deliver("production", chunk);
        let p = h.pair("production");
        let slo = p.slo.as_ref().expect("an SLO");
        let b = slo.evaluated_at;
        if checked < checkpoints.len() && b >= checkpoints[checked] {
            checked += 1;
            // Burn rates per window at the pair's clock (the newest buckets, the open one
            // included: everything received so far), both objectives, and budgets.
            let t = p.clock_ns + 1;
            let wins = [
                5 * MIN,
                30 * MIN,
                HOUR,
                2 * HOUR,
                6 * HOUR,
                DAY,
                3 * DAY,
                30 * DAY,
            ];
            for (i, w) in wins.iter().enumerate() {
                let (a, l) = (model.burn_avail(*w, t), model.burn_latency(*w, t));
                assert!(
                    close(slo.states[0].burn[i], a),
                    "availability burn {i} at {t}: {} vs {a}",
                    slo.states[0].burn[i]
                );
                assert!(
                    close(slo.states[1].burn[i], l),
                    "latency burn {i} at {t}: {} vs {l}",
                    slo.states[1].burn[i]
                );
            }
            let c = model.window(30 * DAY, t);
            let budget_a = 1.0 - c.errors as f64 / (c.requests as f64 * 0.001);
            let budget_l = 1.0 - c.slow as f64 / (c.requests as f64 * 0.01);
            assert!(close(slo.states[0].budget_remaining, budget_a));
            assert!(close(slo.states[1].budget_remaining, budget_l));
            let w = p.windows[7].unwrap();
            let c = model.window(30 * DAY, p.clock_ns + 1);
            assert_eq!(
                (w.requests, w.errors, w.requests - w.good),
                (c.requests, c.errors, c.slow),
                "exact counts"
            );
        }
        if gate_before.is_none() && b >= out_start - 10 * MIN {
            gate_before = Some(slo.gate());
        }
        if gate_during.is_none() && slo.incident.is_some() {
            gate_during = Some(slo.gate());
        }
    }
    assert_eq!(checked, checkpoints.len());

    // The page alert's start and end instants, found by scanning every boundary.
    let boundaries = (T0 / RES + 1..=(end - 3 * MIN) / RES).map(|k| k * RES);
    let mut firing = false;
    let (mut starts, mut ends) = (vec![], vec![]);
    for b in boundaries {
        let now = model.page(b, |w, b| model.burn_avail(w, b), |c| c.errors)
            || model.page(b, |w, b| model.burn_latency(w, b), |c| c.slow);
        if now != firing {
            if now {
                starts.push(b);
            } else {
                ends.push(b);
            }
            firing = now;
        }
    }
    assert_eq!(starts.len(), 1, "one page episode expected: {starts:?}");
    assert!(starts[0] > out_start && starts[0] < out_start + 5 * MIN);
    assert_eq!(
        h.events("alert_start", "production"),
        starts,
        "page start instant"
    );
    assert_eq!(
        h.events("alert_end", "production"),
        ends,
        "page end instant"
    );

    // Incident: opens with the page; resolves at the first boundary where the 5m window
    // has requests and both objectives burn ≤ 1.
    let opened = starts[0];
    let resolved = (opened / RES + 1..)
        .map(|k| k * RES)
        .find(|&b| {
            model.window(5 * MIN, b).requests > 0
                && model.burn_avail(5 * MIN, b) <= 1.0
                && model.burn_latency(5 * MIN, b) <= 1.0
        })
        .unwrap();
    assert_eq!(h.events("incident_open", "production"), vec![opened]);
    assert_eq!(h.events("incident_resolved", "production"), vec![resolved]);
    let p = h.pair("production");
    let slo = p.slo.unwrap();
    assert_eq!(slo.incidents_total, 1);
    assert!(slo.incident.is_none());
    assert_eq!(
        slo.restores_sorted(),
        vec![(resolved - opened) as f64 * 1e-9],
        "time to restore"
    );
    let ttr = h
        .events
        .iter()
        .find(|e| e.kind == "incident_resolved")
        .and_then(|e| e.duration_s)
        .unwrap();
    assert!(close(ttr, (resolved - opened) as f64 * 1e-9));

    // The gate: allowed before, denied during the incident, denied while the budget is
    // exhausted after it — each with the reason named.
    let (allow, reasons) = gate_before.unwrap();
    assert!(allow, "{reasons:?}");
    let (allow, reasons) = gate_during.unwrap();
    assert!(!allow);
    assert!(
        reasons.iter().any(|r| r.contains("incident open")),
        "{reasons:?}"
    );
    let (allow, reasons) = slo.gate();
    assert!(!allow);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("error budget of objective availability exhausted")),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r.contains("incident")),
        "{reasons:?}"
    );
}

#[test]
fn environments_never_mix() {
    let out_start = T0 + HOUR;
    let mut h = Harness::new(T0);
    let prod = traffic(T0, T0 + 2 * HOUR, None);
    let staging = traffic(T0, T0 + 2 * HOUR, Some((out_start, out_start + 30 * MIN)));
    for (a, b) in prod.chunks(60).zip(staging.chunks(60)) {
        h.deliver("production", a);
        h.deliver("staging", b);
    }
    let s = h.pair("staging").slo.unwrap();
    assert_eq!(s.incidents_total, 1);
    assert!(!s.gate().0);
    let p = h.pair("production").slo.unwrap();
    assert_eq!(p.incidents_total, 0);
    assert!(p.states.iter().all(|s| !s.firing[0] && !s.firing[1]));
    assert!(p.states[0].budget_remaining > 0.0);
    assert_eq!(p.gate(), (true, vec![]));
    assert!(h.events("alert_start", "production").is_empty());
}

#[test]
fn zero_traffic_and_single_requests_give_no_nan_and_no_alert() {
    let mut h = Harness::new(T0);
    // A single failed, slow first request.
    h.deliver(
        "production",
        &[Req {
            end: T0 + S,
            lat: 2 * S,
            err: true,
        }],
    );
    h.clock.set(T0 + 30 * MIN);
    h.tick();
    let p = h.pair("production");
    let slo = p.slo.clone().unwrap();
    for st in &slo.states {
        assert!(st.burn.iter().all(|b| b.is_finite()));
        assert!(st.budget_remaining.is_finite());
        assert_eq!(st.firing, [false, false]);
    }
    assert_eq!(slo.incidents_total, 0);
    assert_eq!(p.availability(0), None, "empty 5m window: no availability");
    assert_eq!(slo.states[0].burn[0], 0.0, "empty window burns 0");
    assert!(h.events.is_empty(), "{:?}", h.events);
}

#[test]
fn a_service_that_goes_silent_keeps_its_incident_open() {
    let mut h = Harness::new(T0);
    let out_start = T0 + HOUR;
    // Healthy for an hour, then failing for 10 minutes, then silence.
    let reqs = traffic(
        T0,
        out_start + 10 * MIN,
        Some((out_start, out_start + 10 * MIN)),
    );
    for chunk in reqs.chunks(60) {
        h.deliver("production", chunk);
    }
    assert_eq!(h.pair("production").slo.unwrap().incidents_total, 1);
    for k in 1..=12 {
        h.clock.set(out_start + 10 * MIN + k * HOUR);
        h.tick();
    }
    let slo = h.pair("production").slo.unwrap();
    assert!(slo.incident.is_some(), "silence is not recovery");
    assert_eq!(slo.incidents_total, 1);
    assert!(h.events("incident_resolved", "production").is_empty());
    // The page ends as the windows empty; the incident stays.
    assert!(!slo.paging());
}
