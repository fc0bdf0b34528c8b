//! Deterministic simulation: the same OTLP requests through one shard processed at once,
//! and through several shards processed in a seeded random interleaving (one shard starved
//! for long stretches, ticks at random moments), must give the same signals — every
//! count, late and invalid count, SLI window, burn rate, budget, alert, incident,
//! deployment, lead time, pipeline, the momentum index and every archive row.
//!
//! Each seed generates a fleet: a few services with steady traffic, outages after some
//! deploys, version changes that overlap for a while, CI pipeline runs of the deployed
//! revisions on a pair of their own (so lead times cross shards through the revision
//! index), a metrics-only service, stragglers (some late), invalid spans, and in live mode
//! fleet-wide silences longer than `allowed_lateness`. Requests hold at most 60 s of event
//! time and are sent in time order, either as a replay at full speed (the wall clock after
//! everything) or live (the wall clock a few seconds behind the events).
//!
//! `MOMENTUM_SEEDS=N` runs N seeds (default 200), `MOMENTUM_SEED=S` only seed S;
//! `bench/interleave.sh` runs many more on the release build. A failing seed is shrunk to
//! the shortest prefix of its requests that still fails, and both are printed.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use momentum::inline::Inline;
use momentum::receiver::Signal;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
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
/// allowed_lateness of the config below
const LATENESS: u64 = 2 * MIN;

const CONFIG: &str = "\
slos:
  - service: \"*\"
    environment: \"*\"
    window: 1d
    objectives:
      availability: 99.5
      latency: { threshold: 250ms, target: 99 }
";

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn int_kv(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// One generated span.
#[derive(Clone)]
struct Sp {
    /// when it is sent (event time of the request it travels in)
    send: u64,
    end: u64,
    dur: u64,
    service: String,
    env: &'static str,
    version: String,
    op: &'static str,
    err: bool,
    invalid: bool,
    attrs: Vec<(&'static str, String)>,
}

/// One minute's duration histogram of the metrics-only service: (time, ok, errors).
#[derive(Clone, Copy)]
struct Point {
    time: u64,
    ok: [u64; 3],
    err: [u64; 3],
    version: u32,
}

/// One request of the scenario.
#[derive(Clone)]
struct Req {
    signal: Signal,
    body: Vec<u8>,
    /// the wall clock when it is exported
    wall: u64,
    /// a fleet-wide silence ends with this request: the wall-clock moments in it at which
    /// every shard ticks
    silence: Vec<u64>,
}

struct Scenario {
    requests: Vec<Req>,
    shards: usize,
    live: bool,
}

fn trace_request(spans: &[Sp]) -> Vec<u8> {
    let mut rs: Vec<ResourceSpans> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let span = Span {
            trace_id: vec![(i % 251) as u8 + 1; 16],
            span_id: vec![(i % 241) as u8 + 1; 8],
            name: s.op.into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: if s.invalid { s.end + S } else { s.end - s.dur },
            end_time_unix_nano: s.end,
            attributes: s.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            status: s.err.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        };
        // consecutive spans of one (service, version) share a resource
        let same = rs.last().is_some_and(|r| {
            let a = &r.resource.as_ref().unwrap().attributes;
            a[0].value == kv("", &s.service).value && a[1].value == kv("", &s.version).value
        });
        if same {
            rs.last_mut().unwrap().scope_spans[0].spans.push(span);
            continue;
        }
        let mut attributes = vec![kv("service.name", &s.service)];
        attributes.push(kv("service.version", &s.version));
        attributes.push(kv("deployment.environment.name", s.env));
        rs.push(ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec()
}

fn metrics_request(points: &[Point]) -> Vec<u8> {
    let dp = |p: &Point, code: i64, counts: [u64; 3]| HistogramDataPoint {
        attributes: vec![
            kv("http.request.method", "GET"),
            int_kv("http.response.status_code", code),
        ],
        start_time_unix_nano: p.time - MIN,
        time_unix_nano: p.time,
        count: counts.iter().sum(),
        sum: Some(counts[0] as f64 * 0.05 + counts[1] as f64 * 0.2 + counts[2] as f64 * 1.0),
        bucket_counts: counts.to_vec(),
        explicit_bounds: vec![0.1, 0.25],
        ..Default::default()
    };
    let resource_metrics = points
        .iter()
        .map(|p| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "meter"),
                    kv("service.version", &format!("m{}", p.version)),
                    kv("deployment.environment.name", "prod"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        data_points: vec![dp(p, 200, p.ok), dp(p, 500, p.err)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }.encode_to_vec()
}

/// The fleet of `seed`.
fn scenario(seed: u64) -> Scenario {
    let mut rng = fastrand::Rng::with_seed(seed);
    let live = rng.bool();
    let shards = rng.usize(2..=4);
    let hours = rng.u64(2..=4);
    let end = 1_750_003_200 * S + rng.u64(0..HOUR);
    let start = end - hours * HOUR;
    // Fleet-wide silences (live mode): [from, to) with no traffic at all.
    let mut silences: Vec<(u64, u64)> = Vec::new();
    if live {
        for _ in 0..rng.usize(0..=2) {
            let from = start + rng.u64(20 * MIN..hours * HOUR - 20 * MIN);
            silences.push((from, from + rng.u64(LATENESS + 30 * S..8 * MIN)));
        }
    }
    let silent = |t: u64| silences.iter().any(|&(a, b)| (a..b).contains(&t));
    let mut spans: Vec<Sp> = Vec::new();
    let envs = ["prod", "prod", "staging"];
    for si in 0..rng.usize(2..=5) {
        let service = format!("svc{si}");
        let env = envs[rng.usize(0..envs.len())];
        let per_min = rng.u64(3..=20);
        let base_err = rng.f64() * 0.02;
        let slow = rng.f64() * 0.03;
        // deploys: (time, version); an overlap of old and new for a few minutes; some
        // cause an outage
        let mut deploys = vec![(start, 0u32)];
        let mut t = start + rng.u64(10 * MIN..50 * MIN);
        while t < end {
            deploys.push((t, deploys.len() as u32));
            t += rng.u64(15 * MIN..70 * MIN);
        }
        let mut outages: Vec<(u64, u64)> = Vec::new();
        for &(t, v) in deploys.iter().skip(1) {
            if rng.u8(0..4) == 0 {
                let a = t + rng.u64(0..5 * MIN);
                outages.push((a, a + rng.u64(3 * MIN..20 * MIN)));
            }
            // CI runs of this revision on the `ci` pair, before the deploy (a failed
            // run first, sometimes)
            let rev = format!("{service}-v{v}");
            let mut run_end = t.saturating_sub(rng.u64(2 * MIN..25 * MIN));
            for attempt in 0..rng.u32(1..=2) {
                let result = if attempt == 0 && rng.u8(0..3) == 0 {
                    "failure"
                } else {
                    "success"
                };
                let dur = rng.u64(MIN..6 * MIN);
                spans.push(Sp {
                    send: run_end,
                    end: run_end,
                    dur,
                    service: "ci".into(),
                    env: "prod",
                    version: String::new(),
                    op: "pipeline",
                    err: result == "failure",
                    invalid: false,
                    attrs: vec![
                        ("cicd.pipeline.name", format!("build-{service}")),
                        ("cicd.pipeline.result", result.into()),
                        ("cicd.pipeline.run.id", format!("{rev}-{attempt}")),
                        ("vcs.ref.head.revision", rev.clone()),
                    ],
                });
                run_end += rng.u64(MIN..4 * MIN);
            }
        }
        let overlap = rng.u64(0..6 * MIN);
        let mut m = start;
        while m < end {
            for _ in 0..per_min {
                let t = m + rng.u64(0..MIN);
                if t >= end || silent(t) {
                    continue;
                }
                let di = deploys.iter().rposition(|d| d.0 <= t).unwrap();
                let mut v = deploys[di].1;
                if di > 0 && t < deploys[di].0 + overlap && rng.bool() {
                    v = deploys[di - 1].1;
                }
                let in_outage = outages.iter().any(|&(a, b)| (a..b).contains(&t));
                let err = rng.f64() < if in_outage { 0.4 } else { base_err };
                let dur = if rng.f64() < slow {
                    rng.u64(300_000_000..900_000_000)
                } else {
                    rng.u64(5_000_000..200_000_000)
                };
                // stragglers arrive up to 4 minutes after their end (some late)
                let send = if rng.u8(0..60) == 0 {
                    t + rng.u64(0..4 * MIN)
                } else {
                    t
                };
                spans.push(Sp {
                    send,
                    end: t,
                    dur,
                    service: service.clone(),
                    env,
                    version: format!("{service}-v{v}"),
                    op: ["GET /a", "GET /b", "POST /c"][rng.usize(0..3)],
                    err,
                    invalid: rng.u16(0..400) == 0,
                    attrs: Vec::new(),
                });
            }
            m += MIN;
        }
    }
    // The metrics-only service: one delta histogram per minute, a version change midway,
    // an error burst.
    let mut points: Vec<Point> = Vec::new();
    let burst = start + rng.u64(0..hours * HOUR);
    let mut m = start + MIN;
    while m <= end {
        if !silent(m) {
            let bad = (burst..burst + 10 * MIN).contains(&m);
            points.push(Point {
                time: m,
                ok: [rng.u64(5..40), rng.u64(0..4), rng.u64(0..2)],
                err: [if bad { rng.u64(5..20) } else { rng.u64(0..2) }, 0, 0],
                version: u32::from(m > start + hours * HOUR / 2),
            });
        }
        m += MIN;
    }
    spans.retain(|s| !silent(s.send) && s.send < end);
    spans.sort_by_key(|s| (s.send, s.end));

    // Requests of at most 60 s of event time, in time order; a metrics request after
    // the spans of its minute.
    let mut requests = Vec::new();
    let (mut si, mut pi) = (0, 0);
    let mut t = start;
    let mut last_wall = 0u64;
    while si < spans.len() || pi < points.len() {
        let until = t + rng.u64(5 * S..=60 * S);
        let a = si;
        while si < spans.len() && spans[si].send < until {
            si += 1;
        }
        let b = pi;
        while pi < points.len() && points[pi].time < until {
            pi += 1;
        }
        let wall = |newest: u64, rng: &mut fastrand::Rng| {
            if live {
                newest + rng.u64(0..3 * S)
            } else {
                end + 10 * S
            }
        };
        let mut silence = Vec::new();
        if live {
            for &(x, y) in &silences {
                if (t..until).contains(&y) || (x >= t && x < until) {
                    silence = vec![x + LATENESS / 2, x + LATENESS + S, y - S];
                }
            }
        }
        if si > a {
            let newest = spans[a..si].iter().map(|s| s.send).max().unwrap();
            let w = wall(newest, &mut rng).max(last_wall);
            last_wall = w;
            requests.push(Req {
                signal: Signal::Traces,
                body: trace_request(&spans[a..si]),
                wall: w,
                silence: std::mem::take(&mut silence),
            });
        }
        if pi > b {
            let newest = points[b..pi].iter().map(|p| p.time).max().unwrap();
            let w = wall(newest, &mut rng).max(last_wall);
            last_wall = w;
            requests.push(Req {
                signal: Signal::Metrics,
                body: metrics_request(&points[b..pi]),
                wall: w,
                silence,
            });
        }
        t = until;
    }
    Scenario {
        requests,
        shards,
        live,
    }
}

/// Everything a run produced, as text: counters, every pair and operation, the events,
/// the `sli` and `momentum` rows, sorted where the shard count changes the order.
#[derive(Default)]
struct Outcome {
    sections: Vec<(&'static str, Vec<String>)>,
}

impl Outcome {
    fn add(&mut self, name: &'static str, mut lines: Vec<String>) {
        lines.sort();
        self.sections.push((name, lines));
    }

    /// The first difference from `other`, if any.
    fn diff(&self, other: &Outcome) -> Option<String> {
        for ((n, a), (_, b)) in self.sections.iter().zip(&other.sections) {
            if a == b {
                continue;
            }
            let mut out = format!("{n}: {} lines against {}\n", a.len(), b.len());
            let i = a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            let _ = writeln!(
                out,
                "  single shard: {}",
                a.get(i).map_or("-", |s| s.as_str())
            );
            let _ = writeln!(
                out,
                "  interleaved:  {}",
                b.get(i).map_or("-", |s| s.as_str())
            );
            return Some(out);
        }
        None
    }
}

struct Run {
    p: Inline,
    events: Vec<String>,
    rows: Vec<String>,
    momentum: Vec<String>,
}

impl Run {
    fn new(shards: usize, now: u64) -> Run {
        Run {
            p: Inline::from_yaml(CONFIG, shards, now),
            events: Vec::new(),
            rows: Vec::new(),
            momentum: Vec::new(),
        }
    }

    fn collect(&mut self) {
        self.events
            .extend(self.p.take_events().iter().map(|e| format!("{e:?}")));
        self.rows
            .extend(self.p.take_rows().iter().map(|r| format!("{r:?}")));
        self.momentum
            .extend(self.p.take_momentum().iter().map(|r| format!("{r:?}")));
    }

    fn export(&mut self, r: &Req) {
        self.p.clock.set(r.wall);
        self.p
            .export(r.signal, &r.body)
            .unwrap_or_else(|e| panic!("refused: {e:?}"));
    }

    /// A silence: every shard ticks at each of its wall-clock moments.
    fn silence(&mut self, walls: &[u64]) {
        for &w in walls {
            self.p.clock.set(w);
            for s in 0..self.p.shards() {
                self.p.tick(s);
            }
        }
    }

    fn outcome(&mut self) -> Outcome {
        self.collect();
        let mut o = Outcome::default();
        let c = &self.p.shared.counters;
        let counters = [
            ("processed", &c.processed),
            ("late", &c.late),
            ("invalid", &c.invalid),
            ("accepted_metric_points", &c.accepted_metric_points),
            ("late_metric_points", &c.late_metric_points),
            ("invalid_metric_points", &c.invalid_metric_points),
        ];
        o.add(
            "counters",
            counters
                .iter()
                .map(|(n, v)| format!("{n} {}", v.load(Ordering::SeqCst)))
                .collect(),
        );
        let (pairs, ops) = self.p.snapshot();
        o.add("pairs", pairs.iter().map(|p| format!("{p:?}")).collect());
        o.add(
            "operations",
            ops.iter()
                .map(|op| {
                    let p = &pairs[op.pair];
                    let mut op = op.clone();
                    op.pair = 0;
                    format!("{}/{} {op:?}", p.service, p.environment)
                })
                .collect(),
        );
        o.add("events", self.events.clone());
        o.add("sli rows", self.rows.clone());
        o.add("momentum rows", self.momentum.clone());
        o
    }

    /// The outcome now, a few minutes of silence later, and after shutdown.
    fn finish(&mut self) -> Vec<Outcome> {
        self.p.settle();
        let mut out = vec![self.outcome()];
        let later = self.p.now() + LATENESS + 2 * MIN;
        self.silence(&[self.p.now() + LATENESS + S, later]);
        out.push(self.outcome());
        let (fleet, states) = self.p.shutdown();
        let mut o = self.outcome();
        o.add("fleet", vec![fleet.to_string()]);
        o.add(
            "checkpoint",
            states.iter().map(|s| format!("{s:?}")).collect(),
        );
        out.push(o);
        out
    }
}

/// The single-shard, in-order result of the first `n` requests.
fn reference(sc: &Scenario, n: usize) -> Vec<Outcome> {
    let mut run = Run::new(1, sc.requests[0].wall);
    for r in &sc.requests[..n] {
        if !r.silence.is_empty() {
            run.silence(&r.silence);
        }
        run.export(r);
        run.p.drain();
        run.p.tick(0);
        run.collect();
    }
    run.finish()
}

/// The result of the first `n` requests through `sc.shards` shards, interleaved by the
/// scheduler seeded with `seed`.
fn interleaved(sc: &Scenario, n: usize, seed: u64) -> Vec<Outcome> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_5eed);
    let shards = sc.shards;
    let mut run = Run::new(shards, sc.requests[0].wall);
    let mut next = 0;
    // one shard starved for stretches of requests
    let mut starved: Option<(usize, usize)> = None;
    loop {
        let queued: Vec<usize> = (0..shards).filter(|&s| run.p.queued(s) > 0).collect();
        if next == n && queued.is_empty() {
            break;
        }
        if starved.is_some_and(|(_, until)| next >= until) {
            starved = None;
        }
        if starved.is_none() && rng.u8(0..40) == 0 {
            starved = Some((rng.usize(0..shards), next + rng.usize(5..60)));
        }
        let roll = rng.u8(0..100);
        if next < n && (queued.is_empty() || roll < 35) {
            let r = &sc.requests[next];
            if !r.silence.is_empty() {
                // A silence is wall time: the shards have long caught up when it ends
                // (their lag is a queue of at most a few hundred ms of work).
                run.p.drain();
                run.silence(&r.silence);
            }
            run.export(r);
            next += 1;
        } else if roll < 45 {
            run.p.tick(rng.usize(0..shards));
        } else if !queued.is_empty() {
            let mut choices: Vec<usize> = queued
                .iter()
                .copied()
                .filter(|&s| starved.is_none_or(|(x, _)| x != s || next == n))
                .collect();
            if choices.is_empty() {
                choices = queued;
            }
            let s = choices[rng.usize(0..choices.len())];
            for _ in 0..rng.usize(1..=3) {
                run.p.step(s);
            }
        }
    }
    run.finish()
}

/// The first difference between the single-shard and the interleaved results of the first
/// `n` requests of `seed`.
fn check(seed: u64, sc: &Scenario, n: usize) -> Option<String> {
    let a = reference(sc, n);
    let b = interleaved(sc, n, seed);
    for (stage, (x, y)) in [
        "after the last request",
        "after a silence",
        "after shutdown",
    ]
    .iter()
    .zip(a.iter().zip(&b))
    {
        if let Some(d) = x.diff(y) {
            return Some(format!("{stage}: {d}"));
        }
    }
    None
}

/// Runs `seed`; on a failure, shrinks it to the shortest failing prefix and panics with
/// both.
fn run_seed(seed: u64) -> (usize, bool) {
    let sc = scenario(seed);
    let n = sc.requests.len();
    let Some(first) = check(seed, &sc, n) else {
        return (n, sc.live);
    };
    // shrink: the shortest prefix of the requests that still fails
    let (mut lo, mut hi) = (1, n);
    let mut found = first.clone();
    while lo < hi {
        let mid = (lo + hi) / 2;
        match check(seed, &sc, mid) {
            Some(d) => {
                hi = mid;
                found = d;
            }
            None => lo = mid + 1,
        }
    }
    panic!(
        "seed {seed} ({} shards, {} mode, {n} requests) differs from the single-shard run:\n\
         {first}\nshrunk: the first {hi} requests already differ (MOMENTUM_SEED={seed}):\n{found}",
        sc.shards,
        if sc.live { "live" } else { "replay" },
    );
}

#[test]
fn any_shard_count_and_interleaving_gives_the_single_shard_result() {
    let seeds: Vec<u64> = match std::env::var("MOMENTUM_SEED") {
        Ok(s) => vec![s.parse().expect("MOMENTUM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("MOMENTUM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(200u64);
            (1..=n).collect()
        }
    };
    let (mut requests, mut live) = (0, 0);
    for &seed in &seeds {
        let (n, l) = run_seed(seed);
        requests += n;
        live += usize::from(l);
    }
    eprintln!(
        "{} seeds ({live} live, {} replays), {requests} requests: all equal",
        seeds.len(),
        seeds.len() - live
    );
}

/// The scenarios exercise what they claim to: lateness, invalid spans, alerts,
/// incidents, deployments, lead times across pairs, metrics-derived SLIs.
#[test]
fn the_generated_fleets_exercise_every_signal() {
    let mut seen = std::collections::BTreeMap::<&str, u64>::new();
    for seed in 1..=12 {
        let sc = scenario(seed);
        let out = reference(&sc, sc.requests.len());
        let last = &out[2];
        let lines = |name: &str| {
            last.sections
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, l)| l.clone())
                .unwrap_or_default()
        };
        for l in lines("counters") {
            let (k, v) = l.split_once(' ').unwrap();
            let name = match k {
                "late" => "late spans",
                "invalid" => "invalid spans",
                "accepted_metric_points" => "metric points",
                _ => continue,
            };
            if v.parse::<u64>().unwrap() > 0 {
                *seen.entry(name).or_default() += 1;
            }
        }
        for e in lines("events") {
            for kind in ["alert_start", "incident_open", "deployment", "rollback"] {
                if e.contains(&format!("kind: \"{kind}\"")) {
                    *seen.entry(kind).or_default() += 1;
                }
            }
        }
        for p in lines("pairs") {
            if p.contains("service: \"svc") && !p.contains("lead_count: 0,") {
                *seen.entry("lead times").or_default() += 1;
            }
            if p.contains("service: \"meter\"") && p.contains("metric_bound_ns: Some") {
                *seen.entry("metrics-derived SLIs").or_default() += 1;
            }
        }
    }
    for want in [
        "late spans",
        "invalid spans",
        "metric points",
        "alert_start",
        "incident_open",
        "deployment",
        "lead times",
        "metrics-derived SLIs",
    ] {
        assert!(
            seen.get(want).copied().unwrap_or(0) > 0,
            "no generated fleet has {want}: {seen:?}"
        );
    }
}
