//! Ingest of the three signals: spans (the hot path), duration-histogram points and
//! explicit deployment records. Each batch is judged by its admission [`Stamp`]: its
//! pairs first move to the fleet floor of that stamp, then each event moves its own
//! pair's clock (capped at the admission wall clock) and is late when it falls behind
//! the pair's watermark.

use std::sync::atomic::Ordering;

use super::{ShardCore, Tally};
use crate::delivery::records::{DeployAttrs, PairRecords};
use crate::identity::pair_hash;
use crate::model::{flags, ResourceRec, SpanRec, TraceBatch};
use crate::pipeline::clock::Stamp;
use crate::pipeline::Counters;
use crate::sli::classify::{classify, Outcome};
use crate::sli::metrics::PairPoints;
use crate::sli::window::{Counts, SeriesWindows};

impl ShardCore {
    /// Aggregates a batch admitted with `stamp`. `hashes[i]` is the pair hash of
    /// resource `i`.
    pub fn ingest(&mut self, batch: &TraceBatch, hashes: &[u64], stamp: Stamp) {
        let now = stamp.now;
        let floor = self.enter(stamp);
        let mut tally = Tally::default();
        let buf = &batch.buf[..];
        for (ri, r) in batch.resources.iter().enumerate() {
            let (ns, name, env) = (
                r.namespace.bytes(buf),
                r.service.bytes(buf),
                r.environment.bytes(buf),
            );
            let hash = hashes
                .get(ri)
                .copied()
                .unwrap_or_else(|| pair_hash(ns, name, env));
            let pid = self.pair_for(ns, name, env, hash, now, floor, &mut tally);
            let resource_cicd = r.ext.flags & flags::CICD_PIPELINE != 0;
            self.advance(pid, floor);
            let (mut first, mut last) = (u64::MAX, 0u64);
            let rare = r.ext.flags & (flags::CICD_RESULT | flags::DEPLOYMENT) != 0;
            for s in batch.spans_of(r) {
                self.span(pid, buf, s, resource_cicd, now, &mut tally);
                if s.flags & flags::INVALID == 0 {
                    first = first.min(s.end_ns);
                    last = last.max(s.end_ns);
                    if rare || s.flags & (flags::CICD_RESULT | flags::DEPLOYMENT) != 0 {
                        self.delivery_span(pid, batch, r, s);
                    }
                }
            }
            if last > 0 {
                // unknown_service* pairs are seen but never detect versions
                let p = &mut self.pairs[pid as usize];
                let version = if p.unknown { "" } else { r.version.as_str(buf) };
                p.delivery
                    .observe_version(version, first, last, &self.set.delivery);
            }
        }
        let c = &self.shared.counters;
        Counters::add(&c.processed, tally.processed);
        Counters::add(&c.late, tally.late);
        Counters::add(&c.invalid, tally.invalid);
        Counters::add(&c.overflow_service, tally.overflow_service);
        Counters::add(&c.overflow_operation, tally.overflow_operation);
    }

    /// The rare spans: explicit deployment records and CI/CD pipeline runs.
    fn delivery_span(&mut self, pid: u32, batch: &TraceBatch, r: &ResourceRec, s: &SpanRec) {
        let buf = &batch.buf[..];
        let ext = batch.ext_of(s);
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
        if let Some(run) = crate::delivery::records::pipeline_run(batch, r, s) {
            p.delivery.pipeline_run(
                if run.name.is_empty() {
                    "unnamed"
                } else {
                    run.name
                },
                run.result,
                run.run_id.as_deref(),
                s.start_ns,
                s.end_ns,
                run.revision,
                &set.delivery,
                who,
                &mut self.events,
            );
        }
    }

    /// Explicit deployment records routed to this shard. A record is an event of its
    /// pair, like a deployment span: a valid one moves the pair's clock (capped at the
    /// admission wall clock); one with no time, or more than `max_clock_skew` after the
    /// wall clock, is counted invalid and left out, as such a span would be.
    pub fn ingest_records(&mut self, pairs: &[PairRecords], stamp: Stamp) {
        let now = stamp.now;
        let floor = self.enter(stamp);
        let mut tally = Tally::default();
        let mut invalid = 0u64;
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
        let c = &self.shared.counters;
        Counters::add(&c.invalid_records, invalid);
        Counters::add(&c.overflow_service, tally.overflow_service);
    }

    /// Aggregates duration-histogram points (metrics-derived SLIs) admitted with `stamp`.
    pub fn ingest_metrics(&mut self, pairs: &[PairPoints], stamp: Stamp) {
        let now = stamp.now;
        let floor = self.enter(stamp);
        let mut tally = Tally::default();
        let (mut late, mut invalid, mut overflow, mut superseded) = (0u64, 0u64, 0u64, 0u64);
        let start = self.shared.started_ns;
        let horizon = now.saturating_add(self.set.skew);
        for pp in pairs {
            let id = (&pp.namespace, &pp.name, &pp.environment, pp.hash);
            let pid = self.enter_pair(id, now, floor, &mut tally);
            for pt in &pp.points {
                if pt.time_ns > horizon || pt.time_ns < pt.start_ns {
                    invalid += 1;
                    continue;
                }
                if !self.track_stream(pt.stream, pt.cumulative) {
                    overflow += 1;
                    continue;
                }
                self.advance(pid, pt.time_ns.min(now));
                let idle_horizon = self.pairs[pid as usize]
                    .clock
                    .saturating_sub(self.set.series_idle);
                let (requests, good) = self.streams.delta(pt, start, idle_horizon);
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
                p.delivery.seen(pt.time_ns);
                if p.threshold_ns.is_some() {
                    p.metric_bound_ns = Some(pt.bound_ns);
                }
                p.last_metric = p.last_metric.max(pt.time_ns);
                p.totals.requests += c.requests;
                p.totals.errors += c.errors;
            }
            // Metric points report their resource's version, as spans do.
            if !self.pairs[pid as usize].unknown {
                for (version, first, last) in &pp.versions {
                    if *last > horizon {
                        continue;
                    }
                    let p = &mut self.pairs[pid as usize];
                    p.delivery
                        .observe_version(version, *first, *last, &self.set.delivery);
                }
            }
            for rp in &pp.runs {
                if rp.time_ns > horizon || rp.time_ns < rp.start_ns {
                    invalid += 1;
                    continue;
                }
                if !self.track_stream(rp.stream, rp.cumulative) {
                    overflow += 1;
                    continue;
                }
                // A run point is an event of its pair, like a pipeline span.
                self.advance(pid, rp.time_ns.min(now));
                let idle_horizon = self.pairs[pid as usize]
                    .clock
                    .saturating_sub(self.set.series_idle);
                let (count, sum_s, counts) = self.streams.delta_runs(rp, start, idle_horizon);
                let p = &mut self.pairs[pid as usize];
                p.last_event = p.last_event.max(rp.time_ns.min(now));
                p.delivery.seen(rp.time_ns.min(now));
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
        Counters::add(&c.late_metric_points, late);
        Counters::add(&c.invalid_metric_points, invalid);
        Counters::add(&c.overflow_metric_stream, overflow);
        Counters::add(&c.superseded_run_points, superseded);
        Counters::add(&c.overflow_service, tally.overflow_service);
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
        if end > self.pairs[pid as usize].clock {
            let c = end.min(now);
            if c > self.pairs[pid as usize].clock {
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
        if !p.metrics_active() {
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
            op.exemplars.offer(end, lat_ns, err, s.raw.bytes(buf));
        }
    }
}
