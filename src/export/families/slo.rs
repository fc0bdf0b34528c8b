//! The SLO families: burn rates, error budgets, alerts and incidents.

use super::*;

pub(super) fn slo_families<'a>(out: &mut Vec<Family<'a>>, pairs: &'a [PairView]) {
    use crate::sli::rank::of_sorted as nearest_rank;
    use crate::slo::{OBJECTIVES, SEVERITIES};
    let mut burn = Family::new(
        "momentum.slo.burn_rate",
        "momentum_slo_burn_rate",
        "",
        Kind::Gauge,
        "Error budget burn rate over the window: (bad/requests)/(1 - target); 0 without requests.",
    );
    let mut budget = Family::new(
        "momentum.slo.error_budget.remaining",
        "momentum_slo_error_budget_remaining_ratio",
        "1",
        Kind::Gauge,
        "Error budget remaining over the SLO window (1 = untouched; negative = overspent).",
    );
    let mut alert = Family::new(
        "momentum.slo.alert",
        "momentum_slo_alert",
        "",
        Kind::Gauge,
        "1 while the multi-window multi-burn-rate alert fires.",
    );
    let mut alerts = Family::new(
        "momentum.slo.alerts",
        "momentum_slo_alerts_total",
        "{alert}",
        Kind::Counter,
        "Alerts started.",
    );
    let mut incidents = Family::new(
        "momentum.recovery.incidents",
        "momentum_recovery_incidents_total",
        "{incident}",
        Kind::Counter,
        "Incidents opened (a page alert starting while none is open).",
    );
    let mut open = Family::new(
        "momentum.recovery.incident_open",
        "momentum_recovery_incident_open",
        "",
        Kind::Gauge,
        "1 while an incident is open.",
    );
    let mut ttr = Family::new(
        "momentum.recovery.time_to_restore",
        "momentum_recovery_time_to_restore_seconds",
        "s",
        Kind::Summary,
        "Time to restore; quantiles over the delivery lookback, _sum/_count cumulative.",
    );
    // two objectives a pair at most
    let n = pairs.len() * 2;
    for (f, per_objective) in [
        (&mut burn, WINDOW_LABELS.len()),
        (&mut budget, 1),
        (&mut alert, 2),
        (&mut alerts, 2),
    ] {
        f.samples.reserve(n * per_objective);
    }
    for p in pairs {
        let Some(slo) = &p.slo else { continue };
        for (o, st) in slo.objectives.iter().zip(&slo.states) {
            let oa = with(pair_attrs(p), "objective", OBJECTIVES[o.kind]);
            for (wi, w) in WINDOW_LABELS.iter().enumerate() {
                burn.push(plus(&oa, "window", w), st.burn[wi], 0);
            }
            budget.push(oa.clone(), st.budget_remaining, 0);
            for (si, sev) in SEVERITIES.iter().enumerate() {
                alert.push(
                    plus(&oa, "severity", sev),
                    if st.firing[si] { 1.0 } else { 0.0 },
                    0,
                );
                alerts.push(
                    plus(&oa, "severity", sev),
                    st.started[si] as f64,
                    p.start_ns,
                );
            }
        }
        incidents.push(pair_attrs(p), slo.incidents_total as f64, p.start_ns);
        open.push(
            pair_attrs(p),
            if slo.incident.is_some() { 1.0 } else { 0.0 },
            0,
        );
        let sorted = slo.restores_sorted();
        let quantiles = [0.5, 0.9]
            .iter()
            .filter_map(|&q| nearest_rank(&sorted, q).map(|v| (q, v)))
            .collect();
        ttr.samples.push(Sample {
            attrs: pair_attrs(p),
            value: Value::Summary {
                count: slo.ttr_count,
                sum: slo.ttr_sum_s,
                quantiles,
            },
            start_ns: p.start_ns,
        });
    }
    out.extend([burn, budget, alert, alerts, incidents, open, ttr]);
}
