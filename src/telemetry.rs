//! What the exporters and the admin API read: the shard snapshots (through the router)
//! and the process-wide self-telemetry counters.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::archive::ArchiveStats;
use crate::pipeline::router::Router;
use crate::pipeline::Shared;
use crate::signal::RefusalCounters;

/// Read-only handles to everything exported.
#[derive(Clone)]
pub struct Telemetry {
    /// shard snapshots
    pub router: Arc<Router>,
    /// clocks and counters
    pub shared: Arc<Shared>,
    /// receiver refusals
    pub refused: Arc<RefusalCounters>,
    /// process start (Unix ns): the start time of self-telemetry counters
    pub started_ns: u64,
    /// archive writer counters
    pub archive: Arc<ArchiveStats>,
    /// one entry per configured exporter, in start order
    pub exporters: Vec<Arc<ExporterStats>>,
}

/// Counters of one exporter, exported with the label `exporter="{name}"`.
///
/// Items are what the exporter ships: OTLP data points, remote-write samples, forwarded
/// spans/points/records. A push that is given up on counts its items as failed; the
/// next push of cumulative values carries them again, so nothing is double counted.
/// An exporter with a queue (`forward`) also reports its depth, bytes and the entries
/// found corrupt when it read its queue back from disk.
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// the `exporter` label value (`otlp`, `remote_write`, `forward`)
    pub name: &'static str,
    /// items delivered
    pub sent: AtomicU64,
    /// items given up on (permanent error, or retries exhausted)
    pub failed: AtomicU64,
    /// attempts retried after a retryable error
    pub retried: AtomicU64,
    /// whether this exporter has a queue (the `momentum_exporter_queue_*` families)
    pub queued: bool,
    /// requests waiting (queued or in flight)
    pub queue_depth: AtomicU64,
    /// bytes of the requests waiting
    pub queue_bytes: AtomicU64,
    /// queue entries found truncated or corrupt when read back from disk, and skipped
    pub corrupt: AtomicU64,
}

impl ExporterStats {
    /// Zeroed counters for the exporter `name`.
    pub fn new(name: &'static str) -> Arc<ExporterStats> {
        Arc::new(ExporterStats {
            name,
            ..Default::default()
        })
    }

    /// Zeroed counters for the exporter `name`, which has a queue.
    pub fn with_queue(name: &'static str) -> Arc<ExporterStats> {
        Arc::new(ExporterStats {
            name,
            queued: true,
            ..Default::default()
        })
    }
}
