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
