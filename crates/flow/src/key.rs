//! Flow keys. Networks may use identical prefixes, so every key carries its [`NetworkId`]:
//! nothing in overlink is keyed on an address without its network.

use std::net::SocketAddrV4;

/// One address domain attached to the gateway.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NetworkId(pub u16);

/// The transport protocols the gateway tracks (IANA protocol numbers).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Protocol {
    /// ICMP echo (RFC 792); the echo identifier plays the role of both ports.
    Icmp = 1,
    /// TCP (RFC 793).
    Tcp = 6,
    /// UDP (RFC 768).
    Udp = 17,
}

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The protocol for an IANA number, `None` for protocols the gateway does not track.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Protocol::Icmp),
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl From<Protocol> for u8 {
    fn from(protocol: Protocol) -> u8 {
        protocol.number()
    }
}

/// The 5-tuple of one direction of a flow, plus the network it was seen in.
///
/// Nothing is keyed on an address without its network. For ICMP echo the "port" of both `src`
/// and `dst` is the echo identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    /// The network the packet arrived from.
    pub network: NetworkId,
    /// The transport protocol.
    pub protocol: Protocol,
    /// Source address and port (echo identifier for ICMP).
    pub src: SocketAddrV4,
    /// Destination address and port (echo identifier for ICMP).
    pub dst: SocketAddrV4,
}

impl FlowKey {
    /// A key from its parts.
    pub fn new(network: NetworkId, protocol: Protocol, src: SocketAddrV4, dst: SocketAddrV4) -> Self {
        FlowKey { network, protocol, src, dst }
    }

    /// The key of the opposite direction: same network and protocol, `src` and `dst` swapped.
    pub fn reversed(&self) -> FlowKey {
        FlowKey { network: self.network, protocol: self.protocol, src: self.dst, dst: self.src }
    }

    /// The key packed into two words (all 15 meaningful bytes), the input of the table's hash.
    pub(crate) fn words(&self) -> (u64, u64) {
        let a = (u64::from(u32::from(*self.src.ip())) << 32)
            | (u64::from(self.src.port()) << 16)
            | u64::from(self.network.0);
        let b = (u64::from(u32::from(*self.dst.ip())) << 32)
            | (u64::from(self.dst.port()) << 16)
            | u64::from(self.protocol.number());
        (a, b)
    }
}

/// Which way a packet travels through the gateway.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Consumer → endpoint, translated to NAT ip:port → backend.
    ToService,
    /// Backend → NAT ip:port, translated back to endpoint → consumer.
    ToConsumer,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToService => Direction::ToConsumer,
            Direction::ToConsumer => Direction::ToService,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key() -> FlowKey {
        FlowKey::new(
            NetworkId(3),
            Protocol::Tcp,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 51000),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), 443),
        )
    }

    #[test]
    fn reversed_swaps_endpoints_and_keeps_network_and_protocol() {
        let k = key();
        let r = k.reversed();
        assert_eq!(r.network, NetworkId(3));
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!(r.src, k.dst);
        assert_eq!(r.dst, k.src);
        assert_ne!(r, k);
        assert_eq!(r.reversed(), k);
    }

    #[test]
    fn protocol_numbers_round_trip() {
        for p in [Protocol::Icmp, Protocol::Tcp, Protocol::Udp] {
            assert_eq!(Protocol::from_number(p.number()), Some(p));
        }
        assert_eq!(Protocol::Tcp.number(), 6);
        assert_eq!(Protocol::Udp.number(), 17);
        assert_eq!(Protocol::Icmp.number(), 1);
        let known = (0..=255u8).filter(|n| Protocol::from_number(*n).is_some()).count();
        assert_eq!(known, 3);
    }

    #[test]
    fn direction_reverse() {
        assert_eq!(Direction::ToService.reverse(), Direction::ToConsumer);
        assert_eq!(Direction::ToConsumer.reverse(), Direction::ToService);
    }

    #[test]
    fn words_differ_for_keys_that_differ_only_in_network_or_protocol() {
        let k = key();
        let mut other = k;
        other.network = NetworkId(4);
        assert_ne!(k.words(), other.words());
        let mut other = k;
        other.protocol = Protocol::Udp;
        assert_ne!(k.words(), other.words());
        assert_ne!(k.words(), k.reversed().words());
    }
}
