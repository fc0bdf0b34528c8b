//! Rows → Arrow record batches, and the UTC day each row belongs to (its `date=`
//! partition). Pure functions: the writer task calls them on a blocking thread.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::schema;
use super::{EventRow, MomentumRow, SliRow, SpanRow};

const NS_PER_MS: u64 = 1_000_000;
const MS_PER_DAY: i64 = 86_400_000;

/// Unix ns → Unix ms (floor), as the `timestamp(ms, UTC)` columns store it.
pub fn ms(ns: u64) -> i64 {
    (ns / NS_PER_MS) as i64
}

/// Days since the Unix epoch (UTC) of a Unix ns instant: the row's partition.
pub fn day(ns: u64) -> i64 {
    ms(ns).div_euclid(MS_PER_DAY)
}

/// The partition folder of a day: `date=YYYY-MM-DD`.
pub fn date_folder(day: i64) -> String {
    format!("date={}", date_string(day))
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date_string(day: i64) -> String {
    match chrono::DateTime::from_timestamp(day * 86_400, 0) {
        Some(t) => t.date_naive().format("%Y-%m-%d").to_string(),
        // Out of chrono's range (±262,000 years): not a date any clock produces.
        None => format!("day{day}"),
    }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Archive columns hold no NaN or infinity (the README's How it works: absent, never NaN).
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn ts(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values.map(ms)).with_timezone("UTC"))
}

fn strs<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_strs<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn floats(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from_iter(values.map(finite)))
}

/// The `sli` batch of `rows`.
pub fn sli(rows: &[SliRow]) -> Result<RecordBatch, ArrowError> {
    let cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| r.window_start_ns)),
        ts(rows.iter().map(|r| r.window_end_ns)),
        strs(rows.iter().map(|r| &*r.service)),
        strs(rows.iter().map(|r| &*r.environment)),
        strs(rows.iter().map(|r| &*r.operation)),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| count(r.requests)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| count(r.errors)),
        )),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|r| r.latency_good.map(count)),
        )),
        floats(rows.iter().map(|r| r.latency_p50_s)),
        floats(rows.iter().map(|r| r.latency_p95_s)),
        floats(rows.iter().map(|r| r.latency_p99_s)),
        floats(rows.iter().map(|r| r.latency_max_s)),
        Arc::new(BinaryArray::from_iter_values(
            rows.iter().map(|r| r.latency_sketch.as_slice()),
        )),
    ];
    RecordBatch::try_new(schema::sli(), cols)
}

/// The `momentum` batch of `rows`.
pub fn momentum(rows: &[MomentumRow]) -> Result<RecordBatch, ArrowError> {
    let f = |get: fn(&MomentumRow) -> Option<f64>| floats(rows.iter().map(get));
    let cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| r.window_start_ns)),
        ts(rows.iter().map(|r| r.window_end_ns)),
        strs(rows.iter().map(|r| &*r.service)),
        strs(rows.iter().map(|r| &*r.environment)),
        f(|r| r.index),
        f(|r| r.throughput),
        f(|r| r.lead_time),
        f(|r| r.stability),
        f(|r| r.recovery),
        f(|r| r.reliability),
        f(|r| r.deploy_frequency_per_day),
        f(|r| r.lead_time_s),
        f(|r| r.change_failure_ratio),
        f(|r| r.time_to_restore_s),
        f(|r| r.availability_5m),
        f(|r| r.burn_rate_1h),
        f(|r| r.error_budget_remaining),
    ];
    RecordBatch::try_new(schema::momentum(), cols)
}

/// The `events` batch of `rows`. An empty `attributes` is written as `{}` so the column
/// always parses as a JSON object.
pub fn events(rows: &[EventRow]) -> Result<RecordBatch, ArrowError> {
    let cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| r.time_ns)),
        strs(rows.iter().map(|r| &*r.service)),
        strs(rows.iter().map(|r| &*r.environment)),
        strs(rows.iter().map(|r| r.kind)),
        opt_strs(rows.iter().map(|r| r.version.as_deref())),
        opt_strs(rows.iter().map(|r| r.previous_version.as_deref())),
        opt_strs(rows.iter().map(|r| r.result.as_deref())),
        floats(rows.iter().map(|r| r.duration_s)),
        strs(rows.iter().map(|r| {
            if r.attributes.trim().is_empty() {
                "{}"
            } else {
                r.attributes.as_str()
            }
        })),
    ];
    RecordBatch::try_new(schema::events(), cols)
}

/// The `spans` batch of `rows`.
pub fn spans(rows: &[SpanRow]) -> Result<RecordBatch, ArrowError> {
    use arrow::array::TimestampMicrosecondArray;
    let us = |get: fn(&SpanRow) -> u64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| count(get(r) / 1_000)))
                .with_timezone("UTC"),
        )
    };
    let nanos = |get: fn(&SpanRow) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| count(get(r))),
        ))
    };
    let cols: Vec<ArrayRef> = vec![
        strs(rows.iter().map(|r| r.trace_id.as_str())),
        strs(rows.iter().map(|r| r.span_id.as_str())),
        strs(rows.iter().map(|r| r.parent_span_id.as_str())),
        strs(rows.iter().map(|r| &*r.service)),
        strs(rows.iter().map(|r| &*r.environment)),
        strs(rows.iter().map(|r| &*r.version)),
        strs(rows.iter().map(|r| r.name.as_str())),
        strs(rows.iter().map(|r| r.kind)),
        us(|r| r.start_ns),
        us(|r| r.end_ns),
        nanos(|r| r.start_ns),
        nanos(|r| r.end_ns),
        Arc::new(Float64Array::from_iter_values(
            rows.iter()
                .map(|r| (r.end_ns as i128 - r.start_ns as i128) as f64 * 1e-9),
        )),
        strs(rows.iter().map(|r| r.status_code)),
        strs(rows.iter().map(|r| r.status_message.as_str())),
        strs(rows.iter().map(|r| r.attributes.as_str())),
        strs(rows.iter().map(|r| &*r.resource_attributes)),
    ];
    RecordBatch::try_new(schema::spans(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn days_and_folders_are_utc() {
        assert_eq!(date_folder(day(0)), "date=1970-01-01");
        // 2026-11-26T23:59:59.999Z and the next millisecond
        let last = 1_795_737_599_999u64 * NS_PER_MS;
        assert_eq!(date_folder(day(last)), "date=2026-11-26");
        assert_eq!(date_folder(day(last + NS_PER_MS)), "date=2026-11-27");
    }

    #[test]
    fn sli_batch_matches_schema_and_keeps_nulls() {
        let row = SliRow {
            window_start_ns: 60 * 1_000_000_000,
            window_end_ns: 120 * 1_000_000_000,
            service: "a".into(),
            environment: "".into(),
            operation: "".into(),
            requests: 3,
            errors: 1,
            latency_good: None,
            latency_p50_s: Some(0.1),
            latency_p95_s: Some(f64::NAN),
            latency_p99_s: None,
            latency_max_s: Some(0.2),
            latency_sketch: vec![1, 2, 3],
        };
        let b = sli(&[row]).unwrap();
        assert_eq!(b.schema(), schema::sli());
        assert_eq!(b.num_rows(), 1);
        let start = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(start.value(0), 60_000);
        assert!(b.column(7).is_null(0), "latency_good without objective");
        assert!(b.column(9).is_null(0), "NaN is written as null");
        assert!(!b.column(8).is_null(0));
    }

    #[test]
    fn events_batch_writes_empty_attributes_as_object() {
        let e = EventRow {
            time_ns: 1,
            service: "s".into(),
            environment: "prod".into(),
            kind: "deployment",
            version: Some("v2".into()),
            previous_version: None,
            result: None,
            duration_s: None,
            attributes: String::new(),
        };
        let b = events(&[e]).unwrap();
        let attrs = b.column(8).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(attrs.value(0), "{}");
        assert!(b.column(5).is_null(0));
    }
}
