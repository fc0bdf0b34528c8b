//! The Parquet archive through the real binary: traffic in over the wire (the Python
//! OpenTelemetry SDK; a Rust OTLP/HTTP client for volume), SIGTERM or kill -9, then the
//! archive read by the readers users have (DuckDB and pyarrow, from tests/py).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{config_yaml, metric, run_py_bounded, wait_exit, Proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// docs/archive.md columns and the types DuckDB and pyarrow report for them.
const SLI_SCHEMA: [(&str, &str, &str, bool); 13] = [
    (
        "window_start",
        "TIMESTAMP WITH TIME ZONE",
        "timestamp[ms, tz=UTC]",
        false,
    ),
    (
        "window_end",
        "TIMESTAMP WITH TIME ZONE",
        "timestamp[ms, tz=UTC]",
        false,
    ),
    ("service_name", "VARCHAR", "string", false),
    ("environment", "VARCHAR", "string", false),
    ("operation", "VARCHAR", "string", false),
    ("requests", "BIGINT", "int64", false),
    ("errors", "BIGINT", "int64", false),
    ("latency_good", "BIGINT", "int64", true),
    ("latency_p50_s", "DOUBLE", "double", true),
    ("latency_p95_s", "DOUBLE", "double", true),
    ("latency_p99_s", "DOUBLE", "double", true),
    ("latency_max_s", "DOUBLE", "double", true),
    ("latency_sketch", "BLOB", "binary", false),
];

fn archive_yaml(dir: &Path, extra: &str) -> String {
    config_yaml(&format!("archive: {{ dir: {} }}\n{extra}", dir.display()))
}

#[test]
fn sigterm_leaves_an_archive_that_duckdb_and_pyarrow_read_exactly() {
    let archive = tempfile::tempdir().unwrap();
    // A latency objective for checkout only, so latency_good is filled for it and null
    // for the others.
    let p = Proc::start(&archive_yaml(
        archive.path(),
        "slos:\n  - service: checkout\n    objectives: { availability: 99.9, latency: { threshold: 300ms, target: 99 } }\n",
    ));
    let mut expected: HashMap<String, (u64, u64)> = HashMap::new();
    let runs: [(&str, String, &[&str], &str); 2] = [
        ("grpc", p.grpc.clone(), &["checkout", "payments"], "7"),
        ("http", format!("http://{}", p.http), &["search"], "5"),
    ];
    for (protocol, endpoint, services, every) in runs {
        let mut args = vec![
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
            "--count",
            "400",
            "--error-every",
            every,
            "--http-5xx-every",
            "13",
            "--environment",
            "prod",
        ];
        for s in services {
            args.extend(["--service", s]);
        }
        let out = run_py_bounded("send_spans.py", &args, 120);
        assert_eq!(out["ok"], true, "{out}");
        for s in services {
            let o = &out["services"][*s];
            let e = expected.entry(s.to_string()).or_default();
            e.0 += o["requests"].as_u64().unwrap();
            e.1 += o["errors"].as_u64().unwrap();
        }
    }
    let total: u64 = expected.values().map(|e| e.0).sum();
    let m = p.wait_metrics(30, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(total as f64)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(total as f64)
    );
    assert_eq!(
        metric(&m, "momentum_pipeline_late_spans_total", &[]),
        Some(0.0)
    );
    assert!(
        metric(&m, "momentum_archive_files_written_total", &[]).is_some(),
        "the counter is exposed before any file is written"
    );
    let status = p.stop();
    assert!(status.success(), "exit status {status}");

    let dir = archive.path().to_str().unwrap();
    let out = run_py_bounded("read_archive.py", &["--dir", dir, "--all-files"], 120);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["unreadable"], serde_json::json!([]), "{out}");
    assert_eq!(out["temp_files"], serde_json::json!([]));
    assert!(out["files"]["sli"].as_u64().unwrap() >= 1, "{out}");
    for reader in ["duckdb", "pyarrow"] {
        let per = &out[reader]["per_service"];
        assert_eq!(
            per.as_object().unwrap().len(),
            expected.len(),
            "{reader}: {per}"
        );
        for (s, (req, err)) in &expected {
            assert!(*err > 0, "the scenario must include errors");
            assert_eq!(per[s]["requests"].as_u64(), Some(*req), "{reader} {s}");
            assert_eq!(per[s]["errors"].as_u64(), Some(*err), "{reader} {s}");
        }
    }
    let duck = &out["duckdb"];
    for row in duck["per_service_env"].as_array().unwrap() {
        assert_eq!(row[1], "prod", "environment column: {row}");
    }
    assert_eq!(
        duck["op_requests"].as_u64(),
        Some(total),
        "per-operation rows add up to the same requests"
    );
    assert!(duck["operations"].as_u64().unwrap() >= 2);

    // Schema: names, types and nullability as docs/archive.md, in both readers.
    let duck_schema: Vec<(String, String)> = duck["schema"]["sli"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    let want: Vec<(String, String)> = SLI_SCHEMA
        .iter()
        .map(|c| (c.0.into(), c.1.into()))
        .collect();
    assert_eq!(duck_schema, want, "DuckDB schema");
    let pa_schema: Vec<(String, String, bool)> = out["pyarrow"]["schema"]["sli"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().into(),
                c[1].as_str().unwrap().into(),
                c[2].as_bool().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, bool)> = SLI_SCHEMA
        .iter()
        .map(|c| (c.0.into(), c.2.into(), c.3))
        .collect();
    assert_eq!(pa_schema, want, "pyarrow schema");
    assert_eq!(
        out["pyarrow"]["metadata"]["sli"]["momentum.schema_version"],
        "1"
    );
    assert_eq!(out["pyarrow"]["metadata"]["sli"]["momentum.dataset"], "sli");

    // The momentum data set: one row per (service, archive window), docs/archive.md columns.
    let names: Vec<&str> = duck["schema"]["momentum"]
        .as_array()
        .unwrap_or_else(|| panic!("no momentum files: {out}"))
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "window_start",
            "window_end",
            "service_name",
            "environment",
            "index",
            "throughput",
            "lead_time",
            "stability",
            "recovery",
            "reliability",
            "deploy_frequency_per_day",
            "lead_time_s",
            "change_failure_ratio",
            "time_to_restore_s",
            "availability_5m",
            "burn_rate_1h",
            "error_budget_remaining",
        ]
    );
    assert!(duck["rows"]["momentum"].as_u64().unwrap() >= expected.len() as u64);

    // Hive partitioning: DuckDB adds `date` from the folder, and it is window_start's date.
    assert_eq!(duck["date_column_type"], "DATE", "{duck}");
    assert!(!duck["dates"].as_array().unwrap().is_empty());
    assert_eq!(duck["date_mismatches"].as_u64(), Some(0));
    assert_eq!(out["pyarrow"]["partition_field"], "date");

    // latency_good: present for checkout's rows (it has a latency objective), null for the
    // others — checked through DuckDB directly.
    let py = common::python().unwrap();
    let q = format!(
        "import duckdb; print(duckdb.sql(\"SELECT service_name, count(latency_good) FROM read_parquet('{dir}/sli/**/*.parquet') WHERE operation = '' GROUP BY 1 ORDER BY 1\").fetchall())"
    );
    let o = std::process::Command::new(py)
        .args(["-c", &q])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("('payments', 0)"), "{text}");
    assert!(text.contains("('search', 0)"), "{text}");
    assert!(!text.contains("('checkout', 0)"), "{text}");
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One request: for each of `services`, one SERVER span per operation ending at `end`.
fn minute_request(services: usize, ops: usize, end: u64, seq: &mut u64) -> Vec<u8> {
    let resource_spans = (0..services)
        .map(|s| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", &format!("svc-{s:03}"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..ops)
                    .map(|o| {
                        *seq += 1;
                        Span {
                            trace_id: seq.to_be_bytes().repeat(2),
                            span_id: seq.to_be_bytes().to_vec(),
                            name: format!("op-{o}"),
                            kind: span::SpanKind::Server as i32,
                            start_time_unix_nano: end - 1_000_000 * (1 + (*seq % 500)),
                            end_time_unix_nano: end,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

/// (temp files, finished files) in the partitions under `root`.
fn scan(root: &Path) -> (Vec<PathBuf>, usize) {
    let (mut tmp, mut done) = (Vec::new(), 0);
    for ds in ["sli", "momentum", "events"] {
        let Ok(parts) = std::fs::read_dir(root.join(ds)) else {
            continue;
        };
        for part in parts.flatten() {
            let Ok(files) = std::fs::read_dir(part.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    tmp.push(f.path());
                } else if name.ends_with(".parquet") {
                    done += 1;
                }
            }
        }
    }
    (tmp, done)
}

fn temp_files(root: &Path) -> Vec<PathBuf> {
    scan(root).0
}

/// POST of an OTLP/protobuf body; the status, or None when the connection dies (the
/// process was killed mid-request).
fn post_protobuf(addr: &str, body: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let line = String::from_utf8_lossy(&raw[..raw.len().min(32)]).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

const MIN_NS: u64 = 60_000_000_000;

/// Replays history at full speed from many series so the writer is busy with 64k-row
/// files; the writer's test hook (`MOMENTUM_TEST_ARCHIVE_PAUSE_AT`) stops it halfway
/// through its 10th file, and the process is killed with SIGKILL while that temp file is
/// half written — every run, not by luck of timing. Every finished file opens, and the
/// next start removes the temp file.
#[test]
fn kill_9_during_heavy_writing_leaves_only_whole_files() {
    let archive = tempfile::tempdir().unwrap();
    let yaml = archive_yaml(archive.path(), "pipeline: { shards: 2 }\n");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // 250 services × 8 operations: 2,250 sli rows per minute of event time, a 64k-row flush
    // every ~29 minutes of history; 12 hours of history give ~25 files of 64k rows.
    let (services, ops) = (250usize, 8usize);
    let mut minute = now / MIN_NS * MIN_NS - 12 * 60 * MIN_NS;
    let mut seq = 0u64;
    let mut p = Proc::start_with_env(&yaml, &[("MOMENTUM_TEST_ARCHIVE_PAUSE_AT", "10")]);
    assert!(temp_files(archive.path()).is_empty());
    // History until the writer has finished 9 files and paused in the 10th (the shards
    // then wait on it: requests are refused with backpressure, and retried).
    let caught = common::poll(
        240,
        "the writer to pause halfway through its 10th file",
        |last| {
            let (tmp, done) = scan(archive.path());
            *last = format!("{done} files finished, {} temp files", tmp.len());
            if !tmp.is_empty() && done >= 9 {
                return Some(tmp);
            }
            assert!(minute + 3 * MIN_NS < now, "the history ran out: {last}");
            let body = minute_request(services, ops, minute + 30_000_000_000, &mut seq);
            match post_protobuf(&p.http, &body) {
                Some(200) => minute += MIN_NS,
                Some(503) => {}
                other => panic!("POST /v1/traces answered {other:?}"),
            }
            None
        },
    );
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &p.child.id().to_string()])
        .status();
    let status = wait_exit(&mut p.child, Duration::from_secs(30));
    assert!(!status.success(), "killed: {status}");
    assert_eq!(
        temp_files(archive.path()),
        caught,
        "the half-written file stays"
    );

    let dir = archive.path().to_str().unwrap();
    let out = run_py_bounded("read_archive.py", &["--dir", dir, "--all-files"], 180);
    assert_eq!(out["unreadable"], serde_json::json!([]), "{out}");
    assert_eq!(out["ok"], true, "{out}");
    eprintln!(
        "after the kill: {} sli files, {} rows, {} temp files",
        out["files"]["sli"],
        out["rows_in_all_files"],
        caught.len()
    );
    assert!(out["files"]["sli"].as_u64().unwrap() >= 2, "{out}");
    assert!(
        out["rows_in_all_files"].as_u64().unwrap() >= 65_536,
        "{out}"
    );
    assert_eq!(
        out["temp_files"].as_array().unwrap().len(),
        caught.len(),
        "DuckDB globs and the temp files are disjoint: {out}"
    );

    // The next start removes the temp files before it is ready.
    let p = Proc::start(&yaml);
    for t in &caught {
        assert!(!t.exists(), "{} survived a restart", t.display());
    }
    assert!(temp_files(archive.path()).is_empty());
    let m = p.metrics();
    assert_eq!(
        metric(&m, "momentum_archive_failures_total", &[]),
        Some(0.0)
    );
    assert!(p.stop().success());
}

/// The self-metrics of the writer appear on /metrics from the start.
#[test]
fn archive_self_metrics_are_exposed() {
    let archive = tempfile::tempdir().unwrap();
    let p = Proc::start(&archive_yaml(archive.path(), ""));
    let m = p.metrics();
    for name in [
        "momentum_archive_files_written_total",
        "momentum_archive_failures_total",
        "momentum_archive_dropped_rows_total",
        "momentum_archive_queue_depth",
        "momentum_archive_blocked_seconds_total",
        "momentum_archive_write_seconds_total",
        "momentum_archive_written_bytes_total",
    ] {
        assert_eq!(metric(&m, name, &[]), Some(0.0), "{name}");
    }
    assert_eq!(
        metric(
            &m,
            "momentum_archive_rows_written_total",
            &[("dataset", "sli")]
        ),
        Some(0.0)
    );
    assert!(p.stop().success());
}

/// The writer's time counters are in seconds: once files are written, the time spent
/// writing them is above 0 and far below the minutes this test is bounded to (counted in
/// nanoseconds as seconds it would be millions).
#[test]
fn archive_write_time_is_counted_in_seconds() {
    let archive = tempfile::tempdir().unwrap();
    let p = Proc::start(&archive_yaml(archive.path(), ""));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut seq = 0u64;
    // ten minutes of history up to now: the old windows close and are written
    for k in (0..=10u64).rev() {
        let body = shop_request("1.0.0", now - k * MIN_NS, 5, 0, None, &mut seq);
        assert_eq!(post_protobuf(&p.http, &body), Some(200));
    }
    // the writer flushes every `archive.window` (1m) of wall time
    let m = p.wait_metrics(150, |m| {
        metric(m, "momentum_archive_files_written_total", &[]).unwrap_or(0.0) >= 1.0
    });
    let written = metric(&m, "momentum_archive_write_seconds_total", &[]).unwrap();
    assert!(
        written > 0.0 && written < 600.0,
        "{written} s spent writing"
    );
    assert_eq!(
        metric(&m, "momentum_archive_blocked_seconds_total", &[]),
        Some(0.0)
    );
    assert!(p.stop().success());
}

/// One request of `n` SERVER spans of `shop` (prod) at `version`, ending at `end`; the
/// first `errors` are errors; `deployment` adds an explicit record (id, status) on a span.
fn shop_request(
    version: &str,
    end: u64,
    n: usize,
    errors: usize,
    deployment: Option<(&str, &str)>,
    seq: &mut u64,
) -> Vec<u8> {
    use opentelemetry_proto::tonic::trace::v1::Status;
    let spans = (0..n)
        .map(|i| {
            *seq += 1;
            let mut attributes = vec![];
            if let (0, Some((id, status))) = (i, deployment) {
                attributes.push(kv("deployment.id", id));
                attributes.push(kv("deployment.status", status));
            }
            Span {
                trace_id: seq.to_be_bytes().repeat(2),
                span_id: seq.to_be_bytes().to_vec(),
                name: "GET /cart".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: end - 20_000_000,
                end_time_unix_nano: end,
                attributes,
                status: (i < errors).then(|| Status {
                    code: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("deployment.environment.name", "prod"),
                    kv("service.version", version),
                ],
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

/// The API document of shop/prod once `until` accepts it (snapshots are published on
/// the shard tick); fails the test, with the last document, after 30 s.
fn shop_api(p: &Proc, until: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    common::poll(30, "the shop/prod document the test waits for", |last| {
        let (s, body) = p.admin_get("/api/v1/services/shop?environment=prod");
        *last = format!("{s} {body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (s == 200 && until(&v)).then_some(v)
    })
}

/// Restart without amnesia (docs/archive.md): 90 minutes of history with two deployments (one
/// failed by its explicit record) and a burst of errors, SIGTERM, start again on the same
/// archive dir. The error budget, deploy frequency, change failure ratio and running
/// version are the same after the restart; counters start at 0; the running version is
/// not a new deployment; the next version change is counted once; the archive holds one
/// `deployment` row per decided deployment, with its result, and `momentum` rows.
#[test]
fn restart_keeps_error_budget_deployments_and_change_failure() {
    let archive = tempfile::tempdir().unwrap();
    let yaml = archive_yaml(
        archive.path(),
        "slos:\n  - service: shop\n    objectives: { availability: 99 }\ndelivery: { change_failure_window: 2m, rollback_quiet_period: 1m }\nsli: { allowed_lateness: 30m }\n",
    );
    // allowed_lateness 30m: the fleet clock follows the wall clock only after 30 minutes
    // without any traffic, so however long the stop, restart and reads take on a loaded
    // machine, the spans sent after the restart (just after the history's end) are not
    // late: the history's clock is the test's, not the wall's (docs/event-time.md).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // History: minute m of 120, the last ending 1 s before a minute boundary at least 5 s
    // in the past (so the spans after the restart, from that boundary on, are not in the
    // future); v1, then v2 from minute 30, v3 from minute 60 (with an explicit failed
    // record); 1 error a minute in 40..45. Decisions wait for the fleet floor (F −
    // allowed_lateness) to pass them: v3's (minute 63) is made by minute 93.
    let last = (now - 5_000_000_000) / MIN_NS * MIN_NS - 1_000_000_000;
    let t0 = last - 119 * MIN_NS;
    let mut seq = 0u64;
    let p = Proc::start(&yaml);
    for m in 0..120u64 {
        let version = ["v1", "v2", "v3"][(m / 30).min(2) as usize];
        let errors = usize::from((40..45).contains(&m));
        let dep = (m == 60).then_some(("d-3", "failed"));
        let body = shop_request(version, t0 + m * MIN_NS, 10, errors, dep, &mut seq);
        assert_eq!(post_protobuf(&p.http, &body), Some(200));
    }
    let m = p.wait_metrics(30, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(1200.0)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_late_spans_total", &[]),
        Some(0.0)
    );
    // Both deployments are decided once the clock is 3 minutes past v3's first span.
    let before = shop_api(&p, |v| {
        v["requests_total"] == 1200 && v["delivery"]["deployments_pending"] == 0
    });
    let d = &before["delivery"];
    assert_eq!(d["deployments_in_lookback"], 2, "{d}");
    assert_eq!(d["deployments_pending"], 0, "{d}");
    assert_eq!(d["deployments_succeeded_total"], 1, "{d}");
    assert_eq!(d["deployments_failed_total"], 1, "{d}");
    assert_eq!(d["change_failure_ratio"], 0.5, "{d}");
    assert_eq!(d["current_version"], "v3", "{d}");
    let budget = before["slo"]["objectives"][0]["error_budget_remaining"]
        .as_f64()
        .unwrap();
    // Over the SLO window at the pair's clock, the open bucket included: all 1,200
    // requests, 5 errors, against a 1% budget.
    assert!((budget - (1.0 - 5.0 / 12.0)).abs() < 1e-12, "{budget}");
    let freq = d["deploy_frequency_per_day"].as_f64().unwrap();
    let clock = before["clock_unix_nano"].as_u64().unwrap();
    assert_eq!(clock, last, "the pair's clock is its newest span");
    assert!((freq - 2.0 / ((clock - t0) as f64 / 86_400e9)).abs() < 1e-9);
    assert!(p.stop().success());

    // Restart on the same archive dir, before any new traffic.
    let p = Proc::start(&yaml);
    let m = p.metrics();
    assert_eq!(
        metric(&m, "momentum_archive_restored_pairs_total", &[]),
        Some(1.0)
    );
    let after = shop_api(&p, |_| true);
    let a = &after["delivery"];
    assert_eq!(after["clock_unix_nano"].as_u64(), Some(clock));
    assert_eq!(
        after["slo"]["objectives"][0]["error_budget_remaining"].as_f64(),
        Some(budget),
        "the 30-day error budget survives the restart"
    );
    assert_eq!(a["deploy_frequency_per_day"].as_f64(), Some(freq));
    assert_eq!(a["change_failure_ratio"], 0.5);
    assert_eq!(a["deployments_in_lookback"], 2);
    assert_eq!(a["current_version"], "v3");
    assert_eq!(after["windows"]["1h"]["requests"], 600, "{after}");
    // Counters restart at 0 with the process (the README's Exporters); the state behind gauges does not.
    assert_eq!(a["deployments_succeeded_total"], 0);
    assert_eq!(after["requests_total"], 0);

    // The running version reports again: not a deployment. Then v4: one deployment,
    // however many requests carry it. Shutdown closed up to the end of the archive window
    // holding the last span, so new spans start at the next one.
    let next = (last / MIN_NS + 1) * MIN_NS;
    for (i, v) in ["v3", "v4", "v4"].iter().enumerate() {
        let body = shop_request(v, next + i as u64 * 1_000_000_000, 10, 0, None, &mut seq);
        assert_eq!(post_protobuf(&p.http, &body), Some(200));
    }
    let m = p.wait_metrics(30, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(30.0)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_late_spans_total", &[]),
        Some(0.0)
    );
    let v = shop_api(&p, |v| v["requests_total"] == 30);
    let d = &v["delivery"];
    assert_eq!(d["deployments_in_lookback"], 3, "{d}");
    assert_eq!(d["deployments_pending"], 1, "{d}");
    assert_eq!(d["current_version"], "v4");
    assert_eq!(v["windows"]["slo"]["requests"], 1230, "{v}");
    assert!(p.stop().success());

    // The archive: one row per decided deployment with its result (v4 is still pending,
    // carried by the checkpoint), and momentum rows with the index inputs.
    let dir = archive.path().to_str().unwrap();
    let py = common::python().unwrap();
    let q = format!(
        "import duckdb\n\
         print(duckdb.sql(\"SELECT version, previous_version, result FROM read_parquet('{dir}/events/**/*.parquet', hive_partitioning=true) WHERE kind = 'deployment' ORDER BY time\").fetchall())\n\
         print(duckdb.sql(\"SELECT count(*), count(change_failure_ratio), count(error_budget_remaining), min(error_budget_remaining) FROM read_parquet('{dir}/momentum/**/*.parquet', hive_partitioning=true) WHERE service_name = 'shop' AND environment = 'prod'\").fetchall())\n\
         print(duckdb.sql(\"SELECT sum(requests) FROM read_parquet('{dir}/sli/**/*.parquet', hive_partitioning=true) WHERE operation = ''\").fetchall())"
    );
    let o = std::process::Command::new(py)
        .args(["-c", &q])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "[('v2', 'v1', 'succeeded'), ('v3', 'v2', 'failed')]",
        "{text}"
    );
    let counts: Vec<f64> = lines[1]
        .trim_matches(|c| "[()]".contains(c))
        .split(", ")
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        counts[0] >= 121.0,
        "a momentum row per closed minute: {text}"
    );
    assert!(counts[1] >= 1.0, "{text}");
    assert_eq!(counts[2], counts[0], "every row has the budget: {text}");
    // Rows are valued at the pair's clock when they close (30 minutes of lateness after
    // their window): the lowest holds the 5 errors among the fewest requests, below the
    // budget at the end of the history.
    assert!(
        counts[3] < budget - 0.1,
        "the budget history is in the rows: {text} (end: {budget})"
    );
    assert_eq!(lines[2], "[(1230,)]", "{text}");
}

/// `archive.spans: true`: every accepted span is one row of the `spans` data set, with
/// docs/archive.md's columns, read back by DuckDB.
#[test]
fn spans_data_set_holds_every_accepted_span() {
    let archive = tempfile::tempdir().unwrap();
    let p = Proc::start(&config_yaml(&format!(
        "archive: {{ dir: {}, spans: true }}\n",
        archive.path().display()
    )));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut seq = 0u64;
    let mut sent = 0u64;
    for i in 0..5u64 {
        let end = now - (5 - i) * 1_000_000_000;
        let body = minute_request(3, 4, end, &mut seq);
        assert_eq!(post_protobuf(&p.http, &body), Some(200));
        sent += 12;
    }
    let body = shop_request("v9", now - 500_000_000, 10, 3, None, &mut seq);
    assert_eq!(post_protobuf(&p.http, &body), Some(200));
    sent += 10;
    p.wait_metrics(30, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(sent as f64)
    });
    assert!(p.stop().success());
    let m_dir = archive.path().to_str().unwrap();
    let py = common::python().unwrap();
    let q = format!(
        "import duckdb\n\
         src = \"read_parquet('{m_dir}/spans/**/*.parquet', hive_partitioning=true)\"\n\
         print(duckdb.sql(f\"SELECT count(*), count(DISTINCT span_id), count(*) FILTER (WHERE status_code = 'error'), count(*) FILTER (WHERE length(trace_id) = 32 AND kind = 'server'), sum(end_time_unix_nano - start_time_unix_nano) FILTER (WHERE service_name = 'shop') FROM {{src}}\").fetchall())\n\
         print([(c[0], c[1]) for c in duckdb.sql(f'DESCRIBE SELECT * FROM {{src}}').fetchall()])\n\
         print(duckdb.sql(f\"SELECT DISTINCT service_version, environment FROM {{src}} WHERE service_name = 'shop'\").fetchall())"
    );
    let o = std::process::Command::new(py)
        .args(["-c", &q])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("[({sent}, {sent}, 3, {sent}, {})]", 10 * 20_000_000),
        "{text}"
    );
    let want = [
        ("trace_id", "VARCHAR"),
        ("span_id", "VARCHAR"),
        ("parent_span_id", "VARCHAR"),
        ("service_name", "VARCHAR"),
        ("environment", "VARCHAR"),
        ("service_version", "VARCHAR"),
        ("name", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("start_time", "TIMESTAMP WITH TIME ZONE"),
        ("end_time", "TIMESTAMP WITH TIME ZONE"),
        ("start_time_unix_nano", "BIGINT"),
        ("end_time_unix_nano", "BIGINT"),
        ("duration_s", "DOUBLE"),
        ("status_code", "VARCHAR"),
        ("status_message", "VARCHAR"),
        ("attributes", "VARCHAR"),
        ("resource_attributes", "VARCHAR"),
        ("date", "DATE"),
    ];
    let want: Vec<String> = want
        .iter()
        .map(|(n, t)| format!("('{n}', '{t}')"))
        .collect();
    assert_eq!(lines[1], format!("[{}]", want.join(", ")), "{text}");
    assert_eq!(lines[2], "[('v9', 'prod')]", "{text}");
}

/// Connections that never finish cannot hold shutdown up, nor cost what was accepted:
/// load with span archiving and forwarding (to a next hop that is down) on, then a silent
/// HTTP/2 connection on each receiver and a half-sent HTTP/1.1 request, then SIGTERM. The
/// process exits within `shutdown_timeout`, DuckDB counts every accepted span, the state
/// checkpoint is written, and a restart restores the error budget.
#[test]
fn sigterm_with_stuck_connections_keeps_every_accepted_span_and_the_checkpoint() {
    use std::io::Write as _;
    let archive = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note, release.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = archive_yaml(
        archive.path(),
        &format!(
            "shutdown_timeout: 4s\nslos:\n  - service: shop\n    objectives: {{ availability: 99 }}\nexporters:\n  otlp:\n    endpoint: http://{dead}\n    protocol: grpc\n    interval: 1h\n    queue: {{ dir: null }}\n"
        ),
    )
    .replace("archive: {", "archive: { spans: true,");
    let mut p = Proc::start(&yaml);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut seq = 0u64;
    let mut sent = 0u64;
    for i in 0..40u64 {
        let body = shop_request(
            "v1",
            now - 60_000_000_000 + i * 1_000_000_000,
            25,
            1,
            None,
            &mut seq,
        );
        assert_eq!(post_protobuf(&p.http, &body), Some(200));
        sent += 25;
    }
    let m = p.wait_metrics(30, |m| {
        metric(m, "momentum_pipeline_processed_spans_total", &[]) == Some(sent as f64)
    });
    assert_eq!(
        metric(&m, "momentum_pipeline_processed_spans_total", &[]),
        Some(sent as f64)
    );
    let budget = shop_api(&p, |v| v["requests_total"] == sent)["slo"]["objectives"][0]
        ["error_budget_remaining"]
        .as_f64()
        .unwrap();
    assert!(
        (budget - (1.0 - 40.0 / (sent as f64 * 0.01))).abs() < 1e-9,
        "{budget}"
    );

    // HTTP/2 preface + an empty SETTINGS frame, then nothing, on both receivers; and an
    // HTTP/1.1 request that promises a body it never sends.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut stuck = Vec::new();
    for addr in [&p.grpc, &p.http] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(preface).unwrap();
        stuck.push(s);
    }
    let mut s = std::net::TcpStream::connect(&p.http).unwrap();
    s.write_all(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\nabc",
    )
    .unwrap();
    stuck.push(s);
    common::signal(&p.child, "TERM");
    // shutdown_timeout (4 s) and a margin for a loaded machine
    let status = wait_exit(&mut p.child, Duration::from_secs(8));
    assert!(status.success(), "{status}");
    drop(stuck);
    assert!(
        archive.path().join("state/checkpoint.bin").is_file(),
        "the checkpoint is written"
    );
    let dir = archive.path().to_str().unwrap();
    let q = format!(
        "import duckdb\nprint(duckdb.sql(\"SELECT count(*), count(DISTINCT span_id) FROM read_parquet('{dir}/spans/**/*.parquet', hive_partitioning=true)\").fetchall())"
    );
    let o = std::process::Command::new(common::python().unwrap())
        .args(["-c", &q])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("[({sent}, {sent})]"),
        "every accepted span is in the archive"
    );
    let p = Proc::start(&yaml);
    let after = shop_api(&p, |_| true);
    assert_eq!(
        after["slo"]["objectives"][0]["error_budget_remaining"].as_f64(),
        Some(budget),
        "the restart restores the error budget"
    );
    assert!(p.stop().success());
}
