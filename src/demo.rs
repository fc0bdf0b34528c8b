//! `momentum demo`: a synthetic fleet with a story, sent as real OTLP over the wire to the
//! processor running in the same process, so a newcomer sees every signal at once.
//!
//! The story (`docs/demo.md`), over the two days before the start, replayed in event-time
//! order at full speed (as the process's only traffic, which gives what live traffic
//! gives), then live:
//!
//! - five services (checkout, payments, catalog, search, inventory) with their own
//!   latency and error mixes and a daily traffic curve;
//! - every ~9 hours a release per service, each built by a CI pipeline run whose
//!   `vcs.ref.head.revision` is the version it ships (lead time), every third one after
//!   a failed run of the same revision;
//! - payments' third release is a canary: 10 % of its traffic for 30 minutes, then all;
//! - five hours before the start checkout ships 2.0.0, which fails 30 % of its requests
//!   and is 4× slower: a page alert, an incident, a rollback to the previous version 25
//!   minutes later, recovery; 2.0.1 fixes it three hours later.
//!
//! Live, every second brings a second of traffic for every service at its current
//! version.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span, Span};
use prost::Message;

use crate::config::OtlpProtocol;
use crate::export::forward::client::Client;
use crate::loadgen::{self, kv, s, Behaviour, Counts, Service};

const MIN: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

/// How much history is replayed before the live traffic.
pub const REPLAY: u64 = 2 * DAY;

/// One phase of a service: from `from_ns`, its traffic is split over `mix`
/// (version, share of the requests, behaviour).
#[derive(Clone, Debug)]
struct Phase {
    from_ns: u64,
    mix: Vec<(String, f64, Behaviour)>,
}

/// One CI/CD pipeline run.
#[derive(Clone, Debug)]
struct Run {
    start_ns: u64,
    end_ns: u64,
    revision: String,
    failed: bool,
    id: String,
}

/// The fleet and what happens to it.
#[derive(Clone, Debug)]
pub struct Story {
    fleet: Vec<Service>,
    /// per service, phases in time order
    phases: Vec<Vec<Phase>>,
    /// per service, pipeline runs in end-time order
    runs: Vec<Vec<Run>>,
    /// the first replayed instant
    pub start_ns: u64,
    /// where the replay ends and live traffic begins
    pub now_ns: u64,
}

/// Requests a second per service (the middle of the daily curve).
const RATE: f64 = 1.0;

impl Story {
    /// The story of the two days before `now_ns`.
    pub fn new(now_ns: u64) -> Story {
        let now_ns = now_ns - now_ns % MIN;
        let start_ns = now_ns - REPLAY;
        let fleet = loadgen::fleet(5);
        let bad_at = now_ns - 5 * HOUR;
        let mut phases = Vec::new();
        let mut runs = Vec::new();
        for (i, svc) in fleet.iter().enumerate() {
            let ok = Behaviour {
                error_ratio: svc.error_ratio,
                slowdown: 1.0,
            };
            // versions unique across the fleet: lead time matches them process-wide
            let version = |k: usize| format!("{}.{}.{k}", i + 1, 4 + i % 3);
            let mut ph = vec![Phase {
                from_ns: start_ns,
                mix: vec![(version(0), 1.0, ok)],
            }];
            let mut releases: Vec<(u64, String)> = Vec::new();
            let mut k = 0;
            loop {
                let at = start_ns + 3 * HOUR + i as u64 * 50 * MIN + k as u64 * 9 * HOUR;
                if at + 40 * MIN > now_ns {
                    break;
                }
                k += 1;
                // checkout's bad release and its aftermath stand alone
                if svc.name == "checkout" && at + 2 * HOUR > bad_at && at < bad_at + 3 * HOUR {
                    continue;
                }
                let (v, old) = (version(k), ph.last().map(|p| p.mix[0].0.clone()));
                if svc.name == "payments" && k == 3 {
                    let old = old.unwrap_or_default();
                    ph.push(Phase {
                        from_ns: at,
                        mix: vec![(old, 0.9, ok), (v.clone(), 0.1, ok)],
                    });
                    ph.push(Phase {
                        from_ns: at + 30 * MIN,
                        mix: vec![(v.clone(), 1.0, ok)],
                    });
                } else {
                    ph.push(Phase {
                        from_ns: at,
                        mix: vec![(v.clone(), 1.0, ok)],
                    });
                }
                releases.push((at, v));
            }
            if svc.name == "checkout" {
                let before = ph
                    .iter()
                    .rev()
                    .find(|p| p.from_ns <= bad_at)
                    .map(|p| p.mix[0].0.clone())
                    .unwrap_or_else(|| version(0));
                let bad = Behaviour {
                    error_ratio: 0.3,
                    slowdown: 4.0,
                };
                ph.retain(|p| p.from_ns < bad_at);
                ph.push(Phase {
                    from_ns: bad_at,
                    mix: vec![("2.0.0".into(), 1.0, bad)],
                });
                // the rollback: the version before it runs again
                ph.push(Phase {
                    from_ns: bad_at + 25 * MIN,
                    mix: vec![(before, 1.0, ok)],
                });
                ph.push(Phase {
                    from_ns: bad_at + 3 * HOUR,
                    mix: vec![("2.0.1".into(), 1.0, ok)],
                });
                releases.retain(|(at, _)| *at < bad_at);
                releases.push((bad_at, "2.0.0".into()));
                releases.push((bad_at + 3 * HOUR, "2.0.1".into()));
            }
            ph.sort_by_key(|p| p.from_ns);
            // every release is built first; every third one after a failed run
            let mut rs = Vec::new();
            for (n, (at, v)) in releases.iter().enumerate() {
                let start = at - (40 + 17 * (n as u64 % 3)) * MIN;
                let took = (6 + (n as u64 * 5) % 7) * MIN;
                if n % 3 == 2 {
                    let failed_start = start - 35 * MIN;
                    rs.push(Run {
                        start_ns: failed_start,
                        end_ns: failed_start + 4 * MIN,
                        revision: v.clone(),
                        failed: true,
                        id: format!("{}-{n}-1", svc.name),
                    });
                }
                rs.push(Run {
                    start_ns: start,
                    end_ns: start + took,
                    revision: v.clone(),
                    failed: false,
                    id: format!("{}-{n}", svc.name),
                });
            }
            rs.retain(|r| r.start_ns >= start_ns);
            rs.sort_by_key(|r| r.end_ns);
            phases.push(ph);
            runs.push(rs);
        }
        Story {
            fleet,
            phases,
            runs,
            start_ns,
            now_ns,
        }
    }

    /// The services of the story.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.fleet.iter().map(|s| s.name.as_str())
    }

    /// One request with the traffic of every service for `[from_ns, to_ns)` and the
    /// pipeline runs that ended in it; `rate` requests a second per service at the middle
    /// of the daily curve.
    fn slice(
        &self,
        (from_ns, to_ns): (u64, u64),
        rate: f64,
        rng: &mut fastrand::Rng,
    ) -> (ExportTraceServiceRequest, u64) {
        let mut req = ExportTraceServiceRequest::default();
        let mut spans_total = 0u64;
        // a daily curve: quietest at 04:00 UTC, busiest at 16:00
        let day = ((from_ns % DAY) as f64 / DAY as f64 - 1.0 / 6.0) * std::f64::consts::TAU;
        let load = 1.0 - 0.5 * day.cos();
        let secs = (to_ns - from_ns) as f64 / 1e9;
        for (i, svc) in self.fleet.iter().enumerate() {
            let phase = self.phases[i]
                .iter()
                .rev()
                .find(|p| p.from_ns <= from_ns)
                .unwrap_or(&self.phases[i][0]);
            let expected = rate * load * secs;
            let n = expected.floor() as usize + usize::from(rng.f64() < expected.fract());
            for (version, share, b) in &phase.mix {
                let k = if *share >= 1.0 {
                    n
                } else {
                    (0..n).filter(|_| rng.f64() < *share).count()
                };
                if k == 0 {
                    continue;
                }
                let spans = loadgen::server_spans(svc, *b, k, (from_ns, to_ns), rng);
                spans_total += spans.len() as u64;
                req.resource_spans
                    .push(loadgen::resource_spans(&svc.name, Some(version), spans));
            }
            let runs: Vec<Span> = self.runs[i]
                .iter()
                .filter(|r| r.end_ns >= from_ns && r.end_ns < to_ns)
                .map(|r| run_span(&svc.name, r, rng))
                .collect();
            if !runs.is_empty() {
                spans_total += runs.len() as u64;
                // the CI system's resource: no service.version (a build is not what runs)
                req.resource_spans
                    .push(loadgen::resource_spans(&svc.name, None, runs));
            }
        }
        (req, spans_total)
    }
}

/// A pipeline run span: SERVER, with `cicd.pipeline.*` and the revision it built.
fn run_span(service: &str, r: &Run, rng: &mut fastrand::Rng) -> Span {
    Span {
        trace_id: rng.u128(1..).to_be_bytes().to_vec(),
        span_id: rng.u64(1..).to_be_bytes().to_vec(),
        name: format!("{service} build"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: r.start_ns,
        end_time_unix_nano: r.end_ns,
        attributes: vec![
            kv("cicd.pipeline.name", s(&format!("{service} build"))),
            kv(
                "cicd.pipeline.result",
                s(if r.failed { "failure" } else { "success" }),
            ),
            kv("cicd.pipeline.run.id", s(&r.id)),
            kv("vcs.ref.head.revision", s(&r.revision)),
        ],
        ..Default::default()
    }
}

/// How long the replay of [`REPLAY`] takes at most; it goes faster when the processor is
/// slower than this pace.
const REPLAY_PACE: Duration = Duration::from_secs(20);

/// Sends the story to `endpoint` (OTLP/gRPC): the replay, then a second of live traffic
/// every second, until the task is dropped.
pub async fn run(
    endpoint: &http::Uri,
    story: Story,
    counts: &Counts,
) -> Result<(), loadgen::LoadgenError> {
    let client = Client::new(endpoint, OtlpProtocol::Grpc, Default::default(), None, 2)?;
    let mut rng = fastrand::Rng::with_seed(0x64656d6f);
    let step = MIN;
    let steps = (story.now_ns - story.start_ns) / step;
    let per_step = REPLAY_PACE / steps.max(1) as u32;
    let began = std::time::Instant::now();
    let mut t = story.start_ns;
    let mut k = 0u32;
    while t < story.now_ns {
        let (req, spans) = story.slice((t, t + step), RATE, &mut rng);
        send(&client, req, spans, counts).await;
        t += step;
        k += 1;
        let due = began + per_step * k;
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    tracing::info!(
        spans = counts.sent.load(std::sync::atomic::Ordering::Relaxed),
        took_ms = began.elapsed().as_millis() as u64,
        "demo: two days replayed; live traffic from now on"
    );
    // live: from where the replay ended, a slice each second up to the wall clock
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = loadgen::now_ns();
        if now <= t {
            continue;
        }
        let (req, spans) = story.slice((t, now), RATE * 2.0, &mut rng);
        t = now;
        send(&client, req, spans, counts).await;
    }
}

async fn send(client: &Client, req: ExportTraceServiceRequest, spans: u64, counts: &Counts) {
    if spans == 0 {
        return;
    }
    let body = Bytes::from(req.encode_to_vec());
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    loadgen::send(client, &body, spans, counts, give_up).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_has_releases_a_canary_a_bad_release_and_runs_before_each_release() {
        let now = 1_790_000_000_000_000_000;
        let st = Story::new(now);
        assert_eq!(st.now_ns - st.start_ns, REPLAY);
        let checkout = st.fleet.iter().position(|s| s.name == "checkout").unwrap();
        let payments = st.fleet.iter().position(|s| s.name == "payments").unwrap();
        let versions = |i: usize| -> Vec<String> {
            st.phases[i]
                .iter()
                .flat_map(|p| p.mix.iter().map(|m| m.0.clone()))
                .collect()
        };
        // the bad release, then the version before it again (the rollback), then the fix
        let v = versions(checkout);
        let bad = v.iter().position(|x| x == "2.0.0").unwrap();
        assert_eq!(v[bad + 1], v[bad - 1]);
        assert_eq!(v[bad + 2], "2.0.1");
        // the canary phase splits traffic between two versions
        assert!(st.phases[payments].iter().any(|p| p.mix.len() == 2));
        // every released version after the first was built by a successful run first
        for (i, ph) in st.phases.iter().enumerate() {
            for p in &ph[1..] {
                let (v, _, _) = p.mix.last().unwrap();
                if p.mix.len() == 1
                    && ph
                        .iter()
                        .filter(|q| q.mix.iter().any(|m| &m.0 == v))
                        .count()
                        > 1
                {
                    continue; // the rollback, or a canary's second phase
                }
                assert!(
                    st.runs[i]
                        .iter()
                        .any(|r| &r.revision == v && !r.failed && r.end_ns <= p.from_ns),
                    "{} {v}: no run before it",
                    st.fleet[i].name
                );
            }
        }
        assert!(st.runs.iter().flatten().any(|r| r.failed));
    }

    #[test]
    fn a_slice_carries_every_service_and_the_runs_that_ended_in_it() {
        let st = Story::new(1_790_000_000_000_000_000);
        let mut rng = fastrand::Rng::with_seed(1);
        let run = &st.runs[0][0];
        let from = run.end_ns - run.end_ns % MIN;
        let (req, spans) = st.slice((from, from + MIN), 5.0, &mut rng);
        let names: std::collections::BTreeSet<String> = req
            .resource_spans
            .iter()
            .filter_map(|r| {
                r.resource
                    .as_ref()?
                    .attributes
                    .iter()
                    .find(|a| a.key == "service.name")
                    .map(|a| format!("{:?}", a.value))
            })
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        let total: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(total as u64, spans);
        assert!(req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .any(|s| s.attributes.iter().any(|a| a.key == "cicd.pipeline.run.id")));
        for s in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            if s.attributes.iter().any(|a| a.key == "cicd.pipeline.run.id") {
                continue;
            }
            assert!(s.end_time_unix_nano >= from && s.end_time_unix_nano < from + MIN);
        }
    }
}
