//! Test fixtures for overlink: frames built by an independent library (etherparse), the
//! standard two-network topology with identical prefixes, and a harness that drives workers
//! over in-memory I/O on an injected clock.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use arc_swap::ArcSwap;
use datapath::{
    AllowApproved, ConnectionState, Counters, EchoMode, Endpoint, Mailboxes, Model, Network, Policy, Service,
    ServiceId, SharedModel, Worker, WorkerConfig, DEFAULT_MTU,
};
use etherparse::{Icmpv4Type, PacketBuilder, VlanId};
use flow::{Instant, ManualClock, NetworkId, Timeouts};
use io::{MemBuf, MemIo, MemPool, PortId};
use wire::EthernetAddress;

/// The consumer network (port 0).
pub const NET_A: NetworkId = NetworkId(0);
/// The provider network (port 1).
pub const NET_B: NetworkId = NetworkId(1);
/// The consumer network's port.
pub const PORT_A: PortId = PortId(0);
/// The provider network's port.
pub const PORT_B: PortId = PortId(1);

/// The gateway's MAC on network A.
pub const GW_MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0a, 0x01];
/// The gateway's MAC on network B.
pub const GW_MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0b, 0x01];
/// The gateway's address in both networks (they overlap).
pub const GW_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// A host on one of the test networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its address.
    pub ip: Ipv4Addr,
}

/// The consumer in network A.
pub const CONSUMER: Host = Host { mac: [0x02, 0xaa, 0, 0, 0, 0x07], ip: Ipv4Addr::new(198, 18, 0, 7) };
/// The backend in network B: the same address space as A.
pub const BACKEND: Host = Host { mac: [0x02, 0xbb, 0, 0, 0, 0x10], ip: Ipv4Addr::new(198, 18, 0, 10) };
/// A host in B with the consumer's address: proves replies never cross.
pub const B_TWIN: Host = Host { mac: [0x02, 0xbb, 0, 0, 0, 0x07], ip: Ipv4Addr::new(198, 18, 0, 7) };
/// The endpoint address in A.
pub const ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// The endpoint port.
pub const ENDPOINT_PORT: u16 = 80;
/// The backend port.
pub const BACKEND_PORT: u16 = 8080;
/// The service's NAT IP in B.
pub const NAT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
/// The link id of the standard endpoint.
pub const LINK_ID: u32 = 0x2100_45c1;

/// The standard topology: networks A and B with the same /24, one service in B, one approved
/// endpoint in A.
pub fn standard_networks() -> Vec<Network> {
    vec![
        Network {
            name: "consumer".into(),
            port: PORT_A,
            vlan: None,
            mac: EthernetAddress(GW_MAC_A),
            address: GW_IP,
            prefix_len: 24,
            next_hop: None,
            mtu: DEFAULT_MTU,
        },
        Network {
            name: "provider".into(),
            port: PORT_B,
            vlan: None,
            mac: EthernetAddress(GW_MAC_B),
            address: GW_IP,
            prefix_len: 24,
            next_hop: None,
            mtu: DEFAULT_MTU,
        },
    ]
}

/// The standard service in B.
pub fn standard_service() -> Service {
    Service {
        name: "web".into(),
        provider: "provider-b".into(),
        network: NET_B,
        backends: vec![SocketAddrV4::new(BACKEND.ip, BACKEND_PORT)],
        nat_ips: vec![NAT_IP],
        echo: EchoMode::Forward,
        timeouts: Timeouts::default(),
        proxy: None,
    }
}

/// The standard endpoint in A.
pub fn standard_endpoint(state: ConnectionState) -> Endpoint {
    Endpoint {
        name: "web-a".into(),
        account: "consumer-1".into(),
        network: NET_A,
        address: ENDPOINT_IP,
        ports: vec![ENDPOINT_PORT],
        service: ServiceId(0),
        state,
        link_id: LINK_ID,
    }
}

/// The standard model (NAT ports 1024..=65535).
pub fn standard_model(state: ConnectionState, workers: usize) -> Model {
    Model::new(1, standard_networks(), vec![standard_service()], vec![standard_endpoint(state)], 1024..=65535, workers)
        .expect("the standard model is consistent")
}

/// Workers over in-memory I/O on a manual clock.
#[derive(Debug)]
pub struct Harness<P: Policy = AllowApproved> {
    /// The workers.
    pub workers: Vec<Worker<MemIo, P, ManualClock>>,
    /// The clock they share.
    pub clock: ManualClock,
    /// The published model.
    pub model: SharedModel,
    /// The buffer pool.
    pub pool: MemPool,
}

impl Harness<AllowApproved> {
    /// One worker per `workers`, default settings, the native policy.
    pub fn new(model: Model, workers: usize) -> Self {
        Self::build(model, workers, |_| WorkerConfig::default(), |_| AllowApproved)
    }
}

impl<P: Policy> Harness<P> {
    /// Workers with settings from `config(i)` and policies from `policy(i)`.
    pub fn build(
        model: Model,
        workers: usize,
        config: impl Fn(usize) -> WorkerConfig,
        policy: impl Fn(usize) -> P,
    ) -> Self {
        Self::with_shared(Arc::new(ArcSwap::from_pointee(model)), workers, config, policy)
    }

    /// Workers reading the model the control plane publishes in `shared`.
    pub fn with_shared(
        shared: SharedModel,
        workers: usize,
        config: impl Fn(usize) -> WorkerConfig,
        policy: impl Fn(usize) -> P,
    ) -> Self {
        let clock = ManualClock::new(Instant::from_nanos(1_000_000_000));
        let pool = MemPool::new(8192 * workers.max(1));
        let mailboxes = Mailboxes::<MemBuf>::new(workers, 1024);
        let ports = shared.load().networks.iter().map(|n| n.port.index() + 1).max().unwrap_or(1);
        let workers = (0..workers)
            .map(|i| {
                let mut c = config(i);
                c.id = i;
                c.workers = workers;
                Worker::new(
                    c,
                    MemIo::new(pool.clone(), ports, 65536),
                    policy(i),
                    clock.clone(),
                    shared.clone(),
                    mailboxes.clone(),
                )
            })
            .collect();
        Harness { workers, clock, model: shared, pool }
    }

    /// Publishes a new model (as the control plane does).
    pub fn publish(&self, model: Model) {
        self.model.store(Arc::new(model));
    }

    /// Queues `frame` for worker `worker` on `port`.
    pub fn inject(&mut self, worker: usize, port: PortId, frame: &[u8]) {
        assert!(self.workers[worker].io_mut().inject(port, frame), "rx queue or pool full");
    }

    /// Polls every worker until none has anything left to do.
    pub fn run(&mut self) {
        for _ in 0..64 {
            let mut work = 0;
            for w in &mut self.workers {
                work += w.poll();
            }
            if work == 0 {
                break;
            }
        }
    }

    /// Injects on worker 0, runs, and returns what left on each port.
    pub fn exchange(&mut self, port: PortId, frame: &[u8]) -> Sent {
        self.inject(0, port, frame);
        self.run();
        self.take()
    }

    /// Everything the workers sent, by port.
    pub fn take(&mut self) -> Sent {
        let mut sent = Sent::default();
        for w in &mut self.workers {
            sent.a.extend(w.io_mut().take_tx(PORT_A));
            sent.b.extend(w.io_mut().take_tx(PORT_B));
        }
        sent
    }

    /// The sum of every worker's counters.
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for w in &self.workers {
            total.add(w.counters());
        }
        total
    }

    /// Lets the gateway learn the consumer's and backend's MACs the way it does in a network:
    /// each host ARPs for the gateway address it talks to. Consumes the replies.
    pub fn learn_neighbors(&mut self) {
        self.learn(PORT_A, CONSUMER, ENDPOINT_IP, GW_MAC_A);
        self.learn(PORT_B, BACKEND, NAT_IP, GW_MAC_B);
    }

    /// `host` on `port` asks for `target` (an address of the gateway); the reply is consumed.
    pub fn learn(&mut self, port: PortId, host: Host, target: Ipv4Addr, gw_mac: [u8; 6]) {
        for w in 0..self.workers.len() {
            self.inject(w, port, &arp_request(host, target));
            self.run();
            let replies = self.workers[w].io_mut().take_tx(port);
            assert_eq!(replies.len(), 1, "the gateway answers ARP for {target}");
            assert_eq!(&replies[0][6..12], &gw_mac);
        }
    }

    /// Polls every worker enough times for the expiry sweep to visit every flow slot.
    pub fn sweep(&mut self) {
        for w in &mut self.workers {
            w.sweep_all();
            w.poll();
        }
        // A second pass frees what the first one started cooling only if its cool-down ended.
        self.run();
    }

    /// Polls every worker `n` times (for work spread over polls, like report passes).
    pub fn poll_n(&mut self, n: usize) {
        for w in &mut self.workers {
            for _ in 0..n {
                w.poll();
            }
        }
    }

    /// Advances the clock.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock.advance(by);
    }
}

/// Frames sent, by port.
#[derive(Debug, Default)]
pub struct Sent {
    /// On network A's port.
    pub a: Vec<Vec<u8>>,
    /// On network B's port.
    pub b: Vec<Vec<u8>>,
}

impl Sent {
    /// True when nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty() && self.b.is_empty()
    }
}

/// An ARP request from `host` for `target`.
pub fn arp_request(host: Host, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&host.mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&host.mac);
    f[28..32].copy_from_slice(&host.ip.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// An ARP reply from `host` to `to_mac`/`to_ip`.
pub fn arp_reply(host: Host, to_mac: [u8; 6], to_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = arp_request(host, to_ip);
    f[0..6].copy_from_slice(&to_mac);
    f[21] = 2;
    f[32..38].copy_from_slice(&to_mac);
    f
}

/// The layer-2 part of a test frame.
#[derive(Clone, Copy, Debug)]
pub struct L2 {
    /// Source MAC.
    pub src: [u8; 6],
    /// Destination MAC.
    pub dst: [u8; 6],
    /// VLAN id, if tagged.
    pub vlan: Option<u16>,
}

impl L2 {
    /// Untagged from `src` to `dst`.
    pub fn new(src: [u8; 6], dst: [u8; 6]) -> Self {
        L2 { src, dst, vlan: None }
    }
}

fn builder(l2: L2, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(l2.src, l2.dst);
    match l2.vlan {
        Some(id) => eth.single_vlan(VlanId::try_new(id).expect("vlan id")).ipv4(src.octets(), dst.octets(), ttl),
        None => eth.ipv4(src.octets(), dst.octets(), ttl),
    }
}

/// TCP flags for [`tcp`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    /// SYN.
    pub syn: bool,
    /// ACK with this number.
    pub ack: Option<u32>,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH.
    pub psh: bool,
}

impl Flags {
    /// A SYN.
    pub fn syn() -> Self {
        Flags { syn: true, ..Flags::default() }
    }
    /// A SYN-ACK acknowledging `ack`.
    pub fn syn_ack(ack: u32) -> Self {
        Flags { syn: true, ack: Some(ack), ..Flags::default() }
    }
    /// An ACK of `ack`.
    pub fn ack(ack: u32) -> Self {
        Flags { ack: Some(ack), ..Flags::default() }
    }
    /// A FIN-ACK.
    pub fn fin_ack(ack: u32) -> Self {
        Flags { fin: true, ack: Some(ack), ..Flags::default() }
    }
    /// A RST.
    pub fn rst() -> Self {
        Flags { rst: true, ..Flags::default() }
    }
}

/// A TCP/IPv4 frame built by etherparse (window 64240; SYNs carry MSS 1460, SACK-permitted,
/// timestamps and window scale 7, like Linux).
pub fn tcp(l2: L2, src: SocketAddrV4, dst: SocketAddrV4, ttl: u8, seq: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let mut b = builder(l2, *src.ip(), *dst.ip(), ttl).tcp(src.port(), dst.port(), seq, 64240);
    if flags.syn {
        b = b.syn();
        b = b
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
                etherparse::TcpOptionElement::Timestamp(1000, 0),
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::WindowScale(7),
            ])
            .expect("tcp options fit");
    }
    if let Some(ack) = flags.ack {
        b = b.ack(ack);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.psh {
        b = b.psh();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("write tcp frame");
    out
}

/// A UDP/IPv4 frame built by etherparse.
pub fn udp(l2: L2, src: SocketAddrV4, dst: SocketAddrV4, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = builder(l2, *src.ip(), *dst.ip(), ttl).udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("write udp frame");
    out
}

/// An ICMP echo request or reply built by etherparse.
#[allow(clippy::too_many_arguments)]
pub fn echo(
    l2: L2,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    request: bool,
    ident: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = builder(l2, src, dst, ttl);
    let b = if request { b.icmpv4_echo_request(ident, seq) } else { b.icmpv4_echo_reply(ident, seq) };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("write icmp frame");
    out
}

/// An ICMP error of `icmp_type` from `src` to `dst` quoting `quoted` (an IP packet).
pub fn icmp_error(l2: L2, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, icmp_type: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let b = builder(l2, src, dst, ttl).icmpv4(icmp_type);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).expect("write icmp error");
    out
}

/// The IP packet inside an untagged Ethernet frame.
pub fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// Parses a frame with etherparse and checks every checksum in it (IPv4 header, and the TCP,
/// UDP or ICMP checksum over the whole payload); panics with a message otherwise.
pub fn assert_checksums_valid(frame: &[u8]) {
    let p = etherparse::SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
    let header = ip.header();
    // Sum the raw header: etherparse's header type drops the reserved flag bit.
    assert_eq!(wire::checksum::data(header.slice()), 0, "IPv4 header checksum");
    let (src, dst) = (header.source(), header.destination());
    match &p.transport {
        Some(etherparse::TransportSlice::Tcp(tcp)) => {
            let expected = tcp.to_header().calc_checksum_ipv4_raw(src, dst, tcp.payload()).expect("tcp checksum");
            assert_eq!(tcp.checksum(), expected, "TCP checksum");
        }
        Some(etherparse::TransportSlice::Udp(udp)) => {
            if udp.checksum() != 0 {
                let expected = udp.to_header().calc_checksum_ipv4_raw(src, dst, udp.payload()).expect("udp checksum");
                assert_eq!(udp.checksum(), expected, "UDP checksum");
            }
        }
        Some(etherparse::TransportSlice::Icmpv4(icmp)) => {
            let expected = icmp.header().icmp_type.calc_checksum(icmp.payload());
            assert_eq!(icmp.checksum(), expected, "ICMP checksum");
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

/// Consumer → endpoint.
pub fn to_endpoint(port: u16) -> (SocketAddrV4, SocketAddrV4) {
    (SocketAddrV4::new(CONSUMER.ip, port), SocketAddrV4::new(ENDPOINT_IP, ENDPOINT_PORT))
}

/// The consumer's L2 towards the gateway.
pub fn l2_consumer() -> L2 {
    L2::new(CONSUMER.mac, GW_MAC_A)
}

/// The backend's L2 towards the gateway.
pub fn l2_backend() -> L2 {
    L2::new(BACKEND.mac, GW_MAC_B)
}

/// The gateway's L2 towards the backend.
pub fn l2_to_backend() -> L2 {
    L2::new(GW_MAC_B, BACKEND.mac)
}

/// The gateway's L2 towards the consumer.
pub fn l2_to_consumer() -> L2 {
    L2::new(GW_MAC_A, CONSUMER.mac)
}

/// Fields of a TCP/UDP frame (as etherparse sees them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Source.
    pub src: SocketAddrV4,
    /// Destination.
    pub dst: SocketAddrV4,
    /// TTL.
    pub ttl: u8,
}

/// Reads the addresses and ports of a TCP or UDP frame with etherparse.
pub fn seen(frame: &[u8]) -> Seen {
    let p = etherparse::SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
    let h = ip.header();
    let (sport, dport) = match &p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(etherparse::TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(etherparse::TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => (e.id, e.id),
            _ => (0, 0),
        },
        other => panic!("unexpected transport {other:?}"),
    };
    Seen {
        src: SocketAddrV4::new(h.source_addr(), sport),
        dst: SocketAddrV4::new(h.destination_addr(), dport),
        ttl: h.ttl(),
    }
}

/// The approval state for endpoints in examples.
pub const APPROVED: ConnectionState = ConnectionState::Approved;
