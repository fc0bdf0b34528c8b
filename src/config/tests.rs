//! Whole-config tests: the reference file, a full example of every section, error collection and paths,
//! every semantic rule, SLO precedence.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

/// `path: message` of every error, for exact comparisons.
fn errors_of(yaml: &str) -> Vec<String> {
    match Config::from_yaml_str(yaml) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn parse_ok(yaml: &str) -> Config {
    match Config::from_yaml_str(yaml) {
        Ok(c) => c,
        Err(errors) => panic!("expected a valid config, got {errors:#?}\n---\n{yaml}"),
    }
}

/// Asserts `yaml` yields exactly one error, at `path`, whose message contains `needle`.
fn assert_one_error(yaml: &str, path: &str, needle: &str) {
    let errors = match Config::from_yaml_str(yaml) {
        Ok(_) => panic!("expected an error at {path}, config was accepted:\n{yaml}"),
        Err(errors) => errors,
    };
    assert_eq!(
        errors.len(),
        1,
        "expected one error at {path}, got {errors:#?}\n{yaml}"
    );
    assert_eq!(errors[0].path, path, "{errors:#?}");
    assert!(
        errors[0].message.contains(needle),
        "message {:?} lacks {needle:?}",
        errors[0].message
    );
}

#[test]
fn reference_file_parses_and_equals_default() {
    let parsed = parse_ok(REFERENCE_YAML);
    assert_eq!(parsed, Config::default());
    assert_eq!(Config::embedded_default(), Config::default());
}

#[test]
fn default_listens_on_localhost_and_archives_under_data() {
    let c = Config::default();
    assert_eq!(c.receivers.otlp.grpc.endpoint.to_string(), "127.0.0.1:4317");
    assert_eq!(c.receivers.otlp.http.endpoint.to_string(), "127.0.0.1:4318");
    assert_eq!(c.admin.endpoint.to_string(), "127.0.0.1:9464");
    assert_eq!(c.archive.dir, PathBuf::from("./data/archive"));
    assert_eq!(c.exporters.remote_write, None);
    assert_eq!(c.exporters.otlp, None);
    assert_eq!(c.telemetry, None);
    assert_eq!(c.receivers.otlp.tls, None);
    assert_eq!(c.receivers.otlp.auth, None);
    assert_eq!(c.admin.tls, None);
    assert_eq!(c.admin.auth, None);
    assert!(c.validate().is_ok());
}

#[test]
fn default_values_match_spec() {
    let c = Config::default();
    assert_eq!(c.receivers.otlp.max_request_mib, 16);
    assert_eq!(c.pipeline.shards, 0);
    assert_eq!(c.pipeline.queue_capacity_mib, 64);
    assert_eq!(c.pipeline.memory_limit_mib, 0);
    assert_eq!(c.limits.max_services, 2000);
    assert_eq!(c.limits.max_series, 20_000);
    assert_eq!(c.limits.max_versions, 100);
    assert_eq!(c.limits.max_pipelines, 1000);
    assert_eq!(c.limits.max_metric_streams, 20_000);
    assert_eq!(c.limits.series_idle.to_string(), "1h");
    assert_eq!(c.limits.max_value_bytes, 256);
    assert_eq!(c.sli.resolution.to_string(), "10s");
    assert_eq!(c.sli.allowed_lateness.to_string(), "2m");
    assert_eq!(c.sli.max_clock_skew.to_string(), "1m");
    assert_eq!(c.sli.operation, OperationSource::SpanName);
    assert_eq!(c.sli.latency_accuracy, 0.01);
    assert_eq!(c.slos.len(), 1);
    let slo = &c.slos[0];
    assert_eq!((slo.service.as_str(), slo.environment.as_str()), ("*", "*"));
    assert_eq!(slo.window.to_string(), "30d");
    assert_eq!(slo.objectives.availability, Some(99.9));
    let latency = slo.objectives.latency.expect("latency objective");
    assert_eq!(latency.threshold.to_string(), "300ms");
    assert_eq!(latency.target, 99.0);
    assert_eq!(c.delivery.change_failure_window.to_string(), "1h");
    assert_eq!(c.delivery.rollback_quiet_period.to_string(), "10m");
    assert_eq!(c.delivery.lookback.to_string(), "30d");
    assert!(c.momentum.weights.named().iter().all(|(_, w)| *w == 1.0));
    assert!(c.exporters.prometheus.enabled);
    assert_eq!(c.archive.window.to_string(), "1m");
    assert!(!c.archive.spans);
    assert_eq!(c.archive.compression, Compression::Zstd);
    assert_eq!(c.archive.retention.to_string(), "400d");
    assert_eq!(c.shutdown_timeout.to_string(), "30s");
}

/// Every section and key, as the product contract writes them, with its `...` placeholders filled in.
const FULL_EXAMPLE: &str = r#"
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:4317 }
    http: { endpoint: 127.0.0.1:4318 }
    max_request_mib: 16     # wire and decompressed size, both transports
    max_inflight_mib: 256
    max_connections: 1000
    tls:  { cert_file: /etc/momentum/server.crt, key_file: /etc/momentum/server.key, client_ca_file: /etc/momentum/ca.crt }
    auth: { bearer_tokens_file: /etc/momentum/tokens }
admin: { endpoint: 127.0.0.1:9464, tls: { cert_file: /etc/momentum/admin.crt, key_file: /etc/momentum/admin.key }, auth: { bearer_tokens_file: /etc/momentum/admin-tokens } }
pipeline:
  shards: 0
  queue_capacity_mib: 64
  memory_limit_mib: 0
limits:
  max_services: 2000
  max_series: 20000
  max_operations_per_service: 500
  max_versions: 100
  max_pipelines: 1000
  max_metric_streams: 20000
  series_idle: 1h
  max_value_bytes: 256
sli:
  resolution: 10s
  allowed_lateness: 2m
  max_clock_skew: 1m
  operation: span_name
  latency_accuracy: 0.01
slos:
  - service: "*"
    environment: "*"
    window: 30d
    objectives:
      availability: 99.9
      latency: { threshold: 300ms, target: 99.0 }
delivery:
  change_failure_window: 1h
  rollback_quiet_period: 10m
  lookback: 30d
momentum:
  weights: { throughput: 1, lead_time: 1, stability: 1, recovery: 1, reliability: 1 }
exporters:
  prometheus: { enabled: true }
  remote_write: { endpoint: http://127.0.0.1:9090/api/v1/write, interval: 15s }
  otlp: { endpoint: http://127.0.0.1:14317, protocol: grpc, interval: 15s, forward: [traces, metrics, logs], tls: { ca_file: /etc/momentum/ca.crt }, headers: {}, queue: { max_mib: 1024, dir: ./data/queue } }
archive:
  dir: ./data/archive
  window: 1m
  spans: false
  compression: zstd
  retention: 400d
telemetry:
  otlp: { endpoint: http://127.0.0.1:24317, interval: 30s }
shutdown_timeout: 30s
"#;

#[test]
fn spec_example_parses() {
    let c = parse_ok(FULL_EXAMPLE);
    let tls = c.receivers.otlp.tls.as_ref().expect("receiver tls");
    assert_eq!(tls.cert_file, PathBuf::from("/etc/momentum/server.crt"));
    assert_eq!(
        tls.client_ca_file,
        Some(PathBuf::from("/etc/momentum/ca.crt"))
    );
    assert!(c
        .admin
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_none()));
    assert!(c.receivers.otlp.auth.is_some() && c.admin.auth.is_some());
    let rw = c.exporters.remote_write.as_ref().expect("remote_write");
    assert_eq!(rw.endpoint, "http://127.0.0.1:9090/api/v1/write");
    assert_eq!(rw.interval, Duration::from_secs(15));
    let otlp = c.exporters.otlp.as_ref().expect("otlp exporter");
    assert_eq!(otlp.protocol, OtlpProtocol::Grpc);
    assert_eq!(
        otlp.forward,
        [Signal::Traces, Signal::Metrics, Signal::Logs]
    );
    assert_eq!(otlp.queue, QueueConfig::default());
    let telemetry = c.telemetry.as_ref().expect("telemetry");
    assert_eq!(telemetry.otlp.endpoint, "http://127.0.0.1:24317");
    // With the optional parts stripped, the example is the default config.
    let stripped = Config {
        receivers: ReceiversConfig {
            otlp: OtlpReceiverConfig {
                tls: None,
                auth: None,
                ..c.receivers.otlp.clone()
            },
        },
        admin: AdminConfig {
            tls: None,
            auth: None,
            ..c.admin.clone()
        },
        exporters: ExportersConfig {
            remote_write: None,
            otlp: None,
            ..c.exporters.clone()
        },
        telemetry: None,
        ..c.clone()
    };
    assert_eq!(stripped, Config::default());
}

#[test]
fn unknown_key_bad_duration_and_bad_objective_are_reported_together() {
    let yaml = "
sli:
  resoluton: 10s
delivery:
  lookback: 3x
slos:
  - service: checkout
    objectives: { availability: 99.9 }
  - service: payments
    objectives:
      availability: 100
";
    let mut errors = errors_of(yaml);
    errors.sort();
    assert_eq!(
        errors,
        [
            r#"delivery.lookback: invalid duration "3x" (use ms, s, m, h or d)"#,
            "sli.resoluton: unknown key",
            "slos[1].objectives.availability: must be in (0,100)",
        ]
    );
}

#[test]
fn empty_and_comment_only_files_are_the_default() {
    for text in ["", "\n", "# nothing here\n", "---\n"] {
        assert_eq!(parse_ok(text), Config::default(), "{text:?}");
    }
}

#[test]
fn missing_sections_take_their_defaults() {
    let c = parse_ok("pipeline: { shards: 4 }\n");
    assert_eq!(c.pipeline.shards, 4);
    assert_eq!(c.pipeline.queue_capacity_mib, 64);
    assert_eq!(
        Config {
            pipeline: PipelineConfig::default(),
            ..c
        },
        Config::default()
    );
    // A section written with no body (YAML null) is the same as one left out.
    let c = parse_ok("receivers:\n  otlp:\nsli:\nexporters:\n  prometheus:\n");
    assert_eq!(c, Config::default());
}

#[test]
fn explicit_empty_slos_turn_slos_off() {
    assert!(parse_ok("slos: []").slos.is_empty());
    assert_eq!(parse_ok("sli: {}").slos, Config::default().slos);
}

#[test]
fn optional_sections_fill_their_own_defaults() {
    let c = parse_ok(
        "
exporters:
  remote_write: { endpoint: https://prom.example:9090/api/v1/write }
  otlp: { endpoint: http://collector:4317, headers: { x-tenant: acme } }
telemetry:
  otlp: { endpoint: http://127.0.0.1:24317 }
",
    );
    let rw = c.exporters.remote_write.expect("remote_write");
    assert_eq!(rw.interval, EXPORT_DEFAULT_INTERVAL);
    assert!(rw.headers.is_empty());
    let otlp = c.exporters.otlp.expect("otlp");
    assert_eq!(otlp.protocol, OtlpProtocol::Grpc);
    assert_eq!(otlp.interval, EXPORT_DEFAULT_INTERVAL);
    assert_eq!(
        otlp.forward,
        [Signal::Traces, Signal::Metrics, Signal::Logs]
    );
    assert_eq!(otlp.tls, None);
    assert_eq!(
        otlp.headers.get("x-tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(otlp.queue, QueueConfig::default());
    assert_eq!(
        c.telemetry.expect("telemetry").otlp.interval,
        TELEMETRY_DEFAULT_INTERVAL
    );
    assert!(
        parse_ok("exporters: { otlp: { endpoint: http://c:4317, forward: [] } }")
            .exporters
            .otlp
            .is_some_and(|o| o.forward.is_empty())
    );
    // `dir: null` keeps the forward queue in memory; a path moves it.
    let queue_dir = |yaml: &str| parse_ok(yaml).exporters.otlp.and_then(|o| o.queue.dir);
    assert_eq!(
        queue_dir("exporters: { otlp: { endpoint: http://c:4317, queue: { dir: null } } }"),
        None
    );
    assert_eq!(
        queue_dir("exporters: { otlp: { endpoint: http://c:4317, queue: { dir: /q } } }"),
        Some(std::path::PathBuf::from("/q"))
    );
    assert_eq!(
        errors_of("exporters: { otlp: { endpoint: http://c:4317, queue: { dir: 3 } } }"),
        ["exporters.otlp.queue.dir: expected a path, found 3"]
    );
}

#[test]
fn required_keys_are_reported() {
    assert_one_error(
        "exporters: { remote_write: { interval: 15s } }",
        "exporters.remote_write.endpoint",
        "required",
    );
    assert_one_error(
        "exporters: { otlp: }",
        "exporters.otlp.endpoint",
        "required",
    );
    assert_one_error("telemetry:", "telemetry.otlp.endpoint", "required");
    assert_one_error(
        "receivers: { otlp: { auth: {} } }",
        "receivers.otlp.auth.bearer_tokens_file",
        "required",
    );
    assert_one_error(
        "slos: [ { objectives: { availability: 99 } } ]",
        "slos[0].service",
        "required",
    );
    assert_one_error(
        "slos: [ { service: a, objectives: { latency: { target: 99 } } } ]",
        "slos[0].objectives.latency.threshold",
        "required",
    );
    assert_one_error(
        "slos: [ { service: a, objectives: { latency: { threshold: 1s } } } ]",
        "slos[0].objectives.latency.target",
        "required",
    );
}

#[test]
fn server_tls_needs_cert_and_key() {
    assert_one_error(
        "receivers: { otlp: { tls: { cert_file: a.crt } } }",
        "receivers.otlp.tls.key_file",
        "required",
    );
    assert_one_error(
        "admin: { tls: { key_file: a.key } }",
        "admin.tls.cert_file",
        "required",
    );
    assert_eq!(
        errors_of("admin: { tls: { client_ca_file: ca.crt } }"),
        [
            "admin.tls.cert_file: required: a TLS server needs cert_file and key_file",
            "admin.tls.key_file: required: a TLS server needs cert_file and key_file",
        ]
    );
}

#[test]
fn client_tls_cert_and_key_both_or_neither() {
    assert_one_error(
        "exporters: { otlp: { endpoint: https://c:4317, tls: { cert_file: c.crt } } }",
        "exporters.otlp.tls",
        "cert_file and key_file must be set together",
    );
    let c = parse_ok("exporters: { otlp: { endpoint: https://c:4317, tls: { ca_file: ca.crt } } }");
    let tls = c.exporters.otlp.and_then(|o| o.tls).expect("tls");
    assert_eq!(tls.ca_file, Some(PathBuf::from("ca.crt")));
    parse_ok(
        "exporters: { otlp: { endpoint: https://c:4317, tls: { cert_file: c, key_file: k } } }",
    );
}

#[test]
fn unknown_keys_are_caught_in_every_section() {
    let sections = [
        ("", "receivers: {}"),
        ("receivers", "receivers: { otlp: {} }"),
        ("receivers.otlp", "receivers: { otlp: {} }"),
        ("receivers.otlp.grpc", "receivers: { otlp: { grpc: {} } }"),
        ("receivers.otlp.http", "receivers: { otlp: { http: {} } }"),
        (
            "receivers.otlp.tls",
            "receivers: { otlp: { tls: { cert_file: c, key_file: k } } }",
        ),
        (
            "receivers.otlp.auth",
            "receivers: { otlp: { auth: { bearer_tokens_file: t } } }",
        ),
        ("admin", "admin: {}"),
        ("admin.tls", "admin: { tls: { cert_file: c, key_file: k } }"),
        ("admin.auth", "admin: { auth: { bearer_tokens_file: t } }"),
        ("pipeline", "pipeline: {}"),
        ("limits", "limits: {}"),
        ("sli", "sli: {}"),
        (
            "slos[0]",
            "slos: [ { service: a, objectives: { availability: 99 } } ]",
        ),
        (
            "slos[0].objectives",
            "slos: [ { service: a, objectives: { availability: 99 } } ]",
        ),
        (
            "slos[0].objectives.latency",
            "slos: [ { service: a, objectives: { latency: { threshold: 1s, target: 99 } } } ]",
        ),
        ("delivery", "delivery: {}"),
        ("momentum", "momentum: {}"),
        ("momentum.weights", "momentum: { weights: {} }"),
        ("exporters", "exporters: {}"),
        ("exporters.prometheus", "exporters: { prometheus: {} }"),
        (
            "exporters.remote_write",
            "exporters: { remote_write: { endpoint: http://a } }",
        ),
        (
            "exporters.otlp",
            "exporters: { otlp: { endpoint: http://a } }",
        ),
        (
            "exporters.otlp.tls",
            "exporters: { otlp: { endpoint: http://a, tls: {} } }",
        ),
        (
            "exporters.otlp.queue",
            "exporters: { otlp: { endpoint: http://a, queue: {} } }",
        ),
        ("archive", "archive: {}"),
        ("telemetry", "telemetry: { otlp: { endpoint: http://a } }"),
        (
            "telemetry.otlp",
            "telemetry: { otlp: { endpoint: http://a } }",
        ),
    ];
    for (section, base) in sections {
        let mut root: serde_yaml::Value = serde_yaml::from_str(base).expect("test yaml");
        let mut node = &mut root;
        if !section.is_empty() {
            for part in section.split('.') {
                node = match part.split_once('[') {
                    Some((key, _)) => &mut node[key][0],
                    None => &mut node[part],
                };
            }
        }
        let serde_yaml::Value::Mapping(map) = node else {
            panic!("{section} is not a mapping in {base}");
        };
        map.insert("bogus_key".into(), 1.into());
        let yaml = serde_yaml::to_string(&root).expect("serialize");
        let path = if section.is_empty() {
            "bogus_key".to_string()
        } else {
            format!("{section}.bogus_key")
        };
        assert_eq!(errors_of(&yaml), [format!("{path}: unknown key")], "{yaml}");
    }
}

#[test]
fn type_errors_name_the_key_and_what_was_found() {
    let cases = [
        (
            "pipeline: { shards: -1 }",
            "pipeline.shards: expected a non-negative integer, found -1",
        ),
        (
            "pipeline: { shards: four }",
            r#"pipeline.shards: expected a non-negative integer, found string "four""#,
        ),
        (
            "limits: { series_idle: 60 }",
            r#"limits.series_idle: invalid duration "60" (use ms, s, m, h or d)"#,
        ),
        (
            "sli: { max_clock_skew: -1m }",
            r#"sli.max_clock_skew: invalid duration "-1m" (use ms, s, m, h or d)"#,
        ),
        (
            "sli: { latency_accuracy: low }",
            r#"sli.latency_accuracy: expected a number, found string "low""#,
        ),
        (
            "sli: { operation: route }",
            r#"sli.operation: must be one of span_name, http.route; found string "route""#,
        ),
        (
            "archive: { spans: yes }",
            r#"archive.spans: expected true or false, found string "yes""#,
        ),
        (
            "archive: { compression: gzip }",
            r#"archive.compression: must be one of zstd, snappy, none; found string "gzip""#,
        ),
        ("archive: { dir: '' }", "archive.dir: must not be empty"),
        ("sli: 10s", r#"sli: expected a mapping, found string "10s""#),
        (
            "slos: { service: a }",
            "slos: expected a sequence, found a mapping",
        ),
        (
            "admin: { endpoint: 'localhost:9464' }",
            r#"admin.endpoint: invalid endpoint "localhost:9464" (expected ip:port, e.g. 127.0.0.1:4317)"#,
        ),
        (
            "receivers: { otlp: { grpc: { endpoint: 127.0.0.1 } } }",
            r#"receivers.otlp.grpc.endpoint: invalid endpoint "127.0.0.1" (expected ip:port, e.g. 127.0.0.1:4317)"#,
        ),
        (
            "exporters: { remote_write: { endpoint: 'ftp://x/y' } }",
            r#"exporters.remote_write.endpoint: invalid URL "ftp://x/y" (expected http://host[:port][/path] or https://...)"#,
        ),
        (
            "exporters: { otlp: { endpoint: 'http://:4317' } }",
            r#"exporters.otlp.endpoint: invalid URL "http://:4317" (expected http://host[:port][/path] or https://...)"#,
        ),
        (
            "exporters: { otlp: { endpoint: 'http://c:99999' } }",
            r#"exporters.otlp.endpoint: invalid URL "http://c:99999" (expected http://host[:port][/path] or https://...)"#,
        ),
        (
            "exporters: { otlp: { endpoint: http://c, protocol: thrift } }",
            r#"exporters.otlp.protocol: must be one of grpc, http; found string "thrift""#,
        ),
        (
            "exporters: { otlp: { endpoint: http://c, forward: [traces, spans] } }",
            r#"exporters.otlp.forward[1]: must be one of traces, metrics, logs; found string "spans""#,
        ),
        (
            "exporters: { otlp: { endpoint: http://c, forward: [logs, logs] } }",
            "exporters.otlp.forward[1]: listed twice",
        ),
        (
            "exporters: { otlp: { endpoint: http://c, headers: { 'bad header': x } } }",
            "exporters.otlp.headers.bad header: invalid HTTP header name",
        ),
        (
            "exporters: { otlp: { endpoint: http://c, headers: { x-a: 1 } } }",
            "exporters.otlp.headers.x-a: expected a string, found 1",
        ),
    ];
    for (yaml, expected) in cases {
        assert_eq!(errors_of(yaml), [expected], "{yaml}");
    }
}

#[test]
fn valid_endpoints_and_urls_are_accepted() {
    let c = parse_ok(
        "
receivers: { otlp: { grpc: { endpoint: '0.0.0.0:0' }, http: { endpoint: '[::1]:0' } } }
exporters:
  remote_write: { endpoint: 'https://user:pw@prom.example.com/api/v1/write?x=1' }
  otlp: { endpoint: 'http://[::1]:4317', protocol: http }
",
    );
    assert_eq!(c.receivers.otlp.grpc.endpoint.port(), 0);
    assert!(c.receivers.otlp.http.endpoint.is_ipv6());
}

#[test]
fn each_semantic_rule_has_a_failing_case() {
    let slo = |body: &str| format!("slos: [ {{ service: a, {body} }} ]");
    let cases: Vec<(String, &str, &str)> = vec![
        ("receivers: { otlp: { max_request_mib: 0 } }".into(), "receivers.otlp.max_request_mib", "at least 1"),
        ("receivers: { otlp: { max_inflight_mib: 15 } }".into(), "receivers.otlp.max_inflight_mib", "at least 16"),
        ("receivers: { otlp: { max_connections: 0 } }".into(), "receivers.otlp.max_connections", "at least 1"),
        ("pipeline: { queue_capacity_mib: 0 }".into(), "pipeline.queue_capacity_mib", "at least 1"),
        ("pipeline: { memory_limit_mib: 31 }".into(), "pipeline.memory_limit_mib", "at least 32"),
        ("limits: { max_services: 0 }".into(), "limits.max_services", "at least 1"),
        ("limits: { max_series: 0 }".into(), "limits.max_series", "at least 1"),
        ("limits: { max_operations_per_service: 0 }".into(), "limits.max_operations_per_service", "at least 1"),
        ("limits: { max_versions: 0 }".into(), "limits.max_versions", "at least 1"),
        ("limits: { max_pipelines: 0 }".into(), "limits.max_pipelines", "at least 1"),
        ("limits: { max_metric_streams: 0 }".into(), "limits.max_metric_streams", "at least 1"),
        ("limits: { series_idle: 0s }".into(), "limits.series_idle", "greater than 0"),
        ("limits: { max_value_bytes: 15 }".into(), "limits.max_value_bytes", "at least 16"),
        ("sli: { resolution: 0s }".into(), "sli.resolution", "greater than 0"),
        ("sli: { resolution: 7s }".into(), "sli.resolution", "must divide 1m evenly or be 5m"),
        ("sli: { resolution: 90s }".into(), "sli.resolution", "got 90s"),
        ("sli: { resolution: 2m }\narchive: { window: 10m }".into(), "sli.resolution", "got 2m"),
        ("sli: { allowed_lateness: 1h }".into(), "sli.allowed_lateness", "less than 1h"),
        ("sli: { latency_accuracy: 0 }".into(), "sli.latency_accuracy", "(0, 0.1]"),
        ("sli: { latency_accuracy: 0.11 }".into(), "sli.latency_accuracy", "(0, 0.1]"),
        ("sli: { latency_accuracy: .nan }".into(), "sli.latency_accuracy", "(0, 0.1]"),
        (slo("window: 59m, objectives: { availability: 99 }"), "slos[0].window", "at least 1h"),
        (slo("objectives: {}"), "slos[0].objectives", "at least one objective"),
        (slo("objectives: { availability: 0 }"), "slos[0].objectives.availability", "must be in (0,100)"),
        (slo("objectives: { availability: 100 }"), "slos[0].objectives.availability", "must be in (0,100)"),
        (
            slo("objectives: { latency: { threshold: 0ms, target: 99 } }"),
            "slos[0].objectives.latency.threshold",
            "greater than 0",
        ),
        (
            slo("objectives: { latency: { threshold: 1s, target: 100.0 } }"),
            "slos[0].objectives.latency.target",
            "must be in (0,100)",
        ),
        (
            slo("objectives: { latency: { threshold: 1s, target: -1 } }"),
            "slos[0].objectives.latency.target",
            "must be in (0,100)",
        ),
        ("slos: [ { service: '', objectives: { availability: 99 } } ]".into(), "slos[0].service", "must not be empty"),
        ("momentum: { weights: { stability: -1 } }".into(), "momentum.weights.stability", "≥ 0"),
        (
            "momentum: { weights: { throughput: 0, lead_time: 0, stability: 0, recovery: 0, reliability: 0 } }".into(),
            "momentum.weights",
            "at least one weight",
        ),
        ("delivery: { change_failure_window: 0s }".into(), "delivery.change_failure_window", "greater than 0"),
        ("delivery: { rollback_quiet_period: 0m }".into(), "delivery.rollback_quiet_period", "greater than 0"),
        ("delivery: { lookback: 0d }".into(), "delivery.lookback", "greater than 0"),
        ("archive: { window: 90s }".into(), "archive.window", "whole number of minutes"),
        ("archive: { window: 0s }".into(), "archive.window", "whole number of minutes"),
        ("sli: { resolution: 5m }\narchive: { window: 7m }".into(), "archive.window", "multiple of sli.resolution (5m)"),
        ("archive: { retention: 23h }".into(), "archive.retention", "at least 1d"),
        (
            "exporters: { remote_write: { endpoint: http://a, interval: 999ms } }".into(),
            "exporters.remote_write.interval",
            "at least 1s",
        ),
        ("exporters: { otlp: { endpoint: http://a, interval: 0s } }".into(), "exporters.otlp.interval", "at least 1s"),
        (
            "exporters: { otlp: { endpoint: http://a, queue: { max_mib: 0 } } }".into(),
            "exporters.otlp.queue.max_mib",
            "at least 1",
        ),
        ("telemetry: { otlp: { endpoint: http://a, interval: 500ms } }".into(), "telemetry.otlp.interval", "at least 1s"),
        ("shutdown_timeout: 0s".into(), "shutdown_timeout", "greater than 0"),
        (
            "admin: { endpoint: 127.0.0.1:4317 }".into(),
            "admin.endpoint",
            "already used by receivers.otlp.grpc.endpoint",
        ),
    ];
    for (yaml, path, needle) in cases {
        assert_one_error(&yaml, path, needle);
    }
}

#[test]
fn boundary_values_are_accepted() {
    parse_ok(
        "
receivers: { otlp: { max_request_mib: 1, max_inflight_mib: 1, grpc: { endpoint: '127.0.0.1:0' }, http: { endpoint: '127.0.0.1:0' } } }
admin: { endpoint: '127.0.0.1:0' }
pipeline: { queue_capacity_mib: 1 }
limits: { max_services: 1, max_series: 1, max_operations_per_service: 1, max_versions: 1, max_pipelines: 1, max_metric_streams: 1, max_value_bytes: 16, series_idle: 1ms }
sli: { resolution: 1m, allowed_lateness: 0s, max_clock_skew: 0s, latency_accuracy: 0.1 }
slos: [ { service: a, window: 1h, objectives: { availability: 0.001, latency: { threshold: 1ms, target: 99.999 } } } ]
momentum: { weights: { throughput: 0, lead_time: 0, stability: 0, recovery: 0, reliability: 0.5 } }
archive: { window: 2m, retention: 1d }
exporters: { otlp: { endpoint: http://a, interval: 1s, queue: { max_mib: 1 } } }
",
    );
    parse_ok("sli: { resolution: 5m }\narchive: { window: 10m }");
    parse_ok("sli: { resolution: 1500ms }");
}

#[test]
fn a_value_that_fails_to_parse_causes_no_second_error() {
    // archive.window is checked against sli.resolution; a bad resolution must not also
    // produce a complaint about the window built from a stand-in.
    assert_eq!(
        errors_of("sli: { resolution: 2x }\narchive: { window: 3m }"),
        [r#"sli.resolution: invalid duration "2x" (use ms, s, m, h or d)"#]
    );
    // A broken entry keeps its index, and is not reported as conflicting.
    assert_eq!(
        errors_of(
            "slos:\n  - 5\n  - { objectives: { availability: 99 } }\n  - { service: '*', objectives: { availability: 99 } }\n"
        ),
        [
            "slos[0]: expected a mapping, found 5",
            "slos[1].service: required",
        ]
    );
}

#[test]
fn every_problem_in_one_run() {
    let yaml = "
receivers: { otlp: { max_request_mib: 0, grpc: { endpoint: nowhere } } }
limits: { max_value_bytes: 4, extra: 1 }
sli: { resolution: 7s, latency_accuracy: 2 }
slos:
  - { service: a, window: 10m, objectives: {} }
archive: { compression: lz4, retention: 1h }
shutdown_timeout: forever
";
    let errors = errors_of(yaml);
    let paths: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(""))
        .collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "archive.compression",
            "archive.retention",
            "limits.extra",
            "limits.max_value_bytes",
            "receivers.otlp.grpc.endpoint",
            "receivers.otlp.max_request_mib",
            "shutdown_timeout",
            "sli.latency_accuracy",
            "sli.resolution",
            "slos[0].objectives",
            "slos[0].window",
        ],
        "{errors:#?}"
    );
}

fn slo_entry(service: &str, environment: Option<&str>, availability: f64) -> String {
    let env = environment.map_or(String::new(), |e| format!("environment: {e:?}, "));
    format!("  - {{ service: {service:?}, {env}objectives: {{ availability: {availability} }} }}\n")
}

#[test]
fn slo_for_follows_spec_precedence() {
    let yaml = format!(
        "slos:\n{}{}{}{}",
        slo_entry("*", None, 90.0),
        slo_entry("*", Some("prod"), 91.0),
        slo_entry("checkout", None, 92.0),
        slo_entry("checkout", Some("prod"), 93.0),
    );
    let c = parse_ok(&yaml);
    let target = |s: &str, e: &str| c.slo_for(s, e).and_then(|slo| slo.objectives.availability);
    assert_eq!(target("checkout", "prod"), Some(93.0)); // exact, exact
    assert_eq!(target("checkout", "staging"), Some(92.0)); // exact, *
    assert_eq!(target("search", "prod"), Some(91.0)); // *, exact
    assert_eq!(target("search", "staging"), Some(90.0)); // *, *
    assert_eq!(target("checkout", ""), Some(92.0)); // "" is an environment like any other

    // Order in the file does not matter, only specificity.
    let reversed = format!(
        "slos:\n{}{}{}{}",
        slo_entry("checkout", Some("prod"), 93.0),
        slo_entry("checkout", None, 92.0),
        slo_entry("*", Some("prod"), 91.0),
        slo_entry("*", None, 90.0),
    );
    let c = parse_ok(&reversed);
    let target = |s: &str, e: &str| c.slo_for(s, e).and_then(|slo| slo.objectives.availability);
    assert_eq!(target("checkout", "prod"), Some(93.0));
    assert_eq!(target("checkout", "staging"), Some(92.0));
    assert_eq!(target("search", "prod"), Some(91.0));
    assert_eq!(target("search", "staging"), Some(90.0));

    // Without a catch-all, unmatched pairs have no SLO; "*" and "" are not the same.
    let c = parse_ok(&format!("slos:\n{}", slo_entry("checkout", Some(""), 99.0)));
    assert!(c.slo_for("checkout", "").is_some());
    assert!(c.slo_for("checkout", "prod").is_none());
    assert!(c.slo_for("search", "").is_none());
}

#[test]
fn equal_precedence_entries_for_one_pair_are_an_error() {
    // Environment left out is "*", so these two collide.
    let yaml = format!(
        "slos:\n{}{}{}",
        slo_entry("checkout", None, 99.0),
        slo_entry("search", None, 99.0),
        slo_entry("checkout", Some("*"), 99.5),
    );
    let errors = errors_of(&yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("slos[2]: "), "{}", errors[0]);
    assert!(errors[0].contains("slos[0]"), "{}", errors[0]);

    let yaml = format!(
        "slos:\n{}{}",
        slo_entry("*", Some("prod"), 99.0),
        slo_entry("*", Some("prod"), 99.0)
    );
    assert_one_error(&yaml, "slos[1]", "as slos[0]");

    // Different levels matching one pair are fine: that is what precedence is for.
    parse_ok(&format!(
        "slos:\n{}{}",
        slo_entry("checkout", Some("prod"), 99.0),
        slo_entry("checkout", None, 99.0)
    ));
    // Same service, different exact environments never match one pair.
    parse_ok(&format!(
        "slos:\n{}{}",
        slo_entry("checkout", Some("prod"), 99.0),
        slo_entry("checkout", Some(""), 99.0)
    ));
}

#[test]
fn yaml_syntax_errors_are_reported() {
    let errors = Config::from_yaml_str("sli: [unclosed\n").expect_err("invalid yaml");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.starts_with("invalid YAML: "),
        "{}",
        errors[0]
    );
    assert!(errors[0].path.is_empty());
    let dup = Config::from_yaml_str("sli: {}\nsli: {}\n").expect_err("duplicate key");
    assert!(dup[0].message.contains("duplicate"), "{}", dup[0]);
}

#[test]
fn yaml_merge_keys_are_applied() {
    let c = parse_ok(
        "
exporters:
  remote_write: &common { endpoint: http://a:1, interval: 30s }
  otlp:
    <<: *common
    protocol: http
",
    );
    let otlp = c.exporters.otlp.expect("otlp");
    assert_eq!(otlp.interval, Duration::from_secs(30));
    assert_eq!(otlp.protocol, OtlpProtocol::Http);
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.yaml");
    let errors = Config::load(&missing).expect_err("missing file");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, missing.display().to_string());
    assert!(errors[0].to_string().contains("absent.yaml: cannot read"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "sli: [\n").expect("write");
    let errors = Config::load(&bad).expect_err("bad yaml");
    assert!(errors[0]
        .to_string()
        .starts_with(&format!("{}: invalid YAML", bad.display())));

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "pipeline: { shards: 2 }\nslos: []\n").expect("write");
    let c = Config::load(&good).expect("valid file");
    assert_eq!(c.pipeline.shards, 2);

    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(&invalid, "pipeline: { shardz: 2 }\n").expect("write");
    let errors = Config::load(&invalid).expect_err("unknown key");
    assert_eq!(errors[0].to_string(), "pipeline.shardz: unknown key");
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut c = Config::default();
    assert_eq!(c.validate(), Ok(()));
    c.slos.push(SloConfig::default_catch_all());
    c.exporters.otlp = Some(OtlpExporterConfig {
        endpoint: "http://a:1".into(),
        protocol: OtlpProtocol::Grpc,
        interval: EXPORT_DEFAULT_INTERVAL,
        forward: vec![Signal::Logs, Signal::Logs],
        tls: None,
        headers: BTreeMap::new(),
        queue: QueueConfig::default(),
    });
    let errors: Vec<String> = c
        .validate()
        .expect_err("conflict and duplicate")
        .iter()
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(errors, ["slos[1]", "exporters.otlp.forward[1]"]);
}

#[test]
fn error_display_is_path_colon_message() {
    let e = ConfigError::new("slos[1].objectives.availability", "must be in (0,100)");
    assert_eq!(
        e.to_string(),
        "slos[1].objectives.availability: must be in (0,100)"
    );
    assert_eq!(
        ConfigError::new("", "invalid YAML: x").to_string(),
        "invalid YAML: x"
    );
}
