//! The next hops a test exports to: a capturing OTLP server (gRPC and HTTP on one
//! OS-chosen port) and a real Prometheus with the remote-write receiver, on a port the
//! OS chose and Prometheus reports (read from its listening socket, never guessed).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::{http_request, poll};

/// What the capturing server received: metrics requests with the transport and the
/// `x-tenant` header they came with, and trace requests.
#[derive(Default)]
pub struct Captured {
    pub metrics: Mutex<Vec<(&'static str, Option<String>, ExportMetricsServiceRequest)>>,
    pub traces: Mutex<Vec<ExportTraceServiceRequest>>,
    /// the `authorization` header of every request, in arrival order
    pub authorization: Mutex<Vec<Option<String>>>,
    /// remote-write requests (snappy bodies, not decoded)
    pub remote_writes: Mutex<usize>,
}

fn authorization(m: &tonic::metadata::MetadataMap) -> Option<String> {
    m.get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

#[derive(Clone)]
struct Sink(Arc<Captured>);

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let tenant = req
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let auth = authorization(req.metadata());
        self.0.authorization.lock().unwrap().push(auth);
        let m = req.into_inner();
        self.0.metrics.lock().unwrap().push(("grpc", tenant, m));
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let auth = authorization(req.metadata());
        self.0.authorization.lock().unwrap().push(auth);
        self.0.traces.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Starts a server answering OTLP/gRPC (metrics, traces) and OTLP/HTTP `/v1/metrics` on
/// one OS-chosen port, on `rt`.
pub fn start_sink(rt: &tokio::runtime::Runtime) -> (SocketAddr, Arc<Captured>) {
    start_sink_tls(rt, None)
}

/// As [`start_sink`], over TLS with `tls` when given.
pub fn start_sink_tls(
    rt: &tokio::runtime::Runtime,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, Arc<Captured>) {
    let captured = Arc::new(Captured::default());
    let sink = Sink(captured.clone());
    let http_sink = captured.clone();
    let http_traces = captured.clone();
    let remote = captured.clone();
    let app = tonic::service::Routes::new(MetricsServiceServer::new(sink.clone()))
        .add_service(TraceServiceServer::new(sink))
        .into_axum_router()
        .route(
            "/api/v1/write",
            axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
                let c = remote.clone();
                async move {
                    assert_eq!(headers.get("content-encoding").unwrap(), "snappy");
                    assert!(!body.is_empty());
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    c.authorization.lock().unwrap().push(auth);
                    *c.remote_writes.lock().unwrap() += 1;
                    http::StatusCode::NO_CONTENT
                }
            }),
        )
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
                let c = http_traces.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    c.authorization.lock().unwrap().push(auth);
                    c.traces
                        .lock()
                        .unwrap()
                        .push(ExportTraceServiceRequest::decode(body).unwrap());
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
                let c = http_sink.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").unwrap(),
                        "application/x-protobuf"
                    );
                    let tenant = headers
                        .get("x-tenant")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    c.authorization.lock().unwrap().push(auth);
                    let m = ExportMetricsServiceRequest::decode(body).unwrap();
                    c.metrics.lock().unwrap().push(("http", tenant, m));
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportMetricsServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                match tls {
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = builder.serve_connection(io, svc).await;
                    }
                    Some(t) => {
                        let Ok(s) = tokio_rustls::TlsAcceptor::from(t).accept(stream).await else {
                            return;
                        };
                        let io = hyper_util::rt::TokioIo::new(s);
                        let _ = builder.serve_connection(io, svc).await;
                    }
                }
            });
        }
    });
    (addr, captured)
}

/// A real Prometheus with the remote-write receiver, stopped on drop.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_bin() -> std::path::PathBuf {
    std::env::var_os("MOMENTUM_PROMETHEUS")
        .map(Into::into)
        .expect("MOMENTUM_PROMETHEUS is not set: run the suite through ./test.sh")
}

/// The TCP ports process `pid` listens on, from its socket inodes and `/proc/net/tcp`.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode
            (f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]))
                .then(|| u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

/// Starts Prometheus on `127.0.0.1:0` and waits until it is ready on the port it bound.
pub fn start_prometheus() -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let child = Command::new(prometheus_bin())
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let mut p = Prometheus {
        child,
        addr: String::new(),
        _dir: dir,
    };
    p.addr = poll(60, "prometheus to listen and be ready", |last| {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("prometheus exited: {status}");
        }
        let ports = listening_ports(p.child.id());
        *last = format!("listening on {ports:?}");
        ports.into_iter().find_map(|port| {
            let addr = format!("127.0.0.1:{port}");
            std::net::TcpStream::connect(&addr).ok()?;
            let (s, _, _) = http_request(&addr, "GET", "/-/ready", &[], &[]);
            (s == 200).then_some(addr)
        })
    });
    p
}

/// `(labels, value)` of every series of an instant query (`q` URL-encoded).
pub fn prom_query(addr: &str, q: &str) -> Vec<(serde_json::Value, f64)> {
    let (s, _, body) = http_request(addr, "GET", &format!("/api/v1/query?query={q}"), &[], &[]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"].clone(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}
