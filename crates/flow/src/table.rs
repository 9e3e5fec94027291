//! The fixed-capacity per-worker flow table, holding both directions of every flow.
//!
//! Layout, all allocated once in [`FlowTable::with_capacity`] and never grown:
//!
//! - a slab of `capacity` slots, each an `Option<Entry<V>>` plus the two key hashes, with a
//!   free list (a stack of slot indices preallocated to full size);
//! - an open-addressing index with linear probing, at least 4 buckets per flow (2 keys per flow,
//!   load ≤ 0.5). A bucket is one `u64`: the upper 32 bits are the key's hash (its low bits are
//!   the home bucket, the rest skip full-key compares), bit 31 says forward/reverse, the low 31
//!   bits are `slot + 1` (0 = empty). A lookup reads buckets until an empty one, and compares the
//!   full key only when the 32 hash bits match.
//!
//! Deletion is backward-shift (no tombstones), so probe chains stay as short as if the deleted
//! key had never been inserted, however long the table runs.
//!
//! A flow is `Live` (both keys indexed) or `Cooling` (only the reverse key indexed): the NAT
//! port cool-down keeps `(backend, nat ip:port)` reserved after the flow ends, while the
//! consumer may already open a new flow from the same 5-tuple.
//!
//! Bookkeeping (which keys are indexed, their hashes) is private, so a caller changing an
//! entry's public fields through [`FlowTable::get_mut`] cannot corrupt the index; it should
//! still not change `forward`/`reverse` (lookups by the old keys would then miss).

use crate::clock::Instant;
use crate::key::{Direction, FlowKey};
use std::fmt;

/// The slot index of a flow in its table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowId(pub u32);

/// Whether a flow passes traffic or only reserves its NAT port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EntryState {
    /// Both keys are in the index.
    Live,
    /// Only the reverse key is in the index, until the cool-down deadline.
    Cooling,
}

/// One flow.
#[derive(Debug)]
pub struct Entry<V> {
    /// Consumer → endpoint, as received ([`Direction::ToService`]).
    pub forward: FlowKey,
    /// Backend → NAT ip:port, as received ([`Direction::ToConsumer`]).
    pub reverse: FlowKey,
    /// The caller's per-flow data (rewrite, checksum deltas, TCP tracker, counters...).
    pub value: V,
    /// When the sweep looks at this flow next: idle expiry when live, end of cool-down when cooling.
    pub deadline: Instant,
    /// Live or cooling.
    pub state: EntryState,
}

/// Why an insert was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum InsertError {
    /// Every slot holds a flow; nothing was evicted.
    #[error("flow table full")]
    Full,
    /// The forward or reverse key is already in the table (live or cooling), or both keys are equal.
    #[error("flow key already present")]
    Exists,
}

/// What the sweep does with an expired live flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SweepAction {
    /// Keep it live and look again at `deadline` (the flow saw traffic since it was armed).
    Keep {
        /// The new deadline.
        deadline: Instant,
    },
    /// End it: free the forward key now, keep the reverse key reserved until `until`.
    Cool {
        /// End of the port cool-down.
        until: Instant,
    },
    /// Free it now (both keys, the slot); `on_free` gets the entry.
    Remove,
}

/// The largest number of flows one table holds (bounded by the 31-bit slot field of a bucket;
/// far beyond what a worker's memory allows anyway).
pub const MAX_FLOWS: usize = 1 << 28;

const EMPTY: u64 = 0;
const REVERSE_BIT: u64 = 1 << 31;
const SLOT_MASK: u64 = REVERSE_BIT - 1;

struct Slot<V> {
    entry: Option<Entry<V>>,
    forward_hash: u32,
    reverse_hash: u32,
    forward_indexed: bool,
}

/// A fixed-capacity flow table owned by one worker.
pub struct FlowTable<V> {
    slots: Vec<Slot<V>>,
    /// Free slot indices; popped from the end, so slots fill from index 0 upwards.
    free: Vec<u32>,
    index: Vec<u64>,
    mask: usize,
    seeds: [u64; 3],
    len: usize,
    live: usize,
    cursor: usize,
    /// Tests: squash every hash into a few values, to force long probe chains and tag clashes.
    #[cfg(test)]
    degenerate_hash: bool,
}

impl<V> fmt::Debug for FlowTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .field("live", &self.live)
            .field("index_buckets", &self.index.len())
            .finish_non_exhaustive()
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64×64→128 multiply folded to 64 bits (the core of foldhash/wyhash).
#[allow(clippy::cast_possible_truncation)] // Taking the low and high halves is the point.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

#[allow(clippy::cast_possible_truncation)] // Slot indices are < MAX_FLOWS < 2^32.
fn flow_id(slot: usize) -> FlowId {
    FlowId(slot as u32)
}

fn bucket(hash: u32, slot: usize, direction: Direction) -> u64 {
    let dir = match direction {
        Direction::ToService => 0,
        Direction::ToConsumer => REVERSE_BIT,
    };
    (u64::from(hash) << 32) | dir | (slot as u64 + 1)
}

#[allow(clippy::cast_possible_truncation)] // The upper half of a u64 fits a u32.
fn bucket_hash(b: u64) -> u32 {
    (b >> 32) as u32
}

#[allow(clippy::cast_possible_truncation)] // 31 bits fit a usize on every supported target.
fn bucket_slot(b: u64) -> usize {
    ((b & SLOT_MASK) as usize).wrapping_sub(1)
}

impl<V> FlowTable<V> {
    /// A table for `flows` flows (clamped to [`MAX_FLOWS`]); everything is allocated here, once.
    /// `seed` keys the hash (use a random one per table, so consumers cannot aim collisions).
    pub fn with_capacity(flows: usize, seed: u64) -> Self {
        let flows = flows.min(MAX_FLOWS);
        let buckets = flows.saturating_mul(4).max(8).next_power_of_two();
        let mut slots = Vec::with_capacity(flows);
        slots.resize_with(flows, || Slot { entry: None, forward_hash: 0, reverse_hash: 0, forward_indexed: false });
        let mut free = Vec::with_capacity(flows);
        free.extend((0..flows).rev().map(|i| flow_id(i).0));
        let mut state = seed;
        FlowTable {
            slots,
            free,
            index: vec![EMPTY; buckets],
            mask: buckets - 1,
            seeds: [splitmix64(&mut state), splitmix64(&mut state), splitmix64(&mut state)],
            len: 0,
            live: 0,
            cursor: 0,
            #[cfg(test)]
            degenerate_hash: false,
        }
    }

    /// Tests: a table whose hash has only 4 values (every key in one probe chain, tags clash).
    #[cfg(test)]
    pub(crate) fn with_degenerate_hash(flows: usize) -> Self {
        let mut t = Self::with_capacity(flows, 0);
        t.degenerate_hash = true;
        t
    }

    /// How many flows fit.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Flows held, live and cooling.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Live flows (both keys indexed).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Flows cooling down (only the reverse key indexed).
    pub fn cooling(&self) -> usize {
        self.len - self.live
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    #[inline]
    /// The table's (seeded) hash of `key`, for [`FlowTable::lookup_hashed`].
    pub fn hash(&self, key: &FlowKey) -> u32 {
        let (a, b) = key.words();
        let h = folded_multiply(a ^ self.seeds[0], b ^ self.seeds[1]);
        let h = bucket_hash(folded_multiply(h ^ self.seeds[2], 0x9E37_79B9_7F4A_7C15));
        #[cfg(test)]
        if self.degenerate_hash {
            return h & 3;
        }
        h
    }

    #[inline]
    fn find(&self, key: &FlowKey, hash: u32) -> Option<(FlowId, Direction)> {
        let mut pos = hash as usize & self.mask;
        for _ in 0..self.index.len() {
            let b = *self.index.get(pos)?;
            if b == EMPTY {
                return None;
            }
            if bucket_hash(b) == hash {
                let slot = bucket_slot(b);
                if let Some(entry) = self.slots.get(slot).and_then(|s| s.entry.as_ref()) {
                    let (stored, direction) = if b & REVERSE_BIT == 0 {
                        (&entry.forward, Direction::ToService)
                    } else {
                        (&entry.reverse, Direction::ToConsumer)
                    };
                    if stored == key {
                        return Some((flow_id(slot), direction));
                    }
                }
            }
            pos = (pos + 1) & self.mask;
        }
        None
    }

    /// The flow a packet with `key` belongs to, and its direction: the forward key gives
    /// [`Direction::ToService`], the reverse key [`Direction::ToConsumer`]. A cooling flow is
    /// found by its reverse key only (check [`Entry::state`]).
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(FlowId, Direction)> {
        self.find(key, self.hash(key))
    }

    /// [`FlowTable::lookup`] with the hash already computed by [`FlowTable::hash`].
    #[inline]
    pub fn lookup_hashed(&self, key: &FlowKey, hash: u32) -> Option<(FlowId, Direction)> {
        self.find(key, hash)
    }

    /// Reads the first index bucket of `hash`, so that a lookup soon after finds it in cache;
    /// a burst touches all its buckets first and the cache misses overlap. Returns the bucket
    /// (fold it into `std::hint::black_box` so the read is not optimised away).
    #[inline]
    pub fn touch_bucket(&self, hash: u32) -> u64 {
        self.index.get(hash as usize & self.mask).copied().unwrap_or(0)
    }

    /// [`FlowTable::lookup`] for a burst: `out[i]` gets the result for `keys[i]` (up to the
    /// shorter of the two). Faster than one lookup at a time on big tables: each group of keys
    /// first touches its index buckets, then the entries they point to, so the cache misses of
    /// the group overlap instead of following one another.
    pub fn lookup_burst(&self, keys: &[FlowKey], out: &mut [Option<(FlowId, Direction)>]) {
        const GROUP: usize = 16;
        for (keys, out) in keys.chunks(GROUP).zip(out.chunks_mut(GROUP)) {
            let mut hashes = [0u32; GROUP];
            let mut touched = 0u64;
            for (h, key) in hashes.iter_mut().zip(keys) {
                *h = self.hash(key);
                touched ^= self.index.get(*h as usize & self.mask).copied().unwrap_or(0);
            }
            for h in hashes.iter().take(keys.len()) {
                let b = self.index.get(*h as usize & self.mask).copied().unwrap_or(0);
                if bucket_hash(b) == *h {
                    if let Some(Some(e)) = self.slots.get(bucket_slot(b)).map(|s| s.entry.as_ref()) {
                        touched ^= e.deadline.as_nanos();
                    }
                }
            }
            std::hint::black_box(touched);
            for ((o, key), h) in out.iter_mut().zip(keys).zip(hashes) {
                *o = self.find(key, h);
            }
        }
    }

    /// Whether `key` is indexed (the forward key of a live flow, or any flow's reverse key).
    pub fn contains(&self, key: &FlowKey) -> bool {
        self.lookup(key).is_some()
    }

    fn index_insert(&mut self, b: u64) {
        let mut pos = bucket_hash(b) as usize & self.mask;
        // Load ≤ 0.5, so an empty bucket is always found; the bound only guards the loop.
        for _ in 0..self.index.len() {
            if let Some(slot) = self.index.get_mut(pos) {
                if *slot == EMPTY {
                    *slot = b;
                    return;
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Remove the exact bucket `b`, shifting later members of its probe run back.
    fn index_remove(&mut self, b: u64) {
        let mask = self.mask;
        let mut pos = bucket_hash(b) as usize & mask;
        let mut found = false;
        for _ in 0..self.index.len() {
            match self.index.get(pos) {
                Some(&x) if x == b => {
                    found = true;
                    break;
                }
                Some(&EMPTY) | None => return,
                Some(_) => pos = (pos + 1) & mask,
            }
        }
        if !found {
            return;
        }
        let mut hole = pos;
        let mut next = pos;
        for _ in 0..self.index.len() {
            next = (next + 1) & mask;
            let x = self.index.get(next).copied().unwrap_or(EMPTY);
            if x == EMPTY {
                break;
            }
            let home = bucket_hash(x) as usize & mask;
            // `x` may move back into the hole if the hole lies between its home and `next`.
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                if let Some(h) = self.index.get_mut(hole) {
                    *h = x;
                }
                hole = next;
            }
        }
        if let Some(h) = self.index.get_mut(hole) {
            *h = EMPTY;
        }
    }

    /// Add a live flow keyed both ways. Refused with [`InsertError::Exists`] if either key is
    /// already present (live or cooling) or the two keys are equal, with [`InsertError::Full`] if
    /// no slot is free; on refusal nothing changes.
    pub fn insert(
        &mut self,
        forward: FlowKey,
        reverse: FlowKey,
        value: V,
        deadline: Instant,
    ) -> Result<FlowId, InsertError> {
        let forward_hash = self.hash(&forward);
        let reverse_hash = self.hash(&reverse);
        if forward == reverse
            || self.find(&forward, forward_hash).is_some()
            || self.find(&reverse, reverse_hash).is_some()
        {
            return Err(InsertError::Exists);
        }
        let Some(free) = self.free.pop() else {
            return Err(InsertError::Full);
        };
        let slot_index = free as usize;
        let Some(slot) = self.slots.get_mut(slot_index) else {
            return Err(InsertError::Full);
        };
        *slot = Slot {
            entry: Some(Entry { forward, reverse, value, deadline, state: EntryState::Live }),
            forward_hash,
            reverse_hash,
            forward_indexed: true,
        };
        self.index_insert(bucket(forward_hash, slot_index, Direction::ToService));
        self.index_insert(bucket(reverse_hash, slot_index, Direction::ToConsumer));
        self.len += 1;
        self.live += 1;
        Ok(flow_id(slot_index))
    }

    /// The flow in slot `id`, `None` for a free slot or an id out of range.
    #[inline]
    pub fn get(&self, id: FlowId) -> Option<&Entry<V>> {
        self.slots.get(id.0 as usize)?.entry.as_ref()
    }

    /// The flow in slot `id`, mutably. Do not change `forward` or `reverse` through it.
    #[inline]
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Entry<V>> {
        self.slots.get_mut(id.0 as usize)?.entry.as_mut()
    }

    /// End a flow but keep its NAT port reserved: the forward key leaves the index now (the same
    /// consumer 5-tuple can open a new flow), the reverse key stays until `until` (state
    /// `Cooling`, deadline `until`). Cooling an already cooling flow moves its deadline.
    pub fn cool(&mut self, id: FlowId, until: Instant) {
        let slot_index = id.0 as usize;
        let Some(slot) = self.slots.get_mut(slot_index) else {
            return;
        };
        let Some(entry) = slot.entry.as_mut() else {
            return;
        };
        entry.state = EntryState::Cooling;
        entry.deadline = until;
        if slot.forward_indexed {
            slot.forward_indexed = false;
            let b = bucket(slot.forward_hash, slot_index, Direction::ToService);
            self.index_remove(b);
            self.live -= 1;
        }
    }

    /// Free slot `i` and both of its keys; returns the entry.
    fn take(&mut self, slot_index: usize) -> Option<Entry<V>> {
        let slot = self.slots.get_mut(slot_index)?;
        let entry = slot.entry.take()?;
        let forward = slot.forward_indexed.then(|| bucket(slot.forward_hash, slot_index, Direction::ToService));
        let reverse = bucket(slot.reverse_hash, slot_index, Direction::ToConsumer);
        slot.forward_indexed = false;
        if let Some(b) = forward {
            self.index_remove(b);
            self.live -= 1;
        }
        self.index_remove(reverse);
        self.len -= 1;
        self.free.push(flow_id(slot_index).0);
        Some(entry)
    }

    /// Free a flow now (both keys, the slot), live or cooling; `None` if the slot was free.
    pub fn remove(&mut self, id: FlowId) -> Option<V> {
        self.take(id.0 as usize).map(|e| e.value)
    }

    /// Examine up to `budget` slots round-robin from where the last sweep stopped; for each flow
    /// whose deadline is `<= now`:
    ///
    /// - live: call `f` and obey its [`SweepAction`] (`Remove` then calls `on_free`);
    /// - cooling: the cool-down is over, so the slot is freed and `on_free` is called (release
    ///   the NAT port there).
    pub fn sweep(
        &mut self,
        now: Instant,
        budget: usize,
        mut f: impl FnMut(FlowId, &mut Entry<V>) -> SweepAction,
        mut on_free: impl FnMut(FlowId, &Entry<V>),
    ) {
        let capacity = self.slots.len();
        if capacity == 0 {
            return;
        }
        for _ in 0..budget.min(capacity) {
            let i = self.cursor;
            self.cursor = if i + 1 >= capacity { 0 } else { i + 1 };
            let id = flow_id(i);
            let Some(entry) = self.slots.get_mut(i).and_then(|s| s.entry.as_mut()) else {
                continue;
            };
            if entry.deadline > now {
                continue;
            }
            let action = match entry.state {
                EntryState::Live => f(id, entry),
                EntryState::Cooling => SweepAction::Remove,
            };
            match action {
                SweepAction::Keep { deadline } => entry.deadline = deadline,
                SweepAction::Cool { until } => self.cool(id, until),
                SweepAction::Remove => {
                    if let Some(entry) = self.take(i) {
                        on_free(id, &entry);
                    }
                }
            }
        }
    }

    /// Every held flow, live and cooling, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &Entry<V>)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.entry.as_ref().map(|e| (flow_id(i), e)))
    }

    /// Every held flow, mutably. Do not change `forward` or `reverse` through it.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (FlowId, &mut Entry<V>)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| s.entry.as_mut().map(|e| (flow_id(i), e)))
    }
}

#[cfg(test)]
mod tests;
