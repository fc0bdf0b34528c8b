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
    // a byte loop: label values are short, where memchr's setup costs more (measured)
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        s.push_str(v);
        return;
    }
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
        // most values are counts: itoa (already in the tree through serde_json) is ~3×
        // the formatter's speed
        s.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        let _ = write!(s, "{v}");
    }
}

/// Prometheus label names of OTLP attribute keys (`service.name` → `service_name`),
/// translated once per key per render, not once per sample.
#[derive(Default)]
struct LabelNames(Vec<(&'static str, String)>);

impl LabelNames {
    fn get(&mut self, key: &'static str) -> &str {
        // a handful of distinct keys: a linear scan by pointer, then by value
        let i = match self
            .0
            .iter()
            .position(|(k, _)| std::ptr::eq(*k, key) || *k == key)
        {
            Some(i) => i,
            None => {
                self.0.push((key, prom_label(key)));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}

impl Out {
    /// One sample of `name` + `suffix` with the attributes `attrs` (OTLP keys) and an
    /// optional extra label, written straight into the text.
    fn sample_attrs(
        &mut self,
        names: &mut LabelNames,
        (name, suffix): (&str, &str),
        attrs: &[(&'static str, &str)],
        extra: Option<(&str, &str)>,
        value: f64,
    ) {
        self.s.push_str(name);
        self.s.push_str(suffix);
        if !attrs.is_empty() || extra.is_some() {
            self.s.push('{');
            let mut first = true;
            for (k, v) in attrs {
                if !first {
                    self.s.push(',');
                }
                first = false;
                self.s.push_str(names.get(k));
                self.s.push_str("=\"");
                escape_into(&mut self.s, v);
                self.s.push('"');
            }
            if let Some((k, v)) = extra {
                if !first {
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

impl Out {
    /// An OpenMetrics exemplar on the sample line just written: the trace of one
    /// request (value 1) and its end time in seconds.
    fn exemplar(&mut self, e: &crate::sli::exemplars::Exemplar) {
        if self.s.ends_with('\n') {
            self.s.pop();
        }
        self.s.push_str(" # {trace_id=\"");
        self.s.push_str(&e.trace_hex());
        self.s.push_str("\"} 1 ");
        let _ = write!(self.s, "{:.3}", e.end_ns as f64 * 1e-9);
        self.s.push('\n');
    }
}

/// Renders families as exposition text.
pub fn render_families(families: &[Family], openmetrics: bool) -> String {
    // lines, not samples: a summary sample is a line per quantile, `_sum` and `_count`
    let lines: usize = families
        .iter()
        .flat_map(|f| &f.samples)
        .map(|smp| match &smp.value {
            Value::Number(_) => 1,
            Value::Summary { quantiles, .. } => quantiles.len() + 2,
        })
        .sum();
    let mut o = Out {
        // ~80 bytes a line: one allocation for the whole text, nearly always
        s: String::with_capacity(64 * 1024 + lines * 96),
        om: openmetrics,
    };
    let mut names = LabelNames::default();
    let mut quantile_text: Vec<(f64, String)> = Vec::new();
    for f in families {
        let kind = match f.kind {
            FKind::Counter => Kind::Counter,
            FKind::Gauge => Kind::Gauge,
            FKind::Summary => Kind::Summary,
        };
        o.family(f.prom, kind, f.help);
        let mut exemplars = f.exemplars.iter().peekable();
        for (si, smp) in f.samples.iter().enumerate() {
            match &smp.value {
                Value::Number(v) => {
                    o.sample_attrs(&mut names, (f.prom, ""), &smp.attrs, None, *v);
                    if let Some((_, e)) = exemplars.next_if(|(i, _)| *i == si) {
                        if o.om {
                            o.exemplar(e);
                        }
                    }
                }
                Value::Summary {
                    count,
                    sum,
                    quantiles,
                } => {
                    for (q, v) in quantiles {
                        let i = match quantile_text.iter().position(|(x, _)| x == q) {
                            Some(i) => i,
                            None => {
                                quantile_text.push((*q, q.to_string()));
                                quantile_text.len() - 1
                            }
                        };
                        let qs = &quantile_text[i].1;
                        o.sample_attrs(
                            &mut names,
                            (f.prom, ""),
                            &smp.attrs,
                            Some(("quantile", qs)),
                            *v,
                        );
                    }
                    o.sample_attrs(&mut names, (f.prom, "_sum"), &smp.attrs, None, *sum);
                    o.sample_attrs(
                        &mut names,
                        (f.prom, "_count"),
                        &smp.attrs,
                        None,
                        *count as f64,
                    );
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
    collect(t, |families| render_families(families, openmetrics))
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
        let mut names = LabelNames::default();
        let attrs = [("a", "x\"y\\z\nw")];
        o.sample_attrs(&mut names, ("m", ""), &attrs, None, 3.0);
        o.sample_attrs(&mut names, ("m", "_sum"), &[], None, 0.25);
        let attrs = [("service.name", "s")];
        o.sample_attrs(
            &mut names,
            ("m", ""),
            &attrs,
            Some(("quantile", "0.5")),
            1.5,
        );
        assert_eq!(
            o.s,
            "m{a=\"x\\\"y\\\\z\\nw\"} 3\nm_sum 0.25\nm{service_name=\"s\",quantile=\"0.5\"} 1.5\n"
        );
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
