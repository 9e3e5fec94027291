//! Independent oracles: frames we emit must parse identically with etherparse, frames
//! etherparse builds must parse identically with ours, and PROXY v2 headers we emit must
//! parse with the `ppp` crate to the same addresses and TLVs.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use etherparse::{
    IpNumber, Ipv4Extensions, LinkHeader, NetHeaders, PacketBuilder, PacketHeaders, SingleVlanHeader, TcpOptionElement,
    TransportHeader, VlanId, VlanPcp,
};
use proptest::prelude::*;
use wire::proxy::{self, Addresses, Command, Encoder, Transport};
use wire::*;

#[derive(Debug, Clone)]
enum L4 {
    Tcp(Box<TcpFields>),
    Udp { src_port: u16, dst_port: u16 },
    Echo { request: bool, ident: u16, seq_no: u16 },
}

#[derive(Debug, Clone)]
struct TcpFields {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: Option<u32>,
    flags: u16,
    window: u16,
    mss: Option<u16>,
    ws: Option<u8>,
    sack_permitted: bool,
    sacks: Vec<(u32, u32)>,
    ts: Option<(u32, u32)>,
}

impl TcpFields {
    fn repr<'a>(&self, payload: &'a [u8]) -> TcpRepr<'a> {
        let mut sack_ranges = [None; 3];
        for (slot, r) in sack_ranges.iter_mut().zip(&self.sacks) {
            *slot = Some(*r);
        }
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq_number: SeqNumber(self.seq),
            ack_number: self.ack.map(SeqNumber),
            flags: TcpFlags(self.flags).with(TcpFlags::ACK, self.ack.is_some()),
            window_len: self.window,
            max_seg_size: self.mss,
            window_scale: self.ws,
            sack_permitted: self.sack_permitted,
            sack_ranges,
            timestamp: self.ts,
            payload,
        }
    }
}

fn tcp_fields() -> impl Strategy<Value = TcpFields> {
    (
        (any::<u16>(), any::<u16>(), any::<u32>(), proptest::option::of(any::<u32>()), 0u16..0x200, any::<u16>()),
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..15),
            any::<bool>(),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=3),
            proptest::option::of((any::<u32>(), any::<u32>())),
        ),
    )
        .prop_map(|((src_port, dst_port, seq, ack, flags, window), (mss, ws, sack_permitted, sacks, ts))| {
            // Keep options within 40 bytes so both sides see every block.
            let mut f = TcpFields { src_port, dst_port, seq, ack, flags, window, mss, ws, sack_permitted, sacks, ts };
            while f.repr(&[]).header_len() > 60
                || 4 * usize::from(f.mss.is_some())
                    + 3 * usize::from(f.ws.is_some())
                    + 2 * usize::from(f.sack_permitted)
                    + 10 * usize::from(f.ts.is_some())
                    + if f.sacks.is_empty() { 0 } else { 2 + 8 * f.sacks.len() }
                    > 40
            {
                f.sacks.pop();
            }
            f
        })
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        tcp_fields().prop_map(|f| L4::Tcp(Box::new(f))),
        (any::<u16>(), any::<u16>()).prop_map(|(src_port, dst_port)| L4::Udp { src_port, dst_port }),
        (any::<bool>(), any::<u16>(), any::<u16>()).prop_map(|(request, ident, seq_no)| L4::Echo {
            request,
            ident,
            seq_no
        }),
    ]
}

#[derive(Debug, Clone)]
struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<(u8, bool, u16)>,
    ip: Ipv4Repr,
    l4: L4,
    payload: Vec<u8>,
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        proptest::option::of((0u8..8, any::<bool>(), 0u16..4096)),
        (any::<[u8; 4]>(), any::<[u8; 4]>(), 1u8..=255, any::<u16>(), any::<bool>(), 0u8..64, 0u8..4),
        l4(),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(src_mac, dst_mac, vlan, (s, d, ttl, ident, df, dscp, ecn), l4, payload)| {
            let next_header = match l4 {
                L4::Tcp(_) => IpProtocol::Tcp,
                L4::Udp { .. } => IpProtocol::Udp,
                L4::Echo { .. } => IpProtocol::Icmp,
            };
            let ip = Ipv4Repr {
                src_addr: s.into(),
                dst_addr: d.into(),
                next_header,
                payload_len: 0,
                hop_limit: ttl,
                ident,
                dont_frag: df,
                dscp,
                ecn,
            };
            Frame { src_mac, dst_mac, vlan, ip, l4, payload }
        })
}

/// Builds the frame with our emitters.
fn emit_ours(f: &Frame) -> Vec<u8> {
    let l4_len = match &f.l4 {
        L4::Tcp(t) => t.repr(&f.payload).buffer_len(),
        L4::Udp { .. } => 8 + f.payload.len(),
        L4::Echo { .. } => 8 + f.payload.len(),
    };
    let l2 = 14 + if f.vlan.is_some() { 4 } else { 0 };
    let mut buf = vec![0u8; l2 + 20 + l4_len];
    let eth = EthernetRepr {
        src_addr: EthernetAddress(f.src_mac),
        dst_addr: EthernetAddress(f.dst_mac),
        ethertype: if f.vlan.is_some() { EtherType::Vlan } else { EtherType::Ipv4 },
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    if let Some((pcp, dei, vlan_id)) = f.vlan {
        VlanRepr { pcp, dei, vlan_id, ethertype: EtherType::Ipv4 }.emit(&mut VlanHeader::new_unchecked(&mut buf[14..]));
    }
    let ip = Ipv4Repr { payload_len: l4_len, ..f.ip };
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[l2..]));
    let l4 = &mut buf[l2 + 20..];
    let (src, dst) = (f.ip.src_addr, f.ip.dst_addr);
    match &f.l4 {
        L4::Tcp(t) => t.repr(&f.payload).emit(&mut TcpPacket::new_unchecked(&mut l4[..]), src, dst),
        L4::Udp { src_port, dst_port } => {
            l4[8..].copy_from_slice(&f.payload);
            UdpRepr { src_port: *src_port, dst_port: *dst_port }.emit(
                &mut UdpPacket::new_unchecked(&mut l4[..]),
                src,
                dst,
                f.payload.len(),
            );
        }
        L4::Echo { request, ident, seq_no } => {
            let r = if *request {
                Icmpv4Repr::EchoRequest { ident: *ident, seq_no: *seq_no, data: &f.payload }
            } else {
                Icmpv4Repr::EchoReply { ident: *ident, seq_no: *seq_no, data: &f.payload }
            };
            r.emit(&mut Icmpv4Packet::new_unchecked(&mut l4[..]));
        }
    }
    buf
}

/// Builds the frame with etherparse.
fn emit_etherparse(f: &Frame) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(f.src_mac, f.dst_mac);
    let ip = match f.vlan {
        Some((pcp, dei, vlan_id)) => eth
            .vlan(etherparse::VlanHeader::Single(SingleVlanHeader {
                pcp: VlanPcp::try_new(pcp).unwrap(),
                drop_eligible_indicator: dei,
                vlan_id: VlanId::try_new(vlan_id).unwrap(),
                ether_type: etherparse::EtherType(0),
            }))
            .ipv4(f.ip.src_addr.octets(), f.ip.dst_addr.octets(), f.ip.hop_limit),
        None => eth.ipv4(f.ip.src_addr.octets(), f.ip.dst_addr.octets(), f.ip.hop_limit),
    };
    let mut out = Vec::new();
    match &f.l4 {
        L4::Tcp(t) => {
            let mut b = ip.tcp(t.src_port, t.dst_port, t.seq, t.window);
            let fl = TcpFlags(t.flags);
            if fl.contains(TcpFlags::NS) {
                b = b.ns();
            }
            if fl.fin() {
                b = b.fin();
            }
            if fl.syn() {
                b = b.syn();
            }
            if fl.rst() {
                b = b.rst();
            }
            if fl.psh() {
                b = b.psh();
            }
            if let Some(a) = t.ack {
                b = b.ack(a);
            }
            if fl.urg() {
                b = b.urg(0);
            }
            if fl.contains(TcpFlags::ECE) {
                b = b.ece();
            }
            if fl.contains(TcpFlags::CWR) {
                b = b.cwr();
            }
            let mut opts = Vec::new();
            if let Some(m) = t.mss {
                opts.push(TcpOptionElement::MaximumSegmentSize(m));
            }
            if let Some(w) = t.ws {
                opts.push(TcpOptionElement::WindowScale(w));
            }
            if t.sack_permitted {
                opts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
            }
            if let Some((a, e)) = t.ts {
                opts.push(TcpOptionElement::Timestamp(a, e));
            }
            if let Some((first, rest)) = t.sacks.split_first() {
                let mut more = [None; 3];
                for (slot, r) in more.iter_mut().zip(rest) {
                    *slot = Some(*r);
                }
                opts.push(TcpOptionElement::SelectiveAcknowledgement(*first, more));
            }
            let b = b.options(&opts).unwrap();
            b.write(&mut out, &f.payload).unwrap();
        }
        L4::Udp { src_port, dst_port } => ip.udp(*src_port, *dst_port).write(&mut out, &f.payload).unwrap(),
        L4::Echo { request: true, ident, seq_no } => {
            ip.icmpv4_echo_request(*ident, *seq_no).write(&mut out, &f.payload).unwrap()
        }
        L4::Echo { request: false, ident, seq_no } => {
            ip.icmpv4_echo_reply(*ident, *seq_no).write(&mut out, &f.payload).unwrap()
        }
    }
    out
}

/// Parses a frame with our views and checks every field against `f`.
fn check_ours(f: &Frame, bytes: &[u8], check_ip_extras: bool) -> std::result::Result<(), TestCaseError> {
    let eth = EthernetFrame::new_checked(bytes).unwrap();
    prop_assert_eq!(eth.src_addr(), EthernetAddress(f.src_mac));
    prop_assert_eq!(eth.dst_addr(), EthernetAddress(f.dst_mac));
    let ip_bytes = match f.vlan {
        Some((pcp, dei, vlan_id)) => {
            prop_assert_eq!(eth.ethertype(), EtherType::Vlan);
            let tag = VlanHeader::new_checked(eth.payload()).unwrap();
            prop_assert_eq!(VlanRepr::parse(&tag).unwrap(), VlanRepr { pcp, dei, vlan_id, ethertype: EtherType::Ipv4 });
            &eth.payload()[4..]
        }
        None => {
            prop_assert_eq!(eth.ethertype(), EtherType::Ipv4);
            eth.payload()
        }
    };
    let ip = Ipv4Packet::new_checked(ip_bytes).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip).unwrap();
    prop_assert_eq!(ip_repr.src_addr, f.ip.src_addr);
    prop_assert_eq!(ip_repr.dst_addr, f.ip.dst_addr);
    prop_assert_eq!(ip_repr.hop_limit, f.ip.hop_limit);
    prop_assert_eq!(ip_repr.next_header, f.ip.next_header);
    if check_ip_extras {
        prop_assert_eq!(ip_repr, Ipv4Repr { payload_len: ip_repr.payload_len, ..f.ip });
    }
    let (src, dst) = (f.ip.src_addr, f.ip.dst_addr);
    let l4 = ip.payload();
    match &f.l4 {
        L4::Tcp(t) => {
            let p = TcpPacket::new_checked(l4).unwrap();
            prop_assert_eq!(TcpRepr::parse(&p, src, dst).unwrap(), t.repr(&f.payload));
        }
        L4::Udp { src_port, dst_port } => {
            let p = UdpPacket::new_checked(l4).unwrap();
            prop_assert_eq!(
                UdpRepr::parse(&p, src, dst).unwrap(),
                UdpRepr { src_port: *src_port, dst_port: *dst_port }
            );
            prop_assert_eq!(p.payload(), &f.payload[..]);
        }
        L4::Echo { request, ident, seq_no } => {
            let p = Icmpv4Packet::new_checked(l4).unwrap();
            let expect = if *request {
                Icmpv4Repr::EchoRequest { ident: *ident, seq_no: *seq_no, data: &f.payload }
            } else {
                Icmpv4Repr::EchoReply { ident: *ident, seq_no: *seq_no, data: &f.payload }
            };
            prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), expect);
        }
    }
    Ok(())
}

/// Parses a frame with etherparse and checks every field against `f`.
fn check_etherparse(f: &Frame, bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    let h = PacketHeaders::from_ethernet_slice(bytes).unwrap();
    let Some(LinkHeader::Ethernet2(eth)) = h.link else { panic!("no ethernet") };
    prop_assert_eq!(eth.source, f.src_mac);
    prop_assert_eq!(eth.destination, f.dst_mac);
    match (f.vlan, &h.vlan) {
        (Some((pcp, dei, vlan_id)), Some(etherparse::VlanHeader::Single(v))) => {
            prop_assert_eq!(v.pcp.value(), pcp);
            prop_assert_eq!(v.drop_eligible_indicator, dei);
            prop_assert_eq!(v.vlan_id.value(), vlan_id);
            prop_assert_eq!(v.ether_type, etherparse::EtherType::IPV4);
        }
        (None, None) => prop_assert_eq!(eth.ether_type, etherparse::EtherType::IPV4),
        other => panic!("vlan mismatch {other:?}"),
    }
    let Some(NetHeaders::Ipv4(ip, ext)) = &h.net else { panic!("no ipv4") };
    prop_assert_eq!(ext, &Ipv4Extensions::default());
    prop_assert_eq!(ip.source, f.ip.src_addr.octets());
    prop_assert_eq!(ip.destination, f.ip.dst_addr.octets());
    prop_assert_eq!(ip.time_to_live, f.ip.hop_limit);
    prop_assert_eq!(ip.identification, f.ip.ident);
    prop_assert_eq!(ip.dont_fragment, f.ip.dont_frag);
    prop_assert!(!ip.more_fragments);
    prop_assert_eq!(ip.dscp.value(), f.ip.dscp);
    prop_assert_eq!(ip.ecn.value(), f.ip.ecn);
    prop_assert_eq!(ip.protocol, IpNumber(u8::from(f.ip.next_header)));
    prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    let (src, dst) = (f.ip.src_addr.octets(), f.ip.dst_addr.octets());
    match (&f.l4, &h.transport) {
        (L4::Tcp(t), Some(TransportHeader::Tcp(tcp))) => {
            prop_assert_eq!((tcp.source_port, tcp.destination_port), (t.src_port, t.dst_port));
            prop_assert_eq!(tcp.sequence_number, t.seq);
            prop_assert_eq!(tcp.ack, t.ack.is_some());
            prop_assert_eq!(tcp.acknowledgment_number, t.ack.unwrap_or(0));
            let fl = TcpFlags(t.flags);
            prop_assert_eq!(
                (tcp.fin, tcp.syn, tcp.rst, tcp.psh, tcp.urg, tcp.ece, tcp.cwr, tcp.ns),
                (
                    fl.fin(),
                    fl.syn(),
                    fl.rst(),
                    fl.psh(),
                    fl.urg(),
                    fl.contains(TcpFlags::ECE),
                    fl.contains(TcpFlags::CWR),
                    fl.contains(TcpFlags::NS)
                )
            );
            prop_assert_eq!(tcp.window_size, t.window);
            prop_assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4_raw(src, dst, &f.payload).unwrap());
            let (mut mss, mut ws, mut sp, mut ts, mut sacks) = (None, None, false, None, Vec::new());
            for o in tcp.options.elements_iter() {
                match o.unwrap() {
                    TcpOptionElement::Noop => {}
                    TcpOptionElement::MaximumSegmentSize(v) => mss = Some(v),
                    TcpOptionElement::WindowScale(v) => ws = Some(v),
                    TcpOptionElement::SelectiveAcknowledgementPermitted => sp = true,
                    TcpOptionElement::Timestamp(a, b) => ts = Some((a, b)),
                    TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                        sacks.push(first);
                        sacks.extend(rest.iter().flatten());
                    }
                }
            }
            prop_assert_eq!((mss, ws, sp, ts), (t.mss, t.ws, t.sack_permitted, t.ts));
            prop_assert_eq!(sacks, t.sacks.clone());
            prop_assert_eq!(h.payload.slice(), &f.payload[..]);
        }
        (L4::Udp { src_port, dst_port }, Some(TransportHeader::Udp(udp))) => {
            prop_assert_eq!((udp.source_port, udp.destination_port), (*src_port, *dst_port));
            prop_assert_eq!(usize::from(udp.length), 8 + f.payload.len());
            prop_assert_eq!(udp.checksum, udp.calc_checksum_ipv4_raw(src, dst, &f.payload).unwrap());
            prop_assert_eq!(h.payload.slice(), &f.payload[..]);
        }
        (L4::Echo { request, ident, seq_no }, Some(TransportHeader::Icmpv4(icmp))) => {
            let echo = match (request, &icmp.icmp_type) {
                (true, etherparse::Icmpv4Type::EchoRequest(e)) | (false, etherparse::Icmpv4Type::EchoReply(e)) => e,
                other => panic!("icmp type mismatch {other:?}"),
            };
            prop_assert_eq!((echo.id, echo.seq), (*ident, *seq_no));
            prop_assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(&f.payload));
            prop_assert_eq!(h.payload.slice(), &f.payload[..]);
        }
        other => panic!("transport mismatch {other:?}"),
    }
    Ok(())
}

proptest! {
    #[test]
    fn ours_parse_with_etherparse(f in frame()) {
        let bytes = emit_ours(&f);
        check_etherparse(&f, &bytes)?;
        check_ours(&f, &bytes, true)?;
    }

    #[test]
    fn etherparse_frames_parse_with_ours(f in frame()) {
        let bytes = emit_etherparse(&f);
        // etherparse sets DF and leaves ident/DSCP/ECN zero: compare those separately.
        let ip_at = 14 + if f.vlan.is_some() { 4 } else { 0 };
        let ip = Ipv4Packet::new_checked(&bytes[ip_at..]).unwrap();
        prop_assert!(ip.dont_frag());
        prop_assert_eq!((ip.ident(), ip.dscp(), ip.ecn()), (0, 0, 0));
        check_ours(&f, &bytes, false)?;
        // Byte-for-byte: the same frame emitted by us with etherparse's IPv4 defaults.
        let same = Frame { ip: Ipv4Repr { ident: 0, dont_frag: true, dscp: 0, ecn: 0, ..f.ip }, ..f.clone() };
        if !matches!(&f.l4, L4::Tcp(_)) {
            prop_assert_eq!(emit_ours(&same), bytes);
        }
    }

    #[test]
    fn ipv6_tcp_udp_with_etherparse(src: [u8; 16], dst: [u8; 16], hop: u8, tcp in tcp_fields(), udp: bool,
                                    payload in proptest::collection::vec(any::<u8>(), 0..40)) {
        let (s6, d6) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
        let tr = tcp.repr(&payload);
        let l4_len = if udp { 8 + payload.len() } else { tr.buffer_len() };
        let mut buf = vec![0u8; 40 + l4_len];
        let ip = Ipv6Repr { src_addr: s6, dst_addr: d6, next_header: if udp { IpProtocol::Udp } else { IpProtocol::Tcp }, payload_len: l4_len, hop_limit: hop };
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        if udp {
            buf[48..].copy_from_slice(&payload);
            UdpRepr { src_port: tcp.src_port, dst_port: tcp.dst_port }.emit_v6(&mut UdpPacket::new_unchecked(&mut buf[40..]), &s6, &d6, payload.len());
        } else {
            tr.emit_v6(&mut TcpPacket::new_unchecked(&mut buf[40..]), &s6, &d6);
        }
        let h = PacketHeaders::from_ip_slice(&buf).unwrap();
        let Some(NetHeaders::Ipv6(v6, _)) = &h.net else { panic!("no ipv6") };
        prop_assert_eq!((v6.source, v6.destination, v6.hop_limit), (src, dst, hop));
        prop_assert_eq!(usize::from(v6.payload_length), l4_len);
        match &h.transport {
            Some(TransportHeader::Udp(u)) => {
                prop_assert!(udp);
                prop_assert_eq!(u.checksum, u.calc_checksum_ipv6_raw(src, dst, &payload).unwrap());
            }
            Some(TransportHeader::Tcp(t)) => {
                prop_assert!(!udp);
                prop_assert_eq!(t.checksum, t.calc_checksum_ipv6_raw(src, dst, &payload).unwrap());
                prop_assert_eq!(t.sequence_number, tcp.seq);
            }
            other => panic!("transport {other:?}"),
        }
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.upper_layer().unwrap().1, 40);
    }
}

#[test]
fn etherparse_ipv6_extension_headers_walk() {
    // etherparse builds IPv6 + hop-by-hop + fragment + UDP; our walk must find UDP.
    // M stays clear: etherparse 0.16's Ipv6FragmentHeader::to_bytes puts the M flag in bit 7
    // of byte 3 (RFC 8200 §4.5 has it in bit 0), which reads as a non-first fragment.
    use etherparse::{IpFragOffset, Ipv6Extensions, Ipv6FragmentHeader, Ipv6RawExtHeader};
    let hbh = Ipv6RawExtHeader::new_raw(IpNumber::IPV6_FRAGMENTATION_HEADER, &[1, 4, 0, 0, 0, 0]).unwrap();
    let frag = Ipv6FragmentHeader::new(IpNumber::UDP, IpFragOffset::ZERO, false, 0xdead_beef);
    let ext = Ipv6Extensions { hop_by_hop_options: Some(hbh), fragment: Some(frag), ..Default::default() };
    let ip = etherparse::IpHeaders::Ipv6(
        etherparse::Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: 0,
            next_header: IpNumber::IPV6_HEADER_HOP_BY_HOP,
            hop_limit: 64,
            source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        },
        ext,
    );
    let mut out = Vec::new();
    PacketBuilder::ip(ip).udp(1000, 53).write(&mut out, b"hello").unwrap();
    let p = Ipv6Packet::new_checked(&out[..]).unwrap();
    let (proto, at) = p.upper_layer().unwrap();
    assert_eq!((proto, at), (IpProtocol::Udp, 56));
    let udp = UdpPacket::new_checked(&out[at..]).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port(), udp.payload()), (1000, 53, &b"hello"[..]));
}

// ---------------------------------------------------------------- PROXY v2 against ppp

fn ppp_addresses(a: &Addresses) -> ppp::v2::Addresses {
    match *a {
        Addresses::Unspec => ppp::v2::Addresses::Unspecified,
        Addresses::Ipv4 { src, dst } => (SocketAddr::V4(src), SocketAddr::V4(dst)).into(),
        Addresses::Ipv6 { src, dst } => (SocketAddr::V6(src), SocketAddr::V6(dst)).into(),
    }
}

fn addresses() -> impl Strategy<Value = Addresses> {
    prop_oneof![
        Just(Addresses::Unspec),
        (any::<[u8; 4]>(), any::<u16>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| Addresses::Ipv4 {
            src: SocketAddrV4::new(s.into(), sp),
            dst: SocketAddrV4::new(d.into(), dp)
        }),
        (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(s, sp, d, dp)| {
            Addresses::Ipv6 { src: SocketAddrV6::new(s.into(), sp, 0, 0), dst: SocketAddrV6::new(d.into(), dp, 0, 0) }
        }),
    ]
}

fn check_with_ppp(
    bytes: &[u8],
    command: Command,
    transport: Transport,
    addresses: &Addresses,
    tlvs: &[(u8, Vec<u8>)],
) -> std::result::Result<(), TestCaseError> {
    let h = ppp::v2::Header::try_from(bytes).unwrap();
    prop_assert_eq!(h.len(), bytes.len());
    prop_assert_eq!(
        h.command,
        match command {
            Command::Local => ppp::v2::Command::Local,
            Command::Proxy => ppp::v2::Command::Proxy,
        }
    );
    let expect_protocol = match (addresses, transport) {
        (Addresses::Unspec, _) => ppp::v2::Protocol::Unspecified,
        (_, Transport::Stream) => ppp::v2::Protocol::Stream,
        (_, Transport::Datagram) => ppp::v2::Protocol::Datagram,
    };
    prop_assert_eq!(h.protocol, expect_protocol);
    prop_assert_eq!(h.addresses, ppp_addresses(addresses));
    let got: Vec<(u8, Vec<u8>)> = h.tlvs().map(|t| t.unwrap()).map(|t| (t.kind, t.value.to_vec())).collect();
    if addresses.is_empty() {
        // Like HAProxy, ppp reads no TLVs after AF_UNSPEC: the whole payload is "addresses".
        prop_assert!(got.is_empty());
        let (ours, _) = proxy::Header::parse(bytes).unwrap();
        prop_assert_eq!(h.address_bytes(), ours.tlv_bytes());
    } else {
        prop_assert_eq!(got, tlvs.to_vec());
    }
    Ok(())
}

#[test]
fn ppp_parses_azure_vector_and_local() {
    let addresses = Addresses::Ipv4 {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 4), 50000),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 443),
    };
    let mut buf = [0u8; 107];
    let mut e = Encoder::new(&mut buf, Command::Proxy, Transport::Stream, addresses).unwrap();
    e.tlv_parts(proxy::TLV_AZURE, &[&[0x01], &0x1234_5678u32.to_le_bytes()]).unwrap();
    e.pad_to_even().unwrap();
    let n = e.finish().unwrap();
    assert_eq!(n, 36);
    check_with_ppp(
        &buf[..n],
        Command::Proxy,
        Transport::Stream,
        &addresses,
        &[(0xEE, vec![0x01, 0x78, 0x56, 0x34, 0x12])],
    )
    .unwrap();
    let mut buf = [0u8; 16];
    let n = Encoder::new(&mut buf, Command::Local, Transport::Stream, Addresses::Unspec).unwrap().finish().unwrap();
    check_with_ppp(&buf[..n], Command::Local, Transport::Stream, &Addresses::Unspec, &[]).unwrap();
}

proptest! {
    #[test]
    fn proxy_headers_parse_with_ppp(
        local: bool,
        datagram: bool,
        addresses in addresses(),
        tlvs in proptest::collection::vec(
            (prop_oneof![Just(proxy::TLV_AZURE), Just(proxy::TLV_AWS), Just(proxy::TLV_UNIQUE_ID), Just(proxy::TLV_ALPN), any::<u8>()],
             proptest::collection::vec(any::<u8>(), 0..30)),
            0..4),
        pad_even: bool,
        pad_to_extra in proptest::option::of(3usize..40),
    ) {
        let command = if local { Command::Local } else { Command::Proxy };
        let transport = if datagram { Transport::Datagram } else { Transport::Stream };
        let mut buf = [0u8; 400];
        let mut e = Encoder::new(&mut buf, command, transport, addresses).unwrap();
        let mut expect = Vec::new();
        for (k, v) in &tlvs {
            e.tlv(*k, v).unwrap();
            expect.push((*k, v.clone()));
        }
        if pad_even && e.len() % 2 == 1 {
            e.pad_to_even().unwrap();
            expect.push((proxy::TLV_NOOP, Vec::new()));
        }
        if let Some(extra) = pad_to_extra {
            let target = e.len() + extra;
            e.pad_to(target).unwrap();
            expect.push((proxy::TLV_NOOP, vec![0; extra - 3]));
        }
        let n = e.finish().unwrap();
        if pad_even && pad_to_extra.is_none() {
            prop_assert_eq!(n % 2, 0);
        }
        check_with_ppp(&buf[..n], command, transport, &addresses, &expect)?;
        // And our own decoder agrees.
        let (h, used) = proxy::Header::parse(&buf[..n]).unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(h.addresses(), addresses);
        let ours: Vec<(u8, Vec<u8>)> = h.tlvs().map(|t| t.unwrap()).map(|(k, v)| (k, v.to_vec())).collect();
        prop_assert_eq!(ours, expect);
    }

    #[test]
    fn ppp_built_headers_parse_with_ours(addresses in addresses(), local: bool, datagram: bool,
                                         tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..20)), 0..4)) {
        let command = if local { ppp::v2::Command::Local } else { ppp::v2::Command::Proxy };
        let protocol = match (&addresses, datagram) {
            (Addresses::Unspec, _) => ppp::v2::Protocol::Unspecified,
            (_, false) => ppp::v2::Protocol::Stream,
            (_, true) => ppp::v2::Protocol::Datagram,
        };
        let mut b = ppp::v2::Builder::with_addresses(ppp::v2::Version::Two | command, protocol, ppp_addresses(&addresses));
        for (k, v) in &tlvs {
            b = b.write_tlv(*k, v).unwrap();
        }
        let bytes = b.build().unwrap();
        let (h, used) = proxy::Header::parse(&bytes).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(h.command(), if local { Command::Local } else { Command::Proxy });
        prop_assert_eq!(h.addresses(), addresses);
        let ours: Vec<(u8, Vec<u8>)> = h.tlvs().map(|t| t.unwrap()).map(|(k, v)| (k, v.to_vec())).collect();
        prop_assert_eq!(ours, tlvs);
    }
}
