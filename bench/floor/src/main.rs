//! The "full-decode floor" for momentum's OTLP/gRPC receiver benchmark.
//!
//! A plain tonic `TraceService` server that does the least any real receiver must do:
//! accept the HTTP/2 stream, decode every `ExportTraceServiceRequest` fully with prost
//! (tonic's codec does that before `export` is called), and count spans per
//! `service.name`. momentum does strictly more per span, so its throughput on the same
//! load and core is expected at or below this figure; the gap is the price of its own
//! work.
//!
//! ```text
//! momentum-bench-floor [--port 4317] [--threads 1]
//! ```
//!
//! On SIGINT or SIGTERM it stops serving and prints one JSON line on stdout:
//! `{"requests":R,"spans":S,"per_service":{"checkout":N,...}}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::{Request, Response, Status};

/// Counts shared by all connections.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
    /// Locked once per request, never per span.
    per_service: Mutex<HashMap<String, u64>>,
}

#[derive(Clone, Default)]
struct Floor(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Floor {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let req = request.into_inner();
        // Count into locals first, publish once.
        let mut local: Vec<(&str, u64)> = Vec::with_capacity(req.resource_spans.len());
        let mut total = 0u64;
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(s)) => Some(s.as_str()),
                        _ => None,
                    },
                )
                .unwrap_or("unknown_service");
            let n: u64 = rs.scope_spans.iter().map(|ss| ss.spans.len() as u64).sum();
            total += n;
            match local.iter_mut().find(|(s, _)| *s == service) {
                Some((_, c)) => *c += n,
                None => local.push((service, n)),
            }
        }
        {
            let mut map = self.0.per_service.lock().unwrap_or_else(|e| e.into_inner());
            for (service, n) in local {
                match map.get_mut(service) {
                    Some(c) => *c += n,
                    None => {
                        map.insert(service.to_owned(), n);
                    }
                }
            }
        }
        self.0.spans.fetch_add(total, Ordering::Relaxed);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

struct Args {
    port: u16,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 4317,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|_| format!("--port {v}: not a port"))?;
            }
            "--threads" => {
                let v = value("--threads")?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or(format!("--threads {v}: must be an integer >= 1"))?;
            }
            "-h" | "--help" => {
                println!("usage: momentum-bench-floor [--port 4317] [--threads 1]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floor: cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floor: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };

    let floor = Floor::default();
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let served = runtime.block_on(async {
        eprintln!("floor: listening on {addr} ({} thread(s))", args.threads);
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(floor.clone()))
            .serve_with_shutdown(addr, shutdown_signal())
            .await
    });
    if let Err(e) = served {
        eprintln!("floor: serving on {addr} failed: {e}");
        return ExitCode::from(1);
    }

    let counts = &floor.0;
    let map = counts.per_service.lock().unwrap_or_else(|e| e.into_inner());
    let mut services: Vec<_> = map.iter().collect();
    services.sort();
    let per_service: Vec<String> = services
        .iter()
        .map(|(s, n)| format!("{}:{n}", json_string(s)))
        .collect();
    println!(
        "{{\"requests\":{},\"spans\":{},\"per_service\":{{{}}}}}",
        counts.requests.load(Ordering::Relaxed),
        counts.spans.load(Ordering::Relaxed),
        per_service.join(",")
    );
    ExitCode::SUCCESS
}
