//! Frames the gateway writes itself: ARP replies and requests, ICMP echo replies, TCP resets and
//! ICMP errors. All of them are written into a pooled buffer (usually the one that arrived), never
//! into a fresh allocation.

use std::net::Ipv4Addr;

use io::PacketBuf;
use wire::{
    checksum, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet,
    Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr, VlanHeader,
};

/// Default TTL of packets the gateway originates.
pub const TTL: u8 = 64;
/// The most bytes of the offending packet an ICMP error quotes (RFC 1812 §4.3.2.3: the whole
/// error stays within 576 bytes).
pub const ICMP_QUOTE_MAX: usize = 576 - 20 - 8;

/// Writes an Ethernet header (with an 802.1Q tag when `vlan` is set) at the front of `buf`,
/// growing or shrinking the front from `current_l2` bytes to what is needed. Returns the new
/// L2 length, or `None` without headroom.
pub fn write_l2<B: PacketBuf>(
    buf: &mut B,
    current_l2: usize,
    dst: EthernetAddress,
    src: EthernetAddress,
    vlan: Option<u16>,
    ethertype: EtherType,
) -> Option<usize> {
    let l2 = if vlan.is_some() {
        EthernetFrame::<&[u8]>::HEADER_LEN + VlanHeader::<&[u8]>::HEADER_LEN
    } else {
        EthernetFrame::<&[u8]>::HEADER_LEN
    };
    if l2 > current_l2 {
        if !buf.prepend(l2 - current_l2) {
            return None;
        }
    } else if l2 < current_l2 && !buf.adj(current_l2 - l2) {
        return None;
    }
    let data = buf.data_mut();
    if data.len() < l2 {
        return None;
    }
    let mut frame = EthernetFrame::new_unchecked(&mut data[..]);
    frame.set_dst_addr(dst);
    frame.set_src_addr(src);
    match vlan {
        Some(id) => {
            frame.set_ethertype(EtherType::Vlan);
            let mut tag = VlanHeader::new_unchecked(&mut data[EthernetFrame::<&[u8]>::HEADER_LEN..]);
            tag.set_pcp(0);
            tag.set_dei(false);
            tag.set_vlan_id(id);
            tag.set_ethertype(ethertype);
        }
        None => frame.set_ethertype(ethertype),
    }
    Some(l2)
}

/// Turns an ARP request (at `l3`) into our reply: `our_mac` has `target`.
pub fn arp_reply_in_place<B: PacketBuf>(buf: &mut B, l3: usize, our_mac: EthernetAddress, request: &ArpRepr) -> bool {
    let ArpRepr::EthernetIpv4 { source_hardware_addr, source_protocol_addr, target_protocol_addr, .. } = *request;
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: our_mac,
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let len = l3 + reply.buffer_len();
    if !buf.set_len(len.max(buf.len().min(60))) && !buf.set_len(len) {
        return false;
    }
    let data = buf.data_mut();
    let mut arp = ArpPacket::new_unchecked(&mut data[l3..]);
    reply.emit(&mut arp);
    let mut frame = EthernetFrame::new_unchecked(&mut data[..]);
    frame.set_dst_addr(source_hardware_addr);
    frame.set_src_addr(our_mac);
    true
}

/// Writes a broadcast ARP request for `target` into `buf` (an empty pooled buffer).
pub fn arp_request<B: PacketBuf>(
    buf: &mut B,
    our_mac: EthernetAddress,
    our_ip: Ipv4Addr,
    vlan: Option<u16>,
    target: Ipv4Addr,
) -> bool {
    let request = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: our_mac,
        source_protocol_addr: our_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    if !buf.set_len(0) {
        return false;
    }
    let Some(l2) = write_l2(buf, 0, EthernetAddress::BROADCAST, our_mac, vlan, EtherType::Arp) else { return false };
    if !buf.set_len(l2 + request.buffer_len()) {
        return false;
    }
    let data = buf.data_mut();
    let mut frame = EthernetFrame::new_unchecked(&mut data[..]);
    frame.set_dst_addr(EthernetAddress::BROADCAST);
    frame.set_src_addr(our_mac);
    request.emit(&mut ArpPacket::new_unchecked(&mut data[l2..]));
    true
}

/// Turns an ICMP echo request (IPv4 at `l3`, ICMP at `l4`) into the reply, in place: swaps
/// addresses and MACs, type 8 → 0, fixes both checksums incrementally.
pub fn echo_reply_in_place<B: PacketBuf>(buf: &mut B, l3: usize, l4: usize, our_mac: EthernetAddress) -> bool {
    let data = buf.data_mut();
    let mut frame = EthernetFrame::new_unchecked(&mut data[..]);
    let peer = frame.src_addr();
    frame.set_dst_addr(peer);
    frame.set_src_addr(our_mac);
    let mut ip = Ipv4Packet::new_unchecked(&mut data[l3..]);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    let old_ttl_word = u16::from(ip.hop_limit()) << 8 | u16::from(u8::from(ip.next_header()));
    ip.set_hop_limit(TTL);
    let new_ttl_word = u16::from(TTL) << 8 | u16::from(u8::from(ip.next_header()));
    let sum = checksum::update16(ip.checksum(), old_ttl_word, new_ttl_word);
    ip.set_checksum(sum);
    // Type 8 → 0 in the first byte of the ICMP header: the word (type, code) loses 0x0800.
    let icmp = &mut data[l4..];
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    icmp[0] = 0;
    let new = u16::from_be_bytes([icmp[0], icmp[1]]);
    let old_sum = u16::from_be_bytes([icmp[2], icmp[3]]);
    let sum = checksum::update16(old_sum, old, new);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    true
}

/// The addresses of a TCP reset.
#[derive(Clone, Copy, Debug)]
pub struct ResetTo {
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number, when the ACK flag is set.
    pub ack: Option<u32>,
}

impl ResetTo {
    /// The reset answering `segment` (RFC 9293 §3.10.7.1): from its destination to its source.
    pub fn answering(
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        seq: SeqNumber,
        ack: SeqNumber,
        flags: TcpFlags,
        payload_len: usize,
    ) -> Self {
        if flags.contains(TcpFlags::ACK) {
            ResetTo { src: dst, dst: src, seq: ack.0, ack: None }
        } else {
            let mut len = payload_len;
            if flags.contains(TcpFlags::SYN) {
                len += 1;
            }
            if flags.contains(TcpFlags::FIN) {
                len += 1;
            }
            ResetTo { src: dst, dst: src, seq: 0, ack: Some((seq + len).0) }
        }
    }
}

/// Writes an IPv4 TCP reset at `l3` (the L2 header must already be in place) and sets the
/// frame length.
pub fn tcp_reset<B: PacketBuf>(buf: &mut B, l3: usize, reset: &ResetTo) -> bool {
    let flags = if reset.ack.is_some() { TcpFlags::RST | TcpFlags::ACK } else { TcpFlags::RST };
    let tcp = TcpRepr {
        src_port: reset.src.1,
        dst_port: reset.dst.1,
        seq_number: SeqNumber(reset.seq),
        ack_number: reset.ack.map(SeqNumber),
        flags,
        window_len: 0,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    emit_tcp(buf, l3, reset.src.0, reset.dst.0, 0, &tcp)
}

/// Writes an IPv4 header (DF, TTL [`TTL`], Not-ECT) and `tcp` at `l3`, and sets the frame length.
fn emit_tcp<B: PacketBuf>(buf: &mut B, l3: usize, src: Ipv4Addr, dst: Ipv4Addr, ident: u16, tcp: &TcpRepr) -> bool {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: TTL,
        ident,
        dont_frag: true,
        dscp: 0,
        ecn: 0,
    };
    let total = l3 + ip.buffer_len() + tcp.buffer_len();
    if !buf.set_len(total) {
        return false;
    }
    let data = buf.data_mut();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut data[l3..]));
    let l4 = l3 + ip.buffer_len();
    tcp.emit(&mut TcpPacket::new_unchecked(&mut data[l4..]), src, dst);
    true
}

/// Turns the IPv4 packet at `l3` of `buf` into an ICMP error (`icmp_type`/`code`, e.g. 11/0
/// time exceeded) from `src` to `dst` quoting it (cut to [`ICMP_QUOTE_MAX`]), in place: the
/// quote moves back by the new headers. The L2 header in front of `l3` is left for the caller.
#[allow(clippy::too_many_arguments)]
pub fn icmp_error_in_place<B: PacketBuf>(
    buf: &mut B,
    l3: usize,
    quote_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest_of_header: u32,
) -> bool {
    let quote_len = quote_len.min(ICMP_QUOTE_MAX).min(buf.len().saturating_sub(l3));
    let icmp_len = 8 + quote_len;
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp_len,
        hop_limit: TTL,
        ident: 0,
        dont_frag: false,
        dscp: 0,
        ecn: 0,
    };
    let l4 = l3 + ip.buffer_len();
    let end = l4 + icmp_len;
    if end > buf.len() + buf.tailroom() || !buf.set_len(end.max(l3 + quote_len)) {
        return false;
    }
    let data = buf.data_mut();
    data.copy_within(l3..l3 + quote_len, l4 + 8);
    if !buf.set_len(end) {
        return false;
    }
    let data = buf.data_mut();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut data[l3..]));
    let icmp = &mut data[l4..end];
    icmp[0] = icmp_type;
    icmp[1] = code;
    icmp[2..4].copy_from_slice(&[0, 0]);
    icmp[4..8].copy_from_slice(&rest_of_header.to_be_bytes());
    let sum = checksum::data(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    true
}

/// A TCP segment the gateway builds itself (the PROXY v2 header segment it retransmits).
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (the ACK flag is set).
    pub ack: u32,
    /// Flags (ACK is forced on).
    pub flags: TcpFlags,
    /// Window, unscaled as on the wire.
    pub window: u16,
    /// The timestamps option, when the connection uses it.
    pub timestamps: Option<(u32, u32)>,
    /// IPv4 identification.
    pub ident: u16,
}

/// Writes an IPv4 TCP segment with `payload` at `l3` (DF set, ECN Not-ECT: RFC 3168 forbids ECT
/// on retransmissions) and sets the frame length.
pub fn tcp_segment<B: PacketBuf>(buf: &mut B, l3: usize, segment: &Segment, payload: &[u8]) -> bool {
    let tcp = TcpRepr {
        src_port: segment.src.1,
        dst_port: segment.dst.1,
        seq_number: SeqNumber(segment.seq),
        ack_number: Some(SeqNumber(segment.ack)),
        flags: segment.flags | TcpFlags::ACK,
        window_len: segment.window,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: segment.timestamps,
        payload,
    };
    emit_tcp(buf, l3, segment.src.0, segment.dst.0, segment.ident, &tcp)
}
