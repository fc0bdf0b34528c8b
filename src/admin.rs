//! The admin endpoint: `/metrics`, `/healthz`, `/readyz`, and the JSON API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use crate::export::prometheus;
use crate::telemetry::Telemetry;
use crate::view::{merged, OpView, PairView, QUANTILE_WINDOWS, WINDOW_LABELS};

/// State of the admin endpoint.
#[derive(Clone)]
pub struct Admin {
    /// what is exported
    pub telemetry: Telemetry,
    /// true once every listener is bound and the shards run; false while shutting down
    pub ready: Arc<AtomicBool>,
}

/// The admin router.
pub fn router(admin: Admin) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .with_state(admin)
}

async fn metrics(State(a): State<Admin>, headers: HeaderMap) -> Response {
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let body = prometheus::render(&a.telemetry, om);
    let ct = if om {
        prometheus::OPENMETRICS_CONTENT_TYPE
    } else {
        prometheus::TEXT_CONTENT_TYPE
    };
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

async fn readyz(State(a): State<Admin>) -> Response {
    if a.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn services(State(a): State<Admin>) -> Json<Value> {
    let (pairs, _) = merged(&a.telemetry.router.views());
    let list: Vec<Value> = pairs
        .iter()
        .map(|p| {
            json!({
                "service": &*p.service,
                "environment": &*p.environment,
                "requests_total": p.totals.requests,
                "errors_total": p.totals.errors,
                "availability_5m": p.availability(0),
            })
        })
        .collect();
    Json(json!({ "services": list }))
}

async fn service(
    State(a): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (pairs, ops) = merged(&a.telemetry.router.views());
    let matching: Vec<usize> = pairs
        .iter()
        .enumerate()
        .filter(|(_, p)| *p.service == *name)
        .map(|(i, _)| i)
        .collect();
    if matching.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("unknown service {name:?}") })),
        )
            .into_response();
    }
    let chosen = match q.get("environment") {
        Some(env) => matching
            .iter()
            .copied()
            .find(|&i| *pairs[i].environment == **env),
        None if matching.len() == 1 => Some(matching[0]),
        None => {
            let envs: Vec<&str> = matching.iter().map(|&i| &*pairs[i].environment).collect();
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!("service {name:?} runs in several environments: name one with ?environment="),
                    "environments": envs,
                })),
            )
                .into_response();
        }
    };
    let Some(i) = chosen else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("service {name:?} has no such environment") })),
        )
            .into_response();
    };
    let p = &pairs[i];
    let my_ops: Vec<&OpView> = ops
        .iter()
        .filter(|(pi, _)| *pi == i)
        .map(|(_, o)| o)
        .collect();
    Json(service_json(p, &my_ops)).into_response()
}

fn quantiles_json(q: Option<[f64; 5]>) -> Value {
    match q {
        None => Value::Null,
        Some(q) => json!({ "p50": q[0], "p90": q[1], "p95": q[2], "p99": q[3], "p99.9": q[4] }),
    }
}

/// The JSON document of one pair.
pub fn service_json(p: &PairView, ops: &[&OpView]) -> Value {
    let mut windows = serde_json::Map::new();
    for (wi, w) in WINDOW_LABELS.iter().enumerate() {
        if let Some(c) = p.windows[wi] {
            let mut o = json!({
                "requests": c.requests,
                "errors": c.errors,
                "availability": p.availability(wi),
            });
            if p.threshold_ns.is_some() {
                o["latency_good"] = json!(c.good);
            }
            windows.insert((*w).to_string(), o);
        }
    }
    let mut latency = serde_json::Map::new();
    for (wi, w) in QUANTILE_WINDOWS.iter().enumerate() {
        latency.insert((*w).to_string(), quantiles_json(p.quantiles[wi]));
    }
    let operations: Vec<Value> = ops
        .iter()
        .map(|o| {
            json!({
                "operation": &*o.operation,
                "requests_total": o.totals.requests,
                "errors_total": o.totals.errors,
                "latency_5m": quantiles_json(o.quantiles),
            })
        })
        .collect();
    json!({
        "service": &*p.service,
        "environment": &*p.environment,
        "clock_unix_nano": p.clock_ns,
        "requests_total": p.totals.requests,
        "errors_total": p.totals.errors,
        "slo_window_seconds": p.slo_window_ns.map(|w| w / 1_000_000_000),
        "latency_threshold_seconds": p.threshold_ns.map(|t| t as f64 * 1e-9),
        "windows": windows,
        "latency_seconds": latency,
        "operations": operations,
    })
}
