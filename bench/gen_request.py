#!/usr/bin/env python3
"""Build one OTLP ExportTraceServiceRequest body for load generators such as h2load.

N SERVER spans (default 100) spread round-robin over --services services (one
ResourceSpans each), 6 attributes per span (http.request.method, http.route,
http.response.status_code, url.path, server.address, user_agent.original), about 290
bytes per span on the wire, every --error-every-th span with status ERROR, and CURRENT
timestamps (span end = now minus a few ms), so a receiver with a lateness window accepts
them. Built with the `opentelemetry-proto` package's generated classes.

The file is gRPC-framed by default (1 byte compressed flag = 0, u32 big-endian length,
message), i.e. exactly the body of a unary TraceService/Export call; --raw writes the bare
protobuf, the body of an OTLP/HTTP POST /v1/traces. One JSON line on stdout describes the
request (spans, per-service counts, errors, bytes).
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

ROUTES = [
    ("GET", "/api/orders/{id}", "/api/orders/{n}"),
    ("GET", "/api/products", "/api/products"),
    ("POST", "/api/cart/items", "/api/cart/items"),
    ("GET", "/api/users/{id}", "/api/users/{n}"),
    ("PUT", "/api/cart/items/{id}", "/api/cart/items/{n}"),
]
USER_AGENT = "okhttp/4.12.0"  # a service-to-service client: these are internal SERVER spans
SERVICE_NAMES = [
    "checkout", "cart", "catalog", "payments", "shipping",
    "users", "search", "recommendations", "inventory", "frontend",
]


def kv_str(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def kv_int(key: str, value: int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value))


def build(spans: int, services: int, error_every: int, seed: int) -> tuple[ExportTraceServiceRequest, dict]:
    rng = random.Random(seed)
    now = time.time_ns()
    req = ExportTraceServiceRequest()
    per_service: list[ScopeSpans] = []
    names = SERVICE_NAMES[:services]
    for name in names:
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(
            Resource(
                attributes=[
                    kv_str("service.name", name),
                    kv_str("deployment.environment.name", "prod"),
                    kv_str("service.version", "1.4.2"),
                ]
            )
        )
        ss = rs.scope_spans.add()
        ss.scope.CopyFrom(InstrumentationScope(name="bench.gen_request", version="1"))
        per_service.append(ss)

    counts = {n: 0 for n in names}
    errors = 0
    for i in range(spans):
        svc = i % services
        method, route, path = ROUTES[rng.randrange(len(ROUTES))]
        is_error = error_every > 0 and (i + 1) % error_every == 0
        end = now - rng.randrange(0, 5_000_000)  # up to 5 ms before now
        duration = int(rng.lognormvariate(17.0, 1.0))  # median ~24 ms
        span = Span(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            parent_span_id=rng.randbytes(8),
            name=f"{method} {route}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=end - duration,
            end_time_unix_nano=end,
            attributes=[
                kv_str("http.request.method", method),
                kv_str("http.route", route),
                kv_int("http.response.status_code", 500 if is_error else 200),
                kv_str("url.path", path.replace("{n}", str(rng.randrange(100_000, 999_999)))),
                kv_str("server.address", names[svc]),
                kv_str("user_agent.original", USER_AGENT),
            ],
        )
        if is_error:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="internal error"))
        per_service[svc].spans.append(span)
        counts[names[svc]] += 1
        errors += is_error
    return req, {"per_service": counts, "errors": errors}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spans", type=int, default=100, help="spans in the request (default 100)")
    p.add_argument("--services", type=int, default=5, help="services, 2..10 (default 5)")
    p.add_argument("--error-every", type=int, default=20, help="every K-th span is an error (0 = none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--raw", action="store_true", help="bare protobuf (OTLP/HTTP body), no gRPC frame")
    p.add_argument("--out", required=True, help="file to write")
    args = p.parse_args()
    if not 2 <= args.services <= len(SERVICE_NAMES):
        p.error(f"--services must be in 2..{len(SERVICE_NAMES)}")
    if args.spans < 1:
        p.error("--spans must be >= 1")

    req, info = build(args.spans, args.services, args.error_every, args.seed)
    msg = req.SerializeToString()
    body = msg if args.raw else struct.pack(">BI", 0, len(msg)) + msg
    with open(args.out, "wb") as f:
        f.write(body)
    info.update(
        spans=args.spans,
        services=args.services,
        message_bytes=len(msg),
        file_bytes=len(body),
        bytes_per_span=round(len(msg) / args.spans, 1),
        grpc_framed=not args.raw,
        out=args.out,
    )
    print(json.dumps(info, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
