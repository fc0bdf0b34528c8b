//! The command line: `validate` reports every problem with its key path and exits 2,
//! including everything `run` would refuse at start-up (files, exporter clients,
//! directories); `--help` works on every command.

mod common;

use std::process::Command;

fn momentum(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_momentum"))
        .args(args)
        .output()
        .expect("run momentum")
}

#[test]
fn validate_reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "sli:\n  resoluton: 10s\ndelivery:\n  lookback: 3x\nslos:\n  - service: \"*\"\n    objectives:\n      availability: 100.5\n",
    )
    .unwrap();
    let out = momentum(&["validate", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sli.resoluton: unknown key"), "{err}");
    assert!(err.contains("delivery.lookback: invalid duration"), "{err}");
    assert!(
        err.contains("slos[0].objectives.availability: must be in (0,100)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 3, "exactly the three problems: {err}");

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/momentum.yaml"))
            .unwrap(),
    )
    .unwrap();
    let out = momentum(&["validate", "--config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "config ok");

    let out = momentum(&[
        "validate",
        "--config",
        dir.path().join("missing.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
}

/// Configs the parser accepts but `run` refuses: `validate` must refuse each too, naming
/// the same file or key, and report all of them at once.
#[test]
fn validate_refuses_every_config_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a dir").unwrap();
    let b = blocker.display().to_string();
    let ports = "    grpc: { endpoint: 127.0.0.1:0 }\n    http: { endpoint: 127.0.0.1:0 }\n";
    let with_admin = |receivers: &str, admin: &str, rest: &str| {
        format!(
            "receivers:\n  otlp:\n{ports}{receivers}admin:\n  endpoint: 127.0.0.1:0\n{admin}\
             archive: {{ dir: {d}/archive }}\n{rest}"
        )
    };
    let base = |receivers: &str, rest: &str| with_admin(receivers, "", rest);
    let hop =
        format!("  otlp:\n    endpoint: http://127.0.0.1:1\n    queue: {{ dir: {d}/queue }}\n");
    let cases: Vec<(&str, String, String)> = vec![
        (
            "server certificate",
            base(
                &format!("    tls: {{ cert_file: {d}/none.crt, key_file: {d}/none.key }}\n"),
                "",
            ),
            format!("{d}/none.crt"),
        ),
        (
            "receiver tokens",
            base(&format!("    auth: {{ bearer_tokens_file: {d}/no-tokens }}\n"), ""),
            format!("{d}/no-tokens"),
        ),
        (
            "admin tokens",
            with_admin(
                "",
                &format!("  auth: {{ bearer_tokens_file: {d}/no-admin-tokens }}\n"),
                "",
            ),
            format!("{d}/no-admin-tokens"),
        ),
        (
            "otlp exporter CA",
            base(
                "",
                &format!(
                    "exporters:\n  otlp:\n    endpoint: https://127.0.0.1:1\n    queue: {{ dir: {d}/queue }}\n    tls: {{ ca_file: {d}/no-ca.crt }}\n"
                ),
            ),
            format!("{d}/no-ca.crt"),
        ),
        (
            "remote write CA",
            base(
                "",
                &format!(
                    "exporters:\n  remote_write:\n    endpoint: https://127.0.0.1:1/api/v1/write\n    tls: {{ ca_file: {d}/no-rw-ca.crt }}\n"
                ),
            ),
            format!("{d}/no-rw-ca.crt"),
        ),
        (
            "own telemetry CA",
            base(
                "",
                &format!(
                    "telemetry:\n  otlp:\n    endpoint: https://127.0.0.1:1\n    tls: {{ ca_file: {d}/no-tel-ca.crt }}\n"
                ),
            ),
            format!("{d}/no-tel-ca.crt"),
        ),
        (
            "archive dir under a file",
            base("", "").replace(&format!("{d}/archive"), &format!("{b}/archive")),
            format!("{b}/archive"),
        ),
        (
            "forward queue under a file",
            base("", &format!("exporters:\n{hop}")).replace(&format!("{d}/queue"), &format!("{b}/queue")),
            format!("{b}/queue"),
        ),
    ];
    for (what, yaml, names) in &cases {
        let cfg = dir.path().join("c.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let c = cfg.to_str().unwrap();
        let run = momentum(&["run", "--config", c]);
        let run_err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            run.status.code(),
            Some(1),
            "{what}: run refuses\n{yaml}\n{run_err}"
        );
        assert!(
            run_err.contains(names.as_str()),
            "{what}: run names {names}: {run_err}"
        );
        let v = momentum(&["validate", "--config", c]);
        let v_err = String::from_utf8_lossy(&v.stderr);
        assert_eq!(
            v.status.code(),
            Some(2),
            "{what}: validate refuses too\n{yaml}\n{v_err}"
        );
        assert!(
            v_err.contains(names.as_str()),
            "{what}: validate names {names}: {v_err}"
        );
    }
    // validate creates nothing: a good config's archive and queue dirs stay absent
    let fresh = format!("{d}/fresh");
    let good = base("", &format!("exporters:\n{hop}"))
        .replace(&format!("{d}/archive"), &format!("{fresh}/archive"))
        .replace(&format!("{d}/queue"), &format!("{fresh}/queue"));
    let cfg = dir.path().join("good.yaml");
    std::fs::write(&cfg, &good).unwrap();
    let v = momentum(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        !std::path::Path::new(&fresh).exists(),
        "validate created {fresh}"
    );
    // All of them in one config: every problem at once.
    let all = base(
        &format!(
            "    tls: {{ cert_file: {d}/none.crt, key_file: {d}/none.key }}\n    auth: {{ bearer_tokens_file: {d}/no-tokens }}\n"
        ),
        &format!(
            "exporters:\n  remote_write:\n    endpoint: https://127.0.0.1:1/api/v1/write\n    tls: {{ ca_file: {d}/no-rw-ca.crt }}\n  otlp:\n    endpoint: https://127.0.0.1:1\n    queue: {{ dir: {b}/queue }}\n    tls: {{ ca_file: {d}/no-ca.crt }}\ntelemetry:\n  otlp:\n    endpoint: https://127.0.0.1:1\n    tls: {{ ca_file: {d}/no-tel-ca.crt }}\n"
        ),
    )
    .replace(&format!("{d}/archive"), &format!("{b}/archive"));
    let cfg = dir.path().join("all.yaml");
    std::fs::write(&cfg, &all).unwrap();
    let v = momentum(&["validate", "--config", cfg.to_str().unwrap()]);
    let v_err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(2));
    for names in [
        format!("{d}/none.crt"),
        format!("{d}/no-tokens"),
        format!("{d}/no-rw-ca.crt"),
        format!("{d}/no-ca.crt"),
        format!("{b}/queue"),
        format!("{d}/no-tel-ca.crt"),
        format!("{b}/archive"),
    ] {
        assert!(
            v_err.contains(&names),
            "all at once, {names} among them: {v_err}"
        );
    }
    assert_eq!(v_err.lines().count(), 7, "each problem once: {v_err}");
}

#[test]
fn help_and_bad_usage() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["report", "--help"],
    ] {
        let out = momentum(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    assert_eq!(momentum(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        momentum(&["validate"]).status.code(),
        Some(2),
        "validate needs --config"
    );
}

#[test]
fn a_port_in_use_is_a_runtime_failure_naming_the_endpoint() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, format!("receivers:\n  otlp:\n    grpc: {{ endpoint: {addr} }}\n    http: {{ endpoint: 127.0.0.1:0 }}\nadmin: {{ endpoint: 127.0.0.1:0 }}\n")).unwrap();
    let out = momentum(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}

#[test]
fn an_unusable_archive_dir_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a dir").unwrap();
    let base = "receivers:\n  otlp:\n    grpc: { endpoint: 127.0.0.1:0 }\n    http: { endpoint: 127.0.0.1:0 }\nadmin: { endpoint: 127.0.0.1:0 }\n";
    let cfg = dir.path().join("c.yaml");
    let archive = blocker.join("archive");
    std::fs::write(
        &cfg,
        format!("{base}archive: {{ dir: {} }}\n", archive.display()),
    )
    .unwrap();
    let out = momentum(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&archive.display().to_string()), "{err}");
}

/// `momentum loadgen` against another momentum: the spans it says were sent are exactly
/// the spans that instance accepted, over gRPC and over OTLP/HTTP, at a fixed rate and as
/// fast as possible.
#[test]
fn loadgen_counts_exactly_what_the_target_accepted() {
    let p = common::Proc::start(&common::config_yaml(""));
    let mut expected = [0u64; 2];
    for (protocol, addr, rate, i) in [("grpc", &p.grpc, "20000", 0), ("http", &p.http, "0", 1)] {
        let out = momentum(&[
            "loadgen",
            "--endpoint",
            &format!("http://{addr}"),
            "--protocol",
            protocol,
            "--rate",
            rate,
            "--duration",
            "2s",
            "--services",
            "5",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent: u64 = stdout
            .split_whitespace()
            .skip_while(|w| *w != "sent")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no sent count in {stdout:?}"));
        assert!(sent > 0, "{stdout}");
        assert!(stdout.contains("failed 0 spans"), "{stdout}");
        expected[i] = sent;
    }
    let m = p.wait_metrics(30, |m| {
        let got = |t| {
            common::metric(
                m,
                "momentum_receiver_accepted_spans_total",
                &[("transport", t)],
            )
        };
        got("grpc") == Some(expected[0] as f64) && got("http") == Some(expected[1] as f64)
    });
    // the fleet: the five services are there
    for s in ["checkout", "payments", "catalog", "search", "inventory"] {
        assert!(
            m.contains(&format!(
                "momentum_sli_requests_total{{service_name=\"{s}\""
            )),
            "{s}"
        );
    }
    assert!(p.stop().success());
}
