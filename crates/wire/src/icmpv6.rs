//! ICMPv6 (RFC 4443 §2.1): a minimal view for the gateway's IPv6 path.
//!
//! Unlike ICMPv4, the ICMPv6 checksum covers the IPv6 pseudo-header (RFC 4443 §2.3).

use std::net::Ipv6Addr;

use crate::checksum;
use crate::{be16, put16, Error, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const BODY: usize = 4;
}

/// Length of the type, code and checksum.
pub const HEADER_LEN: usize = 4;

/// Next-header number of ICMPv6.
const PROTOCOL: u8 = 58;

/// A view of an ICMPv6 message (the whole upper-layer payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after checking it holds type, code and checksum.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (RFC 4443 §2.1: errors are 0..=127).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Everything after the checksum.
    pub fn body(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::BODY.min(b.len())..]
    }

    fn sum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Option<u32> {
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).ok()?;
        Some(checksum::pseudo_header_v6(src, dst, PROTOCOL, len) + checksum::sum(b))
    }

    /// True if the checksum verifies over the IPv6 pseudo-header and the whole message.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.sum(src, dst).is_some_and(|s| checksum::fold(s) == 0xFFFF)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Everything after the checksum, mutably.
    pub fn body_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let at = field::BODY.min(b.len());
        &mut b[at..]
    }

    /// Computes and writes the checksum.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = self.sum(src, dst).map_or(0, checksum::finish);
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_fixture() {
        // Echo request ::1 -> ::1, ident 0x1234 seq 1, "hi"; checksum from the RFC 4443 §2.3 rule:
        // pseudo = 1 + 1 + 10 (len) + 58; body = 8000 + 0000 + 1234 + 0001 + 6869 = 0x1_FA9E.
        let a = Ipv6Addr::LOCALHOST;
        let mut b = [0x80, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'h', b'i'];
        let sum = 1 + 1 + 10 + 58 + 0x8000 + 0x1234 + 0x0001 + 0x6869;
        let expect = !checksum::fold(sum);
        let mut p = Icmpv6Packet::new_unchecked(&mut b[..]);
        p.fill_checksum(&a, &a);
        assert_eq!(p.checksum(), expect);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (128, 0));
        assert_eq!(p.body(), &[0x12, 0x34, 0x00, 0x01, b'h', b'i']);
        assert!(p.verify_checksum(&a, &a));
        assert!(!p.verify_checksum(&a, &Ipv6Addr::UNSPECIFIED));
        assert_eq!(Icmpv6Packet::new_checked(&b[..3]).unwrap_err(), Error::Truncated);
    }
}
