use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::sync::oneshot;

use super::*;
use crate::archive::{schema, ArchiveMsg, EventRow, MomentumRow, SliRow};
use crate::config::ArchiveConfig;

const MIN: u64 = 60_000_000_000;
const DAY: u64 = 1440 * MIN;
/// 2026-11-26T00:00:00Z
const T0: u64 = 1_795_651_200 * 1_000_000_000;

fn cfg(dir: &Path) -> ArchiveConfig {
    ArchiveConfig {
        dir: dir.to_path_buf(),
        ..ArchiveConfig::default()
    }
}

fn sli_row(start: u64, service: &str, op: &str, requests: u64) -> SliRow {
    SliRow {
        window_start_ns: start,
        window_end_ns: start + MIN,
        service: service.into(),
        environment: "prod".into(),
        operation: op.into(),
        requests,
        errors: requests / 10,
        latency_good: Some(requests),
        latency_p50_s: Some(0.01),
        latency_p95_s: Some(0.02),
        latency_p99_s: Some(0.03),
        latency_max_s: Some(0.04),
        latency_sketch: vec![0x0a, 0x00],
    }
}

/// Every finished file under `root/dataset`, sorted.
fn files(root: &Path, dataset: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(parts) = std::fs::read_dir(root.join(dataset)) else {
        return out;
    };
    for p in parts.flatten() {
        for f in std::fs::read_dir(p.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let f = File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

async fn flush(tx: &ArchiveSender) {
    let (ack, done) = oneshot::channel();
    tx.send(ArchiveMsg::Flush(ack)).await.unwrap();
    done.await.unwrap();
}

#[tokio::test]
async fn flush_writes_one_file_per_dataset_and_day_with_the_spec_schema() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ArchiveStats::default());
    let (tx, handle) = start(&cfg(dir.path()), stats.clone()).unwrap();
    // Two days of sli rows, sent out of order over two messages.
    tx.send(ArchiveMsg::Sli(vec![
        sli_row(T0 + DAY + MIN, "b", "", 5),
        sli_row(T0, "a", "GET /", 3),
    ]))
    .await
    .unwrap();
    tx.send(ArchiveMsg::Sli(vec![
        sli_row(T0 + 2 * MIN, "a", "", 7),
        sli_row(T0 + DAY - MIN, "a", "", 1),
    ]))
    .await
    .unwrap();
    tx.send(ArchiveMsg::Momentum(vec![MomentumRow {
        window_start_ns: T0,
        window_end_ns: T0 + MIN,
        service: "a".into(),
        environment: "".into(),
        index: Some(71.5),
        ..MomentumRow::default()
    }]))
    .await
    .unwrap();
    tx.send(ArchiveMsg::Events(vec![EventRow {
        time_ns: T0 + 5 * MIN,
        service: "a".into(),
        environment: "".into(),
        kind: "deployment",
        version: Some("v2".into()),
        previous_version: Some("v1".into()),
        result: Some("succeeded".into()),
        duration_s: None,
        attributes: r#"{"deployment.id":"42"}"#.into(),
    }]))
    .await
    .unwrap();
    flush(&tx).await;

    let sli = files(dir.path(), "sli");
    let names: Vec<String> = sli
        .iter()
        .map(|p| {
            let part = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
            format!("{part}/{}", p.extension().unwrap().to_str().unwrap())
        })
        .collect();
    assert_eq!(
        names,
        ["date=2026-11-26/parquet", "date=2026-11-27/parquet"]
    );
    assert_eq!(files(dir.path(), "momentum").len(), 1);
    assert_eq!(files(dir.path(), "events").len(), 1);
    assert_eq!(stats.files_written.load(Ordering::Relaxed), 4);
    assert_eq!(stats.rows_written[0].load(Ordering::Relaxed), 4);

    // Day one holds three rows, sorted by series then time; schema is the contract.
    let b = read(&sli[0]);
    assert_eq!(b.len(), 1, "one row group, one batch");
    let b = &b[0];
    assert_eq!(b.schema().fields(), schema::sli().fields());
    let ops = b
        .column_by_name("operation")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let req = b
        .column_by_name("requests")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(ops.len(), 3);
    assert_eq!((ops.value(0), req.value(0)), ("", 7));
    assert_eq!((ops.value(1), req.value(1)), ("", 1));
    assert_eq!((ops.value(2), req.value(2)), ("GET /", 3));
    let ev = &read(&files(dir.path(), "events")[0])[0];
    assert_eq!(ev.schema().fields(), schema::events().fields());
    assert_eq!(ev.num_rows(), 1);

    drop(tx);
    handle.await.unwrap();
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn closing_the_channel_flushes_what_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ArchiveStats::default());
    let (tx, handle) = start(&cfg(dir.path()), stats.clone()).unwrap();
    tx.send(ArchiveMsg::Sli(vec![sli_row(T0, "a", "", 9)]))
        .await
        .unwrap();
    assert!(files(dir.path(), "sli").is_empty(), "no flush before 1m");
    drop(tx);
    handle.await.unwrap();
    let f = files(dir.path(), "sli");
    assert_eq!(f.len(), 1);
    assert_eq!(read(&f[0])[0].num_rows(), 1);
    assert_eq!(stats.queue_depth(), 0);
}

#[tokio::test]
async fn a_full_buffer_flushes_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ArchiveStats::default());
    let (tx, handle) = start(&cfg(dir.path()), stats.clone()).unwrap();
    let rows: Vec<SliRow> = (0..MAX_BUFFERED_ROWS as u64)
        .map(|i| sli_row(T0 + (i % 60) * MIN, &format!("s{}", i / 60), "", 1))
        .collect();
    tx.send(ArchiveMsg::Sli(rows)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.files_written.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "no flush at {MAX_BUFFERED_ROWS} rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stats.rows_written[0].load(Ordering::Relaxed),
        MAX_BUFFERED_ROWS as u64
    );
    drop(tx);
    handle.await.unwrap();
}

#[tokio::test]
async fn a_failed_file_is_counted_and_the_others_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ArchiveStats::default());
    // A regular file where day one's partition dir must go: creating it fails, whoever runs
    // the test (root ignores permissions, not file types).
    std::fs::create_dir_all(dir.path().join("sli")).unwrap();
    std::fs::write(dir.path().join("sli/date=2026-11-26"), b"in the way").unwrap();
    let (tx, handle) = start(&cfg(dir.path()), stats.clone()).unwrap();
    tx.send(ArchiveMsg::Sli(vec![
        sli_row(T0, "a", "", 1),
        sli_row(T0 + MIN, "a", "", 1),
        sli_row(T0 + DAY, "a", "", 1),
    ]))
    .await
    .unwrap();
    flush(&tx).await;
    assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(stats.files_written.load(Ordering::Relaxed), 1);
    assert!(dir.path().join("sli/date=2026-11-27").is_dir());
    // The task is still alive and writing.
    tx.send(ArchiveMsg::Sli(vec![sli_row(T0 + DAY, "b", "", 1)]))
        .await
        .unwrap();
    flush(&tx).await;
    assert_eq!(stats.files_written.load(Ordering::Relaxed), 2);
    drop(tx);
    handle.await.unwrap();
}

#[tokio::test]
async fn start_removes_stray_temp_files_and_expired_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("sli/date=2026-11-26");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join(".part-1-1-000001.parquet.tmp"), b"partial").unwrap();
    let old = dir.path().join("events/date=1999-01-01");
    std::fs::create_dir_all(&old).unwrap();
    let stats = Arc::new(ArchiveStats::default());
    let (tx, handle) = start(&cfg(dir.path()), stats.clone()).unwrap();
    assert!(!part.join(".part-1-1-000001.parquet.tmp").exists());
    assert!(!old.exists(), "400d retention deletes 1999");
    assert_eq!(stats.temp_files_removed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.partitions_expired.load(Ordering::Relaxed), 1);
    drop(tx);
    handle.await.unwrap();
}

#[test]
fn an_archive_dir_that_cannot_be_created_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = start(&cfg(&blocker.join("archive")), Arc::default()).unwrap_err();
    assert!(err.to_string().contains("creating archive dir"), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_partition_removed_under_the_writer_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ArchiveStats::default());
    let (tx, handle) = start(&cfg(dir.path()), stats.clone()).unwrap();
    tx.send(ArchiveMsg::Sli(vec![sli_row(T0, "a", "", 1)]))
        .await
        .unwrap();
    flush(&tx).await;
    std::fs::remove_dir_all(dir.path().join("sli/date=2026-11-26")).unwrap();
    tx.send(ArchiveMsg::Sli(vec![sli_row(T0 + MIN, "a", "", 1)]))
        .await
        .unwrap();
    flush(&tx).await;
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    assert_eq!(files(dir.path(), "sli").len(), 1);
    drop(tx);
    handle.await.unwrap();
}
