//! Zero-copy views and small `Copy` representations of the wire formats overlink touches.
//!
//! Every protocol follows the smoltcp shape: a view `Packet<T: AsRef<[u8]>>` over a byte
//! buffer whose `new_checked` constructor validates every length that its accessors rely on
//! (so no accessor of a checked view can panic, whatever the bytes), and a `Repr` with
//! `parse` / `buffer_len` / `emit`. Nothing here allocates: the datapath's fast path calls it
//! per packet. Checksums, full (RFC 1071) and incremental (RFC 1624), live in [`checksum`].
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod proxy;
pub mod tcp;
pub mod udp;

use core::fmt;

/// Why a buffer could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the format requires.
    Truncated,
    /// A field holds a value the format forbids.
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Valid on the wire, but not a variant this crate handles.
    Unsupported,
    /// The caller's buffer is too small for what is being written.
    Exhausted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "packet truncated: buffer shorter than its headers claim",
            Error::Malformed => "packet malformed: a field holds a value the format forbids",
            Error::Checksum => "checksum does not verify",
            Error::Unsupported => "packet valid but of a kind this parser does not handle",
            Error::Exhausted => "output buffer too small for what is being written",
        })
    }
}

impl std::error::Error for Error {}

/// Result with the wire [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, VlanHeader, VlanRepr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr, Icmpv4Type};
pub use icmpv6::Icmpv6Packet;
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{SeqNumber, TcpFlags, TcpOption, TcpOptions, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Reads a big-endian u16 at `at`; the caller guarantees `at + 2 <= buf.len()`.
#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian u32 at `at`; the caller guarantees `at + 4 <= buf.len()`.
#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian u16 at `at`.
#[inline]
pub(crate) fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `at`.
#[inline]
pub(crate) fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
