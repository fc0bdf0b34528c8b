//! The state checkpoint: what a restart must not forget (docs/archive.md, "restart without
//! amnesia").
//!
//! The Parquet archive holds what happened; the checkpoint holds the state the live
//! signals are computed from, so a restart carries on where the process stopped:
//!
//! - per pair: its clock, the SLO-window counts (the boundary rings behind every burn
//!   rate and the error budget), alert and incident state, recent incident opens and
//!   restores, the delivery state (versions seen, the running version, deployments over
//!   the lookback with their outcomes, pipeline runs, first-seen time);
//! - the revision index (pipeline run start per revision, for lead time).
//!
//! Counters are not restored: the README's Exporters has them restart at 0 with the process. Latency
//! sketches are not either (the 5m/1h/1d quantiles refill as traffic arrives).
//!
//! Format: `MOMENTUM-STATE` magic, a little-endian u32 format version, then zstd-compressed
//! CBOR (serde). A file of another version, or one that does not decode, is set aside
//! (renamed `*.unreadable`) with a warning and the process starts empty: a checkpoint is
//! an optimisation of restart behaviour, never a reason not to start.
//!
//! Written atomically (temp file, fsync, rename, fsync of the directory) at every
//! `archive.window` and at shutdown after every open bucket is closed; `kill -9` loses at
//! most one window of state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::delivery::deployments::Delivery;
use crate::sli::window::SeriesWindows;
use crate::slo::SloSaved;

const MAGIC: &[u8] = b"MOMENTUM-STATE";
/// Bumped whenever a saved type changes shape.
pub const FORMAT_VERSION: u32 = 1;
/// File name under `<archive.dir>/state/`.
pub const FILE: &str = "checkpoint.bin";

/// The saved state of one (service, environment) pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairState {
    /// service
    pub service: Arc<str>,
    /// environment
    pub environment: Arc<str>,
    /// pair hash (routes the pair to its shard; 0 for the overflow pair)
    pub hash: u64,
    /// the pair's clock
    pub clock: u64,
    /// newest span event time
    pub last_event: u64,
    /// newest metric point time
    pub last_metric: u64,
    /// span-derived windows
    pub windows: SeriesWindows,
    /// metrics-derived windows
    pub mwindows: Option<SeriesWindows>,
    /// SLO state
    pub slo: Option<SloSaved>,
    /// delivery state
    pub delivery: Delivery,
}

/// Everything saved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// wall clock when written (Unix ns)
    pub saved_ns: u64,
    /// the fleet clock when written
    pub fleet_ns: u64,
    /// every pair of every shard
    pub pairs: Vec<PairState>,
    /// revision → earliest pipeline run start
    pub revisions: Vec<(String, u64)>,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// file system
    #[error("{what} {path}: {source}")]
    Io {
        /// the operation
        what: &'static str,
        /// the path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// not a checkpoint of this format
    #[error("{path}: {why}")]
    Format {
        /// the path
        path: PathBuf,
        /// what is wrong
        why: String,
    },
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The checkpoint path under an archive dir.
pub fn path(archive_dir: &Path) -> PathBuf {
    archive_dir.join("state").join(FILE)
}

/// Encodes a checkpoint.
pub fn encode(c: &Checkpoint) -> Result<Vec<u8>, String> {
    let mut cbor = Vec::new();
    ciborium::into_writer(c, &mut cbor).map_err(|e| e.to_string())?;
    let z = zstd::bulk::compress(&cbor, 3).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(MAGIC.len() + 12 + z.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(cbor.len() as u64).to_le_bytes());
    out.extend_from_slice(&z);
    Ok(out)
}

/// Largest decoded checkpoint accepted (a corrupt length must not allocate wildly).
const MAX_DECODED: u64 = 8 << 30;

/// Decodes a checkpoint.
pub fn decode(b: &[u8]) -> Result<Checkpoint, String> {
    let rest = b
        .strip_prefix(MAGIC)
        .ok_or("not a momentum state checkpoint")?;
    if rest.len() < 12 {
        return Err("truncated header".into());
    }
    let version = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let len = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
    if len > MAX_DECODED {
        return Err(format!("declared size {len} is implausible"));
    }
    let cbor = zstd::bulk::decompress(&rest[12..], len as usize).map_err(|e| e.to_string())?;
    ciborium::from_reader(&cbor[..]).map_err(|e| e.to_string())
}

/// Reads the checkpoint under `archive_dir`: `Ok(None)` when there is none. A file that
/// cannot be decoded is renamed `*.unreadable` (kept for a human) and reported.
pub fn load(archive_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let p = path(archive_dir);
    if let Some(dir) = p.parent() {
        // A crash while writing leaves the temp file: it is never read, only removed.
        let _ = std::fs::remove_file(dir.join(format!(".{FILE}.tmp")));
    }
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &p)(e)),
    };
    decode(&bytes).map(Some).map_err(|why| {
        let aside = p.with_extension("bin.unreadable");
        let _ = std::fs::rename(&p, &aside);
        CheckpointError::Format {
            path: p.clone(),
            why: format!("{why} (set aside as {})", aside.display()),
        }
    })
}

/// Writes the checkpoint atomically: temp file, fsync, rename, fsync of the directory.
/// Returns the bytes written.
pub fn save(archive_dir: &Path, c: &Checkpoint) -> Result<u64, CheckpointError> {
    let p = path(archive_dir);
    let dir = p.parent().expect("the checkpoint path has a parent");
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let bytes = encode(c).map_err(|why| CheckpointError::Format {
        path: p.clone(),
        why,
    })?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("fsync of", &tmp))?;
    }
    std::fs::rename(&tmp, &p).map_err(io("renaming into place", &p))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync of", dir))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut w = SeriesWindows::new(10_000_000_000, 1_000_000_000_000, 86_400_000_000_000);
        w.add(
            1_000_000_000_001,
            &crate::sli::window::Counts {
                requests: 3,
                errors: 1,
                good: 2,
            },
        );
        w.close_upto(1_000_100_000_000);
        let c = Checkpoint {
            saved_ns: 7,
            fleet_ns: 8,
            pairs: vec![PairState {
                service: "checkout".into(),
                environment: "prod".into(),
                hash: 42,
                clock: 1_000_100_000_000,
                last_event: 1_000_000_000_001,
                last_metric: 0,
                windows: w.clone(),
                mwindows: None,
                slo: None,
                delivery: Delivery::default(),
            }],
            revisions: vec![("abc".into(), 5)],
        };
        let b = encode(&c).unwrap();
        let d = decode(&b).unwrap();
        assert_eq!(d.pairs[0].windows.total(), w.total());
        assert_eq!(
            d.pairs[0]
                .windows
                .window(3_600_000_000_000, 1_000_100_000_000, u64::MAX)
                .requests,
            3
        );
        assert_eq!(d.revisions, c.revisions);
        assert_eq!(&*d.pairs[0].service, "checkout");

        // Another version, a truncated file and garbage are refused with a reason.
        let mut other = b.clone();
        other[MAGIC.len()] ^= 0xff;
        assert!(decode(&other).unwrap_err().contains("format version"));
        assert!(decode(&b[..b.len() / 2]).is_err());
        assert!(decode(b"hello").is_err());

        // save + load through a directory; a corrupt file is set aside.
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        save(dir.path(), &c).unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().revisions, c.revisions);
        std::fs::write(path(dir.path()), b"MOMENTUM-STATEjunk").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(CheckpointError::Format { .. })
        ));
        assert!(path(dir.path()).with_extension("bin.unreadable").exists());
        assert!(load(dir.path()).unwrap().is_none());
    }
}
