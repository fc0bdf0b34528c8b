#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (default 60 s each), seeded with
# the test fixtures. A soak, not a test: nothing here runs in ./test.sh or CI.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly flags (-Z sanitizer); on a stable toolchain RUSTC_BOOTSTRAP=1
# enables them (the stable rust-std ships the ASan runtime). Findings land in
# fuzz/artifacts/TARGET/; each gets a regression test in the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_traces pipeline json decompress config)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run --quiet --example fuzz_seeds -- fuzz/corpus
export RUSTC_BOOTSTRAP=1
( cd fuzz && cargo fuzz build )
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  ( cd fuzz && cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 ) \
    | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|SUMMARY|==[0-9]+==ERROR)|panicked" || true
done
