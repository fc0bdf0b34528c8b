//! Push exporters over the real wire, from the real binary: OTLP metrics push into a
//! capturing OTLP server (gRPC and HTTP), momentum's own telemetry (metrics and SDK
//! traces) into the same kind of server, and remote write into a real Prometheus.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sinks::{prom_query, start_prometheus, start_sink};
use common::{config_yaml, http_request, metric, Proc};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// Polls `f` every 100 ms for at most `secs` seconds.
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------ traffic

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

/// The traffic: `checkout` in `prod` (40 requests, every 8th an error) and `search`
/// without an environment (25 requests, no error). Latencies 10 ms × (1 + i % 9).
const TRAFFIC: [(&str, &str, u64, u64); 2] = [("checkout", "prod", 40, 8), ("search", "", 25, 0)];

fn latency_s(i: u64) -> f64 {
    0.010 * (1 + i % 9) as f64
}

/// What was sent for one service.
struct Sent {
    requests: u64,
    errors: u64,
    /// latencies in seconds, as the spans carry them (whole nanoseconds)
    latencies: Vec<f64>,
}

/// Exact nearest-rank quantile.
fn nearest_rank(latencies: &[f64], q: f64) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let k = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[k - 1]
}

/// Sends [`TRAFFIC`] as OTLP/HTTP protobuf; answers what was sent per service.
fn send_traffic(p: &Proc) -> BTreeMap<&'static str, Sent> {
    let mut expected = BTreeMap::new();
    let end = now_ns() - 1_000_000;
    for (service, env, n, error_every) in TRAFFIC {
        let mut resource = vec![kv("service.name", service)];
        if !env.is_empty() {
            resource.push(kv("deployment.environment.name", env));
        }
        let mut errors = 0;
        let mut latencies = Vec::new();
        let spans = (0..n)
            .map(|i| {
                let error = error_every > 0 && i % error_every == 0;
                errors += error as u64;
                let lat = (latency_s(i) * 1e9) as u64;
                latencies.push(lat as f64 / 1e9);
                Span {
                    trace_id: [[1; 8], (i + 1).to_be_bytes()].concat(),
                    span_id: (i + 1).to_be_bytes().to_vec(),
                    name: "GET /items".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: end - lat,
                    end_time_unix_nano: end,
                    status: error.then(|| opentelemetry_proto::tonic::trace::v1::Status {
                        code: status::StatusCode::Error as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (status, _, body) = http_request(
            &p.http,
            "POST",
            "/v1/traces",
            &[("content-type", "application/x-protobuf")],
            &req.encode_to_vec(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        expected.insert(
            service,
            Sent {
                requests: n,
                errors,
                latencies,
            },
        );
    }
    expected
}

// ------------------------------------------------------------------ reading OTLP

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn metrics_of(req: &ExportMetricsServiceRequest) -> Vec<&Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn find<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    metrics_of(req).into_iter().find(|m| m.name == name)
}

fn sum_points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic, "{} is monotonic", m.name);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32,
                "{} is cumulative",
                m.name
            );
            &s.data_points
        }
        other => panic!("{} is not a sum: {other:?}", m.name),
    }
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => panic!("point without a value"),
    }
}

/// `momentum.sli.requests` summed over its points, when the request has it.
fn total_requests(req: &ExportMetricsServiceRequest) -> Option<f64> {
    find(req, "momentum.sli.requests").map(|m| sum_points(m).iter().map(number).sum())
}

fn resource_attr<'a>(req: &'a ExportMetricsServiceRequest, key: &str) -> Option<&'a str> {
    attr(&req.resource_metrics[0].resource.as_ref()?.attributes, key)
}

// ------------------------------------------------------------------ (a) OTLP push

fn otlp_push(protocol: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, captured) = start_sink(&rt);
    let started_ns = now_ns();
    let p = Proc::start(&config_yaml(&format!(
        "exporters:\n  otlp: {{ endpoint: http://{addr}, protocol: {protocol}, interval: 1s, forward: [], headers: {{ X-Tenant: acme }} }}\n"
    )));
    let expected = send_traffic(&p);
    let total: u64 = expected.values().map(|e| e.requests).sum();
    let m = p.wait_metrics(20, |m| {
        metric(m, "momentum_sli_requests_total", &[]) == Some(total as f64)
    });
    assert_eq!(
        metric(&m, "momentum_sli_requests_total", &[]),
        Some(total as f64)
    );

    // A push that carries everything sent.
    let req = wait_for(20, || {
        let c = captured.metrics.lock().unwrap();
        c.iter()
            .rev()
            .find(|(_, _, r)| total_requests(r) == Some(total as f64))
            .cloned()
    })
    .unwrap_or_else(|| panic!("no {protocol} push with {total} requests arrived"));
    let (transport, tenant, req) = req;
    assert_eq!(transport, protocol);
    assert_eq!(
        tenant.as_deref(),
        Some("acme"),
        "configured headers are sent"
    );

    // Resource: momentum itself.
    assert_eq!(resource_attr(&req, "service.name"), Some("momentum"));
    assert_eq!(
        resource_attr(&req, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let instance = resource_attr(&req, "service.instance.id").expect("instance id");
    assert_eq!(instance.len(), 36, "{instance}");
    let scope = req.resource_metrics[0].scope_metrics[0].scope.as_ref();
    assert_eq!(scope.map(|s| s.name.as_str()), Some("momentum"));

    // Counters: cumulative monotonic sums, start time = series creation, pair attributes.
    for (name, unit) in [
        ("momentum.sli.requests", "{request}"),
        ("momentum.sli.errors", "{request}"),
        ("momentum.operation.requests", "{request}"),
    ] {
        let m = find(&req, name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(m.unit, unit, "{name} unit");
        for p in sum_points(m) {
            assert!(
                p.start_time_unix_nano >= started_ns && p.start_time_unix_nano < p.time_unix_nano,
                "{name}: start {} / time {} / test start {started_ns}",
                p.start_time_unix_nano,
                p.time_unix_nano
            );
        }
    }
    let req_points = sum_points(find(&req, "momentum.sli.requests").unwrap());
    let err_points = sum_points(find(&req, "momentum.sli.errors").unwrap());
    assert_eq!(req_points.len(), 2);
    for (service, env, _, _) in TRAFFIC {
        let (n, errors) = (expected[service].requests, expected[service].errors);
        let of = |pts: &[NumberDataPoint]| {
            let p = pts
                .iter()
                .find(|p| attr(&p.attributes, "service.name") == Some(service))
                .unwrap_or_else(|| panic!("no point for {service}"));
            let want_env = (!env.is_empty()).then_some(env);
            assert_eq!(
                attr(&p.attributes, "deployment.environment.name"),
                want_env,
                "{service}: environment attribute (omitted when empty)"
            );
            assert_eq!(p.attributes.len(), 1 + want_env.is_some() as usize);
            number(p)
        };
        assert_eq!(of(req_points), n as f64, "{service} requests");
        assert_eq!(of(err_points), errors as f64, "{service} errors");
        // The same count as /metrics.
        assert_eq!(
            metric(
                &m,
                "momentum_sli_requests_total",
                &[("service_name", service)]
            ),
            Some(n as f64)
        );
    }

    // Summaries: cumulative count/sum, windowed quantiles.
    let lat = find(&req, "momentum.sli.latency").expect("latency");
    assert_eq!(lat.unit, "s");
    let Some(metric::Data::Summary(s)) = &lat.data else {
        panic!("latency is not a summary: {lat:?}")
    };
    let checkout: Vec<_> = s
        .data_points
        .iter()
        .filter(|p| attr(&p.attributes, "service.name") == Some("checkout"))
        .collect();
    let mut windows: Vec<&str> = checkout
        .iter()
        .map(|p| attr(&p.attributes, "window").unwrap())
        .collect();
    windows.sort();
    assert_eq!(windows, ["1d", "1h", "5m"]);
    let sent = &expected["checkout"];
    let (n, sum) = (sent.requests, sent.latencies.iter().sum::<f64>());
    for p in &checkout {
        assert_eq!(p.count, n);
        assert!((p.sum - sum).abs() < 1e-6, "sum {} vs {sum}", p.sum);
        assert!(p.start_time_unix_nano >= started_ns);
        let qs: Vec<f64> = p.quantile_values.iter().map(|q| q.quantile).collect();
        assert_eq!(qs, [0.5, 0.9, 0.95, 0.99, 0.999]);
        // within the sketch's 1% of the exact nearest-rank quantile
        for q in &p.quantile_values {
            let exact = nearest_rank(&sent.latencies, q.quantile);
            assert!(
                (q.value - exact).abs() <= 0.01 * exact,
                "q{}: {} vs exact {exact}",
                q.quantile,
                q.value
            );
        }
    }
    let avail = find(&req, "momentum.sli.availability").expect("availability");
    assert_eq!(avail.unit, "1");
    assert!(matches!(avail.data, Some(metric::Data::Gauge(_))));

    // Self-telemetry rides along, the exporter's own counters included.
    let sent = wait_for(10, || {
        let c = captured.metrics.lock().unwrap();
        let last = &c.last()?.2;
        let m = find(last, "momentum.exporter.sent")?;
        let p = sum_points(m)
            .iter()
            .find(|p| attr(&p.attributes, "exporter") == Some("otlp"))?;
        (number(p) > 0.0).then_some(number(p))
    });
    assert!(
        sent.is_some(),
        "momentum.exporter.sent{{exporter=otlp}} > 0"
    );
    let m = p.metrics();
    assert!(metric(&m, "momentum_exporter_sent_total", &[("exporter", "otlp")]).unwrap() > 0.0);
    assert_eq!(
        metric(
            &m,
            "momentum_exporter_failed_total",
            &[("exporter", "otlp")]
        ),
        Some(0.0)
    );
    // One instance id for the whole process.
    let ids: Vec<String> = captured
        .metrics
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, _, r)| resource_attr(r, "service.instance.id").map(String::from))
        .collect();
    assert!(ids.len() >= 2 && ids.iter().all(|i| i == instance));
    assert!(p.stop().success());
}

#[test]
fn otlp_push_over_grpc_matches_spec_and_metrics_endpoint() {
    otlp_push("grpc");
}

#[test]
fn otlp_push_over_http_matches_spec_and_metrics_endpoint() {
    otlp_push("http");
}

// ------------------------------------------------------------------ shutdown and (b)

/// With hour-long intervals nothing is pushed while running: what arrives is the final
/// push of the graceful shutdown, from both the exporter and momentum's own telemetry,
/// and the SDK's span of that export call.
#[test]
fn shutdown_pushes_once_more_and_own_telemetry_sends_metrics_and_sdk_spans() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (exp_addr, exported) = start_sink(&rt);
    let (own_addr, own) = start_sink(&rt);
    let p = Proc::start(&config_yaml(&format!(
        "exporters:\n  otlp: {{ endpoint: http://{exp_addr}, interval: 1h, forward: [] }}\ntelemetry:\n  otlp: {{ endpoint: http://{own_addr}, interval: 1h }}\n"
    )));
    let expected = send_traffic(&p);
    let total: u64 = expected.values().map(|e| e.requests).sum();
    p.wait_metrics(20, |m| {
        metric(m, "momentum_sli_requests_total", &[]) == Some(total as f64)
    });
    assert!(
        exported.metrics.lock().unwrap().is_empty(),
        "no push before 1h"
    );
    assert!(p.stop().success());

    // Exactly one push in the whole run: none while running, the final one at the stop.
    let pushes = exported.metrics.lock().unwrap();
    assert_eq!(pushes.len(), 1, "exactly the final push");
    assert_eq!(total_requests(&pushes[0].2), Some(total as f64));

    // Own metrics: the self-telemetry families only, same resource.
    let own_metrics = own.metrics.lock().unwrap();
    assert_eq!(own_metrics.len(), 1, "the final self-telemetry push");
    let r = &own_metrics[0].2;
    assert_eq!(resource_attr(r, "service.name"), Some("momentum"));
    assert_eq!(
        resource_attr(r, "service.instance.id"),
        resource_attr(&pushes[0].2, "service.instance.id")
    );
    assert!(
        find(r, "momentum.sli.requests").is_none(),
        "no service series"
    );
    let accepted = find(r, "momentum.receiver.accepted_spans").expect("accepted spans");
    let http: f64 = sum_points(accepted)
        .iter()
        .filter(|p| attr(&p.attributes, "transport") == Some("http"))
        .map(number)
        .sum();
    assert_eq!(http, total as f64);
    let sent = sum_points(find(r, "momentum.exporter.sent").expect("exporter counters"));
    assert!(sent
        .iter()
        .any(|p| attr(&p.attributes, "exporter") == Some("otlp") && number(p) > 0.0));

    // SDK traces: the span of the (first, hence sampled) export call.
    let traces = own.traces.lock().unwrap();
    let spans: Vec<(&Resource, &Span)> = traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(|ss| &ss.spans)
                .map(move |s| (rs.resource.as_ref().unwrap(), s))
        })
        .collect();
    let (res, span) = spans
        .iter()
        .find(|(_, s)| attr(&s.attributes, "momentum.exporter") == Some("otlp"))
        .unwrap_or_else(|| panic!("no export span among {spans:?}"));
    assert_eq!(span.name, "momentum.export");
    assert_eq!(span.kind, span::SpanKind::Client as i32);
    assert_eq!(attr(&res.attributes, "service.name"), Some("momentum"));
    assert_eq!(
        attr(&res.attributes, "service.instance.id"),
        resource_attr(&pushes[0].2, "service.instance.id")
    );
    assert_eq!(
        attr(&span.attributes, "url.full"),
        Some(format!("http://{exp_addr}").as_str())
    );
}

// ------------------------------------------------------------------ (c) remote write

#[test]
fn remote_write_into_real_prometheus_matches_metrics_endpoint() {
    let prom = start_prometheus();
    let p = Proc::start(&config_yaml(&format!(
        "exporters:\n  remote_write: {{ endpoint: http://{}/api/v1/write, interval: 1s }}\n",
        prom.addr
    )));
    let expected = send_traffic(&p);
    let total: u64 = expected.values().map(|e| e.requests).sum();
    let m = p.wait_metrics(20, |m| {
        metric(m, "momentum_sli_requests_total", &[]) == Some(total as f64)
    });
    let got = wait_for(30, || {
        let r = prom_query(&prom.addr, "momentum_sli_requests_total");
        (r.iter().map(|x| x.1).sum::<f64>() == total as f64).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "prometheus never had {total}: {:?}",
            prom_query(&prom.addr, "momentum_sli_requests_total")
        )
    });
    assert_eq!(got.len(), 2);
    for (labels, value) in &got {
        let service = labels["service_name"].as_str().unwrap();
        let mut l = vec![("service_name", service)];
        if let Some(env) = labels["deployment_environment_name"].as_str() {
            l.push(("deployment_environment_name", env));
        }
        assert_eq!(
            metric(&m, "momentum_sli_requests_total", &l),
            Some(*value),
            "{labels}"
        );
        assert_eq!(*value, expected[service].requests as f64);
    }
    assert_eq!(
        got.iter()
            .find(|(l, _)| l["service_name"] == "checkout")
            .map(|(l, _)| l["deployment_environment_name"].clone()),
        Some(serde_json::json!("prod"))
    );
    // Summaries keep the exposition's shape.
    let count = prom_query(
        &prom.addr,
        "momentum_sli_latency_seconds_count%7Bservice_name=%22checkout%22,window=%225m%22%7D",
    );
    assert_eq!(count.len(), 1);
    assert_eq!(count[0].1, expected["checkout"].requests as f64);
    let p99 = prom_query(
        &prom.addr,
        "momentum_sli_latency_seconds%7Bservice_name=%22checkout%22,window=%225m%22,quantile=%220.99%22%7D",
    );
    assert_eq!(p99.len(), 1);
    let m = p.metrics();
    let want = metric(
        &m,
        "momentum_sli_latency_seconds",
        &[
            ("service_name", "checkout"),
            ("window", "5m"),
            ("quantile", "0.99"),
        ],
    );
    assert_eq!(Some(p99[0].1), want);
    assert!(
        metric(
            &m,
            "momentum_exporter_sent_total",
            &[("exporter", "remote_write")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        metric(
            &m,
            "momentum_exporter_failed_total",
            &[("exporter", "remote_write")]
        ),
        Some(0.0)
    );
    assert!(p.stop().success());
}

/// A receiver answering a fixed status: 503 is retried within the interval, 400 is not.
#[test]
fn remote_write_retries_5xx_but_not_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (status, retried) in [(503u16, true), (400, false)] {
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
                let h = h.clone();
                async move {
                    assert_eq!(headers.get("content-encoding").unwrap(), "snappy");
                    assert_eq!(
                        headers.get("x-prometheus-remote-write-version").unwrap(),
                        "0.1.0"
                    );
                    snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                    h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await });
        let p = Proc::start(&config_yaml(&format!(
            "exporters:\n  remote_write: {{ endpoint: http://{addr}/api/v1/write, interval: 2s }}\n"
        )));
        let m = p.wait_metrics(20, |m| {
            metric(
                m,
                "momentum_exporter_failed_total",
                &[("exporter", "remote_write")],
            )
            .is_some_and(|v| v > 0.0)
        });
        let failed = metric(
            &m,
            "momentum_exporter_failed_total",
            &[("exporter", "remote_write")],
        );
        assert!(
            failed.is_some_and(|v| v > 0.0),
            "{status}: failures counted"
        );
        let r = metric(
            &m,
            "momentum_exporter_retried_total",
            &[("exporter", "remote_write")],
        )
        .unwrap();
        let hits = hits.load(std::sync::atomic::Ordering::Relaxed);
        if retried {
            assert!(r > 0.0 && hits >= 2, "{status}: retried {r}, hits {hits}");
        } else {
            assert_eq!(r, 0.0, "{status} is not retried");
            assert!(hits >= 1);
        }
        assert_eq!(
            metric(
                &m,
                "momentum_exporter_sent_total",
                &[("exporter", "remote_write")]
            ),
            Some(0.0)
        );
        assert!(p.stop().success());
    }
}
