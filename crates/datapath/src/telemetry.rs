//! What a worker tells the control plane about its flows, between bursts.
//!
//! A worker walks its flow table a budget of slots per poll (like the expiry sweep) and, at the
//! end of each full pass, publishes a [`WorkerReport`]: active flows, per-endpoint packet and byte
//! totals (live flows plus those already ended), NAT port usage per NAT IP, and a bounded sample of
//! flows for the API. Publishing takes a lock the control plane holds only to copy the report, and
//! the worker never waits for it (`try_lock`): a busy lock only delays a report.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use flow::{EntryState, Protocol, TcpState};

/// Flows sampled per worker per report.
pub const SAMPLE_LIMIT: usize = 1024;

/// Totals for one endpoint (by link id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets `[to service, to consumer]`.
    pub packets: [u64; 2],
    /// Bytes `[to service, to consumer]`.
    pub bytes: [u64; 2],
    /// Live flows now.
    pub active_flows: u64,
    /// Flows created since start.
    pub flows_created: u64,
}

impl LinkStats {
    /// Adds `other` to these totals.
    pub fn add(&mut self, other: &LinkStats) {
        for d in 0..2 {
            self.packets[d] += other.packets[d];
            self.bytes[d] += other.bytes[d];
        }
        self.active_flows += other.active_flows;
        self.flows_created += other.flows_created;
    }
}

/// One flow as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSample {
    /// The worker that owns it.
    pub worker: usize,
    /// TCP, UDP or ICMP.
    pub protocol: Protocol,
    /// The consumer's `ip:port`.
    pub consumer: SocketAddrV4,
    /// The endpoint `ip:port`.
    pub endpoint: SocketAddrV4,
    /// The NAT `ip:port`.
    pub nat: SocketAddrV4,
    /// The backend `ip:port`.
    pub backend: SocketAddrV4,
    /// The endpoint's link id.
    pub link_id: u32,
    /// `established`, `syn_sent`, ..., `udp`, `icmp`, or `cooling`.
    pub state: &'static str,
    /// Packets `[to service, to consumer]`.
    pub packets: [u64; 2],
    /// Bytes `[to service, to consumer]`.
    pub bytes: [u64; 2],
}

/// One worker's report.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    /// Completed passes so far (0: nothing reported yet).
    pub passes: u64,
    /// Live flows.
    pub active_flows: u64,
    /// Flows cooling down (holding a NAT port).
    pub cooling_flows: u64,
    /// Per endpoint, by link id.
    pub links: HashMap<u32, LinkStats>,
    /// Per NAT IP: (ports in use, ports in this worker's slice, flows holding it).
    pub nat_ips: HashMap<Ipv4Addr, (u32, u32, u64)>,
    /// A bounded sample of flows.
    pub sample: Vec<FlowSample>,
}

/// The reports of every worker.
#[derive(Debug)]
pub struct Telemetry {
    reports: Vec<Mutex<WorkerReport>>,
}

impl Telemetry {
    /// Room for `workers` reports.
    pub fn new(workers: usize) -> Arc<Telemetry> {
        Arc::new(Telemetry { reports: (0..workers).map(|_| Mutex::new(WorkerReport::default())).collect() })
    }

    /// Publishes worker `worker`'s report unless the lock is busy; returns whether it did.
    pub fn publish(&self, worker: usize, report: &mut WorkerReport) -> bool {
        let Some(slot) = self.reports.get(worker) else { return false };
        match slot.try_lock() {
            Ok(mut guard) => {
                std::mem::swap(&mut *guard, report);
                true
            }
            Err(_) => false,
        }
    }

    /// Copies of every worker's last report.
    pub fn reports(&self) -> Vec<WorkerReport> {
        self.reports.iter().map(|m| m.lock().map(|g| g.clone()).unwrap_or_default()).collect()
    }

    /// Flows holding `ip` across all workers (live and cooling), from the last reports.
    pub fn flows_holding(&self, ip: Ipv4Addr) -> u64 {
        self.reports().iter().filter_map(|r| r.nat_ips.get(&ip)).map(|&(_, _, flows)| flows).sum()
    }

    /// Per-endpoint totals summed over workers.
    pub fn links(&self) -> HashMap<u32, LinkStats> {
        let mut out: HashMap<u32, LinkStats> = HashMap::new();
        for r in self.reports() {
            for (id, s) in r.links {
                out.entry(id).or_default().add(&s);
            }
        }
        out
    }
}

/// The name of a flow's state for samples.
pub fn state_name(protocol: Protocol, entry: EntryState, tcp: Option<TcpState>) -> &'static str {
    if entry == EntryState::Cooling {
        return "cooling";
    }
    match (protocol, tcp) {
        (Protocol::Tcp, Some(TcpState::SynSent)) => "syn_sent",
        (Protocol::Tcp, Some(TcpState::SynReceived)) => "syn_received",
        (Protocol::Tcp, Some(TcpState::Established)) => "established",
        (Protocol::Tcp, Some(TcpState::FinWait { .. })) => "fin_wait",
        (Protocol::Tcp, Some(TcpState::TimeWait)) => "time_wait",
        (Protocol::Tcp, Some(TcpState::Closed)) => "closed",
        (Protocol::Tcp, None) => "tcp",
        (Protocol::Udp, _) => "udp",
        (Protocol::Icmp, _) => "icmp",
    }
}
