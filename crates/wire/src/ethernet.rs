//! Ethernet II frames (IEEE 802.3 §3.2) and 802.1Q VLAN tags (IEEE 802.1Q §9.6).
//!
//! The gateway sits on an L2 segment: it answers ARP for its addresses and rewrites IP
//! packets inside Ethernet frames, some of them VLAN-tagged (0x8100) or double-tagged (0x88a8).

use core::fmt;

use crate::{be16, put16, Error, Result};

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xFF; 6]);

    /// Builds an address from a slice of exactly 6 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<EthernetAddress> {
        <[u8; 6]>::try_from(b).map(EthernetAddress).map_err(|_| Error::Malformed)
    }

    /// The six bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True if the group bit (I/G, least significant bit of the first byte) is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True if the group bit is clear.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The EtherType field (IEEE 802 numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800
    Ipv4,
    /// 0x0806
    Arp,
    /// 0x86dd
    Ipv6,
    /// 0x8100, an 802.1Q tag follows.
    Vlan,
    /// 0x88a8, an 802.1ad service tag follows.
    QinQ,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Unknown(v) => v,
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the Ethernet II header.
    pub const HEADER_LEN: usize = 14;

    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking it holds a full header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds a full header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        EthernetAddress(a)
    }

    /// Source MAC.
    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        EthernetAddress(a)
    }

    /// EtherType of the payload (or of the VLAN tag that follows).
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    /// Sets the source MAC.
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, t.into());
    }

    /// Everything after the 14-byte header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src_addr: EthernetAddress,
    /// Destination MAC.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr { src_addr: frame.src_addr(), dst_addr: frame.dst_addr(), ethertype: frame.ethertype() })
    }

    /// Header length (14).
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Writes the header; the frame must hold at least `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

mod vlan_field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// A view of the 4 bytes after an 0x8100/0x88a8 EtherType: TCI and the inner EtherType.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Length of a VLAN tag.
    pub const HEADER_LEN: usize = 4;

    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps a buffer after checking it holds the 4-byte tag.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < Self::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), vlan_field::TCI)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[vlan_field::TCI] >> 5
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.buffer.as_ref()[vlan_field::TCI] & 0x10 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vlan_id(&self) -> u16 {
        self.tci() & 0x0FFF
    }

    /// EtherType of what follows the tag.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), vlan_field::ETHERTYPE))
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[vlan_field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    fn set_tci(&mut self, tci: u16) {
        put16(self.buffer.as_mut(), vlan_field::TCI, tci);
    }

    /// Sets the priority code point (low 3 bits of `pcp`).
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1FFF) | (u16::from(pcp & 0x07) << 13);
        self.set_tci(tci);
    }

    /// Sets the drop eligible indicator.
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VLAN identifier (low 12 bits of `id`).
    pub fn set_vlan_id(&mut self, id: u16) {
        let tci = (self.tci() & 0xF000) | (id & 0x0FFF);
        self.set_tci(tci);
    }

    /// Sets the inner EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        put16(self.buffer.as_mut(), vlan_field::ETHERTYPE, t.into());
    }

    /// Everything after the tag, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[vlan_field::PAYLOAD..]
    }
}

/// The fields of an 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanRepr {
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (0..=4095).
    pub vlan_id: u16,
    /// EtherType of what follows.
    pub ethertype: EtherType,
}

impl VlanRepr {
    /// Reads a checked tag.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanHeader<T>) -> Result<VlanRepr> {
        if tag.buffer.as_ref().len() < VlanHeader::<T>::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(VlanRepr { pcp: tag.pcp(), dei: tag.dei(), vlan_id: tag.vlan_id(), ethertype: tag.ethertype() })
    }

    /// Tag length (4).
    pub const fn buffer_len(&self) -> usize {
        vlan_field::PAYLOAD
    }

    /// Writes the tag; out-of-range `pcp`/`vlan_id` bits are masked off.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut VlanHeader<T>) {
        let tci = (u16::from(self.pcp & 0x07) << 13) | if self.dei { 0x1000 } else { 0 } | (self.vlan_id & 0x0FFF);
        tag.set_tci(tci);
        tag.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x08, 0x00, // IPv4
        0xAA, 0xBB, 0xCC, 0xDD,
    ];

    #[test]
    fn parse_fixture() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress([0x02, 0, 0, 0, 0, 1]));
        assert_eq!(f.src_addr(), EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload(), &[0xAA, 0xBB, 0xCC, 0xDD]);
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(r.buffer_len(), 14);
        let mut out = [0u8; 18];
        out[14..].copy_from_slice(&[0xAA, 0xBB, 0xCC, 0xDD]);
        r.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out, FRAME);
    }

    #[test]
    fn truncated() {
        assert_eq!(EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(), Error::Truncated);
        assert!(EthernetFrame::new_checked(&FRAME[..14]).unwrap().payload().is_empty());
        assert_eq!(VlanHeader::new_checked(&[0u8; 3][..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn address_kinds_and_display() {
        let a = EthernetAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!(a.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(format!("{a:?}"), "52:54:00:ab:cd:ef");
        assert!(a.is_unicast() && !a.is_multicast() && !a.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_broadcast() && EthernetAddress::BROADCAST.is_multicast());
        assert!(EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), Err(Error::Malformed));
    }

    #[test]
    fn ethertype_numbers() {
        for (t, n) in [
            (EtherType::Ipv4, 0x0800u16),
            (EtherType::Arp, 0x0806),
            (EtherType::Ipv6, 0x86dd),
            (EtherType::Vlan, 0x8100),
            (EtherType::QinQ, 0x88a8),
            (EtherType::Unknown(0x1234), 0x1234),
        ] {
            assert_eq!(EtherType::from(n), t);
            assert_eq!(u16::from(t), n);
        }
    }

    #[test]
    fn vlan_fixture() {
        // PCP 5, DEI 1, VID 0x123, inner IPv6.
        let bytes = [0xB1, 0x23, 0x86, 0xdd, 0x60];
        let t = VlanHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!((t.pcp(), t.dei(), t.vlan_id(), t.ethertype()), (5, true, 0x123, EtherType::Ipv6));
        assert_eq!(t.payload(), &[0x60]);
        let r = VlanRepr::parse(&t).unwrap();
        assert_eq!(r, VlanRepr { pcp: 5, dei: true, vlan_id: 0x123, ethertype: EtherType::Ipv6 });
        let mut out = [0u8; 4];
        r.emit(&mut VlanHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes[..4]);
        let mut t = VlanHeader::new_unchecked(&mut out[..]);
        t.set_vlan_id(0xFFF);
        t.set_pcp(0);
        t.set_dei(false);
        assert_eq!(out, [0x0F, 0xFF, 0x86, 0xdd]);
    }

    fn mac() -> impl Strategy<Value = EthernetAddress> {
        any::<[u8; 6]>().prop_map(EthernetAddress)
    }

    pub(crate) fn ethertype() -> impl Strategy<Value = EtherType> {
        any::<u16>().prop_map(EtherType::from)
    }

    proptest! {
        #[test]
        fn ethernet_roundtrip(src in mac(), dst in mac(), ethertype in ethertype()) {
            let r = EthernetRepr { src_addr: src, dst_addr: dst, ethertype };
            let mut buf = [0u8; 14];
            r.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn vlan_roundtrip(pcp in 0u8..8, dei: bool, vlan_id in 0u16..4096, ethertype in ethertype()) {
            let r = VlanRepr { pcp, dei, vlan_id, ethertype };
            let mut buf = [0u8; 4];
            r.emit(&mut VlanHeader::new_unchecked(&mut buf[..]));
            prop_assert_eq!(VlanRepr::parse(&VlanHeader::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
