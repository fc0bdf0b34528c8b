//! Momentum's own telemetry over OTLP (`telemetry.otlp`), like the Collector's
//! `service.telemetry`: every `interval`, the self-telemetry families (receiver, pipeline,
//! series and exporter counters) as OTLP metrics, and traces of the export calls through
//! the OpenTelemetry SDK (`opentelemetry_sdk` batch processor, `opentelemetry-otlp` gRPC
//! exporter), one export call in [`SAMPLE_EVERY`] sampled.
//!
//! The metrics go through the same rendering as the OTLP push ([`super::otlp`]) rather
//! than the SDK's metric instruments: they already exist as cumulative counters with
//! start times, and mirroring each one into an SDK instrument would only copy them.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::trace::{
    Link, SpanKind, TraceContextExt, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SamplingDecision, SamplingResult, SdkTracerProvider,
    ShouldSample, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use tokio::sync::watch;

use super::families::collect_self;
use super::otlp::{self, data_points, to_request, Client};
use super::push::{self, BuildError, Spans, Target};
use crate::config::{OtlpProtocol, TelemetryConfig};
use crate::telemetry::{ExporterStats, Telemetry};

/// One export call in this many is traced (the first one included).
pub const SAMPLE_EVERY: u64 = 10;

/// Samples one root span in `n`, counting, so a quiet process still shows its first
/// export call and a busy one sends a tenth.
#[derive(Clone, Debug)]
struct EveryNth {
    n: u64,
    seen: Arc<AtomicU64>,
}

impl ShouldSample for EveryNth {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let i = self.seen.fetch_add(1, Ordering::Relaxed);
        SamplingResult {
            decision: if i % self.n == 0 {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: parent.map_or_else(TraceState::default, |c| {
                c.span().span_context().trace_state().clone()
            }),
        }
    }
}

/// Runs the SDK's OTLP exporter on the process's tokio runtime: the SDK's batch processor
/// exports from a thread of its own, where tonic would find no reactor.
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime").finish_non_exhaustive()
    }
}

impl SpanExporter for OnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before the exporter is shared.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// Momentum's own telemetry: the tracer provider and the self-metrics push.
pub struct OwnTelemetry {
    provider: SdkTracerProvider,
    client: Client,
    target: Target,
    telemetry: Telemetry,
    interval: Duration,
}

impl OwnTelemetry {
    /// Builds the SDK pipeline and the metrics client for `telemetry.otlp` (gRPC). Must be
    /// called on the tokio runtime that will carry the exports.
    /// The headers and metrics client of `telemetry.otlp`: what [`OwnTelemetry::new`] can
    /// refuse (`momentum validate` asks it too; the span exporter shares the channel
    /// rules). Must be called on a tokio runtime.
    pub fn client(cfg: &TelemetryConfig) -> Result<(HeaderMap, Client), BuildError> {
        let tls = cfg.otlp.tls.as_ref();
        let headers = push::header_map("telemetry.otlp.headers", &cfg.otlp.headers)?;
        let client = Client::new(
            "telemetry.otlp",
            &cfg.otlp.endpoint,
            OtlpProtocol::Grpc,
            headers.clone(),
            tls,
        )?;
        Ok((headers, client))
    }

    pub fn new(cfg: &TelemetryConfig, telemetry: Telemetry) -> Result<OwnTelemetry, BuildError> {
        let endpoint = &cfg.otlp.endpoint;
        let path = "telemetry.otlp";
        let tls = cfg.otlp.tls.as_ref();
        let (headers, client) = Self::client(cfg)?;
        let interval = Duration::from_nanos(cfg.otlp.interval.as_nanos());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(otlp::channel(path, endpoint, tls)?)
            .with_metadata(tonic::metadata::MetadataMap::from_headers(headers))
            .with_timeout(interval.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| BuildError::Endpoint {
                path: format!("{path}.endpoint"),
                message: e.to_string(),
            })?;
        let processor = BatchSpanProcessor::builder(OnRuntime {
            inner: Arc::new(exporter),
            runtime: tokio::runtime::Handle::current(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(interval)
                .build(),
        )
        .build();
        // The same resource as the metrics, so a backend joins both to one instance.
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", otlp::SERVICE_NAME),
                KeyValue::new("service.instance.id", otlp::instance_id()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(EveryNth {
                n: SAMPLE_EVERY,
                seen: Arc::default(),
            })
            .with_span_processor(processor)
            .build();
        let spans = Spans(Some(provider.tracer("momentum")));
        Ok(OwnTelemetry {
            provider,
            target: Target {
                // Not listed in the exporter families: those describe where the data goes,
                // this is momentum watching itself; failures are logged.
                stats: ExporterStats::new("telemetry"),
                url: client.url(endpoint),
                spans,
            },
            client,
            telemetry,
            interval,
        })
    }

    /// The tracer of export calls, for the exporters.
    pub fn spans(&self) -> Spans {
        self.target.spans.clone()
    }

    /// Pushes the self-metrics every interval until `stop`, then once more, and flushes
    /// the sampled spans.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let OwnTelemetry {
            provider,
            client,
            target,
            telemetry,
            interval,
        } = self;
        push::every(interval, stop, |deadline| {
            let req = to_request(&collect_self(&telemetry), telemetry.shared.clock.now_ns());
            let (client, target) = (&client, &target);
            async move {
                let _ = target
                    .send(data_points(&req), deadline, || client.export(&req))
                    .await;
            }
        })
        .await;
        drop(target);
        // Shutdown blocks until the batch thread has exported, and that export runs on
        // this runtime: keep it off the async workers.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!("flushing momentum's own traces failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_samples_the_first_and_then_one_in_n() {
        let s = EveryNth {
            n: 3,
            seen: Arc::default(),
        };
        let decisions: Vec<bool> = (0..7)
            .map(|_| {
                s.should_sample(None, TraceId::INVALID, "x", &SpanKind::Client, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample
            })
            .collect();
        assert_eq!(decisions, [true, false, false, true, false, false, true]);
    }
}
