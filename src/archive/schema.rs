//! The Arrow schemas of the archive's data sets, exactly as docs/archive.md names them. Users script
//! against these columns (DuckDB, pyarrow, Spark, Trino), so any change here is a breaking
//! change: the golden file `tests/golden/archive_schema.txt` pins them, and
//! [`SCHEMA_VERSION`] is written into every file's metadata.
//!
//! Type choices, for engines beyond DuckDB and pyarrow:
//! - timestamps are `timestamp(ms, UTC)`: Parquet `TIMESTAMP(MILLIS, isAdjustedToUTC=true)`,
//!   read as `TIMESTAMP WITH TIME ZONE` by DuckDB and Trino, and as a timestamp by Spark
//!   (which rejects nanosecond timestamps);
//! - strings are plain `Utf8` (Parquet `BYTE_ARRAY` + `STRING`), not `Utf8View` or
//!   dictionary types, which older readers do not know; Parquet dictionary-encodes them on
//!   disk anyway;
//! - `date` is not a column: it is the Hive partition folder `date=YYYY-MM-DD` (UTC date of
//!   `window_start` / `time`), which readers add back as a column with
//!   `hive_partitioning=true`. Writing it into the file as well would make DuckDB and Spark
//!   see the column twice.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of the archive schemas, written as `momentum.schema_version` in each file's
/// metadata. Bumped only with a migration note in `docs/archive.md`.
pub const SCHEMA_VERSION: &str = "1";

/// The data sets, in the order the writer flushes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// `sli`: one row per (series, archive window)
    Sli,
    /// `momentum`: one row per (pair, archive window)
    Momentum,
    /// `events`: one row per event
    Events,
    /// `spans`: one row per span (`archive.spans: true`)
    Spans,
}

impl Dataset {
    /// Every data set.
    pub const ALL: [Dataset; 4] = [
        Dataset::Sli,
        Dataset::Momentum,
        Dataset::Events,
        Dataset::Spans,
    ];
    /// The data sets `momentum report` reads (it has no use for raw spans).
    pub const SUMMARIES: [Dataset; 3] = [Dataset::Sli, Dataset::Momentum, Dataset::Events];

    /// The folder name under the archive dir.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Sli => "sli",
            Dataset::Momentum => "momentum",
            Dataset::Events => "events",
            Dataset::Spans => "spans",
        }
    }

    /// The Arrow schema of this data set.
    pub fn schema(self) -> SchemaRef {
        match self {
            Dataset::Sli => sli(),
            Dataset::Momentum => momentum(),
            Dataset::Events => events(),
            Dataset::Spans => spans(),
        }
    }
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn with_meta(dataset: &str, fields: Vec<Field>) -> SchemaRef {
    let meta = HashMap::from([
        ("momentum.dataset".to_string(), dataset.to_string()),
        (
            "momentum.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        ),
    ]);
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// `sli`: one row per (series, archive window). The service-level row has `operation` "".
pub fn sli() -> SchemaRef {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    with_meta(
        "sli",
        vec![
            f("window_start", ts(), false),
            f("window_end", ts(), false),
            f("service_name", DataType::Utf8, false),
            f("environment", DataType::Utf8, false),
            f("operation", DataType::Utf8, false),
            f("requests", DataType::Int64, false),
            f("errors", DataType::Int64, false),
            // null when the pair has no latency objective
            f("latency_good", DataType::Int64, true),
            // null when the window holds no request (never NaN)
            f("latency_p50_s", DataType::Float64, true),
            f("latency_p95_s", DataType::Float64, true),
            f("latency_p99_s", DataType::Float64, true),
            f("latency_max_s", DataType::Float64, true),
            // DDSketch protobuf, momentum encoding version 1 (see sli::sketch)
            f("latency_sketch", DataType::Binary, false),
        ],
    )
}

/// `momentum`: one row per (pair, archive window); every signal is nullable (absent when
/// it has no data, the README's How it works).
pub fn momentum() -> SchemaRef {
    let mut fields = vec![
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("environment", DataType::Utf8, false),
    ];
    for n in [
        "index",
        "throughput",
        "lead_time",
        "stability",
        "recovery",
        "reliability",
        "deploy_frequency_per_day",
        "lead_time_s",
        "change_failure_ratio",
        "time_to_restore_s",
        "availability_5m",
        "burn_rate_1h",
        "error_budget_remaining",
    ] {
        fields.push(Field::new(n, DataType::Float64, true));
    }
    with_meta("momentum", fields)
}

/// `events`: one row per event (deployment, rollback, incident_open, incident_resolved,
/// pipeline_run, alert_start, alert_end).
pub fn events() -> SchemaRef {
    with_meta(
        "events",
        vec![
            Field::new("time", ts(), false),
            Field::new("service_name", DataType::Utf8, false),
            Field::new("environment", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("version", DataType::Utf8, true),
            Field::new("previous_version", DataType::Utf8, true),
            Field::new("result", DataType::Utf8, true),
            Field::new("duration_s", DataType::Float64, true),
            // a JSON object, "{}" when there is nothing more to say
            Field::new("attributes", DataType::Utf8, false),
        ],
    )
}

/// `spans`: one row per span. Timestamps are microseconds (Spark rejects nanosecond
/// timestamps); the exact nanoseconds are in the `*_unix_nano` columns.
pub fn spans() -> SchemaRef {
    let us = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    with_meta(
        "spans",
        vec![
            s("trace_id"),
            s("span_id"),
            s("parent_span_id"),
            s("service_name"),
            s("environment"),
            s("service_version"),
            s("name"),
            s("kind"),
            Field::new("start_time", us(), false),
            Field::new("end_time", us(), false),
            Field::new("start_time_unix_nano", DataType::Int64, false),
            Field::new("end_time_unix_nano", DataType::Int64, false),
            Field::new("duration_s", DataType::Float64, false),
            s("status_code"),
            s("status_message"),
            s("attributes"),
            s("resource_attributes"),
        ],
    )
}

/// A type in docs/archive.md's words: `timestamp(ms, UTC)`, `string`, `int64`, `float64`, `binary`.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(unit, tz) => {
            let u = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("timestamp({u}, {tz})"),
                None => format!("timestamp({u})"),
            }
        }
        DataType::Utf8 => "string".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Binary => "binary".into(),
        other => format!("{other:?}"),
    }
}

/// Every data set's schema as text, one `name: type[, nullable]` line per column — the
/// form of the golden file and of `docs/archive.md`.
pub fn describe() -> String {
    let mut s = String::new();
    for d in Dataset::ALL {
        let schema = d.schema();
        s.push_str(&format!(
            "{} (momentum.schema_version {})\n",
            d.name(),
            SCHEMA_VERSION
        ));
        for f in schema.fields() {
            s.push_str(&format!(
                "  {}: {}{}\n",
                f.name(),
                type_name(f.data_type()),
                if f.is_nullable() { ", nullable" } else { "" }
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schemas are a contract (docs/archive.md): any change must show up as a diff of the golden
    /// file. `MOMENTUM_UPDATE_GOLDEN=1 cargo test` rewrites it after a deliberate change.
    #[test]
    fn schemas_match_golden_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/archive_schema.txt");
        let got = describe();
        if std::env::var_os("MOMENTUM_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).expect("write golden file");
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert_eq!(
            got,
            want,
            "archive schemas differ from {}; if deliberate, rerun with MOMENTUM_UPDATE_GOLDEN=1 \
             and describe the change in docs/archive.md",
            path.display()
        );
    }

    #[test]
    fn timestamps_are_utc_milliseconds_and_date_is_not_a_column() {
        for d in Dataset::ALL {
            let s = d.schema();
            assert!(s.field_with_name("date").is_err(), "{}", d.name());
            // docs/archive.md: spans carry µs timestamps, everything else ms.
            let unit = if d == Dataset::Spans {
                TimeUnit::Microsecond
            } else {
                TimeUnit::Millisecond
            };
            for f in s.fields() {
                if let DataType::Timestamp(u, tz) = f.data_type() {
                    assert_eq!(*u, unit);
                    assert_eq!(tz.as_deref(), Some("UTC"));
                }
            }
        }
    }
}
