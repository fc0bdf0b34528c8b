//! OTLP receivers (gRPC and HTTP) and what they share: decompression with limits,
//! validation, admission, and the README's status table (Endpoints).

pub mod decode;
pub mod grpc;
pub mod http;
pub mod inflight;
pub mod json;

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::export::forward::{Forwarder, QueueFull, Reservation, Written};
use crate::model::flags;
use crate::pipeline::router::{plan_metrics, plan_records, plan_traces, Admission, Refusal};
use crate::pipeline::{Counters, Settings, Shared};
use decode::{decode_traces, DecodeOptions};

/// Which OTLP signal a request carries.
pub use crate::signal::{Reason, RefusalCounters, Signal, Transport};

/// A refused request: the reason and a one-sentence message for the client.
#[derive(Clone, Debug)]
pub struct Refused {
    /// why
    pub reason: Reason,
    /// what to tell the client
    pub message: String,
}

impl Refused {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Refused {
            reason,
            message: message.into(),
        }
    }
}

/// What an accepted request reports back (OTLP `partial_success`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// items rejected as invalid (still counted as accepted and invalid)
    pub rejected: u64,
    /// why, when `rejected > 0`
    pub message: String,
}

/// The transport-independent part of the receivers.
pub struct Receiver {
    admission: Arc<dyn Admission>,
    set: Arc<Settings>,
    shared: Arc<Shared>,
    /// wire and decompressed size limit
    pub max_bytes: usize,
    opts: DecodeOptions,
    /// refusals
    pub refused: Arc<RefusalCounters>,
    /// the forward queue, when `exporters.otlp.forward` lists any signal
    forward: Option<Arc<Forwarder>>,
    /// the `spans` data set, when `archive.spans: true`
    span_archive: Option<crate::archive::spans::SpanArchiver>,
    /// request bytes being read or decoded (`receivers.otlp.max_inflight_mib`)
    pub inflight: Arc<inflight::Inflight>,
    /// the accepted bearer tokens, when `receivers.otlp.auth` is set
    auth: Option<Arc<crate::auth::Tokens>>,
    /// a body must be read within this (`receivers.otlp.read_timeout`)
    read_timeout: std::time::Duration,
}

impl Receiver {
    /// A receiver feeding `admission` (the router) and, for the signals it forwards,
    /// `forward`.
    pub fn new(
        admission: Arc<dyn Admission>,
        set: Arc<Settings>,
        shared: Arc<Shared>,
        refused: Arc<RefusalCounters>,
        forward: Option<Arc<Forwarder>>,
    ) -> Self {
        let c = &set.config;
        let inflight = inflight::Inflight::new(
            c.receivers
                .otlp
                .max_inflight_mib
                .saturating_mul(1024 * 1024),
            set.memory_limit,
        );
        let max_bytes = (c.receivers.otlp.max_request_mib as usize).saturating_mul(1024 * 1024);
        let opts = DecodeOptions {
            max_value_bytes: c.limits.max_value_bytes,
        };
        let read_timeout =
            std::time::Duration::from_nanos(c.receivers.otlp.read_timeout.as_nanos());
        Receiver {
            max_bytes,
            opts,
            admission,
            set,
            shared,
            refused,
            forward,
            span_archive: None,
            inflight,
            auth: None,
            read_timeout,
        }
    }

    /// Reads a request body as [`inflight::read_body`] does, within `read_timeout`: a
    /// client that never sends (or never finishes) its body cannot hold a stream and its
    /// in-flight bytes for longer.
    pub async fn read_body(
        &self,
        body: axum::body::Body,
        declared: Option<u64>,
        limit: usize,
        held: &mut inflight::Held,
    ) -> Result<Bytes, inflight::ReadError> {
        let t = self.read_timeout;
        match tokio::time::timeout(t, inflight::read_body(body, declared, limit, held)).await {
            Ok(r) => r,
            Err(_) => Err(inflight::ReadError::Transport(format!(
                "the body did not arrive within receivers.otlp.read_timeout ({t:?})"
            ))),
        }
    }

    /// Requires a bearer token of `tokens` on every request.
    pub fn with_auth(mut self, tokens: Arc<crate::auth::Tokens>) -> Self {
        self.auth = Some(tokens);
        self
    }

    /// Checks the bearer token before anything of the request is read: a refusal is
    /// counted (as one span: nothing of the body is known) and says nothing about which
    /// part failed.
    pub fn authenticate(&self, headers: &::http::HeaderMap) -> Result<(), Refused> {
        match &self.auth {
            Some(t) if !t.allows(headers) => {
                self.count_refused(Reason::Unauthenticated, None);
                Err(Refused::new(
                    Reason::Unauthenticated,
                    "missing or invalid bearer token",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Counts and answers a request refused before its body was read (its spans cannot
    /// be known yet: it counts as one): the in-flight budget is spent, or its bytes would
    /// take the process over the memory limit.
    pub fn busy(&self, why: inflight::Busy) -> Refused {
        let (reason, message) = match why {
            inflight::Busy::Inflight => (
                Reason::Backpressure,
                "request bytes in flight over receivers.otlp.max_inflight_mib: retry later",
            ),
            inflight::Busy::Memory => (
                Reason::MemoryLimit,
                "over pipeline.memory_limit_mib: retry later",
            ),
        };
        self.count_refused(reason, None);
        Refused::new(reason, message)
    }

    /// Holds `total` bytes of the in-flight budget for a request (its decompressed body
    /// on top of the wire bytes), or counts and answers the refusal.
    pub fn hold(&self, held: &mut inflight::Held, total: u64) -> Result<(), Refused> {
        held.reach(total).map_err(|why| self.busy(why))
    }

    /// Archives the spans of every accepted trace request (`archive.spans: true`).
    pub fn with_span_archive(mut self, a: crate::archive::spans::SpanArchiver) -> Self {
        self.span_archive = Some(a);
        self
    }

    /// Counts a refusal: `spans` when known (0 for a metrics or logs request), else the
    /// request counts as one span (its span count cannot be known when it does not
    /// decode).
    pub fn count_refused(&self, reason: Reason, spans: Option<u64>) {
        let i = reason.index();
        Counters::add(&self.refused.spans[i], spans.unwrap_or(1));
        Counters::add(&self.refused.requests[i], 1);
    }

    /// Counts and answers a refusal by the admission (`spans` spans in the request).
    fn refusal(&self, r: Refusal, spans: u64) -> Refused {
        let reason = match r {
            Refusal::Backpressure => Reason::Backpressure,
            Refusal::MemoryLimit => Reason::MemoryLimit,
        };
        self.count_refused(reason, Some(spans));
        Refused::new(reason, format!("{r}: retry later"))
    }

    /// Decompresses a body per its content encoding, bounded by the size limit.
    pub fn decompress(&self, encoding: Option<&str>, body: Bytes) -> Result<Bytes, Refused> {
        let r = decompress(encoding, body, self.max_bytes);
        if let Err(e) = &r {
            self.count_refused(e.reason, None);
        }
        r
    }

    /// Handles an export of `signal` whose body is decompressed protobuf.
    pub fn export(
        &self,
        signal: Signal,
        body: Bytes,
        transport: Transport,
    ) -> Result<Accepted, Refused> {
        self.export_written(signal, body, transport).map(|(a, _)| a)
    }

    /// [`Receiver::export`], and — when the request is forwarded through the disk queue
    /// — what to wait for before answering the client: the queue's write of it.
    pub fn export_written(
        &self,
        signal: Signal,
        body: Bytes,
        transport: Transport,
    ) -> Result<(Accepted, Option<Written>), Refused> {
        match signal {
            Signal::Traces => self.traces(body, transport),
            Signal::Metrics => self.metrics(body, transport),
            Signal::Logs => self.logs(body, transport),
        }
    }

    /// Reserves room for `body` in the forward queue when `signal` is forwarded: the
    /// first half of all-or-nothing admission (the README's Endpoints table). A refusal is counted here as
    /// backpressure with `spans` spans.
    fn reserve_forward(
        &self,
        signal: Signal,
        body: &Bytes,
        spans: u64,
    ) -> Result<Option<Reservation<'_>>, Refused> {
        let Some(f) = self.forward.as_deref().filter(|f| f.forwards(signal)) else {
            return Ok(None);
        };
        match f.reserve(signal, body.len()) {
            Ok(r) => Ok(Some(r)),
            Err(QueueFull) => {
                self.count_refused(Reason::Backpressure, Some(spans));
                Err(Refused::new(
                    Reason::Backpressure,
                    "forward queue full: retry later",
                ))
            }
        }
    }

    fn traces(
        &self,
        body: Bytes,
        transport: Transport,
    ) -> Result<(Accepted, Option<Written>), Refused> {
        // The original bytes, for forwarding (a reference count, not a copy).
        let raw = body.clone();
        let mut batch = match decode_traces(body, &self.opts) {
            Ok(b) => b,
            Err(e) => {
                self.count_refused(Reason::Decode, None);
                return Err(Refused::new(
                    Reason::Decode,
                    format!("cannot decode ExportTraceServiceRequest: {e}"),
                ));
            }
        };
        let now = self.shared.clock.now_ns();
        let v = validate_spans(&mut batch, now, self.set.skew);
        let (backwards, future) = (v.backwards, v.future);
        let invalid = backwards + future;
        let n = batch.spans.len() as u64;
        if n == 0 {
            // Nothing in it to analyse or forward.
            self.shared.fleet.arrive(now);
            return Ok((Accepted::default(), None));
        }
        // Forward queue first, then the shard queues; a refusal by the router drops the
        // reservation, which releases it: nothing is enqueued anywhere.
        let reservation = self.reserve_forward(Signal::Traces, &raw, n)?;
        let span_permit = match &self.span_archive {
            Some(a) => match a.reserve(raw.len()) {
                Some(p) => Some(p),
                None => {
                    self.count_refused(Reason::Backpressure, Some(n));
                    return Err(Refused::new(
                        Reason::Backpressure,
                        "span archive behind: retry later",
                    ));
                }
            },
            None => None,
        };
        let parts = plan_traces(batch, self.admission.shards());
        match self.admission.admit(parts, now, v.newest) {
            Ok(()) => {
                if let (Some(a), Some(p)) = (&self.span_archive, span_permit) {
                    a.send(p, raw.clone());
                }
                let written = reservation.and_then(|r| r.commit(raw, n));
                let c = &self.shared.counters;
                Counters::add(
                    match transport {
                        Transport::Grpc => &c.accepted_grpc,
                        Transport::Http => &c.accepted_http,
                    },
                    n,
                );
                let mut message = String::new();
                if backwards > 0 {
                    message.push_str(&format!("{backwards} span(s) end before they start"));
                }
                if future > 0 {
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&format!(
                        "{future} span(s) end more than max_clock_skew after the receiver's clock"
                    ));
                }
                Ok((
                    Accepted {
                        rejected: invalid,
                        message,
                    },
                    written,
                ))
            }
            Err(r) => Err(self.refusal(r, n)),
        }
    }

    fn metrics(
        &self,
        body: Bytes,
        _transport: Transport,
    ) -> Result<(Accepted, Option<Written>), Refused> {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let req = ExportMetricsServiceRequest::decode(body.clone()).map_err(|e| {
            self.count_refused(Reason::Decode, None);
            Refused::new(
                Reason::Decode,
                format!("cannot decode ExportMetricsServiceRequest: {e}"),
            )
        })?;
        let mut points = 0u64;
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    points += match &m.data {
                        Some(Data::Gauge(g)) => g.data_points.len(),
                        Some(Data::Sum(s)) => s.data_points.len(),
                        Some(Data::Histogram(h)) => h.data_points.len(),
                        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                        Some(Data::Summary(s)) => s.data_points.len(),
                        None => 0,
                    } as u64;
                }
            }
        }
        let config = &self.set.config;
        let (pairs, unusable) =
            crate::sli::metrics::extract(&req, self.opts.max_value_bytes, |svc, env| {
                config
                    .slo_for(svc, env)
                    .and_then(|s| s.objectives.latency.as_ref())
                    .map(|l| l.threshold.as_secs_f64())
            });
        let used: u64 = pairs.iter().map(|p| p.points.len() as u64).sum();
        let now = self.shared.clock.now_ns();
        let horizon = now.saturating_add(self.set.skew);
        let newest = pairs
            .iter()
            .flat_map(|p| {
                let points = p.points.iter().map(|x| (x.start_ns, x.time_ns));
                points.chain(p.runs.iter().map(|x| (x.start_ns, x.time_ns)))
            })
            .filter(|&(start, t)| t >= start && t <= horizon)
            .map(|(_, t)| t)
            .max()
            .unwrap_or(0);
        // Forward queue first, then the shard queues: all or nothing.
        let reservation = if points > 0 {
            self.reserve_forward(Signal::Metrics, &body, 0)?
        } else {
            None
        };
        if pairs.is_empty() {
            self.shared.fleet.arrive(now);
        } else {
            let parts = plan_metrics(pairs, self.admission.shards());
            if let Err(r) = self.admission.admit(parts, now, newest) {
                return Err(self.refusal(r, 0));
            }
        }
        let written = reservation.and_then(|r| r.commit(body, points));
        let c = &self.shared.counters;
        Counters::add(&c.accepted_metric_points, points);
        Counters::add(&c.sli_metric_points, used);
        Counters::add(&c.unusable_metric_points, unusable);
        Ok((Accepted::default(), written))
    }

    fn logs(
        &self,
        body: Bytes,
        _transport: Transport,
    ) -> Result<(Accepted, Option<Written>), Refused> {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        let req = ExportLogsServiceRequest::decode(body.clone()).map_err(|e| {
            self.count_refused(Reason::Decode, None);
            Refused::new(
                Reason::Decode,
                format!("cannot decode ExportLogsServiceRequest: {e}"),
            )
        })?;
        let n: usize = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        // Explicit deployment records go to their pairs' shards; other log records stop here.
        let (records, deployments) =
            crate::delivery::records::from_logs(&req, self.opts.max_value_bytes);
        // Forward queue first, then the shard queues: all or nothing.
        let reservation = if n > 0 {
            self.reserve_forward(Signal::Logs, &body, 0)?
        } else {
            None
        };
        let now = self.shared.clock.now_ns();
        if records.is_empty() {
            self.shared.fleet.arrive(now);
        } else {
            let horizon = now.saturating_add(self.set.skew);
            let newest = records
                .iter()
                .flat_map(|p| p.records.iter().map(|r| r.time_ns))
                .filter(|&t| t > 0 && t <= horizon)
                .max()
                .unwrap_or(0);
            let parts = plan_records(records, self.admission.shards());
            if let Err(r) = self.admission.admit(parts, now, newest) {
                return Err(self.refusal(r, 0));
            }
        }
        let written = reservation.and_then(|r| r.commit(body, n as u64));
        let c = &self.shared.counters;
        Counters::add(&c.accepted_log_records, n as u64);
        Counters::add(&c.deployment_log_records, deployments);
        Ok((Accepted::default(), written))
    }

    /// Encodes the Export response of `signal` (protobuf).
    pub fn response_protobuf(signal: Signal, a: &Accepted) -> Vec<u8> {
        use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
        let set = a.rejected > 0;
        match signal {
            Signal::Traces => trace::v1::ExportTraceServiceResponse {
                partial_success: set.then(|| trace::v1::ExportTracePartialSuccess {
                    rejected_spans: a.rejected as i64,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => metrics::v1::ExportMetricsServiceResponse {
                partial_success: set.then(|| metrics::v1::ExportMetricsPartialSuccess {
                    rejected_data_points: a.rejected as i64,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Logs => logs::v1::ExportLogsServiceResponse {
                partial_success: set.then(|| logs::v1::ExportLogsPartialSuccess {
                    rejected_log_records: a.rejected as i64,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
        }
    }

    /// Encodes the Export response of `signal` as OTLP/JSON.
    pub fn response_json(signal: Signal, a: &Accepted) -> String {
        if a.rejected == 0 {
            return "{}".to_string();
        }
        let field = match signal {
            Signal::Traces => "rejectedSpans",
            Signal::Metrics => "rejectedDataPoints",
            Signal::Logs => "rejectedLogRecords",
        };
        serde_json::json!({
            "partialSuccess": { field: a.rejected.to_string(), "errorMessage": a.message }
        })
        .to_string()
    }
}

/// What validation on receipt found in a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validation {
    /// newest valid end time (0 when none)
    pub newest: u64,
    /// spans ending before they start
    pub backwards: u64,
    /// spans ending more than `skew` after `now`
    pub future: u64,
}

/// Marks invalid spans (the README's Endpoints table: end before start, or end more than `skew` after the
/// wall clock `now`) and finds the newest valid event time for the fleet clock.
pub fn validate_spans(batch: &mut crate::model::TraceBatch, now: u64, skew: u64) -> Validation {
    let horizon = now.saturating_add(skew);
    let mut v = Validation::default();
    for s in batch.spans.iter_mut() {
        if s.end_ns < s.start_ns {
            s.flags |= flags::INVALID;
            v.backwards += 1;
        } else if s.end_ns > horizon {
            s.flags |= flags::INVALID;
            v.future += 1;
        } else if s.end_ns > v.newest {
            v.newest = s.end_ns;
        }
    }
    v
}

/// Decompresses `body` per `encoding` (None/identity, gzip, zstd), refusing output over
/// `limit` bytes without ever holding more than `limit + 1` of it (gzip bombs).
pub fn decompress(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, Refused> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    let reader: Box<dyn Read + '_> = match enc.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(Refused::new(
                    Reason::TooLarge,
                    format!(
                        "request body of {} bytes is over the {limit}-byte limit",
                        body.len()
                    ),
                ));
            }
            return Ok(body);
        }
        Some("gzip") | Some("x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Some("zstd") => match zstd::stream::read::Decoder::new(&body[..]) {
            Ok(d) => Box::new(d),
            Err(e) => return Err(Refused::new(Reason::Decode, format!("bad zstd body: {e}"))),
        },
        Some(other) => {
            return Err(Refused::new(
                Reason::Decode,
                format!("unsupported content encoding {other:?} (use gzip or zstd)"),
            ))
        }
    };
    let mut out = Vec::with_capacity((body.len() * 4).min(limit + 1));
    match reader.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(Refused::new(
            Reason::TooLarge,
            format!("decompressed body is over the {limit}-byte limit"),
        )),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(Refused::new(
            Reason::Decode,
            format!("bad {} body: {e}", enc.unwrap_or_default()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn decompression_round_trips_and_refuses_bombs() {
        let data = vec![7u8; 10_000];
        assert_eq!(decompress(Some("gzip"), gzip(&data), 10_000).unwrap(), data);
        let z = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        assert_eq!(decompress(Some("zstd"), z, 10_000).unwrap(), data);
        let bomb = gzip(&vec![0u8; 50_000_000]);
        assert!(bomb.len() < 100_000);
        let e = decompress(Some("gzip"), bomb, 1 << 20).unwrap_err();
        assert_eq!(e.reason, Reason::TooLarge);
        let e = decompress(
            Some("gzip"),
            Bytes::from_static(b"not gzip at all"),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::Decode);
        let e = decompress(Some("zstd"), Bytes::from_static(b"not zstd"), 1 << 20).unwrap_err();
        assert_eq!(e.reason, Reason::Decode);
        let e = decompress(None, Bytes::from(vec![0u8; 11]), 10).unwrap_err();
        assert_eq!(e.reason, Reason::TooLarge);
        let e = decompress(Some("br"), Bytes::from_static(b"x"), 10).unwrap_err();
        assert_eq!(e.reason, Reason::Decode);
    }
}
