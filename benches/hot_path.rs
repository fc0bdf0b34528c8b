//! The per-span hot path: lean decode + validate + classify + aggregate into a shard,
//! and the stages one by one. Throughput in spans (elements/s).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use momentum::config::Config;
use momentum::pipeline::clock::{Clock, SystemClock};
use momentum::pipeline::router::resource_hash;
use momentum::pipeline::shard::ShardCore;
use momentum::pipeline::{Settings, Shared};
use momentum::receiver::decode::{decode_traces, DecodeOptions};
use momentum::receiver::validate_spans;
use momentum::sli::classify::classify;

#[path = "common/request.rs"]
mod request;
use request::request;

/// The binary's allocator (heap in use counted for the memory limit), so the figures are
/// the binary's.
#[global_allocator]
static ALLOCATOR: momentum::alloc::Counting = momentum::alloc::Counting;

fn bench(c: &mut Criterion) {
    let now = SystemClock.now_ns();
    let body = Bytes::from(request(5, now));
    let opts = DecodeOptions {
        max_value_bytes: 256,
    };
    let spans = decode_traces(body.clone(), &opts).unwrap().spans.len() as u64;
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(spans));

    g.bench_function("decode", |b| {
        b.iter(|| decode_traces(body.clone(), &opts).unwrap())
    });

    let batch = decode_traces(body.clone(), &opts).unwrap();
    g.bench_function("classify", |b| {
        b.iter(|| {
            batch
                .spans
                .iter()
                .filter(|s| classify(s, false) == momentum::sli::classify::Outcome::Error)
                .count()
        })
    });

    let set = Arc::new(Settings::from_config(Arc::new(Config::default())));
    let shared = Shared::new(Arc::new(SystemClock), &set);
    let mut shard = ShardCore::new(set, shared.clone());
    let hashes: Vec<u64> = batch
        .resources
        .iter()
        .map(|r| resource_hash(&batch.buf, r))
        .collect();
    let stamp = shared.fleet.admit(now, now);
    g.bench_function("aggregate", |b| {
        b.iter(|| shard.ingest(&batch, &hashes, stamp))
    });

    g.bench_function("decode_classify_aggregate", |b| {
        b.iter(|| {
            let mut batch = decode_traces(body.clone(), &opts).unwrap();
            let v = validate_spans(&mut batch, now, 60_000_000_000);
            let hashes: Vec<u64> = batch
                .resources
                .iter()
                .map(|r| resource_hash(&batch.buf, r))
                .collect();
            let stamp = shared.fleet.admit(now, v.newest);
            shard.ingest(&batch, &hashes, stamp);
        })
    });
    g.finish();

    // Window roll-up and snapshot: what a shard does on its tick for 200 pairs.
    let mut g = c.benchmark_group("window");
    let set = Arc::new(Settings::from_config(Arc::new(Config::default())));
    let mut shard = ShardCore::new(set, shared.clone());
    let bodies: Vec<_> = (0..40).map(|_| Bytes::from(request(5, now))).collect();
    for b in &bodies {
        let mut batch = decode_traces(b.clone(), &opts).unwrap();
        let hashes: Vec<u64> = batch
            .resources
            .iter()
            .map(|r| resource_hash(&batch.buf, r))
            .collect();
        let v = validate_spans(&mut batch, now, 60_000_000_000);
        shard.ingest(&batch, &hashes, shared.fleet.admit(now, v.newest));
    }
    g.bench_function("tick_and_snapshot", |b| {
        b.iter_batched(
            || (),
            |_| {
                shard.tick(|| true);
                shard.view()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
