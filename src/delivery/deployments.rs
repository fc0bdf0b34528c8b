//! Deployments, rollbacks, outcomes, lead time and CI/CD pipeline runs of one pair
//! (the README's How it works), on event time. The shard calls in once per resource (versions), once per
//! deployment or pipeline span, and once per minute of clock (rollbacks, outcomes);
//! nothing here runs per ordinary span.

use std::collections::VecDeque;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::archive::EventRow;

/// The process-wide revision index: revision → the starts of its pipeline runs, for
/// lead time. The one piece of state that crosses pairs: a concurrent map, written once
/// per pipeline run and read by deployments of any pair.
///
/// Runs are noted when their request is admitted (not when a shard gets to them), each
/// with the fleet floor of its admission; a lookup made at event time `t` sees only the
/// runs whose floor is before `t`. Shards look up only at event times their own floor has
/// passed, when every such run is already admitted, so what a lookup finds does not
/// depend on how far the shard holding the run has got (`docs/event-time.md`).
#[derive(Debug, Default)]
pub struct RevisionIndex {
    /// revision → (floor, start) of each run that lowered the earliest start, in order
    map: DashMap<String, Vec<(u64, u64)>>,
    /// bumped on every change
    generation: AtomicU64,
    /// the highest floor noted
    max_floor: AtomicU64,
}

/// Entries kept per revision (each lowered the earliest start); beyond, the oldest goes.
const MAX_RUNS_PER_REVISION: usize = 8;

impl RevisionIndex {
    /// Notes a run of `revision` that started at `start`, admitted at fleet floor `floor`.
    pub fn note(&self, revision: &str, start: u64, floor: u64) {
        let mut changed = false;
        self.map
            .entry(revision.to_string())
            .and_modify(|v| {
                if v.iter().all(|e| start < e.1) {
                    if v.len() >= MAX_RUNS_PER_REVISION {
                        v.remove(0);
                    }
                    v.push((floor, start));
                    changed = true;
                }
            })
            .or_insert_with(|| {
                changed = true;
                vec![(floor, start)]
            });
        if changed {
            self.max_floor.fetch_max(floor, Ordering::SeqCst);
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The earliest start of a run of `revision` visible at event time `t`.
    pub fn earliest(&self, revision: &str, t: u64) -> Option<u64> {
        self.map
            .get(revision)?
            .iter()
            .filter(|e| e.0 < t)
            .map(|e| e.1)
            .min()
    }

    /// (generation, highest floor): unchanged generation and a lookup time above the
    /// highest floor mean a lookup would find what the last one found.
    pub fn state(&self) -> (u64, u64) {
        (
            self.generation.load(Ordering::SeqCst),
            self.max_floor.load(Ordering::SeqCst),
        )
    }

    /// Forgets runs that started before `horizon` (they can no longer give a lead time
    /// inside the lookback).
    pub fn retain_since(&self, horizon: u64) {
        self.map.retain(|_, v| {
            v.retain(|e| e.1 >= horizon);
            !v.is_empty()
        });
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// (revision, earliest start) of every revision, for the state checkpoint.
    pub fn entries(&self) -> Vec<(String, u64)> {
        self.map
            .iter()
            .filter_map(|e| Some((e.key().clone(), e.value().iter().map(|x| x.1).min()?)))
            .collect()
    }

    /// Takes back an entry of [`RevisionIndex::entries`]: visible at any time.
    pub fn restore(&self, revision: String, start: u64) {
        self.map.insert(revision, vec![(0, start)]);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Revisions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no revision is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

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

/// One pipeline run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// end time
    pub end: u64,
    /// duration (s)
    pub duration_s: f64,
    /// failed (failure, error, timeout)
    pub failed: bool,
    /// counted in failure ratios (not cancellation/skip)
    pub counted: bool,
    /// runs this entry stands for (1 for a span; a histogram bucket's count)
    pub weight: u64,
    /// from a `cicd.pipeline.run.duration` histogram
    pub metric: bool,
}

/// Per pipeline name.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    /// runs by result since the process started
    pub by_result: Vec<(String, u64)>,
    /// runs over the lookback
    pub runs: VecDeque<Run>,
    /// cumulative duration sum and count
    pub duration_sum_s: f64,
    /// cumulative count of runs with a duration
    pub duration_count: u64,
    recent_ids: VecDeque<String>,
    /// end of the newest run seen as a span (0: none): spans win over histograms
    last_span: u64,
}

/// Distinct `result` label values per pipeline (the overflow label comes on top).
const MAX_RESULTS: usize = 16;

impl Pipeline {
    fn count_result(&mut self, result: &str, n: u64) {
        // `cicd.pipeline.result` has six semconv values; anything a pipeline invents beyond
        // MAX_RESULTS distinct values shares the overflow label (bounded label values).
        let result = if self.by_result.len() >= MAX_RESULTS
            && !self.by_result.iter().any(|(res, _)| res == result)
        {
            crate::identity::OVERFLOW
        } else {
            result
        };
        match self.by_result.iter_mut().find(|(res, _)| res == result) {
            Some((_, c)) => *c += n,
            None => self.by_result.push((result.to_string(), n)),
        }
    }

    /// Drops runs older than the lookback before `newest`, and entries beyond a hard bound.
    fn trim(&mut self, newest: u64, r: &Rules) {
        while self
            .runs
            .front()
            .is_some_and(|x| x.end.saturating_add(r.lookback) < newest)
            || self.runs.len() > 4096
        {
            self.runs.pop_front();
        }
    }
}

/// (failed, counted in failure ratios) of a `cicd.pipeline.result`.
fn result_kind(result: &str) -> (bool, bool) {
    (
        matches!(result, "failure" | "error" | "timeout"),
        !matches!(result, "cancellation" | "skip"),
    )
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

fn event(time: u64, who: (&Arc<str>, &Arc<str>), kind: &'static str) -> EventRow {
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

fn json_str(s: &str) -> String {
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
    /// it. A run that arrives later still fills (or lowers) it while the deployment is
    /// inside the lookback. The cumulative sum and count take a deployment's lead time
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
            if d.lead_time.is_none_or(|old| lt < old) {
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

    /// A pipeline run (de-duplicated by run id). Returns false for a duplicate.
    #[allow(clippy::too_many_arguments)]
    pub fn pipeline_run(
        &mut self,
        name: &str,
        result: &str,
        run_id: Option<&str>,
        start: u64,
        end: u64,
        revision: Option<&str>,
        r: &Rules,
        who: (&Arc<str>, &Arc<str>),
        events: &mut Vec<EventRow>,
    ) -> bool {
        let (idx, name) = self.pipeline_index(name, r);
        let p = &mut self.pipelines[idx].1;
        if let Some(id) = run_id {
            if p.recent_ids.iter().any(|x| x == id) {
                return false;
            }
            p.recent_ids.push_back(id.to_string());
            if p.recent_ids.len() > 1024 {
                p.recent_ids.pop_front();
            }
        }
        let (failed, counted) = result_kind(result);
        p.count_result(result, 1);
        let duration_s = end.saturating_sub(start) as f64 * 1e-9;
        p.duration_sum_s += duration_s;
        p.duration_count += 1;
        // Spans win: the histogram runs of this pipeline leave the lookback figures.
        if p.runs.iter().any(|x| x.metric) {
            p.runs.retain(|x| !x.metric);
        }
        p.last_span = p.last_span.max(end);
        p.runs.push_back(Run {
            end,
            duration_s,
            failed,
            counted,
            weight: 1,
            metric: false,
        });
        p.trim(end, r);
        // Its revision went into the revision index when the request was admitted
        // (`records::note_runs`).
        let mut e = event(end, who, "pipeline_run");
        e.result = Some(result.to_string());
        e.duration_s = Some(duration_s);
        e.attributes = format!(
            "{{\"cicd.pipeline.name\":{},\"cicd.pipeline.run.id\":{},\"vcs.ref.head.revision\":{}}}",
            json_str(name),
            run_id.map_or("null".into(), json_str),
            revision.map_or("null".into(), json_str)
        );
        events.push(e);
        true
    }

    /// The index of pipeline `name` (created on first sight; names beyond
    /// `max_pipelines` fold into `__overflow__`), and the name it is kept under.
    fn pipeline_index<'a>(&mut self, name: &'a str, r: &Rules) -> (usize, &'a str) {
        let known = self.pipelines.iter().any(|(n, _)| &**n == name);
        let name = if !known && self.pipelines.len() >= r.max_pipelines {
            self.pipeline_overflow += 1;
            crate::identity::OVERFLOW
        } else {
            name
        };
        let idx = match self.pipelines.iter().position(|(n, _)| &**n == name) {
            Some(i) => i,
            None => {
                self.pipelines.push((Arc::from(name), Pipeline::default()));
                self.pipelines.len() - 1
            }
        };
        (idx, name)
    }

    /// Runs from a `cicd.pipeline.run.duration` histogram point (already a delta): `count`
    /// runs with `result` ending by `time`, `counts[i]` of them in the bucket with upper
    /// bound `bounds[i]` (s; the last bucket has none), `sum_s` their summed duration.
    /// Each non-empty bucket joins the lookback as one weighted entry whose duration is
    /// the bucket's upper bound (the last, unbounded bucket: its lower bound; no buckets
    /// at all: the mean `sum_s / count`). Returns false when the point is left out
    /// because spans of this pipeline were seen within the lookback (spans win: they
    /// carry run ids and revisions, histogram runs cannot be de-duplicated against them).
    #[allow(clippy::too_many_arguments)]
    pub fn pipeline_histogram(
        &mut self,
        name: &str,
        result: &str,
        time: u64,
        count: u64,
        sum_s: f64,
        bounds: &[f64],
        counts: &[u64],
        r: &Rules,
    ) -> bool {
        let (idx, _) = self.pipeline_index(name, r);
        let p = &mut self.pipelines[idx].1;
        if p.last_span > 0 && p.last_span.saturating_add(r.lookback) >= time {
            return false;
        }
        if count == 0 {
            return true;
        }
        let (failed, counted) = result_kind(result);
        p.count_result(result, count);
        p.duration_sum_s += sum_s;
        p.duration_count += count;
        let entry = |duration_s: f64, weight: u64| Run {
            end: time,
            duration_s,
            failed,
            counted,
            weight,
            metric: true,
        };
        if counts.iter().sum::<u64>() == 0 {
            p.runs.push_back(entry(sum_s / count as f64, count));
        } else {
            for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                let d = bounds
                    .get(i)
                    .or_else(|| bounds.last())
                    .copied()
                    .unwrap_or(0.0);
                p.runs.push_back(entry(d, c));
            }
        }
        p.trim(time, r);
        true
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
mod tests {
    use super::*;

    #[test]
    fn the_revision_index_keeps_only_runs_that_lower_the_earliest_start() {
        let ix = RevisionIndex::default();
        ix.note("r", 100, 10);
        ix.note("r", 50, 20); // lowers the earliest start: kept
        ix.note("r", 70, 30); // does not: ignored
        assert_eq!(
            ix.earliest("r", 10),
            None,
            "a run is visible after its floor only"
        );
        assert_eq!(ix.earliest("r", 11), Some(100));
        assert_eq!(ix.earliest("r", 21), Some(50));
        assert_eq!(ix.earliest("other", 99), None);
        assert_eq!(
            ix.state(),
            (2, 20),
            "two changes; the ignored run moved nothing"
        );
        ix.note("r", 50, 40); // the same start again: no change
        assert_eq!(ix.state(), (2, 20));
        ix.note("r", 49, 40);
        assert_eq!(ix.state(), (3, 40));
    }

    #[test]
    fn the_revision_index_keeps_the_latest_runs_per_revision() {
        let ix = RevisionIndex::default();
        // Each run lowers the start; only the last MAX_RUNS_PER_REVISION stay.
        let n = MAX_RUNS_PER_REVISION as u64 + 1;
        for i in 0..n {
            ix.note("r", 1_000 - i, i + 1);
        }
        assert_eq!(ix.earliest("r", 2), None, "the oldest run (floor 1) went");
        assert_eq!(
            ix.earliest("r", 3),
            Some(1_000 - 1),
            "the second stays (floor 2)"
        );
        assert_eq!(ix.earliest("r", n + 1), Some(1_000 - (n - 1)));
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn result_labels_are_bounded() {
        let mut p = Pipeline::default();
        for i in 0..40 {
            p.count_result(&format!("r{i}"), 1);
        }
        p.count_result("r3", 2);
        assert_eq!(p.by_result.len(), MAX_RESULTS + 1);
        let get = |k: &str| p.by_result.iter().find(|(r, _)| r == k).map(|x| x.1);
        assert_eq!(get("r3"), Some(3));
        assert_eq!(
            get(crate::identity::OVERFLOW),
            Some(40 - MAX_RESULTS as u64)
        );
    }
}
