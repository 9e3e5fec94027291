//! The NAT port allocator for one worker's slice of every NAT IP.
//!
//! The port range of a NAT IP is split into `workers` contiguous slices and worker `w` only
//! allocates from slice `w`, so the worker owning a flow is computable from its NAT port
//! ([`owner_of_port`]) and return traffic needs no shared state.
//!
//! Allocation is randomized (RFC 6056 spirit): each call starts at a random offset in the slice
//! and probes with a random stride coprime with the slice size, so it visits every port exactly
//! once before giving up, and successive results are not sequential. Whether a port may be used
//! is the caller's question (`is_free`): "is `(backend, nat ip:port)` live or cooling in my flow
//! table?". A port is therefore shared between flows towards *different* backends, but never
//! reused towards the same backend while live or cooling. Use counts per port are kept here for
//! metrics ([`PortAllocator::usage`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// The canonical empty range.
#[allow(clippy::reversed_empty_ranges)] // Deliberately empty.
const EMPTY_RANGE: RangeInclusive<u16> = 1..=0;

/// `(first, size)` of a range; size 0 if the range is empty.
fn bounds(range: &RangeInclusive<u16>) -> (u16, u32) {
    let (start, end) = (*range.start(), *range.end());
    if start > end {
        (start, 0)
    } else {
        (start, u32::from(end) - u32::from(start) + 1)
    }
}

/// Ports per slice (all but the last, which also takes the remainder); 0 if workers > size.
fn slice_len(size: u32, workers: usize) -> u32 {
    match u32::try_from(workers) {
        Ok(w) if w > 0 => size / w,
        _ => 0,
    }
}

/// Port `first + offset`, where `offset` is known to stay inside a `u16` range.
fn port_at(first: u16, offset: u32) -> u16 {
    u16::try_from(u32::from(first) + offset).unwrap_or(u16::MAX)
}

/// The slice of `range` owned by `worker` of `workers`: contiguous, equal-sized, the last
/// worker taking the remainder. Non-empty whenever `0 < workers <= range size` and
/// `worker < workers`; empty (`1..=0`) for nonsense arguments.
pub fn slice_of(range: RangeInclusive<u16>, worker: usize, workers: usize) -> RangeInclusive<u16> {
    let (first, size) = bounds(&range);
    if size == 0 || worker >= workers {
        return EMPTY_RANGE;
    }
    let per = slice_len(size, workers);
    let last = worker + 1 == workers;
    if per == 0 {
        // More workers than ports: the last worker holds the whole range.
        return if last { range } else { EMPTY_RANGE };
    }
    // per > 0, so workers <= size <= 65536 and worker * per < size.
    let lo = u32::try_from(worker).unwrap_or(u32::MAX).saturating_mul(per);
    if last {
        return port_at(first, lo)..=*range.end();
    }
    port_at(first, lo)..=port_at(first, lo + per - 1)
}

/// The worker whose slice holds `port`, `None` outside `range` or with no workers.
pub fn owner_of_port(range: RangeInclusive<u16>, workers: usize, port: u16) -> Option<usize> {
    let (first, size) = bounds(&range);
    if workers == 0 || size == 0 || !range.contains(&port) {
        return None;
    }
    let per = slice_len(size, workers);
    if per == 0 {
        return Some(workers - 1);
    }
    let offset = u32::from(port) - u32::from(first);
    let w = usize::try_from(offset / per).unwrap_or(usize::MAX);
    Some(w.min(workers - 1))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One NAT IP's ports in this worker's slice.
struct NatIp {
    ip: Ipv4Addr,
    /// Flows using each port of the slice (towards any backend).
    uses: Vec<u32>,
    /// Ports with at least one flow.
    in_use: u32,
}

/// Allocates NAT ports from one worker's slice of every NAT IP.
pub struct PortAllocator {
    slice: RangeInclusive<u16>,
    first: u16,
    size: u32,
    rng: u64,
    /// Sorted by IP (binary search; added and removed at control-plane time only).
    ips: Vec<NatIp>,
}

impl fmt::Debug for PortAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortAllocator")
            .field("slice", &self.slice)
            .field("nat_ips", &self.ips.iter().map(|n| (n.ip, n.in_use)).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PortAllocator {
    /// An allocator for `worker`'s slice of `range` (see [`slice_of`]), with no NAT IP yet.
    /// `seed` seeds the PRNG (use a random one; it is mixed with the worker index).
    pub fn new(range: RangeInclusive<u16>, worker: usize, workers: usize, seed: u64) -> Self {
        let slice = slice_of(range, worker, workers);
        let (first, size) = bounds(&slice);
        // splitmix64 of seed and worker: a well-mixed, nonzero xorshift state.
        let mut z = seed ^ (worker as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        PortAllocator { slice, first, size, rng: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z }, ips: Vec::new() }
    }

    /// This worker's ports.
    pub fn slice(&self) -> RangeInclusive<u16> {
        self.slice.clone()
    }

    /// The NAT IPs this allocator serves, in ascending order.
    pub fn nat_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ips.iter().map(|n| n.ip)
    }

    /// Start allocating from `ip` (control plane; allocates its use counters). Adding an IP
    /// already present keeps its counters.
    pub fn add_nat_ip(&mut self, ip: Ipv4Addr) {
        if let Err(at) = self.find(ip) {
            let len = usize::try_from(self.size).unwrap_or(0);
            self.ips.insert(at, NatIp { ip, uses: vec![0; len], in_use: 0 });
        }
    }

    /// Stop allocating from `ip`; `false` if it was not there.
    pub fn remove_nat_ip(&mut self, ip: Ipv4Addr) -> bool {
        match self.find(ip) {
            Ok(at) => {
                self.ips.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `ip` is served.
    pub fn has_nat_ip(&self, ip: Ipv4Addr) -> bool {
        self.find(ip).is_ok()
    }

    fn find(&self, ip: Ipv4Addr) -> Result<usize, usize> {
        self.ips.binary_search_by_key(&ip, |n| n.ip)
    }

    /// xorshift64*.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random value below `n` (> 0).
    #[allow(clippy::cast_possible_truncation)] // The result is < n ≤ u32::MAX.
    fn random_below(&mut self, n: u32) -> u32 {
        (((self.next_random() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// A port of `ip`'s slice for which `is_free(port)` holds, chosen at random; `None` if the
    /// IP is not served or every port of the slice was refused (exhaustion). Increments the
    /// port's use count.
    pub fn allocate(&mut self, ip: Ipv4Addr, mut is_free: impl FnMut(u16) -> bool) -> Option<u16> {
        let size = self.size;
        if size == 0 {
            return None;
        }
        let at = self.find(ip).ok()?;
        let start = self.random_below(size);
        // A random stride coprime with the size visits every offset exactly once.
        let mut stride = if size > 2 { 1 + self.random_below(size - 1) } else { 1 };
        while gcd(stride, size) != 1 {
            stride = if stride + 1 >= size { 1 } else { stride + 1 };
        }
        let mut offset = start;
        for _ in 0..size {
            let port = port_at(self.first, offset);
            if is_free(port) {
                let nat = self.ips.get_mut(at)?;
                let uses = nat.uses.get_mut(usize::try_from(offset).ok()?)?;
                if *uses == 0 {
                    nat.in_use += 1;
                }
                *uses = uses.saturating_add(1);
                return Some(port);
            }
            offset = (offset + stride) % size;
        }
        None
    }

    /// One flow using `ip:port` is gone (its slot freed after the cool-down): decrement the
    /// port's use count. Ports outside the slice or unknown IPs are ignored.
    pub fn release(&mut self, ip: Ipv4Addr, port: u16) {
        let Ok(at) = self.find(ip) else { return };
        if !self.slice.contains(&port) {
            return;
        }
        let offset = usize::from(port - self.first);
        if let Some(nat) = self.ips.get_mut(at) {
            if let Some(uses) = nat.uses.get_mut(offset) {
                if *uses == 1 {
                    nat.in_use -= 1;
                }
                *uses = uses.saturating_sub(1);
            }
        }
    }

    /// Flows currently using `ip:port` (towards any backend); 0 for ports outside the slice.
    pub fn uses(&self, ip: Ipv4Addr, port: u16) -> u32 {
        let Ok(at) = self.find(ip) else { return 0 };
        if !self.slice.contains(&port) {
            return 0;
        }
        self.ips.get(at).and_then(|n| n.uses.get(usize::from(port - self.first))).copied().unwrap_or(0)
    }

    /// `(ports with at least one flow, ports in the slice)` for `ip`, `None` if not served.
    pub fn usage(&self, ip: Ipv4Addr) -> Option<(u32, u32)> {
        let at = self.find(ip).ok()?;
        self.ips.get(at).map(|n| (n.in_use, self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Instant;
    use crate::key::{FlowKey, NetworkId, Protocol};
    use crate::table::FlowTable;
    use std::collections::HashSet;
    use std::net::SocketAddrV4;

    const NAT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
    const FULL: RangeInclusive<u16> = 1024..=65535;

    #[test]
    fn fifty_thousand_allocations_no_collision_not_sequential() {
        let mut a = PortAllocator::new(FULL, 0, 1, 42);
        a.add_nat_ip(NAT);
        assert_eq!(a.usage(NAT), Some((0, 64_512)));
        let mut used = HashSet::new();
        let mut order = Vec::new();
        for _ in 0..50_000 {
            let p = a.allocate(NAT, |p| !used.contains(&p)).expect("not exhausted");
            assert!(FULL.contains(&p));
            assert!(used.insert(p), "port {p} handed out twice towards one backend");
            order.push(p);
        }
        let adjacent = order.windows(2).filter(|w| w[0].abs_diff(w[1]) == 1).count();
        assert!(adjacent < 500, "{adjacent} of 49,999 successive ports are sequential");
        // Not a simple increasing walk either.
        let increasing = order.windows(2).filter(|w| w[1] > w[0]).count();
        assert!((15_000..35_000).contains(&increasing), "{increasing}");
        assert_eq!(a.usage(NAT), Some((50_000, 64_512)));
    }

    #[test]
    fn exhaustion_returns_none_after_the_whole_slice() {
        let mut a = PortAllocator::new(2000..=2099, 0, 1, 7);
        a.add_nat_ip(NAT);
        let mut used = HashSet::new();
        for _ in 0..100 {
            let p = a.allocate(NAT, |p| !used.contains(&p)).unwrap();
            assert!(used.insert(p));
        }
        assert_eq!(used.len(), 100);
        let mut asked = Vec::new();
        assert_eq!(
            a.allocate(NAT, |p| {
                asked.push(p);
                false
            }),
            None
        );
        // Every port was asked exactly once before giving up.
        asked.sort_unstable();
        assert_eq!(asked, (2000..=2099).collect::<Vec<_>>());
        assert_eq!(a.usage(NAT), Some((100, 100)));
        // An unknown NAT IP allocates nothing.
        assert_eq!(a.allocate(Ipv4Addr::new(10, 0, 0, 201), |_| true), None);
        // Adding a NAT IP at runtime relieves exhaustion.
        let other = Ipv4Addr::new(10, 0, 0, 201);
        a.add_nat_ip(other);
        assert!(a.allocate(other, |_| true).is_some());
    }

    #[test]
    fn every_stride_visits_the_whole_slice() {
        // Slice sizes with many small factors (64,512 = 2^10 * 3^2 * 7) and primes.
        for (range, seed) in [(1024..=65535u16, 1u64), (10..=10, 2), (10..=11, 3), (5..=16, 4), (100..=196, 5)] {
            let mut a = PortAllocator::new(range.clone(), 0, 1, seed);
            a.add_nat_ip(NAT);
            for _ in 0..5 {
                let mut asked = HashSet::new();
                let mut count = 0u32;
                assert_eq!(
                    a.allocate(NAT, |p| {
                        asked.insert(p);
                        count += 1;
                        false
                    }),
                    None
                );
                assert_eq!(asked.len(), range.len());
                assert_eq!(count as usize, range.len());
            }
        }
    }

    /// A backend behind NAT IP `NAT`, in network B.
    fn reverse_key(backend: u8, port: u16) -> FlowKey {
        FlowKey::new(
            NetworkId(2),
            Protocol::Tcp,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, backend), 443),
            SocketAddrV4::new(NAT, port),
        )
    }

    fn forward_key(consumer_port: u16) -> FlowKey {
        FlowKey::new(
            NetworkId(1),
            Protocol::Tcp,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), consumer_port),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), 443),
        )
    }

    #[test]
    fn cooling_ports_are_not_reused_towards_the_same_backend_but_are_towards_another() {
        // The real check: the flow table says whether (backend, nat ip:port) is live or cooling.
        let range = 3000..=3015u16;
        let mut a = PortAllocator::new(range.clone(), 0, 1, 99);
        a.add_nat_ip(NAT);
        let mut table = FlowTable::with_capacity(64, 1);
        let t0 = Instant::from_nanos(0);
        let mut ids = Vec::new();
        for i in 0..16u16 {
            let port = a.allocate(NAT, |p| !table.contains(&reverse_key(10, p))).unwrap();
            ids.push((table.insert(forward_key(i), reverse_key(10, port), port, t0).unwrap(), port));
        }
        assert_eq!(a.allocate(NAT, |p| !table.contains(&reverse_key(10, p))), None);
        // Flow 0 ends: cooling. Its port is still not free towards backend 10...
        let (id, port) = ids[0];
        table.cool(id, t0 + std::time::Duration::from_secs(120));
        assert_eq!(a.allocate(NAT, |p| !table.contains(&reverse_key(10, p))), None);
        // ...but ports are shared towards another backend.
        let shared = a.allocate(NAT, |p| !table.contains(&reverse_key(11, p))).unwrap();
        assert!(range.contains(&shared));
        assert_eq!(a.uses(NAT, shared), 2);
        assert_eq!(a.usage(NAT), Some((16, 16)));
        // After the cool-down the sweep frees the slot and releases the port; now it is reused.
        let mut released = Vec::new();
        table.sweep(
            t0 + std::time::Duration::from_secs(120),
            64,
            |_, _| crate::table::SweepAction::Keep { deadline: Instant::MAX },
            |_, e| released.push(e.value),
        );
        assert_eq!(released, vec![port]);
        for p in released {
            a.release(NAT, p);
        }
        // Still used towards backend 11 if that flow happened to draw the same port.
        let still = u32::from(shared == port);
        assert_eq!(a.uses(NAT, port), still);
        assert_eq!(a.usage(NAT), Some((15 + still, 16)));
        assert_eq!(a.allocate(NAT, |p| !table.contains(&reverse_key(10, p))), Some(port));
    }

    #[test]
    fn release_and_usage_counts() {
        let mut a = PortAllocator::new(1000..=1009, 0, 1, 3);
        a.add_nat_ip(NAT);
        let p = a.allocate(NAT, |_| true).unwrap();
        let q = a.allocate(NAT, |x| x == p).unwrap();
        assert_eq!(p, q);
        assert_eq!(a.uses(NAT, p), 2);
        assert_eq!(a.usage(NAT), Some((1, 10)));
        a.release(NAT, p);
        assert_eq!(a.usage(NAT), Some((1, 10)));
        a.release(NAT, p);
        assert_eq!(a.usage(NAT), Some((0, 10)));
        // Extra releases, foreign ports and unknown IPs are ignored, never underflow or panic.
        a.release(NAT, p);
        a.release(NAT, 1);
        a.release(NAT, u16::MAX);
        a.release(Ipv4Addr::new(1, 2, 3, 4), p);
        assert_eq!(a.usage(NAT), Some((0, 10)));
        assert_eq!(a.usage(Ipv4Addr::new(1, 2, 3, 4)), None);
    }

    #[test]
    fn nat_ips_add_remove() {
        let mut a = PortAllocator::new(FULL, 1, 4, 0);
        let (x, y) = (Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 3));
        assert!(!a.has_nat_ip(x));
        a.add_nat_ip(x);
        a.add_nat_ip(y);
        let p = a.allocate(x, |_| true).unwrap();
        a.add_nat_ip(x); // Re-adding keeps the counters.
        assert_eq!(a.uses(x, p), 1);
        assert_eq!(a.nat_ips().collect::<Vec<_>>(), vec![y, x]);
        assert!(a.remove_nat_ip(x));
        assert!(!a.remove_nat_ip(x));
        assert!(!a.has_nat_ip(x));
        assert!(a.has_nat_ip(y));
        assert_eq!(a.allocate(x, |_| true), None);
        assert!(format!("{a:?}").contains("PortAllocator"));
    }

    #[test]
    fn slices_partition_the_range_for_1_to_8_workers() {
        for workers in 1..=8usize {
            let slices: Vec<_> = (0..workers).map(|w| slice_of(FULL, w, workers)).collect();
            // Contiguous, non-empty, in order, covering the whole range.
            assert_eq!(*slices[0].start(), 1024);
            assert_eq!(*slices[workers - 1].end(), 65535);
            for (w, s) in slices.iter().enumerate() {
                assert!(!s.is_empty(), "{workers} workers: slice {w} empty");
                if w + 1 < workers {
                    assert_eq!(*s.end() + 1, *slices[w + 1].start());
                    assert_eq!(s.len(), 64_512 / workers);
                }
            }
            let total: usize = slices.iter().map(|s| s.len()).sum();
            assert_eq!(total, 64_512);
            // Every port of the range has exactly one owner, the worker whose slice holds it.
            for port in FULL {
                let owner = owner_of_port(FULL, workers, port).unwrap();
                let holders: Vec<_> = (0..workers).filter(|w| slices[*w].contains(&port)).collect();
                assert_eq!(holders, vec![owner], "port {port}, {workers} workers");
            }
            for port in [0u16, 1, 1023] {
                assert_eq!(owner_of_port(FULL, workers, port), None);
            }
            // Every allocated port lies in the allocator's slice and is owned by its worker.
            for (w, slice) in slices.iter().enumerate() {
                let mut a = PortAllocator::new(FULL, w, workers, 5);
                assert_eq!(a.slice(), *slice);
                a.add_nat_ip(NAT);
                for _ in 0..200 {
                    let p = a.allocate(NAT, |_| true).unwrap();
                    assert!(slice.contains(&p));
                    assert_eq!(owner_of_port(FULL, workers, p), Some(w));
                }
            }
        }
    }

    #[test]
    fn nonsense_arguments_do_not_panic() {
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 10..=9u16;
        assert!(slice_of(empty.clone(), 0, 1).is_empty());
        assert!(slice_of(FULL, 0, 0).is_empty());
        assert!(slice_of(FULL, 5, 4).is_empty());
        assert_eq!(owner_of_port(FULL, 0, 2000), None);
        assert_eq!(owner_of_port(empty.clone(), 3, 9), None);
        // More workers than ports: the last worker holds everything; no port is orphaned.
        assert!(slice_of(5..=6, 0, 3).is_empty());
        assert_eq!(slice_of(5..=6, 2, 3), 5..=6);
        assert_eq!(owner_of_port(5..=6, 3, 6), Some(2));
        assert_eq!(slice_of(0..=65535, 0, 1), 0..=65535);
        assert_eq!(owner_of_port(0..=65535, usize::MAX, 65535), Some(usize::MAX - 1));
        assert_eq!(slice_of(0..=65535, usize::MAX - 1, usize::MAX), 0..=65535);
        let mut a = PortAllocator::new(empty, 0, 1, 0);
        a.add_nat_ip(NAT);
        assert_eq!(a.allocate(NAT, |_| true), None);
        assert_eq!(a.usage(NAT), Some((0, 0)));
        let mut b = PortAllocator::new(FULL, 9, 2, 0);
        b.add_nat_ip(NAT);
        assert_eq!(b.allocate(NAT, |_| true), None);
    }

    #[test]
    fn equal_sized_slices_with_remainder_to_the_last() {
        assert_eq!(slice_of(0..=9, 0, 3), 0..=2);
        assert_eq!(slice_of(0..=9, 1, 3), 3..=5);
        assert_eq!(slice_of(0..=9, 2, 3), 6..=9);
        assert_eq!(owner_of_port(0..=9, 3, 9), Some(2));
        assert_eq!(owner_of_port(0..=9, 3, 5), Some(1));
    }

    #[test]
    fn different_seeds_and_workers_give_different_sequences() {
        let run = |seed, worker| {
            let mut a = PortAllocator::new(FULL, worker, 1.max(worker + 1), seed);
            a.add_nat_ip(NAT);
            (0..8).map(|_| a.allocate(NAT, |_| true).unwrap()).collect::<Vec<_>>()
        };
        assert_ne!(run(1, 0), run(2, 0));
        assert_eq!(run(1, 0), run(1, 0));
    }
}
