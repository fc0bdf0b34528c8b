//! The Parquet archive of closed windows (SPEC §7). Shards hand finished rows to the
//! writer task over a bounded channel ([`ArchiveSender`]); a slow disk fills the channel,
//! which slows the shards, which fills their queues, which turns into backpressure at the
//! receivers — never unbounded memory.
//!
//! - [`schema`]: the Arrow schemas of the data sets (SPEC §7), pinned by a golden file;
//! - [`writer`]: the writer task (buffering, flushes, atomic files, retention);
//! - `batch`: rows → Arrow record batches; `layout`: paths, temp files, retention.
//!
//! `docs/archive.md` is the user-facing description of the layout and every column.

mod batch;
mod layout;
pub mod schema;
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

/// A message to the archive writer.
#[derive(Debug)]
pub enum ArchiveMsg {
    /// closed `sli` rows
    Sli(Vec<SliRow>),
    /// events
    Events(Vec<EventRow>),
    /// closed `momentum` rows
    Momentum(Vec<MomentumRow>),
    /// write everything buffered now (one file per data set), then answer
    Flush(oneshot::Sender<()>),
}

/// The sending side the shards hold.
pub type ArchiveSender = mpsc::Sender<ArchiveMsg>;
