//! The exported metrics as one neutral model: families of samples with OTLP names,
//! units and attribute keys. Prometheus exposition, remote write and OTLP push all
//! render from [`collect`], so a family added here appears everywhere with the same
//! name (the README's Exporters).

use smallvec::{smallvec, SmallVec};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sli::exemplars::Exemplar;
use crate::telemetry::Telemetry;
use crate::view::{merged, OpView, PairView, QUANTILE_WINDOWS, WINDOW_LABELS};

mod delivery;
mod own;
mod slo;

use delivery::delivery_families;
use own::self_telemetry;
use slo::slo_families;

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

pub(super) fn with<'a>(mut a: Attrs<'a>, k: &'static str, v: &'a str) -> Attrs<'a> {
    a.push((k, v));
    a
}

/// `a` and one more label.
pub(super) fn plus<'a>(a: &Attrs<'a>, k: &'static str, v: &'a str) -> Attrs<'a> {
    with(a.clone(), k, v)
}

pub(super) fn summary(q: Option<[f64; 5]>, count: u64, sum: f64) -> Value {
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

pub(super) fn quantile_summary(sorted: &[f64], count: u64, sum: f64) -> Value {
    Value::Summary {
        count,
        sum,
        quantiles: [0.5, 0.9]
            .iter()
            .filter_map(|&q| crate::sli::rank::of_sorted(sorted, q).map(|v| (q, v)))
            .collect(),
    }
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
