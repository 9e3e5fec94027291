//! Two workers: return traffic that lands on the worker that does not own the flow is handed to
//! the owner (computable from the NAT port) and translated correctly.

use std::net::SocketAddrV4;

use datapath::{DropReason, Event};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::Icmpv4Type;
use flow::owner_of_port;
use testkit::*;

#[test]
fn cross_worker_return_traffic_is_translated_by_the_owner() {
    let mut h = Harness::new(standard_model(APPROVED, 2), 2);
    h.learn_neighbors();
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let mut flows = Vec::new();
    for i in 0..400u16 {
        let (consumer, endpoint) = to_endpoint(30000 + i);
        let creator = usize::from(i % 2);
        h.inject(creator, PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 1, Flags::syn(), &[]));
        h.run();
        let out = h.take();
        assert_eq!(out.b.len(), 1);
        let nat = seen(&out.b[0]).src;
        assert_eq!(
            owner_of_port(1024..=65535, 2, nat.port()),
            Some(creator),
            "the NAT port comes from the creator's slice"
        );
        flows.push((consumer, endpoint, nat, creator));
    }
    // Every reply lands on the *other* worker first.
    for &(consumer, endpoint, nat, creator) in &flows {
        h.inject(1 - creator, PORT_B, &tcp(l2_backend(), backend, nat, 64, 77, Flags::syn_ack(2), &[]));
        h.run();
        let out = h.take();
        assert_eq!(out.a, vec![tcp(l2_to_consumer(), endpoint, consumer, 63, 77, Flags::syn_ack(2), &[])]);
    }
    // ICMP errors about a flow also go to its owner.
    let (consumer, endpoint, nat, creator) = flows[1];
    let quoted = tcp(l2_to_backend(), nat, backend, 63, 1, Flags::syn(), &[]);
    let e = icmp_error(
        l2_backend(),
        BACKEND.ip,
        NAT_IP,
        64,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        &ip_of(&quoted)[..28],
    );
    h.inject(1 - creator, PORT_B, &e);
    h.run();
    let out = h.take();
    assert_eq!(out.a.len(), 1);
    assert_checksums_valid(&out.a[0]);
    let _ = (consumer, endpoint);
    let c = h.counters();
    assert_eq!(c.get(Event::HandoffOut), 401);
    assert_eq!(c.get(Event::HandoffIn), 401);
    assert_eq!(c.total_drops(), 0);
    assert_eq!(c.get(Event::Received), c.get(Event::Forwarded) + c.get(Event::Local));
    assert_eq!(h.workers[0].flows().len() + h.workers[1].flows().len(), 400);
}

#[test]
fn unsolicited_traffic_handed_to_the_owner_is_dropped_once() {
    let mut h = Harness::new(standard_model(APPROVED, 2), 2);
    h.learn_neighbors();
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    for port in [1100u16, 60000] {
        let nat = SocketAddrV4::new(NAT_IP, port);
        for w in 0..2 {
            h.inject(w, PORT_B, &udp(l2_backend(), backend, nat, 64, b"x"));
        }
    }
    h.run();
    assert!(h.take().is_empty());
    let c = h.counters();
    assert_eq!(c.dropped(DropReason::Unsolicited), 4);
    assert_eq!(c.get(Event::HandoffOut), 2);
}

#[test]
fn neighbors_learned_by_one_worker_reach_the_other() {
    let mut h = Harness::new(standard_model(APPROVED, 2), 2);
    // Only worker 0 sees the hosts' ARP.
    h.inject(0, PORT_A, &arp_request(CONSUMER, ENDPOINT_IP));
    h.inject(0, PORT_B, &arp_request(BACKEND, NAT_IP));
    h.run();
    h.take();
    let (consumer, endpoint) = to_endpoint(30500);
    h.inject(1, PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"x"));
    h.run();
    let out = h.take();
    assert_eq!(out.b.len(), 1);
    assert_eq!(&out.b[0][0..6], &BACKEND.mac, "worker 1 knew the backend's MAC without ARPing");
}
