//! Prometheus exposition: text format 0.0.4, or OpenMetrics 1.0 when the scraper asks
//! for it. Names and labels are the README's (Exporters; the standard OTLP → Prometheus translation).

use super::families::{collect, prom_label, Family, Kind as FKind, Value};
use crate::telemetry::Telemetry;
use std::fmt::Write;

/// The metric kinds we expose.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

/// Content type of the 0.0.4 text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Out {
    s: String,
    om: bool,
}

impl Out {
    /// Writes the HELP/TYPE header of a family. `name` is the sample name (with
    /// `_total` for counters).
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let (fam, t) = match kind {
            Kind::Counter if self.om => (name.strip_suffix("_total").unwrap_or(name), "counter"),
            Kind::Counter => (name, "counter"),
            Kind::Gauge => (name, "gauge"),
            Kind::Summary => (name, "summary"),
        };
        let _ = writeln!(self.s, "# HELP {fam} {help}");
        let _ = writeln!(self.s, "# TYPE {fam} {t}");
        if self.om {
            if let Some(unit) = unit_of(fam) {
                let _ = writeln!(self.s, "# UNIT {fam} {unit}");
            }
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                self.s.push_str(k);
                self.s.push_str("=\"");
                escape_into(&mut self.s, v);
                self.s.push('"');
            }
            self.s.push('}');
        }
        self.s.push(' ');
        write_value(&mut self.s, value);
        self.s.push('\n');
    }
}

fn unit_of(fam: &str) -> Option<&'static str> {
    if fam.ends_with("_seconds") {
        Some("seconds")
    } else if fam.ends_with("_ratio") {
        Some("ratio")
    } else {
        None
    }
}

fn escape_into(s: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
}

fn write_value(s: &mut String, v: f64) {
    if v.is_nan() {
        s.push_str("NaN");
    } else if v.is_infinite() {
        s.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(s, "{}", v as i64);
    } else {
        let _ = write!(s, "{v}");
    }
}

/// Renders families as exposition text.
pub fn render_families(families: &[Family], openmetrics: bool) -> String {
    let mut o = Out {
        s: String::with_capacity(64 * 1024),
        om: openmetrics,
    };
    for f in families {
        let kind = match f.kind {
            FKind::Counter => Kind::Counter,
            FKind::Gauge => Kind::Gauge,
            FKind::Summary => Kind::Summary,
        };
        o.family(f.prom, kind, f.help);
        for smp in &f.samples {
            let labels: Vec<(String, &str)> = smp
                .attrs
                .iter()
                .map(|(k, v)| (prom_label(k), &**v))
                .collect();
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            match &smp.value {
                Value::Number(v) => o.sample(f.prom, &l, *v),
                Value::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    for (q, v) in quantiles {
                        let qs = q.to_string();
                        let mut lq = l.clone();
                        lq.push(("quantile", &qs));
                        o.sample(f.prom, &lq, *v);
                    }
                    o.sample(&format!("{}_sum", f.prom), &l, *sum);
                    o.sample(&format!("{}_count", f.prom), &l, *count as f64);
                }
            }
        }
    }
    if o.om {
        o.s.push_str("# EOF\n");
    }
    o.s
}

/// Renders the whole exposition.
pub fn render(t: &Telemetry, openmetrics: bool) -> String {
    render_families(&collect(t), openmetrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_are_escaped_and_formatted() {
        let mut o = Out {
            s: String::new(),
            om: false,
        };
        o.sample("m", &[("a", "x\"y\\z\nw")], 3.0);
        o.sample("m", &[], 0.25);
        assert_eq!(o.s, "m{a=\"x\\\"y\\\\z\\nw\"} 3\nm 0.25\n");
    }

    #[test]
    fn openmetrics_counter_family_drops_total() {
        let mut o = Out {
            s: String::new(),
            om: true,
        };
        o.family("x_seconds_total", Kind::Counter, "h");
        assert!(o.s.contains("# TYPE x_seconds counter"));
        assert!(o.s.contains("# UNIT x_seconds seconds"));
    }
}
