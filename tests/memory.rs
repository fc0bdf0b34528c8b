//! Memory does not grow with what clients send at once: 1,024 concurrent OTLP/HTTP
//! streams of 4 MB bodies over HTTP/2 on the default config. Request bytes are held
//! against `receivers.otlp.max_inflight_mib` (256 MiB) before they are read, decoded
//! requests against the shard queues (`pipeline.queue_capacity_mib`, 64 MiB a shard),
//! and the excess is refused with 503 + Retry-After; every accepted span is processed.
//! Under sustained overload (several times what one shard processes, both transports)
//! memory stays flat and the refusals carry retry hints.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::{config_yaml, kv, metric, Proc};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// A request of about 4 MB: `spans` spans with a few attributes each.
fn big_request(spans: usize, end: u64) -> Vec<u8> {
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "POST /v1/orders".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: end - 20_000_000,
            end_time_unix_nano: end,
            attributes: vec![
                kv("http.request.method", "POST"),
                kv("http.route", "/v1/orders"),
                kv("url.path", "/v1/orders/1234567890"),
                kv(
                    "user_agent.original",
                    "Mozilla/5.0 (X11; Linux x86_64) load test",
                ),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "bulk")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024.0
}

/// `streams` concurrent POSTs of `body` on each of `connections` HTTP/2 connections to
/// `/v1/traces`: (answered 200, answered 503 with Retry-After); anything else panics.
fn burst(http: &str, body: &Bytes, connections: usize, streams: usize) -> (u64, u64) {
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let sender = common::h2_connect::<Full<Bytes>>(http).await;
            for _ in 0..streams {
                let mut sender = sender.clone();
                let (body, ok, refused) = (body.clone(), ok.clone(), refused.clone());
                let uri = format!("http://{}/v1/traces", http);
                tasks.push(tokio::spawn(async move {
                    let req = http::Request::post(uri)
                        .header("content-type", "application/x-protobuf")
                        .header("content-length", body.len())
                        .body(Full::new(body))
                        .unwrap();
                    sender.ready().await.expect("connection ready");
                    let resp = sender.send_request(req).await.expect("an answer");
                    let status = resp.status().as_u16();
                    let retry = resp.headers().contains_key("retry-after");
                    let _ = resp.into_body().collect().await;
                    match status {
                        200 => ok.fetch_add(1, Ordering::SeqCst),
                        503 if retry => refused.fetch_add(1, Ordering::SeqCst),
                        other => panic!("answered {other} (retry-after: {retry})"),
                    };
                }));
            }
        }
        for t in tasks {
            t.await.expect("a stream task");
        }
    });
    (ok.load(Ordering::SeqCst), refused.load(Ordering::SeqCst))
}

#[test]
fn a_thousand_streams_of_4_mb_bodies_stay_within_the_configured_memory() {
    let p = Proc::start(&config_yaml("pipeline: { shards: 2 }\n"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans_per_request = 17_000;
    let body = Bytes::from(big_request(spans_per_request, now - 1_000_000_000));
    assert!(
        (3_900_000..4_300_000).contains(&body.len()),
        "a 4 MB body: {}",
        body.len()
    );
    let (connections, streams) = (4usize, 256usize);
    let (ok, refused) = burst(&p.http, &body, connections, streams);
    assert_eq!(ok + refused, (connections * streams) as u64);
    assert!(ok > 0, "some requests are admitted");
    assert!(refused > 0, "the excess is refused");
    let accepted = ok * spans_per_request as u64;
    let m = p.wait_metrics(120, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(accepted as f64)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(accepted as f64),
        "every accepted span is processed"
    );
    assert_eq!(
        metric(&m, "momentum_receiver_accepted_spans_total", &[]),
        Some(accepted as f64)
    );
    let refused_requests = metric(
        &m,
        "momentum_receiver_refused_requests_total",
        &[("reason", "backpressure")],
    );
    assert_eq!(refused_requests, Some(refused as f64), "{m}");
    // The bound from the config: in-flight bytes (256 MiB) + two shard queues (2 × 64 MiB)
    // + the HTTP/2 connection windows (4 × 8 MiB) + the process itself (< 64 MiB).
    let bound = 256.0 + 2.0 * 64.0 + 4.0 * 8.0 + 64.0;
    let peak = peak_rss_mib(p.child.id());
    eprintln!("{ok} admitted, {refused} refused, peak RSS {peak:.1} MiB (bound {bound} MiB)");
    assert!(peak < bound, "peak RSS {peak:.1} MiB over {bound} MiB");
    assert!(p.stop().success());
}

/// `pipeline.memory_limit_mib: 64` and a burst of 4 MB bodies: the heap never goes past
/// the limit plus one request (`max_request_mib`, 16), the excess is refused retryably,
/// and once the burst is processed the next request is admitted — the limit measures the
/// heap in use, not what the allocator keeps.
#[test]
fn the_memory_limit_holds_under_a_burst_and_admits_again_after_it() {
    let p = Proc::start(&config_yaml(
        "pipeline: { shards: 2, memory_limit_mib: 64 }\n",
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans_per_request = 17_000;
    let body = Bytes::from(big_request(spans_per_request, now - 1_000_000_000));
    let (ok, refused) = burst(&p.http, &body, 2, 128);
    assert!(
        refused > 0,
        "the limit refuses some of the burst ({ok} admitted)"
    );
    let accepted = ok * spans_per_request as u64;
    let m = p.wait_metrics(120, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(accepted as f64)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(accepted as f64)
    );
    let memory = metric(
        &m,
        "momentum_receiver_refused_requests_total",
        &[("reason", "memory_limit")],
    )
    .unwrap_or(0.0);
    let inflight = metric(
        &m,
        "momentum_receiver_refused_requests_total",
        &[("reason", "backpressure")],
    )
    .unwrap_or(0.0);
    assert_eq!(memory + inflight, refused as f64, "{m}");
    assert!(memory > 0.0, "the memory limit refused: {m}");
    let peak = metric(
        &m,
        "momentum_process_memory_peak_bytes",
        &[("kind", "heap")],
    )
    .unwrap();
    let bound = (64 + 16) * 1024 * 1024;
    eprintln!(
        "{ok} admitted, {refused} refused ({memory} memory_limit), heap peak {:.1} MiB",
        peak / 1048576.0
    );
    assert!(peak <= bound as f64, "heap peak {peak} over {bound}");
    // The burst is processed: the next request is admitted at once.
    let (ok, refused) = burst(&p.http, &body, 1, 1);
    assert_eq!(
        (ok, refused),
        (1, 0),
        "a request after the burst is admitted"
    );
    assert!(p.stop().success());
}

/// VmRSS of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("VmRSS")
        / 1024.0
}

/// Sustained overload for `secs` seconds over both transports: `streams` loops on each of
/// `connections` HTTP/2 connections to each listener, every loop sending `body`
/// (gzip-compressed) again as soon as it is answered. Answers (admitted, refused with a retry hint); any other
/// answer panics.
fn overload(p: &Proc, body: &Bytes, connections: usize, streams: usize, secs: u64) -> (u64, u64) {
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // gzip: cheap for the clients to send again and again, the whole work for the server
    let body = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(body).unwrap();
        Bytes::from(e.finish().unwrap())
    };
    let mut framed = vec![1u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    let framed = Bytes::from(framed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for (addr, grpc) in [(&p.http, false), (&p.grpc, true)] {
            for _ in 0..connections {
                let sender = common::h2_connect::<Full<Bytes>>(addr).await;
                for _ in 0..streams {
                    let mut sender = sender.clone();
                    let body = if grpc { framed.clone() } else { body.clone() };
                    let (ok, refused) = (ok.clone(), refused.clone());
                    let (uri, ct) = if grpc {
                        (
                            format!("http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
                            "application/grpc",
                        )
                    } else {
                        (format!("http://{addr}/v1/traces"), "application/x-protobuf")
                    };
                    tasks.push(tokio::spawn(async move {
                        while std::time::Instant::now() < until {
                            let req = http::Request::post(&uri)
                                .header("content-type", ct)
                                .header("te", "trailers")
                                .header(if grpc { "grpc-encoding" } else { "content-encoding" }, "gzip")
                                .body(Full::new(body.clone()))
                                .unwrap();
                            sender.ready().await.expect("connection ready");
                            let resp = sender.send_request(req).await.expect("an answer");
                            let status = resp.status().as_u16();
                            let retry_after = resp.headers().contains_key("retry-after");
                            // gRPC: trailers, or headers for a trailers-only answer
                            let mut meta = resp.headers().clone();
                            let got = resp.into_body().collect().await.expect("a body");
                            meta.extend(got.trailers().cloned().unwrap_or_default());
                            let code = meta.get("grpc-status").and_then(|v| v.to_str().ok());
                            // UNAVAILABLE carries RetryInfo in grpc-status-details-bin
                            let retry_info = meta.contains_key("grpc-status-details-bin");
                            match (grpc, status, code) {
                                (false, 200, _) | (true, 200, Some("0")) => {
                                    ok.fetch_add(1, Ordering::SeqCst);
                                }
                                (false, 503, _) if retry_after => {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                }
                                (true, 200, Some("14")) if retry_info => {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                }
                                other => panic!("answered {other:?}"),
                            }
                        }
                    }));
                }
            }
        }
        for t in tasks {
            t.await.expect("a stream task");
        }
    });
    (ok.load(Ordering::SeqCst), refused.load(Ordering::SeqCst))
}

#[test]
fn sustained_overload_keeps_memory_flat_refuses_with_retry_hints_and_loses_nothing() {
    // One shard with a small queue: the clients can offer far more than it processes.
    let p = Proc::start(&config_yaml(
        "pipeline: { shards: 1, queue_capacity_mib: 2 }\n",
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans_per_request = 2_000;
    let body = Bytes::from(big_request(spans_per_request, now - 1_000_000_000));
    let pid = p.child.id();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(rss_mib(pid));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            samples
        })
    };
    let (ok, refused) = overload(&p, &body, 2, 16, 6);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let offered = ok + refused;
    eprintln!(
        "overload: {offered} requests offered in 6 s, {ok} admitted, {refused} refused \
         (offered {:.1}x what was admitted); RSS samples MiB: first {:.0}, max {:.0}, last {:.0}",
        offered as f64 / ok.max(1) as f64,
        samples.first().copied().unwrap_or(0.0),
        samples.iter().copied().fold(0.0, f64::max),
        samples.last().copied().unwrap_or(0.0),
    );
    // The premise: at least 3x what the process admits is offered.
    assert!(
        ok > 0 && offered >= 3 * ok,
        "not an overload: {ok} admitted, {refused} refused"
    );
    // Flat: the last third of the run holds no more than the first third plus slack.
    let third = samples.len() / 3;
    let head = samples[..third].iter().copied().fold(0.0, f64::max);
    let tail = samples[2 * third..].iter().copied().fold(0.0, f64::max);
    assert!(
        tail <= head * 1.25 + 16.0,
        "RSS grew: {head:.0} -> {tail:.0} MiB"
    );
    // Afterwards everything accepted is processed, late or invalid, and nothing else.
    let accepted = (ok * spans_per_request as u64) as f64;
    let m = p.wait_metrics(120, |m| {
        let sum: f64 = [
            "momentum_pipeline_processed_spans_total",
            "momentum_pipeline_late_spans_total",
            "momentum_pipeline_invalid_spans_total",
        ]
        .iter()
        .map(|n| metric(m, n, &[]).unwrap_or(0.0))
        .sum();
        sum == accepted
    });
    let by_transport: f64 = ["grpc", "http"]
        .iter()
        .map(|t| {
            metric(
                &m,
                "momentum_receiver_accepted_spans_total",
                &[("transport", t)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(by_transport, accepted);
    assert_eq!(
        metric(
            &m,
            "momentum_receiver_refused_requests_total",
            &[("reason", "backpressure")]
        ),
        Some(refused as f64),
        "{m}"
    );
    assert!(p.stop().success());
}
