//! The real binary, the real Python OpenTelemetry SDK as the client, over both
//! transports: /metrics must count exactly what was sent, and the 5m p99 must be within
//! the sketch's 1% of the exact p99.

mod common;

use common::{config_yaml, metric, run_py, Proc};

/// Exact nearest-rank quantile.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let k = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[k - 1]
}

#[test]
fn python_sdk_spans_over_grpc_and_http_are_counted_exactly() {
    let p = Proc::start(&config_yaml(""));
    let services = ["checkout", "payments", "search"];
    let mut expected: std::collections::HashMap<&str, (u64, u64, Vec<f64>)> = Default::default();
    for (protocol, endpoint, count, seed) in [
        ("grpc", p.grpc.clone(), "300", "1"),
        ("http", format!("http://{}", p.http), "200", "2"),
    ] {
        let mut args = vec![
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
            "--count",
            count,
            "--seed",
            seed,
            "--error-every",
            "7",
            "--http-5xx-every",
            "11",
        ];
        for s in &services {
            args.push("--service");
            args.push(s);
        }
        let out = run_py("send_spans.py", &args);
        assert_eq!(out["ok"], true, "{out}");
        for s in &services {
            let e = expected.entry(s).or_default();
            let o = &out["services"][*s];
            e.0 += o["requests"].as_u64().unwrap();
            e.1 += o["errors"].as_u64().unwrap();
            e.2.extend(
                o["durations_s"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap()),
            );
        }
    }
    let total: u64 = expected.values().map(|e| e.0).sum();
    let m = p.wait_metrics(20, |m| {
        metric(m, "momentum_sli_requests_total", &[]) == Some(total as f64)
    });
    for s in &services {
        let (req, err, durs) = expected.get(s).unwrap();
        let l = [("service_name", *s)];
        assert_eq!(
            metric(&m, "momentum_sli_requests_total", &l),
            Some(*req as f64),
            "{s} requests"
        );
        assert_eq!(
            metric(&m, "momentum_sli_errors_total", &l),
            Some(*err as f64),
            "{s} errors"
        );
        assert!(*err > 0, "the scenario must include errors");
        let mut sorted = durs.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let exact = nearest_rank(&sorted, 0.99);
        let got = metric(
            &m,
            "momentum_sli_latency_seconds",
            &[("service_name", s), ("quantile", "0.99"), ("window", "5m")],
        )
        .unwrap_or_else(|| panic!("no p99 for {s}"));
        assert!(
            (got - exact).abs() <= 0.01 * exact,
            "{s}: p99 {got} vs exact {exact}"
        );
        let count = metric(
            &m,
            "momentum_sli_latency_seconds_count",
            &[("service_name", s), ("window", "5m")],
        );
        assert_eq!(count, Some(*req as f64));
    }
    assert_eq!(
        metric(
            &m,
            "momentum_receiver_accepted_spans_total",
            &[("transport", "grpc")]
        ),
        Some(900.0)
    );
    assert_eq!(
        metric(
            &m,
            "momentum_receiver_accepted_spans_total",
            &[("transport", "http")]
        ),
        Some(600.0)
    );
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(total as f64)
    );

    // promtool accepts the exposition.
    if let Some(promtool) = std::env::var_os("MOMENTUM_PROMTOOL") {
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        panic!("MOMENTUM_PROMTOOL is not set: run the suite through ./test.sh");
    }

    // The JSON API agrees.
    let (status, body) = p.admin_get("/api/v1/services/checkout");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["requests_total"].as_u64(), Some(expected["checkout"].0));
    assert_eq!(
        v["windows"]["5m"]["requests"].as_u64(),
        Some(expected["checkout"].0)
    );
    assert_eq!(p.admin_get("/api/v1/services/nope").0, 404);
    assert_eq!(p.admin_get("/healthz").0, 200);
    assert_eq!(p.admin_get("/readyz").0, 200);
    let status = p.stop();
    assert!(status.success(), "exit status {status}");
}

/// Explicit deployment records over OTLP/HTTP JSON: a log record of checkout's own, a
/// repeat of it, and a CD system's span naming checkout with a record-level
/// `service.name` all reach checkout's delivery state (API and /metrics); an ordinary
/// log record does not.
#[test]
fn deployment_log_records_and_foreign_deployment_spans_over_http_json() {
    use common::http_request;
    let p = Proc::start(&config_yaml(""));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let attr = |k: &str, v: &str| serde_json::json!({"key": k, "value": {"stringValue": v}});
    let resource = |svc: &str, version: &str| {
        serde_json::json!({"attributes": [
            attr("service.name", svc),
            attr("deployment.environment.name", "prod"),
            attr("service.version", version),
        ]})
    };
    let post = |path: &str, body: serde_json::Value| {
        let (status, _, b) = http_request(
            &p.http,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&b));
    };
    let span = |name: &str, t: u64, attrs: Vec<serde_json::Value>| {
        serde_json::json!({
            "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
            "name": name, "kind": 2,
            "startTimeUnixNano": (t - 10_000_000).to_string(), "endTimeUnixNano": t.to_string(),
            "attributes": attrs,
        })
    };
    // checkout serves v1; argo (a CD system) announces checkout v3 on a span of its own.
    post(
        "/v1/traces",
        serde_json::json!({"resourceSpans": [
            {"resource": resource("checkout", "1"), "scopeSpans": [{"spans": [
                span("GET /cart", now - 2_000_000_000, vec![]),
            ]}]},
            {"resource": resource("argo", "9"), "scopeSpans": [{"spans": [
                span("sync checkout", now - 1_000_000_000, vec![
                    attr("deployment.id", "argo-7"),
                    attr("service.name", "checkout"),
                    attr("service.version", "3"),
                ]),
            ]}]},
        ]}),
    );
    // checkout's own deployment record in a log, sent twice; an ordinary log record.
    let dep_log = |t: u64| {
        serde_json::json!({"timeUnixNano": t.to_string(), "body": {"stringValue": "deployed"},
            "attributes": [attr("deployment.id", "dep-1"), attr("deployment.status", "failed"),
                           attr("service.version", "2")]})
    };
    post(
        "/v1/logs",
        serde_json::json!({"resourceLogs": [{"resource": resource("checkout", "1"),
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": now.to_string(), "body": {"stringValue": "hello"}},
            dep_log(now - 500_000_000),
            dep_log(now),
        ]}]}]}),
    );
    let labels = [("service_name", "checkout")];
    let m = p.wait_metrics(20, |m| {
        metric(m, "momentum_delivery_deployments_pending", &labels) == Some(2.0)
    });
    assert_eq!(
        metric(&m, "momentum_delivery_deployments_pending", &labels),
        Some(2.0),
        "dep-1 (once) and argo-7"
    );
    assert_eq!(
        metric(
            &m,
            "momentum_delivery_deployments_pending",
            &[("service_name", "argo")]
        ),
        Some(0.0),
        "argo's span named checkout, not argo"
    );
    assert_eq!(
        metric(&m, "momentum_receiver_accepted_log_records_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "momentum_receiver_deployment_log_records_total", &[]),
        Some(2.0)
    );
    let (status, body) = p.admin_get("/api/v1/services/checkout?environment=prod");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["delivery"]["deployments_pending"].as_u64(),
        Some(2),
        "{v}"
    );
    assert_eq!(v["delivery"]["current_version"].as_str(), Some("1"));
    assert!(p.stop().success());
}
