//! Archive writer cost: one flush of 65,536 `sli` rows (the flush threshold) through the
//! real writer task — chunked hand-off, Arrow batch, zstd Parquet, fsync, rename — per row.
//!
//! Rows are shaped like live traffic: 512 series (64 services × (1 + 7 operations)) over
//! 128 one-minute windows, each window's sketch built from 40 log-normal-ish latencies.
//! Besides the timing, the bench prints the file size per row once (bytes/row on disk).

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use momentum::archive::writer::{self, ArchiveStats, MAX_BUFFERED_ROWS};
use momentum::archive::{send_rows, ArchiveMsg, SliRow};
use momentum::config::{ArchiveConfig, Compression};
use momentum::sli::sketch::{Mapping, Sketch, DEFAULT_ACCURACY};

const MIN: u64 = 60_000_000_000;
const T0: u64 = 1_795_651_200 * 1_000_000_000;

fn rows(n: usize) -> Vec<SliRow> {
    let m = Mapping::new(DEFAULT_ACCURACY).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let series = i % 512;
            let minute = (i / 512) as u64;
            let (svc, op) = (series / 8, series % 8);
            let mut sk = Sketch::new();
            for _ in 0..40 {
                sk.add(&m, 0.005 * (1.0 + 400.0 * next() * next()));
            }
            SliRow {
                window_start_ns: T0 + minute * MIN,
                window_end_ns: T0 + (minute + 1) * MIN,
                service: format!("service-{svc:02}").into(),
                environment: "production".into(),
                operation: if op == 0 {
                    "".into()
                } else {
                    format!("GET /api/v1/resource-{op}").into()
                },
                requests: 40,
                errors: (i % 7) as u64,
                latency_good: Some(38),
                latency_p50_s: sk.quantile(&m, 0.5),
                latency_p95_s: sk.quantile(&m, 0.95),
                latency_p99_s: sk.quantile(&m, 0.99),
                latency_max_s: sk.max(),
                latency_sketch: sk.encode_ddsketch(&m),
            }
        })
        .collect()
}

fn flush(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = rows(MAX_BUFFERED_ROWS);
    let sketch_bytes: usize = data.iter().map(|r| r.latency_sketch.len()).sum();
    let mut group = c.benchmark_group("archive");
    group.throughput(Throughput::Elements(data.len() as u64));
    group.sample_size(10);
    for (name, codec) in [
        ("flush_65536_sli_rows_zstd", Compression::Zstd),
        ("flush_65536_sli_rows_snappy", Compression::Snappy),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(ArchiveStats::default());
        let cfg = ArchiveConfig {
            dir: dir.path().to_path_buf(),
            compression: codec,
            ..ArchiveConfig::default()
        };
        let (tx, handle) = rt
            .block_on(async { writer::start(&cfg, stats.clone()) })
            .unwrap();
        group.bench_function(name, |b| {
            b.iter_batched(
                || data.clone(),
                |rows| {
                    rt.block_on(async {
                        send_rows(&tx, rows, ArchiveMsg::Sli).await;
                        let (ack, done) = tokio::sync::oneshot::channel();
                        tx.send(ArchiveMsg::Flush(ack)).await.unwrap();
                        done.await.unwrap();
                    });
                    black_box(());
                },
                BatchSize::LargeInput,
            )
        });
        drop(tx);
        rt.block_on(handle).unwrap();
        let files = stats.files_written.load(Ordering::Relaxed);
        let bytes = stats.bytes_written.load(Ordering::Relaxed);
        let rows_written = stats.rows_written[0].load(Ordering::Relaxed);
        eprintln!(
            "{name}: {files} files, {:.1} bytes/row on disk ({:.1} bytes/row of sketch before compression), {:.1} ms write time per file",
            bytes as f64 / rows_written as f64,
            sketch_bytes as f64 / data.len() as f64,
            stats.write_ns.load(Ordering::Relaxed) as f64 / 1e6 / files as f64,
        );
    }
    group.finish();
}

/// The state checkpoint of 1,000 pairs whose 30-day SLO windows are full (a sample every
/// 5 minutes for 30 days, different per pair): encode (CBOR + zstd) time and size.
fn checkpoint(c: &mut Criterion) {
    use momentum::delivery::deployments::Delivery;
    use momentum::pipeline::checkpoint::{encode, Checkpoint, PairState};
    use momentum::sli::window::{Counts, SeriesWindows};
    const DAY: u64 = 86_400_000_000_000;
    let res = 10_000_000_000;
    let start = T0 - 30 * DAY;
    let pairs: Vec<PairState> = (0..1000u64)
        .map(|i| {
            let mut w = SeriesWindows::new(res, start, 30 * DAY);
            let mut t = start;
            while t < T0 {
                let requests = 50 + (t / MIN + i * 7) % 97;
                w.add(
                    t,
                    &Counts {
                        requests,
                        errors: (t / MIN + i) % 3,
                        good: requests - 1,
                    },
                );
                t += 5 * MIN;
                w.close_upto(t);
            }
            PairState {
                service: format!("service-{i:04}").into(),
                environment: "production".into(),
                hash: i,
                clock: T0,
                last_event: T0,
                last_metric: 0,
                windows: w,
                mwindows: None,
                slo: None,
                delivery: Delivery::default(),
            }
        })
        .collect();
    let cp = Checkpoint {
        pairs,
        ..Checkpoint::default()
    };
    let bytes = encode(&cp).unwrap().len();
    eprintln!(
        "checkpoint of {} pairs: {bytes} bytes ({:.0} bytes/pair)",
        cp.pairs.len(),
        bytes as f64 / cp.pairs.len() as f64
    );
    let mut group = c.benchmark_group("archive");
    group.sample_size(10);
    group.throughput(Throughput::Elements(cp.pairs.len() as u64));
    group.bench_function("checkpoint_encode_1000_pairs_30d", |b| {
        b.iter(|| black_box(encode(&cp).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, flush, checkpoint);
criterion_main!(benches);
