//! OTLP/JSON → OTLP protobuf, for traces, metrics and logs.
//!
//! The body is parsed with opentelemetry-proto's serde types and re-encoded with prost, so
//! the rest of the receiver only ever sees protobuf (traces then go through
//! [`super::decode::decode_traces`]). The OTLP JSON mapping: lowerCamelCase field names;
//! trace and span ids as hex; 64-bit integers as a string or a number; enums as integers;
//! unknown fields ignored.
//!
//! Where the crate's serde falls short of that mapping (or of the protobuf JSON rules OTLP
//! builds on), the parsed `serde_json::Value` is normalised first ([`normalize`]):
//!
//! - `null` fields are dropped (protobuf JSON: null means the default);
//! - enum fields may also be given by name (`"SPAN_KIND_SERVER"`) or as a numeric string;
//! - 32-bit integers may be strings (`"droppedAttributesCount": "2"`), and integral
//!   floats are accepted for integers (`1.5e18` for a timestamp);
//! - doubles may be numeric strings, and in metric points (`asDouble`, `sum`, `min`,
//!   `max`, `zeroThreshold`, `explicitBounds`) `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - `{"arrayValue": {}}` / `{"kvlistValue": {}}` (no `values`) and a `KeyValue` without
//!   `key` are accepted as empty.
//!
//! And after deserialising metrics, [`check_metrics`] turns a silent loss into an error:
//! the crate reads the metric `data` oneof and the point/exemplar `value` oneofs through
//! `#[serde(flatten)]`, which yields "absent" instead of an error when their content is
//! invalid, so a malformed histogram would otherwise vanish from an accepted request.
//!
//! Left as errors: `"NaN"`/`"Infinity"` in an attribute's `doubleValue`, and a body that
//! is not a JSON object.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, AggregationTemporality, Exemplar, Metric,
    NumberDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use prost::Message;
use serde::de::{DeserializeOwned, Error as _};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::decode::DecodeError;
use crate::signal::Signal;

/// Converts an OTLP/JSON request body to the protobuf encoding of the same request.
pub fn json_to_protobuf(signal: Signal, body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut v: Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(invalid("the request body must be a JSON object"));
    }
    normalize(&mut v, "", "");
    Ok(match signal {
        Signal::Traces => ExportTraceServiceRequest::deserialize(&v)?.encode_to_vec(),
        Signal::Metrics => {
            let mut req = ExportMetricsServiceRequest::deserialize(&v)?;
            check_metrics(&v, &mut req)?;
            req.encode_to_vec()
        }
        Signal::Logs => ExportLogsServiceRequest::deserialize(&v)?.encode_to_vec(),
    })
}

fn invalid(msg: impl std::fmt::Display) -> DecodeError {
    DecodeError::Json(serde_json::Error::custom(msg))
}

/// Stand-in for `"NaN"` while the value passes through `serde_json::Value`, which holds
/// finite numbers only; `"Infinity"` uses `f64::MAX` (so a point of exactly `f64::MAX`
/// reads as infinity). Swapped back by [`check_metrics`].
const MARK_NAN: f64 = f64::from_bits(0x7FEF_FFFF_FFFF_FFFE);

/// Rewrites `v` (found under `key`, in an object found under `parent`) into the forms the
/// crate's serde accepts. See the module docs for the rules.
fn normalize(v: &mut Value, key: &str, parent: &str) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            let key_value = matches!(key, "attributes" | "filteredAttributes" | "metadata")
                || (key == "values" && parent == "kvlistValue");
            if key_value && !map.contains_key("key") {
                map.insert("key".into(), Value::String(String::new()));
            }
            if matches!(key, "arrayValue" | "kvlistValue") && !map.contains_key("values") {
                map.insert("values".into(), Value::Array(Vec::new()));
            }
            for (k, child) in map.iter_mut() {
                scalar(k, child);
                normalize(child, k, key);
            }
        }
        Value::Array(items) => {
            for item in items {
                scalar(key, item);
                normalize(item, key, parent);
            }
        }
        _ => {}
    }
}

/// Per-field fixes of a scalar value, by field name (OTLP field names are unique enough:
/// user attribute names are values of `key`, never JSON keys).
fn scalar(key: &str, v: &mut Value) {
    match key {
        "timeUnixNano"
        | "startTimeUnixNano"
        | "endTimeUnixNano"
        | "observedTimeUnixNano"
        | "count"
        | "zeroCount"
        | "bucketCounts"
        | "asInt"
        | "intValue" => integral(v),
        "droppedAttributesCount"
        | "droppedEventsCount"
        | "droppedLinksCount"
        | "flags"
        | "scale"
        | "offset"
        | "keyStrindex" => integer(v, |_| None),
        "kind" => integer(v, |s| SpanKind::from_str_name(s).map(|e| e as i32)),
        "code" => integer(v, |s| StatusCode::from_str_name(s).map(|e| e as i32)),
        "severityNumber" => integer(v, |s| SeverityNumber::from_str_name(s).map(|e| e as i32)),
        "aggregationTemporality" => integer(v, |s| {
            AggregationTemporality::from_str_name(s).map(|e| e as i32)
        }),
        "asDouble" | "sum" | "min" | "max" | "zeroThreshold" | "explicitBounds" => double(v, true),
        "doubleValue" => double(v, false),
        _ => {}
    }
}

/// An integral float (`1.5e18`) as an integer.
fn integral(v: &mut Value) {
    let Value::Number(n) = v else { return };
    let Some(f) = n.as_f64().filter(|_| n.is_f64()) else {
        return;
    };
    if f.fract() != 0.0 || !f.is_finite() {
        return;
    }
    // `as` saturates; the bounds keep it exact (2^64 and -2^63 are exact f64s).
    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
        *v = Value::Number(Number::from(f as u64));
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
        *v = Value::Number(Number::from(f as i64));
    }
}

/// A 32-bit integer or enum given as a string (a number, or a name `by_name` knows).
fn integer(v: &mut Value, by_name: impl Fn(&str) -> Option<i32>) {
    if let Value::String(s) = v {
        if let Some(i) = by_name(s) {
            *v = Value::Number(i.into());
        } else if let Ok(i) = s.parse::<i64>() {
            *v = Value::Number(i.into());
        }
        return;
    }
    integral(v);
}

fn double(v: &mut Value, special: bool) {
    let Value::String(s) = v else { return };
    let f = match s.as_str() {
        "NaN" if special => MARK_NAN,
        "Infinity" if special => f64::MAX,
        "-Infinity" if special => -f64::MAX,
        s => match s.parse::<f64>() {
            Ok(f) if f.is_finite() => f,
            _ => return,
        },
    };
    if let Some(n) = Number::from_f64(f) {
        *v = Value::Number(n);
    }
}

fn unmark(f: &mut f64) {
    if *f == MARK_NAN {
        *f = f64::NAN;
    } else if *f == f64::MAX {
        *f = f64::INFINITY;
    } else if *f == -f64::MAX {
        *f = f64::NEG_INFINITY;
    }
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The error `T` gives for `{key: v}` alone, where a flattened oneof hid it.
fn strict<T: DeserializeOwned>(key: &str, v: &Value, what: &str) -> DecodeError {
    let one = Value::Object(Map::from_iter([(key.to_string(), v.clone())]));
    match T::deserialize(&one) {
        Err(e) => invalid(format!("{what}: {e}")),
        Ok(_) => invalid(format!("{what}: invalid `{key}`")),
    }
}

/// Walks the JSON and the deserialised metrics side by side (serde keeps array order):
/// refuses oneofs the crate's flattening dropped, and puts NaN/infinities in place.
fn check_metrics(v: &Value, req: &mut ExportMetricsServiceRequest) -> Result<(), DecodeError> {
    for (rv, r) in items(v, "resourceMetrics").zip(&mut req.resource_metrics) {
        for (sv, s) in items(rv, "scopeMetrics").zip(&mut r.scope_metrics) {
            for (mv, m) in items(sv, "metrics").zip(&mut s.metrics) {
                check_metric(mv, m)?;
            }
        }
    }
    Ok(())
}

const DATA_KEYS: [&str; 5] = [
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
];

fn check_metric(mv: &Value, m: &mut Metric) -> Result<(), DecodeError> {
    let what = format!("metric {:?}", m.name);
    let Some(data) = &mut m.data else {
        return match DATA_KEYS.iter().find_map(|&k| Some((k, mv.get(k)?))) {
            Some((k, dv)) => Err(strict::<Data>(k, dv, &what)),
            None => Ok(()),
        };
    };
    let key = match data {
        Data::Gauge(_) => "gauge",
        Data::Sum(_) => "sum",
        Data::Histogram(_) => "histogram",
        Data::ExponentialHistogram(_) => "exponentialHistogram",
        Data::Summary(_) => "summary",
    };
    let dv = mv.get(key).unwrap_or(&Value::Null);
    let points = items(dv, "dataPoints");
    match data {
        Data::Gauge(g) => number_points(points, &mut g.data_points, &what),
        Data::Sum(s) => number_points(points, &mut s.data_points, &what),
        Data::Histogram(h) => {
            for (pv, p) in points.zip(&mut h.data_points) {
                exemplars(pv, &mut p.exemplars, &what)?;
                p.sum
                    .iter_mut()
                    .chain(&mut p.min)
                    .chain(&mut p.max)
                    .for_each(unmark);
                p.explicit_bounds.iter_mut().for_each(unmark);
            }
            Ok(())
        }
        Data::ExponentialHistogram(h) => {
            for (pv, p) in points.zip(&mut h.data_points) {
                exemplars(pv, &mut p.exemplars, &what)?;
                p.sum
                    .iter_mut()
                    .chain(&mut p.min)
                    .chain(&mut p.max)
                    .for_each(unmark);
                unmark(&mut p.zero_threshold);
            }
            Ok(())
        }
        Data::Summary(s) => {
            s.data_points.iter_mut().for_each(|p| unmark(&mut p.sum));
            Ok(())
        }
    }
}

fn number_points<'a>(
    values: impl Iterator<Item = &'a Value>,
    points: &mut [NumberDataPoint],
    what: &str,
) -> Result<(), DecodeError> {
    for (pv, p) in values.zip(points) {
        match &mut p.value {
            None => {
                if let Some((k, x)) = ["asInt", "asDouble"]
                    .iter()
                    .find_map(|&k| Some((k, pv.get(k)?)))
                {
                    return Err(strict::<number_data_point::Value>(k, x, what));
                }
            }
            Some(number_data_point::Value::AsDouble(f)) => unmark(f),
            Some(number_data_point::Value::AsInt(_)) => {}
        }
        exemplars(pv, &mut p.exemplars, what)?;
    }
    Ok(())
}

fn exemplars(pv: &Value, exemplars: &mut [Exemplar], what: &str) -> Result<(), DecodeError> {
    for (ev, e) in items(pv, "exemplars").zip(exemplars) {
        match &mut e.value {
            None => {
                if let Some((k, x)) = ["asInt", "asDouble"]
                    .iter()
                    .find_map(|&k| Some((k, ev.get(k)?)))
                {
                    return Err(strict::<exemplar::Value>(k, x, what));
                }
            }
            Some(exemplar::Value::AsDouble(f)) => unmark(f),
            Some(exemplar::Value::AsInt(_)) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
