//! The audit log: one JSON object per line, fsynced before [`AuditLog::record`] returns.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::StoreError;

/// One audited action. Written as
/// `{"at":"2026-05-01T12:00:00.000000Z","who":…,"action":…,"target":…,"result":…,"detail":…}`.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    /// When it happened; written in RFC 3339, UTC, with microseconds.
    pub at: SystemTime,
    /// Who asked: a client identity (peer uid, token name, …).
    pub who: &'a str,
    /// What was asked, e.g. `"endpoint.approve"`.
    pub action: &'a str,
    /// What it was done to, e.g. an endpoint id.
    pub target: &'a str,
    /// The outcome, e.g. `"ok"` or `"denied"`.
    pub result: &'a str,
    /// Anything else worth keeping.
    pub detail: &'a str,
}

/// An append-only audit log file. Each [`record`](AuditLog::record) is one `write` of one line,
/// then `fdatasync`: when it returns `Ok`, the entry is durable.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The file may end in a partial line (after a crash or a failed write): end it first.
    check_tail: bool,
    line: String,
}

impl AuditLog {
    /// Opens (creating, with mode 0600) the audit log at `path` for appending. The directory
    /// must exist. A partial last line left by a crash is kept (it is evidence) but terminated,
    /// so the entries that follow are whole lines.
    pub fn open(path: &Path) -> Result<AuditLog, StoreError> {
        let existed = path.try_exists().map_err(|e| StoreError::io(path, "inspect", e))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::io(path, "open the audit log", e))?;
        if !existed {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, "fsync directory", e))?;
        }
        let mut log = AuditLog { path: path.to_path_buf(), file, check_tail: true, line: String::new() };
        log.end_partial_line()?;
        Ok(log)
    }

    /// Appends `entry` and returns once it is durable. On error the caller must not perform the
    /// audited action.
    pub fn record(&mut self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        if self.check_tail {
            self.end_partial_line()?;
        }
        self.line.clear();
        entry_json(&mut self.line, entry);
        self.line.push('\n');
        let result = self
            .file
            .write_all(self.line.as_bytes())
            .map_err(|e| StoreError::io(&self.path, "append to", e))
            .and_then(|()| self.file.sync_data().map_err(|e| StoreError::io(&self.path, "fsync", e)));
        if result.is_err() {
            self.check_tail = true;
        }
        result
    }

    fn end_partial_line(&mut self) -> Result<(), StoreError> {
        let len = self.file.metadata().map_err(|e| StoreError::io(&self.path, "inspect", e))?.len();
        if len > 0 {
            let mut last = [0u8];
            self.file.read_exact_at(&mut last, len - 1).map_err(|e| StoreError::io(&self.path, "read", e))?;
            if last[0] != b'\n' {
                self.file.write_all(b"\n").map_err(|e| StoreError::io(&self.path, "append to", e))?;
                self.file.sync_data().map_err(|e| StoreError::io(&self.path, "fsync", e))?;
            }
        }
        self.check_tail = false;
        Ok(())
    }
}

fn entry_json(out: &mut String, e: &AuditEntry<'_>) {
    out.push_str("{\"at\":\"");
    push_rfc3339(out, e.at);
    out.push('"');
    for (key, value) in
        [("who", e.who), ("action", e.action), ("target", e.target), ("result", e.result), ("detail", e.detail)]
    {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        push_json_string(out, value);
    }
    out.push('}');
}

/// `s` as a JSON string literal. Control characters, DEL and the JavaScript line separators are
/// escaped, so a line never breaks and never carries terminal escapes.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("writing to a String cannot fail");
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(crate) fn push_rfc3339(out: &mut String, at: SystemTime) {
    let (secs, micros) = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_micros()),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_micros() {
                0 => (secs, 0),
                us => (secs - 1, 1_000_000 - us),
            }
        }
    };
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, sod / 60 % 60, sod % 60)
        .expect("writing to a String cannot fail");
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fmt(at: SystemTime) -> String {
        let mut s = String::new();
        push_rfc3339(&mut s, at);
        s
    }

    #[test]
    fn timestamps() {
        assert_eq!(fmt(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(fmt(UNIX_EPOCH + Duration::from_micros(951_782_400_000_001)), "2000-02-29T00:00:00.000001Z");
        assert_eq!(fmt(UNIX_EPOCH + Duration::new(1_777_636_800, 123_456_789)), "2026-05-01T12:00:00.123456Z");
        assert_eq!(fmt(UNIX_EPOCH + Duration::new(253_402_300_799, 0)), "9999-12-31T23:59:59.000000Z");
        assert_eq!(fmt(UNIX_EPOCH - Duration::from_micros(1)), "1969-12-31T23:59:59.999999Z");
        assert_eq!(fmt(UNIX_EPOCH - Duration::from_secs(86_400 * 365)), "1969-01-01T00:00:00.000000Z");
    }

    #[test]
    fn civil_dates_match_a_day_by_day_walk() {
        let days_in = |y: i64, m: i64| match m {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1900, 1, 1);
        for days in -25_567..200_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > days_in(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
