//! Idle timers on the injected clock, at the RFC defaults: a flow idle one second less than its
//! timeout survives; one second more and it is gone (TCP: the next packet gets a RST).

use std::net::SocketAddrV4;
use std::time::Duration;

use datapath::{DropReason, Event};
use testkit::*;

fn established_tcp(h: &mut Harness, port: u16) -> (SocketAddrV4, SocketAddrV4, SocketAddrV4) {
    let (consumer, endpoint) = to_endpoint(port);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 10, Flags::syn(), &[]));
    let nat = seen(&out.b[0]).src;
    h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 70, Flags::syn_ack(11), &[]));
    h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 11, Flags::ack(71), &[]));
    (consumer, endpoint, nat)
}

#[test]
fn tcp_established_survives_7439s_and_expires_at_7441s_with_a_rst() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint, _) = established_tcp(&mut h, 41000);
    h.advance(Duration::from_secs(7439));
    h.sweep();
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 11, Flags::ack(71), b"still here"));
    assert_eq!(out.b.len(), 1, "idle 7439 s: the flow survives");
    h.advance(Duration::from_secs(7441));
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 21, Flags::ack(71), b"too late"));
    assert!(out.b.is_empty());
    assert_eq!(out.a.len(), 1, "idle 7441 s: the next packet gets a RST");
    let p = etherparse::SlicedPacket::from_ethernet(&out.a[0]).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
    assert!(t.rst());
    assert_eq!(t.sequence_number(), 71);
    assert_eq!(seen(&out.a[0]).src, endpoint);
    let c = h.counters();
    assert_eq!(c.get(Event::FlowsExpired), 1);
    assert_eq!(c.dropped(DropReason::TcpNoFlow), 1);
}

#[test]
fn tcp_expiry_is_also_found_by_the_sweep() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    established_tcp(&mut h, 41001);
    h.advance(Duration::from_secs(7441));
    h.sweep();
    assert_eq!(h.counters().get(Event::FlowsExpired), 1);
    assert_eq!(h.workers[0].flows().live(), 0);
}

#[test]
fn tcp_handshake_is_transitory_240s() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(41002);
    h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 10, Flags::syn(), &[]));
    h.advance(Duration::from_secs(239));
    h.sweep();
    assert_eq!(h.workers[0].flows().live(), 1);
    h.advance(Duration::from_secs(2));
    h.sweep();
    assert_eq!(h.workers[0].flows().live(), 0);
}

fn udp_survives_then_expires(h: &mut Harness, timeout: u64) {
    let (consumer, endpoint) = to_endpoint(42000);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"q"));
    let nat = seen(&out.b[0]).src;
    h.advance(Duration::from_secs(timeout - 1));
    h.sweep();
    assert_eq!(h.exchange(PORT_B, &udp(l2_backend(), backend, nat, 64, b"a")).a.len(), 1);
    h.advance(Duration::from_secs(timeout + 1));
    assert!(h.exchange(PORT_B, &udp(l2_backend(), backend, nat, 64, b"late")).is_empty());
    assert_eq!(h.counters().dropped(DropReason::FlowClosed), 1);
    // From the consumer, the next datagram starts a new flow with a new NAT port.
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"again"));
    assert_ne!(seen(&out.b[0]).src, nat);
}

#[test]
fn udp_survives_299s_and_expires_at_301s() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    udp_survives_then_expires(&mut h, 300);
}

#[test]
fn configured_udp_timeout_applies() {
    let mut service = standard_service();
    service.timeouts.udp = Duration::from_secs(120);
    let model =
        datapath::Model::new(1, standard_networks(), vec![service], vec![standard_endpoint(APPROVED)], 1024..=65535, 1)
            .unwrap();
    let mut h = Harness::new(model, 1);
    h.learn_neighbors();
    udp_survives_then_expires(&mut h, 120);
}

#[test]
fn icmp_survives_59s_and_expires_at_61s() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let out = h.exchange(PORT_A, &echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, 99, 1, b"p"));
    let nat = seen(&out.b[0]).src;
    h.advance(Duration::from_secs(59));
    h.sweep();
    assert_eq!(h.exchange(PORT_B, &echo(l2_backend(), BACKEND.ip, NAT_IP, 64, false, nat.port(), 1, b"p")).a.len(), 1);
    h.advance(Duration::from_secs(61));
    h.sweep();
    assert!(h.exchange(PORT_B, &echo(l2_backend(), BACKEND.ip, NAT_IP, 64, false, nat.port(), 1, b"p")).is_empty());
    assert_eq!(h.workers[0].flows().live(), 0);
}
