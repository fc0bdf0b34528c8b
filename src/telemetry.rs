//! What the exporters and the admin API read: the shard snapshots (through the router)
//! and the process-wide self-telemetry counters.

use std::sync::Arc;

use crate::archive::ArchiveStats;
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
    /// archive writer counters
    pub archive: Arc<ArchiveStats>,
}
