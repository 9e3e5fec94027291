//! A consumer in network A reaches a backend in network B with the same prefix: TCP, UDP and
//! ICMP echo, byte-exact in both directions.

use std::net::SocketAddrV4;

use datapath::{ConnectionState, DropReason, Event};
use testkit::*;

fn nat_of(frame: &[u8]) -> SocketAddrV4 {
    seen(frame).src
}

#[test]
fn tcp_handshake_data_and_close_byte_exact_both_ways() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40000);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);

    let syn = tcp(l2_consumer(), consumer, endpoint, 64, 1000, Flags::syn(), &[]);
    let out = h.exchange(PORT_A, &syn);
    assert!(out.a.is_empty());
    assert_eq!(out.b.len(), 1, "the SYN reaches the provider network");
    let nat = nat_of(&out.b[0]);
    assert_eq!(*nat.ip(), NAT_IP);
    assert!(nat.port() >= 1024);
    assert_eq!(out.b[0], tcp(l2_to_backend(), nat, backend, 63, 1000, Flags::syn(), &[]));

    let syn_ack = tcp(l2_backend(), backend, nat, 64, 5000, Flags::syn_ack(1001), &[]);
    let out = h.exchange(PORT_B, &syn_ack);
    assert_eq!(out.a, vec![tcp(l2_to_consumer(), endpoint, consumer, 63, 5000, Flags::syn_ack(1001), &[])]);

    let request = b"GET / HTTP/1.1\r\nHost: service\r\n\r\n";
    let data = tcp(l2_consumer(), consumer, endpoint, 64, 1001, Flags { psh: true, ..Flags::ack(5001) }, request);
    let out = h.exchange(PORT_A, &data);
    assert_eq!(
        out.b,
        vec![tcp(l2_to_backend(), nat, backend, 63, 1001, Flags { psh: true, ..Flags::ack(5001) }, request)]
    );
    assert_checksums_valid(&out.b[0]);

    let response = vec![0x5a; 1400];
    let data =
        tcp(l2_backend(), backend, nat, 64, 5001, Flags::ack(1001 + u32::try_from(request.len()).unwrap()), &response);
    let out = h.exchange(PORT_B, &data);
    assert_eq!(
        out.a,
        vec![tcp(
            l2_to_consumer(),
            endpoint,
            consumer,
            63,
            5001,
            Flags::ack(1001 + u32::try_from(request.len()).unwrap()),
            &response
        )]
    );
    assert_checksums_valid(&out.a[0]);

    // Close from both sides.
    let fin = tcp(l2_consumer(), consumer, endpoint, 64, 1034, Flags::fin_ack(6401), &[]);
    assert_eq!(h.exchange(PORT_A, &fin).b.len(), 1);
    let fin = tcp(l2_backend(), backend, nat, 64, 6401, Flags::fin_ack(1035), &[]);
    assert_eq!(h.exchange(PORT_B, &fin).a.len(), 1);

    let c = h.counters();
    assert_eq!(c.get(Event::FlowsCreated), 1);
    assert_eq!(c.get(Event::Forwarded), 6);
    assert_eq!(c.total_drops(), 0);
}

#[test]
fn udp_both_ways_byte_exact() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(53000);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"ping over udp"));
    assert_eq!(out.b.len(), 1);
    let nat = nat_of(&out.b[0]);
    assert_eq!(out.b[0], udp(l2_to_backend(), nat, backend, 63, b"ping over udp"));
    assert_checksums_valid(&out.b[0]);
    let out = h.exchange(PORT_B, &udp(l2_backend(), backend, nat, 64, b"pong"));
    assert_eq!(out.a, vec![udp(l2_to_consumer(), endpoint, consumer, 63, b"pong")]);
    assert_checksums_valid(&out.a[0]);
}

#[test]
fn udp_without_checksum_stays_without_checksum() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(53001);
    let mut frame = udp(l2_consumer(), consumer, endpoint, 64, b"no checksum");
    frame[40..42].copy_from_slice(&[0, 0]);
    let out = h.exchange(PORT_A, &frame);
    assert_eq!(out.b.len(), 1);
    assert_eq!(&out.b[0][40..42], &[0, 0]);
}

#[test]
fn icmp_echo_forwarded_both_ways_byte_exact() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let request = echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, 0x1234, 1, b"abcdefgh");
    let out = h.exchange(PORT_A, &request);
    assert_eq!(out.b.len(), 1);
    let nat = seen(&out.b[0]).src;
    assert_eq!(*nat.ip(), NAT_IP);
    assert_eq!(out.b[0], echo(l2_to_backend(), NAT_IP, BACKEND.ip, 63, true, nat.port(), 1, b"abcdefgh"));
    let reply = echo(l2_backend(), BACKEND.ip, NAT_IP, 64, false, nat.port(), 1, b"abcdefgh");
    let out = h.exchange(PORT_B, &reply);
    assert_eq!(out.a, vec![echo(l2_to_consumer(), ENDPOINT_IP, CONSUMER.ip, 63, false, 0x1234, 1, b"abcdefgh")]);
    // A reply type on the consumer side of the flow is not forwarded.
    let wrong = echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, false, 0x1234, 1, b"abcdefgh");
    assert!(h.exchange(PORT_A, &wrong).is_empty());
    assert_eq!(h.counters().dropped(DropReason::IcmpUnsupported), 1);
}

#[test]
fn gateway_answers_echo_for_endpoint_in_reply_mode_and_for_itself() {
    let mut service = standard_service();
    service.echo = datapath::EchoMode::Reply;
    let model = datapath::Model::new(
        1,
        standard_networks(),
        vec![service],
        vec![standard_endpoint(ConnectionState::Pending)],
        1024..=65535,
        1,
    )
    .unwrap();
    let mut h = Harness::new(model, 1);
    for target in [ENDPOINT_IP, GW_IP] {
        let request = echo(l2_consumer(), CONSUMER.ip, target, 64, true, 7, 9, b"hello");
        let out = h.exchange(PORT_A, &request);
        assert!(out.b.is_empty());
        assert_eq!(out.a, vec![echo(l2_to_consumer(), target, CONSUMER.ip, 64, false, 7, 9, b"hello")]);
    }
    assert_eq!(h.counters().get(Event::Local), 2);
    assert_eq!(h.counters().get(Event::FlowsCreated), 0);
}

#[test]
fn arp_answered_for_endpoint_nat_ip_and_gateway_only_in_their_network() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    // Endpoint address: answered on A, not on B.
    let out = h.exchange(PORT_A, &arp_request(CONSUMER, ENDPOINT_IP));
    assert_eq!(out.a, vec![arp_reply(Host { mac: GW_MAC_A, ip: ENDPOINT_IP }, CONSUMER.mac, CONSUMER.ip)]);
    assert!(h.exchange(PORT_B, &arp_request(BACKEND, ENDPOINT_IP)).is_empty());
    // NAT IP: answered on B, not on A.
    let out = h.exchange(PORT_B, &arp_request(BACKEND, NAT_IP));
    assert_eq!(out.b, vec![arp_reply(Host { mac: GW_MAC_B, ip: NAT_IP }, BACKEND.mac, BACKEND.ip)]);
    assert!(h.exchange(PORT_A, &arp_request(CONSUMER, NAT_IP)).is_empty());
    // The gateway's own address, in both.
    assert_eq!(h.exchange(PORT_A, &arp_request(CONSUMER, GW_IP)).a.len(), 1);
    assert_eq!(h.exchange(PORT_B, &arp_request(BACKEND, GW_IP)).b.len(), 1);
    // Another host's address: ignored and counted.
    assert!(h.exchange(PORT_A, &arp_request(CONSUMER, BACKEND.ip)).is_empty());
    let c = h.counters();
    assert_eq!(c.get(Event::Local), 4);
    assert_eq!(c.dropped(DropReason::ArpNotForUs), 3);
}

#[test]
fn next_hop_is_resolved_by_arp_and_waiting_frames_are_released() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    // Only the consumer is known; the backend must be resolved.
    h.learn(PORT_A, CONSUMER, ENDPOINT_IP, GW_MAC_A);
    let (consumer, endpoint) = to_endpoint(40001);
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"first"));
    assert_eq!(out.b.len(), 1, "an ARP request, not the frame");
    assert_eq!(out.b[0], {
        let mut req = arp_request(Host { mac: GW_MAC_B, ip: GW_IP }, BACKEND.ip);
        req[0..6].copy_from_slice(&[0xff; 6]);
        req
    });
    assert_eq!(h.workers[0].neighbor_waiting(), 1);
    let out = h.exchange(PORT_B, &arp_reply(BACKEND, GW_MAC_B, GW_IP));
    assert_eq!(out.b.len(), 1);
    assert_eq!(seen(&out.b[0]).dst, SocketAddrV4::new(BACKEND.ip, BACKEND_PORT));
    assert_eq!(&out.b[0][0..6], &BACKEND.mac);
    assert_eq!(h.workers[0].neighbor_waiting(), 0);
}

#[test]
fn unanswered_arp_drops_waiting_frames_after_three_tries() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn(PORT_A, CONSUMER, ENDPOINT_IP, GW_MAC_A);
    let (consumer, endpoint) = to_endpoint(40002);
    let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"lost"));
    assert_eq!(out.b.len(), 1);
    let mut requests = 1;
    for _ in 0..4 {
        h.advance(std::time::Duration::from_millis(1001));
        h.run();
        requests += h.take().b.len();
    }
    assert_eq!(requests, 3);
    let c = h.counters();
    assert_eq!(c.dropped(DropReason::NeighborUnresolved), 1);
    assert_eq!(h.workers[0].neighbor_waiting(), 0);
}

#[test]
fn vlan_tags_per_network_are_popped_and_pushed() {
    let mut networks = standard_networks();
    networks[0].vlan = Some(100);
    networks[1].vlan = Some(200);
    let model =
        datapath::Model::new(1, networks, vec![standard_service()], vec![standard_endpoint(APPROVED)], 1024..=65535, 1)
            .unwrap();
    let mut h = Harness::new(model, 1);
    let tagged = |l2: L2, vlan| L2 { vlan: Some(vlan), ..l2 };
    let mut arp = arp_request(CONSUMER, ENDPOINT_IP);
    arp.splice(12..12, [0x81, 0x00, 0x00, 100]);
    assert_eq!(h.exchange(PORT_A, &arp).a.len(), 1);
    let mut arp = arp_request(BACKEND, NAT_IP);
    arp.splice(12..12, [0x81, 0x00, 0x00, 200]);
    assert_eq!(h.exchange(PORT_B, &arp).b.len(), 1);

    let (consumer, endpoint) = to_endpoint(40003);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let out = h.exchange(PORT_A, &udp(tagged(l2_consumer(), 100), consumer, endpoint, 64, b"tagged"));
    assert_eq!(out.b.len(), 1);
    let nat = SocketAddrV4::new(NAT_IP, u16::from_be_bytes([out.b[0][38], out.b[0][39]]));
    assert_eq!(out.b[0], udp(tagged(l2_to_backend(), 200), nat, backend, 63, b"tagged"));
    // Untagged traffic on port A belongs to no network.
    assert!(h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"untagged")).is_empty());
    assert_eq!(h.counters().dropped(DropReason::UnknownNetwork), 1);
    let out = h.exchange(PORT_B, &udp(tagged(l2_backend(), 200), backend, nat, 64, b"back"));
    assert_eq!(out.a, vec![udp(tagged(l2_to_consumer(), 100), endpoint, consumer, 63, b"back")]);
}

#[test]
fn ttl_expiry_answers_time_exceeded_and_creates_no_flow() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40004);
    let frame = udp(l2_consumer(), consumer, endpoint, 1, b"ttl one");
    let out = h.exchange(PORT_A, &frame);
    assert!(out.b.is_empty());
    assert_eq!(out.a.len(), 1);
    let expected = icmp_error(
        L2::new(GW_MAC_A, CONSUMER.mac),
        GW_IP,
        CONSUMER.ip,
        64,
        etherparse::Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        ip_of(&frame),
    );
    // The gateway's errors do not set DF; otherwise byte for byte what etherparse builds.
    let mut expected = expected;
    expected[20] = 0;
    expected[24..26].copy_from_slice(&[0, 0]);
    let sum = wire::checksum::data(&expected[14..34]);
    expected[24..26].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(out.a[0], expected);
    assert_eq!(h.counters().dropped(DropReason::TtlExpired), 1);
    assert_eq!(h.workers[0].flows().len(), 0);
}

#[test]
fn pending_endpoint_passes_nothing_and_approval_lets_the_next_syn_through() {
    let mut h = Harness::new(standard_model(ConnectionState::Pending, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40005);
    let syn = tcp(l2_consumer(), consumer, endpoint, 64, 1, Flags::syn(), &[]);
    assert!(h.exchange(PORT_A, &syn).is_empty());
    assert!(h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"x")).is_empty());
    assert_eq!(h.counters().dropped(DropReason::EndpointNotApproved), 2);
    let mut model = standard_model(APPROVED, 1);
    model.generation = 2;
    h.publish(model);
    assert_eq!(h.exchange(PORT_A, &syn).b.len(), 1);
}

#[test]
fn revoking_an_endpoint_resets_its_tcp_flows_both_ways() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40006);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 100, Flags::syn(), &[]));
    let nat = seen(&out.b[0]).src;
    h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 900, Flags::syn_ack(101), &[]));
    h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 101, Flags::ack(901), b"hello"));
    let mut model = datapath::Model::new(
        2,
        standard_networks(),
        vec![standard_service()],
        vec![standard_endpoint(ConnectionState::Rejected)],
        1024..=65535,
        1,
    )
    .unwrap();
    model.generation = 2;
    h.publish(model);
    h.run();
    let out = h.take();
    assert_eq!(out.a.len(), 1);
    assert_eq!(out.b.len(), 1);
    let rst_a = etherparse::SlicedPacket::from_ethernet(&out.a[0]).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = rst_a.transport else { panic!() };
    assert!(t.rst());
    assert_eq!(t.sequence_number(), 901);
    assert_eq!(seen(&out.a[0]).src, endpoint);
    assert_eq!(seen(&out.a[0]).dst, consumer);
    let rst_b = etherparse::SlicedPacket::from_ethernet(&out.b[0]).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = rst_b.transport else { panic!() };
    assert!(t.rst());
    assert_eq!(t.sequence_number(), 106);
    assert_eq!(seen(&out.b[0]).dst, backend);
    assert_checksums_valid(&out.a[0]);
    assert_checksums_valid(&out.b[0]);
    // The flow is gone: more data from the consumer is answered with a RST, not forwarded.
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 106, Flags::ack(901), b"more"));
    assert!(out.b.is_empty());
    assert_eq!(h.counters().get(Event::FlowsRevoked), 1);
}

#[test]
fn unsolicited_provider_traffic_creates_no_state_and_gets_no_answer() {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    for port in [1024, 30000, 65535] {
        let nat = SocketAddrV4::new(NAT_IP, port);
        assert!(h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 1, Flags::syn(), &[])).is_empty());
        assert!(h.exchange(PORT_B, &udp(l2_backend(), backend, nat, 64, b"x")).is_empty());
    }
    assert!(h.exchange(PORT_B, &echo(l2_backend(), BACKEND.ip, NAT_IP, 64, true, 5, 5, b"")).is_empty());
    assert_eq!(h.counters().dropped(DropReason::Unsolicited), 7);
    assert_eq!(h.workers[0].flows().len(), 0);
}

#[test]
fn policy_deny_and_reset() {
    use datapath::{ConnectRequest, ConnectVerdict};
    let model = standard_model(APPROVED, 1);
    let mut h = Harness::build(
        model,
        1,
        |_| datapath::WorkerConfig::default(),
        |_| {
            |r: &ConnectRequest<'_>| match r.source.port() {
                1 => ConnectVerdict::Deny,
                2 => ConnectVerdict::Reset,
                _ => ConnectVerdict::Allow,
            }
        },
    );
    h.learn_neighbors();
    let (c1, endpoint) = to_endpoint(1);
    assert!(h.exchange(PORT_A, &tcp(l2_consumer(), c1, endpoint, 64, 7, Flags::syn(), &[])).is_empty());
    let (c2, _) = to_endpoint(2);
    let out = h.exchange(PORT_A, &tcp(l2_consumer(), c2, endpoint, 64, 7, Flags::syn(), &[]));
    assert!(out.b.is_empty());
    assert_eq!(out.a.len(), 1);
    let p = etherparse::SlicedPacket::from_ethernet(&out.a[0]).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!() };
    assert!(t.rst() && t.ack());
    assert_eq!(t.acknowledgment_number(), 8);
    let (c3, _) = to_endpoint(3);
    assert_eq!(h.exchange(PORT_A, &tcp(l2_consumer(), c3, endpoint, 64, 7, Flags::syn(), &[])).b.len(), 1);
    let c = h.counters();
    assert_eq!(c.dropped(DropReason::PolicyDenied), 1);
    assert_eq!(c.dropped(DropReason::PolicyReset), 1);
    assert_eq!(c.get(Event::FlowsCreated), 1);
}
