#!/usr/bin/env bash
# OTLP/gRPC receiver throughput: h2load replays one ExportTraceServiceRequest against a
# server pinned to its own core, and this script reports spans/s, server CPU and peak RSS.
#
#   bench/h2load.sh floor    [common options]
#   bench/h2load.sh momentum [--shards N] [--cores 0|0-1] [--config FILE] [common options]
#
# common options (defaults in brackets):
#   -n N            measured requests [20000]        --warmup N   unmeasured requests first [2000]
#   -c N            h2load connections [4]           -m N         streams per connection [32]
#   --spans N       spans per request [100]          --services N services in the request [5]
#   --port P        server OTLP/gRPC port [14317]    --admin-port P  momentum admin port [19464]
#   --client-cores  cores for h2load [1]             --bin PATH   server binary (skip the build)
#
# floor    = bench/floor, a tonic server that fully decodes each request with prost and
#            counts spans per service: the least any receiver has to do.
# momentum = the release binary, with a config generated here (gRPC/HTTP/admin on the
#            ports above, archive in a temp dir) unless --config is given.
# Checks that nothing was lost: the floor's own count on exit, or momentum's
# momentum_receiver_accepted_spans_total and sum(momentum_sli_requests_total) on /metrics,
# must equal the spans sent (warm-up included). Exits non-zero when they do not.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() {
    echo "h2load.sh: $*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
log() { echo "h2load.sh: $*" >&2; }

[[ $# -ge 1 ]] || usage
mode=$1
shift
[[ $mode == floor || $mode == momentum ]] || usage

requests=20000 warmup=2000 conns=4 streams=32 spans=100 services=5
port=14317 http_port=14318 admin_port=19464
shards=1 cores=0 client_cores=1 config="" bin=""
while [[ $# -gt 0 ]]; do
    [[ $1 == -h || $1 == --help ]] && usage
    [[ $# -ge 2 ]] || die "$1 needs a value"
    case $1 in
    -n) requests=$2 ;;
    --warmup) warmup=$2 ;;
    -c) conns=$2 ;;
    -m) streams=$2 ;;
    --spans) spans=$2 ;;
    --services) services=$2 ;;
    --port) port=$2 ;;
    --admin-port) admin_port=$2 ;;
    --client-cores) client_cores=$2 ;;
    --bin) bin=$2 ;;
    --shards) shards=$2 ;;
    --cores) cores=$2 ;;
    --config) config=$2 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift 2
done
if [[ $mode == floor ]]; then
    [[ $cores == 0 ]] || die "--cores is for momentum mode; the floor runs on core 0"
    [[ -z $config ]] || die "--config is for momentum mode"
fi
for v in requests warmup conns streams spans services port admin_port shards; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-} must be a non-negative integer, got '${!v}'"
done
[[ $(nproc) -ge 2 ]] || log "warning: $(nproc) core(s): server and h2load will share a core"

# ------------------------------------------------------------------ tools
"$ROOT/test.sh" --setup-only >&2 || die "setting up .venv failed"
PY=$ROOT/.venv/bin/python
if ! command -v h2load >/dev/null; then
    [[ $(id -u) == 0 ]] || die "h2load is missing: install Debian's nghttp2-client"
    log "installing nghttp2-client (h2load)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends nghttp2-client; } >/dev/null ||
        die "apt-get install nghttp2-client failed"
fi
command -v taskset >/dev/null || die "taskset (util-linux) is missing"

# ------------------------------------------------------------------ server binary
if [[ -z $bin ]]; then
    if [[ $mode == floor ]]; then
        log "building bench/floor (release, target dir bench/floor/target)"
        CARGO_TARGET_DIR=$ROOT/bench/floor/target cargo build -q --release \
            --manifest-path "$ROOT/bench/floor/Cargo.toml" || die "building bench/floor failed"
        bin=$ROOT/bench/floor/target/release/momentum-bench-floor
    else
        log "building momentum (release)"
        (cd "$ROOT" && cargo build -q --release --bin momentum) || die "building momentum failed"
        target=${CARGO_TARGET_DIR:-$ROOT/target}
        bin=$target/release/momentum
    fi
fi
[[ -x $bin ]] || die "server binary $bin is missing or not executable"

work=$(mktemp -d "${TMPDIR:-/tmp}/momentum-h2load.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ request body
info=$("$PY" "$ROOT/bench/gen_request.py" --spans "$spans" --services "$services" --out "$work/body.bin") ||
    die "gen_request.py failed"
log "request: $info"

# ------------------------------------------------------------------ start the server
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$port" $([[ $mode == momentum ]] && echo "$http_port $admin_port"); do
    ! port_open "$p" || die "port $p is already in use on 127.0.0.1 (choose another with --port/--admin-port)"
done

if [[ $mode == floor ]]; then
    server_cmd=("$bin" --port "$port" --threads 1)
else
    if [[ -z $config ]]; then
        config=$work/momentum.yaml
        cat >"$config" <<EOF
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:$port }
    http: { endpoint: 127.0.0.1:$http_port }
admin: { endpoint: 127.0.0.1:$admin_port }
pipeline:
  shards: $shards
archive:
  dir: $work/archive
EOF
    fi
    "$bin" validate --config "$config" >&2 || die "momentum validate --config $config failed"
    server_cmd=("$bin" run --config "$config")
fi
log "server: taskset -c $cores ${server_cmd[*]}"
(cd "$work" && exec taskset -c "$cores" "${server_cmd[@]}") >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

wait_ready() {
    local deadline=$((SECONDS + 30))
    while ! port_open "$port"; do
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; die "server exited before listening on $port"; }
        ((SECONDS < deadline)) || die "server did not listen on 127.0.0.1:$port within 30s"
        sleep 0.1
    done
    if [[ $mode == momentum ]]; then
        until curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "momentum /readyz on 127.0.0.1:$admin_port not ready within 30s"
            sleep 0.1
        done
    fi
}
wait_ready

url=http://127.0.0.1:$port/opentelemetry.proto.collector.trace.v1.TraceService/Export
run_h2load() { # $1 = requests, $2 = output file
    taskset -c "$client_cores" h2load -n "$1" -c "$conns" -m "$streams" -d "$work/body.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$url" >"$2" 2>&1 ||
        { cat "$2" >&2; die "h2load failed"; }
}
cpu_ticks() { # utime + stime of the server; fields counted after the ")" closing comm
    local stat rest
    stat=$(<"/proc/$server_pid/stat")
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

if ((warmup > 0)); then
    log "warm-up: $warmup requests"
    run_h2load "$warmup" "$work/warmup.txt"
fi
log "measuring: h2load -n $requests -c $conns -m $streams (client on core(s) $client_cores)"
cpu0=$(cpu_ticks)
run_h2load "$requests" "$work/h2load.txt"
cpu1=$(cpu_ticks)
hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
threads=$(awk '/^Threads:/ {print $2}' "/proc/$server_pid/status")

# ------------------------------------------------------------------ what the server counted
metrics_file=$work/metrics.txt
if [[ $mode == momentum ]]; then
    # Poll until the pipeline has drained (or 60s), then keep the last scrape for the check.
    deadline=$((SECONDS + 60))
    while :; do
        curl -fsS "http://127.0.0.1:$admin_port/metrics" >"$metrics_file" 2>/dev/null || : >"$metrics_file"
        done_yet=$(MODE=check EXPECT_REQ="$requests" EXPECT_WARM="$warmup" SPANS="$spans" \
            "$PY" - "$metrics_file" "$work/h2load.txt" "$work/warmup.txt" <<'PYEOF'
import os, re, sys
def h2(path):
    try:
        t = open(path).read()
    except FileNotFoundError:
        return 0
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", t)
    return int(m.group(1)) if m else 0
def metric_sum(text, name):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            total += float(m.group(3)); found = True
    return total if found else None
expected = (h2(sys.argv[2]) + h2(sys.argv[3])) * int(os.environ["SPANS"])
text = open(sys.argv[1]).read()
acc = metric_sum(text, "momentum_receiver_accepted_spans_total")
req = metric_sum(text, "momentum_sli_requests_total")
print("yes" if acc == expected and req == expected else "no")
PYEOF
        )
        [[ $done_yet == yes ]] && break
        ((SECONDS < deadline)) || break
        sleep 0.5
    done
fi
kill -TERM "$server_pid"
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=""
((server_rc == 0)) || { cat "$work/server.err" >&2; die "server exited with status $server_rc on SIGTERM"; }

# ------------------------------------------------------------------ report
MODE=$mode CPU0=$cpu0 CPU1=$cpu1 CLK_TCK=$(getconf CLK_TCK) HWM_KB=$hwm_kb THREADS=$threads \
    SPANS=$spans SERVICES=$services CORES=$cores CLIENT_CORES=$client_cores SHARDS=$shards \
    CONNS=$conns STREAMS=$streams REQUESTS=$requests INFO=$info \
    "$PY" - "$work/h2load.txt" "$work/warmup.txt" "$work/server.out" "$metrics_file" <<'PYEOF'
import json, os, re, sys

e = os.environ
h2_text = open(sys.argv[1]).read()

def h2(text):
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    if not m:
        sys.exit("h2load.sh: cannot read h2load's summary:\n" + text)
    return dict(zip(["total", "done", "succeeded", "failed", "errored", "timeout"], map(int, m.groups())))

def metric_sum(text, name):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            total += float(m.group(3)); found = True
    return total if found else None

run = h2(h2_text)
m = re.search(r"finished in ([\d.]+)(us|ms|s),", h2_text)
elapsed = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(2)]
try:
    warm = h2(open(sys.argv[2]).read())["succeeded"]
except FileNotFoundError:
    warm = 0
spans = int(e["SPANS"])
sent_spans = run["succeeded"] * spans
expected_total = (run["succeeded"] + warm) * spans
cpu_s = (int(e["CPU1"]) - int(e["CPU0"])) / int(e["CLK_TCK"])

problems = []
if run["succeeded"] != run["total"]:
    problems.append(f"h2load: {run['total'] - run['succeeded']} of {run['total']} requests did not succeed")
if e["MODE"] == "floor":
    out = open(sys.argv[3]).read().strip().splitlines()
    counted = json.loads(out[-1])["spans"] if out else None
    check = {"floor_counted_spans": counted}
    if counted != expected_total:
        problems.append(f"floor counted {counted} spans, {expected_total} were sent")
else:
    text = open(sys.argv[4]).read()
    acc = metric_sum(text, "momentum_receiver_accepted_spans_total")
    req = metric_sum(text, "momentum_sli_requests_total")
    check = {"accepted_spans_total": acc, "sli_requests_total": req}
    if acc != expected_total:
        problems.append(f"momentum_receiver_accepted_spans_total = {acc}, {expected_total} spans were sent (gRPC errors ride in trailers, which h2load counts as success)")
    if req != expected_total:
        problems.append(f"sum(momentum_sli_requests_total) = {req}, {expected_total} SERVER spans were sent")

result = {
    "mode": e["MODE"],
    "shards": int(e["SHARDS"]) if e["MODE"] == "momentum" else None,
    "server_cores": e["CORES"],
    "client_cores": e["CLIENT_CORES"],
    "requests": run["succeeded"],
    "spans_per_request": spans,
    "services": int(e["SERVICES"]),
    "request_bytes": json.loads(e["INFO"])["file_bytes"],
    "connections": int(e["CONNS"]),
    "streams": int(e["STREAMS"]),
    "elapsed_s": round(elapsed, 3),
    "spans_per_s": round(sent_spans / elapsed),
    "requests_per_s": round(run["succeeded"] / elapsed),
    "server_cpu_s": round(cpu_s, 2),
    "server_cpu_cores": round(cpu_s / elapsed, 2),
    "server_cpu_us_per_1k_spans": round(cpu_s / sent_spans * 1e9, 1) if sent_spans else None,
    "server_peak_rss_mib": round(int(e["HWM_KB"]) / 1024, 1),
    "server_threads": int(e["THREADS"]),
    "check": check,
    "ok": not problems,
}
print(f"""
{e['MODE']}: {result['spans_per_s']:,} spans/s ({result['requests_per_s']:,} req/s x {spans} spans, {elapsed:.2f}s)
  server CPU : {cpu_s:.2f}s = {result['server_cpu_cores']} core(s) busy; {result['server_cpu_us_per_1k_spans']} us CPU per 1k spans
  server RSS : peak {result['server_peak_rss_mib']} MiB (VmHWM), {result['server_threads']} threads
  checked    : {check}""", file=sys.stderr)
print(json.dumps(result, separators=(",", ":")))
for p in problems:
    print("h2load.sh: FAILED: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PYEOF
