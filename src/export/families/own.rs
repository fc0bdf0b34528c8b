//! momentum's own telemetry: receiver, pipeline, exporter and archive counters.

use super::*;

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

pub(super) fn self_telemetry(out: &mut Vec<Family<'_>>, t: &Telemetry, pairs: usize, ops: usize) {
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
    f.push(
        smallvec![("kind", "revision")],
        t.shared.revisions.evicted() as f64,
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
