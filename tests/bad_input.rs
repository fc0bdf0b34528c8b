//! Bad input over the wire: every case gets the status of the README's Endpoints table, is counted under its
//! reason, and the process keeps serving.

#![allow(clippy::type_complexity)] // the case tables are tuples on purpose
mod common;

use std::io::Write;

use bytes::Bytes;
use common::{http_request, metric, Proc};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

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

fn request(service: Option<&str>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: service
                    .map(|s| vec![kv("service.name", s)])
                    .unwrap_or_default(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn server_span(name: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn post(
    p: &Proc,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_request(&p.http, "POST", path, headers, body)
}

const PB: (&str, &str) = ("content-type", "application/x-protobuf");

/// One unary gRPC call over a fresh HTTP/2 connection: (grpc-status, message bytes).
async fn grpc_call(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    framed: Vec<u8>,
) -> (i32, Bytes) {
    let mut send = common::h2_connect(addr).await;
    let mut req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::from(framed))).unwrap())
        .await
        .unwrap();
    let header_status = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().parse::<i32>().unwrap());
    let collected = resp.into_body().collect().await.unwrap();
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().parse::<i32>().unwrap());
    let body = collected.to_bytes();
    let status = header_status.or(trailer_status).expect("a grpc-status");
    let msg = if body.len() >= 5 {
        body.slice(5..)
    } else {
        Bytes::new()
    };
    (status, msg)
}

fn frame(flag: u8, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_spec_status_and_is_counted() {
    let p = Proc::start(
        "receivers:\n  otlp:\n    grpc: { endpoint: 127.0.0.1:0 }\n    http: { endpoint: 127.0.0.1:0 }\n    max_request_mib: 1\nadmin: { endpoint: 127.0.0.1:0 }\n",
    );
    let now = now_ns();
    let good = request(
        Some("svc"),
        vec![server_span("GET /", now - 1_000_000, now)],
    )
    .encode_to_vec();
    let truncated = &good[..good.len() - 3];
    // A span name with invalid UTF-8: encode a valid name, then corrupt its bytes.
    let mut bad_utf8 = request(
        Some("svc"),
        vec![server_span("GET /xyz", now - 1_000_000, now)],
    )
    .encode_to_vec();
    let pos = bad_utf8.windows(4).position(|w| w == b"/xyz").unwrap();
    bad_utf8[pos + 1] = 0xff;
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "the bomb is small on the wire");
    let oversize = vec![0u8; (1 << 20) + 1];

    // HTTP
    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<u8>, u16)> = vec![
        (
            "garbage",
            vec![PB],
            b"\xff\xff\xff\xff garbage".to_vec(),
            400,
        ),
        ("truncated protobuf", vec![PB], truncated.to_vec(), 400),
        (
            "wrong content-type",
            vec![("content-type", "text/plain")],
            good.clone(),
            415,
        ),
        (
            "invalid JSON",
            vec![("content-type", "application/json")],
            b"{\"resourceSpans\": [".to_vec(),
            400,
        ),
        (
            "bad gzip",
            vec![PB, ("content-encoding", "gzip")],
            b"definitely not gzip".to_vec(),
            400,
        ),
        (
            "gzip bomb",
            vec![PB, ("content-encoding", "gzip")],
            bomb.clone(),
            413,
        ),
        ("oversize body", vec![PB], oversize.clone(), 413),
        ("invalid UTF-8", vec![PB], bad_utf8.clone(), 400),
    ];
    for (what, headers, body, want) in &cases {
        let (status, _, _) = post(&p, "/v1/traces", headers, body);
        assert_eq!(status, *want, "HTTP {what}");
    }
    // gRPC
    let grpc_cases: Vec<(&str, Vec<(&str, &str)>, Vec<u8>, i32)> = vec![
        ("garbage", vec![], frame(0, b"\xff\xff\xff\xff garbage"), 3),
        ("truncated protobuf", vec![], frame(0, truncated), 3),
        ("truncated frame", vec![], frame(0, &good)[..10].to_vec(), 3),
        (
            "bad gzip",
            vec![("grpc-encoding", "gzip")],
            frame(1, b"not gzip"),
            3,
        ),
        (
            "gzip bomb",
            vec![("grpc-encoding", "gzip")],
            frame(1, &bomb),
            8,
        ),
        ("oversize", vec![], frame(0, &oversize), 8),
        ("invalid UTF-8", vec![], frame(0, &bad_utf8), 3),
    ];
    for (what, headers, body, want) in &grpc_cases {
        let (status, _) = grpc_call(&p.grpc, TRACES, headers, body.clone()).await;
        assert_eq!(status, *want, "gRPC {what}");
    }

    // Still serving: a valid request is accepted on both transports.
    let (status, _, _) = post(&p, "/v1/traces", &[PB], &good);
    assert_eq!(status, 200);
    let (status, _) = grpc_call(&p.grpc, TRACES, &[], frame(0, &good)).await;
    assert_eq!(status, 0);

    // A resource without service.name is unknown_service; a span ending before it
    // starts is invalid, counted, and reported in partial_success.
    let mixed = request(
        None,
        vec![
            server_span("ok", now - 2_000_000, now),
            server_span("backwards", now, now - 1_000),
        ],
    );
    let (status, msg) = grpc_call(&p.grpc, TRACES, &[], frame(0, &mixed.encode_to_vec())).await;
    assert_eq!(status, 0);
    let resp = ExportTraceServiceResponse::decode(msg).unwrap();
    let ps = resp
        .partial_success
        .expect("partial_success for an invalid span");
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("end before"),
        "{}",
        ps.error_message
    );
    let (status, _, body) = post(&p, "/v1/traces", &[PB], &good);
    assert_eq!(status, 200);
    let ok = ExportTraceServiceResponse::decode(Bytes::from(body)).unwrap();
    assert!(
        ok.partial_success.is_none(),
        "a valid request leaves partial_success unset"
    );

    // Waited for as a whole: every shard has counted what it was given.
    let m = p.wait_metrics(10, |m| {
        let v = |n| metric(m, n, &[]).unwrap_or(-1.0);
        metric(
            m,
            "momentum_sli_requests_total",
            &[("service_name", "unknown_service")],
        ) == Some(1.0)
            && v("momentum_receiver_accepted_spans_total")
                == v("momentum_pipeline_processed_spans_total")
                    + v("momentum_pipeline_late_spans_total")
                    + v("momentum_pipeline_invalid_spans_total")
    });
    assert_eq!(
        metric(
            &m,
            "momentum_sli_requests_total",
            &[("service_name", "unknown_service")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "momentum_pipeline_invalid_spans_total", &[]),
        Some(1.0)
    );
    let refused = |r: &str| {
        metric(
            &m,
            "momentum_receiver_refused_spans_total",
            &[("reason", r)],
        )
        .unwrap()
    };
    assert_eq!(
        refused("decode"),
        10.0,
        "5 HTTP + 5 gRPC undecodable requests, one span each"
    );
    assert_eq!(refused("too_large"), 4.0);
    assert_eq!(refused("unsupported_media_type"), 1.0);
    // accepted = processed + late + invalid once drained
    let accepted = metric(&m, "momentum_receiver_accepted_spans_total", &[]).unwrap();
    let processed = metric(&m, "momentum_pipeline_processed_spans_total", &[]).unwrap();
    let late = metric(&m, "momentum_pipeline_late_spans_total", &[]).unwrap();
    let invalid = metric(&m, "momentum_pipeline_invalid_spans_total", &[]).unwrap();
    assert_eq!(accepted, processed + late + invalid);
    assert_eq!(accepted, 5.0);
    assert!(p.stop().success());
}

/// One request of each signal (protobuf) whose span attribute, data point attribute or
/// log body nests `depth` kvlists.
fn deep_requests(depth: usize) -> [Vec<u8>; 3] {
    use common::field;
    use opentelemetry_proto::tonic::metrics::v1::{number_data_point, Metric, NumberDataPoint};
    let value = common::deep_kvlist(depth);
    let mut attr = Vec::new();
    field(&mut attr, 0x0a, b"deep"); // KeyValue.key
    field(&mut attr, 0x12, &value); // KeyValue.value
    let now = now_ns();
    let resource = Resource {
        attributes: vec![kv("service.name", "deep-svc")],
        ..Default::default()
    }
    .encode_to_vec();
    // Protobuf fields concatenate: the deep part is appended to an ordinary message.
    let mut span = server_span("GET /", now - 2_000_000, now - 1_000_000).encode_to_vec();
    field(&mut span, 0x4a, &attr); // Span.attributes
    let mut rs = Vec::new();
    field(&mut rs, 0x0a, &resource);
    let mut ss = Vec::new();
    field(&mut ss, 0x12, &span);
    field(&mut rs, 0x12, &ss);
    let mut traces = Vec::new();
    field(&mut traces, 0x0a, &rs);

    let mut dp = NumberDataPoint {
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(1)),
        ..Default::default()
    }
    .encode_to_vec();
    field(&mut dp, 0x3a, &attr); // NumberDataPoint.attributes
    let mut gauge = Vec::new();
    field(&mut gauge, 0x0a, &dp);
    let mut metric = Metric {
        name: "g".into(),
        ..Default::default()
    }
    .encode_to_vec();
    field(&mut metric, 0x2a, &gauge); // Metric.gauge
    let mut sm = Vec::new();
    field(&mut sm, 0x12, &metric);
    let mut rm = Vec::new();
    field(&mut rm, 0x0a, &resource);
    field(&mut rm, 0x12, &sm);
    let mut metrics = Vec::new();
    field(&mut metrics, 0x0a, &rm);

    let mut record = Vec::new();
    field(&mut record, 0x2a, &value); // LogRecord.body
    let mut sl = Vec::new();
    field(&mut sl, 0x12, &record);
    let mut rl = Vec::new();
    field(&mut rl, 0x0a, &resource);
    field(&mut rl, 0x12, &sl);
    let mut logs = Vec::new();
    field(&mut logs, 0x0a, &rl);
    [traces, metrics, logs]
}

/// OTLP/JSON traces whose span attribute nests `depth` kvlists.
fn deep_json(depth: usize) -> String {
    let now = now_ns();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"deep-svc"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET /","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{{"key":"deep","value":{}{{"stringValue":"x"}}{}}}]}}]}}]}}]}}"#,
        now - 2_000_000,
        now - 1_000_000,
        r#"{"kvlistValue":{"values":[{"key":"k","value":"#.repeat(depth - 1),
        "}]}}".repeat(depth - 1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_over_both_transports_and_the_next_request_is_counted() {
    let p = Proc::start(&common::config_yaml(""));
    const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    let mut refused = 0.0;
    // 100,000 levels: the lean decoder (traces), prost (metrics, logs) and serde_json
    // (OTLP/JSON) each refuse it without recursing into it; 20 levels: under prost's and
    // serde_json's limits, over the lean decoder's 16.
    for depth in [100_000, 20] {
        let [traces, metrics, logs] = deep_requests(depth);
        for (path, body) in [("/v1/traces", &traces), ("/v1/metrics", &metrics)] {
            if path == "/v1/metrics" && depth == 20 {
                continue; // prost's 100 message levels hold 20 kvlists: accepted
            }
            let (s, _, b) = post(&p, path, &[PB], body);
            assert_eq!(s, 400, "{path} {depth}: {}", String::from_utf8_lossy(&b));
            refused += 1.0;
        }
        for (path, body) in [(TRACES, &traces), (LOGS, &logs)] {
            if path == LOGS && depth == 20 {
                continue;
            }
            let (status, _) = grpc_call(&p.grpc, path, &[], frame(0, body)).await;
            assert_eq!(status, 3, "{path} {depth}: INVALID_ARGUMENT");
            refused += 1.0;
        }
        let json = deep_json(depth);
        let (s, _, b) = post(
            &p,
            "/v1/traces",
            &[("content-type", "application/json")],
            json.as_bytes(),
        );
        assert_eq!(s, 400, "JSON {depth}: {}", String::from_utf8_lossy(&b));
        refused += 1.0;
    }
    // The lean decoder says what it refused.
    let [traces, _, _] = deep_requests(20);
    let (_, _, b) = post(&p, "/v1/traces", &[PB], &traces);
    refused += 1.0;
    assert!(String::from_utf8_lossy(&b).contains("nested deeper than 16"));
    // 16 levels pass, and the next valid request is counted.
    let ok = deep_json(16);
    let (s, _, _) = post(
        &p,
        "/v1/traces",
        &[("content-type", "application/json")],
        ok.as_bytes(),
    );
    assert_eq!(s, 200);
    let req = request(
        Some("deep-svc"),
        vec![server_span(
            "GET /",
            now_ns() - 2_000_000,
            now_ns() - 1_000_000,
        )],
    );
    let (s, _, _) = post(&p, "/v1/traces", &[PB], &req.encode_to_vec());
    assert_eq!(s, 200);
    let m = p.metrics();
    assert_eq!(
        metric(
            &m,
            "momentum_receiver_refused_requests_total",
            &[("reason", "decode")]
        ),
        Some(refused),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "momentum_receiver_accepted_spans_total",
            &[("transport", "http")]
        ),
        Some(2.0),
        "{m}"
    );
    assert!(p.stop().success());
}
