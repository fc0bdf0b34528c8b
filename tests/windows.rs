//! Event-time rules with an injected clock, through the real decoder and shard: late
//! spans, future spans, the watermark moving on while idle, and a historical replay in
//! time order giving the same result as live traffic.

use std::sync::Arc;

use bytes::Bytes;
use momentum::config::Config;
use momentum::model::TraceBatch;
use momentum::pipeline::clock::ManualClock;
use momentum::pipeline::router::resource_hash;
use momentum::pipeline::shard::ShardCore;
use momentum::pipeline::{Settings, Shared};
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::validate_spans;
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
    clock: Arc<ManualClock>,
    shared: Arc<Shared>,
    shard: ShardCore,
}

impl Harness {
    fn new(now: u64) -> Self {
        let set = Arc::new(Settings::from_config(Arc::new(Config::default())));
        let clock = ManualClock::new(now);
        let shared = Shared::new(clock.clone());
        let shard = ShardCore::new(set, shared.clone());
        Harness {
            clock,
            shared,
            shard,
        }
    }

    /// What the receiver does with a request: decode, validate, note the fleet clock,
    /// hand the batch to the shard.
    fn deliver(&mut self, spans: &[(u64, u64, bool)]) {
        let mut batch = batch(spans);
        let now = self.clock.now_ns();
        let v = validate_spans(&mut batch, now, MIN);
        self.shared.fleet.observe(now, 0);
        let _ = v;
        let hashes: Vec<u64> = batch
            .resources
            .iter()
            .map(|r| resource_hash(&batch.buf, r))
            .collect();
        self.shard.ingest(&batch, &hashes);
    }

    fn pair(&mut self) -> Option<PairView> {
        self.shard.tick();
        self.shard.view().pairs.into_iter().next()
    }

    fn counter(
        &self,
        f: impl Fn(&momentum::pipeline::Counters) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        f(&self.shared.counters).load(std::sync::atomic::Ordering::Relaxed)
    }
}

use momentum::pipeline::clock::Clock;

fn batch(spans: &[(u64, u64, bool)]) -> TraceBatch {
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
    decode_traces(
        Bytes::from(req.encode_to_vec()),
        &DecodeOptions {
            max_value_bytes: 256,
        },
    )
    .unwrap()
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
