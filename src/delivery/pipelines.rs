//! CI/CD pipelines of one pair: runs from `cicd.pipeline.*` spans and from
//! `cicd.pipeline.run.duration` histograms, by result, over the lookback.

use std::collections::VecDeque;
use std::sync::Arc;

use super::deployments::{event, json_str, Delivery, Rules};
use crate::archive::EventRow;

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

impl Delivery {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
