//! Latency sketch costs on the per-span path and at snapshot time.
//!
//! - `insert/*`: bin index computation plus add, per value (the per-span cost).
//! - `merge/300_bins`: merging two sketches that each cover ~300 bins (window roll-up).
//! - `quantiles/5`: extracting p50, p90, p95, p99, p99.9 from a ~300-bin sketch.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use momentum::sli::sketch::{Mapping, Sketch, DEFAULT_ACCURACY};

/// Deterministic latencies, log-uniform over `10^lo ..= 10^hi` seconds (xorshift64).
fn latencies(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(lo + (hi - lo) * u)
        })
        .collect()
}

fn insert(c: &mut Criterion) {
    let m = Mapping::new(DEFAULT_ACCURACY).unwrap();
    let values = latencies(4096, -3.0, 0.0, 0x9e37_79b9_7f4a_7c15);
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("index", |b| {
        b.iter(|| {
            for &v in &values {
                black_box(m.index(black_box(v)));
            }
        })
    });
    let mut sketch = Sketch::new();
    group.bench_function("index_and_add", |b| {
        b.iter(|| {
            for &v in &values {
                sketch.add(&m, black_box(v));
            }
        })
    });
    // The per-span shape: one index, three sketches (service, operation, sub-window).
    let mut sketches = [Sketch::new(), Sketch::new(), Sketch::new()];
    group.bench_function("index_once_add_to_3", |b| {
        b.iter(|| {
            for &v in &values {
                let i = m.index(black_box(v));
                for s in &mut sketches {
                    s.add_index(i, v);
                }
            }
        })
    });
    group.finish();
}

fn merge(c: &mut Criterion) {
    let m = Mapping::new(DEFAULT_ACCURACY).unwrap();
    // 10^-3 .. 10^-0.4: ~303 bins each, offset from one another by ~23 bins.
    let mut a = Sketch::new();
    let mut b = Sketch::new();
    for &v in &latencies(20_000, -3.0, -0.4, 1) {
        a.add(&m, v);
    }
    for &v in &latencies(20_000, -2.8, -0.2, 2) {
        b.add(&m, v);
    }
    a.trim();
    b.trim();
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(1));
    group.bench_function("300_bins", |bench| {
        bench.iter_batched_ref(
            || a.clone(),
            |acc| acc.merge(black_box(&b)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn quantiles(c: &mut Criterion) {
    let m = Mapping::new(DEFAULT_ACCURACY).unwrap();
    let mut s = Sketch::new();
    for &v in &latencies(20_000, -3.0, -0.4, 3) {
        s.add(&m, v);
    }
    let qs = [0.5, 0.9, 0.95, 0.99, 0.999];
    let mut group = c.benchmark_group("quantiles");
    group.throughput(Throughput::Elements(qs.len() as u64));
    group.bench_function("5", |b| {
        b.iter(|| black_box(&s).quantiles(&m, black_box(&qs)))
    });
    group.finish();
}

criterion_group!(benches, insert, merge, quantiles);
criterion_main!(benches);
