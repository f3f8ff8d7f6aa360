//! The secondary queue: connections held by an accept filter until they meet
//! its criteria. listen(2): when it is full, the *oldest* held connection is
//! terminated to make room. Entries are kept in arrival order, so the oldest
//! is always at the front and hold timeouts expire from the front too.
//!
//! Every operation a connection causes (admit, find, release, evict the
//! oldest, expire) is O(1): a peer that completes handshakes and never
//! sends must not make the next connection's upcall slower. The entries
//! live in a slab, linked oldest to newest by slot number (the FIFO), and
//! an open-addressing table (linear probing, deletion by backward shift,
//! so no tombstones pile up) finds a slot from the socket's key.
//!
//! Memory is reserved fallibly: the queue runs inside socket upcalls, where a
//! failed M_NOWAIT allocation must turn into "don't hold this connection",
//! never into a panic. `reserve` sizes both arrays for the backlog when the
//! filter is attached (or listen(2) runs again), so admissions normally
//! allocate nothing; past that they grow by doubling.

use alloc::vec::Vec;

use crate::keymap::{bucket, fills_hole};

/// A held connection: `key` identifies the socket, `since_ms` is when it
/// started to be held, `state` is the filter's parser state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<T> {
    pub key: usize,
    pub since_ms: u64,
    pub state: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit<T> {
    /// Held; nothing had to go.
    Held,
    /// Held after evicting the returned (oldest) connection, which the
    /// caller must terminate.
    HeldEvicting(Held<T>),
    /// No memory to hold it: the caller should pass it on unfiltered.
    NoMemory,
    /// Already held (a repeated notification); nothing changed.
    AlreadyHeld,
}

impl<T> Admit<T> {
    /// The key of the connection evicted to make room, if any.
    pub fn victim(&self) -> Option<usize> {
        match self {
            Admit::HeldEvicting(v) => Some(v.key),
            _ => None,
        }
    }
}

/// No slot: end of a list, or an empty index bucket.
const NIL: u32 = u32::MAX;

/// A slab slot: a held connection and its FIFO neighbours, or (free) a
/// link in the free list through `next`.
#[derive(Debug, Clone, Copy)]
struct Slot<T> {
    held: Held<T>,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
pub struct HoldQueue<T> {
    slots: Vec<Slot<T>>,
    /// Slot numbers, or NIL; its length is 0 or a power of two at least
    /// twice `slots.len()`, so probes stay short and a free bucket exists.
    index: Vec<u32>,
    free: u32,
    oldest: u32,
    newest: u32,
    len: usize,
    capacity: usize,
}

impl<T: Copy> HoldQueue<T> {
    /// Allocates nothing; see `reserve`.
    pub fn new(capacity: usize) -> Self {
        HoldQueue {
            slots: Vec::new(),
            index: Vec::new(),
            free: NIL,
            oldest: NIL,
            newest: NIL,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Makes room for `capacity()` entries now, so that admissions up to it
    /// allocate nothing. False when memory is short: the queue still works
    /// and grows when it admits.
    pub fn reserve(&mut self) -> bool {
        let want = self.capacity.min(NIL as usize - 1);
        self.grow_to(want)
    }

    /// listen() again changes the backlog and so the capacity; a smaller
    /// capacity takes effect at the next admission.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `n` slots, and the index for them. Fallible, and
    /// all-or-nothing as far as the entries go: a failure leaves them as
    /// they were.
    fn grow_to(&mut self, n: usize) -> bool {
        if n >= NIL as usize {
            return false;
        }
        let Some(buckets) = n.checked_mul(2).and_then(usize::checked_next_power_of_two) else {
            return false;
        };
        if n > self.slots.capacity() && self.slots.try_reserve_exact(n - self.slots.len()).is_err()
        {
            return false;
        }
        if buckets > self.index.len() {
            let mut index = Vec::new();
            if index.try_reserve_exact(buckets).is_err() {
                return false;
            }
            index.resize(buckets, NIL);
            let old = core::mem::replace(&mut self.index, index);
            for s in old.into_iter().filter(|&s| s != NIL) {
                if let Some(key) = self.slots.get(s as usize).map(|e| e.held.key) {
                    self.index_insert(key, s);
                }
            }
        }
        true
    }

    /// Stores `e` in a free slot, growing the slab (doubling) when there
    /// is none; None when that allocation fails.
    fn put(&mut self, e: Slot<T>) -> Option<u32> {
        if let Some(f) = self.slots.get_mut(self.free as usize) {
            let s = self.free;
            self.free = f.next;
            *f = e;
            return Some(s);
        }
        let n = self.slots.len();
        if n == self.slots.capacity() || (n + 1) * 2 > self.index.len() {
            let want = n.saturating_mul(2).max(4);
            if !self.grow_to(want) {
                return None;
            }
        }
        let s = u32::try_from(n).ok()?;
        // grow_to() reserved room: this push does not allocate.
        self.slots.push(e);
        Some(s)
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    fn index_insert(&mut self, key: usize, slot: u32) {
        let mask = self.mask();
        let mut i = bucket(key, mask);
        for _ in 0..self.index.len() {
            match self.index.get_mut(i) {
                Some(b) if *b == NIL => {
                    *b = slot;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The bucket holding `key`'s slot.
    fn find(&self, key: usize) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = bucket(key, mask);
        for _ in 0..self.index.len() {
            let s = *self.index.get(i)?;
            if s == NIL {
                return None;
            }
            if self.slots.get(s as usize)?.held.key == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Empties bucket `i` and shifts back the entries of its probe run
    /// that would no longer be found past the hole.
    fn index_remove(&mut self, mut i: usize) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = match self.index.get(j) {
                Some(&s) if s != NIL => s,
                _ => break,
            };
            let Some(k) = self.slots.get(s as usize).map(|e| e.held.key) else {
                break;
            };
            let home = bucket(k, mask);
            if fills_hole(i, j, home) {
                if let Some(b) = self.index.get_mut(i) {
                    *b = s;
                }
                i = j;
            }
        }
        if let Some(b) = self.index.get_mut(i) {
            *b = NIL;
        }
    }

    fn unlink(&mut self, s: u32) -> Option<Held<T>> {
        let e = *self.slots.get(s as usize)?;
        match self.slots.get_mut(e.prev as usize) {
            Some(p) => p.next = e.next,
            None => self.oldest = e.next,
        }
        match self.slots.get_mut(e.next as usize) {
            Some(n) => n.prev = e.prev,
            None => self.newest = e.prev,
        }
        if let Some(f) = self.slots.get_mut(s as usize) {
            f.next = self.free;
            f.prev = NIL;
        }
        self.free = s;
        self.len -= 1;
        Some(e.held)
    }

    fn remove_slot(&mut self, s: u32) -> Option<Held<T>> {
        let key = self.slots.get(s as usize)?.held.key;
        let b = self.find(key)?;
        self.index_remove(b);
        self.unlink(s)
    }

    fn pop_oldest(&mut self) -> Option<Held<T>> {
        if self.oldest == NIL {
            return None;
        }
        self.remove_slot(self.oldest)
    }

    pub fn contains(&self, key: usize) -> bool {
        self.find(key).is_some()
    }

    /// Holds `key`. When the queue is full the oldest entry is evicted and
    /// returned; if it has shrunk below its length, the extra oldest entries
    /// are handed to `evicted` first (whole, so the caller has everything
    /// it needs to terminate them: they are gone from the queue even when
    /// the admission itself then fails with `NoMemory`).
    pub fn admit(
        &mut self,
        key: usize,
        since_ms: u64,
        state: T,
        mut evicted: impl FnMut(Held<T>),
    ) -> Admit<T> {
        if self.contains(key) {
            return Admit::AlreadyHeld;
        }
        while self.len > self.capacity {
            if let Some(old) = self.pop_oldest() {
                evicted(old);
            }
        }
        // A slot before choosing a victim, so a failed allocation leaves
        // the queue exactly as it was; when full, the victim's slot is
        // the one reused.
        let victim = if self.len >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let newest = self.newest;
        let Some(s) = self.put(Slot {
            held: Held {
                key,
                since_ms,
                state,
            },
            prev: newest,
            next: NIL,
        }) else {
            // Only reachable with no victim: a victim frees a slot.
            return Admit::NoMemory;
        };
        match self.slots.get_mut(newest as usize) {
            Some(n) => n.next = s,
            None => self.oldest = s,
        }
        self.newest = s;
        self.len += 1;
        self.index_insert(key, s);
        match victim {
            Some(v) => Admit::HeldEvicting(v),
            None => Admit::Held,
        }
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Held<T>> {
        let s = *self.index.get(self.find(key)?)?;
        self.slots.get_mut(s as usize).map(|e| &mut e.held)
    }

    pub fn remove(&mut self, key: usize) -> Option<Held<T>> {
        let b = self.find(key)?;
        let s = *self.index.get(b)?;
        self.index_remove(b);
        self.unlink(s)
    }

    /// Removes and returns the oldest entry if it has been held for at
    /// least `timeout_ms` at `now_ms`.
    pub fn pop_expired(&mut self, now_ms: u64, timeout_ms: u64) -> Option<Held<T>> {
        let front = self.slots.get(self.oldest as usize)?;
        if now_ms.saturating_sub(front.held.since_ms) >= timeout_ms {
            self.pop_oldest()
        } else {
            None
        }
    }

    /// Empties the queue (filter removal, listener close), oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Held<T>> + '_ {
        core::iter::from_fn(move || self.pop_oldest())
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Held<T>> {
        let mut s = self.oldest;
        core::iter::from_fn(move || {
            let e = self.slots.get(s as usize)?;
            s = e.next;
            Some(&e.held)
        })
    }
}

/// Bytes one held connection costs the queue once its arrays are sized:
/// its slab slot and its two buckets in the index.
pub const fn bytes_per_entry<T>() -> usize {
    core::mem::size_of::<Slot<T>>() + 2 * core::mem::size_of::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    #[test]
    fn evicts_oldest_when_full() {
        let mut q = HoldQueue::new(3);
        let mut gone = Vec::new();
        for k in 1..=8usize {
            match q.admit(k, k as u64, (), |_| unreachable!()) {
                Admit::Held => {}
                Admit::HeldEvicting(v) => gone.push(v.key),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(gone, [1, 2, 3, 4, 5]);
        let left: Vec<usize> = q.iter().map(|e| e.key).collect();
        assert_eq!(left, [6, 7, 8]);
    }

    #[test]
    fn shrinking_capacity_evicts_extra_oldest() {
        let mut q = HoldQueue::new(4);
        for k in 1..=4usize {
            q.admit(k, 0, (), |_| {});
        }
        q.set_capacity(2);
        let mut extra = Vec::new();
        let r = q.admit(5, 0, (), |k| extra.push(k.key));
        assert_eq!(extra, [1, 2]);
        assert_eq!(r.victim(), Some(3));
        assert_eq!(q.len(), 2);
        let left: Vec<usize> = q.iter().map(|e| e.key).collect();
        assert_eq!(left, [4, 5]);
    }

    #[test]
    fn duplicate_admission_is_ignored() {
        let mut q = HoldQueue::new(2);
        assert_eq!(q.admit(7, 0, 1u8, |_| {}), Admit::Held);
        assert_eq!(q.admit(7, 5, 2u8, |_| {}), Admit::AlreadyHeld);
        assert_eq!(q.get_mut(7).map(|e| e.state), Some(1));
    }

    #[test]
    fn expiry_is_from_the_front() {
        let mut q = HoldQueue::new(8);
        q.admit(1, 100, (), |_| {});
        q.admit(2, 150, (), |_| {});
        assert!(q.pop_expired(199, 100).is_none());
        assert_eq!(q.pop_expired(200, 100).map(|e| e.key), Some(1));
        assert!(q.pop_expired(200, 100).is_none());
        assert_eq!(q.pop_expired(250, 100).map(|e| e.key), Some(2));
        assert!(q.pop_expired(1000, 0).is_none());
    }

    #[test]
    fn remove_and_drain() {
        let mut q = HoldQueue::new(8);
        for k in 1..=4usize {
            q.admit(k, 0, (), |_| {});
        }
        assert_eq!(q.remove(2).map(|e| e.key), Some(2));
        assert!(q.remove(2).is_none());
        let all: Vec<usize> = q.drain().map(|e| e.key).collect();
        assert_eq!(all, [1, 3, 4]);
        assert!(q.is_empty());
        assert!(!q.contains(1));
    }

    #[test]
    fn reserve_sizes_for_the_capacity_once() {
        let mut q = HoldQueue::new(100);
        assert!(q.reserve());
        let (slots, index) = (q.slots.capacity(), q.index.len());
        assert!(slots >= 100 && index >= 200);
        for k in 0..1000usize {
            q.admit(k * 64, 0, 0u32, |_| {});
        }
        assert_eq!((q.slots.capacity(), q.index.len()), (slots, index));
        assert_eq!(q.len(), 100);
    }

    #[test]
    fn socket_like_keys_collide_and_are_still_found() {
        // Addresses from one UMA zone: same low bits, close together.
        let mut q = HoldQueue::new(4096);
        let base = 0xffff_f800_0312_0000usize;
        for k in 0..4096 {
            q.admit(base + k * 0x300, k as u64, k, |_| unreachable!());
        }
        for k in (0..4096).step_by(3) {
            assert_eq!(q.remove(base + k * 0x300).map(|e| e.state), Some(k));
        }
        for k in 0..4096 {
            assert_eq!(q.contains(base + k * 0x300), k % 3 != 0, "{k}");
        }
    }

    #[test]
    fn memory_per_held_connection() {
        // Printed for listenq(4); the kernel's state is bigger (kmod/src/filters.rs).
        assert_eq!(bytes_per_entry::<()>(), 8 + 8 + 8 + 8);
    }

    /// The model: a FIFO scanned linearly, the old implementation.
    #[derive(Debug, Clone)]
    enum Op {
        Admit(u8),
        Remove(u8),
        Get(u8),
        Expire(u16, u16),
        Capacity(u8),
        Drain,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => any::<u8>().prop_map(|k| Op::Admit(k % 48)),
            2 => any::<u8>().prop_map(|k| Op::Remove(k % 48)),
            1 => any::<u8>().prop_map(|k| Op::Get(k % 48)),
            1 => (any::<u16>(), any::<u16>()).prop_map(|(n, t)| Op::Expire(n % 600, t % 100)),
            1 => any::<u8>().prop_map(|c| Op::Capacity(c % 20)),
            1 => Just(Op::Drain),
        ]
    }

    proptest::proptest! {
        #[test]
        fn never_exceeds_capacity_and_keeps_newest(cap in 1usize..16, n in 0usize..64) {
            let mut q = HoldQueue::new(cap);
            let mut evicted = 0usize;
            for k in 0..n {
                match q.admit(k, 0, (), |_| evicted += 1) {
                    Admit::HeldEvicting(_) => evicted += 1,
                    Admit::Held => {}
                    other => proptest::prop_assert!(false, "{:?}", other),
                }
                proptest::prop_assert!(q.len() <= cap);
            }
            proptest::prop_assert_eq!(evicted, n.saturating_sub(cap));
            let keys: Vec<usize> = q.iter().map(|e| e.key).collect();
            let want: Vec<usize> = (n.saturating_sub(cap)..n).collect();
            proptest::prop_assert_eq!(keys, want);
        }

        #[test]
        fn behaves_like_a_scanned_fifo(
            cap in 1usize..20,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut q = HoldQueue::new(cap);
            let mut m: VecDeque<Held<u32>> = VecDeque::new();
            let mut mcap = cap;
            let mut now = 0u64;
            for (i, o) in ops.into_iter().enumerate() {
                let i = i as u32;
                match o {
                    Op::Admit(k) => {
                        let k = usize::from(k) * 0x240;
                        now += 1;
                        let mut got = Vec::new();
                        let r = q.admit(k, now, i, |v| got.push(v));
                        let mut want = Vec::new();
                        let wr = if m.iter().any(|e| e.key == k) {
                            Admit::AlreadyHeld
                        } else {
                            while m.len() > mcap {
                                want.extend(m.pop_front());
                            }
                            let v = if m.len() == mcap { m.pop_front() } else { None };
                            m.push_back(Held { key: k, since_ms: now, state: i });
                            v.map_or(Admit::Held, Admit::HeldEvicting)
                        };
                        proptest::prop_assert_eq!(got, want);
                        proptest::prop_assert_eq!(r, wr);
                    }
                    Op::Remove(k) => {
                        let k = usize::from(k) * 0x240;
                        let w = m.iter().position(|e| e.key == k).and_then(|p| m.remove(p));
                        proptest::prop_assert_eq!(q.remove(k), w);
                    }
                    Op::Get(k) => {
                        let k = usize::from(k) * 0x240;
                        let w = m.iter_mut().find(|e| e.key == k);
                        let g = q.get_mut(k);
                        proptest::prop_assert_eq!(g.as_deref(), w.as_deref());
                        if let (Some(g), Some(w)) = (g, w) {
                            g.state += 1000;
                            w.state += 1000;
                        }
                    }
                    Op::Expire(at, t) => {
                        let at = u64::from(at);
                        let t = u64::from(t);
                        let w = match m.front() {
                            Some(f) if at.saturating_sub(f.since_ms) >= t => m.pop_front(),
                            _ => None,
                        };
                        proptest::prop_assert_eq!(q.pop_expired(at, t), w);
                    }
                    Op::Capacity(c) => {
                        q.set_capacity(usize::from(c));
                        mcap = usize::from(c).max(1);
                    }
                    Op::Drain => {
                        let got: Vec<Held<u32>> = q.drain().collect();
                        let want: Vec<Held<u32>> = m.drain(..).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                proptest::prop_assert_eq!(q.len(), m.len());
                let order: Vec<Held<u32>> = q.iter().copied().collect();
                let want: Vec<Held<u32>> = m.iter().copied().collect();
                proptest::prop_assert_eq!(order, want);
                for e in m.iter() {
                    proptest::prop_assert!(q.contains(e.key));
                }
            }
        }
    }
}
