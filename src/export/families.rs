//! The exported metrics as one neutral model: families of samples with OTLP names,
//! units and attribute keys. Prometheus exposition, remote write and OTLP push all
//! render from [`collect`], so a family added here appears everywhere with the same
//! name (the README's Exporters).

use smallvec::{smallvec, SmallVec};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sli::exemplars::Exemplar;
use crate::telemetry::Telemetry;
use crate::view::{merged, OpView, PairView, QUANTILE_WINDOWS, WINDOW_LABELS};

/// Metric kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// monotonic sum (cumulative)
    Counter,
    /// gauge
    Gauge,
    /// summary: quantiles windowed, `_sum`/`_count` cumulative
    Summary,
}

/// A sample's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// counter or gauge value
    Number(f64),
    /// summary point
    Summary {
        /// cumulative count
        count: u64,
        /// cumulative sum
        sum: f64,
        /// (quantile, value), empty when the window has no data
        quantiles: Vec<(f64, f64)>,
    },
}

/// A sample's attributes: OTLP keys and values borrowed from the snapshot the sample
/// describes, inline up to four (every family of a pair has at most four), so collecting
/// 150,000 samples neither allocates nor touches a reference count per sample.
pub type Attrs<'a> = SmallVec<[(&'static str, &'a str); 4]>;

/// One point: attributes (OTLP keys), value, and the start time of the series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// attributes with OTLP keys (`service.name`, `window`, …)
    pub attrs: Attrs<'a>,
    /// the value
    pub value: Value,
    /// start time of a cumulative series (Unix ns); 0 for gauges
    pub start_ns: u64,
}

/// A metric family.
#[derive(Clone, Debug)]
pub struct Family<'a> {
    /// OTLP name (`momentum.sli.requests`)
    pub otlp: &'static str,
    /// Prometheus sample name (`momentum_sli_requests_total`)
    pub prom: &'static str,
    /// UCUM unit (`s`, `1`, `{request}`, "")
    pub unit: &'static str,
    /// kind
    pub kind: Kind,
    /// help text
    pub help: &'static str,
    /// samples
    pub samples: Vec<Sample<'a>>,
    /// exemplars, by index into `samples`, in sample order (the errors counters: the
    /// latest error's trace); rendered in OpenMetrics only
    pub exemplars: Vec<(usize, Exemplar)>,
}

impl<'a> Family<'a> {
    fn new(
        otlp: &'static str,
        prom: &'static str,
        unit: &'static str,
        kind: Kind,
        help: &'static str,
    ) -> Self {
        Family {
            otlp,
            prom,
            unit,
            kind,
            help,
            samples: Vec::new(),
            exemplars: Vec::new(),
        }
    }

    fn push(&mut self, attrs: Attrs<'a>, value: f64, start_ns: u64) {
        self.samples.push(Sample {
            attrs,
            value: Value::Number(value),
            start_ns,
        });
    }
}

/// The Prometheus label name of an OTLP attribute key.
pub fn prom_label(key: &str) -> String {
    key.replace('.', "_")
}

/// The quantiles of latency summaries.
pub const LATENCY_QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

/// The pair attributes: `service.name`, and `deployment.environment.name` unless "".
pub fn pair_attrs(p: &PairView) -> Attrs<'_> {
    let mut l: Attrs<'_> = smallvec![("service.name", &*p.service)];
    if !p.environment.is_empty() {
        l.push(("deployment.environment.name", &*p.environment));
    }
    l
}

fn with<'a>(mut a: Attrs<'a>, k: &'static str, v: &'a str) -> Attrs<'a> {
    a.push((k, v));
    a
}

/// `a` and one more label.
fn plus<'a>(a: &Attrs<'a>, k: &'static str, v: &'a str) -> Attrs<'a> {
    with(a.clone(), k, v)
}

fn summary(q: Option<[f64; 5]>, count: u64, sum: f64) -> Value {
    Value::Summary {
        count,
        sum,
        quantiles: q
            .map(|q| LATENCY_QUANTILES.iter().copied().zip(q).collect())
            .unwrap_or_default(),
    }
}

/// Every exported family, from the latest shard snapshots and the self-telemetry, handed
/// to `use_families` (the samples borrow their labels from the merged snapshot).
pub fn collect<R>(t: &Telemetry, use_families: impl FnOnce(&[Family<'_>]) -> R) -> R {
    let views = t.router.views();
    let (pairs, ops) = merged(&views);
    let families = families(t, &pairs, &ops);
    use_families(&families)
}

fn families<'a>(
    t: &Telemetry,
    pairs: &'a [PairView],
    ops: &'a [(usize, OpView)],
) -> Vec<Family<'a>> {
    let mut out = Vec::with_capacity(32);

    let mut req = Family::new(
        "momentum.sli.requests",
        "momentum_sli_requests_total",
        "{request}",
        Kind::Counter,
        "Requests (SERVER/CONSUMER spans) per service and environment.",
    );
    let mut err = Family::new(
        "momentum.sli.errors",
        "momentum_sli_errors_total",
        "{request}",
        Kind::Counter,
        "Requests that were errors.",
    );
    let mut lat = Family::new(
        "momentum.sli.latency",
        "momentum_sli_latency_seconds",
        "s",
        Kind::Summary,
        "Request latency; quantiles over the window, _sum/_count cumulative.",
    );
    let mut avail = Family::new(
        "momentum.sli.availability",
        "momentum_sli_availability_ratio",
        "1",
        Kind::Gauge,
        "Share of requests without error over the window (absent without requests).",
    );
    // room for every sample up front: growing 30,000-sample vectors by doubling was a
    // sixth of a scrape of 2,000 pairs
    let n = pairs.len();
    for (f, per_pair) in [
        (&mut req, 1),
        (&mut err, 1),
        (&mut lat, QUANTILE_WINDOWS.len()),
        (&mut avail, WINDOW_LABELS.len()),
    ] {
        f.samples.reserve(n * per_pair);
    }
    // a pair's latest error: the latest among its operations'
    let mut latest_error: Vec<Option<Exemplar>> = vec![None; pairs.len()];
    for (pi, op) in ops {
        if let (Some(e), Some(slot)) = (op.exemplars.errors.first(), latest_error.get_mut(*pi)) {
            if slot.is_none_or(|s| s.end_ns < e.end_ns) {
                *slot = Some(*e);
            }
        }
    }
    for (pi, p) in pairs.iter().enumerate() {
        req.push(pair_attrs(p), p.totals.requests as f64, p.start_ns);
        if let Some(e) = latest_error[pi] {
            err.exemplars.push((err.samples.len(), e));
        }
        err.push(pair_attrs(p), p.totals.errors as f64, p.start_ns);
        for (wi, w) in QUANTILE_WINDOWS.iter().enumerate() {
            lat.samples.push(Sample {
                attrs: with(pair_attrs(p), "window", w),
                value: summary(
                    p.quantiles[wi],
                    p.totals.latency_count,
                    p.totals.latency_sum_s,
                ),
                start_ns: p.start_ns,
            });
        }
        for (wi, w) in WINDOW_LABELS.iter().enumerate() {
            if let Some(a) = p.availability(wi) {
                avail.push(with(pair_attrs(p), "window", w), a, 0);
            }
        }
    }
    out.extend([req, err, lat, avail]);
    slo_families(&mut out, pairs);
    delivery_families(&mut out, pairs);

    let mut oreq = Family::new(
        "momentum.operation.requests",
        "momentum_operation_requests_total",
        "{request}",
        Kind::Counter,
        "Requests per operation.",
    );
    let mut oerr = Family::new(
        "momentum.operation.errors",
        "momentum_operation_errors_total",
        "{request}",
        Kind::Counter,
        "Errors per operation.",
    );
    let mut olat = Family::new(
        "momentum.operation.latency",
        "momentum_operation_latency_seconds",
        "s",
        Kind::Summary,
        "Latency per operation; quantiles over 5m.",
    );
    for f in [&mut oreq, &mut oerr, &mut olat] {
        f.samples.reserve(ops.len());
    }
    for (pi, op) in ops {
        let a = with(pair_attrs(&pairs[*pi]), "operation", &op.operation);
        oreq.push(a.clone(), op.totals.requests as f64, op.start_ns);
        if let Some(e) = op.exemplars.errors.first() {
            oerr.exemplars.push((oerr.samples.len(), *e));
        }
        oerr.push(a.clone(), op.totals.errors as f64, op.start_ns);
        olat.samples.push(Sample {
            attrs: with(a, "window", "5m"),
            value: summary(
                op.quantiles,
                op.totals.latency_count,
                op.totals.latency_sum_s,
            ),
            start_ns: op.start_ns,
        });
    }
    out.extend([oreq, oerr, olat]);

    self_telemetry(&mut out, t, pairs.len(), ops.len());
    out
}

fn quantile_summary(sorted: &[f64], count: u64, sum: f64) -> Value {
    Value::Summary {
        count,
        sum,
        quantiles: [0.5, 0.9]
            .iter()
            .filter_map(|&q| crate::sli::rank::of_sorted(sorted, q).map(|v| (q, v)))
            .collect(),
    }
}

fn delivery_families<'a>(out: &mut Vec<Family<'a>>, pairs: &'a [PairView]) {
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

fn slo_families<'a>(out: &mut Vec<Family<'a>>, pairs: &'a [PairView]) {
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

/// Only the self-telemetry families (no service attributes): what momentum's own
/// telemetry (`telemetry.otlp`) pushes.
pub fn collect_self(t: &Telemetry) -> Vec<Family<'static>> {
    let views = t.router.views();
    let (pairs, ops) = merged(&views);
    let mut out = Vec::with_capacity(16);
    self_telemetry(&mut out, t, pairs.len(), ops.len());
    out
}

fn archive_families(out: &mut Vec<Family<'_>>, t: &Telemetry) {
    let a = &t.archive;
    let start = t.started_ns;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 * 1e-9;
    let mut f = Family::new(
        "momentum.archive.files_written",
        "momentum_archive_files_written_total",
        "{file}",
        Kind::Counter,
        "Parquet files written to the archive (renamed into place).",
    );
    f.push(Attrs::new(), get(&a.files_written), start);
    out.push(f);
    let mut f = Family::new(
        "momentum.archive.rows_written",
        "momentum_archive_rows_written_total",
        "{row}",
        Kind::Counter,
        "Rows written to the archive, by data set.",
    );
    for d in crate::archive::schema::Dataset::ALL {
        f.push(
            smallvec![("dataset", d.name())],
            get(&a.rows_written[d as usize]),
            start,
        );
    }
    out.push(f);
    let simple: [(&'static str, &'static str, &'static str, &'static str, f64); 7] = [
        ("momentum.archive.checkpoints", "momentum_archive_checkpoints_total", "{checkpoint}", "State checkpoints written (the state a restart restores).", get(&a.checkpoints)),
        ("momentum.archive.restored_pairs", "momentum_archive_restored_pairs_total", "{pair}", "(service, environment) pairs restored from the state checkpoint at start.", get(&a.pairs_restored)),
        ("momentum.archive.written_bytes", "momentum_archive_written_bytes_total", "By", "Bytes of the Parquet files written to the archive.", get(&a.bytes_written)),
        ("momentum.archive.failures", "momentum_archive_failures_total", "{failure}", "Archive operations that failed (write, rename, fsync, removal); each is logged with its path.", get(&a.failures)),
        ("momentum.archive.dropped_rows", "momentum_archive_dropped_rows_total", "{row}", "Rows lost because their archive file could not be written.", get(&a.rows_dropped)),
        ("momentum.archive.blocked", "momentum_archive_blocked_seconds_total", "s", "Time shards spent waiting for room in the archive writer's channel (a slow disk).", secs(&t.shared.counters.archive_blocked_ns)),
        ("momentum.archive.write_time", "momentum_archive_write_seconds_total", "s", "Time spent encoding, compressing and writing archive files.", secs(&a.write_ns)),
    ];
    for (otlp, prom, unit, help, v) in simple {
        let mut f = Family::new(otlp, prom, unit, Kind::Counter, help);
        f.push(Attrs::new(), v, start);
        out.push(f);
    }
    let mut f = Family::new(
        "momentum.archive.queue_depth",
        "momentum_archive_queue_depth",
        "{message}",
        Kind::Gauge,
        "Messages waiting in the archive writer's channel.",
    );
    f.push(Attrs::new(), a.queue_depth() as f64, 0);
    out.push(f);
}

fn self_telemetry(out: &mut Vec<Family<'_>>, t: &Telemetry, pairs: usize, ops: usize) {
    archive_families(out, t);
    let c = &t.shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let start = t.started_ns;
    let mut f = Family::new(
        "momentum.receiver.accepted_spans",
        "momentum_receiver_accepted_spans_total",
        "{span}",
        Kind::Counter,
        "Spans accepted by the receivers.",
    );
    f.push(
        smallvec![("transport", "grpc")],
        get(&c.accepted_grpc),
        start,
    );
    f.push(
        smallvec![("transport", "http")],
        get(&c.accepted_http),
        start,
    );
    out.push(f);
    let mut f = Family::new(
        "momentum.receiver.refused_spans",
        "momentum_receiver_refused_spans_total",
        "{span}",
        Kind::Counter,
        "Spans refused, by reason (a request that cannot be decoded counts as one).",
    );
    for (i, r) in crate::signal::Reason::ALL.iter().enumerate() {
        f.push(
            smallvec![("reason", r.label())],
            get(&t.refused.spans[i]),
            start,
        );
    }
    out.push(f);
    let mut f = Family::new(
        "momentum.receiver.refused_requests",
        "momentum_receiver_refused_requests_total",
        "{request}",
        Kind::Counter,
        "Export requests refused, by reason (all signals).",
    );
    for (i, r) in crate::signal::Reason::ALL.iter().enumerate() {
        f.push(
            smallvec![("reason", r.label())],
            get(&t.refused.requests[i]),
            start,
        );
    }
    out.push(f);
    let simple: [(&'static str, &'static str, &'static str, &'static str, f64); 12] = [
        (
            "momentum.receiver.sli_metric_points",
            "momentum_receiver_sli_metric_points_total",
            "{point}",
            "Duration-histogram points used for metrics-derived SLIs.",
            get(&c.sli_metric_points),
        ),
        (
            "momentum.receiver.unusable_metric_points",
            "momentum_receiver_unusable_metric_points_total",
            "{point}",
            "Duration-histogram points left out: their unit is not a duration.",
            get(&c.unusable_metric_points),
        ),
        (
            "momentum.pipeline.late_metric_points",
            "momentum_pipeline_late_metric_points_total",
            "{point}",
            "Duration-histogram points behind the watermark.",
            get(&c.late_metric_points),
        ),
        (
            "momentum.pipeline.invalid_metric_points",
            "momentum_pipeline_invalid_metric_points_total",
            "{point}",
            "Duration-histogram points in the future or before their start time.",
            get(&c.invalid_metric_points),
        ),
        (
            "momentum.receiver.accepted_metric_points",
            "momentum_receiver_accepted_metric_points_total",
            "{point}",
            "Metric data points accepted.",
            get(&c.accepted_metric_points),
        ),
        (
            "momentum.receiver.accepted_log_records",
            "momentum_receiver_accepted_log_records_total",
            "{record}",
            "Log records accepted.",
            get(&c.accepted_log_records),
        ),
        (
            "momentum.receiver.deployment_log_records",
            "momentum_receiver_deployment_log_records_total",
            "{record}",
            "Log records carrying deployment.id or deployment.status (explicit deployment records).",
            get(&c.deployment_log_records),
        ),
        (
            "momentum.pipeline.superseded_run_points",
            "momentum_pipeline_superseded_run_points_total",
            "{point}",
            "cicd.pipeline.run.duration points left out: spans of the same pipeline arrived within the lookback.",
            get(&c.superseded_run_points),
        ),
        (
            "momentum.pipeline.invalid_deployment_records",
            "momentum_pipeline_invalid_deployment_records_total",
            "{record}",
            "Explicit deployment records with no time or more than max_clock_skew in the future.",
            get(&c.invalid_records),
        ),
        (
            "momentum.pipeline.processed_spans",
            "momentum_pipeline_processed_spans_total",
            "{span}",
            "Spans aggregated by the shards.",
            get(&c.processed),
        ),
        (
            "momentum.pipeline.late_spans",
            "momentum_pipeline_late_spans_total",
            "{span}",
            "Spans that fell in closed buckets (behind the watermark).",
            get(&c.late),
        ),
        (
            "momentum.pipeline.invalid_spans",
            "momentum_pipeline_invalid_spans_total",
            "{span}",
            "Spans invalid on receipt (end before start, or too far in the future).",
            get(&c.invalid),
        ),
    ];
    for (otlp, prom, unit, help, v) in simple {
        let mut f = Family::new(otlp, prom, unit, Kind::Counter, help);
        f.push(Attrs::new(), v, start);
        out.push(f);
    }
    let mut f = Family::new(
        "momentum.pipeline.queue_depth",
        "momentum_pipeline_queue_depth",
        "By",
        Kind::Gauge,
        "Bytes waiting in shard queues.",
    );
    f.push(Attrs::new(), t.router.queued_bytes() as f64, 0);
    out.push(f);
    // Heap in use (the counting allocator: what pipeline.memory_limit_mib compares) and
    // the resident set size; the peak of the heap since the start.
    let mut f = Family::new(
        "momentum.process.memory",
        "momentum_process_memory_bytes",
        "By",
        Kind::Gauge,
        "Process memory by kind: heap in use (what memory_limit_mib limits), resident set size.",
    );
    if let Some(h) = crate::alloc::heap() {
        f.push(smallvec![("kind", "heap")], h as f64, 0);
    }
    if let Some(r) = crate::alloc::rss_bytes() {
        f.push(smallvec![("kind", "rss")], r as f64, 0);
    }
    out.push(f);
    if let Some(peak) = crate::alloc::heap_peak() {
        let mut f = Family::new(
            "momentum.process.memory.peak",
            "momentum_process_memory_peak_bytes",
            "By",
            Kind::Gauge,
            "Highest heap in use since the start.",
        );
        f.push(smallvec![("kind", "heap")], peak as f64, 0);
        out.push(f);
    }
    let mut f = Family::new(
        "momentum.series.active",
        "momentum_series_active",
        "{series}",
        Kind::Gauge,
        "Series exported, by kind.",
    );
    f.push(smallvec![("kind", "service")], pairs as f64, 0);
    f.push(smallvec![("kind", "operation")], ops as f64, 0);
    out.push(f);
    let mut f = Family::new(
        "momentum.series.overflow",
        "momentum_series_overflow_total",
        "{item}",
        Kind::Counter,
        "Items folded into an __overflow__ series, by kind.",
    );
    f.push(
        smallvec![("kind", "service")],
        get(&c.overflow_service),
        start,
    );
    f.push(
        smallvec![("kind", "operation")],
        get(&c.overflow_operation),
        start,
    );
    out.push(f);
    let mut f = Family::new(
        "momentum.series.evicted",
        "momentum_series_evicted_total",
        "{series}",
        Kind::Counter,
        "Series evicted from a full table, by kind (an evicted service's state waits on disk until it reports again).",
    );
    f.push(
        smallvec![("kind", "service")],
        get(&c.evicted_service),
        start,
    );
    out.push(f);
    exporters(out, t);
}

fn exporters(out: &mut Vec<Family<'_>>, t: &Telemetry) {
    if t.exporters.is_empty() {
        return;
    }
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut sent = Family::new(
        "momentum.exporter.sent",
        "momentum_exporter_sent_total",
        "{item}",
        Kind::Counter,
        "Items (data points, samples, spans, records) delivered, by exporter.",
    );
    let mut failed = Family::new(
        "momentum.exporter.failed",
        "momentum_exporter_failed_total",
        "{item}",
        Kind::Counter,
        "Items given up on (permanent error or retries exhausted), by exporter.",
    );
    let mut retried = Family::new(
        "momentum.exporter.retried",
        "momentum_exporter_retried_total",
        "{request}",
        Kind::Counter,
        "Export attempts retried after a retryable error, by exporter.",
    );
    let mut depth = Family::new(
        "momentum.exporter.queue_depth",
        "momentum_exporter_queue_depth",
        "{request}",
        Kind::Gauge,
        "Requests waiting in an exporter's queue (queued or in flight), by exporter.",
    );
    let mut bytes = Family::new(
        "momentum.exporter.queue_bytes",
        "momentum_exporter_queue_bytes",
        "By",
        Kind::Gauge,
        "Bytes of the requests waiting in an exporter's queue, by exporter.",
    );
    let mut corrupt = Family::new(
        "momentum.exporter.queue_corrupt",
        "momentum_exporter_queue_corrupt_total",
        "{entry}",
        Kind::Counter,
        "Queue entries found truncated or corrupt on disk at start and skipped, by exporter.",
    );
    for e in &t.exporters {
        let label = || smallvec![("exporter", e.name)];
        sent.push(label(), get(&e.sent), t.started_ns);
        failed.push(label(), get(&e.failed), t.started_ns);
        retried.push(label(), get(&e.retried), t.started_ns);
        if e.queued {
            depth.push(label(), get(&e.queue_depth), 0);
            bytes.push(label(), get(&e.queue_bytes), 0);
            corrupt.push(label(), get(&e.corrupt), t.started_ns);
        }
    }
    out.extend([sent, failed, retried]);
    if t.exporters.iter().any(|e| e.queued) {
        out.extend([depth, bytes, corrupt]);
    }
}
