//! The process-wide revision index: the one piece of delivery state that crosses pairs.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// The process-wide revision index: revision → the starts of its pipeline runs, for
/// lead time. The one piece of state that crosses pairs: a concurrent map, written once
/// per pipeline run and read by deployments of any pair.
///
/// Runs are noted when their request is admitted (not when a shard gets to them), each
/// with the fleet floor of its admission; a lookup made at event time `t` sees only the
/// runs whose floor is before `t`. Shards look up only at event times their own floor has
/// passed, when every such run is already admitted, so what a lookup finds does not
/// depend on how far the shard holding the run has got (`docs/event-time.md`).
///
/// Bounded in time (`retain_since`, the lookback) and in size: beyond
/// [`MAX_REVISIONS`] revisions the one whose earliest run started first goes
/// (`momentum_series_evicted_total{kind="revision"}`).
#[derive(Debug)]
pub struct RevisionIndex {
    /// revision → (floor, start) of each run that lowered the earliest start, in order
    map: DashMap<String, Vec<(u64, u64)>>,
    /// bumped on every change
    generation: AtomicU64,
    /// the highest floor noted
    max_floor: AtomicU64,
    /// revisions held at most
    capacity: usize,
    /// revisions evicted to stay within `capacity`
    evicted: AtomicU64,
}

/// Revisions the index holds at most (a few MiB).
pub const MAX_REVISIONS: usize = 65_536;

impl Default for RevisionIndex {
    fn default() -> Self {
        Self::with_capacity(MAX_REVISIONS)
    }
}

/// Entries kept per revision (each lowered the earliest start); beyond, the oldest goes.
const MAX_RUNS_PER_REVISION: usize = 8;

impl RevisionIndex {
    /// An index of at most `capacity` revisions.
    pub fn with_capacity(capacity: usize) -> Self {
        RevisionIndex {
            map: DashMap::new(),
            generation: AtomicU64::new(0),
            max_floor: AtomicU64::new(0),
            capacity: capacity.max(1),
            evicted: AtomicU64::new(0),
        }
    }

    /// Revisions evicted to stay within the size bound.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Notes a run of `revision` that started at `start`, admitted at fleet floor `floor`.
    pub fn note(&self, revision: &str, start: u64, floor: u64) {
        if self.map.len() >= self.capacity && !self.map.contains_key(revision) {
            self.evict_oldest();
        }
        let mut changed = false;
        self.map
            .entry(revision.to_string())
            .and_modify(|v| {
                if v.iter().all(|e| start < e.1) {
                    if v.len() >= MAX_RUNS_PER_REVISION {
                        v.remove(0);
                    }
                    v.push((floor, start));
                    changed = true;
                }
            })
            .or_insert_with(|| {
                changed = true;
                vec![(floor, start)]
            });
        if changed {
            self.max_floor.fetch_max(floor, Ordering::SeqCst);
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Removes the revision whose earliest run started first (ties: the smallest name).
    /// Pipeline runs are rare, so the scan is too.
    fn evict_oldest(&self) {
        let oldest = self
            .map
            .iter()
            .filter_map(|e| Some((e.value().iter().map(|x| x.1).min()?, e.key().clone())))
            .min();
        if let Some((_, k)) = oldest {
            self.map.remove(&k);
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The earliest start of a run of `revision` visible at event time `t`.
    pub fn earliest(&self, revision: &str, t: u64) -> Option<u64> {
        self.map
            .get(revision)?
            .iter()
            .filter(|e| e.0 < t)
            .map(|e| e.1)
            .min()
    }

    /// (generation, highest floor): unchanged generation and a lookup time above the
    /// highest floor mean a lookup would find what the last one found.
    pub fn state(&self) -> (u64, u64) {
        (
            self.generation.load(Ordering::SeqCst),
            self.max_floor.load(Ordering::SeqCst),
        )
    }

    /// Forgets runs that started before `horizon` (they can no longer give a lead time
    /// inside the lookback).
    pub fn retain_since(&self, horizon: u64) {
        self.map.retain(|_, v| {
            v.retain(|e| e.1 >= horizon);
            !v.is_empty()
        });
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// (revision, earliest start) of every revision, for the state checkpoint.
    pub fn entries(&self) -> Vec<(String, u64)> {
        self.map
            .iter()
            .filter_map(|e| Some((e.key().clone(), e.value().iter().map(|x| x.1).min()?)))
            .collect()
    }

    /// Takes back an entry of [`RevisionIndex::entries`]: visible at any time.
    pub fn restore(&self, revision: String, start: u64) {
        self.map.insert(revision, vec![(0, start)]);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Revisions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no revision is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_index_keeps_only_runs_that_lower_the_earliest_start() {
        let ix = RevisionIndex::default();
        ix.note("r", 100, 10);
        ix.note("r", 50, 20); // lowers the earliest start: kept
        ix.note("r", 70, 30); // does not: ignored
        assert_eq!(
            ix.earliest("r", 10),
            None,
            "a run is visible after its floor only"
        );
        assert_eq!(ix.earliest("r", 11), Some(100));
        assert_eq!(ix.earliest("r", 21), Some(50));
        assert_eq!(ix.earliest("other", 99), None);
        assert_eq!(
            ix.state(),
            (2, 20),
            "two changes; the ignored run moved nothing"
        );
        ix.note("r", 50, 40); // the same start again: no change
        assert_eq!(ix.state(), (2, 20));
        ix.note("r", 49, 40);
        assert_eq!(ix.state(), (3, 40));
    }

    #[test]
    fn the_revision_index_is_bounded_in_size_and_keeps_the_newest_revisions() {
        let ix = RevisionIndex::with_capacity(3);
        ix.note("b", 200, 1);
        ix.note("a", 100, 1);
        ix.note("c", 300, 1);
        ix.note("a", 50, 2); // an existing revision: nothing goes
        assert_eq!((ix.len(), ix.evicted()), (3, 0));
        ix.note("d", 400, 3); // a new one: "a" (earliest start 50) goes
        assert_eq!((ix.len(), ix.evicted()), (3, 1));
        assert_eq!(ix.earliest("a", 9), None);
        for (rev, start) in [("b", 200), ("c", 300), ("d", 400)] {
            assert_eq!(ix.earliest(rev, 9), Some(start), "{rev}");
        }
    }

    #[test]
    fn the_revision_index_keeps_the_latest_runs_per_revision() {
        let ix = RevisionIndex::default();
        // Each run lowers the start; only the last MAX_RUNS_PER_REVISION stay.
        let n = MAX_RUNS_PER_REVISION as u64 + 1;
        for i in 0..n {
            ix.note("r", 1_000 - i, i + 1);
        }
        assert_eq!(ix.earliest("r", 2), None, "the oldest run (floor 1) went");
        assert_eq!(
            ix.earliest("r", 3),
            Some(1_000 - 1),
            "the second stays (floor 2)"
        );
        assert_eq!(ix.earliest("r", n + 1), Some(1_000 - (n - 1)));
        assert_eq!(ix.len(), 1);
    }
}
