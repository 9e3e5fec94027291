//! Repairs of what the kernel did to a frame before the tap: a stripped VLAN tag and a partial
//! (`CHECKSUM_PARTIAL`) L4 checksum. Pure functions over byte slices, no `unsafe`.

use std::net::{Ipv4Addr, Ipv6Addr};

use wire::checksum;

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Why a partial checksum could not be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumError {
    /// The headers are cut short or inconsistent.
    Malformed,
    /// Not TCP or UDP over IPv4/IPv6 (or a fragment, or behind an IPv6 fragment header).
    Unsupported,
}

/// Writes `frame` (an Ethernet frame whose outer tag the kernel stripped) into `out` with the
/// tag `tpid`/`tci` re-inserted after the MAC addresses. `out` must be `frame.len() + 4` long
/// and `frame` at least 12 bytes.
pub fn copy_with_vlan(frame: &[u8], tpid: u16, tci: u16, out: &mut [u8]) {
    out[..12].copy_from_slice(&frame[..12]);
    out[12..14].copy_from_slice(&tpid.to_be_bytes());
    out[14..16].copy_from_slice(&tci.to_be_bytes());
    out[16..].copy_from_slice(&frame[12..]);
}

fn be16(b: &[u8], at: usize) -> Result<u16, CsumError> {
    match b.get(at..at + 2) {
        Some(w) => Ok(u16::from_be_bytes([w[0], w[1]])),
        None => Err(CsumError::Malformed),
    }
}

/// Computes and writes the full TCP or UDP checksum of an Ethernet frame whose checksum field
/// holds only the pseudo-header sum (`TP_STATUS_CSUMNOTREADY`). VLAN tags in the frame are
/// skipped. Returns the L4 protocol fixed.
pub fn complete_l4_checksum(frame: &mut [u8]) -> Result<u8, CsumError> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        at += 4;
        ethertype = be16(frame, at)?;
    }
    let l3 = at + 2;
    match ethertype {
        ETHERTYPE_IPV4 => complete_v4(frame, l3),
        ETHERTYPE_IPV6 => complete_v6(frame, l3),
        _ => Err(CsumError::Unsupported),
    }
}

fn complete_v4(frame: &mut [u8], l3: usize) -> Result<u8, CsumError> {
    let ip = frame.get(l3..).ok_or(CsumError::Malformed)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(CsumError::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if ihl < 20 || total < ihl || total > ip.len() {
        return Err(CsumError::Malformed);
    }
    let frag = be16(ip, 6)?;
    if frag & 0x3fff != 0 {
        // MF or a non-zero offset: the L4 header is not all here.
        return Err(CsumError::Unsupported);
    }
    let proto = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4_len = total - ihl;
    let pseudo = checksum::pseudo_header_v4(src, dst, proto, u16::try_from(l4_len).map_err(|_| CsumError::Malformed)?);
    let start = l3 + ihl;
    fill(&mut frame[start..start + l4_len], proto, pseudo)
}

fn complete_v6(frame: &mut [u8], l3: usize) -> Result<u8, CsumError> {
    let ip = frame.get(l3..).ok_or(CsumError::Malformed)?;
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return Err(CsumError::Malformed);
    }
    let payload = usize::from(be16(ip, 4)?);
    if 40 + payload > ip.len() {
        return Err(CsumError::Malformed);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut at = 40;
    // Hop-by-hop, routing and destination options may precede the L4 header.
    while matches!(next, 0 | 43 | 60) {
        let hdr = ip.get(at..at + 2).ok_or(CsumError::Malformed)?;
        next = hdr[0];
        at += (usize::from(hdr[1]) + 1) * 8;
        if at > 40 + payload {
            return Err(CsumError::Malformed);
        }
    }
    let l4_len = 40 + payload - at;
    let pseudo = checksum::pseudo_header_v6(
        &Ipv6Addr::from(src),
        &Ipv6Addr::from(dst),
        next,
        u32::try_from(l4_len).map_err(|_| CsumError::Malformed)?,
    );
    let start = l3 + at;
    fill(&mut frame[start..start + l4_len], next, pseudo)
}

fn fill(l4: &mut [u8], proto: u8, pseudo: u32) -> Result<u8, CsumError> {
    let field = match proto {
        PROTO_TCP if l4.len() >= 20 => 16,
        PROTO_UDP if l4.len() >= 8 => 6,
        PROTO_TCP | PROTO_UDP => return Err(CsumError::Malformed),
        _ => return Err(CsumError::Unsupported),
    };
    l4[field] = 0;
    l4[field + 1] = 0;
    let mut sum = checksum::finish(pseudo + checksum::sum(l4));
    if proto == PROTO_UDP && sum == 0 {
        // RFC 768: a computed zero is sent as all ones.
        sum = 0xffff;
    }
    l4[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(proto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 443, 1000, 65535);
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn udp_v6(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5353, 53);
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn vlan_tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let mut out = vec![0; frame.len() + 4];
        copy_with_vlan(frame, tpid, tci, &mut out);
        out
    }

    #[test]
    fn completes_tcp_over_ipv4() {
        let good = tcp_v4(b"hello, odd length");
        let mut bad = good.clone();
        // What CHECKSUM_PARTIAL leaves: some other value (the pseudo-header sum).
        bad[14 + 20 + 16] = 0x12;
        bad[14 + 20 + 17] = 0x34;
        assert_eq!(complete_l4_checksum(&mut bad), Ok(PROTO_TCP));
        assert_eq!(bad, good);
    }

    #[test]
    fn completes_udp_over_ipv6_behind_vlan_tags() {
        let good = vlan_tagged(&vlan_tagged(&udp_v6(b"payload"), 0x8100, 7), 0x88a8, 100);
        let mut bad = good.clone();
        let field = 14 + 8 + 40 + 6;
        bad[field] = 0;
        bad[field + 1] = 0;
        assert_eq!(complete_l4_checksum(&mut bad), Ok(PROTO_UDP));
        assert_eq!(bad, good);
    }

    #[test]
    fn refuses_what_it_cannot_fix() {
        let mut arp = vec![0xff; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(complete_l4_checksum(&mut arp), Err(CsumError::Unsupported));
        let mut short = tcp_v4(b"x");
        short.truncate(40);
        assert_eq!(complete_l4_checksum(&mut short), Err(CsumError::Malformed));
        let mut frag = tcp_v4(b"x");
        frag[14 + 6] = 0x20; // MF
        assert_eq!(complete_l4_checksum(&mut frag), Err(CsumError::Unsupported));
    }

    #[test]
    fn vlan_insertion_keeps_the_rest() {
        let frame: Vec<u8> = (0u8..40).collect();
        let tagged = vlan_tagged(&frame, 0x8100, 0x2064);
        assert_eq!(&tagged[..12], &frame[..12]);
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&tagged[16..], &frame[12..]);
    }
}
