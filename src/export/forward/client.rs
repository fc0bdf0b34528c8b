//! One export call to the next hop: the original request bytes, OTLP/gRPC (5-byte framing
//! over HTTP/2 with prior knowledge) or OTLP/HTTP (`application/x-protobuf`), and the
//! answer classified as the OTLP specification says: retryable (with the server's delay
//! when it gives one) or permanent.
//!
//! Written on hyper's client rather than tonic with a raw-bytes codec: one client serves
//! both protocols, the body goes out as the two frames it already is (header, payload)
//! without a codec buffer copy, and the answer is read from the wire without trusting it:
//! tonic's `Status::from_header_map` panics on a malformed `grpc-status-details-bin`,
//! and a next hop's answer is input like any other.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use tonic::Code;
use tonic_types::StatusExt;

use crate::config::{ClientTlsConfig, OtlpProtocol};
use crate::signal::Signal;
use crate::tls::{self, TlsError};

/// How long one attempt may take, connect to last byte.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response body read (answers to Export are tiny; a hostile or broken next
/// hop must not make us buffer without bound).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// A server-requested delay is honoured up to this.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(300);

/// Why an export attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: the next hop is down, overloaded or asked us to wait.
    #[error("{message}")]
    Retryable {
        /// what happened
        message: String,
        /// the delay the next hop asked for (gRPC `RetryInfo`, HTTP `Retry-After`)
        after: Option<Duration>,
    },
    /// The next hop refused this request for good (INVALID_ARGUMENT, 400, …).
    #[error("{message}")]
    Permanent {
        /// what happened
        message: String,
    },
}

impl SendError {
    fn retry(message: impl Into<String>, after: Option<Duration>) -> Self {
        SendError::Retryable {
            message: message.into(),
            after: after.map(|d| d.min(MAX_SERVER_DELAY)),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        SendError::Permanent {
            message: message.into(),
        }
    }
}

/// The next hop, as configured.
pub struct Client {
    http: hyper_util::client::legacy::Client<tls::Connector, Payload>,
    protocol: OtlpProtocol,
    /// `scheme://authority` and the endpoint's path without a trailing `/`
    origin: String,
    prefix: String,
    headers: HeaderMap,
}

impl Client {
    /// A client for `endpoint` (an `http://` or `https://` URL; validated by the caller)
    /// with extra `headers` and client `tls`.
    pub fn new(
        endpoint: &Uri,
        protocol: OtlpProtocol,
        headers: HeaderMap,
        tls: Option<&ClientTlsConfig>,
        concurrency: usize,
    ) -> Result<Client, TlsError> {
        let mut b = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(concurrency);
        if protocol == OtlpProtocol::Grpc {
            // gRPC over cleartext is HTTP/2 with prior knowledge.
            b.http2_only(true);
        }
        let alpn = match protocol {
            OtlpProtocol::Grpc => tls::Alpn::H2,
            OtlpProtocol::Http => tls::Alpn::Http1,
        };
        let connector = tls::connector(&endpoint.to_string(), tls, alpn, ATTEMPT_TIMEOUT)?;
        let authority = endpoint.authority().map(|a| a.as_str()).unwrap_or("");
        Ok(Client {
            http: b.build(connector),
            protocol,
            origin: format!("{}://{authority}", endpoint.scheme_str().unwrap_or("http")),
            prefix: endpoint.path().trim_end_matches('/').to_string(),
            headers,
        })
    }

    /// The URL a request of `signal` goes to.
    pub fn url(&self, signal: Signal) -> String {
        let path = match self.protocol {
            OtlpProtocol::Grpc => signal.grpc_path(),
            OtlpProtocol::Http => signal.http_path(),
        };
        format!("{}{}{path}", self.origin, self.prefix)
    }

    /// Sends one request (its protobuf bytes, as received) and classifies the answer.
    pub async fn send(&self, signal: Signal, body: &Bytes) -> Result<(), SendError> {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(signal, body)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retry(
                format!("no answer within {ATTEMPT_TIMEOUT:?}"),
                None,
            )),
        }
    }

    async fn attempt(&self, signal: Signal, body: &Bytes) -> Result<(), SendError> {
        let grpc = self.protocol == OtlpProtocol::Grpc;
        let mut req = Request::post(self.url(signal));
        let payload = if grpc {
            req = req
                .header(CONTENT_TYPE, "application/grpc")
                .header("te", "trailers");
            let mut head = [0u8; 5];
            head[1..].copy_from_slice(&(body.len() as u32).to_be_bytes());
            Payload::new(Some(Bytes::copy_from_slice(&head)), body.clone())
        } else {
            req = req.header(CONTENT_TYPE, "application/x-protobuf");
            Payload::new(None, body.clone())
        };
        let mut req = req
            .body(payload)
            .map_err(|e| SendError::permanent(format!("cannot build the request: {e}")))?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| SendError::retry(connection_error(&e), None))?;
        let (parts, body) = resp.into_parts();
        let collected = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| SendError::retry(format!("reading the answer failed: {e}"), None))?;
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        if grpc {
            grpc_outcome(parts.status, &parts.headers, trailers.as_ref(), &data)
        } else {
            http_outcome(parts.status, &parts.headers, &data)
        }
    }
}

/// The whole chain of a client error: hyper-util's top-level message alone ("client
/// error (Connect)") hides the cause.
fn connection_error(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Classifies a gRPC answer (OTLP/gRPC: retryable codes are CANCELLED,
/// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
/// RESOURCE_EXHAUSTED only when the server sent `RetryInfo`).
pub fn grpc_outcome(
    status: StatusCode,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
    data: &[u8],
) -> Result<(), SendError> {
    if status != StatusCode::OK {
        // gRPC's HTTP-to-status mapping: 429, 502, 503, 504 are UNAVAILABLE.
        let msg = format!("HTTP {status} instead of a gRPC answer");
        return match status.as_u16() {
            429 | 502 | 503 | 504 => Err(SendError::retry(msg, retry_after(headers))),
            _ => Err(SendError::permanent(msg)),
        };
    }
    // Trailers-only answers carry the status in the headers.
    let fields = match trailers {
        Some(t) if t.contains_key("grpc-status") => t,
        _ => headers,
    };
    let Some(code) = fields
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
    else {
        return Err(SendError::permanent("the answer carries no grpc-status"));
    };
    let code = Code::from_i32(code);
    if code == Code::Ok {
        log_partial_success(data.get(5..).unwrap_or(&[]));
        return Ok(());
    }
    let message = fields
        .get("grpc-message")
        .map(|v| {
            percent_decode(v.as_bytes())
                .unwrap_or_else(|| String::from_utf8_lossy(v.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    let retry_info = fields
        .get("grpc-status-details-bin")
        .and_then(|v| decode_base64(v.as_bytes()))
        .and_then(|details| {
            tonic::Status::with_details(code, message.clone(), Bytes::from(details))
                .get_details_retry_info()
        })
        .and_then(|r| r.retry_delay);
    let text = format!("{code:?}: {message}");
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Err(SendError::retry(text, retry_info)),
        Code::ResourceExhausted if retry_info.is_some() => Err(SendError::retry(text, retry_info)),
        _ => Err(SendError::permanent(text)),
    }
}

/// Classifies an OTLP/HTTP answer: 2xx is success; 429, 502, 503, 504 are retryable
/// (honouring `Retry-After`); every other status is permanent.
pub fn http_outcome(status: StatusCode, headers: &HeaderMap, data: &[u8]) -> Result<(), SendError> {
    if status.is_success() {
        let protobuf = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-protobuf"));
        if protobuf {
            log_partial_success(data);
        }
        return Ok(());
    }
    let snippet = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    let msg = format!("HTTP {status}: {}", snippet.trim());
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(SendError::retry(msg, retry_after(headers))),
        _ => Err(SendError::permanent(msg)),
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Binary gRPC metadata is base64, padded or not.
fn decode_base64(v: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(v).ok()
}

/// `grpc-message` is percent-encoded.
fn percent_decode(v: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            let hex = std::str::from_utf8(&v[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The three Export responses share one layout (field 1: partial success with the
/// rejected count in its field 1 and the message in field 2), so the trace response
/// type reads all of them.
fn log_partial_success(msg: &[u8]) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    if let Ok(r) = ExportTraceServiceResponse::decode(msg) {
        if let Some(p) = r.partial_success.filter(|p| p.rejected_spans > 0) {
            tracing::warn!(
                rejected = p.rejected_spans,
                message = %p.error_message,
                "forward: the next hop accepted a request but rejected part of it"
            );
        }
    }
}

/// A request body of at most two frames (the gRPC frame header, then the payload), with
/// its exact length known so the client sends `content-length`.
pub struct Payload {
    head: Option<Bytes>,
    body: Option<Bytes>,
    len: u64,
}

impl Payload {
    fn new(head: Option<Bytes>, body: Bytes) -> Self {
        let len = head.as_ref().map_or(0, |h| h.len()) + body.len();
        Payload {
            head,
            body: Some(body),
            len: len as u64,
        }
    }
}

impl http_body::Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.head.take().or_else(|| self.body.take());
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.body.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn grpc_status(code: Code, details: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from(code as i32));
        h.insert("grpc-message", HeaderValue::from_static("no%20way"));
        if let Some(d) = details {
            h.insert("grpc-status-details-bin", HeaderValue::from_str(d).unwrap());
        }
        h
    }

    fn details_with_retry_info(delay: Duration) -> String {
        let s = tonic::Status::with_error_details(
            Code::Unavailable,
            "busy",
            tonic_types::ErrorDetails::with_retry_info(Some(delay)),
        );
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(s.details())
    }

    #[test]
    fn grpc_codes_are_classified_as_otlp_says() {
        let ok = HeaderMap::new();
        assert_eq!(
            grpc_outcome(StatusCode::OK, &ok, Some(&grpc_status(Code::Ok, None)), &[]),
            Ok(())
        );
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            let r = grpc_outcome(StatusCode::OK, &ok, Some(&grpc_status(code, None)), &[]);
            assert!(
                matches!(r, Err(SendError::Retryable { after: None, .. })),
                "{code:?}: {r:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::ResourceExhausted,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::Unknown,
        ] {
            let r = grpc_outcome(StatusCode::OK, &ok, Some(&grpc_status(code, None)), &[]);
            assert!(matches!(r, Err(SendError::Permanent { .. })), "{code:?}");
        }
        // RetryInfo makes RESOURCE_EXHAUSTED retryable and sets the delay; trailers-only
        // answers (status in the headers) read the same.
        let d = details_with_retry_info(Duration::from_millis(1500));
        let h = grpc_status(Code::ResourceExhausted, Some(&d));
        assert_eq!(
            grpc_outcome(StatusCode::OK, &h, None, &[]),
            Err(SendError::Retryable {
                message: "ResourceExhausted: no way".into(),
                after: Some(Duration::from_millis(1500)),
            })
        );
        // Garbage details never panic; they just carry no delay.
        let h = grpc_status(Code::Unavailable, Some("!!not base64!!"));
        assert!(matches!(
            grpc_outcome(StatusCode::OK, &h, None, &[]),
            Err(SendError::Retryable { after: None, .. })
        ));
        let h = grpc_status(Code::Unavailable, Some("AAAA"));
        assert!(matches!(
            grpc_outcome(StatusCode::OK, &h, None, &[]),
            Err(SendError::Retryable { after: None, .. })
        ));
        // No status at all is a broken server: not retried.
        assert!(matches!(
            grpc_outcome(StatusCode::OK, &ok, None, &[]),
            Err(SendError::Permanent { .. })
        ));
        assert!(matches!(
            grpc_outcome(StatusCode::SERVICE_UNAVAILABLE, &ok, None, &[]),
            Err(SendError::Retryable { .. })
        ));
        assert!(matches!(
            grpc_outcome(StatusCode::NOT_FOUND, &ok, None, &[]),
            Err(SendError::Permanent { .. })
        ));
    }

    #[test]
    fn http_statuses_and_retry_after() {
        let none = HeaderMap::new();
        assert_eq!(http_outcome(StatusCode::OK, &none, b""), Ok(()));
        for s in [429, 502, 503, 504] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(matches!(
                http_outcome(s, &none, b""),
                Err(SendError::Retryable { after: None, .. })
            ));
        }
        for s in [400, 401, 403, 404, 413, 415, 500, 501] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(
                    http_outcome(s, &none, b""),
                    Err(SendError::Permanent { .. })
                ),
                "{s}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            http_outcome(StatusCode::SERVICE_UNAVAILABLE, &h, b""),
            Err(SendError::Retryable {
                message: "HTTP 503 Service Unavailable: ".into(),
                after: Some(Duration::from_secs(7)),
            })
        );
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        // Absurd delays are capped.
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert!(matches!(
            http_outcome(StatusCode::TOO_MANY_REQUESTS, &h, b""),
            Err(SendError::Retryable { after: Some(d), .. }) if d == MAX_SERVER_DELAY
        ));
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode(b"plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode(b"bad%zz"), None);
        assert_eq!(percent_decode(b"cut%2").as_deref(), Some("cut%2"));
    }

    #[test]
    fn urls_follow_the_protocol() {
        let uri: Uri = "http://127.0.0.1:4317/".parse().unwrap();
        let c = Client::new(&uri, OtlpProtocol::Grpc, HeaderMap::new(), None, 1).unwrap();
        assert_eq!(
            c.url(Signal::Logs),
            "http://127.0.0.1:4317/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        );
        let uri: Uri = "http://collector:4318/otlp".parse().unwrap();
        let c = Client::new(&uri, OtlpProtocol::Http, HeaderMap::new(), None, 1).unwrap();
        assert_eq!(
            c.url(Signal::Metrics),
            "http://collector:4318/otlp/v1/metrics"
        );
    }
}
