//! OTLP metrics push (`exporters.otlp`): every `interval`, the families of
//! [`collect`](super::families::collect) as one `ExportMetricsServiceRequest`, over gRPC or
//! HTTP/protobuf. The resource is momentum itself; the observed pair rides on every data
//! point (the README's Exporters). Counters are cumulative monotonic sums starting at the series' start
//! time, summaries carry cumulative `count`/`sum` and windowed quantiles.
//!
//! Forwarding of the original telemetry, driven by the same config section, lives in
//! `forward.rs`; this module only pushes the derived metrics.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality, Gauge,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use super::families::{collect, Family, Kind, Value};
use super::push::{self, BuildError, ExportError, HttpClient, Spans, Target};
use crate::config::{ClientTlsConfig, OtlpExporterConfig, OtlpProtocol};
use crate::telemetry::{ExporterStats, Telemetry};

/// `service.name` of momentum's own resource.
pub const SERVICE_NAME: &str = "momentum";

/// `service.instance.id` of this process: a random UUID (version 4 layout), drawn once
/// per process start.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::BuildHasher;
        // Two independently keyed SipHashes of the start time and pid: 128 random bits
        // without a dependency for it.
        let seed = (
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            std::process::id(),
        );
        let hi = std::collections::hash_map::RandomState::new().hash_one(seed);
        let lo = std::collections::hash_map::RandomState::new().hash_one(seed);
        let b = ((u128::from(hi) << 64 | u128::from(lo)) & !(0xf << 76) & !(0x3 << 62))
            | (0x4 << 76)
            | (0x2 << 62);
        let h = format!("{b:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Momentum's own resource: `service.name`, `service.instance.id`, `service.version`.
pub fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", SERVICE_NAME),
            kv("service.instance.id", instance_id()),
            kv("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    }
}

/// One family as an OTLP metric, its points stamped `now_ns`.
fn metric(f: &Family, now_ns: u64) -> Metric {
    let attrs = |s: &super::families::Sample| -> Vec<KeyValue> {
        s.attrs.iter().map(|(k, v)| kv(k, v)).collect()
    };
    // A counter stream keeps one value type: integers when every value is whole.
    let ints = f.kind == Kind::Counter
        && f.samples.iter().all(|s| match s.value {
            Value::Number(v) => v.fract() == 0.0 && v.abs() < 9.0e15,
            Value::Summary { .. } => false,
        });
    let number = |s: &super::families::Sample, v: f64, start: u64| NumberDataPoint {
        attributes: attrs(s),
        start_time_unix_nano: start,
        time_unix_nano: now_ns,
        value: Some(if ints {
            number_data_point::Value::AsInt(v as i64)
        } else {
            number_data_point::Value::AsDouble(v)
        }),
        ..Default::default()
    };
    let data = match f.kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: f
                .samples
                .iter()
                .filter_map(|s| match s.value {
                    Value::Number(v) => Some(number(s, v, s.start_ns)),
                    Value::Summary { .. } => None,
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: f
                .samples
                .iter()
                .filter_map(|s| match s.value {
                    Value::Number(v) => Some(number(s, v, s.start_ns)),
                    Value::Summary { .. } => None,
                })
                .collect(),
        }),
        Kind::Summary => metric::Data::Summary(Summary {
            data_points: f
                .samples
                .iter()
                .filter_map(|s| match &s.value {
                    Value::Summary {
                        count,
                        sum,
                        quantiles,
                    } => Some(SummaryDataPoint {
                        attributes: attrs(s),
                        start_time_unix_nano: s.start_ns,
                        time_unix_nano: now_ns,
                        count: *count,
                        sum: *sum,
                        quantile_values: quantiles
                            .iter()
                            .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
                            .collect(),
                        ..Default::default()
                    }),
                    Value::Number(_) => None,
                })
                .collect(),
        }),
    };
    Metric {
        name: f.otlp.to_string(),
        description: f.help.to_string(),
        unit: f.unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

/// The families as one export request: momentum's resource, scope `momentum`.
pub fn to_request(families: &[Family], now_ns: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SERVICE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics: families.iter().map(|f| metric(f, now_ns)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Data points in a request (the exporter's item count).
pub fn data_points(req: &ExportMetricsServiceRequest) -> u64 {
    let mut n = 0;
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                n += match &m.data {
                    Some(metric::Data::Sum(s)) => s.data_points.len(),
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    Some(metric::Data::Summary(s)) => s.data_points.len(),
                    Some(metric::Data::Histogram(h)) => h.data_points.len(),
                    Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                    None => 0,
                };
            }
        }
    }
    n as u64
}

/// An OTLP metrics client, gRPC or HTTP/protobuf.
#[derive(Clone, Debug)]
pub enum Client {
    /// `MetricsService/Export`
    Grpc {
        /// the lazily connected channel
        client: MetricsServiceClient<Channel>,
        /// metadata sent with every request
        metadata: MetadataMap,
    },
    /// `POST {endpoint}/v1/metrics`
    Http {
        /// the pooled HTTP client
        client: HttpClient,
        /// full URL
        url: String,
        /// headers sent with every request (content type included)
        headers: HeaderMap,
    },
}

impl Client {
    /// A client for `endpoint` (`http://` or `https://`) with the exporter's client
    /// `tls`; `path` is its config key. The gRPC channel connects on first use, so a next
    /// hop that is down at start-up is not a start-up failure. Must be called on a tokio
    /// runtime.
    pub fn new(
        path: &str,
        endpoint: &str,
        protocol: OtlpProtocol,
        headers: HeaderMap,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Client, BuildError> {
        Ok(match protocol {
            OtlpProtocol::Grpc => Client::Grpc {
                client: MetricsServiceClient::new(channel(path, endpoint, tls)?),
                metadata: MetadataMap::from_headers(headers),
            },
            OtlpProtocol::Http => {
                let mut headers = headers;
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                Client::Http {
                    client: push::http_client(path, endpoint, tls)?,
                    url: format!("{}/v1/metrics", endpoint.trim_end_matches('/')),
                    headers,
                }
            }
        })
    }

    /// Where requests go.
    pub fn url(&self, endpoint: &str) -> String {
        match self {
            Client::Grpc { .. } => endpoint.to_string(),
            Client::Http { url, .. } => url.clone(),
        }
    }

    /// One export attempt; answers the data points the receiver rejected.
    pub async fn export(&self, req: &ExportMetricsServiceRequest) -> Result<u64, ExportError> {
        let resp = match self {
            Client::Grpc { client, metadata } => {
                let mut r = tonic::Request::new(req.clone());
                *r.metadata_mut() = metadata.clone();
                client
                    .clone()
                    .export(r)
                    .await
                    .map_err(grpc_error)?
                    .into_inner()
            }
            Client::Http {
                client,
                url,
                headers,
            } => {
                let body = Bytes::from(req.encode_to_vec());
                let (status, h, body) = push::post(client, url, headers, body).await?;
                if !status.is_success() {
                    return Err(push::status_error(status, &h, &body));
                }
                // An empty body is a full success; an undecodable one too, as far as we
                // can tell (the receiver said 2xx).
                ExportMetricsServiceResponse::decode(body).unwrap_or_default()
            }
        };
        Ok(resp.partial_success.map_or(0, |p| {
            if p.rejected_data_points > 0 {
                tracing::warn!(
                    "OTLP receiver rejected {} data points: {}",
                    p.rejected_data_points,
                    p.error_message
                );
            }
            p.rejected_data_points.max(0) as u64
        }))
    }
}

/// A lazily connected gRPC channel to `endpoint` over the exporter's connector (TLS for
/// `https://` or when `tls` is set, HTTP/2 by ALPN).
pub fn channel(
    path: &str,
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, BuildError> {
    let connector = push::connector(path, endpoint, tls, crate::tls::Alpn::H2)?;
    Ok(Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| BuildError::Endpoint {
            path: format!("{path}.endpoint"),
            message: e.to_string(),
        })?
        .connect_timeout(push::CONNECT_TIMEOUT)
        .connect_with_connector_lazy(connector))
}

/// gRPC statuses retryable per the OTLP specification; RESOURCE_EXHAUSTED only when the
/// server says when to come back.
fn grpc_error(s: tonic::Status) -> ExportError {
    use tonic::Code;
    use tonic_types::StatusExt;
    let retry_after = s.get_details_retry_info().and_then(|r| r.retry_delay);
    let message = format!("gRPC {:?}: {}", s.code(), s.message());
    match s.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable {
            message,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => ExportError::Retryable {
            message,
            retry_after,
        },
        _ => ExportError::Permanent(message),
    }
}

/// The OTLP metrics push exporter.
pub struct OtlpPush {
    target: Target,
    client: Client,
    telemetry: Telemetry,
    interval: Duration,
}

impl OtlpPush {
    /// Builds the exporter from `exporters.otlp`. Must be called on a tokio runtime.
    pub fn new(
        cfg: &OtlpExporterConfig,
        telemetry: Telemetry,
        stats: std::sync::Arc<ExporterStats>,
        spans: Spans,
    ) -> Result<OtlpPush, BuildError> {
        let client = Self::client(cfg)?;
        Ok(OtlpPush {
            target: Target {
                stats,
                url: client.url(&cfg.endpoint),
                spans,
            },
            client,
            telemetry,
            interval: Duration::from_nanos(cfg.interval.as_nanos()),
        })
    }

    /// The client of `exporters.otlp`: everything [`OtlpPush::new`] can refuse
    /// (`momentum validate` asks it too). Must be called on a tokio runtime.
    pub fn client(cfg: &OtlpExporterConfig) -> Result<Client, BuildError> {
        let headers = push::header_map("exporters.otlp.headers", &cfg.headers)?;
        Client::new(
            "exporters.otlp",
            &cfg.endpoint,
            cfg.protocol,
            headers,
            cfg.tls.as_ref(),
        )
    }

    /// Pushes every interval until `stop`, then once more.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let this = &self;
        push::every(self.interval, stop, |deadline| async move {
            let _ = this.push_once(deadline).await;
        })
        .await
    }

    /// One push of every family, retried until `deadline`.
    pub async fn push_once(&self, deadline: Instant) -> Result<(), ExportError> {
        let now = self.telemetry.shared.clock.now_ns();
        let req = collect(&self.telemetry, |families| to_request(families, now));
        self.target
            .send(data_points(&req), deadline, || self.client.export(&req))
            .await
    }
}

impl super::PushExporter for OtlpPush {
    type Config = OtlpExporterConfig;
    const NAME: &'static str = "otlp";

    fn config(config: &crate::config::Config) -> Option<&OtlpExporterConfig> {
        config.exporters.otlp.as_ref()
    }

    fn check(cfg: &OtlpExporterConfig) -> Result<(), BuildError> {
        OtlpPush::client(cfg).map(drop)
    }

    fn build(
        cfg: &OtlpExporterConfig,
        telemetry: Telemetry,
        stats: std::sync::Arc<ExporterStats>,
        spans: Spans,
    ) -> Result<Self, BuildError> {
        OtlpPush::new(cfg, telemetry, stats, spans)
    }

    fn run(
        self,
        stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        OtlpPush::run(self, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::families::Sample;

    fn fam(kind: Kind, samples: Vec<Sample<'static>>) -> Family<'static> {
        Family {
            otlp: "momentum.x",
            prom: "momentum_x",
            unit: "s",
            kind,
            help: "h",
            samples,
            exemplars: Vec::new(),
        }
    }

    fn sample(value: Value, start_ns: u64) -> Sample<'static> {
        Sample {
            attrs: smallvec::smallvec![("service.name", "a")],
            value,
            start_ns,
        }
    }

    #[test]
    fn instance_id_is_a_v4_uuid_and_stable_within_the_process() {
        let id = instance_id();
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{id}");
        assert!("89ab".contains(&parts[3][..1]), "{id}");
        assert_eq!(id, instance_id());
    }

    #[test]
    fn kinds_map_to_otlp_points() {
        let fams = [
            fam(Kind::Counter, vec![sample(Value::Number(3.0), 11)]),
            fam(Kind::Gauge, vec![sample(Value::Number(0.5), 0)]),
            fam(
                Kind::Summary,
                vec![sample(
                    Value::Summary {
                        count: 4,
                        sum: 2.5,
                        quantiles: vec![(0.5, 0.25), (0.9, 1.0)],
                    },
                    12,
                )],
            ),
        ];
        let req = to_request(&fams, 99);
        assert_eq!(data_points(&req), 3);
        let rm = &req.resource_metrics[0];
        assert_eq!(
            rm.resource.as_ref().unwrap().attributes[0],
            kv("service.name", "momentum")
        );
        let m = &rm.scope_metrics[0].metrics;
        assert_eq!(rm.scope_metrics[0].scope.as_ref().unwrap().name, "momentum");
        let Some(metric::Data::Sum(s)) = &m[0].data else {
            panic!("sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(s.data_points[0].start_time_unix_nano, 11);
        assert_eq!(s.data_points[0].time_unix_nano, 99);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(3))
        );
        assert_eq!(s.data_points[0].attributes, vec![kv("service.name", "a")]);
        let Some(metric::Data::Gauge(g)) = &m[1].data else {
            panic!("gauge")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.5))
        );
        let Some(metric::Data::Summary(s)) = &m[2].data else {
            panic!("summary")
        };
        let p = &s.data_points[0];
        assert_eq!((p.count, p.sum, p.start_time_unix_nano), (4, 2.5, 12));
        assert_eq!(
            p.quantile_values,
            vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: 0.25
                },
                ValueAtQuantile {
                    quantile: 0.9,
                    value: 1.0
                }
            ]
        );
        assert_eq!(m[2].unit, "s");
    }

    #[test]
    fn retryable_grpc_codes_follow_the_otlp_spec() {
        for c in [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded] {
            assert!(matches!(
                grpc_error(tonic::Status::new(c, "x")),
                ExportError::Retryable { .. }
            ));
        }
        for c in [
            tonic::Code::InvalidArgument,
            tonic::Code::Unauthenticated,
            tonic::Code::ResourceExhausted,
        ] {
            assert!(matches!(
                grpc_error(tonic::Status::new(c, "x")),
                ExportError::Permanent(_)
            ));
        }
    }
}
