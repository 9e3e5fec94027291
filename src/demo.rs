//! The built-in demo over the engine's in-memory I/O.
//!
//! Two networks, `consumer` and `provider`, both 198.18.0.0/24. A service `web` runs on
//! 198.18.0.10:8080 in the provider network; a consumer at 198.18.0.7 (an address that also
//! exists in the provider network) reaches it through the endpoint 198.18.0.50:80 in its own
//! network. The demo plays both hosts, prints each step and what the gateway did, and shows the
//! Private Link workflow: pending passes nothing, approval lets the next connection through.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use datapath::{
    AllowApproved, ConnectionState, Counters, DropReason, EchoMode, Endpoint, Event, Mailboxes, Model, Network,
    Service, ServiceId, SharedModel, Worker, WorkerConfig,
};
use flow::{NetworkId, SystemClock, Timeouts};
use io::{MemBuf, MemIo, MemPool, PortId};
use wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr,
};

const CONSUMER_PORT: PortId = PortId(0);
const PROVIDER_PORT: PortId = PortId(1);
const PREFIX: &str = "198.18.0.0/24";
const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CONSUMER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
const BACKEND_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const NAT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
const GW_MAC_CONSUMER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0a, 0x01]);
const GW_MAC_PROVIDER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0b, 0x01]);
const CONSUMER_MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 0x07]);
const BACKEND_MAC: EthernetAddress = EthernetAddress([0x02, 0xbb, 0, 0, 0, 0x10]);

fn model(generation: u64, state: ConnectionState) -> anyhow::Result<Model> {
    let network = |name: &str, port, mac| Network {
        name: name.into(),
        port,
        vlan: None,
        mac,
        address: GATEWAY_IP,
        prefix_len: 24,
        next_hop: None,
        mtu: datapath::DEFAULT_MTU,
    };
    let service = Service {
        name: "web".into(),
        provider: "provider-b".into(),
        network: NetworkId(1),
        backends: vec![SocketAddrV4::new(BACKEND_IP, 8080)],
        nat_ips: vec![NAT_IP],
        echo: EchoMode::Reply,
        timeouts: Timeouts::default(),
        proxy: None,
    };
    let endpoint = Endpoint {
        name: "web-for-team-a".into(),
        account: "team-a".into(),
        network: NetworkId(0),
        address: ENDPOINT_IP,
        ports: vec![80],
        service: ServiceId(0),
        state,
        link_id: 0x2100_45c1,
    };
    Ok(Model::new(
        generation,
        vec![network("consumer", CONSUMER_PORT, GW_MAC_CONSUMER), network("provider", PROVIDER_PORT, GW_MAC_PROVIDER)],
        vec![service],
        vec![endpoint],
        1024..=65535,
        1,
    )?)
}

fn ethernet(out: &mut [u8], src: EthernetAddress, dst: EthernetAddress, ethertype: EtherType) {
    EthernetRepr { src_addr: src, dst_addr: dst, ethertype }.emit(&mut EthernetFrame::new_unchecked(out));
}

fn arp(op: ArpOperation, src: (EthernetAddress, Ipv4Addr), dst: (EthernetAddress, Ipv4Addr)) -> Vec<u8> {
    let mut frame = vec![0u8; 42];
    let eth_dst = if op == ArpOperation::Request { EthernetAddress::BROADCAST } else { dst.0 };
    ethernet(&mut frame, src.0, eth_dst, EtherType::Arp);
    ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: src.0,
        source_protocol_addr: src.1,
        target_hardware_addr: dst.0,
        target_protocol_addr: dst.1,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    frame
}

fn tcp(
    macs: (EthernetAddress, EthernetAddress),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: Option<u32>,
    flags: TcpFlags,
    payload: &[u8],
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq_number: SeqNumber(seq),
        ack_number: ack.map(SeqNumber),
        flags,
        window_len: 64240,
        max_seg_size: flags.syn().then_some(1460),
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
        ident: 1,
        dont_frag: true,
        dscp: 0,
        ecn: 0,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
    ethernet(&mut frame, macs.0, macs.1, EtherType::Ipv4);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut frame[34..]), *src.ip(), *dst.ip());
    frame
}

/// One line describing a frame the way tcpdump would.
fn describe(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return "(runt)".into() };
    match eth.ethertype() {
        EtherType::Arp => match ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) {
            Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) => match operation {
                ArpOperation::Request => format!("ARP who-has {target_protocol_addr} tell {source_protocol_addr}"),
                _ => format!("ARP {source_protocol_addr} is-at {source_hardware_addr}"),
            },
            Err(_) => "ARP (malformed)".into(),
        },
        EtherType::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return "IPv4 (malformed)".into() };
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                return format!("IPv4 {} > {}", ip.src_addr(), ip.dst_addr());
            };
            let f = tcp.flags();
            let flags: String = [(f.syn(), 'S'), (f.fin(), 'F'), (f.rst(), 'R'), (f.psh(), 'P'), (f.ack(), '.')]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, c)| *c)
                .collect();
            format!(
                "TCP {}:{} > {}:{} [{flags}] seq {} len {} ttl {}",
                ip.src_addr(),
                tcp.src_port(),
                ip.dst_addr(),
                tcp.dst_port(),
                tcp.seq_number().0,
                tcp.payload().len(),
                ip.hop_limit()
            )
        }
        other => format!("{other:?}"),
    }
}

/// Frames the gateway sent: (to the consumer network, to the provider network).
type Frames = (Vec<Vec<u8>>, Vec<Vec<u8>>);

struct Demo {
    worker: Worker<MemIo, AllowApproved, SystemClock>,
    model: SharedModel,
}

impl Demo {
    fn send(&mut self, port: PortId, frame: &[u8]) -> anyhow::Result<Frames> {
        let network = if port == CONSUMER_PORT { "consumer" } else { "provider" };
        println!("    {network:>8} → gateway   {}", describe(frame));
        if !self.worker.io_mut().inject(port, frame) {
            bail!("the in-memory port refused a frame");
        }
        self.worker.poll();
        let to_consumer = self.worker.io_mut().take_tx(CONSUMER_PORT);
        let to_provider = self.worker.io_mut().take_tx(PROVIDER_PORT);
        for f in &to_consumer {
            println!("    gateway → consumer   {}", describe(f));
        }
        for f in &to_provider {
            println!("    gateway → provider   {}", describe(f));
        }
        if to_consumer.is_empty() && to_provider.is_empty() {
            println!("    (nothing leaves the gateway)");
        }
        Ok((to_consumer, to_provider))
    }

    fn counters(&self) -> Counters {
        self.worker.counters().clone()
    }
}

/// Runs the demo and prints the walkthrough.
pub fn run() -> anyhow::Result<()> {
    println!("overlink demo: a Private Link across two networks that use the same prefix\n");
    println!("  consumer network  {PREFIX}   consumer host {CONSUMER_IP}, endpoint {ENDPOINT_IP}:80");
    println!("  provider network  {PREFIX}   service `web` on {BACKEND_IP}:8080, NAT IP {NAT_IP}");
    println!("  (the provider network has its own {CONSUMER_IP} too: routing alone could never tell them apart)\n");
    println!("  This demo runs the engine over in-memory ports and plays both hosts itself.\n");

    let shared: SharedModel = Arc::new(ArcSwap::from_pointee(model(1, ConnectionState::Pending)?));
    let pool = MemPool::new(1024);
    let worker = Worker::new(
        WorkerConfig::default(),
        MemIo::new(pool, 2, 1024),
        AllowApproved,
        SystemClock::new(),
        shared.clone(),
        Mailboxes::<MemBuf>::new(1, 64),
    );
    let mut demo = Demo { worker, model: shared };
    let consumer = SocketAddrV4::new(CONSUMER_IP, 51000);
    let endpoint = SocketAddrV4::new(ENDPOINT_IP, 80);
    let backend = SocketAddrV4::new(BACKEND_IP, 8080);
    let to_gw = (CONSUMER_MAC, GW_MAC_CONSUMER);

    println!("1. The consumer looks up the endpoint address; the gateway answers for it.");
    let (replies, _) = demo.send(
        CONSUMER_PORT,
        &arp(ArpOperation::Request, (CONSUMER_MAC, CONSUMER_IP), (EthernetAddress([0; 6]), ENDPOINT_IP)),
    )?;
    if replies.len() != 1 {
        bail!("the gateway did not answer ARP for the endpoint");
    }

    println!("\n2. The endpoint is `pending`: the provider has not approved it. The consumer tries to connect.");
    let syn = tcp(to_gw, consumer, endpoint, 1000, None, TcpFlags::SYN, &[]);
    let (_, out) = demo.send(CONSUMER_PORT, &syn)?;
    if !out.is_empty() {
        bail!("a pending endpoint let a packet through");
    }
    println!("   dropped: endpoint_not_approved = {}", demo.counters().dropped(DropReason::EndpointNotApproved));

    println!("\n3. The provider approves the endpoint (a new model snapshot reaches the worker).");
    demo.model.store(Arc::new(model(2, ConnectionState::Approved)?));
    println!("   The consumer retries; the gateway must first find the backend's MAC address.");
    let (_, out) = demo.send(CONSUMER_PORT, &syn)?;
    if out.len() != 1 {
        bail!("expected an ARP request towards the backend");
    }
    println!("   The backend answers; the waiting SYN goes out translated:");
    let (_, out) =
        demo.send(PROVIDER_PORT, &arp(ArpOperation::Reply, (BACKEND_MAC, BACKEND_IP), (GW_MAC_PROVIDER, GATEWAY_IP)))?;
    let translated = out.first().context("the SYN was not released after ARP")?;
    let ip = Ipv4Packet::new_checked(&translated[14..]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let seg = TcpPacket::new_checked(ip.payload()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nat = SocketAddrV4::new(ip.src_addr(), seg.src_port());

    println!("\n4. The service answers the NAT address; the gateway maps it back to the consumer.");
    let syn_ack =
        tcp((BACKEND_MAC, GW_MAC_PROVIDER), backend, nat, 5000, Some(1001), TcpFlags::SYN | TcpFlags::ACK, &[]);
    let (back, _) = demo.send(PROVIDER_PORT, &syn_ack)?;
    if back.len() != 1 {
        bail!("the SYN-ACK did not reach the consumer");
    }
    let request = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n";
    let data = tcp(to_gw, consumer, endpoint, 1001, Some(5001), TcpFlags::ACK | TcpFlags::PSH, request);
    demo.send(CONSUMER_PORT, &data)?;

    println!("\n5. Who connected, as the service sees it:");
    println!("   peer {nat} — the service's NAT address, not the consumer's {CONSUMER_IP}.");
    println!("   (With PROXY v2 the service will also learn {consumer} and the endpoint's link id.)");

    let c = demo.counters();
    println!("\nCounters:");
    for event in [Event::Received, Event::Forwarded, Event::Local, Event::FlowsCreated, Event::ArpRequests] {
        println!("  {:<24} {}", event.name(), c.get(event));
    }
    for reason in DropReason::ALL.iter().filter(|r| c.dropped(**r) > 0) {
        println!("  drop {:<19} {}", reason.name(), c.dropped(*reason));
    }
    println!("\nThe demo is done. Nothing was sent outside this process.");
    Ok(())
}
