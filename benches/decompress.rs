//! Request decompression as the receivers do it (`receiver::decompress`): the bench
//! request (100 spans, ~29 KB) gzip- and zstd-compressed, decompressed per iteration.
//! Chained traffic from an OpenTelemetry Collector arrives gzip-compressed by default.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use momentum::receiver::decompress;
use std::hint::black_box;
use std::io::Write;

#[path = "common/request.rs"]
mod request;

fn bench_decompress(c: &mut Criterion) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let raw = request::request(5, now);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&raw).unwrap();
    let gz = bytes::Bytes::from(e.finish().unwrap());
    let zst = bytes::Bytes::from(zstd::encode_all(&raw[..], 3).unwrap());
    let limit = 16 << 20;
    assert_eq!(decompress(Some("gzip"), gz.clone(), limit).unwrap(), raw);
    let mut g = c.benchmark_group("decompress_100_spans");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("gzip", |b| {
        b.iter(|| decompress(Some("gzip"), black_box(gz.clone()), limit).unwrap())
    });
    g.bench_function("zstd", |b| {
        b.iter(|| decompress(Some("zstd"), black_box(zst.clone()), limit).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_decompress);
criterion_main!(benches);
