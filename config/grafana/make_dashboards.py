#!/usr/bin/env python3
"""Writes the three Grafana dashboards (executive, on-call, debug) of momentum's
Prometheus metrics into config/grafana/dashboards/. The JSON files are committed; edit
this script and run it again to change them (python3 config/grafana/make_dashboards.py).
Deployments show as annotations on every dashboard."""
import json
import pathlib
import sys

# tests/stack.rs regenerates into a temp dir and compares with the committed files
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
SEL = 'service_name=~"$service"'


def target(expr, legend):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": "A"}


def panel(pid, title, kind, exprs, x, y, w=12, h=8, unit=None, desc=""):
    p = {
        "id": pid,
        "title": title,
        "description": desc,
        "type": kind,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [dict(target(e, l), refId=chr(65 + i)) for i, (e, l) in enumerate(exprs)],
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {},
    }
    return p


def dashboard(uid, title, panels, tags):
    return {
        "uid": uid,
        "title": title,
        "tags": ["momentum"] + tags,
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "service",
                    "type": "query",
                    "datasource": DS,
                    "query": "label_values(momentum_sli_requests_total, service_name)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Deployments",
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "blue",
                    "expr": f"sum by (service_name) (increase(momentum_delivery_deployments_total{{{SEL}}}[2m])) > 0",
                    "titleFormat": "deploy {{service_name}}",
                },
                {
                    "name": "Incidents",
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "expr": f"momentum_recovery_incident_open{{{SEL}}} > 0",
                    "titleFormat": "incident {{service_name}}",
                },
            ]
        },
        "panels": panels,
    }


executive = dashboard(
    "momentum-executive",
    "momentum — executive",
    [
        panel(1, "Momentum index", "timeseries", [(f"momentum_index{{{SEL}}}", "{{service_name}}")], 0, 0, unit="none",
              desc="0-100: throughput, lead time, stability, recovery, reliability"),
        panel(2, "Index components", "timeseries", [(f"momentum_index_component{{{SEL}}}", "{{service_name}} {{component}}")], 12, 0, unit="percentunit"),
        panel(3, "SLO compliance: error budget left", "bargauge",
              [(f"momentum_slo_error_budget_remaining_ratio{{{SEL}}}", "{{service_name}} {{objective}}")], 0, 8, unit="percentunit"),
        panel(4, "Release frequency (deploys a day)", "timeseries",
              [(f"momentum_delivery_deploy_frequency_per_day{{{SEL}}}", "{{service_name}}")], 12, 8),
        panel(5, "Change failure ratio", "timeseries",
              [(f"momentum_delivery_change_failure_ratio{{{SEL}}}", "{{service_name}}")], 0, 16, unit="percentunit"),
        panel(6, "Major incidents (lookback)", "stat",
              [(f"sum by (service_name) (momentum_recovery_incidents_total{{{SEL}}})", "{{service_name}}")], 12, 16),
        panel(7, "Lead time for changes (median)", "timeseries",
              [(f'momentum_delivery_lead_time_seconds{{{SEL},quantile="0.5"}}', "{{service_name}}")], 0, 24, unit="s"),
        panel(8, "Time to restore (mean)", "timeseries",
              [(f"momentum_recovery_time_to_restore_seconds_sum{{{SEL}}} / momentum_recovery_time_to_restore_seconds_count{{{SEL}}}", "{{service_name}}")], 12, 24, unit="s"),
    ],
    ["executive"],
)

oncall = dashboard(
    "momentum-oncall",
    "momentum — on-call",
    [
        panel(1, "Open incidents", "stat", [(f"momentum_recovery_incident_open{{{SEL}}} > 0", "{{service_name}}")], 0, 0, w=8),
        panel(2, "Firing alerts", "table", [(f"momentum_slo_alert{{{SEL}}} > 0", "{{service_name}} {{objective}} {{severity}}")], 8, 0, w=16),
        panel(3, "Availability (5m)", "timeseries",
              [(f'momentum_sli_availability_ratio{{{SEL},window="5m"}}', "{{service_name}}")], 0, 8, unit="percentunit"),
        panel(4, "p99 latency (5m)", "timeseries",
              [(f'momentum_sli_latency_seconds{{{SEL},window="5m",quantile="0.99"}}', "{{service_name}}")], 12, 8, unit="s"),
        panel(5, "Burn rate, 1h and 5m (page at 14.4)", "timeseries",
              [(f'momentum_slo_burn_rate{{{SEL},window=~"1h|5m"}}', "{{service_name}} {{objective}} {{window}}")], 0, 16),
        panel(6, "Burn rate, 6h and 3d (ticket at 1)", "timeseries",
              [(f'momentum_slo_burn_rate{{{SEL},window=~"6h|3d"}}', "{{service_name}} {{objective}} {{window}}")], 12, 16),
        panel(7, "Recent deploys and rollbacks", "timeseries",
              [(f"increase(momentum_delivery_deployments_total{{{SEL}}}[10m])", "{{service_name}} {{result}}"),
               (f"increase(momentum_delivery_rollbacks_total{{{SEL}}}[10m])", "{{service_name}} rollback")], 0, 24, w=24),
    ],
    ["on-call"],
)

debug = dashboard(
    "momentum-debug",
    "momentum — debug",
    [
        panel(1, "Requests by operation", "timeseries",
              [(f"rate(momentum_operation_requests_total{{{SEL}}}[5m])", "{{service_name}} {{operation}}")], 0, 0, unit="reqps"),
        panel(2, "Errors by operation", "timeseries",
              [(f"rate(momentum_operation_errors_total{{{SEL}}}[5m])", "{{service_name}} {{operation}}")], 12, 0, unit="reqps"),
        panel(3, "p99 latency by operation (5m)", "timeseries",
              [(f'momentum_operation_latency_seconds{{{SEL},window="5m",quantile="0.99"}}', "{{service_name}} {{operation}}")], 0, 8, w=24, unit="s"),
        panel(4, "Dependent service health: availability (1h)", "bargauge",
              [(f'momentum_sli_availability_ratio{{window="1h"}}', "{{service_name}}")], 0, 16, unit="percentunit"),
        panel(5, "CI pipelines: failure ratio", "timeseries",
              [("momentum_cicd_pipeline_failure_ratio", "{{cicd_pipeline_name}}")], 12, 16, unit="percentunit"),
        panel(6, "CI pipeline runs", "timeseries",
              [("increase(momentum_cicd_pipeline_runs_total[1h])", "{{cicd_pipeline_name}} {{result}}")], 0, 24, w=24),
    ],
    ["debug"],
)

OUT.mkdir(parents=True, exist_ok=True)
for name, d in [("executive", executive), ("on-call", oncall), ("debug", debug)]:
    (OUT / f"momentum-{name}.json").write_text(json.dumps(d, indent=2) + "\n")
print("written to", OUT)
