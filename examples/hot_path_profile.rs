//! A driver for instruction-count profiling of the per-span hot path (not a benchmark):
//! the request of `benches/hot_path.rs` (100 SERVER spans, 6 attributes each, 5
//! services) decoded, validated, hashed and aggregated `N` times, as in
//! `hot_path/decode_classify_aggregate`. The clock is manual and moves 100 µs per
//! request (1 M spans/s), so the run is deterministic however slowly it executes.
//!
//! ```sh
//! cargo build --release --example hot_path_profile
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*hot_path_profile::run*' \
//!     target/release/examples/hot_path_profile [all|decode|aggregate] [N]
//! ```
//!
//! Instructions per span = the callgrind total ÷ (N × 100).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use momentum::config::Config;
use momentum::model::TraceBatch;
use momentum::pipeline::clock::{Clock, ManualClock, SystemClock};
use momentum::pipeline::router::resource_hash;
use momentum::pipeline::shard::ShardCore;
use momentum::pipeline::{Settings, Shared};
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::validate_spans;

#[path = "../benches/common/request.rs"]
mod request;
use request::request;

/// The binary's allocator (heap in use counted for the memory limit), so the figures are
/// the binary's.
#[global_allocator]
static ALLOCATOR: momentum::alloc::Counting = momentum::alloc::Counting;

fn hashes(batch: &TraceBatch) -> Vec<u64> {
    batch
        .resources
        .iter()
        .map(|r| resource_hash(&batch.buf, r))
        .collect()
}

#[inline(never)]
fn run_decode(body: &Bytes, opts: &DecodeOptions, n: usize) {
    for _ in 0..n {
        black_box(decode_traces(body.clone(), opts).unwrap());
    }
}

#[inline(never)]
fn run_aggregate(
    shard: &mut ShardCore,
    shared: &Shared,
    clock: &ManualClock,
    batch: &TraceBatch,
    n: usize,
) {
    let h = hashes(batch);
    for _ in 0..n {
        clock.advance(100_000);
        let stamp = shared.fleet.admit(clock.now_ns(), 0);
        shard.ingest(batch, &h, stamp);
    }
}

#[inline(never)]
fn run_all(
    shard: &mut ShardCore,
    shared: &Shared,
    clock: &ManualClock,
    body: &Bytes,
    opts: &DecodeOptions,
    now: u64,
    n: usize,
) {
    for _ in 0..n {
        clock.advance(100_000);
        let mut batch = decode_traces(body.clone(), opts).unwrap();
        let v = validate_spans(&mut batch, now, 60_000_000_000);
        let h = hashes(&batch);
        let stamp = shared.fleet.admit(clock.now_ns(), v.newest);
        shard.ingest(&batch, &h, stamp);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "all".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let now = SystemClock.now_ns();
    let body = Bytes::from(request(5, now));
    let opts = DecodeOptions {
        max_value_bytes: 256,
    };
    let clock = ManualClock::new(now);
    let set = Arc::new(Settings::from_config(Arc::new(Config::default())));
    let shared = Shared::new(clock.clone(), &set);
    let mut shard = ShardCore::new(set, shared.clone());
    // Warm up outside the measured function: pairs and operations exist.
    let mut batch = decode_traces(body.clone(), &opts).unwrap();
    let v = validate_spans(&mut batch, now, 60_000_000_000);
    let stamp = shared.fleet.admit(now, v.newest);
    shard.ingest(&batch, &hashes(&batch), stamp);
    match mode.as_str() {
        "decode" => run_decode(&body, &opts, n),
        "aggregate" => run_aggregate(&mut shard, &shared, &clock, &batch, n),
        _ => run_all(&mut shard, &shared, &clock, &body, &opts, now, n),
    }
    eprintln!("{mode}: {n} requests × {} spans", batch.spans.len());
}
