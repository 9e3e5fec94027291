//! Byte layouts of the snapshot file, the log segment header and log records.

use crate::crc::Crc32c;

/// The largest record [`Store::append`](crate::Store::append) accepts: 16 MiB.
pub const MAX_RECORD_LEN: usize = 16 << 20;

pub(crate) const VERSION: u32 = 1;

pub(crate) const SNAP_MAGIC: [u8; 8] = *b"OVLKSNAP";
/// magic, version, covered count, payload length, crc.
pub(crate) const SNAP_HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4;

pub(crate) const LOG_MAGIC: [u8; 8] = *b"OVLKLOG\0";
/// magic, version, first sequence number, crc.
pub(crate) const LOG_HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// length, crc, sequence number.
pub(crate) const RECORD_HEADER_LEN: usize = 4 + 4 + 8;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn check_version(version: u32) -> Result<(), String> {
    if version == VERSION {
        Ok(())
    } else {
        Err(format!(
            "unsupported format version {version} (this build reads version {VERSION}; was it written by a newer \
             overlink?)"
        ))
    }
}

pub(crate) fn encode_log_header(first_seq: u64) -> [u8; LOG_HEADER_LEN] {
    let mut h = [0u8; LOG_HEADER_LEN];
    h[..8].copy_from_slice(&LOG_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = Crc32c::new().update(&h[..20]).finish();
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first sequence number of a segment, from its header.
pub(crate) fn decode_log_header(data: &[u8]) -> Result<u64, String> {
    if data.len() < LOG_HEADER_LEN {
        return Err(format!("log segment is {} bytes, shorter than its {LOG_HEADER_LEN}-byte header", data.len()));
    }
    if data[..8] != LOG_MAGIC {
        return Err("not an overlink log segment (bad magic)".into());
    }
    if Crc32c::new().update(&data[..20]).finish() != u32_at(data, 20) {
        return Err("log segment header checksum mismatch".into());
    }
    check_version(u32_at(data, 8))?;
    Ok(u64_at(data, 12))
}

pub(crate) fn encode_snapshot_header(covers: u64, payload: &[u8]) -> [u8; SNAP_HEADER_LEN] {
    let mut h = [0u8; SNAP_HEADER_LEN];
    h[..8].copy_from_slice(&SNAP_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&covers.to_le_bytes());
    h[20..28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = Crc32c::new().update(&h[..28]).update(payload).finish();
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// `(records covered, payload)` of a snapshot file, or `(offset, reason)`.
pub(crate) fn decode_snapshot(data: &[u8]) -> Result<(u64, &[u8]), (u64, String)> {
    if data.len() < SNAP_HEADER_LEN {
        return Err((0, format!("snapshot is {} bytes, shorter than its {SNAP_HEADER_LEN}-byte header", data.len())));
    }
    if data[..8] != SNAP_MAGIC {
        return Err((0, "not an overlink snapshot (bad magic)".into()));
    }
    check_version(u32_at(data, 8)).map_err(|r| (8, r))?;
    let covers = u64_at(data, 12);
    let len = u64_at(data, 20);
    let actual = (data.len() - SNAP_HEADER_LEN) as u64;
    if len != actual {
        return Err((20, format!("snapshot header says {len} payload bytes but the file holds {actual}")));
    }
    let payload = &data[SNAP_HEADER_LEN..];
    if Crc32c::new().update(&data[..28]).update(payload).finish() != u32_at(data, 28) {
        return Err((28, "snapshot checksum mismatch".into()));
    }
    Ok((covers, payload))
}

fn record_crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    Crc32c::new().update(&len.to_le_bytes()).update(&seq.to_le_bytes()).update(payload).finish()
}

/// Appends the framed record to `buf`. `payload.len()` must be at most [`MAX_RECORD_LEN`].
pub(crate) fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("caller checked MAX_RECORD_LEN");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// A checksum-valid record at `data[off..]`: `(sequence number, payload)`; or why there is none.
pub(crate) fn parse_record(data: &[u8], off: usize) -> Result<(u64, &[u8]), String> {
    let rest = data.len().saturating_sub(off);
    if rest < RECORD_HEADER_LEN {
        return Err(format!("incomplete record header ({rest} of {RECORD_HEADER_LEN} bytes)"));
    }
    let len32 = u32_at(data, off);
    let len = usize::try_from(len32).unwrap_or(usize::MAX);
    if len > MAX_RECORD_LEN {
        return Err(format!("record length {len} exceeds the maximum {MAX_RECORD_LEN}"));
    }
    if rest - RECORD_HEADER_LEN < len {
        return Err(format!("incomplete record ({} of {len} payload bytes)", rest - RECORD_HEADER_LEN));
    }
    let seq = u64_at(data, off + 8);
    let payload = &data[off + RECORD_HEADER_LEN..off + RECORD_HEADER_LEN + len];
    if record_crc(len32, seq, payload) != u32_at(data, off + 4) {
        return Err("record checksum mismatch".into());
    }
    Ok((seq, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_damage() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, b"hello");
        encode_record(&mut buf, 8, b"");
        assert_eq!(parse_record(&buf, 0).unwrap(), (7, &b"hello"[..]));
        assert_eq!(parse_record(&buf, RECORD_HEADER_LEN + 5).unwrap(), (8, &b""[..]));
        for i in 0..RECORD_HEADER_LEN + 5 {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(parse_record(&bad, 0).is_err(), "flipping byte {i} went unnoticed");
        }
        // An all-zero region is not a valid (empty) record.
        assert!(parse_record(&[0u8; 64], 0).is_err());
    }

    #[test]
    fn headers_round_trip() {
        assert_eq!(decode_log_header(&encode_log_header(42)).unwrap(), 42);
        let mut h = encode_log_header(42);
        h[13] ^= 1;
        assert!(decode_log_header(&h).is_err());
        let mut snap = encode_snapshot_header(9, b"state").to_vec();
        snap.extend_from_slice(b"state");
        assert_eq!(decode_snapshot(&snap).unwrap(), (9, &b"state"[..]));
        snap[SNAP_HEADER_LEN] ^= 1;
        assert!(decode_snapshot(&snap).is_err());
        assert!(decode_snapshot(&snap[..SNAP_HEADER_LEN + 2]).is_err());
    }
}
