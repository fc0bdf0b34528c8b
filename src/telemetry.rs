//! What the exporters and the admin API read: the shard snapshots (through the router)
//! and the process-wide self-telemetry counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::pipeline::router::Router;
use crate::pipeline::Shared;
use crate::receiver::RefusalCounters;

/// Read-only handles to everything exported.
#[derive(Clone)]
pub struct Telemetry {
    /// shard snapshots
    pub router: Arc<Router>,
    /// clocks and counters
    pub shared: Arc<Shared>,
    /// receiver refusals
    pub refused: Arc<RefusalCounters>,
    /// one entry per running exporter that sends somewhere (label `exporter`)
    pub exporters: Vec<Arc<ExporterStats>>,
}

/// Self-metrics of one exporter (SPEC §6 `momentum_exporter_*{exporter}`): written by the
/// exporter once per request, read by the exposition.
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// the `exporter` label value
    pub name: &'static str,
    /// requests delivered (the next hop answered success)
    pub sent: AtomicU64,
    /// requests given up on: permanent errors, and what a shutdown dropped from memory
    pub failed: AtomicU64,
    /// attempts that failed retryably and were tried again
    pub retried: AtomicU64,
    /// requests waiting (queued or in flight)
    pub queue_depth: AtomicU64,
    /// bytes of the requests waiting
    pub queue_bytes: AtomicU64,
    /// queue entries found truncated or corrupt when read back from disk, and skipped
    pub corrupt: AtomicU64,
}

impl ExporterStats {
    /// Zeroed stats for the exporter labelled `name`.
    pub fn new(name: &'static str) -> Self {
        ExporterStats {
            name,
            ..Default::default()
        }
    }

    /// Reads a counter or gauge.
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}
