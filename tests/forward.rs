//! Forwarding over the real wire: client → momentum A → next hop, where the next hop is a
//! second momentum (B) or a small capturing server written here. B must count exactly
//! what the client sent; outages within queue capacity lose nothing (also across a
//! restart of A with `queue.dir`); beyond capacity the client is refused and counted;
//! permanent errors are not retried.

mod common;

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config_yaml, http_request, metric, run_py, Proc};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service)],
        ..Default::default()
    })
}

/// `n` SERVER spans ending now, each carrying `pad` bytes of attribute.
fn traces(service: &str, n: usize, pad: usize) -> ExportTraceServiceRequest {
    let end = now_ns();
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "GET /x".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: end - 5_000_000,
            end_time_unix_nano: end,
            attributes: vec![kv("pad", &"p".repeat(pad))],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A sum with `points` data points.
fn metrics(points: usize) -> ExportMetricsServiceRequest {
    let now = now_ns();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "orders".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                attributes: vec![kv("shop", &i.to_string())],
                                time_unix_nano: now,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: 1,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `records` log records.
fn logs(records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("checkout"),
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: now_ns(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

/// One unary gRPC call over a fresh HTTP/2 connection: (grpc-status, whether the answer
/// carried grpc-status-details-bin).
fn grpc_call(addr: &str, path: &str, msg: &[u8]) -> (i32, bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut send = common::h2_connect(addr).await;
        let req = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(frame(msg))))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let mut fields = resp.headers().clone();
        let collected = resp.into_body().collect().await.unwrap();
        if let Some(t) = collected.trailers() {
            fields.extend(t.clone());
        }
        let status = fields
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().parse::<i32>().unwrap())
            .expect("a grpc-status");
        (status, fields.contains_key("grpc-status-details-bin"))
    })
}

/// The next hop's address as the forwarder sees it: a port the test owns (bound to port
/// 0, so nothing else can take it), closed — every connection dropped at once, as a hop
/// that is down — until [`HopGate::open`] relays it to a next hop started later on its own
/// OS-chosen port. No port is released and bound again.
struct HopGate {
    addr: String,
    target: Arc<Mutex<Option<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl HopGate {
    fn new() -> HopGate {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target: Arc<Mutex<Option<String>>> = Arc::default();
        let t = target.clone();
        rt.spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let Some(to) = t.lock().unwrap().clone() else {
                    drop(inbound);
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        HopGate {
            addr,
            target,
            _rt: rt,
        }
    }

    /// From now on, connections reach the OTLP/gRPC receiver of `hop`.
    fn open(&self, hop: &Proc) {
        *self.target.lock().unwrap() = Some(hop.grpc.clone());
    }
}

/// A momentum as the next hop of a test, on OS-chosen ports.
fn next_hop() -> Proc {
    Proc::start(&config_yaml(""))
}

/// A forwarding momentum: `exporter` is the body of `exporters.otlp`. The OTLP metrics
/// push of the same section goes to the same next hop; its interval is set far beyond any
/// test so only the forwarded requests arrive while a test looks (it pushes once more at
/// shutdown, after the test has looked).
fn forwarder(exporter: &str, extra: &str) -> Proc {
    Proc::start(&config_yaml(&format!(
        "exporters:\n  otlp:\n    interval: 1h\n{exporter}{extra}"
    )))
}

fn get(m: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(m, name, labels).unwrap_or(0.0)
}

fn fwd(m: &str, name: &str) -> f64 {
    get(m, name, &[("exporter", "forward")])
}

/// Sends `count` spans per service with the Python SDK; returns the spans sent.
fn send_sdk(protocol: &str, endpoint: &str, count: u32, seed: u32) -> u64 {
    let count = count.to_string();
    let seed = seed.to_string();
    let out = run_py(
        "send_spans.py",
        &[
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--count",
            &count,
            "--seed",
            &seed,
            "--batch-size",
            "50",
            "--service",
            "checkout",
            "--service",
            "payments",
        ],
    );
    assert_eq!(out["ok"], true, "{out}");
    out["totals"]["requests"].as_u64().unwrap()
}

/// Polls until `f` holds for the /metrics text of `p`, or panics after `secs`.
fn wait_for(p: &Proc, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
    common::poll(secs, what, |last| {
        let m = p.metrics();
        if f(&m) {
            return Some(m);
        }
        *last = format!("/metrics:\n{m}");
        None
    })
}

/// `promtool check metrics` accepts the exposition (with the exporter families in it).
fn promtool_accepts(m: &str) {
    let promtool = std::env::var_os("MOMENTUM_PROMTOOL")
        .expect("MOMENTUM_PROMTOOL is not set: run the suite through ./test.sh");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(m.contains("# TYPE momentum_exporter_queue_depth gauge"));
}

fn b_spans(m: &str) -> f64 {
    get(m, "momentum_sli_requests_total", &[])
}

#[test]
fn chain_counts_exactly_what_the_client_sent_over_grpc_and_http() {
    for protocol in ["grpc", "http"] {
        let b = Proc::start(&config_yaml(""));
        let (hop, queue) = match protocol {
            "grpc" => (format!("http://{}", b.grpc), "./queue"),
            _ => (format!("http://{}", b.http), "null"),
        };
        let a = forwarder(
            &format!(
                "    endpoint: {hop}\n    protocol: {protocol}\n    queue: {{ max_mib: 64, dir: {queue} }}\n"
            ),
            "",
        );
        // The client reaches A over both transports; A forwards over `protocol`.
        let sent = send_sdk("grpc", &a.grpc, 150, 1)
            + send_sdk("http", &format!("http://{}", a.http), 100, 2);
        assert_eq!(sent, 500);
        // Metrics over gRPC, logs as OTLP/JSON over HTTP: forwarded too.
        let (status, _) = grpc_call(&a.grpc, METRICS, &metrics(3).encode_to_vec());
        assert_eq!(status, 0);
        let json = serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeLogs": [{"logRecords": [
                {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "a"}},
                {"timeUnixNano": 1700000000000000001u64, "body": {"stringValue": "b"}},
                {"body": {"stringValue": "c"}},
                {"body": {"stringValue": "d"}, "traceId": "5b8efff798038103d269b633813fc60c"}
            ]}]
        }]});
        let (s, _, _) = http_request(
            &a.http,
            "POST",
            "/v1/logs",
            &[("content-type", "application/json")],
            json.to_string().as_bytes(),
        );
        assert_eq!(s, 200);

        // A's queue drains; B counts a request on receipt, before A hears it arrived,
        // so once A has nothing left B's receiver counters are final.
        let ma = wait_for(&a, 30, "A's queue to drain", |m| {
            fwd(m, "momentum_exporter_queue_depth") == 0.0
                && fwd(m, "momentum_exporter_sent_total") >= 507.0
        });
        let m = wait_for(&b, 10, "B's shards to count everything", |m| {
            b_spans(m) >= 500.0
        });
        // Exactly once: nothing lost, nothing twice.
        assert_eq!(b_spans(&m), 500.0, "{protocol}: B's requests");
        for s in ["checkout", "payments"] {
            assert_eq!(
                get(&m, "momentum_sli_requests_total", &[("service_name", s)]),
                250.0,
                "{protocol}: {s}"
            );
        }
        assert_eq!(
            get(
                &m,
                "momentum_receiver_accepted_spans_total",
                &[("transport", protocol)]
            ),
            500.0
        );
        assert_eq!(
            get(&m, "momentum_receiver_accepted_metric_points_total", &[]),
            3.0
        );
        assert_eq!(
            get(&m, "momentum_receiver_accepted_log_records_total", &[]),
            4.0
        );
        promtool_accepts(&ma);
        // A's view: every request delivered, none failed or left.
        // `sent` counts items: 500 spans, 3 data points, 4 log records.
        assert_eq!(fwd(&ma, "momentum_exporter_sent_total"), 507.0);
        assert_eq!(fwd(&ma, "momentum_exporter_failed_total"), 0.0);
        assert_eq!(fwd(&ma, "momentum_exporter_queue_bytes"), 0.0);
        // B's request count matches A's deliveries one for one.
        assert_eq!(
            get(&ma, "momentum_receiver_accepted_spans_total", &[]),
            500.0
        );
        assert!(a.stop().success());
        assert!(b.stop().success());
    }
}

#[test]
fn outage_within_capacity_loses_nothing_in_memory() {
    let hop = HopGate::new();
    let a = forwarder(
        &format!(
            "    endpoint: http://{}\n    queue: {{ dir: null }}\n",
            hop.addr
        ),
        "",
    );
    let sent = send_sdk("grpc", &a.grpc, 100, 3);
    // B is down: A keeps the requests and retries.
    let m = wait_for(&a, 20, "A to retry", |m| {
        fwd(m, "momentum_exporter_retried_total") >= 2.0
    });
    let queued = fwd(&m, "momentum_exporter_queue_depth");
    assert!(queued >= 4.0, "{queued} requests queued");
    assert!(fwd(&m, "momentum_exporter_queue_bytes") > 0.0);
    assert_eq!(fwd(&m, "momentum_exporter_sent_total"), 0.0);
    let b = next_hop();
    hop.open(&b);
    let ma = wait_for(&a, 30, "A's queue to drain", |m| {
        fwd(m, "momentum_exporter_queue_depth") == 0.0
    });
    assert_eq!(fwd(&ma, "momentum_exporter_sent_total"), sent as f64);
    assert_eq!(fwd(&ma, "momentum_exporter_failed_total"), 0.0);
    let mb = wait_for(&b, 10, "B's shards to count the backlog", |m| {
        b_spans(m) >= sent as f64
    });
    assert_eq!(b_spans(&mb), sent as f64, "exactly once");
    assert_eq!(
        get(&mb, "momentum_receiver_accepted_spans_total", &[]),
        sent as f64
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[test]
fn shutdown_gives_the_queue_shutdown_timeout_to_drain() {
    let hop = HopGate::new();
    let mut a = forwarder(
        &format!(
            "    endpoint: http://{}\n    queue: {{ dir: null }}\n",
            hop.addr
        ),
        "shutdown_timeout: 30s\n",
    );
    let sent = send_sdk("grpc", &a.grpc, 60, 6);
    wait_for(&a, 20, "A to retry", |m| {
        fwd(m, "momentum_exporter_retried_total") >= 1.0
    });
    // A is asked to stop while B is down; B comes up during A's shutdown.
    common::signal(&a.child, "TERM");
    let b = next_hop();
    hop.open(&b);
    let status = common::wait_exit(&mut a.child, Duration::from_secs(40));
    assert!(status.success());
    let mb = wait_for(&b, 10, "B's shards to count what A drained", |m| {
        b_spans(m) >= sent as f64
    });
    assert_eq!(b_spans(&mb), sent as f64);
    assert!(b.stop().success());
}

#[test]
fn outage_across_a_restart_of_a_loses_nothing_with_queue_dir() {
    let hop = HopGate::new();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let exporter = format!(
        "    endpoint: http://{}\n    protocol: grpc\n    queue: {{ max_mib: 16, dir: {} }}\n",
        hop.addr,
        queue.display()
    );
    // A short shutdown_timeout: the next hop is down, so A cannot drain.
    let a = forwarder(&exporter, "shutdown_timeout: 1s\n");
    let first = send_sdk("http", &format!("http://{}", a.http), 120, 4);
    let m = wait_for(&a, 20, "A to queue and retry", |m| {
        fwd(m, "momentum_exporter_retried_total") >= 1.0
    });
    let queued = fwd(&m, "momentum_exporter_queue_depth");
    assert!(queued >= 4.0);
    // shutdown_timeout 1s: the stop gives up on the dead hop and exits (within the 30 s
    // stop() waits), keeping the backlog on disk.
    assert!(a.stop().success());
    let mut logs: Vec<_> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let last = logs.last().expect("the backlog stays on disk");
    // A torn write at the tail (as a crash mid-append leaves): skipped and counted.
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[0x55; 11]).unwrap();
    drop(f);

    // A again, same queue: the backlog is back, and more arrives while B is still down.
    let a = forwarder(&exporter, "shutdown_timeout: 1s\n");
    let m = a.metrics();
    assert_eq!(fwd(&m, "momentum_exporter_queue_depth"), queued);
    assert_eq!(fwd(&m, "momentum_exporter_queue_corrupt_total"), 1.0);
    let second = send_sdk("grpc", &a.grpc, 80, 5);
    let b = next_hop();
    hop.open(&b);
    let total = (first + second) as f64;
    wait_for(&a, 30, "A's queue to drain", |m| {
        fwd(m, "momentum_exporter_queue_depth") == 0.0
    });
    let mb = wait_for(&b, 10, "B's shards to count both runs' spans", |m| {
        b_spans(m) >= total
    });
    assert_eq!(b_spans(&mb), total, "exactly once across the restart");
    assert_eq!(
        get(&mb, "momentum_receiver_accepted_spans_total", &[]),
        total
    );
    assert!(a.stop().success());
    assert_eq!(
        std::fs::read_dir(&queue).unwrap().count(),
        0,
        "a drained queue leaves no files"
    );
    assert!(b.stop().success());
}

#[test]
fn beyond_capacity_the_client_is_refused_and_nothing_refused_is_kept() {
    let hop = HopGate::new();
    let a = forwarder(
        &format!(
            "    endpoint: http://{}\n    queue: {{ max_mib: 1, dir: null }}\n",
            hop.addr
        ),
        "",
    );
    // ~100 KB requests of 20 spans: about ten fit in 1 MiB.
    const SPANS: u64 = 20;
    let body = traces("checkout", SPANS as usize, 5000).encode_to_vec();
    assert!(body.len() > 100_000);
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..30 {
        if i % 2 == 0 {
            let (s, h, _) = http_request(
                &a.http,
                "POST",
                "/v1/traces",
                &[("content-type", "application/x-protobuf")],
                &body,
            );
            match s {
                200 => accepted += 1,
                503 => {
                    assert!(h.iter().any(|(k, _)| k == "retry-after"), "{h:?}");
                    refused += 1;
                }
                other => panic!("HTTP {other}"),
            }
        } else {
            match grpc_call(&a.grpc, TRACES, &body) {
                (0, _) => accepted += 1,
                (14, details) => {
                    assert!(details, "UNAVAILABLE carries RetryInfo");
                    refused += 1;
                }
                other => panic!("gRPC {other:?}"),
            }
        }
    }
    assert!((8..=11).contains(&accepted), "accepted {accepted}");
    assert_eq!(accepted + refused, 30);
    // Metrics and logs are refused the same way while the queue is full (each is larger
    // than the trace request that no longer fit).
    let big_metrics = metrics(8000).encode_to_vec();
    let big_logs = logs(8000).encode_to_vec();
    assert!(big_metrics.len() > body.len() && big_logs.len() > body.len());
    let (status, _) = grpc_call(&a.grpc, METRICS, &big_metrics);
    assert_eq!(status, 14);
    let (s, _, _) = http_request(
        &a.http,
        "POST",
        "/v1/logs",
        &[("content-type", "application/x-protobuf")],
        &big_logs,
    );
    assert_eq!(s, 503);

    let m = wait_for(&a, 10, "the shards to process what was accepted", |m| {
        get(m, "momentum_pipeline_processed_spans_total", &[])
            + get(m, "momentum_pipeline_late_spans_total", &[])
            + get(m, "momentum_pipeline_invalid_spans_total", &[])
            >= (accepted * SPANS) as f64
    });
    assert_eq!(
        get(
            &m,
            "momentum_receiver_refused_spans_total",
            &[("reason", "backpressure")]
        ),
        (refused * SPANS) as f64
    );
    assert_eq!(
        get(
            &m,
            "momentum_receiver_refused_requests_total",
            &[("reason", "backpressure")]
        ),
        (refused + 2) as f64
    );
    // Nothing refused reached the shards: accepted = processed + late + invalid.
    let accepted_spans = get(&m, "momentum_receiver_accepted_spans_total", &[]);
    assert_eq!(accepted_spans, (accepted * SPANS) as f64);
    assert_eq!(
        get(&m, "momentum_pipeline_processed_spans_total", &[])
            + get(&m, "momentum_pipeline_late_spans_total", &[])
            + get(&m, "momentum_pipeline_invalid_spans_total", &[]),
        accepted_spans
    );
    assert_eq!(fwd(&m, "momentum_exporter_queue_depth"), accepted as f64);
    assert_eq!(
        get(&m, "momentum_receiver_accepted_metric_points_total", &[]),
        0.0
    );

    // The next hop comes up: it gets exactly what was accepted.
    let b = next_hop();
    hop.open(&b);
    wait_for(&a, 30, "A's queue to drain", |m| {
        fwd(m, "momentum_exporter_queue_depth") == 0.0
    });
    let mb = wait_for(&b, 10, "B's shards to count the accepted spans", |m| {
        b_spans(m) >= accepted_spans
    });
    assert_eq!(b_spans(&mb), accepted_spans);
    assert_eq!(
        get(&mb, "momentum_receiver_accepted_spans_total", &[]),
        accepted_spans
    );
    // With room again, A accepts.
    let (s, _, _) = http_request(
        &a.http,
        "POST",
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        &body,
    );
    assert_eq!(s, 200);
    assert!(a.stop().success());
    assert!(b.stop().success());
}

/// What the capturing next hop saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    path: String,
    header: Option<String>,
    body: Bytes,
}

/// How the capturing next hop answers the `n`-th request (0-based).
type Answer = fn(n: usize, grpc: bool) -> http::Response<Full<Bytes>>;

/// A next hop that records every request and answers per `answer`, on its own thread.
struct Capture {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Capture {
    fn start(answer: Answer) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let log = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        s = listener.accept() => s.unwrap().0,
                        _ = &mut stopped => return,
                    };
                    let log = log.clone();
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move {
                                let grpc = req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                                let path = req.uri().path().to_string();
                                let header = req
                                    .headers()
                                    .get("x-chain")
                                    .map(|v| v.to_str().unwrap().to_string());
                                // A sender killed mid-body: nothing to record.
                                let Ok(body) = req.into_body().collect().await else {
                                    return Ok::<_, Infallible>(http_answer(500, None));
                                };
                                let body = body.to_bytes();
                                let n = {
                                    let mut l = log.lock().unwrap();
                                    l.push(Seen {
                                        at: Instant::now(),
                                        path,
                                        header,
                                        body,
                                    });
                                    l.len() - 1
                                };
                                Ok::<_, Infallible>(answer(n, grpc))
                            }
                        },
                    );
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                    });
                }
            });
        });
        Capture {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// The forwarded requests seen (traces and logs: the tests forward no metrics, so the
    /// OTLP metrics push of the same `exporters.otlp` section is left out).
    fn seen(&self) -> Vec<Seen> {
        let metrics = |p: &str| p == METRICS || p == "/v1/metrics";
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !metrics(&s.path))
            .cloned()
            .collect()
    }
}

/// A gRPC answer with `code` in trailers-only form (and RetryInfo when `retry` is set).
fn grpc_answer(code: tonic::Code, retry: Option<Duration>) -> http::Response<Full<Bytes>> {
    let status = match retry {
        Some(d) => {
            use tonic_types::StatusExt;
            tonic::Status::with_error_details(
                code,
                "test says so",
                tonic_types::ErrorDetails::with_retry_info(Some(d)),
            )
        }
        None => tonic::Status::new(code, "test says so"),
    };
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    resp.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    status.add_header(resp.headers_mut()).unwrap();
    resp
}

fn http_answer(status: u16, retry_after: Option<&str>) -> http::Response<Full<Bytes>> {
    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"test says so")));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    if let Some(r) = retry_after {
        resp.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    resp
}

/// The request bytes with an unknown field (number 1000, a string) appended: a decoder
/// that re-encoded would drop it, so the next hop seeing it proves the bytes were passed
/// on as they came.
fn with_unknown_field(mut msg: Vec<u8>) -> Vec<u8> {
    msg.extend_from_slice(&[0xc2, 0x3e, 3, b'x', b'y', b'z']);
    msg
}

#[test]
fn permanent_errors_are_not_retried_and_count_as_failed() {
    for protocol in ["grpc", "http"] {
        let hop = Capture::start(|_, grpc| {
            if grpc {
                grpc_answer(tonic::Code::InvalidArgument, None)
            } else {
                http_answer(400, None)
            }
        });
        let a = forwarder(
            &format!(
                "    endpoint: http://{}\n    protocol: {protocol}\n    headers: {{ x-chain: hop-a }}\n    queue: {{ dir: null }}\n",
                hop.addr
            ),
            "",
        );
        let body = with_unknown_field(traces("checkout", 3, 10).encode_to_vec());
        for _ in 0..2 {
            let (s, _, _) = http_request(
                &a.http,
                "POST",
                "/v1/traces",
                &[("content-type", "application/x-protobuf")],
                &body,
            );
            assert_eq!(s, 200);
        }
        // Two requests of 3 spans each: `failed` counts the spans.
        let m = wait_for(&a, 20, "both requests to fail", |m| {
            fwd(m, "momentum_exporter_failed_total") == 6.0
        });
        assert_eq!(fwd(&m, "momentum_exporter_retried_total"), 0.0);
        assert_eq!(fwd(&m, "momentum_exporter_sent_total"), 0.0);
        assert_eq!(fwd(&m, "momentum_exporter_queue_depth"), 0.0);
        let seen = hop.seen();
        assert_eq!(seen.len(), 2, "{protocol}: each request tried once");
        for s in &seen {
            assert_eq!(
                s.header.as_deref(),
                Some("hop-a"),
                "configured headers are sent"
            );
            match protocol {
                "grpc" => {
                    assert_eq!(s.path, TRACES);
                    assert_eq!(&s.body[..], &frame(&body)[..]);
                }
                _ => {
                    assert_eq!(s.path, "/v1/traces");
                    assert_eq!(&s.body[..], &body[..]);
                }
            }
        }
        assert!(a.stop().success());
    }
}

#[test]
fn retryable_answers_are_retried_after_the_delay_the_next_hop_asks_for() {
    for protocol in ["grpc", "http"] {
        // First answer: retry in 1 s (RetryInfo / Retry-After); then success.
        let hop = Capture::start(|n, grpc| match (n, grpc) {
            (0, true) => grpc_answer(tonic::Code::ResourceExhausted, Some(Duration::from_secs(1))),
            (0, false) => http_answer(429, Some("1")),
            (_, true) => grpc_answer(tonic::Code::Ok, None),
            (_, false) => http_answer(200, None),
        });
        let a = forwarder(
            &format!(
                "    endpoint: http://{}\n    protocol: {protocol}\n    queue: {{ dir: null }}\n",
                hop.addr
            ),
            "",
        );
        let body = with_unknown_field(logs(5).encode_to_vec());
        let (s, _, _) = http_request(
            &a.http,
            "POST",
            "/v1/logs",
            &[("content-type", "application/x-protobuf")],
            &body,
        );
        assert_eq!(s, 200);
        let m = wait_for(&a, 20, "the retry to succeed", |m| {
            fwd(m, "momentum_exporter_sent_total") == 5.0
        });
        assert_eq!(fwd(&m, "momentum_exporter_retried_total"), 1.0);
        assert_eq!(fwd(&m, "momentum_exporter_failed_total"), 0.0);
        let seen = hop.seen();
        assert_eq!(seen.len(), 2, "{protocol}");
        assert!(
            seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(950),
            "{protocol}: retried after {:?}, the next hop asked for 1 s",
            seen[1].at.duration_since(seen[0].at)
        );
        assert_eq!(seen[0].body, seen[1].body);
        let want = if protocol == "grpc" {
            frame(&body)
        } else {
            body
        };
        assert_eq!(&seen[1].body[..], &want[..]);
        assert!(a.stop().success());
    }
}

#[test]
fn bad_exporter_settings_stop_the_start() {
    for (exporter, words, code) in [
        (
            "    endpoint: https://127.0.0.1:1\n    tls: { ca_file: /nonexistent }\n",
            "/nonexistent",
            1,
        ),
        (
            "    endpoint: https://127.0.0.1:1\n    tls: { cert_file: /tmp/c.pem }\n",
            "cert_file and key_file must be set together",
            2, // a config error: `momentum validate` says it too
        ),
        (
            "    endpoint: http://127.0.0.1:1\n    headers: { \"bad header\": x }\n",
            "invalid HTTP header name",
            2,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("m.yaml");
        std::fs::write(
            &cfg,
            config_yaml(&format!("exporters:\n  otlp:\n{exporter}")),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_momentum"))
            .args(["run", "--config"])
            .arg(&cfg)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{words}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{err}");
    }
}

/// The next hop's answer that accepts everything.
fn ok_answer(_: usize, grpc: bool) -> http::Response<Full<Bytes>> {
    if grpc {
        grpc_answer(tonic::Code::Ok, None)
    } else {
        http_answer(200, None)
    }
}

/// The 8-byte request ids the tests put in their spans' trace ids, per forwarded span.
fn trace_ids(c: &Capture) -> Vec<u64> {
    c.seen()
        .iter()
        .filter(|s| s.path == TRACES)
        .flat_map(|s| {
            let r = ExportTraceServiceRequest::decode(&s.body[5..]).expect("a trace request");
            r.resource_spans
                .into_iter()
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .map(|sp| u64::from_be_bytes(sp.trace_id[..8].try_into().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// POST of a protobuf trace request over a fresh connection: Some(status), None when the
/// connection failed or died (the process was killed).
fn try_post(addr: &str, body: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// At-least-once through the disk queue: SIGKILL at 50 random instants while a client
/// sends, a restart on the same queue after each; every request that was answered 200
/// reaches the next hop in the end (duplicates allowed, and counted). A request is
/// answered only once the queue has written it, so a kill right after the answer loses
/// nothing.
#[test]
fn sigkill_at_random_instants_never_loses_an_acknowledged_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let hop = Capture::start(ok_answer);
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let exporter = format!(
        "    endpoint: http://{}\n    protocol: grpc\n    queue: {{ max_mib: 64, dir: {} }}\n",
        hop.addr,
        queue.display()
    );
    // one request: 20 spans, each with the request's id in its trace id
    let request = |id: u64| {
        let mut r = traces("kill", 20, 16);
        for s in &mut r.resource_spans[0].scope_spans[0].spans {
            s.trace_id = [id.to_be_bytes(), id.to_be_bytes()].concat();
        }
        r.encode_to_vec()
    };
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut rng = fastrand::Rng::with_seed(20261203);
    let deadline = Instant::now() + Duration::from_secs(180);
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let mut kills = 0;
    while kills < 50 && Instant::now() < deadline {
        let mut a = forwarder(&exporter, "");
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (http, stop, acked, ids) =
                (a.http.clone(), stop.clone(), acked.clone(), next_id.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let id = ids.fetch_add(1, Ordering::SeqCst);
                    match try_post(&http, &request(id)) {
                        Some(200) => acked.lock().unwrap().push(id),
                        Some(other) => panic!("answered {other}"),
                        None => return, // killed
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(rng.u64(5..150)));
        common::signal(&a.child, "KILL");
        let _ = common::wait_exit(&mut a.child, Duration::from_secs(10));
        stop.store(true, Ordering::SeqCst);
        sender.join().expect("the sender");
        kills += 1;
    }
    assert_eq!(kills, 50, "50 kills within the time bound");
    // A last start delivers what the queue holds.
    let a = forwarder(&exporter, "");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the client got answers: {}", acked.len());
    let seen_ids = || trace_ids(&hop);
    let wait = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let seen: std::collections::HashSet<u64> = seen_ids().into_iter().collect();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|id| !seen.contains(id))
            .collect();
        if missing.is_empty() || Instant::now() > wait {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let all = seen_ids();
    let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
    eprintln!(
        "{kills} kills, {} requests acknowledged, {} delivered ({} spans, {} of them again)",
        acked.len(),
        distinct.len(),
        all.len(),
        all.len() - distinct.len() * 20
    );
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
    assert!(a.stop().success());
}

/// Shutdown with a slow next hop, the disk queue and connections that never finish:
/// SIGTERM exits within its bound, and every acknowledged request reaches the next hop —
/// delivered before the exit or kept on disk and sent by the next start.
#[test]
fn sigterm_with_a_slow_next_hop_and_stuck_connections_loses_nothing_on_disk() {
    use std::io::Write as _;
    // 300 ms an answer (the capture serves one request at a time).
    let slow = Capture::start(|_, grpc| {
        std::thread::sleep(Duration::from_millis(300));
        if grpc {
            grpc_answer(tonic::Code::Ok, None)
        } else {
            http_answer(200, None)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let exporter = |addr: &str| {
        format!(
            "    endpoint: http://{addr}\n    protocol: grpc\n    queue: {{ max_mib: 64, dir: {} }}\n",
            queue.display()
        )
    };
    let mut a = forwarder(&exporter(&slow.addr), "shutdown_timeout: 3s\n");
    let mut acked = Vec::new();
    for id in 1..=40u64 {
        let mut r = traces("slow", 10, 16);
        for s in &mut r.resource_spans[0].scope_spans[0].spans {
            s.trace_id = [id.to_be_bytes(), id.to_be_bytes()].concat();
        }
        assert_eq!(try_post(&a.http, &r.encode_to_vec()), Some(200));
        acked.push(id);
    }
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut stuck = std::net::TcpStream::connect(&a.grpc).unwrap();
    stuck.write_all(preface).unwrap();
    let mut half = std::net::TcpStream::connect(&a.http).unwrap();
    half.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\nab")
        .unwrap();
    common::signal(&a.child, "TERM");
    // shutdown_timeout (3 s) and a margin for a loaded machine
    let status = common::wait_exit(&mut a.child, Duration::from_secs(8));
    assert!(status.success(), "{status}");
    drop((stuck, half));
    // The next start, with a next hop that answers at once, sends what was left.
    let fast = Capture::start(ok_answer);
    let b = forwarder(&exporter(&fast.addr), "");
    let ids =
        |c: &Capture| -> std::collections::HashSet<u64> { trace_ids(c).into_iter().collect() };
    let missing = common::poll(60, "every acknowledged request at a next hop", |last| {
        let seen: std::collections::HashSet<u64> = ids(&slow).union(&ids(&fast)).copied().collect();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|i| !seen.contains(i))
            .collect();
        *last = format!("missing {missing:?}");
        missing.is_empty().then_some(missing)
    });
    assert!(missing.is_empty());
    eprintln!(
        "delivered before the exit: {}, after the restart: {}",
        ids(&slow).len(),
        ids(&fast).len()
    );
    assert!(b.stop().success());
}
