//! Time: the injected wall clock and the process-wide fleet clock (docs/event-time.md).

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

/// What a request's admission tells the shards about time: the wall clock when it was
/// admitted and the fleet clock F just before its own events were noted. Every message a
/// request puts in a shard queue carries the same stamp, and the shard decides lateness
/// from it, never from the live fleet clock: a shard whose queue lags behind judges each
/// batch exactly as it would have been judged had it been processed at once, so results
/// do not depend on how the shards are scheduled (see `docs/event-time.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// wall clock at admission (Unix ns)
    pub now: u64,
    /// the fleet clock F at admission, before this request's events (Unix ns)
    pub fleet: u64,
}

/// The fleet clock F: the newest valid event time admitted, capped at the wall clock;
/// once nothing has arrived for `allowed_lateness` (arrival time), F follows the wall
/// clock, and the next arrival ends the silence.
///
/// Receivers note every admitted request ([`FleetClock::begin`] / [`FleetClock::commit`])
/// after its room in every queue is reserved, and stamp it with F as it was just before:
/// the shards judge lateness by that stamp alone. Shards read the live F
/// ([`FleetClock::read`]) only to move silent pairs on while their own queue is empty.
/// All accesses are `SeqCst`: a shard that reads F and then finds its queue empty knows
/// that every request it has not seen yet carries a stamp at least that F (outside a
/// silence, when F is the wall clock and the next arrival falls back to its events).
#[derive(Debug)]
pub struct FleetClock {
    /// the newest valid event time admitted, capped at the wall clock then (monotone)
    f: AtomicU64,
    /// wall time of the newest arrival (0: nothing has arrived yet)
    last_arrival: AtomicU64,
    /// `allowed_lateness` (ns)
    lateness: u64,
}

impl FleetClock {
    /// A fleet clock for `allowed_lateness` = `lateness` ns that has seen nothing, in a
    /// process started at wall time `started` (silence counts from the start).
    pub fn new(lateness: u64, started: u64) -> Self {
        FleetClock {
            f: AtomicU64::new(0),
            last_arrival: AtomicU64::new(started),
            lateness,
        }
    }

    /// Takes F back from a checkpoint written by an earlier process: a restart is not
    /// silence, so F stays at `fleet` (capped at the wall clock) until `allowed_lateness`
    /// of silence has passed since `started`.
    pub fn restore(&self, fleet: u64, started: u64) {
        self.f.fetch_max(fleet, Ordering::SeqCst);
        self.last_arrival.fetch_max(started, Ordering::SeqCst);
    }

    fn at(&self, now: u64, f: u64, last: u64) -> u64 {
        if now.saturating_sub(last) >= self.lateness {
            now
        } else {
            f.min(now)
        }
    }

    /// The stamp of a request arriving at wall time `now`: F just before it (an arrival
    /// ends a silence, so this is the newest event admitted, capped at `now`). The
    /// admission then notes what must be visible from this stamp on (the revision index)
    /// and calls [`FleetClock::commit`]. A request's own events never make each other
    /// late.
    pub fn begin(&self, now: u64) -> Stamp {
        let fleet = self.f.load(Ordering::SeqCst).min(now);
        Stamp { now, fleet }
    }

    /// Notes the admitted request stamped `stamp` whose newest valid event ended at
    /// `newest` (0 when it held none).
    pub fn commit(&self, stamp: Stamp, newest: u64) {
        // F first, then the arrival: a reader that sees this arrival sees F raised too.
        self.f.fetch_max(newest.min(stamp.now), Ordering::SeqCst);
        self.last_arrival.fetch_max(stamp.now, Ordering::SeqCst);
    }

    /// [`FleetClock::begin`] then [`FleetClock::commit`].
    pub fn admit(&self, now: u64, newest: u64) -> Stamp {
        let s = self.begin(now);
        self.commit(s, newest);
        s
    }

    /// Notes an arrival that carried nothing for the shards (an empty request, a logs
    /// request without deployment records): it still is not silence.
    pub fn arrive(&self, now: u64) {
        self.admit(now, 0);
    }

    /// F at wall time `now` (no side effect).
    pub fn read(&self, now: u64) -> u64 {
        let f = self.f.load(Ordering::SeqCst);
        let last = self.last_arrival.load(Ordering::SeqCst);
        self.at(now, f, last)
    }

    /// The newest valid event time admitted (0 before the first): what the checkpoint
    /// saves.
    pub fn value(&self) -> u64 {
        self.f.load(Ordering::SeqCst)
    }

    /// `allowed_lateness` (ns).
    pub fn lateness(&self) -> u64 {
        self.lateness
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_clock_follows_events_then_wall_when_idle() {
        let l = 120;
        let f = FleetClock::new(l, 1000);
        assert_eq!(f.read(1000), 0, "silence counts from the start");
        assert_eq!(
            f.read(1120),
            1120,
            "nothing received for allowed_lateness: wall clock"
        );
        assert_eq!(
            f.admit(1130, 500),
            Stamp {
                now: 1130,
                fleet: 0
            },
            "an arrival ends it"
        );
        assert_eq!(f.read(1130), 500);
        let f = FleetClock::new(l, 0);
        f.restore(400, 990);
        assert_eq!(f.read(1000), 400, "a restart is not silence");
        assert_eq!(
            f.admit(1000, 500),
            Stamp {
                now: 1000,
                fleet: 400
            }
        );
        assert_eq!(f.read(1000), 500);
        assert_eq!(
            f.admit(1010, 2000).fleet,
            500,
            "own events are not in the stamp"
        );
        assert_eq!(
            f.read(1010),
            1010,
            "a future event: capped at the wall clock"
        );
        assert_eq!(f.read(1100), 1010);
        f.arrive(1100);
        assert_eq!(f.read(1219), 1010, "an empty request is an arrival too");
        assert_eq!(f.read(1220), 1220, "idle for allowed_lateness: wall clock");
        assert_eq!(
            f.admit(1400, 900).fleet,
            1010,
            "after a silence: the events again"
        );
    }
}
