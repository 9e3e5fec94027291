//! Embedded, crash-safe storage for the control plane's runtime state, and its audit log.
//!
//! # The store
//!
//! [`Store`] keeps opaque byte records (the control plane serialises its changes as JSON) in a
//! state directory as **an fsync'd append-only log plus atomic snapshots**:
//!
//! ```text
//! <dir>/lock                   held with an exclusive `flock` while a Store is open
//! <dir>/snapshot               the latest snapshot: the state as of the first N records
//! <dir>/log-<first seq, 20 digits>   log segments; the last one is appended to
//! <dir>/*.tmp                  in-flight writes; deleted on open
//! ```
//!
//! Every record has a sequence number (0, 1, 2, …, counted over the store's whole life).
//! [`Store::append`] returns only once the record is durable: a `kill -9` or power loss after
//! it returns loses nothing. [`Store::snapshot`] replaces the snapshot atomically and starts a
//! new log segment; a crash at any point of it recovers either the state before or the state
//! after it. [`Store::open`] recovers the snapshot plus the records logged after it; a torn
//! record at the very end of the log (an append that never returned) is cut away, while damage
//! anywhere else is reported as [`StoreError::Corrupt`], never skipped.
//!
//! ## On-disk format (all integers little-endian)
//!
//! - Snapshot: `"OVLKSNAP"`, version `u32` (1), covered record count `u64`, payload length
//!   `u64`, CRC-32C `u32` of everything before it plus the payload, then the payload.
//! - Log segment header: `"OVLKLOG\0"`, version `u32` (1), first sequence number `u64`,
//!   CRC-32C `u32` of the previous 20 bytes.
//! - Log record: payload length `u32`, CRC-32C `u32` (of the length, the sequence number and the
//!   payload), sequence number `u64`, payload (at most [`MAX_RECORD_LEN`] bytes).
//!
//! # The audit log
//!
//! [`AuditLog`] appends one JSON object per line to a text file and fsyncs each one before
//! [`AuditLog::record`] returns, so the control plane can refuse a mutation it cannot audit.
#![forbid(unsafe_code)]

mod audit;
mod crc;
mod format;
mod store;

use std::path::PathBuf;

pub use audit::{AuditEntry, AuditLog};
pub use format::MAX_RECORD_LEN;
pub use store::{Recovered, Store};

/// Errors of the store and the audit log. The messages say what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error(
        "could not {op} {}: {source} (check that the path exists, is writable by this user and \
         the disk is not full)",
        path.display()
    )]
    Io {
        /// The file or directory operated on.
        path: PathBuf,
        /// What was being done, e.g. "fsync".
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this one) has the state directory open.
    #[error(
        "state directory {} is in use by another overlink process; stop that process or give \
         this one a different state directory",
        dir.display()
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
    },
    /// A file's contents are damaged in a way a crash cannot explain.
    #[error(
        "state file {} is corrupt at byte {offset}: {reason}; restore the state directory from a \
         backup, or move it aside to start with empty state",
        path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record is larger than [`MAX_RECORD_LEN`].
    #[error(
        "record of {len} bytes is larger than the maximum of {max} bytes; store less per record \
         (or put large state in a snapshot)",
        max = MAX_RECORD_LEN
    )]
    TooLarge {
        /// The record's length.
        len: usize,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), op, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StoreError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}
