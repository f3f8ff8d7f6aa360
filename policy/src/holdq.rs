//! The secondary queue: connections held by an accept filter until they meet
//! its criteria. listen(2): when it is full, the *oldest* held connection is
//! terminated to make room. Entries are kept in arrival order, so the oldest
//! is always at the front and hold timeouts expire from the front too.
//!
//! Memory is reserved fallibly: the queue runs inside socket upcalls, where a
//! failed M_NOWAIT allocation must turn into "don't hold this connection",
//! never into a panic.

use alloc::collections::VecDeque;

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

#[derive(Debug)]
pub struct HoldQueue<T> {
    entries: VecDeque<Held<T>>,
    capacity: usize,
}

impl<T: Copy> HoldQueue<T> {
    pub fn new(capacity: usize) -> Self {
        HoldQueue {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
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
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: usize) -> bool {
        self.entries.iter().any(|e| e.key == key)
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
        while self.entries.len() > self.capacity {
            if let Some(old) = self.entries.pop_front() {
                evicted(old);
            }
        }
        // Reserve before choosing a victim, so a failed allocation leaves
        // the queue exactly as it was.
        if self.entries.len() < self.capacity && self.entries.try_reserve(1).is_err() {
            return Admit::NoMemory;
        }
        let victim = if self.entries.len() == self.capacity {
            self.entries.pop_front()
        } else {
            None
        };
        self.entries.push_back(Held {
            key,
            since_ms,
            state,
        });
        match victim {
            Some(v) => Admit::HeldEvicting(v),
            None => Admit::Held,
        }
    }

    /// Every entry, oldest first, leaving the queue empty: what it holds
    /// must be released when the queue goes (filter removal).
    pub fn take_all(&mut self) -> VecDeque<Held<T>> {
        core::mem::take(&mut self.entries)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Held<T>> {
        self.entries.iter_mut().find(|e| e.key == key)
    }

    pub fn remove(&mut self, key: usize) -> Option<Held<T>> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.entries.remove(i)
    }

    /// Removes and returns the oldest entry if it has been held for at
    /// least `timeout_ms` at `now_ms`.
    pub fn pop_expired(&mut self, now_ms: u64, timeout_ms: u64) -> Option<Held<T>> {
        let front = self.entries.front()?;
        if now_ms.saturating_sub(front.since_ms) >= timeout_ms {
            self.entries.pop_front()
        } else {
            None
        }
    }

    /// Empties the queue (filter removal, listener close), oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Held<T>> + '_ {
        self.entries.drain(..)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Held<T>> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    }
}
