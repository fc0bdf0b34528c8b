use super::*;

const MIN: u64 = 60_000_000_000;

fn rules() -> Rules {
    Rules {
        change_failure_window: 60 * MIN,
        quiet: 10 * MIN,
        lookback: 30 * 24 * 60 * MIN,
        max_versions: 16,
        max_pipelines: 8,
    }
}

/// v1 reports; a record announces v2 at `t0 + 2m`; v2 first reports `after` later while
/// v1 still does. How many deployments that makes.
fn announced_then_reporting(after: u64) -> usize {
    let r = rules();
    let t0 = 1_000 * MIN;
    let mut d = Delivery::default();
    d.observe_version("1", t0, t0 + MIN, &r);
    let rec = t0 + 2 * MIN;
    d.explicit(rec, Some("d1"), Some("succeeded"), "2", None, &r);
    d.observe_version("1", rec + after - MIN, rec + after - MIN, &r);
    d.observe_version("2", rec + after, rec + after, &r);
    d.deployments.len()
}

/// v1 reports; v2's detection at `t`; an explicit record of v2 `after` later. How many
/// deployments that makes.
fn detected_then_recorded(after: u64) -> usize {
    let r = rules();
    let t0 = 1_000 * MIN;
    let mut d = Delivery::default();
    d.observe_version("1", t0, t0 + MIN, &r);
    let t = t0 + 2 * MIN;
    d.observe_version("2", t, t, &r);
    assert_eq!(d.deployments.len(), 1, "v2 detected");
    d.explicit(t + after, Some("d2"), Some("failed"), "2", None, &r);
    d.deployments.len()
}

#[test]
fn a_record_merges_with_a_detection_of_its_version_within_the_window_only() {
    let w = rules().change_failure_window;
    assert_eq!(
        detected_then_recorded(w - 1),
        1,
        "within the window: one deployment"
    );
    assert_eq!(detected_then_recorded(w), 2, "at the window: two");
}

/// A deployment recorded `succeeded` at `t`, ticked at `at` with incidents opened at
/// `incidents`: its outcome.
fn outcome_at(at_after: u64, incidents: &[i64]) -> Outcome {
    let r = rules();
    let t = 1_000 * MIN;
    let mut d = Delivery::default();
    d.explicit(t, Some("d"), Some("succeeded"), "1", None, &r);
    let who: (Arc<str>, Arc<str>) = ("svc".into(), "".into());
    let opened: Vec<u64> = incidents
        .iter()
        .map(|&o| t.saturating_add_signed(o))
        .collect();
    let mut events = Vec::new();
    let ix = RevisionIndex::default();
    d.tick(
        t + at_after,
        &opened,
        &ix,
        &r,
        (&who.0, &who.1),
        &mut events,
    );
    d.deployments[0].outcome
}

#[test]
fn an_outcome_is_decided_once_the_window_and_the_quiet_period_have_passed() {
    let r = rules();
    let due = r.change_failure_window + r.quiet;
    assert_eq!(outcome_at(due - 1, &[]), Outcome::Pending);
    assert_eq!(outcome_at(due, &[]), Outcome::Succeeded);
}

#[test]
fn only_an_incident_inside_the_window_fails_a_deployment() {
    let r = rules();
    let (w, due) = (
        r.change_failure_window as i64,
        r.change_failure_window + r.quiet,
    );
    assert_eq!(
        outcome_at(due, &[-(MIN as i64)]),
        Outcome::Succeeded,
        "before it"
    );
    assert_eq!(
        outcome_at(due, &[w + 1]),
        Outcome::Succeeded,
        "after the window"
    );
    assert_eq!(outcome_at(due, &[0]), Outcome::Failed, "at the deployment");
    assert_eq!(
        outcome_at(due, &[w]),
        Outcome::Failed,
        "at the window's end"
    );
}

/// A deployment of revision "abc" at `t`; a run of it that started an hour before
/// is admitted `late` after `t` and the pair ticks a minute later: the lead times
/// counted.
fn lead_counted_with_a_run_arriving(late: u64) -> u64 {
    lead_counted_with_a_run(late, 100_000 * MIN - 60 * MIN)
}

/// As above, for a run that started at `started`.
fn lead_counted_with_a_run(late: u64, started: u64) -> u64 {
    let r = rules();
    let t = 100_000 * MIN;
    let mut d = Delivery::default();
    d.explicit(t, Some("d"), Some("succeeded"), "1", Some("abc"), &r);
    let ix = RevisionIndex::default();
    ix.note("abc", started, t + late);
    let who: (Arc<str>, Arc<str>) = ("svc".into(), "".into());
    d.tick(
        t + late + MIN,
        &[],
        &ix,
        &r,
        (&who.0, &who.1),
        &mut Vec::new(),
    );
    d.lead_count
}

#[test]
fn a_run_arriving_after_its_deployment_gives_a_lead_time_inside_the_lookback_only() {
    let lookback = rules().lookback;
    assert_eq!(lead_counted_with_a_run_arriving(10 * MIN), 1);
    assert_eq!(lead_counted_with_a_run_arriving(lookback - 2 * MIN), 1);
    assert_eq!(
        lead_counted_with_a_run_arriving(lookback - MIN),
        1,
        "at its end"
    );
    assert_eq!(
        lead_counted_with_a_run_arriving(lookback + MIN),
        0,
        "past the lookback"
    );
}

#[test]
fn an_earlier_run_arriving_later_lengthens_the_lead_time_and_the_counter_keeps_the_first() {
    let r = rules();
    let t = 100_000 * MIN;
    let mut d = Delivery::default();
    d.explicit(t, Some("d"), Some("succeeded"), "1", Some("abc"), &r);
    let ix = RevisionIndex::default();
    let who: (Arc<str>, Arc<str>) = ("svc".into(), "".into());
    ix.note("abc", t - 60 * MIN, t + MIN);
    d.tick(t + 2 * MIN, &[], &ix, &r, (&who.0, &who.1), &mut Vec::new());
    assert_eq!(d.deployments[0].lead_time, Some(60 * MIN));
    // A run of the same revision that started an hour earlier is admitted later: the
    // earliest run now gives the lead time.
    ix.note("abc", t - 120 * MIN, t + 3 * MIN);
    d.tick(t + 4 * MIN, &[], &ix, &r, (&who.0, &who.1), &mut Vec::new());
    assert_eq!(d.deployments[0].lead_time, Some(120 * MIN));
    assert_eq!(d.lead_times(t + 4 * MIN, &r), vec![7_200.0]);
    // the cumulative counter took it once, at the value it had then
    assert_eq!((d.lead_count, d.lead_sum_s), (1, 3_600.0));
}

#[test]
fn a_run_that_started_after_the_deployment_gives_no_lead_time() {
    let t = 100_000 * MIN;
    assert_eq!(lead_counted_with_a_run(10 * MIN, t + 5 * MIN), 0);
    assert_eq!(
        lead_counted_with_a_run(10 * MIN, t),
        1,
        "one that started with it does"
    );
}

/// v1 reports until minute `v1_until`, v2 from minute 10 to 20; the pair ticks every
/// minute to minute 20, then next at minute 60 (a silence): the rollbacks detected.
fn rollbacks_when_v1_reports_until(v1_until: u64) -> u64 {
    let r = rules();
    let t0 = 1_000 * MIN;
    let mut d = Delivery::default();
    let who: (Arc<str>, Arc<str>) = ("svc".into(), "".into());
    let ix = RevisionIndex::default();
    for m in 0..=60 {
        let t = t0 + m * MIN;
        if m <= v1_until {
            d.observe_version("1", t, t, &r);
        }
        if (10..=20).contains(&m) {
            d.observe_version("2", t, t, &r);
        }
        if m <= 20 || m == 60 {
            d.tick(t, &[], &ix, &r, (&who.0, &who.1), &mut Vec::new());
        }
    }
    d.rollbacks
}

#[test]
fn a_rollback_needs_the_older_version_still_reporting_when_it_is_seen() {
    // quiet = 10 min: at minute 60, v1 last seen at 55 still reports, at 30 does not
    assert_eq!(
        rollbacks_when_v1_reports_until(55),
        1,
        "v1 carries on: a rollback"
    );
    assert_eq!(
        rollbacks_when_v1_reports_until(30),
        0,
        "both quiet when the pair next ticks: no rollback"
    );
}

/// Versions reporting over minutes `[from, to]` each; the pair ticks at `ticks`. The
/// deployments' outcomes (in order) and the rollbacks.
fn outcomes(versions: &[(&str, u64, u64)], ticks: &[u64]) -> (Vec<Outcome>, u64) {
    let r = rules();
    let t0 = 1_000 * MIN;
    let mut d = Delivery::default();
    let who: (Arc<str>, Arc<str>) = ("svc".into(), "".into());
    let ix = RevisionIndex::default();
    for m in 0..=ticks.iter().copied().max().unwrap_or(0) {
        let t = t0 + m * MIN;
        for &(v, from, to) in versions {
            if (from..=to).contains(&m) {
                d.observe_version(v, t, t, &r);
            }
        }
        if ticks.contains(&m) {
            d.tick(t, &[], &ix, &r, (&who.0, &who.1), &mut Vec::new());
        }
    }
    let o = d
        .deployments
        .iter()
        .filter(|x| !x.rollback)
        .map(|x| x.outcome)
        .collect();
    (o, d.rollbacks)
}

#[test]
fn a_rollback_fails_only_the_deployment_it_undoes() {
    // v1 → v2 at 10, v2 → v3 at 20; v3 stops at 30 while v2 carries on: a rollback to v2
    // that fails v3's deployment, not v2's.
    let every: Vec<u64> = (0..=200).collect();
    let (o, rollbacks) = outcomes(&[("1", 0, 15), ("2", 10, 200), ("3", 20, 30)], &every);
    assert_eq!(rollbacks, 1);
    assert_eq!(o, [Outcome::Succeeded, Outcome::Failed]);
}

#[test]
fn a_rollback_after_the_window_fails_nothing() {
    // v2 deployed at 10 reports until 85, past its window (10 + 60); the pair next ticks
    // at 120 (a silence), when v1, which carried on, is seen back: a rollback at 85,
    // outside the window, so v2's deployment succeeded. Control: v2 stopping at 50 fails.
    let ticks: Vec<u64> = (0..=15).chain([120]).collect();
    let (o, rollbacks) = outcomes(&[("1", 0, 120), ("2", 10, 85)], &ticks);
    assert_eq!((o, rollbacks), (vec![Outcome::Succeeded], 1));
    let (o, rollbacks) = outcomes(&[("1", 0, 120), ("2", 10, 50)], &ticks);
    assert_eq!((o, rollbacks), (vec![Outcome::Failed], 1));
}

#[test]
fn a_record_makes_a_version_known_once_and_never_an_empty_one() {
    let r = rules();
    let t0 = 1_000 * MIN;
    let mut d = Delivery::default();
    d.observe_version("1", t0, t0 + MIN, &r);
    d.explicit(t0 + 2 * MIN, Some("a"), None, "", None, &r);
    assert_eq!(d.versions.len(), 1, "a record naming no version adds none");
    d.explicit(t0 + 3 * MIN, Some("b"), None, "2", None, &r);
    d.explicit(t0 + 200 * MIN, Some("c"), None, "2", None, &r);
    let names: Vec<&str> = d.versions.iter().map(|v| &*v.name).collect();
    assert_eq!(
        names,
        ["1", "2"],
        "a version already known is not added again"
    );
}

#[test]
fn an_announced_version_reporting_a_window_after_its_record_is_a_deployment_of_its_own() {
    let w = rules().change_failure_window;
    assert_eq!(
        announced_then_reporting(w - 1),
        1,
        "within the window: the record's"
    );
    assert_eq!(
        announced_then_reporting(w),
        2,
        "at the window: a deployment of its own"
    );
    assert_eq!(announced_then_reporting(2 * w), 2);
}

#[test]
fn change_failure_is_absent_while_no_deployment_is_decided() {
    let r = rules();
    let t = 1_000 * MIN;
    let mut d = Delivery::default();
    d.explicit(t, Some("d"), None, "1", None, &r);
    assert_eq!(
        d.change_failure(t + MIN, &r),
        None,
        "pending only: no ratio, not NaN"
    );
}
