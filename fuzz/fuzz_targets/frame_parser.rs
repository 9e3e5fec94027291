//! Arbitrary bytes through every checked view of `wire`, and `emit → parse` round trips.
//!
//! Input: one selector byte, then the bytes to parse. The selector picks the layer the bytes
//! start at (Ethernet, which then walks VLAN/ARP/IPv4/IPv6/L4 like the datapath does, or one
//! layer directly, or a PROXY v2 header), so the fuzzer does not have to build an Ethernet
//! header to reach an inner parser.
//!
//! Checked: no constructor, accessor, setter or `Repr` panics, whatever the bytes; whatever
//! parses into a `Repr` emits and parses back to an equal `Repr`; `fill_checksum*` makes
//! `verify_checksum*` true. Parsers that verify a checksum are also run on a copy whose
//! checksum was filled in, so the round trips are reached without the fuzzer solving
//! checksums.
#![no_main]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use wire::proxy::{self, Addresses, Encoder, Header};
use wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr, VlanHeader, VlanRepr,
};

/// Addresses for the pseudo-header when a transport layer is parsed on its own.
const V4_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
const V4_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x50);

#[derive(Clone, Copy)]
enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 11 {
        0 => ethernet(bytes),
        1 => vlan(bytes, 0),
        2 => arp(bytes),
        3 => ipv4(bytes),
        4 => ipv6(bytes),
        5 => tcp(bytes, Addrs::V4(V4_SRC, V4_DST)),
        6 => udp(bytes, Addrs::V4(V4_SRC, V4_DST)),
        7 => icmpv4(bytes),
        8 => icmpv6(bytes, V6_SRC, V6_DST),
        9 => proxy_v2(bytes),
        _ => {
            tcp(bytes, Addrs::V6(V6_SRC, V6_DST));
            udp(bytes, Addrs::V6(V6_SRC, V6_DST));
        }
    }
});

fn ethernet(bytes: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(bytes) else { return };
    let (dst, src) = (frame.dst_addr(), frame.src_addr());
    black_box((dst.is_broadcast(), dst.is_multicast(), src.is_unicast(), dst.to_string(), format!("{src:?}")));
    let repr = EthernetRepr::parse(&frame).expect("a checked Ethernet frame parses");
    assert_eq!((repr.dst_addr, repr.src_addr, repr.ethertype), (dst, src, frame.ethertype()));
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    assert_eq!(out, bytes[..EthernetFrame::<&[u8]>::HEADER_LEN], "Ethernet emit restores the header");
    let back = EthernetRepr::parse(&EthernetFrame::new_checked(&out[..]).expect("emitted header")).unwrap();
    assert_eq!(back, repr);
    next_layer(frame.ethertype(), frame.payload(), 0);
}

fn next_layer(ethertype: EtherType, payload: &[u8], depth: usize) {
    match ethertype {
        EtherType::Vlan | EtherType::QinQ => vlan(payload, depth + 1),
        EtherType::Arp => arp(payload),
        EtherType::Ipv4 => ipv4(payload),
        EtherType::Ipv6 => ipv6(payload),
        EtherType::Unknown(_) => {}
    }
}

fn vlan(bytes: &[u8], depth: usize) {
    let Ok(tag) = VlanHeader::new_checked(bytes) else { return };
    black_box((tag.pcp(), tag.dei(), tag.vlan_id()));
    let repr = VlanRepr::parse(&tag).expect("a checked VLAN tag parses");
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut VlanHeader::new_unchecked(&mut out[..]));
    assert_eq!(out, bytes[..VlanHeader::<&[u8]>::HEADER_LEN], "VLAN emit restores the tag");
    assert_eq!(VlanRepr::parse(&VlanHeader::new_checked(&out[..]).unwrap()).unwrap(), repr);
    if depth < 3 {
        next_layer(tag.ethertype(), tag.payload(), depth);
    }
}

fn arp(bytes: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(bytes) else {
        // Rejected packets must still be rejected by the Repr parser, not panic it.
        assert!(ArpRepr::parse(&ArpPacket::new_unchecked(bytes)).is_err());
        return;
    };
    black_box((
        packet.hardware_type(),
        packet.protocol_type(),
        packet.hardware_len(),
        packet.protocol_len(),
        packet.operation(),
        packet.source_hardware_addr(),
        packet.source_protocol_addr(),
        packet.target_hardware_addr(),
        packet.target_protocol_addr(),
    ));
    let repr = ArpRepr::parse(&packet).expect("a checked ARP packet parses");
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
    assert_eq!(out, bytes[..ArpPacket::<&[u8]>::ETHERNET_IPV4_LEN], "ARP emit restores the packet");
    let back = ArpRepr::parse(&ArpPacket::new_checked(&out[..]).expect("emitted ARP")).expect("emitted ARP parses");
    assert_eq!(back, repr);
}

fn ipv4_accessors<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
    black_box((
        p.version(),
        p.header_len(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.hop_limit(),
        p.next_header(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.options(),
        p.payload(),
        p.payload_quoted(),
        p.verify_checksum(),
        p.as_bytes().len(),
    ));
}

fn ipv4(bytes: &[u8]) {
    // The quoted-packet constructor (ICMP errors) accepts a total length beyond the buffer.
    if let Ok(quoted) = Ipv4Packet::new_checked_quoted(bytes) {
        ipv4_accessors(&quoted);
        let mut copy = bytes.to_vec();
        let mut p = Ipv4Packet::new_checked_quoted(&mut copy[..]).expect("same bytes");
        black_box((p.options_mut().len(), p.payload_mut().len()));
        p.fill_checksum();
        assert!(p.verify_checksum(), "fill_checksum makes the IPv4 header checksum verify");
    }
    let Ok(packet) = Ipv4Packet::new_checked(bytes) else {
        assert!(Ipv4Repr::parse(&Ipv4Packet::new_unchecked(bytes)).is_err());
        return;
    };
    ipv4_accessors(&packet);
    let payload = packet.payload();
    assert!(payload.len() + packet.header_len() <= usize::from(packet.total_len()));
    let addrs = Addrs::V4(packet.src_addr(), packet.dst_addr());
    match Ipv4Repr::parse(&packet) {
        Ok(repr) => ipv4_roundtrip(&repr, payload),
        Err(wire::Error::Checksum) => {
            let mut copy = bytes.to_vec();
            Ipv4Packet::new_unchecked(&mut copy[..]).fill_checksum();
            let fixed = Ipv4Packet::new_checked(&copy[..]).expect("only the checksum changed");
            if let Ok(repr) = Ipv4Repr::parse(&fixed) {
                ipv4_roundtrip(&repr, payload);
            }
        }
        Err(_) => {}
    }
    if !packet.is_fragment() {
        transport(packet.next_header(), payload, addrs);
    }
}

fn ipv4_roundtrip(repr: &Ipv4Repr, payload: &[u8]) {
    assert_eq!(repr.payload_len, payload.len());
    let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
    let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    let back = Ipv4Packet::new_checked(&out[..]).expect("emitted IPv4 is well formed");
    assert_eq!(&Ipv4Repr::parse(&back).expect("emitted IPv4 parses"), repr);
    assert_eq!(back.payload(), payload);
}

fn ipv6(bytes: &[u8]) {
    let Ok(packet) = Ipv6Packet::new_checked(bytes) else {
        assert!(Ipv6Repr::parse(&Ipv6Packet::new_unchecked(bytes)).is_err());
        return;
    };
    black_box((
        packet.version(),
        packet.traffic_class(),
        packet.flow_label(),
        packet.payload_len(),
        packet.next_header(),
        packet.hop_limit(),
        packet.src_addr(),
        packet.dst_addr(),
        packet.as_bytes().len(),
    ));
    let payload = packet.payload();
    assert_eq!(payload.len(), usize::from(packet.payload_len()));
    let repr = Ipv6Repr::parse(&packet).expect("a checked IPv6 packet parses");
    let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
    let mut p = Ipv6Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    let back = Ipv6Packet::new_checked(&out[..]).expect("emitted IPv6 is well formed");
    assert_eq!(Ipv6Repr::parse(&back).expect("emitted IPv6 parses"), repr);
    let addrs = Addrs::V6(packet.src_addr(), packet.dst_addr());
    match packet.upper_layer() {
        Ok((protocol, at)) => {
            assert!((wire::ipv6::HEADER_LEN..=bytes.len()).contains(&at), "upper layer offset in bounds");
            let end = wire::ipv6::HEADER_LEN + payload.len();
            assert!(at <= end);
            transport(protocol, &bytes[at..end], addrs);
        }
        Err(_) => transport(packet.next_header(), payload, addrs),
    }
}

fn transport(protocol: IpProtocol, bytes: &[u8], addrs: Addrs) {
    match protocol {
        IpProtocol::Tcp => tcp(bytes, addrs),
        IpProtocol::Udp => udp(bytes, addrs),
        IpProtocol::Icmp => icmpv4(bytes),
        IpProtocol::Icmpv6 => {
            if let Addrs::V6(src, dst) = addrs {
                icmpv6(bytes, src, dst);
            }
        }
        _ => {}
    }
}

fn tcp(bytes: &[u8], addrs: Addrs) {
    let Ok(packet) = TcpPacket::new_checked(bytes) else {
        assert!(TcpRepr::parse_unverified(&TcpPacket::new_unchecked(bytes)).is_err());
        return;
    };
    black_box((
        packet.src_port(),
        packet.dst_port(),
        packet.seq_number(),
        packet.ack_number(),
        packet.header_len(),
        packet.flags(),
        packet.window_len(),
        packet.checksum(),
        packet.urgent_at(),
        packet.options(),
        packet.payload(),
        packet.segment_len(),
        packet.as_bytes().len(),
    ));
    let mut options = packet.options_iter();
    let mut count = 0;
    for option in options.by_ref() {
        count += 1;
        assert!(count <= wire::tcp::MAX_OPTIONS_LEN, "the option iterator ends");
        if let Ok(o) = option {
            let mut buf = [0u8; 64];
            // Re-emitting a parsed option must not panic; most restore their bytes.
            black_box(o.emit(&mut buf).ok());
        }
    }
    assert!(options.position() <= packet.options().len());
    let verified = match addrs {
        Addrs::V4(src, dst) => {
            black_box(packet.verify_checksum_v6(&V6_SRC, &V6_DST));
            TcpRepr::parse(&packet, src, dst)
        }
        Addrs::V6(src, dst) => {
            black_box(packet.verify_checksum_v4(V4_SRC, V4_DST));
            TcpRepr::parse_v6(&packet, &src, &dst)
        }
    };
    let unverified = TcpRepr::parse_unverified(&packet);
    match (&verified, &unverified) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(_), Err(e)) => panic!("verified parse succeeded where the unverified one failed: {e:?}"),
        _ => {}
    }
    // Fill the checksum on a copy: it must then verify.
    if bytes.len() <= usize::from(u16::MAX) {
        let mut copy = bytes.to_vec();
        let mut p = TcpPacket::new_checked(&mut copy[..]).expect("same bytes");
        black_box((p.options_mut().len(), p.payload_mut().len()));
        match addrs {
            Addrs::V4(src, dst) => {
                p.fill_checksum_v4(src, dst);
                assert!(p.verify_checksum_v4(src, dst), "fill_checksum_v4 makes the TCP checksum verify");
            }
            Addrs::V6(src, dst) => {
                p.fill_checksum_v6(&src, &dst);
                assert!(p.verify_checksum_v6(&src, &dst), "fill_checksum_v6 makes the TCP checksum verify");
            }
        }
    }
    if let Ok(repr) = unverified {
        assert_eq!(repr.payload, packet.payload());
        assert_eq!(repr.segment_len(), packet.segment_len());
        let mut out = vec![0u8; repr.buffer_len()];
        let mut p = TcpPacket::new_unchecked(&mut out[..]);
        let back = match addrs {
            Addrs::V4(src, dst) => {
                repr.emit(&mut p, src, dst);
                TcpRepr::parse(&TcpPacket::new_checked(&out[..]).expect("emitted TCP is well formed"), src, dst)
            }
            Addrs::V6(src, dst) => {
                repr.emit_v6(&mut p, &src, &dst);
                TcpRepr::parse_v6(&TcpPacket::new_checked(&out[..]).expect("emitted TCP is well formed"), &src, &dst)
            }
        };
        assert_eq!(back.expect("emitted TCP parses"), repr, "TCP emit → parse round trip");
    }
}

fn udp(bytes: &[u8], addrs: Addrs) {
    let Ok(packet) = UdpPacket::new_checked(bytes) else {
        assert!(UdpRepr::parse(&UdpPacket::new_unchecked(bytes), V4_SRC, V4_DST).is_err());
        return;
    };
    black_box((packet.src_port(), packet.dst_port(), packet.len(), packet.is_empty(), packet.checksum()));
    let payload = packet.payload();
    assert_eq!(payload.len() + wire::udp::HEADER_LEN, usize::from(packet.len()));
    let parsed = match addrs {
        Addrs::V4(src, dst) => UdpRepr::parse(&packet, src, dst),
        Addrs::V6(src, dst) => UdpRepr::parse_v6(&packet, &src, &dst),
    };
    black_box(parsed.ok());
    let mut copy = bytes.to_vec();
    let mut p = UdpPacket::new_checked(&mut copy[..]).expect("same bytes");
    black_box(p.payload_mut().len());
    let repr = match addrs {
        Addrs::V4(src, dst) => {
            p.fill_checksum_v4(src, dst);
            assert!(p.verify_checksum_v4(src, dst), "fill_checksum_v4 makes the UDP checksum verify");
            UdpRepr::parse(&UdpPacket::new_checked(&copy[..]).unwrap(), src, dst)
        }
        Addrs::V6(src, dst) => {
            p.fill_checksum_v6(&src, &dst);
            assert!(p.verify_checksum_v6(&src, &dst), "fill_checksum_v6 makes the UDP checksum verify");
            UdpRepr::parse_v6(&UdpPacket::new_checked(&copy[..]).unwrap(), &src, &dst)
        }
    }
    .expect("a UDP datagram with a filled checksum parses");
    if let Ok(first) = parsed {
        assert_eq!(first, repr);
    }
    let mut out = vec![0u8; repr.buffer_len(payload.len())];
    out[repr.header_len()..].copy_from_slice(payload);
    let mut p = UdpPacket::new_unchecked(&mut out[..]);
    let back = match addrs {
        Addrs::V4(src, dst) => {
            repr.emit(&mut p, src, dst, payload.len());
            UdpRepr::parse(&UdpPacket::new_checked(&out[..]).expect("emitted UDP is well formed"), src, dst)
        }
        Addrs::V6(src, dst) => {
            repr.emit_v6(&mut p, &src, &dst, payload.len());
            UdpRepr::parse_v6(&UdpPacket::new_checked(&out[..]).expect("emitted UDP is well formed"), &src, &dst)
        }
    };
    assert_eq!(back.expect("emitted UDP parses"), repr, "UDP emit → parse round trip");
}

fn icmpv4(bytes: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(bytes) else {
        assert!(Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(bytes)).is_err());
        return;
    };
    black_box((
        packet.msg_type(),
        packet.msg_type().is_error(),
        packet.msg_code(),
        packet.checksum(),
        packet.echo_ident(),
        packet.echo_seq_no(),
        packet.rest_of_header(),
        packet.next_hop_mtu(),
        packet.data(),
        packet.verify_checksum(),
    ));
    let mut copy = bytes.to_vec();
    let mut p = Icmpv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    black_box(p.data_mut().len());
    p.fill_checksum();
    assert!(p.verify_checksum(), "fill_checksum makes the ICMP checksum verify");
    if let Ok(repr) = Icmpv4Repr::parse(&packet) {
        icmpv4_roundtrip(&repr);
    }
    let fixed = Icmpv4Packet::new_checked(&copy[..]).expect("same length");
    if let Ok(repr) = Icmpv4Repr::parse(&fixed) {
        icmpv4_roundtrip(&repr);
        if let Icmpv4Repr::Error { invoking, .. } = repr {
            // The quoted datagram: header plus at least 8 bytes, total length may exceed it.
            ipv4(invoking);
        }
    }
}

fn icmpv4_roundtrip(repr: &Icmpv4Repr<'_>) {
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
    let back = Icmpv4Packet::new_checked(&out[..]).expect("emitted ICMP is well formed");
    assert_eq!(&Icmpv4Repr::parse(&back).expect("emitted ICMP parses"), repr, "ICMP emit → parse round trip");
}

fn icmpv6(bytes: &[u8], src: Ipv6Addr, dst: Ipv6Addr) {
    let Ok(packet) = Icmpv6Packet::new_checked(bytes) else { return };
    black_box((
        packet.msg_type(),
        packet.msg_code(),
        packet.checksum(),
        packet.body(),
        packet.verify_checksum(&src, &dst),
    ));
    let mut copy = bytes.to_vec();
    let mut p = Icmpv6Packet::new_checked(&mut copy[..]).expect("same bytes");
    black_box(p.body_mut().len());
    p.fill_checksum(&src, &dst);
    assert!(p.verify_checksum(&src, &dst), "fill_checksum makes the ICMPv6 checksum verify");
}

fn proxy_v2(bytes: &[u8]) {
    let Ok((header, consumed)) = Header::parse(bytes) else { return };
    assert_eq!(consumed, header.len());
    assert!(consumed >= proxy::HEADER_LEN && consumed <= bytes.len());
    assert_eq!(header.as_bytes(), &bytes[..consumed]);
    black_box((header.command(), header.transport(), header.addresses(), header.is_empty()));
    let tlvs: Result<Vec<(u8, &[u8])>, wire::Error> = header.tlvs().collect();
    let mut seen = 0;
    for tlv in header.tlvs() {
        seen += 1;
        assert!(seen <= header.tlv_bytes().len() / proxy::TLV_HEADER_LEN + 1, "the TLV iterator ends");
        black_box(tlv.ok());
    }
    let Ok(tlvs) = tlvs else { return };
    // Re-encode what was parsed: the encoder must write the same bytes (when the header is one
    // the encoder can express: the transport is UNSPEC exactly when the addresses are).
    let addresses = header.addresses();
    let transport = match (header.transport(), addresses) {
        (None, Addresses::Unspec) => proxy::Transport::Stream,
        (Some(t), Addresses::Ipv4 { .. } | Addresses::Ipv6 { .. }) => t,
        _ => return,
    };
    let mut out = vec![0u8; header.len()];
    let mut encoder = Encoder::new(&mut out, header.command(), transport, addresses).expect("room for the header");
    for (kind, value) in &tlvs {
        encoder.tlv(*kind, value).expect("room for the TLVs");
    }
    let len = encoder.finish().expect("the header length fits");
    assert_eq!(&out[..len], header.as_bytes(), "PROXY v2 parse → encode restores the bytes");
    let (again, n) = Header::parse(&out).expect("the encoded header parses");
    assert_eq!((again, n), (header, consumed));
}
