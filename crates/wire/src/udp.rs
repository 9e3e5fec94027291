//! UDP headers (RFC 768; over IPv6, RFC 8200 §8.1).
//!
//! Over IPv4 a checksum of 0 means "none" and a computed 0 is sent as `0xFFFF`; over IPv6 the
//! checksum is mandatory, so 0 fails verification there. Length bounds the datagram: bytes
//! after it are not payload.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::{be16, put16, Error, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after checking 8 <= length field <= buffer length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks 8 <= length field <= buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// True if the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field (0 = none over IPv4).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    fn end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        usize::from(self.len()).min(len).max(HEADER_LEN.min(len))
    }

    /// Payload (8..length).
    pub fn payload(&self) -> &[u8] {
        let end = self.end();
        &self.buffer.as_ref()[HEADER_LEN.min(end)..end]
    }

    fn sum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let b = &self.buffer.as_ref()[..self.end()];
        checksum::pseudo_header_v4(src, dst, 17, self.len()) + checksum::sum(b)
    }

    fn sum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let b = &self.buffer.as_ref()[..self.end()];
        checksum::pseudo_header_v6(src, dst, 17, u32::from(self.len())) + checksum::sum(b)
    }

    /// True if the checksum is 0 (none) or verifies over the IPv4 pseudo-header.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::fold(self.sum_v4(src, dst)) == 0xFFFF
    }

    /// True if the checksum is non-zero and verifies over the IPv6 pseudo-header.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0 && checksum::fold(self.sum_v6(src, dst)) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Payload (8..length), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(end)..end]
    }

    /// Computes and writes the checksum over the IPv4 pseudo-header (a computed 0 is sent as 0xFFFF).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::udp_nonzero(checksum::finish(self.sum_v4(src, dst)));
        self.set_checksum(c);
    }

    /// Computes and writes the checksum over the IPv6 pseudo-header (a computed 0 is sent as 0xFFFF).
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::udp_nonzero(checksum::finish(self.sum_v6(src, dst)));
        self.set_checksum(c);
    }
}

/// The fields of a UDP header (the payload stays in the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a datagram, verifying the checksum over the IPv4 pseudo-header (0 = none is accepted).
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) -> Result<UdpRepr> {
        packet.check_len()?;
        if !packet.verify_checksum_v4(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port() })
    }

    /// Reads a datagram, verifying the checksum over the IPv6 pseudo-header.
    pub fn parse_v6<T: AsRef<[u8]>>(packet: &UdpPacket<T>, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<UdpRepr> {
        packet.check_len()?;
        if !packet.verify_checksum_v6(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port() })
    }

    /// Header length (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus `payload_len`.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>, payload_len: usize) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(u16::try_from(HEADER_LEN + payload_len).unwrap_or(u16::MAX));
    }

    /// Writes the header and the IPv4 checksum over the `payload_len` bytes already after it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload_len: usize,
    ) {
        self.emit_header(packet, payload_len);
        packet.fill_checksum_v4(src, dst);
    }

    /// Writes the header and the IPv6 checksum over the `payload_len` bytes already after it.
    pub fn emit_v6<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        payload_len: usize,
    ) {
        self.emit_header(packet, payload_len);
        packet.fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    // 12345 -> 53, length 12, payload "ping", checksum precomputed, 2 bytes of trailer.
    fn datagram() -> [u8; 14] {
        let mut b = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'p', b'i', b'n', b'g', 0xEE, 0xEE];
        let c = checksum::finish(checksum::pseudo_header_v4(SRC, DST, 17, 12) + checksum::sum(&b[..12]));
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn parse_fixture() {
        let b = datagram();
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 12345);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.payload(), b"ping");
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(SRC, Ipv4Addr::new(198, 51, 100, 8)));
        assert_eq!(UdpRepr::parse(&p, SRC, DST), Ok(UdpRepr { src_port: 12345, dst_port: 53 }));
        let mut out = b;
        out[..8].fill(0);
        let r = UdpRepr { src_port: 12345, dst_port: 53 };
        r.emit(&mut UdpPacket::new_unchecked(&mut out[..]), SRC, DST, 4);
        assert_eq!(out, b);
        assert_eq!(r.buffer_len(4), 12);
    }

    #[test]
    fn zero_checksum() {
        let mut b = datagram();
        b[6] = 0;
        b[7] = 0;
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum_v4(SRC, DST));
        let (s6, d6) = (SRC.to_ipv6_mapped(), DST.to_ipv6_mapped());
        assert!(!p.verify_checksum_v6(&s6, &d6));
        // A datagram whose checksum computes to 0 is sent as 0xFFFF and still verifies.
        let mut b = [0u8; 8];
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        p.set_len(8);
        // Pick ports so that the sum folds to 0xFFFF: pseudo (0 addrs) = 17 + 8 + 8 (len twice).
        p.set_src_port(0xFFFF - 17 - 16);
        p.fill_checksum_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn checks() {
        let b = datagram();
        assert_eq!(UdpPacket::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(UdpPacket::new_checked(&b[..11]).unwrap_err(), Error::Truncated);
        let mut v = b;
        v[5] = 7;
        assert_eq!(UdpPacket::new_checked(&v[..]).unwrap_err(), Error::Malformed);
        let mut v = b;
        v[9] ^= 1;
        assert_eq!(UdpRepr::parse(&UdpPacket::new_checked(&v[..]).unwrap(), SRC, DST), Err(Error::Checksum));
    }

    proptest! {
        #[test]
        fn udp_roundtrip(src_port: u16, dst_port: u16, payload in proptest::collection::vec(any::<u8>(), 0..100),
                         src: [u8; 4], dst: [u8; 4], s6: [u8; 16], d6: [u8; 16]) {
            let r = UdpRepr { src_port, dst_port };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            buf[8..].copy_from_slice(&payload);
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            r.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), src, dst, payload.len());
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_ne!(p.checksum(), 0);
            prop_assert_eq!(UdpRepr::parse(&p, src, dst).unwrap(), r);
            prop_assert_eq!(p.payload(), &payload[..]);
            let (s6, d6) = (Ipv6Addr::from(s6), Ipv6Addr::from(d6));
            r.emit_v6(&mut UdpPacket::new_unchecked(&mut buf[..]), &s6, &d6, payload.len());
            prop_assert_eq!(UdpRepr::parse_v6(&UdpPacket::new_checked(&buf[..]).unwrap(), &s6, &d6).unwrap(), r);
        }
    }
}
