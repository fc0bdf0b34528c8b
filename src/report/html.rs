//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! resource) with a card per service, charts of availability, p99 and the momentum index
//! per day, and the daily table — something to paste into a review.

use std::fmt::Write;

use super::render::{human_secs, pct};
use super::{DayRow, Report};

/// Tableau 10: distinct on screen and in print.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn label(service: &str, env: &str) -> String {
    if env.is_empty() {
        service.to_string()
    } else {
        format!("{service} [{env}]")
    }
}

/// One line of a chart: a value (or a gap) per day of the x axis.
struct Line {
    name: String,
    color: &'static str,
    values: Vec<Option<f64>>,
}

struct Axis {
    min: f64,
    max: f64,
    fmt: fn(f64) -> String,
}

const W: f64 = 960.0;
const H: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 60.0;

/// An SVG line chart over `days` (x) with one polyline per line; gaps break the line.
fn line_chart(title: &str, days: &[String], lines: &[Line], y: &Axis) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let n = days.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + pw / 2.0
        } else {
            LEFT + pw * i as f64 / (n - 1) as f64
        }
    };
    let (lo, hi, step) = nice_scale(y.min, y.max);
    let span = hi - lo;
    let yy = |v: f64| TOP + ph * (1.0 - ((v - lo) / span).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}">"##,
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafbfc" stroke="#d0d7de"/>"##
    );
    let ticks = (span / step).round() as usize;
    for k in 0..=ticks {
        let v = lo + step * k as f64;
        let py = yy(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e1e4e8"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            LEFT + pw,
            LEFT - 8.0,
            py + 4.0,
            esc(&(y.fmt)(v))
        );
    }
    let every = n.div_ceil(10).max(1);
    for (i, d) in days.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            // The first and last labels are anchored inward so they stay inside the chart.
            let anchor = match i {
                0 if n > 1 => "start",
                _ if i + 1 == n && n > 1 => "end",
                _ => "middle",
            };
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" class="tick">{}</text>"##,
                x(i),
                TOP + ph + 18.0,
                esc(d)
            );
        }
    }
    for l in lines {
        let mut seg: Vec<String> = Vec::new();
        let flush = |seg: &mut Vec<String>, s: &mut String| {
            if seg.len() > 1 {
                let _ = write!(
                    s,
                    r##"<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>"##,
                    l.color,
                    seg.join(" ")
                );
            }
            seg.clear();
        };
        for (i, v) in l.values.iter().enumerate() {
            match v {
                Some(v) => seg.push(format!("{:.1},{:.1}", x(i), yy(*v))),
                None => flush(&mut seg, &mut s),
            }
        }
        flush(&mut seg, &mut s);
        for (i, v) in l.values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{} {}: {}</title></circle>"##,
                    x(i),
                    yy(*v),
                    l.color,
                    esc(&l.name),
                    esc(&days[i]),
                    esc(&(y.fmt)(*v))
                );
            }
        }
    }
    // Legend under the x labels.
    let mut lx = LEFT;
    for l in lines {
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"##,
            H - 22.0,
            l.color,
            lx + 16.0,
            H - 12.0,
            esc(&l.name)
        );
        lx += 28.0 + 7.5 * l.name.chars().count() as f64;
    }
    s.push_str("</svg></figure>\n");
    s
}

/// A y scale with round ticks covering [min, max]: (low, high, step), with at most about
/// five steps of 1, 2 or 5 × 10^k.
fn nice_scale(min: f64, max: f64) -> (f64, f64, f64) {
    let span = (max - min).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = match raw / mag {
        r if r <= 1.0 => mag,
        r if r <= 2.0 => 2.0 * mag,
        r if r <= 5.0 => 5.0 * mag,
        _ => 10.0 * mag,
    };
    let lo = (min / step + 1e-9).floor() * step;
    let hi = (max / step - 1e-9).ceil() * step;
    (lo, hi.max(lo + step), step)
}

/// Lines of one metric, one per (service, environment), over `days`.
fn lines(r: &Report, days: &[String], get: impl Fn(&DayRow) -> Option<f64>) -> Vec<Line> {
    r.services
        .iter()
        .enumerate()
        .map(|(i, svc)| Line {
            name: label(&svc.service, &svc.environment),
            color: PALETTE[i % PALETTE.len()],
            values: days
                .iter()
                .map(|d| {
                    r.days
                        .iter()
                        .find(|row| {
                            &row.date == d
                                && row.service == svc.service
                                && row.environment == svc.environment
                        })
                        .and_then(&get)
                })
                .collect(),
        })
        // A service without data for this metric gets no line and no legend entry; colors
        // stay those of the cards.
        .filter(|l| l.values.iter().any(Option::is_some))
        .collect()
}

fn pct_tick(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn index_tick(v: f64) -> String {
    format!("{v:.0}")
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".into())
}

const CSS: &str = r#"
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:24px 32px;color:#1f2328;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#57606a;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{border:1px solid #d0d7de;border-left:6px solid var(--c);border-radius:6px;padding:10px 14px;min-width:220px;background:#f6f8fa}
.card h3{margin:0 0 6px;font-size:15px}.card dl{display:grid;grid-template-columns:auto auto;gap:2px 12px;margin:0;font-size:13px}
.card dt{color:#57606a}.card dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
figure{margin:12px 0}figcaption{font-weight:600;font-size:14px;margin-bottom:4px}
.tick{font-size:11px;fill:#57606a}.legend{font-size:12px;fill:#1f2328}
table{border-collapse:collapse;font-size:12px;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}th,td{padding:3px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}th{background:#f6f8fa;position:sticky;top:0}
td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}tr:nth-child(even) td{background:#fbfcfd}
"#;

/// The self-contained HTML page.
pub fn page(r: &Report) -> String {
    let mut days: Vec<String> = r.days.iter().map(|d| d.date.clone()).collect();
    days.sort();
    days.dedup();
    let mut s = String::with_capacity(64 * 1024);
    let range = format!(
        "{} – {}",
        r.from
            .as_deref()
            .unwrap_or(days.first().map_or("–", |d| d.as_str())),
        r.to.as_deref()
            .unwrap_or(days.last().map_or("–", |d| d.as_str()))
    );
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>momentum report</title><style>{CSS}</style></head><body>\n<h1>Service momentum report</h1>\n<div class=\"meta\">{} · archive <code>{}</code> · {} files · data sets: {}</div>\n",
        esc(&range),
        esc(&r.archive),
        r.files_read,
        esc(&if r.datasets.is_empty() { "none".to_string() } else { r.datasets.join(", ") })
    );
    if r.services.is_empty() {
        s.push_str("<p>No data in range.</p></body></html>\n");
        return s;
    }
    s.push_str("<div class=\"cards\">\n");
    for (i, svc) in r.services.iter().enumerate() {
        let _ = writeln!(
            s,
            "<div class=\"card\" style=\"--c:{}\"><h3>{}</h3><dl><dt>requests</dt><dd>{}</dd><dt>availability</dt><dd>{}</dd><dt>p99</dt><dd>{}</dd><dt>momentum index</dt><dd>{}</dd><dt>deployments</dt><dd>{}</dd><dt>change failure</dt><dd>{}</dd><dt>incidents</dt><dd>{}</dd><dt>time to restore</dt><dd>{}</dd></dl></div>",
            PALETTE[i % PALETTE.len()],
            esc(&label(&svc.service, &svc.environment)),
            svc.requests,
            opt(svc.availability.map(pct)),
            opt(svc.p99_s.map(human_secs)),
            opt(svc.index.map(|x| format!("{x:.1}"))),
            opt(svc.deployments.map(|x| x.to_string())),
            opt(svc.change_failure_ratio.map(pct)),
            opt(svc.incidents.map(|x| x.to_string())),
            opt(svc.time_to_restore_s.map(human_secs)),
        );
    }
    s.push_str("</div>\n<h2>Per day</h2>\n");

    let avail = lines(r, &days, |d| d.availability);
    let lo = avail
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(1.0f64, |a, &b| a.min(b));
    // Zoom on the range that matters: a little below the worst day, at least 0.1% wide.
    let lo = (lo - (1.0 - lo) * 0.15).clamp(0.0, 0.999);
    s.push_str(&line_chart(
        "Availability (share of requests without error)",
        &days,
        &avail,
        &Axis {
            min: lo,
            max: 1.0,
            fmt: pct_tick,
        },
    ));
    let p99 = lines(r, &days, |d| d.p99_s);
    let hi = p99
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    s.push_str(&line_chart(
        "p99 latency",
        &days,
        &p99,
        &Axis {
            min: 0.0,
            max: if hi > 0.0 { hi * 1.1 } else { 1.0 },
            fmt: human_secs,
        },
    ));
    let index = lines(r, &days, |d| d.index);
    if !index.is_empty() {
        s.push_str(&line_chart(
            "Momentum index (0–100, as each day ended)",
            &days,
            &index,
            &Axis {
                min: 0.0,
                max: 100.0,
                fmt: index_tick,
            },
        ));
    }

    s.push_str("<h2>Daily figures</h2>\n<div class=\"scroll\"><table><thead><tr>");
    for h in [
        "date",
        "service",
        "env",
        "requests",
        "errors",
        "availability",
        "p99",
        "index",
        "throughput",
        "lead time",
        "stability",
        "recovery",
        "reliability",
        "deploys",
        "failed",
        "change failure",
        "incidents",
        "time to restore",
    ] {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr></thead><tbody>\n");
    let c = |v: Option<f64>| opt(v.map(|x| format!("{x:.2}")));
    for d in &r.days {
        let cells = [
            esc(&d.date),
            esc(&d.service),
            esc(&d.environment),
            d.requests.to_string(),
            d.errors.to_string(),
            opt(d.availability.map(pct)),
            opt(d.p99_s.map(human_secs)),
            opt(d.index.map(|x| format!("{x:.1}"))),
            c(d.throughput),
            c(d.lead_time),
            c(d.stability),
            c(d.recovery),
            c(d.reliability),
            opt(d.deployments.map(|x| x.to_string())),
            opt(d.failed_deployments.map(|x| x.to_string())),
            opt(d.change_failure_ratio.map(pct)),
            opt(d.incidents.map(|x| x.to_string())),
            opt(d.time_to_restore_s.map(human_secs)),
        ];
        s.push_str("<tr>");
        for cell in cells {
            let _ = write!(s, "<td>{cell}</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table></div>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ServiceSummary;

    #[test]
    fn names_are_escaped_and_the_page_is_self_contained() {
        let r = Report {
            archive: "/a".into(),
            services: vec![ServiceSummary {
                service: "<script>".into(),
                ..ServiceSummary::default()
            }],
            days: vec![DayRow {
                date: "2026-11-26".into(),
                service: "<script>".into(),
                requests: 2,
                availability: Some(0.5),
                p99_s: Some(0.2),
                ..DayRow::default()
            }],
            ..Report::default()
        };
        let p = page(&r);
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;"));
        for forbidden in ["<script", "<link", "src=\"http", "href=\"http"] {
            assert!(!p.contains(forbidden), "{forbidden}");
        }
        assert_eq!(
            p.matches("<svg").count(),
            2,
            "availability and p99; no index data"
        );
    }
}
