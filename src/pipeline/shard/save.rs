//! The state checkpoint glue: what a shard saves of each pair, and taking it back.

use std::sync::atomic::Ordering;

use super::ShardCore;
use crate::identity::OVERFLOW;
use crate::pipeline::checkpoint::PairState;
use crate::slo::SloState;

impl ShardCore {
    /// The state of pair `pid`.
    pub(super) fn save_pair(&self, pid: u32) -> PairState {
        let p = &self.pairs[pid as usize];
        PairState {
            service: p.service.clone(),
            environment: p.environment.clone(),
            hash: p.hash,
            clock: p.clock,
            last_event: p.last_event,
            last_metric: p.last_metric,
            windows: p.windows.clone(),
            mwindows: p.mwindows.clone(),
            slo: p.slo.as_ref().map(SloState::save),
            delivery: p.delivery.clone(),
        }
    }

    /// The state of every pair, for the state checkpoint.
    pub fn save(&self) -> Vec<PairState> {
        (0..self.pairs.len() as u32)
            .map(|pid| self.save_pair(pid))
            .collect()
    }

    /// Takes back pairs saved by [`ShardCore::save`] (before any traffic). Counters start
    /// at 0; windows saved with another `sli.resolution` are dropped (their buckets would
    /// mean something else) and the pair starts them afresh. The shard's floor starts at
    /// the restored fleet clock's.
    pub fn restore(&mut self, states: Vec<PairState>) {
        let now = self.shared.clock.now_ns();
        let fleet = self.shared.fleet.value();
        self.seen.fleet = self.seen.fleet.max(fleet);
        self.floor = self.floor.max(fleet.saturating_sub(self.set.lateness));
        for st in states {
            let overflow = st.hash == 0 && &*st.service == OVERFLOW;
            if overflow && self.overflow_pair.is_some() {
                continue;
            }
            let (hash, clock) = (st.hash, st.clock);
            let pid = self.new_pair(st.service.clone(), st.environment.clone(), hash, now, clock);
            self.take_back(pid, st);
            if overflow {
                self.overflow_pair = Some(pid);
            } else {
                self.shared.pairs.fetch_add(1, Ordering::Relaxed);
                let pairs = &self.pairs;
                self.pair_index
                    .insert_unique(hash, pid, |&i| pairs[i as usize].hash);
            }
        }
    }

    /// Gives pair `pid` (just created) the state `st` saved earlier: by a checkpoint, or
    /// when it was evicted from a full table.
    pub(super) fn take_back(&mut self, pid: u32, st: PairState) {
        let (res, longest) = (self.set.resolution, self.set.longest_window);
        let p = &mut self.pairs[pid as usize];
        p.clock = p.clock.max(st.clock);
        match st.windows.refit(res, longest) {
            Some(w) => p.windows = w,
            None => tracing::warn!(
                service = &*p.service,
                "sli.resolution changed since the state was saved: SLO windows start empty"
            ),
        }
        p.mwindows = st.mwindows.and_then(|m| m.refit(res, longest));
        p.last_event = st.last_event;
        p.last_metric = st.last_metric;
        if let (Some(slo), Some(saved)) = (p.slo.as_mut(), st.slo) {
            slo.restore(saved);
        }
        p.delivery = st.delivery.restored();
    }
}
