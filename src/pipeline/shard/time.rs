//! Pair clocks, the watermark, and the work they drive.
//!
//! Two drivers, both on event time:
//! - the pair's clock: buckets behind its watermark close, the latency minutes behind it
//!   close (`sli` archive rows), and the SLO is evaluated at every `resolution` boundary
//!   the clock crosses, in order;
//! - the once-a-minute work, at every minute boundary of the watermark, in order:
//!   deployments are judged (rollbacks, lead times, outcomes) and the `momentum` rows of
//!   the archive windows closed by then are taken. It runs at the instant `t` = boundary +
//!   `allowed_lateness` once both the pair's clock and the shard's fleet floor have
//!   reached `t`: the floor guarantees that every request that could touch the revision
//!   index before `t` has been admitted.
//!
//! Each piece of work runs at a fixed event-time instant with the data that had arrived
//! when the clock got there, whatever moved the clock (a span, a batch's fleet floor, a
//! tick), so when ticks run and how shards are scheduled changes nothing.

use super::output::close_series;
use super::pairs::source_at;
use super::ShardCore;
use crate::sli::window::MIN;

/// Metrics are a pair's service-level source while a point arrived within this long.
pub const METRIC_SOURCE_FRESHNESS: u64 = 10 * MIN;

/// The first minute boundary after watermark `wm`.
pub(super) fn next_minute(wm: u64) -> u64 {
    (wm / MIN + 1) * MIN
}

impl ShardCore {
    /// Moves a pair's clock forward to `clock` (never back): closes what falls behind
    /// the watermark, evaluates the SLO at each boundary crossed, and runs the minute work
    /// now due.
    pub(super) fn advance(&mut self, pid: u32, clock: u64) {
        let lateness = self.set.lateness;
        let p = &mut self.pairs[pid as usize];
        if clock > p.clock {
            let from = p.clock;
            p.clock = clock;
            let wm = clock.saturating_sub(lateness);
            p.windows.close_upto(wm);
            if let Some(m) = p.mwindows.as_mut() {
                m.close_upto(wm);
            }
            if wm >= p.close_due {
                p.close_due = next_minute(wm);
                let closed = close_series(p, &mut self.ops, &self.mapping, &mut self.rows, wm);
                p.closed.extend(closed);
            }
            // A pair that has had no event yet gives the minute work nothing to do: its
            // minutes start just before its first event, not at the (possibly long past)
            // fleet floor it was created at.
            if p.last_event == 0
                && p.last_metric == 0
                && p.closed.is_empty()
                && p.delivery.settled(0, &self.set.delivery)
            {
                p.minute_due = p.minute_due.max((wm / MIN).saturating_sub(1) * MIN);
            }
            let (windows, mwindows, last_metric) = (&p.windows, &p.mwindows, p.last_metric);
            if let Some(slo) = p.slo.as_mut() {
                slo.evaluate_range(
                    |b| source_at(windows, mwindows, last_metric, b),
                    from,
                    clock,
                    (&p.service, &p.environment),
                    &mut self.events,
                );
            }
        }
        self.minute_work(pid);
    }

    /// Runs the minute work of pair `pid` due at instants up to the pair's clock and the
    /// shard's floor, in order.
    fn minute_work(&mut self, pid: u32) {
        let lateness = self.set.lateness;
        let limit = self.pairs[pid as usize].clock.min(self.floor);
        loop {
            let p = &mut self.pairs[pid as usize];
            let due = p.minute_due;
            let at = due + lateness;
            if at > limit {
                return;
            }
            // Long silences: once everything the pair held is closed and nothing in its
            // delivery can change without new data, the minutes up to `limit` are no-ops.
            let last = p.last_event.max(p.last_metric);
            let settled = due > last + MIN + self.set.archive_window
                && p.closed.is_empty()
                && p.delivery.settled(at, &self.set.delivery);
            if settled {
                let last_due = (limit - lateness) / MIN * MIN;
                if last_due > due {
                    p.minute_due = last_due;
                    continue;
                }
            }
            p.minute_due = due + MIN;
            let n = p.closed.iter().take_while(|w| w.1 <= due).count();
            let closed: Vec<(u64, u64)> = p.closed.drain(..n).collect();
            let opened: Vec<u64> = p
                .slo
                .as_ref()
                .map(|s| s.opened.iter().copied().filter(|&t| t <= at).collect())
                .unwrap_or_default();
            p.delivery.tick(
                at,
                &opened,
                &self.shared.revisions,
                &self.set.delivery,
                (&p.service, &p.environment),
                &mut self.events,
            );
            if !closed.is_empty() {
                self.momentum_rows(pid, at, &closed);
            }
        }
    }

    /// Advances every pair to the fleet floor (silent pairs keep moving) and frees idle
    /// series. The floor is the live fleet clock's when `queue_empty` says nothing is
    /// queued for this shard once the clock has been read (everything admitted before
    /// that is processed, and anything admitted later carries a stamp at least that
    /// clock); otherwise the floor of the newest batch processed.
    pub fn tick(&mut self, queue_empty: impl FnOnce() -> bool) {
        let now = self.shared.clock.now_ns();
        let live = self.shared.fleet.read(now);
        let fleet = if queue_empty() { live } else { self.seen.fleet };
        let floor = fleet.saturating_sub(self.set.lateness);
        self.floor = self.floor.max(floor);
        for pid in 0..self.pairs.len() as u32 {
            self.advance(pid, floor);
        }
        self.expire();
    }

    /// Closes every open bucket of every series (shutdown): up to the end of the archive
    /// window holding the newest open bucket (or the pair's clock), so every archive
    /// window with data is written, and a span for a later window is still accepted after
    /// a restart.
    pub fn close_all(&mut self) {
        let (res, aw) = (self.set.resolution, self.set.archive_window.max(1));
        // Everything admitted is processed: the floor may go as far as any clock.
        self.floor = u64::MAX;
        for pid in 0..self.pairs.len() as u32 {
            self.minute_work(pid);
            let p = &mut self.pairs[pid as usize];
            let mut end = (p.clock / res + 1) * res;
            end = end.max(p.windows.open_end());
            if let Some(m) = &p.mwindows {
                end = end.max(m.open_end());
            }
            let far = end.div_ceil(aw) * aw;
            p.windows.close_upto(far);
            if let Some(m) = p.mwindows.as_mut() {
                m.close_upto(far);
            }
            let at = p.clock;
            let closed = close_series(p, &mut self.ops, &self.mapping, &mut self.rows, far);
            p.closed.extend(closed);
            let closed = std::mem::take(&mut p.closed);
            if !closed.is_empty() {
                self.momentum_rows(pid, at, &closed);
            }
        }
    }
}
