//! A corpus of malformed frames, and random mutations of valid ones: each frame is forwarded,
//! answered, or dropped under exactly one reason — `forwarded + local + Σ drops == received` —
//! and nothing panics.

use std::net::SocketAddrV4;

use datapath::{Counters, DropReason, Event};
use proptest::prelude::*;
use testkit::*;

fn conserved(c: &Counters) -> bool {
    c.get(Event::Received) == c.get(Event::Forwarded) + c.get(Event::Local) + c.total_drops()
}

fn valid_frames() -> Vec<Vec<u8>> {
    let (consumer, endpoint) = to_endpoint(44000);
    vec![
        tcp(l2_consumer(), consumer, endpoint, 64, 1, Flags::syn(), &[]),
        tcp(l2_consumer(), consumer, endpoint, 64, 2, Flags::ack(9), b"data"),
        udp(l2_consumer(), consumer, endpoint, 64, b"datagram"),
        echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, 1, 1, b"ping"),
        arp_request(CONSUMER, ENDPOINT_IP),
    ]
}

/// Sets IPv4 field bytes and recomputes the header checksum so only the intended defect remains.
fn patch_ip(frame: &[u8], f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut v = frame.to_vec();
    f(&mut v);
    let ihl = (usize::from(v[14] & 0x0f) * 4).clamp(20, v.len() - 14);
    v[24..26].copy_from_slice(&[0, 0]);
    let sum = wire::checksum::data(&v[14..14 + ihl]);
    v[24..26].copy_from_slice(&sum.to_be_bytes());
    v
}

fn corpus() -> Vec<(Vec<u8>, DropReason)> {
    let (consumer, endpoint) = to_endpoint(44001);
    let syn = tcp(l2_consumer(), consumer, endpoint, 64, 1, Flags::syn(), &[]);
    let dgram = udp(l2_consumer(), consumer, endpoint, 64, b"datagram");
    let mut cases = vec![
        (vec![], DropReason::FrameTooShort),
        (syn[..13].to_vec(), DropReason::FrameTooShort),
        (syn[..20].to_vec(), DropReason::Ipv4Malformed),
        (patch_ip(&syn, |v| v[14] = 0x44), DropReason::Ipv4Malformed),
        (patch_ip(&dgram, |v| v[14] = 0x4f), DropReason::Ipv4Malformed),
        (patch_ip(&syn, |v| v[14] = 0x4f), DropReason::L4Malformed),
        (patch_ip(&syn, |v| v[14] = 0x65), DropReason::Ipv4Malformed),
        (patch_ip(&syn, |v| v[16..18].copy_from_slice(&2000u16.to_be_bytes())), DropReason::Ipv4Malformed),
        (patch_ip(&syn, |v| v[16..18].copy_from_slice(&10u16.to_be_bytes())), DropReason::Ipv4Malformed),
        (
            {
                let mut v = syn.clone();
                v[24] ^= 0x55;
                v
            },
            DropReason::Ipv4BadChecksum,
        ),
        (patch_ip(&syn, |v| v[20] = 0x20), DropReason::Ipv4Fragment),
        (patch_ip(&syn, |v| v[23] = 47), DropReason::UnsupportedProtocol),
        (patch_ip(&syn, |v| v[22] = 1), DropReason::TtlExpired),
    ];
    // TCP data offset below 5 and beyond the segment.
    let mut v = syn.clone();
    v[46] = 0x40;
    cases.push((v, DropReason::L4Malformed));
    let mut v = syn.clone();
    v[46] = 0xf0;
    cases.push((v, DropReason::L4Malformed));
    // TCP options with length 0, 1 and overrunning the header (checksum fixed).
    for bad in [[2u8, 0], [2, 1], [2, 40]] {
        let mut v = syn.clone();
        v[54..56].copy_from_slice(&bad);
        fix_tcp_checksum(&mut v);
        cases.push((v, DropReason::L4Malformed));
    }
    // Bad TCP and UDP checksums on a new flow.
    let mut v = syn.clone();
    v[51] ^= 1;
    cases.push((v, DropReason::L4BadChecksum));
    let mut v = dgram.clone();
    v[41] ^= 1;
    cases.push((v, DropReason::L4BadChecksum));
    // UDP length beyond the IP payload, and below the header.
    let mut v = dgram.clone();
    v[38..40].copy_from_slice(&200u16.to_be_bytes());
    cases.push((v, DropReason::L4Malformed));
    let mut v = dgram.clone();
    v[38..40].copy_from_slice(&4u16.to_be_bytes());
    cases.push((v, DropReason::L4Malformed));
    // Unknown ethertypes, IPv6, QinQ, a truncated VLAN tag, another host's MAC.
    let mut v = syn.clone();
    v[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    cases.push((v, DropReason::UnsupportedEtherType));
    let mut v = syn.clone();
    v[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    cases.push((v, DropReason::Ipv6Unsupported));
    let mut v = syn[..16].to_vec();
    v[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    cases.push((v, DropReason::FrameTooShort));
    let mut v = syn.clone();
    v[0..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    cases.push((v, DropReason::OtherDestinationMac));
    // ARP: truncated, wrong hardware type.
    let arp = arp_request(CONSUMER, ENDPOINT_IP);
    cases.push((arp[..30].to_vec(), DropReason::ArpMalformed));
    let mut v = arp.clone();
    v[15] = 6;
    cases.push((v, DropReason::ArpMalformed));
    // ICMP: too short, unknown type, nested error, unknown flow.
    let ping = echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, 1, 1, b"");
    cases.push((patch_ip(&ping[..38], |v| v[16..18].copy_from_slice(&24u16.to_be_bytes())), DropReason::L4Malformed));
    let mut v = ping.clone();
    v[34] = 13;
    cases.push((v, DropReason::IcmpUnsupported));
    // Not for us: another address in the consumer network.
    let stranger =
        udp(l2_consumer(), consumer, SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 99), 80), 64, b"x");
    cases.push((stranger, DropReason::NotForUs));
    // Not a SYN, no flow.
    cases.push((tcp(l2_consumer(), consumer, endpoint, 64, 5, Flags::ack(1), b"x"), DropReason::TcpNoFlow));
    // A port the endpoint does not expose.
    cases
        .push((udp(l2_consumer(), consumer, SocketAddrV4::new(ENDPOINT_IP, 81), 64, b"x"), DropReason::PortNotExposed));
    cases
}

fn fix_tcp_checksum(v: &mut [u8]) {
    let total = usize::from(u16::from_be_bytes([v[16], v[17]]));
    v[50..52].copy_from_slice(&[0, 0]);
    let seg = &v[34..14 + total];
    let src = std::net::Ipv4Addr::new(v[26], v[27], v[28], v[29]);
    let dst = std::net::Ipv4Addr::new(v[30], v[31], v[32], v[33]);
    let sum = wire::checksum::finish(
        wire::checksum::pseudo_header_v4(src, dst, 6, u16::try_from(seg.len()).unwrap()) + wire::checksum::sum(seg),
    );
    v[50..52].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn each_malformed_frame_is_dropped_under_its_reason() {
    for (i, (frame, reason)) in corpus().into_iter().enumerate() {
        let mut h = Harness::new(standard_model(APPROVED, 1), 1);
        h.learn_neighbors();
        let before = h.counters();
        h.exchange(PORT_A, &frame);
        let after = h.counters();
        assert_eq!(
            after.total_drops() - before.total_drops(),
            1,
            "case {i} ({reason:?}): exactly one drop, got {:?}",
            DropReason::ALL.iter().filter(|r| after.dropped(**r) != before.dropped(**r)).collect::<Vec<_>>()
        );
        assert_eq!(
            after.dropped(reason) - before.dropped(reason),
            1,
            "case {i}: expected {reason:?}, got {:?}",
            DropReason::ALL.iter().filter(|r| after.dropped(**r) != before.dropped(**r)).collect::<Vec<_>>()
        );
        assert!(conserved(&after), "case {i}");
        assert_eq!(h.workers[0].flows().len(), 0, "case {i}: no flow from a malformed frame");
    }
}

#[test]
fn ethernet_trailers_are_forwarded_and_not_taken_for_payload() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(44002);
    let mut frame = udp(l2_consumer(), consumer, endpoint, 64, b"x");
    frame.extend_from_slice(&[0xee; 13]);
    let out = h.exchange(PORT_A, &frame);
    assert_eq!(out.b.len(), 1);
    assert_checksums_valid(&out.b[0][..out.b[0].len() - 13]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_panic_and_every_frame_is_accounted_for(
        mutations in proptest::collection::vec((0usize..5, proptest::collection::vec((0usize..128, any::<u8>()), 1..6), 0usize..200, any::<bool>()), 1..40),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..20),
    ) {
        let mut h = Harness::new(standard_model(APPROVED, 1), 1);
        h.learn_neighbors();
        let base = h.counters();
        let frames = valid_frames();
        let mut sent = 0u64;
        for (which, edits, cut, to_b) in mutations {
            let mut f = frames[which].clone();
            for (at, byte) in edits {
                if at < f.len() {
                    f[at] = byte;
                }
            }
            f.truncate(f.len().min(cut.max(1) + 20));
            h.inject(0, if to_b { PORT_B } else { PORT_A }, &f);
            sent += 1;
        }
        for g in garbage {
            h.inject(0, PORT_A, &g);
            sent += 1;
        }
        h.run();
        h.take();
        let c = h.counters();
        prop_assert_eq!(c.get(Event::Received) - base.get(Event::Received), sent);
        prop_assert_eq!(h.workers[0].neighbor_waiting(), 0);
        prop_assert!(conserved(&c));
    }
}
