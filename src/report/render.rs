//! Text renderings of a [`Report`]: an aligned table for people, JSON and CSV for tools.
//! Absent values are empty (CSV), `null` (JSON) or `-` (table), never 0 or NaN.

use std::fmt::Write;

use super::{DayRow, Report};

/// Columns of the CSV, in order; also the keys of a JSON day row.
pub const CSV_HEADER: [&str; 19] = [
    "date",
    "service",
    "environment",
    "requests",
    "errors",
    "availability",
    "p99_s",
    "index",
    "throughput",
    "lead_time",
    "stability",
    "recovery",
    "reliability",
    "error_budget_remaining",
    "deployments",
    "failed_deployments",
    "change_failure_ratio",
    "incidents",
    "time_to_restore_s",
];

fn f(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn n(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Quotes a CSV field when it holds a separator, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV values of a day row, in [`CSV_HEADER`] order.
pub fn csv_values(r: &DayRow) -> [String; 19] {
    [
        r.date.clone(),
        csv_field(&r.service),
        csv_field(&r.environment),
        r.requests.to_string(),
        r.errors.to_string(),
        f(r.availability),
        f(r.p99_s),
        f(r.index),
        f(r.throughput),
        f(r.lead_time),
        f(r.stability),
        f(r.recovery),
        f(r.reliability),
        f(r.error_budget_remaining),
        n(r.deployments),
        n(r.failed_deployments),
        f(r.change_failure_ratio),
        n(r.incidents),
        f(r.time_to_restore_s),
    ]
}

/// One row per (service, environment, day), with a header.
pub fn csv(r: &Report) -> String {
    let mut s = CSV_HEADER.join(",");
    s.push('\n');
    for d in &r.days {
        s.push_str(&csv_values(d).join(","));
        s.push('\n');
    }
    s
}

/// The report as one JSON object (pretty-printed).
pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_else(|e| {
        // Serialising plain structs of strings and numbers cannot fail; say so if it did.
        format!("{{\"error\": \"{e}\"}}")
    });
    s.push('\n');
    s
}

/// A latency for people: `312ms`, `1.20s`.
pub fn human_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.2}s")
    } else if s < 2.0 * 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 2.0 * 86_400.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1}d", s / 86_400.0)
    }
}

/// A percentage with enough digits to tell 99.9 from 99.99.
pub fn pct(v: f64) -> String {
    format!("{:.3}%", v * 100.0)
}

fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

const TABLE_COLS: [&str; 15] = [
    "date", "requests", "errors", "avail", "p99", "index", "thru", "lead", "stab", "recov",
    "relia", "deploys", "cfr", "incid", "ttr",
];

fn table_cells(d: &DayRow) -> [String; 15] {
    let c = |v: Option<f64>| dash(v, |x| format!("{x:.2}"));
    [
        d.date.clone(),
        d.requests.to_string(),
        d.errors.to_string(),
        dash(d.availability, pct),
        dash(d.p99_s, human_secs),
        dash(d.index, |x| format!("{x:.1}")),
        c(d.throughput),
        c(d.lead_time),
        c(d.stability),
        c(d.recovery),
        c(d.reliability),
        dash(d.deployments, |x| x.to_string()),
        dash(d.change_failure_ratio, pct),
        dash(d.incidents, |x| x.to_string()),
        dash(d.time_to_restore_s, human_secs),
    ]
}

/// Aligned text: per service a heading, one line per day and a period line.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let range = match (&r.from, &r.to) {
        (None, None) => "all time".to_string(),
        (f, t) => format!(
            "{} .. {}",
            f.as_deref().unwrap_or("start"),
            t.as_deref().unwrap_or("now")
        ),
    };
    let _ = writeln!(
        s,
        "momentum report: {} ({range}); {} files; data sets: {}",
        r.archive,
        r.files_read,
        if r.datasets.is_empty() {
            "none".to_string()
        } else {
            r.datasets.join(", ")
        }
    );
    if r.services.is_empty() {
        let _ = writeln!(s, "\nno data in range");
        return s;
    }
    for svc in &r.services {
        let rows: Vec<[String; 15]> = r
            .days
            .iter()
            .filter(|d| d.service == svc.service && d.environment == svc.environment)
            .map(table_cells)
            .collect();
        let env = if svc.environment.is_empty() {
            String::new()
        } else {
            format!(" [{}]", svc.environment)
        };
        let _ = writeln!(
            s,
            "\n{}{env}: {} requests, availability {}, p99 {}, index {}, deployments {}, change failure {}, incidents {}, time to restore {}",
            svc.service,
            svc.requests,
            dash(svc.availability, pct),
            dash(svc.p99_s, human_secs),
            dash(svc.index, |x| format!("{x:.1}")),
            dash(svc.deployments, |x| x.to_string()),
            dash(svc.change_failure_ratio, pct),
            dash(svc.incidents, |x| x.to_string()),
            dash(svc.time_to_restore_s, human_secs),
        );
        let mut width: [usize; 15] = TABLE_COLS.map(str::len);
        for row in &rows {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::from(" ");
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                l.push(' ');
                if i == 0 {
                    let _ = write!(l, "{c:<w$}");
                } else {
                    let _ = write!(l, "{c:>w$}");
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(s, "{}", line(&TABLE_COLS.map(String::from)));
        for row in &rows {
            let _ = writeln!(s, "{}", line(row));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_secs(0.3124), "312ms");
        assert_eq!(human_secs(1.2), "1.20s");
        assert_eq!(human_secs(3900.0), "65m");
        assert_eq!(human_secs(3.0 * 86_400.0), "3.0d");
        assert_eq!(pct(0.999), "99.900%");
    }

    #[test]
    fn absent_values_are_empty_in_csv_and_dashes_in_the_table() {
        let d = DayRow {
            date: "2026-11-26".into(),
            service: "a".into(),
            requests: 10,
            errors: 1,
            availability: Some(0.9),
            ..DayRow::default()
        };
        let v = csv_values(&d);
        assert_eq!(v[5], "0.9");
        assert_eq!(v[7], "", "index absent");
        assert_eq!(v[14], "", "deployments absent");
        let t = table_cells(&d);
        assert_eq!(t[5], "-");
        assert_eq!(t[3], "90.000%");
    }
}
