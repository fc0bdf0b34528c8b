//! The exported numbers, read where users read them. Eight hours of a scripted history —
//! deploys, a bad deploy with an outage and its rollback, a second outage, CI runs of
//! another service, a service that went quiet — replayed through the real binary over
//! OTLP/gRPC; then every implemented family of the metrics table (docs: README "Metrics")
//! is read from `/metrics`, from the OTLP push and from remote write into a real
//! Prometheus, and each sample is compared with a value computed here from the spans sent
//! and the rules as written (windows, burn rates, budgets, the multi-window alerts,
//! incidents, deployments, lead time, change failure, pipelines, the index) — not by
//! calling momentum's code. Every expected series must be there with exactly its labels,
//! and no other series of those families may be: an empty window is absent, a swapped
//! `window` or `objective` label is a missing series and an extra one.
//!
//! The latency quantiles are compared within `sli.latency_accuracy` (1 %) of the exact
//! nearest-rank quantile; every other value exactly (or to 1e-9 relative, for ratios).
//!
//! Then the process stops and `momentum report` reads its archive: the report's median
//! time to restore equals the live one for the same two incidents (an even count, where a
//! mean-of-the-middle-two median would differ; `docs/slo.md`, "Medians").

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sinks::{prom_query, start_prometheus, start_sink};
use common::{config_yaml, grpc_export, kv, poll, wait_exit, Proc};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const RES: u64 = 10 * S;

// ------------------------------------------------------------------ the history

/// One span sent.
#[derive(Clone, Debug)]
struct Sp {
    end: u64,
    lat: u64,
    service: &'static str,
    environment: &'static str,
    version: &'static str,
    operation: &'static str,
    err: bool,
    /// (pipeline, result, run id, revision) for a CI run (not a request)
    run: Option<(&'static str, &'static str, &'static str, &'static str)>,
    /// an INTERNAL span: moves its pair's clock, is no request
    internal: bool,
}

impl Sp {
    fn request(&self) -> bool {
        self.run.is_none() && !self.internal
    }
}

/// The scripted history, ending at `e` (an hour boundary), from `f = e − 8h`:
///
/// - `shop` (production), a request every 2 s: v1, v2 at f+1h, v3 at f+3h whose first 15
///   minutes fail half the requests until v2 is back (a rollback), a second outage of 5
///   minutes at f+6h, v4 at e−30m. Latencies repeat every minute (so every window of
///   whole minutes has the same quantiles whatever its sub-windows); one request in 300
///   takes 450 ms (over the 300 ms threshold), one in 1500 fails outside the outages.
/// - `search` (no environment), a request every 5 s over two operations, until e−40m.
/// - `ci` (no environment): four runs of pipeline `build` for revisions v2, v3 (a failed
///   run first), v4.
fn history(e: u64) -> Vec<Sp> {
    let f = e - 8 * HOUR;
    let mut out = Vec::new();
    let outage1 = (f + 3 * HOUR, f + 3 * HOUR + 15 * MIN);
    let outage2 = (f + 6 * HOUR, f + 6 * HOUR + 5 * MIN);
    for i in 0.. {
        let end = f + 2 * S * i + S;
        if end >= e {
            break;
        }
        let version = if end < f + HOUR {
            "v1"
        } else if end < outage1.0 {
            "v2"
        } else if end < outage1.1 {
            "v3"
        } else if end < e - 30 * MIN {
            "v2"
        } else {
            "v4"
        };
        let in_outage = |o: (u64, u64)| (o.0..o.1).contains(&end);
        let err = ((in_outage(outage1) || in_outage(outage2)) && i % 2 == 0) || i % 1500 == 1499;
        let lat = if i % 300 == 150 {
            450 * MS
        } else {
            20 * MS + (i % 30) * 7 * MS
        };
        out.push(Sp {
            end,
            lat,
            service: "shop",
            environment: "production",
            version,
            operation: if i % 3 == 0 { "GET /cart" } else { "POST /pay" },
            err,
            run: None,
            internal: false,
        });
    }
    for i in 0.. {
        let end = f + 5 * S * i + 3 * S;
        if end >= e - 40 * MIN {
            break;
        }
        out.push(Sp {
            end,
            lat: 10 * MS + (i * 37 % 200) * MS,
            service: "search",
            environment: "",
            version: "s1",
            operation: if i % 2 == 0 {
                "GET /search"
            } else {
                "GET /suggest"
            },
            err: i % 50 == 7,
            run: None,
            internal: false,
        });
    }
    // search's clock moves on with an INTERNAL span at the end: its 5m and 30m windows
    // hold no request.
    out.push(Sp {
        end: e - S,
        lat: MS,
        service: "search",
        environment: "",
        version: "s1",
        operation: "reindex",
        err: false,
        run: None,
        internal: true,
    });
    let runs = [
        (f + 5 * MIN, 4 * MIN, "success", "r1", "v2"),
        (f + HOUR, 3 * MIN, "failure", "r2", "v3"),
        (f + HOUR + 20 * MIN, 5 * MIN, "success", "r3", "v3"),
        (e - 50 * MIN, 6 * MIN, "success", "r4", "v4"),
    ];
    for (start, dur, result, id, rev) in runs {
        out.push(Sp {
            end: start + dur,
            lat: dur,
            service: "ci",
            environment: "",
            version: "",
            operation: "pipeline build",
            err: false,
            run: Some(("build", result, id, rev)),
            internal: false,
        });
    }
    out.sort_by_key(|s| s.end);
    out
}

/// The history as OTLP requests of one minute of event time each, a resource per
/// (service, version).
fn requests(spans: &[Sp]) -> Vec<ExportTraceServiceRequest> {
    spans
        .chunk_by(|a, b| a.end / MIN == b.end / MIN)
        .map(|chunk| {
            let mut groups: BTreeMap<(&str, &str, &str), Vec<Span>> = BTreeMap::new();
            for (k, s) in chunk.iter().enumerate() {
                let mut attributes = Vec::new();
                if let Some((name, result, id, rev)) = s.run {
                    attributes = vec![
                        kv("cicd.pipeline.name", name),
                        kv("cicd.pipeline.result", result),
                        kv("cicd.pipeline.run.id", id),
                        kv("vcs.ref.head.revision", rev),
                    ];
                }
                groups
                    .entry((s.service, s.environment, s.version))
                    .or_default()
                    .push(Span {
                        trace_id: (s.end as u128 * 7 + k as u128).to_be_bytes().to_vec(),
                        span_id: (s.end ^ k as u64).to_be_bytes().to_vec(),
                        name: s.operation.into(),
                        kind: if s.internal {
                            span::SpanKind::Internal
                        } else {
                            span::SpanKind::Server
                        } as i32,
                        start_time_unix_nano: s.end - s.lat,
                        end_time_unix_nano: s.end,
                        attributes,
                        status: s.err.then(|| Status {
                            code: status::StatusCode::Error as i32,
                            message: String::new(),
                        }),
                        ..Default::default()
                    });
            }
            ExportTraceServiceRequest {
                resource_spans: groups
                    .into_iter()
                    .map(|((service, env, version), spans)| {
                        let mut attributes = vec![kv("service.name", service)];
                        if !env.is_empty() {
                            attributes.push(kv("deployment.environment.name", env));
                        }
                        if !version.is_empty() {
                            attributes.push(kv("service.version", version));
                        }
                        ResourceSpans {
                            resource: Some(Resource {
                                attributes,
                                ..Default::default()
                            }),
                            scope_spans: vec![ScopeSpans {
                                spans,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

// ------------------------------------------------------------------ the model

/// What a window holds.
#[derive(Clone, Copy, Debug, Default)]
struct C {
    requests: u64,
    errors: u64,
    slow: u64,
}

const TARGET: [f64; 2] = [0.999, 0.99];
const OBJECTIVES: [&str; 2] = ["availability", "latency"];
const SEVERITIES: [&str; 2] = ["page", "ticket"];
/// The rolling windows and their labels, then the SLO window (30d).
const WINDOWS: [(&str, u64); 8] = [
    ("5m", 5 * MIN),
    ("30m", 30 * MIN),
    ("1h", HOUR),
    ("2h", 2 * HOUR),
    ("6h", 6 * HOUR),
    ("1d", DAY),
    ("3d", 3 * DAY),
    ("slo", 30 * DAY),
];

/// What a scan of every evaluation found: alerts started per (objective, severity),
/// whether each fires at the last evaluation, incidents as (opened, resolved).
struct Scan {
    started: [[u64; 2]; 2],
    firing: [[bool; 2]; 2],
    incidents: Vec<(u64, Option<u64>)>,
}

/// Labels of a series (name, value).
type Labels<'a> = &'a [(&'a str, &'a str)];

/// The spans of one pair and the rules over them.
struct Pair<'a> {
    /// every span (they all move the clock)
    events: Vec<&'a Sp>,
    /// the requests (SERVER spans that are no pipeline run)
    spans: Vec<&'a Sp>,
    /// the first resolution bucket with a request, and the prefix sums of the requests
    /// per bucket from there (`prefix[k]` = buckets `base..base + k`): windows are sums
    /// of whole buckets, so this is only a faster count
    base: u64,
    prefix: Vec<C>,
}

impl<'a> Pair<'a> {
    fn of(all: &'a [Sp], service: &str) -> Self {
        let events: Vec<&Sp> = all.iter().filter(|s| s.service == service).collect();
        let spans: Vec<&Sp> = events.iter().copied().filter(|s| s.request()).collect();
        let base = spans.iter().map(|s| s.end / RES).min().unwrap_or(0);
        let last = spans.iter().map(|s| s.end / RES).max().unwrap_or(0);
        let mut per = vec![C::default(); (last + 1).saturating_sub(base) as usize];
        for s in &spans {
            let c = &mut per[(s.end / RES - base) as usize];
            c.requests += 1;
            c.errors += u64::from(s.err);
            c.slow += u64::from(s.lat > 300 * MS);
        }
        let mut prefix = vec![C::default()];
        for c in per {
            let p = *prefix.last().unwrap();
            prefix.push(C {
                requests: p.requests + c.requests,
                errors: p.errors + c.errors,
                slow: p.slow + c.slow,
            });
        }
        Pair {
            events,
            spans,
            base,
            prefix,
        }
    }

    /// The pair's clock: its latest event.
    fn clock(&self) -> u64 {
        self.events.iter().map(|s| s.end).max().unwrap()
    }

    /// When the pair was first seen: its earliest event.
    fn first(&self) -> u64 {
        self.events.iter().map(|s| s.end).min().unwrap()
    }

    /// Window of length w at a clock c: the newest ⌈w/g⌉ buckets of granularity g (the
    /// resolution up to 2h, 5m up to 3d, 1h beyond), the open one included; at a boundary
    /// b, the clock is b − 1 and only what ended before b counts.
    fn window(&self, w: u64, c: u64) -> C {
        let g = if w <= 2 * HOUR {
            RES
        } else if w <= 3 * DAY {
            5 * MIN
        } else {
            HOUR
        };
        let start = (c / g + 1).saturating_sub(w.div_ceil(g)) * g;
        // Buckets start/RES ..= c/RES (every request of c's bucket ended by c: c is a
        // boundary − 1 or the pair's clock).
        let n = self.prefix.len() as u64 - 1;
        let lo = (start / RES).saturating_sub(self.base).min(n);
        let hi = (c / RES + 1).saturating_sub(self.base).min(n);
        if hi <= lo {
            return C::default();
        }
        let (a, b) = (self.prefix[lo as usize], self.prefix[hi as usize]);
        C {
            requests: b.requests - a.requests,
            errors: b.errors - a.errors,
            slow: b.slow - a.slow,
        }
    }

    fn bad(c: &C, objective: usize) -> u64 {
        if objective == 0 {
            c.errors
        } else {
            c.slow
        }
    }

    /// Burn rate = (bad/requests)/(1 − t); 0 without requests.
    fn burn(&self, objective: usize, w: u64, c: u64) -> f64 {
        let n = self.window(w, c);
        if n.requests == 0 {
            return 0.0;
        }
        Self::bad(&n, objective) as f64 / n.requests as f64 / (1.0 - TARGET[objective])
    }

    /// Page or ticket of one objective at boundary b, as the rule is written (30d SLO
    /// window: factors as they stand). Also checks that where it fires the long window
    /// holds at least 2 bad requests, so momentum's low-traffic guard (`docs/slo.md`)
    /// decides nothing in this history.
    fn fires(&self, objective: usize, severity: usize, b: u64) -> bool {
        let rules: [(u64, u64, f64); 2] = if severity == 0 {
            [(HOUR, 5 * MIN, 14.4), (6 * HOUR, 30 * MIN, 6.0)]
        } else {
            [(DAY, 2 * HOUR, 3.0), (3 * DAY, 6 * HOUR, 1.0)]
        };
        rules.iter().any(|&(long, short, factor)| {
            let on = self.burn(objective, long, b - 1) > factor
                && self.burn(objective, short, b - 1) > factor;
            if on {
                assert!(
                    Self::bad(&self.window(long, b - 1), objective) >= 2,
                    "the history reaches the low-traffic guard at {b}"
                );
            }
            on
        })
    }

    /// Every boundary the pair's clock crossed, in order.
    fn boundaries(&self) -> impl Iterator<Item = u64> {
        (self.first() / RES + 1..=self.clock() / RES).map(|k| k * RES)
    }

    /// Every evaluation of the pair, in order (see [`Scan`]).
    fn alerts_and_incidents(&self) -> Scan {
        let mut started = [[0u64; 2]; 2];
        let mut firing = [[false; 2]; 2];
        let mut incidents: Vec<(u64, Option<u64>)> = Vec::new();
        for b in self.boundaries() {
            let mut page_started = false;
            for o in 0..2 {
                for sev in 0..2 {
                    let now = self.fires(o, sev, b);
                    if now && !firing[o][sev] {
                        started[o][sev] += 1;
                        page_started |= sev == 0;
                    }
                    firing[o][sev] = now;
                }
            }
            match incidents.last_mut() {
                Some((_, resolved @ None)) => {
                    let five = self.window(5 * MIN, b - 1);
                    if five.requests > 0 && (0..2).all(|o| self.burn(o, 5 * MIN, b - 1) <= 1.0) {
                        *resolved = Some(b);
                    }
                }
                _ if page_started => incidents.push((b, None)),
                _ => {}
            }
        }
        Scan {
            started,
            firing,
            incidents,
        }
    }

    /// The exact nearest-rank quantile of the latencies (s) ending in `(c − w, c]`.
    fn quantile(&self, w: u64, c: u64, q: f64, operation: Option<&str>) -> Option<f64> {
        let mut v: Vec<f64> = self
            .spans
            .iter()
            .filter(|s| s.end + w > c && s.end <= c && operation.is_none_or(|o| s.operation == o))
            .map(|s| s.lat as f64 / 1e9)
            .collect();
        v.sort_by(f64::total_cmp);
        nearest_rank(&v, q)
    }
}

fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[k - 1])
}

/// Linear interpolation between anchor points (x ascending), clamped at the ends.
fn interpolate(anchors: &[(f64, f64)], x: f64) -> f64 {
    if x <= anchors[0].0 {
        return anchors[0].1;
    }
    for w in anchors.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    anchors[anchors.len() - 1].1
}

/// A duration score (lead time, time to restore) in log10 seconds: 1h → 1, 1d → 0.75,
/// 7d → 0.5, 30d → 0.25, 180d → 0.
fn duration_score(seconds: f64) -> f64 {
    let d = 86_400f64;
    let a: Vec<(f64, f64)> = [
        (3600.0, 1.0),
        (d, 0.75),
        (7.0 * d, 0.5),
        (30.0 * d, 0.25),
        (180.0 * d, 0.0),
    ]
    .iter()
    .map(|&(x, y)| (f64::log10(x), y))
    .collect();
    interpolate(&a, seconds.log10())
}

// ------------------------------------------------------------------ samples

/// A sample name with its labels (sorted).
type Key = (String, BTreeMap<String, String>);

/// What a sample must be.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// exactly (ratios to 1e-9 relative)
    Exact(f64),
    /// within 1 % of the exact nearest-rank quantile
    Quantile(f64),
}

struct Expected(BTreeMap<Key, Want>);

impl Expected {
    fn put(&mut self, name: &str, labels: &[(&str, &str)], want: Want) {
        let l = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(
            self.0.insert((name.to_string(), l), want).is_none(),
            "{name} {labels:?} expected twice"
        );
    }

    fn exact(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.put(name, labels, Want::Exact(v));
    }

    /// A summary: `_count`, `_sum` and the quantiles the window has (none when empty).
    fn summary(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        count: u64,
        sum: f64,
        quantiles: &[(&str, Option<f64>)],
        exact_quantiles: bool,
    ) {
        self.exact(&format!("{name}_count"), labels, count as f64);
        self.exact(&format!("{name}_sum"), labels, sum);
        for (q, v) in quantiles {
            if let Some(v) = v {
                let mut l = labels.to_vec();
                l.push(("quantile", q));
                let w = if exact_quantiles {
                    Want::Exact(*v)
                } else {
                    Want::Quantile(*v)
                };
                self.put(name, &l, w);
            }
        }
    }
}

/// The families this test owns: every sample whose name starts so must be expected.
const FAMILIES: [&str; 7] = [
    "momentum_sli_",
    "momentum_operation_",
    "momentum_slo_",
    "momentum_delivery_",
    "momentum_recovery_",
    "momentum_cicd_",
    "momentum_index",
];

fn owned(name: &str) -> bool {
    FAMILIES.iter().any(|f| name.starts_with(f))
}

/// The samples of a Prometheus text exposition (the owned families).
fn parse_exposition(text: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        if !owned(name) {
            continue;
        }
        let mut l = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, r) = rest.split_once("=\"").expect("label=\"");
            let close = r.find('"').expect("closing quote");
            l.insert(k.to_string(), r[..close].to_string());
            rest = r[close + 1..].trim_start_matches(',');
        }
        let v: f64 = value.parse().expect("a number");
        assert!(
            out.insert((name.to_string(), l), v).is_none(),
            "duplicate sample {line}"
        );
    }
    out
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

/// Every expected sample present with its labels and value, and nothing else of the
/// owned families.
fn check(source: &str, got: &BTreeMap<Key, f64>, want: &Expected) {
    let mut problems = Vec::new();
    for (k, w) in &want.0 {
        match (got.get(k), w) {
            (None, _) => problems.push(format!("missing {k:?} (want {w:?})")),
            (Some(v), Want::Exact(x)) if !(v == x || close(*v, *x, 1e-9)) => {
                problems.push(format!("{k:?}: {v} (want {x})"))
            }
            (Some(v), Want::Quantile(x)) if !close(*v, *x, 0.01) => {
                problems.push(format!("{k:?}: {v} (want {x} ± 1 %)"))
            }
            _ => {}
        }
    }
    for k in got.keys() {
        if !want.0.contains_key(k) {
            problems.push(format!("unexpected {k:?} = {}", got[k]));
        }
    }
    assert!(
        problems.is_empty(),
        "{source}: {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The expected samples of the whole history, from the rules as written.
fn expected(all: &[Sp]) -> (Expected, Vec<f64>) {
    let mut x = Expected(BTreeMap::new());
    let shop = Pair::of(all, "shop");
    let search = Pair::of(all, "search");
    let ci = Pair::of(all, "ci");
    let pairs: [(&str, Labels, &Pair); 3] = [
        (
            "shop",
            &[
                ("deployment_environment_name", "production"),
                ("service_name", "shop"),
            ],
            &shop,
        ),
        ("search", &[("service_name", "search")], &search),
        ("ci", &[("service_name", "ci")], &ci),
    ];
    let with = |base: &[(&'static str, &'static str)], extra: &[(&'static str, &'static str)]| {
        let mut l = base.to_vec();
        l.extend_from_slice(extra);
        l
    };
    let quantile_labels = [
        ("0.5", 0.5),
        ("0.9", 0.9),
        ("0.95", 0.95),
        ("0.99", 0.99),
        ("0.999", 0.999),
    ];

    // SLIs of every pair: counters since the start, availability per window (absent when
    // empty; the SLO window only with an SLO), latency summaries (cumulative count/sum,
    // windowed quantiles).
    for (service, labels, p) in &pairs {
        let c = p.clock();
        let n = p.spans.len() as u64;
        let errors = p.spans.iter().filter(|s| s.err).count() as u64;
        let lat_sum: f64 = p.spans.iter().map(|s| s.lat as f64 / 1e9).sum();
        x.exact("momentum_sli_requests_total", labels, n as f64);
        x.exact("momentum_sli_errors_total", labels, errors as f64);
        // the SLO window only where an SLO applies (shop)
        for (name, w) in WINDOWS
            .into_iter()
            .filter(|w| w.0 != "slo" || *service == "shop")
        {
            let win = p.window(w, c);
            if win.requests > 0 {
                x.exact(
                    "momentum_sli_availability_ratio",
                    &with(labels, &[("window", name)]),
                    1.0 - win.errors as f64 / win.requests as f64,
                );
            }
        }
        for (name, w) in [("5m", 5 * MIN), ("1h", HOUR), ("1d", DAY)] {
            let qs: Vec<(&str, Option<f64>)> = quantile_labels
                .iter()
                .map(|&(l, q)| (l, p.quantile(w, c, q, None)))
                .collect();
            x.summary(
                "momentum_sli_latency_seconds",
                &with(labels, &[("window", name)]),
                n,
                lat_sum,
                &qs,
                false,
            );
        }
        let mut ops: Vec<&str> = p.spans.iter().map(|s| s.operation).collect();
        ops.sort();
        ops.dedup();
        for op in ops {
            let of: Vec<&&Sp> = p.spans.iter().filter(|s| s.operation == op).collect();
            let l = with(labels, &[("operation", op)]);
            x.exact("momentum_operation_requests_total", &l, of.len() as f64);
            x.exact(
                "momentum_operation_errors_total",
                &l,
                of.iter().filter(|s| s.err).count() as f64,
            );
            let qs: Vec<(&str, Option<f64>)> = quantile_labels
                .iter()
                .map(|&(ql, q)| (ql, p.quantile(5 * MIN, c, q, Some(op))))
                .collect();
            x.summary(
                "momentum_operation_latency_seconds",
                &with(&l, &[("window", "5m")]),
                of.len() as u64,
                of.iter().map(|s| s.lat as f64 / 1e9).sum(),
                &qs,
                false,
            );
        }
    }

    // SLO of shop: burn rates per objective and window, budgets, alerts, incidents.
    let sl = pairs[0].1;
    let c = shop.clock();
    let mut budgets = [0.0; 2];
    for (o, objective) in OBJECTIVES.iter().enumerate() {
        for (name, w) in WINDOWS {
            x.exact(
                "momentum_slo_burn_rate",
                &with(sl, &[("objective", objective), ("window", name)]),
                shop.burn(o, w, c),
            );
        }
        let slo = shop.window(30 * DAY, c);
        budgets[o] = 1.0 - Pair::bad(&slo, o) as f64 / (slo.requests as f64 * (1.0 - TARGET[o]));
        x.exact(
            "momentum_slo_error_budget_remaining_ratio",
            &with(sl, &[("objective", objective)]),
            budgets[o],
        );
    }
    let Scan {
        started,
        firing,
        incidents,
    } = shop.alerts_and_incidents();
    for (o, objective) in OBJECTIVES.iter().enumerate() {
        for (sev, severity) in SEVERITIES.iter().enumerate() {
            let l = with(sl, &[("objective", objective), ("severity", severity)]);
            x.exact(
                "momentum_slo_alert",
                &l,
                f64::from(u8::from(firing[o][sev])),
            );
            x.exact("momentum_slo_alerts_total", &l, started[o][sev] as f64);
        }
    }
    assert_eq!(incidents.len(), 2, "two incidents: {incidents:?}");
    assert!(incidents.iter().all(|i| i.1.is_some()), "both resolved");
    let mut ttr: Vec<f64> = incidents
        .iter()
        .map(|&(o, r)| (r.unwrap() - o) as f64 / 1e9)
        .collect();
    ttr.sort_by(f64::total_cmp);
    assert_ne!(ttr[0], ttr[1], "two different times to restore");
    x.exact("momentum_recovery_incidents_total", sl, 2.0);
    x.exact("momentum_recovery_incident_open", sl, 0.0);
    x.summary(
        "momentum_recovery_time_to_restore_seconds",
        sl,
        2,
        ttr.iter().sum(),
        &[
            ("0.5", nearest_rank(&ttr, 0.5)),
            ("0.9", nearest_rank(&ttr, 0.9)),
        ],
        true,
    );

    // Deployments of shop: the first span of each new version, and the rollback to v2 at
    // the last span of v3 (v3 silent for the 10m quiet period after it).
    let first_of = |v: &str| shop.spans.iter().find(|s| s.version == v).unwrap().end;
    let last_v3 = shop
        .spans
        .iter()
        .rev()
        .find(|s| s.version == "v3")
        .unwrap()
        .end;
    // (time, revision, undone by a rollback within the hour)
    let deployments = [
        (first_of("v2"), "v2", false),
        (first_of("v3"), "v3", true),
        (last_v3, "v2", false),
        (first_of("v4"), "v4", false),
    ];
    let (cfw, quiet) = (HOUR, 10 * MIN);
    let (mut succeeded, mut failed, mut pending) = (0u64, 0u64, 0u64);
    for &(t, _, rolled_back) in &deployments {
        if t + cfw + quiet > c {
            pending += 1;
        } else if rolled_back || incidents.iter().any(|&(o, _)| o >= t && o <= t + cfw) {
            failed += 1;
        } else {
            succeeded += 1;
        }
    }
    assert_eq!(
        (succeeded, failed, pending),
        (2, 1, 1),
        "the script's outcomes"
    );
    x.exact(
        "momentum_delivery_deployments_total",
        &with(sl, &[("result", "succeeded")]),
        succeeded as f64,
    );
    x.exact(
        "momentum_delivery_deployments_total",
        &with(sl, &[("result", "failed")]),
        failed as f64,
    );
    x.exact("momentum_delivery_deployments_pending", sl, pending as f64);
    x.exact("momentum_delivery_rollbacks_total", sl, 1.0);
    let seen_days = (c - shop.first()) as f64 / DAY as f64;
    let frequency = deployments.len() as f64 / seen_days;
    x.exact("momentum_delivery_deploy_frequency_per_day", sl, frequency);
    let cfr = failed as f64 / (failed + succeeded) as f64;
    x.exact("momentum_delivery_change_failure_ratio", sl, cfr);
    // Lead time: deployment − start of the earliest run of its revision (runs of `ci`).
    let mut leads: Vec<f64> = deployments
        .iter()
        .map(|&(t, rev, _)| {
            let start = ci
                .events
                .iter()
                .filter(|s| s.run.is_some_and(|r| r.3 == rev))
                .map(|s| s.end - s.lat)
                .min()
                .unwrap();
            (t - start) as f64 / 1e9
        })
        .collect();
    leads.sort_by(f64::total_cmp);
    x.summary(
        "momentum_delivery_lead_time_seconds",
        sl,
        leads.len() as u64,
        leads.iter().sum(),
        &[
            ("0.5", nearest_rank(&leads, 0.5)),
            ("0.9", nearest_rank(&leads, 0.9)),
        ],
        true,
    );

    // Delivery of the pairs without deployments: counters at 0, nothing pending, a
    // frequency of 0 once seen for an hour.
    for (_, labels, p) in &pairs[1..] {
        for result in ["succeeded", "failed"] {
            x.exact(
                "momentum_delivery_deployments_total",
                &with(labels, &[("result", result)]),
                0.0,
            );
        }
        x.exact("momentum_delivery_deployments_pending", labels, 0.0);
        x.exact("momentum_delivery_rollbacks_total", labels, 0.0);
        assert!(p.clock() - p.first() > HOUR);
        x.exact("momentum_delivery_deploy_frequency_per_day", labels, 0.0);
    }

    // Pipelines of ci: runs by result, durations (nearest rank), failed / runs.
    let cl = pairs[2].1;
    let runs: Vec<&&Sp> = ci.events.iter().filter(|s| s.run.is_some()).collect();
    for result in ["success", "failure"] {
        let n = runs.iter().filter(|s| s.run.unwrap().1 == result).count();
        x.exact(
            "momentum_cicd_pipeline_runs_total",
            &with(cl, &[("cicd_pipeline_name", "build"), ("result", result)]),
            n as f64,
        );
    }
    let mut durations: Vec<f64> = runs.iter().map(|s| s.lat as f64 / 1e9).collect();
    durations.sort_by(f64::total_cmp);
    let pl = with(cl, &[("cicd_pipeline_name", "build")]);
    x.summary(
        "momentum_cicd_pipeline_duration_seconds",
        &pl,
        durations.len() as u64,
        durations.iter().sum(),
        &[
            ("0.5", nearest_rank(&durations, 0.5)),
            ("0.9", nearest_rank(&durations, 0.9)),
        ],
        true,
    );
    x.exact("momentum_cicd_pipeline_failure_ratio", &pl, 0.25);

    // The index: components from the DORA anchors, the mean of those present.
    let throughput = {
        let a: Vec<(f64, f64)> = [
            (1.0 / 180.0, 0.25),
            (1.0 / 30.0, 0.5),
            (1.0 / 7.0, 0.75),
            (1.0, 1.0),
        ]
        .iter()
        .map(|&(x, y)| (f64::log10(x), y))
        .collect();
        interpolate(&a, frequency.log10())
    };
    let stability = interpolate(
        &[
            (0.05, 1.0),
            (0.10, 0.75),
            (0.15, 0.5),
            (0.64, 0.25),
            (1.0, 0.0),
        ],
        cfr,
    );
    let components = [
        ("throughput", throughput),
        (
            "lead_time",
            duration_score(nearest_rank(&leads, 0.5).unwrap()),
        ),
        ("stability", stability),
        ("recovery", duration_score(nearest_rank(&ttr, 0.5).unwrap())),
        (
            "reliability",
            budgets.iter().map(|b| b.clamp(0.0, 1.0)).sum::<f64>() / 2.0,
        ),
    ];
    for (name, v) in components {
        x.exact(
            "momentum_index_component",
            &with(sl, &[("component", name)]),
            v,
        );
    }
    x.exact(
        "momentum_index",
        sl,
        100.0 * components.iter().map(|c| c.1).sum::<f64>() / 5.0,
    );
    // search and ci: throughput 0 (no deployment, seen over an hour) is their only
    // component.
    for (_, labels, _) in &pairs[1..] {
        x.exact(
            "momentum_index_component",
            &with(labels, &[("component", "throughput")]),
            0.0,
        );
        x.exact("momentum_index", labels, 0.0);
    }
    (x, ttr)
}

// ------------------------------------------------------------------ OTLP push → samples

/// The Prometheus name of an OTLP metric, as the table in the README names them.
fn prom_name(otlp: &str) -> Option<&'static str> {
    Some(match otlp {
        "momentum.sli.requests" => "momentum_sli_requests_total",
        "momentum.sli.errors" => "momentum_sli_errors_total",
        "momentum.sli.latency" => "momentum_sli_latency_seconds",
        "momentum.sli.availability" => "momentum_sli_availability_ratio",
        "momentum.operation.requests" => "momentum_operation_requests_total",
        "momentum.operation.errors" => "momentum_operation_errors_total",
        "momentum.operation.latency" => "momentum_operation_latency_seconds",
        "momentum.slo.burn_rate" => "momentum_slo_burn_rate",
        "momentum.slo.error_budget.remaining" => "momentum_slo_error_budget_remaining_ratio",
        "momentum.slo.alert" => "momentum_slo_alert",
        "momentum.slo.alerts" => "momentum_slo_alerts_total",
        "momentum.delivery.deployments" => "momentum_delivery_deployments_total",
        "momentum.delivery.deployments.pending" => "momentum_delivery_deployments_pending",
        "momentum.delivery.rollbacks" => "momentum_delivery_rollbacks_total",
        "momentum.delivery.deploy_frequency" => "momentum_delivery_deploy_frequency_per_day",
        "momentum.delivery.lead_time" => "momentum_delivery_lead_time_seconds",
        "momentum.delivery.change_failure" => "momentum_delivery_change_failure_ratio",
        "momentum.recovery.incidents" => "momentum_recovery_incidents_total",
        "momentum.recovery.incident_open" => "momentum_recovery_incident_open",
        "momentum.recovery.time_to_restore" => "momentum_recovery_time_to_restore_seconds",
        "momentum.cicd.pipeline.runs" => "momentum_cicd_pipeline_runs_total",
        "momentum.cicd.pipeline.duration" => "momentum_cicd_pipeline_duration_seconds",
        "momentum.cicd.pipeline.failure" => "momentum_cicd_pipeline_failure_ratio",
        "momentum.index" => "momentum_index",
        "momentum.index.component" => "momentum_index_component",
        _ => return None,
    })
}

/// The owned families of one OTLP push, as Prometheus samples (attribute keys with `.`
/// as `_`; a summary point as `_count`, `_sum` and one sample per quantile).
fn push_samples(req: &ExportMetricsServiceRequest) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    let mut put = |name: String, l: BTreeMap<String, String>, v: f64| {
        assert!(
            out.insert((name.clone(), l.clone()), v).is_none(),
            "duplicate {name} {l:?}"
        );
    };
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let name = prom_name(&m.name);
        let labels = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            attrs
                .iter()
                .map(|a| {
                    let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => panic!("{}: attribute {} is {other:?}", m.name, a.key),
                    };
                    (a.key.replace('.', "_"), v)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => panic!("{}: a point without a value", m.name),
        };
        match (&m.data, name) {
            (_, None) => assert!(
                !m.name.starts_with("momentum.sli")
                    && !m.name.starts_with("momentum.slo")
                    && !m.name.starts_with("momentum.delivery"),
                "{} has no Prometheus name in the table",
                m.name
            ),
            (Some(metric::Data::Sum(s)), Some(n)) => {
                for p in &s.data_points {
                    put(n.to_string(), labels(&p.attributes), number(p));
                }
            }
            (Some(metric::Data::Gauge(g)), Some(n)) => {
                for p in &g.data_points {
                    put(n.to_string(), labels(&p.attributes), number(p));
                }
            }
            (Some(metric::Data::Summary(s)), Some(n)) => {
                for p in &s.data_points {
                    let l = labels(&p.attributes);
                    put(format!("{n}_count"), l.clone(), p.count as f64);
                    put(format!("{n}_sum"), l.clone(), p.sum);
                    for q in &p.quantile_values {
                        let mut ql = l.clone();
                        ql.insert("quantile".into(), format!("{}", q.quantile));
                        put(n.to_string(), ql, q.value);
                    }
                }
            }
            (other, Some(n)) => panic!("{n}: unexpected data {other:?}"),
        }
    }
    out
}

// ------------------------------------------------------------------ the test

#[test]
fn every_exported_family_equals_the_rules_computed_from_the_spans_sent() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // The history ends at the last hour boundary at least 5 minutes ago.
    let e = (now - 5 * MIN) / HOUR * HOUR;
    let all = history(e);
    let (want, ttr) = expected(&all);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sink, captured) = start_sink(&rt);
    let prom = start_prometheus();
    let archive = tempfile::tempdir().unwrap();
    let p = Proc::start(&config_yaml(&format!(
        "archive: {{ dir: {} }}\nslos:\n  - service: shop\n    window: 30d\n    objectives:\n      availability: 99.9\n      latency: {{ threshold: 300ms, target: 99 }}\nexporters:\n  otlp: {{ endpoint: http://{sink}, protocol: grpc, interval: 1s, forward: [] }}\n  remote_write: {{ endpoint: http://{}/api/v1/write, interval: 1s }}\n",
        archive.path().display(),
        prom.addr
    )));
    grpc_export(&p.grpc, requests(&all));

    // /metrics once every span is counted and the state has settled (two equal reads).
    let total = all.iter().filter(|s| s.request()).count() as f64;
    let mut previous = String::new();
    let m = poll(60, "every span counted and /metrics settled", |last| {
        let m = p.metrics();
        let samples: f64 = ["shop", "search", "ci"]
            .iter()
            .filter_map(|s| {
                common::metric(&m, "momentum_sli_requests_total", &[("service_name", s)])
            })
            .sum();
        let owned: Vec<&str> = m
            .lines()
            .filter(|l| l.split(['{', ' ']).next().is_some_and(owned))
            .collect();
        let text = owned.join("\n");
        let settled = samples == total && text == previous;
        *last = format!("{samples} of {total} requests counted");
        previous = text;
        settled.then_some(m)
    });
    let got = parse_exposition(&m);
    check("/metrics", &got, &want);

    // The OTLP push carries the same samples.
    let pushed = poll(30, "an OTLP push equal to /metrics", |last| {
        let c = captured.metrics.lock().unwrap();
        let latest = push_samples(&c.last()?.2);
        *last = format!("{} samples in the latest push", latest.len());
        (latest == got).then_some(latest)
    });
    check("OTLP push", &pushed, &want);

    // Remote write: Prometheus holds the same series with the same values.
    let query = "%7B__name__%3D~%22momentum_(sli%7Coperation%7Cslo%7Cdelivery%7Crecovery%7Ccicd%7Cindex).*%22%7D";
    let written = poll(
        60,
        "Prometheus to hold every series remote-written",
        |last| {
            let series: BTreeMap<Key, f64> = prom_query(&prom.addr, query)
                .into_iter()
                .map(|(labels, v)| {
                    let mut l: BTreeMap<String, String> = labels
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    let name = l.remove("__name__").unwrap();
                    ((name, l), v)
                })
                .filter(|((n, _), _)| owned(n))
                .collect();
            *last = format!("{} of {} series", series.len(), got.len());
            (series.len() == got.len()).then_some(series)
        },
    );
    check("remote write", &written, &want);

    // The live median time to restore, then the report's over the same archive.
    let (status, body) = p.admin_get("/api/v1/services/shop?environment=production");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let live = v["slo"]["time_to_restore_median_seconds"].as_f64();
    assert_eq!(live, nearest_rank(&ttr, 0.5), "live median of {ttr:?}");
    assert!(p.stop().success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_momentum"))
        .args(["report", "--archive"])
        .arg(archive.path())
        .args(["--format", "json", "--out"])
        .arg(archive.path().join("report.json"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.path().join("report.json")).unwrap())
            .unwrap();
    let shop = r["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "shop")
        .unwrap_or_else(|| panic!("no shop in {r}"));
    assert_eq!(shop["incidents"], 2, "{shop}");
    assert_eq!(
        shop["time_to_restore_s"].as_f64(),
        live,
        "report and live agree on the median of {ttr:?}"
    );
}

/// Exemplars: the API lists, per operation, the slowest request of each of the last five
/// minutes (three, slowest first) and the latest errors (newest first) by trace id; the
/// OpenMetrics exposition attaches the latest error's trace to the operation's and the
/// pair's errors counters, and the Prometheus text has no exemplars.
#[test]
fn an_operations_slowest_and_failing_traces_are_its_exemplars() {
    let p = Proc::start(&config_yaml(""));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // 20 requests of GET /a, 5 s apart over the last 100 s: trace i lasts a latency of
    // its own; traces 5 and 9 fail
    let lat = |i: u64| (1 + (i * 7) % 20) * MS;
    let end = |i: u64| now - (20 - i) * 5 * S;
    let spans: Vec<Span> = (0..20u64)
        .map(|i| Span {
            trace_id: vec![i as u8 + 1; 16],
            span_id: vec![1; 8],
            name: "GET /a".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: end(i) - lat(i),
            end_time_unix_nano: end(i),
            status: [5, 9].contains(&i).then(|| Status {
                code: status::StatusCode::Error as i32,
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    grpc_export(
        &p.grpc,
        vec![ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "ex")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }],
    );
    let hex = |i: u64| format!("{:02x}", i + 1).repeat(16);
    // the slowest of each minute, slowest first, three of them
    let mut by_minute: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..20 {
        let m = end(i) / MIN;
        let best = by_minute.entry(m).or_insert(i);
        if lat(i) > lat(*best) {
            *best = i;
        }
    }
    let mut slowest: Vec<u64> = by_minute.into_values().collect();
    slowest.sort_by_key(|&i| std::cmp::Reverse(lat(i)));
    slowest.truncate(3);
    let doc = poll(30, "the operation's exemplars", |last| {
        let (status, body) = p.admin_get("/api/v1/services/ex");
        let d: serde_json::Value = serde_json::from_str(&body).ok()?;
        *last = body;
        (status == 200 && d["operations"][0]["errors_total"] == 2).then_some(d)
    });
    let op = &doc["operations"][0];
    let ids = |k: &str| -> Vec<String> {
        op[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["trace_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids("slowest_5m"),
        slowest.iter().map(|&i| hex(i)).collect::<Vec<_>>()
    );
    assert_eq!(ids("errors_5m"), [hex(9), hex(5)]);
    assert!(
        (op["slowest_5m"][0]["latency_seconds"].as_f64().unwrap() - lat(slowest[0]) as f64 * 1e-9)
            .abs()
            < 1e-12
    );
    let (status, _, body) = common::http_request(
        &p.admin,
        "GET",
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
        &[],
    );
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("service_name=\"ex\""))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .to_string()
    };
    let ts = format!("{:.3}", end(9) as f64 * 1e-9);
    for name in [
        "momentum_operation_errors_total{",
        "momentum_sli_errors_total{",
    ] {
        assert!(
            line(name).ends_with(&format!(" 2 # {{trace_id=\"{}\"}} 1 {ts}", hex(9))),
            "{}",
            line(name)
        );
    }
    assert!(
        !p.metrics().contains("# {trace_id"),
        "no exemplars in the Prometheus text"
    );
    assert!(p.stop().success());
}
