//! A bounded in-memory history of every pair's headline numbers, for the dashboard at the
//! admin `/` (`/api/v1/services/{name}/history`): at most a point a minute of the pair's
//! event time, sampled from the shards' published views.
//!
//! Bounded in total, not per pair: [`TOTAL_POINTS`] over all pairs (a pair keeps
//! `TOTAL_POINTS / pairs`, between 16 and [`MAX_POINTS`], the oldest dropped first), and a
//! pair that leaves the views (evicted) leaves the history. A replay at full speed moves
//! event time faster than the sampling, so its points are further apart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::pipeline::router::Router;
use crate::view::{merged, PairView};

/// Points kept over all pairs (~100 bytes each).
pub const TOTAL_POINTS: usize = 100_000;
/// Points kept for one pair: two days at one a minute.
pub const MAX_POINTS: usize = 2 * 24 * 60;
/// Event time between two points of a pair, at least.
const SPACING_NS: u64 = 60_000_000_000;
/// How often the views are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// One point of a pair.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    /// the pair's clock (Unix ms)
    pub t_ms: u64,
    /// requests since the series was created (cumulative)
    pub requests: u64,
    /// errors since the series was created (cumulative)
    pub errors: u64,
    /// p99 latency over 5m (s)
    pub p99_5m_seconds: Option<f64>,
    /// availability over 5m
    pub availability_5m: Option<f64>,
    /// error budget remaining of the availability objective
    pub availability_budget: Option<f64>,
    /// error budget remaining of the latency objective
    pub latency_budget: Option<f64>,
    /// the highest burn rate over 1h of the objectives
    pub burn_1h: Option<f64>,
    /// the momentum index
    pub index: Option<f64>,
    /// its components, in the order of `delivery::index::COMPONENTS` (throughput,
    /// lead_time, stability, recovery, reliability)
    pub components: [Option<f64>; 5],
    /// an incident is open
    pub incident: bool,
}

impl Point {
    fn of(p: &PairView) -> Point {
        let budget = |kind: usize| {
            let slo = p.slo.as_ref()?;
            slo.objectives
                .iter()
                .zip(&slo.states)
                .find(|(o, _)| o.kind == kind)
                .map(|(_, st)| st.budget_remaining)
        };
        Point {
            t_ms: p.clock_ns / 1_000_000,
            requests: p.totals.requests,
            errors: p.totals.errors,
            p99_5m_seconds: p.quantiles[0].map(|q| q[3]),
            availability_5m: p.availability(0),
            availability_budget: budget(0),
            latency_budget: budget(1),
            burn_1h: p.slo.as_ref().and_then(|slo| {
                // WINDOWS order: 5m, 30m, 1h, …
                slo.states.iter().map(|st| st.burn[2]).reduce(f64::max)
            }),
            index: p.delivery.index,
            components: std::array::from_fn(|i| p.delivery.components.get(i)),
            incident: p.slo.as_ref().is_some_and(|s| s.incident.is_some()),
        }
    }
}

type Key = (Arc<str>, Arc<str>);

/// The history of every pair in the views.
#[derive(Debug, Default)]
pub struct History {
    pairs: Mutex<HashMap<Key, VecDeque<Point>>>,
}

impl History {
    /// Records a point for every pair whose clock moved a minute since its last point;
    /// forgets pairs that are no longer in `pairs`.
    pub fn record(&self, pairs: &[PairView]) {
        let cap = (TOTAL_POINTS / pairs.len().max(1)).clamp(16, MAX_POINTS);
        let mut h = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() > pairs.len() {
            let present: std::collections::HashSet<(&str, &str)> = pairs
                .iter()
                .map(|p| (&*p.service, &*p.environment))
                .collect();
            h.retain(|(s, e), _| present.contains(&(&**s, &**e)));
        }
        for p in pairs {
            let points = h
                .entry((p.service.clone(), p.environment.clone()))
                .or_default();
            let due = points
                .back()
                .is_none_or(|last| p.clock_ns / 1_000_000 >= last.t_ms + SPACING_NS / 1_000_000);
            if due {
                points.push_back(Point::of(p));
            }
            while points.len() > cap {
                points.pop_front();
            }
        }
    }

    /// The points of one pair, oldest first.
    pub fn points(&self, service: &str, environment: &str) -> Vec<Point> {
        let h = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        h.iter()
            .find(|((s, e), _)| &**s == service && &**e == environment)
            .map(|(_, v)| v.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Points held over all pairs.
    pub fn len(&self) -> usize {
        let h = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        h.values().map(VecDeque::len).sum()
    }

    /// No point held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Samples the router's views into `history` every [`SAMPLE_EVERY`] until `stop`.
pub async fn sample(history: Arc<History>, router: Arc<Router>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let (pairs, _) = merged(&router.views());
        history.record(&pairs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{DeliveryView, Totals};

    fn pair(service: &str, clock_ns: u64, requests: u64) -> PairView {
        PairView {
            service: service.into(),
            environment: "prod".into(),
            start_ns: 0,
            clock_ns,
            totals: Totals {
                requests,
                ..Default::default()
            },
            windows: [None; 8],
            slo_window_ns: None,
            threshold_ns: None,
            metric_bound_ns: None,
            quantiles: [None; 3],
            slo: None,
            delivery: DeliveryView::default(),
        }
    }

    #[test]
    fn a_point_a_minute_of_event_time_at_most() {
        let h = History::default();
        for (i, t) in [0u64, 30, 59, 60, 61, 125, 3600].iter().enumerate() {
            h.record(&[pair("a", t * 1_000_000_000, i as u64)]);
        }
        let p = h.points("a", "prod");
        let at: Vec<u64> = p.iter().map(|x| x.t_ms / 1000).collect();
        assert_eq!(at, [0, 60, 125, 3600]);
        assert_eq!(
            p.iter().map(|x| x.requests).collect::<Vec<_>>(),
            [0, 3, 5, 6]
        );
        assert!(h.points("a", "").is_empty());
    }

    #[test]
    fn the_history_is_bounded_over_all_pairs_and_forgets_pairs_that_left() {
        let h = History::default();
        let many: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
        for m in 0..40u64 {
            let pairs: Vec<PairView> = many
                .iter()
                .map(|s| pair(s, m * 60_000_000_000, m))
                .collect();
            h.record(&pairs);
        }
        // 10,000 pairs: 10 points each would be the budget, 16 is the floor
        assert_eq!(h.points("s7", "prod").len(), 16);
        assert_eq!(h.len(), 10_000 * 16);
        assert_eq!(h.points("s7", "prod").last().unwrap().requests, 39);
        // one pair left: the others are forgotten, and it may keep up to two days
        h.record(&[pair("s7", 41 * 60_000_000_000, 41)]);
        assert_eq!(h.len(), 17);
        assert!(h.points("s8", "prod").is_empty());
    }
}
