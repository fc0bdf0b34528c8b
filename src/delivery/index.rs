//! The momentum index (docs/momentum-index.md): five components in [0, 1] and their weighted mean × 100.
//!
//! Each of the four DORA components is interpolated linearly between anchor points (in
//! log10 of the input where marked "log"), clamped at both ends. The anchors are the DORA
//! performance tiers: elite 1.0, high 0.75, medium 0.5, low 0.25.
//!
//! | component | input | anchors (input → score) |
//! |---|---|---|
//! | [`throughput`] | deployments per day | log: 1/180 → 0.25, 1/30 → 0.5, 1/7 → 0.75, 1 → 1.0; 0 → 0 |
//! | [`lead_time`] | median lead time, s | log: 1h → 1.0, 1d → 0.75, 7d → 0.5, 30d → 0.25, 180d → 0 |
//! | [`stability`] | change failure ratio | 0.05 → 1.0, 0.10 → 0.75, 0.15 → 0.5, 0.64 → 0.25, 1.0 → 0 |
//! | [`recovery`] | median time to restore, s | as lead time |
//! | [`reliability`] | error budget remaining per objective | mean of the values clamped to [0, 1] |
//!
//! "Clamped at the ends" means the end anchor's score holds beyond it: a lead time under 1h
//! scores 1.0, one over 180d scores 0; a change failure ratio under 0.05 scores 1.0. For
//! throughput the low end holds too (a positive rate under 1/180 per day still scores 0.25,
//! the "low" tier), except that no deployment at all (a rate ≤ 0) scores 0.
//!
//! Degenerate inputs never produce NaN: a NaN input scores 0 (garbage never earns credit),
//! a negative duration or ratio is below the first anchor (so clamps to its score, 1.0 for
//! lead time, recovery and stability), a negative or zero deployment rate is no deployment
//! (0), and +∞ clamps to the far end.
//!
//! Whether a component is present (has data) is the caller's decision; these functions only
//! score an input that exists. [`Components::index`] combines the present ones.

/// Seconds in a day.
pub const DAY_S: f64 = 86_400.0;

/// Seconds in an hour.
const HOUR_S: f64 = 3_600.0;

/// How an anchor table's inputs are spaced.
#[derive(Clone, Copy)]
enum Scale {
    /// Interpolate in the input itself.
    Linear,
    /// Interpolate in log10 of the input.
    Log,
}

/// Throughput anchors: deployments per day → score (log).
const THROUGHPUT: [(f64, f64); 4] = [
    (1.0 / 180.0, 0.25),
    (1.0 / 30.0, 0.5),
    (1.0 / 7.0, 0.75),
    (1.0, 1.0),
];

/// Lead time and time-to-restore anchors: seconds → score (log).
const DURATION: [(f64, f64); 5] = [
    (HOUR_S, 1.0),
    (DAY_S, 0.75),
    (7.0 * DAY_S, 0.5),
    (30.0 * DAY_S, 0.25),
    (180.0 * DAY_S, 0.0),
];

/// Stability anchors: change failure ratio → score (linear).
const STABILITY: [(f64, f64); 5] = [
    (0.05, 1.0),
    (0.10, 0.75),
    (0.15, 0.5),
    (0.64, 0.25),
    (1.0, 0.0),
];

/// Piecewise-linear interpolation of `x` over `anchors` (ascending in input), in log10 of
/// the input for [`Scale::Log`], clamped at both ends. An anchor's input returns its score
/// exactly. NaN returns 0; for [`Scale::Log`] an `x` ≤ 0 is below the first anchor.
fn interpolate(anchors: &[(f64, f64)], scale: Scale, x: f64) -> f64 {
    if x.is_nan() {
        return 0.0;
    }
    let (first, last) = (anchors[0], anchors[anchors.len() - 1]);
    if x <= first.0 {
        return first.1;
    }
    if x >= last.0 {
        return last.1;
    }
    let f = |v: f64| match scale {
        Scale::Linear => v,
        Scale::Log => v.log10(),
    };
    for w in anchors.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x < x1 {
            // x0 ≤ x < x1 here: at x0 the score is y0 exactly (t = 0).
            let t = (f(x) - f(x0)) / (f(x1) - f(x0));
            return y0 + (y1 - y0) * t;
        }
    }
    last.1
}

/// Throughput score of a deploy frequency in deployments per day (log anchors 1/180 →
/// 0.25, 1/30 → 0.5, 1/7 → 0.75, 1 → 1.0); a rate ≤ 0 or NaN (no deployment) scores 0.
pub fn throughput(deployments_per_day: f64) -> f64 {
    if deployments_per_day.is_nan() || deployments_per_day <= 0.0 {
        return 0.0;
    }
    interpolate(&THROUGHPUT, Scale::Log, deployments_per_day)
}

/// Lead-time score of a median lead time for changes in seconds (log anchors 1h → 1.0,
/// 1d → 0.75, 7d → 0.5, 30d → 0.25, 180d → 0); ≤ 1h (negative included) scores 1.0, NaN 0.
pub fn lead_time(median_s: f64) -> f64 {
    interpolate(&DURATION, Scale::Log, median_s)
}

/// Stability score of a change failure ratio (linear anchors 0.05 → 1.0, 0.10 → 0.75,
/// 0.15 → 0.5, 0.64 → 0.25, 1.0 → 0); ≤ 0.05 scores 1.0, NaN 0.
pub fn stability(change_failure_ratio: f64) -> f64 {
    interpolate(&STABILITY, Scale::Linear, change_failure_ratio)
}

/// Recovery score of a median time to restore in seconds (the lead-time anchors).
pub fn recovery(median_ttr_s: f64) -> f64 {
    interpolate(&DURATION, Scale::Log, median_ttr_s)
}

/// Reliability score: the mean of the error budgets remaining, each clamped to [0, 1] (a
/// NaN budget counts as 0, exhausted); `None` when there is no objective.
pub fn reliability(budgets_remaining: &[f64]) -> Option<f64> {
    if budgets_remaining.is_empty() {
        return None;
    }
    let sum: f64 = budgets_remaining
        .iter()
        .map(|&b| if b.is_nan() { 0.0 } else { b.clamp(0.0, 1.0) })
        .sum();
    Some(sum / budgets_remaining.len() as f64)
}

/// The index's component weights (`momentum.weights`), each meant to be ≥ 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// Weight of [`throughput`].
    pub throughput: f64,
    /// Weight of [`lead_time`].
    pub lead_time: f64,
    /// Weight of [`stability`].
    pub stability: f64,
    /// Weight of [`recovery`].
    pub recovery: f64,
    /// Weight of [`reliability`].
    pub reliability: f64,
}

impl Weights {
    /// The weight of component `i` in [`COMPONENTS`] order; 0 beyond it.
    pub fn get(&self, i: usize) -> f64 {
        match i {
            0 => self.throughput,
            1 => self.lead_time,
            2 => self.stability,
            3 => self.recovery,
            4 => self.reliability,
            _ => 0.0,
        }
    }
}

impl Default for Weights {
    /// All weights 1 (the config default).
    fn default() -> Self {
        Weights::from(&crate::config::WeightsConfig::default())
    }
}

impl From<&crate::config::WeightsConfig> for Weights {
    /// The configured `momentum.weights`.
    fn from(c: &crate::config::WeightsConfig) -> Self {
        Weights {
            throughput: c.throughput,
            lead_time: c.lead_time,
            stability: c.stability,
            recovery: c.recovery,
            reliability: c.reliability,
        }
    }
}

/// The component names, in the order of [`Components::get`] (and of the config keys).
pub const COMPONENTS: [&str; 5] = [
    "throughput",
    "lead_time",
    "stability",
    "recovery",
    "reliability",
];

/// The five component scores of one (service, environment); `None` = absent (no data).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Components {
    /// [`throughput`], absent for a service seen for under 1h.
    pub throughput: Option<f64>,
    /// [`lead_time`], absent while no deployment has a lead time.
    pub lead_time: Option<f64>,
    /// [`stability`], absent while no deployment is decided.
    pub stability: Option<f64>,
    /// [`recovery`], absent while no incident resolved.
    pub recovery: Option<f64>,
    /// [`reliability`], absent without an SLO.
    pub reliability: Option<f64>,
}

impl Components {
    /// Component `i` in [`COMPONENTS`] order; `None` when absent or beyond the list.
    pub fn get(&self, i: usize) -> Option<f64> {
        match i {
            0 => self.throughput,
            1 => self.lead_time,
            2 => self.stability,
            3 => self.recovery,
            4 => self.reliability,
            _ => None,
        }
    }

    /// The momentum index, 0–100: 100 × Σ wᵢcᵢ / Σ wᵢ over the components that are present
    /// (a NaN value counts as absent; others are clamped to [0, 1]) and have a weight > 0
    /// (a NaN or negative weight counts as 0). `None` when that set is empty — every
    /// component absent, or every present one weighted 0 — so a zero total weight never
    /// divides.
    pub fn index(&self, w: &Weights) -> Option<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..COMPONENTS.len() {
            let (Some(c), wi) = (self.get(i), w.get(i)) else {
                continue;
            };
            if c.is_nan() || wi.is_nan() || wi <= 0.0 {
                continue;
            }
            num += wi * c.clamp(0.0, 1.0);
            den += wi;
        }
        (den > 0.0 && den.is_finite()).then(|| 100.0 * num / den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: f64 = 3_600.0;
    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < EPS, "{a} != {b}");
    }

    /// (input, score) anchors restated from docs/momentum-index.md, independent of the module's tables.
    fn duration_anchors() -> Vec<(f64, f64)> {
        vec![
            (H, 1.0),
            (DAY_S, 0.75),
            (7.0 * DAY_S, 0.5),
            (30.0 * DAY_S, 0.25),
            (180.0 * DAY_S, 0.0),
        ]
    }

    fn throughput_anchors() -> Vec<(f64, f64)> {
        vec![
            (1.0 / 180.0, 0.25),
            (1.0 / 30.0, 0.5),
            (1.0 / 7.0, 0.75),
            (1.0, 1.0),
        ]
    }

    fn stability_anchors() -> Vec<(f64, f64)> {
        vec![
            (0.05, 1.0),
            (0.10, 0.75),
            (0.15, 0.5),
            (0.64, 0.25),
            (1.0, 0.0),
        ]
    }

    /// Exact score at every anchor.
    fn at_anchors(f: fn(f64) -> f64, anchors: &[(f64, f64)]) {
        for &(x, y) in anchors {
            assert_eq!(f(x), y, "at anchor {x}");
        }
    }

    /// Log spacing: the geometric mean of two anchors scores their mean; the points a
    /// quarter and three quarters of the way (in log10) score accordingly.
    fn between_log(f: fn(f64) -> f64, anchors: &[(f64, f64)]) {
        for p in anchors.windows(2) {
            let ((x0, y0), (x1, y1)) = (p[0], p[1]);
            close(f((x0 * x1).sqrt()), (y0 + y1) / 2.0);
            for t in [0.25, 0.75] {
                let x = 10f64.powf(x0.log10() + t * (x1.log10() - x0.log10()));
                close(f(x), y0 + t * (y1 - y0));
            }
        }
    }

    #[test]
    fn throughput_at_every_anchor() {
        at_anchors(throughput, &throughput_anchors());
    }

    #[test]
    fn throughput_between_anchors_is_log_linear() {
        between_log(throughput, &throughput_anchors());
        // One deployment every two weeks: between 1/30 and 1/7.
        let t = ((1.0f64 / 14.0).log10() - (1.0f64 / 30.0).log10())
            / ((1.0f64 / 7.0).log10() - (1.0f64 / 30.0).log10());
        close(throughput(1.0 / 14.0), 0.5 + 0.25 * t);
    }

    #[test]
    fn throughput_clamped_beyond_both_ends_and_zero_is_zero() {
        assert_eq!(throughput(1.0 / 365.0), 0.25);
        assert_eq!(throughput(1e-9), 0.25);
        assert_eq!(throughput(10.0), 1.0);
        assert_eq!(throughput(f64::INFINITY), 1.0);
        assert_eq!(throughput(0.0), 0.0);
        assert_eq!(throughput(-0.0), 0.0);
        assert_eq!(throughput(-1.0), 0.0);
        assert_eq!(throughput(f64::NAN), 0.0);
    }

    #[test]
    fn lead_time_at_every_anchor() {
        at_anchors(lead_time, &duration_anchors());
    }

    #[test]
    fn lead_time_between_anchors_is_log_linear() {
        between_log(lead_time, &duration_anchors());
        // 2 days: between 1d (0.75) and 7d (0.5).
        let t = 2f64.log10() / 7f64.log10();
        close(lead_time(2.0 * DAY_S), 0.75 - 0.25 * t);
    }

    #[test]
    fn lead_time_clamped_beyond_both_ends() {
        assert_eq!(lead_time(60.0), 1.0);
        assert_eq!(lead_time(0.0), 1.0);
        assert_eq!(lead_time(-5.0), 1.0);
        assert_eq!(lead_time(f64::NEG_INFINITY), 1.0);
        assert_eq!(lead_time(365.0 * DAY_S), 0.0);
        assert_eq!(lead_time(f64::INFINITY), 0.0);
        assert_eq!(lead_time(f64::NAN), 0.0);
    }

    #[test]
    fn stability_at_every_anchor() {
        at_anchors(stability, &stability_anchors());
    }

    #[test]
    fn stability_between_anchors_is_linear() {
        for p in stability_anchors().windows(2) {
            let ((x0, y0), (x1, y1)) = (p[0], p[1]);
            close(stability((x0 + x1) / 2.0), (y0 + y1) / 2.0);
            for t in [0.1, 0.25, 0.9] {
                close(stability(x0 + t * (x1 - x0)), y0 + t * (y1 - y0));
            }
        }
        // 1 failed of 3 decided.
        close(
            stability(1.0 / 3.0),
            0.5 - 0.25 * (1.0 / 3.0 - 0.15) / (0.64 - 0.15),
        );
    }

    #[test]
    fn stability_clamped_beyond_both_ends() {
        assert_eq!(stability(0.0), 1.0);
        assert_eq!(stability(0.01), 1.0);
        assert_eq!(stability(-0.5), 1.0);
        assert_eq!(stability(1.5), 0.0);
        assert_eq!(stability(f64::NAN), 0.0);
    }

    #[test]
    fn recovery_at_every_anchor() {
        at_anchors(recovery, &duration_anchors());
    }

    #[test]
    fn recovery_between_anchors_is_log_linear() {
        between_log(recovery, &duration_anchors());
        // 4 hours: between 1h (1.0) and 1d (0.75).
        let t = 4f64.log10() / 24f64.log10();
        close(recovery(4.0 * H), 1.0 - 0.25 * t);
    }

    #[test]
    fn recovery_clamped_beyond_both_ends() {
        assert_eq!(recovery(30.0), 1.0);
        assert_eq!(recovery(-1.0), 1.0);
        assert_eq!(recovery(200.0 * DAY_S), 0.0);
        assert_eq!(recovery(f64::NAN), 0.0);
    }

    #[test]
    fn reliability_clamps_and_averages() {
        assert_eq!(reliability(&[]), None);
        assert_eq!(reliability(&[0.5]), Some(0.5));
        close(reliability(&[0.9, 0.3]).unwrap(), 0.6);
        // −2 → 0, 1.5 → 1, 0.5: mean 0.5.
        close(reliability(&[-2.0, 1.5, 0.5]).unwrap(), 0.5);
        assert_eq!(reliability(&[f64::NAN, 1.0]), Some(0.5));
        assert_eq!(reliability(&[f64::NEG_INFINITY, f64::INFINITY]), Some(0.5));
    }

    #[test]
    fn index_weighted_mean_of_all_components() {
        let c = Components {
            throughput: Some(1.0),
            lead_time: Some(0.75),
            stability: Some(0.5),
            recovery: Some(0.25),
            reliability: Some(0.0),
        };
        close(c.index(&Weights::default()).unwrap(), 50.0);
        for i in 0..COMPONENTS.len() {
            assert!(c.get(i).is_some());
        }
        assert_eq!(c.get(5), None);
    }

    #[test]
    fn index_leaves_absent_components_out() {
        let c = Components {
            throughput: Some(1.0),
            stability: Some(0.5),
            ..Components::default()
        };
        close(c.index(&Weights::default()).unwrap(), 75.0);
        assert_eq!(Components::default().index(&Weights::default()), None);
    }

    #[test]
    fn index_with_custom_weights_from_config() {
        let cfg = crate::config::WeightsConfig {
            throughput: 2.0,
            lead_time: 0.0,
            stability: 1.0,
            recovery: 1.0,
            reliability: 4.0,
        };
        let w = Weights::from(&cfg);
        assert_eq!(
            [w.get(0), w.get(1), w.get(2), w.get(3), w.get(4)],
            cfg.named().map(|(_, v)| v)
        );
        for (i, (name, _)) in cfg.named().iter().enumerate() {
            assert_eq!(COMPONENTS[i], *name);
        }
        let c = Components {
            throughput: Some(0.5),
            lead_time: Some(0.0), // weight 0: ignored
            stability: Some(1.0),
            recovery: None, // absent: its weight does not count
            reliability: Some(0.25),
        };
        let expected = 100.0 * (2.0 * 0.5 + 1.0 * 1.0 + 4.0 * 0.25) / (2.0 + 1.0 + 4.0);
        close(c.index(&w).unwrap(), expected);
    }

    #[test]
    fn index_zero_total_weight_is_none() {
        let only_lead = Components {
            lead_time: Some(0.8),
            ..Components::default()
        };
        let w = Weights {
            throughput: 1.0,
            lead_time: 0.0,
            stability: 1.0,
            recovery: 1.0,
            reliability: 1.0,
        };
        assert_eq!(only_lead.index(&w), None);
        let zero = Weights {
            throughput: 0.0,
            lead_time: 0.0,
            stability: 0.0,
            recovery: 0.0,
            reliability: 0.0,
        };
        let all = Components {
            throughput: Some(1.0),
            lead_time: Some(1.0),
            stability: Some(1.0),
            recovery: Some(1.0),
            reliability: Some(1.0),
        };
        assert_eq!(all.index(&zero), None);
        // NaN and negative weights count as 0; a NaN component as absent.
        let odd = Weights {
            throughput: f64::NAN,
            lead_time: -1.0,
            ..Weights::default()
        };
        let c = Components {
            stability: Some(f64::NAN),
            recovery: Some(0.5),
            ..all
        };
        close(c.index(&odd).unwrap(), 75.0);
    }

    /// The worked example of docs/momentum-index.md.
    #[test]
    fn index_worked_example_of_the_doc() {
        // 12 deployments in 30 days, median lead time 2d, 1 failed of 12 decided,
        // median time to restore 4h, budgets remaining 0.8 and 0.4.
        let c = Components {
            throughput: Some(throughput(12.0 / 30.0)),
            lead_time: Some(lead_time(2.0 * DAY_S)),
            stability: Some(stability(1.0 / 12.0)),
            recovery: Some(recovery(4.0 * H)),
            reliability: reliability(&[0.8, 0.4]),
        };
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        assert_eq!(r(c.throughput.unwrap()), 0.882);
        assert_eq!(r(c.lead_time.unwrap()), 0.661);
        assert_eq!(r(c.stability.unwrap()), 0.833);
        assert_eq!(r(c.recovery.unwrap()), 0.891);
        assert_eq!(r(c.reliability.unwrap()), 0.6);
        assert_eq!(r(c.index(&Weights::default()).unwrap() / 100.0), 0.774);
        // The drop: 3 of 12 failed, a 2-day incident, budgets down to 0.2 and 0.0.
        let d = Components {
            stability: Some(stability(3.0 / 12.0)),
            recovery: Some(recovery(2.0 * DAY_S)),
            reliability: reliability(&[0.2, 0.0]),
            ..c
        };
        assert_eq!(r(d.stability.unwrap()), 0.449);
        assert_eq!(r(d.recovery.unwrap()), 0.661);
        assert_eq!(r(d.reliability.unwrap()), 0.1);
        assert_eq!(r(d.index(&Weights::default()).unwrap() / 100.0), 0.551);
    }
}
