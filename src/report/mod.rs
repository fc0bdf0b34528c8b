//! `momentum report`: offline analysis of a Parquet archive (the README's Commands).
//!
//! Per (service, environment) and per UTC day: requests, errors, availability and p99 from
//! the service-level `sli` rows (p99 by re-merging the day's DDSketches, not by averaging
//! per-window quantiles), the momentum index and its components as the day ended (the last
//! `momentum` row of the day), and from `events`: deployments and change failure, incidents
//! and time to restore. Columns whose data set is absent from the archive stay empty.
//!
//! Reading uses `arrow`/`parquet` directly, file by file, with a column projection and
//! `date=` partition pruning: the aggregation is one pass of group-by-day sums and sketch
//! merges, which a query engine would not make faster here but would add minutes of build.
//!
//! - [`read`]: scanning the archive into a [`Report`];
//! - [`render`]: table, JSON and CSV; [`html`]: the self-contained page with SVG charts.

pub mod html;
pub mod read;
pub mod render;

use std::path::PathBuf;

use serde::Serialize;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// aligned text, one block per service
    Table,
    /// one JSON object: `days` and per-service `services` summaries
    Json,
    /// one row per (service, environment, day)
    Csv,
    /// one self-contained HTML page with inline SVG charts
    Html,
}

/// What to report on.
#[derive(Clone, Debug)]
pub struct Options {
    /// the archive root (`archive.dir`)
    pub archive: PathBuf,
    /// first instant included, Unix ms
    pub from_ms: Option<i64>,
    /// first instant excluded, Unix ms
    pub to_ms: Option<i64>,
    /// only this service
    pub service: Option<String>,
}

/// Errors of `momentum report`.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `--archive` does not name a directory (bad usage)
    #[error("archive dir {0} does not exist or is not a directory")]
    NoArchive(PathBuf),
    /// a `--from`/`--to` value that is not a time (bad usage)
    #[error("{flag} {value:?}: {why}")]
    BadTime {
        /// which flag
        flag: &'static str,
        /// its value
        value: String,
        /// why it was refused
        why: String,
    },
    /// reading the archive or writing the output failed
    #[error("{path}: {source}")]
    Io {
        /// the path at fault
        path: PathBuf,
        /// why
        source: std::io::Error,
    },
}

impl ReportError {
    /// Bad usage (exit 2) rather than a runtime failure (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ReportError::NoArchive(_) | ReportError::BadTime { .. }
        )
    }
}

/// One (service, environment, UTC day).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DayRow {
    /// `YYYY-MM-DD` (UTC)
    pub date: String,
    /// service
    pub service: String,
    /// environment ("" when absent)
    pub environment: String,
    /// requests (service-level `sli` rows)
    pub requests: u64,
    /// errors
    pub errors: u64,
    /// 1 − errors/requests; None without requests
    pub availability: Option<f64>,
    /// p99 latency (s) of the day's merged sketches
    pub p99_s: Option<f64>,
    /// momentum index (0–100) as the day ended
    pub index: Option<f64>,
    /// component: throughput
    pub throughput: Option<f64>,
    /// component: lead_time
    pub lead_time: Option<f64>,
    /// component: stability
    pub stability: Option<f64>,
    /// component: recovery
    pub recovery: Option<f64>,
    /// component: reliability
    pub reliability: Option<f64>,
    /// lowest error budget remaining as the day ended
    pub error_budget_remaining: Option<f64>,
    /// deployments and rollbacks that day (None: no `events` data set)
    pub deployments: Option<u64>,
    /// of those, decided failed
    pub failed_deployments: Option<u64>,
    /// failed / decided deployments that day; None when none was decided
    pub change_failure_ratio: Option<f64>,
    /// incidents opened that day (None: no `events` data set)
    pub incidents: Option<u64>,
    /// median time to restore (s) of incidents resolved that day
    pub time_to_restore_s: Option<f64>,
}

/// One (service, environment) over the whole period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceSummary {
    /// service
    pub service: String,
    /// environment
    pub environment: String,
    /// first and last day with data
    pub first_date: String,
    /// last day with data
    pub last_date: String,
    /// requests over the period
    pub requests: u64,
    /// errors over the period
    pub errors: u64,
    /// availability over the period
    pub availability: Option<f64>,
    /// p99 over the period (all sketches merged)
    pub p99_s: Option<f64>,
    /// the latest momentum index
    pub index: Option<f64>,
    /// deployments over the period
    pub deployments: Option<u64>,
    /// change failure ratio over the period
    pub change_failure_ratio: Option<f64>,
    /// incidents over the period
    pub incidents: Option<u64>,
    /// median time to restore over the period (s)
    pub time_to_restore_s: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// the archive read
    pub archive: String,
    /// `--from` as RFC 3339, if given
    pub from: Option<String>,
    /// `--to` as RFC 3339, if given
    pub to: Option<String>,
    /// `--service`, if given
    pub service: Option<String>,
    /// files read
    pub files_read: u64,
    /// files that could not be read (named on stderr)
    pub files_unreadable: u64,
    /// sketches that could not be decoded (named on stderr)
    pub sketches_unreadable: u64,
    /// data sets that had at least one file in range
    pub datasets: Vec<String>,
    /// per service over the period, by (service, environment)
    pub services: Vec<ServiceSummary>,
    /// per (service, environment, day), sorted
    pub days: Vec<DayRow>,
}

/// Parses a `--from`/`--to` value: `YYYY-MM-DD` (UTC midnight; for `--to`, the end of that
/// day, so `--to 2026-11-30` includes the 30th), RFC 3339 (`2026-11-30T12:00:00Z`), or a
/// duration before `now_ms` (`7d`, `12h`).
pub fn parse_time(flag: &'static str, s: &str, end: bool, now_ms: i64) -> Result<i64, ReportError> {
    let bad = |why: &str| ReportError::BadTime {
        flag,
        value: s.to_string(),
        why: why.to_string(),
    };
    let t = s.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let d = if end {
            d.succ_opt().ok_or_else(|| bad("out of range"))?
        } else {
            d
        };
        let ms = d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| bad("out of range"))?
            .and_utc()
            .timestamp_millis();
        return Ok(ms);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Ok(d) = t.parse::<crate::config::Duration>() {
        return Ok(now_ms - d.as_millis() as i64);
    }
    Err(bad(
        "expected a date (2026-11-30), an RFC 3339 time (2026-11-30T12:00:00Z) or a duration before now (7d)",
    ))
}

/// An instant as RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Reads the archive and renders the report in `format`.
pub fn run(opts: &Options, format: Format) -> Result<String, ReportError> {
    let report = read::read(opts)?;
    Ok(match format {
        Format::Table => render::table(&report),
        Format::Json => render::json(&report),
        Format::Csv => render::csv(&report),
        Format::Html => html::page(&report),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_dates_instants_and_durations() {
        let day = 1_795_651_200_000; // 2026-11-26T00:00:00Z
        assert_eq!(parse_time("--from", "2026-11-26", false, 0).unwrap(), day);
        assert_eq!(
            parse_time("--to", "2026-11-26", true, 0).unwrap(),
            day + 86_400_000,
            "--to DATE includes that day"
        );
        assert_eq!(
            parse_time("--from", "2026-11-26T01:00:00+01:00", false, 0).unwrap(),
            day
        );
        assert_eq!(
            parse_time("--from", "2d", false, day).unwrap(),
            day - 2 * 86_400_000
        );
        let e = parse_time("--from", "yesterday", false, 0).unwrap_err();
        assert!(e.is_usage());
        assert!(e.to_string().starts_with("--from \"yesterday\""), "{e}");
    }
}
