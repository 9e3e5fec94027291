//! PROXY protocol version 2 (HAProxy `doc/proxy-protocol.txt` §2.2): an encoder that writes
//! into a caller's buffer without allocating, and a checked decoder view.
//!
//! The gateway splices this header into the first client segment of a TCP flow so the
//! service sees the consumer's address and TLVs such as Azure's private-endpoint link id
//! (`0xEE`, sub-type `0x01`, u32 little-endian). Layout (§2.2):
//! 12-byte signature, `ver_cmd` (`0x2_` | command), `fam` (family << 4 | transport),
//! big-endian length of what follows, addresses (12 bytes IPv4, 36 IPv6, none UNSPEC),
//! then TLVs `type u8 | length u16 BE | value` (§2.2.7). NOOP TLVs pad (§2.2.8, at least 3 bytes).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::{be16, put16, Error, Result};

/// The 12-byte signature (§2.2).
pub const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// Length of the fixed part: signature, ver_cmd, fam, length.
pub const HEADER_LEN: usize = 16;
/// Largest possible header: the fixed part plus a u16 length.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + u16::MAX as usize;
/// Address block length for TCP/UDP over IPv4.
pub const ADDRESSES_V4_LEN: usize = 12;
/// Address block length for TCP/UDP over IPv6.
pub const ADDRESSES_V6_LEN: usize = 36;
/// Length of a TLV's type and length fields.
pub const TLV_HEADER_LEN: usize = 3;

/// Application-Layer Protocol Negotiation.
pub const TLV_ALPN: u8 = 0x01;
/// Host name (SNI).
pub const TLV_AUTHORITY: u8 = 0x02;
/// CRC-32c of the header.
pub const TLV_CRC32C: u8 = 0x03;
/// Padding, ignored by receivers.
pub const TLV_NOOP: u8 = 0x04;
/// Opaque connection id.
pub const TLV_UNIQUE_ID: u8 = 0x05;
/// SSL information.
pub const TLV_SSL: u8 = 0x20;
/// Network namespace name.
pub const TLV_NETNS: u8 = 0x30;
/// GCP Private Service Connect (u64 big-endian connection id).
pub const TLV_GCP: u8 = 0xE0;
/// AWS PrivateLink (sub-type 0x01, VPC endpoint id as ASCII).
pub const TLV_AWS: u8 = 0xEA;
/// Azure Private Link (sub-type 0x01, link id u32 little-endian).
pub const TLV_AZURE: u8 = 0xEE;
/// Sub-type of the AWS TLV carrying the VPC endpoint id.
pub const AWS_SUBTYPE_VPCE_ID: u8 = 0x01;
/// Sub-type of the Azure TLV carrying the private endpoint link id.
pub const AZURE_SUBTYPE_LINK_ID: u8 = 0x01;

const VERSION_2: u8 = 0x20;

/// The command nibble of `ver_cmd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// 0x0: the connection was made by the proxy itself (health checks); addresses are ignored.
    Local,
    /// 0x1: relayed on behalf of another node.
    Proxy,
}

/// The transport nibble of `fam`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// 0x1: TCP.
    Stream,
    /// 0x2: UDP.
    Datagram,
}

/// The address family and addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// AF_UNSPEC: no addresses.
    Unspec,
    /// AF_INET.
    Ipv4 {
        /// Original source (the consumer).
        src: SocketAddrV4,
        /// Original destination (what the consumer dialled).
        dst: SocketAddrV4,
    },
    /// AF_INET6.
    Ipv6 {
        /// Original source.
        src: SocketAddrV6,
        /// Original destination.
        dst: SocketAddrV6,
    },
}

impl Addresses {
    /// Bytes the address block takes.
    pub const fn len(&self) -> usize {
        match self {
            Addresses::Unspec => 0,
            Addresses::Ipv4 { .. } => ADDRESSES_V4_LEN,
            Addresses::Ipv6 { .. } => ADDRESSES_V6_LEN,
        }
    }

    /// True for `Unspec`.
    pub const fn is_empty(&self) -> bool {
        matches!(self, Addresses::Unspec)
    }
}

/// Writes a PROXY v2 header into a caller's buffer; every failure is an error, never a panic.
#[derive(Debug)]
pub struct Encoder<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Encoder<'b> {
    /// Starts a header: signature, `ver_cmd`, `fam` and the addresses (`Err(Exhausted)` if `buf` is too small).
    pub fn new(buf: &'b mut [u8], command: Command, transport: Transport, addresses: Addresses) -> Result<Self> {
        let len = HEADER_LEN + addresses.len();
        if buf.len() < len {
            return Err(Error::Exhausted);
        }
        buf[..12].copy_from_slice(&SIGNATURE);
        buf[12] = VERSION_2
            | match command {
                Command::Local => 0x0,
                Command::Proxy => 0x1,
            };
        let transport = match transport {
            Transport::Stream => 0x1,
            Transport::Datagram => 0x2,
        };
        buf[13] = match addresses {
            Addresses::Unspec => 0x00,
            Addresses::Ipv4 { .. } => 0x10 | transport,
            Addresses::Ipv6 { .. } => 0x20 | transport,
        };
        put16(buf, 14, 0);
        match addresses {
            Addresses::Unspec => {}
            Addresses::Ipv4 { src, dst } => {
                buf[16..20].copy_from_slice(&src.ip().octets());
                buf[20..24].copy_from_slice(&dst.ip().octets());
                put16(buf, 24, src.port());
                put16(buf, 26, dst.port());
            }
            Addresses::Ipv6 { src, dst } => {
                buf[16..32].copy_from_slice(&src.ip().octets());
                buf[32..48].copy_from_slice(&dst.ip().octets());
                put16(buf, 48, src.port());
                put16(buf, 50, dst.port());
            }
        }
        Ok(Encoder { buf, len })
    }

    /// Reserves a TLV of `value_len` bytes and returns where its value starts.
    fn reserve(&mut self, kind: u8, value_len: usize) -> Result<usize> {
        let value_len16 = u16::try_from(value_len).map_err(|_| Error::Exhausted)?;
        let end = self.len + TLV_HEADER_LEN + value_len;
        if end > self.buf.len() || end > MAX_HEADER_LEN {
            return Err(Error::Exhausted);
        }
        self.buf[self.len] = kind;
        put16(self.buf, self.len + 1, value_len16);
        let at = self.len + TLV_HEADER_LEN;
        self.len = end;
        Ok(at)
    }

    /// Appends a TLV.
    pub fn tlv(&mut self, kind: u8, value: &[u8]) -> Result<()> {
        let at = self.reserve(kind, value.len())?;
        self.buf[at..at + value.len()].copy_from_slice(value);
        Ok(())
    }

    /// Appends a TLV whose value is the concatenation of `parts`.
    pub fn tlv_parts(&mut self, kind: u8, parts: &[&[u8]]) -> Result<()> {
        let total = parts.iter().map(|p| p.len()).fold(0usize, usize::saturating_add);
        let mut at = self.reserve(kind, total)?;
        for p in parts {
            self.buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Ok(())
    }

    /// Bytes written so far (16 + addresses + TLVs).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the fixed part is written by `new`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// If the length is odd, appends a 3-byte NOOP TLV so it becomes even.
    pub fn pad_to_even(&mut self) -> Result<()> {
        if self.len % 2 == 1 {
            self.tlv(TLV_NOOP, &[])?;
        }
        Ok(())
    }

    /// Appends one zero-filled NOOP TLV so the length becomes `total`.
    ///
    /// No-op if already `total`; `Err(Malformed)` if `total` is below the current length or
    /// only 1–2 bytes above it (a NOOP takes at least 3); `Err(Exhausted)` if it does not fit.
    pub fn pad_to(&mut self, total: usize) -> Result<()> {
        if total == self.len {
            return Ok(());
        }
        if total < self.len + TLV_HEADER_LEN {
            return Err(Error::Malformed);
        }
        let value_len = total - self.len - TLV_HEADER_LEN;
        let at = self.reserve(TLV_NOOP, value_len)?;
        self.buf[at..at + value_len].fill(0);
        Ok(())
    }

    /// Writes the length field and returns the total header length.
    pub fn finish(self) -> Result<usize> {
        let rest = u16::try_from(self.len - HEADER_LEN).map_err(|_| Error::Exhausted)?;
        put16(self.buf, 14, rest);
        Ok(self.len)
    }
}

/// A checked view of a PROXY v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    bytes: &'a [u8],
    command: Command,
    transport: Option<Transport>,
    addresses: Addresses,
}

impl<'a> Header<'a> {
    /// Parses a header at the start of `buf`; returns it and the bytes it takes.
    ///
    /// `Err(Truncated)` if `buf` ends before the header does; `Err(Malformed)` for a bad
    /// signature, command, family/transport or an address block longer than the length;
    /// `Err(Unsupported)` for a version other than 2 or AF_UNIX.
    pub fn parse(buf: &'a [u8]) -> Result<(Header<'a>, usize)> {
        if buf.len() < HEADER_LEN {
            let n = buf.len().min(SIGNATURE.len());
            return Err(if buf[..n] == SIGNATURE[..n] { Error::Truncated } else { Error::Malformed });
        }
        if buf[..12] != SIGNATURE {
            return Err(Error::Malformed);
        }
        if buf[12] & 0xF0 != VERSION_2 {
            return Err(Error::Unsupported);
        }
        let command = match buf[12] & 0x0F {
            0x0 => Command::Local,
            0x1 => Command::Proxy,
            _ => return Err(Error::Malformed),
        };
        let transport = match buf[13] & 0x0F {
            0x0 => None,
            0x1 => Some(Transport::Stream),
            0x2 => Some(Transport::Datagram),
            _ => return Err(Error::Malformed),
        };
        let total = HEADER_LEN + usize::from(be16(buf, 14));
        if buf.len() < total {
            return Err(Error::Truncated);
        }
        let bytes = &buf[..total];
        let addr = &bytes[HEADER_LEN..];
        let addresses = match buf[13] >> 4 {
            0x0 => Addresses::Unspec,
            0x1 => {
                if addr.len() < ADDRESSES_V4_LEN {
                    return Err(Error::Malformed);
                }
                let ip = |at: usize| Ipv4Addr::new(addr[at], addr[at + 1], addr[at + 2], addr[at + 3]);
                Addresses::Ipv4 {
                    src: SocketAddrV4::new(ip(0), be16(addr, 8)),
                    dst: SocketAddrV4::new(ip(4), be16(addr, 10)),
                }
            }
            0x2 => {
                if addr.len() < ADDRESSES_V6_LEN {
                    return Err(Error::Malformed);
                }
                let ip = |at: usize| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&addr[at..at + 16]);
                    Ipv6Addr::from(o)
                };
                Addresses::Ipv6 {
                    src: SocketAddrV6::new(ip(0), be16(addr, 32), 0, 0),
                    dst: SocketAddrV6::new(ip(16), be16(addr, 34), 0, 0),
                }
            }
            0x3 => return Err(Error::Unsupported),
            _ => return Err(Error::Malformed),
        };
        if addresses.is_empty() != transport.is_none() && command == Command::Proxy {
            // AF_UNSPEC goes with UNSPEC transport and vice versa (§2.2, byte 14).
            return Err(Error::Malformed);
        }
        Ok((Header { bytes, command, transport, addresses }, total))
    }

    /// LOCAL or PROXY.
    pub fn command(&self) -> Command {
        self.command
    }

    /// Stream or datagram; `None` for UNSPEC.
    pub fn transport(&self) -> Option<Transport> {
        self.transport
    }

    /// The addresses (receivers ignore them for LOCAL).
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Total header length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a header has at least its 16 fixed bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The whole header.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The TLV bytes after the address block.
    pub fn tlv_bytes(&self) -> &'a [u8] {
        let at = (HEADER_LEN + self.addresses.len()).min(self.bytes.len());
        &self.bytes[at..]
    }

    /// The TLVs as `(type, value)`.
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs { data: self.tlv_bytes(), done: false }
    }
}

/// An iterator over TLVs; yields one `Err(Malformed)` and ends if a TLV overruns the header.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    data: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.data.is_empty() {
            return None;
        }
        let d = self.data;
        if d.len() < TLV_HEADER_LEN {
            self.done = true;
            return Some(Err(Error::Malformed));
        }
        let end = TLV_HEADER_LEN + usize::from(be16(d, 1));
        if end > d.len() {
            self.done = true;
            return Some(Err(Error::Malformed));
        }
        self.data = &d[end..];
        Some(Ok((d[0], &d[TLV_HEADER_LEN..end])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn v4() -> Addresses {
        Addresses::Ipv4 {
            src: SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 4), 50000),
            dst: SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 443),
        }
    }

    #[test]
    fn azure_test_vector() {
        let mut buf = [0u8; 107];
        let mut e = Encoder::new(&mut buf, Command::Proxy, Transport::Stream, v4()).unwrap();
        e.tlv_parts(TLV_AZURE, &[&[AZURE_SUBTYPE_LINK_ID], &0x1234_5678u32.to_le_bytes()]).unwrap();
        e.pad_to_even().unwrap();
        assert_eq!(e.len(), 36);
        let n = e.finish().unwrap();
        let expect = hex("0D0A0D0A 000D0A51 5549540A 21 11 0014 0A000104 0A00020A C350 01BB EE 0005 01 78563412");
        assert_eq!(&buf[..n], &expect[..]);

        let (h, used) = Header::parse(&expect).unwrap();
        assert_eq!(used, 36);
        assert_eq!(h.command(), Command::Proxy);
        assert_eq!(h.transport(), Some(Transport::Stream));
        assert_eq!(h.addresses(), v4());
        let tlvs: Vec<_> = h.tlvs().collect();
        assert_eq!(tlvs, vec![Ok((TLV_AZURE, &[0x01, 0x78, 0x56, 0x34, 0x12][..]))]);
    }

    #[test]
    fn anchors_link_id_example() {
        let mut buf = [0u8; 64];
        let mut e = Encoder::new(&mut buf, Command::Proxy, Transport::Stream, v4()).unwrap();
        e.tlv_parts(TLV_AZURE, &[&[0x01], &0x2100_45C1u32.to_le_bytes()]).unwrap();
        let n = e.finish().unwrap();
        assert_eq!(&buf[28..n], &hex("EE 0005 01 C1450021")[..]);
    }

    #[test]
    fn local_header() {
        let mut buf = [0xAAu8; 16];
        let e = Encoder::new(&mut buf, Command::Local, Transport::Stream, Addresses::Unspec).unwrap();
        assert_eq!(e.finish(), Ok(16));
        let mut expect = SIGNATURE.to_vec();
        expect.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(&buf[..], &expect[..]);
        let (h, used) = Header::parse(&buf).unwrap();
        assert_eq!((h.command(), h.transport(), h.addresses(), used), (Command::Local, None, Addresses::Unspec, 16));
        assert_eq!(h.tlvs().count(), 0);
    }

    #[test]
    fn ipv6_udp_layout() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let a = Addresses::Ipv6 { src: SocketAddrV6::new(src, 1, 0, 0), dst: SocketAddrV6::new(dst, 2, 0, 0) };
        let mut buf = [0u8; 60];
        let e = Encoder::new(&mut buf, Command::Proxy, Transport::Datagram, a).unwrap();
        assert_eq!(e.finish(), Ok(52));
        assert_eq!(&buf[12..16], &[0x21, 0x22, 0x00, 36]);
        assert_eq!(&buf[16..32], &src.octets());
        assert_eq!(&buf[32..48], &dst.octets());
        assert_eq!(&buf[48..52], &[0, 1, 0, 2]);
        assert_eq!(Header::parse(&buf[..52]).unwrap().0.addresses(), a);
    }

    #[test]
    fn encoder_exhaustion_and_padding() {
        let mut small = [0u8; 27];
        assert_eq!(Encoder::new(&mut small, Command::Proxy, Transport::Stream, v4()).unwrap_err(), Error::Exhausted);
        let mut buf = [0u8; 40];
        let mut e = Encoder::new(&mut buf, Command::Proxy, Transport::Stream, v4()).unwrap();
        assert_eq!(e.tlv(TLV_NOOP, &[0; 10]), Err(Error::Exhausted));
        assert_eq!(e.len(), 28);
        assert_eq!(e.pad_to(29), Err(Error::Malformed));
        assert_eq!(e.pad_to(30), Err(Error::Malformed));
        assert_eq!(e.pad_to(27), Err(Error::Malformed));
        assert_eq!(e.pad_to(41), Err(Error::Exhausted));
        e.pad_to(28).unwrap();
        e.pad_to(40).unwrap();
        assert_eq!(e.len(), 40);
        assert_eq!(e.tlv(1, &[]), Err(Error::Exhausted));
        assert_eq!(e.finish(), Ok(40));
        assert_eq!(&buf[28..31], &[TLV_NOOP, 0, 9]);
        assert!(buf[31..40].iter().all(|&b| b == 0));
        // A value longer than u16 cannot be a TLV.
        let mut big = vec![0u8; 70_000];
        let mut e = Encoder::new(&mut big, Command::Local, Transport::Stream, Addresses::Unspec).unwrap();
        assert_eq!(e.tlv(1, &[0; 65_536]), Err(Error::Exhausted));
        // Nor can the header exceed 16 + 65535.
        e.tlv(1, &[0; 65_532]).unwrap();
        assert_eq!(e.tlv(1, &[]), Err(Error::Exhausted));
        assert_eq!(e.finish(), Ok(MAX_HEADER_LEN));
    }

    #[test]
    fn pad_to_even_on_odd() {
        let mut buf = [0u8; 64];
        let mut e = Encoder::new(&mut buf, Command::Proxy, Transport::Stream, v4()).unwrap();
        e.tlv(TLV_AUTHORITY, b"ab").unwrap(); // 28 + 5 = 33
        e.pad_to_even().unwrap();
        assert_eq!(e.len(), 36);
        e.pad_to_even().unwrap();
        assert_eq!(e.finish(), Ok(36));
    }

    #[test]
    fn decoder_rejects() {
        let mut buf = [0u8; 64];
        let mut e = Encoder::new(&mut buf, Command::Proxy, Transport::Stream, v4()).unwrap();
        e.tlv(TLV_UNIQUE_ID, b"xyz").unwrap();
        let n = e.finish().unwrap();
        let good = &buf[..n];
        assert_eq!(Header::parse(&good[..5]).unwrap_err(), Error::Truncated);
        assert_eq!(Header::parse(&good[..n - 1]).unwrap_err(), Error::Truncated);
        assert_eq!(Header::parse(b"PROXY TCP4 1.2.3.4").unwrap_err(), Error::Malformed);
        let mut v = good.to_vec();
        v[12] = 0x11;
        assert_eq!(Header::parse(&v).unwrap_err(), Error::Unsupported);
        let mut v = good.to_vec();
        v[12] = 0x22;
        assert_eq!(Header::parse(&v).unwrap_err(), Error::Malformed);
        let mut v = good.to_vec();
        v[13] = 0x13;
        assert_eq!(Header::parse(&v).unwrap_err(), Error::Malformed);
        let mut v = good.to_vec();
        v[13] = 0x31;
        assert_eq!(Header::parse(&v).unwrap_err(), Error::Unsupported);
        let mut v = good.to_vec();
        v[14..16].copy_from_slice(&8u16.to_be_bytes()); // shorter than the IPv4 block
        assert_eq!(Header::parse(&v).unwrap_err(), Error::Malformed);
        // A TLV overrunning the header.
        let mut v = good.to_vec();
        v[30] = 9;
        let (h, _) = Header::parse(&v).unwrap();
        let t: Vec<_> = h.tlvs().collect();
        assert_eq!(t, vec![Err(Error::Malformed)]);
        // Trailing stream data is not consumed.
        let mut v = good.to_vec();
        v.extend_from_slice(b"GET /");
        assert_eq!(Header::parse(&v).unwrap().1, n);
    }

    pub(crate) fn addresses() -> impl Strategy<Value = Addresses> {
        prop_oneof![
            Just(Addresses::Unspec),
            (any::<[u8; 4]>(), any::<u16>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| {
                Addresses::Ipv4 { src: SocketAddrV4::new(s.into(), sp), dst: SocketAddrV4::new(d.into(), dp) }
            }),
            (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| {
                Addresses::Ipv6 {
                    src: SocketAddrV6::new(s.into(), sp, 0, 0),
                    dst: SocketAddrV6::new(d.into(), dp, 0, 0),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn encoder_roundtrip(
            local: bool,
            datagram: bool,
            addresses in addresses(),
            tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..5),
            pad_even: bool,
            pad_extra in 0usize..20,
            cap in 0usize..400,
        ) {
            let command = if local { Command::Local } else { Command::Proxy };
            let transport = if datagram { Transport::Datagram } else { Transport::Stream };
            let mut buf = vec![0u8; cap];
            let mut e = match Encoder::new(&mut buf, command, transport, addresses) {
                Ok(e) => e,
                Err(err) => {
                    prop_assert_eq!(err, Error::Exhausted);
                    prop_assert!(cap < 16 + addresses.len());
                    return Ok(());
                }
            };
            let mut written = Vec::new();
            for (k, v) in &tlvs {
                let before = e.len();
                match e.tlv(*k, v) {
                    Ok(()) => written.push((*k, v.clone())),
                    Err(err) => {
                        prop_assert_eq!(err, Error::Exhausted);
                        prop_assert_eq!(e.len(), before);
                    }
                }
            }
            if pad_even && e.pad_to_even().is_ok() && e.len() % 2 == 1 {
                prop_assert!(false, "pad_to_even left an odd length");
            }
            let target = e.len() + 3 + pad_extra;
            let before = e.len();
            if e.pad_to(target).is_ok() {
                written.push((TLV_NOOP, vec![0; target - before - 3]));
            }
            let n = e.finish().unwrap();
            let (h, used) = Header::parse(&buf[..n]).unwrap();
            prop_assert_eq!(used, n);
            prop_assert_eq!(h.command(), command);
            prop_assert_eq!(h.addresses(), addresses);
            if !addresses.is_empty() {
                prop_assert_eq!(h.transport(), Some(transport));
            }
            let got: Vec<_> = h.tlvs().map(|t| t.map(|(k, v)| (k, v.to_vec()))).collect::<Result<_>>().unwrap();
            // pad_to_even's NOOPs are the only TLVs not in `written`: compare without empty NOOPs.
            let keep = |(k, v): &(u8, Vec<u8>)| !(*k == TLV_NOOP && v.is_empty());
            let got: Vec<_> = got.into_iter().filter(keep).collect();
            let written: Vec<_> = written.into_iter().filter(keep).collect();
            prop_assert_eq!(got, written);
        }
    }
}
