#!/usr/bin/env bash
# The one test command: developers, README and CI (.ci/run) all run this.
#
#   ./test.sh                  set up, then fmt --check, clippy -D warnings, cargo test
#   ./test.sh FILTER [ARGS]    same, with the arguments handed to `cargo test`
#   ./test.sh --setup-only     only the setup steps (used by bench/h2load.sh)
#
# Setup is idempotent and fast when already done:
#   - .venv: a Python 3.11 venv with tests/py/requirements.txt; pip runs only when that
#     file (or the interpreter) changed since the last successful install (hash stamp).
#   - promtool and the Prometheus server: both from Debian's `prometheus` package,
#     installed when either is missing (needs root). The remote-write test starts the
#     server itself on a free port; the package's own service is never started.
#   - chromium: Debian's headless-capable browser (and a font), when missing (needs root);
#     the report test renders `momentum report --format html` and checks a screenshot.
#   - amtool: from Debian's `prometheus-alertmanager`, when missing (needs root); the
#     stack test checks config/alertmanager.yml with it.
# The integration tests find these through MOMENTUM_PYTHON, MOMENTUM_PROMTOOL,
# MOMENTUM_PROMETHEUS, MOMENTUM_CHROMIUM and MOMENTUM_AMTOOL, exported here; a caller may
# preset the last four to use other binaries.
# CARGO_TARGET_DIR is left as the caller has it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD

die() {
    echo "test.sh: FAILED: $*" >&2
    exit 1
}
step() { printf '==> %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

setup_only=false
if [[ ${1:-} == --setup-only ]]; then
    setup_only=true
    shift
fi

# ---------------------------------------------------------------- Python venv (a)
setup_venv() {
    local py=${MOMENTUM_BOOTSTRAP_PYTHON:-python3.11}
    local req=tests/py/requirements.txt venv=.venv
    local stamp=$venv/.requirements.sha256
    command -v "$py" >/dev/null || die "$py not found: the Python test client needs CPython 3.11"
    [[ -f $req ]] || die "$req is missing"

    # The stamp covers the requirements and the interpreter, so a new Python rebuilds.
    local want
    want=$({ sha256sum "$req"; "$py" -c 'import sys; print(sys.version, sys.executable)'; } | sha256sum | cut -d' ' -f1)

    # A venv whose interpreter vanished (python upgraded under it) is rebuilt from scratch.
    if [[ -e $venv ]] && ! "$venv/bin/python" -c '' 2>/dev/null; then
        step "venv: $venv is broken, recreating"
        rm -rf "$venv"
    fi
    if [[ -x $venv/bin/python && -f $stamp && $(<"$stamp") == "$want" ]]; then
        step "venv: $venv up to date"
        return
    fi
    step "venv: installing $req into $venv"
    [[ -x $venv/bin/python ]] || "$py" -m venv "$venv" || die "could not create venv $venv with $py"
    rm -f "$stamp"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --no-input -q -r "$req" ||
        die "pip install -r $req failed (is PyPI reachable?)"
    "$venv/bin/python" -c 'import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.grpc.trace_exporter, opentelemetry.exporter.otlp.proto.http.trace_exporter, opentelemetry.proto.collector.trace.v1.trace_service_pb2, duckdb, pyarrow' ||
        die "packages from $req installed but do not import"
    echo "$want" >"$stamp"
}

# ---------------------------------------------------------------- promtool, prometheus (b)
install_prometheus_package() {
    local what=$1
    [[ $(id -u) == 0 ]] || die "$what is missing; install Debian's 'prometheus' package (as root: apt-get install prometheus)"
    command -v apt-get >/dev/null || die "$what is missing and there is no apt-get to install it"
    step "$what: installing Debian package 'prometheus' (apt-get update + install)"
    # Never start the packaged Prometheus service: the tests start their own server.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends prometheus >/dev/null ||
        die "apt-get install prometheus failed"
}

setup_promtool() {
    if [[ -n ${MOMENTUM_PROMTOOL:-} ]]; then
        [[ -x $MOMENTUM_PROMTOOL ]] || die "MOMENTUM_PROMTOOL=$MOMENTUM_PROMTOOL is not an executable"
        step "promtool: $MOMENTUM_PROMTOOL (from MOMENTUM_PROMTOOL)"
        return
    fi
    if ! command -v promtool >/dev/null; then
        install_prometheus_package promtool
        command -v promtool >/dev/null || die "package 'prometheus' installed but promtool is not on PATH"
    fi
    MOMENTUM_PROMTOOL=$(command -v promtool)
    step "promtool: $MOMENTUM_PROMTOOL ($("$MOMENTUM_PROMTOOL" --version 2>&1 | head -n1))"
}

# The remote-write test writes into a real Prometheus (--web.enable-remote-write-receiver).
setup_prometheus() {
    if [[ -n ${MOMENTUM_PROMETHEUS:-} ]]; then
        [[ -x $MOMENTUM_PROMETHEUS ]] || die "MOMENTUM_PROMETHEUS=$MOMENTUM_PROMETHEUS is not an executable"
        step "prometheus: $MOMENTUM_PROMETHEUS (from MOMENTUM_PROMETHEUS)"
        return
    fi
    if ! command -v prometheus >/dev/null; then
        install_prometheus_package prometheus
        command -v prometheus >/dev/null || die "package 'prometheus' installed but prometheus is not on PATH"
    fi
    MOMENTUM_PROMETHEUS=$(command -v prometheus)
    local help
    help=$("$MOMENTUM_PROMETHEUS" --help 2>&1 || true)
    [[ $help == *--web.enable-remote-write-receiver* ]] ||
        die "$MOMENTUM_PROMETHEUS has no --web.enable-remote-write-receiver (Prometheus 2.33 or newer is needed)"
    step "prometheus: $MOMENTUM_PROMETHEUS ($("$MOMENTUM_PROMETHEUS" --version 2>&1 | head -n1))"
}

# ---------------------------------------------------------------- chromium (c)
apt_updated=false
apt_install() {
    [[ $(id -u) == 0 ]] || die "$1 is missing; install Debian's '$2' package (as root: apt-get install $2)"
    command -v apt-get >/dev/null || die "$1 is missing and there is no apt-get to install it"
    export DEBIAN_FRONTEND=noninteractive
    if ! $apt_updated; then
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt_updated=true
    fi
    shift
    apt-get install -y -q --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

setup_chromium() {
    if [[ -n ${MOMENTUM_CHROMIUM:-} ]]; then
        [[ -x $MOMENTUM_CHROMIUM ]] || die "MOMENTUM_CHROMIUM=$MOMENTUM_CHROMIUM is not an executable"
        step "chromium: $MOMENTUM_CHROMIUM (from MOMENTUM_CHROMIUM)"
        return
    fi
    if ! command -v chromium >/dev/null; then
        step "chromium: installing Debian packages 'chromium' and 'fonts-dejavu-core'"
        apt_install chromium chromium fonts-dejavu-core
        command -v chromium >/dev/null || die "package 'chromium' installed but chromium is not on PATH"
    fi
    MOMENTUM_CHROMIUM=$(command -v chromium)
    step "chromium: $MOMENTUM_CHROMIUM"
}

# The stack test checks config/alertmanager.yml with amtool (Debian's
# prometheus-alertmanager).
setup_amtool() {
    if [[ -n ${MOMENTUM_AMTOOL:-} ]]; then
        [[ -x $MOMENTUM_AMTOOL ]] || die "MOMENTUM_AMTOOL=$MOMENTUM_AMTOOL is not an executable"
        step "amtool: $MOMENTUM_AMTOOL (from MOMENTUM_AMTOOL)"
        return
    fi
    if ! command -v amtool >/dev/null; then
        step "amtool: installing Debian package 'prometheus-alertmanager'"
        apt_install amtool prometheus-alertmanager
        command -v amtool >/dev/null || die "package 'prometheus-alertmanager' installed but amtool is not on PATH"
    fi
    MOMENTUM_AMTOOL=$(command -v amtool)
    step "amtool: $MOMENTUM_AMTOOL"
}

t0=$(now)
setup_venv
setup_promtool
setup_prometheus
setup_chromium
setup_amtool
export MOMENTUM_PYTHON=$ROOT/.venv/bin/python
export MOMENTUM_PROMTOOL MOMENTUM_PROMETHEUS MOMENTUM_CHROMIUM MOMENTUM_AMTOOL
step "setup done in $(elapsed "$t0")"
$setup_only && exit 0

# ---------------------------------------------------------------- Rust checks (c)
command -v cargo >/dev/null || die "cargo not found"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is not installed for this toolchain"
cargo clippy --version >/dev/null 2>&1 || die "clippy is not installed for this toolchain"

# In CI the committed Cargo.lock must be complete; a developer adding a dependency may
# update it locally.
locked=()
[[ ${CI:-} == true ]] && locked=(--locked)

t=$(now)
step "python: byte-compiling tests/py and bench scripts"
"$MOMENTUM_PYTHON" -m py_compile tests/py/*.py bench/*.py config/grafana/*.py || die "a Python helper does not compile"

step "cargo fmt --check"
cargo fmt --all --check || die "code is not formatted: run 'cargo fmt --all'"

step "cargo clippy --all-targets -- -D warnings"
cargo clippy "${locked[@]}" --all-targets -- -D warnings || die "clippy found problems (see above)"

step "cargo test"
cargo test "${locked[@]}" "$@" || die "cargo test failed (see above)"

step "all checks passed in $(elapsed "$t0") (setup + checks; checks $(elapsed "$t"))"
