//! The admin endpoint: `/metrics`, `/healthz`, `/readyz`, and the JSON API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use crate::auth::Tokens;
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
    /// bearer tokens required on `/metrics` and `/api` (`admin.auth`); the probes and the
    /// dashboard page (which holds no data: it reads `/api`) stay open
    pub auth: Option<Arc<Tokens>>,
    /// per-pair history for the dashboard
    pub history: Arc<crate::history::History>,
}

/// The admin router.
pub fn router(admin: Admin) -> axum::Router {
    let guarded = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .route("/api/v1/services/{name}/gate", get(gate))
        .route("/api/v1/services/{name}/history", get(history))
        .route_layer(middleware::from_fn_with_state(admin.clone(), authorize));
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(dashboard))
        .merge(guarded)
        .with_state(admin)
}

/// `admin.auth`: a request to `/metrics` or `/api` without an accepted bearer token gets
/// 401 and never reaches the handler. `/healthz` and `/readyz` stay open for probes.
async fn authorize(State(a): State<Admin>, req: Request, next: Next) -> Response {
    match &a.auth {
        Some(t) if !t.allows(req.headers()) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or invalid bearer token\n",
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

async fn metrics(State(a): State<Admin>, headers: HeaderMap) -> Response {
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    // Rendered on this worker (~20 ms at 2,000 pairs). Not in the blocking pool nor
    // through block_in_place: both move renders between threads, and each thread that
    // renders keeps a malloc arena of a scrape's size (the cardinality test's peak RSS:
    // 121-134 MiB like this, 141-235 MiB with spawn_blocking, 251-342 with block_in_place).
    let body = prometheus::render(&a.telemetry, om);
    let ct = if om {
        prometheus::OPENMETRICS_CONTENT_TYPE
    } else {
        prometheus::TEXT_CONTENT_TYPE
    };
    // Prometheus asks for gzip; at the default limits (2,000 pairs) the text is ~13 MB
    // and compresses ~20x, so a scrape stays small on the wire.
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    if gzip {
        if let Some(z) = gzip_fast(body.as_bytes()) {
            return (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                z,
            )
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip`, `gzip;q=0.5`, `*`), and not
/// with `q=0`.
fn accepts_gzip(v: &str) -> bool {
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// gzip at the fastest level (scrapes are frequent; the text is repetitive).
fn gzip_fast(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    e.write_all(data).ok()?;
    e.finish().ok()
}

async fn readyz(State(a): State<Admin>) -> Response {
    if a.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// The live dashboard: one page embedded in the binary (no assets fetched from elsewhere),
/// reading `/api` (the README's Dashboard).
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn services(State(a): State<Admin>) -> Json<Value> {
    use crate::slo::OBJECTIVES;
    let (pairs, _) = merged(&a.telemetry.router.views());
    let list: Vec<Value> = pairs
        .iter()
        .map(|p| {
            let (budget, firing, incident) = match &p.slo {
                Some(slo) => (
                    slo.states
                        .iter()
                        .map(|st| st.budget_remaining)
                        .reduce(f64::min),
                    slo.objectives
                        .iter()
                        .zip(&slo.states)
                        .flat_map(|(o, st)| {
                            st.firing_severities()
                                .map(move |sev| format!("{} {sev}", OBJECTIVES[o.kind]))
                        })
                        .collect::<Vec<_>>(),
                    slo.incident.map(|i| i.opened_ns),
                ),
                None => (None, vec![], None),
            };
            json!({
                "service": &*p.service,
                "environment": &*p.environment,
                "requests_total": p.totals.requests,
                "errors_total": p.totals.errors,
                "availability_5m": p.availability(0),
                "current_version": p.delivery.current_version.as_deref(),
                "momentum_index": p.delivery.index,
                "error_budget_remaining_min": budget,
                "alerts_firing": firing,
                "incident_opened_unix_nano": incident,
            })
        })
        .collect();
    Json(json!({ "services": list }))
}

async fn history(
    State(a): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match find_pair(&a, &name, &q) {
        Ok((p, _)) => Json(json!({
            "service": &*p.service,
            "environment": &*p.environment,
            "points": a.history.points(&p.service, &p.environment),
        }))
        .into_response(),
        Err(r) => *r,
    }
}

/// Finds the pair a request names: 404 for an unknown service, 400 listing the
/// environments when the service has several and none is named.
fn find_pair(
    a: &Admin,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<(PairView, Vec<OpView>), Box<Response>> {
    let (pairs, ops) = merged(&a.telemetry.router.views());
    let matching: Vec<usize> = pairs
        .iter()
        .enumerate()
        .filter(|(_, p)| *p.service == *name)
        .map(|(i, _)| i)
        .collect();
    let not_found = |msg: String| {
        Box::new((StatusCode::NOT_FOUND, Json(json!({ "error": msg }))).into_response())
    };
    if matching.is_empty() {
        return Err(not_found(format!("unknown service {name:?}")));
    }
    let chosen = match q.get("environment") {
        Some(env) => matching
            .iter()
            .copied()
            .find(|&i| *pairs[i].environment == **env),
        None if matching.len() == 1 => Some(matching[0]),
        None => {
            let envs: Vec<&str> = matching.iter().map(|&i| &*pairs[i].environment).collect();
            return Err(Box::new((
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!("service {name:?} runs in several environments: name one with ?environment="),
                    "environments": envs,
                })),
            )
                .into_response()));
        }
    };
    let Some(i) = chosen else {
        return Err(not_found(format!(
            "service {name:?} has no such environment"
        )));
    };
    let my_ops = ops
        .into_iter()
        .filter(|(pi, _)| *pi == i)
        .map(|(_, o)| o)
        .collect();
    Ok((pairs[i].clone(), my_ops))
}

async fn service(
    State(a): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match find_pair(&a, &name, &q) {
        Ok((p, ops)) => Json(service_json(&p, &ops.iter().collect::<Vec<_>>())).into_response(),
        Err(r) => *r,
    }
}

async fn gate(
    State(a): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match find_pair(&a, &name, &q) {
        Ok((p, _)) => {
            let (allow, reasons) = p.slo.as_ref().map_or((true, vec![]), |s| s.gate());
            Json(json!({
                "service": &*p.service,
                "environment": &*p.environment,
                "allow": allow,
                "reasons": reasons,
            }))
            .into_response()
        }
        Err(r) => *r,
    }
}

fn delivery_json(p: &PairView) -> Value {
    use crate::delivery::index::COMPONENTS;
    use crate::sli::rank::of_weighted as weighted_nearest_rank;
    let d = &p.delivery;
    let mut components = serde_json::Map::new();
    for (i, name) in COMPONENTS.iter().enumerate() {
        if let Some(v) = d.components.get(i) {
            components.insert((*name).to_string(), json!(v));
        }
    }
    let pipelines: Vec<Value> = d
        .pipelines
        .iter()
        .map(|pl| {
            json!({
                "name": &*pl.name,
                "runs_by_result": pl.by_result.iter().map(|(r, n)| (r.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "failure_ratio": pl.failure,
                "duration_p50_seconds": weighted_nearest_rank(&pl.durations, 0.5),
                "duration_p90_seconds": weighted_nearest_rank(&pl.durations, 0.9),
            })
        })
        .collect();
    json!({
        "current_version": d.current_version.as_deref(),
        "deploy_frequency_per_day": d.deploy_frequency,
        "change_failure_ratio": d.change_failure,
        "lead_time_median_seconds": d.lead_time_median_s,
        "deployments_in_lookback": d.deployments,
        "deployments_pending": d.pending,
        "deployments_succeeded_total": d.decided[0],
        "deployments_failed_total": d.decided[1],
        "rollbacks_total": d.rollbacks,
        "pipelines": pipelines,
        "recent_deployments": d.recent,
        "momentum_index": d.index,
        "components": components,
    })
}

fn slo_json(p: &PairView) -> Value {
    use crate::slo::OBJECTIVES;
    let Some(slo) = &p.slo else {
        return Value::Null;
    };
    let objectives: Vec<Value> = slo
        .objectives
        .iter()
        .zip(&slo.states)
        .map(|(o, st)| {
            let mut burn = serde_json::Map::new();
            for (wi, w) in WINDOW_LABELS.iter().enumerate() {
                burn.insert((*w).to_string(), json!(st.burn[wi]));
            }
            let firing: Vec<&str> = st.firing_severities().collect();
            json!({
                "objective": OBJECTIVES[o.kind],
                "target_percent": o.target * 100.0,
                "burn_rate": burn,
                "error_budget_remaining": st.budget_remaining,
                "alerts_firing": firing,
            })
        })
        .collect();
    let (allow, reasons) = slo.gate();
    json!({
        "window_seconds": slo.window / 1_000_000_000,
        "evaluated_at_unix_nano": slo.evaluated_at,
        "objectives": objectives,
        "incident": slo.incident.map(|i| json!({ "opened_unix_nano": i.opened_ns })),
        "incidents_total": slo.incidents_total,
        "time_to_restore_median_seconds": p.delivery.time_to_restore_median_s,
        "recent_incidents": slo.restores.iter().map(|r| json!({
            "opened_unix_nano": r.resolved_ns - r.ttr_ns,
            "resolved_unix_nano": r.resolved_ns,
            "time_to_restore_seconds": r.ttr_ns as f64 * 1e-9,
        })).collect::<Vec<_>>(),
        "gate": { "allow": allow, "reasons": reasons },
    })
}

fn quantiles_json(q: Option<[f64; 5]>) -> Value {
    match q {
        None => Value::Null,
        Some(q) => json!({ "p50": q[0], "p90": q[1], "p95": q[2], "p99": q[3], "p99.9": q[4] }),
    }
}

fn exemplar_json(e: &crate::sli::exemplars::Exemplar) -> Value {
    json!({
        "trace_id": e.trace_hex(),
        "end_unix_nano": e.end_ns,
        "latency_seconds": e.latency_ns as f64 * 1e-9,
    })
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
                "slowest_5m": o.exemplars.slowest.iter().map(exemplar_json).collect::<Vec<_>>(),
                "errors_5m": o.exemplars.errors.iter().map(exemplar_json).collect::<Vec<_>>(),
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
        // Metrics-derived latency_good counts whole buckets: the bound actually used.
        "latency_good_bound_seconds": p.metric_bound_ns.map(|t| t as f64 * 1e-9),
        "windows": windows,
        "latency_seconds": latency,
        "operations": operations,
        "slo": slo_json(p),
        "delivery": delivery_json(p),
    })
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn accept_encoding_is_read_as_http_says() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("br, deflate"));
    }
}
