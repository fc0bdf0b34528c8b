//! Event-time rules with an injected clock, through the real decoder and shard: late
//! spans, future spans, the watermark moving on while idle, and a historical replay in
//! time order giving the same result as live traffic.

use std::sync::Arc;

use momentum::config::Config;
use momentum::inline::Inline;
use momentum::pipeline::clock::ManualClock;
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
const MIN: u64 = 60 * S;
const T0: u64 = 1_750_000_000 * S;

struct Harness {
    p: Inline,
    clock: Arc<ManualClock>,
}

impl Harness {
    fn new(now: u64) -> Self {
        let p = Inline::new(Config::default(), 1, now);
        Harness {
            clock: p.clock.clone(),
            p,
        }
    }

    /// What a client does: one export request through the receiver, processed at once.
    fn deliver(&mut self, spans: &[(u64, u64, bool)]) {
        self.p
            .send(Signal::Traces, &request(spans))
            .expect("admitted");
    }

    fn pair(&mut self) -> Option<PairView> {
        self.p.settle();
        self.p.snapshot().0.into_iter().next()
    }

    fn counter(
        &self,
        f: impl Fn(&momentum::pipeline::Counters) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        f(&self.p.shared.counters).load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn request(spans: &[(u64, u64, bool)]) -> Vec<u8> {
    let spans = spans
        .iter()
        .enumerate()
        .map(|(i, &(start, end, err))| Span {
            trace_id: vec![1; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("op{}", i % 3),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            status: err.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".into())),
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
    };
    req.encode_to_vec()
}

#[test]
fn late_spans_are_counted_and_left_out() {
    let mut h = Harness::new(T0);
    h.deliver(&[(T0 - S, T0, false)]);
    h.clock.set(T0 + 10 * MIN);
    h.deliver(&[(T0 + 10 * MIN - S, T0 + 10 * MIN, false)]);
    // Watermark is now T0 + 8m: a span ending at T0 + 1m is late, one at T0 + 8m30s is not.
    h.deliver(&[
        (T0 + MIN - S, T0 + MIN, true),
        (T0 + 8 * MIN + 30 * S - S, T0 + 8 * MIN + 30 * S, true),
    ]);
    let p = h.pair().unwrap();
    assert_eq!(h.counter(|c| &c.late), 1);
    assert_eq!(h.counter(|c| &c.processed), 3);
    assert_eq!(p.totals.requests, 3);
    assert_eq!(p.totals.errors, 1);
}

#[test]
fn future_spans_beyond_clock_skew_are_invalid_and_move_no_clock() {
    let mut h = Harness::new(T0);
    h.deliver(&[(T0 - S, T0 + 2 * MIN, false), (T0 - S, T0 + 30 * S, false)]);
    assert_eq!(h.counter(|c| &c.invalid), 1);
    assert_eq!(h.counter(|c| &c.processed), 1);
    let p = h.pair().unwrap();
    assert!(
        p.clock_ns <= T0,
        "a span within skew is counted, but the clock stays at the wall clock"
    );
    assert_eq!(p.totals.requests, 1);
}

#[test]
fn the_watermark_moves_on_when_idle_and_windows_empty() {
    let mut h = Harness::new(T0);
    h.deliver(&[(T0 - S, T0, true)]);
    let p = h.pair().unwrap();
    assert_eq!(p.windows[0].unwrap().errors, 1, "5m window holds the error");
    // No arrivals for 10 minutes of wall time: F follows the wall clock.
    h.clock.set(T0 + 10 * MIN);
    let p = h.pair().unwrap();
    assert_eq!(
        p.clock_ns,
        T0 + 8 * MIN,
        "pair clock = F - allowed_lateness"
    );
    assert_eq!(p.windows[0].unwrap().requests, 0, "5m window emptied");
    assert_eq!(
        p.availability(0),
        None,
        "no requests: no availability, never NaN"
    );
    assert_eq!(p.windows[2].unwrap().errors, 1, "1h window still holds it");
    assert_eq!(p.quantiles[0], None, "no 5m quantiles without requests");
    assert!(p.quantiles[1].is_some());
}

/// Deterministic traffic: (start, end, error) in time order over three hours.
fn traffic() -> Vec<(u64, u64, bool)> {
    let mut out = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut t = T0;
    while t < T0 + 3 * 60 * MIN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += 1 + x % (3 * S);
        let lat = 1_000_000 + x % 400_000_000;
        out.push((t - lat, t, x % 13 == 0));
    }
    out
}

#[test]
fn historical_replay_in_time_order_equals_live() {
    let spans = traffic();
    // Replay: everything at once, at full speed, long after the fact.
    let mut replay = Harness::new(T0 + 30 * 24 * 60 * MIN);
    for chunk in spans.chunks(500) {
        replay.deliver(chunk);
    }
    // Live: the wall clock follows event time, small batches.
    let mut live = Harness::new(T0);
    for chunk in spans.chunks(7) {
        live.clock.set(chunk.last().unwrap().1 + 50_000_000);
        live.deliver(chunk);
    }
    let (a, b) = (replay.pair().unwrap(), live.pair().unwrap());
    assert_eq!(a.clock_ns, b.clock_ns);
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.windows, b.windows);
    assert_eq!(a.quantiles, b.quantiles);
    assert_eq!(replay.counter(|c| &c.late), 0);
    assert_eq!(live.counter(|c| &c.late), 0);
    assert_eq!(a.totals.requests, spans.len() as u64);
    let errors_1h: u64 = spans
        .iter()
        .filter(|s| s.2 && s.1 >= (a.clock_ns / 10 / S + 1) * 10 * S - 60 * MIN)
        .count() as u64;
    assert_eq!(
        a.windows[2].unwrap().errors,
        errors_1h,
        "1h window = newest 360 buckets"
    );
}

/// Every window — 5m, 30m, 1h, 2h (10 s buckets), 6h, 1d, 3d (5-minute buckets) and a
/// 30-day SLO window (hourly buckets) — read at the pair's clock is the newest
/// ⌈w/g⌉ buckets of its granularity g, **the open one included**, at clocks just past and
/// just before every kind of roll-up boundary over four days; and the budget and burn
/// rates the view shows are the documented formulas over exactly those counts.
#[test]
fn every_window_is_its_newest_buckets_with_the_open_one_included() {
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    let yaml = "slos:\n  - service: svc\n    window: 30d\n    objectives:\n      availability: 99.9\n      latency: { threshold: 300ms, target: 99 }\n";
    let start = T0 / DAY * DAY;
    let end = start + 4 * DAY + 90 * MIN;
    // 1 request every 9 s plus a pseudo-random offset; an error and a slow request now
    // and then, more during two outages.
    let mut spans = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut t = start;
    while t < end {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += 9 * S + x % (2 * S);
        let outage = (start + 30 * HOUR..start + 31 * HOUR).contains(&t)
            || (end - 50 * MIN..end - 40 * MIN).contains(&t);
        let err = x % if outage { 3 } else { 211 } == 0;
        let lat = if x % 97 == 0 { 400_000_000 } else { 20_000_000 };
        spans.push((t - lat, t, err));
    }
    // Clocks to stop at: just past and just before hour, 5-minute and 10-second
    // boundaries, and mid-bucket, near the end (3d needs 3 days of history behind it).
    let marks = [
        end - 61 * MIN,
        end - 60 * MIN + S,
        end - 55 * MIN - S,
        end - 35 * MIN + 5 * S,
        end - 20 * MIN + 10 * S,
        end - 10 * MIN + 19 * S,
        end - S,
    ];
    let mut p = Inline::from_yaml(yaml, 1, end + 10 * S);
    let mut sent = 0;
    let windows = [
        (5 * MIN, 10 * S),
        (30 * MIN, 10 * S),
        (HOUR, 10 * S),
        (2 * HOUR, 10 * S),
        (6 * HOUR, 5 * MIN),
        (DAY, 5 * MIN),
        (3 * DAY, 5 * MIN),
        (30 * DAY, HOUR),
    ];
    let mut checked = 0;
    for mark in marks {
        let upto = spans.partition_point(|s| s.1 <= mark);
        for chunk in spans[sent..upto].chunks(6) {
            p.send(Signal::Traces, &request(chunk)).expect("admitted");
        }
        sent = upto;
        let v = p.pair("svc", "").expect("the pair");
        let clock = v.clock_ns;
        assert_eq!(clock, spans[upto - 1].1, "the clock is the newest span");
        for (i, &(w, g)) in windows.iter().enumerate() {
            let from = (clock / g + 1 - w.div_ceil(g)) * g;
            let inside = || spans[..upto].iter().filter(|s| s.1 >= from);
            let requests = inside().count() as u64;
            let errors = inside().filter(|s| s.2).count() as u64;
            let good = inside().filter(|s| s.1 - s.0 <= 300_000_000).count() as u64;
            let got = v.windows[i].expect("every window is present with an SLO");
            assert_eq!(
                (got.requests, got.errors, got.good),
                (requests, errors, good),
                "window {} at clock {} (mark {mark})",
                momentum::view::WINDOW_LABELS[i],
                clock - start
            );
            let slo = v.slo.as_ref().expect("an SLO");
            let (avail, lat) = (&slo.states[0], &slo.states[1]);
            let burn = |bad: u64, t: f64| {
                if requests == 0 {
                    0.0
                } else {
                    bad as f64 / requests as f64 / (1.0 - t)
                }
            };
            if i == 7 {
                let want = 1.0 - errors as f64 / (requests as f64 * (1.0 - 0.999));
                assert!(
                    (avail.budget_remaining - want).abs() < 1e-9,
                    "{avail:?} {want}"
                );
                let want = 1.0 - (requests - good) as f64 / (requests as f64 * (1.0 - 0.99));
                assert!((lat.budget_remaining - want).abs() < 1e-9, "{lat:?} {want}");
            }
            // burn rates are kept for 5m, 30m, 1h, 2h, 6h, 1d, 3d and the SLO window
            assert!(
                (avail.burn[i] - burn(errors, 0.999)).abs() < 1e-9,
                "burn {i}: {avail:?}"
            );
            assert!(
                (lat.burn[i] - burn(requests - good, 0.99)).abs() < 1e-9,
                "burn {i}: {lat:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, marks.len() * windows.len());
    assert_eq!(
        p.shared
            .counters
            .late
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
