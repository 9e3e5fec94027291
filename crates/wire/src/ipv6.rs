//! IPv6 headers (RFC 8200 §3) and the extension-header walk (RFC 8200 §4).
//!
//! The NAT needs the upper-layer header behind any hop-by-hop, routing, destination-options
//! and fragment headers; [`Ipv6Packet::upper_layer`] walks at most [`MAX_EXTENSION_HEADERS`]
//! of them within Payload Length, so a hostile chain costs a bounded amount of work.

use std::net::Ipv6Addr;

use crate::ip::IpProtocol;
use crate::{be16, be32, put16, put32, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers [`Ipv6Packet::upper_layer`] walks before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after checking the version and that the payload fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version and that 40 + payload_len fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
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

    /// Version (6).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        let w = be16(self.buffer.as_ref(), field::VER_TC_FLOW);
        u8::try_from((w >> 4) & 0xFF).unwrap_or(0)
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000F_FFFF
    }

    /// Payload length (everything after the fixed header, extension headers included).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header after the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv6Addr::from(a)
    }

    fn payload_end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        (HEADER_LEN + usize::from(self.payload_len())).min(len).max(HEADER_LEN.min(len))
    }

    /// Payload (40..40 + payload_len); link-layer trailers are excluded.
    pub fn payload(&self) -> &[u8] {
        let end = self.payload_end();
        &self.buffer.as_ref()[HEADER_LEN.min(end)..end]
    }

    /// Walks extension headers; returns the upper-layer protocol and its offset from byte 0.
    ///
    /// Stops at the first protocol that is not hop-by-hop, routing, destination options or
    /// fragment (so `Ipv6NoNxt`, ESP and AH are returned as they are). A non-first fragment
    /// carries no upper-layer header: `Err(Unsupported)`. An extension header that overruns
    /// Payload Length is `Err(Truncated)`; more than [`MAX_EXTENSION_HEADERS`] is `Err(Unsupported)`.
    pub fn upper_layer(&self) -> Result<(IpProtocol, usize)> {
        let buf = self.buffer.as_ref();
        let end = HEADER_LEN + usize::from(self.payload_len());
        if buf.len() < end {
            return Err(Error::Truncated);
        }
        let mut proto = self.next_header();
        let mut at = HEADER_LEN;
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let len = match proto {
                IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                    if at + 2 > end {
                        return Err(Error::Truncated);
                    }
                    (usize::from(buf[at + 1]) + 1) * 8
                }
                IpProtocol::Ipv6Frag => {
                    if at + 8 > end {
                        return Err(Error::Truncated);
                    }
                    if be16(buf, at + 2) & 0xFFF8 != 0 {
                        return Err(Error::Unsupported);
                    }
                    8
                }
                other => return Ok((other, at)),
            };
            if at + len > end {
                return Err(Error::Truncated);
            }
            proto = IpProtocol::from(buf[at]);
            at += len;
        }
        Err(Error::Unsupported)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_word0(&mut self, w: u32) {
        put32(self.buffer.as_mut(), field::VER_TC_FLOW, w);
    }

    fn word0(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, v: u8) {
        let w = (self.word0() & 0x0FFF_FFFF) | (u32::from(v & 0x0F) << 28);
        self.set_word0(w);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, v: u8) {
        let w = (self.word0() & 0xF00F_FFFF) | (u32::from(v) << 20);
        self.set_word0(w);
    }

    /// Sets the flow label (low 20 bits).
    pub fn set_flow_label(&mut self, v: u32) {
        let w = (self.word0() & 0xFFF0_0000) | (v & 0x000F_FFFF);
        self.set_word0(w);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = p.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: &Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: &Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(end)..end]
    }
}

/// The fields of an IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header after the fixed header.
    pub next_header: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads a checked packet's fixed header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Header length (40).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (traffic class and flow label zero); length saturates at 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_word0(0x6000_0000);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture() -> Vec<u8> {
        let mut b = vec![
            0x6A, 0xB1, 0x23, 0x45, // version 6, TC 0xAB, flow 0x12345
            0x00, 0x18, 0x00, 0x40, // payload 24, hop-by-hop, hop limit 64
        ];
        b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        // Hop-by-hop: next = fragment, len 0 (8 bytes), PadN.
        b.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        // Fragment: next = UDP, offset 0, M=1, id.
        b.extend_from_slice(&[17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        // UDP header.
        b.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        b.extend_from_slice(&[0xEE, 0xEE]); // trailer
        b
    }

    #[test]
    fn parse_fixture() {
        let b = fixture();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xAB);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &b[40..64]);
        assert_eq!(p.upper_layer(), Ok((IpProtocol::Udp, 56)));
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 24);
        let mut out = [0u8; 40];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        let mut expect = b[..40].to_vec();
        expect[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        assert_eq!(&out[..], &expect[..]);
        let mut out2 = out;
        let mut q = Ipv6Packet::new_unchecked(&mut out2[..]);
        q.set_traffic_class(0xAB);
        q.set_flow_label(0x12345);
        assert_eq!(&out2[..], &b[..40]);
    }

    #[test]
    fn checks_and_walk_errors() {
        let b = fixture();
        assert_eq!(Ipv6Packet::new_checked(&b[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(Ipv6Packet::new_checked(&b[..63]).unwrap_err(), Error::Truncated);
        let mut v = b.clone();
        v[0] = 0x4A;
        assert_eq!(Ipv6Packet::new_checked(&v[..]).unwrap_err(), Error::Malformed);
        // Hop-by-hop claiming 16 bytes when payload is shorter: the walk overruns.
        let mut v = b.clone();
        v[5] = 12;
        v[41] = 1;
        assert_eq!(Ipv6Packet::new_checked(&v[..]).unwrap().upper_layer(), Err(Error::Truncated));
        // Non-first fragment.
        let mut v = b.clone();
        v[50] = 0x01;
        assert_eq!(Ipv6Packet::new_checked(&v[..]).unwrap().upper_layer(), Err(Error::Unsupported));
        // A chain of 9 destination-options headers exceeds the bound.
        let mut v = b[..40].to_vec();
        v[6] = 60;
        for i in 0..9 {
            v.extend_from_slice(&[if i == 8 { 6 } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
        }
        v[4..6].copy_from_slice(&72u16.to_be_bytes());
        assert_eq!(Ipv6Packet::new_checked(&v[..]).unwrap().upper_layer(), Err(Error::Unsupported));
        // Eight of them are fine.
        v.truncate(40 + 64);
        v[40 + 56] = 6;
        v[4..6].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(Ipv6Packet::new_checked(&v[..]).unwrap().upper_layer(), Ok((IpProtocol::Tcp, 104)));
    }

    proptest! {
        #[test]
        fn ipv6_roundtrip(src: [u8; 16], dst: [u8; 16], nh: u8, payload_len in 0usize..2000, hop_limit: u8) {
            let r = Ipv6Repr { src_addr: src.into(), dst_addr: dst.into(), next_header: nh.into(), payload_len, hop_limit };
            let mut buf = vec![0u8; 40 + payload_len];
            r.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
