//! IPv4 headers (RFC 791 §3.1).
//!
//! The NAT rewrites addresses in place and patches the header checksum incrementally; the view
//! exposes every field for that. `payload()` stops at Total Length: bytes after it are link
//! padding (Ethernet's 60-byte minimum), not payload. ICMP errors quote a truncated datagram,
//! whose Total Length exceeds what is quoted: [`Ipv4Packet::new_checked_quoted`] accepts that.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::ip::IpProtocol;
use crate::{be16, put16, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after checking version, header length and total length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        if usize::from(p.total_len()) > p.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// Like `new_checked`, but allows Total Length to exceed the buffer (a header quoted in ICMP).
    pub fn new_checked_quoted(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        Ok(p)
    }

    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        if usize::from(self.total_len()) < self.header_len() {
            return Err(Error::Malformed);
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

    /// Version (4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    /// Differentiated services code point (RFC 2474).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (RFC 3168).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header and payload) in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF] & 0x40 != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF) & 0x1FFF) << 3
    }

    /// True if this is a fragment (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    fn header_end(&self) -> usize {
        self.header_len().min(self.buffer.as_ref().len()).max(HEADER_LEN)
    }

    fn payload_end(&self) -> usize {
        usize::from(self.total_len()).min(self.buffer.as_ref().len()).max(self.header_end())
    }

    /// Option bytes (20..header_len).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_end()]
    }

    /// Payload (header_len..total_len); link-layer trailers are excluded.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_end()..self.payload_end()]
    }

    /// Payload of a quoted header: header_len..min(total_len, buffer length).
    pub fn payload_quoted(&self) -> &[u8] {
        self.payload()
    }

    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_end()])) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0F) | (v << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = u8::try_from((len / 4) & 0x0F).unwrap_or(0x0F);
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xF0) | ihl;
    }

    /// Sets the DSCP (6 bits).
    pub fn set_dscp(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (v << 2);
    }

    /// Sets the ECN bits (2 bits).
    pub fn set_ecn(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xFC) | (v & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Sets the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, v: bool) {
        let b = &mut self.buffer.as_mut()[field::FLG_OFF];
        *b = (*b & !0x40) | if v { 0x40 } else { 0 };
    }

    /// Sets the More Fragments flag.
    pub fn set_more_frags(&mut self, v: bool) {
        let b = &mut self.buffer.as_mut()[field::FLG_OFF];
        *b = (*b & !0x20) | if v { 0x20 } else { 0 };
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let raw = be16(self.buffer.as_ref(), field::FLG_OFF);
        put16(self.buffer.as_mut(), field::FLG_OFF, (raw & 0xE000) | (bytes >> 3));
    }

    /// Sets the time to live.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = p.into();
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Payload (header_len..total_len), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_end(), self.payload_end());
        &mut self.buffer.as_mut()[start..end]
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::data(&self.buffer.as_ref()[..self.header_end()]);
        self.set_checksum(c);
    }
}

/// The fields of an unfragmented IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub next_header: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
}

impl Ipv4Repr {
    /// Reads a checked packet: `Err(Checksum)` on a bad checksum, `Err(Unsupported)` for fragments.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_header()?;
        if usize::from(packet.total_len()) > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        if packet.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            hop_limit: packet.hop_limit(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
        })
    }

    /// Header length (20; options are never emitted).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a valid checksum; Total Length saturates at 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        let total = u16::try_from(HEADER_LEN + self.payload_len).unwrap_or(u16::MAX);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        put16(packet.buffer.as_mut(), field::FLG_OFF, if self.dont_frag { 0x4000 } else { 0 });
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 10.0.1.4 -> 10.0.2.10, TCP, 40 bytes total, DF, TTL 64, ident 0x1c46, DSCP 10 ECN 1,
    // followed by 4 bytes of Ethernet padding.
    const PACKET: [u8; 44] = [
        0x45, 0x29, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x07, 0x54, 10, 0, 1, 4, 10, 0, 2,
        10, // header
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, // payload
        0, 0, 0, 0, // trailer
    ];

    #[test]
    fn parse_fixture() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (10, 1));
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0x0754);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 1, 4));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 2, 10));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &PACKET[20..40]);
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Ipv4Repr {
                src_addr: Ipv4Addr::new(10, 0, 1, 4),
                dst_addr: Ipv4Addr::new(10, 0, 2, 10),
                next_header: IpProtocol::Tcp,
                payload_len: 20,
                hop_limit: 64,
                ident: 0x1c46,
                dont_frag: true,
                dscp: 10,
                ecn: 1,
            }
        );
        let mut out = [0u8; 20];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, PACKET[..20]);
    }

    #[test]
    fn checks() {
        assert_eq!(Ipv4Packet::new_checked(&PACKET[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Ipv4Packet::new_checked(&PACKET[..39]).unwrap_err(), Error::Truncated);
        let mut b = PACKET;
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[0] = 0x4F; // 60-byte header in a 44-byte buffer
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let mut b = PACKET;
        b[3] = 19; // total < header
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let mut b = PACKET;
        b[11] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn fragments_are_unsupported_by_repr() {
        let mut b = PACKET;
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags() && p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn options_and_quoted() {
        let mut b = [0u8; 32];
        b[..20].copy_from_slice(&PACKET[..20]);
        b[0] = 0x46;
        b[20..24].copy_from_slice(&[0x01, 0x01, 0x01, 0x00]);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_total_len(100);
        p.fill_checksum();
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let p = Ipv4Packet::new_checked_quoted(&b[..]).unwrap();
        assert_eq!(p.options(), &[0x01, 0x01, 0x01, 0x00]);
        assert_eq!(p.payload_quoted().len(), 8);
        assert!(p.verify_checksum());
    }

    proptest! {
        #[test]
        fn ipv4_roundtrip(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len in 0usize..1500,
                          hop_limit: u8, ident: u16, dont_frag: bool, dscp in 0u8..64, ecn in 0u8..4) {
            let r = Ipv4Repr {
                src_addr: src.into(), dst_addr: dst.into(), next_header: proto.into(),
                payload_len, hop_limit, ident, dont_frag, dscp, ecn,
            };
            let mut buf = vec![0u8; r.buffer_len() + payload_len];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
            prop_assert_eq!(p.payload().len(), payload_len);
        }
    }
}
