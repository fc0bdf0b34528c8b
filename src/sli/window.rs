//! Event-time buckets and rolling windows of request/error/latency-good counts.
//!
//! A series keeps its *open* buckets (`resolution` wide, not yet behind the watermark)
//! as plain counts, and for the closed past only cumulative totals sampled at bucket
//! boundaries, at three granularities: `resolution` (for windows up to 2h), 5 minutes
//! (up to 3d) and 1 hour (beyond, e.g. the 30d SLO window). The sum over any window is
//! then `total(now) − cumulative(window start)`: O(open buckets), whatever the window
//! length, and the 30-day window costs 720 hourly samples, not 259,200 ten-second
//! buckets. Closing a bucket "rolls it up" by adding it to the cumulative total.

use std::collections::VecDeque;

/// Nanoseconds in a second.
pub const SEC: u64 = 1_000_000_000;
/// Nanoseconds in a minute.
pub const MIN: u64 = 60 * SEC;
/// Nanoseconds in an hour.
pub const HOUR: u64 = 60 * MIN;
/// Nanoseconds in a day.
pub const DAY: u64 = 24 * HOUR;

/// Counts of one bucket or window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// requests
    pub requests: u64,
    /// requests that were errors
    pub errors: u64,
    /// requests with latency at or under the latency objective's threshold
    pub good: u64,
}

impl Counts {
    /// Adds `o` into `self`.
    #[inline]
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.good += o.good;
    }

    /// `self − o`, saturating (cumulative values never decrease, so this is exact).
    #[inline]
    pub fn minus(&self, o: &Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(o.requests),
            errors: self.errors.saturating_sub(o.errors),
            good: self.good.saturating_sub(o.good),
        }
    }
}

/// The rolling windows of the README's How it works (label value, length).
pub const WINDOWS: [(&str, u64); 7] = [
    ("5m", 5 * MIN),
    ("30m", 30 * MIN),
    ("1h", HOUR),
    ("2h", 2 * HOUR),
    ("6h", 6 * HOUR),
    ("1d", DAY),
    ("3d", 3 * DAY),
];

/// The bucket granularity the README's How it works gives a window of length `w`.
pub fn granularity(w: u64, resolution: u64) -> u64 {
    let aligned = |g: u64| if g % resolution == 0 { g } else { resolution };
    if w <= 2 * HOUR {
        resolution
    } else if w <= 3 * DAY {
        aligned(5 * MIN)
    } else {
        aligned(HOUR)
    }
}

/// A ring of cumulative totals sampled at the boundaries `k * g` for consecutive `k`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct BoundaryRing {
    /// boundary index of `vals[0]`
    first: u64,
    vals: VecDeque<Counts>,
    cap: usize,
}

impl BoundaryRing {
    fn new(cap: usize, first: u64) -> Self {
        let mut vals = VecDeque::with_capacity(cap);
        vals.push_back(Counts::default());
        BoundaryRing { first, vals, cap }
    }

    /// Records the cumulative value at every boundary up to `k` (inclusive), filling
    /// skipped boundaries with `v` (nothing closed between them).
    fn record_upto(&mut self, k: u64, v: Counts) {
        let last = self.first + self.vals.len() as u64 - 1;
        if k <= last {
            return;
        }
        let n = k - last;
        if n as usize >= self.cap {
            self.vals.clear();
            self.first = k + 1 - self.cap as u64;
            self.vals.resize(self.cap, v);
            return;
        }
        for _ in 0..n {
            if self.vals.len() == self.cap {
                self.vals.pop_front();
                self.first += 1;
            }
            self.vals.push_back(v);
        }
    }

    /// The cumulative value at boundary `k`; before the first retained boundary the
    /// series had closed nothing (or the window is longer than the ring, which sizing
    /// rules out), so the first retained value stands in.
    fn at(&self, k: u64) -> Counts {
        if k < self.first {
            return self.vals.front().copied().unwrap_or_default();
        }
        let i = (k - self.first) as usize;
        match self.vals.get(i) {
            Some(v) => *v,
            None => self.vals.back().copied().unwrap_or_default(),
        }
    }
}

/// The windows of one service-level series.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SeriesWindows {
    res: u64,
    mid: u64,
    hi: u64,
    /// Open buckets: index = bucket number − `closed_upto`.
    open: VecDeque<Counts>,
    /// Every bucket with a number below this is closed.
    closed_upto: u64,
    /// Total of all closed buckets.
    closed: Counts,
    fine: BoundaryRing,
    mid_ring: BoundaryRing,
    coarse: BoundaryRing,
}

impl SeriesWindows {
    /// A new series whose first open bucket contains `watermark`. `longest` is the
    /// longest window it must answer (the SLO window, at least 3d).
    pub fn new(res: u64, watermark: u64, longest: u64) -> Self {
        let mid = granularity(3 * DAY, res);
        let hi = granularity(4 * DAY, res);
        let closed_upto = watermark / res;
        let b = closed_upto * res;
        let fine_cap = (2 * HOUR / res) as usize + 2;
        let mid_cap = (3 * DAY / mid) as usize + 2;
        let coarse_cap = (longest.max(3 * DAY) / hi) as usize + 2;
        SeriesWindows {
            res,
            mid,
            hi,
            open: VecDeque::new(),
            closed_upto,
            closed: Counts::default(),
            fine: BoundaryRing::new(fine_cap, b / res),
            mid_ring: BoundaryRing::new(mid_cap, b / mid),
            coarse: BoundaryRing::new(coarse_cap, b / hi),
        }
    }

    /// End (ns) of the newest open bucket, or of the closed range when none is open.
    pub fn open_end(&self) -> u64 {
        (self.closed_upto + self.open.len() as u64) * self.res
    }

    /// Fits a series restored from a checkpoint to the current config: `None` when the
    /// resolution changed (its buckets mean something else now), else the series with its
    /// longest ring resized for `longest` (a shorter SLO window drops the oldest samples; a
    /// longer one fills in as time passes).
    pub fn refit(mut self, res: u64, longest: u64) -> Option<Self> {
        if self.res != res || self.mid != granularity(3 * DAY, res) {
            return None;
        }
        let cap = (longest.max(3 * DAY) / self.hi) as usize + 2;
        let ring = &mut self.coarse;
        while ring.vals.len() > cap {
            ring.vals.pop_front();
            ring.first += 1;
        }
        ring.cap = cap;
        Some(self)
    }

    /// Bytes of memory this series holds (for the README's per-service cost).
    pub fn memory_bytes(&self) -> usize {
        let c = std::mem::size_of::<Counts>();
        std::mem::size_of::<Self>()
            + c * (self.open.capacity()
                + self.fine.vals.capacity()
                + self.mid_ring.vals.capacity()
                + self.coarse.vals.capacity())
    }

    /// Whether `t` falls in a closed bucket (the span is late).
    #[inline]
    pub fn is_closed(&self, t: u64) -> bool {
        t / self.res < self.closed_upto
    }

    /// Adds counts to the bucket holding event time `t`. Returns false (and adds
    /// nothing) when that bucket is closed. `t` may be ahead of the clock by up to the
    /// clock skew; the open ring grows to hold it.
    #[inline]
    pub fn add(&mut self, t: u64, c: &Counts) -> bool {
        let b = t / self.res;
        if b < self.closed_upto {
            return false;
        }
        let i = (b - self.closed_upto) as usize;
        if i >= self.open.len() {
            // Bounded: the caller rejects spans beyond clock skew, so `i` is at most
            // (lateness + skew) / resolution + the distance the watermark lags.
            self.open.resize(i + 1, Counts::default());
        }
        self.open[i].add(c);
        true
    }

    /// Closes every bucket that ends at or before `watermark` (rolling them into the
    /// cumulative totals).
    pub fn close_upto(&mut self, watermark: u64) {
        let target = watermark / self.res;
        if target <= self.closed_upto {
            return;
        }
        while self.closed_upto < target {
            match self.open.pop_front() {
                Some(c) => {
                    self.closed.add(&c);
                    self.closed_upto += 1;
                    self.record_boundaries();
                }
                None => {
                    // Nothing open: jump straight to the target.
                    self.closed_upto = target;
                    self.record_boundaries();
                    break;
                }
            }
        }
    }

    fn record_boundaries(&mut self) {
        let t = self.closed_upto * self.res;
        let v = self.closed;
        self.fine.record_upto(t / self.res, v);
        self.mid_ring.record_upto(t / self.mid, v);
        self.coarse.record_upto(t / self.hi, v);
    }

    /// Cumulative total of everything with a bucket end at or before boundary time `t`.
    fn cum_at(&self, t: u64) -> Counts {
        let closed_t = self.closed_upto * self.res;
        if t >= closed_t {
            let mut v = self.closed;
            let n = ((t - closed_t) / self.res) as usize;
            for c in self.open.iter().take(n) {
                v.add(c);
            }
            return v;
        }
        // A closed boundary: pick the ring whose granularity divides t, finest first.
        if t % self.res == 0 && t / self.res >= self.fine.first {
            return self.fine.at(t / self.res);
        }
        if t % self.mid == 0 && t / self.mid >= self.mid_ring.first {
            return self.mid_ring.at(t / self.mid);
        }
        self.coarse.at(t / self.hi)
    }

    /// Sum over the window of length `w` at granularity `g` whose newest bucket holds
    /// `clock` (the open one included), counting only buckets that end by `upto`
    /// (`u64::MAX` for everything received).
    pub fn window(&self, w: u64, clock: u64, upto: u64) -> Counts {
        let g = granularity(w, self.res);
        let n = w.div_ceil(g);
        let cur = clock / g;
        let start = (cur + 1).saturating_sub(n) * g;
        let end = ((cur + 1) * g).min(upto);
        let end = end - end % self.res;
        if end <= start {
            return Counts::default();
        }
        self.cum_at(end).minus(&self.cum_at(start))
    }

    /// Sum over all windows of [`WINDOWS`] at `clock`, in that order.
    pub fn windows(&self, clock: u64) -> [Counts; 7] {
        let mut out = [Counts::default(); 7];
        for (o, (_, w)) in out.iter_mut().zip(WINDOWS.iter()) {
            *o = self.window(*w, clock, u64::MAX);
        }
        out
    }

    /// Everything counted so far, open buckets included.
    pub fn total(&self) -> Counts {
        let mut v = self.closed;
        for c in &self.open {
            v.add(c);
        }
        v
    }

    /// The resolution (bucket width) in ns.
    pub fn resolution(&self) -> u64 {
        self.res
    }

    /// Start of the first open bucket: everything before it is final.
    pub fn closed_upto_time(&self) -> u64 {
        self.closed_upto * self.res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: u64 = 10 * SEC;

    fn one(ok: bool) -> Counts {
        Counts {
            requests: 1,
            errors: u64::from(!ok),
            good: u64::from(ok),
        }
    }

    /// A brute-force model: every event kept, windows summed by definition.
    struct Model {
        events: Vec<(u64, bool)>,
    }

    impl Model {
        fn window(&self, w: u64, clock: u64) -> Counts {
            let g = granularity(w, RES);
            let n = w.div_ceil(g);
            let cur = clock / g;
            let start = (cur + 1).saturating_sub(n) * g;
            let end = (cur + 1) * g;
            let mut c = Counts::default();
            for &(t, ok) in &self.events {
                if t >= start && t < end {
                    c.add(&one(ok));
                }
            }
            c
        }
    }

    #[test]
    fn windows_match_brute_force_over_four_days() {
        let t0 = 1_700_000_000 * SEC;
        let lateness = 2 * MIN;
        let mut s = SeriesWindows::new(RES, t0 - lateness, 30 * DAY);
        let mut m = Model { events: vec![] };
        let mut t = t0;
        let mut rng = 0x1234_5678_u64;
        let mut step = 0u64;
        while t < t0 + 4 * DAY {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Irregular traffic with quiet gaps of up to ~3h.
            let gap = if rng % 97 == 0 {
                rng % (3 * HOUR)
            } else {
                rng % (40 * SEC)
            };
            t += gap + 1;
            let ok = rng % 5 != 0;
            // Some events arrive late but within lateness.
            let et = if rng % 3 == 0 {
                t - (rng % 90) * SEC
            } else {
                t
            };
            s.close_upto(t - lateness);
            assert!(
                s.add(et, &one(ok)),
                "event within lateness must be accepted"
            );
            m.events.push((et, ok));
            step += 1;
            if step % 37 == 0 {
                for (name, w) in WINDOWS {
                    assert_eq!(s.window(w, t, u64::MAX), m.window(w, t), "{name} at {t}");
                }
                assert_eq!(s.window(30 * DAY, t, u64::MAX), m.window(30 * DAY, t));
            }
        }
        let total: u64 = m.events.len() as u64;
        assert_eq!(s.total().requests, total);
    }

    #[test]
    fn late_event_is_refused_and_counts_nothing() {
        let t0 = 1_700_000_000 * SEC;
        let mut s = SeriesWindows::new(RES, t0, 30 * DAY);
        s.close_upto(t0 + MIN);
        assert!(s.is_closed(t0 + MIN - 1));
        assert!(!s.add(t0 + 30 * SEC, &one(true)));
        assert_eq!(s.total(), Counts::default());
        assert!(s.add(t0 + MIN, &one(true)));
        assert_eq!(s.total().requests, 1);
    }

    #[test]
    fn a_silent_series_empties_its_windows() {
        let t0 = 1_700_000_000 * SEC;
        let mut s = SeriesWindows::new(RES, t0, 30 * DAY);
        s.add(t0 + SEC, &one(false));
        assert_eq!(s.window(5 * MIN, t0 + 2 * SEC, u64::MAX).errors, 1);
        let later = t0 + 10 * MIN;
        s.close_upto(later - 2 * MIN);
        assert_eq!(s.window(5 * MIN, later, u64::MAX), Counts::default());
        assert_eq!(s.window(HOUR, later, u64::MAX).errors, 1);
        // A jump far beyond every ring keeps totals and empties all windows.
        let far = t0 + 40 * DAY;
        s.close_upto(far);
        for (_, w) in WINDOWS {
            assert_eq!(s.window(w, far, u64::MAX), Counts::default());
        }
        assert_eq!(s.window(30 * DAY, far, u64::MAX), Counts::default());
        assert_eq!(s.total().errors, 1);
    }

    #[test]
    fn memory_of_a_thirty_day_series_is_under_64_kib() {
        let t0 = 1_700_000_000 * SEC;
        let mut s = SeriesWindows::new(RES, t0, 30 * DAY);
        let mut t = t0;
        while t < t0 + 31 * DAY {
            s.add(t, &one(true));
            s.close_upto(t.saturating_sub(2 * MIN));
            t += 7 * MIN;
        }
        eprintln!("30d series windows: {} bytes", s.memory_bytes());
        assert!(s.memory_bytes() < 64 * 1024, "{}", s.memory_bytes());
    }
}
