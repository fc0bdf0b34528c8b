//! The forward queue on disk (`exporters.otlp.queue.dir`): an append-only segment log
//! with one small ack log per segment.
//!
//! ```text
//! DIR/00000000000000000042.log   entries from sequence number 42 on:
//!     len u32 LE | crc32 u32 LE | seq u64 LE | signal u8 | items u32 LE | payload
//!     (len bytes; crc32 over seq, signal, items and payload; items = spans, data
//!     points or log records in the request)
//! DIR/00000000000000000042.ack   sequence numbers delivered (or given up on), u64 LE each
//! ```
//!
//! A segment is sealed at [`Store`]'s segment size and deleted once every entry in it is
//! acknowledged; the active segment is deleted as soon as it is empty, so a drained queue
//! leaves nothing behind. On start every segment is read back: entries listed in its ack
//! log are skipped, the rest are sent again in sequence order. Reading a segment stops at
//! the first entry that is truncated or fails its checksum (a crash mid-write leaves at
//! most one such tail per segment); that tail is counted as one corrupt entry and skipped,
//! never a panic.
//!
//! Durability (fsync policy): every batch of accepted requests is written to the OS
//! (`write(2)`) as soon as the queue task takes it, and the receivers answer their clients
//! only after that write (batched: one write answers every request taken with it), so a
//! crash of the process alone loses nothing that was acknowledged; the data
//! log is `fdatasync`ed at most every [`SYNC_INTERVAL`] while it has unsynced data, when a
//! segment is sealed, and at shutdown — a power loss can lose up to that interval. Ack
//! logs are written per delivery and synced only at shutdown: a lost ack re-sends a
//! request that was already delivered (at-least-once), it never loses one.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::signal::Signal;

/// The data log is synced at most this often while it has unsynced data.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);

const HEADER: usize = 4 + 4 + 8 + 1 + 4;

/// A request read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// sequence number
    pub seq: u64,
    /// its signal
    pub signal: Signal,
    /// spans, data points or log records in it
    pub items: u64,
    /// the protobuf request
    pub body: Bytes,
}

/// What [`Store::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// requests not yet delivered, in sequence order
    pub items: Vec<Stored>,
    /// truncated or corrupt entries skipped
    pub corrupt: u64,
    /// the next free sequence number
    pub next_seq: u64,
}

struct Segment {
    /// entries not yet acknowledged
    live: u64,
    /// the ack log, opened on first use
    ack: Option<File>,
}

struct Active {
    first: u64,
    log: BufWriter<File>,
    size: u64,
}

/// The on-disk queue. Owned by the forward queue task; never shared.
pub struct Store {
    dir: PathBuf,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    active: Option<Active>,
    unsynced: bool,
    last_sync: Instant,
}

fn checksum(seq: u64, signal: u8, items: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&[signal]);
    h.update(&items.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Encodes one entry (header and payload) as it is stored.
pub fn encode_entry(seq: u64, signal: Signal, items: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    let sb = signal.index() as u8;
    let items = items.min(u32::MAX as u64) as u32;
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(&checksum(seq, sb, items, payload).to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.push(sb);
    v.extend_from_slice(&items.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads the entries of one segment: the good ones, and whether a bad tail was found.
fn read_entries(data: &Bytes) -> (Vec<Stored>, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < HEADER {
            return (out, true);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&rest[8..16]);
        let seq = u64::from_le_bytes(seq);
        let sb = rest[16];
        let Some(signal) = Signal::from_index(sb as usize) else {
            return (out, true);
        };
        let items = u32::from_le_bytes([rest[17], rest[18], rest[19], rest[20]]);
        if rest.len() - HEADER < len {
            return (out, true);
        }
        let start = at + HEADER;
        let payload = &data[start..start + len];
        if checksum(seq, sb, items, payload) != crc {
            return (out, true);
        }
        out.push(Stored {
            seq,
            signal,
            items: items as u64,
            body: data.slice(start..start + len),
        });
        at = start + len;
    }
    (out, false)
}

fn read_acks(path: &Path) -> io::Result<HashSet<u64>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    // A torn last ack (fewer than 8 bytes) is ignored: its request is sent again.
    Ok(data
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect())
}

impl Store {
    /// Opens (creating) `dir` and reads back what a previous run left in it.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(Store, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first) = name
                .strip_suffix(".log")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            } else if let Some(first) = name
                .strip_suffix(".ack")
                .and_then(|n| n.parse::<u64>().ok())
            {
                // An ack log whose segment is gone is left from an interrupted delete.
                if !dir.join(format!("{first:020}.log")).exists() {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        firsts.sort_unstable();
        let mut store = Store {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            segments: BTreeMap::new(),
            active: None,
            unsynced: false,
            last_sync: Instant::now(),
        };
        let mut rec = Recovered::default();
        for first in firsts {
            let data = Bytes::from(fs::read(store.log_path(first))?);
            let acked = read_acks(&store.ack_path(first))?;
            let (entries, bad_tail) = read_entries(&data);
            if bad_tail {
                rec.corrupt += 1;
                tracing::warn!(
                    segment = %store.log_path(first).display(),
                    "forward queue: truncated or corrupt entry, the rest of this segment is skipped"
                );
            }
            let mut live = 0;
            for e in entries {
                rec.next_seq = rec.next_seq.max(e.seq + 1);
                if !acked.contains(&e.seq) {
                    live += 1;
                    rec.items.push(e);
                }
            }
            rec.next_seq = rec.next_seq.max(first);
            if live == 0 {
                store.remove(first);
            } else {
                store.segments.insert(first, Segment { live, ack: None });
            }
        }
        rec.items.sort_by_key(|e| e.seq);
        Ok((store, rec))
    }

    fn log_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.log"))
    }

    fn ack_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.ack"))
    }

    fn remove(&mut self, first: u64) {
        let _ = fs::remove_file(self.log_path(first));
        let _ = fs::remove_file(self.ack_path(first));
    }

    /// Appends one entry (buffered: [`Store::flush`] hands it to the OS).
    pub fn append(
        &mut self,
        seq: u64,
        signal: Signal,
        items: u64,
        payload: &[u8],
    ) -> io::Result<()> {
        if self.active.is_none() {
            let path = self.log_path(seq);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            // The new name must survive a crash too.
            File::open(&self.dir)?.sync_all()?;
            self.active = Some(Active {
                first: seq,
                log: BufWriter::with_capacity(256 * 1024, file),
                size: 0,
            });
            self.segments.insert(seq, Segment { live: 0, ack: None });
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let sb = signal.index() as u8;
        let items = items.min(u32::MAX as u64) as u32;
        a.log.write_all(&(payload.len() as u32).to_le_bytes())?;
        a.log
            .write_all(&checksum(seq, sb, items, payload).to_le_bytes())?;
        a.log.write_all(&seq.to_le_bytes())?;
        a.log.write_all(&[sb])?;
        a.log.write_all(&items.to_le_bytes())?;
        a.log.write_all(payload)?;
        a.size += (HEADER + payload.len()) as u64;
        if let Some(s) = self.segments.get_mut(&a.first) {
            s.live += 1;
        }
        self.unsynced = true;
        if a.size >= self.segment_bytes {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the active segment: flushed and synced; the next append starts a new one.
    fn seal(&mut self) -> io::Result<()> {
        if let Some(mut a) = self.active.take() {
            a.log.flush()?;
            a.log.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Hands buffered entries to the OS; syncs when [`SYNC_INTERVAL`] has passed.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(a) = self.active.as_mut() {
            a.log.flush()?;
        }
        if self.unsynced && self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync_data()?;
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if let Some(a) = self.active.as_mut() {
            a.log.flush()?;
            a.log.get_ref().sync_data()?;
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Records that `seq` is done (delivered or given up on); deletes its segment once
    /// nothing in it is live.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        let Some((&first, _)) = self.segments.range(..=seq).next_back() else {
            return Ok(());
        };
        let active = self.active.as_ref().is_some_and(|a| a.first == first);
        let ack_path = self.ack_path(first);
        let empty = match self.segments.get_mut(&first) {
            None => return Ok(()),
            Some(seg) => {
                seg.live = seg.live.saturating_sub(1);
                if seg.live > 0 {
                    if seg.ack.is_none() {
                        seg.ack = Some(
                            OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(ack_path)?,
                        );
                    }
                    if let Some(f) = seg.ack.as_mut() {
                        f.write_all(&seq.to_le_bytes())?;
                    }
                }
                seg.live == 0
            }
        };
        if empty {
            self.segments.remove(&first);
            if active {
                self.active = None;
            }
            self.remove(first);
        }
        Ok(())
    }

    /// Flushes and syncs everything (shutdown).
    pub fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()?;
        for s in self.segments.values() {
            if let Some(f) = &s.ack {
                f.sync_data()?;
            }
        }
        Ok(())
    }

    /// Segment files on disk (for tests).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: u64, n: usize) -> Vec<u8> {
        (0..n).map(|k| (i as usize * 31 + k) as u8).collect()
    }

    #[test]
    fn entries_survive_a_reopen_minus_the_acked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rec) = Store::open(dir.path(), 1000).unwrap();
        assert!(rec.items.is_empty());
        for i in 0..20 {
            let sig = [Signal::Traces, Signal::Metrics, Signal::Logs][i as usize % 3];
            s.append(i, sig, i * 3, &body(i, 100 + i as usize)).unwrap();
        }
        s.flush().unwrap();
        assert!(s.segment_count() >= 2, "1000-byte segments roll");
        for i in [0, 3, 4, 17] {
            s.ack(i).unwrap();
        }
        drop(s);
        let (_s, rec) = Store::open(dir.path(), 1000).unwrap();
        let seqs: Vec<u64> = rec.items.iter().map(|e| e.seq).collect();
        let want: Vec<u64> = (0..20).filter(|i| ![0, 3, 4, 17].contains(i)).collect();
        assert_eq!(seqs, want);
        for e in &rec.items {
            assert_eq!(&e.body[..], &body(e.seq, 100 + e.seq as usize)[..]);
            assert_eq!(e.items, e.seq * 3);
            assert_eq!(
                e.signal,
                [Signal::Traces, Signal::Metrics, Signal::Logs][e.seq as usize % 3]
            );
        }
        assert_eq!(rec.corrupt, 0);
        assert_eq!(rec.next_seq, 20);
    }

    #[test]
    fn a_drained_queue_leaves_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), 500).unwrap();
        for i in 0..10 {
            s.append(i, Signal::Traces, 1, &body(i, 120)).unwrap();
        }
        s.flush().unwrap();
        for i in (0..10).rev() {
            s.ack(i).unwrap();
        }
        s.sync_all().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // And it keeps working after being emptied.
        s.append(10, Signal::Logs, 1, b"x").unwrap();
        s.flush().unwrap();
        drop(s);
        let (_, rec) = Store::open(dir.path(), 500).unwrap();
        assert_eq!(rec.items.len(), 1);
        assert_eq!(rec.next_seq, 11);
    }

    #[test]
    fn truncated_and_corrupt_tails_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            s.append(i, Signal::Traces, 2, &body(i, 64)).unwrap();
        }
        s.sync_all().unwrap();
        drop(s);
        let log = dir.path().join(format!("{:020}.log", 0));
        let full = fs::read(&log).unwrap();
        let entry = HEADER + 64;
        // Every cut inside the last entry: four entries come back, one corrupt tail.
        for cut in [1, 5, HEADER, entry - 1] {
            fs::write(&log, &full[..4 * entry + cut]).unwrap();
            let (_, rec) = Store::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(rec.items.len(), 4, "cut {cut}");
            assert_eq!(rec.corrupt, 1, "cut {cut}");
        }
        // A flipped payload byte in entry 2: entries 0 and 1 come back.
        let mut bad = full.clone();
        bad[2 * entry + HEADER + 10] ^= 0x40;
        fs::write(&log, &bad).unwrap();
        let (_, rec) = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(rec.corrupt, 1);
        // Garbage lengths never read out of bounds.
        let mut bad = full;
        bad[entry..entry + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&log, &bad).unwrap();
        let (_, rec) = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.items.len(), 1);
        assert_eq!(rec.corrupt, 1);
    }

    #[test]
    fn encode_entry_matches_append() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), 1 << 20).unwrap();
        s.append(7, Signal::Metrics, 4, b"hello").unwrap();
        s.sync_all().unwrap();
        let on_disk = fs::read(dir.path().join(format!("{:020}.log", 7))).unwrap();
        assert_eq!(on_disk, encode_entry(7, Signal::Metrics, 4, b"hello"));
    }
}
