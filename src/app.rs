//! Wiring: config → shards, receivers, admin endpoint, on real sockets; graceful
//! shutdown. The only place that knows every component.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::archive::spans::SpanArchiver;
use crate::archive::{self, ArchiveSender, ArchiveStats};
use crate::auth::{AuthError, Tokens};
use crate::config::Config;
use crate::export::forward::{self, ForwardHandle, ForwardStartError, Forwarder};
use crate::export::otlp::OtlpPush;
use crate::export::own_telemetry::OwnTelemetry;
use crate::export::push::BuildError;
use crate::export::PushExporter as _;
use crate::pipeline::checkpoint::{self, Checkpoint, PairState};
use crate::pipeline::clock::Clock;
use crate::pipeline::router::Router;
use crate::pipeline::{Settings, Shared};
use crate::receiver::{self, Receiver, RefusalCounters};
use crate::serve::{serve, ConnLimit, Limits, Listener};
use crate::telemetry::{ExporterStats, Telemetry};
use crate::tls::{ServerTls, TlsError};

/// What SIGHUP re-reads.
#[derive(Default)]
struct Reload {
    tls: Vec<Arc<ServerTls>>,
    tokens: Vec<Arc<Tokens>>,
}

/// Errors starting the processor.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// a TLS certificate, key or CA file cannot be used
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// a bearer token file cannot be used
    #[error("auth: {0}")]
    Auth(#[from] AuthError),
    /// an exporter could not be built from its config
    #[error("{0}")]
    Exporter(#[from] BuildError),
    /// the archive dir cannot be used
    #[error("archive: {0}")]
    Archive(#[from] archive::ArchiveError),
    /// a listener could not bind
    #[error("cannot listen on {what} endpoint {addr}: {source}")]
    Bind {
        /// which endpoint
        what: &'static str,
        /// its address
        addr: String,
        /// why
        source: std::io::Error,
    },
    /// the forward exporter could not start
    #[error("{0}")]
    Forward(#[from] ForwardStartError),
}

/// A running processor.
pub struct App {
    /// bound OTLP/gRPC address
    pub grpc_addr: SocketAddr,
    /// bound OTLP/HTTP address
    pub http_addr: SocketAddr,
    /// bound admin address
    pub admin_addr: SocketAddr,
    /// certificates and tokens SIGHUP re-reads
    reload: Reload,
    /// the router (tests flush through it)
    pub router: Arc<Router>,
    /// shared clocks and counters
    pub shared: Arc<Shared>,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    shards: Vec<JoinHandle<()>>,
    export_stop: watch::Sender<bool>,
    exporters: Vec<JoinHandle<()>>,
    own_telemetry: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    forward: Option<ForwardHandle>,
    /// the archive writer's sender held by the app (the shards hold clones)
    archive_tx: ArchiveSender,
    archive_writer: JoinHandle<()>,
    /// archive writer self-metrics
    pub archive_stats: Arc<ArchiveStats>,
    checkpoint_stop: watch::Sender<bool>,
    checkpointer: JoinHandle<Checkpointer>,
    /// the `spans` data set task (`archive.spans: true`); it ends once the receivers are gone
    span_archive: Option<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

/// Writes the state checkpoint (see [`crate::pipeline::checkpoint`]).
struct Checkpointer {
    router: Arc<Router>,
    shared: Arc<Shared>,
    stats: Arc<ArchiveStats>,
    dir: std::path::PathBuf,
    lookback: u64,
}

impl Checkpointer {
    /// Writes `pairs` and the revision index (pruned to the delivery lookback: a
    /// revision whose pipeline ran longer ago can no longer give a lead time inside it).
    async fn save(&self, pairs: Vec<PairState>) {
        let fleet = self.shared.fleet.value();
        let horizon = fleet.saturating_sub(self.lookback);
        self.shared.revisions.retain_since(horizon);
        let revisions = self.shared.revisions.entries();
        let c = Checkpoint {
            saved_ns: self.shared.clock.now_ns(),
            fleet_ns: fleet,
            pairs,
            revisions,
        };
        let dir = self.dir.clone();
        match tokio::task::spawn_blocking(move || checkpoint::save(&dir, &c)).await {
            Ok(Ok(_)) => {
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("state checkpoint not written: {e}");
            }
            Err(e) => tracing::error!("state checkpoint task failed: {e}"),
        }
    }
}

/// Writes a checkpoint every `every` until `stop`; hands the checkpointer back for the
/// final one at shutdown.
async fn checkpoint_loop(
    c: Checkpointer,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Checkpointer {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let pairs = c.router.checkpoint().await;
                c.save(pairs).await;
            }
            _ = stop.changed() => return c,
        }
    }
}

/// Reads the state checkpoint under the archive dir, seeds the revision index and
/// returns the pairs for the shards. A missing checkpoint is a first start; an unreadable
/// one is set aside and logged, and the process starts empty.
/// Deletes the states of evicted pairs that have not reported for longer than the
/// longest SLO window and `delivery.lookback` (nothing of them would be left).
fn sweep_evicted(dir: &std::path::Path, keep: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > keep);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

async fn restore_checkpoint(
    dir: &std::path::Path,
    shared: &Shared,
    stats: &ArchiveStats,
) -> Vec<PairState> {
    let d = dir.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || checkpoint::load(&d))
        .await
        .unwrap_or_else(|e| {
            Err(checkpoint::CheckpointError::Format {
                path: checkpoint::path(dir),
                why: e.to_string(),
            })
        });
    match loaded {
        Ok(Some(c)) => {
            for (rev, start) in c.revisions {
                shared.revisions.restore(rev, start);
            }
            // A restart is not silence: the fleet clock carries on from the checkpoint.
            shared.fleet.restore(c.fleet_ns, shared.clock.now_ns());
            stats
                .pairs_restored
                .fetch_add(c.pairs.len() as u64, Ordering::Relaxed);
            tracing::info!(
                pairs = c.pairs.len(),
                "restored the state checkpoint written at {} ns",
                c.saved_ns
            );
            c.pairs
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("state checkpoint not restored, starting empty: {e}");
            Vec::new()
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

/// What [`App::start`] would refuse in `config`, found without binding a port, writing
/// a file or starting a task: certificate, key, CA and token files; every exporter's
/// endpoint, headers and client TLS; archive and forward-queue directories that cannot be
/// created. All of them, in config order. `momentum validate` reports these after the
/// config's own problems. Must be called on a tokio runtime (gRPC channels are built
/// lazily on one).
pub fn check(config: &Config) -> Vec<StartError> {
    let mut out: Vec<StartError> = Vec::new();
    let o = &config.receivers.otlp;
    for tls in [&o.tls, &config.admin.tls].into_iter().flatten() {
        if let Err(e) = ServerTls::load(tls) {
            out.push(e.into());
        }
    }
    for auth in [&o.auth, &config.admin.auth].into_iter().flatten() {
        if let Err(e) = Tokens::load(auth) {
            out.push(e.into());
        }
    }
    let push = crate::export::check(config);
    let otlp_failed = push.iter().any(|(name, _)| *name == OtlpPush::NAME);
    out.extend(push.into_iter().map(|(_, e)| StartError::from(e)));
    if let Some(c) = &config.exporters.otlp {
        // The OTLP push and the forwarder share the endpoint, headers and TLS: a problem
        // of both is said once; the forwarder's own (its queue directory) always.
        for e in Forwarder::check(c) {
            if !otlp_failed || matches!(e, ForwardStartError::Queue { .. }) {
                out.push(e.into());
            }
        }
    }
    if let Some(c) = &config.telemetry {
        if let Err(e) = OwnTelemetry::client(c) {
            out.push(e.into());
        }
    }
    if let Err(source) = archive::check_dir(&config.archive.dir) {
        out.push(StartError::Archive(archive::ArchiveError::Io {
            op: "creating archive dir",
            path: config.archive.dir.clone(),
            source,
        }));
    }
    out
}

impl App {
    /// Starts everything on the current tokio runtime.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App, StartError> {
        // Certificates and tokens first: a file that cannot be used stops the start
        // before anything listens.
        let o = &config.receivers.otlp;
        let otlp_tls = o.tls.as_ref().map(ServerTls::load).transpose()?;
        let admin_tls = config.admin.tls.as_ref().map(ServerTls::load).transpose()?;
        let otlp_auth = o.auth.as_ref().map(Tokens::load).transpose()?;
        let admin_auth = config.admin.auth.as_ref().map(Tokens::load).transpose()?;
        let reload = Reload {
            tls: [&otlp_tls, &admin_tls]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            tokens: [&otlp_auth, &admin_auth]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        };
        let config = Arc::new(config);
        let set = Arc::new(Settings::from_config(config.clone()));
        let shared = Shared::new(clock, &set);
        let n = match config.pipeline.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let grpc = bind("OTLP/gRPC", config.receivers.otlp.grpc.endpoint).await?;
        let http = bind("OTLP/HTTP", config.receivers.otlp.http.endpoint).await?;
        let adm = bind("admin", config.admin.endpoint).await?;
        let (forwarder, forward, forward_stats) = match &config.exporters.otlp {
            Some(o) => {
                let stats = ExporterStats::with_queue(forward::EXPORTER);
                match Forwarder::start(o, stats.clone())? {
                    Some((f, h)) => (Some(f), Some(h), Some(stats)),
                    None => (None, None, None),
                }
            }
            None => (None, None, None),
        };
        let archive_stats = Arc::new(ArchiveStats::default());
        let (archive_tx, archive_writer) =
            archive::writer::start(&config.archive, archive_stats.clone())?;
        let archive_dir = config.archive.dir.clone();
        let restored = restore_checkpoint(&archive_dir, &shared, &archive_stats).await;
        if let Some(dir) = &set.evict_dir {
            sweep_evicted(
                dir,
                Duration::from_nanos(set.longest_window.max(set.lookback)),
            );
        }
        let (router, shards) = Router::start(
            n,
            set.clone(),
            shared.clone(),
            Duration::from_millis(500),
            Some(archive_tx.clone()),
            restored,
        );
        let (checkpoint_stop, checkpoint_rx) = watch::channel(false);
        let checkpointer = tokio::spawn(checkpoint_loop(
            Checkpointer {
                router: router.clone(),
                shared: shared.clone(),
                stats: archive_stats.clone(),
                dir: archive_dir.clone(),
                lookback: set.lookback,
            },
            Duration::from_nanos(config.archive.window.as_nanos().max(10_000_000_000)),
            checkpoint_rx,
        ));
        let refused = Arc::new(RefusalCounters::default());
        let mut rx = Receiver::new(
            router.clone(),
            set.clone(),
            shared.clone(),
            refused.clone(),
            forwarder,
        );
        if let Some(t) = otlp_auth {
            rx = rx.with_auth(t);
        }
        let mut span_archive = None;
        if config.archive.spans {
            let (a, task) = SpanArchiver::start(
                archive_tx.clone(),
                archive_stats.clone(),
                config.limits.max_value_bytes,
            );
            rx = rx.with_span_archive(a);
            span_archive = Some(task);
        }
        let rx = Arc::new(rx);
        let ready = Arc::new(AtomicBool::new(false));
        let planned = crate::export::plan(&config);
        let telemetry = Telemetry {
            router: router.clone(),
            shared: shared.clone(),
            refused,
            started_ns: shared.clock.now_ns(),
            exporters: planned
                .iter()
                .map(|p| p.stats.clone())
                .chain(forward_stats.clone())
                .collect(),
            archive: archive_stats.clone(),
        };
        // Push exporters run until the shards have drained at shutdown, then push once
        // more; momentum's own telemetry outlives them so their last spans are sent.
        let own = match &config.telemetry {
            Some(c) => Some(OwnTelemetry::new(c, telemetry.clone())?),
            None => None,
        };
        let spans = own.as_ref().map(OwnTelemetry::spans).unwrap_or_default();
        let (export_stop, export_rx) = watch::channel(false);
        let mut exporters = Vec::new();
        for p in planned {
            let run = p.build(telemetry.clone(), spans.clone(), export_rx.clone())?;
            exporters.push(tokio::spawn(run));
        }
        let own_telemetry = own.map(|o| {
            let (tx, rx) = watch::channel(false);
            (tx, tokio::spawn(o.run(rx)))
        });
        let (stop, stop_rx) = watch::channel(false);
        // the dashboard's history of every pair; the sampler ends with the listeners
        let history = Arc::new(crate::history::History::default());
        tokio::spawn(crate::history::sample(
            history.clone(),
            router.clone(),
            stop_rx.clone(),
        ));
        let grace = connection_grace(Duration::from_nanos(config.shutdown_timeout.as_nanos()));
        // Both OTLP listeners share one connection budget; the admin endpoint has its own,
        // so OTLP clients at their limit never starve /healthz, /readyz or /metrics.
        let otlp_conns = ConnLimit::new(config.receivers.otlp.max_connections as usize);
        let addr = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
        let (grpc_addr, http_addr, admin_addr) = (addr(&grpc), addr(&http), addr(&adm));
        let limits = Limits::from_config(&config.receivers.otlp);
        let listeners = [
            Listener {
                socket: grpc,
                router: receiver::grpc::router(rx.clone()),
                conns: otlp_conns.clone(),
                tls: otlp_tls.clone(),
                limits: limits.clone(),
            },
            Listener {
                socket: http,
                router: receiver::http::router(rx),
                conns: otlp_conns,
                tls: otlp_tls,
                limits: limits.clone(),
            },
            Listener {
                socket: adm,
                router: admin::router(Admin {
                    telemetry,
                    ready: ready.clone(),
                    auth: admin_auth,
                    history: history.clone(),
                }),
                conns: ConnLimit::new(ADMIN_CONNECTIONS),
                tls: admin_tls,
                limits,
            },
        ];
        let servers = listeners
            .into_iter()
            .map(|l| tokio::spawn(serve(l, stop_rx.clone(), grace)))
            .collect();
        ready.store(true, Ordering::Relaxed);
        Ok(App {
            grpc_addr,
            http_addr,
            admin_addr,
            reload,
            router,
            shared,
            ready,
            stop,
            servers,
            shards,
            export_stop,
            exporters,
            own_telemetry,
            forward,
            archive_tx,
            archive_writer,
            archive_stats,
            checkpoint_stop,
            checkpointer,
            span_archive,
            shutdown_timeout: Duration::from_nanos(config.shutdown_timeout.as_nanos()),
        })
    }

    /// SIGHUP: re-reads the certificates and token files. A file that cannot be used is
    /// logged and the one in use stays; open connections are not touched (a new TLS
    /// handshake gets the new certificate, the next request is checked against the new
    /// tokens).
    pub fn reload(&self) {
        for t in &self.reload.tls {
            match t.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!("TLS certificate not reloaded, the old one stays: {e}"),
            }
        }
        for t in &self.reload.tokens {
            match t.reload() {
                Ok(n) => tracing::info!(tokens = n, "bearer tokens reloaded"),
                Err(e) => tracing::error!("bearer tokens not reloaded, the old ones stay: {e}"),
            }
        }
    }

    /// Shutdown in steps (see the README's operations section):
    ///
    /// 1. stop accepting; in-flight requests get a grace of a quarter of
    ///    `shutdown_timeout` (at most 5 s), then every connection still open is closed by
    ///    force — a client that never finishes its request cannot hold the rest up;
    /// 2. always, however long 1 took: drain the shards and close every open bucket, write
    ///    the state checkpoint, let the span archive and the archive writer write their last
    ///    files — the steps that keep what was accepted, bounded by the work queued (the
    ///    shard queues and archive channels are bounded);
    /// 3. within what is left of `shutdown_timeout`: the last push to every exporter and
    ///    momentum's own telemetry, then the forward queue's drain.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let started = std::time::Instant::now();
        let deadline = self.shutdown_timeout;
        for s in self.servers {
            let _ = s.await;
        }
        // The periodic checkpoint stops first, so it cannot overwrite the final one.
        let _ = self.checkpoint_stop.send(true);
        let checkpointer = self.checkpointer.await;
        let pairs = self.router.shutdown().await;
        for s in self.shards {
            let _ = s.await;
        }
        if let Ok(c) = checkpointer {
            c.save(pairs).await;
        }
        if let Some(t) = self.span_archive {
            let _ = t.await;
        }
        // The shards have handed their last rows over and dropped their senders; ours
        // is the last, and dropping it lets the writer flush and finish.
        drop(self.archive_tx);
        if let Err(e) = self.archive_writer.await {
            tracing::error!("archive writer task failed: {e}");
        }
        let exports = async {
            let _ = self.export_stop.send(true);
            for e in self.exporters {
                let _ = e.await;
            }
            if let Some((stop, task)) = self.own_telemetry {
                let _ = stop.send(true);
                let _ = task.await;
            }
        };
        let left = deadline.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, exports).await.is_err() {
            tracing::warn!("shutdown_timeout passed before the last export push finished");
        }
        if let Some(f) = self.forward {
            f.shutdown(started + deadline).await;
        }
    }
}

/// How long in-flight requests may take to finish once shutdown starts: a quarter of
/// `shutdown_timeout`, at most 5 s; then open connections are closed by force.
fn connection_grace(shutdown_timeout: Duration) -> Duration {
    (shutdown_timeout / 4).min(Duration::from_secs(5))
}

/// Connections the admin endpoint serves at once (its own budget, apart from OTLP's).
const ADMIN_CONNECTIONS: usize = 64;
