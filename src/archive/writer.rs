//! The archive writer task: buffers rows per data set and writes one Parquet file per data
//! set (and UTC day) per flush.
//!
//! - **When**: every `archive.window` of wall time, when a data set buffers
//!   [`MAX_BUFFERED_ROWS`] rows, on [`ArchiveMsg::Flush`], and when the channel closes (every
//!   sender dropped: shutdown).
//! - **Off the async runtime**: Arrow/Parquet encoding, compression and fsync are CPU and
//!   disk work, done on `spawn_blocking`. The task does not read the channel meanwhile, so a
//!   slow disk fills the bounded channel ([`CHANNEL_CAPACITY`] messages) and the shards wait:
//!   backpressure, not memory growth.
//! - **Atomic**: each file is written as a hidden temp file in its partition, fsynced,
//!   renamed into place, and the directory fsynced; a reader never sees a partial file, and a
//!   crash leaves at worst a temp file that the next start removes.
//! - **Never a panic**: every failure is logged with its path and counted in
//!   [`ArchiveStats`]; rows of a file that could not be written are dropped and counted.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::schema::{Dataset, SCHEMA_VERSION};
use super::{batch, layout, ArchiveMsg, ArchiveSender, EventRow, MomentumRow, SliRow, SpanRow};
use crate::config::{ArchiveConfig, Compression};

/// Messages the channel holds before senders wait.
pub const CHANNEL_CAPACITY: usize = 64;
/// A data set flushes as soon as it buffers this many rows.
pub const MAX_BUFFERED_ROWS: usize = 65_536;
/// Rows per Parquet row group: DuckDB's own row group size (its unit of parallel scan).
/// A flush writes at most [`MAX_BUFFERED_ROWS`] + [`super::MAX_ROWS_PER_MESSAGE`] − 1 rows
/// per data set, so a file is one row group: one footer read, then whole-column reads,
/// with min/max statistics per column chunk and page for pruning.
pub const ROW_GROUP_ROWS: usize = 122_880;
/// zstd level: 3 is zstd's own default, a good ratio at a cost far below the encoding's.
const ZSTD_LEVEL: i32 = 3;
const RETENTION_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Errors of the archive writer. Disk errors are retryable (a later flush may succeed);
/// an encoding error is permanent for those rows.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// a file system operation failed
    #[error("{op} {path}: {source}")]
    Io {
        /// what was attempted
        op: &'static str,
        /// the path at fault
        path: PathBuf,
        /// why
        source: std::io::Error,
    },
    /// Parquet encoding failed
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        /// the temp file being written
        path: PathBuf,
        /// why
        source: parquet::errors::ParquetError,
    },
    /// rows did not form a valid Arrow batch
    #[error("building the {dataset} batch: {source}")]
    Arrow {
        /// the data set
        dataset: &'static str,
        /// why
        source: arrow::error::ArrowError,
    },
}

impl ArchiveError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ArchiveError::Io { .. })
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Self-metrics of the writer, read by the Prometheus exposition.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    /// files renamed into place (`momentum_archive_files_written_total`)
    pub files_written: AtomicU64,
    /// rows written, by data set (index of [`Dataset::ALL`])
    pub rows_written: [AtomicU64; 4],
    /// bytes of the files written
    pub bytes_written: AtomicU64,
    /// failed operations: writes, renames, fsyncs, removals (each logged with its path)
    pub failures: AtomicU64,
    /// rows lost because their file could not be written
    pub rows_dropped: AtomicU64,
    /// time spent encoding and writing files (ns)
    pub write_ns: AtomicU64,
    /// stray temp files removed at start
    pub temp_files_removed: AtomicU64,
    /// partitions deleted by retention
    pub partitions_expired: AtomicU64,
    /// state checkpoints written (`archive.dir/state/checkpoint.bin`)
    pub checkpoints: AtomicU64,
    /// pairs restored from the checkpoint at start
    pub pairs_restored: AtomicU64,
    queue: OnceLock<mpsc::WeakSender<ArchiveMsg>>,
}

impl ArchiveStats {
    /// Messages waiting in the writer's channel (0 once it is closed).
    pub fn queue_depth(&self) -> u64 {
        self.queue
            .get()
            .and_then(|w| w.upgrade())
            .map_or(0, |tx| (tx.max_capacity() - tx.capacity()) as u64)
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Prepares the archive dir (creates it, removes stray temp files, applies retention) and
/// starts the writer task on the current runtime. Fails only when the dir cannot be created:
/// a bad archive dir is a start-up error, not a silent loss of every window.
pub fn start(
    cfg: &ArchiveConfig,
    stats: Arc<ArchiveStats>,
) -> Result<(ArchiveSender, JoinHandle<()>), ArchiveError> {
    let root = cfg.dir.clone();
    std::fs::create_dir_all(&root).map_err(io("creating archive dir", &root))?;
    // (`momentum validate` checks the same with `super::check_dir`, creating nothing)
    let files = Files::new(cfg, stats.clone());
    files.housekeeping_at_start();
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let _ = stats.queue.set(tx.downgrade());
    let every = Duration::from_nanos(cfg.window.as_nanos()).max(Duration::from_secs(1));
    let handle = tokio::spawn(run(rx, files, every));
    Ok((tx, handle))
}

/// Rows waiting for the next flush.
#[derive(Default)]
struct Buffers {
    sli: Vec<SliRow>,
    momentum: Vec<MomentumRow>,
    events: Vec<EventRow>,
    spans: Vec<SpanRow>,
}

impl Buffers {
    fn is_empty(&self) -> bool {
        self.sli.is_empty()
            && self.momentum.is_empty()
            && self.events.is_empty()
            && self.spans.is_empty()
    }
    fn full(&self) -> bool {
        self.sli.len() >= MAX_BUFFERED_ROWS
            || self.momentum.len() >= MAX_BUFFERED_ROWS
            || self.events.len() >= MAX_BUFFERED_ROWS
            || self.spans.len() >= MAX_BUFFERED_ROWS
    }
}

async fn run(mut rx: mpsc::Receiver<ArchiveMsg>, files: Files, every: Duration) {
    let mut files = Some(files);
    let mut buf = Buffers::default();
    let mut flush_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retention_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + RETENTION_EVERY,
        RETENTION_EVERY,
    );
    retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(ArchiveMsg::Sli(rows)) => buf.sli.extend(rows),
                Some(ArchiveMsg::Momentum(rows)) => buf.momentum.extend(rows),
                Some(ArchiveMsg::Events(rows)) => buf.events.extend(rows),
                Some(ArchiveMsg::Spans(rows)) => buf.spans.extend(rows),
                Some(ArchiveMsg::Flush(ack)) => {
                    flush(&mut files, &mut buf).await;
                    let _ = ack.send(());
                    continue;
                }
                None => break,
            },
            _ = flush_tick.tick() => {
                flush(&mut files, &mut buf).await;
                continue;
            }
            _ = retention_tick.tick() => {
                if let Some(f) = files.take() {
                    files = on_blocking(f, |f| f.retention()).await;
                }
                continue;
            }
        }
        if buf.full() {
            flush(&mut files, &mut buf).await;
        }
    }
    // Every sender is gone (shutdown): write what is left so the last files are complete.
    flush(&mut files, &mut buf).await;
}

/// Runs `work` on a blocking thread and hands `files` back (None only if the blocking
/// task panicked, which the code never does on purpose; the next flush rebuilds it).
async fn on_blocking(
    mut files: Files,
    work: impl FnOnce(&mut Files) + Send + 'static,
) -> Option<Files> {
    let stats = files.stats.clone();
    match tokio::task::spawn_blocking(move || {
        work(&mut files);
        files
    })
    .await
    {
        Ok(f) => Some(f),
        Err(e) => {
            add(&stats.failures, 1);
            tracing::error!("archive writer: blocking task failed: {e}");
            None
        }
    }
}

async fn flush(files: &mut Option<Files>, buf: &mut Buffers) {
    if buf.is_empty() {
        return;
    }
    let Some(f) = files.take() else {
        // The previous blocking task died; drop this batch rather than lose the task.
        tracing::error!("archive writer unavailable: dropping buffered rows");
        return;
    };
    let pending = std::mem::take(buf);
    let config = f.config.clone();
    let stats = f.stats.clone();
    *files = on_blocking(f, move |f| f.flush(pending)).await;
    if files.is_none() {
        *files = Some(Files::from_parts(config, stats));
    }
}

/// Everything the blocking side needs: where, how, and counters.
struct Files {
    config: ArchiveConfig,
    props: WriterProperties,
    stats: Arc<ArchiveStats>,
    pid: u32,
    seq: u64,
    /// The crash tests' pause hook (`tests/archive.rs`): with the environment variable
    /// `MOMENTUM_TEST_ARCHIVE_PAUSE_AT=N`, the N-th file this process writes stops
    /// halfway — half its rows written to the temp file — and the writer waits there for
    /// the test's SIGKILL, so a kill lands mid-write every time rather than by luck.
    /// Unset in any real deployment.
    pause_at: Option<u64>,
}

impl Files {
    fn new(cfg: &ArchiveConfig, stats: Arc<ArchiveStats>) -> Files {
        Files::from_parts(cfg.clone(), stats)
    }

    fn from_parts(config: ArchiveConfig, stats: Arc<ArchiveStats>) -> Files {
        let props = writer_properties(config.compression);
        Files {
            config,
            props,
            stats,
            pid: std::process::id(),
            seq: 0,
            pause_at: std::env::var("MOMENTUM_TEST_ARCHIVE_PAUSE_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    fn root(&self) -> &Path {
        &self.config.dir
    }

    fn housekeeping_at_start(&self) {
        let h = layout::remove_stray_temp_files(self.root());
        if !h.removed.is_empty() {
            tracing::info!(
                count = h.removed.len(),
                dir = %self.root().display(),
                "archive: removed temp files left by an earlier crash"
            );
        }
        add(&self.stats.temp_files_removed, h.removed.len() as u64);
        self.report_failures("removing stray temp file", h.failures);
        self.retention();
    }

    fn retention(&self) {
        let h =
            layout::apply_retention(self.root(), self.config.retention.as_nanos(), now_unix_ns());
        for p in &h.removed {
            tracing::info!(path = %p.display(), "archive: deleted partition past retention");
        }
        add(&self.stats.partitions_expired, h.removed.len() as u64);
        self.report_failures("applying retention", h.failures);
    }

    fn report_failures(&self, what: &str, failures: Vec<(PathBuf, std::io::Error)>) {
        for (p, e) in failures {
            add(&self.stats.failures, 1);
            tracing::error!(path = %p.display(), "archive: {what}: {e}");
        }
    }

    /// Writes every buffered row: per data set, one file per UTC day present.
    fn flush(&mut self, mut b: Buffers) {
        let t0 = Instant::now();
        let flush_ms = now_unix_ns() / 1_000_000;
        // Sorted by (day, series, time): each day is one contiguous run, and runs of equal
        // strings make the dictionary-encoded columns compress to almost nothing.
        b.sli.sort_unstable_by(|a, c| {
            (batch::day(a.window_start_ns), &a.service, &a.environment)
                .cmp(&(batch::day(c.window_start_ns), &c.service, &c.environment))
                .then_with(|| a.operation.cmp(&c.operation))
                .then_with(|| a.window_start_ns.cmp(&c.window_start_ns))
        });
        b.momentum.sort_unstable_by(|a, c| {
            (
                batch::day(a.window_start_ns),
                &a.service,
                &a.environment,
                a.window_start_ns,
            )
                .cmp(&(
                    batch::day(c.window_start_ns),
                    &c.service,
                    &c.environment,
                    c.window_start_ns,
                ))
        });
        b.events.sort_by_key(|e| e.time_ns);
        b.spans.sort_by_key(|s| s.end_ns);
        self.write_days(
            Dataset::Sli,
            &b.sli,
            |r| r.window_start_ns,
            batch::sli,
            flush_ms,
        );
        self.write_days(
            Dataset::Momentum,
            &b.momentum,
            |r| r.window_start_ns,
            batch::momentum,
            flush_ms,
        );
        self.write_days(
            Dataset::Events,
            &b.events,
            |r| r.time_ns,
            batch::events,
            flush_ms,
        );
        self.write_days(
            Dataset::Spans,
            &b.spans,
            |r| r.end_ns,
            batch::spans,
            flush_ms,
        );
        add(&self.stats.write_ns, t0.elapsed().as_nanos() as u64);
    }

    fn write_days<R>(
        &mut self,
        ds: Dataset,
        rows: &[R],
        time_ns: impl Fn(&R) -> u64,
        to_batch: impl Fn(&[R]) -> Result<RecordBatch, arrow::error::ArrowError>,
        flush_ms: u64,
    ) {
        for run in rows.chunk_by(|a, b| batch::day(time_ns(a)) == batch::day(time_ns(b))) {
            let day = batch::day(time_ns(&run[0]));
            let result = to_batch(run)
                .map_err(|source| ArchiveError::Arrow {
                    dataset: ds.name(),
                    source,
                })
                .and_then(|b| self.write_file(ds, day, &b, flush_ms));
            match result {
                Ok(bytes) => {
                    add(&self.stats.files_written, 1);
                    add(&self.stats.bytes_written, bytes);
                    add(&self.stats.rows_written[ds as usize], run.len() as u64);
                }
                Err(e) => {
                    add(&self.stats.failures, 1);
                    add(&self.stats.rows_dropped, run.len() as u64);
                    tracing::error!(
                        dataset = ds.name(),
                        rows = run.len(),
                        retryable = e.is_retryable(),
                        "archive: {e}; the rows of this file are dropped"
                    );
                }
            }
        }
    }

    /// Writes one file atomically; returns its size in bytes.
    fn write_file(
        &mut self,
        ds: Dataset,
        day: i64,
        batch: &RecordBatch,
        flush_ms: u64,
    ) -> Result<u64, ArchiveError> {
        let dir = self.root().join(ds.name()).join(batch::date_folder(day));
        self.ensure_dir(&dir)?;
        self.seq += 1;
        let name = layout::file_name(flush_ms, self.pid, self.seq);
        let tmp = layout::temp_path(&dir, &name);
        let pause = self.pause_at == Some(self.seq);
        let result = write_parquet(&tmp, batch, &self.props, pause);
        let result = result.and_then(|bytes| {
            let dest = dir.join(&name);
            std::fs::rename(&tmp, &dest).map_err(io("renaming into place", &dest))?;
            sync_dir(&dir)?;
            Ok(bytes)
        });
        if result.is_err() {
            // Best effort: a temp file that cannot be removed now is removed at next start.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Creates a partition dir when missing and makes its entry durable (fsync of the
    /// parents). Checked before every file — a stat is nothing next to a Parquet write —
    /// so a partition removed under us (retention, an operator) is simply made again.
    fn ensure_dir(&self, dir: &Path) -> Result<(), ArchiveError> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(io("creating partition dir", dir))?;
        if let Some(ds_dir) = dir.parent() {
            sync_dir(ds_dir)?;
            if let Some(root) = ds_dir.parent() {
                sync_dir(root)?;
            }
        }
        Ok(())
    }
}

fn writer_properties(c: Compression) -> WriterProperties {
    let codec = match c {
        Compression::Zstd => Codec::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default()),
        Compression::Snappy => Codec::SNAPPY,
        Compression::None => Codec::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("momentum {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "momentum.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        )]))
        .build()
}

/// Encodes `batch` into a new file at `tmp` and fsyncs it; returns its size. With `pause`
/// (the crash tests' hook, [`Files::pause_at`]) it writes half the rows and waits for a
/// SIGKILL.
fn write_parquet(
    tmp: &Path,
    batch: &RecordBatch,
    props: &WriterProperties,
    pause: bool,
) -> Result<u64, ArchiveError> {
    // create_new: a leftover of the same name (impossible by construction) is an error,
    // never silently truncated.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io("creating temp file", tmp))?;
    let pq = |source| ArchiveError::Parquet {
        path: tmp.to_path_buf(),
        source,
    };
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).map_err(pq)?;
    if pause {
        w.write(&batch.slice(0, batch.num_rows() / 2)).map_err(pq)?;
        w.flush().map_err(pq)?;
        tracing::warn!(path = %tmp.display(), "MOMENTUM_TEST_ARCHIVE_PAUSE_AT: the writer pauses mid-file");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    w.write(batch).map_err(pq)?;
    let file: File = w.into_inner().map_err(pq)?;
    file.sync_all().map_err(io("fsync of temp file", tmp))?;
    let len = file
        .metadata()
        .map_err(io("reading size of temp file", tmp))?
        .len();
    Ok(len)
}

/// fsync of a directory, so a rename or a new entry in it survives a power loss.
fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync of dir", dir))
}

#[cfg(test)]
mod tests;
