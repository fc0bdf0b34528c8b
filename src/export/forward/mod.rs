//! Forwarding: every accepted request of a signal listed in `exporters.otlp.forward` goes
//! to the next hop as the protobuf bytes it arrived as (OTLP/JSON arrives converted to
//! protobuf), never re-encoded.
//!
//! ```text
//!  receiver ── reserve(bytes) ──► Forwarder (admission: an atomic byte count)
//!     │   └─ router.submit …        │
//!     └──── commit(body) ──────────►│ channel ──► queue task (own thread, own runtime)
//!                                                  ├─ store: segment log (queue.dir)
//!                                                  └─ ≤ CONCURRENCY sends, FIFO dispatch,
//!                                                     retries with backoff + full jitter
//! ```
//!
//! Admission is the receiver's (the README's Endpoints table): it reserves room here *and* in the shard queues
//! before enqueuing anything; a [`Reservation`] dropped without [`Reservation::commit`]
//! releases its bytes, so a request refused by the router leaves no trace here. Room is
//! released when the next hop has the request, or has refused it for good.
//!
//! Retries: exponential backoff with full jitter (a delay drawn uniformly from
//! `[0, min(MAX_BACKOFF, INITIAL_BACKOFF·2ⁿ)]`, AWS's "full jitter"), replaced by the next
//! hop's own delay when it sends one (gRPC `RetryInfo`, HTTP `Retry-After`). Written here
//! rather than with `backon` or `backoff`: `backoff` is unmaintained, and `backon`'s
//! jitter adds `[0, delay)` on top of the exponential delay instead of drawing the whole
//! delay, and its retry loop owns the future while this queue needs the server's delay to
//! replace the next step; the policy is ten lines. A request is retried until delivered
//! (no give-up time: the queue is bounded and refuses new data instead), or until
//! shutdown, where it stays on disk (`queue.dir`) or is dropped and counted (memory).
//!
//! The queue task runs on its own thread and single-threaded runtime, so disk writes and
//! `fdatasync` never stall the receivers' worker threads.

pub mod client;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::OtlpExporterConfig;
use crate::signal::Signal;
use crate::telemetry::ExporterStats;
use client::{Client, SendError};
use store::Store;

/// The `exporter` label of the forwarder's self-metrics.
pub const EXPORTER: &str = "forward";
/// Requests in flight to the next hop at once (dispatch stays FIFO).
pub const CONCURRENCY: usize = 4;
/// First retry delay bound.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Largest retry delay bound.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the forwarder cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardStartError {
    /// the client TLS cannot be set up
    #[error("exporters.otlp.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// a header that is not a valid HTTP header
    #[error("{0}")]
    Header(#[from] crate::export::push::BuildError),
    /// the endpoint is not a usable URL
    #[error("exporters.otlp.endpoint: {0}")]
    Endpoint(String),
    /// the queue directory cannot be opened or read
    #[error("exporters.otlp.queue.dir {dir}: {source}")]
    Queue {
        /// the directory
        dir: PathBuf,
        /// why
        source: std::io::Error,
    },
    /// the queue thread could not be started
    #[error("cannot start the forward queue thread: {0}")]
    Thread(std::io::Error),
}

/// The forward queue is full: the request must be refused with backpressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("forward queue full")]
pub struct QueueFull;

/// What the receivers and the queue task share: admission accounting and self-metrics.
struct Admission {
    capacity: u64,
    /// bytes reserved or queued
    reserved: AtomicU64,
    stats: Arc<ExporterStats>,
}

impl Admission {
    fn release(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A request on its way to the next hop.
#[derive(Clone)]
struct Item {
    seq: u64,
    signal: Signal,
    /// spans, data points or log records in it (what `sent`/`failed` count)
    items: u64,
    body: Bytes,
}

/// A request handed to the queue task: its signal, bytes and items, and (disk queue)
/// whom to tell once it is written.
type Incoming = (Signal, Bytes, u64, Option<oneshot::Sender<()>>);

/// The receivers' handle: reserve room, then commit the request's bytes.
pub struct Forwarder {
    signals: [bool; 3],
    admission: Arc<Admission>,
    tx: mpsc::UnboundedSender<Incoming>,
    /// the queue is on disk: a request is answered once it is written
    durable: bool,
}

/// Resolves once a committed request is written to the disk queue (`write(2)`, batched
/// with the requests beside it): the receiver answers the client after it, so an
/// acknowledged request survives a crash of the process.
#[derive(Debug)]
pub struct Written(oneshot::Receiver<()>);

impl Written {
    /// Waits for the write (returns at once if the queue task is gone).
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

/// Room reserved in the forward queue for one request. Dropped without
/// [`commit`](Reservation::commit), it gives the room back.
#[must_use = "a reservation is released when dropped"]
pub struct Reservation<'a> {
    fwd: &'a Forwarder,
    signal: Signal,
    bytes: u64,
    committed: bool,
}

impl Reservation<'_> {
    /// Hands the request to the queue (the bytes it reserved for), with the number of
    /// spans, data points or log records in it. Never fails: the room is already held.
    /// With the disk queue, answers what to wait for before acknowledging the client.
    pub fn commit(mut self, body: Bytes, items: u64) -> Option<Written> {
        self.committed = true;
        debug_assert_eq!(body.len() as u64, self.bytes);
        let (notify, written) = if self.fwd.durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(Written(rx)))
        } else {
            (None, None)
        };
        if self
            .fwd
            .tx
            .send((self.signal, body, items, notify))
            .is_err()
        {
            // The queue task is gone (it only stops at shutdown, after the receivers):
            // the request cannot be forwarded any more.
            self.fwd.admission.release(self.bytes);
            self.fwd
                .admission
                .stats
                .failed
                .fetch_add(items, Ordering::Relaxed);
            tracing::error!("forward queue stopped: an accepted request was not forwarded");
            return None;
        }
        written
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.fwd.admission.release(self.bytes);
        }
    }
}

impl Forwarder {
    /// Whether requests of `signal` are forwarded.
    pub fn forwards(&self, signal: Signal) -> bool {
        self.signals[signal.index()]
    }

    /// Reserves `bytes` of queue room for a request of `signal`, or refuses (the queue
    /// is full). Like the shard queues, an empty queue takes any one request, so a
    /// request larger than the whole queue is not refused forever.
    pub fn reserve(&self, signal: Signal, bytes: usize) -> Result<Reservation<'_>, QueueFull> {
        let a = &self.admission;
        let cost = bytes as u64;
        let before = a.reserved.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before + cost > a.capacity {
            a.release(cost);
            return Err(QueueFull);
        }
        Ok(Reservation {
            fwd: self,
            signal,
            bytes: cost,
            committed: false,
        })
    }

    /// Starts the forwarder for `cfg`: reads back what a previous run left in
    /// `queue.dir`, starts the queue thread. `None` when `forward` lists no signal.
    /// What [`Forwarder::start`] would refuse in `cfg`, found without opening the queue
    /// or starting a thread (`momentum validate`): the endpoint, headers, client TLS, and a
    /// queue directory that cannot be created.
    pub fn check(cfg: &OtlpExporterConfig) -> Vec<ForwardStartError> {
        let mut out = Vec::new();
        if cfg.forward.is_empty() {
            return out;
        }
        if let Err(e) = Self::client(cfg) {
            out.push(e);
        }
        if let Some(dir) = &cfg.queue.dir {
            if let Err(source) = crate::archive::check_dir(dir) {
                out.push(ForwardStartError::Queue {
                    dir: dir.clone(),
                    source,
                });
            }
        }
        out
    }

    fn client(cfg: &OtlpExporterConfig) -> Result<Client, ForwardStartError> {
        let endpoint: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|e| ForwardStartError::Endpoint(format!("{e}")))?;
        if endpoint.authority().is_none() {
            return Err(ForwardStartError::Endpoint(format!(
                "{:?} names no host",
                cfg.endpoint
            )));
        }
        Ok(Client::new(
            &endpoint,
            cfg.protocol,
            crate::export::push::header_map("exporters.otlp.headers", &cfg.headers)?,
            cfg.tls.as_ref(),
            CONCURRENCY,
        )?)
    }

    pub fn start(
        cfg: &OtlpExporterConfig,
        stats: Arc<ExporterStats>,
    ) -> Result<Option<(Arc<Forwarder>, ForwardHandle)>, ForwardStartError> {
        if cfg.forward.is_empty() {
            return Ok(None);
        }
        let client = Self::client(cfg)?;
        let mut signals = [false; 3];
        for s in &cfg.forward {
            signals[s.index()] = true;
        }
        let capacity = cfg.queue.max_mib.saturating_mul(1024 * 1024);
        let admission = Arc::new(Admission {
            capacity,
            reserved: AtomicU64::new(0),
            stats,
        });
        let mut queue = Queue {
            pending: VecDeque::new(),
            inflight: HashMap::new(),
            next_seq: 0,
            store: None,
            dir: cfg.queue.dir.clone(),
            admission: admission.clone(),
            waiters: Vec::new(),
        };
        if let Some(dir) = &cfg.queue.dir {
            let segment = (capacity / 8).clamp(1 << 20, 64 << 20);
            let (store, rec) =
                Store::open(dir, segment).map_err(|source| ForwardStartError::Queue {
                    dir: dir.clone(),
                    source,
                })?;
            admission
                .stats
                .corrupt
                .fetch_add(rec.corrupt, Ordering::Relaxed);
            if !rec.items.is_empty() {
                tracing::info!(
                    requests = rec.items.len(),
                    dir = %dir.display(),
                    "forward queue: re-sending what the previous run left"
                );
            }
            queue.next_seq = rec.next_seq;
            for e in rec.items {
                let n = e.body.len() as u64;
                // Recovered requests hold room like accepted ones.
                admission.reserved.fetch_add(n, Ordering::AcqRel);
                queue.enqueued(n);
                queue.pending.push_back(Item {
                    seq: e.seq,
                    signal: e.signal,
                    items: e.items,
                    body: e.body,
                });
            }
            queue.store = Some(store);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("momentum-forward".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("forward queue: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(queue.run(Arc::new(client), rx, stop_rx));
                drop(rt);
                let _ = done_tx.send(());
            })
            .map_err(ForwardStartError::Thread)?;
        Ok(Some((
            Arc::new(Forwarder {
                signals,
                admission,
                tx,
                durable: cfg.queue.dir.is_some(),
            }),
            ForwardHandle {
                stop: stop_tx,
                done: done_rx,
                thread,
            },
        )))
    }
}

/// Stops the queue task.
pub struct ForwardHandle {
    stop: oneshot::Sender<Instant>,
    done: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ForwardHandle {
    /// Gives the queue until `deadline` to drain (the receivers must be stopped first),
    /// then persists (`queue.dir`) or drops and counts (memory) what remains.
    pub async fn shutdown(self, deadline: Instant) {
        let _ = self.stop.send(deadline);
        let _ = self.done.await;
        let _ = self.thread.join();
    }
}

/// The queue task's state: FIFO of requests waiting, requests in flight, the disk log.
struct Queue {
    pending: VecDeque<Item>,
    /// requests being sent, by their send task (a clone: the bytes are shared)
    inflight: HashMap<tokio::task::Id, Item>,
    next_seq: u64,
    store: Option<Store>,
    dir: Option<PathBuf>,
    admission: Arc<Admission>,
    /// receivers waiting for their requests to be written
    waiters: Vec<oneshot::Sender<()>>,
}

/// How a send task ended: delivered, or refused for good (why).
type Done = Result<(), String>;

impl Queue {
    fn enqueued(&self, bytes: u64) {
        let s = &self.admission.stats;
        s.queue_depth.fetch_add(1, Ordering::Relaxed);
        s.queue_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes one committed request: sequence number, disk, FIFO.
    fn accept(&mut self, (signal, body, items, notify): Incoming) {
        if let Some(n) = notify {
            self.waiters.push(n);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append(seq, signal, items, &body) {
                // Still forwarded from memory; only its durability is lost.
                tracing::error!("forward queue: cannot write to disk: {e}");
            }
        }
        self.enqueued(body.len() as u64);
        self.pending.push_back(Item {
            seq,
            signal,
            items,
            body,
        });
    }

    /// Writes what was appended to the OS, then answers every receiver waiting for it.
    fn flush(&mut self) {
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.flush() {
                // Still forwarded from memory; only its durability is lost.
                tracing::error!("forward queue: cannot write to disk: {e}");
            }
        }
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn dispatch(
        &mut self,
        client: &Arc<Client>,
        tasks: &mut JoinSet<Done>,
        failing: &Arc<AtomicBool>,
    ) {
        while self.inflight.len() < CONCURRENCY {
            let Some(item) = self.pending.pop_front() else {
                break;
            };
            let task = tasks.spawn(deliver(
                client.clone(),
                item.clone(),
                self.admission.stats.clone(),
                failing.clone(),
            ));
            self.inflight.insert(task.id(), item);
        }
    }

    /// A send task ended: the request is done, or (the task panicked) queued again.
    fn joined(&mut self, joined: Result<(tokio::task::Id, Done), tokio::task::JoinError>) {
        let (id, result) = match joined {
            Ok(x) => x,
            Err(e) => {
                if let Some(item) = self.inflight.remove(&e.id()) {
                    tracing::error!(
                        "forward: a send task failed ({e}); the request is queued again"
                    );
                    self.pending.push_front(item);
                }
                return;
            }
        };
        let Some(item) = self.inflight.remove(&id) else {
            return;
        };
        let (seq, bytes) = (item.seq, item.body.len() as u64);
        let s = &self.admission.stats;
        match result {
            Ok(()) => s.sent.fetch_add(item.items, Ordering::Relaxed),
            Err(message) => {
                tracing::warn!(
                    signal = ?item.signal,
                    "forward: the next hop refused a request permanently; dropped: {message}"
                );
                s.failed.fetch_add(item.items, Ordering::Relaxed)
            }
        };
        s.queue_depth.fetch_sub(1, Ordering::Relaxed);
        s.queue_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.ack(seq) {
                tracing::error!("forward queue: cannot record a delivery on disk: {e}");
            }
        }
        self.admission.release(bytes);
    }

    async fn run(
        mut self,
        client: Arc<Client>,
        mut rx: mpsc::UnboundedReceiver<Incoming>,
        mut stop: oneshot::Receiver<Instant>,
    ) {
        let failing = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut sync = tokio::time::interval(store::SYNC_INTERVAL);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The receivers (and with them the senders of `rx`) go away before `stop` comes:
        // a closed channel is not the end, `stop` is.
        let mut open = true;
        let deadline = loop {
            self.dispatch(&client, &mut tasks, &failing);
            tokio::select! {
                got = rx.recv(), if open => match got {
                    Some(got) => {
                        self.accept(got);
                        // Batch whatever else is waiting into one write.
                        while let Ok(got) = rx.try_recv() {
                            self.accept(got);
                        }
                        self.flush();
                    }
                    None => open = false,
                },
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => self.joined(joined),
                _ = sync.tick() => self.flush(),
                d = &mut stop => break d.unwrap_or_else(|_| Instant::now()),
            }
        };
        // Drain: the receivers are stopped; take any straggler, send until empty or the
        // deadline.
        let until = tokio::time::Instant::from_std(deadline);
        loop {
            while let Ok(got) = rx.try_recv() {
                self.accept(got);
            }
            self.flush();
            self.dispatch(&client, &mut tasks, &failing);
            if tasks.is_empty() && self.pending.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = tasks.join_next_with_id() => self.joined(joined),
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        tasks.shutdown().await;
        let left = self.pending.len() + self.inflight.len();
        let left_items: u64 = self
            .pending
            .iter()
            .chain(self.inflight.values())
            .map(|i| i.items)
            .sum();
        let bytes = self.admission.stats.queue_bytes.load(Ordering::Relaxed);
        match self.store.as_mut() {
            Some(store) => {
                if let Err(e) = store.sync_all() {
                    tracing::error!("forward queue: cannot sync to disk at shutdown: {e}");
                }
                if left > 0 {
                    tracing::info!(
                        requests = left,
                        bytes,
                        dir = %self.dir.as_deref().unwrap_or_else(|| std::path::Path::new("")).display(),
                        "forward queue: not delivered before shutdown_timeout; kept on disk and sent on the next start"
                    );
                }
            }
            None if left > 0 => {
                self.admission
                    .stats
                    .failed
                    .fetch_add(left_items, Ordering::Relaxed);
                tracing::warn!(
                    requests = left,
                    bytes,
                    "forward queue (in memory): not delivered before shutdown_timeout; dropped"
                );
            }
            None => {}
        }
    }
}

/// The retry delay bound before attempt `n + 1` (n = failures so far).
pub fn backoff_bound(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Full jitter: uniformly in `[0, backoff_bound(failures)]`.
pub fn full_jitter(failures: u32) -> Duration {
    let bound = backoff_bound(failures).as_nanos() as u64;
    Duration::from_nanos(fastrand::u64(0..=bound))
}

/// Sends one request until the next hop has it or refuses it for good.
async fn deliver(
    client: Arc<Client>,
    item: Item,
    stats: Arc<ExporterStats>,
    failing: Arc<AtomicBool>,
) -> Done {
    let mut failures = 0u32;
    loop {
        match client.send(item.signal, &item.body).await {
            Ok(()) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("forward: the next hop answers again");
                }
                return Ok(());
            }
            Err(SendError::Permanent { message }) => return Err(message),
            Err(SendError::Retryable { message, after }) => {
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        url = %client.url(item.signal),
                        "forward: the next hop is unavailable, retrying with backoff: {message}"
                    );
                } else {
                    tracing::debug!("forward: retrying: {message}");
                }
                stats.retried.fetch_add(1, Ordering::Relaxed);
                let delay = after.unwrap_or_else(|| full_jitter(failures));
                failures = failures.saturating_add(1);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_jitter_stays_under_it() {
        assert_eq!(backoff_bound(0), INITIAL_BACKOFF);
        assert_eq!(backoff_bound(1), INITIAL_BACKOFF * 2);
        assert_eq!(backoff_bound(3), INITIAL_BACKOFF * 8);
        assert_eq!(backoff_bound(10), MAX_BACKOFF);
        assert_eq!(backoff_bound(u32::MAX), MAX_BACKOFF);
        let draws: Vec<Duration> = (0..2000).map(|_| full_jitter(4)).collect();
        assert!(draws.iter().all(|d| *d <= backoff_bound(4)));
        // Full jitter spreads over the whole range, not just above the base.
        assert!(draws.iter().any(|d| *d < backoff_bound(4) / 4));
        assert!(draws.iter().any(|d| *d > backoff_bound(4) * 3 / 4));
    }

    fn config(max_mib: u64) -> OtlpExporterConfig {
        OtlpExporterConfig {
            endpoint: "http://127.0.0.1:1".into(),
            protocol: crate::config::OtlpProtocol::Grpc,
            interval: crate::config::Duration::from_secs(15),
            forward: vec![Signal::Traces, Signal::Logs],
            tls: None,
            headers: Default::default(),
            queue: crate::config::QueueConfig { max_mib, dir: None },
        }
    }

    #[tokio::test]
    async fn reservations_are_all_or_nothing_and_released_on_drop() {
        let stats = ExporterStats::with_queue(EXPORTER);
        let (f, handle) = Forwarder::start(&config(1), stats.clone())
            .unwrap()
            .unwrap();
        assert!(f.forwards(Signal::Traces) && f.forwards(Signal::Logs));
        assert!(!f.forwards(Signal::Metrics));
        let mib = 1 << 20;
        // An empty queue takes even an oversize request.
        let big = f.reserve(Signal::Traces, 2 * mib).unwrap();
        assert!(matches!(f.reserve(Signal::Traces, 1), Err(QueueFull)));
        drop(big);
        assert_eq!(f.admission.reserved.load(Ordering::Relaxed), 0);
        let a = f.reserve(Signal::Traces, mib / 2).unwrap();
        let b = f.reserve(Signal::Logs, mib / 2).unwrap();
        assert!(f.reserve(Signal::Logs, 1).is_err());
        drop(b);
        a.commit(Bytes::from(vec![0u8; mib / 2]), 7);
        // Committed room stays held until the request is done.
        assert!(f.reserve(Signal::Logs, mib / 2 + 1).is_err());
        let c = f.reserve(Signal::Logs, mib / 2).unwrap();
        drop(c);
        // Nothing listens on port 1: the request is still queued at the deadline and,
        // in memory, dropped and counted.
        handle
            .shutdown(Instant::now() + Duration::from_millis(300))
            .await;
        assert_eq!(stats.failed.load(Ordering::Relaxed), 7, "its 7 items");
        assert!(stats.retried.load(Ordering::Relaxed) >= 1);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
    }
}
