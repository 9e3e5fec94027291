//! The policy hook the slow path asks about every new flow.
//!
//! The datapath only knows this trait. The native default allows every flow of an approved
//! endpoint (approval itself is checked before the hook); the sandboxed WebAssembly plugin chain
//! implements the same trait in the `policy` crate.

use std::net::SocketAddrV4;

use arrayvec::ArrayVec;
use flow::Protocol;

use crate::model::{Endpoint, Service};

/// Everything a policy may look at when a new flow starts.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// The service the endpoint maps to.
    pub service: &'a Service,
    /// The endpoint, with its account and link id.
    pub endpoint: &'a Endpoint,
    /// TCP, UDP or ICMP (echo).
    pub protocol: Protocol,
    /// The consumer's source `ip:port` (for ICMP echo, the port is the identifier).
    pub source: SocketAddrV4,
    /// The endpoint `ip:port` the consumer addressed.
    pub destination: SocketAddrV4,
}

/// The decision about a new flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnectVerdict {
    /// Create the flow.
    Allow,
    /// Drop the packet silently.
    Deny,
    /// Refuse actively: RST for TCP, ICMP administratively prohibited otherwise.
    Reset,
}

/// The most TLV bytes a policy may add to a flow's PROXY v2 header (type, length and value of
/// every TLV together). The PROXY header budget (107 bytes for Debian 12's nginx) is smaller
/// still; the inserter checks that.
pub const MAX_TLV_BYTES: usize = 256;

/// Why a TLV was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The value is longer than a TLV can carry or than the space left.
    #[error("the TLVs would exceed {MAX_TLV_BYTES} bytes")]
    TooLong,
    /// A type the policy may not set (NOOP padding and CRC32C belong to the encoder).
    #[error("TLV type {0:#04x} is reserved for the gateway")]
    Reserved(u8),
}

/// PROXY v2 TLVs a policy adds for a flow, in order, encoded (`type u8 | length u16 BE | value`)
/// into a fixed buffer: no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tlvs {
    bytes: ArrayVec<u8, MAX_TLV_BYTES>,
}

impl Tlvs {
    /// Appends one TLV; on error nothing is appended.
    pub fn push(&mut self, kind: u8, value: &[u8]) -> Result<(), TlvError> {
        if kind == wire::proxy::TLV_NOOP || kind == wire::proxy::TLV_CRC32C {
            return Err(TlvError::Reserved(kind));
        }
        let len = u16::try_from(value.len()).map_err(|_| TlvError::TooLong)?;
        if self.bytes.remaining_capacity() < 3 + value.len() {
            return Err(TlvError::TooLong);
        }
        self.bytes.push(kind);
        self.bytes.extend(len.to_be_bytes());
        // Capacity was checked above.
        let _ = self.bytes.try_extend_from_slice(value);
        Ok(())
    }

    /// The encoded TLVs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Removes every TLV.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Removes TLVs after the first `len` bytes (to undo a failed policy's additions).
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }

    /// Bytes used.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The TLVs as (type, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        let mut rest: &[u8] = &self.bytes;
        std::iter::from_fn(move || {
            if rest.len() < 3 {
                return None;
            }
            let kind = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            let value = rest.get(3..3 + len)?;
            rest = &rest[3 + len..];
            Some((kind, value))
        })
    }
}

/// A per-worker policy: called on the slow path only, once per new flow.
pub trait Policy {
    /// Decides about a new flow; may add PROXY v2 TLVs to `tlvs` (which starts empty).
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict;

    /// Called once per poll, between bursts: the moment to pick up a new plugin chain.
    fn between_bursts(&mut self) {}
}

/// The native default: every flow of an approved endpoint is allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowApproved;

impl Policy for AllowApproved {
    fn connect(&mut self, _request: &ConnectRequest<'_>, _tlvs: &mut Tlvs) -> ConnectVerdict {
        ConnectVerdict::Allow
    }
}

impl<F> Policy for F
where
    F: FnMut(&ConnectRequest<'_>) -> ConnectVerdict,
{
    fn connect(&mut self, request: &ConnectRequest<'_>, _tlvs: &mut Tlvs) -> ConnectVerdict {
        self(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlvs_encode_iterate_and_refuse() {
        let mut t = Tlvs::default();
        t.push(0xEE, &[0x01, 0x78, 0x56, 0x34, 0x12]).unwrap();
        t.push(0xEA, b"vpce-1").unwrap();
        assert_eq!(&t.as_bytes()[..8], &[0xEE, 0x00, 0x05, 0x01, 0x78, 0x56, 0x34, 0x12]);
        let all: Vec<(u8, Vec<u8>)> = t.iter().map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(all, vec![(0xEE, vec![1, 0x78, 0x56, 0x34, 0x12]), (0xEA, b"vpce-1".to_vec())]);
        assert_eq!(t.push(0x04, &[]), Err(TlvError::Reserved(4)));
        let before = t.len();
        assert_eq!(t.push(0xE0, &[0; MAX_TLV_BYTES]), Err(TlvError::TooLong));
        assert_eq!(t.len(), before);
        t.truncate(8);
        assert_eq!(t.iter().count(), 1);
    }
}
