//! The router: stateless hash(pair) → shard, with all-or-nothing admission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::PairState;
use super::shard::{self, ShardCore, ShardMsg};
use super::{pair_hash, shard_of, Settings, Shared};
use crate::delivery::records::{split_span_records, DeployRecord, PairRecords};
use crate::model::{ResourceRec, TraceBatch};
use crate::view::ShardView;

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// a shard queue is full
    #[error("pipeline queue full")]
    Backpressure,
    /// the process is over `memory_limit_mib`
    #[error("over the memory limit")]
    MemoryLimit,
}

struct ShardHandle {
    tx: mpsc::UnboundedSender<ShardMsg>,
    /// bytes reserved in this shard's queue
    queued: Arc<AtomicU64>,
    view: Arc<ArcSwap<ShardView>>,
}

/// Routes batches to shards.
pub struct Router {
    shards: Vec<ShardHandle>,
    set: Arc<Settings>,
    shared: Arc<Shared>,
}

impl Router {
    /// Starts `n` shard tasks on the current runtime, publishing snapshots every `tick`.
    /// `restored` pairs (from the state checkpoint) go to the shards their hashes route to.
    pub fn start(
        n: usize,
        set: Arc<Settings>,
        shared: Arc<Shared>,
        tick: std::time::Duration,
        archive: Option<crate::archive::ArchiveSender>,
        restored: Vec<PairState>,
    ) -> (Arc<Router>, Vec<tokio::task::JoinHandle<()>>) {
        let n = n.max(1);
        let mut shards = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let mut per_shard: Vec<Vec<PairState>> = (0..n).map(|_| Vec::new()).collect();
        for p in restored {
            per_shard[shard_of(p.hash, n)].push(p);
        }
        for mine in per_shard {
            let (tx, rx) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicU64::new(0));
            let view = Arc::new(ArcSwap::from_pointee(ShardView::default()));
            let mut core = ShardCore::new(set.clone(), shared.clone());
            core.restore(mine);
            tasks.push(tokio::spawn(shard::run(
                core,
                rx,
                view.clone(),
                queued.clone(),
                tick,
                archive.clone(),
            )));
            shards.push(ShardHandle { tx, queued, view });
        }
        (
            Arc::new(Router {
                shards,
                set,
                shared,
            }),
            tasks,
        )
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The latest snapshot of every shard.
    pub fn views(&self) -> Vec<Arc<ShardView>> {
        self.shards.iter().map(|s| s.view.load_full()).collect()
    }

    /// Bytes waiting in shard queues.
    pub fn queued_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.queued.load(Ordering::Relaxed))
            .sum()
    }

    /// Admits a whole decoded trace request or nothing of it. Deployment spans naming
    /// another pair with a record-level `service.name` also go to that pair's shard as
    /// records (see [`split_span_records`]), in the same all-or-nothing admission.
    pub fn submit_traces(&self, mut batch: TraceBatch) -> Result<(), Refusal> {
        if self.set.memory_limit > 0
            && self.shared.rss_bytes.load(Ordering::Relaxed) > self.set.memory_limit
        {
            return Err(Refusal::MemoryLimit);
        }
        let records = self.record_parts(split_span_records(&mut batch));
        let n = self.shards.len();
        let buf = &batch.buf[..];
        let hashes: Vec<u64> = batch
            .resources
            .iter()
            .map(|r| resource_hash(buf, r))
            .collect();
        let first = hashes.first().map(|&h| shard_of(h, n)).unwrap_or(0);
        let single = hashes.iter().all(|&h| shard_of(h, n) == first);
        let total_spans = batch.spans.len().max(1) as u64;
        let per_span = (batch.buf.len() as u64).div_ceil(total_spans)
            + std::mem::size_of::<crate::model::SpanRec>() as u64;
        if single {
            let cost = per_span * batch.spans.len() as u64 + 64;
            let mut costs = vec![(first, cost)];
            costs.extend(records.iter().map(|(i, c, _)| (*i, *c)));
            self.reserve(&costs)?;
            self.send(
                first,
                ShardMsg::Traces {
                    batch,
                    hashes,
                    cost,
                },
                cost,
            );
            self.send_records(records);
            return Ok(());
        }
        // Split per shard: records are copied, the buffer is shared.
        let mut parts: Vec<Option<(TraceBatch, Vec<u64>)>> = (0..n).map(|_| None).collect();
        for (r, &h) in batch.resources.iter().zip(&hashes) {
            let s = shard_of(h, n);
            let (b, hs) = parts[s].get_or_insert_with(|| {
                (
                    TraceBatch {
                        buf: batch.buf.clone(),
                        resources: Vec::new(),
                        spans: Vec::new(),
                        ext: batch.ext.clone(),
                    },
                    Vec::new(),
                )
            });
            let mut rr: ResourceRec = *r;
            rr.first_span = b.spans.len() as u32;
            b.spans.extend_from_slice(batch.spans_of(r));
            b.resources.push(rr);
            hs.push(h);
        }
        let costs: Vec<(usize, u64)> = parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.as_ref()
                    .map(|(b, _)| (i, per_span * b.spans.len() as u64 + 64))
            })
            .collect();
        let mut all = costs.clone();
        all.extend(records.iter().map(|(i, c, _)| (*i, *c)));
        self.reserve(&all)?;
        for ((i, cost), part) in costs.iter().zip(parts.into_iter().flatten()) {
            let (batch, hashes) = part;
            self.send(
                *i,
                ShardMsg::Traces {
                    batch,
                    hashes,
                    cost: *cost,
                },
                *cost,
            );
        }
        self.send_records(records);
        Ok(())
    }

    /// Admits the explicit deployment records of a logs request, all or nothing.
    pub fn submit_records(&self, pairs: Vec<PairRecords>) -> Result<(), Refusal> {
        if self.set.memory_limit > 0
            && self.shared.rss_bytes.load(Ordering::Relaxed) > self.set.memory_limit
        {
            return Err(Refusal::MemoryLimit);
        }
        let parts = self.record_parts(pairs);
        let costs: Vec<(usize, u64)> = parts.iter().map(|(i, c, _)| (*i, *c)).collect();
        self.reserve(&costs)?;
        self.send_records(parts);
        Ok(())
    }

    /// Records grouped per shard with their queue cost.
    fn record_parts(&self, pairs: Vec<PairRecords>) -> Vec<(usize, u64, Vec<PairRecords>)> {
        let mut parts: Vec<(usize, u64, Vec<PairRecords>)> = Vec::new();
        let rec = std::mem::size_of::<DeployRecord>() as u64;
        for pp in pairs {
            let i = shard_of(pp.hash, self.shards.len());
            let cost = 64
                + (pp.name.len() + pp.namespace.len() + pp.environment.len()) as u64
                + pp.records
                    .iter()
                    .map(|r| {
                        rec + (r.version.len()
                            + r.id.as_ref().map_or(0, String::len)
                            + r.status.as_ref().map_or(0, String::len)
                            + r.revision.as_ref().map_or(0, String::len))
                            as u64
                    })
                    .sum::<u64>();
            match parts.iter_mut().find(|p| p.0 == i) {
                Some(p) => {
                    p.1 += cost;
                    p.2.push(pp);
                }
                None => parts.push((i, 128 + cost, vec![pp])),
            }
        }
        parts
    }

    fn send_records(&self, parts: Vec<(usize, u64, Vec<PairRecords>)>) {
        for (i, cost, pairs) in parts {
            self.send(i, ShardMsg::Records { pairs, cost }, cost);
        }
    }

    /// Admits the duration-histogram points of a metrics request, all or nothing.
    pub fn submit_metrics(
        &self,
        pairs: Vec<crate::sli::metrics::PairPoints>,
    ) -> Result<(), Refusal> {
        if self.set.memory_limit > 0
            && self.shared.rss_bytes.load(Ordering::Relaxed) > self.set.memory_limit
        {
            return Err(Refusal::MemoryLimit);
        }
        let n = self.shards.len();
        let mut parts: Vec<Vec<crate::sli::metrics::PairPoints>> =
            (0..n).map(|_| Vec::new()).collect();
        for pp in pairs {
            parts[shard_of(pp.hash, n)].push(pp);
        }
        let point = std::mem::size_of::<crate::sli::metrics::MetricPoint>() as u64;
        let run = std::mem::size_of::<crate::sli::metrics::RunPoint>() as u64;
        let costs: Vec<(usize, u64)> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, p)| {
                (
                    i,
                    128 + p
                        .iter()
                        .map(|pp| {
                            64 + point * pp.points.len() as u64
                                + pp.runs
                                    .iter()
                                    .map(|r| {
                                        run + (r.name.len()
                                            + r.result.len()
                                            + 8 * (r.bounds.len() + r.counts.len()))
                                            as u64
                                    })
                                    .sum::<u64>()
                        })
                        .sum::<u64>(),
                )
            })
            .collect();
        self.reserve(&costs)?;
        for (i, cost) in costs {
            let pairs = std::mem::take(&mut parts[i]);
            self.send(i, ShardMsg::Metrics { pairs, cost }, cost);
        }
        Ok(())
    }

    /// Reserves room in every listed shard queue, or in none.
    fn reserve(&self, costs: &[(usize, u64)]) -> Result<(), Refusal> {
        let cap = self.set.queue_capacity;
        for (k, &(i, cost)) in costs.iter().enumerate() {
            let q = &self.shards[i].queued;
            let before = q.fetch_add(cost, Ordering::AcqRel);
            if before + cost > cap && before > 0 {
                q.fetch_sub(cost, Ordering::AcqRel);
                for &(j, c) in &costs[..k] {
                    self.shards[j].queued.fetch_sub(c, Ordering::AcqRel);
                }
                return Err(Refusal::Backpressure);
            }
        }
        Ok(())
    }

    /// Sends a message that reserved `cost` bytes of shard `i`'s queue.
    fn send(&self, i: usize, msg: ShardMsg, cost: u64) {
        if let Err(mpsc::error::SendError(_)) = self.shards[i].tx.send(msg) {
            // The shard is gone (shutdown): release the reservation.
            self.shards[i].queued.fetch_sub(cost, Ordering::AcqRel);
        }
    }

    /// Waits until every shard has processed what was queued before this call and
    /// published a fresh snapshot.
    pub async fn flush(&self) {
        self.each(ShardMsg::Flush).await;
    }

    /// The state of every pair of every shard (the state checkpoint).
    pub async fn checkpoint(&self) -> Vec<PairState> {
        self.each(ShardMsg::Checkpoint).await.concat()
    }

    /// Drains every queue, closes every open bucket and stops the shards; answers with
    /// the final state of every pair.
    pub async fn shutdown(&self) -> Vec<PairState> {
        self.each(ShardMsg::Shutdown).await.concat()
    }

    async fn each<T>(&self, msg: fn(oneshot::Sender<T>) -> ShardMsg) -> Vec<T> {
        let mut acks = Vec::new();
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            if s.tx.send(msg(tx)).is_ok() {
                acks.push(rx);
            }
        }
        let mut out = Vec::with_capacity(acks.len());
        for a in acks {
            if let Ok(v) = a.await {
                out.push(v);
            }
        }
        out
    }
}

/// The pair hash of a resource as the router and shards compute it.
#[inline]
pub fn resource_hash(buf: &[u8], r: &ResourceRec) -> u64 {
    pair_hash(
        r.namespace.bytes(buf),
        r.service.bytes(buf),
        r.environment.bytes(buf),
    )
}
