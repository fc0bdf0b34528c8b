//! `archive.spans: true`: every span of every accepted trace request, one row each, in the
//! `spans` data set (docs/archive.md).
//!
//! Off the hot path: the receiver hands the request body it already holds (a reference
//! count, not a copy) to this task, which decodes it fully with prost on a blocking thread
//! and passes the rows to the archive writer through the same bounded hand-off as the
//! shards. Admission stays all-or-nothing: the receiver reserves room here (bytes of
//! bodies in flight, at most [`MAX_IN_FLIGHT_BYTES`]) before the shards take the request,
//! and a full archive refuses the request with backpressure (counted, retryable) rather
//! than growing memory or losing spans silently.
//!
//! The rows are the request as received: spans the pipeline counts as `invalid` (ending
//! before they start, or too far in the future) are archived too, since this data set is
//! the raw record.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as Any, AnyValue, KeyValue};
use prost::Message;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::writer::ArchiveStats;
use super::{send_rows, ArchiveMsg, ArchiveSender, SpanRow};

/// Request bytes waiting to be archived as spans, at most.
pub const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// Requests decoded per blocking task at most.
const BATCH: usize = 32;

/// The receiver's handle.
pub struct SpanArchiver {
    tx: mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

/// Room reserved for one request body.
pub struct SpanPermit(OwnedSemaphorePermit);

impl SpanArchiver {
    /// Starts the task; it ends once every handle is dropped and its rows are handed over.
    /// `max_value_bytes` cuts the pair identity as the decoder does ([`crate::identity`]).
    pub fn start(
        archive: ArchiveSender,
        stats: Arc<ArchiveStats>,
        max_value_bytes: usize,
    ) -> (SpanArchiver, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES));
        let task = tokio::spawn(run(rx, archive, stats, max_value_bytes));
        (SpanArchiver { tx, budget }, task)
    }

    /// Reserves room for a body of `len` bytes; `None` when the archive is behind.
    pub fn reserve(&self, len: usize) -> Option<SpanPermit> {
        let n = len.clamp(1, MAX_IN_FLIGHT_BYTES) as u32;
        self.budget
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(SpanPermit)
    }

    /// Hands over an admitted request body.
    pub fn send(&self, permit: SpanPermit, body: Bytes) {
        // The task only stops after every handle is gone, so this cannot fail while `self`
        // exists; if it did, the permit would simply be released.
        let _ = self.tx.send((body, permit.0));
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
    archive: ArchiveSender,
    stats: Arc<ArchiveStats>,
    max_value_bytes: usize,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let work = std::mem::take(&mut batch);
        let decoded = tokio::task::spawn_blocking(move || {
            let mut rows = Vec::new();
            let mut failed = 0u64;
            let mut permits = Vec::with_capacity(work.len());
            for (body, permit) in work {
                if rows_of(&body, max_value_bytes, &mut rows).is_err() {
                    failed += 1;
                }
                permits.push(permit);
            }
            (rows, failed, permits)
        })
        .await;
        match decoded {
            Ok((rows, failed, permits)) => {
                if failed > 0 {
                    // The lean decoder accepted these bytes; prost did not. Never seen, but
                    // counted and logged rather than ignored.
                    stats.failures.fetch_add(failed, Ordering::Relaxed);
                    tracing::error!("archive.spans: {failed} request(s) could not be decoded");
                }
                send_rows(&archive, rows, ArchiveMsg::Spans).await;
                drop(permits);
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("archive.spans: decoding task failed: {e}");
            }
        }
    }
}

/// Appends the rows of one `ExportTraceServiceRequest` body; the pair of each row is
/// resolved by [`crate::identity`]'s rules, identity values cut to `max_value_bytes`.
pub fn rows_of(
    body: &[u8],
    max_value_bytes: usize,
    rows: &mut Vec<SpanRow>,
) -> Result<(), prost::DecodeError> {
    let req = ExportTraceServiceRequest::decode(body)?;
    for rs in &req.resource_spans {
        let attrs = rs
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or_default();
        let id = crate::identity::resource_identity(attrs, max_value_bytes);
        let service: Arc<str> = id.service().into();
        let environment: Arc<str> = id.environment.into();
        let version: Arc<str> = id.version.into();
        let resource_attributes: Arc<str> = kvs_json(attrs).into();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let status = s.status.as_ref();
                rows.push(SpanRow {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    service: service.clone(),
                    environment: environment.clone(),
                    version: version.clone(),
                    name: s.name.clone(),
                    kind: match s.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    status_code: match status.map_or(0, |st| st.code) {
                        1 => "ok",
                        2 => "error",
                        _ => "unset",
                    },
                    status_message: status.map(|st| st.message.clone()).unwrap_or_default(),
                    attributes: kvs_json(&s.attributes),
                    resource_attributes: resource_attributes.clone(),
                });
            }
        }
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Attributes as a JSON object (a later duplicate key wins, as in the OTel SDKs).
fn kvs_json(kvs: &[KeyValue]) -> String {
    let mut m = serde_json::Map::with_capacity(kvs.len());
    for kv in kvs {
        m.insert(kv.key.clone(), any_json(kv.value.as_ref()));
    }
    Value::Object(m).to_string()
}

/// An OTLP `AnyValue` as JSON: strings, bools and doubles as themselves, ints as numbers,
/// bytes as base64 (as OTLP/JSON does), arrays and key-value lists nested; NaN and the
/// infinities, which JSON cannot hold, as strings.
fn any_json(v: Option<&AnyValue>) -> Value {
    use base64::Engine;
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(Any::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Any::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|x| any_json(Some(x))).collect())
        }
        // A profiles string-table index: meaningless without the table, kept as the index.
        Some(Any::StringValueStrindex(i)) => Value::from(*i),
        Some(Any::KvlistValue(l)) => {
            let mut m = serde_json::Map::new();
            for kv in &l.values {
                m.insert(kv.key.clone(), any_json(kv.value.as_ref()));
            }
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    fn kv(k: &str, v: Any) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn rows_carry_identity_ids_times_status_and_json_attributes() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Any::StringValue("cart".into())),
                        kv("service.namespace", Any::StringValue("shop".into())),
                        kv("deployment.environment", Any::StringValue("prod".into())),
                        kv("service.version", Any::StringValue("1.2".into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1, 2, 3, 4, 5, 6, 7, 0xff],
                        name: "GET /x".into(),
                        kind: 2,
                        start_time_unix_nano: 1_000,
                        end_time_unix_nano: 3_500,
                        status: Some(Status {
                            code: 2,
                            message: "boom".into(),
                        }),
                        attributes: vec![
                            kv("http.response.status_code", Any::IntValue(503)),
                            kv("ratio", Any::DoubleValue(f64::NAN)),
                            kv("raw", Any::BytesValue(vec![0, 1])),
                            kv(
                                "list",
                                Any::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(Any::BoolValue(true)),
                                    }],
                                }),
                            ),
                            kv(
                                "map",
                                Any::KvlistValue(KeyValueList {
                                    values: vec![kv("a", Any::StringValue("b".into()))],
                                }),
                            ),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut rows = Vec::new();
        rows_of(&req.encode_to_vec(), 256, &mut rows).unwrap();
        let r = &rows[0];
        assert_eq!(r.trace_id, "ab".repeat(16));
        assert_eq!(r.span_id, "01020304050607ff");
        assert_eq!(r.parent_span_id, "");
        assert_eq!(&*r.service, "shop/cart");
        assert_eq!(&*r.environment, "prod");
        assert_eq!(&*r.version, "1.2");
        assert_eq!((r.kind, r.status_code), ("server", "error"));
        assert_eq!(r.status_message, "boom");
        assert_eq!((r.start_ns, r.end_ns), (1_000, 3_500));
        let a: Value = serde_json::from_str(&r.attributes).unwrap();
        assert_eq!(a["http.response.status_code"], 503);
        assert_eq!(a["ratio"], "NaN");
        assert_eq!(a["raw"], "AAE=");
        assert_eq!(a["list"][0], true);
        assert_eq!(a["map"]["a"], "b");
        let ra: Value = serde_json::from_str(&r.resource_attributes).unwrap();
        assert_eq!(ra["service.version"], "1.2");
        assert!(rows_of(b"\xff\xff", 256, &mut rows).is_err());

        let b = crate::archive::batch::spans(&rows).unwrap();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.schema(), crate::archive::schema::spans());
    }
}
