//! Router and shards: hash(service, environment) → one shard task that owns all state
//! of that pair. Receivers hand owned batches to the router; nothing on this path
//! takes a lock.

pub mod checkpoint;
pub mod clock;
pub mod router;
pub mod shard;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::Config;
use clock::{Clock, FleetClock};

/// Runtime numbers derived once from the config (nanoseconds, counts).
#[derive(Clone, Debug)]
pub struct Settings {
    /// bucket width
    pub resolution: u64,
    /// event-time lateness tolerated
    pub lateness: u64,
    /// spans ending further than this after the wall clock are invalid
    pub skew: u64,
    /// quantile relative accuracy
    pub accuracy: f64,
    /// operation = http.route (when present) instead of the span name
    pub operation_from_route: bool,
    /// (service, environment) pairs, process-wide
    pub max_services: usize,
    /// per-operation series, process-wide
    pub max_series: usize,
    /// per-operation series of one pair
    pub max_ops_per_pair: usize,
    /// cumulative metric streams, process-wide
    pub max_metric_streams: usize,
    /// a series idle this long (event time) leaves the exports
    pub series_idle: u64,
    /// longest SLO window of any objective (windows state is sized for it)
    pub longest_window: u64,
    /// one-minute sub-windows kept per series
    pub keep_minutes: u64,
    /// archive window width (ns)
    pub archive_window: u64,
    /// delivery lookback (ns): time to restore and delivery rates look this far back
    pub lookback: u64,
    /// deployment rules
    pub delivery: crate::delivery::deployments::Rules,
    /// momentum index weights
    pub weights: crate::delivery::index::Weights,
    /// per-shard queue capacity in bytes
    pub queue_capacity: u64,
    /// memory limit in bytes (0 = off)
    pub memory_limit: u64,
    /// the config, for per-pair objective lookups
    pub config: Arc<Config>,
    /// where a pair evicted from a full table keeps its state until it reports again
    /// (`<archive.dir>/state/pairs`; `None`: an evicted pair's state is dropped)
    pub evict_dir: Option<std::path::PathBuf>,
}

impl Settings {
    /// Derives the runtime settings from a validated config.
    pub fn from_config(config: Arc<Config>) -> Self {
        let c = &config;
        let longest = c
            .slos
            .iter()
            .map(|s| s.window.as_nanos())
            .max()
            .unwrap_or(0);
        let lateness = c.sli.allowed_lateness.as_nanos();
        let skew = c.sli.max_clock_skew.as_nanos();
        let archive_minutes = c.archive.window.as_nanos() / clock_min();
        let keep_minutes = 5 + archive_minutes + (lateness + skew).div_ceil(clock_min()) + 1;
        Settings {
            resolution: c.sli.resolution.as_nanos(),
            lateness,
            skew,
            accuracy: c.sli.latency_accuracy,
            operation_from_route: c.sli.operation == crate::config::OperationSource::HttpRoute,
            max_services: c.limits.max_services,
            max_series: c.limits.max_series,
            max_ops_per_pair: c.limits.max_operations_per_service,
            max_metric_streams: c.limits.max_metric_streams,
            series_idle: c.limits.series_idle.as_nanos(),
            longest_window: longest,
            keep_minutes,
            archive_window: c.archive.window.as_nanos(),
            lookback: c.delivery.lookback.as_nanos(),
            weights: crate::delivery::index::Weights::from(&c.momentum.weights),
            delivery: crate::delivery::deployments::Rules {
                change_failure_window: c.delivery.change_failure_window.as_nanos(),
                quiet: c.delivery.rollback_quiet_period.as_nanos(),
                lookback: c.delivery.lookback.as_nanos(),
                max_versions: c.limits.max_versions,
                max_pipelines: c.limits.max_pipelines,
            },
            queue_capacity: c.pipeline.queue_capacity_mib * 1024 * 1024,
            memory_limit: c.pipeline.memory_limit_mib * 1024 * 1024,
            evict_dir: Some(c.archive.dir.join("state").join("pairs")),
            config,
        }
    }

    /// The latency objective's threshold (ns) for a pair, if its objective has one.
    pub fn latency_threshold(&self, service: &str, environment: &str) -> Option<u64> {
        self.config
            .slo_for(service, environment)
            .and_then(|s| s.objectives.latency.as_ref())
            .map(|l| l.threshold.as_nanos())
    }
}

const fn clock_min() -> u64 {
    60 * 1_000_000_000
}

/// Process-wide state shared by receivers and shards: clocks, limits, counters. All
/// atomics, touched once per request or batch, never per span.
pub struct Shared {
    /// the injected wall clock
    pub clock: Arc<dyn Clock>,
    /// the fleet clock F
    pub fleet: FleetClock,
    /// pairs created (against `max_services`)
    pub pairs: AtomicUsize,
    /// per-operation series alive (against `max_series`)
    pub series: AtomicUsize,
    /// cumulative metric streams held (against `max_metric_streams`)
    pub metric_streams: AtomicUsize,
    /// when the process started (Unix ns): cumulative metric streams that started
    /// earlier only set a baseline
    pub started_ns: u64,
    /// self-telemetry counters
    pub counters: Counters,
    /// `pipeline.memory_limit_mib`: refuses from 90 % of it, admits again below 80 %
    pub memory: MemoryGate,
    /// revision → earliest pipeline run start, across all pairs (lead time)
    pub revisions: crate::delivery::deployments::RevisionIndex,
}

impl Shared {
    /// New shared state around a clock, for the event-time settings of `set`.
    pub fn new(clock: Arc<dyn Clock>, set: &Settings) -> Arc<Self> {
        let started_ns = clock.now_ns();
        Arc::new(Shared {
            clock,
            fleet: FleetClock::new(set.lateness, started_ns),
            pairs: AtomicUsize::new(0),
            series: AtomicUsize::new(0),
            metric_streams: AtomicUsize::new(0),
            started_ns,
            counters: Counters::default(),
            memory: MemoryGate::new(set.memory_limit),
            revisions: Default::default(),
        })
    }
}

/// The memory limit (`pipeline.memory_limit_mib`), as the OpenTelemetry Collector's
/// memory_limiter with its soft and hard limits: the heap in use (from the counting
/// allocator, [`crate::alloc`]) plus the request bytes in flight; new data is refused
/// from 90 % of the limit and admitted again below 80 %. It measures what a burst leaves
/// behind in use, not what the allocator keeps, so an idle process never refuses.
#[derive(Debug)]
pub struct MemoryGate {
    limit: u64,
    refusing: std::sync::atomic::AtomicBool,
}

impl MemoryGate {
    /// A gate for `limit` bytes (0: off).
    pub fn new(limit: u64) -> Self {
        MemoryGate {
            limit,
            refusing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a decoded request may be admitted (the soft limit, with hysteresis).
    pub fn admits(&self) -> bool {
        let Some(used) = crate::alloc::heap().filter(|_| self.limit > 0) else {
            return true;
        };
        if self.refusing.load(Ordering::Relaxed) {
            if used < self.limit / 10 * 8 {
                self.refusing.store(false, Ordering::Relaxed);
                return true;
            }
            return false;
        }
        if used > self.limit / 10 * 9 {
            self.refusing.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The limit in bytes (0: off).
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Self-telemetry counters (the README's Exporters), process-wide.
#[derive(Debug, Default)]
pub struct Counters {
    /// accepted spans by transport: grpc, http
    pub accepted_grpc: AtomicU64,
    /// accepted over HTTP
    pub accepted_http: AtomicU64,
    /// pairs evicted from a full table (their state kept on disk)
    pub evicted_service: AtomicU64,
    /// pairs evicted whose state could not be kept
    pub evicted_lost: AtomicU64,
    /// spans processed by shards
    pub processed: AtomicU64,
    /// spans that fell in closed buckets
    pub late: AtomicU64,
    /// spans invalid on receipt
    pub invalid: AtomicU64,
    /// overflow by kind: service, operation, version, pipeline, metric_stream
    pub overflow_service: AtomicU64,
    /// operation overflow
    pub overflow_operation: AtomicU64,
    /// accepted metric data points
    pub accepted_metric_points: AtomicU64,
    /// accepted log records
    pub accepted_log_records: AtomicU64,
    /// log records carrying deployment.id / deployment.status
    pub deployment_log_records: AtomicU64,
    /// explicit deployment records routed to a shard with no time or in the future
    pub invalid_records: AtomicU64,
    /// duration-histogram points behind the watermark
    pub late_metric_points: AtomicU64,
    /// duration-histogram points invalid on receipt (in the future, or before their start)
    pub invalid_metric_points: AtomicU64,
    /// points whose stream could not be tracked (`max_metric_streams`)
    pub overflow_metric_stream: AtomicU64,
    /// cicd.pipeline.run.duration points left out: spans of the pipeline won
    pub superseded_run_points: AtomicU64,
    /// duration-histogram points used for SLIs
    pub sli_metric_points: AtomicU64,
    /// duration-histogram points with a unit that is not a duration
    pub unusable_metric_points: AtomicU64,
    /// time shards spent waiting for room in the archive writer's channel (ns)
    pub archive_blocked_ns: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}
