//! SLO scenario tests on event time with an injected clock, through the real decoder
//! and shard: burn rates, page alert instants, incident open/resolve, time to restore,
//! error budget and the release gate — each checked against values computed here
//! independently, from the event list and the docs/slo.md definitions.

use std::sync::Arc;

use momentum::archive::EventRow;
use momentum::inline::Inline;
use momentum::pipeline::clock::{Clock, ManualClock};
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

/// The SLO of every test here, over an SLO window of `window` (`30d`, `7d`, …).
fn config(window: &str) -> String {
    format!("slos:\n  - service: shop\n    environment: \"*\"\n    window: {window}\n    objectives:\n      availability: 99.9\n      latency: {{ threshold: 300ms, target: 99 }}\n")
}

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
        Self::with_window(now, "30d")
    }

    fn with_window(now: u64, window: &str) -> Self {
        Self::with_yaml(now, &config(window))
    }

    fn with_yaml(now: u64, yaml: &str) -> Self {
        let p = Inline::from_yaml(yaml, 1, now);
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

    /// Instants of the events of one kind (incidents), any severity.
    fn events(&self, kind: &str, env: &str) -> Vec<u64> {
        self.alerts(kind, env, None)
    }

    /// Instants of `alert_start` / `alert_end` events of one severity (or of any).
    fn alerts(&self, kind: &str, env: &str, severity: Option<&str>) -> Vec<u64> {
        self.events
            .iter()
            .filter(|e| {
                e.kind == kind
                    && &*e.environment == env
                    && severity.is_none_or(|s| e.result.as_deref() == Some(s))
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

/// The independent model: docs/slo.md windows over the raw requests.
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

    /// Whether an alert of `severity` (0 page, 1 ticket) fires at boundary `b`, as
    /// docs/slo.md writes the rule: the Sloth factors for a 30d SLO window, each × P/30d for
    /// an SLO window P. (momentum adds a guard, argued in docs/slo.md — a long window
    /// with fewer than 2 bad requests never fires, `docs/slo.md` — which the scenarios
    /// here never reach, and which
    /// `a_lone_bad_request_does_not_page_though_the_formula_alone_would` pins.)
    fn fires(&self, severity: usize, b: u64, slo_window: u64) -> bool {
        let k = slo_window as f64 / (30 * DAY) as f64;
        let rules: [(u64, u64, f64); 2] = if severity == 0 {
            [(HOUR, 5 * MIN, 14.4), (6 * HOUR, 30 * MIN, 6.0)]
        } else {
            [(DAY, 2 * HOUR, 3.0), (3 * DAY, 6 * HOUR, 1.0)]
        };
        let objective = |burn: &dyn Fn(u64, u64) -> f64| {
            rules
                .iter()
                .any(|&(long, short, f)| burn(long, b) > f * k && burn(short, b) > f * k)
        };
        objective(&|w, b| self.burn_avail(w, b)) || objective(&|w, b| self.burn_latency(w, b))
    }

    /// Start and end instants of one severity's alerts, scanning every boundary in
    /// `(from, to]`.
    fn episodes(&self, severity: usize, from: u64, to: u64, slo_window: u64) -> Episodes {
        let mut firing = false;
        let mut e = Episodes::default();
        for b in (from / RES + 1..=to / RES).map(|k| k * RES) {
            let now = self.fires(severity, b, slo_window);
            if now != firing {
                if now {
                    e.starts.push(b);
                } else {
                    e.ends.push(b);
                }
                firing = now;
            }
        }
        e
    }
}

#[derive(Debug, Default, PartialEq)]
struct Episodes {
    starts: Vec<u64>,
    ends: Vec<u64>,
}

impl Harness {
    /// The product's alert episodes of one severity.
    fn episodes(&self, env: &str, severity: &str) -> Episodes {
        Episodes {
            starts: self.alerts("alert_start", env, Some(severity)),
            ends: self.alerts("alert_end", env, Some(severity)),
        }
    }
}

/// One request per second; every 2000th an error, every 200th takes 301ms, every 200th
/// (offset) exactly 300ms — none of them among the first 99, so no window ever holds a
/// single bad request among a handful; during `outage` every request fails.
fn traffic(from: u64, to: u64, outage: Option<(u64, u64)>) -> Vec<Req> {
    let mut out = Vec::new();
    let mut t = from + 500 * MS;
    let mut k = 0u64;
    while t < to {
        let in_outage = outage.is_some_and(|(a, b)| t >= a && t < b);
        let lat = match k % 200 {
            199 => 301 * MS,
            99 => 300 * MS,
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

    // The page and ticket alerts' start and end instants, found by scanning every
    // boundary up to the pair's last evaluation.
    let last = h.pair("production").slo.unwrap().evaluated_at;
    let page = model.episodes(0, T0, last, 30 * DAY);
    assert_eq!(page.starts.len(), 1, "one page episode expected: {page:?}");
    let starts = page.starts.clone();
    assert!(starts[0] > out_start && starts[0] < out_start + 5 * MIN);
    assert_eq!(h.episodes("production", "page"), page, "page instants");
    let ticket = model.episodes(1, T0, last, 30 * DAY);
    assert_eq!(
        ticket.starts.len(),
        1,
        "the outage opens a ticket: {ticket:?}"
    );
    assert!(ticket.starts[0] > out_start && ticket.starts[0] < out_start + 5 * MIN);
    assert_eq!(
        h.episodes("production", "ticket"),
        ticket,
        "ticket instants"
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

/// One request per second from `from` to `to`; request k fails when `fail(k)`; latencies
/// 100–149 ms (never slow).
fn failing(from: u64, to: u64, fail: impl Fn(u64) -> bool) -> Vec<Req> {
    (0..)
        .map(|k| (k, from + 500 * MS + k * S))
        .take_while(|&(_, t)| t < to)
        .map(|(k, t)| Req {
            end: t,
            lat: 100 * MS + (k % 50) * MS,
            err: fail(k),
        })
        .collect()
}

/// Requests of [`failing`] before the first failure: 2 healthy hours, so that no window
/// ever holds a single bad request among a handful (the guard of docs/slo.md never
/// decides, and the formula of the model is the whole rule).
const HEALTHY: u64 = 7200;

#[test]
fn a_slow_burn_opens_a_ticket_without_a_page_and_closes_it_when_the_burn_ends() {
    // 2 healthy hours, 3 hours failing every 200th request (0.5 %: burn 5 against
    // 99.9 %), then 7 healthy hours: the 3d/6h ticket (> 1) fires, the 1d/2h one stays at
    // or under 3, the pages (14.4 and 6) never.
    let bad = HEALTHY..HEALTHY + 3 * 3600;
    let reqs = failing(T0, T0 + 12 * HOUR, |k| bad.contains(&k) && k % 200 == 199);
    let model = Model { reqs: &reqs };
    let mut h = Harness::new(T0);
    for chunk in reqs.chunks(120) {
        h.deliver("production", chunk);
    }
    let slo = h.pair("production").slo.unwrap();
    let last = slo.evaluated_at;
    let ticket = model.episodes(1, T0, last, 30 * DAY);
    assert_eq!(ticket.starts.len(), 1, "{ticket:?}");
    assert_eq!(ticket.ends.len(), 1, "the ticket ends: {ticket:?}");
    let bad_end = T0 + (HEALTHY + 3 * 3600) * S;
    assert!(ticket.starts[0] < bad_end && ticket.ends[0] > bad_end + 4 * HOUR);
    assert_eq!(
        h.episodes("production", "ticket"),
        ticket,
        "ticket instants"
    );
    assert_eq!(model.episodes(0, T0, last, 30 * DAY), Episodes::default());
    assert_eq!(
        h.episodes("production", "page"),
        Episodes::default(),
        "no page"
    );
    assert_eq!(slo.incidents_total, 0, "a ticket opens no incident");
    assert_eq!(
        slo.states[0].started,
        [0, 1],
        "alerts started: page, ticket"
    );
    assert!(h.events("incident_open", "production").is_empty());
}

#[test]
fn burn_rate_factors_scale_with_the_slo_window() {
    // 2 healthy hours, then 2 hours at a steady failure rate against 99.9 %: burn 5
    // (0.5 %) or burn 16 (1.6 %); the 1d and 3d windows end at half that. Page factors
    // 14.4/6 and ticket factors 3/1 are for a 30d SLO window; for a window P each is
    // × P/30d: 7d → page 3.36/1.4; 90d → page 43.2/18, ticket 9/3.
    type Fails = fn(u64) -> bool;
    let rates: [(&str, Fails); 2] = [
        ("burn 5", |k| k >= HEALTHY && k % 200 == 199),
        ("burn 16", |k| k >= HEALTHY && k % 125 < 2),
    ];
    // (window, [(pages, tickets) per rate]): an inverted factor (× 30/7 for 7d) would not
    // page at burn 5; a dropped one would page at burn 16 over 90d, and ticket at burn 5.
    let expected = [
        ("7d", 7 * DAY, [(true, true), (true, true)]),
        ("30d", 30 * DAY, [(false, true), (true, true)]),
        ("90d", 90 * DAY, [(false, false), (false, true)]),
    ];
    for (name, window, outcome) in expected {
        for ((rate, fail), (pages, tickets)) in rates.iter().zip(outcome) {
            let reqs = failing(T0, T0 + 4 * HOUR, fail);
            let model = Model { reqs: &reqs };
            let mut h = Harness::with_window(T0, name);
            for chunk in reqs.chunks(120) {
                h.deliver("production", chunk);
            }
            let last = h.pair("production").slo.unwrap().evaluated_at;
            for (sev, expect) in [("page", pages), ("ticket", tickets)] {
                let m = model.episodes(usize::from(sev == "ticket"), T0, last, window);
                assert_eq!(
                    !m.starts.is_empty(),
                    expect,
                    "{name} window, {rate}: the formula's {sev}: {m:?}"
                );
                assert_eq!(
                    h.episodes("production", sev),
                    m,
                    "{name} window, {rate}: {sev} instants"
                );
            }
        }
    }
}

#[test]
fn a_lone_bad_request_does_not_page_though_the_formula_alone_would() {
    // A quiet service: one request every 30 s. Its first request fails. By docs/slo.md
    // formula alone the next boundary pages (1 bad of 1: burn 1000 in every window); the
    // guard of docs/slo.md needs 2 bad requests in the long window, so the second failure
    // pages and the first does not.
    let reqs: Vec<Req> = (0..200u64)
        .map(|k| Req {
            end: T0 + 500 * MS + k * 30 * S,
            lat: 100 * MS,
            err: k == 0 || k == 20,
        })
        .collect();
    let model = Model { reqs: &reqs };
    let mut h = Harness::new(T0);
    let first_boundary = T0 + RES;
    assert!(
        model.fires(0, first_boundary, 30 * DAY),
        "the formula alone pages on one failed request"
    );
    for r in &reqs {
        h.deliver("production", std::slice::from_ref(r));
    }
    let second = T0 + 500 * MS + 20 * 30 * S;
    let page_at = (second / RES + 1) * RES;
    let product = h.episodes("production", "page");
    assert_eq!(
        product.starts,
        vec![page_at],
        "the page starts at the first boundary after the second failure"
    );
    // From there on the formula and the product agree: both have 2 bad requests.
    let last = h.pair("production").slo.unwrap().evaluated_at;
    let formula = model.episodes(0, T0, last, 30 * DAY);
    assert_eq!(formula.starts[0], first_boundary);
    assert_eq!(formula.ends.len(), 1, "{formula:?}");
    let after = model.episodes(0, second, last, 30 * DAY);
    assert_eq!(after.starts, vec![page_at]);
    assert_eq!(
        product.ends, after.ends,
        "the page ends where the formula's does"
    );
}

#[test]
fn a_pair_whose_ticket_fires_is_not_evicted_though_it_is_the_least_recently_seen() {
    // Two slots. "production" burns slowly (a ticket fires) and then goes quiet; "staging"
    // reports once after it. Two hours later a third pair arrives: the table is full and
    // both are idle past series_idle, but only staging may give its slot up.
    let yaml = format!(
        "{}limits:\n  max_services: 2\n  series_idle: 1h\n",
        config("30d")
    );
    let mut h = Harness::with_yaml(T0, &yaml);
    let bad = HEALTHY..HEALTHY + 3 * 3600;
    let reqs = failing(T0, T0 + 5 * HOUR, |k| bad.contains(&k) && k % 200 == 199);
    for chunk in reqs.chunks(120) {
        h.deliver("production", chunk);
    }
    let ticket = h.pair("production").slo.unwrap().states[0].started;
    assert_eq!(ticket, [0, 1], "the ticket fires");
    let one = |t: u64| Req {
        end: t,
        lat: 100 * MS,
        err: false,
    };
    h.deliver("staging", &[one(T0 + 5 * HOUR + MIN)]);
    // Two quiet hours pass on the fleet clock: both pairs are idle past series_idle.
    h.clock.set(T0 + 7 * HOUR);
    h.tick();
    h.deliver("canary", &[one(T0 + 7 * HOUR)]);
    assert_eq!(
        h.p.shared
            .counters
            .evicted_service
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one pair gave its slot up"
    );
    // production kept its state: reporting again, it is the same pair (its ticket's
    // start still counted), not a fresh one.
    h.deliver("production", &[one(T0 + 7 * HOUR + S)]);
    let slo = h.pair("production").slo.unwrap();
    assert_eq!(slo.states[0].started, [0, 1], "production was not evicted");
}

#[test]
fn an_idle_pair_whose_page_still_fires_after_its_incident_closed_stays_in_view() {
    // A 1-day SLO window scales the 6h/30m page threshold to 6 x 1/30 = 0.2: after an
    // outage, healthy minutes close the incident while the 30-minute window still holds
    // the outage and that page still fires. The pair then goes silent past series_idle:
    // a firing page keeps it in the exports.
    let yaml = format!("{}limits:\n  series_idle: 10m\n", config("1d"));
    let mut h = Harness::with_yaml(T0, &yaml);
    // no background errors: at this window even 0.05 % would page
    let reqs = failing(T0, T0 + HOUR + 25 * MIN, |k| (3600..4200).contains(&k));
    for chunk in reqs.chunks(60) {
        h.deliver("production", chunk);
    }
    h.tick();
    let slo = h.pair("production").slo.unwrap();
    assert_eq!(h.events("incident_open", "production"), [T0 + 3610 * S]);
    assert_eq!(h.events("incident_resolved", "production"), [T0 + 4500 * S]);
    assert!(
        slo.incident.is_none(),
        "healthy minutes closed the incident"
    );
    assert!(
        slo.states[0].firing[0],
        "the 6h/30m page of availability fires"
    );
    // Quiet until idle past series_idle, the outage still inside the 30-minute window.
    h.clock.set(T0 + HOUR + 37 * MIN);
    h.tick();
    let (pairs, _) = h.p.snapshot();
    let p = pairs
        .iter()
        .find(|p| &*p.environment == "production")
        .expect("an idle pair whose page fires stays in view");
    assert!(p.slo.as_ref().unwrap().states[0].firing[0]);
}

/// A long silence is not evaluated boundary by boundary: once the 3-day window is empty
/// and nothing fires, the rest of the jump is skipped and the evaluation is recorded at
/// the last boundary the pair's clock crossed. An outage after five silent days then
/// pages and opens an incident at the same instants as it would after an evaluation of
/// every boundary (a skip recorded at the wrong boundary would leave the evaluation
/// behind, never reaching the outage).
#[test]
fn after_a_long_silence_an_outage_pages_as_it_would_live() {
    let mut h = Harness::new(T0);
    // ten healthy minutes (1 slow request in 200, 1 error in 2,000: nothing fires)
    for chunk in traffic(T0, T0 + 10 * MIN, None).chunks(60) {
        h.deliver("production", chunk);
    }
    // five silent days, then 20 minutes of traffic whose minutes 5 to 15 all fail
    let back = T0 + 10 * MIN + 5 * DAY;
    h.clock.set(back);
    h.tick();
    let (out_start, out_end) = (back + 5 * MIN, back + 15 * MIN);
    for chunk in traffic(back, back + 20 * MIN, Some((out_start, out_end))).chunks(60) {
        h.deliver("production", chunk);
    }
    let p = h.pair("production");
    let slo = p.slo.as_ref().unwrap();
    assert_eq!(slo.evaluated_at, p.clock_ns / RES * RES);
    // burn(5m) and burn(1h) pass 14.4 within seconds of the outage's start (the hour
    // holds only the 5 minutes since the silence)
    let pages = h.alerts("alert_start", "production", Some("page"));
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0] > out_start && pages[0] < out_start + 2 * MIN,
        "{pages:?}"
    );
    assert_eq!(h.events("incident_open", "production"), pages);
}

/// A restore counts for `delivery.lookback` (30d) after it, no longer, also across a jump:
/// a service silent for 31 days shows no time to restore at once (before, the restore
/// stayed until the next boundary was evaluated one by one).
#[test]
fn a_restore_older_than_the_lookback_is_forgotten_after_a_long_silence() {
    let mut h = Harness::new(T0);
    let out_start = T0 + HOUR;
    let reqs = traffic(
        T0,
        out_start + 30 * MIN,
        Some((out_start, out_start + 10 * MIN)),
    );
    for chunk in reqs.chunks(60) {
        h.deliver("production", chunk);
    }
    let slo = h.pair("production").slo.unwrap();
    assert_eq!(slo.incidents_total, 1);
    assert!(slo.incident.is_none(), "resolved once the errors stopped");
    assert_eq!(slo.restores_sorted().len(), 1);
    let resolved = h.events("incident_resolved", "production")[0];
    // 29 days on the restore still counts; 31 days on it is gone
    h.clock.set(resolved + 29 * DAY + 2 * MIN + 5 * S);
    h.tick();
    assert_eq!(h.pair("production").slo.unwrap().restores_sorted().len(), 1);
    h.clock.set(resolved + 31 * DAY + 2 * MIN + 5 * S);
    h.tick();
    let p = h.pair("production");
    assert!(p.slo.unwrap().restores_sorted().is_empty());
    assert_eq!(p.delivery.components.recovery, None);
}

/// Four requests in every 10 s bucket from T0, `errors` of them failing, per
/// `(buckets, errors)` of `plan`.
fn buckets(plan: &[(u64, u64)]) -> Vec<Req> {
    let mut out = Vec::new();
    let mut b = 0u64;
    for &(n, errors) in plan {
        for _ in 0..n {
            for j in 0..4u64 {
                out.push(Req {
                    end: T0 + b * RES + (1 + 2 * j) * S,
                    lat: 100 * MS,
                    err: j < errors,
                });
            }
            b += 1;
        }
    }
    out
}

/// The alert rule is "burn > factor", strictly: a burn rate that lands exactly on the
/// threshold does not page, in the long window or in the short one. Exactness needs an
/// objective whose 1 − target is a binary fraction (75 %: allowed 0.25) and a window
/// whose factor scaling gives exactly 1 (14.4 × 50h/30d = 1.0 in f64); for 99.9 % or
/// 99 % a burn never equals a threshold.
#[test]
fn a_burn_rate_exactly_at_the_threshold_does_not_page() {
    let yaml = "slos:\n  - service: shop\n    environment: \"*\"\n    window: 50h\n    objectives:\n      availability: 75\n";
    let page_starts = |plan: &[(u64, u64)]| {
        let mut h = Harness::with_yaml(T0, yaml);
        for chunk in buckets(plan).chunks(400) {
            h.deliver("production", chunk);
        }
        let slo = h.pair("production").slo.unwrap();
        (
            slo.states[0].started[0],
            h.alerts("alert_start", "production", Some("page")),
        )
    };
    // the long window on the threshold: after 5 clean hours, an hour whose last 5 minutes
    // fail half their requests and which holds exactly 360 errors in 1,440 requests: at
    // its end burn(1h) = 1 exactly, burn(5m) = 2 (earlier, burn(1h) < 1)
    let long = [(1800, 0), (300, 1), (30, 0), (30, 2), (6, 0)];
    assert_eq!(page_starts(&long), (0, vec![]));
    // the short window on the threshold: a 5-minute burst at half, then exactly a
    // quarter failing: once the clean hour has left, burn(1h) > 1 while burn(5m) = 1
    // exactly (during the burst burn(1h) < 1); 6h and 30m stay under their factor
    let short = [(1800, 0), (30, 2), (340, 1)];
    assert_eq!(page_starts(&short), (0, vec![]));
    // one more failing request in every bucket of the short case's tail pages, so the
    // construction is one request away from the rule
    let over = [(1800, 0), (30, 2), (300, 1), (40, 2)];
    assert_eq!(page_starts(&over).0, 1);
}
