//! TCP headers and options (RFC 9293 §3.1), sequence-number arithmetic (RFC 9293 §3.4,
//! RFC 1982 serial comparison), and the options the gateway reads or rewrites: MSS
//! (RFC 9293 §3.7.1), window scale and timestamps (RFC 7323), SACK (RFC 2018).
//!
//! PROXY v2 insertion shifts client sequence numbers and maps ACK/SACK blocks back, so
//! sequence numbers are a type whose comparisons wrap at 2^32 instead of `u32`'s `<`.

use core::ops;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::{be16, be32, put16, put32, Error, Result};

/// A TCP sequence number: arithmetic wraps at 2^32 and comparisons are serial (RFC 1982).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// True if `self` comes before `other` (serial comparison).
    pub fn lt(self, other: SeqNumber) -> bool {
        (self - other) < 0
    }

    /// True if `self` comes before or equals `other`.
    pub fn le(self, other: SeqNumber) -> bool {
        (self - other) <= 0
    }

    /// True if `self` comes after `other`.
    pub fn gt(self, other: SeqNumber) -> bool {
        (self - other) > 0
    }

    /// True if `self` comes after or equals `other`.
    pub fn ge(self, other: SeqNumber) -> bool {
        (self - other) >= 0
    }

    /// The later of two numbers.
    #[must_use]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self.ge(other) {
            self
        } else {
            other
        }
    }

    /// The earlier of two numbers.
    #[must_use]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self.le(other) {
            self
        } else {
            other
        }
    }
}

#[allow(clippy::cast_possible_truncation, reason = "sequence space is modulo 2^32 by definition")]
fn wrap(n: usize) -> u32 {
    n as u32
}

impl ops::Add<usize> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(wrap(rhs)))
    }
}

impl ops::AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl ops::Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(wrap(rhs)))
    }
}

impl ops::SubAssign<usize> for SeqNumber {
    fn sub_assign(&mut self, rhs: usize) {
        *self = *self - rhs;
    }
}

impl ops::Sub<SeqNumber> for SeqNumber {
    type Output = i32;
    fn sub(self, rhs: SeqNumber) -> i32 {
        i32::from_ne_bytes(self.0.wrapping_sub(rhs.0).to_ne_bytes())
    }
}

/// The TCP control bits (RFC 9293 §3.1; NS from RFC 3540, ECE/CWR from RFC 3168).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// ECN nonce (historic).
    pub const NS: TcpFlags = TcpFlags(0x100);
    /// No flags.
    pub const EMPTY: TcpFlags = TcpFlags(0);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets or clears the bits of `other`.
    #[must_use]
    pub fn with(self, other: TcpFlags, on: bool) -> TcpFlags {
        if on {
            TcpFlags(self.0 | other.0)
        } else {
            TcpFlags(self.0 & !other.0)
        }
    }

    /// FIN set.
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// SYN set.
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// RST set.
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }

    /// PSH set.
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }

    /// ACK set.
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// URG set.
    pub fn urg(self) -> bool {
        self.contains(Self::URG)
    }
}

impl ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const FLAGS: usize = 12;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (data offset 15 × 4 − 20).
pub const MAX_OPTIONS_LEN: usize = 40;

/// A view of a TCP segment (the whole IP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after checking the header and its options fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks length >= 20, data offset >= 5 and header_len <= length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// Acknowledgment number (meaningful only with ACK).
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS] >> 4) * 4
    }

    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(be16(self.buffer.as_ref(), field::FLAGS) & 0x01FF)
    }

    /// Window (unscaled).
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    fn header_end(&self) -> usize {
        self.header_len().min(self.buffer.as_ref().len()).max(field::OPTIONS)
    }

    /// Option bytes (20..header_len).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_end()]
    }

    /// An iterator over the options.
    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// Segment data (header_len..).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_end()..]
    }

    /// Sequence space the segment occupies: payload length plus one for each of SYN and FIN.
    pub fn segment_len(&self) -> usize {
        let f = self.flags();
        self.payload().len() + usize::from(f.syn()) + usize::from(f.fin())
    }

    fn sum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<u32> {
        let b = self.buffer.as_ref();
        let len = u16::try_from(b.len()).ok()?;
        Some(checksum::pseudo_header_v4(src, dst, 6, len) + checksum::sum(b))
    }

    fn sum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Option<u32> {
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).ok()?;
        Some(checksum::pseudo_header_v6(src, dst, 6, len) + checksum::sum(b))
    }

    /// True if the checksum verifies over the IPv4 pseudo-header and the whole buffer.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.sum_v4(src, dst).is_some_and(|s| checksum::fold(s) == 0xFFFF)
    }

    /// True if the checksum verifies over the IPv6 pseudo-header and the whole buffer.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.sum_v6(src, dst).is_some_and(|s| checksum::fold(s) == 0xFFFF)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        put32(self.buffer.as_mut(), field::SEQ_NUM, v.0);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        put32(self.buffer.as_mut(), field::ACK_NUM, v.0);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        let off = u8::try_from((len / 4) & 0x0F).unwrap_or(0x0F);
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = (*b & 0x0F) | (off << 4);
    }

    /// Sets the control bits, keeping the data offset.
    pub fn set_flags(&mut self, f: TcpFlags) {
        let raw = be16(self.buffer.as_ref(), field::FLAGS);
        put16(self.buffer.as_mut(), field::FLAGS, (raw & 0xFE00) | (f.0 & 0x01FF));
    }

    /// Sets the window.
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_end();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Segment data, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_end();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and writes the checksum (IPv4 pseudo-header).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = self.sum_v4(src, dst).map_or(0, checksum::finish);
        self.set_checksum(c);
    }

    /// Computes and writes the checksum (IPv6 pseudo-header).
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = self.sum_v6(src, dst).map_or(0, checksum::finish);
        self.set_checksum(c);
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// Kind 0: end of option list.
    EndOfList,
    /// Kind 1: padding.
    NoOperation,
    /// Kind 2: maximum segment size.
    MaxSegmentSize(u16),
    /// Kind 3: window scale shift (RFC 7323 §2).
    WindowScale(u8),
    /// Kind 4: SACK permitted (RFC 2018 §2).
    SackPermitted,
    /// Kind 5: SACK blocks `(left, right)` (RFC 2018 §3); a fourth block on the wire is dropped.
    SackRange([Option<(u32, u32)>; 3]),
    /// Kind 8: timestamps (RFC 7323 §3).
    Timestamp {
        /// Sender's timestamp value.
        tsval: u32,
        /// Echoed timestamp.
        tsecr: u32,
    },
    /// Any other kind, with the bytes after kind and length.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data (length − 2 bytes).
        data: &'a [u8],
    },
}

/// Option kind numbers (IANA "TCP Option Kind Numbers").
pub mod kind {
    /// End of option list.
    pub const END_OF_LIST: u8 = 0;
    /// No operation.
    pub const NO_OPERATION: u8 = 1;
    /// Maximum segment size.
    pub const MAX_SEGMENT_SIZE: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMP: u8 = 8;
}

impl TcpOption<'_> {
    /// Bytes this option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(r) => 2 + 8 * r.iter().flatten().count(),
            TcpOption::Timestamp { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buf`; returns the bytes written.
    ///
    /// `Err(Exhausted)` if `buf` is too short; `Err(Malformed)` for a SACK option without
    /// blocks or an unknown option longer than 255 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(Error::Exhausted);
        }
        let len_byte = u8::try_from(len).map_err(|_| Error::Malformed)?;
        match *self {
            TcpOption::EndOfList => buf[0] = kind::END_OF_LIST,
            TcpOption::NoOperation => buf[0] = kind::NO_OPERATION,
            TcpOption::MaxSegmentSize(mss) => {
                buf[..2].copy_from_slice(&[kind::MAX_SEGMENT_SIZE, len_byte]);
                put16(buf, 2, mss);
            }
            TcpOption::WindowScale(shift) => {
                buf[..3].copy_from_slice(&[kind::WINDOW_SCALE, len_byte, shift]);
            }
            TcpOption::SackPermitted => buf[..2].copy_from_slice(&[kind::SACK_PERMITTED, len_byte]),
            TcpOption::SackRange(ranges) => {
                if len == 2 {
                    return Err(Error::Malformed);
                }
                buf[..2].copy_from_slice(&[kind::SACK, len_byte]);
                for (i, (left, right)) in ranges.iter().flatten().enumerate() {
                    put32(buf, 2 + 8 * i, *left);
                    put32(buf, 6 + 8 * i, *right);
                }
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                buf[..2].copy_from_slice(&[kind::TIMESTAMP, len_byte]);
                put32(buf, 2, tsval);
                put32(buf, 6, tsecr);
            }
            TcpOption::Unknown { kind, data } => {
                buf[..2].copy_from_slice(&[kind, len_byte]);
                buf[2..len].copy_from_slice(data);
            }
        }
        Ok(len)
    }
}

/// An iterator over TCP option bytes.
///
/// Ends after `EndOfList`; on a length of 0 or 1, a length past the end, or a known option
/// of the wrong length it yields one `Err(Malformed)` and ends.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> TcpOptions<'a> {
    /// Iterates over `data` (the bytes between 20 and header_len).
    pub const fn new(data: &'a [u8]) -> Self {
        TcpOptions { data, pos: 0, done: false }
    }

    /// Offset in the option bytes of the next option to be read (for in-place rewrites).
    pub const fn position(&self) -> usize {
        self.pos
    }

    fn parse_one(&mut self) -> Result<TcpOption<'a>> {
        let rest = &self.data[self.pos..];
        match rest[0] {
            kind::END_OF_LIST => {
                self.done = true;
                return Ok(TcpOption::EndOfList);
            }
            kind::NO_OPERATION => {
                self.pos += 1;
                return Ok(TcpOption::NoOperation);
            }
            _ => {}
        }
        let (&k, &len) = match rest {
            [k, len, ..] => (k, len),
            _ => return Err(Error::Malformed),
        };
        let len = usize::from(len);
        if len < 2 || len > rest.len() {
            return Err(Error::Malformed);
        }
        let body = &rest[2..len];
        let opt = match (k, len) {
            (kind::MAX_SEGMENT_SIZE, 4) => TcpOption::MaxSegmentSize(be16(body, 0)),
            (kind::WINDOW_SCALE, 3) => TcpOption::WindowScale(body[0]),
            (kind::SACK_PERMITTED, 2) => TcpOption::SackPermitted,
            (kind::SACK, _) if len >= 10 && (len - 2) % 8 == 0 => {
                let mut ranges = [None; 3];
                for (slot, block) in ranges.iter_mut().zip(body.chunks_exact(8)) {
                    *slot = Some((be32(block, 0), be32(block, 4)));
                }
                TcpOption::SackRange(ranges)
            }
            (kind::TIMESTAMP, 10) => TcpOption::Timestamp { tsval: be32(body, 0), tsecr: be32(body, 4) },
            (kind::MAX_SEGMENT_SIZE | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::SACK | kind::TIMESTAMP, _) => {
                return Err(Error::Malformed)
            }
            (kind, _) => TcpOption::Unknown { kind, data: body },
        };
        self.pos += len;
        Ok(opt)
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let r = self.parse_one();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

/// The fields of a TCP segment, with the options the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: SeqNumber,
    /// Acknowledgment number; `Some` iff the ACK bit is set.
    pub ack_number: Option<SeqNumber>,
    /// All control bits as on the wire; `emit` forces ACK to match `ack_number`.
    pub flags: TcpFlags,
    /// Window (unscaled).
    pub window_len: u16,
    /// MSS option.
    pub max_seg_size: Option<u16>,
    /// Window scale option.
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK blocks, in order; `None` slots are unused.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// Timestamps option `(tsval, tsecr)`.
    pub timestamp: Option<(u32, u32)>,
    /// Segment data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Reads a segment, verifying the checksum over the IPv4 pseudo-header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum_v4(src, dst) {
            return Err(Error::Checksum);
        }
        Self::parse_unverified(packet)
    }

    /// Reads a segment, verifying the checksum over the IPv6 pseudo-header.
    pub fn parse_v6<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum_v6(src, dst) {
            return Err(Error::Checksum);
        }
        Self::parse_unverified(packet)
    }

    /// Reads a segment without looking at the checksum (e.g. a quote inside ICMP).
    pub fn parse_unverified<T: AsRef<[u8]> + ?Sized>(packet: &TcpPacket<&'a T>) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        let bytes: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        let header_len = packet.header_len();
        let flags = packet.flags();
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: flags.ack().then(|| packet.ack_number()),
            flags,
            window_len: packet.window_len(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &bytes[header_len..],
        };
        for opt in TcpOptions::new(&bytes[field::OPTIONS..header_len]) {
            match opt? {
                TcpOption::MaxSegmentSize(v) => repr.max_seg_size = Some(v),
                TcpOption::WindowScale(v) => repr.window_scale = Some(v),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(r) => repr.sack_ranges = r,
                TcpOption::Timestamp { tsval, tsecr } => repr.timestamp = Some((tsval, tsecr)),
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    fn base_options_len(&self) -> usize {
        self.max_seg_size.map_or(0, |_| 4)
            + self.window_scale.map_or(0, |_| 3)
            + if self.sack_permitted { 2 } else { 0 }
            + self.timestamp.map_or(0, |_| 10)
    }

    /// SACK blocks that fit in the 40 option bytes after the other options.
    fn sack_blocks(&self) -> usize {
        let wanted = self.sack_ranges.iter().flatten().count();
        let room = MAX_OPTIONS_LEN.saturating_sub(self.base_options_len() + 2) / 8;
        wanted.min(room)
    }

    fn options_len(&self) -> usize {
        let sack = match self.sack_blocks() {
            0 => 0,
            n => 2 + 8 * n,
        };
        self.base_options_len() + sack
    }

    /// Header length including options padded to a multiple of 4.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len().div_ceil(4) * 4
    }

    /// Header plus payload length.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space the segment occupies: payload length plus one for each of SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload.len() + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        let header_len = self.header_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number.unwrap_or_default());
        put16(packet.buffer.as_mut(), field::FLAGS, 0);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags.with(TcpFlags::ACK, self.ack_number.is_some()));
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
        let opts = &mut packet.buffer.as_mut()[field::OPTIONS..header_len];
        let mut at = 0;
        let mut put = |o: TcpOption<'_>, at: &mut usize| {
            // The lengths were summed in header_len, so every option fits.
            *at += o.emit(&mut opts[*at..]).unwrap_or(0);
        };
        if let Some(mss) = self.max_seg_size {
            put(TcpOption::MaxSegmentSize(mss), &mut at);
        }
        if let Some(shift) = self.window_scale {
            put(TcpOption::WindowScale(shift), &mut at);
        }
        if self.sack_permitted {
            put(TcpOption::SackPermitted, &mut at);
        }
        if let Some((tsval, tsecr)) = self.timestamp {
            put(TcpOption::Timestamp { tsval, tsecr }, &mut at);
        }
        let blocks = self.sack_blocks();
        if blocks > 0 {
            let mut ranges = [None; 3];
            for (slot, r) in ranges.iter_mut().zip(self.sack_ranges.iter().flatten()).take(blocks) {
                *slot = Some(*r);
            }
            put(TcpOption::SackRange(ranges), &mut at);
        }
        opts[at..].fill(kind::END_OF_LIST);
        let payload_len = self.payload.len();
        packet.payload_mut()[..payload_len].copy_from_slice(self.payload);
    }

    /// Writes the segment and its checksum (IPv4); the buffer must be exactly `buffer_len()` bytes.
    ///
    /// Options go in the order MSS, window scale, SACK-permitted, timestamps, SACK, then
    /// EOL padding; SACK blocks that do not fit in 40 option bytes are left out.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) {
        self.emit_header(packet);
        packet.fill_checksum_v4(src, dst);
    }

    /// Writes the segment and its checksum (IPv6); the buffer must be exactly `buffer_len()` bytes.
    pub fn emit_v6<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.emit_header(packet);
        packet.fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 4);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 10);

    // A SYN from 10.0.1.4:50000 to 10.0.2.10:443 with Linux's option layout:
    // MSS 1460, SACK-permitted, TS 0x01020304/0, NOP, WS 7.
    const SYN: [u8; 40] = [
        0xc3, 0x50, 0x01, 0xbb, // ports
        0x12, 0x34, 0x56, 0x78, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum (filled in the test), urgent
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07,
    ];

    fn syn() -> [u8; 40] {
        let mut b = SYN;
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum_v4(SRC, DST);
        b
    }

    #[test]
    fn parse_fixture() {
        let b = syn();
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 50000);
        assert_eq!(p.dst_port(), 443);
        assert_eq!(p.seq_number(), SeqNumber(0x1234_5678));
        assert_eq!(p.ack_number(), SeqNumber(0));
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &SYN[20..]);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(SRC, Ipv4Addr::new(10, 0, 2, 11)));
        let opts: Vec<_> = p.options_iter().collect();
        assert_eq!(
            opts,
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamp { tsval: 0x0102_0304, tsecr: 0 }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
        let r = TcpRepr::parse(&p, SRC, DST).unwrap();
        assert_eq!(
            r,
            TcpRepr {
                src_port: 50000,
                dst_port: 443,
                seq_number: SeqNumber(0x1234_5678),
                ack_number: None,
                flags: TcpFlags::SYN,
                window_len: 64240,
                max_seg_size: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                sack_ranges: [None; 3],
                timestamp: Some((0x0102_0304, 0)),
                payload: &[],
            }
        );
        assert_eq!(TcpRepr::parse(&p, DST, Ipv4Addr::new(10, 0, 1, 5)), Err(Error::Checksum));
    }

    #[test]
    fn emit_fixture() {
        // ACK+PSH with 3 bytes, TS and one SACK block: exact bytes.
        let r = TcpRepr {
            src_port: 443,
            dst_port: 50000,
            seq_number: SeqNumber(1),
            ack_number: Some(SeqNumber(0xFFFF_FFFF)),
            flags: TcpFlags::PSH,
            window_len: 502,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [Some((0x10, 0x20)), None, None],
            timestamp: Some((7, 8)),
            payload: b"abc",
        };
        assert_eq!(r.header_len(), 20 + 20);
        let mut b = vec![0xAAu8; r.buffer_len()];
        r.emit(&mut TcpPacket::new_unchecked(&mut b[..]), DST, SRC);
        let mut expect = vec![
            0x01, 0xbb, 0xc3, 0x50, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xa0, 0x18, 0x01, 0xf6, 0, 0, 0,
            0, // header
            8, 10, 0, 0, 0, 7, 0, 0, 0, 8, // TS
            5, 10, 0, 0, 0, 0x10, 0, 0, 0, 0x20, // SACK
            b'a', b'b', b'c',
        ];
        let c = checksum::finish(checksum::pseudo_header_v4(DST, SRC, 6, 43) + checksum::sum(&expect));
        expect[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(b, expect);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        let mut back = r;
        back.flags = TcpFlags::PSH | TcpFlags::ACK;
        assert_eq!(TcpRepr::parse(&p, DST, SRC).unwrap(), back);
    }

    #[test]
    fn emit_pads_options_with_eol() {
        // SYN-ACK with MSS 1400 and WS 7: 7 option bytes, one EOL pad, data offset 7.
        let r = TcpRepr {
            src_port: 443,
            dst_port: 50000,
            seq_number: SeqNumber(0x0102_0304),
            ack_number: Some(SeqNumber(0x1234_5679)),
            flags: TcpFlags::SYN,
            window_len: 65535,
            max_seg_size: Some(1400),
            window_scale: Some(7),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        assert_eq!(r.header_len(), 28);
        let mut b = [0u8; 28];
        r.emit(&mut TcpPacket::new_unchecked(&mut b[..]), DST, SRC);
        let mut expect = [
            0x01, 0xbb, 0xc3, 0x50, 0x01, 0x02, 0x03, 0x04, 0x12, 0x34, 0x56, 0x79, 0x70, 0x12, 0xff, 0xff, 0, 0, 0, 0,
            2, 4, 0x05, 0x78, 3, 3, 7, 0,
        ];
        let c = checksum::finish(checksum::pseudo_header_v4(DST, SRC, 6, 28) + checksum::sum(&expect));
        expect[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(b, expect);
        assert_eq!(r.segment_len(), 1);
    }

    #[test]
    fn checks() {
        let b = syn();
        assert_eq!(TcpPacket::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(TcpPacket::new_checked(&b[..39]).unwrap_err(), Error::Truncated);
        let mut v = b;
        v[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&v[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn options_malformed() {
        let bad: [&[u8]; 7] = [
            &[2, 0],                      // length 0
            &[3, 1, 0],                   // length 1
            &[2, 4, 5],                   // overrun
            &[2, 5, 0, 0, 0],             // MSS of length 5
            &[5, 9, 0, 0, 0, 0, 0, 0, 0], // SACK not 2+8n
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // TS of length 9
            &[30],                        // kind without length
        ];
        for b in bad {
            let mut it = TcpOptions::new(b);
            assert_eq!(it.next(), Some(Err(Error::Malformed)), "{b:?}");
            assert_eq!(it.next(), None);
        }
        // NOP, unknown kind 30 with 2 data bytes, EOL, then garbage never read.
        let mut it = TcpOptions::new(&[1, 30, 4, 0xAB, 0xCD, 0, 2, 0]);
        assert_eq!(it.next(), Some(Ok(TcpOption::NoOperation)));
        assert_eq!(it.position(), 1);
        assert_eq!(it.next(), Some(Ok(TcpOption::Unknown { kind: 30, data: &[0xAB, 0xCD] })));
        assert_eq!(it.next(), Some(Ok(TcpOption::EndOfList)));
        assert_eq!(it.next(), None);
        // A packet with a malformed option does not parse as a Repr.
        let mut b = syn();
        b[21] = 0;
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum_v4(SRC, DST);
        assert_eq!(TcpRepr::parse(&TcpPacket::new_checked(&b[..]).unwrap(), SRC, DST), Err(Error::Malformed));
    }

    #[test]
    fn four_sack_blocks_keep_three() {
        let mut o = vec![5u8, 34];
        for i in 0..8u32 {
            o.extend_from_slice(&i.to_be_bytes());
        }
        let got: Vec<_> = TcpOptions::new(&o).collect();
        assert_eq!(got, vec![Ok(TcpOption::SackRange([Some((0, 1)), Some((2, 3)), Some((4, 5))]))]);
    }

    #[test]
    fn option_emit_limits() {
        let mut small = [0u8; 3];
        assert_eq!(TcpOption::MaxSegmentSize(1).emit(&mut small), Err(Error::Exhausted));
        assert_eq!(TcpOption::SackRange([None; 3]).emit(&mut [0u8; 8]), Err(Error::Malformed));
        let big = [0u8; 300];
        assert_eq!(TcpOption::Unknown { kind: 99, data: &big[..254] }.emit(&mut [0u8; 300]), Err(Error::Malformed));
        let mut out = [0u8; 10];
        assert_eq!(TcpOption::Timestamp { tsval: 1, tsecr: 2 }.emit(&mut out), Ok(10));
        assert_eq!(out, [8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    }

    #[test]
    fn seq_number_wraps() {
        let a = SeqNumber(0xFFFF_FFF0);
        let b = a + 0x20;
        assert_eq!(b, SeqNumber(0x10));
        assert_eq!(b - a, 0x20);
        assert_eq!(a - b, -0x20);
        assert!(a.lt(b) && a.le(b) && b.gt(a) && b.ge(a));
        assert!(!b.lt(a) && !a.gt(b));
        assert!(a.le(a) && a.ge(a) && !a.lt(a));
        assert_eq!(b - 0x20, a);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        // Half the space away flips the order.
        assert!(SeqNumber(0).lt(SeqNumber(0x7FFF_FFFF)));
        assert!(SeqNumber(0).gt(SeqNumber(0x8000_0001)));
        let mut c = SeqNumber(u32::MAX);
        c += 1;
        assert_eq!(c, SeqNumber(0));
        c -= 2;
        assert_eq!(c, SeqNumber(u32::MAX - 1));
    }

    #[test]
    fn flags() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.syn() && f.ack() && !f.fin() && !f.rst() && !f.psh() && !f.urg());
        assert!(f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert_eq!(f.with(TcpFlags::ACK, false), TcpFlags::SYN);
        let mut b = syn();
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        p.set_flags(TcpFlags(0x1FF));
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags(0x1FF));
        assert!(p.flags().contains(TcpFlags::NS | TcpFlags::CWR | TcpFlags::ECE | TcpFlags::URG));
    }

    proptest! {
        #[test]
        fn seq_serial_order(a: u32, d in 1u32..0x8000_0000) {
            let x = SeqNumber(a);
            let y = SeqNumber(a.wrapping_add(d));
            prop_assert!(x.lt(y) && y.gt(x) && !y.lt(x));
            prop_assert_eq!(y - x, i32::try_from(d).unwrap_or(i32::MIN));
            prop_assert_eq!(x + d as usize, y);
        }
    }

    pub(crate) fn tcp_repr_strategy() -> impl Strategy<Value = (TcpRepr<'static>, Vec<u8>)> {
        (
            (any::<u16>(), any::<u16>(), any::<u32>(), proptest::option::of(any::<u32>()), 0u16..0x200, any::<u16>()),
            (
                proptest::option::of(any::<u16>()),
                proptest::option::of(0u8..15),
                any::<bool>(),
                proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=3),
                proptest::option::of((any::<u32>(), any::<u32>())),
            ),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|((sp, dp, seq, ack, flags, win), (mss, ws, sackp, sacks, ts), payload)| {
                let mut sack_ranges = [None; 3];
                for (slot, r) in sack_ranges.iter_mut().zip(sacks) {
                    *slot = Some(r);
                }
                let repr = TcpRepr {
                    src_port: sp,
                    dst_port: dp,
                    seq_number: SeqNumber(seq),
                    ack_number: ack.map(SeqNumber),
                    flags: TcpFlags(flags).with(TcpFlags::ACK, ack.is_some()),
                    window_len: win,
                    max_seg_size: mss,
                    window_scale: ws,
                    sack_permitted: sackp,
                    sack_ranges,
                    timestamp: ts,
                    payload: &[],
                };
                (repr, payload)
            })
    }

    proptest! {
        #[test]
        fn tcp_roundtrip((repr, payload) in tcp_repr_strategy(), src: [u8; 4], dst: [u8; 4]) {
            let repr = TcpRepr { payload: &payload, ..repr };
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst);
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.header_len() <= 60);
            let back = TcpRepr::parse(&p, src, dst).unwrap();
            let mut expect = repr;
            let kept = repr.sack_blocks();
            for slot in expect.sack_ranges.iter_mut().skip(kept) {
                *slot = None;
            }
            prop_assert_eq!(back, expect);
            // And over IPv6.
            let (s6, d6) = (src.to_ipv6_mapped(), dst.to_ipv6_mapped());
            repr.emit_v6(&mut TcpPacket::new_unchecked(&mut buf[..]), &s6, &d6);
            prop_assert_eq!(TcpRepr::parse_v6(&TcpPacket::new_checked(&buf[..]).unwrap(), &s6, &d6).unwrap(), expect);
        }
    }
}
