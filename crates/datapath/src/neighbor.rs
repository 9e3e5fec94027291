//! The neighbour table: IPv4 → MAC per network, resolved by ARP, with a bounded queue of frames
//! waiting for resolution.
//!
//! Entries are created on the slow path (a flow needs a next hop, or a host ARPs for one of our
//! addresses, RFC 826 "merge") and referenced from flows by slot index, so the fast path reads a
//! MAC with one array access. Any ARP packet whose sender is already in the table refreshes it
//! (gratuitous ARP after a failover is honoured). A frame whose next hop is unresolved waits in a
//! queue bounded in total; requests are retried every second, three times, then the waiting frames
//! are dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use flow::{Instant, NetworkId};
use io::PortId;
use wire::EthernetAddress;

/// Interval between ARP requests for an unresolved neighbour.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// ARP requests sent before an unresolved neighbour is declared failed.
pub const MAX_TRIES: u8 = 3;

/// Index of a neighbour entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NeighborSlot(pub u32);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Not resolved yet: `tries` requests sent, the next one due at `next_try`.
    Incomplete { tries: u8, next_try: Instant },
    /// Resolved.
    Reachable,
}

#[derive(Clone, Copy, Debug)]
struct Neighbor {
    network: NetworkId,
    ip: Ipv4Addr,
    mac: EthernetAddress,
    state: State,
}

/// A frame waiting for its next hop's MAC address; its L2 header is written but for the
/// destination MAC.
#[derive(Debug)]
pub struct Waiting<B> {
    /// The neighbour it waits for.
    pub slot: NeighborSlot,
    /// The port to send it on.
    pub port: PortId,
    /// The frame.
    pub buf: B,
}

/// What the timer pass asks the worker to do.
#[derive(Debug, Default)]
pub struct Due {
    /// Neighbours to send an ARP request for now.
    pub requests: Vec<(NetworkId, Ipv4Addr)>,
}

/// One worker's neighbour table.
#[derive(Debug)]
pub struct Neighbors<B> {
    slots: Vec<Neighbor>,
    capacity: usize,
    index: HashMap<(NetworkId, Ipv4Addr), u32>,
    waiting: VecDeque<Waiting<B>>,
    waiting_limit: usize,
}

impl<B> Neighbors<B> {
    /// A table of at most `capacity` neighbours and `waiting_limit` waiting frames.
    pub fn new(capacity: usize, waiting_limit: usize) -> Self {
        Neighbors {
            slots: Vec::with_capacity(capacity),
            capacity,
            index: HashMap::with_capacity(capacity),
            waiting: VecDeque::with_capacity(waiting_limit),
            waiting_limit,
        }
    }

    /// The entry for `ip` in `network`, created unresolved if absent; `None` when the table is full.
    pub fn slot(&mut self, network: NetworkId, ip: Ipv4Addr) -> Option<NeighborSlot> {
        if let Some(&i) = self.index.get(&(network, ip)) {
            return Some(NeighborSlot(i));
        }
        if self.slots.len() >= self.capacity {
            return None;
        }
        let i = u32::try_from(self.slots.len()).ok()?;
        self.slots.push(Neighbor {
            network,
            ip,
            mac: EthernetAddress::default(),
            state: State::Incomplete { tries: 0, next_try: Instant::default() },
        });
        self.index.insert((network, ip), i);
        Some(NeighborSlot(i))
    }

    /// The resolved MAC address of `slot`.
    #[inline]
    pub fn mac(&self, slot: NeighborSlot) -> Option<EthernetAddress> {
        match self.slots.get(slot.0 as usize) {
            Some(n) if n.state == State::Reachable => Some(n.mac),
            _ => None,
        }
    }

    /// The network and address of `slot`.
    pub fn target(&self, slot: NeighborSlot) -> Option<(NetworkId, Ipv4Addr)> {
        self.slots.get(slot.0 as usize).map(|n| (n.network, n.ip))
    }

    /// Records `ip` → `mac` in `network`. Creates the entry only when `create`; returns true
    /// when an entry was created or changed.
    pub fn learn(&mut self, network: NetworkId, ip: Ipv4Addr, mac: EthernetAddress, create: bool) -> bool {
        let slot = match self.index.get(&(network, ip)) {
            Some(&i) => i,
            None if create => match self.slot(network, ip) {
                Some(s) => s.0,
                None => return false,
            },
            None => return false,
        };
        let n = &mut self.slots[slot as usize];
        let changed = n.state != State::Reachable || n.mac != mac;
        n.mac = mac;
        n.state = State::Reachable;
        changed
    }

    /// Queues a frame until `slot` resolves; gives it back when the queue is full.
    pub fn wait(&mut self, slot: NeighborSlot, port: PortId, buf: B) -> Result<(), B> {
        if self.waiting.len() >= self.waiting_limit {
            return Err(buf);
        }
        self.waiting.push_back(Waiting { slot, port, buf });
        Ok(())
    }

    /// Frames waiting for resolution.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// True when a request for `slot` is due at `now` (and marks it sent).
    pub fn request_due(&mut self, slot: NeighborSlot, now: Instant) -> bool {
        let Some(n) = self.slots.get_mut(slot.0 as usize) else { return false };
        match n.state {
            State::Incomplete { tries, next_try } if next_try <= now => {
                n.state = State::Incomplete { tries: tries.saturating_add(1), next_try: now + RETRY_INTERVAL };
                true
            }
            _ => false,
        }
    }

    /// Moves every waiting frame whose neighbour is now resolved (or has failed) out of the queue:
    /// `ready(frame, mac)` for resolved ones, `failed(frame)` for those given up on. Returns the
    /// requests to send for neighbours still unresolved whose retry time has come.
    pub fn service(
        &mut self,
        now: Instant,
        mut ready: impl FnMut(Waiting<B>, EthernetAddress),
        mut failed: impl FnMut(Waiting<B>),
        requests: &mut Vec<(NetworkId, Ipv4Addr)>,
    ) {
        for _ in 0..self.waiting.len() {
            let Some(w) = self.waiting.pop_front() else { break };
            let Some(n) = self.slots.get_mut(w.slot.0 as usize) else {
                failed(w);
                continue;
            };
            match n.state {
                State::Reachable => ready(w, n.mac),
                State::Incomplete { tries, next_try } if next_try <= now => {
                    if tries >= MAX_TRIES {
                        // Give up on this round; the next frame for it starts a new one.
                        n.state = State::Incomplete { tries: 0, next_try: now };
                        failed(w);
                    } else {
                        n.state = State::Incomplete { tries: tries + 1, next_try: now + RETRY_INTERVAL };
                        requests.push((n.network, n.ip));
                        self.waiting.push_back(w);
                    }
                }
                State::Incomplete { .. } => self.waiting.push_back(w),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetworkId = NetworkId(0);
    const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

    #[test]
    fn resolve_then_release_waiting() {
        let mut n: Neighbors<u32> = Neighbors::new(4, 2);
        let s = n.slot(NET, IP).unwrap();
        assert_eq!(n.mac(s), None);
        assert!(n.request_due(s, Instant::default()));
        assert!(!n.request_due(s, Instant::default()));
        n.wait(s, PortId(1), 7).unwrap();
        n.wait(s, PortId(1), 8).unwrap();
        assert_eq!(n.wait(s, PortId(1), 9), Err(9));
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        assert!(n.learn(NET, IP, mac, false));
        let mut out = Vec::new();
        let mut reqs = Vec::new();
        n.service(Instant::default(), |w, m| out.push((w.buf, m)), |_| panic!(), &mut reqs);
        assert_eq!(out, vec![(7, mac), (8, mac)]);
        assert!(reqs.is_empty());
        assert_eq!(n.mac(s), Some(mac));
    }

    #[test]
    fn unanswered_requests_fail_after_three_tries() {
        let mut n: Neighbors<u32> = Neighbors::new(4, 4);
        let s = n.slot(NET, IP).unwrap();
        let mut now = Instant::default();
        assert!(n.request_due(s, now));
        n.wait(s, PortId(0), 1).unwrap();
        let mut failed = Vec::new();
        let mut reqs = Vec::new();
        for _ in 0..3 {
            now += RETRY_INTERVAL;
            n.service(now, |_, _| panic!(), |w| failed.push(w.buf), &mut reqs);
        }
        assert_eq!(reqs.len(), 2);
        assert_eq!(failed, vec![1]);
        assert_eq!(n.waiting(), 0);
    }

    #[test]
    fn learn_without_create_ignores_strangers_and_table_is_bounded() {
        let mut n: Neighbors<u32> = Neighbors::new(1, 1);
        assert!(!n.learn(NET, IP, EthernetAddress([2; 6]), false));
        assert!(n.learn(NET, IP, EthernetAddress([2; 6]), true));
        assert!(n.slot(NET, Ipv4Addr::new(198, 18, 0, 11)).is_none());
    }
}
