//! Semantic rules: ranges and cross-field constraints of a typed [`Config`].

use super::*;

const MINUTE: Duration = Duration::from_mins(1);
/// Granularity of windows from 2h up to 3d (the README's How it works): finer buckets must roll up into it.
const FIVE_MINUTES: Duration = Duration::from_mins(5);

/// Every broken rule of `c`. `failed(path)` is true for keys that did not parse (their
/// value is a stand-in); cross-field rules involving them are skipped.
pub(super) fn validate(c: &Config, failed: &dyn Fn(&str) -> bool) -> Vec<ConfigError> {
    let mut v = Rules { errors: Vec::new() };

    let otlp = &c.receivers.otlp;
    v.at_least("receivers.otlp.max_request_mib", otlp.max_request_mib, 1);
    v.at_least("receivers.otlp.max_connections", otlp.max_connections, 1);
    v.at_least(
        "receivers.otlp.max_concurrent_streams",
        otlp.max_concurrent_streams,
        1,
    );
    // hyper reads an HTTP/1.1 head into a buffer of at least 8 KiB
    v.at_least("receivers.otlp.max_header_kib", otlp.max_header_kib, 8);
    v.positive(
        "receivers.otlp.read_header_timeout",
        otlp.read_header_timeout,
    );
    v.positive("receivers.otlp.read_timeout", otlp.read_timeout);
    v.positive("receivers.otlp.idle_timeout", otlp.idle_timeout);
    // A request of the largest size must fit, or it could never be admitted.
    v.at_least(
        "receivers.otlp.max_inflight_mib",
        otlp.max_inflight_mib,
        otlp.max_request_mib.max(1),
    );
    v.distinct_endpoints(c, failed);

    v.at_least(
        "pipeline.queue_capacity_mib",
        c.pipeline.queue_capacity_mib,
        1,
    );

    // Off, or enough to hold the process itself and a few requests.
    if c.pipeline.memory_limit_mib != 0 && c.pipeline.memory_limit_mib < 32 {
        v.error(
            "pipeline.memory_limit_mib",
            "must be 0 (off) or at least 32",
        );
    }

    let l = &c.limits;
    v.at_least("limits.max_services", l.max_services as u64, 1);
    v.at_least("limits.max_series", l.max_series as u64, 1);
    v.at_least(
        "limits.max_operations_per_service",
        l.max_operations_per_service as u64,
        1,
    );
    v.at_least("limits.max_versions", l.max_versions as u64, 1);
    v.at_least("limits.max_pipelines", l.max_pipelines as u64, 1);
    v.at_least("limits.max_metric_streams", l.max_metric_streams as u64, 1);
    v.positive("limits.series_idle", l.series_idle);
    v.at_least("limits.max_value_bytes", l.max_value_bytes as u64, 16);

    let sli = &c.sli;
    let resolution_ok = v.resolution(sli.resolution);
    if sli.allowed_lateness >= Duration::from_hours(1) {
        v.error("sli.allowed_lateness", "must be less than 1h");
    }
    // max_clock_skew ≥ 0 holds by construction: negative durations do not parse.
    let acc = sli.latency_accuracy;
    if !(acc > 0.0 && acc <= 0.1) {
        v.error("sli.latency_accuracy", "must be in (0, 0.1]");
    }

    v.slos(&c.slos, failed);

    let d = &c.delivery;
    v.positive("delivery.change_failure_window", d.change_failure_window);
    v.positive("delivery.rollback_quiet_period", d.rollback_quiet_period);
    v.positive("delivery.lookback", d.lookback);

    let weights = c.momentum.weights.named();
    for (name, w) in weights {
        if !(w >= 0.0 && w.is_finite()) {
            v.error(
                &format!("momentum.weights.{name}"),
                "must be a finite number ≥ 0",
            );
        }
    }
    if weights.iter().all(|(_, w)| *w == 0.0) {
        v.error(
            "momentum.weights",
            "at least one weight must be greater than 0",
        );
    }

    if let Some(rw) = &c.exporters.remote_write {
        v.interval("exporters.remote_write.interval", rw.interval);
    }
    if let Some(o) = &c.exporters.otlp {
        v.interval("exporters.otlp.interval", o.interval);
        for (i, s) in o.forward.iter().enumerate() {
            if o.forward[..i].contains(s) {
                v.error(&format!("exporters.otlp.forward[{i}]"), "listed twice");
            }
        }
        v.at_least("exporters.otlp.queue.max_mib", o.queue.max_mib, 1);
    }

    let client_tls = [
        (
            "exporters.otlp.tls",
            c.exporters.otlp.as_ref().and_then(|o| o.tls.as_ref()),
        ),
        (
            "exporters.remote_write.tls",
            c.exporters
                .remote_write
                .as_ref()
                .and_then(|o| o.tls.as_ref()),
        ),
        (
            "telemetry.otlp.tls",
            c.telemetry.as_ref().and_then(|t| t.otlp.tls.as_ref()),
        ),
    ];
    for (path, tls) in client_tls {
        if tls.is_some_and(|t| t.cert_file.is_some() != t.key_file.is_some()) {
            v.error(path, "cert_file and key_file must be set together");
        }
    }

    let a = &c.archive;
    if !a.window.is_multiple_of(MINUTE) {
        v.error(
            "archive.window",
            format!("must be a whole number of minutes; got {}", a.window),
        );
    } else if resolution_ok && !failed("sli.resolution") && !a.window.is_multiple_of(sli.resolution)
    {
        v.error(
            "archive.window",
            format!(
                "must be a multiple of sli.resolution ({}); got {}",
                sli.resolution, a.window
            ),
        );
    }
    if a.retention < Duration::from_days(1) {
        v.error("archive.retention", "must be at least 1d");
    }

    if let Some(t) = &c.telemetry {
        v.interval("telemetry.otlp.interval", t.otlp.interval);
    }
    v.positive("shutdown_timeout", c.shutdown_timeout);

    v.errors
}

struct Rules {
    errors: Vec<ConfigError>,
}

impl Rules {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn at_least(&mut self, path: &str, value: u64, min: u64) {
        if value < min {
            self.error(path, format!("must be at least {min}"));
        }
    }

    fn positive(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.error(path, "must be greater than 0");
        }
    }

    fn interval(&mut self, path: &str, d: Duration) {
        if d < Duration::from_secs(1) {
            self.error(path, format!("must be at least 1s; got {d}"));
        }
    }

    /// Quantile sketches keep 1-minute sub-windows and windows up to 3d use 5m buckets, so
    /// a bucket must tile both: a divisor of 1m, or 1m or 5m itself.
    fn resolution(&mut self, r: Duration) -> bool {
        if r.is_zero() {
            self.error("sli.resolution", "must be greater than 0");
            return false;
        }
        if !(MINUTE.is_multiple_of(r) || r == FIVE_MINUTES) {
            self.error(
                "sli.resolution",
                format!(
                    "must divide 1m evenly or be 5m (buckets roll up into 1m quantile \
                     sub-windows and 5m window buckets); got {r}"
                ),
            );
            return false;
        }
        true
    }

    fn percent(&mut self, path: &str, p: f64) {
        if !(p > 0.0 && p < 100.0) {
            self.error(path, "must be in (0,100)");
        }
    }

    fn slos(&mut self, slos: &[SloConfig], failed: &dyn Fn(&str) -> bool) {
        for (i, slo) in slos.iter().enumerate() {
            let path = format!("slos[{i}]");
            if slo.service.is_empty() {
                self.error(
                    &format!("{path}.service"),
                    "must not be empty (\"*\" matches any service)",
                );
            }
            if slo.window < Duration::from_hours(1) {
                self.error(
                    &format!("{path}.window"),
                    format!("must be at least 1h; got {}", slo.window),
                );
            }
            let o = &slo.objectives;
            if o.availability.is_none() && o.latency.is_none() {
                self.error(
                    &format!("{path}.objectives"),
                    "at least one objective (availability or latency) is required",
                );
            }
            if let Some(a) = o.availability {
                self.percent(&format!("{path}.objectives.availability"), a);
            }
            if let Some(l) = o.latency {
                self.positive(&format!("{path}.objectives.latency.threshold"), l.threshold);
                self.percent(&format!("{path}.objectives.latency.target"), l.target);
            }
        }

        // Two entries of equal precedence match one pair exactly when they name the same
        // (service, environment): exact names must both equal the pair's, and "*" is "*".
        let identity_ok = |i: usize| {
            !failed(&format!("slos[{i}].service")) && !failed(&format!("slos[{i}].environment"))
        };
        for (j, b) in slos.iter().enumerate() {
            if !identity_ok(j) {
                continue;
            }
            let earlier = slos[..j].iter().enumerate().find(|(i, a)| {
                identity_ok(*i) && a.service == b.service && a.environment == b.environment
            });
            if let Some((i, _)) = earlier {
                self.error(
                    &format!("slos[{j}]"),
                    format!(
                        "same service {:?} and environment {:?} as slos[{i}]; entries of \
                         equal precedence must not match the same pair",
                        b.service, b.environment
                    ),
                );
            }
        }
    }

    /// Two listeners on one fixed address cannot both bind; port 0 is always distinct.
    fn distinct_endpoints(&mut self, c: &Config, failed: &dyn Fn(&str) -> bool) {
        let listeners = [
            (
                "receivers.otlp.grpc.endpoint",
                c.receivers.otlp.grpc.endpoint,
            ),
            (
                "receivers.otlp.http.endpoint",
                c.receivers.otlp.http.endpoint,
            ),
            ("admin.endpoint", c.admin.endpoint),
        ];
        for (j, (path, addr)) in listeners.iter().enumerate() {
            if addr.port() == 0 || failed(path) {
                continue;
            }
            let clash = listeners[..j]
                .iter()
                .find(|(other, a)| a == addr && !failed(other));
            if let Some((other, _)) = clash {
                self.error(path, format!("{addr} is already used by {other}"));
            }
        }
    }
}
