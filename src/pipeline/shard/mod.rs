//! A shard: the single owner of the state of the pairs routed to it. [`ShardCore`] is the
//! synchronous state machine (driven directly by tests, replays and
//! [`crate::inline`]); [`run`] is the task around it that drains the queue and
//! publishes snapshots on a tick.
//!
//! The parts:
//! - [`pairs`]: the pairs and per-operation series this shard owns, their limits and
//!   expiry;
//! - [`ingest`]: spans, duration-histogram points and explicit deployment records;
//! - [`time`]: pair clocks, the watermark, SLO evaluation at bucket boundaries and the
//!   once-a-minute work (closing latency minutes, archive rows, delivery);
//! - [`output`]: archive rows and the snapshot exporters read;
//! - [`save`]: the state checkpoint.
//!
//! Time: every batch carries the [`Stamp`] of its admission, and the shard judges it by
//! that stamp alone, so a shard that lags behind the others reaches the same verdicts as
//! one that kept up (`docs/event-time.md`).

mod ingest;
mod output;
mod pairs;
mod save;
mod time;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::PairState;
use super::clock::Stamp;
use super::{Settings, Shared};
use crate::archive::{ArchiveMsg, ArchiveSender, EventRow, MomentumRow, SliRow};
use crate::delivery::records::PairRecords;
use crate::model::TraceBatch;
use crate::sli::metrics::{PairPoints, Streams};
use crate::sli::sketch::{Mapping, Sketch};
use crate::view::ShardView;

pub use time::METRIC_SOURCE_FRESHNESS;

use pairs::{Op, Pair};

/// The work of one admitted request for one shard.
pub enum Work {
    /// Spans to aggregate; `hashes[i]` is the pair hash of `batch.resources[i]`.
    Traces {
        /// the batch (or the part of it routed here)
        batch: TraceBatch,
        /// per-resource pair hashes
        hashes: Vec<u64>,
    },
    /// Duration-histogram points per pair.
    Metrics {
        /// the points
        pairs: Vec<PairPoints>,
    },
    /// Explicit deployment records per pair (log records, and deployment spans naming
    /// another pair).
    Records {
        /// the records
        pairs: Vec<PairRecords>,
    },
}

/// Admitted work with its admission stamp and the queue bytes it holds.
pub struct Admitted {
    /// what to do
    pub work: Work,
    /// when it was admitted (wall clock) and the fleet clock then
    pub stamp: Stamp,
    /// bytes reserved in this shard's queue, released once processed
    pub cost: u64,
}

/// A message to a shard.
pub enum ShardMsg {
    /// Admitted work.
    Work(Admitted),
    /// Process everything queued before this message, publish a snapshot, then answer.
    Flush(oneshot::Sender<()>),
    /// Answer with the state of every pair (the state checkpoint).
    Checkpoint(oneshot::Sender<Vec<PairState>>),
    /// Process everything queued, close every open bucket, publish, answer with the state
    /// of every pair and stop.
    Shutdown(oneshot::Sender<Vec<PairState>>),
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
    /// the stamp of the newest batch processed
    seen: Stamp,
    /// the fleet floor (F − allowed_lateness) this shard has reached: every request with
    /// an older stamp has been admitted, so the once-a-minute work, which reads state
    /// other shards write (the revision index), may run up to it
    floor: u64,
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
            seen: Stamp::default(),
            floor: 0,
        }
    }

    /// The index mapping of this shard's sketches.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Processes one admitted message (without releasing its queue bytes: the task does).
    pub fn apply(&mut self, a: &Admitted) {
        match &a.work {
            Work::Traces { batch, hashes } => self.ingest(batch, hashes, a.stamp),
            Work::Metrics { pairs } => self.ingest_metrics(pairs, a.stamp),
            Work::Records { pairs } => self.ingest_records(pairs, a.stamp),
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

    /// Takes the events (alerts, incidents, deployments…) recorded since the last call.
    pub fn take_events(&mut self) -> Vec<EventRow> {
        std::mem::take(&mut self.events)
    }

    /// Notes the stamp of a batch about to be processed and returns its fleet floor.
    fn enter(&mut self, stamp: Stamp) -> u64 {
        if stamp.fleet > self.seen.fleet {
            self.seen.fleet = stamp.fleet;
        }
        self.seen.now = self.seen.now.max(stamp.now);
        let floor = stamp.fleet.saturating_sub(self.set.lateness);
        self.floor = self.floor.max(floor);
        floor
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
    // The tick may move silent pairs to the live fleet clock only while nothing is queued
    // here: work admitted before the fleet clock was read is then already processed.
    let empty = |q: &std::sync::atomic::AtomicU64| q.load(Ordering::SeqCst) == 0;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = interval.tick() => {
                core.tick(|| empty(&queued));
                view.store(Arc::new(core.view()));
                hand_off(&mut core, &archive).await;
            }
            msg = rx.recv() => match msg {
                Some(ShardMsg::Work(a)) => {
                    core.apply(&a);
                    queued.fetch_sub(a.cost, Ordering::SeqCst);
                }
                Some(ShardMsg::Flush(ack)) => {
                    core.tick(|| empty(&queued));
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
    // Every sender is gone: close every open bucket (docs/event-time.md) and publish the final view.
    core.close_all();
    view.store(Arc::new(core.view()));
    hand_off(&mut core, &archive).await;
}
