//! The router: stateless hash(pair) → shard, with all-or-nothing admission.
//!
//! A request is first *planned* — split into one [`Part`] per shard it touches, each
//! with its queue cost ([`plan_traces`], [`plan_metrics`], [`plan_records`], pure
//! functions of the request and the shard count) — then *admitted* through an
//! [`Admission`]: room is reserved in every queue or in none, the parts are stamped with
//! the fleet clock ([`crate::pipeline::clock::Stamp`]) and sent. [`Router`] is the
//! admission of the running process (tokio channels to the shard tasks);
//! [`crate::inline::Inline`] is the same admission into queues a test drives by
//! hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::PairState;
use super::clock::Stamp;
use super::shard::{self, Admitted, ShardCore, ShardMsg, Work};
use super::{Settings, Shared};
use crate::delivery::records::{note_runs, split_span_records, DeployRecord, PairRecords};
use crate::identity::{pair_hash, shard_of};
use crate::model::{ResourceRec, TraceBatch};
use crate::sli::metrics::{MetricPoint, PairPoints, RunPoint};
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

/// One shard's part of a request.
pub struct Part {
    /// the shard
    pub shard: usize,
    /// what it is to do
    pub work: Work,
    /// the queue bytes it holds until processed
    pub cost: u64,
}

/// Where the receiver hands planned requests: all parts are admitted, or none.
pub trait Admission: Send + Sync {
    /// How many shards requests are planned over.
    fn shards(&self) -> usize;

    /// Admits every part or none. `now` is the wall clock at receipt, `newest` the
    /// newest valid event time in the request (0 when none).
    fn admit(&self, parts: Vec<Part>, now: u64, newest: u64) -> Result<(), Refusal>;
}

/// Stamps admitted parts: F before this request, the runs in it noted in the revision
/// index (visible from the request's fleet floor on), then F advanced by its events.
pub fn stamp(shared: &Shared, parts: &[Part], now: u64, newest: u64) -> Stamp {
    let stamp = shared.fleet.begin(now);
    let floor = stamp.fleet.saturating_sub(shared.fleet.lateness());
    for p in parts {
        if let Work::Traces { batch, .. } = &p.work {
            note_runs(batch, &shared.revisions, floor);
        }
    }
    shared.fleet.commit(stamp, newest);
    stamp
}

/// The parts of a decoded trace request over `n` shards. Deployment spans naming
/// another pair with a record-level `service.name` also go to that pair's shard as
/// records (see [`split_span_records`]).
pub fn plan_traces(mut batch: TraceBatch, n: usize) -> Vec<Part> {
    let records = plan_records(split_span_records(&mut batch), n);
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
    let mut out = Vec::with_capacity(1 + records.len());
    if single {
        let cost = per_span * batch.spans.len() as u64 + 64;
        out.push(Part {
            shard: first,
            work: Work::Traces { batch, hashes },
            cost,
        });
        out.extend(records);
        return out;
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
    for (i, part) in parts.into_iter().enumerate() {
        if let Some((batch, hashes)) = part {
            let cost = per_span * batch.spans.len() as u64 + 64;
            out.push(Part {
                shard: i,
                work: Work::Traces { batch, hashes },
                cost,
            });
        }
    }
    out.extend(records);
    out
}

/// The parts of the explicit deployment records of a request, per shard.
pub fn plan_records(pairs: Vec<PairRecords>, n: usize) -> Vec<Part> {
    let mut parts: Vec<(usize, u64, Vec<PairRecords>)> = Vec::new();
    let rec = std::mem::size_of::<DeployRecord>() as u64;
    for pp in pairs {
        let i = shard_of(pp.hash, n);
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
        .into_iter()
        .map(|(shard, cost, pairs)| Part {
            shard,
            work: Work::Records { pairs },
            cost,
        })
        .collect()
}

/// The parts of the duration-histogram points of a metrics request, per shard.
pub fn plan_metrics(pairs: Vec<PairPoints>, n: usize) -> Vec<Part> {
    let mut parts: Vec<Vec<PairPoints>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    for pp in pairs {
        parts[shard_of(pp.hash, n)].push(pp);
    }
    let point = std::mem::size_of::<MetricPoint>() as u64;
    let run = std::mem::size_of::<RunPoint>() as u64;
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(shard, pairs)| {
            let cost = 128
                + pairs
                    .iter()
                    .map(|pp| {
                        64 + point * pp.points.len() as u64
                            + pp.versions
                                .iter()
                                .map(|v| 24 + v.0.len() as u64)
                                .sum::<u64>()
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
                    .sum::<u64>();
            Part {
                shard,
                work: Work::Metrics { pairs },
                cost,
            }
        })
        .collect()
}

struct ShardHandle {
    tx: mpsc::UnboundedSender<ShardMsg>,
    /// bytes reserved in this shard's queue
    queued: Arc<AtomicU64>,
    view: Arc<ArcSwap<ShardView>>,
}

/// Routes batches to the shard tasks.
pub struct Router {
    shards: Vec<ShardHandle>,
    set: Arc<Settings>,
    shared: Arc<Shared>,
    /// Held from a request's stamp until its parts are in the shard queues, so stamps
    /// and queue order agree: a shard never processes a request stamped before one it
    /// has already processed, and a request with an older fleet floor has noted its
    /// revisions before any request with a newer one is stamped. One uncontended lock
    /// per request, never per span.
    order: std::sync::Mutex<()>,
}

impl Admission for Router {
    fn shards(&self) -> usize {
        self.shards.len()
    }

    fn admit(&self, parts: Vec<Part>, now: u64, newest: u64) -> Result<(), Refusal> {
        if !self.shared.memory.admits() {
            return Err(Refusal::MemoryLimit);
        }
        self.reserve(&parts)?;
        // A poisoned lock only means a panic elsewhere while holding `()`: go on.
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = stamp(&self.shared, &parts, now, newest);
        for p in parts {
            self.send(
                p.shard,
                ShardMsg::Work(Admitted {
                    work: p.work,
                    stamp,
                    cost: p.cost,
                }),
                p.cost,
            );
        }
        Ok(())
    }
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
        for mine in split_restored(restored, n) {
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
                order: std::sync::Mutex::new(()),
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

    /// Reserves room for every part in its shard's queue, or for none. A queue that is
    /// empty always takes a part, however large (a request is never refused for its size
    /// alone once it passed `max_request_mib`).
    fn reserve(&self, parts: &[Part]) -> Result<(), Refusal> {
        let cap = self.set.queue_capacity;
        for (k, p) in parts.iter().enumerate() {
            let q = &self.shards[p.shard].queued;
            let before = q.fetch_add(p.cost, Ordering::SeqCst);
            if before + p.cost > cap && before > 0 {
                q.fetch_sub(p.cost, Ordering::SeqCst);
                for done in &parts[..k] {
                    self.shards[done.shard]
                        .queued
                        .fetch_sub(done.cost, Ordering::SeqCst);
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
            self.shards[i].queued.fetch_sub(cost, Ordering::SeqCst);
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

/// Restored pairs grouped by the shard their hashes route to among `n`.
pub fn split_restored(restored: Vec<PairState>, n: usize) -> Vec<Vec<PairState>> {
    let mut per_shard: Vec<Vec<PairState>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    for p in restored {
        per_shard[shard_of(p.hash, n)].push(p);
    }
    per_shard
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
