#!/usr/bin/env python3
"""Send SERVER spans to an OTLP receiver with the real OpenTelemetry Python SDK.

Used by the integration tests as "a real client in": one TracerProvider per service
(resource service.name, optionally deployment.environment.name and service.version), a
BatchSpanProcessor over the SDK's own OTLP exporter (gRPC or HTTP/protobuf), explicit start
and end times so the test knows every latency the receiver will see.

Prints exactly one JSON line on stdout:

    {"ok": true, "protocol": "grpc", "endpoint": "127.0.0.1:4317",
     "services": {"checkout": {"requests": 100, "errors": 7, "durations_s": [...]}},
     "totals": {"requests": 100, "errors": 7, "exported_spans": 100, "failed_exports": 0}}

and exits 0 when every span was exported, 1 when an export failed or a span was dropped
(the JSON line is printed either way, with "ok": false and an "error" sentence), 2 on bad
usage. Everything but the timestamps (durations, names, attributes, error placement,
trace and span ids) is a function of --seed and the service name.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

# (method, route): the span name is "METHOD route", as the HTTP semantic conventions name
# server spans.
OPERATIONS = [
    ("GET", "/api/orders"),
    ("GET", "/api/orders/{id}"),
    ("POST", "/api/orders"),
    ("GET", "/api/cart"),
    ("PUT", "/api/cart/items/{id}"),
    ("GET", "/healthz"),
]

MIN_DURATION_S = 0.001
MAX_DURATION_S = 2.0
# Log-normal with median 50 ms; about 1 draw in 600 falls outside [1 ms, 2 s] and is
# redrawn, so the distribution is a truncated log-normal, not one with spikes at the ends.
LOGNORMAL_MU = math.log(0.050)
LOGNORMAL_SIGMA = 1.2


class SeededIdGenerator(IdGenerator):
    """Trace and span ids drawn from a seeded RNG, so a run is reproducible."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


class RecordingExporter(SpanExporter):
    """Wraps the OTLP exporter and records what it reports.

    The SDK's span processors log a failed export and move on; a test must know, so every
    result is recorded here and checked after force_flush + shutdown.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.exported_spans = 0
        self.failed_exports = 0
        self.failed_spans = 0
        self.errors: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter should not raise; count it if it does
            result = SpanExportResult.FAILURE
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        with self._lock:
            if result == SpanExportResult.SUCCESS:
                self.exported_spans += len(spans)
            else:
                self.failed_exports += 1
                self.failed_spans += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Send seeded SERVER spans over OTLP with the OpenTelemetry Python SDK; "
        "print one JSON line describing what was sent."
    )
    p.add_argument(
        "--endpoint",
        help="gRPC: host:port (default 127.0.0.1:4317); HTTP: URL base such as "
        "http://127.0.0.1:4318 (default), /v1/traces is appended unless already there",
    )
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument(
        "--service",
        action="append",
        dest="services",
        metavar="NAME",
        help="service.name; repeat for several services (default: checkout)",
    )
    p.add_argument("--environment", help="deployment.environment.name for every service")
    p.add_argument("--version", dest="service_version", help="service.version for every service")
    p.add_argument("--count", type=non_negative_int, default=100, help="spans per service (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--error-every", type=non_negative_int, default=0, metavar="K",
        help="every K-th span of a service has status ERROR (0 = none)",
    )
    p.add_argument(
        "--http-5xx-every", type=non_negative_int, default=0, metavar="K",
        help="every K-th span has http.response.status_code=503 and status unset (0 = none)",
    )
    p.add_argument("--compression", choices=["none", "gzip"], default="none")
    p.add_argument(
        "--header", action="append", default=[], metavar="KEY=VALUE",
        help="extra request header / gRPC metadata, e.g. authorization=Bearer\\ x (repeatable)",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0,
        help="exporter timeout per export in seconds, retries included (default 10)",
    )
    p.add_argument(
        "--batch-size", type=int, default=512,
        help="max spans per export request (BatchSpanProcessor max_export_batch_size)",
    )
    args = p.parse_args(argv)
    args.services = args.services or ["checkout"]
    if len(set(args.services)) != len(args.services):
        p.error("--service names must be distinct")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    headers = {}
    for item in args.header:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--header {item!r}: expected KEY=VALUE")
        headers[key.strip().lower()] = value
    args.headers = headers
    if args.endpoint is None:
        args.endpoint = "127.0.0.1:4317" if args.protocol == "grpc" else "http://127.0.0.1:4318"
    return args


def make_exporter(args: argparse.Namespace) -> SpanExporter:
    if args.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = args.endpoint
        for scheme in ("http://", "https://"):
            if endpoint.startswith(scheme):
                endpoint = endpoint[len(scheme):]
        return OTLPSpanExporter(
            endpoint=endpoint,
            insecure=True,
            headers=args.headers or None,
            timeout=args.timeout,
            compression=grpc.Compression.Gzip if args.compression == "gzip" else grpc.Compression.NoCompression,
        )

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = args.endpoint.rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(
        endpoint=url,
        headers=args.headers or None,
        timeout=args.timeout,
        compression=Compression.Gzip if args.compression == "gzip" else Compression.NoCompression,
    )


def draw_duration_ns(rng: random.Random) -> int:
    while True:
        d = rng.lognormvariate(LOGNORMAL_MU, LOGNORMAL_SIGMA)
        if MIN_DURATION_S <= d <= MAX_DURATION_S:
            return round(d * 1e9)


def send_service(args: argparse.Namespace, service: str) -> tuple[dict, RecordingExporter, bool]:
    # str seeds are hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
    rng = random.Random(f"{args.seed}:{service}")
    attrs = {"service.name": service}
    if args.environment is not None:
        attrs["deployment.environment.name"] = args.environment
    if args.service_version is not None:
        attrs["service.version"] = args.service_version

    exporter = RecordingExporter(make_exporter(args))
    provider = TracerProvider(
        resource=Resource.create(attrs),
        id_generator=SeededIdGenerator(random.Random(f"ids:{args.seed}:{service}")),
        shutdown_on_exit=False,
    )
    # The queue holds every span of the run, so the processor never drops one for lack of
    # room; a drop would still be caught by the exported-spans check below.
    processor = BatchSpanProcessor(
        exporter,
        max_queue_size=max(2048, args.count),
        max_export_batch_size=args.batch_size,
        schedule_delay_millis=200,
        export_timeout_millis=args.timeout * 1000,
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("momentum.tests.send_spans")

    errors = 0
    durations: list[float] = []
    for i in range(1, args.count + 1):
        method, route = OPERATIONS[rng.randrange(len(OPERATIONS))]
        duration_ns = draw_duration_ns(rng)
        is_error = args.error_every > 0 and i % args.error_every == 0
        is_5xx = args.http_5xx_every > 0 and i % args.http_5xx_every == 0
        path = route.replace("{id}", str(rng.randrange(1, 10_000)))
        span_attrs = {
            "http.request.method": method,
            "http.route": route,
            "url.path": path,
            "http.response.status_code": 503 if is_5xx else 200,
            "server.address": "127.0.0.1",
        }
        end_ns = time.time_ns()
        span = tracer.start_span(
            f"{method} {route}",
            kind=SpanKind.SERVER,
            attributes=span_attrs,
            start_time=end_ns - duration_ns,
        )
        if is_error:
            span.set_status(Status(StatusCode.ERROR, "synthetic error"))
        span.end(end_time=end_ns)
        errors += is_error or is_5xx
        durations.append(duration_ns / 1e9)

    flushed = provider.force_flush(timeout_millis=int(args.timeout * 1000 * 3) + 5000)
    provider.shutdown()
    return {"requests": args.count, "errors": errors, "durations_s": durations}, exporter, flushed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    services: dict[str, dict] = {}
    problems: list[str] = []
    exported = failed = 0
    for service in args.services:
        summary, exporter, flushed = send_service(args, service)
        services[service] = summary
        exported += exporter.exported_spans
        failed += exporter.failed_exports
        if exporter.failed_exports:
            detail = f" ({'; '.join(exporter.errors)})" if exporter.errors else ""
            problems.append(
                f"service {service}: {exporter.failed_exports} export(s) of "
                f"{exporter.failed_spans} span(s) to {args.endpoint} failed{detail}"
            )
        elif not flushed:
            problems.append(f"service {service}: force_flush timed out")
        if exporter.exported_spans + exporter.failed_spans != summary["requests"]:
            problems.append(
                f"service {service}: {summary['requests']} spans made but only "
                f"{exporter.exported_spans + exporter.failed_spans} reached the exporter"
            )

    out = {
        "ok": not problems,
        "protocol": args.protocol,
        "endpoint": args.endpoint,
        "seed": args.seed,
        "services": services,
        "totals": {
            "requests": sum(s["requests"] for s in services.values()),
            "errors": sum(s["errors"] for s in services.values()),
            "exported_spans": exported,
            "failed_exports": failed,
        },
    }
    if problems:
        out["error"] = "; ".join(problems)
    print(json.dumps(out, separators=(",", ":")), flush=True)
    if problems:
        print("send_spans.py: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
