//! `momentum demo` through the binary: the replayed story reaches every signal within a
//! minute, the API lists it, and the dashboard at `/` renders it in headless Chromium.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{metric, wait_exit, Proc};

const SERVICES: [&str; 5] = ["checkout", "payments", "catalog", "search", "inventory"];

/// Services with a positive sample of `name`.
fn services_with(m: &str, name: &str) -> usize {
    SERVICES
        .iter()
        .filter(|s| common::family_sum(m, name, &format!("service_name=\"{s}\"")) > 0.0)
        .count()
}

fn start_demo() -> Proc {
    let mut p = Proc::start_command("demo", &common::config_yaml(""), &[]);
    // the second line names the dashboard
    let mut line = String::new();
    std::io::BufRead::read_line(&mut p.stdout, &mut line).unwrap();
    assert!(
        line.starts_with(&format!("momentum demo: dashboard http://{}/", p.admin)),
        "{line:?}"
    );
    for s in SERVICES {
        assert!(line.contains(s), "{line:?}");
    }
    p
}

#[test]
fn the_demo_shows_every_signal_within_a_minute() {
    let p = start_demo();
    let m = p.wait_metrics(60, |m| {
        services_with(m, "momentum_index") >= 3
            && services_with(m, "momentum_delivery_deployments_total") >= 3
            && common::family_sum(m, "momentum_delivery_rollbacks_total", "checkout") >= 1.0
            && common::family_sum(m, "momentum_recovery_incidents_total", "checkout") >= 1.0
            && common::family_sum(
                m,
                "momentum_recovery_time_to_restore_seconds_count",
                "checkout",
            ) >= 1.0
            && services_with(m, "momentum_delivery_lead_time_seconds_count") >= 3
            && services_with(m, "momentum_cicd_pipeline_runs_total") >= 3
    });
    // checkout's bad release failed; its rollback and incident are in the lookback
    assert!(
        metric(
            &m,
            "momentum_delivery_deployments_total",
            &[("service_name", "checkout"), ("result", "failed")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "checkout 2.0.0 failed"
    );
    assert!(common::family_sum(&m, "momentum_delivery_change_failure_ratio", "checkout") > 0.0);
    // failed CI runs are counted as such
    assert!(
        common::family_sum(
            &m,
            "momentum_cicd_pipeline_runs_total",
            "result=\"failure\""
        ) >= 1.0
    );

    // The API: the rollback and the failed release among the recent deployments, the
    // incident among the recent ones, and a history for the charts.
    let (status, body) = p.admin_get("/api/v1/services/checkout?environment=production");
    assert_eq!(status, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    let recent = d["delivery"]["recent_deployments"].as_array().unwrap();
    assert!(recent.iter().any(|x| x["rollback"] == true), "{recent:?}");
    assert!(
        recent
            .iter()
            .any(|x| x["version"] == "2.0.0" && x["outcome"] == "failed"),
        "{recent:?}"
    );
    let incidents = d["slo"]["recent_incidents"].as_array().unwrap();
    assert!(!incidents.is_empty());
    assert!(incidents[0]["time_to_restore_seconds"].as_f64().unwrap() > 0.0);
    let (status, body) = p.admin_get("/api/v1/services/checkout/history?environment=production");
    assert_eq!(status, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    let points = h["points"].as_array().unwrap();
    assert!(points.len() >= 5, "{} points", points.len());
    let t: Vec<u64> = points.iter().map(|x| x["t_ms"].as_u64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "points in time order");
    let (status, body) = p.admin_get("/api/v1/services");
    assert_eq!(status, 200);
    for s in SERVICES {
        assert!(
            body.contains(&format!("\"service\":\"{s}\"")),
            "{s}: {body}"
        );
    }
    assert!(p.stop().success());
}

/// Headless Chromium on `url` with `args`; its stdout and stderr.
fn chromium_run(url: &str, args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = common::chromium(profile.path())
        .args(["--enable-logging=stderr", "--v=0"])
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium (./test.sh installs Debian's chromium)");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let status = wait_exit(&mut child, Duration::from_secs(90));
    assert!(status.success(), "chromium: {status}");
    (out.join().unwrap(), err.join().unwrap())
}

#[test]
fn the_dashboard_renders_the_demo_in_headless_chromium() {
    let p = start_demo();
    // the replay is over once checkout's clock is the wall clock's
    common::poll(60, "the demo's replay to end", |last| {
        let (_, body) = p.admin_get("/api/v1/services/checkout?environment=production");
        let d: serde_json::Value = serde_json::from_str(&body).ok()?;
        let clock = d["clock_unix_nano"].as_u64()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        *last = format!(
            "checkout's clock {} s behind",
            now.saturating_sub(clock) / 1_000_000_000
        );
        (now.saturating_sub(clock) < 120_000_000_000).then_some(())
    });
    let (status, page) = p.admin_get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>momentum</title>"));
    let url = format!("http://{}/", p.admin);
    // the page's own error capture and Chromium's console both stay quiet
    let (dom, log) = chromium_run(
        &url,
        &["--virtual-time-budget=15000".into(), "--dump-dom".into()],
    );
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never rendered:\n{dom}"
    );
    assert!(
        dom.contains("<pre id=\"errors\"></pre>"),
        "errors on the page:\n{dom}"
    );
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("rror")))
        .collect();
    assert!(console_errors.is_empty(), "{console_errors:#?}");
    for view in ["id=\"executive\"", "id=\"oncall\"", "id=\"debug\""] {
        assert!(dom.contains(view), "{view}");
    }
    // every service in the executive table, charts drawn, the rollback listed
    let table =
        &dom[dom.find("id=\"exec-table\"").unwrap()..dom.find("id=\"index-chart\"").unwrap()];
    for s in SERVICES {
        assert!(
            table.contains(&format!("<td>{s}</td>")),
            "{s} missing from the executive table"
        );
    }
    assert!(dom.matches("<svg").count() >= 4, "charts");
    let deploys = &dom[dom.find("id=\"deploys\"").unwrap()..dom.find("id=\"burn\"").unwrap()];
    assert!(
        deploys.contains("<td>checkout</td>"),
        "checkout among the recent deployments"
    );

    // A screenshot, kept under target/ for a look.
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/demo-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium_run(
        &url,
        &[
            "--virtual-time-budget=15000".into(),
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,2200".into(),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1400, 2200));
    let channels = info.color_type.samples();
    let colors: std::collections::HashSet<(u8, u8, u8)> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| (p[0], p[1], p[2]))
        .collect();
    assert!(
        colors.len() >= 64,
        "only {} colors: an empty page?",
        colors.len()
    );
    assert!(p.stop().success());
}
