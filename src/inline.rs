//! The whole pipeline in one thread, by hand: the real receiver (decoding, validation,
//! admission, counting) in front of the real shard cores, with queues between them that
//! the caller drains when and in the order it likes, and a clock that moves only when
//! told to.
//!
//! Tests and replays use it to run scenarios deterministically, and to check that the
//! results do not depend on how the shards are scheduled: the same requests through one
//! shard processed at once, or through several processed in any interleaving, must give
//! the same signals (`tests/interleave.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::archive::{EventRow, MomentumRow, SliRow};
use crate::config::Config;
use crate::pipeline::checkpoint::PairState;
use crate::pipeline::clock::{Clock, ManualClock};
use crate::pipeline::router::{split_restored, stamp, Admission, Part, Refusal};
use crate::pipeline::shard::{Admitted, ShardCore};
use crate::pipeline::{Settings, Shared};
use crate::receiver::{Accepted, Receiver, RefusalCounters, Refused, Signal, Transport};
use crate::view::{OpView, PairView, ShardView};

/// Admission into per-shard queues held in memory, unbounded.
struct Queues {
    shared: Arc<Shared>,
    queues: Mutex<Vec<VecDeque<Admitted>>>,
}

impl Admission for Queues {
    fn shards(&self) -> usize {
        self.queues.lock().map_or(1, |q| q.len())
    }

    fn admit(&self, parts: Vec<Part>, now: u64, newest: u64) -> Result<(), Refusal> {
        // stamped under the lock, as the router does: stamps and queue order agree
        let mut q = self.queues.lock().map_err(|_| Refusal::Backpressure)?;
        let stamp = stamp(&self.shared, &parts, now, newest);
        for p in parts {
            q[p.shard].push_back(Admitted {
                work: p.work,
                stamp,
                cost: p.cost,
            });
        }
        Ok(())
    }
}

/// The pipeline driven by hand (see the module doc).
pub struct Inline {
    /// the wall clock the receiver and shards read
    pub clock: Arc<ManualClock>,
    /// runtime settings
    pub set: Arc<Settings>,
    /// clocks, limits, counters
    pub shared: Arc<Shared>,
    /// refusals counted by the receiver
    pub refused: Arc<RefusalCounters>,
    receiver: Receiver,
    queues: Arc<Queues>,
    cores: Vec<ShardCore>,
}

impl Inline {
    /// A pipeline of `shards` shards for `config`, its wall clock at `now`.
    pub fn new(config: Config, shards: usize, now: u64) -> Inline {
        Self::restored(config, shards, now, 0, Vec::new())
    }

    /// As [`Inline::new`] for a YAML config.
    pub fn from_yaml(yaml: &str, shards: usize, now: u64) -> Inline {
        let config = Config::from_yaml_str(yaml).unwrap_or_else(|e| panic!("config: {e:?}"));
        Self::new(config, shards, now)
    }

    /// A pipeline that takes back a checkpoint's state: the fleet clock `fleet` and the
    /// pairs (routed by hash, so the shard count may differ from the one that saved them).
    pub fn restored(
        config: Config,
        shards: usize,
        now: u64,
        fleet: u64,
        pairs: Vec<PairState>,
    ) -> Inline {
        let shards = shards.max(1);
        let mut set = Settings::from_config(Arc::new(config));
        // In memory only: an evicted pair's state is dropped (and counted).
        set.evict_dir = None;
        let set = Arc::new(set);
        let clock = ManualClock::new(now);
        let shared = Shared::new(clock.clone(), &set);
        if fleet > 0 {
            shared.fleet.restore(fleet, now);
        }
        let cores = split_restored(pairs, shards)
            .into_iter()
            .map(|mine| {
                let mut c = ShardCore::new(set.clone(), shared.clone());
                c.restore(mine);
                c
            })
            .collect();
        let queues = Arc::new(Queues {
            shared: shared.clone(),
            queues: Mutex::new((0..shards).map(|_| VecDeque::new()).collect()),
        });
        let refused = Arc::new(RefusalCounters::default());
        let receiver = Receiver::new(
            queues.clone(),
            set.clone(),
            shared.clone(),
            refused.clone(),
            None,
        );
        Inline {
            clock,
            set,
            shared,
            refused,
            receiver,
            queues,
            cores,
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cores.len()
    }

    /// Hands an encoded (uncompressed protobuf) export request to the receiver, which
    /// decodes, validates and admits it into the shard queues. Nothing is processed.
    pub fn export(&self, signal: Signal, body: &[u8]) -> Result<Accepted, Refused> {
        self.receiver
            .export(signal, Bytes::copy_from_slice(body), Transport::Grpc)
    }

    /// [`Inline::export`], then every queue drained in shard order.
    pub fn send(&mut self, signal: Signal, body: &[u8]) -> Result<Accepted, Refused> {
        let r = self.export(signal, body);
        self.drain();
        r
    }

    /// Messages waiting for `shard`.
    pub fn queued(&self, shard: usize) -> usize {
        self.queues.queues.lock().map_or(0, |q| q[shard].len())
    }

    /// Processes the oldest message queued for `shard`; false when there was none.
    pub fn step(&mut self, shard: usize) -> bool {
        let next = self
            .queues
            .queues
            .lock()
            .ok()
            .and_then(|mut q| q[shard].pop_front());
        match next {
            Some(a) => {
                self.cores[shard].apply(&a);
                true
            }
            None => false,
        }
    }

    /// Processes everything queued, shard by shard.
    pub fn drain(&mut self) {
        for i in 0..self.cores.len() {
            while self.step(i) {}
        }
    }

    /// The shard task's tick on `shard`: silent pairs move to the fleet floor (the live
    /// fleet clock's only while nothing is queued for it), idle series are freed.
    pub fn tick(&mut self, shard: usize) {
        let empty = self.queued(shard) == 0;
        self.cores[shard].tick(|| empty);
    }

    /// Everything queued processed, then every shard ticked.
    pub fn settle(&mut self) {
        self.drain();
        for i in 0..self.cores.len() {
            self.tick(i);
        }
    }

    /// The snapshot of every shard (after [`Inline::settle`] it is the state once
    /// everything sent so far has been processed).
    pub fn views(&mut self) -> Vec<ShardView> {
        self.cores.iter_mut().map(ShardCore::view).collect()
    }

    /// Every pair of every shard, and the operation series with their pair's index in
    /// the first list.
    pub fn snapshot(&mut self) -> (Vec<PairView>, Vec<OpView>) {
        let (mut pairs, mut ops) = (Vec::new(), Vec::new());
        for v in self.views() {
            let base = pairs.len();
            pairs.extend(v.pairs);
            ops.extend(v.ops.into_iter().map(|mut o| {
                o.pair += base;
                o
            }));
        }
        (pairs, ops)
    }

    /// Settles, then the pair `service` / `environment`.
    pub fn pair(&mut self, service: &str, environment: &str) -> Option<PairView> {
        self.settle();
        self.snapshot()
            .0
            .into_iter()
            .find(|p| &*p.service == service && &*p.environment == environment)
    }

    /// The events of every shard since the last call.
    pub fn take_events(&mut self) -> Vec<EventRow> {
        self.cores
            .iter_mut()
            .flat_map(|c| c.take_events())
            .collect()
    }

    /// The closed `sli` rows of every shard since the last call.
    pub fn take_rows(&mut self) -> Vec<SliRow> {
        self.cores.iter_mut().flat_map(|c| c.take_rows()).collect()
    }

    /// The closed `momentum` rows of every shard since the last call.
    pub fn take_momentum(&mut self) -> Vec<MomentumRow> {
        self.cores
            .iter_mut()
            .flat_map(|c| c.take_momentum())
            .collect()
    }

    /// Shutdown: everything queued processed, every open bucket closed; the state of
    /// every pair and the fleet clock, as a checkpoint holds them.
    pub fn shutdown(&mut self) -> (u64, Vec<PairState>) {
        self.drain();
        let mut pairs = Vec::new();
        for c in &mut self.cores {
            c.close_all();
            pairs.extend(c.save());
        }
        (self.shared.fleet.value(), pairs)
    }

    /// The wall clock now.
    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }
}
