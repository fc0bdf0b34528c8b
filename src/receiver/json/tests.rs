//! The OTLP JSON mapping, field by field, and the upstream example files.

use super::*;
use crate::model::kind;
use crate::receiver::decode::{decode_traces, DecodeOptions};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

fn traces(json: &str) -> ExportTraceServiceRequest {
    let pb = json_to_protobuf(Signal::Traces, json.as_bytes()).expect(json);
    ExportTraceServiceRequest::decode(&pb[..]).unwrap()
}

fn metrics(json: &str) -> ExportMetricsServiceRequest {
    let pb = json_to_protobuf(Signal::Metrics, json.as_bytes()).expect(json);
    ExportMetricsServiceRequest::decode(&pb[..]).unwrap()
}

fn logs(json: &str) -> ExportLogsServiceRequest {
    let pb = json_to_protobuf(Signal::Logs, json.as_bytes()).expect(json);
    ExportLogsServiceRequest::decode(&pb[..]).unwrap()
}

fn span_json(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

fn metric_json(metric: &str) -> String {
    format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{metric}]}}]}}]}}"#)
}

fn log_json(record: &str) -> String {
    format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{record}]}}]}}]}}"#)
}

fn one_span(json: &str) -> opentelemetry_proto::tonic::trace::v1::Span {
    traces(&span_json(json)).resource_spans[0].scope_spans[0].spans[0].clone()
}

fn one_metric(json: &str) -> Metric {
    metrics(&metric_json(json)).resource_metrics[0].scope_metrics[0].metrics[0].clone()
}

fn one_log(json: &str) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    logs(&log_json(json)).resource_logs[0].scope_logs[0].log_records[0].clone()
}

fn refused(signal: Signal, json: &str) -> String {
    match json_to_protobuf(signal, json.as_bytes()) {
        Ok(pb) => panic!("accepted {json}: {pb:?}"),
        Err(e) => e.to_string(),
    }
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp-json/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

#[test]
fn upstream_examples_decode() {
    let pb = json_to_protobuf(Signal::Traces, &fixture("trace.json")).unwrap();
    let t = ExportTraceServiceRequest::decode(&pb[..]).unwrap();
    let span = &t.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(
        span.parent_span_id,
        [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]
    );

    let pb = json_to_protobuf(Signal::Metrics, &fixture("metrics.json")).unwrap();
    let m = ExportMetricsServiceRequest::decode(&pb[..]).unwrap();
    let metrics = &m.resource_metrics[0].scope_metrics[0].metrics;
    let kinds: Vec<&str> = metrics
        .iter()
        .map(|m| match m.data {
            Some(Data::Sum(_)) => "sum",
            Some(Data::Gauge(_)) => "gauge",
            Some(Data::Histogram(_)) => "histogram",
            Some(Data::ExponentialHistogram(_)) => "exponentialHistogram",
            Some(Data::Summary(_)) => "summary",
            None => "none",
        })
        .collect();
    assert_eq!(kinds, ["sum", "gauge", "histogram", "exponentialHistogram"]);
    let Some(Data::Histogram(h)) = &metrics[2].data else {
        unreachable!()
    };
    assert_eq!(h.data_points[0].count, 2);
    assert_eq!(h.data_points[0].bucket_counts, [1, 1]);

    for name in ["logs.json", "events.json"] {
        let pb = json_to_protobuf(Signal::Logs, &fixture(name)).unwrap();
        let l = ExportLogsServiceRequest::decode(&pb[..]).unwrap();
        let rec = &l.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.time_unix_nano, 1_544_712_660_300_000_000, "{name}");
        assert!(rec.body.is_some(), "{name}");
    }
    assert_eq!(
        logs(std::str::from_utf8(&fixture("events.json")).unwrap()).resource_logs[0].scope_logs[0]
            .log_records[0]
            .event_name,
        "browser.page_view"
    );
}

#[test]
fn trace_example_round_trips_through_the_lean_decoder() {
    let pb = json_to_protobuf(Signal::Traces, &fixture("trace.json")).unwrap();
    let b = decode_traces(pb.into(), &DecodeOptions::default()).unwrap();
    let buf = &b.buf[..];
    assert_eq!(b.resources.len(), 1);
    assert_eq!(b.resources[0].service.as_str(buf), "my.service");
    let [s] = &b.spans[..] else {
        panic!("one span")
    };
    assert_eq!(s.name.as_str(buf), "I'm a server span");
    assert_eq!(s.kind, kind::SERVER);
    assert_eq!(s.start_ns, 1_544_712_660_000_000_000);
    assert_eq!(s.end_ns, 1_544_712_661_000_000_000);
}

#[test]
fn ids_are_hex_in_either_case() {
    let lower =
        one_span(r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#);
    let upper =
        one_span(r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174"}"#);
    assert_eq!(lower, upper);
    assert_eq!(
        lower.span_id,
        [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
    );
    assert!(one_span(r#"{"traceId":""}"#).trace_id.is_empty());
    // base64 (the generic protobuf JSON form of bytes) is not OTLP's id encoding
    refused(
        Signal::Traces,
        &span_json(r#"{"traceId":"W47/95gDgQPSabYzgT/GDA=="}"#),
    );
    refused(
        Signal::Traces,
        &span_json(r#"{"spanId":"eee19b7ec3c1b17"}"#),
    );
    let log =
        one_log(r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#);
    assert_eq!(log.trace_id, lower.trace_id);
    let m = one_metric(
        r#"{"name":"m","gauge":{"dataPoints":[{"asInt":1,"exemplars":[{"asInt":1,"spanId":"EEE19B7EC3C1B174","traceId":"5b8efff798038103d269b633813fc60c"}]}]}}"#,
    );
    let Some(Data::Gauge(g)) = m.data else {
        unreachable!()
    };
    assert_eq!(g.data_points[0].exemplars[0].span_id, lower.span_id);
}

/// Every 64-bit integer field, written as a string, a number and an integral float.
#[test]
fn int64_fields_accept_a_string_or_a_number() {
    let forms = [r#""1234""#, "1234", "1.234e3"];
    let traces_t = r#"{"startTimeUnixNano":@N,"endTimeUnixNano":@N,"events":[{"timeUnixNano":@N}],
        "attributes":[{"key":"k","value":{"intValue":@N}}]}"#;
    let metrics_t = r#"[
        {"name":"g","gauge":{"dataPoints":[{"startTimeUnixNano":@N,"timeUnixNano":@N,"asInt":@N,
            "exemplars":[{"timeUnixNano":@N,"asInt":@N}]}]}},
        {"name":"h","histogram":{"dataPoints":[{"count":@N,"bucketCounts":[@N,@N]}]}},
        {"name":"e","exponentialHistogram":{"dataPoints":[{"count":@N,"zeroCount":@N,
            "positive":{"bucketCounts":[@N]}}]}},
        {"name":"s","summary":{"dataPoints":[{"count":@N}]}}]"#;
    let logs_t = r#"{"timeUnixNano":@N,"observedTimeUnixNano":@N,"body":{"intValue":@N}}"#;
    let enc = |signal, t: &str, n: &str| {
        let t = t.replace("@N", n);
        let body = match signal {
            Signal::Traces => span_json(&t),
            Signal::Metrics => {
                format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":{t}}}]}}]}}"#)
            }
            Signal::Logs => log_json(&t),
        };
        json_to_protobuf(signal, body.as_bytes()).expect(&body)
    };
    for (signal, t) in [
        (Signal::Traces, traces_t),
        (Signal::Metrics, metrics_t),
        (Signal::Logs, logs_t),
    ] {
        let want = enc(signal, t, forms[0]);
        for form in &forms[1..] {
            assert_eq!(enc(signal, t, form), want, "{signal:?} {form}");
        }
    }
    let s = one_span(&traces_t.replace("@N", "1234"));
    assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (1234, 1234));
    assert_eq!(s.events[0].time_unix_nano, 1234);
    assert_eq!(
        s.attributes[0].value.as_ref().unwrap().value,
        Some(Av::IntValue(1234))
    );
    let m = metrics(&format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":{}}}]}}]}}"#,
        metrics_t.replace("@N", "1234")
    ));
    let ms = &m.resource_metrics[0].scope_metrics[0].metrics;
    let Some(Data::Histogram(h)) = &ms[1].data else {
        unreachable!()
    };
    assert_eq!(
        (h.data_points[0].count, &h.data_points[0].bucket_counts[..]),
        (1234, &[1234, 1234][..])
    );
    let Some(Data::ExponentialHistogram(e)) = &ms[2].data else {
        unreachable!()
    };
    assert_eq!(e.data_points[0].zero_count, 1234);
    assert_eq!(
        e.data_points[0].positive.as_ref().unwrap().bucket_counts,
        [1234]
    );
    let Some(Data::Gauge(g)) = &ms[0].data else {
        unreachable!()
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsInt(1234))
    );
    assert_eq!(
        g.data_points[0].exemplars[0].value,
        Some(exemplar::Value::AsInt(1234))
    );
    let l = one_log(&logs_t.replace("@N", "1234"));
    assert_eq!((l.time_unix_nano, l.observed_time_unix_nano), (1234, 1234));

    // The full ranges, as strings and as numbers.
    for n in [r#""18446744073709551615""#, "18446744073709551615"] {
        assert_eq!(
            one_span(&format!(r#"{{"endTimeUnixNano":{n}}}"#)).end_time_unix_nano,
            u64::MAX
        );
    }
    for n in [r#""-9223372036854775808""#, "-9223372036854775808"] {
        let s = one_span(&format!(
            r#"{{"attributes":[{{"key":"k","value":{{"intValue":{n}}}}}]}}"#
        ));
        assert_eq!(
            s.attributes[0].value.as_ref().unwrap().value,
            Some(Av::IntValue(i64::MIN))
        );
    }
    refused(Signal::Traces, &span_json(r#"{"startTimeUnixNano":"12x"}"#));
    refused(Signal::Traces, &span_json(r#"{"startTimeUnixNano":1.5}"#));
    refused(Signal::Traces, &span_json(r#"{"startTimeUnixNano":-1}"#));
}

#[test]
fn enums_are_integers_and_names_are_accepted_too() {
    let by_int = one_span(r#"{"kind":2,"status":{"code":2}}"#);
    assert_eq!((by_int.kind, by_int.status.as_ref().unwrap().code), (2, 2));
    let by_name = one_span(r#"{"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}}"#);
    assert_eq!(by_int, by_name);
    assert_eq!(one_span(r#"{"kind":"3"}"#).kind, 3);
    assert_eq!(one_log(r#"{"severityNumber":9}"#).severity_number, 9);
    assert_eq!(
        one_log(r#"{"severityNumber":"SEVERITY_NUMBER_INFO"}"#).severity_number,
        9
    );
    for t in ["1", r#""AGGREGATION_TEMPORALITY_DELTA""#] {
        let m = one_metric(&format!(
            r#"{{"name":"x","sum":{{"aggregationTemporality":{t},"isMonotonic":true,"dataPoints":[{{"asInt":"1"}}]}}}}"#
        ));
        let Some(Data::Sum(s)) = m.data else {
            panic!("{t}")
        };
        assert_eq!(s.aggregation_temporality, 1);
    }
    refused(Signal::Traces, &span_json(r#"{"kind":"SERVER"}"#));
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let plain = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"v"}}]},
        "scopeSpans":[{"scope":{"name":"s"},"spans":[{"name":"n","status":{"code":1}}]}]}]}"#;
    let noisy = r#"{"x":1,"resourceSpans":[{"x":[1,{"y":null}],"resource":{"x":"y","attributes":[{"key":"k","x":2,"value":{"x":{"z":1},"stringValue":"v"}}]},
        "scopeSpans":[{"x":true,"scope":{"name":"s","x":1},"spans":[{"name":"n","x":{},"status":{"code":1,"x":0}}]}]}],"y":"z"}"#;
    assert_eq!(traces(plain), traces(noisy));
    let plain = metric_json(r#"{"name":"m","gauge":{"dataPoints":[{"asDouble":1.5}]}}"#);
    let noisy =
        metric_json(r#"{"name":"m","x":1,"gauge":{"x":2,"dataPoints":[{"asDouble":1.5,"x":[]}]}}"#);
    assert_eq!(metrics(&plain), metrics(&noisy));
    assert_eq!(
        logs(&log_json(r#"{"x":1,"body":{"x":1}}"#)),
        logs(&log_json(r#"{"body":{}}"#))
    );
}

#[test]
fn empty_objects_are_empty_requests() {
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        assert_eq!(json_to_protobuf(signal, b"{}").unwrap(), Vec::<u8>::new());
        assert_eq!(
            json_to_protobuf(signal, b" { } ").unwrap(),
            Vec::<u8>::new()
        );
    }
    assert_eq!(one_span("{}"), Default::default());
    assert_eq!(traces(r#"{"resourceSpans":[{}]}"#).resource_spans.len(), 1);
}

#[test]
fn field_names_are_lower_camel_case() {
    // Original (snake_case) names are not OTLP/JSON keys: they are unknown, so ignored.
    assert_eq!(traces(r#"{"resource_spans":[{}]}"#).resource_spans.len(), 0);
    let s = one_span(r#"{"start_time_unix_nano":"5","startTimeUnixNano":"7"}"#);
    assert_eq!(s.start_time_unix_nano, 7);
}

#[test]
fn nulls_empty_lists_and_missing_keys_take_defaults() {
    let s = one_span(
        r#"{"name":null,"kind":null,"traceId":null,"attributes":[
        {"key":"a","value":{"arrayValue":{}}},
        {"key":"b","value":{"kvlistValue":{"values":[{"value":{"stringValue":"x"}}]}}},
        {"value":{"stringValue":"no key"}},
        {"key":"c","value":null}]}"#,
    );
    assert_eq!((s.name.as_str(), s.kind), ("", 0));
    let a = &s.attributes;
    assert_eq!(
        a[0].value.as_ref().unwrap().value,
        Some(Av::ArrayValue(Default::default()))
    );
    let Some(Av::KvlistValue(kvl)) = &a[1].value.as_ref().unwrap().value else {
        panic!()
    };
    assert_eq!(kvl.values[0].key, "");
    assert_eq!(a[2].key, "");
    assert_eq!(a[3].value, None);
}

#[test]
fn doubles_accept_numeric_strings_and_special_values_in_points() {
    let m = one_metric(
        r#"{"name":"h","histogram":{"dataPoints":[{"count":"1","sum":"Infinity","min":"-Infinity","max":"NaN","explicitBounds":["1.5",2]}]}}"#,
    );
    let Some(Data::Histogram(h)) = m.data else {
        unreachable!()
    };
    let p = &h.data_points[0];
    assert_eq!(
        (p.sum, p.min),
        (Some(f64::INFINITY), Some(f64::NEG_INFINITY))
    );
    assert!(p.max.unwrap().is_nan());
    assert_eq!(p.explicit_bounds, [1.5, 2.0]);
    let m = one_metric(
        r#"{"name":"g","gauge":{"dataPoints":[{"asDouble":"NaN","exemplars":[{"asDouble":"-Infinity"}]},{"asDouble":"2.5"}]}}"#,
    );
    let Some(Data::Gauge(g)) = m.data else {
        unreachable!()
    };
    let Some(number_data_point::Value::AsDouble(f)) = g.data_points[0].value else {
        panic!()
    };
    assert!(f.is_nan());
    assert_eq!(
        g.data_points[0].exemplars[0].value,
        Some(exemplar::Value::AsDouble(f64::NEG_INFINITY))
    );
    assert_eq!(
        g.data_points[1].value,
        Some(number_data_point::Value::AsDouble(2.5))
    );
    let m = one_metric(
        r#"{"name":"s","summary":{"dataPoints":[{"sum":"NaN","quantileValues":[{"quantile":0.5,"value":"Infinity"}]}]}}"#,
    );
    let Some(Data::Summary(s)) = m.data else {
        unreachable!()
    };
    assert!(s.data_points[0].sum.is_nan());
    assert_eq!(s.data_points[0].quantile_values[0].value, f64::INFINITY);
    let s = one_span(r#"{"attributes":[{"key":"d","value":{"doubleValue":"0.25"}}]}"#);
    assert_eq!(
        s.attributes[0].value.as_ref().unwrap().value,
        Some(Av::DoubleValue(0.25))
    );
    // NaN in an attribute is not supported (see the module docs).
    refused(
        Signal::Traces,
        &span_json(r#"{"attributes":[{"key":"d","value":{"doubleValue":"NaN"}}]}"#),
    );
}

/// The crate reads these oneofs through `serde(flatten)`, which drops them silently when
/// invalid; the adapter must refuse the request instead.
#[test]
fn malformed_metric_data_is_refused_not_dropped() {
    for (metric, needle) in [
        (
            r#"{"name":"m1","sum":{"aggregationTemporality":"SOMETIMES","dataPoints":[]}}"#,
            "m1",
        ),
        (
            r#"{"name":"m2","histogram":{"dataPoints":[{"count":"many"}]}}"#,
            "m2",
        ),
        (
            r#"{"name":"m3","gauge":{"dataPoints":[{"asInt":"abc"}]}}"#,
            "m3",
        ),
        (
            r#"{"name":"m4","gauge":{"dataPoints":[{"asDouble":"fast"}]}}"#,
            "m4",
        ),
        (
            r#"{"name":"m5","sum":{"dataPoints":[{"asInt":1,"exemplars":[{"asInt":"x"}]}]}}"#,
            "m5",
        ),
        (
            r#"{"name":"m6","histogram":{"dataPoints":[{"exemplars":[{"asDouble":"y"}]}]}}"#,
            "m6",
        ),
        (r#"{"name":"m7","summary":"nope"}"#, "m7"),
    ] {
        let e = refused(Signal::Metrics, &metric_json(metric));
        assert!(e.contains(needle), "{metric}: {e}");
        assert!(e.starts_with("invalid OTLP/JSON"), "{e}");
    }
    // A metric with no data at all is fine.
    assert_eq!(one_metric(r#"{"name":"bare"}"#).data, None);
}

#[test]
fn bodies_that_are_not_json_objects_are_refused() {
    for body in [
        "[]",
        "null",
        r#""x""#,
        "1",
        "",
        "{",
        r#"{"resourceSpans":{}}"#,
    ] {
        let e = refused(Signal::Traces, body);
        assert!(e.starts_with("invalid OTLP/JSON: "), "{e}");
    }
    assert!(refused(Signal::Logs, "[{}]").contains("JSON object"));
}
