//! Span → outcome, per the README's How it works. Pure functions over the decoded records: no state, no
//! allocation, a handful of byte compares per span.

use crate::model::{flags, kind, rpc_code, status, SpanRec};

/// What a span means for the SLIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a request (client/internal/producer span, or a CI/CD span).
    NotRequest,
    /// A request that succeeded.
    Ok,
    /// A request that failed.
    Error,
}

/// gRPC status codes that are server errors: UNKNOWN 2, DEADLINE_EXCEEDED 4,
/// UNIMPLEMENTED 12, INTERNAL 13, UNAVAILABLE 14, DATA_LOSS 15.
#[inline]
pub fn grpc_code_is_error(code: u8) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Whether a pre-parsed `rpc.status_code` value is a server error.
#[inline]
pub fn rpc_code_is_error(code: u8) -> bool {
    code >= rpc_code::UNKNOWN
}

/// Classifies a span. `resource_is_cicd` is true when the span's resource carries
/// `cicd.pipeline.name` (a CI/CD span is never a service request).
#[inline]
pub fn classify(span: &SpanRec, resource_is_cicd: bool) -> Outcome {
    if span.kind != kind::SERVER && span.kind != kind::CONSUMER {
        return Outcome::NotRequest;
    }
    if resource_is_cicd || span.flags & flags::CICD_PIPELINE != 0 {
        return Outcome::NotRequest;
    }
    if is_error(
        span.status,
        span.http_status,
        span.grpc_status,
        span.rpc_code,
    ) {
        Outcome::Error
    } else {
        Outcome::Ok
    }
}

/// The error rule shared by spans and metric points: status ERROR is an error, status OK
/// never is; with status unset a 5xx HTTP status, a server-error gRPC code or a
/// server-error `rpc.status_code` is. 4xx is not an error on the server side.
#[inline]
pub fn is_error(span_status: u8, http_status: u16, grpc_status: u8, rpc: u8) -> bool {
    match span_status {
        status::ERROR => true,
        status::OK => false,
        _ => http_status >= 500 || grpc_code_is_error(grpc_status) || rpc_code_is_error(rpc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(kind: u8, status: u8) -> SpanRec {
        SpanRec {
            kind,
            status,
            grpc_status: 255,
            ext: u32::MAX,
            ..Default::default()
        }
    }

    #[test]
    fn every_rule_of_spec_section_5() {
        use Outcome::*;
        let server = kind::SERVER;
        // (description, span, resource is CI/CD, expected)
        let mut cases: Vec<(&str, SpanRec, bool, Outcome)> = vec![
            (
                "server, unset, nothing",
                span(server, status::UNSET),
                false,
                Ok,
            ),
            (
                "server, status ERROR",
                span(server, status::ERROR),
                false,
                Error,
            ),
            ("server, status OK", span(server, status::OK), false, Ok),
            (
                "consumer, status ERROR",
                span(kind::CONSUMER, status::ERROR),
                false,
                Error,
            ),
            (
                "consumer, unset",
                span(kind::CONSUMER, status::UNSET),
                false,
                Ok,
            ),
            (
                "client ERROR is no request",
                span(kind::CLIENT, status::ERROR),
                false,
                NotRequest,
            ),
            (
                "internal is no request",
                span(kind::INTERNAL, status::UNSET),
                false,
                NotRequest,
            ),
            (
                "producer is no request",
                span(kind::PRODUCER, status::UNSET),
                false,
                NotRequest,
            ),
            (
                "unspecified is no request",
                span(kind::UNSPECIFIED, status::UNSET),
                false,
                NotRequest,
            ),
            (
                "resource CI/CD",
                span(server, status::ERROR),
                true,
                NotRequest,
            ),
        ];
        let mut with = |d: &'static str, f: &dyn Fn(&mut SpanRec), exp: Outcome| {
            let mut s = span(server, status::UNSET);
            f(&mut s);
            cases.push((d, s, false, exp));
        };
        with(
            "span CI/CD",
            &|s| s.flags |= flags::CICD_PIPELINE,
            NotRequest,
        );
        with("http 500", &|s| s.http_status = 500, Error);
        with("http 503", &|s| s.http_status = 503, Error);
        with("http 599", &|s| s.http_status = 599, Error);
        with("http 499 not error", &|s| s.http_status = 499, Ok);
        with("http 404 not error", &|s| s.http_status = 404, Ok);
        with("http 200", &|s| s.http_status = 200, Ok);
        with(
            "http 500 but status OK",
            &|s| {
                s.http_status = 500;
                s.status = status::OK;
            },
            Ok,
        );
        with(
            "http 200 but status ERROR",
            &|s| {
                s.http_status = 200;
                s.status = status::ERROR;
            },
            Error,
        );
        for code in 0u8..=16 {
            let exp = if [2, 4, 12, 13, 14, 15].contains(&code) {
                Error
            } else {
                Ok
            };
            let mut s = span(server, status::UNSET);
            s.grpc_status = code;
            cases.push(("grpc int code", s, false, exp));
        }
        let mut s = span(server, status::OK);
        s.grpc_status = 13;
        cases.push(("grpc INTERNAL but status OK", s, false, Ok));
        for (code, exp) in [
            (rpc_code::ABSENT, Ok),
            (rpc_code::OTHER, Ok),
            (rpc_code::UNKNOWN, Error),
            (rpc_code::DEADLINE_EXCEEDED, Error),
            (rpc_code::UNIMPLEMENTED, Error),
            (rpc_code::INTERNAL, Error),
            (rpc_code::UNAVAILABLE, Error),
            (rpc_code::DATA_LOSS, Error),
        ] {
            let mut s = span(server, status::UNSET);
            s.rpc_code = code;
            cases.push(("rpc.status_code string", s, false, exp));
        }
        for (d, s, cicd, exp) in cases {
            assert_eq!(classify(&s, cicd), exp, "{d}: {s:?}");
        }
    }
}
