//! Two consumer networks with identical addresses, the same source `ip:port`, through two
//! endpoints (with the same address too) to one service: distinct translations, replies never
//! cross. And the backend network holds a twin of the consumer's address.

use std::collections::HashSet;
use std::net::SocketAddrV4;

use datapath::{Endpoint, Model, Network, ServiceId};
use io::PortId;
use testkit::*;

const PORT_A2: PortId = PortId(2);
const GW_MAC_A2: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x01];

fn model() -> Model {
    let mut networks = standard_networks();
    networks.push(Network {
        name: "consumer-2".into(),
        port: PORT_A2,
        mac: wire::EthernetAddress(GW_MAC_A2),
        ..networks[0].clone()
    });
    let first = standard_endpoint(APPROVED);
    let second = Endpoint {
        name: "web-a2".into(),
        account: "consumer-2".into(),
        network: flow::NetworkId(2),
        link_id: 77,
        ..first.clone()
    };
    assert_eq!(second.service, ServiceId(0));
    Model::new(1, networks, vec![standard_service()], vec![first, second], 1024..=65535, 1).unwrap()
}

#[test]
fn identical_consumers_in_two_networks_get_distinct_translations_and_their_own_replies() {
    let mut h = Harness::new(model(), 1);
    h.learn_neighbors();
    h.learn(PORT_A2, CONSUMER, ENDPOINT_IP, GW_MAC_A2);
    let (consumer, endpoint) = to_endpoint(45000);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);

    let out1 = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"from A"));
    let out2 = h.exchange(PORT_A2, &udp(L2::new(CONSUMER.mac, GW_MAC_A2), consumer, endpoint, 64, b"from A2"));
    assert_eq!((out1.b.len(), out2.b.len()), (1, 1));
    let nat1 = seen(&out1.b[0]).src;
    let nat2 = seen(&out2.b[0]).src;
    assert_ne!(nat1, nat2, "the two consumers must not share a translation");

    // Replies to each NAT port go back to their own network only.
    for (nat, payload) in [(nat2, &b"to A2"[..]), (nat1, &b"to A"[..])] {
        h.inject(0, PORT_B, &udp(l2_backend(), backend, nat, 64, payload));
    }
    h.run();
    let mut a = Vec::new();
    let mut a2 = Vec::new();
    for w in &mut h.workers {
        a.extend(w.io_mut().take_tx(PORT_A));
        a2.extend(w.io_mut().take_tx(PORT_A2));
    }
    assert_eq!(a, vec![udp(l2_to_consumer(), endpoint, consumer, 63, b"to A")]);
    assert_eq!(a2, vec![udp(L2::new(GW_MAC_A2, CONSUMER.mac), endpoint, consumer, 63, b"to A2")]);
}

#[test]
fn many_identical_sources_across_networks_never_cross() {
    let mut h = Harness::new(model(), 1);
    h.learn_neighbors();
    h.learn(PORT_A2, CONSUMER, ENDPOINT_IP, GW_MAC_A2);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let mut nats = HashSet::new();
    let mut flows = Vec::new();
    for i in 0..200u16 {
        let (consumer, endpoint) = to_endpoint(20000 + i);
        let out1 = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 1, Flags::syn(), &[]));
        let out2 =
            h.exchange(PORT_A2, &tcp(L2::new(CONSUMER.mac, GW_MAC_A2), consumer, endpoint, 64, 2, Flags::syn(), &[]));
        let (n1, n2) = (seen(&out1.b[0]).src, seen(&out2.b[0]).src);
        assert!(nats.insert(n1) && nats.insert(n2));
        flows.push((consumer, n1, n2));
    }
    for (consumer, n1, n2) in flows {
        let out = h.exchange(PORT_B, &tcp(l2_backend(), backend, n2, 64, 9, Flags::syn_ack(3), &[]));
        let mut a2 = Vec::new();
        for w in &mut h.workers {
            a2.extend(w.io_mut().take_tx(PORT_A2));
        }
        assert!(out.a.is_empty(), "a reply for network A2 leaked into A");
        assert_eq!(a2.len(), 1);
        assert_eq!(seen(&a2[0]).dst, consumer);
        let out = h.exchange(PORT_B, &tcp(l2_backend(), backend, n1, 64, 9, Flags::syn_ack(2), &[]));
        assert_eq!(out.a.len(), 1);
        assert_eq!(seen(&out.a[0]).dst, consumer);
    }
}

#[test]
fn provider_host_with_the_consumers_address_is_not_confused_with_the_consumer() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(46000);
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"hi"));
    let nat = seen(&out.b[0]).src;
    // B_TWIN has the consumer's address in B and sends to the NAT port: unsolicited.
    let twin = SocketAddrV4::new(B_TWIN.ip, 46000);
    assert!(h.exchange(PORT_B, &udp(L2::new(B_TWIN.mac, GW_MAC_B), twin, nat, 64, b"spoof")).is_empty());
    // B_TWIN sending to the endpoint address (which is not an address in B) is not for us.
    assert!(h.exchange(PORT_B, &udp(L2::new(B_TWIN.mac, GW_MAC_B), twin, endpoint, 64, b"x")).is_empty());
    let c = h.counters();
    assert_eq!(c.dropped(datapath::DropReason::Unsolicited), 1);
    assert_eq!(c.dropped(datapath::DropReason::NotForUs), 1);
}
