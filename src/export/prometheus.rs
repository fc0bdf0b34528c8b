//! Prometheus exposition: text format 0.0.4, or OpenMetrics 1.0 when the scraper asks
//! for it. Names and labels are SPEC §6's (the standard OTLP → Prometheus translation).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::telemetry::Telemetry;
use crate::view::{merged, PairView, QUANTILE_WINDOWS, WINDOW_LABELS};

/// The metric kinds we expose.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

/// Content type of the 0.0.4 text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Out {
    s: String,
    om: bool,
}

impl Out {
    /// Writes the HELP/TYPE header of a family. `name` is the sample name (with
    /// `_total` for counters).
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let (fam, t) = match kind {
            Kind::Counter if self.om => (name.strip_suffix("_total").unwrap_or(name), "counter"),
            Kind::Counter => (name, "counter"),
            Kind::Gauge => (name, "gauge"),
            Kind::Summary => (name, "summary"),
        };
        let _ = writeln!(self.s, "# HELP {fam} {help}");
        let _ = writeln!(self.s, "# TYPE {fam} {t}");
        if self.om {
            if let Some(unit) = unit_of(fam) {
                let _ = writeln!(self.s, "# UNIT {fam} {unit}");
            }
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                self.s.push_str(k);
                self.s.push_str("=\"");
                escape_into(&mut self.s, v);
                self.s.push('"');
            }
            self.s.push('}');
        }
        self.s.push(' ');
        write_value(&mut self.s, value);
        self.s.push('\n');
    }
}

fn unit_of(fam: &str) -> Option<&'static str> {
    if fam.ends_with("_seconds") {
        Some("seconds")
    } else if fam.ends_with("_ratio") {
        Some("ratio")
    } else {
        None
    }
}

fn escape_into(s: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
}

fn write_value(s: &mut String, v: f64) {
    if v.is_nan() {
        s.push_str("NaN");
    } else if v.is_infinite() {
        s.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(s, "{}", v as i64);
    } else {
        let _ = write!(s, "{v}");
    }
}

/// The pair labels: `service_name` and `deployment_environment_name` (omitted when "").
fn pair_labels(p: &PairView) -> Vec<(&'static str, &str)> {
    let mut l = vec![("service_name", &*p.service)];
    if !p.environment.is_empty() {
        l.push(("deployment_environment_name", &*p.environment));
    }
    l
}

const QUANTILE_LABELS: [&str; 5] = ["0.5", "0.9", "0.95", "0.99", "0.999"];

/// Renders the whole exposition.
pub fn render(t: &Telemetry, openmetrics: bool) -> String {
    let mut o = Out {
        s: String::with_capacity(64 * 1024),
        om: openmetrics,
    };
    let views = t.router.views();
    let (pairs, ops) = merged(&views);

    o.family(
        "momentum_sli_requests_total",
        Kind::Counter,
        "Requests (SERVER/CONSUMER spans) per service and environment.",
    );
    for p in &pairs {
        o.sample(
            "momentum_sli_requests_total",
            &pair_labels(p),
            p.totals.requests as f64,
        );
    }
    o.family(
        "momentum_sli_errors_total",
        Kind::Counter,
        "Requests that were errors (SPEC 5 rules).",
    );
    for p in &pairs {
        o.sample(
            "momentum_sli_errors_total",
            &pair_labels(p),
            p.totals.errors as f64,
        );
    }
    o.family(
        "momentum_sli_latency_seconds",
        Kind::Summary,
        "Request latency; quantiles over the window, _sum/_count cumulative.",
    );
    for p in &pairs {
        for (wi, w) in QUANTILE_WINDOWS.iter().enumerate() {
            let mut l = pair_labels(p);
            l.push(("window", w));
            if let Some(qs) = p.quantiles[wi] {
                for (q, v) in QUANTILE_LABELS.iter().zip(qs) {
                    let mut lq = l.clone();
                    lq.push(("quantile", q));
                    o.sample("momentum_sli_latency_seconds", &lq, v);
                }
            }
            o.sample(
                "momentum_sli_latency_seconds_sum",
                &l,
                p.totals.latency_sum_s,
            );
            o.sample(
                "momentum_sli_latency_seconds_count",
                &l,
                p.totals.requests as f64,
            );
        }
    }
    o.family(
        "momentum_sli_availability_ratio",
        Kind::Gauge,
        "Share of requests without error over the window (absent without requests).",
    );
    for p in &pairs {
        for (wi, w) in WINDOW_LABELS.iter().enumerate() {
            if let Some(a) = p.availability(wi) {
                let mut l = pair_labels(p);
                l.push(("window", w));
                o.sample("momentum_sli_availability_ratio", &l, a);
            }
        }
    }
    o.family(
        "momentum_operation_requests_total",
        Kind::Counter,
        "Requests per operation.",
    );
    for (pi, op) in &ops {
        let mut l = pair_labels(&pairs[*pi]);
        l.push(("operation", &op.operation));
        o.sample(
            "momentum_operation_requests_total",
            &l,
            op.totals.requests as f64,
        );
    }
    o.family(
        "momentum_operation_errors_total",
        Kind::Counter,
        "Errors per operation.",
    );
    for (pi, op) in &ops {
        let mut l = pair_labels(&pairs[*pi]);
        l.push(("operation", &op.operation));
        o.sample(
            "momentum_operation_errors_total",
            &l,
            op.totals.errors as f64,
        );
    }
    o.family(
        "momentum_operation_latency_seconds",
        Kind::Summary,
        "Latency per operation; quantiles over 5m.",
    );
    for (pi, op) in &ops {
        let mut l = pair_labels(&pairs[*pi]);
        l.push(("operation", &op.operation));
        l.push(("window", "5m"));
        if let Some(qs) = op.quantiles {
            for (q, v) in QUANTILE_LABELS.iter().zip(qs) {
                let mut lq = l.clone();
                lq.push(("quantile", q));
                o.sample("momentum_operation_latency_seconds", &lq, v);
            }
        }
        o.sample(
            "momentum_operation_latency_seconds_sum",
            &l,
            op.totals.latency_sum_s,
        );
        o.sample(
            "momentum_operation_latency_seconds_count",
            &l,
            op.totals.requests as f64,
        );
    }
    self_telemetry(&mut o, t, pairs.len(), ops.len());
    if o.om {
        o.s.push_str("# EOF\n");
    }
    o.s
}

fn self_telemetry(o: &mut Out, t: &Telemetry, pairs: usize, ops: usize) {
    let c = &t.shared.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    o.family(
        "momentum_receiver_accepted_spans_total",
        Kind::Counter,
        "Spans accepted by the receivers.",
    );
    o.sample(
        "momentum_receiver_accepted_spans_total",
        &[("transport", "grpc")],
        get(&c.accepted_grpc),
    );
    o.sample(
        "momentum_receiver_accepted_spans_total",
        &[("transport", "http")],
        get(&c.accepted_http),
    );
    o.family(
        "momentum_receiver_refused_spans_total",
        Kind::Counter,
        "Spans refused, by reason (a request that cannot be decoded counts as one).",
    );
    for (i, r) in crate::receiver::REASONS.iter().enumerate() {
        o.sample(
            "momentum_receiver_refused_spans_total",
            &[("reason", r.label())],
            get(&t.refused.spans[i]),
        );
    }
    o.family(
        "momentum_receiver_refused_requests_total",
        Kind::Counter,
        "Export requests refused, by reason (all signals).",
    );
    for (i, r) in crate::receiver::REASONS.iter().enumerate() {
        o.sample(
            "momentum_receiver_refused_requests_total",
            &[("reason", r.label())],
            get(&t.refused.requests[i]),
        );
    }
    o.family(
        "momentum_receiver_accepted_metric_points_total",
        Kind::Counter,
        "Metric data points accepted.",
    );
    o.sample(
        "momentum_receiver_accepted_metric_points_total",
        &[],
        get(&c.accepted_metric_points),
    );
    o.family(
        "momentum_receiver_accepted_log_records_total",
        Kind::Counter,
        "Log records accepted.",
    );
    o.sample(
        "momentum_receiver_accepted_log_records_total",
        &[],
        get(&c.accepted_log_records),
    );
    o.family(
        "momentum_pipeline_processed_spans_total",
        Kind::Counter,
        "Spans aggregated by the shards.",
    );
    o.sample(
        "momentum_pipeline_processed_spans_total",
        &[],
        get(&c.processed),
    );
    o.family(
        "momentum_pipeline_late_spans_total",
        Kind::Counter,
        "Spans that fell in closed buckets (behind the watermark).",
    );
    o.sample("momentum_pipeline_late_spans_total", &[], get(&c.late));
    o.family(
        "momentum_pipeline_invalid_spans_total",
        Kind::Counter,
        "Spans invalid on receipt (end before start, or too far in the future).",
    );
    o.sample(
        "momentum_pipeline_invalid_spans_total",
        &[],
        get(&c.invalid),
    );
    o.family(
        "momentum_pipeline_queue_depth",
        Kind::Gauge,
        "Bytes waiting in shard queues.",
    );
    o.sample(
        "momentum_pipeline_queue_depth",
        &[],
        t.router.queued_bytes() as f64,
    );
    o.family(
        "momentum_series_active",
        Kind::Gauge,
        "Series exported, by kind.",
    );
    o.sample(
        "momentum_series_active",
        &[("kind", "service")],
        pairs as f64,
    );
    o.sample(
        "momentum_series_active",
        &[("kind", "operation")],
        ops as f64,
    );
    o.family(
        "momentum_series_overflow_total",
        Kind::Counter,
        "Items folded into an __overflow__ series, by kind.",
    );
    o.sample(
        "momentum_series_overflow_total",
        &[("kind", "service")],
        get(&c.overflow_service),
    );
    o.sample(
        "momentum_series_overflow_total",
        &[("kind", "operation")],
        get(&c.overflow_operation),
    );
    archive_telemetry(o, t);
}

fn archive_telemetry(o: &mut Out, t: &Telemetry) {
    let a = &t.archive;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let secs = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 * 1e-9;
    o.family(
        "momentum_archive_files_written_total",
        Kind::Counter,
        "Parquet files written to the archive (renamed into place).",
    );
    o.sample(
        "momentum_archive_files_written_total",
        &[],
        get(&a.files_written),
    );
    o.family(
        "momentum_archive_rows_written_total",
        Kind::Counter,
        "Rows written to the archive, by data set.",
    );
    for d in crate::archive::schema::Dataset::ALL {
        o.sample(
            "momentum_archive_rows_written_total",
            &[("dataset", d.name())],
            get(&a.rows_written[d as usize]),
        );
    }
    o.family(
        "momentum_archive_written_bytes_total",
        Kind::Counter,
        "Bytes of the Parquet files written to the archive.",
    );
    o.sample(
        "momentum_archive_written_bytes_total",
        &[],
        get(&a.bytes_written),
    );
    o.family(
        "momentum_archive_failures_total",
        Kind::Counter,
        "Archive operations that failed (write, rename, fsync, removal); each is logged with its path.",
    );
    o.sample("momentum_archive_failures_total", &[], get(&a.failures));
    o.family(
        "momentum_archive_dropped_rows_total",
        Kind::Counter,
        "Rows lost because their archive file could not be written.",
    );
    o.sample(
        "momentum_archive_dropped_rows_total",
        &[],
        get(&a.rows_dropped),
    );
    o.family(
        "momentum_archive_queue_depth",
        Kind::Gauge,
        "Messages waiting in the archive writer's channel.",
    );
    o.sample("momentum_archive_queue_depth", &[], a.queue_depth() as f64);
    o.family(
        "momentum_archive_blocked_seconds_total",
        Kind::Counter,
        "Time shards spent waiting for room in the archive writer's channel (a slow disk).",
    );
    o.sample(
        "momentum_archive_blocked_seconds_total",
        &[],
        secs(&t.shared.counters.archive_blocked_ns),
    );
    o.family(
        "momentum_archive_write_seconds_total",
        Kind::Counter,
        "Time spent encoding, compressing and writing archive files.",
    );
    o.sample(
        "momentum_archive_write_seconds_total",
        &[],
        secs(&a.write_ns),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_are_escaped_and_formatted() {
        let mut o = Out {
            s: String::new(),
            om: false,
        };
        o.sample("m", &[("a", "x\"y\\z\nw")], 3.0);
        o.sample("m", &[], 0.25);
        assert_eq!(o.s, "m{a=\"x\\\"y\\\\z\\nw\"} 3\nm 0.25\n");
    }

    #[test]
    fn openmetrics_counter_family_drops_total() {
        let mut o = Out {
            s: String::new(),
            om: true,
        };
        o.family("x_seconds_total", Kind::Counter, "h");
        assert!(o.s.contains("# TYPE x_seconds counter"));
        assert!(o.s.contains("# UNIT x_seconds seconds"));
    }
}
