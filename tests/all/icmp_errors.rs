//! ICMP errors from the provider side about TCP, UDP and echo flows reach the consumer with the
//! outer and quoted headers translated back and valid checksums; bad ones are dropped and
//! counted; none creates, refreshes or deletes a flow.

use std::net::SocketAddrV4;
use std::time::Duration;

use datapath::{DropReason, Event};
use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::Icmpv4Type;
use testkit::*;

/// The consumer's original packet as the backend would quote it after our rewrite was undone:
/// addresses, ports and L4 checksum as the consumer sent them, TTL one less.
fn expected_quote(original_ip: &[u8], len: usize) -> Vec<u8> {
    let mut q = original_ip[..len].to_vec();
    q[8] -= 1;
    q[10..12].copy_from_slice(&[0, 0]);
    let ihl = usize::from(q[0] & 0x0f) * 4;
    let sum = wire::checksum::data(&q[..ihl]);
    q[10..12].copy_from_slice(&sum.to_be_bytes());
    q
}

fn error_types() -> Vec<Icmpv4Type> {
    vec![
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }),
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
    ]
}

fn deadlines(h: &Harness) -> Vec<flow::Instant> {
    h.workers[0].flows().iter().map(|(_, e)| e.deadline).collect()
}

/// Sends `first` from the consumer, then each error type about its translation (quoting
/// `quote_len` bytes, or all), and checks what the consumer gets.
fn check_errors(first: Vec<u8>, quote_len: Option<usize>) {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let out = h.exchange(PORT_A, &first);
    assert_eq!(out.b.len(), 1);
    let translated = ip_of(&out.b[0]).to_vec();
    let len = quote_len.unwrap_or(translated.len());
    h.advance(Duration::from_secs(5));
    let before = deadlines(&h);
    for t in error_types() {
        let error = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, t.clone(), &translated[..len]);
        let out = h.exchange(PORT_B, &error);
        assert!(out.b.is_empty());
        let expected =
            icmp_error(l2_to_consumer(), ENDPOINT_IP, CONSUMER.ip, 63, t, &expected_quote(ip_of(&first), len));
        assert_eq!(out.a, vec![expected], "error {:?} quoting {len} bytes", error_types());
        assert_checksums_valid(&out.a[0]);
    }
    assert_eq!(deadlines(&h), before, "an ICMP error must not refresh a flow");
    assert_eq!(h.workers[0].flows().len(), 1);
    assert_eq!(h.counters().get(Event::IcmpErrorsTranslated), 3);
}

#[test]
fn errors_about_tcp_flows_are_translated() {
    let (consumer, endpoint) = to_endpoint(43000);
    let syn = tcp(l2_consumer(), consumer, endpoint, 64, 1000, Flags::syn(), &[]);
    check_errors(syn.clone(), Some(28));
    check_errors(syn, None);
}

#[test]
fn errors_about_udp_flows_are_translated_including_the_quoted_checksum() {
    let (consumer, endpoint) = to_endpoint(43001);
    let datagram = udp(l2_consumer(), consumer, endpoint, 64, b"a datagram the backend refused");
    check_errors(datagram.clone(), Some(28));
    check_errors(datagram, None);
}

#[test]
fn errors_about_echo_flows_are_translated() {
    let request = echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, 0x4242, 3, b"echo data");
    check_errors(request.clone(), Some(28));
    check_errors(request, None);
}

#[test]
fn unknown_and_bad_errors_are_dropped_and_counted_without_touching_flows() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(43002);
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"x"));
    let translated = ip_of(&out.b[0]).to_vec();
    let unreachable = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let before = deadlines(&h);

    // About a flow that does not exist (another NAT port).
    let mut other = translated.clone();
    let port = u16::from_be_bytes([other[20], other[21]]).wrapping_add(1);
    other[20..22].copy_from_slice(&port.to_be_bytes());
    let e = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, unreachable.clone(), &other[..28]);
    assert!(h.exchange(PORT_B, &e).is_empty());
    // A quote too short to hold the ports.
    let e = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, unreachable.clone(), &translated[..24]);
    assert!(h.exchange(PORT_B, &e).is_empty());
    // A bad ICMP checksum.
    let mut e = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, unreachable.clone(), &translated[..28]);
    e[36] ^= 0xff;
    assert!(h.exchange(PORT_B, &e).is_empty());
    // An error about an error.
    let inner = icmp_error(l2_backend(), NAT_IP, BACKEND.ip, 64, unreachable.clone(), &translated[..28]);
    let e = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, unreachable.clone(), &ip_of(&inner)[..28]);
    assert!(h.exchange(PORT_B, &e).is_empty());
    // An ICMP type the gateway does not handle (redirect).
    let mut e = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, unreachable, &translated[..28]);
    e[34] = 5;
    assert!(h.exchange(PORT_B, &e).is_empty());

    let c = h.counters();
    assert_eq!(c.dropped(DropReason::IcmpErrorNoFlow), 1);
    assert_eq!(c.dropped(DropReason::IcmpErrorMalformed), 1);
    assert_eq!(c.dropped(DropReason::L4BadChecksum), 1);
    assert_eq!(c.dropped(DropReason::IcmpErrorNested), 1);
    assert_eq!(c.dropped(DropReason::IcmpUnsupported), 1);
    assert_eq!(c.get(Event::IcmpErrorsTranslated), 0);
    assert_eq!(deadlines(&h), before);
    assert_eq!(h.workers[0].flows().len(), 1);
    // The flow still works.
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let nat = seen(&out.b[0]).src;
    assert_eq!(h.exchange(PORT_B, &udp(l2_backend(), backend, nat, 64, b"ok")).a.len(), 1);
}

#[test]
fn an_error_alone_creates_no_flow() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(43003);
    let never_sent =
        udp(l2_to_backend(), SocketAddrV4::new(NAT_IP, 5555), SocketAddrV4::new(BACKEND.ip, BACKEND_PORT), 63, b"x");
    let e = icmp_error(
        l2_backend(),
        BACKEND.ip,
        NAT_IP,
        64,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        &ip_of(&never_sent)[..28],
    );
    assert!(h.exchange(PORT_B, &e).is_empty());
    let _ = (consumer, endpoint);
    assert_eq!(h.workers[0].flows().len(), 0);
    assert_eq!(h.counters().dropped(DropReason::IcmpErrorNoFlow), 1);
}
