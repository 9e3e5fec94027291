//! PROXY protocol v2 insertion: the packet-in/packet-out cases of the design (exact sequence
//! numbers) on the engine over in-memory I/O. The consumer 198.18.0.7:40000 connects to the
//! endpoint 198.18.0.50:80; client ISN 1000 (C = 1001), server ISN 5000; the policy adds the
//! Azure link-id TLV, so the header is 16 + 12 + 8 = 36 bytes (L = 36). Client segments carry
//! timestamps (a 32-byte TCP header), the MTU is 1500.

// Test arithmetic on small, known sequence offsets and lengths.
#![allow(clippy::cast_possible_truncation, clippy::wrong_self_convention)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use datapath::{
    ConnectRequest, ConnectVerdict, ConnectionState, DropReason, Event, Model, Placement, Policy, ProxyProtocol, Tlvs,
    WorkerConfig,
};
use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice,
};
use testkit::*;

const C: u32 = 1001;
const L: u32 = 36;
const SERVER_ISN: u32 = 5000;

/// Adds `0xEE 0x0005 0x01 <link id LE>` like the azure-link-id plugin, or resets.
#[derive(Debug, Clone, Copy)]
struct Azure {
    reset: bool,
    extra: usize,
}

impl Policy for Azure {
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        if self.reset {
            return ConnectVerdict::Reset;
        }
        let id = request.endpoint.link_id.to_le_bytes();
        tlvs.push(0xEE, &[0x01, id[0], id[1], id[2], id[3]]).unwrap();
        if self.extra > 0 {
            tlvs.push(0xE1, &vec![b'x'; self.extra]).unwrap();
        }
        ConnectVerdict::Allow
    }
}

fn model(placement: Placement, probes: Vec<(Ipv4Addr, u8)>) -> Model {
    let mut service = standard_service();
    service.proxy = Some(ProxyProtocol { placement, header_budget: 107, probe_sources: probes });
    Model::new(1, standard_networks(), vec![service], vec![standard_endpoint(APPROVED)], 1024..=65535, 1).unwrap()
}

fn harness_with(placement: Placement, policy: Azure, probes: Vec<(Ipv4Addr, u8)>) -> Harness<Azure> {
    let mut h = Harness::build(model(placement, probes), 1, |_| WorkerConfig::default(), move |_| policy);
    h.learn_neighbors();
    h
}

fn harness(placement: Placement) -> Harness<Azure> {
    harness_with(placement, Azure { reset: false, extra: 0 }, Vec::new())
}

/// The header the gateway must insert for the standard flow.
fn expected_header(consumer: SocketAddrV4) -> Vec<u8> {
    let mut h = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x14];
    h.extend_from_slice(&consumer.ip().octets());
    h.extend_from_slice(&ENDPOINT_IP.octets());
    h.extend_from_slice(&consumer.port().to_be_bytes());
    h.extend_from_slice(&ENDPOINT_PORT.to_be_bytes());
    h.extend_from_slice(&[0xEE, 0x00, 0x05, 0x01]);
    h.extend_from_slice(&LINK_ID.to_le_bytes());
    assert_eq!(h.len(), L as usize);
    h
}

/// A segment with explicit options.
#[derive(Clone, Debug, Default)]
struct Seg {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    psh: bool,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
}

fn ts(a: u32, b: u32) -> Vec<TcpOptionElement> {
    vec![TcpOptionElement::Noop, TcpOptionElement::Noop, TcpOptionElement::Timestamp(a, b)]
}

fn data(seq: u32, ack: u32, len: usize) -> Seg {
    Seg { seq, ack: Some(ack), psh: true, options: ts(77, 88), payload: payload(seq, len), ..Seg::default() }
}

/// Client bytes are a function of their stream position, so any slice can be checked.
fn payload(seq: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq.wrapping_add(i as u32) % 251) as u8).collect()
}

fn pure_ack(seq: u32, ack: u32) -> Seg {
    Seg { seq, ack: Some(ack), options: ts(77, 88), ..Seg::default() }
}

fn build(l2: L2, src: SocketAddrV4, dst: SocketAddrV4, s: &Seg) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(l2.src, l2.dst).ipv4(src.ip().octets(), dst.ip().octets(), 64).tcp(
        src.port(),
        dst.port(),
        s.seq,
        64240,
    );
    if s.syn {
        b = b.syn();
    }
    if let Some(a) = s.ack {
        b = b.ack(a);
    }
    if s.fin {
        b = b.fin();
    }
    if s.rst {
        b = b.rst();
    }
    if s.psh {
        b = b.psh();
    }
    if !s.options.is_empty() {
        b = b.options(&s.options).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, &s.payload).unwrap();
    out
}

/// What came out, as etherparse reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Out {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    rst: bool,
    psh: bool,
    ecn: u8,
    header_len: usize,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
    ip_len: usize,
}

fn read(frame: &[u8]) -> Out {
    assert_checksums_valid(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not TCP") };
    Out {
        src: SocketAddrV4::new(ip.header().source_addr(), t.source_port()),
        dst: SocketAddrV4::new(ip.header().destination_addr(), t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        fin: t.fin(),
        rst: t.rst(),
        psh: t.psh(),
        ecn: ip.header().ecn().value(),
        header_len: t.header_len(),
        options: t.options_iterator().filter_map(Result::ok).collect(),
        payload: t.payload().to_vec(),
        ip_len: usize::from(ip.header().total_len()),
    }
}

/// One connection through the gateway: the consumer side and the backend side as seen by it.
struct Conn {
    consumer: SocketAddrV4,
    endpoint: SocketAddrV4,
    backend: SocketAddrV4,
    nat: SocketAddrV4,
}

impl Conn {
    fn from_consumer<P: Policy>(&self, h: &mut Harness<P>, s: &Seg) -> Vec<Out> {
        let out = h.exchange(PORT_A, &build(l2_consumer(), self.consumer, self.endpoint, s));
        assert!(out.a.is_empty(), "nothing goes back to the consumer");
        out.b.iter().map(|f| read(f)).collect()
    }

    fn from_backend<P: Policy>(&self, h: &mut Harness<P>, s: &Seg) -> Vec<Out> {
        let out = h.exchange(PORT_B, &build(l2_backend(), self.backend, self.nat, s));
        assert!(out.b.is_empty(), "nothing goes back to the backend");
        out.a.iter().map(|f| read(f)).collect()
    }

    fn one_to_backend<P: Policy>(&self, h: &mut Harness<P>, s: &Seg) -> Out {
        let out = self.from_consumer(h, s);
        assert_eq!(out.len(), 1, "{s:?} gives one segment: {out:?}");
        assert_eq!((out[0].src, out[0].dst), (self.nat, self.backend));
        out.into_iter().next().unwrap()
    }

    fn one_to_consumer<P: Policy>(&self, h: &mut Harness<P>, s: &Seg) -> Out {
        let out = self.from_backend(h, s);
        assert_eq!(out.len(), 1, "{s:?} gives one segment: {out:?}");
        assert_eq!((out[0].src, out[0].dst), (self.endpoint, self.consumer));
        out.into_iter().next().unwrap()
    }
}

fn syn_options() -> Vec<TcpOptionElement> {
    vec![
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(77, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ]
}

/// SYN and SYN-ACK (cases 1 and 2), returning the connection.
fn open<P: Policy>(h: &mut Harness<P>, port: u16, isn: u32) -> Conn {
    let (consumer, endpoint) = to_endpoint(port);
    let syn = Seg { seq: isn, syn: true, options: syn_options(), ..Seg::default() };
    let out = h.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &syn));
    assert_eq!(out.b.len(), 1, "the SYN goes through");
    let o = read(&out.b[0]);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let conn = Conn { consumer, endpoint, backend, nat: o.src };
    // Case 1: the SYN is unchanged: same sequence number, byte-identical options.
    assert_eq!((o.seq, o.syn, o.payload.len()), (isn, true, 0));
    assert_eq!(o.options, syn_options());
    // Case 2: the SYN-ACK's MSS is lowered by L, other options identical.
    let syn_ack =
        Seg { seq: SERVER_ISN, ack: Some(isn.wrapping_add(1)), syn: true, options: syn_options(), ..Seg::default() };
    let o = conn.one_to_consumer(h, &syn_ack);
    assert_eq!((o.seq, o.ack), (SERVER_ISN, isn.wrapping_add(1)));
    let mut expected = syn_options();
    expected[0] = TcpOptionElement::MaximumSegmentSize(1460 - L as u16);
    assert_eq!(o.options, expected);
    conn
}

#[test]
fn first_data_mode_inserts_shifts_maps_and_clamps() {
    let mut h = harness(Placement::OnFirstData);
    let conn = open(&mut h, 40000, 1000);
    let header = expected_header(conn.consumer);

    // Case 3: the handshake ACK passes unchanged while the header is pending.
    let o = conn.one_to_backend(&mut h, &pure_ack(C, 5001));
    assert_eq!((o.seq, o.payload.len()), (C, 0));

    // Case 4: the first data gets the header: seq stays C, length + 36, PSH.
    let first = data(C, 5001, 100);
    let o = conn.one_to_backend(&mut h, &first);
    assert_eq!(o.seq, C);
    assert!(o.psh);
    assert_eq!(o.payload.len(), 136);
    assert_eq!(&o.payload[..36], &header[..]);
    assert_eq!(&o.payload[36..], &payload(C, 100)[..]);
    assert_eq!(o.ip_len, 20 + 32 + 136);
    let first_out = o;

    // Case 5: later data moves up by L.
    let o = conn.one_to_backend(&mut h, &data(1101, 5001, 50));
    assert_eq!((o.seq, o.payload.len()), (1137, 50));

    // Case 6: server ACKs map back; one inside the header is clamped to C.
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, 1137)).ack, 1101);
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, 1187)).ack, 1151);
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, 1020)).ack, C);

    // Case 7: SACK edges map back.
    let mut sack = pure_ack(5001, 1137);
    sack.options = vec![
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::SelectiveAcknowledgement((1187, 1237), [None, None, None]),
    ];
    let o = conn.one_to_consumer(&mut h, &sack);
    assert_eq!(o.ack, 1101);
    assert_eq!(
        o.options,
        vec![
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgement((1151, 1201), [None, None, None]),
        ]
    );

    // Case 8: a D-SACK of the bare header maps to nothing: the option becomes NOPs, doff stays.
    let mut dsack = pure_ack(5001, C);
    dsack.options = vec![
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::SelectiveAcknowledgement((C, C + L), [None, None, None]),
    ];
    let o = conn.one_to_consumer(&mut h, &dsack);
    assert_eq!(o.ack, C);
    assert_eq!(o.header_len, 32);
    assert_eq!(o.options, vec![TcpOptionElement::Noop; 12]);

    // Case 9: a retransmission of the first segment is byte-identical.
    assert_eq!(conn.one_to_backend(&mut h, &first), first_out);

    // Case 10: a collapsed retransmission from C carries the same header.
    let o = conn.one_to_backend(&mut h, &data(C, 5001, 150));
    assert_eq!((o.seq, o.payload.len()), (C, 186));
    assert_eq!(&o.payload[..36], &header[..]);
    assert_eq!(&o.payload[36..], &payload(C, 150)[..]);

    // Case 11: a client that ignores the clamped MSS: split in two, the header never split.
    let out = conn.from_consumer(&mut h, &data(C, 5001, 1448));
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].seq, out[0].payload.len(), out[0].psh), (C, 1448, false));
    assert_eq!(&out[0].payload[..36], &header[..]);
    assert_eq!(&out[0].payload[36..], &payload(C, 1412)[..]);
    assert_eq!((out[1].seq, out[1].payload.len(), out[1].psh), (2449, 36, true));
    assert_eq!(&out[1].payload[..], &payload(C + 1412, 36)[..]);
    assert!(out.iter().all(|o| o.ip_len <= 1500));

    // Case 14 (second half) and 15: RST after data moves up; the server's FIN maps its ACK.
    let o = conn.one_to_consumer(&mut h, &Seg { seq: 5001, ack: Some(1187), fin: true, ..Seg::default() });
    assert_eq!((o.seq, o.ack, o.fin), (5001, 1151, true));
    let o = conn.one_to_backend(&mut h, &Seg { seq: 1151, rst: true, ..Seg::default() });
    assert_eq!((o.seq, o.rst), (1187, true));

    let c = h.counters();
    assert_eq!(c.get(Event::ProxyHeadersInserted), 1);
    assert_eq!(c.get(Event::ProxyHeadersReprepended), 3);
    assert_eq!(c.get(Event::ProxySplits), 1);
    assert_eq!(c.get(Event::ProxyAcksClamped), 1);
    assert_eq!(c.get(Event::ProxySackBlocksRemoved), 1);
    assert_eq!(c.get(Event::ProxyMssClamped), 1);
    assert_eq!(c.total_drops(), 0);
}

#[test]
fn reordered_data_fin_without_data_and_pending_rst() {
    // Case 12: data after C overtakes the first segment.
    let mut h = harness(Placement::OnFirstData);
    let conn = open(&mut h, 40001, 1000);
    assert_eq!(conn.one_to_backend(&mut h, &data(1101, 5001, 50)).seq, 1137);
    let o = conn.one_to_backend(&mut h, &data(C, 5001, 100));
    assert_eq!((o.seq, o.payload.len()), (C, 136));

    // Case 13: FIN without data while pending: the header rides on the FIN.
    let mut h = harness(Placement::OnFirstData);
    let conn = open(&mut h, 40002, 1000);
    let o = conn.one_to_backend(&mut h, &Seg { seq: C, ack: Some(5001), fin: true, ..Seg::default() });
    assert_eq!((o.seq, o.fin, o.psh, o.payload.len()), (C, true, true, 36));
    assert_eq!(o.payload, expected_header(conn.consumer));
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, C + L + 1)).ack, C + 1);

    // Case 14 (first half): a RST at C while pending stays exact.
    let mut h = harness(Placement::OnFirstData);
    let conn = open(&mut h, 40003, 1000);
    let o = conn.one_to_backend(&mut h, &Seg { seq: C, rst: true, ..Seg::default() });
    assert_eq!((o.seq, o.rst), (C, true));
}

#[test]
fn handshake_ack_mode_converts_the_ack_and_survives_server_first_data() {
    let mut h = harness(Placement::OnHandshakeAck);
    let conn = open(&mut h, 40010, 1000);
    let header = expected_header(conn.consumer);

    // Case 16: the handshake ACK becomes the header segment, with the client's timestamps.
    let o = conn.one_to_backend(&mut h, &pure_ack(C, 5001));
    assert_eq!((o.seq, o.ack, o.psh), (C, 5001, true));
    assert_eq!(o.payload, header);
    assert_eq!(o.options, ts(77, 88));

    // Case 17: the server speaks first (a banner) before ACKing the header.
    let banner = Seg {
        seq: 5001,
        ack: Some(C),
        psh: true,
        payload: b"220 banner ready here\r\n"[..20].to_vec(),
        ..Seg::default()
    };
    assert_eq!(conn.one_to_consumer(&mut h, &banner).ack, C);
    // The client ACKs the banner within the RTO: not converted again, just shifted.
    let o = conn.one_to_backend(&mut h, &pure_ack(C, 5021));
    assert_eq!((o.seq, o.payload.len()), (C + L, 0));
    // The server ACKs the header: C again to the client, and the header is acknowledged.
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5021, C + L)).ack, C);

    // Case 20: a keepalive after the header was acknowledged.
    assert_eq!(conn.one_to_backend(&mut h, &pure_ack(1150, 5021)).seq, 1186);
    // Case 19 once acknowledged: a client segment from C still carries the header.
    let o = conn.one_to_backend(&mut h, &data(C, 5021, 100));
    assert_eq!((o.seq, o.payload.len()), (C, 136));

    // No timer runs after the ACK.
    h.advance(Duration::from_secs(5));
    h.poll_n(4);
    assert!(h.take().is_empty());
    let c = h.counters();
    assert_eq!(c.get(Event::ProxyAcksConverted), 1);
    assert_eq!(c.get(Event::ProxyTimerRetransmits), 0);
}

#[test]
fn handshake_ack_mode_data_on_an_inflight_header_is_reprepended() {
    // Case 19: the header is in flight, the client sends data from C: re-prepended.
    let mut h = harness(Placement::OnHandshakeAck);
    let conn = open(&mut h, 40011, 1000);
    conn.one_to_backend(&mut h, &pure_ack(C, 5001));
    let o = conn.one_to_backend(&mut h, &data(C, 5001, 100));
    assert_eq!((o.seq, o.payload.len()), (C, 136));
    assert_eq!(&o.payload[..36], &expected_header(conn.consumer)[..]);
}

#[test]
fn the_gateway_retransmits_a_lost_header_until_acknowledged() {
    // Case 18: the converted ACK is lost (we just do not deliver it); the gateway resends it.
    let mut h = harness(Placement::OnHandshakeAck);
    let conn = open(&mut h, 40012, 1000);
    let header = expected_header(conn.consumer);
    conn.one_to_backend(&mut h, &pure_ack(C, 5001));

    h.advance(Duration::from_millis(200));
    h.poll_n(2);
    assert!(h.take().is_empty(), "nothing before the RTO");
    h.advance(Duration::from_millis(60));
    h.poll_n(2);
    let out = h.take();
    assert_eq!(out.b.len(), 1, "one retransmission at +250 ms");
    let o = read(&out.b[0]);
    assert_eq!((o.src, o.dst), (conn.nat, conn.backend));
    assert_eq!((o.seq, o.ack, o.psh, o.ecn), (C, 5001, true, 0));
    assert_eq!(o.payload, header);
    assert!(o.options.contains(&TcpOptionElement::Timestamp(77, 88)), "the client's timestamps: {:?}", o.options);
    assert_eq!(o.header_len, 32);

    h.advance(Duration::from_millis(500));
    h.poll_n(2);
    assert_eq!(h.take().b.len(), 1, "again at +750 ms");
    // The server ACKs the header: the timer stops.
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, C + L)).ack, C);
    h.advance(Duration::from_secs(10));
    h.poll_n(4);
    assert!(h.take().is_empty());
    assert_eq!(h.counters().get(Event::ProxyTimerRetransmits), 2);
}

#[test]
fn a_header_never_acknowledged_resets_both_ways() {
    let mut h = harness(Placement::OnHandshakeAck);
    let conn = open(&mut h, 40013, 1000);
    conn.one_to_backend(&mut h, &pure_ack(C, 5001));
    let mut resends = 0;
    let mut resets = (0, 0);
    for _ in 0..100 {
        h.advance(Duration::from_millis(100));
        h.poll_n(1);
        let out = h.take();
        for f in &out.b {
            let o = read(f);
            if o.rst {
                resets.1 += 1;
                assert_eq!(o.seq, C + L, "the reset to the server is in its sequence space");
            } else {
                resends += 1;
            }
        }
        resets.0 += out.a.iter().filter(|f| read(f).rst).count();
    }
    assert_eq!(resends, 4, "sends 2 to 5 come from the gateway's timer");
    assert_eq!(resets, (1, 1));
    assert_eq!(h.counters().get(Event::ProxyGiveups), 1);
    // The flow is gone: the client's next segment meets a RST, nothing reaches the server.
    let out = h.exchange(PORT_A, &build(l2_consumer(), conn.consumer, conn.endpoint, &pure_ack(C, 5001)));
    assert!(out.b.is_empty());
    assert!(read(&out.a[0]).rst);
}

#[test]
fn sequence_numbers_wrap() {
    // Case 21: ISN 0xFFFFFFF0.
    let mut h = harness(Placement::OnFirstData);
    let isn = 0xFFFF_FFF0u32;
    let c = isn.wrapping_add(1);
    let conn = open(&mut h, 40020, isn);
    let o = conn.one_to_backend(&mut h, &data(c, 5001, 100));
    assert_eq!((o.seq, o.payload.len()), (c, 136));
    assert_eq!(&o.payload[..36], &expected_header(conn.consumer)[..]);
    let next = c.wrapping_add(100);
    assert_eq!(next, 0x0000_0055);
    assert_eq!(conn.one_to_backend(&mut h, &data(next, 5001, 10)).seq, 0x0000_0079);
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, 0x0000_0079)).ack, 0x0000_0055);
}

#[test]
fn icmp_errors_quoting_a_shifted_sequence_number_are_mapped_back() {
    // Case 23: frag-needed from the backend side quoting seq 1137.
    let mut h = harness(Placement::OnFirstData);
    let conn = open(&mut h, 40030, 1000);
    conn.one_to_backend(&mut h, &data(C, 5001, 100));
    let out = h.exchange(PORT_A, &build(l2_consumer(), conn.consumer, conn.endpoint, &data(1101, 5001, 50)));
    let quoted = ip_of(&out.b[0]).to_vec();
    let frag = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 });
    let e = icmp_error(l2_backend(), BACKEND.ip, NAT_IP, 64, frag, &quoted[..48]);
    let out = h.exchange(PORT_B, &e);
    assert_eq!(out.a.len(), 1);
    assert_checksums_valid(&out.a[0]);
    let ip = ip_of(&out.a[0]);
    let inner = &ip[20 + 8..];
    assert_eq!(&inner[12..16], &CONSUMER.ip.octets());
    assert_eq!(&inner[16..20], &ENDPOINT_IP.octets());
    let tcp = &inner[20..];
    assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), conn.consumer.port());
    assert_eq!(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]), 1101);
}

#[test]
fn super_frames_needing_the_header_are_dropped_and_counted() {
    // Case 24: a GRO super-frame (IP length 2000 > MTU 1500) at C is never spliced into.
    let mut h = harness(Placement::OnFirstData);
    let conn = open(&mut h, 40040, 1000);
    assert!(conn.from_consumer(&mut h, &data(C, 5001, 1948)).is_empty());
    assert_eq!(h.counters().dropped(DropReason::ProxyOversize), 1);
    // The client's retransmission at the MSS gets the header.
    let o = conn.one_to_backend(&mut h, &data(C, 5001, 1000));
    assert_eq!((o.seq, o.payload.len()), (C, 1036));
}

#[test]
fn no_flow_starts_mid_stream() {
    // Case 25: an ACK for an unknown flow of a PROXY service: no flow, a RST, its own reason.
    let mut h = harness(Placement::OnHandshakeAck);
    let (consumer, endpoint) = to_endpoint(40050);
    let out = h.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &pure_ack(C, 5001)));
    assert!(out.b.is_empty());
    assert_eq!(out.a.len(), 1);
    assert!(read(&out.a[0]).rst);
    let c = h.counters();
    assert_eq!(c.dropped(DropReason::ProxyMidstream), 1);
    assert_eq!(c.dropped(DropReason::TcpNoFlow), 0);
    assert_eq!(c.get(Event::FlowsCreated), 0);
}

#[test]
fn with_proxy_off_the_same_traffic_is_plain_nat() {
    // Case 26: the same segments on a service without PROXY v2 are byte-identical to plain NAT.
    let mut plain = Harness::build(
        standard_model(ConnectionState::Approved, 1),
        1,
        |_| WorkerConfig::default(),
        |_| Azure { reset: false, extra: 0 },
    );
    plain.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40060);
    let syn = Seg { seq: 1000, syn: true, options: syn_options(), ..Seg::default() };
    let out = plain.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &syn));
    let o = read(&out.b[0]);
    let conn = Conn { consumer, endpoint, backend: o.dst, nat: o.src };
    let syn_ack = Seg { seq: SERVER_ISN, ack: Some(C), syn: true, options: syn_options(), ..Seg::default() };
    assert_eq!(conn.one_to_consumer(&mut plain, &syn_ack).options, syn_options());
    let o = conn.one_to_backend(&mut plain, &data(C, 5001, 100));
    assert_eq!((o.seq, o.payload), (C, payload(C, 100)));
    assert_eq!(conn.one_to_consumer(&mut plain, &pure_ack(5001, 1101)).ack, 1101);
}

#[test]
fn probe_sources_get_a_local_header() {
    let mut h = harness_with(
        Placement::OnFirstData,
        Azure { reset: false, extra: 0 },
        vec![(Ipv4Addr::new(198, 18, 0, 7), 32)],
    );
    let (consumer, endpoint) = to_endpoint(40070);
    let syn = Seg { seq: 1000, syn: true, options: syn_options(), ..Seg::default() };
    let out = h.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &syn));
    let o = read(&out.b[0]);
    let conn = Conn { consumer, endpoint, backend: o.dst, nat: o.src };
    let syn_ack = Seg { seq: SERVER_ISN, ack: Some(C), syn: true, options: syn_options(), ..Seg::default() };
    let o = conn.one_to_consumer(&mut h, &syn_ack);
    // L = 16: the MSS is lowered by 16.
    assert_eq!(o.options[0], TcpOptionElement::MaximumSegmentSize(1444));
    let o = conn.one_to_backend(&mut h, &data(C, 5001, 10));
    assert_eq!(
        &o.payload[..16],
        &[0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00]
    );
    assert_eq!(o.payload.len(), 26);
    assert_eq!(conn.one_to_consumer(&mut h, &pure_ack(5001, C + 16 + 10)).ack, C + 10);
    assert_eq!(h.counters().get(Event::ProxyLocalHeaders), 1);
}

#[test]
fn a_header_over_the_budget_or_a_failing_policy_refuses_the_connection() {
    // TLVs that push the header past 107 bytes: refused with a RST, never a stream without it.
    let mut h = harness_with(Placement::OnFirstData, Azure { reset: false, extra: 80 }, Vec::new());
    let (consumer, endpoint) = to_endpoint(40080);
    let syn = Seg { seq: 1000, syn: true, options: syn_options(), ..Seg::default() };
    let out = h.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &syn));
    assert!(out.b.is_empty());
    assert!(read(&out.a[0]).rst);
    assert_eq!(h.counters().dropped(DropReason::ProxyHeaderTooLong), 1);

    // A plugin failure is a Reset verdict: the consumer gets a RST, the server nothing.
    let mut h = harness_with(Placement::OnFirstData, Azure { reset: true, extra: 0 }, Vec::new());
    let out = h.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &syn));
    assert!(out.b.is_empty());
    assert!(read(&out.a[0]).rst);
    assert_eq!(h.counters().dropped(DropReason::PolicyReset), 1);
}

#[test]
fn fast_open_data_on_the_syn_is_dropped_for_the_client_to_resend() {
    let mut h = harness(Placement::OnFirstData);
    let (consumer, endpoint) = to_endpoint(40090);
    let mut options = syn_options();
    options.pop();
    options.pop();
    // Kind 34 (TFO) with an 8-byte cookie, built by hand as an unknown option is not in etherparse.
    let syn = Seg { seq: 1000, syn: true, options, payload: b"early data".to_vec(), ..Seg::default() };
    let mut frame = build(l2_consumer(), consumer, endpoint, &syn);
    // Replace the trailing padding: rebuild with a raw TFO option instead.
    let tfo = [34u8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1];
    let ip_start = 14;
    let tcp_start = ip_start + 20;
    let doff = usize::from(frame[tcp_start + 12] >> 4) * 4;
    let mut rebuilt = frame[..tcp_start + doff].to_vec();
    rebuilt.extend_from_slice(&tfo);
    rebuilt.extend_from_slice(b"early data");
    rebuilt[tcp_start + 12] = (((doff + tfo.len()) / 4) as u8) << 4;
    let total = (rebuilt.len() - ip_start) as u16;
    rebuilt[ip_start + 2..ip_start + 4].copy_from_slice(&total.to_be_bytes());
    fix_checksums(&mut rebuilt);
    frame = rebuilt;
    let out = h.exchange(PORT_A, &frame);
    assert_eq!(out.b.len(), 1);
    let o = read(&out.b[0]);
    assert!(o.syn);
    assert!(o.payload.is_empty(), "the SYN's data is dropped");
    assert_eq!(o.header_len, doff + tfo.len(), "the header length never changes");
    let options = &ip_of(&out.b[0])[20 + 20..20 + o.header_len];
    assert_eq!(&options[options.len() - 12..], &[1u8; 12], "the Fast Open option became NOPs");
}

/// Recomputes the IPv4 and TCP checksums of a hand-edited frame (etherparse as the oracle).
fn fix_checksums(frame: &mut [u8]) {
    frame[24] = 0;
    frame[25] = 0;
    let sum = wire::checksum::data(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    let src = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
    let dst = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    let mut tcp = wire::TcpPacket::new_unchecked(&mut frame[34..]);
    tcp.fill_checksum_v4(src, dst);
}

#[test]
fn the_mss_clamp_and_the_split_follow_the_provider_networks_mtu() {
    let mut networks = standard_networks();
    networks[1].mtu = 1400;
    let mut service = standard_service();
    service.proxy = Some(ProxyProtocol { placement: Placement::OnFirstData, ..ProxyProtocol::default() });
    let model = Model::new(1, networks, vec![service], vec![standard_endpoint(APPROVED)], 1024..=65535, 1).unwrap();
    let mut h = Harness::build(model, 1, |_| WorkerConfig::default(), |_| Azure { reset: false, extra: 0 });
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40100);
    let syn = Seg { seq: 1000, syn: true, options: syn_options(), ..Seg::default() };
    let out = h.exchange(PORT_A, &build(l2_consumer(), consumer, endpoint, &syn));
    let o = read(&out.b[0]);
    let conn = Conn { consumer, endpoint, backend: o.dst, nat: o.src };
    let syn_ack = Seg { seq: SERVER_ISN, ack: Some(C), syn: true, options: syn_options(), ..Seg::default() };
    // min(1460, 1400 - 40) - 36.
    let o = conn.one_to_consumer(&mut h, &syn_ack);
    assert_eq!(o.options[0], TcpOptionElement::MaximumSegmentSize(1324));
    // A 1400-byte first segment (with timestamps): header and data cannot share 1400 bytes of IP.
    let out = conn.from_consumer(&mut h, &data(C, 5001, 1348));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| o.ip_len <= 1400), "{:?}", out.iter().map(|o| o.ip_len).collect::<Vec<_>>());
    assert_eq!((out[0].seq, out[0].payload.len()), (C, 1348));
    assert_eq!((out[1].seq, out[1].payload.len()), (C + 1348, 36));
}
