#!/usr/bin/env bash
# More seeds of the deterministic interleaving simulation (tests/interleave.rs) than the
# test suite runs: the same requests through one shard in order and through 2–4 shards in
# a seeded random interleaving must give identical signals.
#
#   bench/interleave.sh [SEEDS]      seeds 1..SEEDS (default 5000), release build
#   bench/interleave.sh --seed S     one seed (a failure prints its shrunk prefix)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ${1:-} == --seed ]]; then
    export MOMENTUM_SEED=${2:?--seed needs a number}
else
    export MOMENTUM_SEEDS=${1:-5000}
fi
start=$(date +%s)
cargo test --release --test interleave any_shard_count -- --nocapture
echo "interleave: done in $(( $(date +%s) - start ))s"
