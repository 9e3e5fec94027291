use super::*;
use crate::key::{NetworkId, Protocol};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

fn sa(a: u8, b: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, a, b), port)
}

/// Consumer `c` (port `p`) in network A → endpoint 10.0.0.50:443.
fn fwd(c: u8, p: u16) -> FlowKey {
    FlowKey::new(NetworkId(1), Protocol::Tcp, sa(0, c, p), sa(0, 50, 443))
}

/// Backend 10.0.0.10:443 in network B → NAT 10.0.0.200:`nat_port` (same prefix as A!).
fn rev(nat_port: u16) -> FlowKey {
    FlowKey::new(NetworkId(2), Protocol::Tcp, sa(0, 10, 443), sa(0, 200, nat_port))
}

const T0: Instant = Instant::from_nanos(1_000);

#[test]
fn insert_and_lookup_both_directions() {
    let mut t = FlowTable::with_capacity(16, 7);
    let a = t.insert(fwd(7, 51000), rev(40123), "a", T0).unwrap();
    let b = t.insert(fwd(8, 51000), rev(40124), "b", T0).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.lookup(&fwd(7, 51000)), Some((a, Direction::ToService)));
    assert_eq!(t.lookup(&rev(40123)), Some((a, Direction::ToConsumer)));
    assert_eq!(t.lookup(&fwd(8, 51000)), Some((b, Direction::ToService)));
    assert_eq!(t.lookup(&rev(40124)), Some((b, Direction::ToConsumer)));
    // The reversed keys (what the packet would look like the other way) are not keys.
    assert_eq!(t.lookup(&fwd(7, 51000).reversed()), None);
    assert_eq!(t.lookup(&rev(40123).reversed()), None);
    // Same addresses, other network: a different flow.
    let mut other_network = fwd(7, 51000);
    other_network.network = NetworkId(9);
    assert_eq!(t.lookup(&other_network), None);
    let e = t.get(a).unwrap();
    assert_eq!(e.forward, fwd(7, 51000));
    assert_eq!(e.reverse, rev(40123));
    assert_eq!(e.value, "a");
    assert_eq!(e.deadline, T0);
    assert_eq!(e.state, EntryState::Live);
    assert_eq!((t.len(), t.live(), t.cooling()), (2, 2, 0));
    t.get_mut(b).unwrap().value = "B";
    assert_eq!(t.get(b).unwrap().value, "B");
}

#[test]
fn duplicate_keys_are_refused_and_change_nothing() {
    let mut t = FlowTable::with_capacity(4, 1);
    let a = t.insert(fwd(7, 1), rev(100), 1, T0).unwrap();
    assert_eq!(t.insert(fwd(7, 1), rev(101), 2, T0), Err(InsertError::Exists));
    assert_eq!(t.insert(fwd(8, 1), rev(100), 2, T0), Err(InsertError::Exists));
    // A key used as the other direction also clashes.
    assert_eq!(t.insert(rev(100), rev(102), 2, T0), Err(InsertError::Exists));
    assert_eq!(t.insert(fwd(9, 1), fwd(9, 1), 2, T0), Err(InsertError::Exists));
    assert_eq!(t.len(), 1);
    assert_eq!(t.lookup(&rev(101)), None);
    assert_eq!(t.lookup(&fwd(8, 1)), None);
    assert_eq!(t.lookup(&fwd(7, 1)), Some((a, Direction::ToService)));
    assert_eq!(InsertError::Full.to_string(), "flow table full");
    assert_eq!(InsertError::Exists.to_string(), "flow key already present");
}

#[test]
fn remove_frees_both_keys_and_the_slot() {
    let mut t = FlowTable::with_capacity(1, 3);
    let a = t.insert(fwd(7, 1), rev(100), String::from("x"), T0).unwrap();
    assert_eq!(t.remove(a), Some(String::from("x")));
    assert_eq!(t.remove(a), None);
    assert!(t.get(a).is_none());
    assert!(t.get_mut(a).is_none());
    assert!(!t.contains(&fwd(7, 1)));
    assert!(!t.contains(&rev(100)));
    assert!(t.is_empty());
    // The single slot is usable again, even for the same keys.
    let b = t.insert(fwd(7, 1), rev(100), String::from("y"), T0).unwrap();
    assert_eq!(t.lookup(&rev(100)), Some((b, Direction::ToConsumer)));
    assert!(t.get(FlowId(1)).is_none());
    assert!(t.get(FlowId(u32::MAX)).is_none());
    assert_eq!(t.remove(FlowId(u32::MAX)), None);
}

#[test]
fn cooling_keeps_only_the_reverse_key() {
    let mut t = FlowTable::with_capacity(8, 5);
    let a = t.insert(fwd(7, 51000), rev(40123), 1u32, T0).unwrap();
    let until = T0 + std::time::Duration::from_secs(120);
    t.cool(a, until);
    assert_eq!(t.lookup(&fwd(7, 51000)), None);
    assert_eq!(t.lookup(&rev(40123)), Some((a, Direction::ToConsumer)));
    let e = t.get(a).unwrap();
    assert_eq!(e.state, EntryState::Cooling);
    assert_eq!(e.deadline, until);
    assert_eq!((t.len(), t.live(), t.cooling()), (1, 0, 1));
    // The consumer reconnects from the same 5-tuple: a new flow with another NAT port.
    let b = t.insert(fwd(7, 51000), rev(40200), 2, T0).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.lookup(&fwd(7, 51000)), Some((b, Direction::ToService)));
    // The cooling NAT port stays reserved towards the same backend.
    assert_eq!(t.insert(fwd(9, 1), rev(40123), 3, T0), Err(InsertError::Exists));
    assert_eq!((t.len(), t.live(), t.cooling()), (2, 1, 1));
    // Cooling twice only moves the deadline; counts stay right.
    t.cool(a, until + std::time::Duration::from_secs(1));
    assert_eq!((t.len(), t.live(), t.cooling()), (2, 1, 1));
    // Removing the cooling flow frees the reverse key and leaves the new flow alone.
    assert_eq!(t.remove(a), Some(1));
    assert!(!t.contains(&rev(40123)));
    assert_eq!(t.lookup(&fwd(7, 51000)), Some((b, Direction::ToService)));
    assert_eq!((t.len(), t.live(), t.cooling()), (1, 1, 0));
    // Cooling a free or out-of-range slot does nothing.
    t.cool(a, until);
    t.cool(FlowId(999), until);
    assert_eq!((t.len(), t.live(), t.cooling()), (1, 1, 0));
}

#[test]
fn full_table_refuses_and_keeps_existing_flows() {
    let cap = 100;
    let mut t = FlowTable::with_capacity(cap, 11);
    let mut ids = Vec::new();
    for i in 0..cap {
        let i = u16::try_from(i).unwrap();
        ids.push(t.insert(fwd(1, i), rev(i), i, T0).unwrap());
    }
    assert!(t.is_full());
    assert_eq!(t.insert(fwd(2, 0), rev(5000), 0, T0), Err(InsertError::Full));
    // Refused inserts leave no trace in the index.
    assert!(!t.contains(&fwd(2, 0)));
    assert!(!t.contains(&rev(5000)));
    assert_eq!(t.len(), cap);
    for (i, id) in ids.iter().enumerate() {
        let i = u16::try_from(i).unwrap();
        assert_eq!(t.lookup(&fwd(1, i)), Some((*id, Direction::ToService)));
        assert_eq!(t.lookup(&rev(i)), Some((*id, Direction::ToConsumer)));
        assert_eq!(t.get(*id).unwrap().value, i);
    }
    // A cooling flow still takes its slot.
    t.cool(ids[3], T0);
    assert_eq!(t.insert(fwd(2, 0), rev(5000), 0, T0), Err(InsertError::Full));
    t.remove(ids[3]);
    assert!(t.insert(fwd(2, 0), rev(5000), 0, T0).is_ok());
}

#[test]
fn zero_capacity_table_is_always_full() {
    let mut t: FlowTable<u8> = FlowTable::with_capacity(0, 0);
    assert_eq!(t.capacity(), 0);
    assert_eq!(t.insert(fwd(1, 1), rev(1), 0, T0), Err(InsertError::Full));
    assert_eq!(t.lookup(&fwd(1, 1)), None);
    t.sweep(Instant::MAX, 100, |_, _| SweepAction::Remove, |_, _| panic!());
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn sweep_budget_expires_exactly_the_due_flows_and_frees_after_cool_down() {
    // 10 flows; flow i is due at T0 + i s.
    let s = std::time::Duration::from_secs;
    let mut t = FlowTable::with_capacity(10, 9);
    let mut ids = Vec::new();
    for i in 0..10u16 {
        ids.push(t.insert(fwd(1, i), rev(i), i, T0 + s(u64::from(i))).unwrap());
    }
    let now = T0 + s(4); // flows 0..=4 are due
    let mut seen = Vec::new();
    let mut freed = Vec::new();
    // A budget of 3 examines slots 0, 1, 2 only.
    t.sweep(
        now,
        3,
        |id, e| {
            seen.push(id);
            assert!(e.deadline <= now);
            SweepAction::Cool { until: now + s(120) }
        },
        |id, _| freed.push(id),
    );
    assert_eq!(seen, ids[0..3].to_vec());
    assert!(freed.is_empty());
    assert_eq!((t.live(), t.cooling()), (7, 3));
    // The cursor persists: the next 4 slots are 3, 4, 5, 6; only 3 and 4 are due.
    // Flow 3 is re-armed, flow 4 removed at once.
    seen.clear();
    t.sweep(
        now,
        4,
        |id, e| {
            seen.push(id);
            if e.value == 3 {
                SweepAction::Keep { deadline: now + s(7440) }
            } else {
                SweepAction::Remove
            }
        },
        |id, _| freed.push(id),
    );
    assert_eq!(seen, vec![ids[3], ids[4]]);
    assert_eq!(freed, vec![ids[4]]);
    assert_eq!(t.get(ids[3]).unwrap().deadline, now + s(7440));
    assert!(t.get(ids[4]).is_none());
    assert!(!t.contains(&rev(4)));
    assert_eq!(t.len(), 9);
    // A full pass before the cool-down ends: nothing due (flows 5.. are due later than `now`).
    let mut calls = 0;
    let mut freed_ids = Vec::new();
    t.sweep(
        now,
        100,
        |_, _| {
            calls += 1;
            SweepAction::Remove
        },
        |id, _| freed_ids.push(id),
    );
    assert_eq!(calls, 0);
    assert!(freed_ids.is_empty());
    // Cooling flows keep their reverse key until the cool-down has passed...
    let end = now + s(120);
    t.sweep(end - s(1), 10, |_, _| SweepAction::Keep { deadline: Instant::MAX }, |id, _| freed_ids.push(id));
    for (i, id) in ids.iter().enumerate().take(3) {
        assert!(freed_ids.iter().all(|f| f != id));
        assert!(t.contains(&rev(u16::try_from(i).unwrap())));
    }
    // ...then on_free gets them, with their values, and the slots and keys are free.
    let mut freed_values = Vec::new();
    t.sweep(
        end,
        10,
        |_, _| SweepAction::Keep { deadline: Instant::MAX },
        |id, e| {
            assert_eq!(e.state, EntryState::Cooling);
            freed_values.push((id, e.value));
        },
    );
    freed_values.sort_by_key(|(_, v)| *v);
    assert_eq!(freed_values, vec![(ids[0], 0), (ids[1], 1), (ids[2], 2)]);
    for i in 0..3u16 {
        assert!(!t.contains(&rev(i)));
    }
    assert_eq!(t.len(), 6);
}

#[test]
fn sweep_remove_passes_the_value_to_on_free() {
    let mut t = FlowTable::with_capacity(2, 0);
    let a = t.insert(fwd(1, 1), rev(1), 42u64, T0).unwrap();
    let mut got = None;
    t.sweep(T0, 2, |_, _| SweepAction::Remove, |id, e| got = Some((id, e.value)));
    assert_eq!(got, Some((a, 42)));
    assert!(t.is_empty());
}

#[test]
fn no_unbounded_degradation_after_many_insert_remove_cycles() {
    // With tombstones and no cleanup this would fill the index; backward shift keeps it clean.
    let mut t = FlowTable::with_capacity(64, 77);
    for round in 0..2000u16 {
        let mut ids = Vec::new();
        for i in 0..64u16 {
            ids.push(
                t.insert(fwd(2, i.wrapping_add(round)), rev(round.wrapping_mul(64).wrapping_add(i)), i, T0).unwrap(),
            );
        }
        for id in ids {
            t.remove(id).unwrap();
        }
    }
    assert!(t.index.iter().all(|b| *b == EMPTY));
}

#[test]
fn degenerate_hash_long_chains_still_correct() {
    // Every key hashes to one of 4 buckets: chains are long and tags always clash.
    let mut t = FlowTable::with_degenerate_hash(200);
    let mut ids = HashMap::new();
    for i in 0..200u16 {
        ids.insert(i, t.insert(fwd(3, i), rev(i), i, T0).unwrap());
    }
    for i in (0..200u16).step_by(3) {
        t.remove(ids[&i]).unwrap();
    }
    for i in (1..200u16).step_by(3) {
        t.cool(ids[&i], T0);
    }
    for i in 0..200u16 {
        let (f, r) = (t.lookup(&fwd(3, i)), t.lookup(&rev(i)));
        match i % 3 {
            0 => assert_eq!((f, r), (None, None)),
            1 => assert_eq!((f, r), (None, Some((ids[&i], Direction::ToConsumer)))),
            _ => assert_eq!((f, r), (Some((ids[&i], Direction::ToService)), Some((ids[&i], Direction::ToConsumer)))),
        }
    }
}

#[test]
fn iter_lists_occupied_slots() {
    let mut t = FlowTable::with_capacity(8, 2);
    let a = t.insert(fwd(1, 1), rev(1), 'a', T0).unwrap();
    let b = t.insert(fwd(1, 2), rev(2), 'b', T0).unwrap();
    let c = t.insert(fwd(1, 3), rev(3), 'c', T0).unwrap();
    t.remove(b);
    t.cool(c, T0);
    let listed: Vec<_> = t.iter().map(|(id, e)| (id, e.value, e.state)).collect();
    assert_eq!(listed, vec![(a, 'a', EntryState::Live), (c, 'c', EntryState::Cooling)]);
    for (_, e) in t.iter_mut() {
        e.value = 'z';
    }
    assert!(t.iter().all(|(_, e)| e.value == 'z'));
    assert!(format!("{t:?}").contains("capacity: 8"));
}

#[test]
fn caller_mutating_state_does_not_corrupt_the_index() {
    let mut t = FlowTable::with_capacity(4, 2);
    let a = t.insert(fwd(1, 1), rev(1), (), T0).unwrap();
    // Misuse: flip the state by hand instead of calling cool().
    t.get_mut(a).unwrap().state = EntryState::Cooling;
    t.remove(a).unwrap();
    assert!(t.index.iter().all(|b| *b == EMPTY));
    assert_eq!((t.len(), t.live()), (0, 0));
}

#[test]
fn v_needs_neither_clone_nor_default() {
    struct Opaque(#[allow(dead_code)] Box<u8>);
    let mut t = FlowTable::with_capacity(2, 0);
    let a = t.insert(fwd(1, 1), rev(1), Opaque(Box::new(1)), T0).unwrap();
    assert!(t.remove(a).is_some());
}

#[test]
fn large_table_round_trip() {
    let n = 100_000usize;
    let mut t = FlowTable::with_capacity(n, 0xDEAD_BEEF);
    let key = |i: usize| {
        let i = u32::try_from(i).unwrap();
        let ip = Ipv4Addr::from(0x0A00_0000 | (i >> 4));
        let port = u16::try_from(i & 0xF).unwrap();
        (
            FlowKey::new(NetworkId(1), Protocol::Udp, SocketAddrV4::new(ip, 1000 + port), sa(0, 50, 53)),
            FlowKey::new(NetworkId(2), Protocol::Udp, sa(0, 10, 53), SocketAddrV4::new(ip, port)),
        )
    };
    for i in 0..n {
        let (f, r) = key(i);
        t.insert(f, r, i, T0).unwrap();
    }
    assert_eq!(t.insert(key(n).0, key(n).1, n, T0), Err(InsertError::Full));
    for i in 0..n {
        let (f, r) = key(i);
        let (id, d) = t.lookup(&f).unwrap();
        assert_eq!(d, Direction::ToService);
        assert_eq!(t.get(id).unwrap().value, i);
        assert_eq!(t.lookup(&r), Some((id, Direction::ToConsumer)));
    }
}

/// Release-mode timing: `cargo test -p overlink-flow --release -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn one_million_flows_timing() {
    for n in [1_000usize, 65_536, 1_000_000] {
        timing(n);
    }
}

fn timing(n: usize) {
    let start = std::time::Instant::now();
    let mut t = FlowTable::with_capacity(n, 0x1234_5678);
    let built = start.elapsed();
    let key = |i: usize| {
        let i = u32::try_from(i).unwrap();
        let ip = Ipv4Addr::from(0x0A00_0000 | (i >> 6));
        let port = u16::try_from(i & 0x3F).unwrap();
        (
            FlowKey::new(NetworkId(1), Protocol::Tcp, SocketAddrV4::new(ip, 40000 + port), sa(0, 50, 443)),
            FlowKey::new(NetworkId(2), Protocol::Tcp, sa(0, 10, 443), SocketAddrV4::new(ip, port)),
        )
    };
    let start = std::time::Instant::now();
    for i in 0..n {
        let (f, r) = key(i);
        t.insert(f, r, i, T0).unwrap();
    }
    let inserted = start.elapsed();
    // Random order lookups over both directions (precomputed keys).
    let mut order: Vec<FlowKey> = Vec::with_capacity(2 * n);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2 * n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = usize::try_from(x % n as u64).unwrap();
        let (f, r) = key(i);
        order.push(if x & (1 << 40) == 0 { f } else { r });
    }
    let start = std::time::Instant::now();
    let mut found = 0usize;
    for k in &order {
        if let Some((id, _)) = t.lookup(std::hint::black_box(k)) {
            found = found.wrapping_add(id.0 as usize);
        }
    }
    let looked = start.elapsed();
    std::hint::black_box(found);
    let mut out = vec![None; 32];
    let start = std::time::Instant::now();
    let mut burst_found = 0usize;
    for burst in order.chunks(32) {
        t.lookup_burst(std::hint::black_box(burst), &mut out);
        for (id, _) in out.iter().take(burst.len()).flatten() {
            burst_found = burst_found.wrapping_add(id.0 as usize);
        }
    }
    let bursted = start.elapsed();
    assert_eq!(burst_found, found);
    // Baseline: one random read of a u64 per key from an array as big as the index.
    let raw = vec![1u64; t.index.len()];
    let start = std::time::Instant::now();
    let mut sum = 0u64;
    for k in &order {
        let (a, b) = std::hint::black_box(k).words();
        sum = sum.wrapping_add(
            raw[usize::try_from((a ^ b.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40).unwrap()
                & (raw.len() - 1)],
        );
    }
    let baseline = start.elapsed();
    std::hint::black_box(sum);
    let mut miss = 0usize;
    let start = std::time::Instant::now();
    for k in &order {
        let mut k = *k;
        k.network = NetworkId(7);
        miss += usize::from(t.lookup(std::hint::black_box(&k)).is_some());
    }
    let missed = start.elapsed();
    assert_eq!(miss, 0);
    #[allow(clippy::cast_precision_loss)]
    let per = |d: std::time::Duration| d.as_nanos() as f64 / (2 * n) as f64;
    println!(
        "{n} flows: construct {built:?}, insert {inserted:?}, hit lookup {:.1} ns, \
         hit lookup_burst {:.1} ns, miss lookup {:.1} ns, baseline one random read {:.1} ns",
        per(looked),
        per(bursted),
        per(missed),
        per(baseline),
    );
    assert!(built < std::time::Duration::from_secs(1));
}

// ---- model-based property test ----

#[derive(Clone, Debug)]
enum Op {
    Insert { forward: usize, reverse: usize, life: u8 },
    Remove(usize),
    Cool(usize),
    Lookup(usize),
    Sweep { advance: u8 },
}

fn universe() -> Vec<FlowKey> {
    // Few distinct keys so that inserts clash often; keys differ only in network, protocol,
    // direction or a single port, the cases a weak key compare would confuse.
    let mut keys = Vec::new();
    for network in [NetworkId(1), NetworkId(2)] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            for port in [1u16, 2] {
                let k = FlowKey::new(network, protocol, sa(0, 7, port), sa(0, 50, 443));
                keys.push(k);
                keys.push(k.reversed());
            }
        }
    }
    keys
}

fn op() -> impl Strategy<Value = Op> {
    let n = universe().len();
    prop_oneof![
        4 => (0..n, 0..n, 0u8..4).prop_map(|(forward, reverse, life)| Op::Insert { forward, reverse, life }),
        2 => (0usize..64).prop_map(Op::Remove),
        2 => (0usize..64).prop_map(Op::Cool),
        2 => (0..n).prop_map(Op::Lookup),
        1 => (0u8..4).prop_map(|advance| Op::Sweep { advance }),
    ]
}

#[derive(Clone, Debug)]
struct ModelFlow {
    forward: FlowKey,
    reverse: FlowKey,
    value: u32,
    deadline: u64,
    cooling: bool,
}

fn check_model(ops: &[Op], capacity: usize, degenerate: bool) -> Result<(), TestCaseError> {
    let keys = universe();
    let mut t =
        if degenerate { FlowTable::with_degenerate_hash(capacity) } else { FlowTable::with_capacity(capacity, 0xABCD) };
    let mut model: HashMap<u32, ModelFlow> = HashMap::new();
    let mut now = 0u64;
    let mut next_value = 0u32;
    let present = |model: &HashMap<u32, ModelFlow>, k: &FlowKey| {
        model.values().any(|f| (!f.cooling && f.forward == *k) || f.reverse == *k)
    };
    for op in ops {
        match op {
            Op::Insert { forward, reverse, life } => {
                let (f, r) = (keys[*forward], keys[*reverse]);
                let value = next_value;
                next_value += 1;
                let deadline = now + u64::from(*life);
                let got = t.insert(f, r, value, Instant::from_nanos(deadline));
                if f == r || present(&model, &f) || present(&model, &r) {
                    prop_assert_eq!(got, Err(InsertError::Exists));
                } else if model.len() == capacity {
                    prop_assert_eq!(got, Err(InsertError::Full));
                } else {
                    let id = got.map_err(|e| TestCaseError::fail(format!("insert failed: {e}")))?;
                    prop_assert!(!model.contains_key(&id.0));
                    prop_assert!((id.0 as usize) < capacity);
                    model.insert(id.0, ModelFlow { forward: f, reverse: r, value, deadline, cooling: false });
                }
            }
            Op::Remove(pick) => {
                let id = u32::try_from(*pick % capacity.max(1)).unwrap();
                let expect = model.remove(&id).map(|f| f.value);
                prop_assert_eq!(t.remove(FlowId(id)), expect);
            }
            Op::Cool(pick) => {
                let id = u32::try_from(*pick % capacity.max(1)).unwrap();
                let until = now + 2;
                t.cool(FlowId(id), Instant::from_nanos(until));
                if let Some(f) = model.get_mut(&id) {
                    f.cooling = true;
                    f.deadline = until;
                }
            }
            Op::Lookup(k) => {
                let key = keys[*k];
                let expect = model.iter().find_map(|(id, f)| {
                    if !f.cooling && f.forward == key {
                        Some((FlowId(*id), Direction::ToService))
                    } else if f.reverse == key {
                        Some((FlowId(*id), Direction::ToConsumer))
                    } else {
                        None
                    }
                });
                prop_assert_eq!(t.lookup(&key), expect);
            }
            Op::Sweep { advance } => {
                now += u64::from(*advance);
                let at = Instant::from_nanos(now);
                // A full pass: every slot is examined exactly once whatever the cursor.
                let mut freed = HashSet::new();
                t.sweep(
                    at,
                    capacity,
                    |_, e| match e.value % 3 {
                        0 => SweepAction::Keep { deadline: at + std::time::Duration::from_nanos(3) },
                        1 => SweepAction::Cool { until: at + std::time::Duration::from_nanos(2) },
                        _ => SweepAction::Remove,
                    },
                    |id, e| {
                        freed.insert((id.0, e.value));
                    },
                );
                let mut expect_freed = HashSet::new();
                model.retain(|id, f| {
                    if f.deadline > now {
                        return true;
                    }
                    if f.cooling {
                        expect_freed.insert((*id, f.value));
                        return false;
                    }
                    match f.value % 3 {
                        0 => {
                            f.deadline = now + 3;
                            true
                        }
                        1 => {
                            f.cooling = true;
                            f.deadline = now + 2;
                            true
                        }
                        _ => {
                            expect_freed.insert((*id, f.value));
                            false
                        }
                    }
                });
                prop_assert_eq!(freed, expect_freed);
            }
        }
        // After every step the whole observable state matches the model.
        prop_assert_eq!(t.len(), model.len());
        prop_assert_eq!(t.live(), model.values().filter(|f| !f.cooling).count());
        for key in &keys {
            let expect_present = present(&model, key);
            prop_assert_eq!(t.contains(key), expect_present, "key {:?}", key);
        }
        let mut burst = vec![None; keys.len()];
        t.lookup_burst(&keys, &mut burst);
        let single: Vec<_> = keys.iter().map(|k| t.lookup(k)).collect();
        prop_assert_eq!(burst, single);
        let listed: HashMap<u32, (FlowKey, FlowKey, u32, u64, bool)> = t
            .iter()
            .map(|(id, e)| {
                (id.0, (e.forward, e.reverse, e.value, e.deadline.as_nanos(), e.state == EntryState::Cooling))
            })
            .collect();
        let expected: HashMap<u32, (FlowKey, FlowKey, u32, u64, bool)> =
            model.iter().map(|(id, f)| (*id, (f.forward, f.reverse, f.value, f.deadline, f.cooling))).collect();
        prop_assert_eq!(listed, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn table_matches_hashmap_model(ops in proptest::collection::vec(op(), 1..150), capacity in 1usize..10) {
        check_model(&ops, capacity, false)?;
    }

    #[test]
    fn table_matches_hashmap_model_with_colliding_hashes(ops in proptest::collection::vec(op(), 1..150), capacity in 1usize..10) {
        check_model(&ops, capacity, true)?;
    }
}
