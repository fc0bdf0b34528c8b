//! A shard: the single owner of the state of the pairs routed to it. `ShardCore` is the
//! synchronous state machine (driven directly by tests and replays); `run` is the task
//! around it that drains the queue and publishes snapshots on a tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::PairState;
use super::{pair_hash, Settings, Shared};
use crate::archive::{ArchiveMsg, ArchiveSender, EventRow, MomentumRow, SliRow};
use crate::delivery::deployments::Delivery;
use crate::delivery::records::{DeployAttrs, PairRecords};
use crate::model::{flags, ResourceRec, SpanRec, TraceBatch};
use crate::sli::classify::{classify, Outcome};
use crate::sli::metrics::{PairPoints, Streams};
use crate::sli::series::{quantiles, ArchivedWindow, Latency};
use crate::sli::sketch::{Mapping, Sketch};
use crate::sli::window::{Counts, SeriesWindows, WINDOWS};
use crate::slo::SloState;
use crate::view::{OpView, PairView, ShardView, Totals};

/// The service name used when a resource has no `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// The label value that absorbs keys beyond a limit.
pub const OVERFLOW: &str = "__overflow__";

/// A message to a shard.
pub enum ShardMsg {
    /// Spans to aggregate; `hashes[i]` is the pair hash of `batch.resources[i]`; `cost`
    /// bytes were reserved in this shard's queue and are released once processed.
    Traces {
        /// the batch
        batch: TraceBatch,
        /// per-resource pair hashes
        hashes: Vec<u64>,
        /// reserved queue bytes
        cost: u64,
    },
    /// Duration-histogram points per pair; `cost` bytes reserved as for traces.
    Metrics {
        /// the points
        pairs: Vec<PairPoints>,
        /// reserved queue bytes
        cost: u64,
    },
    /// Explicit deployment records per pair (log records, and deployment spans naming
    /// another pair); `cost` bytes reserved as for traces.
    Records {
        /// the records
        pairs: Vec<PairRecords>,
        /// reserved queue bytes
        cost: u64,
    },
    /// Process everything queued before this message, publish a snapshot, then answer.
    Flush(oneshot::Sender<()>),
    /// Answer with the state of every pair (the state checkpoint).
    Checkpoint(oneshot::Sender<Vec<PairState>>),
    /// Process everything queued, close every open bucket, publish, answer with the state
    /// of every pair and stop.
    Shutdown(oneshot::Sender<Vec<PairState>>),
}

struct Pair {
    service: Arc<str>,
    environment: Arc<str>,
    hash: u64,
    start_ns: u64,
    /// the pair's clock: max(own newest event, F − lateness)
    clock: u64,
    /// when the watermark next crosses a minute boundary (closing work is due)
    next_close: u64,
    last_event: u64,
    windows: SeriesWindows,
    latency: Latency,
    threshold_ns: Option<u64>,
    slo_window: Option<u64>,
    totals: Totals,
    ops: Vec<u32>,
    overflow_op: Option<u32>,
    slo: Option<SloState>,
    /// windows fed by duration-histogram metrics (created when the first point arrives)
    mwindows: Option<SeriesWindows>,
    /// newest event time of a metric point
    last_metric: u64,
    /// the bucket bound the newest metric point counted latency_good up to (ns)
    metric_bound_ns: Option<u64>,
    /// deployments, rollbacks, pipelines
    delivery: Delivery,
    /// `unknown_service*` pools unrelated programs: no version-based detection
    unknown: bool,
}

/// Metrics are a pair's service-level source while a point arrived within this long.
pub const METRIC_SOURCE_FRESHNESS: u64 = 10 * crate::sli::window::MIN;

impl Pair {
    /// The service-level windows: metrics-derived while metrics are fresh, else spans.
    fn source(&self) -> &SeriesWindows {
        match &self.mwindows {
            Some(m) if self.metrics_active() => m,
            _ => &self.windows,
        }
    }

    fn metrics_active(&self) -> bool {
        self.mwindows.is_some() && self.last_metric + METRIC_SOURCE_FRESHNESS >= self.clock
    }
}

struct Op {
    pair: u32,
    name: Arc<str>,
    start_ns: u64,
    last_event: u64,
    latency: Latency,
    totals: Totals,
}

/// Per-batch counters, published to the shared atomics once per batch.
#[derive(Default)]
struct Tally {
    processed: u64,
    late: u64,
    invalid: u64,
    overflow_service: u64,
    overflow_operation: u64,
}

/// The state of one shard.
pub struct ShardCore {
    set: Arc<Settings>,
    shared: Arc<Shared>,
    mapping: Mapping,
    pairs: Vec<Pair>,
    pair_index: HashTable<u32>,
    overflow_pair: Option<u32>,
    ops: Vec<Option<Op>>,
    free_ops: Vec<u32>,
    op_index: HashTable<u32>,
    scratch: Sketch,
    /// closed archive windows waiting to be handed to the archive writer
    rows: Vec<SliRow>,
    /// events (alerts, incidents…) waiting to be handed to the archive writer
    events: Vec<EventRow>,
    /// closed `momentum` rows waiting to be handed to the archive writer
    momentum: Vec<MomentumRow>,
    /// cumulative → delta state of metric streams
    streams: Streams,
}

impl ShardCore {
    /// A new, empty shard.
    pub fn new(set: Arc<Settings>, shared: Arc<Shared>) -> Self {
        let mapping = Mapping::new(set.accuracy).unwrap_or_else(|_| {
            // The config validated the accuracy; fall back to 1% rather than panic.
            Mapping::new(0.01).expect("1% is a valid accuracy")
        });
        ShardCore {
            set,
            shared,
            mapping,
            pairs: Vec::with_capacity(64),
            pair_index: HashTable::with_capacity(64),
            overflow_pair: None,
            ops: Vec::with_capacity(256),
            free_ops: Vec::new(),
            op_index: HashTable::with_capacity(256),
            scratch: Sketch::default(),
            rows: Vec::new(),
            events: Vec::new(),
            momentum: Vec::new(),
            streams: Streams::default(),
        }
    }

    /// The index mapping of this shard's sketches.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Aggregates a batch. `hashes[i]` is the pair hash of resource `i`.
    pub fn ingest(&mut self, batch: &TraceBatch, hashes: &[u64]) {
        let now = self.shared.clock.now_ns();
        let fleet = self.shared.fleet.read(now, self.set.lateness);
        let floor = fleet.saturating_sub(self.set.lateness);
        let mut tally = Tally::default();
        let mut newest = 0u64;
        let buf = &batch.buf[..];
        for (ri, r) in batch.resources.iter().enumerate() {
            let hash = hashes.get(ri).copied().unwrap_or_else(|| {
                pair_hash(
                    r.namespace.bytes(buf),
                    r.service.bytes(buf),
                    r.environment.bytes(buf),
                )
            });
            let (ns, name, env) = (
                r.namespace.bytes(buf),
                r.service.bytes(buf),
                r.environment.bytes(buf),
            );
            let pid = self.pair_for(ns, name, env, hash, now, floor, &mut tally);
            let resource_cicd = r.ext.flags & flags::CICD_PIPELINE != 0;
            self.advance(pid, floor.max(self.pairs[pid as usize].clock));
            let (mut first, mut last) = (u64::MAX, 0u64);
            let rare = r.ext.flags & (flags::CICD_RESULT | flags::DEPLOYMENT) != 0;
            for s in batch.spans_of(r) {
                self.span(pid, buf, s, resource_cicd, now, &mut tally);
                if s.flags & flags::INVALID == 0 {
                    newest = newest.max(s.end_ns);
                    first = first.min(s.end_ns);
                    last = last.max(s.end_ns);
                    if rare || s.flags & (flags::CICD_RESULT | flags::DEPLOYMENT) != 0 {
                        self.delivery_span(pid, batch, r, s);
                    }
                }
            }
            let version = r.version.as_str(buf);
            if last > 0 && !version.is_empty() && !self.pairs[pid as usize].unknown {
                let p = &mut self.pairs[pid as usize];
                p.delivery
                    .observe_version(version, first, last, &self.set.delivery);
            }
        }
        self.shared.fleet.event(newest);
        let c = &self.shared.counters;
        super::Counters::add(&c.processed, tally.processed);
        super::Counters::add(&c.late, tally.late);
        super::Counters::add(&c.invalid, tally.invalid);
        super::Counters::add(&c.overflow_service, tally.overflow_service);
        super::Counters::add(&c.overflow_operation, tally.overflow_operation);
    }

    /// The rare spans: explicit deployment records and CI/CD pipeline runs.
    fn delivery_span(&mut self, pid: u32, batch: &TraceBatch, r: &ResourceRec, s: &SpanRec) {
        let buf = &batch.buf[..];
        let ext = batch.ext_of(s);
        // A span attribute wins over the resource's.
        let pick = |f: fn(&crate::model::Ext) -> crate::model::Str| -> &str {
            ext.map(f)
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| f(&r.ext))
                .as_str(buf)
        };
        let flags_all = s.flags | r.ext.flags;
        let set = self.set.clone();
        let p = &mut self.pairs[pid as usize];
        let who = (&p.service, &p.environment);
        if flags_all & flags::DEPLOYMENT != 0 && s.flags & flags::ROUTED == 0 {
            // A record naming another pair was routed there (flagged ROUTED); one naming
            // this pair, or none, counts here with the resource filling in what it lacks.
            let res = DeployAttrs::of_resource(buf, r);
            let rec = ext.map_or_else(DeployAttrs::default, |e| DeployAttrs::of_ext(buf, e));
            let d = rec.record(&res, true);
            p.delivery.explicit(
                s.end_ns,
                d.id,
                d.status,
                d.version,
                d.revision,
                &set.delivery,
            );
        }
        let is_task = flags_all & flags::CICD_TASK != 0;
        if flags_all & flags::CICD_RESULT != 0 && s.kind == crate::model::kind::SERVER && !is_task {
            let name = pick(|e| e.pipeline_name);
            let result = pick(|e| e.pipeline_result);
            let run_id_int = ext
                .and_then(|e| e.run_id_int)
                .or(r.ext.run_id_int)
                .map(|i| i.to_string());
            let run_id = Some(pick(|e| e.run_id))
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .or(run_id_int);
            let revision = Some(pick(|e| e.revision)).filter(|x| !x.is_empty());
            p.delivery.pipeline_run(
                if name.is_empty() { "unnamed" } else { name },
                result,
                run_id.as_deref(),
                s.start_ns,
                s.end_ns,
                revision,
                &self.shared.revisions,
                &set.delivery,
                who,
                &mut self.events,
            );
        }
    }

    /// Explicit deployment records routed to this shard. A record is an event of its
    /// pair, like a deployment span: a valid one moves the pair's clock (capped at the
    /// wall clock) and the fleet clock; one with no time, or more than `max_clock_skew`
    /// after the wall clock, is counted invalid and left out, as such a span would be.
    pub fn ingest_records(&mut self, pairs: &[PairRecords]) {
        let now = self.shared.clock.now_ns();
        let fleet = self.shared.fleet.read(now, self.set.lateness);
        let floor = fleet.saturating_sub(self.set.lateness);
        let mut tally = Tally::default();
        let (mut invalid, mut newest) = (0u64, 0u64);
        let horizon = now.saturating_add(self.set.skew);
        let set = self.set.clone();
        for pp in pairs {
            let id = (&pp.namespace, &pp.name, &pp.environment, pp.hash);
            let pid = self.enter_pair(id, now, floor, &mut tally);
            for r in &pp.records {
                if r.time_ns == 0 || r.time_ns > horizon {
                    invalid += 1;
                    continue;
                }
                newest = newest.max(r.time_ns);
                self.advance(pid, r.time_ns.min(now));
                let p = &mut self.pairs[pid as usize];
                p.last_event = p.last_event.max(r.time_ns.min(now));
                p.delivery.explicit(
                    r.time_ns,
                    r.id.as_deref(),
                    r.status.as_deref(),
                    &r.version,
                    r.revision.as_deref(),
                    &set.delivery,
                );
            }
        }
        self.shared.fleet.event(newest);
        let c = &self.shared.counters;
        super::Counters::add(&c.invalid_records, invalid);
        super::Counters::add(&c.overflow_service, tally.overflow_service);
    }

    /// Aggregates duration-histogram points (metrics-derived SLIs).
    pub fn ingest_metrics(&mut self, pairs: &[PairPoints]) {
        let now = self.shared.clock.now_ns();
        let fleet = self.shared.fleet.read(now, self.set.lateness);
        let floor = fleet.saturating_sub(self.set.lateness);
        let mut tally = Tally::default();
        let (mut late, mut invalid, mut overflow, mut superseded) = (0u64, 0u64, 0u64, 0u64);
        let start = self.shared.started_ns;
        for pp in pairs {
            let id = (&pp.namespace, &pp.name, &pp.environment, pp.hash);
            let pid = self.enter_pair(id, now, floor, &mut tally);
            for pt in &pp.points {
                if pt.time_ns > now + self.set.skew || pt.time_ns < pt.start_ns {
                    invalid += 1;
                    continue;
                }
                if !self.track_stream(pt.stream, pt.cumulative) {
                    overflow += 1;
                    continue;
                }
                let (requests, good) = self.streams.delta(pt, start);
                self.advance(pid, pt.time_ns.min(now));
                let set = &self.set;
                let p = &mut self.pairs[pid as usize];
                let wm = p.clock.saturating_sub(set.lateness);
                let mw = p.mwindows.get_or_insert_with(|| {
                    SeriesWindows::new(set.resolution, wm, set.longest_window)
                });
                if mw.is_closed(pt.time_ns) {
                    late += 1;
                    continue;
                }
                let c = Counts {
                    requests,
                    errors: if pt.error { requests } else { 0 },
                    good,
                };
                mw.add(pt.time_ns, &c);
                if p.threshold_ns.is_some() {
                    p.metric_bound_ns = Some(pt.bound_ns);
                }
                p.last_metric = p.last_metric.max(pt.time_ns);
                p.totals.requests += c.requests;
                p.totals.errors += c.errors;
            }
            for rp in &pp.runs {
                if rp.time_ns > now + self.set.skew || rp.time_ns < rp.start_ns {
                    invalid += 1;
                    continue;
                }
                if !self.track_stream(rp.stream, rp.cumulative) {
                    overflow += 1;
                    continue;
                }
                let (count, sum_s, counts) = self.streams.delta_runs(rp, start);
                // A run point is an event of its pair, like a pipeline span.
                self.advance(pid, rp.time_ns.min(now));
                let p = &mut self.pairs[pid as usize];
                p.last_event = p.last_event.max(rp.time_ns.min(now));
                if !p.delivery.pipeline_histogram(
                    &rp.name,
                    &rp.result,
                    rp.time_ns,
                    count,
                    sum_s,
                    &rp.bounds,
                    &counts,
                    &self.set.delivery,
                ) {
                    superseded += 1;
                }
            }
        }
        let c = &self.shared.counters;
        super::Counters::add(&c.late_metric_points, late);
        super::Counters::add(&c.invalid_metric_points, invalid);
        super::Counters::add(&c.overflow_metric_stream, overflow);
        super::Counters::add(&c.superseded_run_points, superseded);
        super::Counters::add(&c.overflow_service, tally.overflow_service);
    }

    /// Whether a point's stream can be followed: delta streams need no state; a new
    /// cumulative stream takes one of the process-wide `max_metric_streams` slots.
    fn track_stream(&mut self, stream: u64, cumulative: bool) -> bool {
        if !cumulative || self.streams.contains(stream) {
            return true;
        }
        if self.shared.metric_streams.fetch_add(1, Ordering::Relaxed) >= self.set.max_metric_streams
        {
            self.shared.metric_streams.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    #[inline]
    fn span(
        &mut self,
        pid: u32,
        buf: &[u8],
        s: &SpanRec,
        resource_cicd: bool,
        now: u64,
        tally: &mut Tally,
    ) {
        if s.flags & flags::INVALID != 0 {
            tally.invalid += 1;
            return;
        }
        let end = s.end_ns;
        let p = &mut self.pairs[pid as usize];
        if end > p.clock {
            let c = end.min(now);
            if c > p.clock {
                self.advance(pid, c);
            }
        }
        let p = &mut self.pairs[pid as usize];
        if p.windows.is_closed(end) {
            tally.late += 1;
            return;
        }
        tally.processed += 1;
        if end > p.last_event {
            p.last_event = end;
        }
        let outcome = classify(s, resource_cicd);
        if outcome == Outcome::NotRequest {
            return;
        }
        let lat_ns = end - s.start_ns;
        let err = outcome == Outcome::Error;
        let good = p.threshold_ns.is_some_and(|th| lat_ns <= th);
        let c = Counts {
            requests: 1,
            errors: u64::from(err),
            good: u64::from(good),
        };
        let lat_s = lat_ns as f64 * 1e-9;
        let idx = self.mapping.index(lat_s);
        p.windows.add(end, &c);
        p.latency.add(end, &c, lat_ns, idx, lat_s);
        if p.mwindows.is_none() || !p.metrics_active() {
            p.totals.requests += 1;
            p.totals.errors += c.errors;
        }
        p.totals.latency_sum_s += lat_s;
        p.totals.latency_count += 1;
        let name = if self.set.operation_from_route && !s.route.is_empty() {
            s.route
        } else {
            s.name
        };
        let oid = self.op_for(pid, name.bytes(buf), now, tally);
        if let Some(Some(op)) = self.ops.get_mut(oid as usize) {
            op.latency.add(end, &c, lat_ns, idx, lat_s);
            op.totals.requests += 1;
            op.totals.errors += c.errors;
            op.totals.latency_sum_s += lat_s;
            op.totals.latency_count += 1;
            if end > op.last_event {
                op.last_event = end;
            }
        }
    }

    /// Moves a pair's clock forward to `clock` (never back), closing what falls behind
    /// the watermark.
    fn advance(&mut self, pid: u32, clock: u64) {
        let lateness = self.set.lateness;
        let p = &mut self.pairs[pid as usize];
        if clock <= p.clock {
            return;
        }
        let from = p.clock;
        p.clock = clock;
        let wm = clock.saturating_sub(lateness);
        p.windows.close_upto(wm);
        if let Some(slo) = p.slo.as_mut() {
            slo.evaluate_range(
                &p.windows,
                from,
                clock,
                (&p.service, &p.environment),
                &mut self.events,
            );
        }
        if wm < p.next_close {
            return;
        }
        p.next_close = (wm / crate::sli::window::MIN + 1) * crate::sli::window::MIN;
        let closed = close_series(p, &mut self.ops, &self.mapping, &mut self.rows, wm);
        let opened: Vec<u64> = p
            .slo
            .as_ref()
            .map(|s| s.opened.iter().copied().collect())
            .unwrap_or_default();
        p.delivery.tick(
            clock,
            &opened,
            &self.shared.revisions,
            &self.set.delivery,
            (&p.service, &p.environment),
            &mut self.events,
        );
        if !closed.is_empty() {
            self.momentum_rows(pid, &closed);
        }
    }

    /// One `momentum` row per closed archive window of a pair: the index, its components
    /// and the values behind them at the pair's clock when the window closed.
    fn momentum_rows(&mut self, pid: u32, closed: &[(u64, u64)]) {
        use crate::slo::nearest_rank;
        let p = &self.pairs[pid as usize];
        let d = delivery_view(p, &self.set);
        let five = p
            .source()
            .window(5 * crate::sli::window::MIN, p.clock, u64::MAX);
        let states = p.slo.as_ref().map(|s| &s.states[..]).unwrap_or_default();
        let burn_1h = states.iter().map(|s| s.burn[2]).reduce(f64::max);
        let budget = states.iter().map(|s| s.budget_remaining).reduce(f64::min);
        let restores = p
            .slo
            .as_ref()
            .map(|s| s.restores_sorted())
            .unwrap_or_default();
        let c = &d.components;
        let row = MomentumRow {
            window_start_ns: 0,
            window_end_ns: 0,
            service: p.service.clone(),
            environment: p.environment.clone(),
            index: d.index,
            throughput: c.throughput,
            lead_time: c.lead_time,
            stability: c.stability,
            recovery: c.recovery,
            reliability: c.reliability,
            deploy_frequency_per_day: d.deploy_frequency,
            lead_time_s: nearest_rank(&d.lead_times, 0.5),
            change_failure_ratio: d.change_failure,
            time_to_restore_s: nearest_rank(&restores, 0.5),
            availability_5m: (five.requests > 0)
                .then(|| 1.0 - five.errors as f64 / five.requests as f64),
            burn_rate_1h: burn_1h,
            error_budget_remaining: budget,
        };
        for &(start, end) in closed {
            self.momentum.push(MomentumRow {
                window_start_ns: start,
                window_end_ns: end,
                ..row.clone()
            });
        }
    }

    /// Takes the archive rows closed since the last call.
    pub fn take_rows(&mut self) -> Vec<SliRow> {
        std::mem::take(&mut self.rows)
    }

    /// Takes the `momentum` rows closed since the last call.
    pub fn take_momentum(&mut self) -> Vec<MomentumRow> {
        std::mem::take(&mut self.momentum)
    }

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
    /// mean something else) and the pair starts them afresh.
    pub fn restore(&mut self, states: Vec<PairState>) {
        let now = self.shared.clock.now_ns();
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

    /// Takes the events (alerts, incidents) recorded since the last call.
    pub fn take_events(&mut self) -> Vec<EventRow> {
        std::mem::take(&mut self.events)
    }

    /// The pair a routed message (records, metric points) names, moved to the fleet floor.
    fn enter_pair(
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
        self.advance(pid, floor.max(self.pairs[pid as usize].clock));
        pid
    }

    #[allow(clippy::too_many_arguments)]
    fn pair_for(
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
        if self.shared.pairs.fetch_add(1, Ordering::Relaxed) >= limit {
            self.shared.pairs.fetch_sub(1, Ordering::Relaxed);
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
        let pid = self.new_pair(Arc::from(service), Arc::from(env), hash, now, floor);
        let pairs = &self.pairs;
        self.pair_index
            .insert_unique(hash, pid, |&i| pairs[i as usize].hash);
        pid
    }

    fn new_pair(
        &mut self,
        service: Arc<str>,
        environment: Arc<str>,
        hash: u64,
        now: u64,
        floor: u64,
    ) -> u32 {
        let set = &self.set;
        let slo = set.config.slo_for(&service, &environment);
        let threshold_ns = slo
            .and_then(|s| s.objectives.latency.as_ref())
            .map(|l| l.threshold.as_nanos());
        let slo_window = slo.map(|s| s.window.as_nanos());
        let slo_state = slo.and_then(|s| SloState::new(s, set.lookback));
        let unknown = service.starts_with(UNKNOWN_SERVICE);
        let clock = floor;
        let wm = clock.saturating_sub(set.lateness);
        let pid = self.pairs.len() as u32;
        self.pairs.push(Pair {
            service,
            environment,
            hash,
            start_ns: now,
            clock,
            next_close: 0,
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

    fn op_for(&mut self, pid: u32, name: &[u8], now: u64, tally: &mut Tally) -> u32 {
        let hash = op_hash(pid, name);
        let ops = &self.ops;
        if let Some(&oid) = self.op_index.find(hash, |&i| {
            ops[i as usize]
                .as_ref()
                .is_some_and(|o| o.pair == pid && o.name.as_bytes() == name)
        }) {
            return oid;
        }
        if self.shared.series.fetch_add(1, Ordering::Relaxed) >= self.set.max_series {
            self.shared.series.fetch_sub(1, Ordering::Relaxed);
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

    /// Advances every pair to the fleet clock (silent pairs keep moving), and expires
    /// per-operation series idle for `series_idle` of event time.
    pub fn tick(&mut self) {
        let now = self.shared.clock.now_ns();
        let fleet = self.shared.fleet.read(now, self.set.lateness);
        let floor = fleet.saturating_sub(self.set.lateness);
        for pid in 0..self.pairs.len() as u32 {
            self.advance(pid, floor);
        }
        let idle = self.set.series_idle;
        // Cumulative metric streams idle for `series_idle` give their slot back.
        let gone = self.streams.expire(floor.saturating_sub(idle));
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

    /// Builds the snapshot exporters read.
    pub fn view(&mut self) -> ShardView {
        let idle = self.set.series_idle;
        let mut v = ShardView::default();
        let mut index = vec![usize::MAX; self.pairs.len()];
        let mut mem = 0usize;
        for (pid, p) in self.pairs.iter().enumerate() {
            mem += p.windows.memory_bytes() + p.latency.memory_bytes();
            // An open incident, a page or an undecided deployment keeps an idle pair in view.
            let alarmed = p
                .slo
                .as_ref()
                .is_some_and(|s| s.incident.is_some() || s.paging())
                || p.delivery.pending() > 0;
            let last = p.last_event.max(p.last_metric);
            if last == 0 || (p.clock.saturating_sub(last) > idle && !alarmed) {
                continue;
            }
            let mut windows = [None; 8];
            for (i, (_, w)) in WINDOWS.iter().enumerate() {
                windows[i] = Some(p.source().window(*w, p.clock, u64::MAX));
            }
            if let Some(w) = p.slo_window {
                windows[7] = Some(p.source().window(w, p.clock, u64::MAX));
            }
            let mut qs = [None; 3];
            for (i, w) in [
                5 * crate::sli::window::MIN,
                crate::sli::window::HOUR,
                crate::sli::window::DAY,
            ]
            .iter()
            .enumerate()
            {
                p.latency.window_sketch(*w, p.clock, &mut self.scratch);
                qs[i] = quantiles(&self.mapping, &self.scratch);
            }
            index[pid] = v.pairs.len();
            v.pairs.push(PairView {
                service: p.service.clone(),
                environment: p.environment.clone(),
                start_ns: p.start_ns,
                clock_ns: p.clock,
                totals: p.totals,
                windows,
                slo_window_ns: p.slo_window,
                threshold_ns: p.threshold_ns,
                metric_bound_ns: p.metric_bound_ns.filter(|_| p.metrics_active()),
                quantiles: qs,
                slo: p.slo.clone(),
                delivery: delivery_view(p, &self.set),
            });
        }
        for op in self.ops.iter().flatten() {
            mem += op.latency.memory_bytes();
            let pi = index[op.pair as usize];
            if pi == usize::MAX {
                continue;
            }
            let p = &self.pairs[op.pair as usize];
            if p.clock.saturating_sub(op.last_event) > idle {
                continue;
            }
            op.latency
                .window_sketch(5 * crate::sli::window::MIN, p.clock, &mut self.scratch);
            v.ops.push(OpView {
                pair: pi,
                operation: op.name.clone(),
                start_ns: op.start_ns,
                totals: op.totals,
                quantiles: quantiles(&self.mapping, &self.scratch),
            });
        }
        v.memory_bytes = mem;
        v
    }
}

/// Closes the latency sub-windows of a pair and its operations up to `wm`, turning
/// every finished archive window into an `sli` row.
fn close_series(
    p: &mut Pair,
    ops: &mut [Option<Op>],
    m: &Mapping,
    rows: &mut Vec<SliRow>,
    wm: u64,
) -> Vec<(u64, u64)> {
    let good = p.threshold_ns.is_some();
    let (service, env) = (p.service.clone(), p.environment.clone());
    let empty: Arc<str> = Arc::from("");
    let mut closed = Vec::new();
    p.latency.close_upto(wm, |w| {
        closed.push((w.start, w.end));
        rows.push(sli_row(m, &service, &env, &empty, good, w))
    });
    for &oid in &p.ops {
        if let Some(Some(op)) = ops.get_mut(oid as usize) {
            let name = op.name.clone();
            op.latency.close_upto(wm, |w| {
                rows.push(sli_row(m, &service, &env, &name, good, w))
            });
        }
    }
    closed
}

fn sli_row(
    m: &Mapping,
    service: &Arc<str>,
    env: &Arc<str>,
    op: &Arc<str>,
    good: bool,
    w: &ArchivedWindow<'_>,
) -> SliRow {
    let q = w.sub.sketch.quantiles(m, &[0.5, 0.95, 0.99]);
    SliRow {
        window_start_ns: w.start,
        window_end_ns: w.end,
        service: service.clone(),
        environment: env.clone(),
        operation: op.clone(),
        requests: w.sub.counts.requests,
        errors: w.sub.counts.errors,
        latency_good: good.then_some(w.sub.counts.good),
        latency_p50_s: q.map(|q| q[0]),
        latency_p95_s: q.map(|q| q[1]),
        latency_p99_s: q.map(|q| q[2]),
        latency_max_s: (w.sub.counts.requests > 0).then_some(w.sub.max_ns as f64 * 1e-9),
        latency_sketch: w.sub.sketch.encode_ddsketch(m),
    }
}

/// Delivery signals and the momentum index of a pair (SPEC §5 anchor table).
fn delivery_view(p: &Pair, set: &Settings) -> crate::view::DeliveryView {
    use crate::delivery::index;
    use crate::slo::nearest_rank;
    let mut d = p.delivery.view(p.clock, &set.delivery);
    let restores = p
        .slo
        .as_ref()
        .map(|s| s.restores_sorted())
        .unwrap_or_default();
    let budgets: Vec<f64> = p
        .slo
        .as_ref()
        .map(|s| s.states.iter().map(|st| st.budget_remaining).collect())
        .unwrap_or_default();
    d.components = index::Components {
        throughput: d.deploy_frequency.map(index::throughput),
        lead_time: nearest_rank(&d.lead_times, 0.5).map(index::lead_time),
        stability: d.change_failure.map(index::stability),
        recovery: nearest_rank(&restores, 0.5).map(index::recovery),
        reliability: index::reliability(&budgets),
    };
    d.index = d.components.index(&set.weights);
    d
}

#[inline]
fn op_hash(pid: u32, name: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    std::hash::Hasher::write(&mut h, name);
    std::hash::Hasher::write_u32(&mut h, pid);
    std::hash::Hasher::finish(&h)
}

fn pair_matches(p: &Pair, ns: &[u8], name: &[u8], env: &[u8]) -> bool {
    if p.environment.as_bytes() != env {
        return false;
    }
    let s = p.service.as_bytes();
    let name: &[u8] = if name.is_empty() {
        UNKNOWN_SERVICE.as_bytes()
    } else {
        name
    };
    if ns.is_empty() {
        s == name
    } else {
        s.len() == ns.len() + 1 + name.len()
            && &s[..ns.len()] == ns
            && s[ns.len()] == b'/'
            && &s[ns.len() + 1..] == name
    }
}

/// The service identity of SPEC §5: `namespace/name`, `unknown_service` without a name.
pub fn service_name(ns: &[u8], name: &[u8]) -> String {
    let name = if name.is_empty() {
        UNKNOWN_SERVICE.to_string()
    } else {
        String::from_utf8_lossy(name).into_owned()
    };
    if ns.is_empty() {
        name
    } else {
        format!("{}/{}", String::from_utf8_lossy(ns), name)
    }
}

/// The shard task: drains its queue, ticks, publishes snapshots.
pub async fn run(
    mut core: ShardCore,
    mut rx: mpsc::UnboundedReceiver<ShardMsg>,
    view: Arc<ArcSwap<ShardView>>,
    queued: Arc<std::sync::atomic::AtomicU64>,
    tick: Duration,
    archive: Option<ArchiveSender>,
) {
    // Hands closed rows to the archive writer; awaiting a full channel is the
    // backpressure a slow disk exerts, and the wait is counted.
    async fn hand_off(core: &mut ShardCore, archive: &Option<ArchiveSender>) {
        let rows = core.take_rows();
        let events = core.take_events();
        let momentum = core.take_momentum();
        if let Some(tx) = archive {
            if !rows.is_empty() {
                let waited = crate::archive::send_rows(tx, rows, ArchiveMsg::Sli).await;
                super::Counters::add(&core.shared.counters.archive_blocked_ns, waited);
            }
            if !events.is_empty() {
                let waited = crate::archive::send_rows(tx, events, ArchiveMsg::Events).await;
                super::Counters::add(&core.shared.counters.archive_blocked_ns, waited);
            }
            if !momentum.is_empty() {
                let waited = crate::archive::send_rows(tx, momentum, ArchiveMsg::Momentum).await;
                super::Counters::add(&core.shared.counters.archive_blocked_ns, waited);
            }
        }
    }
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = interval.tick() => {
                core.tick();
                view.store(Arc::new(core.view()));
                hand_off(&mut core, &archive).await;
            }
            msg = rx.recv() => match msg {
                Some(ShardMsg::Traces { batch, hashes, cost }) => {
                    core.ingest(&batch, &hashes);
                    queued.fetch_sub(cost, Ordering::Relaxed);
                }
                Some(ShardMsg::Metrics { pairs, cost }) => {
                    core.ingest_metrics(&pairs);
                    queued.fetch_sub(cost, Ordering::Relaxed);
                }
                Some(ShardMsg::Records { pairs, cost }) => {
                    core.ingest_records(&pairs);
                    queued.fetch_sub(cost, Ordering::Relaxed);
                }
                Some(ShardMsg::Flush(ack)) => {
                    core.tick();
                    view.store(Arc::new(core.view()));
                    hand_off(&mut core, &archive).await;
                    let _ = ack.send(());
                }
                Some(ShardMsg::Checkpoint(ack)) => {
                    let _ = ack.send(core.save());
                }
                Some(ShardMsg::Shutdown(ack)) => {
                    core.close_all();
                    view.store(Arc::new(core.view()));
                    hand_off(&mut core, &archive).await;
                    let _ = ack.send(core.save());
                    return;
                }
                None => break,
            }
        }
    }
    // Every sender is gone: close every open bucket (SPEC §5) and publish the final view.
    core.close_all();
    view.store(Arc::new(core.view()));
    hand_off(&mut core, &archive).await;
}

impl ShardCore {
    /// Closes every open bucket of every series (shutdown): up to the end of the archive
    /// window holding the newest open bucket (or the pair's clock), so every archive
    /// window with data is written, and a span for a later window is still accepted after
    /// a restart.
    pub fn close_all(&mut self) {
        let (res, aw) = (self.set.resolution, self.set.archive_window.max(1));
        for pid in 0..self.pairs.len() as u32 {
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
            let closed = close_series(p, &mut self.ops, &self.mapping, &mut self.rows, far);
            if !closed.is_empty() {
                self.momentum_rows(pid, &closed);
            }
        }
    }
}
