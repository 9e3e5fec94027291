//! Worker counters: every received packet ends in exactly one outcome, and every drop has a
//! named reason with its own counter.
//!
//! Counting is a plain `u64` increment in the worker; the totals are published to atomics
//! ([`SharedCounters`]) between bursts so the control plane can read them without locks.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[doc = $doc:literal])* $variant:ident = $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum $name { $($(#[doc = $doc])* $variant,)* }

        impl $name {
            /// Every value, in counter order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// How many values there are.
            pub const COUNT: usize = $name::ALL.len();
            /// The snake_case name used in metrics and statistics.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }
    };
}

named_enum! {
    /// Why a packet was dropped. Each packet that is not forwarded or answered is counted under
    /// exactly one of these.
    DropReason {
        /// Shorter than an Ethernet header (or a VLAN tag).
        FrameTooShort = "frame_too_short",
        /// Addressed to another unicast MAC address.
        OtherDestinationMac = "other_destination_mac",
        /// No network is configured on this port and VLAN.
        UnknownNetwork = "unknown_network",
        /// Neither IPv4 nor ARP (QinQ, LLDP, ...).
        UnsupportedEtherType = "unsupported_ethertype",
        /// IPv6 is parsed but not translated yet.
        Ipv6Unsupported = "ipv6_unsupported",
        /// A malformed ARP packet or one for another hardware/protocol type.
        ArpMalformed = "arp_malformed",
        /// An ARP packet the gateway has no business with (another host's address).
        ArpNotForUs = "arp_not_for_us",
        /// Bad IPv4 version, header length or total length.
        Ipv4Malformed = "ipv4_malformed",
        /// IPv4 header checksum mismatch.
        Ipv4BadChecksum = "ipv4_bad_checksum",
        /// IPv4 fragments are not translated.
        Ipv4Fragment = "ipv4_fragment",
        /// Addressed to no endpoint, NAT IP or gateway address of the network.
        NotForUs = "not_for_us",
        /// Addressed to the gateway itself and not ARP or ICMP echo.
        ToGateway = "to_gateway",
        /// TTL would reach zero; a time-exceeded error is sent back.
        TtlExpired = "ttl_expired",
        /// TCP, UDP or ICMP header shorter or longer than its packet allows.
        L4Malformed = "l4_malformed",
        /// TCP/UDP/ICMP checksum mismatch (checked before any state is created).
        L4BadChecksum = "l4_bad_checksum",
        /// An IP protocol other than TCP, UDP and ICMP to an endpoint.
        UnsupportedProtocol = "unsupported_protocol",
        /// An ICMP message type that is neither echo nor a translatable error.
        IcmpUnsupported = "icmp_unsupported",
        /// A destination port the endpoint does not expose.
        PortNotExposed = "port_not_exposed",
        /// The endpoint is pending, rejected or disconnected.
        EndpointNotApproved = "endpoint_not_approved",
        /// The policy chain denied the new flow.
        PolicyDenied = "policy_denied",
        /// The policy chain reset the new flow (a RST was sent).
        PolicyReset = "policy_reset",
        /// A TCP segment other than SYN without a flow (a RST was sent unless it was a RST).
        TcpNoFlow = "tcp_no_flow",
        /// The flow table is full; the new flow is refused.
        FlowTableFull = "flow_table_full",
        /// Every NAT port of the service's NAT IPs is in use towards that backend.
        NatPortsExhausted = "nat_ports_exhausted",
        /// Provider-side traffic to a NAT IP that matches no flow: no state, no answer.
        Unsolicited = "unsolicited",
        /// A packet for a flow that has closed and is cooling down.
        FlowClosed = "flow_closed",
        /// An ICMP error whose quoted packet does not parse.
        IcmpErrorMalformed = "icmp_error_malformed",
        /// An ICMP error about no known flow.
        IcmpErrorNoFlow = "icmp_error_no_flow",
        /// An ICMP error about an ICMP error.
        IcmpErrorNested = "icmp_error_nested",
        /// The owning worker's hand-off queue is full.
        HandoffQueueFull = "handoff_queue_full",
        /// Too many packets are already waiting for address resolution.
        NeighborQueueFull = "neighbor_queue_full",
        /// The next hop did not answer ARP.
        NeighborUnresolved = "neighbor_unresolved",
        /// The destination is off-link and the network has no next-hop router.
        NoRoute = "no_route",
        /// No buffer or headroom to build the outgoing frame.
        NoBuffer = "no_buffer",
        /// The flow's endpoint was revoked or deleted.
        FlowRevoked = "flow_revoked",
        /// A segment that must carry the PROXY header is larger than the egress MTU allows (a
        /// GRO/LRO super-frame): never spliced into, the client's retransmission gets the header.
        ProxyOversize = "pp_oversize",
        /// A TCP segment other than SYN without a flow, to a PROXY v2 service: a flow cannot
        /// start mid-stream, its header position is unknown (a RST was sent unless it was a RST).
        ProxyMidstream = "pp_midstream",
        /// The PROXY header with the policy's TLVs would exceed the service's budget: refused.
        ProxyHeaderTooLong = "pp_header_too_long",
    }
}

named_enum! {
    /// Event counters (outcomes other than drops, and flow life-cycle events).
    Event {
        /// Frames received from the I/O backend.
        Received = "rx",
        /// Frames translated and sent.
        Forwarded = "forwarded",
        /// Frames addressed to the gateway and handled by it (ARP, ICMP echo).
        Local = "local",
        /// Frames the gateway originated (ARP requests, RSTs, ICMP errors).
        Generated = "generated",
        /// Generated frames suppressed by the rate limit.
        GeneratedRateLimited = "generated_rate_limited",
        /// Frames handed to the worker that owns their flow.
        HandoffOut = "handoff_out",
        /// Frames received from another worker.
        HandoffIn = "handoff_in",
        /// Flows created.
        FlowsCreated = "flows_created",
        /// Flows that timed out.
        FlowsExpired = "flows_expired",
        /// Flows torn down because their endpoint was revoked.
        FlowsRevoked = "flows_revoked",
        /// Flows whose cool-down ended and whose slot was freed.
        FlowsFreed = "flows_freed",
        /// Frames queued waiting for ARP.
        NeighborQueued = "neighbor_queued",
        /// ARP requests sent.
        ArpRequests = "arp_requests",
        /// ICMP errors translated back to a consumer.
        IcmpErrorsTranslated = "icmp_errors_translated",
        /// Model snapshots picked up.
        Snapshots = "snapshots",
        /// PROXY v2 headers put on a client segment for the first time.
        ProxyHeadersInserted = "pp_hdr_inserted",
        /// PROXY v2 headers put again on a client segment starting at the header's place (the
        /// client's retransmissions).
        ProxyHeadersReprepended = "pp_hdr_reprepended",
        /// Client handshake ACKs turned into the header segment (OnHandshakeAck).
        ProxyAcksConverted = "pp_hdr_converted_ack",
        /// Header segments the gateway retransmitted on its own timer.
        ProxyTimerRetransmits = "pp_hdr_timer_tx",
        /// Connections reset because the server never acknowledged the header.
        ProxyGiveups = "pp_hdr_giveup",
        /// Client segments split because header and data did not fit one segment.
        ProxySplits = "pp_split",
        /// Server ACKs inside the header clamped to its start.
        ProxyAcksClamped = "pp_ack_clamped",
        /// SACK blocks that mapped to nothing (they covered only the header) and were removed.
        ProxySackBlocksRemoved = "pp_sack_block_removed",
        /// SYN-ACK MSS options lowered by the header length.
        ProxyMssClamped = "pp_mss_clamped",
        /// Connections from probe sources given a LOCAL header.
        ProxyLocalHeaders = "pp_local_headers",
    }
}

/// A worker's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Events, indexed by `Event as usize`.
    pub events: [u64; Event::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters { drops: [0; DropReason::COUNT], events: [0; Event::COUNT] }
    }
}

impl Counters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Counts one event.
    #[inline]
    pub fn event(&mut self, event: Event) {
        self.events[event as usize] += 1;
    }

    /// The count of one drop reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// The count of one event.
    pub fn get(&self, event: Event) -> u64 {
        self.events[event as usize]
    }

    /// All drops together.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters to these.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.events.iter_mut().zip(other.events.iter()) {
            *a += b;
        }
    }
}

/// Counters published by a worker for readers on other threads.
#[derive(Debug)]
pub struct SharedCounters {
    drops: [AtomicU64; DropReason::COUNT],
    events: [AtomicU64; Event::COUNT],
    /// Per port: the backend's counters (rx, rx bytes, rx dropped, tx, tx bytes, tx dropped).
    ports: Vec<[AtomicU64; 6]>,
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters::with_ports(0)
    }
}

impl SharedCounters {
    /// Counters with room for `ports` ports' backend statistics.
    pub fn with_ports(ports: usize) -> Self {
        SharedCounters {
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            ports: (0..ports).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
        }
    }

    /// Publishes the backend's counters of port `port`.
    pub fn publish_port(&self, port: usize, stats: &io::PortStats) {
        if let Some(p) = self.ports.get(port) {
            let values = [
                stats.rx_packets,
                stats.rx_bytes,
                stats.rx_dropped,
                stats.tx_packets,
                stats.tx_bytes,
                stats.tx_dropped,
            ];
            for (a, v) in p.iter().zip(values) {
                a.store(v, Ordering::Relaxed);
            }
        }
    }

    /// The last published backend counters, per port.
    pub fn ports(&self) -> Vec<io::PortStats> {
        self.ports
            .iter()
            .map(|p| {
                let v: [u64; 6] = std::array::from_fn(|i| p[i].load(Ordering::Relaxed));
                io::PortStats {
                    rx_packets: v[0],
                    rx_bytes: v[1],
                    rx_dropped: v[2],
                    tx_packets: v[3],
                    tx_bytes: v[4],
                    tx_dropped: v[5],
                }
            })
            .collect()
    }

    /// Publishes `counters` (called by the owning worker between bursts).
    pub fn publish(&self, counters: &Counters) {
        for (a, v) in self.drops.iter().zip(counters.drops.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
        for (a, v) in self.events.iter().zip(counters.events.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }

    /// The last published values.
    pub fn read(&self) -> Counters {
        let mut c = Counters::default();
        for (v, a) in c.drops.iter_mut().zip(self.drops.iter()) {
            *v = a.load(Ordering::Relaxed);
        }
        for (v, a) in c.events.iter_mut().zip(self.events.iter()) {
            *v = a.load(Ordering::Relaxed);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.extend(Event::ALL.iter().map(|e| e.name()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    }

    #[test]
    fn publish_and_read_round_trip() {
        let mut c = Counters::default();
        c.drop(DropReason::Unsolicited);
        c.event(Event::Forwarded);
        c.event(Event::Forwarded);
        let shared = SharedCounters::default();
        shared.publish(&c);
        let r = shared.read();
        assert_eq!(r, c);
        assert_eq!(r.dropped(DropReason::Unsolicited), 1);
        assert_eq!(r.get(Event::Forwarded), 2);
        assert_eq!(r.total_drops(), 1);
    }
}
