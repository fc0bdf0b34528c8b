//! Deployments, rollbacks, outcomes, lead time and CI/CD pipeline runs of one pair
//! (the README's How it works), on event time. The shard calls in once per resource (versions), once per
//! deployment or pipeline span, and once per minute of clock (rollbacks, outcomes);
//! nothing here runs per ordinary span.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::archive::EventRow;

pub use super::pipelines::{Pipeline, Run};
pub use super::revisions::RevisionIndex;

/// Timing rules from `delivery:`.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// an incident or rollback this soon after a deploy fails it
    pub change_failure_window: u64,
    /// a version not seen for this long no longer counts as reporting
    pub quiet: u64,
    /// window of frequency, lead time, CFR
    pub lookback: u64,
    /// versions tracked per pair
    pub max_versions: usize,
    /// pipelines tracked per pair
    pub max_pipelines: usize,
}

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// not decided yet
    Pending,
    /// decided: succeeded
    Succeeded,
    /// decided: failed
    Failed,
}

/// One deployment (a rollback is one too).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    /// when (event time)
    pub time: u64,
    /// the version deployed ("" when an explicit record names none)
    pub version: Arc<str>,
    /// the version it replaced
    pub previous: Option<Arc<str>>,
    /// a rollback
    pub rollback: bool,
    /// explicit `deployment.id`
    pub id: Option<String>,
    /// explicit `deployment.status`
    pub status: Option<String>,
    /// revision for lead time (vcs.ref.head.revision, else the version)
    pub revision: String,
    /// lead time once a matching pipeline run is known
    pub lead_time: Option<u64>,
    /// the lead time has gone into the cumulative sum and count (when first known)
    #[serde(default)]
    pub lead_counted: bool,
    /// outcome
    pub outcome: Outcome,
    /// undone by a rollback within the change failure window
    pub rolled_back: bool,
}

impl Deployment {
    /// A deployment detected at `time`: `version` started reporting while `previous` did.
    fn detected(time: u64, version: Arc<str>, previous: Option<Arc<str>>) -> Self {
        Deployment {
            time,
            revision: version.to_string(),
            version,
            previous,
            rollback: false,
            id: None,
            status: None,
            lead_time: None,
            lead_counted: false,
            outcome: Outcome::Pending,
            rolled_back: false,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Version {
    name: Arc<str>,
    first_seen: u64,
    last_seen: u64,
    /// seen in telemetry (an explicit record alone does not make a version report)
    reported: bool,
}

/// The delivery state of one pair.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    versions: Vec<Version>,
    /// the version considered running (the latest deployed)
    pub current: Option<Arc<str>>,
    /// deployments over the lookback, oldest first
    pub deployments: VecDeque<Deployment>,
    /// decided deployments since the process started: succeeded, failed
    pub decided: [u64; 2],
    /// rollbacks since the process started
    pub rollbacks: u64,
    /// pipelines by name
    pub pipelines: Vec<(Arc<str>, Pipeline)>,
    /// pipeline names folded into `__overflow__`
    pub pipeline_overflow: u64,
    /// when the pair was first seen (event time)
    pub first_seen: u64,
    /// cumulative lead-time sum (s) and count
    pub lead_sum_s: f64,
    /// cumulative lead-time count
    pub lead_count: u64,
    /// the revision index's (generation, whether every entry was visible) at the last
    /// lookup: nothing new to find while it holds
    #[serde(skip)]
    lead_check: Option<(u64, bool)>,
}

pub(super) fn event(time: u64, who: (&Arc<str>, &Arc<str>), kind: &'static str) -> EventRow {
    EventRow {
        time_ns: time,
        service: who.0.clone(),
        environment: who.1.clone(),
        kind,
        version: None,
        previous_version: None,
        result: None,
        duration_s: None,
        attributes: "{}".into(),
    }
}

/// The `deployment` or `rollback` event of a decided deployment.
fn deployment_event(d: &Deployment, who: (&Arc<str>, &Arc<str>)) -> EventRow {
    let kind = if d.rollback { "rollback" } else { "deployment" };
    let mut e = event(d.time, who, kind);
    e.version = Some(d.version.to_string()).filter(|v| !v.is_empty());
    e.previous_version = d.previous.as_ref().map(|v| v.to_string());
    e.result = match d.outcome {
        Outcome::Pending => None,
        Outcome::Succeeded => Some("succeeded".into()),
        Outcome::Failed => Some("failed".into()),
    };
    let mut attrs = format!("{{\"revision\":{}", json_str(&d.revision));
    if let Some(id) = &d.id {
        attrs.push_str(&format!(",\"deployment.id\":{}", json_str(id)));
    }
    if let Some(l) = d.lead_time {
        attrs.push_str(&format!(",\"lead_time_s\":{}", l as f64 * 1e-9));
    }
    attrs.push('}');
    e.attributes = attrs;
    e
}

pub(super) fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl Delivery {
    /// The pair reported an event at `time` (a span, a duration or pipeline-run point,
    /// with or without a version): deployment frequency counts from the earliest.
    pub fn seen(&mut self, time: u64) {
        if self.first_seen == 0 || time < self.first_seen {
            self.first_seen = time;
        }
    }

    /// A resource of this pair reported `version` with spans ending in `[first, last]`;
    /// records a (version-change) deployment when another version was reporting.
    pub fn observe_version(&mut self, version: &str, first: u64, last: u64, r: &Rules) {
        self.seen(first);
        if version.is_empty() {
            return;
        }
        if let Some(i) = self.versions.iter().position(|v| &*v.name == version) {
            let v = &mut self.versions[i];
            v.last_seen = v.last_seen.max(last);
            if v.reported {
                return;
            }
            // Announced by an explicit record (already a deployment): now it runs. Its
            // first report is that same deployment when less than change_failure_window
            // after the record; later, it is a deployment of its own (as a detection
            // before a record that far away is), when another version reports.
            let announced = v.first_seen;
            v.reported = true;
            v.first_seen = first;
            let name = v.name.clone();
            let previous = self.current.replace(name.clone());
            let reporting = self.reporting_other(&name, first, r).is_some();
            if first.abs_diff(announced) >= r.change_failure_window && reporting {
                self.record(Deployment::detected(first, name, previous), r);
            }
            return;
        }
        // A new version: a deployment when another version was reporting.
        let reporting = self.reporting_other(version, first, r);
        let name: Arc<str> = Arc::from(version);
        if self.versions.len() >= r.max_versions {
            // Evict the least recently seen version.
            if let Some(i) = (0..self.versions.len()).min_by_key(|&i| self.versions[i].last_seen) {
                self.versions.swap_remove(i);
            }
        }
        self.versions.push(Version {
            name: name.clone(),
            first_seen: first,
            last_seen: last,
            reported: true,
        });
        let previous = self.current.clone().or(reporting.clone());
        self.current = Some(name.clone());
        if reporting.is_none() {
            // The first version a pair ever reports, or one that starts after every other
            // version went quiet: a deployment is recorded only while another reports.
            return;
        }
        self.record(Deployment::detected(first, name, previous), r);
    }

    /// The most recently seen version other than `name` still reporting at `at` (within
    /// the rollback quiet period of its last report).
    fn reporting_other(&self, name: &str, at: u64, r: &Rules) -> Option<Arc<str>> {
        self.versions
            .iter()
            .filter(|v| v.reported && &*v.name != name && v.last_seen + r.quiet >= at)
            .max_by_key(|v| v.last_seen)
            .map(|v| v.name.clone())
    }

    /// An explicit deployment record (a span or log record with `deployment.id` and/or
    /// `deployment.status`).
    #[allow(clippy::too_many_arguments)]
    pub fn explicit(
        &mut self,
        time: u64,
        id: Option<&str>,
        status: Option<&str>,
        version: &str,
        revision: Option<&str>,
        r: &Rules,
    ) {
        // Repeated records of one deployment.id are one deployment.
        if let Some(id) = id {
            if let Some(d) = self
                .deployments
                .iter_mut()
                .find(|d| d.id.as_deref() == Some(id))
            {
                if status.is_some() {
                    d.status = status.map(str::to_string);
                }
                return;
            }
        }
        // An implicit detection of the same version within the change failure window is
        // the same deployment: the explicit record decides its outcome.
        if !version.is_empty() {
            if let Some(d) = self.deployments.iter_mut().find(|d| {
                d.id.is_none()
                    && !d.rollback
                    && &*d.version == version
                    && d.time.abs_diff(time) < r.change_failure_window
            }) {
                d.id = id.map(str::to_string);
                d.status = status.map(str::to_string);
                if let Some(rev) = revision {
                    d.revision = rev.to_string();
                    self.lead_check = None;
                }
                return;
            }
        }
        let name: Arc<str> = Arc::from(version);
        if !version.is_empty() && !self.versions.iter().any(|v| &*v.name == version) {
            // Known from now on, so the implicit detection will not count it again.
            self.versions.push(Version {
                name: name.clone(),
                first_seen: time,
                last_seen: time,
                reported: false,
            });
        }
        let previous = self.current.clone();
        self.record(
            Deployment {
                time,
                version: name,
                previous,
                rollback: false,
                id: id.map(str::to_string),
                status: status.map(str::to_string),
                revision: revision.unwrap_or(version).to_string(),
                lead_time: None,
                lead_counted: false,
                outcome: Outcome::Pending,
                rolled_back: false,
            },
            r,
        );
    }

    /// Records a deployment. Its `deployment` (or `rollback`) event is written once it is
    /// decided, with the result: archive rows are immutable, and one row per deployment
    /// with its outcome is what `momentum report` and a DuckDB query want.
    fn record(&mut self, d: Deployment, r: &Rules) {
        self.lead_check = None;
        self.deployments.push_back(d);
        self.trim(r);
    }

    fn trim(&mut self, r: &Rules) {
        let newest = self.deployments.back().map_or(0, |d| d.time);
        while self
            .deployments
            .front()
            .is_some_and(|d| d.outcome != Outcome::Pending && d.time + r.lookback < newest)
        {
            self.deployments.pop_front();
        }
        // A hard bound, whatever the traffic.
        while self.deployments.len() > 4096 {
            self.deployments.pop_front();
        }
    }

    /// Rollbacks, lead times and outcomes at event time `at` (a minute boundary of the
    /// pair's watermark, in order). `incidents_opened` are the open times of this pair's
    /// incidents (recent ones suffice).
    pub fn tick(
        &mut self,
        at: u64,
        incidents_opened: &[u64],
        revisions: &RevisionIndex,
        r: &Rules,
        who: (&Arc<str>, &Arc<str>),
        events: &mut Vec<EventRow>,
    ) {
        self.detect_rollback(at, r);
        self.fill_lead_times(at, revisions, r);
        for d in self.deployments.iter_mut() {
            if d.outcome != Outcome::Pending || d.time + r.change_failure_window + r.quiet > at {
                continue;
            }
            let incident = incidents_opened
                .iter()
                .any(|&t| t >= d.time && t <= d.time + r.change_failure_window);
            let failed = d.status.as_deref() == Some("failed") || d.rolled_back || incident;
            d.outcome = if failed {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            };
            self.decided[usize::from(failed)] += 1;
            events.push(deployment_event(d, who));
        }
        self.trim(r);
    }

    /// Lead times of the deployments over the lookback from the runs visible at `at`:
    /// deployment time − the earliest start of a run of its revision that started before
    /// it. A run that arrives later still fills it — or lengthens it, when that run
    /// started earlier than the one it was taken from — while the deployment is inside
    /// the lookback. The cumulative sum and count take a deployment's lead time
    /// once, when it is first known — pending or decided, the same deployments as the
    /// quantiles — at the value it had then (a counter never goes back).
    pub fn fill_lead_times(&mut self, at: u64, revisions: &RevisionIndex, r: &Rules) {
        let (generation, max_floor) = revisions.state();
        if self.lead_check == Some((generation, true)) {
            return;
        }
        for d in self.deployments.iter_mut() {
            if d.time + r.lookback < at {
                continue;
            }
            let Some(start) = revisions.earliest(&d.revision, at) else {
                continue;
            };
            if start > d.time {
                continue;
            }
            let lt = d.time - start;
            if d.lead_time.is_none_or(|old| lt > old) {
                d.lead_time = Some(lt);
            }
            if !d.lead_counted {
                self.lead_sum_s += lt as f64 * 1e-9;
                self.lead_count += 1;
                d.lead_counted = true;
            }
        }
        self.lead_check = Some((generation, at > max_floor));
    }

    /// A superseded version that becomes the only one reporting again is a rollback.
    fn detect_rollback(&mut self, clock: u64, r: &Rules) {
        let Some(cur) = self.current.clone() else {
            return;
        };
        let Some(cv) = self.versions.iter().find(|v| v.name == cur).cloned() else {
            return;
        };
        if cv.last_seen + r.quiet >= clock {
            return; // the current version still reports
        }
        // The newest-reporting other version that reported after the current one went quiet
        // and is still reporting.
        let back = self
            .versions
            .iter()
            .filter(|v| {
                v.name != cur
                    && v.first_seen < cv.first_seen
                    && v.last_seen + r.quiet >= clock
                    && v.last_seen > cv.last_seen
            })
            .max_by_key(|v| v.last_seen)
            .cloned();
        let Some(back) = back else { return };
        let time = cv.last_seen;
        for d in self.deployments.iter_mut() {
            if d.version == cur && !d.rollback && time <= d.time + r.change_failure_window {
                d.rolled_back = true;
            }
        }
        self.rollbacks += 1;
        self.current = Some(back.name.clone());
        self.record(
            Deployment {
                time,
                version: back.name.clone(),
                previous: Some(cur),
                rollback: true,
                id: None,
                status: None,
                revision: back.name.to_string(),
                lead_time: None,
                lead_counted: false,
                outcome: Outcome::Pending,
                rolled_back: false,
            },
            r,
        );
    }

    /// Deployments per day over the lookback at `clock` (None when the pair is younger
    /// than an hour).
    pub fn deploy_frequency(&self, clock: u64, r: &Rules) -> Option<f64> {
        let age = clock.saturating_sub(self.first_seen);
        if self.first_seen == 0 || age < 3_600_000_000_000 {
            return None;
        }
        let span = age.min(r.lookback) as f64 / 86_400e9;
        let n = self
            .deployments
            .iter()
            .filter(|d| d.time + r.lookback >= clock)
            .count();
        Some(n as f64 / span)
    }

    /// Failed / decided deployments over the lookback (None when none is decided).
    pub fn change_failure(&self, clock: u64, r: &Rules) -> Option<f64> {
        let (mut decided, mut failed) = (0u64, 0u64);
        for d in self
            .deployments
            .iter()
            .filter(|d| d.time + r.lookback >= clock)
        {
            match d.outcome {
                Outcome::Pending => {}
                Outcome::Succeeded => decided += 1,
                Outcome::Failed => {
                    decided += 1;
                    failed += 1;
                }
            }
        }
        (decided > 0).then(|| failed as f64 / decided as f64)
    }

    /// Lead times (s) of the deployments over the lookback, sorted.
    pub fn lead_times(&self, clock: u64, r: &Rules) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .deployments
            .iter()
            .filter(|d| d.time + r.lookback >= clock)
            .filter_map(|d| d.lead_time.map(|l| l as f64 * 1e-9))
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    /// Whether nothing here can change at `at` or later without new data: no deployment
    /// is pending and no version reports (a rollback needs one that does).
    pub fn settled(&self, at: u64, r: &Rules) -> bool {
        self.pending() == 0 && self.versions.iter().all(|v| v.last_seen + r.quiet < at)
    }

    /// Deployments recorded but not decided.
    pub fn pending(&self) -> usize {
        self.deployments
            .iter()
            .filter(|d| d.outcome == Outcome::Pending)
            .count()
    }
}

impl Delivery {
    /// The state restored from a checkpoint: everything behind the gauges and lookback
    /// values is kept; counters restart at 0 (the README's Exporters).
    pub fn restored(mut self) -> Self {
        self.decided = [0; 2];
        self.rollbacks = 0;
        self.pipeline_overflow = 0;
        self.lead_sum_s = 0.0;
        self.lead_count = 0;
        for (_, p) in self.pipelines.iter_mut() {
            p.by_result.clear();
            p.duration_sum_s = 0.0;
            p.duration_count = 0;
        }
        self
    }

    /// The snapshot of this pair's delivery signals at `clock`.
    pub fn view(&self, clock: u64, r: &Rules) -> super::view::DeliveryView {
        let pipelines = self
            .pipelines
            .iter()
            .map(|(name, p)| {
                let mut durations: Vec<(f64, u64)> =
                    p.runs.iter().map(|x| (x.duration_s, x.weight)).collect();
                durations.sort_by(|a, b| a.0.total_cmp(&b.0));
                let counted: u64 = p.runs.iter().filter(|x| x.counted).map(|x| x.weight).sum();
                let failed: u64 = p
                    .runs
                    .iter()
                    .filter(|x| x.counted && x.failed)
                    .map(|x| x.weight)
                    .sum();
                super::view::PipelineView {
                    name: name.clone(),
                    by_result: p.by_result.clone(),
                    durations,
                    failure: (counted > 0).then(|| failed as f64 / counted as f64),
                    duration_sum_s: p.duration_sum_s,
                    duration_count: p.duration_count,
                }
            })
            .collect();
        super::view::DeliveryView {
            current_version: self.current.clone(),
            deploy_frequency: self.deploy_frequency(clock, r),
            change_failure: self.change_failure(clock, r),
            lead_times: self.lead_times(clock, r),
            lead_sum_s: self.lead_sum_s,
            lead_count: self.lead_count,
            deployments: self
                .deployments
                .iter()
                .filter(|d| d.time + r.lookback >= clock)
                .count(),
            pending: self.pending(),
            decided: self.decided,
            rollbacks: self.rollbacks,
            pipelines,
            recent: self.recent(clock, r),
            ..Default::default()
        }
    }

    /// The latest deployments within the lookback, oldest first.
    fn recent(&self, clock: u64, r: &Rules) -> Vec<super::view::DeploymentView> {
        let mut recent: Vec<super::view::DeploymentView> = self
            .deployments
            .iter()
            .rev()
            .take_while(|d| d.time + r.lookback >= clock)
            .take(super::view::RECENT_DEPLOYMENTS)
            .map(|d| super::view::DeploymentView {
                time_unix_nano: d.time,
                version: d.version.clone(),
                previous: d.previous.clone(),
                rollback: d.rollback,
                outcome: match d.outcome {
                    Outcome::Pending => "pending",
                    Outcome::Succeeded => "succeeded",
                    Outcome::Failed => "failed",
                },
                lead_time_seconds: d.lead_time.map(|ns| ns as f64 * 1e-9),
            })
            .collect();
        recent.reverse();
        recent
    }
}
#[cfg(test)]
mod tests;
