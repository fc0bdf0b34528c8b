//! Tests of the lean decoder against prost and an independent reference extraction.

use super::*;
use crate::model::{flags, kind, rpc_code, status};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

// ---------------------------------------------------------------------------------------
// Reference extraction, written over the prost structs without looking at the decoder.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq)]
struct RExt {
    flags: u16,
    pipeline_name: String,
    pipeline_result: String,
    run_id: String,
    run_id_int: Option<i64>,
    revision: String,
    deployment_id: String,
    deployment_status: String,
    service: String,
    namespace: String,
    environment: String,
    version: String,
}

#[derive(Clone, Debug, PartialEq)]
struct RSpan {
    name: String,
    kind: u8,
    status: u8,
    start: u64,
    end: u64,
    route: String,
    http: u16,
    grpc: u8,
    rpc: u8,
    flags: u16,
    ext: Option<RExt>,
    /// the span the `raw` range decodes to
    raw: Span,
}

#[derive(Clone, Debug, PartialEq)]
struct RRes {
    service: String,
    namespace: String,
    environment: String,
    version: String,
    ext: RExt,
    spans: Vec<RSpan>,
}

/// The last attribute named `key`: `Some(value)` when present (value may be `None`).
fn last<'a>(attrs: &'a [KeyValue], key: &str) -> Option<Option<&'a Value>> {
    attrs
        .iter()
        .rev()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref()))
}

fn has(attrs: &[KeyValue], key: &str) -> bool {
    last(attrs, key).is_some()
}

fn text(attrs: &[KeyValue], key: &str) -> String {
    match last(attrs, key) {
        Some(Some(Value::StringValue(s))) => s.clone(),
        _ => String::new(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    s[..n].to_string()
}

fn http_status_of(v: Option<Option<&Value>>) -> u16 {
    let n = match v {
        Some(Some(Value::IntValue(i))) => *i,
        Some(Some(Value::StringValue(s))) => match s.parse::<i64>() {
            Ok(i) => i,
            Err(_) => return 0,
        },
        _ => return 0,
    };
    if (100..=999).contains(&n) {
        n as u16
    } else {
        0
    }
}

const RARE: &[&str] = &[
    "cicd.pipeline.name",
    "cicd.pipeline.result",
    "cicd.pipeline.run.id",
    "vcs.ref.head.revision",
    "deployment.id",
    "deployment.status",
    "service.name",
    "deployment.environment.name",
    "deployment.environment",
    "service.version",
    "error.type",
];

fn ref_env(attrs: &[KeyValue]) -> String {
    let name = text(attrs, "deployment.environment.name");
    if name.is_empty() {
        text(attrs, "deployment.environment")
    } else {
        name
    }
}

fn ref_ext(attrs: &[KeyValue], record: bool, max: usize) -> RExt {
    let task = attrs
        .iter()
        .any(|kv| kv.key.starts_with("cicd.pipeline.task."));
    let mut flags = 0;
    for (present, bit) in [
        (has(attrs, "cicd.pipeline.name"), flags::CICD_PIPELINE),
        (task, flags::CICD_TASK),
        (has(attrs, "cicd.pipeline.result"), flags::CICD_RESULT),
        (
            has(attrs, "deployment.id") || has(attrs, "deployment.status"),
            flags::DEPLOYMENT,
        ),
        (has(attrs, "error.type"), flags::ERROR_TYPE),
        (record && has(attrs, "service.name"), flags::RECORD_SERVICE),
    ] {
        if present {
            flags |= bit;
        }
    }
    let (run_id, run_id_int) = match last(attrs, "cicd.pipeline.run.id") {
        Some(Some(Value::StringValue(s))) => (s.clone(), None),
        Some(Some(Value::IntValue(i))) => (String::new(), Some(*i)),
        _ => (String::new(), None),
    };
    let mut e = RExt {
        flags,
        pipeline_name: text(attrs, "cicd.pipeline.name"),
        pipeline_result: text(attrs, "cicd.pipeline.result"),
        run_id,
        run_id_int,
        revision: text(attrs, "vcs.ref.head.revision"),
        deployment_id: text(attrs, "deployment.id"),
        deployment_status: text(attrs, "deployment.status"),
        ..RExt::default()
    };
    if record {
        e.service = truncate(&text(attrs, "service.name"), max);
        e.namespace = truncate(&text(attrs, "service.namespace"), max);
        e.environment = truncate(&ref_env(attrs), max);
        e.version = truncate(&text(attrs, "service.version"), max);
    }
    e
}

fn ref_span(s: &Span, max: usize) -> RSpan {
    let a = &s.attributes;
    let rare = RARE.iter().any(|k| has(a, k))
        || a.iter().any(|kv| kv.key.starts_with("cicd.pipeline.task."));
    let ext = rare.then(|| ref_ext(a, true, max));
    let http = match http_status_of(last(a, "http.response.status_code")) {
        0 => http_status_of(last(a, "http.status_code")),
        c => c,
    };
    let grpc = match last(a, "rpc.grpc.status_code") {
        Some(Some(Value::IntValue(i))) if (0..=16).contains(i) => *i as u8,
        _ => 255,
    };
    let rpc = match last(a, "rpc.status_code") {
        None => rpc_code::ABSENT,
        Some(Some(Value::StringValue(s))) => match s.as_str() {
            "UNKNOWN" => rpc_code::UNKNOWN,
            "DEADLINE_EXCEEDED" => rpc_code::DEADLINE_EXCEEDED,
            "UNIMPLEMENTED" => rpc_code::UNIMPLEMENTED,
            "INTERNAL" => rpc_code::INTERNAL,
            "UNAVAILABLE" => rpc_code::UNAVAILABLE,
            "DATA_LOSS" => rpc_code::DATA_LOSS,
            _ => rpc_code::OTHER,
        },
        Some(_) => rpc_code::OTHER,
    };
    let code = s.status.as_ref().map_or(0, |st| st.code);
    RSpan {
        name: truncate(&s.name, max),
        kind: if (0..=5).contains(&s.kind) {
            s.kind as u8
        } else {
            0
        },
        status: if (0..=2).contains(&code) {
            code as u8
        } else {
            0
        },
        start: s.start_time_unix_nano,
        end: s.end_time_unix_nano,
        route: truncate(&text(a, "http.route"), max),
        http,
        grpc,
        rpc,
        flags: ext.as_ref().map_or(0, |e| e.flags),
        ext,
        raw: s.clone(),
    }
}

fn reference(req: &ExportTraceServiceRequest, max: usize) -> Vec<RRes> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let spans: Vec<RSpan> = rs
            .scope_spans
            .iter()
            .flat_map(|ss| ss.spans.iter())
            .map(|s| ref_span(s, max))
            .collect();
        if spans.is_empty() {
            continue;
        }
        let empty = Vec::new();
        let a = rs.resource.as_ref().map_or(&empty, |r| &r.attributes);
        out.push(RRes {
            service: truncate(&text(a, "service.name"), max),
            namespace: truncate(&text(a, "service.namespace"), max),
            environment: truncate(&ref_env(a), max),
            version: truncate(&text(a, "service.version"), max),
            ext: ref_ext(a, false, max),
            spans,
        });
    }
    out
}

/// The lean batch in the reference's terms.
fn lean_view(b: &TraceBatch) -> Vec<RRes> {
    let buf = &b.buf[..];
    let s = |x: Str| x.as_str(buf).to_string();
    let ext = |e: &Ext| RExt {
        flags: e.flags,
        pipeline_name: s(e.pipeline_name),
        pipeline_result: s(e.pipeline_result),
        run_id: s(e.run_id),
        run_id_int: e.run_id_int,
        revision: s(e.revision),
        deployment_id: s(e.deployment_id),
        deployment_status: s(e.deployment_status),
        service: s(e.service),
        namespace: s(e.namespace),
        environment: s(e.environment),
        version: s(e.version),
    };
    let mut next = 0u32;
    let out = b
        .resources
        .iter()
        .map(|r| {
            assert_eq!(r.first_span, next, "resources own contiguous span ranges");
            next += r.span_count;
            RRes {
                service: s(r.service),
                namespace: s(r.namespace),
                environment: s(r.environment),
                version: s(r.version),
                ext: ext(&r.ext),
                spans: b
                    .spans_of(r)
                    .iter()
                    .map(|sp| {
                        if sp.ext != u32::MAX {
                            assert!((sp.ext as usize) < b.ext.len(), "dangling ext index");
                        }
                        RSpan {
                            name: s(sp.name),
                            kind: sp.kind,
                            status: sp.status,
                            start: sp.start_ns,
                            end: sp.end_ns,
                            route: s(sp.route),
                            http: sp.http_status,
                            grpc: sp.grpc_status,
                            rpc: sp.rpc_code,
                            flags: sp.flags,
                            ext: b.ext_of(sp).map(ext),
                            raw: Span::decode(sp.raw.bytes(buf)).expect("raw is a Span"),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    assert_eq!(
        next as usize,
        b.spans.len(),
        "every span belongs to a resource"
    );
    out
}

// ---------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "http.route",
    "http.response.status_code",
    "http.status_code",
    "rpc.grpc.status_code",
    "rpc.status_code",
    "service.name",
    "service.namespace",
    "deployment.environment.name",
    "deployment.environment",
    "service.version",
    "cicd.pipeline.name",
    "cicd.pipeline.result",
    "cicd.pipeline.run.id",
    "cicd.pipeline.task.name",
    "cicd.pipeline.task.run.id",
    "cicd.pipeline.task.",
    "cicd.pipeline.tasks",
    "vcs.ref.head.revision",
    "deployment.id",
    "deployment.status",
    "error.type",
    "http.request.method",
    "url.path",
    "service.name.extra",
];

const TEXTS: &[&str] = &[
    "200",
    "404",
    "503",
    "+204",
    "099",
    "1000",
    "-500",
    " 200",
    "2e2",
    "abc",
    "",
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "OK",
    "unavailable",
    "prod",
    "staging",
    "v1.2.3",
];

fn text_s() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(TEXTS).prop_map(String::from),
        3 => "[a-zA-Z0-9 /._-]{0,12}",
        2 => "\\PC{0,10}",
        // Longer than most max_value_bytes drawn below, with multi-byte chars to cut.
        2 => "[a-zé€漢😀]{20,70}",
    ]
}

fn key_s() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(KEYS).prop_map(String::from),
        1 => "[a-z._]{0,20}",
        1 => "\\PC{0,6}",
    ]
}

fn scalar_s() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text_s().prop_map(Value::StringValue),
        1 => any::<i64>().prop_map(Value::IntValue),
        2 => (-3i64..20).prop_map(Value::IntValue),
        2 => (90i64..1010).prop_map(Value::IntValue),
        1 => any::<bool>().prop_map(Value::BoolValue),
        1 => any::<f64>().prop_map(Value::DoubleValue),
        1 => vec(any::<u8>(), 0..6).prop_map(Value::BytesValue),
        1 => (-2i32..5).prop_map(Value::StringValueStrindex),
    ]
}

fn value_s() -> impl Strategy<Value = Option<AnyValue>> {
    let some = |v| Some(AnyValue { value: Some(v) });
    prop_oneof![
        8 => scalar_s().prop_map(some),
        1 => vec(scalar_s(), 0..3).prop_map(move |vs| some(Value::ArrayValue(ArrayValue {
            values: vs.into_iter().map(|v| AnyValue { value: Some(v) }).collect(),
        }))),
        1 => vec((key_s(), scalar_s()), 0..3).prop_map(move |kvs| some(Value::KvlistValue(
            KeyValueList {
                values: kvs
                    .into_iter()
                    .map(|(key, v)| KeyValue { key, value: Some(AnyValue { value: Some(v) }), key_strindex: 0 })
                    .collect(),
            }
        ))),
        1 => Just(None),
        1 => Just(Some(AnyValue { value: None })),
    ]
}

fn kv_s() -> impl Strategy<Value = KeyValue> {
    (
        key_s(),
        value_s(),
        prop_oneof![8 => Just(0i32), 1 => any::<i32>()],
    )
        .prop_map(|(key, value, key_strindex)| KeyValue {
            key,
            value,
            key_strindex,
        })
}

fn attrs_s(n: usize) -> impl Strategy<Value = Vec<KeyValue>> {
    vec(kv_s(), 0..n)
}

fn span_s() -> impl Strategy<Value = Span> {
    let ids = (
        vec(any::<u8>(), 0..17),
        vec(any::<u8>(), 0..9),
        vec(any::<u8>(), 0..9),
        text_s(),
        any::<u32>(),
    );
    let events = vec(
        (any::<u64>(), text_s(), attrs_s(3)).prop_map(|(t, name, attributes)| Event {
            time_unix_nano: t,
            name,
            attributes,
            dropped_attributes_count: 0,
        }),
        0..2,
    );
    let links = vec(
        (vec(any::<u8>(), 16), attrs_s(2)).prop_map(|(trace_id, attributes)| Link {
            trace_id,
            span_id: vec![1; 8],
            trace_state: "k=v".into(),
            attributes,
            dropped_attributes_count: 1,
            flags: 0x301,
        }),
        0..2,
    );
    let status =
        prop::option::of((text_s(), -1i32..4).prop_map(|(message, code)| Status { message, code }));
    (
        ids,
        text_s(),
        -2i32..8,
        (any::<u64>(), any::<u64>()),
        attrs_s(10),
        (events, links, status),
        any::<u32>(),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, flags),
                name,
                kind,
                (start, end),
                attributes,
                (events, links, status),
                dropped,
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped,
                events,
                dropped_events_count: 0,
                links,
                dropped_links_count: 0,
                status,
            },
        )
}

fn resource_spans_s() -> impl Strategy<Value = ResourceSpans> {
    let resource = prop::option::of(attrs_s(10).prop_map(|attributes| Resource {
        attributes,
        dropped_attributes_count: 0,
        entity_refs: vec![],
    }));
    let scope = prop::option::of((text_s(), attrs_s(2)).prop_map(|(name, attributes)| {
        InstrumentationScope {
            name,
            version: "1.0".into(),
            attributes,
            dropped_attributes_count: 0,
        }
    }));
    let scope_spans = vec(
        (scope, vec(span_s(), 0..4), text_s()).prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope,
            spans,
            schema_url,
        }),
        0..3,
    );
    (resource, scope_spans, text_s()).prop_map(|(resource, scope_spans, schema_url)| {
        ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        }
    })
}

fn request_s() -> impl Strategy<Value = ExportTraceServiceRequest> {
    vec(resource_spans_s(), 0..4)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn max_s() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..48, Just(256)]
}

fn decode(bytes: Vec<u8>, max: usize) -> Result<TraceBatch, DecodeError> {
    decode_traces(
        Bytes::from(bytes),
        &DecodeOptions {
            max_value_bytes: max,
        },
    )
}

// ---------------------------------------------------------------------------------------
// (a) Round trip against the reference.
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(Config::with_cases(512))]

    #[test]
    fn lean_decode_matches_reference(req in request_s(), max in max_s()) {
        let bytes = req.encode_to_vec();
        let batch = decode(bytes, max).expect("prost's own encoding decodes");
        prop_assert_eq!(lean_view(&batch), reference(&req, max));
        // `raw` is exactly the encoded span, byte for byte.
        let spans: Vec<&Span> = req.resource_spans.iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
            .collect();
        prop_assert_eq!(spans.len(), batch.spans.len());
        for (s, rec) in spans.iter().zip(&batch.spans) {
            prop_assert_eq!(rec.raw.bytes(&batch.buf), &s.encode_to_vec()[..]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Repeated singular fields merge (protobuf semantics), built by concatenating encodings.
// ---------------------------------------------------------------------------------------

fn ld(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    prost::encoding::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// Extra fields appended to one span's encoding: merged attribute pairs, another status,
/// a whole second span (concatenated messages merge).
type SpanExtra = (Vec<(KeyValue, KeyValue)>, Option<Status>, Option<Span>);

fn merged_request(rss: &[(ResourceSpans, Option<Resource>, Vec<SpanExtra>)]) -> Vec<u8> {
    let mut req = Vec::new();
    for (rs, extra_resource, extras) in rss {
        let mut extras = extras.iter();
        let mut rsb = Vec::new();
        if let Some(r) = &rs.resource {
            ld(&mut rsb, 0x0a, &r.encode_to_vec());
        }
        for ss in &rs.scope_spans {
            let mut ssb = Vec::new();
            for span in &ss.spans {
                let mut sb = span.encode_to_vec();
                if let Some((kvs, status, second)) = extras.next() {
                    for (a, b) in kvs {
                        let mut kv = a.encode_to_vec();
                        kv.extend(b.encode_to_vec());
                        ld(&mut sb, 0x4a, &kv);
                    }
                    if let Some(st) = status {
                        ld(&mut sb, 0x7a, &st.encode_to_vec());
                    }
                    if let Some(second) = second {
                        sb.extend(second.encode_to_vec());
                    }
                }
                ld(&mut ssb, 0x12, &sb);
            }
            ld(&mut rsb, 0x12, &ssb);
        }
        if let Some(r) = extra_resource {
            ld(&mut rsb, 0x0a, &r.encode_to_vec());
        }
        ld(&mut req, 0x0a, &rsb);
    }
    req
}

proptest! {
    #![proptest_config(Config::with_cases(256))]

    #[test]
    fn repeated_singular_fields_merge_like_prost(
        rss in vec((
            resource_spans_s(),
            prop::option::of(attrs_s(6).prop_map(|attributes| Resource {
                attributes, dropped_attributes_count: 0, entity_refs: vec![],
            })),
            vec((
                vec((kv_s(), kv_s()), 0..4),
                prop::option::of((text_s(), -1i32..4).prop_map(|(message, code)| Status { message, code })),
                prop::option::of(span_s()),
            ), 0..6),
        ), 1..3),
        max in max_s(),
    ) {
        let bytes = merged_request(&rss);
        let req = ExportTraceServiceRequest::decode(&bytes[..]).expect("valid protobuf");
        let batch = decode(bytes, max).expect("lean decodes what prost decodes");
        prop_assert_eq!(lean_view(&batch), reference(&req, max));
    }
}

// ---------------------------------------------------------------------------------------
// (b) Fuzz: mutated encodings and random bytes.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    /// overwrite one byte
    Set(Index, u8),
    /// overwrite one byte with a plausible field key (often changes field or wire type)
    Key(Index, u8),
    /// cut the input
    Truncate(Index),
    /// remove a few bytes
    Delete(Index, u8),
    /// insert bytes
    Insert(Index, Vec<u8>),
}

const TAGS: &[u8] = &[
    0x08, 0x0a, 0x0b, 0x0c, 0x10, 0x12, 0x13, 0x14, 0x18, 0x1a, 0x21, 0x22, 0x25, 0x2a, 0x30, 0x32,
    0x39, 0x3a, 0x41, 0x42, 0x4a, 0x4b, 0x4c, 0x52, 0x7a, 0x7b, 0x7c, 0x80, 0x85, 0xff,
];

fn mutation_s() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        4 => (any::<Index>(), select(TAGS)).prop_map(|(i, b)| Mutation::Key(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1u8..4).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..4)).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, v) | Mutation::Key(i, v) => {
                let i = i.index(b.len());
                b[i] = *v;
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len())),
            Mutation::Delete(i, n) => {
                let i = i.index(b.len());
                let end = (i + *n as usize).min(b.len());
                b.drain(i..end);
            }
            Mutation::Insert(i, v) => {
                let i = i.index(b.len() + 1);
                b.splice(i..i, v.iter().copied());
            }
        }
    }
    b
}

/// Decodes with both readers: the lean one must never panic, and must succeed and agree
/// with the reference whenever prost succeeds. Returns whether prost accepted the input.
fn check_against_prost(bytes: Vec<u8>, max: usize) -> Result<bool, TestCaseError> {
    let prost = ExportTraceServiceRequest::decode(&bytes[..]);
    let lean = decode(bytes, max);
    if let Ok(req) = prost {
        match lean {
            Ok(batch) => prop_assert_eq!(lean_view(&batch), reference(&req, max)),
            Err(e) => return Err(TestCaseError::fail(format!("prost accepts, lean: {e}"))),
        }
        return Ok(true);
    }
    Ok(false)
}

fn fuzz_runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn fuzz_mutated_encodings() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let accepted = AtomicU32::new(0);
    let cases = 8000;
    let mut runner = fuzz_runner(cases);
    let strategy = (request_s(), vec(mutation_s(), 1..4), max_s());
    runner
        .run(&strategy, |(req, muts, max)| {
            let bytes = mutate(req.encode_to_vec(), &muts);
            if check_against_prost(bytes, max)? {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    // Not vacuous: a good share of mutants still decode, and those were compared.
    let accepted = accepted.into_inner();
    eprintln!("{accepted} of {cases} mutants decoded with prost");
    assert!(
        accepted > cases / 10,
        "only {accepted} of {cases} mutants decoded with prost"
    );
}

#[test]
fn fuzz_random_bytes() {
    let mut runner = fuzz_runner(10000);
    let strategy = (
        prop_oneof![
            vec(any::<u8>(), 0..64),
            // Mostly plausible keys and small lengths, to get past the first byte.
            vec(prop_oneof![select(TAGS), 0u8..8, any::<u8>()], 0..96),
        ],
        max_s(),
    );
    runner
        .run(&strategy, |(bytes, max)| {
            check_against_prost(bytes, max).map(drop)
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Semantics, by example.
// ---------------------------------------------------------------------------------------

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

fn sv(s: &str) -> Value {
    Value::StringValue(s.into())
}

fn one_span(resource: Vec<KeyValue>, span: Span) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn span_with(attributes: Vec<KeyValue>) -> Span {
    Span {
        name: "GET /users/{id}".into(),
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 3_000,
        attributes,
        status: Some(Status {
            message: String::new(),
            code: 2,
        }),
        ..Span::default()
    }
}

#[test]
fn extracts_identity_and_span_fields() {
    let bytes = one_span(
        vec![
            kv("service.name", sv("checkout")),
            kv("service.namespace", sv("shop")),
            kv("deployment.environment", sv("legacy-env")),
            kv("deployment.environment.name", sv("prod")),
            kv("service.version", sv("1.4.2")),
            kv("cicd.pipeline.name", sv("deploy")),
        ],
        span_with(vec![
            kv("http.route", sv("/users/{id}")),
            kv("http.status_code", Value::IntValue(404)),
            kv("http.response.status_code", sv("503")),
            kv("rpc.grpc.status_code", Value::IntValue(14)),
            kv("rpc.status_code", sv("UNAVAILABLE")),
        ]),
    );
    let b = decode(bytes, 256).unwrap();
    let buf = &b.buf[..];
    let [r] = &b.resources[..] else {
        panic!("one resource")
    };
    assert_eq!(r.service.as_str(buf), "checkout");
    assert_eq!(r.namespace.as_str(buf), "shop");
    assert_eq!(r.environment.as_str(buf), "prod");
    assert_eq!(r.version.as_str(buf), "1.4.2");
    assert_eq!(r.ext.flags, flags::CICD_PIPELINE);
    assert_eq!(r.ext.pipeline_name.as_str(buf), "deploy");
    let [s] = &b.spans[..] else {
        panic!("one span")
    };
    assert_eq!(s.name.as_str(buf), "GET /users/{id}");
    assert_eq!(s.route.as_str(buf), "/users/{id}");
    assert_eq!((s.kind, s.status), (kind::SERVER, status::ERROR));
    assert_eq!((s.start_ns, s.end_ns), (1_000, 3_000));
    assert_eq!(s.http_status, 503);
    assert_eq!(s.grpc_status, 14);
    assert_eq!(s.rpc_code, rpc_code::UNAVAILABLE);
    assert_eq!((s.ext, s.flags), (u32::MAX, 0));
    assert!(b.ext.is_empty());
}

#[test]
fn duplicate_keys_last_occurrence_wins_even_when_unusable() {
    let b = decode(
        one_span(
            vec![kv("service.name", sv("a")), kv("service.name", sv("b"))],
            span_with(vec![
                kv("http.route", sv("/first")),
                kv("http.route", Value::IntValue(3)),
                kv("http.response.status_code", Value::IntValue(500)),
                kv("http.response.status_code", Value::IntValue(200)),
            ]),
        ),
        256,
    )
    .unwrap();
    let buf = &b.buf[..];
    assert_eq!(b.resources[0].service.as_str(buf), "b");
    assert!(b.spans[0].route.is_empty());
    assert_eq!(b.spans[0].http_status, 200);
}

#[test]
fn http_status_falls_back_to_legacy_key_and_checks_range() {
    let status = |attrs| {
        decode(one_span(vec![], span_with(attrs)), 256)
            .unwrap()
            .spans[0]
            .http_status
    };
    let i = Value::IntValue;
    assert_eq!(status(vec![kv("http.status_code", i(502))]), 502);
    assert_eq!(status(vec![kv("http.status_code", sv("+201"))]), 201);
    assert_eq!(status(vec![kv("http.status_code", sv(" 201"))]), 0);
    assert_eq!(status(vec![kv("http.status_code", i(99))]), 0);
    assert_eq!(status(vec![kv("http.status_code", i(1000))]), 0);
    assert_eq!(status(vec![kv("http.status_code", i(999))]), 999);
    assert_eq!(
        status(vec![
            kv("http.status_code", i(500)),
            kv("http.response.status_code", Value::BoolValue(true)),
        ]),
        500
    );
}

#[test]
fn rare_keys_give_the_span_an_ext_record() {
    let b = decode(
        one_span(
            vec![kv("service.name", sv("ci"))],
            span_with(vec![
                kv("cicd.pipeline.result", sv("failure")),
                kv("cicd.pipeline.task.name", sv("build")),
                kv("cicd.pipeline.run.id", Value::IntValue(77)),
                kv("deployment.status", sv("succeeded")),
                kv("error.type", Value::BoolValue(true)),
                kv("service.name", sv("payments")),
                kv("deployment.environment", sv("staging")),
                kv("vcs.ref.head.revision", sv("abc123")),
            ]),
        ),
        256,
    )
    .unwrap();
    let buf = &b.buf[..];
    let s = b.spans[0];
    let want = flags::CICD_RESULT
        | flags::CICD_TASK
        | flags::DEPLOYMENT
        | flags::ERROR_TYPE
        | flags::RECORD_SERVICE;
    assert_eq!(s.flags, want);
    let e = b.ext_of(&s).expect("ext");
    assert_eq!(e.flags, want);
    assert_eq!(e.pipeline_result.as_str(buf), "failure");
    assert_eq!(e.run_id_int, Some(77));
    assert!(e.run_id.is_empty());
    assert_eq!(e.deployment_status.as_str(buf), "succeeded");
    assert_eq!(e.service.as_str(buf), "payments");
    assert_eq!(e.environment.as_str(buf), "staging");
    assert_eq!(e.revision.as_str(buf), "abc123");
    // The resource's own service.name is its identity, not a RECORD_SERVICE flag.
    assert_eq!(b.resources[0].ext.flags, 0);
}

#[test]
fn identity_values_are_cut_on_char_boundaries() {
    let mut span = span_with(vec![kv("http.route", sv("/ab€"))]);
    span.name = "né😀".into(); // n(1) é(2) 😀(4)
    let b = decode(one_span(vec![kv("service.name", sv("漢字"))], span), 4).unwrap();
    let buf = &b.buf[..];
    assert_eq!(b.spans[0].name.as_str(buf), "né");
    assert_eq!(b.spans[0].route.as_str(buf), "/ab");
    assert_eq!(b.resources[0].service.as_str(buf), "漢");
    let b = decode(b.buf.to_vec(), 0).unwrap();
    assert!(b.spans[0].name.is_empty());
}

#[test]
fn resources_without_spans_produce_no_record_and_empty_input_is_empty() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", sv("idle"))],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans::default()],
                schema_url: String::new(),
            },
            ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(), Span::default()],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            },
        ],
    };
    let b = decode(req.encode_to_vec(), 256).unwrap();
    assert_eq!(b.resources.len(), 1);
    assert_eq!(
        (b.resources[0].first_span, b.resources[0].span_count),
        (0, 2)
    );
    assert!(b.resources[0].service.is_empty());
    assert_eq!(b.spans[0].grpc_status, 255);
    let b = decode(vec![], 256).unwrap();
    assert_eq!((b.resources.len(), b.spans.len()), (0, 0));
}

#[test]
fn skipped_fields_are_not_utf8_checked() {
    // Invalid UTF-8 where the decoder does not look: an event name, trace_state, and the
    // value of an attribute it does not extract. prost refuses this; the lean reader not.
    let mut span = span_with(vec![kv("url.path", sv("#A"))]);
    span.trace_state = "#B".into();
    span.events = vec![Event {
        name: "#C".into(),
        ..Event::default()
    }];
    span.links = vec![Link {
        attributes: vec![kv("http.route", sv("#D"))],
        ..Link::default()
    }];
    let good = one_span(vec![], span);
    for marker in [b"#A", b"#B", b"#C", b"#D"] {
        let mut bytes = good.clone();
        let i = bytes.windows(2).position(|w| w == marker).unwrap();
        bytes[i] = 0xff;
        assert!(ExportTraceServiceRequest::decode(&bytes[..]).is_err());
        let b = decode(bytes, 256).expect("skipped fields are not validated");
        assert!(
            b.spans[0].route.is_empty(),
            "link attributes are not span attributes"
        );
    }
}

#[test]
fn unknown_groups_are_skipped_like_prost() {
    // Span with an unknown field 20 as a group holding a varint and a nested group.
    let mut span = Vec::new();
    ld(&mut span, 0x2a, b"n");
    span.extend([0xa3, 0x01, 0x08, 0x01, 0x0b, 0x0c, 0xa4, 0x01]);
    let mut ss = Vec::new();
    ld(&mut ss, 0x12, &span);
    let mut rs = Vec::new();
    ld(&mut rs, 0x12, &ss);
    let mut req = Vec::new();
    ld(&mut req, 0x0a, &rs);
    assert!(ExportTraceServiceRequest::decode(&req[..]).is_ok());
    let b = decode(req, 256).unwrap();
    assert_eq!(b.spans[0].name.as_str(&b.buf), "n");
}

// ---------------------------------------------------------------------------------------
// (c) Each error kind.
// ---------------------------------------------------------------------------------------

/// A request whose only span has body `span`.
fn wrap_span(span: &[u8]) -> Vec<u8> {
    let mut ss = Vec::new();
    ld(&mut ss, 0x12, span);
    let mut rs = Vec::new();
    ld(&mut rs, 0x12, &ss);
    let mut req = Vec::new();
    ld(&mut req, 0x0a, &rs);
    req
}

fn err(bytes: Vec<u8>) -> DecodeError {
    let prost_ok = ExportTraceServiceRequest::decode(&bytes[..]).is_ok();
    let e = decode(bytes, 256).expect_err("must not decode");
    assert!(!prost_ok, "prost accepts what lean refuses: {e}");
    e
}

#[test]
fn error_truncated() {
    // varint cut short, fixed64 cut short, group never closed
    assert!(matches!(
        err(vec![0x0a, 0x80]),
        DecodeError::Truncated {
            what: "varint",
            at: 1
        }
    ));
    let e = err(wrap_span(&[0x39, 1, 2, 3]));
    assert!(
        matches!(
            e,
            DecodeError::Truncated {
                what: "fixed64",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");
    // an unknown field 2 opening a group that never closes
    assert!(matches!(
        err(vec![0x13, 0x08, 0x01]),
        DecodeError::Truncated { what: "group", .. }
    ));
}

#[test]
fn error_bad_varint() {
    // (field 2 of the request is unknown: a varint there is skipped, but must be valid)
    let mut b = vec![0x10];
    b.extend([0xff; 10]);
    assert!(matches!(err(b), DecodeError::BadVarint { at: 1 }));
    // A 10th byte above 1 overflows 64 bits.
    let mut b = vec![0x10];
    b.extend([0xff; 9]);
    b.push(0x02);
    assert!(matches!(err(b), DecodeError::BadVarint { at: 1 }));
    // ... while exactly u64::MAX is fine.
    let mut b = vec![0x10];
    b.extend([0xff; 9]);
    b.push(0x01);
    assert!(decode(b, 256).is_ok());
}

#[test]
fn error_bad_key() {
    for bytes in [
        vec![0x02, 0x00],                         // field 0
        vec![0x0e],                               // wire type 6
        vec![0x0f],                               // wire type 7
        vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // key over 32 bits
    ] {
        let e = err(bytes);
        assert!(matches!(e, DecodeError::BadKey { .. }), "{e}");
    }
}

#[test]
fn error_wrong_wire_type() {
    // span name (5) as a varint
    let e = err(wrap_span(&[0x28, 0x01]));
    assert!(
        matches!(
            e,
            DecodeError::WrongWireType {
                msg: "Span",
                field: 5,
                wire_type: 0,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "protobuf field Span.5 at byte 6 has wire type 0, expected 2"
    );
    // resource_spans as fixed32, kind as bytes, start as varint, group for a known field
    assert!(matches!(
        err(vec![0x0d, 0, 0, 0, 0]),
        DecodeError::WrongWireType { field: 1, .. }
    ));
    assert!(matches!(
        err(wrap_span(&[0x32, 0x00])),
        DecodeError::WrongWireType { field: 6, .. }
    ));
    assert!(matches!(
        err(wrap_span(&[0x38, 0x00])),
        DecodeError::WrongWireType { field: 7, .. }
    ));
    assert!(matches!(
        err(wrap_span(&[0x4b, 0x4c])),
        DecodeError::WrongWireType { field: 9, .. }
    ));
    // an int value sent as a string-ish LEN in AnyValue.int_value, inside http.route
    let mut kvb = Vec::new();
    ld(&mut kvb, 0x0a, b"http.route");
    ld(&mut kvb, 0x12, &[0x1a, 0x00]);
    let mut span = Vec::new();
    ld(&mut span, 0x4a, &kvb);
    assert!(matches!(
        err(wrap_span(&span)),
        DecodeError::WrongWireType {
            msg: "AnyValue",
            field: 3,
            ..
        }
    ));
}

#[test]
fn error_length_overflow() {
    let e = err(vec![0x0a, 0x05, 0x00]);
    assert!(
        matches!(
            e,
            DecodeError::LengthOverflow {
                len: 5,
                remaining: 1,
                at: 1
            }
        ),
        "{e}"
    );
    // A hostile 64-bit length does not overflow anything.
    let mut b = vec![0x0a];
    b.extend([0xff; 9]);
    b.push(0x01);
    assert!(matches!(
        err(b),
        DecodeError::LengthOverflow { len: u64::MAX, .. }
    ));
    // A nested length that fits the buffer but not its enclosing message.
    let mut b = wrap_span(&[0x2a, 0x01, b'x']);
    b.extend([b'y'; 8]);
    let span_len_at = 5;
    b[span_len_at] += 4;
    assert!(matches!(err(b), DecodeError::LengthOverflow { .. }));
}

#[test]
fn error_invalid_utf8_names_the_field() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            one_span(
                vec![],
                Span {
                    name: "N\u{7f}".into(),
                    ..Span::default()
                },
            ),
            "span name",
        ),
        (
            one_span(vec![], span_with(vec![kv("K\u{7f}", sv("v"))])),
            "attribute key",
        ),
        (
            one_span(vec![], span_with(vec![kv("http.route", sv("V\u{7f}"))])),
            "attribute value",
        ),
        (
            one_span(vec![kv("host.name", sv("V\u{7f}"))], span_with(vec![])),
            "attribute value",
        ),
        (
            one_span(
                vec![],
                Span {
                    status: Some(Status {
                        message: "M\u{7f}".into(),
                        code: 0,
                    }),
                    ..Span::default()
                },
            ),
            "status message",
        ),
    ];
    for (mut bytes, field) in cases {
        // Replace the marker char (0x7f) with a lone continuation byte.
        let i = bytes.iter().rposition(|&b| b == 0x7f).unwrap();
        bytes[i] = 0x80;
        let e = err(bytes);
        assert!(
            matches!(e, DecodeError::InvalidUtf8 { field: f, .. } if f == field),
            "{field}: {e}"
        );
        assert!(e.to_string().contains(field));
    }
}

#[test]
fn error_unexpected_end_group() {
    assert!(matches!(
        err(vec![0x14]),
        DecodeError::UnexpectedEndGroup { field: 2, at: 0 }
    ));
    // mismatched end tag
    assert!(matches!(
        err(vec![0x13, 0x1c]),
        DecodeError::UnexpectedEndGroup { field: 3, at: 1 }
    ));
    // an end-group for a known field is a wrong wire type
    assert!(matches!(
        err(vec![0x0c]),
        DecodeError::WrongWireType {
            field: 1,
            wire_type: 4,
            ..
        }
    ));
}

#[test]
fn error_too_deep() {
    let nested = |depth: usize| {
        let mut b = vec![0xab, 0x01]; // field 21 start group
        b.extend(std::iter::repeat_n([0xab, 0x01], depth - 1).flatten());
        b.extend(std::iter::repeat_n([0xac, 0x01], depth).flatten());
        b
    };
    assert!(decode(nested(MAX_GROUP_DEPTH), 256).is_ok());
    let e = err(nested(MAX_GROUP_DEPTH + 1));
    assert!(matches!(e, DecodeError::TooDeep { .. }), "{e}");
}

#[test]
fn error_too_large() {
    assert!(addressable(u32::MAX as usize).is_ok());
    let e = addressable(u32::MAX as usize + 1).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { .. }));
    assert!(e.to_string().contains("4294967296 bytes"));
}

#[test]
fn ascii_check_matches_std() {
    // Every length up to 40, a non-ASCII byte at every position (and none).
    for n in 0..40usize {
        let clean = vec![b'a'; n];
        assert!(super::wire::ascii(&clean), "{n}");
        for i in 0..n {
            for hi in [0x80u8, 0xff, 0xc3] {
                let mut b = clean.clone();
                b[i] = hi;
                assert_eq!(super::wire::ascii(&b), b.is_ascii(), "{n} {i} {hi}");
            }
        }
    }
}

#[test]
fn padded_keys_read_like_one_byte_keys() {
    // The span loop dispatches on one-byte keys; the same fields under a two-byte
    // (non-minimal, still valid) key take the general path and must read the same.
    let body = |pad: bool| {
        let key = |k: u8| if pad { vec![k | 0x80, 0x00] } else { vec![k] };
        let mut kv = Vec::new();
        ld(&mut kv, 0x0a, b"http.route");
        let mut any = Vec::new();
        ld(&mut any, 0x0a, b"/r");
        ld(&mut kv, 0x12, &any);
        let mut span = Vec::new();
        for (k, v) in [(0x0a, &[1u8; 16][..]), (0x12, &[2; 8]), (0x2a, b"n")] {
            span.extend(key(k));
            span.push(v.len() as u8);
            span.extend_from_slice(v);
        }
        span.extend(key(0x30));
        span.push(2);
        span.extend(key(0x39));
        span.extend(1_000u64.to_le_bytes());
        span.extend(key(0x41));
        span.extend(3_000u64.to_le_bytes());
        span.extend(key(0x4a));
        span.push(kv.len() as u8);
        span.extend(&kv);
        wrap_span(&span)
    };
    let (plain, padded) = (
        decode(body(false), 256).unwrap(),
        decode(body(true), 256).unwrap(),
    );
    assert!(ExportTraceServiceRequest::decode(&body(true)[..]).is_ok());
    for b in [&plain, &padded] {
        let s = &b.spans[0];
        assert_eq!((s.name.as_str(&b.buf), s.route.as_str(&b.buf)), ("n", "/r"));
        assert_eq!((s.kind, s.start_ns, s.end_ns), (2, 1_000, 3_000));
    }
}

/// An `AnyValue` of `depth` levels: kvlists (or arrays) around a string.
fn nested_value(depth: usize, kvlist: bool) -> AnyValue {
    let mut v = AnyValue {
        value: Some(Value::StringValue("x".into())),
    };
    for _ in 1..depth {
        v = AnyValue {
            value: Some(if kvlist {
                Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(v),
                        ..Default::default()
                    }],
                })
            } else {
                Value::ArrayValue(ArrayValue { values: vec![v] })
            }),
        };
    }
    v
}

#[test]
fn attribute_values_nested_too_deep_are_refused_wherever_they_are() {
    let attr = |key: &str, depth: usize, kvlist: bool| KeyValue {
        key: key.into(),
        value: Some(nested_value(depth, kvlist)),
        ..Default::default()
    };
    // Every place an attribute can be: extracted and skipped span keys, resource, scope,
    // event and link.
    let place = |where_: usize, a: KeyValue| {
        let mut span = span_with(vec![]);
        let mut resource = Resource::default();
        let mut scope = None;
        match where_ {
            0 => span.attributes.push(a),
            1 => {
                let mut a = a;
                a.key = "http.route".into(); // extracted
                span.attributes.push(a);
            }
            2 => resource.attributes.push(a),
            3 => {
                scope = Some(InstrumentationScope {
                    attributes: vec![a],
                    ..Default::default()
                })
            }
            4 => span.events.push(Event {
                attributes: vec![a],
                ..Default::default()
            }),
            _ => span.links.push(Link {
                attributes: vec![a],
                ..Default::default()
            }),
        }
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope,
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    for where_ in 0..6 {
        for kvlist in [true, false] {
            let ok = place(where_, attr("deep", MAX_VALUE_DEPTH, kvlist));
            // what is accepted, prost (the span archive's decoder) decodes too
            assert!(ExportTraceServiceRequest::decode(&ok[..]).is_ok());
            let batch = decode(ok, 256).unwrap_or_else(|e| panic!("{where_}: {e}"));
            assert_eq!(batch.spans.len(), 1);
            let bad = place(where_, attr("deep", MAX_VALUE_DEPTH + 1, kvlist));
            let e = decode(bad, 256).expect_err("one level too deep");
            assert!(
                matches!(e, DecodeError::ValueTooDeep { .. }),
                "{where_} {kvlist}: {e}"
            );
        }
    }
}
