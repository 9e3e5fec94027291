//! The worker loop and the per-packet paths.
//!
//! [`Worker::poll`] does one round: pick up a new model snapshot if one was published, drain the
//! hand-off mailbox, receive a burst on every port and run each frame through [`Worker::process`],
//! flush the tx bursts, then advance the timers (flow expiry, neighbour retries).
//!
//! `process` parses the frame into a small `Parsed` value and looks the flow up by
//! (network, protocol, source, destination). A hit goes to `forward` — the fast path: apply the
//! flow's precomputed rewrite (addresses, ports, RFC 1624 checksum deltas, TTL), write the L2
//! header for the egress network, queue for tx. A miss goes to `miss` — the `#[cold]` slow path:
//! endpoint lookup, approval, policy, backend choice, NAT port allocation, insert; or the
//! responder (ARP, ICMP echo), ICMP error translation, or a counted drop. Only the slow path
//! allocates, and only there is the policy called.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use arrayvec::ArrayVec;
use crossbeam_queue::ArrayQueue;
use flow::{
    owner_of_port, Clock, Direction, EntryState, FlowId, FlowKey, FlowTable, Instant, NetworkId, PortAllocator,
    Protocol, SweepAction, TcpState, TcpTracker,
};
use io::{Burst, PacketBuf, PacketIo, PortId, BURST};
use wire::checksum::{self, Delta};
use wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet,
    SeqNumber, TcpFlags, TcpOptions, TcpPacket, UdpPacket, VlanHeader,
};

use crate::counters::{Counters, DropReason, Event, SharedCounters};
use crate::craft::{self, ResetTo};
use crate::model::{Address, ConnectionState, EchoMode, EndpointId, Model, ServiceId};
use crate::neighbor::{NeighborSlot, Neighbors, Waiting};
use crate::policy::{ConnectRequest, ConnectVerdict, Policy, Tlvs};
use crate::proxy::{self, HeaderState, Placement, ProxyFlow, SeqMap, MAX_HEADER_LEN, MAX_SENDS};
use crate::telemetry::{self, FlowSample, LinkStats, Telemetry, WorkerReport, SAMPLE_LIMIT};

/// The model as the control plane publishes it: swapped atomically, read once per burst.
pub type SharedModel = Arc<ArcSwap<Model>>;

/// ICMP types.
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAM_PROBLEM: u8 = 12;
/// Destination unreachable, communication administratively prohibited (RFC 1812 §5.2.7.1).
const ICMP_CODE_ADMIN_PROHIBITED: u8 = 13;
/// How long a reset TCP flow lingers before its slot starts cooling down.
const TCP_CLOSED_LINGER: Duration = Duration::from_secs(10);
/// How often (in polls) a worker publishes its counters.
const PUBLISH_EVERY: u32 = 16;

/// A message to a worker.
#[derive(Debug)]
pub enum Message<B> {
    /// A frame that arrived at another worker but belongs to a flow this worker owns.
    Packet {
        /// The port it arrived on.
        port: PortId,
        /// The frame.
        buf: B,
    },
    /// A neighbour another worker learned.
    Neighbor {
        /// Its network.
        network: NetworkId,
        /// Its address.
        ip: Ipv4Addr,
        /// Its MAC address.
        mac: EthernetAddress,
    },
}

/// One bounded lock-free queue per worker.
#[derive(Debug)]
pub struct Mailboxes<B> {
    queues: Vec<ArrayQueue<Message<B>>>,
}

impl<B> Mailboxes<B> {
    /// Mailboxes for `workers` workers of `capacity` messages each.
    pub fn new(workers: usize, capacity: usize) -> Arc<Self> {
        Arc::new(Mailboxes { queues: (0..workers).map(|_| ArrayQueue::new(capacity.max(1))).collect() })
    }

    /// Posts `message` to worker `to`; gives it back when that queue is full.
    pub fn send(&self, to: usize, message: Message<B>) -> Result<(), Message<B>> {
        match self.queues.get(to) {
            Some(q) => q.push(message),
            None => Err(message),
        }
    }

    fn recv(&self, me: usize) -> Option<Message<B>> {
        self.queues.get(me)?.pop()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.queues.len()
    }
}

/// A precomputed rewrite for one direction of a flow.
#[derive(Clone, Copy, Debug)]
pub struct Rewrite {
    /// Egress network.
    pub network: NetworkId,
    /// Egress port.
    pub port: PortId,
    /// Egress VLAN.
    pub vlan: Option<u16>,
    /// Our MAC on the egress network.
    pub src_mac: EthernetAddress,
    /// The next hop's neighbour entry.
    pub neighbor: NeighborSlot,
    /// New source `ip:port` (for ICMP echo the port is the identifier).
    pub src: SocketAddrV4,
    /// New destination `ip:port`.
    pub dst: SocketAddrV4,
    /// IPv4 header checksum delta: both addresses and the TTL decrement.
    pub ip_delta: Delta,
    /// L4 checksum delta: addresses (pseudo-header) and ports, or the ICMP identifier.
    pub l4_delta: Delta,
}

/// What a worker keeps per flow.
#[derive(Debug)]
pub struct FlowState {
    /// Rewrites indexed by direction: `[ToService, ToConsumer]`.
    pub rewrite: [Rewrite; 2],
    /// The endpoint's link id (stable across snapshots).
    pub link_id: u32,
    /// The service at creation.
    pub service: ServiceId,
    /// Protocol of the flow.
    pub protocol: Protocol,
    /// NAT `ip:port` (port = identifier for ICMP echo) this flow holds.
    pub nat: SocketAddrV4,
    /// The backend.
    pub backend: SocketAddrV4,
    /// TCP state, for TCP flows.
    pub tcp: Option<TcpTracker>,
    /// Idle timeout once established (TCP) or always (UDP, ICMP).
    pub established_timeout: Duration,
    /// Idle timeout in TCP's transitory states.
    pub transitory_timeout: Duration,
    /// How long the NAT port stays reserved towards the backend after the flow ends.
    pub cooldown: Duration,
    /// Highest sequence number seen sent, per direction (for resets the gateway sends itself).
    pub next_seq: [u32; 2],
    /// Packets per direction.
    pub packets: [u64; 2],
    /// Bytes (IP) per direction.
    pub bytes: [u64; 2],
    /// The PROXY v2 sequence map, on flows of services with PROXY v2 on.
    pub pp: Option<SeqMap>,
    /// The PROXY v2 header and what the gateway needs to send it itself (cold, boxed).
    pub proxy: Option<Box<ProxyFlow>>,
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// This worker's index.
    pub id: usize,
    /// Number of workers.
    pub workers: usize,
    /// Flow table capacity.
    pub flow_capacity: usize,
    /// Seed for hashing and port randomisation.
    pub seed: u64,
    /// The expiry sweep visits every flow slot once per this period (spread over the polls in
    /// between). Expiry itself is exact: an expired flow is also ended when its next packet
    /// arrives; the sweep only reclaims the slots and NAT ports of flows that went quiet.
    pub sweep_period: Duration,
    /// Neighbour table capacity.
    pub neighbor_capacity: usize,
    /// Frames that may wait for address resolution.
    pub neighbor_waiting: usize,
    /// Rate limit of RSTs and ICMP errors the worker originates, per second.
    pub generated_per_second: u32,
    /// How often a report for the control plane is started (see [`Telemetry`]).
    pub report_interval: Duration,
    /// Flow slots a report pass examines per poll.
    pub report_budget: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: 0,
            workers: 1,
            flow_capacity: 1 << 16,
            seed: 0x6f76_6572_6c69_6e6b,
            sweep_period: Duration::from_secs(5),
            neighbor_capacity: 4096,
            neighbor_waiting: 256,
            generated_per_second: 10_000,
            report_interval: Duration::from_secs(1),
            report_budget: 256,
        }
    }
}

/// What `process` learned from a frame's headers.
#[derive(Clone, Copy, Debug)]
struct Parsed {
    port: PortId,
    network: NetworkId,
    vlan: Option<u16>,
    our_mac: EthernetAddress,
    src_mac: EthernetAddress,
    l3: usize,
    l4: usize,
    l4_end: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: Protocol,
    sport: u16,
    dport: u16,
    tcp_flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload_len: usize,
    icmp_type: u8,
    handed_in: bool,
}

/// What the first passes over a burst learned about one frame.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Drop it for this reason.
    Drop(DropReason),
    /// ARP.
    Arp,
    /// An ICMP error.
    IcmpError(Parsed),
    /// A frame with a flow key, its hash, and the lookup result.
    Flow(Parsed, FlowKey, u32, Option<(FlowId, Direction)>),
}

/// A token bucket for frames the worker originates.
#[derive(Debug)]
struct RateLimit {
    per_second: u32,
    tokens: u32,
    last: Instant,
}

impl RateLimit {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = elapsed.as_nanos().saturating_mul(u128::from(self.per_second)) / 1_000_000_000;
        if refill > 0 {
            self.tokens =
                u32::try_from(u128::from(self.tokens) + refill).unwrap_or(u32::MAX).min(self.per_second.max(1));
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A worker: owns its queues, flows, NAT port slice, neighbours, counters and policy.
pub struct Worker<I: PacketIo, P: Policy, C: Clock> {
    config: WorkerConfig,
    io: I,
    policy: P,
    clock: C,
    shared_model: SharedModel,
    model: Arc<Model>,
    flows: FlowTable<FlowState>,
    ports: PortAllocator,
    neighbors: Neighbors<I::Buf>,
    mailboxes: Arc<Mailboxes<I::Buf>>,
    rx: Burst<I::Buf>,
    tx: Vec<Burst<I::Buf>>,
    ready: Vec<(PortId, I::Buf)>,
    /// TLVs the policy adds to the flow being created (kept for PROXY v2 insertion).
    tlvs: Tlvs,
    requests: Vec<(NetworkId, Ipv4Addr)>,
    counters: Counters,
    shared_counters: Arc<SharedCounters>,
    generated: RateLimit,
    now: Instant,
    polls: u32,
    telemetry: Option<Arc<Telemetry>>,
    /// Slots the sweep may still examine (fractional credit in 1/2^16 units).
    sweep_credit: u64,
    last_sweep: Instant,
    report: WorkerReport,
    report_cursor: Option<usize>,
    next_report: Instant,
    nat_holders: HashMap<Ipv4Addr, u64>,
    /// Totals of flows already freed, per link id.
    ended: HashMap<u32, LinkStats>,
    /// Deadlines of the PROXY v2 header segments the gateway owns: `(deadline, flow, C)`, one per
    /// send; an entry whose flow was acknowledged, ended or sent again since is skipped.
    pp_timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// IPv4 identification for segments the gateway builds.
    ip_ident: u16,
}

impl<I: PacketIo, P: Policy, C: Clock> std::fmt::Debug for Worker<I, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.config.id).field("flows", &self.flows.len()).finish()
    }
}

#[inline]
fn index(direction: Direction) -> usize {
    match direction {
        Direction::ToService => 0,
        Direction::ToConsumer => 1,
    }
}

/// A 64-bit mix (splitmix64's finaliser) for backend and NAT IP choice.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// True when serial number `a` is after `b` (RFC 1982).
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl<I: PacketIo, P: Policy, C: Clock> Worker<I, P, C> {
    /// A worker reading `model`, doing I/O on `io`, deciding new flows with `policy`.
    pub fn new(
        config: WorkerConfig,
        io: I,
        policy: P,
        clock: C,
        model: SharedModel,
        mailboxes: Arc<Mailboxes<I::Buf>>,
    ) -> Self {
        let current = model.load_full();
        let ports = PortAllocator::new(
            current.nat_port_range.clone(),
            config.id,
            config.workers,
            config.seed ^ (config.id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let tx = (0..io.ports()).map(|_| Burst::new()).collect();
        let shared_counters = Arc::new(SharedCounters::with_ports(io.ports()));
        let now = clock.now();
        let mut worker = Worker {
            flows: FlowTable::with_capacity(config.flow_capacity, config.seed ^ 0x5eed),
            neighbors: Neighbors::new(config.neighbor_capacity, config.neighbor_waiting),
            ready: Vec::with_capacity(config.neighbor_waiting),
            tlvs: Tlvs::default(),
            requests: Vec::with_capacity(64),
            generated: RateLimit {
                per_second: config.generated_per_second,
                tokens: config.generated_per_second,
                last: now,
            },
            config,
            io,
            policy,
            clock,
            shared_model: model,
            model: current,
            ports,
            mailboxes,
            rx: Burst::new(),
            tx,
            counters: Counters::default(),
            shared_counters,
            now,
            polls: 0,
            telemetry: None,
            sweep_credit: 0,
            last_sweep: now,
            report: WorkerReport::default(),
            report_cursor: None,
            next_report: now,
            nat_holders: HashMap::new(),
            ended: HashMap::new(),
            pp_timers: BinaryHeap::new(),
            ip_ident: 0,
        };
        worker.adopt_nat_ips();
        worker
    }

    /// Publishes flow reports for the control plane into `telemetry` from now on.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters this worker publishes for other threads.
    pub fn shared_counters(&self) -> Arc<SharedCounters> {
        self.shared_counters.clone()
    }

    /// The flow table.
    pub fn flows(&self) -> &FlowTable<FlowState> {
        &self.flows
    }

    /// The NAT port allocator (this worker's slice).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    /// The I/O backend.
    pub fn io(&self) -> &I {
        &self.io
    }

    /// The I/O backend, mutably (tests inject and drain frames through it).
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// The policy.
    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// Frames waiting for address resolution.
    pub fn neighbor_waiting(&self) -> usize {
        self.neighbors.waiting()
    }

    /// Polls until `stop` is set, then publishes the counters a last time.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if self.poll() == 0 {
                std::hint::spin_loop();
            }
        }
        self.publish();
    }

    /// One round: snapshot, mailbox, rx bursts, tx flush, timers. Returns the frames handled.
    pub fn poll(&mut self) -> usize {
        self.now = self.clock.now();
        self.refresh_model();
        self.policy.between_bursts();
        let mut work = 0;
        for _ in 0..BURST {
            match self.mailboxes.recv(self.config.id) {
                Some(Message::Packet { port, buf }) => {
                    self.counters.event(Event::HandoffIn);
                    self.process(port, buf, true);
                    work += 1;
                }
                Some(Message::Neighbor { network, ip, mac }) => {
                    self.neighbors.learn(network, ip, mac, true);
                }
                None => break,
            }
        }
        for p in 0..self.tx.len() {
            let port = PortId(u16::try_from(p).unwrap_or(u16::MAX));
            let mut rx = std::mem::take(&mut self.rx);
            self.io.rx_burst(port, &mut rx);
            work += rx.len();
            self.process_burst(port, &mut rx);
            self.rx = rx;
        }
        self.timers();
        self.flush();
        self.polls = self.polls.wrapping_add(1);
        if self.polls % PUBLISH_EVERY == 0 {
            self.publish();
        }
        work
    }

    /// Sends every queued tx burst.
    pub fn flush(&mut self) {
        for (p, burst) in self.tx.iter_mut().enumerate() {
            if !burst.is_empty() {
                self.io.tx_burst(PortId(u16::try_from(p).unwrap_or(u16::MAX)), burst);
            }
        }
    }

    /// Publishes the counters now.
    pub fn publish(&self) {
        self.shared_counters.publish(&self.counters);
        for p in 0..self.tx.len() {
            let port = PortId(u16::try_from(p).unwrap_or(u16::MAX));
            self.shared_counters.publish_port(p, &self.io.stats(port));
        }
    }

    #[inline]
    fn send(&mut self, port: PortId, buf: I::Buf) {
        let Some(burst) = self.tx.get_mut(port.index()) else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        if burst.is_full() {
            self.io.tx_burst(port, burst);
        }
        burst.push(buf);
    }

    #[inline]
    fn drop_packet(&mut self, reason: DropReason, buf: I::Buf) {
        self.counters.drop(reason);
        drop(buf);
    }

    /// Runs a received burst through the paths in three passes, so that the cache misses of
    /// its flow lookups overlap instead of following one another: parse every frame and read
    /// its index bucket; look every flow up and read its entry; then process in order. A lookup
    /// made stale by an earlier frame of the same burst (a flow created or ended) is redone.
    fn process_burst(&mut self, port: PortId, rx: &mut Burst<I::Buf>) {
        let mut steps: ArrayVec<Step, BURST> = ArrayVec::new();
        for buf in rx.iter() {
            let step = match self.parse(port, buf.data(), false) {
                Ok(Some(p)) if p.protocol == Protocol::Icmp && is_icmp_error(p.icmp_type) => Step::IcmpError(p),
                Ok(Some(p)) => {
                    let key = FlowKey::new(
                        p.network,
                        p.protocol,
                        SocketAddrV4::new(p.src, p.sport),
                        SocketAddrV4::new(p.dst, p.dport),
                    );
                    Step::Flow(p, key, self.flows.hash(&key), None)
                }
                Ok(None) => Step::Arp,
                Err(reason) => Step::Drop(reason),
            };
            steps.push(step);
        }
        // Tight loops of independent reads: the CPU keeps many of their misses in flight at once.
        let mut touched = 0u64;
        for step in &steps {
            if let Step::Flow(_, _, hash, _) = step {
                touched = touched.wrapping_add(self.flows.touch_bucket(*hash));
            }
        }
        for step in steps.iter_mut() {
            if let Step::Flow(_, key, hash, found) = step {
                *found = self.flows.lookup_hashed(key, *hash);
            }
        }
        for step in &steps {
            if let Step::Flow(_, _, _, Some((id, direction))) = step {
                if let Some(e) = self.flows.get(*id) {
                    let d = index(*direction);
                    touched = touched
                        .wrapping_add(e.deadline.as_nanos())
                        .wrapping_add(e.value.packets[d])
                        .wrapping_add(u64::from(e.value.rewrite[d].neighbor.0));
                }
            }
        }
        std::hint::black_box(touched);
        for (buf, step) in rx.drain(..).zip(steps) {
            self.counters.event(Event::Received);
            match step {
                Step::Drop(reason) => self.drop_packet(reason, buf),
                Step::Arp => self.arp(port, buf),
                Step::IcmpError(p) => self.icmp_error(buf, &p),
                Step::Flow(p, key, hash, found) => {
                    let still_valid = |(id, direction): (FlowId, Direction)| {
                        self.flows.get(id).is_some_and(|e| match direction {
                            Direction::ToService => e.forward == key && e.state == EntryState::Live,
                            Direction::ToConsumer => e.reverse == key,
                        })
                    };
                    let found = match found {
                        Some(hit) if still_valid(hit) => Some(hit),
                        _ => self.flows.lookup_hashed(&key, hash),
                    };
                    match found {
                        Some((id, direction)) => self.forward(id, direction, buf, &p),
                        None => self.miss(buf, &p),
                    }
                }
            }
        }
    }

    /// Classifies one frame and sends it down the fast or slow path.
    fn process(&mut self, port: PortId, buf: I::Buf, handed_in: bool) {
        let parsed = match self.parse(port, buf.data(), handed_in) {
            Ok(Some(p)) => p,
            Ok(None) => return self.arp(port, buf),
            Err(reason) => return self.drop_packet(reason, buf),
        };
        if parsed.protocol == Protocol::Icmp && is_icmp_error(parsed.icmp_type) {
            return self.icmp_error(buf, &parsed);
        }
        let key = FlowKey::new(
            parsed.network,
            parsed.protocol,
            SocketAddrV4::new(parsed.src, parsed.sport),
            SocketAddrV4::new(parsed.dst, parsed.dport),
        );
        match self.flows.lookup(&key) {
            Some((id, direction)) => self.forward(id, direction, buf, &parsed),
            None => self.miss(buf, &parsed),
        }
    }

    /// Parses Ethernet, VLAN, IPv4 and the L4 header. `Ok(None)` means ARP.
    #[inline]
    fn parse(&self, port: PortId, data: &[u8], handed_in: bool) -> Result<Option<Parsed>, DropReason> {
        let eth = EthernetFrame::new_checked(data).map_err(|_| DropReason::FrameTooShort)?;
        let (ethertype, vlan, l3) = match eth.ethertype() {
            EtherType::Vlan => {
                let tag = VlanHeader::new_checked(&data[EthernetFrame::<&[u8]>::HEADER_LEN..])
                    .map_err(|_| DropReason::FrameTooShort)?;
                (
                    tag.ethertype(),
                    Some(tag.vlan_id()),
                    EthernetFrame::<&[u8]>::HEADER_LEN + VlanHeader::<&[u8]>::HEADER_LEN,
                )
            }
            other => (other, None, EthernetFrame::<&[u8]>::HEADER_LEN),
        };
        let network = self.model.network_at(port, vlan).ok_or(DropReason::UnknownNetwork)?;
        let our_mac = self.model.network(network).ok_or(DropReason::UnknownNetwork)?.mac;
        let dst_mac = eth.dst_addr();
        if dst_mac != our_mac && !dst_mac.is_broadcast() {
            return Err(DropReason::OtherDestinationMac);
        }
        match ethertype {
            EtherType::Ipv4 => {}
            EtherType::Arp => return Ok(None),
            EtherType::Ipv6 => return Err(DropReason::Ipv6Unsupported),
            _ => return Err(DropReason::UnsupportedEtherType),
        }
        let ip = Ipv4Packet::new_checked(&data[l3..]).map_err(|_| DropReason::Ipv4Malformed)?;
        if !ip.verify_checksum() {
            return Err(DropReason::Ipv4BadChecksum);
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            return Err(DropReason::Ipv4Fragment);
        }
        let l4 = l3 + ip.header_len();
        let l4_end = l3 + usize::from(ip.total_len());
        let segment = &data[l4..l4_end];
        let mut p = Parsed {
            port,
            network,
            vlan,
            our_mac,
            src_mac: eth.src_addr(),
            l3,
            l4,
            l4_end,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            ttl: ip.hop_limit(),
            protocol: Protocol::Udp,
            sport: 0,
            dport: 0,
            tcp_flags: TcpFlags::default(),
            seq: 0,
            ack: 0,
            payload_len: 0,
            icmp_type: 0,
            handed_in,
        };
        match ip.next_header() {
            IpProtocol::Tcp => {
                let tcp = TcpPacket::new_checked(segment).map_err(|_| DropReason::L4Malformed)?;
                p.protocol = Protocol::Tcp;
                p.sport = tcp.src_port();
                p.dport = tcp.dst_port();
                p.tcp_flags = tcp.flags();
                p.seq = tcp.seq_number().0;
                p.ack = tcp.ack_number().0;
                p.payload_len = segment.len() - tcp.header_len();
            }
            IpProtocol::Udp => {
                let udp = UdpPacket::new_checked(segment).map_err(|_| DropReason::L4Malformed)?;
                p.sport = udp.src_port();
                p.dport = udp.dst_port();
                p.payload_len = usize::from(udp.len()).saturating_sub(8);
            }
            IpProtocol::Icmp => {
                let icmp = Icmpv4Packet::new_checked(segment).map_err(|_| DropReason::L4Malformed)?;
                p.protocol = Protocol::Icmp;
                p.icmp_type = u8::from(icmp.msg_type());
                match p.icmp_type {
                    ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                        p.sport = icmp.echo_ident();
                        p.dport = p.sport;
                    }
                    t if is_icmp_error(t) => {}
                    _ => return Err(DropReason::IcmpUnsupported),
                }
            }
            _ => return Err(DropReason::UnsupportedProtocol),
        }
        Ok(Some(p))
    }

    /// The fast path: apply the flow's precomputed rewrite and send.
    #[inline]
    fn forward(&mut self, id: FlowId, direction: Direction, mut buf: I::Buf, p: &Parsed) {
        let now = self.now;
        let Some(entry) = self.flows.get_mut(id) else {
            return self.drop_packet(DropReason::FlowClosed, buf);
        };
        if entry.state == EntryState::Cooling {
            return self.drop_packet(DropReason::FlowClosed, buf);
        }
        if entry.deadline <= now {
            // Expired but not swept yet: the flow ends now. From the consumer the packet is a
            // miss (a new flow, or a RST); from the provider it meets a closed flow.
            let until = now + entry.value.cooldown;
            self.flows.cool(id, until);
            self.counters.event(Event::FlowsExpired);
            if direction == Direction::ToConsumer {
                return self.drop_packet(DropReason::FlowClosed, buf);
            }
            return self.miss(buf, p);
        }
        let d = index(direction);
        let flow = &mut entry.value;
        if p.protocol == Protocol::Icmp {
            let expected = if direction == Direction::ToService { ICMP_ECHO_REQUEST } else { ICMP_ECHO_REPLY };
            if p.icmp_type != expected {
                return self.drop_packet(DropReason::IcmpUnsupported, buf);
            }
        }
        if p.ttl <= 1 {
            return self.time_exceeded(buf, p);
        }
        let timeout = match flow.tcp.as_mut() {
            Some(tcp) => {
                let flags = p.tcp_flags;
                let (syn, ack, fin, rst) = (flags.syn(), flags.ack(), flags.fin(), flags.rst());
                if direction == Direction::ToService && syn && !ack && tcp.is_closed() {
                    // The consumer reuses the 5-tuple for a new connection: end the old flow.
                    let until = now + flow.cooldown;
                    self.flows.cool(id, until);
                    return self.miss(buf, p);
                }
                tcp.on_segment(direction, syn, ack, fin, rst);
                let end = p
                    .seq
                    .wrapping_add(u32::try_from(p.payload_len).unwrap_or(0))
                    .wrapping_add(u32::from(syn) + u32::from(fin));
                if !rst && (flow.packets[d] == 0 || seq_after(end, flow.next_seq[d])) {
                    flow.next_seq[d] = end;
                }
                match tcp.state {
                    TcpState::Established => flow.established_timeout,
                    TcpState::Closed => TCP_CLOSED_LINGER.min(flow.transitory_timeout),
                    _ => flow.transitory_timeout,
                }
            }
            None => flow.established_timeout,
        };
        entry.deadline = now + timeout;
        flow.packets[d] += 1;
        flow.bytes[d] += (p.l4_end - p.l3) as u64;
        let rewrite = flow.rewrite[d];
        let pp = flow.pp;
        apply_rewrite(buf.data_mut(), p, &rewrite);
        if let Some(map) = pp {
            return self.proxy_segment(id, direction, map, buf, p, &rewrite);
        }
        self.transmit(buf, p.l3, &rewrite);
    }

    /// PROXY v2 on an established flow: once the header is acknowledged, client segments only
    /// shift by `L` and server ACKs (and SACK blocks) map back; everything else is the slow part.
    #[inline]
    fn proxy_segment(
        &mut self,
        id: FlowId,
        direction: Direction,
        map: SeqMap,
        mut buf: I::Buf,
        p: &Parsed,
        rewrite: &Rewrite,
    ) {
        let flags = p.tcp_flags;
        if map.state == HeaderState::Acked && !flags.syn() {
            let seg = &mut buf.data_mut()[p.l4..p.l4_end];
            match direction {
                Direction::ToService => {
                    let consumes = p.payload_len > 0 || flags.fin();
                    if !(consumes && p.seq == map.c) {
                        proxy::shift_seq(seg, map.len);
                        return self.transmit(buf, p.l3, rewrite);
                    }
                }
                Direction::ToConsumer => {
                    if flags.ack() {
                        if map.clamps(p.ack) {
                            self.counters.event(Event::ProxyAcksClamped);
                        }
                        proxy::set_ack(seg, map.map_ack(p.ack));
                    }
                    if proxy::options_need_scan(seg) {
                        let removed = proxy::map_sack(seg, &map);
                        self.counters.events[Event::ProxySackBlocksRemoved as usize] += u64::from(removed);
                    }
                    return self.transmit(buf, p.l3, rewrite);
                }
            }
        }
        self.proxy_slow(id, direction, map, buf, p, rewrite);
    }

    /// PROXY v2 until the header is acknowledged, and every client segment that starts at `C`.
    #[cold]
    #[inline(never)]
    fn proxy_slow(
        &mut self,
        id: FlowId,
        direction: Direction,
        mut map: SeqMap,
        mut buf: I::Buf,
        p: &Parsed,
        rewrite: &Rewrite,
    ) {
        let now = self.now;
        let Some(entry) = self.flows.get_mut(id) else {
            return self.drop_packet(DropReason::FlowClosed, buf);
        };
        let Some(mut cold) = entry.value.proxy.take() else {
            return self.transmit(buf, p.l3, rewrite);
        };
        let flags = p.tcp_flags;
        let consumes = p.payload_len > 0 || flags.fin();
        let mut outcome = Ok(None);
        match direction {
            Direction::ToConsumer => {
                let seg = &mut buf.data_mut()[p.l4..p.l4_end];
                if flags.syn() && flags.ack() {
                    cold.server_isn = Some(p.seq);
                    if proxy::clamp_mss(seg, map.len, cold.mtu) {
                        self.counters.event(Event::ProxyMssClamped);
                    }
                }
                if flags.ack() {
                    if map.clamps(p.ack) {
                        self.counters.event(Event::ProxyAcksClamped);
                    }
                    proxy::set_ack(seg, map.map_ack(p.ack));
                    if map.state != HeaderState::Acked && proxy::dist(p.ack, map.c) >= map.len as i32 {
                        map.state = HeaderState::Acked;
                        cold.timer_armed = false;
                    }
                }
                if proxy::options_need_scan(seg) {
                    let removed = proxy::map_sack(seg, &map);
                    self.counters.events[Event::ProxySackBlocksRemoved as usize] += u64::from(removed);
                }
            }
            Direction::ToService if flags.syn() => {
                // A SYN (retransmitted): unchanged, except that TCP Fast Open data is dropped so
                // that the client sends it again at C, where it gets the header.
                outcome = strip_syn_data(&mut buf, p, rewrite).map(|()| None);
            }
            Direction::ToService => {
                if map.state != HeaderState::Acked {
                    let seg = &buf.data()[p.l4..p.l4_end];
                    cold.last_ack = p.ack;
                    cold.last_win = u16::from_be_bytes([seg[14], seg[15]]);
                    cold.timestamps = proxy::timestamps(seg);
                }
                let convert = !consumes
                    && !flags.rst()
                    && !flags.syn()
                    && flags.ack()
                    && p.seq == map.c
                    && cold.placement == Placement::OnHandshakeAck
                    && cold.server_isn.is_some()
                    && map.state != HeaderState::Acked
                    && (map.state == HeaderState::Pending || now.saturating_duration_since(cold.last_tx) >= cold.rto);
                if (consumes && p.seq == map.c) || convert {
                    let header = &cold.header[..map.len as usize];
                    outcome = insert_header(&mut buf, p, rewrite, header, cold.mtu, &mut self.io);
                    if outcome.is_ok() {
                        self.counters.event(match (convert, map.state) {
                            (true, _) => Event::ProxyAcksConverted,
                            (false, HeaderState::Pending) => Event::ProxyHeadersInserted,
                            (false, _) => Event::ProxyHeadersReprepended,
                        });
                        if convert {
                            if map.state == HeaderState::InFlight {
                                cold.rto = cold.rto.saturating_mul(2);
                            }
                            cold.sends = cold.sends.saturating_add(1);
                            cold.last_tx = now;
                            cold.timer_armed = true;
                            self.pp_timers.push(Reverse((now + cold.rto, id.0, map.c)));
                        }
                        if map.state == HeaderState::Pending {
                            map.state = HeaderState::InFlight;
                        }
                    }
                } else {
                    proxy::shift_seq(&mut buf.data_mut()[p.l4..p.l4_end], map.shift(p.seq, consumes));
                }
            }
        }
        entry.value.pp = Some(map);
        entry.value.proxy = Some(cold);
        match outcome {
            Ok(second) => {
                self.transmit(buf, p.l3, rewrite);
                if let Some(second) = second {
                    self.counters.event(Event::ProxySplits);
                    self.counters.event(Event::Generated);
                    self.transmit_generated(second, p.l3, rewrite);
                }
            }
            Err(reason) => self.drop_packet(reason, buf),
        }
    }

    /// Like `transmit`, for a frame the gateway built (counted as generated, not forwarded).
    #[cold]
    fn transmit_generated(&mut self, mut buf: I::Buf, l2_len: usize, rewrite: &Rewrite) {
        let Some(mac) = self.neighbors.mac(rewrite.neighbor) else { return };
        if craft::write_l2(&mut buf, l2_len, mac, rewrite.src_mac, rewrite.vlan, EtherType::Ipv4).is_some() {
            self.send(rewrite.port, buf);
        }
    }

    /// Retransmits the header segments the gateway owns whose timer ran out; gives up (resets
    /// both ways) after [`MAX_SENDS`] sends. Only due deadlines are looked at.
    #[cold]
    fn proxy_timers(&mut self) {
        let now = self.now;
        while let Some(&Reverse((deadline, slot, c))) = self.pp_timers.peek() {
            if deadline > now {
                break;
            }
            self.pp_timers.pop();
            let id = FlowId(slot);
            let Some(entry) = self.flows.get_mut(id) else { continue };
            let live = entry.state == EntryState::Live;
            let flow = &mut entry.value;
            let (Some(map), Some(cold)) = (flow.pp, flow.proxy.as_deref_mut()) else { continue };
            let current = cold.timer_armed && cold.last_tx + cold.rto == deadline;
            if !live || map.c != c || map.state != HeaderState::InFlight || !current {
                continue;
            }
            if cold.sends >= MAX_SENDS {
                cold.timer_armed = false;
                self.reset_flow(id, Event::ProxyGiveups);
                continue;
            }
            cold.sends += 1;
            cold.last_tx = now;
            cold.rto = cold.rto.saturating_mul(2);
            self.pp_timers.push(Reverse((now + cold.rto, slot, c)));
            let mut header = [0u8; MAX_HEADER_LEN];
            let len = map.len as usize;
            header[..len].copy_from_slice(&cold.header[..len]);
            let segment = craft::Segment {
                src: (*flow.rewrite[0].src.ip(), flow.rewrite[0].src.port()),
                dst: (*flow.rewrite[0].dst.ip(), flow.rewrite[0].dst.port()),
                seq: c,
                ack: cold.last_ack,
                flags: TcpFlags::ACK | TcpFlags::PSH,
                window: cold.last_win,
                timestamps: cold.timestamps,
                ident: 0,
            };
            let rewrite = flow.rewrite[0];
            self.send_segment(&rewrite, segment, &header[..len]);
            self.counters.event(Event::ProxyTimerRetransmits);
        }
    }

    /// Builds and sends a TCP segment along `rewrite` (its next hop and L2 header).
    #[cold]
    fn send_segment(&mut self, rewrite: &Rewrite, mut segment: craft::Segment, payload: &[u8]) {
        let Some(mac) = self.neighbors.mac(rewrite.neighbor) else { return };
        let Some(mut buf) = self.io.alloc() else { return };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        segment.ident = self.ip_ident;
        if buf.set_len(0) {
            if let Some(l2) = craft::write_l2(&mut buf, 0, mac, rewrite.src_mac, rewrite.vlan, EtherType::Ipv4) {
                if craft::tcp_segment(&mut buf, l2, &segment, payload) {
                    self.counters.event(Event::Generated);
                    self.send(rewrite.port, buf);
                }
            }
        }
    }

    /// Writes the L2 header for `rewrite`'s egress and sends, or waits for the neighbour.
    #[inline]
    fn transmit(&mut self, mut buf: I::Buf, l2_len: usize, rewrite: &Rewrite) {
        let mac = self.neighbors.mac(rewrite.neighbor);
        let dst = mac.unwrap_or_default();
        if craft::write_l2(&mut buf, l2_len, dst, rewrite.src_mac, rewrite.vlan, EtherType::Ipv4).is_none() {
            return self.drop_packet(DropReason::NoBuffer, buf);
        }
        if mac.is_some() {
            self.counters.event(Event::Forwarded);
            self.send(rewrite.port, buf);
        } else {
            self.wait_for_neighbor(rewrite.neighbor, rewrite.port, buf);
        }
    }

    #[cold]
    fn wait_for_neighbor(&mut self, slot: NeighborSlot, port: PortId, buf: I::Buf) {
        if let Err(buf) = self.neighbors.wait(slot, port, buf) {
            return self.drop_packet(DropReason::NeighborQueueFull, buf);
        }
        self.counters.event(Event::NeighborQueued);
        if self.neighbors.request_due(slot, self.now) {
            if let Some((network, ip)) = self.neighbors.target(slot) {
                self.send_arp_request(network, ip);
            }
        }
    }

    /// The slow path: no flow matched.
    #[cold]
    #[inline(never)]
    fn miss(&mut self, buf: I::Buf, p: &Parsed) {
        let model = self.model.clone();
        match model.address(p.network, p.dst) {
            Some(Address::Endpoint(endpoint)) => self.new_flow(buf, p, &model, endpoint),
            Some(Address::NatIp(_)) => {
                if !p.handed_in {
                    if let Some(owner) = owner_of_port(model.nat_port_range.clone(), model.workers, p.dport) {
                        if owner != self.config.id {
                            return self.hand_off(owner, p.port, buf);
                        }
                    }
                }
                self.drop_packet(DropReason::Unsolicited, buf);
            }
            Some(Address::Gateway) => {
                if p.protocol == Protocol::Icmp && p.icmp_type == ICMP_ECHO_REQUEST {
                    self.echo_reply(buf, p);
                } else {
                    self.drop_packet(DropReason::ToGateway, buf);
                }
            }
            None => self.drop_packet(DropReason::NotForUs, buf),
        }
    }

    #[cold]
    fn hand_off(&mut self, owner: usize, port: PortId, buf: I::Buf) {
        match self.mailboxes.send(owner, Message::Packet { port, buf }) {
            Ok(()) => self.counters.event(Event::HandoffOut),
            Err(_) => self.counters.drop(DropReason::HandoffQueueFull),
        }
    }

    #[cold]
    fn echo_reply(&mut self, mut buf: I::Buf, p: &Parsed) {
        if p.l4_end - p.l4 < 8 || !verify_icmp(&buf.data()[p.l4..p.l4_end]) {
            return self.drop_packet(DropReason::L4BadChecksum, buf);
        }
        // Trailers after the IP packet are not echoed.
        if !buf.set_len(p.l4_end) || !craft::echo_reply_in_place(&mut buf, p.l3, p.l4, p.our_mac) {
            return self.drop_packet(DropReason::NoBuffer, buf);
        }
        self.counters.event(Event::Local);
        self.send(p.port, buf);
    }

    /// A new flow from a consumer to an endpoint.
    #[cold]
    #[inline(never)]
    fn new_flow(&mut self, buf: I::Buf, p: &Parsed, model: &Model, endpoint_id: EndpointId) {
        let Some(endpoint) = model.endpoint(endpoint_id) else {
            return self.drop_packet(DropReason::NotForUs, buf);
        };
        let Some(service) = model.service(endpoint.service) else {
            return self.drop_packet(DropReason::EndpointNotApproved, buf);
        };
        match p.protocol {
            Protocol::Icmp => {
                if p.icmp_type != ICMP_ECHO_REQUEST {
                    return self.drop_packet(DropReason::IcmpUnsupported, buf);
                }
                if service.echo == EchoMode::Reply {
                    return self.echo_reply(buf, p);
                }
            }
            Protocol::Tcp | Protocol::Udp => {
                if !endpoint.accepts_port(p.dport) {
                    return self.drop_packet(DropReason::PortNotExposed, buf);
                }
            }
        }
        if endpoint.state != ConnectionState::Approved {
            return self.drop_packet(DropReason::EndpointNotApproved, buf);
        }
        if p.protocol == Protocol::Tcp {
            let flags = p.tcp_flags;
            if !flags.syn() || flags.ack() || flags.rst() || flags.fin() {
                let reason = if service.proxy.is_some() { DropReason::ProxyMidstream } else { DropReason::TcpNoFlow };
                if flags.rst() {
                    return self.drop_packet(reason, buf);
                }
                return self.refuse(buf, p, reason);
            }
        }
        if p.ttl <= 1 {
            return self.time_exceeded(buf, p);
        }
        if p.protocol == Protocol::Tcp {
            let segment = &buf.data()[p.l4..p.l4_end];
            if TcpOptions::new(TcpPacket::new_unchecked(segment).options()).any(|o| o.is_err()) {
                return self.drop_packet(DropReason::L4Malformed, buf);
            }
        }
        if !verify_l4(buf.data(), p) {
            return self.drop_packet(DropReason::L4BadChecksum, buf);
        }
        let source = SocketAddrV4::new(p.src, p.sport);
        let destination = SocketAddrV4::new(p.dst, p.dport);
        let request = ConnectRequest { service, endpoint, protocol: p.protocol, source, destination };
        self.tlvs.clear();
        match self.policy.connect(&request, &mut self.tlvs) {
            ConnectVerdict::Allow => {}
            ConnectVerdict::Deny => return self.drop_packet(DropReason::PolicyDenied, buf),
            ConnectVerdict::Reset => return self.refuse(buf, p, DropReason::PolicyReset),
        }
        // PROXY v2: the header is built now, from the consumer's own address and the TLVs the
        // policy gave; a header over the service's budget refuses the connection.
        let mut header = [0u8; MAX_HEADER_LEN];
        let mut header_len = 0;
        let mut local = false;
        let proxy_settings = service.proxy.as_ref().filter(|_| p.protocol == Protocol::Tcp);
        if let Some(settings) = proxy_settings {
            local = settings.is_probe(p.src);
            match proxy::build_header(&mut header, local, source, destination, &self.tlvs, settings.header_budget) {
                Ok(n) => header_len = n,
                Err(proxy::TooLong) => return self.refuse(buf, p, DropReason::ProxyHeaderTooLong),
            }
        }

        // Backend: a hash of the consumer's source, so a consumer's flows spread but are stable.
        let hash = mix(u64::from(p.network.0) << 48
            ^ u64::from(u32::from(p.src)) << 16
            ^ u64::from(p.sport)
            ^ self.config.seed);
        let backend = service.backends[usize::try_from(hash % service.backends.len() as u64).unwrap_or(0)];
        let Some(provider) = model.network(service.network) else {
            return self.drop_packet(DropReason::NoRoute, buf);
        };
        let Some(consumer) = model.network(p.network) else {
            return self.drop_packet(DropReason::NoRoute, buf);
        };
        // For ICMP echo the backend side "port" is the NAT identifier itself.
        let backend_port = |nat_port: u16| if p.protocol == Protocol::Icmp { nat_port } else { backend.port() };
        let mut nat = None;
        let start = (hash >> 32) as usize;
        for k in 0..service.nat_ips.len() {
            let ip = service.nat_ips[(start + k) % service.nat_ips.len()];
            let flows = &self.flows;
            let protocol = p.protocol;
            let network = service.network;
            let allocated = self.ports.allocate(ip, |port| {
                !flows.contains(&FlowKey::new(
                    network,
                    protocol,
                    SocketAddrV4::new(*backend.ip(), backend_port(port)),
                    SocketAddrV4::new(ip, port),
                ))
            });
            if let Some(port) = allocated {
                nat = Some(SocketAddrV4::new(ip, port));
                break;
            }
        }
        let Some(nat) = nat else {
            return self.refuse(buf, p, DropReason::NatPortsExhausted);
        };
        let backend = SocketAddrV4::new(*backend.ip(), backend_port(nat.port()));
        let (Some(to_service_hop), Some(to_consumer_hop)) =
            (provider.gateway_for(*backend.ip()), consumer.gateway_for(p.src))
        else {
            self.ports.release(*nat.ip(), nat.port());
            return self.drop_packet(DropReason::NoRoute, buf);
        };
        let (Some(to_service_slot), Some(to_consumer_slot)) =
            (self.neighbors.slot(service.network, to_service_hop), self.neighbors.slot(p.network, to_consumer_hop))
        else {
            self.ports.release(*nat.ip(), nat.port());
            return self.drop_packet(DropReason::NeighborQueueFull, buf);
        };
        let to_service = Rewrite {
            network: service.network,
            port: provider.port,
            vlan: provider.vlan,
            src_mac: provider.mac,
            neighbor: to_service_slot,
            src: nat,
            dst: backend,
            ip_delta: Delta::ZERO,
            l4_delta: Delta::ZERO,
        };
        let to_consumer = Rewrite {
            network: p.network,
            port: consumer.port,
            vlan: consumer.vlan,
            src_mac: consumer.mac,
            neighbor: to_consumer_slot,
            src: destination,
            dst: source,
            ip_delta: Delta::ZERO,
            l4_delta: Delta::ZERO,
        };
        let to_service = with_deltas(to_service, source, destination, p.protocol);
        let to_consumer = with_deltas(to_consumer, backend, nat, p.protocol);
        let timeouts = service.timeouts;
        let (established, transitory) = match p.protocol {
            Protocol::Tcp => (timeouts.tcp_established, timeouts.tcp_transitory),
            Protocol::Udp => (timeouts.udp, timeouts.udp),
            Protocol::Icmp => (timeouts.icmp, timeouts.icmp),
        };
        let state = FlowState {
            rewrite: [to_service, to_consumer],
            link_id: endpoint.link_id,
            service: endpoint.service,
            protocol: p.protocol,
            nat,
            backend,
            tcp: (p.protocol == Protocol::Tcp).then(TcpTracker::new),
            established_timeout: established,
            transitory_timeout: transitory,
            cooldown: timeouts.port_cooldown,
            next_seq: [0; 2],
            packets: [0; 2],
            bytes: [0; 2],
            pp: proxy_settings.map(|_| SeqMap {
                c: p.seq.wrapping_add(1),
                len: u32::try_from(header_len).unwrap_or(0),
                state: HeaderState::Pending,
            }),
            proxy: proxy_settings
                .map(|s| Box::new(ProxyFlow::new(&header[..header_len], s.placement, provider.mtu, self.now))),
        };
        let forward = FlowKey::new(p.network, p.protocol, source, destination);
        let reverse = FlowKey::new(service.network, p.protocol, backend, nat);
        match self.flows.insert(forward, reverse, state, self.now + transitory) {
            Ok(id) => {
                self.counters.event(Event::FlowsCreated);
                if local {
                    self.counters.event(Event::ProxyLocalHeaders);
                }
                if self.telemetry.is_some() {
                    self.ended.entry(endpoint.link_id).or_default().flows_created += 1;
                }
                self.forward(id, Direction::ToService, buf, p);
            }
            Err(_) => {
                self.ports.release(*nat.ip(), nat.port());
                self.refuse(buf, p, DropReason::FlowTableFull);
            }
        }
    }

    /// Refuses a new flow actively (RST for TCP, ICMP administratively prohibited otherwise,
    /// rate-limited) and counts `reason`.
    #[cold]
    fn refuse(&mut self, mut buf: I::Buf, p: &Parsed, reason: DropReason) {
        self.counters.drop(reason);
        if !self.generated.take(self.now) {
            self.counters.event(Event::GeneratedRateLimited);
            return;
        }
        let built = match p.protocol {
            Protocol::Tcp => {
                let reset = ResetTo::answering(
                    (p.src, p.sport),
                    (p.dst, p.dport),
                    SeqNumber(p.seq),
                    SeqNumber(p.ack),
                    p.tcp_flags,
                    p.payload_len,
                );
                craft::write_l2(&mut buf, p.l3, p.src_mac, p.our_mac, p.vlan, EtherType::Ipv4).is_some()
                    && craft::tcp_reset(&mut buf, p.l3, &reset)
            }
            Protocol::Udp | Protocol::Icmp => {
                craft::write_l2(&mut buf, p.l3, p.src_mac, p.our_mac, p.vlan, EtherType::Ipv4).is_some()
                    && craft::icmp_error_in_place(
                        &mut buf,
                        p.l3,
                        p.l4_end - p.l3,
                        p.dst,
                        p.src,
                        ICMP_DST_UNREACHABLE,
                        ICMP_CODE_ADMIN_PROHIBITED,
                        0,
                    )
            }
        };
        if built {
            self.counters.event(Event::Generated);
            self.send(p.port, buf);
        }
    }

    /// TTL expired: answer with ICMP time exceeded from the gateway's own address.
    #[cold]
    fn time_exceeded(&mut self, mut buf: I::Buf, p: &Parsed) {
        self.counters.drop(DropReason::TtlExpired);
        if !self.generated.take(self.now) {
            self.counters.event(Event::GeneratedRateLimited);
            return;
        }
        let Some(gateway) = self.model.network(p.network).map(|n| n.address) else { return };
        if craft::write_l2(&mut buf, p.l3, p.src_mac, p.our_mac, p.vlan, EtherType::Ipv4).is_some()
            && craft::icmp_error_in_place(&mut buf, p.l3, p.l4_end - p.l3, gateway, p.src, ICMP_TIME_EXCEEDED, 0, 0)
        {
            self.counters.event(Event::Generated);
            self.send(p.port, buf);
        }
    }

    /// An ICMP error about a flow: translate its outer and quoted headers back and send it on.
    ///
    /// The quoted packet went one way through the gateway; the error goes the other way. Looking
    /// up the quoted packet's reverse 5-tuple gives the flow and the direction the error travels.
    /// No ICMP error creates, refreshes or deletes a flow.
    #[cold]
    #[inline(never)]
    fn icmp_error(&mut self, mut buf: I::Buf, p: &Parsed) {
        let Some(quoted) = QuotedPacket::parse(&buf.data()[p.l4..p.l4_end]) else {
            return self.drop_packet(DropReason::IcmpErrorMalformed, buf);
        };
        if quoted.nested {
            return self.drop_packet(DropReason::IcmpErrorNested, buf);
        }
        if !verify_icmp(&buf.data()[p.l4..p.l4_end]) {
            return self.drop_packet(DropReason::L4BadChecksum, buf);
        }
        let key = FlowKey::new(
            p.network,
            quoted.protocol,
            SocketAddrV4::new(quoted.dst, quoted.dport),
            SocketAddrV4::new(quoted.src, quoted.sport),
        );
        let Some((id, direction)) = self.flows.lookup(&key) else {
            if !p.handed_in && matches!(self.model.address(p.network, quoted.src), Some(Address::NatIp(_))) {
                if let Some(owner) = owner_of_port(self.model.nat_port_range.clone(), self.model.workers, quoted.sport)
                {
                    if owner != self.config.id {
                        return self.hand_off(owner, p.port, buf);
                    }
                }
            }
            return self.drop_packet(DropReason::IcmpErrorNoFlow, buf);
        };
        let Some(entry) = self.flows.get(id) else {
            return self.drop_packet(DropReason::IcmpErrorNoFlow, buf);
        };
        if entry.state == EntryState::Cooling {
            return self.drop_packet(DropReason::IcmpErrorNoFlow, buf);
        }
        if p.ttl <= 1 {
            // No ICMP error about an ICMP error.
            return self.drop_packet(DropReason::TtlExpired, buf);
        }
        let d = index(direction);
        let out = entry.value.rewrite[d];
        let mut undo = entry.value.rewrite[1 - d].l4_delta.negate();
        if let (Some(map), Direction::ToConsumer, Protocol::Tcp) = (entry.value.pp, direction, quoted.protocol) {
            // The quoted segment went to the server shifted by the PROXY header: map its
            // sequence number back, or the client's TCP ignores the error as out of window.
            let at = p.l4 + quoted.l4 + 4;
            let data = buf.data_mut();
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            let new = map.map_ack(old);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            undo = undo.replace32(old, new);
        }
        translate_icmp_error(buf.data_mut(), p, &quoted, &out, undo);
        self.counters.event(Event::IcmpErrorsTranslated);
        self.transmit(buf, p.l3, &out);
    }

    /// ARP: learn the sender, answer requests for our addresses.
    #[cold]
    fn arp(&mut self, port: PortId, mut buf: I::Buf) {
        let data = buf.data();
        let (network, l3, our_mac) = {
            let Ok(eth) = EthernetFrame::new_checked(data) else {
                return self.drop_packet(DropReason::FrameTooShort, buf);
            };
            let (vlan, l3) = match eth.ethertype() {
                EtherType::Vlan => match VlanHeader::new_checked(&data[EthernetFrame::<&[u8]>::HEADER_LEN..]) {
                    Ok(tag) => {
                        (Some(tag.vlan_id()), EthernetFrame::<&[u8]>::HEADER_LEN + VlanHeader::<&[u8]>::HEADER_LEN)
                    }
                    Err(_) => return self.drop_packet(DropReason::FrameTooShort, buf),
                },
                _ => (None, EthernetFrame::<&[u8]>::HEADER_LEN),
            };
            let Some(network) = self.model.network_at(port, vlan) else {
                return self.drop_packet(DropReason::UnknownNetwork, buf);
            };
            let Some(net) = self.model.network(network) else {
                return self.drop_packet(DropReason::UnknownNetwork, buf);
            };
            (network, l3, net.mac)
        };
        let repr = match ArpPacket::new_checked(&data[l3..]).and_then(|packet| ArpRepr::parse(&packet)) {
            Ok(repr) => repr,
            Err(_) => return self.drop_packet(DropReason::ArpMalformed, buf),
        };
        let ArpRepr::EthernetIpv4 {
            operation, source_hardware_addr, source_protocol_addr, target_protocol_addr, ..
        } = repr;
        let for_us = self.model.address(network, target_protocol_addr).is_some();
        if source_hardware_addr.is_unicast()
            && !source_protocol_addr.is_unspecified()
            && self.neighbors.learn(network, source_protocol_addr, source_hardware_addr, for_us)
        {
            for other in 0..self.mailboxes.workers() {
                if other != self.config.id {
                    let message = Message::Neighbor { network, ip: source_protocol_addr, mac: source_hardware_addr };
                    // A full mailbox only delays learning there: that worker ARPs itself.
                    let _ = self.mailboxes.send(other, message);
                }
            }
        }
        match operation {
            ArpOperation::Request if for_us => {
                if craft::arp_reply_in_place(&mut buf, l3, our_mac, &repr) {
                    self.counters.event(Event::Local);
                    self.send(port, buf);
                } else {
                    self.drop_packet(DropReason::NoBuffer, buf);
                }
            }
            ArpOperation::Reply if for_us => {
                self.counters.event(Event::Local);
            }
            _ => self.drop_packet(DropReason::ArpNotForUs, buf),
        }
    }

    #[cold]
    fn send_arp_request(&mut self, network: NetworkId, target: Ipv4Addr) {
        let Some(net) = self.model.network(network) else { return };
        let (mac, address, vlan, port) = (net.mac, net.address, net.vlan, net.port);
        let Some(mut buf) = self.io.alloc() else {
            self.counters.drop(DropReason::NoBuffer);
            return;
        };
        if craft::arp_request(&mut buf, mac, address, vlan, target) {
            self.counters.event(Event::ArpRequests);
            self.send(port, buf);
        }
    }

    /// Picks up a newly published model: new NAT IPs, and flows whose endpoint is no longer
    /// approved are torn down (TCP: a RST to both sides).
    fn refresh_model(&mut self) {
        let current = self.shared_model.load();
        if Arc::ptr_eq(&current, &self.model) {
            return;
        }
        drop(current);
        self.model = self.shared_model.load_full();
        self.counters.event(Event::Snapshots);
        self.adopt_nat_ips();
        self.revalidate();
    }

    #[cold]
    fn adopt_nat_ips(&mut self) {
        let model = self.model.clone();
        for service in &model.services {
            for &ip in &service.nat_ips {
                if !self.ports.has_nat_ip(ip) {
                    self.ports.add_nat_ip(ip);
                }
            }
        }
    }

    #[cold]
    fn revalidate(&mut self) {
        let model = self.model.clone();
        let revoked: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, e)| e.state == EntryState::Live)
            .filter(|(_, e)| {
                !matches!(model.endpoint_by_link_id(e.value.link_id), Some((_, ep)) if ep.state == ConnectionState::Approved)
            })
            .map(|(id, _)| id)
            .collect();
        for id in revoked {
            self.revoke(id);
        }
    }

    #[cold]
    fn revoke(&mut self, id: FlowId) {
        self.reset_flow(id, Event::FlowsRevoked);
    }

    /// Ends a flow now, resetting an open TCP connection both ways, and counts `event`.
    #[cold]
    fn reset_flow(&mut self, id: FlowId, event: Event) {
        let Some(entry) = self.flows.get(id) else { return };
        let flow = &entry.value;
        let open_tcp = flow.tcp.is_some_and(|tcp| !tcp.is_closed());
        let [to_service, to_consumer] = flow.rewrite;
        let [seq_to_service, seq_to_consumer] = flow.next_seq;
        // Towards the server, client sequence numbers are shifted by the PROXY header once sent.
        let server_seq = match flow.pp {
            Some(map) => seq_to_service.wrapping_add(map.shift(seq_to_service, true)),
            None => seq_to_service,
        };
        let until = self.now + flow.cooldown;
        if open_tcp {
            self.send_reset(&to_consumer, seq_to_consumer, seq_to_service);
            self.send_reset(&to_service, server_seq, seq_to_consumer);
        }
        self.flows.cool(id, until);
        self.counters.event(event);
    }

    /// Sends a RST|ACK along `rewrite` (its source and destination) with `seq` and `ack`.
    #[cold]
    fn send_reset(&mut self, rewrite: &Rewrite, seq: u32, ack: u32) {
        let Some(mac) = self.neighbors.mac(rewrite.neighbor) else { return };
        let Some(mut buf) = self.io.alloc() else { return };
        let reset = ResetTo {
            src: (*rewrite.src.ip(), rewrite.src.port()),
            dst: (*rewrite.dst.ip(), rewrite.dst.port()),
            seq,
            ack: Some(ack),
        };
        if buf.set_len(0) {
            if let Some(l2) = craft::write_l2(&mut buf, 0, mac, rewrite.src_mac, rewrite.vlan, EtherType::Ipv4) {
                if craft::tcp_reset(&mut buf, l2, &reset) {
                    self.counters.event(Event::Generated);
                    self.send(rewrite.port, buf);
                }
            }
        }
    }

    /// Runs the expiry sweep over the whole table now (tests, and before reading exact totals).
    pub fn sweep_all(&mut self) {
        self.now = self.clock.now();
        self.sweep(self.flows.capacity());
    }

    /// Flow expiry and neighbour retries.
    fn timers(&mut self) {
        // Credit the sweep for the time since the last poll: capacity slots per sweep period.
        let elapsed = self.now.saturating_duration_since(self.last_sweep);
        self.last_sweep = self.now;
        let period = self.config.sweep_period.as_nanos().max(1);
        let capacity = self.flows.capacity() as u128;
        let earned = (elapsed.as_nanos().saturating_mul(capacity) << 16) / period;
        let full_pass = u64::try_from(capacity << 16).unwrap_or(u64::MAX);
        self.sweep_credit = u64::try_from(u128::from(self.sweep_credit) + earned).unwrap_or(u64::MAX).min(full_pass);
        let slots = usize::try_from(self.sweep_credit >> 16).unwrap_or(usize::MAX);
        if slots > 0 {
            self.sweep_credit -= (slots as u64) << 16;
            self.sweep(slots);
        }
        if !self.pp_timers.is_empty() {
            self.proxy_timers();
        }
        if self.telemetry.is_some() {
            self.report_step();
        }
        self.service_neighbors();
    }

    /// Examines `slots` flow slots for expiry.
    fn sweep(&mut self, slots: usize) {
        let now = self.now;
        let ports = &mut self.ports;
        let ended = &mut self.ended;
        let keep_totals = self.telemetry.is_some();
        let (mut expired, mut freed) = (0, 0);
        self.flows.sweep(
            now,
            slots,
            |_, entry| {
                expired += 1;
                SweepAction::Cool { until: now + entry.value.cooldown }
            },
            |_, entry| {
                freed += 1;
                ports.release(*entry.value.nat.ip(), entry.value.nat.port());
                if keep_totals {
                    let totals = ended.entry(entry.value.link_id).or_default();
                    for d in 0..2 {
                        totals.packets[d] += entry.value.packets[d];
                        totals.bytes[d] += entry.value.bytes[d];
                    }
                }
            },
        );
        self.counters.events[Event::FlowsExpired as usize] += expired;
        self.counters.events[Event::FlowsFreed as usize] += freed;
    }

    /// Releases frames whose neighbour resolved, retries ARP, gives up after three tries.
    fn service_neighbors(&mut self) {
        let now = self.now;
        if self.neighbors.waiting() == 0 {
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        let mut requests = std::mem::take(&mut self.requests);
        let mut failed = 0u64;
        self.neighbors.service(
            now,
            |w: Waiting<I::Buf>, mac| {
                let mut buf = w.buf;
                if let Some(d) = buf.data_mut().get_mut(..6) {
                    d.copy_from_slice(&mac.0);
                }
                ready.push((w.port, buf));
            },
            |_| failed += 1,
            &mut requests,
        );
        self.counters.drops[DropReason::NeighborUnresolved as usize] += failed;
        for (port, buf) in ready.drain(..) {
            self.counters.event(Event::Forwarded);
            self.send(port, buf);
        }
        for (network, ip) in requests.drain(..) {
            self.send_arp_request(network, ip);
        }
        self.ready = ready;
        self.requests = requests;
    }
}

impl<I: PacketIo, P: Policy, C: Clock> Worker<I, P, C> {
    /// Advances the report pass by a budget of slots; publishes at the end of a pass.
    #[cold]
    fn report_step(&mut self) {
        let start = match self.report_cursor {
            Some(c) => c,
            None if self.now >= self.next_report => {
                self.next_report = self.now + self.config.report_interval;
                self.report.links.clear();
                self.report.sample.clear();
                self.report.active_flows = 0;
                self.report.cooling_flows = 0;
                self.nat_holders.clear();
                0
            }
            None => return,
        };
        let end = (start + self.config.report_budget.max(1)).min(self.flows.capacity());
        for slot in start..end {
            let Some(entry) = self.flows.get(FlowId(u32::try_from(slot).unwrap_or(u32::MAX))) else { continue };
            let flow = &entry.value;
            if entry.state == EntryState::Live {
                self.report.active_flows += 1;
            } else {
                self.report.cooling_flows += 1;
            }
            *self.nat_holders.entry(*flow.nat.ip()).or_default() += 1;
            let link = self.report.links.entry(flow.link_id).or_default();
            for d in 0..2 {
                link.packets[d] += flow.packets[d];
                link.bytes[d] += flow.bytes[d];
            }
            if entry.state == EntryState::Live {
                link.active_flows += 1;
            }
            if self.report.sample.len() < SAMPLE_LIMIT {
                self.report.sample.push(FlowSample {
                    worker: self.config.id,
                    protocol: flow.protocol,
                    consumer: flow.rewrite[1].dst,
                    endpoint: flow.rewrite[1].src,
                    nat: flow.nat,
                    backend: flow.backend,
                    link_id: flow.link_id,
                    state: telemetry::state_name(flow.protocol, entry.state, flow.tcp.map(|t| t.state)),
                    packets: flow.packets,
                    bytes: flow.bytes,
                });
            }
        }
        if end < self.flows.capacity() {
            self.report_cursor = Some(end);
            return;
        }
        self.report_cursor = None;
        for (id, totals) in &self.ended {
            self.report.links.entry(*id).or_default().add(totals);
        }
        self.report.nat_ips.clear();
        for ip in self.ports.nat_ips().collect::<Vec<_>>() {
            if let Some((used, capacity)) = self.ports.usage(ip) {
                let holders = self.nat_holders.get(&ip).copied().unwrap_or(0);
                self.report.nat_ips.insert(ip, (used, capacity, holders));
            }
        }
        self.report.passes += 1;
        let passes = self.report.passes;
        if let Some(t) = &self.telemetry {
            if t.publish(self.config.id, &mut self.report) {
                // `report` now holds the previous one; keep counting passes from ours.
                self.report.passes = passes;
            }
        }
    }
}

fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, ICMP_DST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM)
}

/// Fills in the checksum deltas of `rewrite` for packets arriving with `old_src` → `old_dst`.
fn with_deltas(mut rewrite: Rewrite, old_src: SocketAddrV4, old_dst: SocketAddrV4, protocol: Protocol) -> Rewrite {
    let addresses =
        Delta::ZERO.replace_addr(*old_src.ip(), *rewrite.src.ip()).replace_addr(*old_dst.ip(), *rewrite.dst.ip());
    // TTL is the high byte of the (TTL, protocol) word: decrementing it subtracts 0x0100.
    rewrite.ip_delta = addresses.replace16(0x0100, 0x0000);
    rewrite.l4_delta = match protocol {
        Protocol::Tcp | Protocol::Udp => {
            addresses.replace16(old_src.port(), rewrite.src.port()).replace16(old_dst.port(), rewrite.dst.port())
        }
        Protocol::Icmp => Delta::ZERO.replace16(old_src.port(), rewrite.src.port()),
    };
    rewrite
}

/// Applies a flow's rewrite to the IPv4 packet at `p.l3` (TTL already checked > 1).
#[inline]
fn apply_rewrite(data: &mut [u8], p: &Parsed, rewrite: &Rewrite) {
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[p.l3..]);
        ip.set_src_addr(*rewrite.src.ip());
        ip.set_dst_addr(*rewrite.dst.ip());
        ip.set_hop_limit(p.ttl - 1);
        let sum = rewrite.ip_delta.apply(ip.checksum());
        ip.set_checksum(sum);
    }
    let segment = &mut data[p.l4..p.l4_end];
    match p.protocol {
        Protocol::Tcp => {
            let mut tcp = TcpPacket::new_unchecked(segment);
            tcp.set_src_port(rewrite.src.port());
            tcp.set_dst_port(rewrite.dst.port());
            let sum = rewrite.l4_delta.apply(tcp.checksum());
            tcp.set_checksum(sum);
        }
        Protocol::Udp => {
            let mut udp = UdpPacket::new_unchecked(segment);
            udp.set_src_port(rewrite.src.port());
            udp.set_dst_port(rewrite.dst.port());
            let old = udp.checksum();
            if old != 0 {
                udp.set_checksum(checksum::udp_nonzero(rewrite.l4_delta.apply(old)));
            }
        }
        Protocol::Icmp => {
            let mut icmp = Icmpv4Packet::new_unchecked(segment);
            icmp.set_echo_ident(rewrite.src.port());
            let sum = rewrite.l4_delta.apply(icmp.checksum());
            icmp.set_checksum(sum);
        }
    }
}

/// Checks the L4 checksum of a new flow's first packet.
fn verify_l4(data: &[u8], p: &Parsed) -> bool {
    let segment = &data[p.l4..p.l4_end];
    match p.protocol {
        Protocol::Tcp => TcpPacket::new_unchecked(segment).verify_checksum_v4(p.src, p.dst),
        Protocol::Udp => {
            let udp = UdpPacket::new_unchecked(segment);
            usize::from(udp.len()) <= segment.len()
                && UdpPacket::new_unchecked(&segment[..usize::from(udp.len())]).verify_checksum_v4(p.src, p.dst)
        }
        Protocol::Icmp => verify_icmp(segment),
    }
}

fn verify_icmp(segment: &[u8]) -> bool {
    checksum::fold(checksum::sum(segment)) == 0xffff
}

/// The packet an ICMP error quotes: IPv4 header plus at least 8 bytes.
#[derive(Clone, Copy, Debug)]
struct QuotedPacket {
    /// Offset of the quoted IPv4 header within the ICMP message.
    ip: usize,
    /// Offset of the quoted L4 header within the ICMP message.
    l4: usize,
    /// Bytes of L4 header quoted.
    l4_len: usize,
    protocol: Protocol,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    nested: bool,
}

impl QuotedPacket {
    fn parse(icmp: &[u8]) -> Option<QuotedPacket> {
        let quoted = icmp.get(8..)?;
        if quoted.len() < 20 || quoted[0] >> 4 != 4 {
            return None;
        }
        let header_len = usize::from(quoted[0] & 0x0f) * 4;
        if header_len < 20 || quoted.len() < header_len + 8 {
            return None;
        }
        let src = Ipv4Addr::new(quoted[12], quoted[13], quoted[14], quoted[15]);
        let dst = Ipv4Addr::new(quoted[16], quoted[17], quoted[18], quoted[19]);
        let l4 = &quoted[header_len..];
        let word = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
        let (protocol, sport, dport, nested) = match quoted[9] {
            6 => (Protocol::Tcp, word(0), word(2), false),
            17 => (Protocol::Udp, word(0), word(2), false),
            1 => match l4[0] {
                ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => (Protocol::Icmp, word(4), word(4), false),
                t if is_icmp_error(t) => (Protocol::Icmp, 0, 0, true),
                _ => return None,
            },
            _ => return None,
        };
        Some(QuotedPacket {
            ip: 8,
            l4: 8 + header_len,
            l4_len: quoted.len() - header_len,
            protocol,
            src,
            dst,
            sport,
            dport,
            nested,
        })
    }
}

/// Rewrites an ICMP error so that it travels along `out`: the outer addresses become `out`'s,
/// the quoted packet is restored to what the error's receiver sent (`out.dst` → `out.src`),
/// and every checksum is fixed.
fn translate_icmp_error(data: &mut [u8], p: &Parsed, quoted: &QuotedPacket, out: &Rewrite, undo: Delta) {
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[p.l3..]);
        ip.set_src_addr(*out.src.ip());
        ip.set_dst_addr(*out.dst.ip());
        ip.set_hop_limit(p.ttl - 1);
        ip.fill_checksum();
    }
    let icmp = &mut data[p.l4..p.l4_end];
    {
        let inner = &mut icmp[quoted.ip..];
        inner[12..16].copy_from_slice(&out.dst.ip().octets());
        inner[16..20].copy_from_slice(&out.src.ip().octets());
        let header_len = quoted.l4 - quoted.ip;
        inner[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::data(&inner[..header_len]);
        inner[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    {
        let l4 = &mut icmp[quoted.l4..];
        match quoted.protocol {
            Protocol::Tcp | Protocol::Udp => {
                l4[0..2].copy_from_slice(&out.dst.port().to_be_bytes());
                l4[2..4].copy_from_slice(&out.src.port().to_be_bytes());
                let at = if quoted.protocol == Protocol::Tcp { 16 } else { 6 };
                if quoted.l4_len >= at + 2 {
                    let old = u16::from_be_bytes([l4[at], l4[at + 1]]);
                    if quoted.protocol == Protocol::Tcp || old != 0 {
                        let mut new = undo.apply(old);
                        if quoted.protocol == Protocol::Udp {
                            new = checksum::udp_nonzero(new);
                        }
                        l4[at..at + 2].copy_from_slice(&new.to_be_bytes());
                    }
                }
            }
            Protocol::Icmp => {
                l4[4..6].copy_from_slice(&out.dst.port().to_be_bytes());
                let old = u16::from_be_bytes([l4[2], l4[3]]);
                let new = undo.apply(old);
                l4[2..4].copy_from_slice(&new.to_be_bytes());
            }
        }
    }
    icmp[2..4].copy_from_slice(&[0, 0]);
    let sum = checksum::data(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// Drops the data of a SYN (TCP Fast Open) on a PROXY flow and turns its Fast Open option into
/// NOPs; the client sends that data again after the handshake, at `C`.
fn strip_syn_data<B: PacketBuf>(buf: &mut B, p: &Parsed, rewrite: &Rewrite) -> Result<(), DropReason> {
    let (src, dst) = (*rewrite.src.ip(), *rewrite.dst.ip());
    let data = buf.data_mut();
    let has_option = proxy::options_need_scan(&data[p.l4..p.l4_end]) && proxy::has_fast_open(&data[p.l4..p.l4_end]);
    if !has_option && p.payload_len == 0 {
        return Ok(());
    }
    // Checked as received, then rebuilt: a corrupted SYN is never "repaired".
    if !TcpPacket::new_unchecked(&data[p.l4..p.l4_end]).verify_checksum_v4(src, dst) {
        return Err(DropReason::L4BadChecksum);
    }
    proxy::strip_fast_open(&mut data[p.l4..p.l4_end]);
    let header_end = p.l4_end - p.payload_len;
    let total = u16::try_from(header_end - p.l3).map_err(|_| DropReason::L4Malformed)?;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[p.l3..]);
        ip.set_total_len(total);
        ip.fill_checksum();
    }
    TcpPacket::new_unchecked(&mut data[p.l4..header_end]).fill_checksum_v4(src, dst);
    if !buf.set_len(header_end) {
        return Err(DropReason::NoBuffer);
    }
    Ok(())
}

/// Puts `header` in front of the segment's data (the segment starts at `C`), or makes it the
/// data of a pure ACK, and sets PSH. When header and data do not fit the egress MTU, the rest of
/// the data goes into a second segment, returned for sending after this one. The segment's
/// checksum is verified first and recomputed after: a corrupted segment is never "repaired".
fn insert_header<B: PacketBuf, I: PacketIo<Buf = B>>(
    buf: &mut B,
    p: &Parsed,
    rewrite: &Rewrite,
    header: &[u8],
    mtu: u16,
    io: &mut I,
) -> Result<Option<B>, DropReason> {
    let (src, dst) = (*rewrite.src.ip(), *rewrite.dst.ip());
    let l = header.len();
    if p.l4_end - p.l3 > usize::from(mtu) {
        return Err(DropReason::ProxyOversize);
    }
    if !TcpPacket::new_unchecked(&buf.data()[p.l4..p.l4_end]).verify_checksum_v4(src, dst) {
        return Err(DropReason::L4BadChecksum);
    }
    let thl = proxy::header_len(&buf.data()[p.l4..p.l4_end]);
    let data_at = p.l4 + thl;
    let max_seg = usize::from(mtu).saturating_sub(data_at - p.l3);
    if max_seg <= l {
        return Err(DropReason::ProxyOversize);
    }
    let flags = p.tcp_flags;
    let mut first = p.payload_len;
    let mut second = None;
    if l + p.payload_len > max_seg {
        // Split: the header and as much data as fits, then the rest with the original PSH/FIN.
        first = max_seg - l;
        let Some(mut rest) = io.alloc() else { return Err(DropReason::NoBuffer) };
        let rest_len = p.payload_len - first;
        if !rest.set_len(data_at + rest_len) {
            return Err(DropReason::NoBuffer);
        }
        let data = buf.data();
        let out = rest.data_mut();
        out[..data_at].copy_from_slice(&data[..data_at]);
        out[data_at..].copy_from_slice(&data[data_at + first..p.l4_end]);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut out[p.l3..]);
            ip.set_total_len(u16::try_from(data_at + rest_len - p.l3).map_err(|_| DropReason::L4Malformed)?);
            ip.set_ident(ip.ident().wrapping_add(1));
            ip.fill_checksum();
        }
        let mut tcp = TcpPacket::new_unchecked(&mut out[p.l4..]);
        tcp.set_seq_number(SeqNumber(p.seq.wrapping_add(u32::try_from(max_seg).unwrap_or(0))));
        tcp.fill_checksum_v4(src, dst);
        second = Some(rest);
    }
    let end = data_at + l + first;
    if !buf.set_len(end.max(p.l4_end)) {
        return Err(DropReason::NoBuffer);
    }
    let data = buf.data_mut();
    data.copy_within(data_at..data_at + first, data_at + l);
    data[data_at..data_at + l].copy_from_slice(header);
    let total = u16::try_from(end - p.l3).map_err(|_| DropReason::L4Malformed)?;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut data[p.l3..]);
        ip.set_total_len(total);
        ip.fill_checksum();
    }
    {
        let mut tcp = TcpPacket::new_unchecked(&mut data[p.l4..end]);
        let flags = if second.is_some() {
            flags.with(TcpFlags::FIN, false).with(TcpFlags::PSH, false)
        } else {
            flags.with(TcpFlags::PSH, true)
        };
        tcp.set_flags(flags);
        tcp.fill_checksum_v4(src, dst);
    }
    if !buf.set_len(end) {
        return Err(DropReason::NoBuffer);
    }
    Ok(second)
}
