//! The store: snapshot + log segments in a locked state directory.
//!
//! # Invariants on disk
//!
//! - Records have consecutive sequence numbers from 0. Segment `log-F` holds records `F, F+1, …`
//!   and every segment but the last is sealed: it ends exactly where the next one starts.
//! - `snapshot` (if present) covers records `0..S`: the state after applying them. The log holds
//!   every record from `S` on; segments that end at or before `S` are garbage.
//! - Only the last segment is appended to, and an append returns only after `fdatasync`, so a
//!   crash can only damage the end of the last segment, and only in a record that was never
//!   acknowledged.
//!
//! # Snapshot protocol
//!
//! 1. write `snapshot.tmp` (covering `N` = records appended so far) and fsync it;
//! 2. rename it over `snapshot`, fsync the directory: the new snapshot is now the one recovered;
//! 3. unless the last segment already starts at `N`: write `log-N.tmp`, fsync it, rename it to
//!    `log-N`, fsync the directory: new appends go there;
//! 4. delete the segments before `log-N`, fsync the directory.
//!
//! A crash before 2 completes recovers the old snapshot plus the full log (temporary files are
//! deleted); after it, the new snapshot, the records of the old segments being skipped as
//! covered. Any subset of the deletions of step 4 only removes covered segments. Nothing is
//! deleted before the files replacing it are durable, so losing unsynced directory updates on
//! power failure just moves the state back to an earlier step.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::{
    decode_log_header, decode_snapshot, encode_log_header, encode_record, encode_snapshot_header, parse_record,
    LOG_HEADER_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN,
};
use crate::StoreError;

const LOCK_FILE: &str = "lock";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const LOG_PREFIX: &str = "log-";
const TMP_SUFFIX: &str = ".tmp";

fn segment_name(first: u64) -> String {
    format!("{LOG_PREFIX}{first:020}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(LOG_PREFIX)?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// What [`Store::open`] found: the state to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The latest snapshot's bytes, as given to [`Store::snapshot`]; `None` if there never was one.
    pub snapshot: Option<Vec<u8>>,
    /// Every record appended after that snapshot, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of a torn record cut from the end of the log: an append that was interrupted by a
    /// crash and never returned. Worth a warning in the logs when non-zero.
    ///
    /// An invalid record counts as torn only if no valid record follows it. (Damage to the very
    /// last record looks exactly like a torn write, so it is cut too; that is what this count is
    /// for.)
    pub truncated_bytes: u64,
}

/// An open state directory. Holds an exclusive lock on it until dropped.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Held for its `flock`; released when the file is closed.
    _lock: File,
    /// The last segment, opened for appending.
    active: File,
    /// First sequence numbers of the segment files on disk, ascending; the last is `active`.
    segments: Vec<u64>,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Records `0..snapshot_covers` are in the snapshot.
    snapshot_covers: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// A write or fsync failed: what is on disk is uncertain until the store is reopened.
    failed: bool,
    #[cfg(test)]
    faults: tests::Faults,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |e| StoreError::io(path, op, e)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "fsync directory"))
}

fn create_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io_err(path, "create"))
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new().append(true).open(path).map_err(io_err(path, "open for appending"))
}

/// Creates the state directory (mode 0700) if it is missing, durably.
fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::io(dir, "use as the state directory", io::Error::other("it is not a directory"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir, "create directory"))?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(parent)
        }
        Err(e) => Err(StoreError::io(dir, "inspect", e)),
    }
}

/// Writes a new, empty segment starting at `first` to its temporary name and fsyncs it.
fn write_segment_tmp(dir: &Path, first: u64) -> Result<PathBuf, StoreError> {
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", segment_name(first)));
    let mut f = create_file(&tmp)?;
    f.write_all(&encode_log_header(first)).map_err(io_err(&tmp, "write"))?;
    f.sync_all().map_err(io_err(&tmp, "fsync"))?;
    Ok(tmp)
}

/// Is there a checksum-valid record numbered `seq` or later anywhere after `data[off]`? If so,
/// the invalid record at `off` is damage in the middle of the log, not a torn tail.
///
/// Every byte offset is tried, since the damaged record's length cannot be trusted. A payload
/// could only fake a record here by embedding a whole framed record (a length below 16 MiB means
/// bytes below 0x20, which JSON text never contains), so torn JSON records are never mistaken.
fn valid_record_after(data: &[u8], off: usize, seq: u64) -> bool {
    (off + 1..data.len()).any(|p| matches!(parse_record(data, p), Ok((s, _)) if s >= seq))
}

impl Store {
    /// Opens the store in `dir`, creating the directory (mode 0700) if it is missing, and
    /// recovers its contents: the snapshot, then every record logged after it.
    ///
    /// Takes an exclusive lock on `dir/lock` for as long as the `Store` lives:
    /// [`StoreError::Locked`] if another `Store` (in any process) has it.
    ///
    /// A torn record at the very end of the log (an append cut short by a crash, so never
    /// acknowledged) is cut away and counted in [`Recovered::truncated_bytes`]. Any other damage
    /// is [`StoreError::Corrupt`].
    pub fn open(dir: &Path) -> Result<(Store, Recovered), StoreError> {
        let dir = dir.to_path_buf();
        ensure_dir(&dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { dir }),
            Err(TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, "lock", e)),
        }

        // What is there? Temporary files are unfinished writes: drop them.
        let mut segments = Vec::new();
        let mut has_snapshot = false;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir, "list"))? {
            let entry = entry.map_err(io_err(&dir, "list"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == SNAPSHOT_FILE {
                has_snapshot = true;
            } else if name == SNAPSHOT_TMP || (name.starts_with(LOG_PREFIX) && name.ends_with(TMP_SUFFIX)) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
            } else if let Some(first) = parse_segment_name(name) {
                segments.push(first);
            }
        }
        segments.sort_unstable();

        let (covers, snapshot) = if has_snapshot {
            let path = dir.join(SNAPSHOT_FILE);
            let data = fs::read(&path).map_err(io_err(&path, "read"))?;
            let (covers, payload) =
                decode_snapshot(&data).map_err(|(offset, reason)| StoreError::corrupt(&path, offset, reason))?;
            (covers, Some(payload.to_vec()))
        } else {
            (0, None)
        };

        // Replay the log from the snapshot on.
        let mut records = Vec::new();
        let mut covered = Vec::new();
        let mut end: Option<u64> = None; // where the previous segment read ends
        let mut torn: Option<(PathBuf, u64, u64)> = None; // (segment, valid length, cut bytes)
        for (i, &first) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if !last && segments[i + 1] <= covers {
                covered.push(first);
                continue;
            }
            let path = dir.join(segment_name(first));
            match end {
                None if first > covers => {
                    return Err(StoreError::corrupt(
                        &path,
                        0,
                        format!(
                            "the log starts at record {first} but the snapshot only covers records before {covers}: \
                             records {covers}..{first} are missing"
                        ),
                    ))
                }
                Some(end) if first != end => {
                    return Err(StoreError::corrupt(
                        &path,
                        0,
                        format!(
                            "this log segment starts at record {first} but the previous one ends before record {end}: \
                             a segment is missing or damaged"
                        ),
                    ))
                }
                _ => {}
            }
            let data = fs::read(&path).map_err(io_err(&path, "read"))?;
            let header_first = decode_log_header(&data).map_err(|reason| StoreError::corrupt(&path, 0, reason))?;
            if header_first != first {
                return Err(StoreError::corrupt(
                    &path,
                    12,
                    format!("the header says the segment starts at record {header_first}, its name says {first}"),
                ));
            }
            let mut off = LOG_HEADER_LEN;
            let mut seq = first;
            while off < data.len() {
                match parse_record(&data, off) {
                    Ok((s, payload)) if s == seq => {
                        if seq >= covers {
                            records.push(payload.to_vec());
                        }
                        seq += 1;
                        off += RECORD_HEADER_LEN + payload.len();
                    }
                    Ok((s, _)) => {
                        return Err(StoreError::corrupt(
                            &path,
                            off as u64,
                            format!("found record number {s} where record {seq} belongs"),
                        ))
                    }
                    Err(reason) if !last => {
                        return Err(StoreError::corrupt(
                            &path,
                            off as u64,
                            format!("{reason} in a sealed log segment (record {seq})"),
                        ))
                    }
                    Err(reason) if valid_record_after(&data, off, seq) => {
                        return Err(StoreError::corrupt(
                            &path,
                            off as u64,
                            format!(
                                "{reason} (record {seq}), but valid records follow: the log is damaged in the middle"
                            ),
                        ))
                    }
                    Err(_) => {
                        torn = Some((path.clone(), off as u64, (data.len() - off) as u64));
                        break;
                    }
                }
            }
            end = Some(seq);
        }
        let next_seq = match end {
            Some(end) if end < covers => {
                let path = dir.join(segment_name(segments.last().copied().unwrap_or_default()));
                return Err(StoreError::corrupt(
                    &path,
                    0,
                    format!(
                        "the log ends before record {end} but the snapshot covers records before {covers}: records \
                         acknowledged before the snapshot are missing from the log"
                    ),
                ));
            }
            Some(end) => end,
            None => covers,
        };

        // Repair: cut the torn tail, drop covered segments, make sure there is a segment.
        let mut truncated_bytes = 0;
        if let Some((path, len, cut)) = torn {
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path, "open for truncation"))?;
            f.set_len(len).map_err(io_err(&path, "truncate"))?;
            f.sync_all().map_err(io_err(&path, "fsync"))?;
            truncated_bytes = cut;
        }
        for &first in &covered {
            let path = dir.join(segment_name(first));
            fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
        }
        segments.retain(|s| !covered.contains(s));
        if segments.is_empty() {
            let tmp = write_segment_tmp(&dir, next_seq)?;
            let path = dir.join(segment_name(next_seq));
            fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place"))?;
            segments.push(next_seq);
            sync_dir(&dir)?;
        } else if !covered.is_empty() {
            sync_dir(&dir)?;
        }
        let active_path = dir.join(segment_name(*segments.last().expect("at least one segment")));
        let active = open_append(&active_path)?;

        let store = Store {
            dir,
            _lock: lock,
            active,
            segments,
            next_seq,
            snapshot_covers: covers,
            buf: Vec::new(),
            failed: false,
            #[cfg(test)]
            faults: tests::Faults::default(),
        };
        Ok((store, Recovered { snapshot, records, truncated_bytes }))
    }

    /// Appends one record and returns its sequence number once it is durable (written and
    /// `fdatasync`ed): only then may the caller acknowledge the change.
    ///
    /// Records longer than [`MAX_RECORD_LEN`] are refused with [`StoreError::TooLarge`]. After an
    /// I/O error the record may or may not be recovered later, and the store refuses further
    /// writes: drop it and [`open`](Store::open) the directory again.
    pub fn append(&mut self, record: &[u8]) -> Result<u64, StoreError> {
        if record.len() > MAX_RECORD_LEN {
            return Err(StoreError::TooLarge { len: record.len() });
        }
        self.check_usable()?;
        let seq = self.next_seq;
        self.buf.clear();
        encode_record(&mut self.buf, seq, record);
        let path = self.active_path();
        let written = self.active.write_all(&self.buf).map_err(io_err(&path, "append to"));
        let result = written.and_then(|()| self.active.sync_data().map_err(io_err(&path, "fsync")));
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        if let Err(e) = result {
            self.failed = true;
            return Err(e);
        }
        self.next_seq += 1;
        Ok(seq)
    }

    /// Atomically replaces the snapshot with `state`, which must be the state as of the last
    /// appended record, then starts a new log segment and deletes the old ones.
    ///
    /// A crash at any point recovers either the old snapshot and the records after it, or
    /// `state` and no records. After an error the store refuses further writes: reopen it.
    pub fn snapshot(&mut self, state: &[u8]) -> Result<(), StoreError> {
        self.check_usable()?;
        let result = self.snapshot_steps(state);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn snapshot_steps(&mut self, state: &[u8]) -> Result<(), StoreError> {
        let covers = self.next_seq;
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let path = self.dir.join(SNAPSHOT_FILE);

        let mut f = create_file(&tmp)?;
        f.write_all(&encode_snapshot_header(covers, state)).map_err(io_err(&tmp, "write"))?;
        self.crash_point("snapshot.tmp header written")?;
        f.write_all(state).map_err(io_err(&tmp, "write"))?;
        self.crash_point("snapshot.tmp written")?;
        f.sync_all().map_err(io_err(&tmp, "fsync"))?;
        drop(f);
        self.crash_point("snapshot.tmp fsynced")?;
        fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place"))?;
        self.crash_point("snapshot renamed")?;
        sync_dir(&self.dir)?;
        self.snapshot_covers = covers;
        self.crash_point("snapshot rename durable")?;

        if self.segments.last() != Some(&covers) {
            let seg_tmp = write_segment_tmp(&self.dir, covers)?;
            self.crash_point("new segment written and fsynced")?;
            let seg = self.dir.join(segment_name(covers));
            fs::rename(&seg_tmp, &seg).map_err(io_err(&seg, "rename into place"))?;
            self.crash_point("new segment renamed")?;
            sync_dir(&self.dir)?;
            self.segments.push(covers);
            self.crash_point("new segment durable")?;
            self.active = open_append(&seg)?;
        }

        let old: Vec<u64> = self.segments.iter().copied().filter(|&first| first < covers).collect();
        for first in &old {
            let seg = self.dir.join(segment_name(*first));
            fs::remove_file(&seg).map_err(io_err(&seg, "remove"))?;
            self.segments.retain(|s| s != first);
            self.crash_point("old segment removed")?;
        }
        if !old.is_empty() {
            sync_dir(&self.dir)?;
            self.crash_point("removals durable")?;
        }
        Ok(())
    }

    /// Records appended since the last snapshot (or since the store was created), so the caller
    /// can snapshot every N records.
    pub fn records_since_snapshot(&self) -> u64 {
        self.next_seq - self.snapshot_covers
    }

    /// The sequence number the next appended record will get (= records ever appended).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active_path(&self) -> PathBuf {
        self.dir.join(segment_name(self.segments.last().copied().unwrap_or_default()))
    }

    fn check_usable(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::io(
                &self.dir,
                "write to the store in",
                io::Error::other(
                    "an earlier write or fsync failed, so what is on disk is uncertain; drop the Store and open it \
                     again to recover",
                ),
            ));
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn crash_point(&mut self, _what: &'static str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Fault injection: stops the operation here, as a crash would, when the test says so.
    #[cfg(test)]
    fn crash_point(&mut self, what: &'static str) -> Result<(), StoreError> {
        self.faults.passed.push(what);
        if self.faults.crash_at == Some(self.faults.passed.len() - 1) {
            return Err(StoreError::io(&self.dir, "continue (injected crash)", io::Error::other(what)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
