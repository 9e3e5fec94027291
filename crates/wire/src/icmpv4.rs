//! ICMP for IPv4 (RFC 792; fragmentation-needed MTU from RFC 1191 §4).
//!
//! The NAT translates echo identifiers like ports, and rewrites ICMP errors by also
//! translating the IPv4 header and first 8 bytes they quote (RFC 5508 §4), so the view
//! exposes the raw rest-of-header and the quoted datagram.

use crate::checksum;
use crate::ipv4::Ipv4Packet;
use crate::{be16, be32, put16, put32, Error, Result};

/// An ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Type {
    /// 0
    EchoReply,
    /// 3
    DstUnreachable,
    /// 5
    Redirect,
    /// 8
    EchoRequest,
    /// 11
    TimeExceeded,
    /// 12
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl Icmpv4Type {
    /// True for error messages, which quote the offending datagram.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Icmpv4Type::DstUnreachable | Icmpv4Type::Redirect | Icmpv4Type::TimeExceeded | Icmpv4Type::ParamProblem
        )
    }
}

impl From<u8> for Icmpv4Type {
    fn from(v: u8) -> Self {
        match v {
            0 => Icmpv4Type::EchoReply,
            3 => Icmpv4Type::DstUnreachable,
            5 => Icmpv4Type::Redirect,
            8 => Icmpv4Type::EchoRequest,
            11 => Icmpv4Type::TimeExceeded,
            12 => Icmpv4Type::ParamProblem,
            other => Icmpv4Type::Unknown(other),
        }
    }
}

impl From<Icmpv4Type> for u8 {
    fn from(t: Icmpv4Type) -> u8 {
        match t {
            Icmpv4Type::EchoReply => 0,
            Icmpv4Type::DstUnreachable => 3,
            Icmpv4Type::Redirect => 5,
            Icmpv4Type::EchoRequest => 8,
            Icmpv4Type::TimeExceeded => 11,
            Icmpv4Type::ParamProblem => 12,
            Icmpv4Type::Unknown(v) => v,
        }
    }
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const MTU: usize = 6;
    pub const DATA: usize = 8;
}

/// Length of the ICMPv4 header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// A view of an ICMPv4 message (the whole IP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the buffer holds the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (types 0 and 8).
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (types 0 and 8).
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Bytes 4..8 as one big-endian word.
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// Next-hop MTU of a fragmentation-needed message (type 3 code 4, RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::MTU)
    }

    /// Everything after the 8-byte header (echo data or the quoted datagram).
    pub fn data(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::DATA.min(b.len())..]
    }

    /// True if the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, t: Icmpv4Type) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Sets bytes 4..8.
    pub fn set_rest_of_header(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::REST, v);
    }

    /// Sets the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::MTU, v);
    }

    /// Everything after the header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let at = field::DATA.min(b.len());
        &mut b[at..]
    }

    /// Computes and writes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::data(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// The ICMPv4 messages the gateway handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Type 8.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Type 0.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// An error (types 3, 5, 11, 12) quoting an IPv4 header and at least 8 bytes after it.
    Error {
        /// Message type.
        msg_type: Icmpv4Type,
        /// Code.
        code: u8,
        /// Bytes 4..8 (unused, pointer, gateway or MTU, by type).
        rest_of_header: u32,
        /// The quoted datagram.
        invoking: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads a message, verifying the checksum; other types are `Err(Unsupported)`.
    ///
    /// For errors, `invoking` must parse as an IPv4 header (Total Length may exceed the quote)
    /// followed by at least 8 bytes, else `Err(Truncated)`/`Err(Malformed)`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let bytes: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        let data = &bytes[field::DATA..];
        match packet.msg_type() {
            Icmpv4Type::EchoRequest => {
                Ok(Icmpv4Repr::EchoRequest { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data })
            }
            Icmpv4Type::EchoReply => {
                Ok(Icmpv4Repr::EchoReply { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data })
            }
            t if t.is_error() => {
                let quoted = Ipv4Packet::new_checked_quoted(data)?;
                if data.len() < quoted.header_len() + 8 {
                    return Err(Error::Truncated);
                }
                Ok(Icmpv4Repr::Error {
                    msg_type: t,
                    code: packet.msg_code(),
                    rest_of_header: packet.rest_of_header(),
                    invoking: data,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Header plus data length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => data.len(),
                Icmpv4Repr::Error { invoking, .. } => invoking.len(),
            }
    }

    /// Writes the message and its checksum; the buffer must be exactly `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let data = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } | Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                let t = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    Icmpv4Type::EchoRequest
                } else {
                    Icmpv4Type::EchoReply
                };
                packet.set_msg_type(t);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            Icmpv4Repr::Error { msg_type, code, rest_of_header, invoking } => {
                packet.set_msg_type(msg_type);
                packet.set_msg_code(code);
                packet.set_rest_of_header(rest_of_header);
                invoking
            }
        };
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    // Echo request, ident 0x1234, seq 1, data "abcd"; checksum computed by hand:
    // 0800 + 0000 + 1234 + 0001 + 6162 + 6364 = 0xDEFB -> !0xDEFB = 0x2104.
    const ECHO: [u8; 12] = [0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd'];

    #[test]
    fn echo_fixture() {
        let p = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Type::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x2104);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert_eq!(p.data(), b"abcd");
        assert!(p.verify_checksum());
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(r, Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: b"abcd" });
        let mut out = [0u8; 12];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO);
    }

    fn quoted() -> Vec<u8> {
        // IPv4 header of a 1500-byte UDP datagram, then the first 8 bytes of UDP.
        let mut q = vec![0u8; 28];
        let r = crate::ipv4::Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 1, 4),
            dst_addr: Ipv4Addr::new(10, 0, 2, 10),
            next_header: crate::IpProtocol::Udp,
            payload_len: 1480,
            hop_limit: 1,
            ident: 7,
            dont_frag: true,
            dscp: 0,
            ecn: 0,
        };
        r.emit(&mut Ipv4Packet::new_unchecked(&mut q[..]));
        q[20..28].copy_from_slice(&[0xc3, 0x50, 0x00, 0x35, 0x05, 0xc8, 0x00, 0x00]);
        q
    }

    #[test]
    fn error_fixture() {
        // Fragmentation needed (3/4), next-hop MTU 1400.
        let q = quoted();
        let mut b = vec![0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0x78];
        b.extend_from_slice(&q);
        let c = checksum::data(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.msg_type().is_error());
        assert_eq!(p.msg_code(), 4);
        assert_eq!(p.next_hop_mtu(), 1400);
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Icmpv4Repr::Error { msg_type: Icmpv4Type::DstUnreachable, code: 4, rest_of_header: 1400, invoking: &q }
        );
        let quoted = Ipv4Packet::new_checked_quoted(&q[..]).unwrap();
        assert_eq!(quoted.payload_quoted().len(), 8);
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
    }

    #[test]
    fn error_quote_checks() {
        let q = quoted();
        let mk = |quote: &[u8]| {
            let mut b = vec![11, 0, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(quote);
            let c = checksum::data(&b);
            b[2..4].copy_from_slice(&c.to_be_bytes());
            b
        };
        let short = mk(&q[..27]);
        assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&short[..]).unwrap()), Err(Error::Truncated));
        let mut bad = q.clone();
        bad[0] = 0x65;
        let bad = mk(&bad);
        assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&bad[..]).unwrap()), Err(Error::Malformed));
        let mut b = mk(&q);
        b[0] = 13; // timestamp
        let c = checksum::data(&{
            let mut z = b.clone();
            z[2] = 0;
            z[3] = 0;
            z
        });
        b[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()), Err(Error::Unsupported));
        let mut b = ECHO;
        b[9] ^= 1;
        assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()), Err(Error::Checksum));
        assert_eq!(Icmpv4Packet::new_checked(&ECHO[..7]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn type_numbers() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(Icmpv4Type::from(n)), n);
        }
        assert!(!Icmpv4Type::EchoRequest.is_error());
        assert!(Icmpv4Type::TimeExceeded.is_error() && Icmpv4Type::ParamProblem.is_error());
    }

    proptest! {
        #[test]
        fn echo_roundtrip(req: bool, ident: u16, seq_no: u16, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = if req {
                Icmpv4Repr::EchoRequest { ident, seq_no, data: &data }
            } else {
                Icmpv4Repr::EchoReply { ident, seq_no, data: &data }
            };
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn error_roundtrip(t in prop_oneof![Just(3u8), Just(5), Just(11), Just(12)], code: u8, rest: u32,
                           extra in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut q = quoted();
            q.extend_from_slice(&extra);
            let r = Icmpv4Repr::Error { msg_type: t.into(), code, rest_of_header: rest, invoking: &q };
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
