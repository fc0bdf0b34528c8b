//! The section types of [`Config`](super::Config), each with the defaults of config/momentum.yaml.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use super::Duration;

/// `slos[].window` when left out.
pub const SLO_DEFAULT_WINDOW: Duration = Duration::from_days(30);

/// Push period of `exporters.remote_write` and `exporters.otlp` when left out.
pub const EXPORT_DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Push period of `telemetry.otlp` when left out.
pub const TELEMETRY_DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

const fn localhost(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// `receivers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiversConfig {
    /// `receivers.otlp`.
    pub otlp: OtlpReceiverConfig,
}

/// `receivers.otlp`: the OTLP/gRPC and OTLP/HTTP servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC listener.
    pub grpc: ListenConfig,
    /// OTLP/HTTP listener.
    pub http: ListenConfig,
    /// Largest request accepted, wire and decompressed, in MiB.
    pub max_request_mib: u64,
    /// Request bytes being read or decoded at once, all connections, in MiB; beyond it a
    /// request is refused (retryable) before its body is read.
    pub max_inflight_mib: u64,
    /// Connections served at once over both listeners; one beyond it is closed at once.
    pub max_connections: u64,
    /// HTTP/2 streams (requests) open at once on one connection.
    pub max_concurrent_streams: u64,
    /// Largest request head (HTTP/1.1 request line and headers, HTTP/2 header list), KiB.
    pub max_header_kib: u64,
    /// A connection's first byte, its TLS handshake and each HTTP/1.1 request head must
    /// arrive within this (slowloris).
    pub read_header_timeout: Duration,
    /// A request body must be read in full within this (streams that never send DATA).
    pub read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// TLS for both listeners; `None` = plaintext.
    pub tls: Option<TlsConfig>,
    /// Bearer-token auth for both listeners; `None` = open.
    pub auth: Option<AuthConfig>,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        OtlpReceiverConfig {
            grpc: ListenConfig {
                endpoint: localhost(4317),
            },
            http: ListenConfig {
                endpoint: localhost(4318),
            },
            max_request_mib: 16,
            max_inflight_mib: 256,
            max_connections: 1000,
            max_concurrent_streams: 1024,
            max_header_kib: 64,
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tls: None,
            auth: None,
        }
    }
}

/// A listening server's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenConfig {
    /// `ip:port`; port 0 lets the OS choose.
    pub endpoint: SocketAddr,
}

/// Server-side TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

/// Client-side TLS, for exporters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTlsConfig {
    /// PEM CA bundle to verify the server with; `None` = system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS; set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only: anyone on the path can read and
    /// change the data).
    pub insecure_skip_verify: bool,
}

/// Bearer-token authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// File of accepted tokens, one a line; reloaded on SIGHUP.
    pub bearer_tokens_file: PathBuf,
}

/// `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `ip:port` of the admin HTTP server.
    pub endpoint: SocketAddr,
    /// TLS; `None` = plaintext.
    pub tls: Option<TlsConfig>,
    /// Bearer-token auth; `None` = open.
    pub auth: Option<AuthConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            endpoint: localhost(9464),
            tls: None,
            auth: None,
        }
    }
}

/// `pipeline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Shard tasks; 0 = one per core.
    pub shards: usize,
    /// Queue per shard, in MiB, before backpressure.
    pub queue_capacity_mib: u64,
    /// Process-wide memory limit in MiB; 0 = off.
    pub memory_limit_mib: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            shards: 0,
            queue_capacity_mib: 64,
            memory_limit_mib: 0,
        }
    }
}

/// `limits`: every map keyed by input data is bounded; overflow is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// (service, environment) pairs; beyond: service `__overflow__`.
    pub max_services: usize,
    /// Per-operation series, process-wide; beyond: operation `__overflow__`.
    pub max_series: usize,
    /// Per-operation series of one pair; beyond: that pair's operation `__overflow__`.
    pub max_operations_per_service: usize,
    /// Versions remembered per pair, least recently seen evicted.
    pub max_versions: usize,
    /// CI pipelines; beyond: `cicd.pipeline.name` `__overflow__`.
    pub max_pipelines: usize,
    /// Cumulative-to-delta state for metrics-derived SLIs.
    pub max_metric_streams: usize,
    /// A series idle this long (event time) leaves the exports.
    pub series_idle: Duration,
    /// Identity values (service, environment, operation, version) are cut to this length.
    pub max_value_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_services: 2000,
            max_series: 20_000,
            max_operations_per_service: 500,
            max_versions: 100,
            max_pipelines: 1000,
            max_metric_streams: 20_000,
            series_idle: Duration::from_hours(1),
            max_value_bytes: 256,
        }
    }
}

/// `sli`.
#[derive(Debug, Clone, PartialEq)]
pub struct SliConfig {
    /// Bucket width, aligned to the Unix epoch.
    pub resolution: Duration,
    /// Event-time lateness tolerated before a bucket closes.
    pub allowed_lateness: Duration,
    /// Spans ending further than this past the wall clock are invalid.
    pub max_clock_skew: Duration,
    /// What names an operation.
    pub operation: OperationSource,
    /// Relative error bound of latency quantiles.
    pub latency_accuracy: f64,
}

impl Default for SliConfig {
    fn default() -> Self {
        SliConfig {
            resolution: Duration::from_secs(10),
            allowed_lateness: Duration::from_mins(2),
            max_clock_skew: Duration::from_mins(1),
            operation: OperationSource::SpanName,
            latency_accuracy: 0.01,
        }
    }
}

/// `sli.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationSource {
    /// `span_name`: the span's name.
    SpanName,
    /// `http.route`: the span's `http.route` attribute.
    HttpRoute,
}

/// One `slos[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SloConfig {
    /// Service name, or `*` for any.
    pub service: String,
    /// Environment, or `*` for any (the default); `""` is an ordinary environment.
    pub environment: String,
    /// The SLO (error budget) window.
    pub window: Duration,
    /// At least one objective.
    pub objectives: ObjectivesConfig,
}

impl SloConfig {
    /// The SLO applied when a config has no `slos` section.
    pub fn default_catch_all() -> SloConfig {
        SloConfig {
            service: "*".to_string(),
            environment: "*".to_string(),
            window: SLO_DEFAULT_WINDOW,
            objectives: ObjectivesConfig {
                availability: Some(99.9),
                latency: Some(LatencyObjective {
                    threshold: Duration::from_millis(300),
                    target: 99.0,
                }),
            },
        }
    }

    /// How specific this entry is when it matches `(service, environment)`, higher winning
    /// (the README's How it works: exact/exact 3, exact/`*` 2, `*`/exact 1, `*`/`*` 0); `None` if it does not.
    pub fn precedence(&self, service: &str, environment: &str) -> Option<u8> {
        let service_exact = match self.service.as_str() {
            "*" => false,
            s if s == service => true,
            _ => return None,
        };
        let environment_exact = match self.environment.as_str() {
            "*" => false,
            e if e == environment => true,
            _ => return None,
        };
        Some(2 * u8::from(service_exact) + u8::from(environment_exact))
    }
}

/// `slos[].objectives`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectivesConfig {
    /// Percent of requests without error, in (0, 100).
    pub availability: Option<f64>,
    /// Percent of requests at or under a latency threshold.
    pub latency: Option<LatencyObjective>,
}

/// `slos[].objectives.latency`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyObjective {
    /// A request taking exactly this long is good.
    pub threshold: Duration,
    /// Percent of requests at or under `threshold`, in (0, 100).
    pub target: f64,
}

/// `delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// An incident or rollback this soon after a deploy fails it.
    pub change_failure_window: Duration,
    /// A version not seen for this long no longer counts as reporting.
    pub rollback_quiet_period: Duration,
    /// Window for frequency, lead time, change failure ratio, time to restore.
    pub lookback: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            change_failure_window: Duration::from_hours(1),
            rollback_quiet_period: Duration::from_mins(10),
            lookback: Duration::from_days(30),
        }
    }
}

/// `momentum`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MomentumConfig {
    /// Component weights of the index.
    pub weights: WeightsConfig,
}

/// `momentum.weights`: each ≥ 0, not all 0.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsConfig {
    /// Deploy frequency.
    pub throughput: f64,
    /// Lead time for changes.
    pub lead_time: f64,
    /// Change failure ratio.
    pub stability: f64,
    /// Time to restore.
    pub recovery: f64,
    /// Error budget remaining.
    pub reliability: f64,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        WeightsConfig {
            throughput: 1.0,
            lead_time: 1.0,
            stability: 1.0,
            recovery: 1.0,
            reliability: 1.0,
        }
    }
}

impl WeightsConfig {
    /// The weights with their key names, in index-component order.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("throughput", self.throughput),
            ("lead_time", self.lead_time),
            ("stability", self.stability),
            ("recovery", self.recovery),
            ("reliability", self.reliability),
        ]
    }
}

/// `exporters`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportersConfig {
    /// Prometheus exposition on admin `/metrics`.
    pub prometheus: PrometheusConfig,
    /// Prometheus remote write; `None` unless configured.
    pub remote_write: Option<RemoteWriteConfig>,
    /// OTLP push of derived metrics and forwarding of originals; `None` unless configured.
    pub otlp: Option<OtlpExporterConfig>,
}

/// `exporters.prometheus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Serve derived metrics on admin `/metrics`.
    pub enabled: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig { enabled: true }
    }
}

/// `exporters.remote_write`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteConfig {
    /// `http(s)://` URL of the remote-write receiver.
    pub endpoint: String,
    /// Push period.
    pub interval: Duration,
    /// Client TLS; `None` = the URL scheme decides, with system roots.
    pub tls: Option<ClientTlsConfig>,
    /// Extra HTTP headers (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
}

/// `exporters.otlp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExporterConfig {
    /// `http(s)://` URL of the next hop.
    pub endpoint: String,
    /// Wire protocol.
    pub protocol: OtlpProtocol,
    /// Push period of derived metrics.
    pub interval: Duration,
    /// Signals whose original requests are forwarded unchanged (unique).
    pub forward: Vec<Signal>,
    /// Client TLS; `None` = the URL scheme decides, with system roots.
    pub tls: Option<ClientTlsConfig>,
    /// Extra headers (gRPC metadata or HTTP headers).
    pub headers: BTreeMap<String, String>,
    /// The bounded on-disk queue in front of the next hop.
    pub queue: QueueConfig,
}

/// `exporters.otlp.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP (protobuf).
    Http,
}

/// An OTLP signal, as named in `exporters.otlp.forward`.
pub use crate::signal::Signal;

/// `exporters.otlp.queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Largest queue size in MiB; beyond it new data is refused with backpressure.
    pub max_mib: u64,
    /// Directory the queue persists to (left out: `./data/queue`); `None` (`dir: null`)
    /// keeps the queue in memory only, so it does not survive a restart.
    pub dir: Option<PathBuf>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_mib: 1024,
            dir: Some(PathBuf::from("./data/queue")),
        }
    }
}

/// `archive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Root of the Hive-partitioned Parquet data sets.
    pub dir: PathBuf,
    /// Row granularity: a multiple of 1m and of `sli.resolution`.
    pub window: Duration,
    /// Also archive raw spans.
    pub spans: bool,
    /// Parquet compression codec.
    pub compression: Compression,
    /// Whole partitions older than this are deleted.
    pub retention: Duration,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            dir: PathBuf::from("./data/archive"),
            window: Duration::from_mins(1),
            spans: false,
            compression: Compression::Zstd,
            retention: Duration::from_days(400),
        }
    }
}

/// `archive.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// `zstd`.
    Zstd,
    /// `snappy`.
    Snappy,
    /// `none`.
    None,
}

/// `telemetry`: momentum's own metrics over OTLP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `telemetry.otlp`.
    pub otlp: TelemetryOtlpConfig,
}

/// `telemetry.otlp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryOtlpConfig {
    /// `http(s)://` URL to push to.
    pub endpoint: String,
    /// Push period.
    pub interval: Duration,
    /// Client TLS; `None` = the URL scheme decides, with system roots.
    pub tls: Option<ClientTlsConfig>,
    /// Extra headers (gRPC metadata), e.g. `authorization`.
    pub headers: BTreeMap<String, String>,
}
