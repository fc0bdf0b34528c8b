//! The pairs and per-operation series a shard owns: interning, the process-wide limits
//! (`max_services`, `max_series`), and expiry of idle series.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ShardCore, Tally};
use crate::delivery::deployments::Delivery;
use crate::identity::{is_service_name, service_name, OVERFLOW, UNKNOWN_SERVICE};
use crate::pipeline::checkpoint::PairState;
use crate::sli::series::Latency;
use crate::sli::window::SeriesWindows;
use crate::slo::SloState;
use crate::view::Totals;

/// One (service, environment) pair.
pub(super) struct Pair {
    pub service: Arc<str>,
    pub environment: Arc<str>,
    pub hash: u64,
    pub start_ns: u64,
    /// the pair's clock: max(own newest event, F − lateness)
    pub clock: u64,
    /// the watermark at which the next once-a-minute work is due (a multiple of a minute)
    pub minute_due: u64,
    /// the watermark at which the latency minutes next close (a multiple of a minute)
    pub close_due: u64,
    /// archive windows closed whose `momentum` rows the minute work has yet to take
    pub closed: Vec<(u64, u64)>,
    pub last_event: u64,
    pub windows: SeriesWindows,
    pub latency: Latency,
    pub threshold_ns: Option<u64>,
    pub slo_window: Option<u64>,
    pub totals: Totals,
    pub ops: Vec<u32>,
    pub overflow_op: Option<u32>,
    pub slo: Option<SloState>,
    /// windows fed by duration-histogram metrics (created when the first point arrives)
    pub mwindows: Option<SeriesWindows>,
    /// newest event time of a metric point
    pub last_metric: u64,
    /// the bucket bound the newest metric point counted latency_good up to (ns)
    pub metric_bound_ns: Option<u64>,
    /// deployments, rollbacks, pipelines
    pub delivery: Delivery,
    /// `unknown_service*` pools unrelated programs: no version-based detection
    pub unknown: bool,
}

/// The service-level windows at event time `t`: the metrics-derived ones while a metric
/// point arrived within [`super::METRIC_SOURCE_FRESHNESS`] before `t`, else the spans'.
pub(super) fn source_at<'a>(
    windows: &'a SeriesWindows,
    mwindows: &'a Option<SeriesWindows>,
    last_metric: u64,
    t: u64,
) -> &'a SeriesWindows {
    match mwindows {
        Some(m) if last_metric + super::METRIC_SOURCE_FRESHNESS >= t => m,
        _ => windows,
    }
}

impl Pair {
    /// The service-level windows at the pair's clock.
    pub fn source(&self) -> &SeriesWindows {
        source_at(&self.windows, &self.mwindows, self.last_metric, self.clock)
    }

    /// Whether metrics are the service-level source at the pair's clock.
    pub fn metrics_active(&self) -> bool {
        self.mwindows.is_some() && self.last_metric + super::METRIC_SOURCE_FRESHNESS >= self.clock
    }
}

/// One per-operation series.
pub(super) struct Op {
    pub pair: u32,
    pub name: Arc<str>,
    pub start_ns: u64,
    pub last_event: u64,
    pub latency: Latency,
    pub totals: Totals,
    pub exemplars: crate::sli::exemplars::Exemplars,
}

impl ShardCore {
    /// The pair a routed message (records, metric points) names, moved to the fleet floor.
    pub(super) fn enter_pair(
        &mut self,
        (ns, name, env, hash): (&String, &String, &String, u64),
        now: u64,
        floor: u64,
        tally: &mut Tally,
    ) -> u32 {
        let pid = self.pair_for(
            ns.as_bytes(),
            name.as_bytes(),
            env.as_bytes(),
            hash,
            now,
            floor,
            tally,
        );
        self.advance(pid, floor);
        pid
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn pair_for(
        &mut self,
        ns: &[u8],
        name: &[u8],
        env: &[u8],
        hash: u64,
        now: u64,
        floor: u64,
        tally: &mut Tally,
    ) -> u32 {
        let pairs = &self.pairs;
        if let Some(&pid) = self
            .pair_index
            .find(hash, |&i| pair_matches(&pairs[i as usize], ns, name, env))
        {
            return pid;
        }
        let limit = self.set.max_services;
        // The table is full: an idle pair of this shard gives its slot up (again, when
        // another shard took the slot first), until none can.
        let full = loop {
            if self.shared.pairs.fetch_add(1, Ordering::Relaxed) < limit {
                break false;
            }
            self.shared.pairs.fetch_sub(1, Ordering::Relaxed);
            if !self.evict_one() {
                break true;
            }
        };
        if full {
            tally.overflow_service += 1;
            if let Some(pid) = self.overflow_pair {
                return pid;
            }
            let pid = self.new_pair(Arc::from(OVERFLOW), Arc::from(""), 0, now, floor);
            self.overflow_pair = Some(pid);
            return pid;
        }
        let service = service_name(ns, name);
        let env = String::from_utf8_lossy(env).into_owned();
        // A pair evicted earlier comes back with the state it had.
        let saved = self
            .evicted_state(hash)
            .filter(|st| *st.service == *service && *st.environment == *env);
        let pid = match saved {
            Some(st) => {
                let pid = self.new_pair(
                    st.service.clone(),
                    st.environment.clone(),
                    hash,
                    now,
                    st.clock,
                );
                self.take_back(pid, st);
                pid
            }
            None => self.new_pair(Arc::from(service), Arc::from(env), hash, now, floor),
        };
        let pairs = &self.pairs;
        self.pair_index
            .insert_unique(hash, pid, |&i| pairs[i as usize].hash);
        pid
    }

    /// The file an evicted pair's state waits in.
    fn evicted_path(&self, hash: u64) -> Option<std::path::PathBuf> {
        self.set
            .evict_dir
            .as_ref()
            .map(|d| d.join(format!("{hash:016x}.bin")))
    }

    /// The state of a pair evicted earlier (taken off disk), if there is one.
    fn evicted_state(&mut self, hash: u64) -> Option<PairState> {
        let path = self.evicted_path(hash)?;
        let bytes = std::fs::read(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        match crate::pipeline::checkpoint::decode(&bytes) {
            Ok(c) => c.pairs.into_iter().next(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "evicted pair state unreadable: {e}");
                None
            }
        }
    }

    /// Evicts the least recently seen pair of this shard that has been idle for more than
    /// `series_idle` (event time) and has no open incident, firing alert, undecided
    /// deployment or unwritten archive window; its state is written to the evict dir
    /// and comes back when the pair reports again. False when no pair can go.
    pub(super) fn evict_one(&mut self) -> bool {
        let idle = self.set.series_idle;
        // A silent pair's clock follows the fleet floor: the floor says how long it has
        // been idle even before a tick has moved it.
        let floor = self.floor;
        let candidate = self
            .pairs
            .iter()
            .enumerate()
            .filter(|&(pid, p)| {
                let last = p.last_event.max(p.last_metric);
                Some(pid as u32) != self.overflow_pair
                    && p.clock.max(floor).saturating_sub(last) > idle
                    && p.closed.is_empty()
                    && p.delivery.pending() == 0
                    && !p
                        .slo
                        .as_ref()
                        .is_some_and(|s| s.incident.is_some() || s.firing())
            })
            .min_by_key(|(_, p)| p.last_event.max(p.last_metric))
            .map(|(pid, _)| pid as u32);
        let Some(pid) = candidate else {
            return false;
        };
        let st = self.save_pair(pid);
        let kept = self.evicted_path(st.hash).is_some_and(|path| {
            let c = crate::pipeline::checkpoint::Checkpoint {
                pairs: vec![st],
                ..Default::default()
            };
            let written = crate::pipeline::checkpoint::encode(&c).and_then(|b| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, b).map_err(|e| e.to_string())?;
                std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
            });
            if let Err(e) = &written {
                tracing::warn!(path = %path.display(), "cannot keep an evicted pair's state: {e}");
            }
            written.is_ok()
        });
        let c = &self.shared.counters;
        crate::pipeline::Counters::add(&c.evicted_service, 1);
        if !kept {
            crate::pipeline::Counters::add(&c.evicted_lost, 1);
        }
        self.remove_pair(pid);
        true
    }

    /// Removes pair `pid` and its operation series; the last pair takes its index.
    fn remove_pair(&mut self, pid: u32) {
        let hash = self.pairs[pid as usize].hash;
        // its operations
        let mut freed = 0usize;
        for oid in std::mem::take(&mut self.pairs[pid as usize].ops) {
            let Some(op) = self.ops[oid as usize].take() else {
                continue;
            };
            let h = op_hash(op.pair, op.name.as_bytes());
            if let Ok(e) = self.op_index.find_entry(h, |&i| i == oid) {
                e.remove();
            }
            self.free_ops.push(oid);
            if self.pairs[pid as usize].overflow_op != Some(oid) {
                freed += 1;
            }
        }
        self.shared.series.fetch_sub(freed, Ordering::Relaxed);
        if let Ok(e) = self.pair_index.find_entry(hash, |&i| i == pid) {
            e.remove();
        }
        self.shared.pairs.fetch_sub(1, Ordering::Relaxed);
        let last = (self.pairs.len() - 1) as u32;
        self.pairs.swap_remove(pid as usize);
        if pid == last {
            return;
        }
        // The pair that moved from `last` to `pid`: its index entry and its operations.
        let moved_hash = self.pairs[pid as usize].hash;
        if self.overflow_pair == Some(last) {
            self.overflow_pair = Some(pid);
        } else if let Ok(mut e) = self.pair_index.find_entry(moved_hash, |&i| i == last) {
            *e.get_mut() = pid;
        }
        let moved_ops = self.pairs[pid as usize].ops.clone();
        for oid in moved_ops {
            let Some(op) = self.ops[oid as usize].as_mut() else {
                continue;
            };
            let old = op_hash(last, op.name.as_bytes());
            op.pair = pid;
            let new = op_hash(pid, op.name.as_bytes());
            if let Ok(e) = self.op_index.find_entry(old, |&i| i == oid) {
                e.remove();
            }
            let ops = &self.ops;
            self.op_index.insert_unique(new, oid, |&i| {
                ops[i as usize]
                    .as_ref()
                    .map_or(0, |o| op_hash(o.pair, o.name.as_bytes()))
            });
        }
    }

    pub(super) fn new_pair(
        &mut self,
        service: Arc<str>,
        environment: Arc<str>,
        hash: u64,
        now: u64,
        clock: u64,
    ) -> u32 {
        let set = &self.set;
        let slo = set.config.slo_for(&service, &environment);
        let threshold_ns = slo
            .and_then(|s| s.objectives.latency.as_ref())
            .map(|l| l.threshold.as_nanos());
        let slo_window = slo.map(|s| s.window.as_nanos());
        let slo_state = slo.and_then(|s| SloState::new(s, set.lookback));
        let unknown = service.starts_with(UNKNOWN_SERVICE);
        let wm = clock.saturating_sub(set.lateness);
        let pid = self.pairs.len() as u32;
        self.pairs.push(Pair {
            service,
            environment,
            hash,
            start_ns: now,
            clock,
            minute_due: super::time::next_minute(wm),
            close_due: super::time::next_minute(wm),
            closed: Vec::new(),
            last_event: 0,
            windows: SeriesWindows::new(set.resolution, wm, set.longest_window),
            latency: Latency::new(wm, set.keep_minutes, true, set.archive_window),
            threshold_ns,
            slo_window,
            totals: Totals::default(),
            ops: Vec::new(),
            overflow_op: None,
            slo: slo_state,
            mwindows: None,
            last_metric: 0,
            metric_bound_ns: None,
            delivery: Delivery::default(),
            unknown,
        });
        pid
    }

    /// The series of operation `name` of pair `pid`. A series idle for `series_idle` of
    /// the pair's event time starts afresh, whether or not a tick has removed it yet, so
    /// the result never depends on when ticks ran.
    pub(super) fn op_for(&mut self, pid: u32, name: &[u8], now: u64, tally: &mut Tally) -> u32 {
        let hash = op_hash(pid, name);
        let ops = &self.ops;
        if let Some(&oid) = self.op_index.find(hash, |&i| {
            ops[i as usize]
                .as_ref()
                .is_some_and(|o| o.pair == pid && o.name.as_bytes() == name)
        }) {
            let clock = self.pairs[pid as usize].clock;
            if let Some(Some(op)) = self.ops.get_mut(oid as usize) {
                if op.last_event > 0 && clock.saturating_sub(op.last_event) > self.set.series_idle {
                    let wm = clock.saturating_sub(self.set.lateness);
                    op.start_ns = now;
                    op.totals = Totals::default();
                    op.latency =
                        Latency::new(wm, self.set.keep_minutes, false, self.set.archive_window);
                }
            }
            return oid;
        }
        let p = &self.pairs[pid as usize];
        let own = p.ops.len() - usize::from(p.overflow_op.is_some());
        if own >= self.set.max_ops_per_pair
            || self.shared.series.fetch_add(1, Ordering::Relaxed) >= self.set.max_series
        {
            if own < self.set.max_ops_per_pair {
                self.shared.series.fetch_sub(1, Ordering::Relaxed);
            }
            tally.overflow_operation += 1;
            if let Some(oid) = self.pairs[pid as usize].overflow_op {
                return oid;
            }
            let oid = self.new_op(pid, Arc::from(OVERFLOW), now);
            self.pairs[pid as usize].overflow_op = Some(oid);
            return oid;
        }
        let oid = self.new_op(pid, Arc::from(String::from_utf8_lossy(name).as_ref()), now);
        let ops = &self.ops;
        self.op_index.insert_unique(hash, oid, |&i| {
            ops[i as usize]
                .as_ref()
                .map_or(0, |o| op_hash(o.pair, o.name.as_bytes()))
        });
        oid
    }

    fn new_op(&mut self, pid: u32, name: Arc<str>, now: u64) -> u32 {
        let p = &self.pairs[pid as usize];
        let wm = p.clock.saturating_sub(self.set.lateness);
        let op = Op {
            pair: pid,
            name,
            start_ns: now,
            last_event: 0,
            latency: Latency::new(wm, self.set.keep_minutes, false, self.set.archive_window),
            totals: Totals::default(),
            exemplars: Default::default(),
        };
        let oid = match self.free_ops.pop() {
            Some(i) => {
                self.ops[i as usize] = Some(op);
                i
            }
            None => {
                self.ops.push(Some(op));
                (self.ops.len() - 1) as u32
            }
        };
        self.pairs[pid as usize].ops.push(oid);
        oid
    }

    /// Frees the per-operation series and cumulative metric streams idle for
    /// `series_idle` of event time (their slots go back to the process-wide limits).
    pub(super) fn expire(&mut self) {
        let idle = self.set.series_idle;
        let gone = self.streams.expire(self.floor.saturating_sub(idle));
        if gone > 0 {
            self.shared
                .metric_streams
                .fetch_sub(gone, Ordering::Relaxed);
        }
        let mut expired = 0usize;
        for oid in 0..self.ops.len() {
            let Some(op) = &self.ops[oid] else { continue };
            let p = &self.pairs[op.pair as usize];
            if p.overflow_op == Some(oid as u32) {
                continue;
            }
            if p.clock.saturating_sub(op.last_event) > idle {
                let hash = op_hash(op.pair, op.name.as_bytes());
                let pid = op.pair;
                if let Ok(e) = self.op_index.find_entry(hash, |&i| i as usize == oid) {
                    e.remove();
                }
                self.pairs[pid as usize].ops.retain(|&o| o as usize != oid);
                self.ops[oid] = None;
                self.free_ops.push(oid as u32);
                expired += 1;
            }
        }
        if expired > 0 {
            self.shared.series.fetch_sub(expired, Ordering::Relaxed);
        }
    }
}

#[inline]
pub(super) fn op_hash(pid: u32, name: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    std::hash::Hasher::write(&mut h, name);
    std::hash::Hasher::write_u32(&mut h, pid);
    std::hash::Hasher::finish(&h)
}

fn pair_matches(p: &Pair, ns: &[u8], name: &[u8], env: &[u8]) -> bool {
    p.environment.as_bytes() == env && is_service_name(&p.service, ns, name)
}
