//! SLIs from metrics (the README's How it works): `http.server.request.duration` and `rpc.server.duration`
//! histograms (explicit-bucket or exponential, delta or cumulative) give a pair
//! requests, errors and latency-good counts. The receiver extracts points per pair
//! ([`extract`]); the shard turns cumulative streams into deltas ([`Streams`]).

use std::hash::Hasher;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, AggregationTemporality};
use rustc_hash::{FxHashMap, FxHasher};

use super::classify::is_error;
use crate::identity::{resource_identity, str_attr};
use crate::model::{rpc_code, status};

/// The metric names that carry server request durations.
pub const HTTP_METRIC: &str = "http.server.request.duration";
/// The RPC one (milliseconds by convention).
pub const RPC_METRIC: &str = "rpc.server.duration";
/// CI/CD pipeline run durations (OTel CICD semantic conventions, seconds).
pub const PIPELINE_METRIC: &str = "cicd.pipeline.run.duration";

/// One histogram point reduced to what the SLIs need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricPoint {
    /// identity of the stream (resource, metric, point attributes)
    pub stream: u64,
    /// start_time_unix_nano
    pub start_ns: u64,
    /// time_unix_nano (the point's event time)
    pub time_ns: u64,
    /// count (cumulative or delta per `cumulative`)
    pub count: u64,
    /// requests at or under the latency threshold (same temporality)
    pub good: u64,
    /// the bucket bound (ns) `good` counts up to: the highest bound at or under the
    /// threshold (the README's How it works: `/api` shows it); 0 without a threshold or such a bound
    pub bound_ns: u64,
    /// the point's attributes make every request of it an error
    pub error: bool,
    /// cumulative temporality
    pub cumulative: bool,
}

/// One `cicd.pipeline.run.duration` histogram point: runs of one pipeline with one
/// result, and their durations by bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunPoint {
    /// identity of the stream (resource, metric, point attributes)
    pub stream: u64,
    /// start_time_unix_nano
    pub start_ns: u64,
    /// time_unix_nano (the point's event time)
    pub time_ns: u64,
    /// runs (cumulative or delta per `cumulative`)
    pub count: u64,
    /// summed durations (s), same temporality; 0 when the point has no sum
    pub sum_s: f64,
    /// cumulative temporality
    pub cumulative: bool,
    /// cicd.pipeline.name ("unnamed" when absent)
    pub name: String,
    /// cicd.pipeline.result
    pub result: String,
    /// bucket upper bounds (s), ascending; `counts` has one more entry (the last bucket
    /// has no upper bound)
    pub bounds: Vec<f64>,
    /// runs per bucket (same temporality as `count`); may be empty (no buckets)
    pub counts: Vec<u64>,
}

/// The points of one pair.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairPoints {
    /// service.namespace
    pub namespace: String,
    /// service.name
    pub name: String,
    /// environment
    pub environment: String,
    /// pair hash (as the router computes it)
    pub hash: u64,
    /// points
    pub points: Vec<MetricPoint>,
    /// pipeline-run histogram points
    pub runs: Vec<RunPoint>,
    /// `service.version` of the resources whose SLI points these are, each with the
    /// first and last point time (metric points report a version too: a service that
    /// exports only metrics deploys)
    pub versions: Vec<(String, u64, u64)>,
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().rev().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    })
}

/// Whether a point's attributes make it an error (the span rules with status unset, plus
/// `error.type` set).
pub fn point_is_error(attrs: &[KeyValue]) -> bool {
    if attrs.iter().any(|kv| kv.key == "error.type") {
        return true;
    }
    let http = int_attr(attrs, "http.response.status_code")
        .or_else(|| int_attr(attrs, "http.status_code"))
        .filter(|c| (100..=999).contains(c))
        .unwrap_or(0) as u16;
    let grpc = int_attr(attrs, "rpc.grpc.status_code")
        .filter(|c| (0..=16).contains(c))
        .map_or(255, |c| c as u8);
    let rpc = match str_attr(attrs, "rpc.status_code") {
        None => rpc_code::ABSENT,
        Some("UNKNOWN") => rpc_code::UNKNOWN,
        Some("DEADLINE_EXCEEDED") => rpc_code::DEADLINE_EXCEEDED,
        Some("UNIMPLEMENTED") => rpc_code::UNIMPLEMENTED,
        Some("INTERNAL") => rpc_code::INTERNAL,
        Some("UNAVAILABLE") => rpc_code::UNAVAILABLE,
        Some("DATA_LOSS") => rpc_code::DATA_LOSS,
        Some(_) => rpc_code::OTHER,
    };
    is_error(status::UNSET, http, grpc, rpc)
}

/// Seconds per unit of a duration metric (None: not a duration unit we know).
pub fn unit_seconds(unit: &str, metric: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" => Some(1e-6),
        "ns" => Some(1e-9),
        "" if metric == RPC_METRIC => Some(1e-3),
        "" => Some(1.0),
        _ => None,
    }
}

fn stream_hash(resource: u64, metric: &str, attrs: &[KeyValue]) -> u64 {
    let mut keys: Vec<(&str, String)> = attrs
        .iter()
        .map(|kv| (kv.key.as_str(), format!("{:?}", kv.value)))
        .collect();
    keys.sort();
    let mut h = FxHasher::default();
    h.write_u64(resource);
    h.write(metric.as_bytes());
    for (k, v) in keys {
        h.write(k.as_bytes());
        h.write_u8(0);
        h.write(v.as_bytes());
        h.write_u8(0);
    }
    h.finish()
}

/// Extracts the duration-histogram points of a request, grouped per pair.
/// Upper bound of positive bucket `i` of an exponential histogram point: base^(offset+i+1)
/// with base = 2^(2^-scale) (scale clamped to OTLP's −10..=20).
fn exp_upper(scale: i32, offset: i32, i: usize) -> f64 {
    let base = 2f64.powf(2f64.powi(-scale.clamp(-10, 20)));
    base.powi(offset.saturating_add(i as i32 + 1))
}

/// `threshold_s(service, environment)` gives the latency objective's threshold (s);
/// identity values are cut to `max_value_bytes` as every signal's are ([`crate::identity`]).
/// Returns the pairs and the number of points it could not use (unknown unit).
pub fn extract(
    req: &ExportMetricsServiceRequest,
    max_value_bytes: usize,
    threshold_s: impl Fn(&str, &str) -> Option<f64>,
) -> (Vec<PairPoints>, u64) {
    let mut out: Vec<PairPoints> = Vec::new();
    let mut unusable = 0u64;
    for rm in &req.resource_metrics {
        let rattrs = rm
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or(&[]);
        let id = resource_identity(rattrs, max_value_bytes);
        let threshold = threshold_s(&id.service(), id.environment);
        let rhash = stream_hash(0, "", rattrs);
        let mut points = Vec::new();
        let mut runs = Vec::new();
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if m.name == PIPELINE_METRIC {
                    match unit_seconds(&m.unit, &m.name) {
                        Some(scale) => pipeline_points(m, scale, rhash, &mut runs),
                        None => unusable += 1,
                    }
                    continue;
                }
                if m.name != HTTP_METRIC && m.name != RPC_METRIC {
                    continue;
                }
                let Some(scale) = unit_seconds(&m.unit, &m.name) else {
                    unusable += 1;
                    continue;
                };
                match &m.data {
                    Some(Data::Histogram(hist)) => {
                        let cumulative = hist.aggregation_temporality
                            == AggregationTemporality::Cumulative as i32;
                        for p in &hist.data_points {
                            let (good, bound) = threshold.map_or((0, 0.0), |th| {
                                p.explicit_bounds
                                    .iter()
                                    .zip(&p.bucket_counts)
                                    .take_while(|(b, _)| **b * scale <= th + 1e-12)
                                    .fold((0, 0.0), |(g, _), (b, c)| (g + *c, *b * scale))
                            });
                            points.push(MetricPoint {
                                stream: stream_hash(rhash, &m.name, &p.attributes),
                                start_ns: p.start_time_unix_nano,
                                time_ns: p.time_unix_nano,
                                count: p.count,
                                good,
                                bound_ns: (bound * 1e9).round() as u64,
                                error: point_is_error(&p.attributes),
                                cumulative,
                            });
                        }
                    }
                    Some(Data::ExponentialHistogram(hist)) => {
                        let cumulative = hist.aggregation_temporality
                            == AggregationTemporality::Cumulative as i32;
                        for p in &hist.data_points {
                            let (good, bound) = threshold.map_or((0, 0.0), |th| {
                                let (mut g, mut bound) = (p.zero_count, 0.0f64);
                                if let Some(pos) = &p.positive {
                                    for (i, c) in pos.bucket_counts.iter().enumerate() {
                                        let upper = exp_upper(p.scale, pos.offset, i) * scale;
                                        if upper <= th * (1.0 + 1e-12) {
                                            g += c;
                                            bound = bound.max(upper);
                                        }
                                    }
                                }
                                (g, bound)
                            });
                            points.push(MetricPoint {
                                stream: stream_hash(rhash, &m.name, &p.attributes),
                                start_ns: p.start_time_unix_nano,
                                time_ns: p.time_unix_nano,
                                count: p.count,
                                good,
                                bound_ns: (bound * 1e9).round() as u64,
                                error: point_is_error(&p.attributes),
                                cumulative,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        if points.is_empty() && runs.is_empty() {
            continue;
        }
        let mut versions = Vec::new();
        let version = id.version;
        if !version.is_empty() && !points.is_empty() {
            let first = points.iter().map(|p| p.time_ns).min().unwrap_or(0);
            let last = points.iter().map(|p| p.time_ns).max().unwrap_or(0);
            versions.push((version.to_string(), first, last));
        }
        let hash = id.hash();
        match out.iter_mut().find(|pp| {
            pp.hash == hash
                && pp.name == id.name
                && pp.namespace == id.namespace
                && pp.environment == id.environment
        }) {
            Some(pp) => {
                pp.points.extend(points);
                pp.runs.extend(runs);
                for (v, first, last) in versions {
                    match pp.versions.iter_mut().find(|x| x.0 == v) {
                        Some(x) => (x.1, x.2) = (x.1.min(first), x.2.max(last)),
                        None => pp.versions.push((v, first, last)),
                    }
                }
            }
            None => out.push(PairPoints {
                namespace: id.namespace.to_string(),
                name: id.name.to_string(),
                environment: id.environment.to_string(),
                hash,
                points,
                runs,
                versions,
            }),
        }
    }
    (out, unusable)
}

/// The points of a `cicd.pipeline.run.duration` metric (explicit-bucket or exponential
/// histogram; other data types are ignored). Bounds are converted to seconds with
/// `scale`; an exponential histogram's negative buckets are left out (durations are not
/// negative) and its zero bucket is a bucket with upper bound 0.
fn pipeline_points(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    scale: f64,
    rhash: u64,
    out: &mut Vec<RunPoint>,
) {
    let point = |attrs: &[KeyValue], start, time, count, sum: Option<f64>, cumulative| RunPoint {
        stream: stream_hash(rhash, &m.name, attrs),
        start_ns: start,
        time_ns: time,
        count,
        sum_s: sum.filter(|x| x.is_finite() && *x >= 0.0).unwrap_or(0.0) * scale,
        cumulative,
        name: str_attr(attrs, "cicd.pipeline.name")
            .filter(|x| !x.is_empty())
            .unwrap_or("unnamed")
            .to_string(),
        result: str_attr(attrs, "cicd.pipeline.result")
            .unwrap_or("")
            .to_string(),
        bounds: Vec::new(),
        counts: Vec::new(),
    };
    match &m.data {
        Some(Data::Histogram(h)) => {
            let cumulative = h.aggregation_temporality == AggregationTemporality::Cumulative as i32;
            for p in &h.data_points {
                let mut r = point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.count,
                    p.sum,
                    cumulative,
                );
                // Well-formed: counts = bounds + 1; anything else is read as no buckets.
                if p.bucket_counts.len() == p.explicit_bounds.len() + 1 {
                    r.bounds = p.explicit_bounds.iter().map(|b| b * scale).collect();
                    r.counts = p.bucket_counts.clone();
                }
                out.push(r);
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            let cumulative = h.aggregation_temporality == AggregationTemporality::Cumulative as i32;
            for p in &h.data_points {
                let mut r = point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.count,
                    p.sum,
                    cumulative,
                );
                r.bounds.push(0.0);
                r.counts.push(p.zero_count);
                if let Some(pos) = &p.positive {
                    for (i, c) in pos.bucket_counts.iter().enumerate() {
                        r.bounds.push(exp_upper(p.scale, pos.offset, i) * scale);
                        r.counts.push(*c);
                    }
                }
                // The last bucket has no upper bound in the explicit form: one empty more.
                r.counts.push(0);
                out.push(r);
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
struct StreamState {
    start_ns: u64,
    /// the point's time (event time), for expiry
    time_ns: u64,
    count: u64,
    good: u64,
    /// summed value (pipeline-run histograms; 0 for SLI streams)
    sum: f64,
    /// bucket counts (pipeline-run histograms; empty for SLI streams)
    buckets: Vec<u64>,
}

/// How a cumulative point relates to its stream's previous point.
enum Step {
    /// counts in full (delta point, new stream started after the process, or a reset)
    Full,
    /// sets the baseline only, or is an older point of a restarted stream
    Nothing,
    /// the difference from this previous state
    Diff(StreamState),
}

/// Cumulative → delta state of the streams of one shard.
///
/// A stream idle for `series_idle` (its newest point older than the pair clock minus
/// `series_idle`) is forgotten: its slot goes back to `max_metric_streams`, and when it
/// reports again its first point only sets a new baseline (its count includes requests
/// already counted). Whether a tick removed it first or the next point finds it stale,
/// the outcome is the same; removed streams leave a tombstone (their id, bounded) so the
/// returning point knows.
#[derive(Debug, Default)]
pub struct Streams {
    map: FxHashMap<u64, StreamState>,
    /// ids of streams removed by [`Streams::expire`], oldest first (bounded)
    tombstones: std::collections::VecDeque<u64>,
    tombstone_set: rustc_hash::FxHashSet<u64>,
}

/// Tombstones kept; beyond, the oldest is dropped (that stream's return then counts as a
/// new stream's first point).
const MAX_TOMBSTONES: usize = 65_536;

impl Streams {
    /// Number of streams held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no stream is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether the stream is known.
    pub fn contains(&self, stream: u64) -> bool {
        self.map.contains_key(&stream)
    }

    /// Records `now` as the stream's state and says how the point counts. A cumulative
    /// stream's first point counts in full when it started at or after `process_start`,
    /// else it only sets the baseline; a stream known before but idle since `horizon`
    /// (or removed as idle) sets a new baseline; a newer start time, a lower count or
    /// another bucket layout is a reset (the point counts in full); an older start time
    /// than the stream's is a stale point of a stream that already restarted (ignored).
    fn step(&mut self, stream: u64, now: StreamState, process_start: u64, horizon: u64) -> Step {
        let start = now.start_ns;
        let count = now.count;
        let layout = now.buckets.len();
        let returned = self.tombstone_set.remove(&stream);
        match self.map.insert(stream, now) {
            None if returned => Step::Nothing,
            None if start >= process_start => Step::Full,
            None => Step::Nothing,
            Some(prev) if prev.time_ns < horizon => Step::Nothing,
            Some(prev)
                if start > prev.start_ns || count < prev.count || layout != prev.buckets.len() =>
            {
                Step::Full
            }
            Some(prev) if start < prev.start_ns => {
                self.map.insert(stream, prev);
                Step::Nothing
            }
            Some(prev) => Step::Diff(prev),
        }
    }

    /// The (requests, good) a point adds. Delta points add themselves; cumulative ones
    /// per [`Streams::step`]; `horizon` = the pair clock minus `series_idle`.
    pub fn delta(&mut self, p: &MetricPoint, process_start: u64, horizon: u64) -> (u64, u64) {
        if !p.cumulative {
            return (p.count, p.good);
        }
        let now = StreamState {
            start_ns: p.start_ns,
            time_ns: p.time_ns,
            count: p.count,
            good: p.good,
            sum: 0.0,
            buckets: Vec::new(),
        };
        match self.step(p.stream, now, process_start, horizon) {
            Step::Full => (p.count, p.good),
            Step::Nothing => (0, 0),
            Step::Diff(prev) => (p.count - prev.count, p.good.saturating_sub(prev.good)),
        }
    }

    /// The (runs, duration sum, runs per bucket) a pipeline-run point adds, by the same
    /// rules as [`Streams::delta`].
    pub fn delta_runs(
        &mut self,
        p: &RunPoint,
        process_start: u64,
        horizon: u64,
    ) -> (u64, f64, Vec<u64>) {
        if !p.cumulative {
            return (p.count, p.sum_s, p.counts.clone());
        }
        let now = StreamState {
            start_ns: p.start_ns,
            time_ns: p.time_ns,
            count: p.count,
            good: 0,
            sum: p.sum_s,
            buckets: p.counts.clone(),
        };
        match self.step(p.stream, now, process_start, horizon) {
            Step::Full => (p.count, p.sum_s, p.counts.clone()),
            Step::Nothing => (0, 0.0, Vec::new()),
            Step::Diff(prev) => (
                p.count - prev.count,
                (p.sum_s - prev.sum).max(0.0),
                p.counts
                    .iter()
                    .zip(&prev.buckets)
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect(),
            ),
        }
    }

    /// Forgets a stream.
    pub fn remove(&mut self, stream: u64) {
        self.map.remove(&stream);
    }

    /// Forgets every stream whose newest point is older than `before` (event time), and
    /// says how many; each leaves a tombstone.
    pub fn expire(&mut self, before: u64) -> usize {
        let n = self.map.len();
        let (tombs, set) = (&mut self.tombstones, &mut self.tombstone_set);
        self.map.retain(|&id, s| {
            let keep = s.time_ns >= before;
            if !keep && set.insert(id) {
                tombs.push_back(id);
            }
            keep
        });
        while self.tombstones.len() > MAX_TOMBSTONES {
            if let Some(old) = self.tombstones.pop_front() {
                self.tombstone_set.remove(&old);
            }
        }
        n - self.map.len()
    }
}

#[cfg(test)]
mod tests;
