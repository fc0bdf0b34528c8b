//! The files around the binary a user runs: the Grafana dashboards (their queries name
//! only metrics momentum exports; they are what their generator writes), the Prometheus
//! config and rules (promtool), the Alertmanager config (amtool), the container config
//! (`momentum validate`) and docker-compose.yml (every service buildable or pulled, every
//! mounted file present; `docker compose config` where the plugin exists).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run the suite through ./test.sh"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run the tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// Every `momentum_…` metric name in `expr`.
fn names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("momentum_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn dashboards(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn grafana_dashboards_query_only_exported_metrics_and_match_their_generator() {
    let dir = root().join("config/grafana/dashboards");
    let boards = dashboards(&dir);
    assert_eq!(boards.len(), 3, "executive, on-call, debug");
    // What the demo exports (every family has its TYPE line, samples or not), once its
    // story is replayed.
    let p = common::Proc::start_command("demo", &common::config_yaml(""), &[]);
    let m = p.wait_metrics(60, |m| {
        m.contains("momentum_index{service_name=\"checkout\"")
            && m.contains("momentum_delivery_lead_time_seconds_count{service_name=\"checkout\"")
    });
    let exported: BTreeSet<&str> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut queried = BTreeSet::new();
    for (file, d) in &boards {
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with("momentum-")),
            "{file}"
        );
        let panels = d["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file}");
        let mut exprs: Vec<&str> = panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert_eq!(
            exprs.len(),
            panels
                .iter()
                .map(|p| p["targets"].as_array().map_or(0, Vec::len))
                .sum::<usize>(),
            "{file}: a target without expr"
        );
        exprs.extend(
            d["annotations"]["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["expr"].as_str()),
        );
        for e in exprs {
            for n in names(e) {
                let family = n
                    .strip_suffix("_sum")
                    .or_else(|| n.strip_suffix("_count"))
                    .unwrap_or(&n);
                assert!(
                    exported.contains(family) || exported.contains(n.as_str()),
                    "{file}: {n} is not exported (query {e:?})"
                );
                queried.insert(family.to_string());
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    assert!(p.stop().success());
    // The committed JSON is what the generator writes.
    let tmp = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(tool("MOMENTUM_PYTHON"))
            .arg(root().join("config/grafana/make_dashboards.py"))
            .arg(tmp.path()),
    );
    assert_eq!(
        dashboards(tmp.path()),
        boards,
        "run config/grafana/make_dashboards.py"
    );
}

#[test]
fn prometheus_and_alertmanager_configs_pass_their_checkers() {
    let tmp = tempfile::tempdir().unwrap();
    // The config names the rules by their path in the container: point it at the repo's.
    let rules = root().join("config/momentum-rules.yml");
    let prom = std::fs::read_to_string(root().join("config/prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/momentum-rules.yml",
            &rules.display().to_string(),
        );
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, prom).unwrap();
    let promtool = tool("MOMENTUM_PROMTOOL");
    run_ok(Command::new(&promtool).args(["check", "config"]).arg(&cfg));
    let text = run_ok(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    assert!(text.contains("3 rules found"), "{text}");
    run_ok(
        Command::new(tool("MOMENTUM_AMTOOL"))
            .arg("check-config")
            .arg(root().join("config/alertmanager.yml")),
    );
}

#[test]
fn docker_compose_and_the_container_config_hold_together() {
    let r = root();
    // The container's momentum config is valid.
    let out = Command::new(env!("CARGO_BIN_EXE_momentum"))
        .args(["validate", "--config"])
        .arg(r.join("config/docker.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dockerfile = std::fs::read_to_string(r.join("Dockerfile")).unwrap();
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2,
        "multi-stage"
    );
    assert!(
        dockerfile.contains("\nUSER momentum\n"),
        "runs as a non-root user"
    );
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(r.join("docker-compose.yml")).unwrap())
            .unwrap();
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "momentum",
        "loadgen",
        "prometheus",
        "alertmanager",
        "grafana",
        "otelcol",
        "momentum-a",
        "momentum-b",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert!(
            s.get("image").is_some() || s.get("build").is_some(),
            "{name}: image or build"
        );
        for v in s
            .get("volumes")
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
        {
            let v = v.as_str().unwrap();
            if let Some(host) = v.strip_prefix("./") {
                let host = host.split(':').next().unwrap();
                assert!(
                    r.join(host).exists(),
                    "{name}: {host} is mounted but missing"
                );
            }
        }
    }
    // The load generator's arguments are ones momentum takes.
    let cmd: Vec<String> = services["loadgen"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cmd[0], "loadgen");
    let mut args = cmd.clone();
    args.push("--help".into());
    let out = Command::new(env!("CARGO_BIN_EXE_momentum"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The scale-out collector routes by service to both replicas.
    let col: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(r.join("config/otelcol-loadbalancing.yaml")).unwrap(),
    )
    .unwrap();
    let lb = &col["exporters"]["loadbalancing"];
    assert_eq!(lb["routing_key"].as_str(), Some("service"));
    let hosts = lb["resolver"]["static"]["hostnames"].as_sequence().unwrap();
    assert_eq!(hosts.len(), 2);
    // The real checker, where the compose plugin exists.
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    if plugin.is_ok_and(|o| o.status.success()) {
        run_ok(
            Command::new("docker")
                .args(["compose", "-f"])
                .arg(r.join("docker-compose.yml"))
                .args(["config", "-q"]),
        );
    } else {
        eprintln!("docker compose plugin not found: checked docker-compose.yml's structure only");
    }
}
