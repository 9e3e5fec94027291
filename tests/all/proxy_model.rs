//! PROXY v2 insertion against a model: a reference client sender and a reference server
//! receiver talk through the gateway while the network loses, duplicates and reorders segments
//! on both sides (consumer→gateway, gateway→server, server→gateway).
//!
//! Invariants, checked on every segment:
//! 1. the server's in-order byte stream is always a prefix of `header ‖ client bytes`, and the
//!    header arrives whole (no segment starts inside it, none at `C` is shorter than it);
//! 2. every ACK the client sees lies in `[C, C + what it sent]`;
//! 3. every SACK block the client sees is non-empty and inside that range;
//! 4. no frame the gateway sends exceeds the MTU;
//! 5. liveness: once the faults stop, the transfer completes — in `on_handshake_ack` mode also
//!    with zero client bytes (the header still arrives).

// Test arithmetic on small, known sequence offsets and lengths.
#![allow(clippy::cast_possible_truncation, clippy::type_complexity)]

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use datapath::{ConnectRequest, ConnectVerdict, Event, Model, Placement, Policy, ProxyProtocol, Tlvs, WorkerConfig};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use proptest::prelude::*;
use testkit::*;

const SERVER_ISN: u32 = 0x7000_0000;
const FAULT_ROUNDS: usize = 25;
const MAX_ROUNDS: usize = 400;

#[derive(Debug, Clone, Copy)]
struct LinkId;

impl Policy for LinkId {
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        let id = request.endpoint.link_id.to_le_bytes();
        tlvs.push(0xEE, &[0x01, id[0], id[1], id[2], id[3]]).unwrap();
        ConnectVerdict::Allow
    }
}

/// xorshift64*: the faults are a function of the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

#[derive(Debug, Clone, Copy)]
struct Faults {
    loss: u32,
    dup: u32,
    reorder: u32,
}

/// Applies loss, duplication and reordering to one leg's frames of a round.
fn disturb(frames: Vec<Vec<u8>>, rng: &mut Rng, f: Faults, on: bool) -> Vec<Vec<u8>> {
    if !on {
        return frames;
    }
    let mut out = Vec::new();
    for frame in frames {
        if rng.chance(f.loss) {
            continue;
        }
        if rng.chance(f.dup) {
            out.push(frame.clone());
        }
        out.push(frame);
    }
    for i in 1..out.len() {
        if rng.chance(f.reorder) {
            out.swap(i - 1, i);
        }
    }
    out
}

struct Tcp {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    rst: bool,
    sack: Vec<(u32, u32)>,
    mss: Option<u16>,
    payload: Vec<u8>,
    ip_len: usize,
}

fn parse(frame: &[u8]) -> Tcp {
    assert_checksums_valid(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not TCP") };
    let mut sack = Vec::new();
    let mut mss = None;
    for o in t.options_iterator() {
        match o.unwrap() {
            TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                sack.push(first);
                sack.extend(rest.iter().flatten().copied());
            }
            TcpOptionElement::MaximumSegmentSize(m) => mss = Some(m),
            _ => {}
        }
    }
    Tcp {
        seq: t.sequence_number(),
        ack: t.ack().then(|| t.acknowledgment_number()),
        syn: t.syn(),
        rst: t.rst(),
        sack,
        mss,
        payload: t.payload().to_vec(),
        ip_len: usize::from(ip.header().total_len()),
    }
}

#[allow(clippy::too_many_arguments)]
fn frame(
    l2: L2,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(l2.src, l2.dst).ipv4(src.ip().octets(), dst.ip().octets(), 64).tcp(
        src.port(),
        dst.port(),
        seq,
        65000,
    );
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    if !payload.is_empty() {
        b = b.psh();
    }
    if !options.is_empty() {
        b = b.options(options).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// The reference server: reassembles from `C`, ACKs every segment with up to three SACK
/// blocks (a D-SACK first for a duplicate), retransmits its SYN-ACK until the handshake completes.
#[derive(Default)]
struct Server {
    c: Option<u32>,
    established: bool,
    stream: Vec<u8>,
    ooo: BTreeMap<u32, Vec<u8>>,
    recent: Vec<(u32, u32)>,
    header_len: usize,
}

impl Server {
    fn rcv_nxt(&self) -> u32 {
        self.c.unwrap_or(0).wrapping_add(self.stream.len() as u32)
    }

    /// Segments from the gateway; returns the server's answers as (seq, ack, sack, syn).
    fn receive(&mut self, seg: &Tcp) -> Option<(u32, u32, Vec<(u32, u32)>, bool)> {
        if seg.rst {
            panic!("the gateway reset the connection towards the server");
        }
        if seg.syn {
            self.c = Some(seg.seq.wrapping_add(1));
            return Some((SERVER_ISN, seg.seq.wrapping_add(1), Vec::new(), true));
        }
        let c = self.c?;
        if seg.ack == Some(SERVER_ISN.wrapping_add(1)) {
            self.established = true;
        }
        let off = seg.seq.wrapping_sub(c);
        let len = seg.payload.len() as u32;
        let mut dsack = None;
        if len > 0 {
            let l = self.header_len as u32;
            // Invariant 1: the header is never split.
            assert!(!(off > 0 && off < l && off < 0x8000_0000), "a segment starts inside the header (offset {off})");
            if off == 0 {
                assert!(len >= l, "the segment at C is shorter than the header ({len} < {l})");
            }
            let have = self.stream.len() as u32;
            if off.wrapping_add(len) <= have || off >= 0x8000_0000 {
                dsack = Some((seg.seq, seg.seq.wrapping_add(len)));
            } else {
                let keep = self.ooo.get(&off).is_none_or(|d| d.len() < seg.payload.len());
                if keep {
                    self.ooo.insert(off, seg.payload.clone());
                }
                self.recent.retain(|&(l, _)| l != seg.seq);
                self.recent.insert(0, (seg.seq, seg.seq.wrapping_add(len)));
                // Move every chunk that reaches the in-order edge into the stream.
                loop {
                    let have = self.stream.len() as u32;
                    let reachable: Vec<u32> = self.ooo.range(..=have).map(|(&k, _)| k).collect();
                    let mut progressed = false;
                    for k in reachable {
                        let d = self.ooo.remove(&k).unwrap();
                        let now = self.stream.len() as u32;
                        if k + d.len() as u32 > now {
                            self.stream.extend_from_slice(&d[(now - k) as usize..]);
                            progressed = true;
                        }
                    }
                    if !progressed {
                        break;
                    }
                }
            }
        }
        let rcv_nxt = self.rcv_nxt();
        // SACK: D-SACK first, then the most recent out-of-order blocks still above rcv_nxt.
        let mut blocks = Vec::new();
        if let Some(d) = dsack {
            blocks.push(d);
        }
        let above = |(l, _): &(u32, u32)| (l.wrapping_sub(rcv_nxt) as i32) > 0;
        self.recent.retain(above);
        for &(l, _) in &self.recent {
            if blocks.len() == 3 {
                break;
            }
            // The block as the receiver holds it: the contiguous run starting at l.
            let off = l.wrapping_sub(c);
            if let Some(data) = self.ooo.get(&off) {
                let mut end = off + data.len() as u32;
                while let Some(d) = self.ooo.get(&end) {
                    end += d.len() as u32;
                }
                blocks.push((l, c.wrapping_add(end)));
            }
        }
        Some((SERVER_ISN.wrapping_add(1), rcv_nxt, blocks, false))
    }
}

fn run_case(placement: Placement, isn: u32, total: usize, faults: Faults, seed: u64) -> Result<(), TestCaseError> {
    let mut service = standard_service();
    service.proxy = Some(ProxyProtocol { placement, header_budget: 107, probe_sources: Vec::new() });
    let model =
        Model::new(1, standard_networks(), vec![service], vec![standard_endpoint(APPROVED)], 1024..=65535, 1).unwrap();
    let mut h = Harness::build(model, 1, |_| WorkerConfig::default(), |_| LinkId);
    h.learn_neighbors();
    let mut rng = Rng(seed | 1);
    let (consumer, endpoint) = to_endpoint(41000);
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let c = isn.wrapping_add(1);
    let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
    let mut header = Vec::new();
    header.extend_from_slice(&[
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 0x14,
    ]);
    header.extend_from_slice(&consumer.ip().octets());
    header.extend_from_slice(&endpoint.ip().octets());
    header.extend_from_slice(&consumer.port().to_be_bytes());
    header.extend_from_slice(&endpoint.port().to_be_bytes());
    header.extend_from_slice(&[0xEE, 0, 5, 1]);
    header.extend_from_slice(&LINK_ID.to_le_bytes());
    let mut server = Server { header_len: header.len(), ..Server::default() };
    let mut nat: Option<SocketAddrV4> = None;

    // Client state.
    let mut established = false;
    let mut una = 0u32;
    let mut sent = 0u32;
    let mut stall = 0usize;
    let mut handshake_acks = 0usize;
    let mut tsval = 100u32;
    let mut to_server_pending: Vec<Vec<u8>> = Vec::new();

    for round in 0..MAX_ROUNDS {
        let faulty = round < FAULT_ROUNDS;
        tsval += 1;
        let ts = [TcpOptionElement::Noop, TcpOptionElement::Noop, TcpOptionElement::Timestamp(tsval, 7)];
        // The client.
        let mut out = Vec::new();
        if !established {
            if round % 3 == 0 {
                let opts = [
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                    TcpOptionElement::Timestamp(tsval, 0),
                ];
                out.push(frame(l2_consumer(), consumer, endpoint, isn, None, true, &opts, &[]));
            }
        } else {
            let ack = Some(SERVER_ISN.wrapping_add(1));
            if handshake_acks > 0 {
                handshake_acks = 0;
                out.push(frame(l2_consumer(), consumer, endpoint, c.wrapping_add(sent), ack, false, &ts, &[]));
            }
            let mut in_flight = 0;
            while (sent as usize) < total && in_flight < 2 {
                // Sometimes a full 1448-byte segment: the client ignores the clamped MSS.
                let size = if rng.chance(25) { 1448 } else { 1 + rng.below(1448) as u32 };
                let size = size.min(total as u32 - sent);
                let payload = &data[sent as usize..(sent + size) as usize];
                out.push(frame(l2_consumer(), consumer, endpoint, c.wrapping_add(sent), ack, false, &ts, payload));
                sent += size;
                in_flight += 1;
            }
            stall += 1;
            if stall >= 3 && una < sent {
                // A retransmission from snd_una, re-segmented at random.
                let size = if rng.chance(25) { 1448 } else { 1 + rng.below(1448) as u32 }.min(sent - una);
                let payload = &data[una as usize..(una + size) as usize];
                out.push(frame(l2_consumer(), consumer, endpoint, c.wrapping_add(una), ack, false, &ts, payload));
                stall = 0;
            }
            if rng.chance(10) {
                out.push(frame(l2_consumer(), consumer, endpoint, c.wrapping_add(sent), ack, false, &ts, &[]));
            }
        }
        for f in disturb(out, &mut rng, faults, faulty) {
            h.inject(0, PORT_A, &f);
        }
        h.run();
        let sent_now = h.take();
        prop_assert!(sent_now.a.is_empty() || sent_now.a.iter().all(|f| !parse(f).rst), "a RST to the client");
        to_server_pending.extend(sent_now.b);

        // Gateway → server, and the server's answers.
        let mut answers = Vec::new();
        for f in disturb(std::mem::take(&mut to_server_pending), &mut rng, faults, faulty) {
            let seg = parse(&f);
            prop_assert!(seg.ip_len <= 1500, "a frame of {} bytes exceeds the MTU", seg.ip_len);
            if seg.syn {
                nat = Some(SocketAddrV4::new(NAT_IP, u16::from_be_bytes([f[34], f[35]])));
            }
            if let Some((seq, ack, sack, syn)) = server.receive(&seg) {
                answers.push((seq, ack, sack, syn));
            }
            let expected_len = server.stream.len().min(header.len());
            prop_assert_eq!(&server.stream[..expected_len], &header[..expected_len]);
            if server.stream.len() > header.len() {
                let n = server.stream.len() - header.len();
                prop_assert_eq!(&server.stream[header.len()..], &data[..n]);
            }
        }
        if !server.established && server.c.is_some() && round % 4 == 3 {
            answers.push((SERVER_ISN, server.c.unwrap_or(0), Vec::new(), true));
        }
        let Some(nat) = nat else { continue };
        let mut back = Vec::new();
        for (seq, ack, sack, syn) in answers {
            let mut opts = vec![TcpOptionElement::Noop, TcpOptionElement::Noop, TcpOptionElement::Timestamp(9, tsval)];
            if syn {
                opts = vec![
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                    TcpOptionElement::Timestamp(9, tsval),
                ];
            } else if !sack.is_empty() {
                let mut rest = [None, None, None];
                for (i, b) in sack.iter().skip(1).take(2).enumerate() {
                    rest[i] = Some(*b);
                }
                opts = vec![
                    TcpOptionElement::Noop,
                    TcpOptionElement::Noop,
                    TcpOptionElement::SelectiveAcknowledgement(sack[0], rest),
                ];
            }
            back.push(frame(l2_backend(), backend, nat, seq, Some(ack), syn, &opts, &[]));
        }
        for f in disturb(back, &mut rng, faults, faulty) {
            h.inject(0, PORT_B, &f);
        }
        h.run();
        let to_client = h.take();
        prop_assert!(to_client.b.iter().all(|f| !parse(f).rst), "a RST to the server");
        for f in &to_client.a {
            let seg = parse(f);
            prop_assert!(!seg.rst, "a RST to the client");
            if seg.syn {
                prop_assert_eq!(seg.ack, Some(c));
                if let Some(m) = seg.mss {
                    prop_assert_eq!(usize::from(m), 1460 - header.len());
                }
                established = true;
                handshake_acks += 1;
                continue;
            }
            let Some(ack) = seg.ack else { continue };
            // Invariant 2: ACKs inside [C, C + sent].
            let off = ack.wrapping_sub(c);
            prop_assert!(off <= sent, "ACK {ack} beyond what the client sent (C {c}, sent {sent})");
            // Invariant 3: SACK blocks non-empty and inside the sent range.
            for &(l, r) in &seg.sack {
                let (lo, ro) = (l.wrapping_sub(c), r.wrapping_sub(c));
                prop_assert!(lo < ro && ro <= sent, "SACK block [{l}, {r}) outside [C, C+{sent}] (C {c})");
            }
            if off > una {
                una = off;
                stall = 0;
            }
        }
        h.advance(Duration::from_millis(100));
        h.poll_n(1);
        let timer_frames = h.take();
        to_server_pending.extend(timer_frames.b);
        prop_assert!(timer_frames.a.is_empty());

        let want = header.len() + total;
        let header_expected = placement == Placement::OnHandshakeAck || total > 0;
        let done = if header_expected {
            server.stream.len() == want && una == total as u32
        } else {
            established && server.stream.is_empty()
        };
        if done && !faulty {
            prop_assert_eq!(h.counters().get(Event::ProxyGiveups), 0);
            return Ok(());
        }
    }
    Err(TestCaseError::fail(format!(
        "no liveness: the server has {} of {} bytes, the client's una {una} of {total}",
        server.stream.len(),
        header.len() + total
    )))
}

fn placements() -> impl Strategy<Value = Placement> {
    prop_oneof![Just(Placement::OnHandshakeAck), Just(Placement::OnFirstData)]
}

fn isns() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..20_000).prop_map(|d| 0u32.wrapping_sub(d))]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_server_always_reads_header_then_client_bytes(
        placement in placements(),
        isn in isns(),
        total in prop_oneof![Just(0usize), 1usize..200, 200usize..6000],
        loss in 0u32..25,
        dup in 0u32..20,
        reorder in 0u32..40,
        seed in any::<u64>(),
    ) {
        run_case(placement, isn, total, Faults { loss, dup, reorder }, seed)?;
    }
}

#[test]
fn zero_client_bytes_in_handshake_ack_mode_still_deliver_the_header() {
    for seed in 1..20 {
        run_case(Placement::OnHandshakeAck, 1000, 0, Faults { loss: 20, dup: 10, reorder: 30 }, seed).unwrap();
    }
}
