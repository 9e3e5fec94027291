//! Behaviour of the store through its public API, and of recovery from damaged files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use store::{Recovered, Store, StoreError, MAX_RECORD_LEN};

fn rec(i: u64) -> Vec<u8> {
    // Different lengths, so record boundaries do not fall on a regular grid.
    format!("{{\"op\":\"put\",\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(usize::try_from(i * 7 % 23).unwrap()))
        .into_bytes()
}

fn recs(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(rec).collect()
}

fn open(dir: &Path) -> (Store, Recovered) {
    Store::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("log-"))
        .collect();
    v.sort();
    v
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = segments(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.into_iter().next().unwrap()
}

fn file_len(path: &Path) -> usize {
    usize::try_from(fs::metadata(path).unwrap().len()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_store_is_empty_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state/nested");
    let (s, got) = open(&dir);
    assert_eq!(got, Recovered { snapshot: None, records: vec![], truncated_bytes: 0 });
    assert_eq!(s.dir(), dir);
    assert_eq!(s.records_since_snapshot(), 0);
    assert_eq!(s.next_seq(), 0);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    assert_eq!(mode(&only_segment(&dir)), 0o600);
}

#[test]
fn append_and_recover_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path());
    for i in 0..50 {
        assert_eq!(s.append(&rec(i)).unwrap(), i);
    }
    assert_eq!(s.append(b"").unwrap(), 50, "empty records are records too");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert_eq!(s.append(&binary).unwrap(), 51);
    assert_eq!(s.records_since_snapshot(), 52);
    drop(s);

    let (mut s, got) = open(tmp.path());
    let mut expect = recs(0..50);
    expect.push(vec![]);
    expect.push(binary.clone());
    assert_eq!(got, Recovered { snapshot: None, records: expect.clone(), truncated_bytes: 0 });
    assert_eq!(s.records_since_snapshot(), 52);
    // Numbering continues after a reopen.
    assert_eq!(s.append(b"more").unwrap(), 52);
    drop(s);
    let (_s, got) = open(tmp.path());
    expect.push(b"more".to_vec());
    assert_eq!(got.records, expect);
}

#[test]
fn snapshot_then_appends_then_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path());
    for i in 0..10 {
        s.append(&rec(i)).unwrap();
    }
    s.snapshot(b"{\"state\":10}").unwrap();
    assert_eq!(s.records_since_snapshot(), 0);
    for i in 10..13 {
        assert_eq!(s.append(&rec(i)).unwrap(), i);
    }
    assert_eq!(s.records_since_snapshot(), 3);
    drop(s);

    let (mut s, got) = open(tmp.path());
    assert_eq!(got.snapshot.as_deref(), Some(&b"{\"state\":10}"[..]));
    assert_eq!(got.records, recs(10..13));
    assert_eq!(got.truncated_bytes, 0);
    assert_eq!(s.records_since_snapshot(), 3);
    assert_eq!(s.next_seq(), 13);
    assert_eq!(only_segment(tmp.path()).file_name().unwrap(), "log-00000000000000000010");

    // A second snapshot replaces the first and drops the old segment.
    s.snapshot(b"{\"state\":13}").unwrap();
    assert_eq!(s.append(&rec(13)).unwrap(), 13);
    drop(s);
    let (s, got) = open(tmp.path());
    assert_eq!(got.snapshot.as_deref(), Some(&b"{\"state\":13}"[..]));
    assert_eq!(got.records, recs(13..14));
    assert_eq!(s.records_since_snapshot(), 1);
    assert_eq!(only_segment(tmp.path()).file_name().unwrap(), "log-00000000000000000013");
    assert_eq!(mode(&tmp.path().join("snapshot")), 0o600);
}

#[test]
fn large_snapshot_and_empty_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path());
    s.snapshot(b"").unwrap();
    drop(s);
    let (mut s, got) = open(tmp.path());
    assert_eq!(got.snapshot, Some(vec![]));
    // Snapshots are not limited to MAX_RECORD_LEN.
    let big = vec![0xA5u8; MAX_RECORD_LEN + 10];
    s.snapshot(&big).unwrap();
    drop(s);
    let (_s, got) = open(tmp.path());
    assert_eq!(got.snapshot.as_deref(), Some(&big[..]));
}

#[test]
fn too_large_records_are_refused_without_harm() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path());
    let max = vec![7u8; MAX_RECORD_LEN];
    assert_eq!(s.append(&max).unwrap(), 0);
    let err = s.append(&vec![0u8; MAX_RECORD_LEN + 1]).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { len } if len == MAX_RECORD_LEN + 1), "{err:?}");
    assert!(err.to_string().contains("maximum"), "{err}");
    assert_eq!(s.append(b"after").unwrap(), 1, "the store is still usable");
    drop(s);
    let (_s, got) = open(tmp.path());
    assert_eq!(got.records, vec![max, b"after".to_vec()]);
}

#[test]
fn a_locked_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path());
    s.append(b"one").unwrap();
    match Store::open(tmp.path()) {
        Err(StoreError::Locked { dir }) => assert_eq!(dir, tmp.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("in use by another overlink process"), "{err}");
    // The first store is unaffected, and the lock goes with it.
    s.append(b"two").unwrap();
    drop(s);
    let (_s, got) = open(tmp.path());
    assert_eq!(got.records, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn leftover_temporary_files_are_removed_and_strangers_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path());
    s.append(b"kept").unwrap();
    drop(s);
    fs::write(tmp.path().join("snapshot.tmp"), b"half a snap").unwrap();
    fs::write(tmp.path().join("log-00000000000000000001.tmp"), b"half a seg").unwrap();
    fs::write(tmp.path().join("README"), b"not ours").unwrap();
    let (_s, got) = open(tmp.path());
    assert_eq!(got.records, vec![b"kept".to_vec()]);
    assert!(!tmp.path().join("snapshot.tmp").exists());
    assert!(!tmp.path().join("log-00000000000000000001.tmp").exists());
    assert!(tmp.path().join("README").exists());
}

#[test]
fn a_file_in_place_of_the_directory_is_an_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("state");
    fs::write(&file, b"").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(matches!(&err, StoreError::Io { path, .. } if *path == file), "{err:?}");
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// A store with records 0..3, a snapshot, then records 3..6. Returns the segment, the byte
/// offset where the last record (5) starts, and the segment's bytes.
fn log_with_last_record(dir: &Path) -> (PathBuf, usize, Vec<u8>) {
    let (mut s, _) = open(dir);
    for i in 0..3 {
        s.append(&rec(i)).unwrap();
    }
    s.snapshot(b"snap@3").unwrap();
    for i in 3..5 {
        s.append(&rec(i)).unwrap();
    }
    let seg = only_segment(dir);
    let last_start = file_len(&seg);
    s.append(&rec(5)).unwrap();
    drop(s);
    let data = fs::read(&seg).unwrap();
    assert!(data.len() > last_start + rec(5).len());
    (seg, last_start, data)
}

#[test]
fn torn_tail_of_every_length_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, last_start, pristine) = log_with_last_record(tmp.path());
    for cut in last_start..pristine.len() {
        fs::write(&seg, &pristine[..cut]).unwrap();
        let (mut s, got) = open(tmp.path());
        assert_eq!(got.snapshot.as_deref(), Some(&b"snap@3"[..]), "cut at {cut}");
        assert_eq!(got.records, recs(3..5), "cut at {cut}: the torn record is gone, the others are there");
        assert_eq!(got.truncated_bytes, (cut - last_start) as u64, "cut at {cut}");
        assert_eq!(file_len(&seg), last_start, "cut at {cut}: tail removed on disk");
        // Appending goes on from the cut, and the result recovers cleanly.
        assert_eq!(s.append(b"after the crash").unwrap(), 5);
        drop(s);
        let (_s, got) = open(tmp.path());
        assert_eq!(got.records, [recs(3..5), vec![b"after the crash".to_vec()]].concat(), "cut at {cut}");
        assert_eq!(got.truncated_bytes, 0);
    }
    // The uncut file loses nothing.
    fs::write(&seg, &pristine).unwrap();
    let (_s, got) = open(tmp.path());
    assert_eq!(got.records, recs(3..6));
}

#[test]
fn torn_tail_with_garbage_or_zeros_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, last_start, pristine) = log_with_last_record(tmp.path());
    let last_len = pristine.len() - last_start;
    // (what, segment bytes, records expected)
    type Case = (&'static str, Vec<u8>, Vec<Vec<u8>>);
    let mut cases: Vec<Case> = Vec::new();
    // The file grew but the data never made it (as ext4 may show after a power cut).
    cases.push(("zero-filled last record", [&pristine[..last_start], &vec![0; last_len]].concat(), recs(3..5)));
    cases.push(("zeros after the last record", [&pristine[..], &[0; 4096][..]].concat(), recs(3..6)));
    // The header reached the disk, the payload did not.
    cases.push(("zero-filled payload", [&pristine[..last_start + 16], &vec![0; last_len - 16]].concat(), recs(3..5)));
    // Complete length, damaged content: the last record's checksum fails.
    let mut flipped = pristine.clone();
    *flipped.last_mut().unwrap() ^= 0x20;
    cases.push(("last record with a bad checksum", flipped, recs(3..5)));
    let mut x: u32 = 0x1234_5678;
    let junk: Vec<u8> = (0..last_len + 300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    cases.push(("random junk", [&pristine[..last_start], &junk[..]].concat(), recs(3..5)));
    for (what, bytes, expect) in cases {
        fs::write(&seg, &bytes).unwrap();
        let (s, got) = open(tmp.path());
        assert_eq!(got.records, expect, "{what}");
        assert_eq!(got.truncated_bytes, (bytes.len() - file_len(&seg)) as u64, "{what}");
        drop(s);
    }
}

#[test]
fn damage_in_the_middle_of_the_log_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, _, pristine) = log_with_last_record(tmp.path());
    // Records 3, 4, 5 are in the segment after a 24-byte header; each has a 16-byte header.
    let rec3 = 24;
    let rec4 = rec3 + 16 + rec(3).len();
    let rec5 = rec4 + 16 + rec(4).len();
    // Damage each byte of records 3 and 4 in turn: never silently skipped, always reported.
    for (first_bad, range) in [(3u64, rec3..rec4), (4, rec4..rec5)] {
        for at in range {
            let mut bad = pristine.clone();
            bad[at] ^= 0x04;
            fs::write(&seg, &bad).unwrap();
            match Store::open(tmp.path()) {
                Err(StoreError::Corrupt { path, offset, reason }) => {
                    assert_eq!(path, seg, "byte {at}");
                    let start = if first_bad == 3 { rec3 } else { rec4 };
                    assert_eq!(offset, start as u64, "byte {at}: {reason}");
                }
                other => panic!("byte {at} of record {first_bad} flipped: expected Corrupt, got {other:?}"),
            }
        }
    }
    // The files are left alone for inspection.
    assert_eq!(fs::read(&seg).unwrap().len(), pristine.len());
    // A whole record missing from the middle: the next one has the wrong number.
    let spliced = [&pristine[..rec4], &pristine[rec5..]].concat();
    fs::write(&seg, &spliced).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { offset, .. } if offset == rec4 as u64), "{err:?}");
    assert!(err.to_string().contains("restore the state directory"), "{err}");
    // Restored, it opens again.
    fs::write(&seg, &pristine).unwrap();
    let (_s, got) = open(tmp.path());
    assert_eq!(got.records, recs(3..6));
}

#[test]
fn damaged_snapshot_or_segment_header_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, _, pristine) = log_with_last_record(tmp.path());
    let snap = tmp.path().join("snapshot");
    let snap_bytes = fs::read(&snap).unwrap();
    for at in 0..snap_bytes.len() {
        let mut bad = snap_bytes.clone();
        bad[at] ^= 0x01;
        fs::write(&snap, &bad).unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { path, .. } if *path == snap), "snapshot byte {at}: {err:?}");
    }
    fs::write(&snap, &snap_bytes[..snap_bytes.len() - 1]).unwrap();
    assert!(matches!(Store::open(tmp.path()), Err(StoreError::Corrupt { .. })));
    fs::write(&snap, &snap_bytes).unwrap();

    for at in 0..24 {
        let mut bad = pristine.clone();
        bad[at] ^= 0x01;
        fs::write(&seg, &bad).unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { path, .. } if *path == seg), "header byte {at}: {err:?}");
    }
    // A segment renamed to the wrong place is caught too.
    fs::write(&seg, &pristine).unwrap();
    fs::rename(&seg, tmp.path().join("log-00000000000000000002")).unwrap();
    assert!(matches!(Store::open(tmp.path()), Err(StoreError::Corrupt { .. })));
}
