//! Engine benchmarks over the in-memory backend, each beside its baseline (conventions, 12).
//!
//! - `established_{1k,64k,1m}`: 64-byte UDP frames (60 bytes + FCS: Ethernet, IPv4, UDP, 18 bytes
//!   of payload) of established flows, in bursts of 32, through one worker's NAT fast path
//!   (`Worker::poll`), beside a null forwarder that does rx burst → checked Ethernet/IPv4/UDP
//!   views → MAC swap → tx burst on the same `MemIo` with the same frames. Bursts alternate
//!   direction: consumer → endpoint on port A, then backend → NAT on port B. Each direction visits
//!   every flow once per cycle, in a random order, so the flow table is really exercised.
//!   Both sides pay the same injection (a copy into a pooled buffer) and drain.
//! - `new_flows`: first packets (UDP, distinct consumer sources) through the slow path with the
//!   native policy (`AllowApproved`), each creating a flow.
//!
//! Besides criterion's report, the run ends with one line per figure, `bench <name> <value>
//! <unit>`, from medians this file measures itself. In test mode (`cargo test --benches`) every
//! routine runs once, the 1M case is skipped and no summary is printed.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput};
use datapath::{AllowApproved, Event, Model, Service, WorkerConfig};
use io::{Burst, MemIo, PacketBuf, PacketIo, PortId, BURST};
use testkit::*;
use wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket};

/// Frame length without FCS (64 bytes on the wire).
const FRAME_LEN: usize = 60;
const PAYLOAD: [u8; FRAME_LEN - 42] = [0x5a; FRAME_LEN - 42];
/// NAT IPs of the service: 20 × 64,512 ports, enough for 1M flows towards one backend.
const NAT_IPS: u8 = 20;
/// Source ports per consumer address.
const FIRST_SOURCE_PORT: u16 = 1024;
const SOURCE_PORTS: usize = 65536 - FIRST_SOURCE_PORT as usize;

/// The standard topology, with `NAT_IPS` NAT IPs for the service.
fn model() -> Model {
    let service =
        Service { nat_ips: (0..NAT_IPS).map(|k| Ipv4Addr::new(198, 18, 0, 200 + k)).collect(), ..standard_service() };
    Model::new(1, standard_networks(), vec![service], vec![standard_endpoint(APPROVED)], 1024..=65535, 1)
        .expect("the benchmark model is consistent")
}

/// One worker over in-memory I/O with room for `flows` flows; neighbours not learned yet.
fn harness(flows: usize) -> Harness {
    Harness::build(model(), 1, |_| WorkerConfig { flow_capacity: flows, ..WorkerConfig::default() }, |_| AllowApproved)
}

/// Consumer number `k` in network A (198.18.0.100 and up; clear of the gateway and endpoint).
fn consumer(k: usize) -> Host {
    let k = u8::try_from(k).expect("at most 100 consumer addresses");
    assert!(k < 100, "at most 100 consumer addresses");
    Host { mac: [0x02, 0xaa, 0, 0, 1, k], ip: Ipv4Addr::new(198, 18, 0, 100 + k) }
}

/// The source of flow `i`: `SOURCE_PORTS` ports per consumer address.
fn source(i: usize) -> (Host, SocketAddrV4) {
    let host = consumer(i / SOURCE_PORTS);
    let port = FIRST_SOURCE_PORT + u16::try_from(i % SOURCE_PORTS).expect("port offset fits");
    (host, SocketAddrV4::new(host.ip, port))
}

fn consumers_for(flows: usize) -> usize {
    flows.div_ceil(SOURCE_PORTS)
}

/// A first (or any) packet of flow `i`, consumer → endpoint.
fn to_service_frame(i: usize) -> Vec<u8> {
    let (host, src) = source(i);
    let dst = SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT);
    let frame = udp(L2::new(host.mac, GW_MAC_A), src, dst, 64, &PAYLOAD);
    debug_assert_eq!(frame.len(), FRAME_LEN);
    frame
}

/// Deterministic pseudo-random numbers (splitmix64); no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = usize::try_from(self.next() % (i as u64 + 1)).expect("index fits");
            v.swap(i, j);
        }
    }
}

/// Frames laid end to end, `FRAME_LEN` bytes each, read in order by the burst loop.
struct Frames {
    bytes: Vec<u8>,
    count: usize,
    next: usize,
}

impl Frames {
    fn new(count: usize) -> Self {
        Frames { bytes: Vec::with_capacity(count * FRAME_LEN), count, next: 0 }
    }

    fn push(&mut self, frame: &[u8]) {
        assert_eq!(frame.len(), FRAME_LEN);
        self.bytes.extend_from_slice(frame);
    }

    /// Queues the next `BURST` frames (wrapping) on `port`; false if the backend refused one.
    #[inline]
    fn inject_burst(&mut self, io: &mut MemIo, port: PortId) -> bool {
        let mut ok = true;
        for _ in 0..BURST {
            let at = self.next * FRAME_LEN;
            ok &= io.inject(port, &self.bytes[at..at + FRAME_LEN]);
            self.next += 1;
            if self.next == self.count {
                self.next = 0;
            }
        }
        ok
    }
}

/// A worker with `flows` established UDP flows and, for each direction, one frame per flow in
/// a random order.
struct Established {
    harness: Harness,
    /// Consumer → endpoint, arriving on port A.
    to_service: Frames,
    /// Backend → NAT, arriving on port B.
    to_consumer: Frames,
}

impl Established {
    fn new(flows: usize) -> Self {
        let capacity = (2 * flows).next_power_of_two().max(WorkerConfig::default().flow_capacity);
        let mut h = harness(capacity);
        h.learn_neighbors();
        for k in 0..consumers_for(flows) {
            h.learn(PORT_A, consumer(k), ENDPOINT_IP, GW_MAC_A);
        }
        // Create the flows in batches and read each one's NAT ip:port off what leaves on B.
        let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
        let mut forward = Vec::with_capacity(flows);
        let mut reverse = Vec::with_capacity(flows);
        let mut first = 0;
        while first < flows {
            let batch = (flows - first).min(1024);
            for i in first..first + batch {
                let frame = to_service_frame(i);
                assert!(h.workers[0].io_mut().inject(PORT_A, &frame), "rx queue or pool full");
                forward.push(frame);
            }
            h.run();
            let mut sent = 0;
            h.workers[0].io_mut().drain_tx(PORT_B, |buf| {
                let d = buf.data();
                let nat =
                    SocketAddrV4::new(Ipv4Addr::new(d[26], d[27], d[28], d[29]), u16::from_be_bytes([d[34], d[35]]));
                reverse.push(udp(l2_backend(), backend, nat, 64, &PAYLOAD));
                sent += 1;
            });
            assert_eq!(sent, batch, "every first packet creates a flow and is forwarded");
            first += batch;
        }
        let c = h.counters();
        assert_eq!(c.get(Event::FlowsCreated), flows as u64);
        assert_eq!(c.total_drops(), 0);
        assert_eq!(h.workers[0].flows().live(), flows);

        let mut rng = Rng(0x6265_6e63_6800_0001);
        let mut to_service = Frames::new(flows);
        let mut order: Vec<usize> = (0..flows).collect();
        rng.shuffle(&mut order);
        for &i in &order {
            to_service.push(&forward[i]);
        }
        let mut to_consumer = Frames::new(flows);
        rng.shuffle(&mut order);
        for &i in &order {
            to_consumer.push(&reverse[i]);
        }
        Established { harness: h, to_service, to_consumer }
    }

    /// The frames and ports of burst number `burst`: even bursts go to the service.
    fn direction<'a>(
        to_service: &'a mut Frames,
        to_consumer: &'a mut Frames,
        burst: u64,
    ) -> (&'a mut Frames, PortId, PortId) {
        if burst % 2 == 0 {
            (to_service, PORT_A, PORT_B)
        } else {
            (to_consumer, PORT_B, PORT_A)
        }
    }

    /// `bursts` bursts through the NAT fast path; returns the time taken and frames sent.
    fn nat(&mut self, bursts: u64) -> (Duration, u64) {
        let mut sent = 0u64;
        let mut ok = true;
        let start = Instant::now();
        for b in 0..bursts {
            let (frames, rx, tx) = Self::direction(&mut self.to_service, &mut self.to_consumer, b);
            let worker = &mut self.harness.workers[0];
            ok &= frames.inject_burst(worker.io_mut(), rx);
            worker.poll();
            worker.io_mut().drain_tx(tx, |_| sent += 1);
        }
        let elapsed = start.elapsed();
        assert!(ok, "the backend refused a frame");
        (elapsed, sent)
    }

    /// `bursts` bursts through the null forwarder; returns the time taken and frames sent.
    fn null(&mut self, bursts: u64) -> (Duration, u64) {
        let mut sent = 0u64;
        let mut ok = true;
        let mut rx_burst = Burst::new();
        let mut tx_burst = Burst::new();
        let start = Instant::now();
        for b in 0..bursts {
            let (frames, rx, tx) = Self::direction(&mut self.to_service, &mut self.to_consumer, b);
            let io = self.harness.workers[0].io_mut();
            ok &= frames.inject_burst(io, rx);
            null_forward(io, rx, tx, &mut rx_burst, &mut tx_burst);
            io.drain_tx(tx, |_| sent += 1);
        }
        let elapsed = start.elapsed();
        assert!(ok, "the backend refused a frame");
        (elapsed, sent)
    }
}

/// The baseline: receive a burst, parse Ethernet/IPv4/UDP with checked views, swap the MACs,
/// send the burst out of `tx`. Frames that do not parse are dropped.
#[inline(never)]
fn null_forward(
    io: &mut MemIo,
    rx: PortId,
    tx: PortId,
    rx_burst: &mut Burst<io::MemBuf>,
    tx_burst: &mut Burst<io::MemBuf>,
) {
    io.rx_burst(rx, rx_burst);
    for mut buf in rx_burst.drain(..) {
        if parse_and_swap(buf.data_mut()) {
            tx_burst.push(buf);
        }
    }
    io.tx_burst(tx, tx_burst);
}

#[inline]
fn parse_and_swap(data: &mut [u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(&*data) else { return false };
    if eth.ethertype() != EtherType::Ipv4 {
        return false;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return false };
    if ip.next_header() != IpProtocol::Udp {
        return false;
    }
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else { return false };
    std::hint::black_box((ip.src_addr(), ip.dst_addr(), udp.src_port(), udp.dst_port()));
    let (src, dst) = (eth.src_addr(), eth.dst_addr());
    let mut eth = EthernetFrame::new_unchecked(data);
    eth.set_src_addr(dst);
    eth.set_dst_addr(src);
    true
}

/// Per-sample results of one benchmark (the last `samples` calls are the measurement; earlier
/// ones are criterion's warm-up).
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn record(&mut self, elapsed: Duration, elements: u64) {
        self.0.push(elapsed.as_nanos() as f64 / elements.max(1) as f64);
    }

    /// Median nanoseconds per element over the last `samples` records.
    fn median(&self, samples: usize) -> f64 {
        let mut v: Vec<f64> = self.0[self.0.len().saturating_sub(samples)..].to_vec();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

/// One summary figure.
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

const ESTABLISHED_SAMPLES: usize = 20;
const NEW_FLOW_SAMPLES: usize = 20;

fn configure<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>, samples: usize) {
    group
        .sample_size(samples)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(BURST as u64));
}

fn established(c: &mut Criterion, label: &str, flows: usize, figures: &mut Vec<Figure>) {
    let setup = Instant::now();
    let mut e = Established::new(flows);
    eprintln!("established_{label}: {flows} flows set up in {:.1} s", setup.elapsed().as_secs_f64());
    let (mut nat, mut null) = (Samples::default(), Samples::default());
    let mut group = c.benchmark_group(format!("established_{label}"));
    configure(&mut group, ESTABLISHED_SAMPLES);
    let before = e.harness.counters();
    group.bench_function("nat", |b| {
        b.iter_custom(|bursts| {
            let (elapsed, sent) = e.nat(bursts);
            assert_eq!(sent, bursts * BURST as u64, "the NAT forwards every frame");
            nat.record(elapsed, sent);
            elapsed
        })
    });
    group.bench_function("null", |b| {
        b.iter_custom(|bursts| {
            let (elapsed, sent) = e.null(bursts);
            assert_eq!(sent, bursts * BURST as u64, "the null forwarder forwards every frame");
            null.record(elapsed, sent);
            elapsed
        })
    });
    group.finish();
    let after = e.harness.counters();
    assert_eq!(after.get(Event::FlowsCreated), before.get(Event::FlowsCreated), "no flow was created");
    assert_eq!(after.total_drops(), before.total_drops(), "nothing was dropped");

    let nat_ns = nat.median(ESTABLISHED_SAMPLES);
    let null_ns = null.median(ESTABLISHED_SAMPLES);
    let figure = |name: String, value: f64, unit| Figure { name, value, unit };
    figures.push(figure(format!("nat_{label}_mpps"), 1e3 / nat_ns, "Mpps"));
    figures.push(figure(format!("null_{label}_mpps"), 1e3 / null_ns, "Mpps"));
    figures.push(figure(format!("nat_{label}_ns"), nat_ns, "ns/packet"));
    figures.push(figure(format!("null_{label}_ns"), null_ns, "ns/packet"));
    figures.push(figure(format!("nat_vs_null_{label}_ratio"), null_ns / nat_ns, "ratio"));
    figures.push(figure(format!("nat_added_{label}_ns"), nat_ns - null_ns, "ns/packet"));
}

/// First packets for the new-flow benchmark: distinct sources, used once per worker.
const NEW_FLOW_FRAMES: usize = 1 << 18;

/// A fresh worker for the new-flow benchmark (table sized so it stays at most half full).
fn new_flow_harness() -> Harness {
    let mut h = harness(2 * NEW_FLOW_FRAMES);
    h.learn_neighbors();
    h
}

fn new_flows(c: &mut Criterion, figures: &mut Vec<Figure>) {
    let mut frames = Frames::new(NEW_FLOW_FRAMES);
    for i in 0..NEW_FLOW_FRAMES {
        frames.push(&to_service_frame(i));
    }
    let mut h = new_flow_harness();
    let mut used = 0;
    let mut samples = Samples::default();
    let mut group = c.benchmark_group("new_flows");
    configure(&mut group, NEW_FLOW_SAMPLES);
    group.bench_function("native_policy", |b| {
        b.iter_custom(|bursts| {
            let mut elapsed = Duration::ZERO;
            let mut sent = 0u64;
            let mut ok = true;
            let mut done = 0;
            while done < bursts {
                // Every frame is a first packet only once per worker: replace it (untimed) when
                // the frames are used up.
                if used + BURST > frames.count {
                    h = new_flow_harness();
                    frames.next = 0;
                    used = 0;
                }
                let room = ((frames.count - used) / BURST) as u64;
                let run = room.min(bursts - done);
                let worker = &mut h.workers[0];
                let start = Instant::now();
                for _ in 0..run {
                    ok &= frames.inject_burst(worker.io_mut(), PORT_A);
                    worker.poll();
                    worker.io_mut().drain_tx(PORT_B, |_| sent += 1);
                }
                elapsed += start.elapsed();
                done += run;
                used += usize::try_from(run).expect("bursts fit") * BURST;
            }
            assert!(ok, "the backend refused a frame");
            assert_eq!(sent, bursts * BURST as u64, "every first packet creates a flow and is forwarded");
            samples.record(elapsed, sent);
            elapsed
        })
    });
    group.finish();
    let c = h.counters();
    assert_eq!(c.total_drops(), 0);
    assert_eq!(c.get(Event::FlowsCreated), used as u64, "every frame created a flow");
    let ns = samples.median(NEW_FLOW_SAMPLES);
    figures.push(Figure { name: "new_flows_per_second".into(), value: 1e9 / ns, unit: "flows/s" });
    figures.push(Figure { name: "new_flow_ns".into(), value: ns, unit: "ns/flow" });
}

/// The benchmark-name filters given on the command line (criterion's positional arguments), so
/// that groups nobody asked for are not even set up (the 1M table takes seconds to build).
fn filters() -> Vec<String> {
    // Criterion options that take a value.
    const WITH_VALUE: &[&str] = &[
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--color",
        "-c",
        "--format",
        "--logfile",
    ];
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            out.push(arg);
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (criterion's test mode).
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let filters = filters();
    // A plain name skips the groups it cannot match; a regex (or no filter) sets up everything.
    let wanted = |group: &str| {
        filters.iter().all(|f| {
            f.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/'))
                || group.contains(f.as_str())
                || f.starts_with(group)
        })
    };
    let mut c = Criterion::default().configure_from_args();
    let mut figures = Vec::new();
    for (label, flows) in [("1k", 1_000), ("64k", 65_536), ("1m", 1 << 20)] {
        if !wanted(&format!("established_{label}")) {
            continue;
        }
        if flows > 65_536 && !benchmarking {
            eprintln!("established_{label}: skipped in test mode (run `cargo bench --bench datapath`)");
            continue;
        }
        established(&mut c, label, flows, &mut figures);
    }
    if wanted("new_flows") {
        new_flows(&mut c, &mut figures);
    }
    c.final_summary();
    if benchmarking {
        // Groups filtered out on the command line have no samples: no line for them.
        for f in figures.iter().filter(|f| f.value.is_finite()) {
            let value = if f.value.abs() >= 1e5 { format!("{:.3e}", f.value) } else { format!("{:.3}", f.value) };
            println!("bench {} {} {}", f.name, value, f.unit);
        }
    }
}
