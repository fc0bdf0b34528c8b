//! Scanning the archive: list the `date=` partitions in range, read each file's needed
//! columns, aggregate per (service, environment, UTC day).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, AsArray, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{DayRow, Options, Report, ReportError, ServiceSummary};
use crate::archive::schema::Dataset;
use crate::archive::{date_string, partition_day, PARQUET_SUFFIX};
use crate::sli::sketch::{Mapping, Sketch};

const MS_PER_DAY: i64 = 86_400_000;
/// Above this many files, progress is shown on stderr.
pub const PROGRESS_ABOVE_FILES: usize = 8;
/// Sketch decode errors named individually on stderr before they are only counted.
const NAMED_SKETCH_ERRORS: u64 = 5;

/// The momentum values kept per day: the last row of the day.
#[derive(Clone, Copy, Debug, Default)]
struct Momentum {
    at: i64,
    index: Option<f64>,
    components: [Option<f64>; 5],
    error_budget_remaining: Option<f64>,
}

#[derive(Default)]
struct DayAgg {
    requests: u64,
    errors: u64,
    sketch: Sketch,
    momentum: Option<Momentum>,
    deployments: u64,
    failed: u64,
    succeeded: u64,
    incidents: u64,
    restore_s: Vec<f64>,
}

/// service → environment → day
type Days = hashbrown::HashMap<String, hashbrown::HashMap<String, BTreeMap<i64, DayAgg>>>;

#[derive(Default)]
struct Agg {
    days: Days,
    sketch_errors: u64,
}

impl Agg {
    fn day(&mut self, service: &str, env: &str, day: i64) -> &mut DayAgg {
        // entry_ref allocates the key only for a pair not seen before, not per row.
        self.days
            .entry_ref(service)
            .or_default()
            .entry_ref(env)
            .or_default()
            .entry(day)
            .or_default()
    }
}

/// A data file found in range.
struct Found {
    dataset: Dataset,
    path: PathBuf,
    bytes: u64,
}

/// Lists the `*.parquet` files of every data set whose `date=` partition overlaps the range.
fn list(opts: &Options) -> Result<Vec<Found>, ReportError> {
    let first_day = opts.from_ms.map(|ms| ms.div_euclid(MS_PER_DAY));
    let last_day = opts.to_ms.map(|ms| (ms - 1).div_euclid(MS_PER_DAY));
    let mut out = Vec::new();
    for ds in Dataset::SUMMARIES {
        let dir = opts.archive.join(ds.name());
        let parts = match std::fs::read_dir(&dir) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ReportError::Io { path: dir, source }),
        };
        let mut dirs: Vec<(i64, PathBuf)> = parts
            .flatten()
            .filter_map(|e| {
                let day = e.file_name().to_str().and_then(partition_day)?;
                Some((day, e.path()))
            })
            .filter(|(d, _)| first_day.is_none_or(|f| *d >= f) && last_day.is_none_or(|l| *d <= l))
            .collect();
        dirs.sort();
        for (_, part) in dirs {
            let entries = std::fs::read_dir(&part).map_err(|source| ReportError::Io {
                path: part.clone(),
                source,
            })?;
            let mut files: Vec<Found> = entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| !n.starts_with('.') && n.ends_with(PARQUET_SUFFIX))
                })
                .map(|e| Found {
                    dataset: ds,
                    bytes: e.metadata().map_or(0, |m| m.len()),
                    path: e.path(),
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(files);
        }
    }
    Ok(out)
}

/// Reads the archive into a report.
pub fn read(opts: &Options) -> Result<Report, ReportError> {
    if !opts.archive.is_dir() {
        return Err(ReportError::NoArchive(opts.archive.clone()));
    }
    let files = list(opts)?;
    let accuracy = crate::config::Config::default().sli.latency_accuracy;
    let mapping = match Mapping::new(accuracy) {
        Ok(m) => m,
        Err(e) => {
            return Err(ReportError::Io {
                path: opts.archive.clone(),
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    let mut agg = Agg::default();
    let mut progress = Progress::new(
        files.len(),
        files.iter().map(|f| f.bytes).sum(),
        std::io::stderr().is_terminal(),
    );
    let (mut read_ok, mut unreadable) = (0u64, 0u64);
    let mut present = [false; Dataset::ALL.len()];
    for f in &files {
        match read_file(f, opts, &mapping, &mut agg) {
            Ok(()) => {
                read_ok += 1;
                present[f.dataset as usize] = true;
            }
            Err(e) => {
                unreadable += 1;
                progress.clear();
                eprintln!("momentum report: skipping {}: {e}", f.path.display());
            }
        }
        progress.advance(f.bytes);
    }
    progress.finish();
    if agg.sketch_errors > NAMED_SKETCH_ERRORS {
        eprintln!(
            "momentum report: {} latency sketches could not be decoded (p99 leaves them out)",
            agg.sketch_errors
        );
    }
    let events = present[Dataset::Events as usize];
    let mut report = Report {
        archive: opts.archive.display().to_string(),
        from: opts.from_ms.map(super::rfc3339),
        to: opts.to_ms.map(super::rfc3339),
        service: opts.service.clone(),
        files_read: read_ok,
        files_unreadable: unreadable,
        sketches_unreadable: agg.sketch_errors,
        datasets: Dataset::SUMMARIES
            .iter()
            .filter(|d| present[**d as usize])
            .map(|d| d.name().to_string())
            .collect(),
        ..Report::default()
    };
    let mut pairs: Vec<(&String, &String, &BTreeMap<i64, DayAgg>)> = agg
        .days
        .iter()
        .flat_map(|(s, envs)| envs.iter().map(move |(e, days)| (s, e, days)))
        .collect();
    pairs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (service, env, days) in pairs {
        let mut total = DayAgg::default();
        let mut latest: Option<Momentum> = None;
        for (&day, d) in days {
            report
                .days
                .push(day_row(service, env, day, d, &mapping, events));
            total.requests += d.requests;
            total.errors += d.errors;
            total.sketch.merge(&d.sketch);
            total.deployments += d.deployments;
            total.failed += d.failed;
            total.succeeded += d.succeeded;
            total.incidents += d.incidents;
            total.restore_s.extend_from_slice(&d.restore_s);
            if let Some(m) = d.momentum {
                latest = Some(m);
            }
        }
        let (first, last) = (
            days.keys().next().copied().unwrap_or_default(),
            days.keys().next_back().copied().unwrap_or_default(),
        );
        report.services.push(ServiceSummary {
            service: service.clone(),
            environment: env.clone(),
            first_date: date_string(first),
            last_date: date_string(last),
            requests: total.requests,
            errors: total.errors,
            availability: availability(total.requests, total.errors),
            p99_s: total.sketch.quantile(&mapping, 0.99),
            index: latest.and_then(|m| m.index),
            deployments: events.then_some(total.deployments),
            change_failure_ratio: cfr(total.failed, total.succeeded),
            incidents: events.then_some(total.incidents),
            time_to_restore_s: median(&mut total.restore_s),
        });
    }
    Ok(report)
}

fn availability(requests: u64, errors: u64) -> Option<f64> {
    (requests > 0).then(|| 1.0 - errors as f64 / requests as f64)
}

fn cfr(failed: u64, succeeded: u64) -> Option<f64> {
    let decided = failed + succeeded;
    (decided > 0).then(|| failed as f64 / decided as f64)
}

/// The nearest-rank median (the lower of the middle two for an even count), the
/// definition the live process uses too (`docs/slo.md`, "Medians"); None when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    crate::sli::rank::of_sorted(v, 0.5)
}

fn day_row(service: &str, env: &str, day: i64, d: &DayAgg, m: &Mapping, events: bool) -> DayRow {
    let mo = d.momentum.unwrap_or_default();
    let mut restore = d.restore_s.clone();
    DayRow {
        date: date_string(day),
        service: service.to_string(),
        environment: env.to_string(),
        requests: d.requests,
        errors: d.errors,
        availability: availability(d.requests, d.errors),
        p99_s: d.sketch.quantile(m, 0.99),
        index: mo.index,
        throughput: mo.components[0],
        lead_time: mo.components[1],
        stability: mo.components[2],
        recovery: mo.components[3],
        reliability: mo.components[4],
        error_budget_remaining: mo.error_budget_remaining,
        deployments: events.then_some(d.deployments),
        failed_deployments: events.then_some(d.failed),
        change_failure_ratio: cfr(d.failed, d.succeeded),
        incidents: events.then_some(d.incidents),
        time_to_restore_s: median(&mut restore),
    }
}

/// Column accessors that check the type instead of panicking on a foreign file.
struct Cols<'a>(&'a RecordBatch);

impl<'a> Cols<'a> {
    fn get(&self, name: &str) -> Result<&'a dyn Array, String> {
        self.0
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| format!("column {name} is missing"))
    }
    fn typed<T: 'a>(
        &self,
        name: &str,
        f: impl Fn(&'a dyn Array) -> Option<&'a T>,
        want: &str,
    ) -> Result<&'a T, String> {
        let c = self.get(name)?;
        f(c).ok_or_else(|| format!("column {name} is {}, expected {want}", c.data_type()))
    }
    fn ts(&self, n: &str) -> Result<&'a TimestampMillisecondArray, String> {
        self.typed(
            n,
            |c| c.as_primitive_opt::<TimestampMillisecondType>(),
            "timestamp(ms)",
        )
    }
    fn str(&self, n: &str) -> Result<&'a StringArray, String> {
        self.typed(n, |c| c.as_string_opt::<i32>(), "string")
    }
    fn i64(&self, n: &str) -> Result<&'a Int64Array, String> {
        self.typed(n, |c| c.as_primitive_opt::<Int64Type>(), "int64")
    }
    fn f64(&self, n: &str) -> Result<&'a Float64Array, String> {
        self.typed(n, |c| c.as_primitive_opt::<Float64Type>(), "float64")
    }
    fn bin(&self, n: &str) -> Result<&'a BinaryArray, String> {
        self.typed(n, |c| c.as_binary_opt::<i32>(), "binary")
    }
}

fn opt_f64(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i))
        .then(|| a.value(i))
        .filter(|v| v.is_finite())
}

const SLI_COLS: [&str; 7] = [
    "window_start",
    "service_name",
    "environment",
    "operation",
    "requests",
    "errors",
    "latency_sketch",
];
const MOMENTUM_COLS: [&str; 10] = [
    "window_start",
    "service_name",
    "environment",
    "index",
    "throughput",
    "lead_time",
    "stability",
    "recovery",
    "reliability",
    "error_budget_remaining",
];
const EVENT_COLS: [&str; 6] = [
    "time",
    "service_name",
    "environment",
    "kind",
    "result",
    "duration_s",
];

fn read_file(f: &Found, opts: &Options, m: &Mapping, agg: &mut Agg) -> Result<(), String> {
    let file = File::open(&f.path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let wanted: &[&str] = match f.dataset {
        Dataset::Sli => &SLI_COLS,
        Dataset::Momentum => &MOMENTUM_COLS,
        Dataset::Events => &EVENT_COLS,
        Dataset::Spans => return Ok(()),
    };
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(wanted.len());
    for name in wanted {
        roots.push(
            schema
                .index_of(name)
                .map_err(|_| format!("column {name} is missing"))?,
        );
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(16 * 1024)
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        match f.dataset {
            Dataset::Sli => sli_batch(&batch, &f.path, opts, m, agg)?,
            Dataset::Momentum => momentum_batch(&batch, opts, agg)?,
            Dataset::Events => events_batch(&batch, opts, agg)?,
            Dataset::Spans => {}
        }
    }
    Ok(())
}

fn in_range(opts: &Options, ms: i64) -> bool {
    opts.from_ms.is_none_or(|f| ms >= f) && opts.to_ms.is_none_or(|t| ms < t)
}

fn wanted_service(opts: &Options, s: &str) -> bool {
    opts.service.as_deref().is_none_or(|w| w == s)
}

fn sli_batch(
    b: &RecordBatch,
    path: &Path,
    opts: &Options,
    m: &Mapping,
    agg: &mut Agg,
) -> Result<(), String> {
    let c = Cols(b);
    let (start, svc, env, op) = (
        c.ts("window_start")?,
        c.str("service_name")?,
        c.str("environment")?,
        c.str("operation")?,
    );
    let (req, err, sk) = (
        c.i64("requests")?,
        c.i64("errors")?,
        c.bin("latency_sketch")?,
    );
    for i in 0..b.num_rows() {
        // Service-level rows only: per-operation rows count the same requests again.
        let t = start.value(i);
        if !op.value(i).is_empty() || !in_range(opts, t) || !wanted_service(opts, svc.value(i)) {
            continue;
        }
        let sketch = if sk.is_null(i) {
            None
        } else {
            match Sketch::decode_ddsketch(sk.value(i), m) {
                Ok(s) => Some(s),
                Err(e) => {
                    agg.sketch_errors += 1;
                    if agg.sketch_errors <= NAMED_SKETCH_ERRORS {
                        eprintln!("momentum report: {} row {i}: {e}", path.display());
                    }
                    None
                }
            }
        };
        let d = agg.day(svc.value(i), env.value(i), t.div_euclid(MS_PER_DAY));
        d.requests += req.value(i).max(0) as u64;
        d.errors += err.value(i).max(0) as u64;
        if let Some(s) = sketch {
            d.sketch.merge(&s);
        }
    }
    Ok(())
}

fn momentum_batch(b: &RecordBatch, opts: &Options, agg: &mut Agg) -> Result<(), String> {
    let c = Cols(b);
    let (start, svc, env) = (
        c.ts("window_start")?,
        c.str("service_name")?,
        c.str("environment")?,
    );
    let index = c.f64("index")?;
    let comps = [
        c.f64("throughput")?,
        c.f64("lead_time")?,
        c.f64("stability")?,
        c.f64("recovery")?,
        c.f64("reliability")?,
    ];
    let budget = c.f64("error_budget_remaining")?;
    for i in 0..b.num_rows() {
        let t = start.value(i);
        if !in_range(opts, t) || !wanted_service(opts, svc.value(i)) {
            continue;
        }
        let row = Momentum {
            at: t,
            index: opt_f64(index, i),
            components: comps.map(|a| opt_f64(a, i)),
            error_budget_remaining: opt_f64(budget, i),
        };
        let d = agg.day(svc.value(i), env.value(i), t.div_euclid(MS_PER_DAY));
        if d.momentum.is_none_or(|m| m.at <= t) {
            d.momentum = Some(row);
        }
    }
    Ok(())
}

fn events_batch(b: &RecordBatch, opts: &Options, agg: &mut Agg) -> Result<(), String> {
    let c = Cols(b);
    let (time, svc, env, kind) = (
        c.ts("time")?,
        c.str("service_name")?,
        c.str("environment")?,
        c.str("kind")?,
    );
    let (result, duration) = (c.str("result")?, c.f64("duration_s")?);
    for i in 0..b.num_rows() {
        let t = time.value(i);
        if !in_range(opts, t) || !wanted_service(opts, svc.value(i)) {
            continue;
        }
        let d = agg.day(svc.value(i), env.value(i), t.div_euclid(MS_PER_DAY));
        let res = (!result.is_null(i)).then(|| result.value(i));
        match kind.value(i) {
            "deployment" | "rollback" => {
                d.deployments += 1;
                match res {
                    Some("failed") => d.failed += 1,
                    Some("succeeded") => d.succeeded += 1,
                    _ => {}
                }
            }
            "incident_open" => d.incidents += 1,
            "incident_resolved" => {
                if let Some(s) = opt_f64(duration, i) {
                    d.restore_s.push(s);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A progress bar on stderr while reading many files: redrawn in place on a terminal; on
/// anything else (a log, a CI job) only the closing summary line is printed.
struct Progress {
    total: usize,
    total_bytes: u64,
    done: usize,
    bytes: u64,
    started: Instant,
    last_draw: Option<Instant>,
    tty: bool,
}

impl Progress {
    fn new(total: usize, total_bytes: u64, tty: bool) -> Progress {
        Progress {
            total,
            total_bytes,
            done: 0,
            bytes: 0,
            started: Instant::now(),
            last_draw: None,
            tty,
        }
    }

    fn shown(&self) -> bool {
        self.total > PROGRESS_ABOVE_FILES
    }

    fn advance(&mut self, bytes: u64) {
        self.done += 1;
        self.bytes += bytes;
        if !(self.shown() && self.tty) {
            return;
        }
        let due = self
            .last_draw
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(80));
        if due || self.done == self.total {
            self.last_draw = Some(Instant::now());
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}", bar(self.done, self.total, self.bytes, 30));
            let _ = err.flush();
        }
    }

    fn clear(&self) {
        if self.shown() && self.tty && self.last_draw.is_some() {
            eprint!("\r\x1b[2K");
        }
    }

    fn finish(&self) {
        if !self.shown() {
            return;
        }
        self.clear();
        eprintln!(
            "momentum report: read {} files ({:.1} MiB) in {:.2}s",
            self.total,
            self.total_bytes as f64 / (1024.0 * 1024.0),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// One frame of the progress bar: `[#######.......] 12/40 files, 3.1 MiB`.
pub fn bar(done: usize, total: usize, bytes: u64, width: usize) -> String {
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    format!(
        "[{}{}] {done}/{total} files, {:.1} MiB",
        "#".repeat(filled),
        ".".repeat(width - filled),
        bytes as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_frames() {
        assert_eq!(bar(0, 4, 0, 8), "[........] 0/4 files, 0.0 MiB");
        assert_eq!(bar(2, 4, 1 << 20, 8), "[####....] 2/4 files, 1.0 MiB");
        assert_eq!(bar(4, 4, 0, 8), "[########] 4/4 files, 0.0 MiB");
        assert_eq!(bar(0, 0, 0, 4), "[####] 0/0 files, 0.0 MiB");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(
            median(&mut [4.0, 1.0, 2.0, 3.0]),
            Some(2.0),
            "the lower middle"
        );
    }
}
