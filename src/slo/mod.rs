//! SLOs per pair: burn rates, error budgets, multi-window multi-burn-rate alerts,
//! incidents and time to restore (docs/slo.md). Everything here runs on event time, once per
//! `resolution` step at the bucket boundaries a pair's clock crosses — never per span.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::archive::EventRow;
use crate::config::SloConfig;
use crate::sli::window::{Counts, SeriesWindows, DAY, WINDOWS};

/// The objective kinds (`objective` label values).
pub const OBJECTIVES: [&str; 2] = ["availability", "latency"];
/// The alert severities (`severity` label values).
pub const SEVERITIES: [&str; 2] = ["page", "ticket"];
/// Windows a burn rate is reported for: the seven rolling windows, then the SLO window.
pub const BURN_WINDOWS: usize = 8;
/// An alert's long window must hold at least this many bad requests before it can fire:
/// one slow or failed request among a service's first few is a huge burn rate but no
/// signal, and must not page (docs/slo.md asks for that). Real outages clear it at once.
pub const MIN_ALERT_BAD: u64 = 2;

/// The windows of [`ObjectiveState::burn`], by name (the seven rolling windows of
/// [`WINDOWS`] in order, then the SLO window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// 5 minutes
    M5 = 0,
    /// 30 minutes
    M30 = 1,
    /// 1 hour
    H1 = 2,
    /// 2 hours
    H2 = 3,
    /// 6 hours
    H6 = 4,
    /// 1 day
    D1 = 5,
    /// 3 days
    D3 = 6,
    /// the SLO window
    Slo = 7,
}

const WIN_5M: usize = Window::M5 as usize;
const WIN_30M: usize = Window::M30 as usize;
const WIN_1H: usize = Window::H1 as usize;
const WIN_2H: usize = Window::H2 as usize;
const WIN_6H: usize = Window::H6 as usize;
const WIN_1D: usize = Window::D1 as usize;
const WIN_3D: usize = Window::D3 as usize;
const WIN_SLO: usize = Window::Slo as usize;

/// One objective of a pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// 0 = availability, 1 = latency (index into [`OBJECTIVES`])
    pub kind: usize,
    /// target as a fraction (0.999)
    pub target: f64,
    /// the allowed bad fraction 1 − target, exact to the decimals written (0.001)
    pub allowed: f64,
}

impl Objective {
    /// The objective of `kind` for a target written in percent (99.9).
    ///
    /// The allowed bad fraction is (100 − p)/100 rounded to 1e-12: 99.9 is not exact in
    /// binary, so 1 − 99.9/100 is 0.000999999999999889 and a burn of exactly 1 (9 bad in
    /// 9,000) would come out as 1.0000000000001 and fire a rule that asks for more than 1.
    /// Rounded, 9 bad in 9,000 burn exactly 1.
    pub fn from_percent(kind: usize, percent: f64) -> Self {
        Objective {
            kind,
            target: percent / 100.0,
            allowed: ((100.0 - percent) * 1e10).round() / 1e12,
        }
    }

    /// Bad requests of a window for this objective.
    pub fn bad(&self, c: &Counts) -> u64 {
        if self.kind == 0 {
            c.errors
        } else {
            c.requests.saturating_sub(c.good)
        }
    }

    /// Burn rate over a window: (bad/requests)/(1 − target); 0 without requests.
    pub fn burn(&self, c: &Counts) -> f64 {
        if c.requests == 0 {
            return 0.0;
        }
        (self.bad(c) as f64 / c.requests as f64) / self.allowed
    }

    /// Error budget remaining over the SLO window: 1 − bad/(requests·(1 − target)); 1
    /// without requests; may go negative.
    pub fn budget_remaining(&self, c: &Counts) -> f64 {
        if c.requests == 0 {
            return 1.0;
        }
        1.0 - self.bad(c) as f64 / (c.requests as f64 * self.allowed)
    }
}

/// The result of the latest evaluation of one objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjectiveState {
    /// burn rate per [`WINDOWS`], then the SLO window
    pub burn: [f64; BURN_WINDOWS],
    /// error budget remaining over the SLO window
    pub budget_remaining: f64,
    /// page, ticket firing
    pub firing: [bool; 2],
    /// alerts started since the process started: page, ticket
    pub started: [u64; 2],
}

impl ObjectiveState {
    /// The severities firing ("page", "ticket").
    pub fn firing_severities(&self) -> impl Iterator<Item = &'static str> + '_ {
        SEVERITIES
            .iter()
            .zip(self.firing)
            .filter(|(_, on)| *on)
            .map(|(s, _)| *s)
    }
}

/// An incident of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    /// when it opened (event time, a bucket boundary)
    pub opened_ns: u64,
}

/// A resolved incident, kept over the delivery lookback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restore {
    /// when it resolved
    pub resolved_ns: u64,
    /// time to restore
    pub ttr_ns: u64,
}

/// SLO, alert and incident state of one pair.
#[derive(Clone, Debug)]
pub struct SloState {
    /// SLO window length
    pub window: u64,
    /// objectives (at most one per kind)
    pub objectives: Vec<Objective>,
    /// state per objective, parallel to `objectives`
    pub states: Vec<ObjectiveState>,
    /// the open incident
    pub incident: Option<Incident>,
    /// incidents opened since the process started
    pub incidents_total: u64,
    /// open times of recent incidents (over the lookback; change failure looks here)
    pub opened: VecDeque<u64>,
    /// restores within the lookback (oldest first, bounded)
    pub restores: VecDeque<Restore>,
    /// cumulative time-to-restore sum (s) and count since the process started
    pub ttr_sum_s: f64,
    /// cumulative count of restores
    pub ttr_count: u64,
    /// the last boundary evaluated
    pub evaluated_at: u64,
    lookback: u64,
    scale: f64,
}

/// What of an [`SloState`] survives a restart (the state checkpoint): the latest
/// evaluation per objective kind, alert and incident state, recent incident opens and
/// restores. Counters (alerts started, incidents, time-to-restore sum and count) restart
/// at 0 (the README's Exporters); the config-derived parts come from the config of the new process.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SloSaved {
    /// (objective kind, its state)
    pub states: Vec<(usize, ObjectiveState)>,
    /// the open incident
    pub incident: Option<Incident>,
    /// recent incident open times
    pub opened: VecDeque<u64>,
    /// recent restores
    pub restores: VecDeque<Restore>,
    /// the last boundary evaluated
    pub evaluated_at: u64,
}

impl SloState {
    /// The part that survives a restart.
    pub fn save(&self) -> SloSaved {
        SloSaved {
            states: self
                .objectives
                .iter()
                .map(|o| o.kind)
                .zip(self.states.iter().copied())
                .collect(),
            incident: self.incident,
            opened: self.opened.clone(),
            restores: self.restores.clone(),
            evaluated_at: self.evaluated_at,
        }
    }

    /// Takes back saved state. An objective the config no longer has is dropped; a new
    /// one starts fresh (its first evaluation fills it in from the restored windows).
    pub fn restore(&mut self, s: SloSaved) {
        for (o, st) in self.objectives.iter().zip(self.states.iter_mut()) {
            if let Some((_, saved)) = s.states.iter().find(|(k, _)| *k == o.kind) {
                *st = ObjectiveState {
                    started: [0; 2],
                    ..*saved
                };
            }
        }
        self.incident = s.incident;
        self.opened = s.opened;
        self.restores = s.restores;
        self.evaluated_at = s.evaluated_at;
    }
}

/// At most this many restores are kept per pair (over the lookback).
const MAX_RESTORES: usize = 1024;

impl SloState {
    /// The state of a pair whose matching `slos[]` entry is `cfg`.
    pub fn new(cfg: &SloConfig, lookback: u64) -> Option<Self> {
        let mut objectives = Vec::new();
        if let Some(a) = cfg.objectives.availability {
            objectives.push(Objective::from_percent(0, a));
        }
        if let Some(l) = &cfg.objectives.latency {
            objectives.push(Objective::from_percent(1, l.target));
        }
        if objectives.is_empty() {
            return None;
        }
        let window = cfg.window.as_nanos();
        Some(SloState {
            window,
            states: vec![
                ObjectiveState {
                    budget_remaining: 1.0,
                    ..Default::default()
                };
                objectives.len()
            ],
            objectives,
            incident: None,
            incidents_total: 0,
            opened: VecDeque::new(),
            restores: VecDeque::new(),
            ttr_sum_s: 0.0,
            ttr_count: 0,
            evaluated_at: 0,
            lookback,
            scale: window as f64 / (30 * DAY) as f64,
        })
    }

    /// Whether a page alert of any objective fires.
    pub fn paging(&self) -> bool {
        self.states.iter().any(|s| s.firing[0])
    }

    /// Whether any alert (page or ticket) of any objective fires.
    pub fn firing(&self) -> bool {
        !self.quiet()
    }

    /// Whether anything would change if the windows stayed empty: an alert still fires.
    fn quiet(&self) -> bool {
        self.states.iter().all(|s| !s.firing[0] && !s.firing[1])
    }

    /// Evaluates every boundary in `(from, to]` (multiples of the resolution), in order,
    /// over the windows `src(b)` gives for boundary `b` (the pair's service-level source
    /// then). Events (alerts, incidents) are appended to `events`.
    pub fn evaluate_range<'a>(
        &mut self,
        src: impl Fn(u64) -> &'a SeriesWindows,
        from: u64,
        to: u64,
        who: (&Arc<str>, &Arc<str>),
        events: &mut Vec<EventRow>,
    ) {
        let res = src(to).resolution();
        if to / res == from / res {
            return;
        }
        let mut b = (from / res + 1) * res;
        while b <= to {
            let w = src(b);
            self.evaluate(w, b, who, events);
            // Nothing can change while the windows stay empty and nothing fires: skip
            // the rest of a long jump (an open incident stays open: it needs a request).
            if self.quiet() && w.window(3 * DAY, b - 1, b).requests == 0 {
                let last = to / res * res;
                if last > b {
                    self.settle_empty(src(last), last);
                }
                break;
            }
            b += res;
        }
    }

    /// Records the state of an evaluation at `b` without events, for skipped empty
    /// boundaries (burn rates 0, budget from the SLO window).
    fn settle_empty(&mut self, w: &SeriesWindows, b: u64) {
        let slo = w.window(self.window, b - 1, b);
        for (o, s) in self.objectives.iter().zip(self.states.iter_mut()) {
            s.burn = [0.0; BURN_WINDOWS];
            s.burn[WIN_SLO] = o.burn(&slo);
            s.budget_remaining = o.budget_remaining(&slo);
        }
        // a jump past the lookback leaves no restore behind (time to restore, recovery)
        self.expire(b);
        self.evaluated_at = b;
    }

    /// This state with burn rates and budgets taken over the windows at event time `t`
    /// (the newest buckets, the open one included): what the exports and the gate show.
    /// Alerts and incidents stay as the latest evaluation left them.
    pub fn at(&self, w: &SeriesWindows, t: u64) -> SloState {
        let mut out = self.clone();
        let mut counts = [Counts::default(); BURN_WINDOWS];
        for (i, (_, len)) in WINDOWS.iter().enumerate() {
            counts[i] = w.window(*len, t, u64::MAX);
        }
        counts[WIN_SLO] = w.window(self.window, t, u64::MAX);
        for (o, s) in out.objectives.iter().zip(out.states.iter_mut()) {
            for (i, c) in counts.iter().enumerate() {
                s.burn[i] = o.burn(c);
            }
            s.budget_remaining = o.budget_remaining(&counts[WIN_SLO]);
        }
        out
    }

    /// Evaluates at boundary `b` over the windows ending at `b`.
    pub fn evaluate(
        &mut self,
        w: &SeriesWindows,
        b: u64,
        who: (&Arc<str>, &Arc<str>),
        events: &mut Vec<EventRow>,
    ) {
        let mut counts = [Counts::default(); BURN_WINDOWS];
        for (i, (_, len)) in WINDOWS.iter().enumerate() {
            counts[i] = w.window(*len, b - 1, b);
        }
        counts[WIN_SLO] = w.window(self.window, b - 1, b);
        let k = self.scale;
        let mut page_started = false;
        for (o, s) in self.objectives.iter().zip(self.states.iter_mut()) {
            for (i, c) in counts.iter().enumerate() {
                s.burn[i] = o.burn(c);
            }
            s.budget_remaining = o.budget_remaining(&counts[WIN_SLO]);
            let enough = |long: usize| o.bad(&counts[long]) >= MIN_ALERT_BAD;
            let pair = |long: usize, short: usize, f: f64| {
                enough(long) && s.burn[long] > f * k && s.burn[short] > f * k
            };
            let page = pair(WIN_1H, WIN_5M, 14.4) || pair(WIN_6H, WIN_30M, 6.0);
            let ticket = pair(WIN_1D, WIN_2H, 3.0) || pair(WIN_3D, WIN_6H, 1.0);
            for (sev, now) in [page, ticket].into_iter().enumerate() {
                if now != s.firing[sev] {
                    s.firing[sev] = now;
                    if now {
                        s.started[sev] += 1;
                        if sev == 0 {
                            page_started = true;
                        }
                    }
                    events.push(EventRow {
                        time_ns: b,
                        service: who.0.clone(),
                        environment: who.1.clone(),
                        kind: if now { "alert_start" } else { "alert_end" },
                        version: None,
                        previous_version: None,
                        result: Some(SEVERITIES[sev].to_string()),
                        duration_s: None,
                        attributes: format!(
                            "{{\"objective\":\"{}\",\"burn_rate_1h\":{},\"burn_rate_5m\":{}}}",
                            OBJECTIVES[o.kind], s.burn[WIN_1H], s.burn[WIN_5M]
                        ),
                    });
                }
            }
        }
        match self.incident {
            None if page_started => {
                self.incident = Some(Incident { opened_ns: b });
                self.incidents_total += 1;
                self.opened.push_back(b);
                while self.opened.len() > MAX_RESTORES
                    || self.opened.front().is_some_and(|&t| t + self.lookback < b)
                {
                    self.opened.pop_front();
                }
                events.push(EventRow {
                    time_ns: b,
                    service: who.0.clone(),
                    environment: who.1.clone(),
                    kind: "incident_open",
                    version: None,
                    previous_version: None,
                    result: None,
                    duration_s: None,
                    attributes: "{}".into(),
                });
            }
            Some(inc) => {
                let five = &counts[WIN_5M];
                let healthy =
                    five.requests > 0 && self.states.iter().all(|s| s.burn[WIN_5M] <= 1.0);
                if healthy {
                    let ttr = b - inc.opened_ns;
                    self.incident = None;
                    self.restores.push_back(Restore {
                        resolved_ns: b,
                        ttr_ns: ttr,
                    });
                    if self.restores.len() > MAX_RESTORES {
                        self.restores.pop_front();
                    }
                    self.ttr_sum_s += ttr as f64 * 1e-9;
                    self.ttr_count += 1;
                    events.push(EventRow {
                        time_ns: b,
                        service: who.0.clone(),
                        environment: who.1.clone(),
                        kind: "incident_resolved",
                        version: None,
                        previous_version: None,
                        result: None,
                        duration_s: Some(ttr as f64 * 1e-9),
                        attributes: format!("{{\"opened_unix_nano\":{}}}", inc.opened_ns),
                    });
                }
            }
            None => {}
        }
        self.expire(b);
        self.evaluated_at = b;
    }

    /// Forgets the restores older than the lookback at `b`.
    fn expire(&mut self, b: u64) {
        while self
            .restores
            .front()
            .is_some_and(|r| r.resolved_ns + self.lookback < b)
        {
            self.restores.pop_front();
        }
    }

    /// Times to restore (s) of the incidents resolved within the lookback, sorted.
    pub fn restores_sorted(&self) -> Vec<f64> {
        self.restores_sorted_upto(u64::MAX)
    }

    /// Times to restore (s) of the incidents within the lookback resolved by event time
    /// `t`, sorted.
    pub fn restores_sorted_upto(&self, t: u64) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .restores
            .iter()
            .filter(|r| r.resolved_ns <= t)
            .map(|r| r.ttr_ns as f64 * 1e-9)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    /// The release gate (docs/slo.md): allowed, and the reasons when not.
    pub fn gate(&self) -> (bool, Vec<String>) {
        let mut reasons = Vec::new();
        if let Some(i) = self.incident {
            reasons.push(format!("incident open since {} (Unix ns)", i.opened_ns));
        }
        for (o, s) in self.objectives.iter().zip(&self.states) {
            let name = OBJECTIVES[o.kind];
            if s.firing[0] {
                reasons.push(format!("page alert firing for objective {name}"));
            }
            if s.budget_remaining <= 0.0 {
                reasons.push(format!(
                    "error budget of objective {name} exhausted (remaining {:.4})",
                    s.budget_remaining
                ));
            }
        }
        (reasons.is_empty(), reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burn_of_exactly_the_allowed_fraction_is_exactly_one() {
        for (percent, allowed) in [(99.9, 0.001), (99.95, 0.0005), (99.0, 0.01), (90.0, 0.1)] {
            let o = Objective::from_percent(0, percent);
            assert_eq!(o.allowed, allowed, "{percent}");
            // the target as a ratio (the API shows it as target_percent)
            assert!((o.target + o.allowed - 1.0).abs() < 1e-12, "{percent}");
            let n = (1.0 / allowed).round() as u64 * 9;
            let c = Counts {
                requests: n,
                errors: 9,
                good: n,
            };
            assert_eq!(o.burn(&c), 1.0, "{percent}: 9 bad in {n}");
            assert_eq!(o.budget_remaining(&c), 0.0, "{percent}");
        }
    }
}
