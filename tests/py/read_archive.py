#!/usr/bin/env python3
"""Read a momentum Parquet archive with the real readers users have: DuckDB and pyarrow.

Used by the integration tests as "a real reader out". Prints exactly one JSON line:

    {"ok": true,
     "files": {"sli": 3, "momentum": 0, "events": 0},
     "temp_files": [],                       # hidden .tmp files present (should be none)
     "unreadable": [],                       # [path, error] of files DuckDB or pyarrow cannot open
     "duckdb": {
        "per_service": {"checkout": {"requests": 300, "errors": 40}, ...},   # operation = ''
        "per_service_env": [["checkout", "prod", 300, 40], ...],
        "schema": {"sli": [["window_start", "TIMESTAMP WITH TIME ZONE"], ...]},  # hive columns excluded
        "date_column_type": "DATE",
        "dates": ["2026-11-26"],
        "date_mismatches": 0,                # rows whose date folder is not the UTC date of window_start
        "rows": {"sli": 123}},
     "pyarrow": {
        "per_service": {...},
        "schema": {"sli": [["window_start", "timestamp[ms, tz=UTC]", false], ...]},
        "metadata": {"sli": {"momentum.schema_version": "1", ...}},
        "partition_field": "date"}}

--all-files opens every *.parquet file individually (after a crash, each must be whole).
Exits 0 whenever it ran: a reader error is reported as "ok": false with "error" (and per
file in "unreadable"), and the test asserts on the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

DATASETS = ["sli", "momentum", "events"]


def parquet_files(root: str, dataset: str) -> list[str]:
    out = []
    base = os.path.join(root, dataset)
    if not os.path.isdir(base):
        return out
    for part in sorted(os.listdir(base)):
        pdir = os.path.join(base, part)
        if not os.path.isdir(pdir):
            continue
        for name in sorted(os.listdir(pdir)):
            if name.endswith(".parquet") and not name.startswith("."):
                out.append(os.path.join(pdir, name))
    return out


def temp_files(root: str) -> list[str]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            if n.endswith(".tmp"):
                found.append(os.path.join(dirpath, n))
    return found


def duckdb_facts(con: duckdb.DuckDBPyConnection, root: str, files: dict) -> dict:
    out: dict = {"schema": {}, "rows": {}}
    for d in DATASETS:
        if not files[d]:
            continue
        glob = os.path.join(root, d, "**", "*.parquet")
        src = f"read_parquet('{glob}', hive_partitioning = true)"
        cols = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
        out["schema"][d] = [[c[0], c[1]] for c in cols if c[0] != "date"]
        out["rows"][d] = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        if d == "sli":
            date_type = [c[1] for c in cols if c[0] == "date"]
            out["date_column_type"] = date_type[0] if date_type else None
            out["dates"] = [
                str(r[0]) for r in con.execute(f"SELECT DISTINCT date FROM {src} ORDER BY 1").fetchall()
            ]
            out["date_mismatches"] = con.execute(
                f"SELECT count(*) FROM {src} WHERE date <> CAST(window_start AS DATE)"
            ).fetchone()[0]
            rows = con.execute(
                f"SELECT service_name, environment, sum(requests), sum(errors) FROM {src} "
                "WHERE operation = '' GROUP BY ALL ORDER BY ALL"
            ).fetchall()
            out["per_service_env"] = [[r[0], r[1], int(r[2]), int(r[3])] for r in rows]
            per: dict = {}
            for s, _e, req, err in out["per_service_env"]:
                p = per.setdefault(s, {"requests": 0, "errors": 0})
                p["requests"] += req
                p["errors"] += err
            out["per_service"] = per
            out["operations"] = con.execute(
                f"SELECT count(DISTINCT operation) FROM {src} WHERE operation <> ''"
            ).fetchone()[0]
            out["op_requests"] = int(
                con.execute(f"SELECT coalesce(sum(requests), 0) FROM {src} WHERE operation <> ''").fetchone()[0]
            )
    return out


def pyarrow_facts(root: str, files: dict) -> dict:
    out: dict = {"schema": {}, "metadata": {}}
    for d in DATASETS:
        if not files[d]:
            continue
        schema = pq.read_schema(files[d][0])
        out["schema"][d] = [[f.name, str(f.type), f.nullable] for f in schema]
        out["metadata"][d] = {
            k.decode(): v.decode()
            for k, v in (schema.metadata or {}).items()
            if k.decode().startswith("momentum.")
        }
        if d == "sli":
            dataset = ds.dataset(os.path.join(root, d), format="parquet", partitioning="hive")
            out["partition_field"] = "date" if "date" in dataset.schema.names else None
            t = dataset.to_table(filter=ds.field("operation") == "")
            agg = t.group_by("service_name").aggregate([("requests", "sum"), ("errors", "sum")])
            out["per_service"] = {
                r["service_name"]: {"requests": r["requests_sum"], "errors": r["errors_sum"]}
                for r in agg.to_pylist()
            }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="the archive root")
    p.add_argument("--all-files", action="store_true", help="open every file individually")
    args = p.parse_args()

    files = {d: parquet_files(args.dir, d) for d in DATASETS}
    out: dict = {
        "ok": True,
        "files": {d: len(f) for d, f in files.items()},
        "temp_files": temp_files(args.dir),
        "unreadable": [],
    }
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass  # without ICU, TIMESTAMPTZ casts are UTC already
    if args.all_files:
        rows = 0
        for d in DATASETS:
            for f in files[d]:
                try:
                    rows += con.execute(f"SELECT count(*) FROM read_parquet('{f}')").fetchone()[0]
                    pq.read_table(f)
                except Exception as exc:  # any reader error is the finding
                    out["unreadable"].append([f, f"{type(exc).__name__}: {exc}"])
        out["rows_in_all_files"] = rows
    try:
        out["duckdb"] = duckdb_facts(con, args.dir, files)
        out["pyarrow"] = pyarrow_facts(args.dir, files)
    except Exception as exc:
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        print(traceback.format_exc(), file=sys.stderr)
    print(json.dumps(out, separators=(",", ":"), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
