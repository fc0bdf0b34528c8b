//! The archive on disk: `DIR/<dataset>/date=YYYY-MM-DD/part-*.parquet`, the hidden temp
//! names files are written under, removal of temp files a crash left behind, and retention
//! by whole `date=` partitions.

use std::path::{Path, PathBuf};

use super::batch;

/// Prefix of a finished file's name.
pub const PART_PREFIX: &str = "part-";
/// Suffix of a finished file.
pub const PARQUET_SUFFIX: &str = ".parquet";
/// Suffix of a file being written. Temp names also start with `.`, so readers that skip
/// hidden files (Spark, Hive, Trino) and globs on `*.parquet` (DuckDB) never list them.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Data set folders that may hold partitions (`spans` is reserved for raw spans).
pub const DATASET_DIRS: [&str; 4] = ["sli", "momentum", "events", "spans"];

/// The temp path of a final file name in `dir`: `.part-….parquet.tmp`.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{TEMP_SUFFIX}"))
}

/// A file name no other flush of this or any earlier process produces: the flush's wall
/// time (ms), the process id and a per-process sequence number. Sorting names sorts files
/// by write time.
pub fn file_name(flush_unix_ms: u64, pid: u32, seq: u64) -> String {
    format!("{PART_PREFIX}{flush_unix_ms:013}-{pid}-{seq:06}{PARQUET_SUFFIX}")
}

/// Whether `name` is a temp file of ours.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// The day (since the Unix epoch) of a `date=YYYY-MM-DD` folder name.
pub fn partition_day(name: &str) -> Option<i64> {
    let d = name.strip_prefix("date=")?;
    let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((date - epoch).num_days())
}

/// What a housekeeping pass did.
#[derive(Debug, Default)]
pub struct Housekeeping {
    /// paths removed
    pub removed: Vec<PathBuf>,
    /// (path, error) of what could not be read or removed
    pub failures: Vec<(PathBuf, std::io::Error)>,
}

/// The `date=` partition folders under `root`, as (dataset dir name, day, path).
fn partitions(root: &Path, out: &mut Housekeeping) -> Vec<(i64, PathBuf)> {
    let mut found = Vec::new();
    for ds in DATASET_DIRS {
        let dir = root.join(ds);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.failures.push((dir, e));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(day) = name.to_str().and_then(partition_day) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push((day, entry.path()));
            }
        }
    }
    found
}

/// Removes the temp files (`.part-….parquet.tmp`) a crash left in the partitions under
/// `root`. Only our own temp names inside `date=` folders are touched.
pub fn remove_stray_temp_files(root: &Path) -> Housekeeping {
    let mut out = Housekeeping::default();
    for (_, dir) in partitions(root, &mut out) {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.failures.push((dir, e));
                continue;
            }
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(is_temp_name) {
                let p = entry.path();
                match std::fs::remove_file(&p) {
                    Ok(()) => out.removed.push(p),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => out.failures.push((p, e)),
                }
            }
        }
    }
    out
}

/// Deletes every `date=` partition under `root` whose whole day ended more than
/// `retention_ns` before `now_ns` (a partition is kept while any instant of its day is
/// within retention).
pub fn apply_retention(root: &Path, retention_ns: u64, now_ns: u64) -> Housekeeping {
    let mut out = Housekeeping::default();
    let cutoff = now_ns.saturating_sub(retention_ns);
    // Days whose end (the next day's start) is at or before the cutoff are expired.
    let first_kept = batch::day(cutoff);
    for (day, dir) in partitions(root, &mut out) {
        if day < first_kept {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => out.removed.push(dir),
                Err(e) => out.failures.push((dir, e)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_NS: u64 = 86_400 * 1_000_000_000;

    #[test]
    fn names_round_trip_and_temp_names_are_hidden() {
        let n = file_name(1_795_737_600_000, 42, 7);
        assert_eq!(n, "part-1795737600000-42-000007.parquet");
        let t = temp_path(Path::new("/x"), &n);
        let tn = t.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_name(tn), "{tn}");
        assert!(!is_temp_name(&n));
        assert!(
            !tn.ends_with(PARQUET_SUFFIX),
            "a *.parquet glob must not match {tn}"
        );
        assert_eq!(partition_day("date=1970-01-02"), Some(1));
        assert_eq!(partition_day("date=1970-13-02"), None);
        assert_eq!(partition_day("other"), None);
    }

    #[test]
    fn retention_deletes_whole_expired_partitions_only() {
        let root = tempfile::tempdir().unwrap();
        for d in ["date=1970-01-01", "date=1970-01-02", "date=1970-01-03"] {
            let p = root.path().join("sli").join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("part-1.parquet"), b"x").unwrap();
        }
        std::fs::create_dir_all(root.path().join("sli/not-a-partition")).unwrap();
        // now = 1970-01-04T12:00, retention 1.5 d → cutoff 1970-01-03T00:00: the 1st and
        // 2nd ended by then, the 3rd has not.
        let now = 3 * DAY_NS + DAY_NS / 2;
        let h = apply_retention(root.path(), DAY_NS + DAY_NS / 2, now);
        assert!(h.failures.is_empty(), "{:?}", h.failures);
        assert_eq!(h.removed.len(), 2);
        assert!(!root.path().join("sli/date=1970-01-01").exists());
        assert!(!root.path().join("sli/date=1970-01-02").exists());
        assert!(root
            .path()
            .join("sli/date=1970-01-03/part-1.parquet")
            .exists());
        assert!(root.path().join("sli/not-a-partition").exists());
    }

    #[test]
    fn stray_temp_files_are_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("events/date=2026-01-01");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(".part-1-1-000001.parquet.tmp"), b"partial").unwrap();
        std::fs::write(p.join("part-1-1-000000.parquet"), b"done").unwrap();
        std::fs::write(p.join("notes.tmp"), b"not ours").unwrap();
        let h = remove_stray_temp_files(root.path());
        assert_eq!(h.removed.len(), 1);
        assert!(p.join("part-1-1-000000.parquet").exists());
        assert!(p.join("notes.tmp").exists());
        assert!(!p.join(".part-1-1-000001.parquet.tmp").exists());
    }
}
