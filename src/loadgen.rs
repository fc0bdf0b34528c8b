//! `momentum loadgen`: a synthetic fleet of services sending OTLP traces to any endpoint,
//! at a fixed rate or as fast as the endpoint answers, with a progress line and a summary.
//!
//! Each request carries `batch` SERVER spans of one service (round robin over the fleet):
//! HTTP routes of the service, log-normal latencies around the service's median, and the
//! service's error ratio (status ERROR and `http.response.status_code` 500). Refusals the
//! OTLP spec calls retryable (UNAVAILABLE, 503, 429, …) are retried with the delay the
//! endpoint asked for (or the forwarder's backoff with full jitter) until accepted; `sent` counts only spans the endpoint
//! accepted, so it is exactly what the endpoint took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::config::OtlpProtocol;
use crate::export::forward::client::{Client, SendError};
use crate::export::forward::full_jitter;
use crate::signal::Signal;

/// What to send, where, how fast.
#[derive(Clone, Debug)]
pub struct Options {
    /// `http(s)://host:port[/path]` of the OTLP receiver
    pub endpoint: String,
    /// OTLP/gRPC or OTLP/HTTP (protobuf)
    pub protocol: OtlpProtocol,
    /// spans a second; 0 = as fast as the endpoint answers
    pub rate: u64,
    /// how long new requests are started
    pub duration: Duration,
    /// services in the fleet
    pub services: usize,
    /// spans a request
    pub batch: usize,
    /// requests in flight at once
    pub concurrency: usize,
}

/// Why loadgen cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// the endpoint is not a URL it can send to
    #[error("--endpoint {0}")]
    Endpoint(String),
    /// client TLS for an https:// endpoint
    #[error("--endpoint: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Counts, shared by the senders and the progress line.
#[derive(Debug, Default)]
pub struct Counts {
    /// spans the endpoint accepted
    pub sent: AtomicU64,
    /// requests the endpoint accepted
    pub requests: AtomicU64,
    /// answers that refused a request for now (retryable)
    pub refused: AtomicU64,
    /// attempts after a refusal
    pub retried: AtomicU64,
    /// spans given up: refused for good, or still refused when the run ended
    pub failed: AtomicU64,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Summary {
    /// the counts at the end
    pub counts: Arc<Counts>,
    /// from the first request to the last answer
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        let sent = c.sent.load(Ordering::Relaxed);
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "loadgen: sent {sent} spans in {} requests over {secs:.1} s ({:.0} spans/s); refused {}, retried {}, failed {} spans",
            c.requests.load(Ordering::Relaxed),
            sent as f64 / secs.max(1e-9),
            c.refused.load(Ordering::Relaxed),
            c.retried.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
        )
    }
}

/// A service of the synthetic fleet.
#[derive(Clone, Debug)]
pub struct Service {
    /// `service.name`
    pub name: String,
    /// `service.version`
    pub version: String,
    /// HTTP routes it serves
    pub routes: Vec<&'static str>,
    /// median latency
    pub median: Duration,
    /// fraction of requests that fail
    pub error_ratio: f64,
}

const ROUTES: [&[&str]; 5] = [
    &[
        "POST /api/checkout",
        "GET /api/cart",
        "PUT /api/cart/{item}",
    ],
    &["POST /api/payments", "GET /api/payments/{id}"],
    &[
        "GET /api/products",
        "GET /api/products/{id}",
        "GET /api/categories",
    ],
    &["GET /api/search", "GET /api/suggest"],
    &["GET /api/stock/{sku}", "POST /api/reservations"],
];

/// `n` services: checkout, payments, catalog, search and inventory first (each with its
/// own latency and error mix, healthy against the default objectives: 99.9 % available,
/// 99 % within 300 ms), then `service-6`, `service-7`, … with mixes of their own.
pub fn fleet(n: usize) -> Vec<Service> {
    let named = [
        ("checkout", 60, 0.0002),
        ("payments", 70, 0.0001),
        ("catalog", 25, 0.00005),
        ("search", 45, 0.0003),
        ("inventory", 35, 0.0001),
    ];
    (0..n)
        .map(|i| {
            let (name, ms, err) = named
                .get(i)
                .map(|&(n, ms, e)| (n.to_string(), ms, e))
                .unwrap_or_else(|| {
                    (
                        format!("service-{}", i + 1),
                        20 + (i as u64 * 37) % 60,
                        0.0001 * (1 + i % 7) as f64,
                    )
                });
            Service {
                name,
                version: format!("1.{}.{}", 4 + i % 3, i % 10),
                routes: ROUTES[i % ROUTES.len()].to_vec(),
                median: Duration::from_millis(ms),
                error_ratio: err,
            }
        })
        .collect()
}

/// A key-value attribute.
pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute value.
pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// How a version of a service behaves: its error ratio and its latency as a multiple of
/// the service's median.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// fraction of requests that fail
    pub error_ratio: f64,
    /// latency multiple of the service's median
    pub slowdown: f64,
}

/// `n` SERVER spans of `svc` ending in `[from_ns, to_ns)`: its routes, log-normal latency
/// (sigma 0.5, a p99 about 3.2× the median) and errors (status ERROR, HTTP 500) as `b`.
pub fn server_spans(
    svc: &Service,
    b: Behaviour,
    n: usize,
    (from_ns, to_ns): (u64, u64),
    rng: &mut fastrand::Rng,
) -> Vec<Span> {
    (0..n)
        .map(|_| {
            let route = svc.routes[rng.usize(..svc.routes.len())];
            let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
            let lat =
                (svc.median.as_nanos() as f64 * b.slowdown * (0.5 * normal(rng)).exp()) as u64;
            let end = rng.u64(from_ns..to_ns.max(from_ns + 1));
            let failed = rng.f64() < b.error_ratio;
            Span {
                trace_id: rng.u128(1..).to_be_bytes().to_vec(),
                span_id: rng.u64(1..).to_be_bytes().to_vec(),
                name: route.to_string(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: end.saturating_sub(lat.max(1)),
                end_time_unix_nano: end,
                attributes: vec![
                    kv("http.request.method", s(method)),
                    kv("http.route", s(path)),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(if failed { 500 } else { 200 }),
                    ),
                ],
                status: failed.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// The spans of one resource: `service.name`, `service.version` (when given) and
/// `deployment.environment.name` production.
pub fn resource_spans(service: &str, version: Option<&str>, spans: Vec<Span>) -> ResourceSpans {
    let mut attributes = vec![kv("service.name", s(service))];
    if let Some(v) = version {
        attributes.push(kv("service.version", s(v)));
    }
    attributes.push(kv("deployment.environment.name", s("production")));
    ResourceSpans {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One request of `n` spans of `svc`, ending in the 5 ms before `now_ns`.
pub fn request(
    svc: &Service,
    n: usize,
    now_ns: u64,
    rng: &mut fastrand::Rng,
) -> ExportTraceServiceRequest {
    let b = Behaviour {
        error_ratio: svc.error_ratio,
        slowdown: 1.0,
    };
    let spans = server_spans(svc, b, n, (now_ns.saturating_sub(5_000_000), now_ns), rng);
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(&svc.name, Some(&svc.version), spans)],
    }
}

/// Wall-clock time (Unix ns).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How long a refused request is retried after the run's end before it is given up.
const RETRY_GRACE: Duration = Duration::from_secs(5);

/// Runs the fleet against `opts.endpoint` until `opts.duration` has passed and every
/// request in flight is answered; `progress` is called about once a second.
pub async fn run(
    opts: &Options,
    progress: impl Fn(&Counts, Duration),
) -> Result<Summary, LoadgenError> {
    let uri: http::Uri = opts
        .endpoint
        .parse()
        .map_err(|e| LoadgenError::Endpoint(format!("{:?}: {e}", opts.endpoint)))?;
    if uri.authority().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(LoadgenError::Endpoint(format!(
            "{:?}: an http:// or https:// URL with a host",
            opts.endpoint
        )));
    }
    let concurrency = opts.concurrency.max(1);
    let client = Arc::new(Client::new(
        &uri,
        opts.protocol,
        Default::default(),
        None,
        concurrency,
    )?);
    let fleet = Arc::new(fleet(opts.services.max(1)));
    let counts = Arc::new(Counts::default());
    let batch = opts.batch.max(1);
    let start = Instant::now();
    let end = start + opts.duration;
    // Fixed rate: request k may start at start + k * batch / rate.
    let interval =
        (opts.rate > 0).then(|| Duration::from_secs_f64(batch as f64 / opts.rate as f64));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, fleet, counts, next) =
            (client.clone(), fleet.clone(), counts.clone(), next.clone());
        workers.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(0x6d6f6d656e74756d ^ w as u64);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if let Some(iv) = interval {
                    let at = start + iv.mul_f64(k as f64);
                    if at >= end {
                        return;
                    }
                    tokio::time::sleep_until(at.into()).await;
                } else if Instant::now() >= end {
                    return;
                }
                let svc = &fleet[k as usize % fleet.len()];
                let body = Bytes::from(request(svc, batch, now_ns(), &mut rng).encode_to_vec());
                send(&client, &body, batch as u64, &counts, end + RETRY_GRACE).await;
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => progress(&counts, start.elapsed()),
            joined = workers.join_next() => if joined.is_none() { break },
        }
    }
    Ok(Summary {
        counts,
        elapsed: start.elapsed(),
    })
}

/// Sends one request until it is accepted, refused for good, or still refused at
/// `give_up`; counts the outcome.
pub async fn send(client: &Client, body: &Bytes, spans: u64, counts: &Counts, give_up: Instant) {
    let mut failures = 0u32;
    loop {
        if failures > 0 {
            counts.retried.fetch_add(1, Ordering::Relaxed);
        }
        match client.send(Signal::Traces, body).await {
            Ok(()) => {
                counts.sent.fetch_add(spans, Ordering::Relaxed);
                counts.requests.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(SendError::Permanent { message }) => {
                tracing::warn!("request refused for good: {message}");
                counts.failed.fetch_add(spans, Ordering::Relaxed);
                return;
            }
            Err(SendError::Retryable { after, .. }) => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                // the forwarder's policy: the delay asked for, else full jitter
                let wait = after.unwrap_or_else(|| full_jitter(failures));
                failures += 1;
                if Instant::now() + wait >= give_up {
                    counts.failed.fetch_add(spans, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}
