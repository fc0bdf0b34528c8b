//! Idle sockets cannot take the process offline: more idle connections than
//! `receivers.otlp.max_connections` leave a normal client refused at once (never hung),
//! and the admin endpoint, which has connections of its own, keeps answering.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{config_yaml, Proc};

/// One HTTP/1.1 request on a fresh connection: Some(status), or None when the server
/// closed the connection without an answer. A read that waits more than 10 s fails the
/// test: a hung client is what must never happen.
fn try_request(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return None;
    }
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("the client hung or failed: {e}"),
    }
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

#[test]
fn idle_connections_beyond_the_limit_never_hang_a_client_nor_the_admin_endpoint() {
    let p = Proc::start(&config_yaml("").replace(
        "receivers:\n  otlp:\n",
        "receivers:\n  otlp:\n    max_connections: 20\n",
    ));
    // Before: a normal request is answered.
    assert_eq!(try_request(&p.http, "/v1/traces"), Some(200));
    // 60 plain TCP connections that send nothing, on both OTLP listeners.
    let idle: Vec<TcpStream> = (0..60)
        .map(|i| TcpStream::connect(if i % 2 == 0 { &p.http } else { &p.grpc }).unwrap())
        .collect();
    // Wait until the 20 slots are taken: the server closes the 40 beyond the limit.
    let mut closed = 0;
    for mut s in idle.iter() {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        let r = s.read(&mut b);
        if matches!(r, Ok(0))
            || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 40,
        "{closed} of 60 idle connections closed at once"
    );
    // A normal client is refused at once (the connection closed) or served, never hung.
    let answer = try_request(&p.http, "/v1/traces");
    assert!(matches!(answer, None | Some(200)), "{answer:?}");
    // The admin endpoint keeps its own connections.
    let (status, body) = p.admin_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, _) = p.admin_get("/metrics");
    assert_eq!(status, 200);
    drop(idle);
    // The idle connections are gone: the receiver serves again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if try_request(&p.http, "/v1/traces") == Some(200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver never served again after the idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.stop().success());
}

/// Whether the server has closed `s`: a read answers end of file or a reset within
/// `secs` seconds (panics if the connection is still open then).
fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer or a GOAWAY first
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("still open after {secs} s: {e}"),
        }
    }
}

/// A request body that never sends a byte.
struct Never;

impl http_body::Body for Never {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[test]
fn idle_slow_and_silent_clients_do_not_stop_a_normal_one_and_are_closed_after_their_timeouts() {
    let p = Proc::start(&config_yaml("").replace(
        "receivers:\n  otlp:\n",
        "receivers:\n  otlp:\n    max_connections: 2000\n    read_header_timeout: 2s\n    read_timeout: 2s\n    idle_timeout: 3s\n",
    ));
    // 1,000 connections that never send a byte, on both OTLP listeners.
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|i| TcpStream::connect(if i % 2 == 0 { &p.http } else { &p.grpc }).unwrap())
        .collect();
    // A slowloris client: a request head trickled a header at a time, never finished.
    let mut slow = TcpStream::connect(&p.http).unwrap();
    slow.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let trickle = {
        let mut s = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0..300 {
                if s.write_all(format!("x-slow-{i}: y\r\n").as_bytes())
                    .is_err()
                {
                    return true; // closed by the server
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An HTTP/2 stream whose body never comes: refused after read_timeout, counted.
    let silent = rt.block_on(async {
        let mut send = common::h2_connect(&p.grpc).await;
        let req = http::Request::post(format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            p.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Never)
        .unwrap();
        let call = tokio::spawn(send.send_request(req));
        // Meanwhile a normal client is served on both listeners.
        assert_eq!(try_request(&p.http, "/v1/traces"), Some(200));
        let resp = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the silent stream is answered")
            .unwrap()
            .unwrap();
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    assert_eq!(silent.as_deref(), Some("3"), "INVALID_ARGUMENT");
    drop(rt); // and its HTTP/2 connection with it
    common::grpc_export(&p.grpc, vec![Default::default()]);
    // Every idle connection is closed by read_header_timeout, the slowloris one too.
    for s in &mut idle {
        assert!(closed_within(s, 30));
    }
    assert!(closed_within(&mut slow, 30));
    assert!(trickle.join().unwrap(), "the slowloris client was cut off");
    // A served connection that then goes quiet is closed after idle_timeout.
    let mut quiet = TcpStream::connect(&p.http).unwrap();
    quiet
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut quiet, 30));
    let m = p.metrics();
    assert!(
        common::metric(
            &m,
            "momentum_receiver_refused_requests_total",
            &[("reason", "decode")]
        ) == Some(1.0),
        "the silent stream is counted once: {m}"
    );
    assert!(p.stop().success());
}

#[test]
fn a_request_head_over_max_header_kib_is_refused_and_the_next_request_served() {
    let p = Proc::start(&config_yaml("").replace(
        "receivers:\n  otlp:\n",
        "receivers:\n  otlp:\n    max_header_kib: 16\n",
    ));
    let big = "a".repeat(64 * 1024);
    let (status, _, _) =
        common::http_request(&p.http, "POST", "/v1/traces", &[("x-big", &big)], &[]);
    assert_eq!(status, 431, "Request Header Fields Too Large");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // HTTP/2: a header list over the limit is refused (the stream or the connection),
    // never served.
    let served = rt.block_on(async {
        let mut send = common::h2_connect(&p.grpc).await;
        let req = http::Request::post(format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            p.grpc
        ))
        .header("content-type", "application/grpc")
        .header("x-big", &big)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
        match send.send_request(req).await {
            // served = answered by the gRPC handler (a trailers-only grpc-status)
            Ok(resp) => resp.headers().contains_key("grpc-status"),
            Err(_) => false,
        }
    });
    assert!(
        !served,
        "an HTTP/2 header list over the limit is not served"
    );
    assert_eq!(try_request(&p.http, "/v1/traces"), Some(200));
    assert!(p.stop().success());
}
