//! What a pair's delivery signals look like to readers (exporters, the API, the
//! dashboard): plain data built by [`super::deployments::Delivery::view`].

use std::sync::Arc;

/// Delivery signals of a pair at its clock.
#[derive(Clone, Debug, Default)]
pub struct DeliveryView {
    /// the version considered running
    pub current_version: Option<Arc<str>>,
    /// deployments per day over the lookback (None for a pair seen under an hour)
    pub deploy_frequency: Option<f64>,
    /// failed / decided over the lookback
    pub change_failure: Option<f64>,
    /// lead times (s) over the lookback, sorted
    pub lead_times: Vec<f64>,
    /// their median (nearest rank, docs/momentum-index.md): computed once here, read by
    /// the index, the API and the archive
    pub lead_time_median_s: Option<f64>,
    /// the median time to restore (s) of the incidents resolved within the lookback
    pub time_to_restore_median_s: Option<f64>,
    /// cumulative lead-time sum (s) and count
    pub lead_sum_s: f64,
    /// cumulative lead-time count
    pub lead_count: u64,
    /// deployments (rollbacks included) over the lookback
    pub deployments: usize,
    /// deployments recorded, not yet decided
    pub pending: usize,
    /// decided since the process started: succeeded, failed
    pub decided: [u64; 2],
    /// rollbacks since the process started
    pub rollbacks: u64,
    /// pipelines
    pub pipelines: Vec<PipelineView>,
    /// the latest deployments within the lookback, oldest first (at most
    /// [`RECENT_DEPLOYMENTS`]): the dashboard's markers and the on-call list
    pub recent: Vec<DeploymentView>,
    /// the momentum index components (absent ones None)
    pub components: super::index::Components,
    /// the momentum index, 0–100 (None when every component is absent)
    pub index: Option<f64>,
}

/// How many deployments a pair's view lists.
pub const RECENT_DEPLOYMENTS: usize = 12;

/// One deployment of a pair, as the API lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeploymentView {
    /// when (event time, Unix ns)
    pub time_unix_nano: u64,
    /// the version deployed
    pub version: Arc<str>,
    /// the version it replaced
    pub previous: Option<Arc<str>>,
    /// a rollback
    pub rollback: bool,
    /// pending, succeeded or failed
    pub outcome: &'static str,
    /// lead time once a matching pipeline run is known (s)
    pub lead_time_seconds: Option<f64>,
}

/// One CI/CD pipeline of a pair.
#[derive(Clone, Debug, Default)]
pub struct PipelineView {
    /// cicd.pipeline.name
    pub name: Arc<str>,
    /// runs by result since the process started
    pub by_result: Vec<(String, u64)>,
    /// durations (s) over the lookback with how many runs each stands for, sorted by
    /// duration
    pub durations: Vec<(f64, u64)>,
    /// failed / counted runs over the lookback
    pub failure: Option<f64>,
    /// cumulative duration sum (s)
    pub duration_sum_s: f64,
    /// cumulative run count
    pub duration_count: u64,
}
