//! OTLP/gRPC over HTTP/2: the three unary `Export` methods, served directly on hyper so
//! the request bytes reach the lean decoder without a prost round trip, and every
//! answer of the README's Endpoints table is exactly the status it names.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::inflight::{Held, ReadError};
use super::{Reason, Receiver, Refused, Signal, Transport};
use crate::signal::{LOGS_PATH, METRICS_PATH, TRACES_PATH};

/// The axum router of the gRPC endpoint.
pub fn router(rx: Arc<Receiver>) -> axum::Router {
    axum::Router::new()
        .route(TRACES_PATH, post(|s, r| handle(s, Signal::Traces, r)))
        .route(METRICS_PATH, post(|s, r| handle(s, Signal::Metrics, r)))
        .route(LOGS_PATH, post(|s, r| handle(s, Signal::Logs, r)))
        .fallback(|| async { Status::unimplemented("unknown gRPC method").into_http::<Body>() })
        .with_state(rx)
}

async fn handle(State(rx): State<Arc<Receiver>>, signal: Signal, req: Request) -> Response {
    match export(&rx, signal, req).await {
        Ok(body) => ok_response(body),
        Err(status) => status.into_http::<Body>(),
    }
}

async fn export(rx: &Receiver, signal: Signal, req: Request) -> Result<Bytes, Status> {
    rx.authenticate(req.headers()).map_err(to_status)?;
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/grpc") || ct.starts_with("application/grpc-web") {
        rx.count_refused(Reason::UnsupportedMediaType, None);
        return Err(Status::invalid_argument(format!(
            "unsupported content-type {ct:?}: use application/grpc"
        )));
    }
    let encoding = req
        .headers()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(e) = encoding.as_deref() {
        if !matches!(e, "identity" | "gzip" | "zstd") {
            rx.count_refused(Reason::Decode, None);
            return Err(Status::unimplemented(format!(
                "grpc-encoding {e:?} is not supported (gzip, zstd)"
            )));
        }
    }
    let limit = rx.max_bytes;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = |rx: &Receiver| {
        rx.count_refused(Reason::TooLarge, None);
        Status::resource_exhausted(format!("request over the {limit}-byte limit"))
    };
    // The body's bytes are held against the in-flight budget before they are read.
    let mut held = Held::new(&rx.inflight);
    let body = match rx
        .read_body(
            req.into_body(),
            declared,
            limit.saturating_add(5),
            &mut held,
        )
        .await
    {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return Err(too_large(rx)),
        Err(ReadError::Busy(why)) => return Err(to_status(rx.busy(why))),
        Err(ReadError::Transport(e)) => {
            rx.count_refused(Reason::Decode, None);
            return Err(Status::invalid_argument(format!(
                "cannot read request body: {e}"
            )));
        }
    };
    let wire = body.len() as u64;
    let message = unframe(rx, body)?;
    let (compressed, payload) = message;
    let payload = if compressed {
        let p = rx
            .decompress(encoding.as_deref(), payload)
            .map_err(to_status)?;
        rx.hold(&mut held, wire + p.len() as u64)
            .map_err(to_status)?;
        p
    } else {
        payload
    };
    let (accepted, written) = rx
        .export_written(signal, payload, Transport::Grpc)
        .map_err(to_status)?;
    // Admitted: the shard and forward queues account for its bytes now. With the disk
    // queue the client is answered once the request is written there.
    drop(held);
    if let Some(w) = written {
        w.wait().await;
    }
    Ok(Bytes::from(Receiver::response_protobuf(signal, &accepted)))
}

/// Splits one length-prefixed gRPC message off the body.
fn unframe(rx: &Receiver, mut body: Bytes) -> Result<(bool, Bytes), Status> {
    if body.len() < 5 {
        rx.count_refused(Reason::Decode, None);
        return Err(Status::invalid_argument(
            "truncated gRPC message: no 5-byte frame header",
        ));
    }
    let flag = body.get_u8();
    let len = body.get_u32() as usize;
    if flag > 1 {
        rx.count_refused(Reason::Decode, None);
        return Err(Status::invalid_argument(format!(
            "invalid gRPC compressed flag {flag}"
        )));
    }
    if len > rx.max_bytes {
        rx.count_refused(Reason::TooLarge, None);
        return Err(Status::resource_exhausted(format!(
            "message of {len} bytes is over the {}-byte limit",
            rx.max_bytes
        )));
    }
    if body.len() != len {
        rx.count_refused(Reason::Decode, None);
        return Err(Status::invalid_argument(format!(
            "gRPC frame says {len} bytes but the body holds {} (one unary message expected)",
            body.len()
        )));
    }
    Ok((flag == 1, body))
}

/// The gRPC status of a refusal (the README's Endpoints table).
pub fn to_status(r: Refused) -> Status {
    match r.reason {
        Reason::Decode | Reason::UnsupportedMediaType => Status::invalid_argument(r.message),
        Reason::TooLarge => Status::resource_exhausted(r.message),
        Reason::Unauthenticated => Status::unauthenticated(r.message),
        Reason::Backpressure | Reason::MemoryLimit => Status::with_error_details(
            Code::Unavailable,
            r.message,
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        ),
    }
}

fn ok_response(msg: Bytes) -> Response {
    let mut framed = BytesMut::with_capacity(msg.len() + 5);
    framed.put_u8(0);
    framed.put_u32(msg.len() as u32);
    framed.extend_from_slice(&msg);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut resp = Response::new(Body::new(GrpcBody {
        data: Some(framed.freeze()),
        trailers: Some(trailers),
    }));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static("identity,gzip,zstd"),
    );
    resp
}

/// A unary gRPC response body: one data frame, then the trailers.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
