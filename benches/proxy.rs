//! PROXY v2 benchmarks over the in-memory backend, each beside its baseline measured in the same
//! run: the same traffic through a service without PROXY v2.
//!
//! - `proxy_established_{1k,64k}`: established TCP flows whose header the server has already
//!   acknowledged; bursts of 32 alternate between client data segments (60-byte frames: 6 bytes
//!   of data, shifted by the header length on the way in) and server ACKs (mapped back). Every
//!   flow is visited once per cycle in a random order. Target: PROXY ≥ 0.9 × plain.
//! - `proxy_new_connections`: whole handshakes (SYN, SYN-ACK, ACK) of fresh connections, 32 at a
//!   time; with PROXY v2 the SYN builds the header, the SYN-ACK's MSS is clamped and the ACK
//!   becomes the header segment (`on_handshake_ack`). Target: PROXY ≥ 0.85 × plain. Building the
//!   SYN-ACK frames (which need the NAT port the gateway chose) is not timed.
//!
//! The run ends with `bench <name> <value> <unit>` lines from medians measured here.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use datapath::{ConnectRequest, ConnectVerdict, Event, Model, Policy, ProxyProtocol, Service, Tlvs, WorkerConfig};
use etherparse::PacketBuilder;
use io::{PacketBuf, PortId, BURST};
use testkit::*;

const NAT_IPS: u8 = 4;
const FIRST_SOURCE_PORT: u16 = 1024;
const SOURCE_PORTS: usize = 65536 - FIRST_SOURCE_PORT as usize;
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 5000;
/// 16 + 12 addresses + 8 for the link-id TLV.
const HEADER_LEN: u32 = 36;
const SAMPLES: usize = 20;

/// The azure-link-id plugin's decision, natively: every flow gets the `0xEE` TLV.
#[derive(Debug, Clone, Copy)]
struct LinkIdTlv;

impl Policy for LinkIdTlv {
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        let id = request.endpoint.link_id.to_le_bytes();
        if tlvs.push(0xEE, &[0x01, id[0], id[1], id[2], id[3]]).is_err() {
            return ConnectVerdict::Reset;
        }
        ConnectVerdict::Allow
    }
}

fn model(proxy: bool) -> Model {
    let service = Service {
        nat_ips: (0..NAT_IPS).map(|k| Ipv4Addr::new(198, 18, 0, 200 + k)).collect(),
        proxy: proxy.then(ProxyProtocol::default),
        ..standard_service()
    };
    Model::new(1, standard_networks(), vec![service], vec![standard_endpoint(APPROVED)], 1024..=65535, 1)
        .expect("the benchmark model is consistent")
}

fn harness(proxy: bool, flows: usize) -> Harness<LinkIdTlv> {
    let mut h = Harness::build(
        model(proxy),
        1,
        |_| WorkerConfig { flow_capacity: flows, ..WorkerConfig::default() },
        |_| LinkIdTlv,
    );
    h.learn_neighbors();
    for k in 0..flows.div_ceil(SOURCE_PORTS) {
        h.learn(PORT_A, consumer(k), ENDPOINT_IP, GW_MAC_A);
    }
    h
}

fn consumer(k: usize) -> Host {
    let k = u8::try_from(k).expect("at most 100 consumer addresses");
    Host { mac: [0x02, 0xaa, 0, 0, 1, k], ip: Ipv4Addr::new(198, 18, 0, 100 + k) }
}

fn source(i: usize) -> (Host, SocketAddrV4) {
    let host = consumer(i / SOURCE_PORTS);
    (host, SocketAddrV4::new(host.ip, FIRST_SOURCE_PORT + u16::try_from(i % SOURCE_PORTS).expect("fits")))
}

#[derive(Clone, Copy)]
enum Kind {
    Syn,
    SynAck,
    Ack,
}

#[allow(clippy::too_many_arguments)]
fn segment(
    l2: L2,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: Option<u32>,
    kind: Kind,
    data: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(l2.src, l2.dst).ipv4(src.ip().octets(), dst.ip().octets(), 64).tcp(
        src.port(),
        dst.port(),
        seq,
        64240,
    );
    match kind {
        Kind::Syn | Kind::SynAck => {
            b = b.syn();
            b = b.options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)]).expect("fits");
        }
        Kind::Ack => {}
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    if !data.is_empty() {
        b = b.psh();
    }
    let mut out = Vec::new();
    b.write(&mut out, data).expect("write");
    out
}

fn syn(i: usize) -> Vec<u8> {
    let (host, src) = source(i);
    segment(L2::new(host.mac, GW_MAC_A), src, endpoint(), CLIENT_ISN, None, Kind::Syn, &[])
}

fn endpoint() -> SocketAddrV4 {
    SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT)
}

fn backend() -> SocketAddrV4 {
    SocketAddrV4::new(BACKEND.ip, BACKEND_PORT)
}

fn nat_of(frame: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]),
        u16::from_be_bytes([frame[34], frame[35]]),
    )
}

/// One burst in, one poll, drain what left on `tx`; returns the frames sent, keeping them if asked.
fn burst(
    h: &mut Harness<LinkIdTlv>,
    frames: &[Vec<u8>],
    rx: PortId,
    tx: PortId,
    keep: Option<&mut Vec<Vec<u8>>>,
) -> u64 {
    let w = &mut h.workers[0];
    for f in frames {
        assert!(w.io_mut().inject(rx, f), "rx queue or pool full");
    }
    w.poll();
    let mut sent = 0;
    match keep {
        Some(out) => w.io_mut().drain_tx(tx, |b| {
            out.push(b.data().to_vec());
            sent += 1;
        }),
        None => w.io_mut().drain_tx(tx, |_| sent += 1),
    }
    sent
}

/// Flows opened and their header acknowledged; then one data frame and one ACK frame per flow.
struct Established {
    h: Harness<LinkIdTlv>,
    to_service: Vec<Vec<u8>>,
    to_consumer: Vec<Vec<u8>>,
}

impl Established {
    fn new(proxy: bool, flows: usize) -> Self {
        let mut h = harness(proxy, (2 * flows).next_power_of_two().max(1 << 16));
        let shift = if proxy { HEADER_LEN } else { 0 };
        let mut to_service = Vec::with_capacity(flows);
        let mut to_consumer = Vec::with_capacity(flows);
        for start in (0..flows).step_by(BURST) {
            let ids: Vec<usize> = (start..(start + BURST).min(flows)).collect();
            let syns: Vec<Vec<u8>> = ids.iter().map(|&i| syn(i)).collect();
            let mut out = Vec::new();
            assert_eq!(burst(&mut h, &syns, PORT_A, PORT_B, Some(&mut out)), ids.len() as u64);
            let nats: Vec<SocketAddrV4> = out.iter().map(|f| nat_of(f)).collect();
            let c = CLIENT_ISN + 1;
            let syn_acks: Vec<Vec<u8>> = nats
                .iter()
                .map(|&n| segment(l2_backend(), backend(), n, SERVER_ISN, Some(c), Kind::SynAck, &[]))
                .collect();
            assert_eq!(burst(&mut h, &syn_acks, PORT_B, PORT_A, None), ids.len() as u64);
            // The first data carries the header; the server ACKs it and the data.
            let first: Vec<Vec<u8>> = ids
                .iter()
                .map(|&i| {
                    let (host, src) = source(i);
                    segment(L2::new(host.mac, GW_MAC_A), src, endpoint(), c, Some(SERVER_ISN + 1), Kind::Ack, b"hello!")
                })
                .collect();
            assert_eq!(burst(&mut h, &first, PORT_A, PORT_B, None), ids.len() as u64);
            let acks: Vec<Vec<u8>> = nats
                .iter()
                .map(|&n| segment(l2_backend(), backend(), n, SERVER_ISN + 1, Some(c + 6 + shift), Kind::Ack, &[]))
                .collect();
            assert_eq!(burst(&mut h, &acks, PORT_B, PORT_A, None), ids.len() as u64);
            for (&i, &n) in ids.iter().zip(&nats) {
                let (host, src) = source(i);
                to_service.push(segment(
                    L2::new(host.mac, GW_MAC_A),
                    src,
                    endpoint(),
                    c + 6,
                    Some(SERVER_ISN + 1),
                    Kind::Ack,
                    b"world!",
                ));
                to_consumer.push(segment(
                    l2_backend(),
                    backend(),
                    n,
                    SERVER_ISN + 1,
                    Some(c + 12 + shift),
                    Kind::Ack,
                    &[],
                ));
            }
        }
        let k = h.counters();
        assert_eq!(k.total_drops(), 0);
        assert_eq!(k.get(Event::FlowsCreated), flows as u64);
        // A fixed random order, the same for both variants.
        let mut state = 0x7072_6f78_7900_0001u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for v in [&mut to_service, &mut to_consumer] {
            for i in (1..v.len()).rev() {
                let j = usize::try_from(next() % (i as u64 + 1)).expect("fits");
                v.swap(i, j);
            }
        }
        Established { h, to_service, to_consumer }
    }

    fn run(&mut self, bursts: u64, cursor: &mut usize) -> (Duration, u64) {
        let n = self.to_service.len();
        let mut sent = 0;
        let start = Instant::now();
        for b in 0..bursts {
            let (frames, rx, tx) =
                if b % 2 == 0 { (&self.to_service, PORT_A, PORT_B) } else { (&self.to_consumer, PORT_B, PORT_A) };
            let w = &mut self.h.workers[0];
            for k in 0..BURST {
                let _ = w.io_mut().inject(rx, &frames[(*cursor + k) % n]);
            }
            w.poll();
            w.io_mut().drain_tx(tx, |_| sent += 1);
            if b % 2 == 1 {
                *cursor = (*cursor + BURST) % n;
            }
        }
        (start.elapsed(), sent)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v[v.len().saturating_sub(SAMPLES)..].to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn established(c: &mut Criterion, label: &str, flows: usize, lines: &mut Vec<String>) {
    let setup = Instant::now();
    let mut plain = Established::new(false, flows);
    let mut proxy = Established::new(true, flows);
    eprintln!("proxy_established_{label}: 2 × {flows} flows set up in {:.1} s", setup.elapsed().as_secs_f64());
    let mut group = c.benchmark_group(format!("proxy_established_{label}"));
    group.sample_size(SAMPLES).warm_up_time(Duration::from_millis(700)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(BURST as u64));
    let (mut ns_plain, mut ns_proxy) = (Vec::new(), Vec::new());
    let (mut cp, mut cx) = (0, 0);
    group.bench_function("plain", |b| {
        b.iter_custom(|bursts| {
            let (t, sent) = plain.run(bursts, &mut cp);
            assert_eq!(sent, bursts * BURST as u64);
            ns_plain.push(t.as_nanos() as f64 / sent.max(1) as f64);
            t
        })
    });
    group.bench_function("proxy_v2", |b| {
        b.iter_custom(|bursts| {
            let (t, sent) = proxy.run(bursts, &mut cx);
            assert_eq!(sent, bursts * BURST as u64);
            ns_proxy.push(t.as_nanos() as f64 / sent.max(1) as f64);
            t
        })
    });
    group.finish();
    assert_eq!(proxy.h.counters().total_drops(), 0);
    let (p, x) = (median(&ns_plain), median(&ns_proxy));
    lines.push(format!("bench proxy_established_{label}_plain_mpps {:.3} Mpps", 1e3 / p));
    lines.push(format!("bench proxy_established_{label}_proxy_mpps {:.3} Mpps", 1e3 / x));
    lines.push(format!("bench proxy_vs_plain_established_{label}_ratio {:.3} ratio", p / x));
}

/// Handshakes of fresh connections; returns (timed duration, connections).
fn handshakes(h: &mut Harness<LinkIdTlv>, next: &mut usize, count: usize) -> (Duration, u64) {
    let mut timed = Duration::ZERO;
    let mut done = 0;
    let c = CLIENT_ISN + 1;
    while done < count {
        let ids: Vec<usize> = (*next..*next + BURST).collect();
        *next += BURST;
        let syns: Vec<Vec<u8>> = ids.iter().map(|&i| syn(i)).collect();
        let acks: Vec<Vec<u8>> = ids
            .iter()
            .map(|&i| {
                let (host, src) = source(i);
                segment(L2::new(host.mac, GW_MAC_A), src, endpoint(), c, Some(SERVER_ISN + 1), Kind::Ack, &[])
            })
            .collect();
        let mut out = Vec::with_capacity(BURST);
        let t = Instant::now();
        let sent = burst(h, &syns, PORT_A, PORT_B, Some(&mut out));
        timed += t.elapsed();
        assert_eq!(sent, BURST as u64);
        let syn_acks: Vec<Vec<u8>> = out
            .iter()
            .map(|f| segment(l2_backend(), backend(), nat_of(f), SERVER_ISN, Some(c), Kind::SynAck, &[]))
            .collect();
        let t = Instant::now();
        let a = burst(h, &syn_acks, PORT_B, PORT_A, None);
        let b = burst(h, &acks, PORT_A, PORT_B, None);
        timed += t.elapsed();
        assert_eq!((a, b), (BURST as u64, BURST as u64));
        done += BURST;
    }
    (timed, done as u64)
}

/// Fresh connections one harness takes: fewer than its NAT ports (4 × 64,512) and flow slots.
const CONNECTIONS_PER_HARNESS: usize = 200_000;

/// A gateway for the handshake benchmark, its neighbours learned for every consumer address used.
fn fresh(proxy: bool) -> Harness<LinkIdTlv> {
    // `harness` learns one consumer address per 64,512 flow slots: 9 here, 4 are used.
    harness(proxy, 1 << 19)
}

fn new_connections(c: &mut Criterion, lines: &mut Vec<String>) {
    let mut group = c.benchmark_group("proxy_new_connections");
    group.sample_size(SAMPLES).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    let mut results = Vec::new();
    for proxy in [false, true] {
        let mut h = fresh(proxy);
        let mut next = 0;
        let mut ns = Vec::new();
        group.bench_function(if proxy { "proxy_v2" } else { "plain" }, |b| {
            b.iter_custom(|iters| {
                let count = usize::try_from(iters).expect("fits").div_ceil(BURST) * BURST;
                let (mut t, mut n, mut left) = (Duration::ZERO, 0, count);
                while left > 0 {
                    if next + BURST > CONNECTIONS_PER_HARNESS {
                        // Untimed: a fresh gateway when this one's ports are used up.
                        h = fresh(proxy);
                        next = 0;
                    }
                    let chunk = left.min((CONNECTIONS_PER_HARNESS - next) / BURST * BURST);
                    let (dt, dn) = handshakes(&mut h, &mut next, chunk);
                    t += dt;
                    n += dn;
                    left -= chunk;
                }
                ns.push(t.as_nanos() as f64 / n as f64);
                t.mul_f64(iters as f64 / n as f64)
            })
        });
        assert_eq!(h.counters().total_drops(), 0);
        if proxy {
            assert!(h.counters().get(Event::ProxyAcksConverted) > 0);
        }
        results.push(median(&ns));
    }
    group.finish();
    let (p, x) = (results[0], results[1]);
    lines.push(format!("bench proxy_new_connections_plain_per_second {:.3e} conn/s", 1e9 / p));
    lines.push(format!("bench proxy_new_connections_proxy_per_second {:.3e} conn/s", 1e9 / x));
    lines.push(format!("bench proxy_vs_plain_new_connections_ratio {:.3} ratio", p / x));
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    let mut lines = Vec::new();
    established(&mut c, "1k", 1_000, &mut lines);
    if benchmarking {
        established(&mut c, "64k", 65_536, &mut lines);
    }
    new_connections(&mut c, &mut lines);
    c.final_summary();
    if benchmarking {
        for l in lines {
            println!("{l}");
        }
    }
}
