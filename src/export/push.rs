//! What every push exporter shares: the periodic loop with one final push at shutdown,
//! retries with exponential backoff and jitter bounded by the push interval, the
//! accounting into [`ExporterStats`], a plain HTTP client, and a (sampled) trace span
//! per export call.
//!
//! A push carries cumulative values, so a push that is given up on loses nothing for
//! good: the next one carries the same counters, further on. Retrying past the next
//! tick would only queue stale copies, hence the deadline of one interval.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracer;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ClientTlsConfig;
use crate::telemetry::ExporterStats;
use crate::tls;

/// Why an export attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// worth another attempt (connection failure, 5xx/429, UNAVAILABLE, …)
    #[error("{message}")]
    Retryable {
        /// what happened
        message: String,
        /// how long the receiver asked us to wait (`Retry-After`, `RetryInfo`)
        retry_after: Option<Duration>,
    },
    /// the receiver refused the data as it is: sending it again cannot help
    #[error("{0}")]
    Permanent(String),
}

impl ExportError {
    /// A retryable error without a requested delay.
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Errors building an exporter from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// a header that is not a valid HTTP header
    #[error("{path}: invalid header {name:?}")]
    Header {
        /// config key path
        path: String,
        /// header name
        name: String,
    },
    /// the client TLS cannot be set up
    #[error("{path}: {source}")]
    Tls {
        /// config key path of the exporter's `tls`
        path: String,
        /// why
        source: crate::tls::TlsError,
    },
    /// an endpoint the client cannot use
    #[error("{path}: {message}")]
    Endpoint {
        /// config key path
        path: String,
        /// why
        message: String,
    },
}

/// Config headers as an HTTP header map (names lower-cased, as gRPC metadata wants).
pub fn header_map(
    path: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<HeaderMap, BuildError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let bad = || BuildError::Header {
            path: path.to_string(),
            name: k.clone(),
        };
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(v).map_err(|_| bad())?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The trace of export calls: `None` unless `telemetry.otlp` is configured.
#[derive(Clone, Debug, Default)]
pub struct Spans(pub Option<SdkTracer>);

/// One exporter's identity for accounting and traces.
#[derive(Clone, Debug)]
pub struct Target {
    /// counters (`exporter` label)
    pub stats: Arc<ExporterStats>,
    /// where it sends (span attribute `url.full`)
    pub url: String,
    /// export-call spans
    pub spans: Spans,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Target {
    /// Sends `items` items through `attempt` until it succeeds, fails permanently, or
    /// the next attempt could not finish before `deadline`; counts the outcome and
    /// records a span. `attempt` answers the number of items the receiver rejected
    /// (OTLP `partial_success`), which count as failed.
    pub async fn send<F, Fut>(
        &self,
        items: u64,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<(), ExportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<u64, ExportError>>,
    {
        let mut span = self.spans.0.as_ref().map(|t| {
            t.span_builder("momentum.export")
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("momentum.exporter", self.stats.name),
                    KeyValue::new("url.full", self.url.clone()),
                    KeyValue::new("momentum.export.items", items as i64),
                ])
                .start(t)
        });
        let mut backoff = FIRST_BACKOFF;
        let mut attempts: i64 = 0;
        let result = loop {
            attempts += 1;
            let r = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(ExportError::retryable("no answer within the push interval")),
            };
            match r {
                Ok(rejected) => {
                    let rejected = rejected.min(items);
                    add(&self.stats.sent, items - rejected);
                    add(&self.stats.failed, rejected);
                    break Ok(());
                }
                Err(ExportError::Retryable {
                    message,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| jitter(backoff));
                    if Instant::now() + wait >= deadline {
                        add(&self.stats.failed, items);
                        break Err(ExportError::Retryable {
                            message: format!("{message} (gave up after {attempts} attempts)"),
                            retry_after,
                        });
                    }
                    add(&self.stats.retried, 1);
                    tracing::debug!(
                        exporter = self.stats.name,
                        "retrying in {wait:?}: {message}"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    add(&self.stats.failed, items);
                    break Err(e);
                }
            }
        };
        if let Err(e) = &result {
            tracing::warn!(exporter = self.stats.name, url = %self.url, "export failed: {e}");
        }
        if let Some(span) = span.as_mut() {
            span.set_attribute(KeyValue::new("momentum.export.attempts", attempts));
            if let Err(e) = &result {
                span.set_status(Status::error(e.to_string()));
            }
            span.end();
        }
        result
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A duration in [d/2, d], so exporters of many instances do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread: enough for spreading retries.
    let r = RandomState::new().hash_one(SEQ.fetch_add(1, Ordering::Relaxed));
    let half = d / 2;
    half + Duration::from_nanos(r % (half.as_nanos() as u64 + 1))
}

/// Calls `push(deadline)` every `interval` until `stop` turns true, then once more (the
/// final push of a graceful shutdown). A push in progress is never cancelled by `stop`.
pub async fn every<F, Fut>(interval: Duration, mut stop: watch::Receiver<bool>, mut push: F)
where
    F: FnMut(Instant) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => push(Instant::now() + interval).await,
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    push(Instant::now() + interval).await;
}

/// The HTTP/1.1 client of the HTTP push exporters.
pub type HttpClient = Client<tls::Connector, Full<Bytes>>;

/// A client with pooled connections for `endpoint`, with the client TLS `tls` of the
/// exporter at config key `path`.
pub fn http_client(
    path: &str,
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<HttpClient, BuildError> {
    let connector = connector(path, endpoint, tls, tls::Alpn::Http1)?;
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// The connector of the exporter at config key `path` (`{path}.tls` in errors).
pub fn connector(
    path: &str,
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
    alpn: tls::Alpn,
) -> Result<tls::Connector, BuildError> {
    tls::connector(endpoint, tls, alpn, CONNECT_TIMEOUT).map_err(|source| BuildError::Tls {
        path: format!("{path}.tls"),
        source,
    })
}

/// How long a push exporter waits for a TCP connection (and TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body read (receivers answer with little or nothing).
const MAX_RESPONSE: usize = 1 << 20;

/// POSTs `body` and answers the status, headers and body; transport failures are
/// retryable.
pub async fn post(
    client: &HttpClient,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), ExportError> {
    let mut req = http::Request::post(url)
        .body(Full::new(body))
        .map_err(|e| ExportError::Permanent(format!("cannot build a request to {url}: {e}")))?;
    req.headers_mut().extend(headers.clone());
    let resp = client
        .request(req)
        .await
        .map_err(|e| ExportError::retryable(format!("POST {url}: {e}")))?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_RESPONSE)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok((parts.status, parts.headers, body))
}

/// `Retry-After` in seconds (the HTTP-date form is rare from receivers and ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let s = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    s.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error for a non-2xx answer: 429 and 5xx are retryable (remote write and OTLP/HTTP
/// agree on those), everything else is permanent.
pub fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ExportError {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let message = format!("HTTP {status}: {}", text.trim());
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        ExportError::Retryable {
            message,
            retry_after: retry_after(headers),
        }
    } else {
        ExportError::Permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            stats: ExporterStats::new("t"),
            url: "http://x".into(),
            spans: Spans::default(),
        }
    }

    fn counts(t: &Target) -> (u64, u64, u64) {
        let s = &t.stats;
        (
            s.sent.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.retried.load(Ordering::Relaxed),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_until_success() {
        let t = target();
        let mut n = 0;
        let r = t
            .send(7, Instant::now() + Duration::from_secs(15), || {
                n += 1;
                let fail = n < 3;
                async move {
                    if fail {
                        Err(ExportError::retryable("503"))
                    } else {
                        Ok(2)
                    }
                }
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        // 2 of the 7 items were rejected by the receiver (partial success)
        assert_eq!(counts(&t), (5, 2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let t = target();
        let mut n = 0;
        let r = t
            .send(4, Instant::now() + Duration::from_secs(15), || {
                n += 1;
                async { Err(ExportError::Permanent("400".into())) }
            })
            .await;
        assert!(matches!(r, Err(ExportError::Permanent(_))));
        assert_eq!(n, 1);
        assert_eq!(counts(&t), (0, 4, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_deadline() {
        let t = target();
        let start = Instant::now();
        let r = t
            .send(3, start + Duration::from_secs(2), || async {
                Err(ExportError::retryable("down"))
            })
            .await;
        assert!(matches!(r, Err(ExportError::Retryable { .. })));
        assert!(Instant::now() < start + Duration::from_secs(2));
        let (sent, failed, retried) = counts(&t);
        assert_eq!((sent, failed), (0, 3));
        // 100ms, 200ms, 400ms, 800ms backoff (each jittered to half or more) fit in 2s
        assert!((2..=5).contains(&retried), "retried {retried}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_requested_delay_past_the_deadline_gives_up_at_once() {
        let t = target();
        let r = t
            .send(1, Instant::now() + Duration::from_secs(5), || async {
                Err(ExportError::Retryable {
                    message: "slow down".into(),
                    retry_after: Some(Duration::from_secs(60)),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(counts(&t), (0, 1, 0));
    }

    #[test]
    fn http_statuses_are_classified() {
        let h = HeaderMap::new();
        for s in [429, 500, 502, 503, 504] {
            let e = status_error(StatusCode::from_u16(s).unwrap(), &h, b"");
            assert!(matches!(e, ExportError::Retryable { .. }), "{s}");
        }
        for s in [400, 401, 404, 413] {
            let e = status_error(StatusCode::from_u16(s).unwrap(), &h, b"bad");
            assert!(matches!(e, ExportError::Permanent(_)), "{s}");
        }
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn every_pushes_on_ticks_and_once_more_at_stop() {
        let (tx, rx) = watch::channel(false);
        let pushes = Arc::new(AtomicU64::new(0));
        let p = pushes.clone();
        let task = tokio::spawn(every(Duration::from_secs(10), rx, move |_| {
            let p = p.clone();
            async move {
                p.fetch_add(1, Ordering::Relaxed);
            }
        }));
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(pushes.load(Ordering::Relaxed), 3);
        tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(pushes.load(Ordering::Relaxed), 4);
    }
}
