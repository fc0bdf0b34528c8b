//! Immutable snapshots that shards publish on a tick; exporters and the admin API read
//! only these, never shard state.

use std::sync::Arc;

use crate::sli::window::Counts;

/// Windows reported per pair: the seven rolling windows of the README's How it works, then the SLO window.
pub const WINDOW_LABELS: [&str; 8] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "slo"];

/// Quantile windows of service-level latency.
pub const QUANTILE_WINDOWS: [&str; 3] = ["5m", "1h", "1d"];

/// Cumulative latency totals of a series (the summary's `_sum` and `_count`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// requests since the series started
    pub requests: u64,
    /// errors since the series started
    pub errors: u64,
    /// sum of latencies in seconds
    pub latency_sum_s: f64,
    /// latencies summed (span requests; metric-derived requests carry no latency)
    pub latency_count: u64,
}

/// One (service, environment) pair.
#[derive(Clone, Debug)]
pub struct PairView {
    /// service (namespace-prefixed)
    pub service: Arc<str>,
    /// environment ("" when absent)
    pub environment: Arc<str>,
    /// when the series was created (wall clock, Unix ns): the counters' start time
    pub start_ns: u64,
    /// the pair's event-time clock
    pub clock_ns: u64,
    /// cumulative totals
    pub totals: Totals,
    /// counts per window of [`WINDOW_LABELS`] (the SLO window is `None` without an SLO)
    pub windows: [Option<Counts>; 8],
    /// SLO window length when the pair has an objective
    pub slo_window_ns: Option<u64>,
    /// latency objective threshold
    pub threshold_ns: Option<u64>,
    /// while metrics are the service-level source: the bucket bound latency_good counts
    /// up to (the highest at or under the threshold; the README's How it works)
    pub metric_bound_ns: Option<u64>,
    /// p50, p90, p95, p99, p99.9 per [`QUANTILE_WINDOWS`] (None: no requests)
    pub quantiles: [Option<[f64; 5]>; 3],
    /// objectives, burn rates, budgets, alerts, incidents (None without an SLO)
    pub slo: Option<crate::slo::SloState>,
    /// deployments, lead time, pipelines
    pub delivery: DeliveryView,
}

pub use crate::delivery::view::{DeliveryView, DeploymentView, PipelineView, RECENT_DEPLOYMENTS};

/// One per-operation series.
#[derive(Clone, Debug)]
pub struct OpView {
    /// index of its pair in [`ShardView::pairs`]
    pub pair: usize,
    /// operation name
    pub operation: Arc<str>,
    /// creation time (wall clock, Unix ns)
    pub start_ns: u64,
    /// cumulative totals
    pub totals: Totals,
    /// 5m quantiles
    pub quantiles: Option<[f64; 5]>,
    /// trace ids of the slowest requests and latest errors of the last 5 minutes
    pub exemplars: crate::sli::exemplars::ExemplarsView,
}

/// A shard's published state.
#[derive(Clone, Debug, Default)]
pub struct ShardView {
    /// pairs, in creation order
    pub pairs: Vec<PairView>,
    /// per-operation series
    pub ops: Vec<OpView>,
    /// bytes of state the shard holds (estimate)
    pub memory_bytes: usize,
}

impl PairView {
    /// Availability of a window: None without requests (never NaN).
    pub fn availability(&self, i: usize) -> Option<f64> {
        let c = self.windows.get(i).copied().flatten()?;
        (c.requests > 0).then(|| 1.0 - c.errors as f64 / c.requests as f64)
    }
}

/// All pairs and operations of all shards, sorted by identity, with series of the same
/// identity merged. Only `__overflow__` pairs can appear in several shards; their
/// counts add up and the quantiles of the busiest part stand for the whole.
pub fn merged(views: &[Arc<ShardView>]) -> (Vec<PairView>, Vec<(usize, OpView)>) {
    let mut all: Vec<(&PairView, usize, usize)> = Vec::new();
    for (si, v) in views.iter().enumerate() {
        for (pi, p) in v.pairs.iter().enumerate() {
            all.push((p, si, pi));
        }
    }
    all.sort_by(|a, b| (&a.0.service, &a.0.environment).cmp(&(&b.0.service, &b.0.environment)));
    let mut pairs: Vec<PairView> = Vec::with_capacity(all.len());
    let mut index: Vec<Vec<usize>> = views.iter().map(|v| vec![0; v.pairs.len()]).collect();
    for (p, si, pi) in all {
        match pairs.last_mut() {
            Some(last) if last.service == p.service && last.environment == p.environment => {
                let busier = p.totals.requests > last.totals.requests;
                last.totals.requests += p.totals.requests;
                last.totals.errors += p.totals.errors;
                last.totals.latency_sum_s += p.totals.latency_sum_s;
                last.totals.latency_count += p.totals.latency_count;
                last.start_ns = last.start_ns.min(p.start_ns);
                for (a, b) in last.windows.iter_mut().zip(p.windows.iter()) {
                    if let (Some(a), Some(b)) = (a.as_mut(), b) {
                        a.add(b);
                    }
                }
                if busier {
                    last.quantiles = p.quantiles;
                }
            }
            _ => pairs.push(p.clone()),
        }
        index[si][pi] = pairs.len() - 1;
    }
    let mut ops: Vec<(usize, OpView)> = Vec::new();
    for (si, v) in views.iter().enumerate() {
        for op in &v.ops {
            ops.push((index[si][op.pair], op.clone()));
        }
    }
    ops.sort_by(|a, b| (a.0, &a.1.operation).cmp(&(b.0, &b.1.operation)));
    ops.dedup_by(|b, a| {
        if a.0 == b.0 && a.1.operation == b.1.operation {
            a.1.totals.requests += b.1.totals.requests;
            a.1.totals.errors += b.1.totals.errors;
            a.1.totals.latency_sum_s += b.1.totals.latency_sum_s;
            a.1.totals.latency_count += b.1.totals.latency_count;
            true
        } else {
            false
        }
    });
    (pairs, ops)
}
