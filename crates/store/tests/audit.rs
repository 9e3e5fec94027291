//! The audit log writes one valid JSON object per line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use store::{AuditEntry, AuditLog, StoreError};

fn entry<'a>(who: &'a str, detail: &'a str) -> AuditEntry<'a> {
    AuditEntry {
        at: UNIX_EPOCH + Duration::new(1_777_636_800, 5_000),
        who,
        action: "endpoint.approve",
        target: "ep-1",
        result: "ok",
        detail,
    }
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

#[test]
fn entries_are_json_lines_with_escaping() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    let nasty = "quote \" backslash \\ newline \n cr \r tab \t nul \0 bell \u{7} esc \u{1b} del \u{7f} \
                 ls \u{2028} unicode é 🦀 } {\"fake\":1}";
    log.record(&entry("uid:1000", "plain")).unwrap();
    log.record(&entry("admin\"\n{", nasty)).unwrap();
    log.record(&AuditEntry { at: SystemTime::now(), who: "", action: "", target: "", result: "", detail: "" }).unwrap();
    drop(log);
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3, "a newline in a field must not break the line: {text:?}");
    for raw in ['\0', '\u{7}', '\u{1b}', '\u{7f}', '\r', '\t', '\u{2028}'] {
        assert!(!text.contains(raw), "{raw:?} must be escaped: {text:?}");
    }
    let v = lines(&path);
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["at"], "2026-05-01T12:00:00.000005Z");
    assert_eq!(v[0]["who"], "uid:1000");
    assert_eq!(v[0]["action"], "endpoint.approve");
    assert_eq!(v[0]["target"], "ep-1");
    assert_eq!(v[0]["result"], "ok");
    assert_eq!(v[0]["detail"], "plain");
    assert_eq!(v[1]["who"], "admin\"\n{");
    assert_eq!(v[1]["detail"], nasty, "the string survives the round trip exactly");
    assert_eq!(v[1].as_object().unwrap().len(), 6);
    assert_eq!(v[2]["who"], "");
    let at = v[2]["at"].as_str().unwrap();
    assert!(at.len() == 27 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
}

#[test]
fn every_control_character_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    let all: String = (0u32..0x80).chain([0x2028, 0x2029, 0xFFFD, 0x10FFFF]).filter_map(char::from_u32).collect();
    for c in all.chars() {
        let s = c.to_string();
        log.record(&entry(&s, &all)).unwrap();
    }
    drop(log);
    let v = lines(&path);
    assert_eq!(v.len(), all.chars().count());
    for (c, line) in all.chars().zip(&v) {
        assert_eq!(line["who"], c.to_string());
        assert_eq!(line["detail"], all);
    }
}

#[test]
fn reopening_appends_and_a_torn_last_line_is_terminated() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    log.record(&entry("a", "first")).unwrap();
    drop(log);
    let mut log = AuditLog::open(&path).unwrap();
    log.record(&entry("b", "second")).unwrap();
    drop(log);
    assert_eq!(lines(&path).len(), 2);

    // A crash mid-write left half a line.
    let mut text = fs::read(&path).unwrap();
    text.extend_from_slice(b"{\"at\":\"2026-05-01T12:0");
    fs::write(&path, &text).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    log.record(&entry("c", "third")).unwrap();
    drop(log);
    let content = fs::read_to_string(&path).unwrap();
    let all: Vec<&str> = content.lines().collect();
    assert_eq!(all.len(), 4);
    assert_eq!(all[2], "{\"at\":\"2026-05-01T12:0", "the partial line is kept as evidence");
    let last: Value = serde_json::from_str(all[3]).unwrap();
    assert_eq!(last["who"], "c");
    assert_eq!(last["detail"], "third");
}

#[test]
fn unwritable_location_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("missing-dir/audit.log");
    let err = AuditLog::open(&path).unwrap_err();
    assert!(matches!(&err, StoreError::Io { path: p, .. } if *p == path), "{err:?}");
    assert!(err.to_string().contains("audit.log"), "{err}");
}
