#!/usr/bin/env python3
"""Record `http.server.request.duration` with the real OpenTelemetry Python SDK and export
it over OTLP (cumulative temporality, the SDK's default), as an instrumented HTTP server
would. Mirrors send_spans.py: request i (1-based) answers 503 when i % --http-5xx-every
== 0, else 200. Prints one JSON line: {"ok", "requests", "errors"}; exits 1 when an export
failed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--endpoint", required=True, help="gRPC host:port, or HTTP URL base")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--service", required=True)
    p.add_argument("--environment")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--http-5xx-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        inner = OTLPMetricExporter(endpoint=args.endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        inner = OTLPMetricExporter(endpoint=args.endpoint.rstrip("/") + "/v1/metrics")

    failures = []
    original_export = inner.export

    def export(metrics_data, timeout_millis: float = 10_000, **kwargs):
        result = original_export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if result != MetricExportResult.SUCCESS:
            failures.append(str(result))
        return result

    inner.export = export
    reader = PeriodicExportingMetricReader(inner, export_interval_millis=3_600_000)
    attrs = {"service.name": args.service}
    if args.environment:
        attrs["deployment.environment.name"] = args.environment
    provider = MeterProvider(resource=Resource.create(attrs), metric_readers=[reader])
    hist = provider.get_meter("momentum.tests.send_histograms").create_histogram(
        "http.server.request.duration", unit="s", description="Duration of HTTP server requests."
    )
    rng = random.Random(args.seed)
    errors = 0
    for i in range(1, args.count + 1):
        is_5xx = args.http_5xx_every > 0 and i % args.http_5xx_every == 0
        errors += is_5xx
        hist.record(
            rng.lognormvariate(-3.0, 1.0),
            {"http.request.method": "GET", "http.route": "/api/orders", "http.response.status_code": 503 if is_5xx else 200},
        )
        if i == args.count // 2:
            provider.force_flush()  # a mid-run cumulative point: the next one must add only the rest
    provider.force_flush()
    provider.shutdown()
    ok = not failures
    print(json.dumps({"ok": ok, "requests": args.count, "errors": errors, "failures": failures}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
