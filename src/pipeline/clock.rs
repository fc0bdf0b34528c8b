//! Time: the injected wall clock and the process-wide fleet clock (SPEC §5).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix nanoseconds. Injected so window, watermark and
/// alert logic can be tested deterministically.
pub trait Clock: Send + Sync + 'static {
    /// Now, in nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests, replays).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `t`.
    pub fn new(t: u64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(t)))
    }
    /// Sets the time.
    pub fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
    /// Moves the time forward by `d` ns.
    pub fn advance(&self, d: u64) {
        self.0.fetch_add(d, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The fleet clock F: the newest valid event time the process has seen, capped at the
/// wall clock; once nothing has arrived for `allowed_lateness` (arrival time), F follows
/// the wall clock. Receivers update it once per request, shards read it once per batch.
#[derive(Debug, Default)]
pub struct FleetClock {
    newest_event: AtomicU64,
    last_arrival: AtomicU64,
}

impl FleetClock {
    /// Notes a request that arrived at wall time `now` whose newest valid event ended at
    /// `newest` (0 when it held no valid event).
    pub fn observe(&self, now: u64, newest: u64) {
        self.last_arrival.fetch_max(now, Ordering::Relaxed);
        if newest > 0 {
            self.newest_event.fetch_max(newest, Ordering::Relaxed);
        }
    }

    /// Notes that a shard has aggregated events up to `newest`. Shards call this after a
    /// batch, so F never runs ahead of the spans being aggregated: a request's own spans
    /// cannot make each other late, and a replay is independent of how it is batched.
    pub fn event(&self, newest: u64) {
        self.newest_event.fetch_max(newest, Ordering::Relaxed);
    }

    /// The newest event time aggregated (0 before the first).
    pub fn newest(&self) -> u64 {
        self.newest_event.load(Ordering::Relaxed)
    }

    /// F at wall time `now`.
    pub fn read(&self, now: u64, allowed_lateness: u64) -> u64 {
        let newest = self.newest_event.load(Ordering::Relaxed).min(now);
        let last = self.last_arrival.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= allowed_lateness {
            now
        } else {
            newest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_clock_follows_events_then_wall_when_idle() {
        let f = FleetClock::default();
        let l = 120;
        assert_eq!(f.read(1000, l), 1000, "nothing received: wall clock");
        f.observe(1000, 500);
        assert_eq!(f.read(1000, l), 500);
        f.observe(1010, 2000); // future event: capped at the wall clock
        assert_eq!(f.read(1010, l), 1010);
        assert_eq!(f.read(1100, l), 1100);
        f.observe(1200, 900);
        assert_eq!(f.read(1200, l), 1200, "newest stays 2000, capped");
        assert_eq!(f.read(1319, l), 1319);
        assert_eq!(
            f.read(1320, l),
            1320,
            "idle for allowed_lateness: wall clock"
        );
    }
}
