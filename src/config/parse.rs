//! YAML → [`Config`], collecting every problem instead of stopping at the first.
//!
//! serde's `deny_unknown_fields` aborts on the first unknown key, so the config is read by
//! walking a `serde_yaml::Value` tree: each mapping is opened as a [`Fields`] set, the reader
//! takes the keys it knows, and whatever is left untaken is reported as an unknown key.
//! A value that does not parse is reported at its path and replaced by its default, so the
//! walk goes on and later problems are still found.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde_yaml::Value;

use super::leaf::{describe, HttpUrl, Leaf};
use super::*;

/// The parse result: the config (unless the text is not YAML at all), every problem found,
/// and the paths that failed to parse (cross-field validation skips those).
pub(super) fn parse(
    text: &str,
    origin: &str,
) -> (Option<Config>, Vec<ConfigError>, HashSet<String>) {
    let mut root: Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(e) => return (None, vec![yaml_error(origin, &e)], HashSet::new()),
    };
    // YAML merge keys (`<<: *defaults`) are a common way to share exporter settings.
    if let Err(e) = root.apply_merge() {
        return (None, vec![yaml_error(origin, &e)], HashSet::new());
    }
    let mut p = Parser::default();
    let config = p.config(&root);
    (Some(config), p.errors, p.failed)
}

/// True when `path`, or a section or sequence holding it, failed to parse.
pub(super) fn is_failed(failed: &HashSet<String>, path: &str) -> bool {
    failed.contains("")
        || failed.contains(path)
        || path
            .char_indices()
            .filter(|(_, c)| matches!(c, '.' | '['))
            .any(|(i, _)| failed.contains(&path[..i]))
}

fn yaml_error(origin: &str, e: &serde_yaml::Error) -> ConfigError {
    ConfigError::new(origin, format!("invalid YAML: {e}"))
}

#[derive(Default)]
struct Parser {
    errors: Vec<ConfigError>,
    failed: HashSet<String>,
}

/// The entries of one YAML mapping, each marked once a reader takes it.
struct Fields<'a> {
    path: String,
    entries: Vec<(String, &'a Value, bool)>,
}

impl<'a> Fields<'a> {
    fn take(&mut self, key: &str) -> Option<&'a Value> {
        let entry = self.entries.iter_mut().find(|(k, _, _)| k == key)?;
        entry.2 = true;
        Some(entry.1)
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Parser {
    fn error(&mut self, path: String, message: impl Into<String>) {
        self.failed.insert(path.clone());
        self.errors.push(ConfigError::new(path, message));
    }

    /// Opens the mapping at `path` (absent or null: empty, so every key takes its default),
    /// runs `read` on it, then reports the keys `read` did not take. `None` when the value
    /// is not a mapping (reported).
    fn section<'a, T>(
        &mut self,
        value: Option<&'a Value>,
        path: &str,
        read: impl FnOnce(&mut Parser, &mut Fields<'a>) -> T,
    ) -> Option<T> {
        let mut fields = Fields {
            path: path.to_string(),
            entries: Vec::new(),
        };
        match value {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(map)) => {
                for (k, v) in map {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .map(|s| s.trim_end().to_string())
                            .unwrap_or_else(|_| describe(other)),
                    };
                    fields.entries.push((key, v, false));
                }
            }
            Some(other) => {
                self.error(
                    path.to_string(),
                    format!("expected a mapping, found {}", describe(other)),
                );
                return None;
            }
        }
        let out = read(self, &mut fields);
        for (key, _, taken) in &fields.entries {
            if !taken {
                self.error(fields.path(key), "unknown key");
            }
        }
        Some(out)
    }

    /// Like [`Parser::section`] for a section that is off unless written: absent → `None`.
    fn optional_section<'a, T>(
        &mut self,
        value: Option<&'a Value>,
        path: &str,
        read: impl FnOnce(&mut Parser, &mut Fields<'a>) -> T,
    ) -> Option<T> {
        value.and_then(|v| self.section(Some(v), path, read))
    }

    fn get<T: Leaf>(&mut self, f: &mut Fields<'_>, key: &str) -> Option<T> {
        let value = f.take(key)?;
        match T::from_value(value) {
            Ok(t) => Some(t),
            Err(message) => {
                self.error(f.path(key), message);
                None
            }
        }
    }

    fn or<T: Leaf>(&mut self, f: &mut Fields<'_>, key: &str, default: T) -> T {
        self.get(f, key).unwrap_or(default)
    }

    /// A key that must be written; `placeholder` stands in (reported) so parsing goes on.
    fn required<T: Leaf>(&mut self, f: &mut Fields<'_>, key: &str, placeholder: T) -> T {
        if f.entries.iter().any(|(k, _, _)| k == key) {
            return self.or(f, key, placeholder);
        }
        self.error(f.path(key), "required");
        placeholder
    }

    /// A sequence (absent or null: empty).
    fn sequence<'a>(&mut self, value: Option<&'a Value>, path: &str) -> Option<&'a [Value]> {
        match value {
            None | Some(Value::Null) => Some(&[]),
            Some(Value::Sequence(items)) => Some(items),
            Some(other) => {
                self.error(
                    path.to_string(),
                    format!("expected a sequence, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn config(&mut self, root: &Value) -> Config {
        let d = Config::default();
        self.section(Some(root), "", |p, f| Config {
            receivers: p
                .section(f.take("receivers"), "receivers", |p, f| ReceiversConfig {
                    otlp: p
                        .section(f.take("otlp"), "receivers.otlp", Parser::otlp_receiver)
                        .unwrap_or_default(),
                })
                .unwrap_or_default(),
            admin: p
                .section(f.take("admin"), "admin", Parser::admin)
                .unwrap_or_default(),
            pipeline: p
                .section(f.take("pipeline"), "pipeline", Parser::pipeline)
                .unwrap_or_default(),
            limits: p
                .section(f.take("limits"), "limits", Parser::limits)
                .unwrap_or_default(),
            sli: p
                .section(f.take("sli"), "sli", Parser::sli)
                .unwrap_or_default(),
            slos: match f.take("slos") {
                None => d.slos.clone(),
                Some(v) => p.slos(v),
            },
            delivery: p
                .section(f.take("delivery"), "delivery", Parser::delivery)
                .unwrap_or_default(),
            momentum: p
                .section(f.take("momentum"), "momentum", |p, f| MomentumConfig {
                    weights: p
                        .section(f.take("weights"), "momentum.weights", Parser::weights)
                        .unwrap_or_default(),
                })
                .unwrap_or_default(),
            exporters: p
                .section(f.take("exporters"), "exporters", Parser::exporters)
                .unwrap_or_default(),
            archive: p
                .section(f.take("archive"), "archive", Parser::archive)
                .unwrap_or_default(),
            telemetry: p.optional_section(f.take("telemetry"), "telemetry", |p, f| {
                // `telemetry:` exists only to hold `otlp`; writing it means "on".
                let otlp = p.section(f.take("otlp"), "telemetry.otlp", |p, f| {
                    TelemetryOtlpConfig {
                        endpoint: p.required(f, "endpoint", placeholder_url()).0,
                        interval: p.or(f, "interval", TELEMETRY_DEFAULT_INTERVAL),
                        tls: p.client_tls(f),
                        headers: p.headers(f),
                    }
                });
                TelemetryConfig {
                    otlp: otlp.unwrap_or(TelemetryOtlpConfig {
                        endpoint: placeholder_url().0,
                        interval: TELEMETRY_DEFAULT_INTERVAL,
                        tls: None,
                        headers: BTreeMap::new(),
                    }),
                }
            }),
            shutdown_timeout: p.or(f, "shutdown_timeout", d.shutdown_timeout),
        })
        .unwrap_or(d)
    }

    fn listen(&mut self, value: Option<&Value>, path: &str, default: ListenConfig) -> ListenConfig {
        self.section(value, path, |p, f| ListenConfig {
            endpoint: p.or(f, "endpoint", default.endpoint),
        })
        .unwrap_or(default)
    }

    fn otlp_receiver(&mut self, f: &mut Fields<'_>) -> OtlpReceiverConfig {
        let d = OtlpReceiverConfig::default();
        OtlpReceiverConfig {
            grpc: self.listen(f.take("grpc"), &f.path("grpc"), d.grpc),
            http: self.listen(f.take("http"), &f.path("http"), d.http),
            max_request_mib: self.or(f, "max_request_mib", d.max_request_mib),
            max_inflight_mib: self.or(f, "max_inflight_mib", d.max_inflight_mib),
            max_connections: self.or(f, "max_connections", d.max_connections),
            max_concurrent_streams: self.or(f, "max_concurrent_streams", d.max_concurrent_streams),
            max_header_kib: self.or(f, "max_header_kib", d.max_header_kib),
            read_header_timeout: self.or(f, "read_header_timeout", d.read_header_timeout),
            read_timeout: self.or(f, "read_timeout", d.read_timeout),
            idle_timeout: self.or(f, "idle_timeout", d.idle_timeout),
            tls: self.server_tls(f),
            auth: self.auth(f),
        }
    }

    fn admin(&mut self, f: &mut Fields<'_>) -> AdminConfig {
        let d = AdminConfig::default();
        AdminConfig {
            endpoint: self.or(f, "endpoint", d.endpoint),
            tls: self.server_tls(f),
            auth: self.auth(f),
        }
    }

    /// `tls` of a listener: a server cannot offer TLS without its certificate and key, so
    /// both are required once the section is written.
    fn server_tls(&mut self, f: &mut Fields<'_>) -> Option<TlsConfig> {
        let path = f.path("tls");
        self.optional_section(f.take("tls"), &path, |p, f| {
            let cert = p.get::<PathBuf>(f, "cert_file");
            let key = p.get::<PathBuf>(f, "key_file");
            for (name, missing) in [("cert_file", cert.is_none()), ("key_file", key.is_none())] {
                let failed = p.failed.contains(&f.path(name));
                if missing && !failed {
                    p.error(
                        f.path(name),
                        "required: a TLS server needs cert_file and key_file",
                    );
                }
            }
            TlsConfig {
                cert_file: cert.unwrap_or_default(),
                key_file: key.unwrap_or_default(),
                client_ca_file: p.get(f, "client_ca_file"),
            }
        })
    }

    /// `tls` of an exporter (the OpenTelemetry Collector's names).
    fn client_tls(&mut self, f: &mut Fields<'_>) -> Option<ClientTlsConfig> {
        let path = f.path("tls");
        self.optional_section(f.take("tls"), &path, |p, f| ClientTlsConfig {
            ca_file: p.get(f, "ca_file"),
            cert_file: p.get(f, "cert_file"),
            key_file: p.get(f, "key_file"),
            insecure_skip_verify: p.or(f, "insecure_skip_verify", false),
        })
    }

    fn auth(&mut self, f: &mut Fields<'_>) -> Option<AuthConfig> {
        let path = f.path("auth");
        self.optional_section(f.take("auth"), &path, |p, f| AuthConfig {
            bearer_tokens_file: p.required(f, "bearer_tokens_file", PathBuf::new()),
        })
    }

    fn pipeline(&mut self, f: &mut Fields<'_>) -> PipelineConfig {
        let d = PipelineConfig::default();
        PipelineConfig {
            shards: self.or(f, "shards", d.shards),
            queue_capacity_mib: self.or(f, "queue_capacity_mib", d.queue_capacity_mib),
            memory_limit_mib: self.or(f, "memory_limit_mib", d.memory_limit_mib),
        }
    }

    fn limits(&mut self, f: &mut Fields<'_>) -> LimitsConfig {
        let d = LimitsConfig::default();
        LimitsConfig {
            max_services: self.or(f, "max_services", d.max_services),
            max_series: self.or(f, "max_series", d.max_series),
            max_operations_per_service: self.or(
                f,
                "max_operations_per_service",
                d.max_operations_per_service,
            ),
            max_versions: self.or(f, "max_versions", d.max_versions),
            max_pipelines: self.or(f, "max_pipelines", d.max_pipelines),
            max_metric_streams: self.or(f, "max_metric_streams", d.max_metric_streams),
            series_idle: self.or(f, "series_idle", d.series_idle),
            max_value_bytes: self.or(f, "max_value_bytes", d.max_value_bytes),
        }
    }

    fn sli(&mut self, f: &mut Fields<'_>) -> SliConfig {
        let d = SliConfig::default();
        SliConfig {
            resolution: self.or(f, "resolution", d.resolution),
            allowed_lateness: self.or(f, "allowed_lateness", d.allowed_lateness),
            max_clock_skew: self.or(f, "max_clock_skew", d.max_clock_skew),
            operation: self.or(f, "operation", d.operation),
            latency_accuracy: self.or(f, "latency_accuracy", d.latency_accuracy),
        }
    }

    fn slos(&mut self, value: &Value) -> Vec<SloConfig> {
        let Some(items) = self.sequence(Some(value), "slos") else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("slos[{i}]");
                // An entry that is not a mapping keeps its place so later indices stay true.
                self.section(Some(item), &path, Parser::slo)
                    .unwrap_or_else(SloConfig::default_catch_all)
            })
            .collect()
    }

    fn slo(&mut self, f: &mut Fields<'_>) -> SloConfig {
        let objectives_path = f.path("objectives");
        let objectives = self
            .section(f.take("objectives"), &objectives_path, |p, f| {
                let latency_path = f.path("latency");
                ObjectivesConfig {
                    availability: p.get(f, "availability"),
                    latency: p.optional_section(f.take("latency"), &latency_path, |p, f| {
                        LatencyObjective {
                            threshold: p.required(f, "threshold", Duration::from_millis(300)),
                            target: p.required(f, "target", 99.0),
                        }
                    }),
                }
            })
            // Not a mapping (reported): a stand-in objective avoids a second complaint.
            .unwrap_or_else(|| SloConfig::default_catch_all().objectives);
        SloConfig {
            service: self.required(f, "service", "*".to_string()),
            environment: self.or(f, "environment", "*".to_string()),
            window: self.or(f, "window", SLO_DEFAULT_WINDOW),
            objectives,
        }
    }

    fn delivery(&mut self, f: &mut Fields<'_>) -> DeliveryConfig {
        let d = DeliveryConfig::default();
        DeliveryConfig {
            change_failure_window: self.or(f, "change_failure_window", d.change_failure_window),
            rollback_quiet_period: self.or(f, "rollback_quiet_period", d.rollback_quiet_period),
            lookback: self.or(f, "lookback", d.lookback),
        }
    }

    fn weights(&mut self, f: &mut Fields<'_>) -> WeightsConfig {
        let d = WeightsConfig::default();
        WeightsConfig {
            throughput: self.or(f, "throughput", d.throughput),
            lead_time: self.or(f, "lead_time", d.lead_time),
            stability: self.or(f, "stability", d.stability),
            recovery: self.or(f, "recovery", d.recovery),
            reliability: self.or(f, "reliability", d.reliability),
        }
    }

    fn exporters(&mut self, f: &mut Fields<'_>) -> ExportersConfig {
        let d = ExportersConfig::default();
        let prometheus = self
            .section(f.take("prometheus"), "exporters.prometheus", |p, f| {
                PrometheusConfig {
                    enabled: p.or(f, "enabled", d.prometheus.enabled),
                }
            })
            .unwrap_or_default();
        let remote_write =
            self.optional_section(f.take("remote_write"), "exporters.remote_write", |p, f| {
                RemoteWriteConfig {
                    endpoint: p.required(f, "endpoint", placeholder_url()).0,
                    interval: p.or(f, "interval", EXPORT_DEFAULT_INTERVAL),
                    tls: p.client_tls(f),
                    headers: p.headers(f),
                }
            });
        let otlp = self.optional_section(f.take("otlp"), "exporters.otlp", Parser::otlp_exporter);
        ExportersConfig {
            prometheus,
            remote_write,
            otlp,
        }
    }

    fn otlp_exporter(&mut self, f: &mut Fields<'_>) -> OtlpExporterConfig {
        let forward_path = f.path("forward");
        let forward = match f.take("forward") {
            // Chaining is the point of a push exporter: forward everything unless narrowed.
            None => vec![Signal::Traces, Signal::Metrics, Signal::Logs],
            Some(v) => self.forward(v, &forward_path),
        };
        let queue_path = f.path("queue");
        OtlpExporterConfig {
            endpoint: self.required(f, "endpoint", placeholder_url()).0,
            protocol: self.or(f, "protocol", OtlpProtocol::Grpc),
            interval: self.or(f, "interval", EXPORT_DEFAULT_INTERVAL),
            forward,
            tls: self.client_tls(f),
            headers: self.headers(f),
            queue: self
                .section(f.take("queue"), &queue_path, |p, f| {
                    let d = QueueConfig::default();
                    QueueConfig {
                        max_mib: p.or(f, "max_mib", d.max_mib),
                        // `dir: null` asks for a queue in memory only.
                        dir: match f.take("dir") {
                            None => d.dir,
                            Some(Value::Null) => None,
                            Some(v) => match PathBuf::from_value(v) {
                                Ok(dir) => Some(dir),
                                Err(message) => {
                                    p.error(f.path("dir"), message);
                                    d.dir
                                }
                            },
                        },
                    }
                })
                .unwrap_or_default(),
        }
    }

    fn forward(&mut self, value: &Value, path: &str) -> Vec<Signal> {
        let Some(items) = self.sequence(Some(value), path) else {
            return Vec::new();
        };
        let mut signals = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match Signal::from_value(item) {
                Ok(s) if signals.contains(&s) => self.error(item_path, "listed twice"),
                Ok(s) => signals.push(s),
                Err(message) => self.error(item_path, message),
            }
        }
        signals
    }

    /// `headers`: any names, each a valid HTTP header name with a valid value.
    fn headers(&mut self, f: &mut Fields<'_>) -> BTreeMap<String, String> {
        let path = f.path("headers");
        let mut headers = BTreeMap::new();
        let Some(value) = f.take("headers") else {
            return headers;
        };
        let map = match value {
            Value::Null => return headers,
            Value::Mapping(map) => map,
            other => {
                self.error(
                    path,
                    format!("expected a mapping, found {}", describe(other)),
                );
                return headers;
            }
        };
        for (k, v) in map {
            let Value::String(name) = k else {
                self.error(
                    path.clone(),
                    format!("header name {} is not a string", describe(k)),
                );
                continue;
            };
            let item_path = join(&path, name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.error(item_path, "invalid HTTP header name");
                continue;
            }
            match v {
                Value::String(value) if http::HeaderValue::from_str(value).is_ok() => {
                    headers.insert(name.clone(), value.clone());
                }
                Value::String(_) => {
                    self.error(item_path, "invalid header value (control characters)")
                }
                other => self.error(
                    item_path,
                    format!("expected a string, found {}", describe(other)),
                ),
            }
        }
        headers
    }

    fn archive(&mut self, f: &mut Fields<'_>) -> ArchiveConfig {
        let d = ArchiveConfig::default();
        ArchiveConfig {
            dir: self.or(f, "dir", d.dir),
            window: self.or(f, "window", d.window),
            spans: self.or(f, "spans", d.spans),
            compression: self.or(f, "compression", d.compression),
            retention: self.or(f, "retention", d.retention),
        }
    }
}

/// Stands in for a required URL that is missing or invalid (always reported).
fn placeholder_url() -> HttpUrl {
    HttpUrl("http://127.0.0.1:0".to_string())
}
