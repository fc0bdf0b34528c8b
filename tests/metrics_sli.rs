//! SLIs from metrics: the Python SDK's own `http.server.request.duration` histogram
//! (cumulative temporality), with a restarted client (a counter reset), gives the same
//! requests and errors as the equivalent spans.

mod common;

use common::{config_yaml, metric, run_py, Proc};

#[test]
fn sdk_histograms_count_like_spans_across_a_client_restart() {
    let p = Proc::start(&config_yaml(""));
    let endpoint = p.grpc.clone();
    // Two client processes in a row for one service: the second restarts its counters.
    let mut requests = 0;
    let mut errors = 0;
    for (count, seed) in [("240", "1"), ("160", "2")] {
        let out = run_py(
            "send_histograms.py",
            &[
                "--endpoint",
                &endpoint,
                "--service",
                "orders-metrics",
                "--count",
                count,
                "--http-5xx-every",
                "7",
                "--seed",
                seed,
            ],
        );
        assert_eq!(out["ok"], true, "{out}");
        requests += out["requests"].as_u64().unwrap();
        errors += out["errors"].as_u64().unwrap();
    }
    // The same traffic as spans, for another service.
    for (count, seed) in [("240", "1"), ("160", "2")] {
        let out = run_py(
            "send_spans.py",
            &[
                "--protocol",
                "grpc",
                "--endpoint",
                &endpoint,
                "--service",
                "orders-spans",
                "--count",
                count,
                "--http-5xx-every",
                "7",
                "--seed",
                seed,
            ],
        );
        assert_eq!(out["ok"], true, "{out}");
    }
    let m = p.wait_metrics(20, |m| {
        metric(
            m,
            "momentum_sli_requests_total",
            &[("service_name", "orders-metrics")],
        ) == Some(requests as f64)
            && metric(
                m,
                "momentum_sli_requests_total",
                &[("service_name", "orders-spans")],
            ) == Some(requests as f64)
    });
    let get = |name: &str, svc: &str| metric(&m, name, &[("service_name", svc)]);
    assert_eq!(
        get("momentum_sli_requests_total", "orders-metrics"),
        Some(requests as f64)
    );
    assert_eq!(
        get("momentum_sli_errors_total", "orders-metrics"),
        Some(errors as f64)
    );
    assert!(errors > 0);
    assert_eq!(
        get("momentum_sli_requests_total", "orders-spans"),
        get("momentum_sli_requests_total", "orders-metrics")
    );
    assert_eq!(
        get("momentum_sli_errors_total", "orders-spans"),
        get("momentum_sli_errors_total", "orders-metrics")
    );
    // The windows see the metric-derived counts too.
    let (status, body) = p.admin_get("/api/v1/services/orders-metrics");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["windows"]["5m"]["requests"].as_u64(), Some(requests));
    assert_eq!(v["windows"]["5m"]["errors"].as_u64(), Some(errors));
    assert!(metric(&m, "momentum_receiver_accepted_metric_points_total", &[]).unwrap() > 0.0);
    assert!(p.stop().success());
}
