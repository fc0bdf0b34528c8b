//! `momentum report` on archives built by the test through the real writer: every format,
//! the filters, data sets absent, and the HTML rendered by headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::wait_exit;
use momentum::archive::writer::{self, ArchiveStats};
use momentum::archive::{ArchiveMsg, EventRow, MomentumRow, SliRow};
use momentum::config::ArchiveConfig;
use momentum::sli::sketch::{nearest_rank, Mapping, Sketch};

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const DAY: u64 = 1440 * MIN;
/// 2026-11-20T00:00:00Z
const D0: u64 = 1_795_132_800 * S;
const DATES: [&str; 3] = ["2026-11-20", "2026-11-21", "2026-11-22"];
/// (service, environment)
const PAIRS: [(&str, &str); 3] = [("checkout", "prod"), ("payments", "prod"), ("search", "")];

/// A deterministic latency stream (seconds, 1 ms … ~2 s).
fn latencies(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            0.001 * (1.0 + ((x >> 33) % 2000) as f64)
        })
        .collect()
}

/// What the test put in, per (pair, day): requests, errors, every latency, merged sketch.
struct Truth {
    requests: u64,
    errors: u64,
    values: Vec<f64>,
    sketch: Sketch,
}

struct Built {
    dir: tempfile::TempDir,
    truth: Vec<((usize, usize), Truth)>,
    files: u64,
}

fn sli_rows(m: &Mapping, truth: &mut Vec<((usize, usize), Truth)>) -> Vec<SliRow> {
    let mut rows = Vec::new();
    for (pi, (svc, env)) in PAIRS.iter().enumerate() {
        for day in 0..DATES.len() {
            let mut t = Truth {
                requests: 0,
                errors: 0,
                values: Vec::new(),
                sketch: Sketch::new(),
            };
            // Six windows a day, 4 hours apart, of different sizes.
            for w in 0..6u64 {
                let n = 20 + 7 * w as usize + 11 * pi + 3 * day;
                let vals = latencies((pi * 100 + day * 10) as u64 + w, n);
                let mut sk = Sketch::new();
                for v in &vals {
                    sk.add(m, *v);
                }
                let errors = (n as u64) / (5 + pi as u64);
                let start = D0 + day as u64 * DAY + w * 4 * 60 * MIN;
                let row = |op: &str, sketch: &Sketch| SliRow {
                    window_start_ns: start,
                    window_end_ns: start + MIN,
                    service: (*svc).into(),
                    environment: (*env).into(),
                    operation: op.into(),
                    requests: n as u64,
                    errors,
                    latency_good: None,
                    latency_p50_s: sketch.quantile(m, 0.5),
                    latency_p95_s: sketch.quantile(m, 0.95),
                    latency_p99_s: sketch.quantile(m, 0.99),
                    latency_max_s: sketch.max(),
                    latency_sketch: sketch.encode_ddsketch(m),
                };
                rows.push(row("", &sk));
                // A per-operation row with the same requests: the report must not add it.
                rows.push(row("GET /x", &sk));
                t.requests += n as u64;
                t.errors += errors;
                t.values.extend(vals);
                t.sketch.merge(&sk);
            }
            truth.push(((pi, day), t));
        }
    }
    rows
}

fn momentum_rows() -> Vec<MomentumRow> {
    // checkout only; three rows a day, the last one of the day is what counts.
    let mut rows = Vec::new();
    for day in 0..3u64 {
        for k in 0..3u64 {
            let start = D0 + day * DAY + (k * 8 + 1) * 60 * MIN;
            rows.push(MomentumRow {
                window_start_ns: start,
                window_end_ns: start + MIN,
                service: "checkout".into(),
                environment: "prod".into(),
                index: Some(50.0 + 10.0 * day as f64 + k as f64),
                throughput: Some(0.5),
                lead_time: Some(0.75),
                stability: Some(0.25 * k as f64),
                recovery: None,
                reliability: Some(0.9),
                error_budget_remaining: Some(0.8 - 0.1 * day as f64),
                ..MomentumRow::default()
            });
        }
    }
    rows
}

fn event(
    day: u64,
    hour: u64,
    svc: &str,
    kind: &'static str,
    result: Option<&str>,
    d: Option<f64>,
) -> EventRow {
    EventRow {
        time_ns: D0 + day * DAY + hour * 60 * MIN,
        service: svc.into(),
        environment: "prod".into(),
        kind,
        version: Some(format!("v{day}{hour}")),
        previous_version: None,
        result: result.map(String::from),
        duration_s: d,
        attributes: String::new(),
    }
}

fn event_rows() -> Vec<EventRow> {
    vec![
        event(0, 1, "checkout", "deployment", Some("succeeded"), None),
        event(0, 5, "checkout", "deployment", Some("failed"), None),
        event(1, 2, "checkout", "rollback", Some("succeeded"), None),
        event(1, 3, "checkout", "incident_open", None, None),
        event(1, 4, "checkout", "alert_start", Some("page"), None),
        event(2, 1, "checkout", "incident_resolved", None, Some(1800.0)),
        event(1, 9, "payments", "deployment", None, None),
    ]
}

/// Writes an archive through the real writer task, in two flushes (so there are more files
/// than the progress threshold).
fn build(with_momentum_and_events: bool) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let m = Mapping::new(0.01).unwrap();
    let mut truth = Vec::new();
    let sli = sli_rows(&m, &mut truth);
    let stats = Arc::new(ArchiveStats::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = ArchiveConfig {
            dir: dir.path().to_path_buf(),
            ..ArchiveConfig::default()
        };
        let (tx, handle) = writer::start(&cfg, stats.clone()).unwrap();
        let half = sli.len() / 2;
        tx.send(ArchiveMsg::Sli(sli[..half].to_vec()))
            .await
            .unwrap();
        let (ack, done) = tokio::sync::oneshot::channel();
        tx.send(ArchiveMsg::Flush(ack)).await.unwrap();
        done.await.unwrap();
        tx.send(ArchiveMsg::Sli(sli[half..].to_vec()))
            .await
            .unwrap();
        if with_momentum_and_events {
            tx.send(ArchiveMsg::Momentum(momentum_rows()))
                .await
                .unwrap();
            tx.send(ArchiveMsg::Events(event_rows())).await.unwrap();
        }
        drop(tx);
        handle.await.unwrap();
    });
    let files = stats
        .files_written
        .load(std::sync::atomic::Ordering::Relaxed);
    Built { dir, truth, files }
}

/// Runs `momentum report` with `args`; (exit code, stdout, stderr), bounded in time.
fn report(args: &[&str]) -> (i32, String, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let (so, se) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_momentum"))
        .arg("report")
        .args(args)
        .stdout(std::fs::File::create(&so).unwrap())
        .stderr(std::fs::File::create(&se).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(so).unwrap(),
        std::fs::read_to_string(se).unwrap(),
    )
}

fn json_report(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let d = dir.to_str().unwrap();
    let mut args = vec!["--archive", d, "--format", "json"];
    args.extend(extra);
    let (code, out, err) = report(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn day_row<'a>(r: &'a serde_json::Value, svc: &str, date: &str) -> &'a serde_json::Value {
    r["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["service"] == svc && d["date"] == date)
        .unwrap_or_else(|| panic!("no row {svc} {date}"))
}

#[test]
fn json_report_matches_what_was_written() {
    let b = build(true);
    assert_eq!(
        b.files,
        3 * 2 + 3 + 3,
        "sli: 3 days × 2 flushes; momentum and events: 3 days"
    );
    let r = json_report(b.dir.path(), &[]);
    let m = Mapping::new(0.01).unwrap();
    assert_eq!(r["files_read"], 12);
    assert_eq!(
        r["datasets"],
        serde_json::json!(["sli", "momentum", "events"])
    );
    assert_eq!(r["days"].as_array().unwrap().len(), 9);
    for ((pi, day), t) in &b.truth {
        let (svc, env) = PAIRS[*pi];
        let d = day_row(&r, svc, DATES[*day]);
        assert_eq!(d["environment"], env);
        assert_eq!(d["requests"].as_u64(), Some(t.requests), "{svc} {day}");
        assert_eq!(d["errors"].as_u64(), Some(t.errors));
        let avail = d["availability"].as_f64().unwrap();
        assert!((avail - (1.0 - t.errors as f64 / t.requests as f64)).abs() < 1e-12);
        // p99 of the day is the merged sketch's, within 1% of the exact nearest rank.
        let p99 = d["p99_s"].as_f64().unwrap();
        // (JSON's decimal round trip may move the last bit.)
        let merged = t.sketch.quantile(&m, 0.99).unwrap();
        assert!((p99 - merged).abs() <= 1e-12 * merged, "{p99} vs {merged}");
        let mut v = t.values.clone();
        v.sort_by(f64::total_cmp);
        let exact = v[nearest_rank(0.99, v.len() as u64) as usize - 1];
        assert!((p99 - exact).abs() <= 0.01 * exact, "{p99} vs {exact}");
    }
    // Momentum: the last row of each day; components absent stay null.
    for (day, date) in DATES.iter().enumerate() {
        let d = day_row(&r, "checkout", date);
        assert_eq!(d["index"].as_f64(), Some(52.0 + 10.0 * day as f64));
        assert_eq!(d["stability"].as_f64(), Some(0.5));
        assert!(d["recovery"].is_null());
        assert!(day_row(&r, "payments", date)["index"].is_null());
    }
    // Events: deployments + rollbacks, change failure of decided ones, incidents, restore.
    let c0 = day_row(&r, "checkout", DATES[0]);
    assert_eq!(
        (
            c0["deployments"].as_u64(),
            c0["failed_deployments"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(c0["change_failure_ratio"].as_f64(), Some(0.5));
    assert_eq!(c0["incidents"].as_u64(), Some(0));
    let c1 = day_row(&r, "checkout", DATES[1]);
    assert_eq!(c1["deployments"].as_u64(), Some(1));
    assert_eq!(c1["change_failure_ratio"].as_f64(), Some(0.0));
    assert_eq!(c1["incidents"].as_u64(), Some(1));
    let c2 = day_row(&r, "checkout", DATES[2]);
    assert_eq!(c2["time_to_restore_s"].as_f64(), Some(1800.0));
    assert!(
        c2["change_failure_ratio"].is_null(),
        "no decided deployment that day"
    );
    let p1 = day_row(&r, "payments", DATES[1]);
    assert_eq!(p1["deployments"].as_u64(), Some(1));
    assert!(
        p1["change_failure_ratio"].is_null(),
        "pending is not decided"
    );
    assert_eq!(
        day_row(&r, "search", DATES[0])["deployments"].as_u64(),
        Some(0)
    );
    // Per-service summary over the period.
    let s = r["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "checkout")
        .unwrap();
    assert_eq!(s["deployments"].as_u64(), Some(3));
    assert!((s["change_failure_ratio"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(s["index"].as_f64(), Some(72.0));
    assert_eq!(s["first_date"], DATES[0]);
    assert_eq!(s["last_date"], DATES[2]);
}

#[test]
fn filters_select_days_and_services() {
    let b = build(true);
    let r = json_report(
        b.dir.path(),
        &[
            "--from",
            "2026-11-21",
            "--to",
            "2026-11-21",
            "--service",
            "checkout",
        ],
    );
    let days = r["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{r}");
    assert_eq!(days[0]["date"], "2026-11-21");
    assert_eq!(days[0]["service"], "checkout");
    assert_eq!(r["from"], "2026-11-21T00:00:00Z");
    assert_eq!(r["to"], "2026-11-22T00:00:00Z");
    // Partition pruning: only the 21st's files were opened (2 sli, 1 momentum, 1 events).
    assert_eq!(r["files_read"], 4);
    // An RFC 3339 bound inside a day filters rows, not just partitions.
    let r = json_report(
        b.dir.path(),
        &[
            "--from",
            "2026-11-20T06:00:00Z",
            "--to",
            "2026-11-20T12:00:00Z",
            "--service",
            "search",
        ],
    );
    let d = &r["days"][0];
    // Windows at 08:00 only (4-hourly from 00:00; 12:00 excluded).
    assert_eq!(d["requests"].as_u64(), Some(20 + 7 * 2 + 22));
}

#[test]
fn absent_data_sets_leave_their_columns_empty() {
    let b = build(false);
    let r = json_report(b.dir.path(), &[]);
    assert_eq!(r["datasets"], serde_json::json!(["sli"]));
    for d in r["days"].as_array().unwrap() {
        for k in [
            "index",
            "deployments",
            "change_failure_ratio",
            "incidents",
            "time_to_restore_s",
        ] {
            assert!(d[k].is_null(), "{k}: {d}");
        }
        assert!(d["requests"].as_u64().unwrap() > 0);
    }
    let (code, csv, _) = report(&[
        "--archive",
        b.dir.path().to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(code, 0);
    let first = csv.lines().nth(1).unwrap();
    let cells: Vec<&str> = first.split(',').collect();
    assert_eq!(cells.len(), 19);
    assert_eq!(cells[7], "", "index empty");
    assert_eq!(cells[14], "", "deployments empty");
}

#[test]
fn table_and_csv_formats() {
    let b = build(true);
    let d = b.dir.path().to_str().unwrap();
    let (code, table, err) = report(&["--archive", d]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("momentum report: read 12 files"),
        "progress summary: {err}"
    );
    assert!(table.contains("checkout [prod]:"), "{table}");
    assert!(table.contains("search:"), "{table}");
    let checkout_day: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with("2026-11-20"))
        .collect();
    assert_eq!(
        checkout_day.len(),
        3,
        "one line per service for that day:\n{table}"
    );
    assert!(checkout_day[0].contains("52.0"), "{}", checkout_day[0]);

    let (code, csv, err) = report(&["--archive", d, "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "date,service,environment,requests,errors,availability,p99_s,index,throughput,lead_time,stability,recovery,reliability,error_budget_remaining,deployments,failed_deployments,change_failure_ratio,incidents,time_to_restore_s"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9);
    let c0 = rows
        .iter()
        .find(|r| r[0] == "2026-11-20" && r[1] == "checkout")
        .unwrap();
    assert_eq!((c0[14], c0[15], c0[16]), ("2", "1", "0.5"));

    // --out writes the file, stdout stays empty.
    let out = b.dir.path().join("report.csv");
    let (code, stdout, _) = report(&[
        "--archive",
        d,
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.is_empty());
    assert_eq!(std::fs::read_to_string(out).unwrap(), csv);
}

#[test]
fn bad_usage_exits_2_with_one_sentence() {
    let (code, _, err) = report(&["--archive", "/nonexistent/archive"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/archive"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = report(&["--archive", dir.path().to_str().unwrap(), "--from", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--from \"soon\""), "{err}");
    // An empty archive is not an error: the report says there is no data.
    let (code, out, _) = report(&["--archive", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("no data in range"), "{out}");
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let b = build(true);
    let html = b.dir.path().join("report.html");
    let (code, _, err) = report(&[
        "--archive",
        b.dir.path().to_str().unwrap(),
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 3, "availability, p99, index");
    assert!(page.contains("checkout [prod]"));

    let profile = tempfile::tempdir().unwrap();
    let shot = b.dir.path().join("shot.png");
    let mut child = common::chromium(profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,900")
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let status = wait_exit(&mut child, Duration::from_secs(90));
    assert!(status.success(), "chromium: {status}");

    // MOMENTUM_KEEP_SCREENSHOT=DIR keeps the page and its screenshot for a look.
    if let Some(keep) = std::env::var_os("MOMENTUM_KEEP_SCREENSHOT") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&shot, keep.join("report.png")).unwrap();
        std::fs::copy(&html, keep.join("report.html")).unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 900));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let px = buf[..info.buffer_size()].chunks(channels);
    let mut colors = std::collections::HashSet::new();
    let (mut non_white, mut first_series) = (0usize, 0usize);
    for p in px {
        let rgb = (p[0], p[1], p[2]);
        colors.insert(rgb);
        if rgb != (255, 255, 255) {
            non_white += 1;
        }
        // #4e79a7, the first service's color (card border, line, legend)
        if rgb == (0x4e, 0x79, 0xa7) {
            first_series += 1;
        }
    }
    let total = (info.width * info.height) as usize;
    assert!(colors.len() >= 64, "only {} distinct colors", colors.len());
    assert!(
        non_white * 20 > total,
        "{non_white} of {total} pixels are not white"
    );
    assert!(
        first_series >= 100,
        "the first series' color covers {first_series} pixels"
    );
}
