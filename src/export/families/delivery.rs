//! The delivery families: deployments, rollbacks, change failure, lead time, CI/CD
//! pipelines, recovery and the momentum index.

use super::*;

pub(super) fn delivery_families<'a>(out: &mut Vec<Family<'a>>, pairs: &'a [PairView]) {
    let mut deps = Family::new(
        "momentum.delivery.deployments",
        "momentum_delivery_deployments_total",
        "{deployment}",
        Kind::Counter,
        "Deployments, counted once when decided, by result.",
    );
    let mut pending = Family::new(
        "momentum.delivery.deployments.pending",
        "momentum_delivery_deployments_pending",
        "{deployment}",
        Kind::Gauge,
        "Deployments recorded but not yet decided.",
    );
    let mut rollbacks = Family::new(
        "momentum.delivery.rollbacks",
        "momentum_delivery_rollbacks_total",
        "{rollback}",
        Kind::Counter,
        "Rollbacks (a superseded version is the only one reporting again).",
    );
    let mut freq = Family::new(
        "momentum.delivery.deploy_frequency",
        "momentum_delivery_deploy_frequency_per_day",
        "{deployment}/d",
        Kind::Gauge,
        "Deployments per day over the delivery lookback.",
    );
    let mut lead = Family::new(
        "momentum.delivery.lead_time",
        "momentum_delivery_lead_time_seconds",
        "s",
        Kind::Summary,
        "Lead time for changes; quantiles over the lookback, _sum/_count cumulative.",
    );
    let mut cfr = Family::new(
        "momentum.delivery.change_failure",
        "momentum_delivery_change_failure_ratio",
        "1",
        Kind::Gauge,
        "Failed / decided deployments over the lookback.",
    );
    let mut runs = Family::new(
        "momentum.cicd.pipeline.runs",
        "momentum_cicd_pipeline_runs_total",
        "{run}",
        Kind::Counter,
        "CI/CD pipeline runs by result.",
    );
    let mut dur = Family::new(
        "momentum.cicd.pipeline.duration",
        "momentum_cicd_pipeline_duration_seconds",
        "s",
        Kind::Summary,
        "Pipeline run duration; quantiles over the lookback, _sum/_count cumulative.",
    );
    let mut fail = Family::new(
        "momentum.cicd.pipeline.failure",
        "momentum_cicd_pipeline_failure_ratio",
        "1",
        Kind::Gauge,
        "Failed / counted pipeline runs over the lookback.",
    );
    for f in [&mut deps, &mut pending, &mut rollbacks] {
        f.samples.reserve(pairs.len() * 2);
    }
    for p in pairs {
        let d = &p.delivery;
        deps.push(
            with(pair_attrs(p), "result", "succeeded"),
            d.decided[0] as f64,
            p.start_ns,
        );
        deps.push(
            with(pair_attrs(p), "result", "failed"),
            d.decided[1] as f64,
            p.start_ns,
        );
        pending.push(pair_attrs(p), d.pending as f64, 0);
        rollbacks.push(pair_attrs(p), d.rollbacks as f64, p.start_ns);
        if let Some(f) = d.deploy_frequency {
            freq.push(pair_attrs(p), f, 0);
        }
        if let Some(c) = d.change_failure {
            cfr.push(pair_attrs(p), c, 0);
        }
        if d.lead_count > 0 {
            lead.samples.push(Sample {
                attrs: pair_attrs(p),
                value: quantile_summary(&d.lead_times, d.lead_count, d.lead_sum_s),
                start_ns: p.start_ns,
            });
        }
        for pl in &d.pipelines {
            let a = with(pair_attrs(p), "cicd.pipeline.name", &pl.name);
            for (res, n) in &pl.by_result {
                runs.push(plus(&a, "result", res), *n as f64, p.start_ns);
            }
            dur.samples.push(Sample {
                attrs: a.clone(),
                value: Value::Summary {
                    count: pl.duration_count,
                    sum: pl.duration_sum_s,
                    quantiles: [0.5, 0.9]
                        .iter()
                        .filter_map(|&q| {
                            crate::sli::rank::of_weighted(&pl.durations, q).map(|v| (q, v))
                        })
                        .collect(),
                },
                start_ns: p.start_ns,
            });
            if let Some(f) = pl.failure {
                fail.push(a, f, 0);
            }
        }
    }
    out.extend([deps, pending, rollbacks, freq, lead, cfr, runs, dur, fail]);
    let mut index = Family::new(
        "momentum.index",
        "momentum_index",
        "",
        Kind::Gauge,
        "The momentum index, 0-100: weighted mean of the components present.",
    );
    let mut comp = Family::new("momentum.index.component", "momentum_index_component", "", Kind::Gauge, "Momentum index components in [0,1] (DORA tiers: elite 1, high 0.75, medium 0.5, low 0.25).");
    for p in pairs {
        if let Some(i) = p.delivery.index {
            index.push(pair_attrs(p), i, 0);
        }
        for (ci, name) in crate::delivery::index::COMPONENTS.iter().enumerate() {
            if let Some(v) = p.delivery.components.get(ci) {
                comp.push(with(pair_attrs(p), "component", name), v, 0);
            }
        }
    }
    out.extend([index, comp]);
}
