//! Per-series latency state: one-minute sub-windows (counts, max and a sketch each) and,
//! for service-level series, 5-minute and 1-hour sketches rolled up from closed minutes.
//!
//! Quantile windows use the rule "the newest ⌈w/g⌉ buckets of granularity g, the
//! open one included" with g = 1m for the 5m window, 5m for 1h and 1h for 1d. Keeping a
//! sketch per 10-second bucket would cost 30–360 sketches per series; one-minute
//! sub-windows are also the archive's row granularity, so the same sketches serve both.

use std::collections::VecDeque;

use super::sketch::{Mapping, Sketch};
use super::window::{Counts, HOUR, MIN};

/// One sub-window of a series.
#[derive(Clone, Debug, Default)]
pub struct Sub {
    /// counts of the sub-window
    pub counts: Counts,
    /// largest latency seen (ns)
    pub max_ns: u64,
    /// latency sketch (seconds)
    pub sketch: Sketch,
}

impl Sub {
    fn reset(&mut self) {
        self.counts = Counts::default();
        self.max_ns = 0;
        self.sketch.clear();
    }
}

/// A closed one-minute sub-window handed out for roll-up and archiving.
pub struct ClosedMinute<'a> {
    /// minute number since the epoch
    pub minute: u64,
    /// its data
    pub sub: &'a Sub,
}

/// Consecutive one-minute sub-windows `[first, first + subs.len())`.
#[derive(Clone, Debug)]
pub struct MinuteRing {
    first: u64,
    /// minutes below this are closed
    closed_upto: u64,
    subs: VecDeque<Sub>,
    spare: Vec<Sub>,
    keep: u64,
}

impl MinuteRing {
    /// A ring whose first open minute holds `watermark`; it keeps `keep` closed minutes
    /// (at least the 5m window).
    pub fn new(watermark: u64, keep: u64) -> Self {
        let m = watermark / MIN;
        MinuteRing {
            first: m,
            closed_upto: m,
            subs: VecDeque::new(),
            spare: Vec::new(),
            keep: keep.max(5),
        }
    }

    /// The sub-window of event time `t`, or None when its minute is closed.
    #[inline]
    pub fn sub_mut(&mut self, t: u64) -> Option<&mut Sub> {
        let m = t / MIN;
        if m < self.closed_upto {
            return None;
        }
        let i = (m - self.first) as usize;
        while self.subs.len() <= i {
            let s = self.spare.pop().unwrap_or_default();
            self.subs.push_back(s);
        }
        self.subs.get_mut(i)
    }

    /// Closes the minutes that end at or before `watermark`, calling `f` on each in
    /// order, and drops closed minutes older than the retained span.
    pub fn close_upto(&mut self, watermark: u64, mut f: impl FnMut(ClosedMinute<'_>)) {
        let target = watermark / MIN;
        while self.closed_upto < target {
            let i = (self.closed_upto - self.first) as usize;
            match self.subs.get(i) {
                Some(sub) => {
                    if sub.counts.requests > 0 {
                        f(ClosedMinute {
                            minute: self.closed_upto,
                            sub,
                        });
                    }
                    self.closed_upto += 1;
                }
                None => {
                    self.closed_upto = target;
                }
            }
        }
        // Retain `keep` closed minutes before the first open one.
        let lo = self.closed_upto.saturating_sub(self.keep);
        while self.first < lo {
            match self.subs.pop_front() {
                Some(mut s) => {
                    s.reset();
                    if self.spare.len() < 4 {
                        self.spare.push(s);
                    }
                    self.first += 1;
                }
                None => {
                    self.first = lo;
                }
            }
        }
    }

    /// Merges the sub-windows of minutes `[from, to]` into `out`.
    pub fn merge_range(&self, from: u64, to: u64, out: &mut Sketch) {
        for (i, s) in self.subs.iter().enumerate() {
            let m = self.first + i as u64;
            if m >= from && m <= to && !s.sketch.is_empty() {
                out.merge(&s.sketch);
            }
        }
    }

    /// Merges every sub-window not yet closed (so not yet rolled up).
    pub fn merge_open(&self, out: &mut Sketch) {
        self.merge_range(self.closed_upto, u64::MAX, out)
    }

    /// Sum of counts of minutes `[from, to]`.
    pub fn counts_range(&self, from: u64, to: u64) -> Counts {
        let mut c = Counts::default();
        for (i, s) in self.subs.iter().enumerate() {
            let m = self.first + i as u64;
            if m >= from && m <= to {
                c.add(&s.counts);
            }
        }
        c
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.subs
            .iter()
            .chain(self.spare.iter())
            .map(|s| std::mem::size_of::<Sub>() + s.sketch.memory_bytes())
            .sum()
    }
}

/// Sketches of consecutive buckets of width `g`, rolled up from closed minutes.
#[derive(Clone, Debug)]
pub struct SketchRing {
    g: u64,
    first: u64,
    sketches: VecDeque<Sketch>,
    cap: usize,
}

impl SketchRing {
    /// A ring of `cap` buckets of width `g` ns.
    pub fn new(g: u64, cap: usize) -> Self {
        SketchRing {
            g,
            first: 0,
            sketches: VecDeque::new(),
            cap,
        }
    }

    /// Adds a closed minute's sketch to its bucket.
    pub fn add_minute(&mut self, minute: u64, s: &Sketch) {
        let k = minute * MIN / self.g;
        if self.sketches.is_empty() {
            self.first = k;
        }
        if k < self.first {
            return; // older than anything retained: cannot happen for closed minutes
        }
        while self.first + (self.sketches.len() as u64) <= k {
            if self.sketches.len() == self.cap {
                let mut old = self.sketches.pop_front().unwrap_or_default();
                self.first += 1;
                old.clear();
                self.sketches.push_back(old);
            } else {
                self.sketches.push_back(Sketch::default());
            }
        }
        if let Some(b) = self.sketches.get_mut((k - self.first) as usize) {
            b.merge(s);
        }
    }

    /// Merges buckets `[from, to]` (bucket numbers) into `out`.
    pub fn merge_range(&self, from: u64, to: u64, out: &mut Sketch) {
        for (i, s) in self.sketches.iter().enumerate() {
            let k = self.first + i as u64;
            if k >= from && k <= to && !s.is_empty() {
                out.merge(s);
            }
        }
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.sketches
            .iter()
            .map(|s| std::mem::size_of::<Sketch>() + s.memory_bytes())
            .sum()
    }
}

/// Latency state of a series: totals, minute sub-windows, and (service level only) the
/// 5m and 1h roll-ups for the 1h and 1d quantile windows.
#[derive(Clone, Debug)]
pub struct Latency {
    /// minute sub-windows
    pub minutes: MinuteRing,
    /// 5-minute roll-ups (service level)
    pub five: Option<SketchRing>,
    /// hourly roll-ups (service level)
    pub hours: Option<SketchRing>,
    /// archive window width (ns), 0 = no archive
    archive_window: u64,
    /// the archive window being filled from closed minutes
    acc: Acc,
}

#[derive(Clone, Debug, Default)]
struct Acc {
    start: u64,
    any: bool,
    sub: Sub,
}

/// A closed archive window of a series, handed to the archive hook.
pub struct ArchivedWindow<'a> {
    /// window start (ns)
    pub start: u64,
    /// window end (ns)
    pub end: u64,
    /// counts, max latency and sketch of the window
    pub sub: &'a Sub,
}

fn emit(acc: &mut Acc, width: u64, f: &mut impl FnMut(&ArchivedWindow<'_>)) {
    if acc.any {
        f(&ArchivedWindow {
            start: acc.start,
            end: acc.start + width,
            sub: &acc.sub,
        });
        acc.any = false;
        acc.sub.reset();
    }
}

/// The quantiles exported for latency summaries.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

impl Latency {
    /// New state; `service_level` adds the 1h/1d roll-ups; `archive_window` (ns, a
    /// multiple of one minute, 0 = off) groups closed minutes into archive windows.
    pub fn new(
        watermark: u64,
        keep_minutes: u64,
        service_level: bool,
        archive_window: u64,
    ) -> Self {
        Latency {
            minutes: MinuteRing::new(watermark, keep_minutes),
            five: service_level.then(|| SketchRing::new(5 * MIN, 13)),
            hours: service_level.then(|| SketchRing::new(HOUR, 25)),
            archive_window,
            acc: Acc::default(),
        }
    }

    /// Records one request.
    #[inline]
    pub fn add(&mut self, t: u64, c: &Counts, lat_ns: u64, idx: i32, lat_s: f64) -> bool {
        match self.minutes.sub_mut(t) {
            Some(sub) => {
                sub.counts.add(c);
                if lat_ns > sub.max_ns {
                    sub.max_ns = lat_ns;
                }
                sub.sketch.add_index(idx, lat_s);
                true
            }
            None => false,
        }
    }

    /// Closes minutes up to `watermark`, rolling them up; `f` sees each archive window
    /// that is complete (every minute of it closed) and held requests.
    pub fn close_upto(&mut self, watermark: u64, mut f: impl FnMut(&ArchivedWindow<'_>)) {
        let (five, hours, acc, width) = (
            &mut self.five,
            &mut self.hours,
            &mut self.acc,
            self.archive_window,
        );
        self.minutes.close_upto(watermark, |cm| {
            if let Some(r) = five.as_mut() {
                r.add_minute(cm.minute, &cm.sub.sketch);
            }
            if let Some(r) = hours.as_mut() {
                r.add_minute(cm.minute, &cm.sub.sketch);
            }
            if let Some(n) = (cm.minute * MIN).checked_div(width) {
                let start = n * width;
                if acc.any && acc.start != start {
                    emit(acc, width, &mut f);
                }
                acc.start = start;
                acc.any = true;
                acc.sub.counts.add(&cm.sub.counts);
                acc.sub.max_ns = acc.sub.max_ns.max(cm.sub.max_ns);
                acc.sub.sketch.merge(&cm.sub.sketch);
            }
        });
        if width > 0 && self.acc.any && self.acc.start + width <= watermark {
            emit(&mut self.acc, width, &mut f);
        }
    }

    /// The sketch of window `w` (5m, 1h or 1d) at `clock`, merged into `out` (cleared
    /// first).
    pub fn window_sketch(&self, w: u64, clock: u64, out: &mut Sketch) {
        out.clear();
        let cur_min = clock / MIN;
        if w <= 5 * MIN {
            self.minutes
                .merge_range((cur_min + 1).saturating_sub(5), cur_min, out);
            return;
        }
        let (ring, g, n) = if w <= HOUR {
            (&self.five, 5 * MIN, 12)
        } else {
            (&self.hours, HOUR, 24)
        };
        if let Some(r) = ring {
            let cur = clock / g;
            r.merge_range((cur + 1).saturating_sub(n), cur, out);
            self.minutes.merge_open(out);
        }
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.minutes.memory_bytes()
            + self.five.as_ref().map_or(0, |r| r.memory_bytes())
            + self.hours.as_ref().map_or(0, |r| r.memory_bytes())
    }
}

/// Extracts the exported quantiles from a sketch (None when empty).
pub fn quantiles(m: &Mapping, s: &Sketch) -> Option<[f64; 5]> {
    if s.is_empty() {
        return None;
    }
    let mut out = [0.0; 5];
    for (o, q) in out.iter_mut().zip(QUANTILES) {
        *o = s.quantile(m, q)?;
    }
    Some(out)
}
