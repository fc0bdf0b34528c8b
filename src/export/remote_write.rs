//! Prometheus remote write 1.0 (`exporters.remote_write`): every `interval`, the samples
//! of `/metrics` — the same names and labels, from the same families — as a snappy
//! block-compressed `prometheus.WriteRequest`.
//!
//! The four message types are declared here by hand (field numbers of Prometheus'
//! `prompb/remote.proto` and `types.proto`): generating them would need the proto files and
//! a build step for thirty lines.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;

use super::families::{collect, prom_label, Family, Kind, Value};
use super::push::{self, BuildError, ExportError, HttpClient, Spans, Target};
use crate::config::RemoteWriteConfig;
use crate::telemetry::{ExporterStats, Telemetry};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// one series per sample name and label set
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// type, help and unit per family
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// labels sorted by name, `__name__` included
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// samples in time order
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// label name
    #[prost(string, tag = "1")]
    pub name: String,
    /// label value
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// the value
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// `MetricType`: 1 counter, 2 gauge, 5 summary
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// the family name as `/metrics` writes it in `# TYPE`
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// help text
    #[prost(string, tag = "4")]
    pub help: String,
    /// unit
    #[prost(string, tag = "5")]
    pub unit: String,
}

const COUNTER: i32 = 1;
const GAUGE: i32 = 2;
const SUMMARY: i32 = 5;

fn series(name: &str, mut labels: Vec<Label>, value: f64, ts_ms: i64) -> TimeSeries {
    labels.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels,
        samples: vec![Sample {
            value,
            timestamp: ts_ms,
        }],
    }
}

/// The families as one write request: the samples `/metrics` shows (counters with
/// `_total`, summaries as `{quantile=…}`, `_sum` and `_count`), all stamped `ts_ms`.
pub fn to_request(families: &[Family], ts_ms: i64) -> WriteRequest {
    let mut w = WriteRequest::default();
    for f in families {
        w.metadata.push(MetricMetadata {
            r#type: match f.kind {
                Kind::Counter => COUNTER,
                Kind::Gauge => GAUGE,
                Kind::Summary => SUMMARY,
            },
            metric_family_name: f.prom.to_string(),
            help: f.help.to_string(),
            unit: if f.prom.ends_with("_seconds") {
                "seconds".into()
            } else {
                String::new()
            },
        });
        for s in &f.samples {
            let labels: Vec<Label> = s
                .attrs
                .iter()
                .map(|(k, v)| Label {
                    name: prom_label(k),
                    value: v.to_string(),
                })
                .collect();
            match &s.value {
                Value::Number(v) => w.timeseries.push(series(f.prom, labels, *v, ts_ms)),
                Value::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    for (q, v) in quantiles {
                        let mut l = labels.clone();
                        l.push(Label {
                            name: "quantile".into(),
                            value: q.to_string(),
                        });
                        w.timeseries.push(series(f.prom, l, *v, ts_ms));
                    }
                    let sum_name = format!("{}_sum", f.prom);
                    w.timeseries
                        .push(series(&sum_name, labels.clone(), *sum, ts_ms));
                    let count_name = format!("{}_count", f.prom);
                    w.timeseries
                        .push(series(&count_name, labels, *count as f64, ts_ms));
                }
            }
        }
    }
    w
}

/// The snappy-compressed protobuf body.
pub fn encode(req: &WriteRequest) -> Result<Bytes, snap::Error> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .map(Bytes::from)
}

/// The remote-write exporter.
pub struct RemoteWrite {
    target: Target,
    client: HttpClient,
    url: String,
    headers: HeaderMap,
    telemetry: Telemetry,
    interval: Duration,
}

impl RemoteWrite {
    /// Builds the exporter from `exporters.remote_write`.
    pub fn new(
        cfg: &RemoteWriteConfig,
        telemetry: Telemetry,
        stats: Arc<ExporterStats>,
        spans: Spans,
    ) -> Result<RemoteWrite, BuildError> {
        let (client, mut headers) = Self::client(cfg)?;
        for (k, v) in [
            ("content-encoding", "snappy"),
            ("content-type", "application/x-protobuf"),
            ("x-prometheus-remote-write-version", "0.1.0"),
            (
                "user-agent",
                concat!("momentum/", env!("CARGO_PKG_VERSION")),
            ),
        ] {
            headers.insert(k, HeaderValue::from_static(v));
        }
        Ok(RemoteWrite {
            target: Target {
                stats,
                url: cfg.endpoint.clone(),
                spans,
            },
            client,
            url: cfg.endpoint.clone(),
            headers,
            telemetry,
            interval: Duration::from_nanos(cfg.interval.as_nanos()),
        })
    }

    /// The client and configured headers of `exporters.remote_write`: everything
    /// [`RemoteWrite::new`] can refuse (`momentum validate` asks it too).
    pub fn client(cfg: &RemoteWriteConfig) -> Result<(HttpClient, HeaderMap), BuildError> {
        let client = push::http_client("exporters.remote_write", &cfg.endpoint, cfg.tls.as_ref())?;
        let headers = push::header_map("exporters.remote_write.headers", &cfg.headers)?;
        Ok((client, headers))
    }

    /// Pushes every interval until `stop`, then once more.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let this = &self;
        push::every(self.interval, stop, |deadline| async move {
            let _ = this.push_once(deadline).await;
        })
        .await
    }

    /// One push of every sample, retried (5xx, 429, transport errors) until `deadline`.
    pub async fn push_once(&self, deadline: Instant) -> Result<(), ExportError> {
        let ts_ms = (self.telemetry.shared.clock.now_ns() / 1_000_000) as i64;
        let req = collect(&self.telemetry, |families| to_request(families, ts_ms));
        let items = req.timeseries.len() as u64;
        let body = match encode(&req) {
            Ok(b) => b,
            Err(e) => {
                // Nothing to retry: the same input compresses the same way.
                let msg = format!("snappy: {e}");
                return self
                    .target
                    .send(items, deadline, || {
                        let msg = msg.clone();
                        async move { Err(ExportError::Permanent(msg)) }
                    })
                    .await;
            }
        };
        self.target
            .send(items, deadline, || async {
                let (status, h, b) =
                    push::post(&self.client, &self.url, &self.headers, body.clone()).await?;
                if status.is_success() {
                    Ok(0)
                } else {
                    Err(push::status_error(status, &h, &b))
                }
            })
            .await
    }
}

impl super::PushExporter for RemoteWrite {
    type Config = RemoteWriteConfig;
    const NAME: &'static str = "remote_write";

    fn config(config: &crate::config::Config) -> Option<&RemoteWriteConfig> {
        config.exporters.remote_write.as_ref()
    }

    fn check(cfg: &RemoteWriteConfig) -> Result<(), BuildError> {
        RemoteWrite::client(cfg).map(drop)
    }

    fn build(
        cfg: &RemoteWriteConfig,
        telemetry: Telemetry,
        stats: Arc<ExporterStats>,
        spans: Spans,
    ) -> Result<Self, BuildError> {
        RemoteWrite::new(cfg, telemetry, stats, spans)
    }

    fn run(
        self,
        stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        RemoteWrite::run(self, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::families::Sample as FSample;
    use crate::export::prometheus::render_families;

    fn families() -> Vec<Family<'static>> {
        let a =
            |pairs: &[(&'static str, &'static str)]| -> crate::export::families::Attrs<'static> {
                pairs.iter().copied().collect()
            };
        vec![
            Family {
                otlp: "momentum.sli.requests",
                prom: "momentum_sli_requests_total",
                unit: "{request}",
                kind: Kind::Counter,
                help: "r",
                samples: vec![FSample {
                    attrs: a(&[
                        ("service.name", "checkout"),
                        ("deployment.environment.name", "prod"),
                    ]),
                    value: Value::Number(42.0),
                    start_ns: 1,
                }],
                exemplars: Vec::new(),
            },
            Family {
                otlp: "momentum.sli.latency",
                prom: "momentum_sli_latency_seconds",
                unit: "s",
                kind: Kind::Summary,
                help: "l",
                samples: vec![FSample {
                    attrs: a(&[("service.name", "checkout"), ("window", "5m")]),
                    value: Value::Summary {
                        count: 42,
                        sum: 4.5,
                        quantiles: vec![(0.5, 0.1), (0.999, 0.75)],
                    },
                    start_ns: 1,
                }],
                exemplars: Vec::new(),
            },
            Family {
                otlp: "momentum.pipeline.queue_depth",
                prom: "momentum_pipeline_queue_depth",
                unit: "By",
                kind: Kind::Gauge,
                help: "q",
                samples: vec![FSample {
                    attrs: Default::default(),
                    value: Value::Number(0.0),
                    start_ns: 0,
                }],
                exemplars: Vec::new(),
            },
        ]
    }

    /// `name{k="v",…} value` lines with labels in name order, as a sorted list.
    fn from_exposition(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let (name, labels) = series.split_once('{').unwrap_or((series, ""));
                let mut labels: Vec<&str> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .collect();
                labels.sort();
                format!(
                    "{name}{{{}}} {}",
                    labels.join(","),
                    value.parse::<f64>().unwrap()
                )
            })
            .collect();
        out.sort();
        out
    }

    fn from_write(w: &WriteRequest) -> Vec<String> {
        let mut out: Vec<String> = w
            .timeseries
            .iter()
            .map(|t| {
                let name = &t
                    .labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .unwrap()
                    .value;
                let labels: Vec<String> = t
                    .labels
                    .iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| format!("{}=\"{}\"", l.name, l.value))
                    .collect();
                format!("{name}{{{}}} {}", labels.join(","), t.samples[0].value)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn samples_are_exactly_those_of_the_exposition() {
        let f = families();
        let w = to_request(&f, 1_700_000_000_000);
        assert_eq!(from_write(&w), from_exposition(&render_families(&f, false)));
        assert_eq!(w.timeseries.len(), 6);
        for t in &w.timeseries {
            let names: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "labels sorted by name");
            assert_eq!(t.samples[0].timestamp, 1_700_000_000_000);
        }
        assert_eq!(w.metadata.len(), 3);
        assert_eq!(w.metadata[1].r#type, SUMMARY);
    }

    #[test]
    fn body_is_snappy_block_compressed_protobuf() {
        let w = to_request(&families(), 5);
        let body = encode(&w).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(raw.as_slice()).unwrap(), w);
    }
}
