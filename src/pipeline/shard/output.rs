//! What a shard hands out: `sli` and `momentum` archive rows as windows close, and the
//! snapshot ([`ShardView`]) exporters and the API read.

use std::sync::Arc;

use super::pairs::{source_at, Op, Pair};
use super::ShardCore;
use crate::archive::{MomentumRow, SliRow};
use crate::pipeline::Settings;
use crate::sli::series::{quantiles, ArchivedWindow};
use crate::sli::sketch::Mapping;
use crate::sli::window::{DAY, HOUR, MIN, WINDOWS};
use crate::view::{OpView, PairView, ShardView};

/// Closes the latency sub-windows of a pair and its operations up to `wm`, turning
/// every finished archive window into an `sli` row; returns the (start, end) of each
/// service-level archive window closed.
pub(super) fn close_series(
    p: &mut Pair,
    ops: &mut [Option<Op>],
    m: &Mapping,
    rows: &mut Vec<SliRow>,
    wm: u64,
) -> Vec<(u64, u64)> {
    let good = p.threshold_ns.is_some();
    let (service, env) = (p.service.clone(), p.environment.clone());
    let empty: Arc<str> = Arc::from("");
    let mut closed = Vec::new();
    p.latency.close_upto(wm, |w| {
        closed.push((w.start, w.end));
        rows.push(sli_row(m, &service, &env, &empty, good, w))
    });
    for &oid in &p.ops {
        if let Some(Some(op)) = ops.get_mut(oid as usize) {
            let name = op.name.clone();
            op.latency.close_upto(wm, |w| {
                rows.push(sli_row(m, &service, &env, &name, good, w))
            });
        }
    }
    closed
}

fn sli_row(
    m: &Mapping,
    service: &Arc<str>,
    env: &Arc<str>,
    op: &Arc<str>,
    good: bool,
    w: &ArchivedWindow<'_>,
) -> SliRow {
    let q = w.sub.sketch.quantiles(m, &[0.5, 0.95, 0.99]);
    SliRow {
        window_start_ns: w.start,
        window_end_ns: w.end,
        service: service.clone(),
        environment: env.clone(),
        operation: op.clone(),
        requests: w.sub.counts.requests,
        errors: w.sub.counts.errors,
        latency_good: good.then_some(w.sub.counts.good),
        latency_p50_s: q.map(|q| q[0]),
        latency_p95_s: q.map(|q| q[1]),
        latency_p99_s: q.map(|q| q[2]),
        latency_max_s: (w.sub.counts.requests > 0).then_some(w.sub.max_ns as f64 * 1e-9),
        latency_sketch: w.sub.sketch.encode_ddsketch(m),
    }
}

/// The SLO state of a pair at event time `t`: burn rates and budgets over the windows at
/// `t` (the open bucket included), alert and incident state from the latest evaluation.
fn slo_at(p: &Pair, t: u64) -> Option<crate::slo::SloState> {
    let w = source_at(&p.windows, &p.mwindows, p.last_metric, t);
    p.slo.as_ref().map(|s| s.at(w, t))
}

/// Delivery signals and the momentum index of a pair at event time `at`.
fn delivery_view(p: &Pair, set: &Settings, at: u64) -> crate::view::DeliveryView {
    use crate::delivery::index;
    use crate::sli::rank::of_sorted as nearest_rank;
    let mut d = p.delivery.view(at, &set.delivery);
    let slo = slo_at(p, at);
    let restores = slo
        .as_ref()
        .map(|s| s.restores_sorted_upto(at))
        .unwrap_or_default();
    let budgets: Vec<f64> = slo
        .as_ref()
        .map(|s| s.states.iter().map(|st| st.budget_remaining).collect())
        .unwrap_or_default();
    d.lead_time_median_s = nearest_rank(&d.lead_times, 0.5);
    d.time_to_restore_median_s = nearest_rank(&restores, 0.5);
    d.components = index::Components {
        throughput: d.deploy_frequency.map(index::throughput),
        lead_time: d.lead_time_median_s.map(index::lead_time),
        stability: d.change_failure.map(index::stability),
        recovery: d.time_to_restore_median_s.map(index::recovery),
        reliability: index::reliability(&budgets),
    };
    d.index = d.components.index(&set.weights);
    d
}

impl ShardCore {
    /// One `momentum` row per closed archive window of a pair: the index, its components
    /// and the values behind them at event time `at`, the instant the window closed.
    pub(super) fn momentum_rows(&mut self, pid: u32, at: u64, closed: &[(u64, u64)]) {
        let p = &self.pairs[pid as usize];
        let d = delivery_view(p, &self.set, at);
        let five =
            source_at(&p.windows, &p.mwindows, p.last_metric, at).window(5 * MIN, at, u64::MAX);
        let slo = slo_at(p, at);
        let states = slo.as_ref().map(|s| &s.states[..]).unwrap_or_default();
        let burn_1h = states
            .iter()
            .map(|s| s.burn[crate::slo::Window::H1 as usize])
            .reduce(f64::max);
        let budget = states.iter().map(|s| s.budget_remaining).reduce(f64::min);
        let c = &d.components;
        let row = MomentumRow {
            window_start_ns: 0,
            window_end_ns: 0,
            service: p.service.clone(),
            environment: p.environment.clone(),
            index: d.index,
            throughput: c.throughput,
            lead_time: c.lead_time,
            stability: c.stability,
            recovery: c.recovery,
            reliability: c.reliability,
            deploy_frequency_per_day: d.deploy_frequency,
            lead_time_s: d.lead_time_median_s,
            change_failure_ratio: d.change_failure,
            time_to_restore_s: d.time_to_restore_median_s,
            availability_5m: (five.requests > 0)
                .then(|| 1.0 - five.errors as f64 / five.requests as f64),
            burn_rate_1h: burn_1h,
            error_budget_remaining: budget,
        };
        for &(start, end) in closed {
            self.momentum.push(MomentumRow {
                window_start_ns: start,
                window_end_ns: end,
                ..row.clone()
            });
        }
    }

    /// Builds the snapshot exporters read: every pair at its clock.
    pub fn view(&mut self) -> ShardView {
        let idle = self.set.series_idle;
        let mut v = ShardView::default();
        let mut index = vec![usize::MAX; self.pairs.len()];
        let mut mem = 0usize;
        for (pid, p) in self.pairs.iter().enumerate() {
            mem += p.windows.memory_bytes() + p.latency.memory_bytes();
            // An open incident, a page or an undecided deployment keeps an idle pair in view.
            let alarmed = p
                .slo
                .as_ref()
                .is_some_and(|s| s.incident.is_some() || s.paging())
                || p.delivery.pending() > 0;
            let last = p.last_event.max(p.last_metric);
            if last == 0 || (p.clock.saturating_sub(last) > idle && !alarmed) {
                continue;
            }
            let src = p.source();
            let mut windows = [None; 8];
            for (i, (_, w)) in WINDOWS.iter().enumerate() {
                windows[i] = Some(src.window(*w, p.clock, u64::MAX));
            }
            if let Some(w) = p.slo_window {
                windows[7] = Some(src.window(w, p.clock, u64::MAX));
            }
            let mut qs = [None; 3];
            for (i, w) in [5 * MIN, HOUR, DAY].iter().enumerate() {
                p.latency.window_sketch(*w, p.clock, &mut self.scratch);
                qs[i] = quantiles(&self.mapping, &self.scratch);
            }
            index[pid] = v.pairs.len();
            v.pairs.push(PairView {
                service: p.service.clone(),
                environment: p.environment.clone(),
                start_ns: p.start_ns,
                clock_ns: p.clock,
                totals: p.totals,
                windows,
                slo_window_ns: p.slo_window,
                threshold_ns: p.threshold_ns,
                metric_bound_ns: p.metric_bound_ns.filter(|_| p.metrics_active()),
                quantiles: qs,
                slo: slo_at(p, p.clock),
                delivery: delivery_view(p, &self.set, p.clock),
            });
        }
        for op in self.ops.iter().flatten() {
            mem += op.latency.memory_bytes();
            let pi = index[op.pair as usize];
            if pi == usize::MAX {
                continue;
            }
            let p = &self.pairs[op.pair as usize];
            if p.clock.saturating_sub(op.last_event) > idle {
                continue;
            }
            op.latency
                .window_sketch(5 * MIN, p.clock, &mut self.scratch);
            v.ops.push(OpView {
                pair: pi,
                operation: op.name.clone(),
                start_ns: op.start_ns,
                totals: op.totals,
                quantiles: quantiles(&self.mapping, &self.scratch),
                exemplars: op.exemplars.view(p.clock),
            });
        }
        v.memory_bytes = mem;
        v
    }
}
