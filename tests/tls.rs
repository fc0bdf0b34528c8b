//! TLS, mTLS and bearer auth over the wire, with a throw-away CA made here: the OTLP
//! receivers (gRPC and HTTP) and the admin endpoint as a server, the forwarder and the
//! OTLP push as a client; token and certificate rotation on SIGHUP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::certs::Pki;
use common::{kv, metric, poll, Proc};
use http_body_util::{BodyExt, Full};
use momentum::config::ClientTlsConfig;
use momentum::tls::{self, Alpn};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

/// `n` valid spans of service `tls-svc`, ending now.
fn traces(n: usize) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "tls-svc")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: "GET /".into(),
                        kind: 2,
                        start_time_unix_nano: now - 2_000_000,
                        end_time_unix_nano: now - 1_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn trusting(ca: &Path) -> ClientTlsConfig {
    ClientTlsConfig {
        ca_file: Some(ca.to_path_buf()),
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A gRPC channel to `addr` over TLS with `tls` (momentum's own client connector).
async fn channel(addr: &str, tls: &ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    let url = format!("https://{addr}");
    let c = tls::connector(&url, Some(tls), Alpn::H2, Duration::from_secs(5)).unwrap();
    Endpoint::from_shared(url)
        .unwrap()
        .connect_with_connector(c)
        .await
}

/// One export over `ch` with `token` (none when `None`): the gRPC code.
async fn export(ch: &Channel, token: Option<&str>, spans: usize) -> tonic::Code {
    let mut r = tonic::Request::new(traces(spans));
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match TraceServiceClient::new(ch.clone()).export(r).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

type HttpsClient = hyper_util::client::legacy::Client<tls::Connector, Full<Bytes>>;

fn https_client(tls: &ClientTlsConfig) -> HttpsClient {
    let c = tls::connector("https://x", Some(tls), Alpn::Http1, Duration::from_secs(5)).unwrap();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(c)
}

/// A request over HTTPS: (status, body).
async fn https(
    client: &HttpsClient,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/x-protobuf");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("HTTPS request answered");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

fn server_yaml(pki: &Pki, tokens: &Path, admin_tokens: &Path, client_ca: bool) -> String {
    let ca = if client_ca {
        format!(", client_ca_file: {}", pki.ca.display())
    } else {
        String::new()
    };
    let tls = format!(
        "{{ cert_file: {}, key_file: {}{ca} }}",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let admin_tls = format!(
        "{{ cert_file: {}, key_file: {} }}",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    format!(
        "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0 }}\n    http: {{ endpoint: 127.0.0.1:0 }}\n    tls: {tls}\n    auth: {{ bearer_tokens_file: {} }}\nadmin: {{ endpoint: 127.0.0.1:0, tls: {admin_tls}, auth: {{ bearer_tokens_file: {} }} }}\n",
        tokens.display(),
        admin_tokens.display()
    )
}

/// The admin /metrics text over HTTPS with the admin token.
async fn metrics(client: &HttpsClient, p: &Proc) -> String {
    let (s, b) = https(
        client,
        "GET",
        &format!("https://{}/metrics", p.admin),
        Some("admin-token"),
        vec![],
    )
    .await;
    assert_eq!(s, 200);
    String::from_utf8(b).unwrap()
}

/// Sends `req` over a fresh plaintext TCP connection and reads what comes back (at most
/// 10 s): a TLS port must not answer it as HTTP.
fn plaintext_answer(addr: &str, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn receivers_and_admin_over_tls_count_only_requests_with_an_accepted_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "first-token\nsecond-token\n").unwrap();
    let admin_tokens = dir.path().join("admin-tokens");
    std::fs::write(&admin_tokens, "admin-token\n").unwrap();
    let p = Proc::start(&server_yaml(&pki, &tokens, &admin_tokens, false));
    let rt = rt();
    let trust = trusting(&pki.ca);
    let web = https_client(&trust);
    rt.block_on(async {
        // gRPC over TLS: one connection for every call.
        let ch = channel(&p.grpc, &trust).await.expect("TLS handshake");
        assert_eq!(export(&ch, Some("first-token"), 10).await, tonic::Code::Ok);
        assert_eq!(export(&ch, Some("second-token"), 5).await, tonic::Code::Ok);
        assert_eq!(export(&ch, None, 7).await, tonic::Code::Unauthenticated);
        assert_eq!(
            export(&ch, Some("first-tokenX"), 7).await,
            tonic::Code::Unauthenticated
        );
        // OTLP/HTTP over TLS.
        let url = format!("https://{}/v1/traces", p.http);
        let body = traces(3).encode_to_vec();
        let (s, _) = https(&web, "POST", &url, Some("second-token"), body.clone()).await;
        assert_eq!(s, 200);
        let (s, _) = https(&web, "POST", &url, None, body.clone()).await;
        assert_eq!(s, 401);
        let (s, _) = https(&web, "POST", &url, Some("admin-token"), body).await;
        assert_eq!(s, 401, "the admin token is not an OTLP token");
        // The admin endpoint: probes open, /metrics and /api behind its own token.
        let admin = format!("https://{}", p.admin);
        let (s, _) = https(&web, "GET", &format!("{admin}/healthz"), None, vec![]).await;
        assert_eq!(s, 200);
        for path in ["/metrics", "/api/v1/services"] {
            let url = format!("{admin}{path}");
            assert_eq!(
                https(&web, "GET", &url, None, vec![]).await.0,
                401,
                "{path}"
            );
            let wrong = https(&web, "GET", &url, Some("first-token"), vec![]).await;
            assert_eq!(wrong.0, 401, "{path}");
            let right = https(&web, "GET", &url, Some("admin-token"), vec![]).await;
            assert_eq!(right.0, 200, "{path}");
        }
        let m = metrics(&web, &p).await;
        let accepted = |t: &str| {
            metric(
                &m,
                "momentum_receiver_accepted_spans_total",
                &[("transport", t)],
            )
            .unwrap_or(0.0)
        };
        assert_eq!(accepted("grpc"), 15.0, "{m}");
        assert_eq!(accepted("http"), 3.0, "{m}");
        let refused =
            |name: &str| metric(&m, name, &[("reason", "unauthenticated")]).unwrap_or(0.0);
        // a refused request counts as one span: nothing of its body was read
        assert_eq!(
            refused("momentum_receiver_refused_requests_total"),
            4.0,
            "{m}"
        );
        assert_eq!(refused("momentum_receiver_refused_spans_total"), 4.0, "{m}");
    });

    // A plaintext client against the TLS ports is not served.
    let req = b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
    for addr in [&p.http, &p.grpc, &p.admin] {
        let answer = plaintext_answer(addr, req);
        assert!(!answer.starts_with(b"HTTP/"), "{addr}: {answer:?}");
    }
    rt.block_on(async {
        let plain: Result<(), Box<dyn std::error::Error>> = async {
            let mut c = TraceServiceClient::connect(format!("http://{}", p.grpc)).await?;
            let mut r = tonic::Request::new(traces(1));
            r.metadata_mut()
                .insert("authorization", "Bearer first-token".parse().unwrap());
            c.export(r).await?;
            Ok(())
        }
        .await;
        assert!(plain.is_err(), "plaintext gRPC against a TLS port");
        // none of the refused requests reached a shard
        let m = metrics(&web, &p).await;
        let total: f64 = ["grpc", "http"]
            .iter()
            .map(|t| {
                metric(
                    &m,
                    "momentum_receiver_accepted_spans_total",
                    &[("transport", t)],
                )
                .unwrap_or(0.0)
            })
            .sum();
        assert_eq!(total, 18.0, "{m}");
    });

    // Rotation on SIGHUP, without a restart: new tokens, and a certificate from a new CA.
    let old = rt
        .block_on(channel(&p.grpc, &trust))
        .expect("a connection opened before the reload");
    assert_eq!(
        rt.block_on(export(&old, Some("first-token"), 1)),
        tonic::Code::Ok
    );
    let next = tempfile::tempdir().unwrap();
    let pki2 = Pki::new(next.path());
    std::fs::copy(&pki2.server_cert, &pki.server_cert).unwrap();
    std::fs::copy(&pki2.server_key, &pki.server_key).unwrap();
    std::fs::write(&tokens, "third-token\n").unwrap();
    common::signal(&p.child, "HUP");
    rt.block_on(async {
        let trust2 = trusting(&pki2.ca);
        // The reload is asynchronous to the signal: poll until the new certificate is
        // served, then the old token must be refused and the new one accepted.
        let mut fresh = None;
        for _ in 0..200 {
            if let Ok(c) = channel(&p.grpc, &trust2).await {
                fresh = Some(c);
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fresh = fresh.expect("the new certificate is served after SIGHUP");
        assert_eq!(
            export(&fresh, Some("third-token"), 2).await,
            tonic::Code::Ok
        );
        assert_eq!(
            export(&fresh, Some("first-token"), 2).await,
            tonic::Code::Unauthenticated
        );
        // A connection opened before the reload (old certificate) is still served, now
        // under the new tokens.
        assert_eq!(export(&old, Some("third-token"), 1).await, tonic::Code::Ok);
        assert_eq!(
            export(&old, Some("first-token"), 1).await,
            tonic::Code::Unauthenticated
        );
        assert!(
            channel(&p.grpc, &trust).await.is_err(),
            "a client trusting only the old CA must fail against the new certificate"
        );
    });
    assert!(p.stop().success());
}

#[test]
fn mtls_serves_only_clients_with_a_certificate_the_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "t\n").unwrap();
    let p = Proc::start(&server_yaml(&pki, &tokens, &tokens, true));
    let rt = rt();
    rt.block_on(async {
        let with = |cert: &Path, key: &Path| ClientTlsConfig {
            ca_file: Some(pki.ca.clone()),
            cert_file: Some(cert.to_path_buf()),
            key_file: Some(key.to_path_buf()),
            insecure_skip_verify: false,
        };
        let good = channel(&p.grpc, &with(&pki.client_cert, &pki.client_key))
            .await
            .expect("a CA-signed client certificate is served");
        assert_eq!(export(&good, Some("t"), 4).await, tonic::Code::Ok);
        // Without a certificate, or with one another CA signed, the handshake fails
        // (in TLS 1.3 the client learns it on its first request).
        for (what, tls) in [
            ("no certificate", trusting(&pki.ca)),
            ("a rogue certificate", with(&pki.rogue_cert, &pki.rogue_key)),
        ] {
            let refused = match channel(&p.grpc, &tls).await {
                Err(_) => true,
                Ok(ch) => export(&ch, Some("t"), 1).await != tonic::Code::Ok,
            };
            assert!(refused, "{what} must be refused");
            let web = https_client(&tls);
            let req = http::Request::post(format!("https://{}/v1/traces", p.http))
                .header("content-type", "application/x-protobuf")
                .header("authorization", "Bearer t")
                .body(Full::new(Bytes::from(traces(1).encode_to_vec())))
                .unwrap();
            assert!(web.request(req).await.is_err(), "{what} over HTTP");
        }
        // The admin endpoint has no client_ca_file here: a plain TLS client is served.
        let web = https_client(&trusting(&pki.ca));
        let url = format!("https://{}/metrics", p.admin);
        let (s, b) = https(&web, "GET", &url, Some("t"), vec![]).await;
        assert_eq!(s, 200);
        let m = String::from_utf8(b).unwrap();
        assert_eq!(
            metric(
                &m,
                "momentum_receiver_accepted_spans_total",
                &[("transport", "grpc")]
            ),
            Some(4.0),
            "{m}"
        );
    });
    assert!(p.stop().success());
}

#[test]
fn forwarding_and_push_to_a_tls_next_hop_with_a_bearer_header_deliver_everything() {
    for protocol in ["grpc", "http"] {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let rt = rt();
        let (hop, captured) = common::sinks::start_sink_tls(&rt, Some(pki.server_config()));
        let p = Proc::start(&common::config_yaml(&format!(
            "exporters:\n  otlp:\n    endpoint: https://127.0.0.1:{}\n    protocol: {protocol}\n    interval: 1s\n    forward: [traces]\n    tls: {{ ca_file: {} }}\n    headers: {{ authorization: Bearer hop-token }}\n    queue: {{ dir: null }}\n",
            hop.port(),
            pki.ca.display()
        )));
        let requests: Vec<_> = (0..5).map(|_| traces(20)).collect();
        common::grpc_export(&p.grpc, requests);
        let spans = |c: &common::sinks::Captured| -> usize {
            c.traces
                .lock()
                .unwrap()
                .iter()
                .flat_map(|r| &r.resource_spans)
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum()
        };
        poll(
            30,
            "every span and a metrics push at the TLS next hop",
            |last| {
                let (n, m) = (spans(&captured), captured.metrics.lock().unwrap().len());
                *last = format!("{protocol}: {n} spans, {m} metrics requests");
                (n == 100 && m > 0).then_some(())
            },
        );
        let auth = captured.authorization.lock().unwrap().clone();
        assert!(
            auth.iter()
                .all(|a| a.as_deref() == Some("Bearer hop-token")),
            "{protocol}: {auth:?}"
        );
        assert!(p.stop().success());
        assert_eq!(spans(&captured), 100, "{protocol}: nothing twice");
    }
}

#[test]
fn remote_write_and_own_telemetry_reach_a_tls_endpoint_with_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let rt = rt();
    let (hop, captured) = common::sinks::start_sink_tls(&rt, Some(pki.server_config()));
    let ca = pki.ca.display();
    let port = hop.port();
    let p = Proc::start(&common::config_yaml(&format!(
        "exporters:\n  remote_write:\n    endpoint: https://127.0.0.1:{port}/api/v1/write\n    interval: 1s\n    tls: {{ ca_file: {ca} }}\n    headers: {{ authorization: Bearer rw-token }}\ntelemetry:\n  otlp:\n    endpoint: https://127.0.0.1:{port}\n    interval: 1s\n    tls: {{ ca_file: {ca} }}\n    headers: {{ authorization: Bearer own-token }}\n"
    )));
    poll(
        30,
        "a remote write and a self-metrics push over TLS",
        |last| {
            let rw = *captured.remote_writes.lock().unwrap();
            let own = captured.metrics.lock().unwrap().len();
            *last = format!("{rw} remote writes, {own} OTLP metrics requests");
            (rw > 0 && own > 0).then_some(())
        },
    );
    assert!(p.stop().success());
    let auth = captured.authorization.lock().unwrap().clone();
    assert!(auth.contains(&Some("Bearer rw-token".into())), "{auth:?}");
    assert!(auth.contains(&Some("Bearer own-token".into())), "{auth:?}");
    assert!(
        auth.iter()
            .all(|a| matches!(a.as_deref(), Some("Bearer rw-token" | "Bearer own-token"))),
        "{auth:?}"
    );
}

#[test]
fn bad_tls_and_auth_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let empty = dir.path().join("empty-tokens");
    std::fs::write(&empty, "\n").unwrap();
    let listen = "receivers:\n  otlp:\n    grpc: { endpoint: 127.0.0.1:0 }\n    http: { endpoint: 127.0.0.1:0 }\n";
    for (extra, words) in [
        (
            format!(
                "    tls: {{ cert_file: {}, key_file: /nonexistent/key.pem }}\n",
                pki.server_cert.display()
            ),
            "/nonexistent/key.pem",
        ),
        (
            // a key that is not the certificate's
            format!(
                "    tls: {{ cert_file: {}, key_file: {} }}\n",
                pki.server_cert.display(),
                pki.client_key.display()
            ),
            "server.pem",
        ),
        (
            format!("    auth: {{ bearer_tokens_file: {} }}\n", empty.display()),
            "no token",
        ),
    ] {
        let cfg = dir.path().join("m.yaml");
        std::fs::write(
            &cfg,
            format!("{listen}{extra}admin: {{ endpoint: 127.0.0.1:0 }}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_momentum"))
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{words}: {err}");
    }
}
