//! Fair eviction for the hold queue (holdq.rs), opt-in per listener: when
//! the queue is full, the connection to let go is the oldest of the
//! *source* that holds the most, not the oldest overall. A source is what
//! the kernel side says it is (a peer address prefix, a peer uid): a key.
//! One address that opens connections faster than real clients send their
//! first bytes then only ever evicts its own.
//!
//! Every operation is O(1): sources are kept in buckets by how many
//! connections each holds (a list per count, as an LFU cache keeps them),
//! and the largest count in use is tracked; a count changes by one at a
//! time, so the largest one moves by at most one too. Each source keeps
//! its connections in arrival order (its oldest is its first).
//!
//! The structure follows the hold queue's slots: a held connection is
//! named by its slot number, and `links` has one entry per slot the queue
//! has room for. Memory is reserved fallibly, as the queue's own; a
//! connection this cannot account for (memory short) is not held.

use alloc::vec::Vec;

use crate::keymap::KeyMap;

/// No slot, no source: end of a list.
const NIL: u32 = u32::MAX;

/// What the kernel side names a source by. Never 0 (the map's empty
/// bucket): callers map 0 to something else (`Source::new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source(usize);

impl Source {
    pub fn new(key: u64) -> Source {
        // Shifted by one so that 0 is a key too; only u64::MAX then
        // shares a key (with 0). A usize holds a u64 on every target
        // listenq builds for; on a narrower one the high half is folded in
        // rather than dropped.
        let k = key.wrapping_add(1);
        let folded = usize::try_from(k).unwrap_or((k ^ (k >> 32)) as usize);
        Source(if folded == 0 { 1 } else { folded })
    }

    pub fn key(self) -> usize {
        self.0
    }
}

/// A held slot's place in its source's list.
#[derive(Debug, Clone, Copy)]
struct Link {
    src: u32,
    prev: u32,
    next: u32,
}

const UNUSED: Link = Link {
    src: NIL,
    prev: NIL,
    next: NIL,
};

/// A source with at least one held connection.
#[derive(Debug, Clone, Copy)]
struct Src {
    key: usize,
    count: u32,
    /// Its connections' slots, oldest first.
    first: u32,
    last: u32,
    /// Neighbours in the bucket of sources with the same count (or, for a
    /// free record, `bnext` links the free list).
    bprev: u32,
    bnext: u32,
}

#[derive(Debug, Default)]
pub struct Fair {
    /// One per hold queue slot (index = slot number).
    links: Vec<Link>,
    /// Source records; free ones are linked through `bnext`.
    srcs: Vec<Src>,
    free: u32,
    /// Source key -> index in `srcs`.
    by_key: KeyMap<u32>,
    /// `buckets[c]`: the first source holding exactly `c` connections.
    buckets: Vec<u32>,
    /// The largest count any source has (0: none held).
    max: u32,
    /// Sources with a connection held.
    distinct: usize,
}

impl Fair {
    pub const fn new() -> Fair {
        Fair {
            links: Vec::new(),
            srcs: Vec::new(),
            free: NIL,
            by_key: KeyMap::new(),
            buckets: Vec::new(),
            max: 0,
            distinct: 0,
        }
    }

    /// Room for `slots` held slots and as many sources; false when memory
    /// is short (nothing changed that is in use).
    pub fn reserve(&mut self, slots: usize) -> bool {
        let Some(buckets) = slots.checked_add(1) else {
            return false;
        };
        if !grow(&mut self.links, slots, UNUSED) || !grow(&mut self.buckets, buckets, NIL) {
            return false;
        }
        if self.srcs.capacity() < slots
            && self
                .srcs
                .try_reserve_exact(slots - self.srcs.len())
                .is_err()
        {
            return false;
        }
        self.by_key.reserve(slots.saturating_sub(self.by_key.len()))
    }

    /// Sources holding at least one connection.
    pub fn distinct(&self) -> usize {
        self.distinct
    }

    /// Connections `source` holds.
    pub fn count(&self, source: Source) -> u32 {
        self.by_key
            .get(source.key())
            .and_then(|i| self.srcs.get(i as usize))
            .map_or(0, |s| s.count)
    }

    /// The oldest connection of the source that holds the most (any of
    /// them, when several hold as many).
    pub fn victim(&self) -> Option<u32> {
        let i = *self.buckets.get(self.max as usize)?;
        self.srcs.get(i as usize).map(|s| s.first)
    }

    /// The oldest connection `source` holds.
    pub fn oldest_of(&self, source: Source) -> Option<u32> {
        let i = self.by_key.get(source.key())?;
        self.srcs
            .get(i as usize)
            .map(|s| s.first)
            .filter(|&f| f != NIL)
    }

    /// Slot `slot` now holds a connection of `source`. False (nothing
    /// changed) when memory is short; `reserve` for the queue's capacity
    /// makes that happen only past it.
    pub fn add(&mut self, slot: u32, source: Source) -> bool {
        let need = (slot as usize).saturating_add(1);
        let src_full = self.free == NIL && self.srcs.len() == self.srcs.capacity();
        if (need > self.links.len() || src_full)
            && !self.reserve(need.max(self.links.len().saturating_mul(2)).max(4))
        {
            return false;
        }
        let i = match self.by_key.get(source.key()) {
            Some(i) => i,
            None => {
                let Some(i) = self.new_src(source.key()) else {
                    return false;
                };
                if !self.by_key.insert(source.key(), i) {
                    self.free_src(i);
                    return false;
                }
                self.distinct += 1;
                i
            }
        };
        // Its list: append.
        let Some(s) = self.srcs.get(i as usize).copied() else {
            return false;
        };
        if let Some(l) = self.links.get_mut(slot as usize) {
            *l = Link {
                src: i,
                prev: s.last,
                next: NIL,
            };
        }
        match self.links.get_mut(s.last as usize) {
            Some(p) if s.last != NIL => p.next = slot,
            _ => {
                if let Some(r) = self.srcs.get_mut(i as usize) {
                    r.first = slot;
                }
            }
        }
        if let Some(r) = self.srcs.get_mut(i as usize) {
            r.last = slot;
        }
        self.recount(i, s.count, s.count.saturating_add(1));
        true
    }

    /// Slot `slot` no longer holds a connection (released, evicted, timed
    /// out, taken away); nothing if it was not counted.
    pub fn remove(&mut self, slot: u32) {
        let Some(l) = self.links.get(slot as usize).copied() else {
            return;
        };
        let Some(s) = self.srcs.get(l.src as usize).copied() else {
            return;
        };
        if let Some(e) = self.links.get_mut(slot as usize) {
            *e = UNUSED;
        }
        match self.links.get_mut(l.prev as usize) {
            Some(p) if l.prev != NIL => p.next = l.next,
            _ => {
                if let Some(r) = self.srcs.get_mut(l.src as usize) {
                    r.first = l.next;
                }
            }
        }
        match self.links.get_mut(l.next as usize) {
            Some(n) if l.next != NIL => n.prev = l.prev,
            _ => {
                if let Some(r) = self.srcs.get_mut(l.src as usize) {
                    r.last = l.prev;
                }
            }
        }
        let count = s.count.saturating_sub(1);
        self.recount(l.src, s.count, count);
        if count == 0 {
            self.by_key.remove(s.key);
            self.free_src(l.src);
            self.distinct = self.distinct.saturating_sub(1);
        }
    }

    /// Forgets everything (the queue was emptied); keeps the memory.
    pub fn clear(&mut self) {
        self.links.iter_mut().for_each(|l| *l = UNUSED);
        self.buckets.iter_mut().for_each(|b| *b = NIL);
        self.srcs.clear();
        self.free = NIL;
        self.by_key.clear();
        self.max = 0;
        self.distinct = 0;
    }

    /// Bytes this has allocated (the tests' check of listenq(4)'s
    /// memory figures).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.links.capacity() * core::mem::size_of::<Link>()
            + self.srcs.capacity() * core::mem::size_of::<Src>()
            + self.buckets.capacity() * core::mem::size_of::<u32>()
            + self.by_key.bytes()
    }

    fn new_src(&mut self, key: usize) -> Option<u32> {
        let rec = Src {
            key,
            count: 0,
            first: NIL,
            last: NIL,
            bprev: NIL,
            bnext: NIL,
        };
        if let Some(r) = self.srcs.get_mut(self.free as usize) {
            let i = self.free;
            self.free = r.bnext;
            *r = rec;
            return Some(i);
        }
        if self.srcs.len() == self.srcs.capacity() {
            return None;
        }
        let i = u32::try_from(self.srcs.len()).ok().filter(|&i| i != NIL)?;
        // Reserved: no allocation.
        self.srcs.push(rec);
        Some(i)
    }

    fn free_src(&mut self, i: u32) {
        let free = self.free;
        if let Some(r) = self.srcs.get_mut(i as usize) {
            r.count = 0;
            r.first = NIL;
            r.last = NIL;
            r.bprev = NIL;
            r.bnext = free;
            self.free = i;
        }
    }

    /// Moves source `i` from bucket `from` to bucket `to` (counts differ
    /// by one), keeping `max` the largest count in use.
    fn recount(&mut self, i: u32, from: u32, to: u32) {
        if from != 0 {
            self.bucket_unlink(i, from);
        }
        if let Some(r) = self.srcs.get_mut(i as usize) {
            r.count = to;
        }
        if to != 0 {
            self.bucket_push(i, to);
        }
        if to > self.max {
            self.max = to;
        }
        while self.max > 0
            && self
                .buckets
                .get(self.max as usize)
                .is_none_or(|&b| b == NIL)
        {
            self.max -= 1;
        }
    }

    fn bucket_push(&mut self, i: u32, c: u32) {
        let Some(head) = self.buckets.get_mut(c as usize) else {
            return;
        };
        let old = *head;
        *head = i;
        if let Some(r) = self.srcs.get_mut(i as usize) {
            r.bprev = NIL;
            r.bnext = old;
        }
        if let Some(o) = self.srcs.get_mut(old as usize) {
            o.bprev = i;
        }
    }

    fn bucket_unlink(&mut self, i: u32, c: u32) {
        let Some(r) = self.srcs.get(i as usize).copied() else {
            return;
        };
        match self.srcs.get_mut(r.bprev as usize) {
            Some(p) if r.bprev != NIL => p.bnext = r.bnext,
            _ => {
                if let Some(h) = self.buckets.get_mut(c as usize) {
                    *h = r.bnext;
                }
            }
        }
        if let Some(n) = self.srcs.get_mut(r.bnext as usize) {
            if r.bnext != NIL {
                n.bprev = r.bprev;
            }
        }
    }
}

/// Makes `v` at least `len` long, filled with `fill`, without a failing
/// allocation panicking; false when memory is short (`v` unchanged).
fn grow<T: Copy>(v: &mut Vec<T>, len: usize, fill: T) -> bool {
    if v.len() < len {
        if v.try_reserve_exact(len - v.len()).is_err() {
            return false;
        }
        v.resize(len, fill);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    fn src(k: u64) -> Source {
        Source::new(k)
    }

    #[test]
    fn evicts_the_oldest_of_the_largest_source() {
        let mut f = Fair::new();
        assert!(f.reserve(8));
        // slots 0..5: source 7 holds 0, 2, 3, 4; source 9 holds 1.
        for (slot, s) in [(0, 7), (1, 9), (2, 7), (3, 7), (4, 7)] {
            assert!(f.add(slot, src(s)));
        }
        assert_eq!(f.distinct(), 2);
        assert_eq!(f.count(src(7)), 4);
        assert_eq!(f.victim(), Some(0));
        f.remove(0);
        assert_eq!(f.victim(), Some(2));
        f.remove(2);
        f.remove(3);
        // 7 holds 4, 9 holds 1: tied at one each.
        assert!(matches!(f.victim(), Some(4) | Some(1)));
        f.remove(4);
        assert_eq!(f.victim(), Some(1));
        assert_eq!(f.distinct(), 1);
        f.remove(1);
        assert_eq!(f.victim(), None);
        assert_eq!(f.distinct(), 0);
    }

    #[test]
    fn removing_from_the_middle_keeps_order() {
        let mut f = Fair::new();
        assert!(f.reserve(4));
        for slot in 0..4 {
            assert!(f.add(slot, src(1)));
        }
        f.remove(1);
        f.remove(2);
        assert_eq!(f.oldest_of(src(1)), Some(0));
        f.remove(0);
        assert_eq!(f.oldest_of(src(1)), Some(3));
        f.remove(3);
        assert_eq!(f.oldest_of(src(1)), None);
        assert_eq!(f.count(src(1)), 0);
    }

    #[test]
    fn grows_past_its_reservation_and_zero_is_a_key() {
        let mut f = Fair::new();
        for slot in 0..100u32 {
            assert!(f.add(slot, src(u64::from(slot % 3))));
        }
        assert_eq!(f.distinct(), 3);
        assert_eq!(f.count(src(0)), 34);
        assert!(f.bytes() > 0);
        f.clear();
        assert_eq!(f.distinct(), 0);
        assert_eq!(f.victim(), None);
    }

    proptest::proptest! {
        /// Against a model: after any sequence of adds and removes, the
        /// victim is the oldest slot of a source with the largest count.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u32..32, 0u64..5, proptest::bool::ANY), 1..300)) {
            let mut f = Fair::new();
            // slot -> (source, arrival)
            let mut held: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
            let mut clock = 0u64;
            for (slot, s, add) in ops {
                if add && !held.contains_key(&slot) {
                    proptest::prop_assert!(f.add(slot, src(s)));
                    held.insert(slot, (s, clock));
                    clock += 1;
                } else if !add && held.remove(&slot).is_some() {
                    f.remove(slot);
                }
                let mut counts: BTreeMap<u64, Vec<(u64, u32)>> = BTreeMap::new();
                for (&sl, &(so, at)) in &held {
                    counts.entry(so).or_default().push((at, sl));
                }
                proptest::prop_assert_eq!(f.distinct(), counts.len());
                let max = counts.values().map(|v| v.len()).max().unwrap_or(0);
                let allowed: Vec<u32> = counts
                    .values()
                    .filter(|v| v.len() == max)
                    .map(|v| v.iter().min().map(|&(_, sl)| sl).unwrap())
                    .collect();
                match f.victim() {
                    None => proptest::prop_assert!(held.is_empty()),
                    Some(v) => proptest::prop_assert!(allowed.contains(&v), "victim {} not in {:?}", v, allowed),
                }
                for (&so, v) in &counts {
                    proptest::prop_assert_eq!(f.count(src(so)) as usize, v.len());
                }
            }
        }
    }
}
