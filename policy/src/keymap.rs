//! A map keyed by socket address, for the lookups a connection causes: a
//! listener from its socket, a completed connection's listener from the
//! connection. Every operation is O(1) on average however many listeners
//! exist: an idle listener must not slow down another's accept(2).
//!
//! Open addressing with linear probing and deletion by backward shift (no
//! tombstones pile up), at most half full. Keys are socket addresses, so
//! never 0: 0 marks an empty bucket. Growth is fallible (the callers run
//! under a kernel mutex, where only M_NOWAIT memory exists). A map that
//! becomes empty keeps its table, so that a connection coming and going
//! does not cost a malloc(9) and a free(9); `trim` gives it back, which
//! the owners do when their listeners go: an idle module allocates
//! nothing.

use alloc::vec::Vec;

/// Fibonacci hashing: socket addresses share their low bits (alignment)
/// and often their high ones; the product's top bits mix all of them.
pub(crate) fn bucket(key: usize, mask: usize) -> usize {
    let h = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as usize ^ (h as usize)) & mask
}

/// Deletion by backward shift: after emptying bucket `hole`, the entry
/// found at `j` further along the probe run, whose home bucket is `home`,
/// moves into the hole unless its home lies cyclically in (hole, j] (it
/// would no longer be found past the hole otherwise).
pub(crate) fn fills_hole(hole: usize, j: usize, home: usize) -> bool {
    let stays = if hole <= j {
        hole < home && home <= j
    } else {
        hole < home || home <= j
    };
    !stays
}

/// Tables this small are kept whatever their load (`trim` frees them).
const SHRINK_ABOVE: usize = 64;

/// The key was 0, or the table could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

#[derive(Debug, Default)]
pub struct KeyMap<V: Copy + Default = usize> {
    /// (key, value); key 0 is an empty bucket. Length 0 or a power of two
    /// at least twice `len`.
    buckets: Vec<(usize, V)>,
    len: usize,
}

impl<V: Copy + Default> KeyMap<V> {
    pub const fn new() -> Self {
        KeyMap {
            buckets: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    /// The bucket holding `key`.
    fn find(&self, key: usize) -> Option<usize> {
        if key == 0 || self.buckets.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = bucket(key, mask);
        for _ in 0..self.buckets.len() {
            let (k, _) = *self.buckets.get(i)?;
            if k == key {
                return Some(i);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
        None
    }

    pub fn get(&self, key: usize) -> Option<V> {
        self.find(key)
            .and_then(|i| self.buckets.get(i))
            .map(|&(_, v)| v)
    }

    pub fn contains(&self, key: usize) -> bool {
        self.find(key).is_some()
    }

    /// Changes the value of a key already present, without allocating.
    /// False when `key` is absent.
    pub fn set(&mut self, key: usize, val: V) -> bool {
        match self.find(key).and_then(|i| self.buckets.get_mut(i)) {
            Some(b) => {
                b.1 = val;
                true
            }
            None => false,
        }
    }

    /// Bytes the table has allocated (the tests' memory checks).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * core::mem::size_of::<(usize, V)>()
    }

    /// Room for `additional` more keys, so that inserting them cannot
    /// fail. False when the memory is not there (nothing changes then).
    pub fn reserve(&mut self, additional: usize) -> bool {
        let Some(want) = self
            .len
            .checked_add(additional)
            .and_then(|n| n.checked_mul(2))
            .and_then(usize::checked_next_power_of_two)
        else {
            return false;
        };
        if want <= self.buckets.len() {
            return true;
        }
        let mut fresh = Vec::new();
        if fresh.try_reserve_exact(want.max(8)).is_err() {
            return false;
        }
        fresh.resize(want.max(8), (0, V::default()));
        let old = core::mem::replace(&mut self.buckets, fresh);
        for (k, v) in old.into_iter().filter(|&(k, _)| k != 0) {
            self.place(k, v);
        }
        true
    }

    /// Puts a key known to be absent into a table with room for it.
    fn place(&mut self, key: usize, val: V) {
        let mask = self.mask();
        let mut i = bucket(key, mask);
        for _ in 0..self.buckets.len() {
            match self.buckets.get_mut(i) {
                Some(b) if b.0 == 0 => {
                    *b = (key, val);
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The value of `key`, or `val` filed under it if it is absent, in one
    /// probe (a connection's path): Ok(Some(old)) leaves the old value in
    /// place, Ok(None) inserted `val`, Err(NoRoom) when `key` is 0 or the table
    /// could not grow (then nothing changes).
    pub fn get_or_insert(&mut self, key: usize, val: V) -> Result<Option<V>, NoRoom> {
        if key == 0 || !self.reserve(1) {
            return Err(NoRoom);
        }
        let mask = self.mask();
        let mut i = bucket(key, mask);
        for _ in 0..self.buckets.len() {
            match self.buckets.get_mut(i) {
                Some(b) if b.0 == key => return Ok(Some(b.1)),
                Some(b) if b.0 == 0 => {
                    *b = (key, val);
                    self.len += 1;
                    return Ok(None);
                }
                Some(_) => i = (i + 1) & mask,
                None => break,
            }
        }
        // Not reached: reserve() left a free bucket.
        Err(NoRoom)
    }

    /// Inserts or replaces. False when `key` is 0 or the table could not
    /// grow (then nothing changes).
    pub fn insert(&mut self, key: usize, val: V) -> bool {
        if key == 0 {
            return false;
        }
        if self.set(key, val) {
            return true;
        }
        if !self.reserve(1) {
            return false;
        }
        self.place(key, val);
        self.len += 1;
        true
    }

    /// Removes `key`; its value, if it was there. The table stays (`trim`).
    pub fn remove(&mut self, key: usize) -> Option<V> {
        let i = self.find(key)?;
        let val = self.buckets.get(i)?.1;
        self.remove_at(i);
        self.shrink();
        Some(val)
    }

    /// Empties bucket `i` (which holds a key) by backward shift.
    fn remove_at(&mut self, mut i: usize) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = match self.buckets.get(j) {
                Some(&(k, _)) if k != 0 => k,
                _ => break,
            };
            let home = bucket(k, mask);
            if fills_hole(i, j, home) {
                let moved = self.buckets.get(j).copied().unwrap_or((0, V::default()));
                if let Some(b) = self.buckets.get_mut(i) {
                    *b = moved;
                }
                i = j;
            }
        }
        if let Some(b) = self.buckets.get_mut(i) {
            *b = (0, V::default());
        }
        self.len = self.len.saturating_sub(1);
    }

    /// A table at most 1/8 full goes down to 1/4 full: a burst's table does
    /// not stay at its peak size. Growth waits for 1/2, so a steady load
    /// never swings between the two. Best effort: without memory the
    /// table stays as it is.
    fn shrink(&mut self) {
        if self.buckets.len() <= SHRINK_ABOVE || self.len * 8 > self.buckets.len() {
            return;
        }
        let want = (self.len * 4).next_power_of_two().max(8);
        let mut fresh = Vec::new();
        if want >= self.buckets.len() || fresh.try_reserve_exact(want).is_err() {
            return;
        }
        fresh.resize(want, (0, V::default()));
        let old = core::mem::replace(&mut self.buckets, fresh);
        for (k, v) in old.into_iter().filter(|&(k, _)| k != 0) {
            self.place(k, v);
        }
    }

    /// Removes every entry whose value `gone` picks, and says how many.
    /// One pass: a removal only moves entries from further along a probe
    /// run into the emptied bucket, which is looked at again; an entry
    /// wrapped round to the front was looked at already.
    pub fn remove_where(&mut self, mut gone: impl FnMut(&V) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.buckets.len() {
            while let Some(&(k, v)) = self.buckets.get(i) {
                if k == 0 || !gone(&v) {
                    break;
                }
                self.remove_at(i);
                n += 1;
            }
        }
        self.shrink();
        n
    }

    /// Frees the table if the map is empty.
    pub fn trim(&mut self) {
        if self.len == 0 {
            self.buckets = Vec::new();
        }
    }

    /// Forgets everything and frees the table.
    pub fn clear(&mut self) {
        self.buckets = Vec::new();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn emptied_map_keeps_its_table_until_trimmed() {
        let mut m = KeyMap::new();
        m.trim();
        assert_eq!(m.buckets.capacity(), 0);
        assert!(m.insert(0x1000, 1));
        assert!(m.buckets.capacity() > 0);
        assert_eq!(m.remove(0x1000), Some(1));
        assert!(m.buckets.capacity() > 0, "no free(9) per connection");
        assert_eq!(m.get(0x1000), None);
        m.trim();
        assert_eq!(m.buckets.capacity(), 0);
        assert!(m.insert(0x2000, 2));
        m.trim();
        assert_eq!(m.get(0x2000), Some(2), "trim keeps a non-empty table");
    }

    #[test]
    fn a_burst_table_shrinks_as_it_empties() {
        let mut m = KeyMap::new();
        for i in 1..=4096usize {
            assert!(m.insert(i * 256, i));
        }
        let peak = m.buckets.len();
        assert!(peak >= 8192);
        for i in 1..=4090usize {
            assert_eq!(m.remove(i * 256), Some(i));
        }
        assert!(
            m.buckets.len() <= SHRINK_ABOVE,
            "{} buckets for 6 keys",
            m.buckets.len()
        );
        for i in 4091..=4096usize {
            assert_eq!(m.get(i * 256), Some(i));
        }
    }

    #[test]
    fn remove_where_takes_exactly_the_picked_values() {
        let mut m = KeyMap::new();
        // Colliding keys (256 apart), two owners interleaved.
        for i in 0..3000usize {
            assert!(m.insert(0xffff_f800_0200_0000 + i * 256, i % 3));
        }
        assert_eq!(m.remove_where(|&v| v == 1), 1000);
        assert_eq!(m.len(), 2000);
        for i in 0..3000usize {
            let want = (i % 3 != 1).then_some(i % 3);
            assert_eq!(m.get(0xffff_f800_0200_0000 + i * 256), want);
        }
        assert_eq!(m.remove_where(|_| true), 2000);
        assert!(m.is_empty());
    }

    #[test]
    fn zero_is_never_a_key() {
        let mut m = KeyMap::new();
        assert!(!m.insert(0, 5));
        assert_eq!(m.get(0), None);
        assert_eq!(m.remove(0), None);
        assert!(m.is_empty());
    }

    #[test]
    fn socket_like_keys_collide_and_are_still_found() {
        // Addresses 256 bytes apart in one slab page, as sockets are.
        let mut m = KeyMap::new();
        for i in 0..2000usize {
            assert!(m.insert(0xffff_f800_0200_0000 + i * 256, i));
        }
        for i in (0..2000usize).step_by(3) {
            assert_eq!(m.remove(0xffff_f800_0200_0000 + i * 256), Some(i));
        }
        for i in 0..2000usize {
            let want = (i % 3 != 0).then_some(i);
            assert_eq!(m.get(0xffff_f800_0200_0000 + i * 256), want);
        }
        assert!(m.buckets.len() >= 2 * m.len());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, usize),
        Remove(usize),
        Set(usize, usize),
        RemoveWhere(usize),
        GetOrInsert(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so operations meet the same ones often.
        let key = (0usize..48).prop_map(|k| k * 64);
        prop_oneof![
            (key.clone(), any::<usize>()).prop_map(|(k, v)| Op::Insert(k, v)),
            key.clone().prop_map(Op::Remove),
            (key.clone(), any::<usize>()).prop_map(|(k, v)| Op::Set(k, v)),
            (0usize..4).prop_map(Op::RemoveWhere),
            (key.clone(), any::<usize>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec(op(), 0..300)) {
            let mut m = KeyMap::new();
            let mut model = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(m.insert(k, v), k != 0);
                        if k != 0 {
                            model.insert(k, v);
                        }
                    }
                    Op::Remove(k) => prop_assert_eq!(m.remove(k), model.remove(&k)),
                    Op::Set(k, v) => {
                        let had = model.contains_key(&k);
                        prop_assert_eq!(m.set(k, v), had);
                        if had {
                            model.insert(k, v);
                        }
                    }
                    Op::GetOrInsert(k, v) => {
                        let want = if k == 0 {
                            Err(NoRoom)
                        } else {
                            Ok(model.get(&k).copied())
                        };
                        prop_assert_eq!(m.get_or_insert(k, v), want);
                        if k != 0 {
                            model.entry(k).or_insert(v);
                        }
                    }
                    Op::RemoveWhere(r) => {
                        let before = model.len();
                        model.retain(|_, v| *v % 4 != r);
                        prop_assert_eq!(m.remove_where(|v| *v % 4 == r), before - model.len());
                    }
                }
                prop_assert_eq!(m.len(), model.len());
                for k in (0usize..48).map(|k| k * 64) {
                    prop_assert_eq!(m.get(k), model.get(&k).copied());
                }
            }
            m.trim();
            prop_assert_eq!(m.buckets.capacity() == 0, model.is_empty());
        }
    }
}
