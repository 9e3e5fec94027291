//! Fault-injection tests of the snapshot protocol: a crash after every step of it.

use super::*;

/// Which crash point to stop at, and the ones passed so far.
#[derive(Debug, Default)]
pub(super) struct Faults {
    pub(super) crash_at: Option<usize>,
    pub(super) passed: Vec<&'static str>,
}

fn rec(i: u64) -> Vec<u8> {
    format!("{{\"record\":{i}}}").into_bytes()
}

fn records(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(rec).collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Builds a store holding records 0..9, optionally with a snapshot after record 5.
fn history(dir: &Path, with_old_snapshot: bool) -> (Store, Recovered) {
    let (mut s, _) = Store::open(dir).unwrap();
    for i in 0..5 {
        assert_eq!(s.append(&rec(i)).unwrap(), i);
    }
    if with_old_snapshot {
        s.snapshot(b"state@5").unwrap();
    }
    for i in 5..9 {
        s.append(&rec(i)).unwrap();
    }
    let before = if with_old_snapshot {
        Recovered { snapshot: Some(b"state@5".to_vec()), records: records(5..9), truncated_bytes: 0 }
    } else {
        Recovered { snapshot: None, records: records(0..9), truncated_bytes: 0 }
    };
    (s, before)
}

#[test]
fn crash_after_every_snapshot_step_recovers_before_or_after() {
    for with_old_snapshot in [false, true] {
        let mut steps_seen = 0;
        for k in 0.. {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let (mut s, before) = history(dir, with_old_snapshot);
            let after = Recovered { snapshot: Some(b"state@9".to_vec()), records: vec![], truncated_bytes: 0 };
            s.faults.passed.clear();
            s.faults.crash_at = Some(k);
            let finished = s.snapshot(b"state@9").is_ok();
            let step = if finished { "completed" } else { s.faults.passed.last().copied().unwrap_or("start") };
            if !finished {
                // The store refuses to go on after a failure.
                assert!(s.append(b"x").is_err());
            }
            drop(s); // the "crash": files stay as they are, the lock is released

            let (mut s, got) = Store::open(dir).unwrap();
            assert!(got == before || got == after, "crash after {step:?}: recovered {got:?}");
            if finished {
                assert_eq!(got, after);
                assert_eq!(files(dir), ["lock", "log-00000000000000000009", "snapshot"]);
            }
            assert_eq!(s.next_seq(), 9, "crash after {step:?}");
            assert!(!files(dir).iter().any(|f| f.ends_with(".tmp")), "crash after {step:?}: {:?}", files(dir));

            // The store goes on: append, reopen, snapshot again, reopen.
            assert_eq!(s.append(&rec(9)).unwrap(), 9);
            drop(s);
            let (mut s, got2) = Store::open(dir).unwrap();
            let mut expect = got.clone();
            expect.records.push(rec(9));
            assert_eq!(got2, expect, "crash after {step:?}");
            assert_eq!(s.records_since_snapshot(), got2.records.len() as u64);
            s.snapshot(b"state@10").unwrap();
            s.append(&rec(10)).unwrap();
            drop(s);
            let (_s, got3) = Store::open(dir).unwrap();
            assert_eq!(got3.snapshot.as_deref(), Some(&b"state@10"[..]));
            assert_eq!(got3.records, vec![rec(10)]);
            assert_eq!(files(dir), ["lock", "log-00000000000000000010", "snapshot"], "crash after {step:?}");

            if finished {
                steps_seen = k;
                break;
            }
        }
        // header, payload, fsync, rename, dir fsync, new segment ×3, 1 removal, removal fsync.
        assert_eq!(steps_seen, 10, "with_old_snapshot={with_old_snapshot}");
    }
}

#[test]
fn snapshot_without_new_records_keeps_the_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(tmp.path()).unwrap();
    s.snapshot(b"empty").unwrap();
    s.append(b"a").unwrap();
    s.snapshot(b"a").unwrap();
    s.snapshot(b"a, again").unwrap();
    assert_eq!(s.records_since_snapshot(), 0);
    drop(s);
    let (_s, got) = Store::open(tmp.path()).unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"a, again"[..]));
    assert!(got.records.is_empty());
    assert_eq!(files(tmp.path()), ["lock", "log-00000000000000000001", "snapshot"]);
}

/// State left by a crash after the new segment became durable but before the old ones were
/// removed, with the previous snapshot put back: two live segments, the first sealed.
fn two_live_segments(dir: &Path) -> PathBuf {
    let (mut s, _) = history(dir, true);
    let old_snapshot = fs::read(dir.join(SNAPSHOT_FILE)).unwrap();
    s.faults.passed.clear();
    s.faults.crash_at = Some(7);
    assert!(s.snapshot(b"state@9").is_err());
    assert_eq!(s.faults.passed.last(), Some(&"new segment durable"));
    drop(s);
    fs::write(dir.join(SNAPSHOT_FILE), old_snapshot).unwrap();
    assert_eq!(files(dir), ["lock", "log-00000000000000000005", "log-00000000000000000009", "snapshot"]);
    dir.join("log-00000000000000000005")
}

#[test]
fn replays_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    two_live_segments(tmp.path());
    let (mut s, got) = Store::open(tmp.path()).unwrap();
    assert_eq!(got.records, records(5..9));
    assert_eq!(s.append(&rec(9)).unwrap(), 9);
    drop(s);
    let (_s, got) = Store::open(tmp.path()).unwrap();
    assert_eq!(got.records, records(5..10));
}

#[test]
fn damage_at_the_end_of_a_sealed_segment_is_corruption() {
    // A bad last record in a segment that is not the last one is not a torn tail: it was
    // acknowledged before the next segment was started.
    for damage in ["flip", "cut"] {
        let tmp = tempfile::tempdir().unwrap();
        let seg = two_live_segments(tmp.path());
        let mut data = fs::read(&seg).unwrap();
        if damage == "flip" {
            let n = data.len();
            data[n - 1] ^= 0x40;
        } else {
            data.truncate(data.len() - 3);
        }
        fs::write(&seg, &data).unwrap();
        match Store::open(tmp.path()) {
            Err(StoreError::Corrupt { path, .. }) => assert_eq!(path, seg, "{damage}"),
            other => panic!("{damage}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn missing_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let seg = two_live_segments(tmp.path());
    fs::remove_file(seg).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn segment_names_round_trip() {
    assert_eq!(segment_name(42), "log-00000000000000000042");
    assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(parse_segment_name("log-42"), None);
    assert_eq!(parse_segment_name("log-0000000000000000004x"), None);
    assert_eq!(parse_segment_name("log-00000000000000000042.tmp"), None);
}
