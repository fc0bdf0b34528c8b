//! OTLP/JSON → protobuf.

use super::decode::DecodeError;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;

/// The OTLP signal a body carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// traces
    Traces,
    /// metrics
    Metrics,
    /// logs
    Logs,
}

/// Converts.
pub fn json_to_protobuf(signal: Signal, body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    Ok(match signal {
        Signal::Traces => {
            serde_json::from_slice::<ExportTraceServiceRequest>(body)?.encode_to_vec()
        }
        Signal::Metrics => {
            serde_json::from_slice::<ExportMetricsServiceRequest>(body)?.encode_to_vec()
        }
        Signal::Logs => serde_json::from_slice::<ExportLogsServiceRequest>(body)?.encode_to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sig: Signal, s: &str) {
        let r = match sig {
            Signal::Traces => {
                serde_json::from_str::<ExportTraceServiceRequest>(s).map(|m| format!("{m:?}"))
            }
            Signal::Metrics => {
                serde_json::from_str::<ExportMetricsServiceRequest>(s).map(|m| format!("{m:?}"))
            }
            Signal::Logs => {
                serde_json::from_str::<ExportLogsServiceRequest>(s).map(|m| format!("{m:?}"))
            }
        };
        println!("PROBE {s}\n  => {r:?}\n");
    }

    #[test]
    fn probe_crate() {
        use Signal::*;
        let t = |span: &str| {
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
        };
        let a = |v: &str| t(&format!(r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#));
        probe(Traces, "{}");
        probe(Traces, r#"{"unknownTop": 1}"#);
        probe(
            Traces,
            &t(
                r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000}"#,
            ),
        );
        probe(Traces, &t(r#"{"kind":"SPAN_KIND_SERVER"}"#));
        probe(Traces, &t(r#"{"name":null}"#));
        probe(Traces, &t(r#"{"unknownField":{"a":[1]},"name":"x"}"#));
        probe(Traces, &t(r#"{"startTimeUnixNano":1.5e18}"#));
        probe(Traces, &t(r#"{"droppedAttributesCount":"2"}"#));
        probe(Traces, &t(r#"{"status":{"code":2,"message":"m"}}"#));
        probe(Traces, &t(r#"{"status":{}}"#));
        probe(Traces, &a(r#"{"foo":1,"stringValue":"x"}"#));
        probe(Traces, &a(r#"{"stringValue":"x","foo":{"bar":[1,2]}}"#));
        probe(Traces, &a(r#"{"intValue":5}"#));
        probe(Traces, &a(r#"{"intValue":"5"}"#));
        probe(Traces, &a(r#"{"arrayValue":{}}"#));
        probe(Traces, &a(r#"{"kvlistValue":{}}"#));
        probe(
            Traces,
            &a(r#"{"arrayValue":{"values":[{"intValue":"1"},{}]}}"#),
        );
        probe(Traces, &a(r#"{"doubleValue":"1.5"}"#));
        probe(Traces, &a(r#"{"doubleValue":"NaN"}"#));
        probe(Traces, &a(r#"{"bytesValue":"aGVsbG8="}"#));
        probe(Traces, &a(r#"{}"#));
        probe(
            Traces,
            &t(r#"{"attributes":[{"value":{"stringValue":"x"}}]}"#),
        );
        probe(Traces, &t(r#"{"attributes":[{"key":"k"}]}"#));
        probe(
            Traces,
            &t(
                r#"{"events":[{"timeUnixNano":"5","name":"e"}],"links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}"#,
            ),
        );
        let m = |metric: &str| {
            format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{metric}]}}]}}]}}"#)
        };
        probe(Metrics, "{}");
        probe(Metrics, &m(r#"{"name":"x"}"#));
        probe(
            Metrics,
            &m(
                r#"{"name":"x","unknown":1,"gauge":{"dataPoints":[{"asInt":"5","foo":1,"timeUnixNano":"7"}]}}"#,
            ),
        );
        probe(
            Metrics,
            &m(
                r#"{"name":"x","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asDouble":1.5}]}}"#,
            ),
        );
        probe(
            Metrics,
            &m(
                r#"{"name":"x","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","dataPoints":[{"asInt":5}]}}"#,
            ),
        );
        probe(
            Metrics,
            &m(r#"{"name":"x","gauge":{"dataPoints":[{"asDouble":"NaN"}]}}"#),
        );
        probe(
            Metrics,
            &m(r#"{"name":"x","gauge":{"dataPoints":[{"asDouble":"2.5"}]}}"#),
        );
        probe(
            Metrics,
            &m(
                r#"{"name":"x","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"3","sum":1.5,"bucketCounts":["1",2],"explicitBounds":[1.0],"exemplars":[{"asInt":"3","spanId":"eee19b7ec3c1b174","timeUnixNano":9}]}]}}"#,
            ),
        );
        probe(
            Metrics,
            &m(
                r#"{"name":"x","exponentialHistogram":{"dataPoints":[{"count":3,"zeroCount":"1","scale":2,"positive":{"offset":1,"bucketCounts":["1"]}}]}}"#,
            ),
        );
        probe(
            Metrics,
            &m(
                r#"{"name":"x","summary":{"dataPoints":[{"count":"3","sum":2,"quantileValues":[{"quantile":0.5,"value":"NaN"}]}]}}"#,
            ),
        );
        probe(
            Metrics,
            &m(r#"{"name":"x","histogram":{"dataPoints":[{"sum":"Infinity"}]}}"#),
        );
        let l = |rec: &str| {
            format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{rec}]}}]}}]}}"#)
        };
        probe(Logs, "{}");
        probe(
            Logs,
            &l(
                r#"{"timeUnixNano":"1","observedTimeUnixNano":2,"severityNumber":9,"body":{"stringValue":"b"},"traceId":"5b8efff798038103d269b633813fc60c","spanId":"","eventName":"ev","unknown":true}"#,
            ),
        );
        probe(Logs, &l(r#"{"severityNumber":"SEVERITY_NUMBER_INFO"}"#));
        probe(
            Logs,
            &l(r#"{"body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}}}"#),
        );
    }
}
