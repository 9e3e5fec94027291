//! Hostile input: random bytes, and random truncations and byte flips of valid frames, go
//! through every checked constructor, every accessor of the views they return, the option
//! and TLV iterators and every `Repr::parse`. None may panic.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use proptest::prelude::*;
use wire::proxy::{self, Addresses, Command, Encoder, Transport};
use wire::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 4);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 10);

fn exercise_ethernet(b: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(b) {
        let _ = (f.src_addr(), f.dst_addr(), f.ethertype(), f.payload().len());
        let _ = EthernetRepr::parse(&f);
    }
    if let Ok(v) = VlanHeader::new_checked(b) {
        let _ = (v.pcp(), v.dei(), v.vlan_id(), v.ethertype(), v.payload().len());
        let _ = VlanRepr::parse(&v);
    }
    if let Ok(p) = ArpPacket::new_checked(b) {
        let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
        let _ =
            (p.source_hardware_addr(), p.source_protocol_addr(), p.target_hardware_addr(), p.target_protocol_addr());
        let _ = ArpRepr::parse(&p);
    }
}

fn exercise_ipv4_view<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
    let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len(), p.ident());
    let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment(), p.hop_limit());
    let _ = (p.next_header(), p.checksum(), p.src_addr(), p.dst_addr(), p.verify_checksum());
    let _ = (p.options().len(), p.payload().len(), p.payload_quoted().len());
}

fn exercise_ip(b: &[u8]) {
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        exercise_ipv4_view(&p);
        let _ = Ipv4Repr::parse(&p);
        let mut v = b.to_vec();
        let mut q = Ipv4Packet::new_unchecked(&mut v[..]);
        q.fill_checksum();
        let _ = (q.options_mut().len(), q.payload_mut().len());
        q.set_hop_limit(1);
        exercise_l4(p.payload(), p.src_addr(), p.dst_addr());
    }
    if let Ok(p) = Ipv4Packet::new_checked_quoted(b) {
        exercise_ipv4_view(&p);
        let _ = Ipv4Repr::parse(&p);
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (p.version(), p.traffic_class(), p.flow_label(), p.payload_len(), p.next_header());
        let _ = (p.hop_limit(), p.src_addr(), p.dst_addr(), p.payload().len());
        let _ = Ipv6Repr::parse(&p);
        if let Ok((_, at)) = p.upper_layer() {
            assert!(at <= b.len());
            let (s, d) = (p.src_addr(), p.dst_addr());
            exercise_l4_v6(&b[at..40 + usize::from(p.payload_len())], &s, &d);
        }
        let mut v = b.to_vec();
        let _ = Ipv6Packet::new_unchecked(&mut v[..]).payload_mut().len();
    }
}

fn exercise_tcp_options(o: &[u8]) {
    let mut n = 0;
    for opt in TcpOptions::new(o) {
        n += 1;
        assert!(n <= o.len() + 1, "option iterator must make progress");
        if let Ok(opt) = opt {
            let mut out = [0u8; 300];
            let _ = opt.emit(&mut out);
            let _ = opt.emit(&mut out[..2]);
        }
    }
}

fn exercise_l4(b: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    if let Ok(p) = TcpPacket::new_checked(b) {
        let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.header_len(), p.flags());
        let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.payload().len(), p.segment_len());
        let _ = (p.verify_checksum_v4(src, dst), p.verify_checksum_v6(&src.to_ipv6_mapped(), &dst.to_ipv6_mapped()));
        exercise_tcp_options(p.options());
        let _ = p.options_iter().count();
        let _ = TcpRepr::parse(&p, src, dst);
        let _ = TcpRepr::parse_unverified(&p);
        let mut v = b.to_vec();
        let mut q = TcpPacket::new_unchecked(&mut v[..]);
        q.fill_checksum_v4(src, dst);
        let _ = (q.options_mut().len(), q.payload_mut().len());
        let _ = TcpRepr::parse(&TcpPacket::new_unchecked(&v[..]), src, dst);
    }
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = (p.src_port(), p.dst_port(), p.len(), p.is_empty(), p.checksum(), p.payload().len());
        let _ = (p.verify_checksum_v4(src, dst), UdpRepr::parse(&p, src, dst));
        let mut v = b.to_vec();
        let mut q = UdpPacket::new_unchecked(&mut v[..]);
        q.fill_checksum_v4(src, dst);
        let _ = q.payload_mut().len();
    }
    if let Ok(p) = Icmpv4Packet::new_checked(b) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
        let _ = (p.rest_of_header(), p.next_hop_mtu(), p.data().len(), p.verify_checksum());
        let _ = p.msg_type().is_error();
        if let Ok(Icmpv4Repr::Error { invoking, .. }) = Icmpv4Repr::parse(&p) {
            let q = Ipv4Packet::new_checked_quoted(invoking).unwrap();
            exercise_ipv4_view(&q);
            let _ = TcpPacket::new_checked(q.payload_quoted()).map(|t| t.src_port());
        }
        let mut v = b.to_vec();
        let mut q = Icmpv4Packet::new_unchecked(&mut v[..]);
        q.fill_checksum();
        assert!(q.verify_checksum());
        let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&v[..]));
    }
}

fn exercise_l4_v6(b: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    if let Ok(p) = TcpPacket::new_checked(b) {
        let _ = TcpRepr::parse_v6(&p, src, dst);
    }
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = UdpRepr::parse_v6(&p, src, dst);
    }
    if let Ok(p) = Icmpv6Packet::new_checked(b) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.body().len(), p.verify_checksum(src, dst));
    }
}

fn exercise_proxy(b: &[u8]) {
    if let Ok((h, used)) = proxy::Header::parse(b) {
        assert!(used <= b.len() && used >= proxy::HEADER_LEN);
        let _ = (h.command(), h.transport(), h.addresses(), h.len(), h.as_bytes().len(), h.tlv_bytes().len());
        let mut n = 0;
        for t in h.tlvs() {
            n += 1;
            assert!(n <= used);
            let _ = t;
        }
    }
}

fn exercise_all(b: &[u8]) {
    exercise_ethernet(b);
    if let Ok(f) = EthernetFrame::new_checked(b) {
        let mut rest = f.payload();
        if let Ok(v) = VlanHeader::new_checked(rest) {
            rest = v.into_inner();
            rest = &rest[4..];
        }
        exercise_ip(rest);
    }
    exercise_ip(b);
    exercise_l4(b, A, B);
    exercise_l4_v6(b, &A.to_ipv6_mapped(), &B.to_ipv6_mapped());
    exercise_tcp_options(b);
    exercise_proxy(b);
}

/// Valid frames of every kind to truncate and mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Ethernet + VLAN + IPv4 + TCP with options and data.
    let tcp = TcpRepr {
        src_port: 50000,
        dst_port: 443,
        seq_number: SeqNumber(1),
        ack_number: Some(SeqNumber(2)),
        flags: TcpFlags::PSH,
        window_len: 100,
        max_seg_size: Some(1460),
        window_scale: Some(7),
        sack_permitted: false,
        sack_ranges: [Some((1, 2)), None, None],
        timestamp: Some((3, 4)),
        payload: b"hello",
    };
    let ip = Ipv4Repr {
        src_addr: A,
        dst_addr: B,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
        ident: 1,
        dont_frag: true,
        dscp: 0,
        ecn: 0,
    };
    let mut f = vec![0u8; 18 + 20 + tcp.buffer_len()];
    EthernetRepr { src_addr: EthernetAddress([2; 6]), dst_addr: EthernetAddress([4; 6]), ethertype: EtherType::Vlan }
        .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    VlanRepr { pcp: 1, dei: false, vlan_id: 5, ethertype: EtherType::Ipv4 }
        .emit(&mut VlanHeader::new_unchecked(&mut f[14..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[18..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut f[38..]), A, B);
    out.push(f.clone());
    let ip_tcp = f[18..].to_vec();
    out.push(ip_tcp.clone());
    // ICMP time exceeded quoting it.
    let err =
        Icmpv4Repr::Error { msg_type: Icmpv4Type::TimeExceeded, code: 0, rest_of_header: 0, invoking: &ip_tcp[..28] };
    let mut icmp = vec![0u8; err.buffer_len()];
    err.emit(&mut Icmpv4Packet::new_unchecked(&mut icmp[..]));
    let mut ip_icmp = vec![0u8; 20 + icmp.len()];
    Ipv4Repr { next_header: IpProtocol::Icmp, payload_len: icmp.len(), ..ip }
        .emit(&mut Ipv4Packet::new_unchecked(&mut ip_icmp[..]));
    ip_icmp[20..].copy_from_slice(&icmp);
    out.push(ip_icmp);
    // IPv4 + UDP.
    let mut u = vec![0u8; 20 + 8 + 4];
    Ipv4Repr { next_header: IpProtocol::Udp, payload_len: 12, ..ip }.emit(&mut Ipv4Packet::new_unchecked(&mut u[..]));
    UdpRepr { src_port: 1, dst_port: 2 }.emit(&mut UdpPacket::new_unchecked(&mut u[20..]), A, B, 4);
    out.push(u);
    // ARP.
    let mut arp = vec![0u8; 28];
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress([2; 6]),
        source_protocol_addr: A,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: B,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut arp[..]));
    out.push(arp);
    // IPv6 + hop-by-hop + fragment + TCP.
    let mut v6 = vec![0u8; 40];
    Ipv6Repr {
        src_addr: A.to_ipv6_mapped(),
        dst_addr: B.to_ipv6_mapped(),
        next_header: IpProtocol::HopByHop,
        payload_len: 16 + 20,
        hop_limit: 9,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut v6[..]));
    v6.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 1]);
    v6.extend_from_slice(&ip_tcp[20..40]);
    out.push(v6);
    // PROXY v2 with TLVs.
    let mut buf = [0u8; 64];
    let mut e = Encoder::new(
        &mut buf,
        Command::Proxy,
        Transport::Stream,
        Addresses::Ipv4 { src: SocketAddrV4::new(A, 1), dst: SocketAddrV4::new(B, 2) },
    )
    .unwrap();
    e.tlv(proxy::TLV_AZURE, &[1, 2, 3, 4, 5]).unwrap();
    e.pad_to(48).unwrap();
    let n = e.finish().unwrap();
    out.push(buf[..n].to_vec());
    out
}

#[test]
fn seeds_are_valid() {
    for s in seeds() {
        exercise_all(&s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..128)) {
        exercise_all(&b);
    }

    #[test]
    fn mutated_frames(which: prop::sample::Index, cut: prop::sample::Index,
                      flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)) {
        let seeds = seeds();
        let mut b = seeds[which.index(seeds.len())].clone();
        for (at, v) in flips {
            let i = at.index(b.len());
            b[i] = v;
        }
        let keep = cut.index(b.len() + 1);
        b.truncate(keep);
        exercise_all(&b);
    }

    #[test]
    fn tcp_option_bytes(o in proptest::collection::vec(prop_oneof![0u8..12, any::<u8>()], 0..48)) {
        exercise_tcp_options(&o);
        // Also as the option area of a real header.
        let mut b = vec![0u8; 20];
        b[12] = 0x50;
        b.extend_from_slice(&o[..o.len() / 4 * 4]);
        let words = u8::try_from(b.len() / 4).unwrap_or(15).min(15);
        b[12] = words << 4;
        exercise_l4(&b, A, B);
    }
}
