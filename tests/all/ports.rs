//! NAT port allocation through the datapath: no collisions, not sequential, exhaustion refuses
//! new flows while live ones keep working, the cool-down holds.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use datapath::{DropReason, Model};
use testkit::*;

#[test]
fn fifty_thousand_flows_to_one_backend_zero_collisions_not_sequential() {
    let mut h = Harness::build(
        standard_model(APPROVED, 1),
        1,
        |_| datapath::WorkerConfig { flow_capacity: 60_000, ..Default::default() },
        |_| datapath::AllowApproved,
    );
    h.learn_neighbors();
    let endpoint = SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT);
    let mut ports = Vec::with_capacity(50_000);
    let mut seen_ports = HashSet::new();
    for i in 0..50_000u32 {
        // Many consumer sources (one host, many ports, and a second host for the rest).
        let src = SocketAddrV4::new(
            if i < 40_000 { CONSUMER.ip } else { Ipv4Addr::new(198, 18, 0, 8) },
            1024 + (i % 40_000) as u16,
        );
        h.inject(0, PORT_A, &udp(l2_consumer(), src, endpoint, 64, b"p"));
        if i % 512 == 511 {
            h.run();
            for f in h.take().b {
                let nat = seen(&f).src;
                assert!(seen_ports.insert(nat.port()), "NAT port {} used twice", nat.port());
                ports.push(nat.port());
            }
        }
    }
    h.run();
    for f in h.take().b {
        let nat = seen(&f).src;
        assert!(seen_ports.insert(nat.port()), "NAT port {} used twice", nat.port());
        ports.push(nat.port());
    }
    assert_eq!(ports.len(), 50_000);
    let sequential = ports.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    assert!(sequential < 500, "{sequential} of 50,000 allocations were sequential");
    let (used, capacity) = h.workers[0].ports().usage(NAT_IP).unwrap();
    assert_eq!((used, capacity), (50_000, 64_512));
}

fn narrow_model() -> Model {
    Model::new(1, standard_networks(), vec![standard_service()], vec![standard_endpoint(APPROVED)], 2000..=2009, 1)
        .unwrap()
}

#[test]
fn exhaustion_refuses_new_flows_while_live_ones_keep_working_and_cooldown_holds() {
    let mut h = Harness::new(narrow_model(), 1);
    h.learn_neighbors();
    let endpoint = SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let mut nats = Vec::new();
    for i in 0..10u16 {
        let src = SocketAddrV4::new(CONSUMER.ip, 30000 + i);
        let out = h.exchange(PORT_A, &tcp(l2_consumer(), src, endpoint, 64, 1, Flags::syn(), &[]));
        nats.push((src, seen(&out.b[0]).src));
    }
    // The eleventh is refused with a RST and counted.
    let extra = SocketAddrV4::new(CONSUMER.ip, 31000);
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), extra, endpoint, 64, 1, Flags::syn(), &[]));
    assert!(out.b.is_empty());
    assert_eq!(out.a.len(), 1, "a RST to the consumer");
    assert_eq!(h.counters().dropped(DropReason::NatPortsExhausted), 1);
    // Live flows still pass both ways.
    for &(src, nat) in &nats {
        let out = h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 50, Flags::syn_ack(2), &[]));
        assert_eq!(seen(&out.a[0]).dst, src);
        let out = h.exchange(PORT_A, &tcp(l2_consumer(), src, endpoint, 64, 2, Flags::ack(51), &[]));
        assert_eq!(seen(&out.b[0]).src, nat);
    }
    // Close one flow with a RST; its port cools down towards this backend.
    let (src, nat) = nats[0];
    h.exchange(PORT_A, &tcp(l2_consumer(), src, endpoint, 64, 2, Flags::rst(), &[]));
    h.advance(Duration::from_secs(11));
    h.sweep();
    // The flow is gone, but the port is cooling: a new flow still finds no free port...
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), extra, endpoint, 64, 1, Flags::syn(), &[]));
    assert!(out.b.is_empty());
    assert_eq!(h.counters().dropped(DropReason::NatPortsExhausted), 2);
    // ...and late packets to the cooling port are dropped as closed.
    assert!(h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 51, Flags::ack(2), &[])).is_empty());
    assert_eq!(h.counters().dropped(DropReason::FlowClosed), 1);
    // After the cool-down the port is free again.
    h.advance(Duration::from_secs(121));
    h.sweep();
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), extra, endpoint, 64, 1, Flags::syn(), &[]));
    assert_eq!(out.b.len(), 1);
    assert_eq!(seen(&out.b[0]).src, nat);
}

#[test]
fn a_port_is_reused_towards_a_different_backend() {
    let mut service = standard_service();
    service.backends.push(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 11), BACKEND_PORT));
    let model =
        Model::new(1, standard_networks(), vec![service], vec![standard_endpoint(APPROVED)], 2000..=2000, 1).unwrap();
    let mut h = Harness::new(model, 1);
    h.learn_neighbors();
    h.learn(PORT_B, Host { mac: [2, 0xbb, 0, 0, 0, 0x11], ip: Ipv4Addr::new(198, 18, 0, 11) }, NAT_IP, GW_MAC_B);
    let endpoint = SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT);
    let mut backends = HashSet::new();
    for p in 0..64u16 {
        let src = SocketAddrV4::new(CONSUMER.ip, 10000 + p);
        let out = h.exchange(PORT_A, &udp(l2_consumer(), src, endpoint, 64, b"x"));
        if let Some(f) = out.b.first() {
            assert_eq!(seen(f).src, SocketAddrV4::new(NAT_IP, 2000));
            backends.insert(seen(f).dst);
        }
    }
    // One port, two backends: exactly two flows fit, one per backend.
    assert_eq!(backends.len(), 2);
    assert_eq!(h.workers[0].flows().len(), 2);
}

#[test]
fn table_full_refuses_new_flows_and_leaves_established_ones_alone() {
    let mut h = Harness::build(
        standard_model(APPROVED, 1),
        1,
        |_| datapath::WorkerConfig { flow_capacity: 8, ..Default::default() },
        |_| datapath::AllowApproved,
    );
    h.learn_neighbors();
    let endpoint = SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let mut flows = Vec::new();
    for i in 0..8u16 {
        let src = SocketAddrV4::new(CONSUMER.ip, 40000 + i);
        let out = h.exchange(PORT_A, &udp(l2_consumer(), src, endpoint, 64, b"a"));
        flows.push((src, seen(&out.b[0]).src));
    }
    for i in 0..5u16 {
        let src = SocketAddrV4::new(CONSUMER.ip, 50000 + i);
        let out = h.exchange(PORT_A, &udp(l2_consumer(), src, endpoint, 64, b"b"));
        assert!(out.b.is_empty());
        assert_eq!(out.a.len(), 1, "an ICMP administratively-prohibited to the consumer");
    }
    let src = SocketAddrV4::new(CONSUMER.ip, 50100);
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), src, endpoint, 64, 1, Flags::syn(), &[]));
    assert!(out.b.is_empty());
    assert_eq!(h.counters().dropped(DropReason::FlowTableFull), 6);
    for (src, nat) in flows {
        let out = h.exchange(PORT_B, &udp(l2_backend(), backend, nat, 64, b"reply"));
        assert_eq!(out.a, vec![udp(l2_to_consumer(), endpoint, src, 63, b"reply")]);
    }
    assert_eq!(h.workers[0].flows().len(), 8);
}
