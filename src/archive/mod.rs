//! The Parquet archive of closed windows (docs/archive.md). Shards hand finished rows to the
//! writer task over a bounded channel ([`ArchiveSender`]); a slow disk fills the channel,
//! which slows the shards, which fills their queues, which turns into backpressure at the
//! receivers — never unbounded memory.
//!
//! - [`schema`]: the Arrow schemas of the data sets (docs/archive.md), pinned by a golden file;
//! - [`writer`]: the writer task (buffering, flushes, atomic files, retention);
//! - `batch`: rows → Arrow record batches; `layout`: paths, temp files, retention.
//!
//! `docs/archive.md` is the user-facing description of the layout and every column.

mod batch;
mod layout;
pub mod schema;
pub mod spans;
pub mod writer;

pub use batch::{date_folder, date_string, day};
pub use layout::{is_temp_name, partition_day, PARQUET_SUFFIX, TEMP_SUFFIX};
pub use writer::{ArchiveError, ArchiveStats};

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// One row of the `sli` data set: a series over one archive window.
#[derive(Clone, Debug, PartialEq)]
pub struct SliRow {
    /// window start, Unix ns (aligned to `archive.window`)
    pub window_start_ns: u64,
    /// window end, Unix ns
    pub window_end_ns: u64,
    /// service
    pub service: Arc<str>,
    /// environment ("" when absent)
    pub environment: Arc<str>,
    /// operation ("" for the service-level row)
    pub operation: Arc<str>,
    /// requests
    pub requests: u64,
    /// errors
    pub errors: u64,
    /// requests at or under the latency threshold; None without a latency objective
    pub latency_good: Option<u64>,
    /// p50 latency (s)
    pub latency_p50_s: Option<f64>,
    /// p95 latency (s)
    pub latency_p95_s: Option<f64>,
    /// p99 latency (s)
    pub latency_p99_s: Option<f64>,
    /// largest latency (s)
    pub latency_max_s: Option<f64>,
    /// the window's sketch, DDSketch protobuf (see `sli::sketch`)
    pub latency_sketch: Vec<u8>,
}

/// One row of the `events` data set.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    /// when it happened (event time), Unix ns
    pub time_ns: u64,
    /// service
    pub service: Arc<str>,
    /// environment
    pub environment: Arc<str>,
    /// deployment, rollback, incident_open, incident_resolved, pipeline_run, alert_start, alert_end
    pub kind: &'static str,
    /// version (deployments), or None
    pub version: Option<String>,
    /// the version replaced (deployments, rollbacks)
    pub previous_version: Option<String>,
    /// result (succeeded/failed, pipeline result, alert severity…)
    pub result: Option<String>,
    /// a duration in seconds (time to restore, pipeline duration…)
    pub duration_s: Option<f64>,
    /// everything else, as a JSON object
    pub attributes: String,
}

/// One row of the `momentum` data set: a pair over one archive window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MomentumRow {
    /// window start, Unix ns
    pub window_start_ns: u64,
    /// window end, Unix ns
    pub window_end_ns: u64,
    /// service
    pub service: Arc<str>,
    /// environment
    pub environment: Arc<str>,
    /// the momentum index (0–100)
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
    /// deployments per day over the lookback
    pub deploy_frequency_per_day: Option<f64>,
    /// median lead time (s)
    pub lead_time_s: Option<f64>,
    /// change failure ratio
    pub change_failure_ratio: Option<f64>,
    /// median time to restore (s)
    pub time_to_restore_s: Option<f64>,
    /// availability over 5m
    pub availability_5m: Option<f64>,
    /// highest burn rate over 1h across objectives
    pub burn_rate_1h: Option<f64>,
    /// lowest error budget remaining across objectives
    pub error_budget_remaining: Option<f64>,
}

/// One row of the `spans` data set (`archive.spans: true`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanRow {
    /// trace id, lowercase hex
    pub trace_id: String,
    /// span id, lowercase hex
    pub span_id: String,
    /// parent span id, lowercase hex ("" for a root span)
    pub parent_span_id: String,
    /// service (identity as the README's How it works says)
    pub service: Arc<str>,
    /// environment
    pub environment: Arc<str>,
    /// resource `service.version` ("" when absent)
    pub version: Arc<str>,
    /// span name
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer`, `unspecified`
    pub kind: &'static str,
    /// start, Unix ns
    pub start_ns: u64,
    /// end, Unix ns
    pub end_ns: u64,
    /// `unset`, `ok`, `error`
    pub status_code: &'static str,
    /// status message
    pub status_message: String,
    /// span attributes as a JSON object
    pub attributes: String,
    /// resource attributes as a JSON object (shared by the spans of a resource)
    pub resource_attributes: Arc<str>,
}

/// A message to the archive writer.
#[derive(Debug)]
pub enum ArchiveMsg {
    /// closed `sli` rows
    Sli(Vec<SliRow>),
    /// events
    Events(Vec<EventRow>),
    /// closed `momentum` rows
    Momentum(Vec<MomentumRow>),
    /// raw spans (`archive.spans: true`)
    Spans(Vec<SpanRow>),
    /// write everything buffered now (one file per data set), then answer
    Flush(oneshot::Sender<()>),
}

/// The sending side the shards hold.
pub type ArchiveSender = mpsc::Sender<ArchiveMsg>;

/// Rows per message at most: with the channel's [`writer::CHANNEL_CAPACITY`] messages this
/// bounds what waits in the channel (64 × 4,096 rows), whatever a replay at full speed
/// closes in one tick.
pub const MAX_ROWS_PER_MESSAGE: usize = 4096;

/// Hands `rows` to the writer in messages of at most [`MAX_ROWS_PER_MESSAGE`] rows,
/// waiting for room in the channel (the backpressure of a slow disk). Returns the time spent
/// waiting, in ns. Rows are dropped silently only when the writer is gone (shutdown is
/// over); each row is moved once.
pub async fn send_rows<R>(tx: &ArchiveSender, rows: Vec<R>, wrap: fn(Vec<R>) -> ArchiveMsg) -> u64 {
    let mut waited = 0u64;
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<R> = rows.by_ref().take(MAX_ROWS_PER_MESSAGE).collect();
        if chunk.is_empty() {
            return waited;
        }
        match tx.try_send(wrap(chunk)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let t0 = std::time::Instant::now();
                let sent = tx.send(msg).await;
                waited += t0.elapsed().as_nanos() as u64;
                if sent.is_err() {
                    return waited;
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return waited,
        }
    }
}

/// Whether `create_dir_all(dir)` can make `dir` a directory, found without creating
/// anything (`momentum validate`): an existing `dir` must be a directory, else its nearest
/// existing ancestor must be one.
pub fn check_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut p = dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", p.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match p.parent() {
                Some(q) if !q.as_os_str().is_empty() => p = q,
                _ => return Ok(()),
            },
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> EventRow {
        EventRow {
            time_ns: i,
            service: "s".into(),
            environment: "".into(),
            kind: "deployment",
            version: None,
            previous_version: None,
            result: None,
            duration_s: None,
            attributes: String::new(),
        }
    }

    #[tokio::test]
    async fn rows_go_in_bounded_messages_in_order() {
        let (tx, mut rx) = mpsc::channel(8);
        let waited = send_rows(&tx, (0..10_000).map(row).collect(), ArchiveMsg::Events).await;
        assert_eq!(waited, 0, "room for every message");
        drop(tx);
        let mut sizes = Vec::new();
        let mut next = 0;
        while let Some(ArchiveMsg::Events(rows)) = rx.recv().await {
            sizes.push(rows.len());
            for r in rows {
                assert_eq!(r.time_ns, next);
                next += 1;
            }
        }
        assert_eq!(sizes, [4096, 4096, 1808]);
    }

    #[tokio::test]
    async fn a_full_channel_makes_the_sender_wait_and_counts_it() {
        let (tx, mut rx) = mpsc::channel(1);
        let reader = tokio::spawn(async move {
            // Let the sender find the channel full before draining it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let mut n = 0;
            while let Some(ArchiveMsg::Events(rows)) = rx.recv().await {
                n += rows.len();
            }
            n
        });
        let waited = send_rows(&tx, (0..3 * 4096).map(row).collect(), ArchiveMsg::Events).await;
        drop(tx);
        assert_eq!(reader.await.unwrap(), 3 * 4096);
        assert!(waited > 0, "the sender had to wait for room");
    }
}
