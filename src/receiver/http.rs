//! OTLP/HTTP: `POST /v1/traces|metrics|logs`, protobuf and JSON, gzip and zstd.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use prost::Message;

use super::inflight::{Held, ReadError};
use super::json::json_to_protobuf;
use super::{Reason, Receiver, Refused, Signal, Transport};

/// The axum router of the OTLP/HTTP endpoint.
pub fn router(rx: Arc<Receiver>) -> axum::Router {
    axum::Router::new()
        .route("/v1/traces", post(|s, r| handle(s, Signal::Traces, r)))
        .route("/v1/metrics", post(|s, r| handle(s, Signal::Metrics, r)))
        .route("/v1/logs", post(|s, r| handle(s, Signal::Logs, r)))
        .with_state(rx)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

async fn handle(State(rx): State<Arc<Receiver>>, signal: Signal, req: Request) -> Response {
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    // Before anything else: an unauthenticated client learns nothing of the request.
    if let Err(r) = rx.authenticate(req.headers()) {
        let format = match mime {
            "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
            _ => Format::Json,
        };
        return error(format, r);
    }
    let format = match mime {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        _ => {
            rx.count_refused(Reason::UnsupportedMediaType, None);
            return error(
                Format::Json,
                Refused {
                    reason: Reason::UnsupportedMediaType,
                    message: format!(
                        "unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"
                    ),
                },
            );
        }
    };
    match export(&rx, signal, format, req).await {
        Ok(body) => {
            let ct = match format {
                Format::Protobuf => "application/x-protobuf",
                Format::Json => "application/json",
            };
            ([(http::header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(r) => error(format, r),
    }
}

async fn export(
    rx: &Receiver,
    signal: Signal,
    format: Format,
    req: Request,
) -> Result<Bytes, Refused> {
    let limit = rx.max_bytes;
    let too_large = |rx: &Receiver| {
        rx.count_refused(Reason::TooLarge, None);
        Refused {
            reason: Reason::TooLarge,
            message: format!("request body over the {limit}-byte limit"),
        }
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(rx));
    }
    let encoding = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The body's bytes are held against the in-flight budget before they are read.
    let mut held = Held::new(&rx.inflight);
    let body = match rx
        .read_body(req.into_body(), declared, limit, &mut held)
        .await
    {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return Err(too_large(rx)),
        Err(ReadError::Busy(why)) => return Err(rx.busy(why)),
        Err(ReadError::Transport(e)) => {
            rx.count_refused(Reason::Decode, None);
            return Err(Refused {
                reason: Reason::Decode,
                message: format!("cannot read request body: {e}"),
            });
        }
    };
    let wire = body.len() as u64;
    let body = rx.decompress(encoding.as_deref(), body)?;
    let mut total = wire;
    if encoding.is_some() {
        total += body.len() as u64;
        rx.hold(&mut held, total)?;
    }
    let body = match format {
        Format::Protobuf => body,
        Format::Json => match json_to_protobuf(signal, &body) {
            Ok(pb) => {
                rx.hold(&mut held, total + pb.len() as u64)?;
                Bytes::from(pb)
            }
            Err(e) => {
                rx.count_refused(Reason::Decode, None);
                return Err(Refused {
                    reason: Reason::Decode,
                    message: format!("invalid OTLP/JSON: {e}"),
                });
            }
        },
    };
    let (accepted, written) = rx.export_written(signal, body, Transport::Http)?;
    // Admitted: the shard and forward queues account for its bytes now. With the disk
    // queue the client is answered once the request is written there.
    drop(held);
    if let Some(w) = written {
        w.wait().await;
    }
    Ok(Bytes::from(match format {
        Format::Protobuf => Receiver::response_protobuf(signal, &accepted),
        Format::Json => Receiver::response_json(signal, &accepted).into_bytes(),
    }))
}

/// The HTTP answer to a refusal: the status of the README's Endpoints table, a `google.rpc.Status` body in the
/// request's format, and `Retry-After` on retryable refusals.
fn error(format: Format, r: Refused) -> Response {
    let (status, grpc_code) = match r.reason {
        Reason::Decode => (StatusCode::BAD_REQUEST, 3),
        Reason::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, 8),
        Reason::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 3),
        Reason::Unauthenticated => (StatusCode::UNAUTHORIZED, 16),
        Reason::Backpressure | Reason::MemoryLimit => (StatusCode::SERVICE_UNAVAILABLE, 14),
    };
    let (ct, body) = match format {
        Format::Json => (
            "application/json",
            serde_json::json!({"code": grpc_code, "message": r.message})
                .to_string()
                .into_bytes(),
        ),
        Format::Protobuf => (
            "application/x-protobuf",
            tonic_types::pb::Status {
                code: grpc_code,
                message: r.message,
                details: vec![],
            }
            .encode_to_vec(),
        ),
    };
    let mut resp = (status, [(http::header::CONTENT_TYPE, ct)], Body::from(body)).into_response();
    if r.reason == Reason::Unauthenticated {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    if r.reason.retryable() {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}
