//! The state checkpoint glue: what a shard saves of each pair, and taking it back.

use std::sync::atomic::Ordering;

use super::pairs::OVERFLOW;
use super::ShardCore;
use crate::pipeline::checkpoint::PairState;
use crate::slo::SloState;

impl ShardCore {
    /// The state of every pair, for the state checkpoint.
    pub fn save(&self) -> Vec<PairState> {
        self.pairs
            .iter()
            .map(|p| PairState {
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
            })
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
        let (res, longest) = (self.set.resolution, self.set.longest_window);
        for st in states {
            let overflow = st.hash == 0 && &*st.service == OVERFLOW;
            if overflow && self.overflow_pair.is_some() {
                continue;
            }
            let pid = self.new_pair(st.service, st.environment, st.hash, now, st.clock);
            let p = &mut self.pairs[pid as usize];
            match st.windows.refit(res, longest) {
                Some(w) => p.windows = w,
                None => tracing::warn!(
                    service = &*p.service,
                    "sli.resolution changed since the checkpoint: SLO windows start empty"
                ),
            }
            p.mwindows = st.mwindows.and_then(|m| m.refit(res, longest));
            p.last_event = st.last_event;
            p.last_metric = st.last_metric;
            if let (Some(slo), Some(saved)) = (p.slo.as_mut(), st.slo) {
                slo.restore(saved);
            }
            p.delivery = st.delivery.restored();
            if overflow {
                self.overflow_pair = Some(pid);
            } else {
                self.shared.pairs.fetch_add(1, Ordering::Relaxed);
                let pairs = &self.pairs;
                self.pair_index
                    .insert_unique(st.hash, pid, |&i| pairs[i as usize].hash);
            }
        }
    }
}
