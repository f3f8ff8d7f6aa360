//! One listener's connections between completion and accept(2), and what
//! their accepts add up to: the state the listen upcall and pr_accept
//! change, kept apart from the registry so that the kernel can give each
//! listener its own lock (kmod/src/kern/pending.rs).
//!
//! The index from a connection to its listener (which a connection needs at
//! accept(2), when the kernel no longer says which listener it came from) is
//! shared by every listener and lives elsewhere; `Children` is this
//! listener's view of it.

use alloc::collections::VecDeque;

use crate::backlog;
use crate::latency::Histogram;
use crate::overflow::{OverflowCounter, Stamp};

/// The shared connection -> listener index, as one listener sees it.
pub trait Children {
    /// Files `child` under this listener; false when memory is short
    /// (nothing changes then).
    fn insert(&mut self, child: usize) -> bool;
    /// Drops `child`'s entry if it names this listener (a stale entry's
    /// address may have come back for another listener).
    fn forget(&mut self, child: usize);
}

#[derive(Debug)]
pub struct Pending {
    /// Completed connections not yet accepted, in completion order (the
    /// order accept(2) takes them): (socket, completion time in us). Each
    /// one the index names this listener for is here.
    fifo: VecDeque<(usize, u64)>,
    /// The connection recorded last (0: none, or it has been accepted).
    /// Sockets join a completed queue only at its tail and leave it only
    /// at its head (accept(2)), so every one behind this one is new.
    newest: usize,
    /// `newest` is not in the index (memory was short): its accept cannot
    /// find this listener, so it is looked for by `forget_unindexed`.
    newest_unindexed: bool,
    pub accepted: u64,
    pub latency: Histogram,
    overflow: OverflowCounter,
}

/// What `completed` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Filed in the index (otherwise its accept goes unmatched: count it as
    /// a failed allocation).
    pub indexed: bool,
    /// +1 or -1: whether this listener now has an unindexed `newest` where
    /// it had none, or the other way round; 0 if that did not change.
    pub unindexed: i8,
}

impl Pending {
    /// Starts from the listener's current overflow state, so overflows from
    /// before listenq saw the socket are not counted.
    pub fn new(overcount: i32, lastover: Stamp) -> Self {
        Pending {
            fifo: VecDeque::new(),
            newest: 0,
            newest_unindexed: false,
            accepted: 0,
            latency: Histogram::default(),
            overflow: OverflowCounter::new(overcount, lastover),
        }
    }

    /// The connection recorded last and not yet accepted; 0 if none.
    pub fn newest(&self) -> usize {
        self.newest
    }

    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    /// Folds in one sample of the kernel's overflow counter; how many
    /// overflows it adds.
    pub fn sample_overflows(&mut self, overcount: i32, lastover: Stamp) -> u64 {
        let before = self.overflow.total();
        self.overflow.sample(overcount, lastover);
        self.overflow.total().saturating_sub(before)
    }

    pub fn overflows(&self) -> u64 {
        self.overflow.total()
    }

    /// `child` reached the completed queue (whose limit is `qlimit`) at
    /// `now_us`.
    pub fn completed(
        &mut self,
        child: usize,
        now_us: u64,
        qlimit: u32,
        idx: &mut impl Children,
    ) -> Recorded {
        self.newest = child;
        // The completed queue never holds more than its capacity, so more
        // entries than that are stale (a child that left the queue without
        // accept(2)): the oldest go first.
        let bound = usize::try_from(backlog::completed_queue_capacity(qlimit))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        while self.fifo.len() >= bound {
            let Some((stale, _)) = self.fifo.pop_front() else {
                break;
            };
            idx.forget(stale);
        }
        // Room in the list first: once the index names this listener, the
        // child must be in the list.
        let indexed = self.fifo.try_reserve(1).is_ok() && idx.insert(child);
        if indexed {
            self.fifo.push_back((child, now_us));
        }
        let mut unindexed = 0;
        if indexed == self.newest_unindexed {
            self.newest_unindexed = !indexed;
            unindexed = if indexed { -1 } else { 1 };
        }
        Recorded { indexed, unindexed }
    }

    /// accept(2) returned `child`, whose index entry named this listener
    /// (and has been removed): records its latency. False if it is no
    /// longer in the list (dropped as stale, or the listener is closing).
    pub fn accepted(&mut self, child: usize, now_us: u64) -> bool {
        if self.newest == child {
            self.newest = 0;
        }
        // accept(2) takes the head of the completed queue, so the front
        // matches almost always.
        let j = if self.fifo.front().map(|p| p.0) == Some(child) {
            Some(0)
        } else {
            self.fifo.iter().position(|p| p.0 == child)
        };
        let Some((_, t)) = j.and_then(|j| self.fifo.remove(j)) else {
            return false;
        };
        self.accepted = self.accepted.saturating_add(1);
        self.latency.record(now_us.saturating_sub(t));
        true
    }

    /// accept(2) returned `child`, which the index did not know: once
    /// accepted, its address may come back as a new socket, so it must not
    /// stand for "already recorded" any more. Only an unindexed `newest`
    /// can be it. Returns -1 if this listener's `newest` was it (as
    /// `Recorded::unindexed`), 0 otherwise.
    pub fn forget_unindexed(&mut self, child: usize) -> i8 {
        if self.newest_unindexed && self.newest == child {
            self.newest = 0;
            self.newest_unindexed = false;
            -1
        } else {
            0
        }
    }

    /// The listener is going: every connection leaves the list and the
    /// index. Returns -1 if it had an unindexed `newest` (as
    /// `Recorded::unindexed`), 0 otherwise. Frees the list's memory.
    pub fn purge(&mut self, idx: &mut impl Children) -> i8 {
        for (child, _) in core::mem::take(&mut self.fifo) {
            idx.forget(child);
        }
        self.newest = 0;
        if core::mem::take(&mut self.newest_unindexed) {
            -1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keymap::KeyMap;

    /// The index as the kernel keeps it (one map for every listener), seen
    /// by listener `me`; `fail` makes every insert fail (memory short).
    struct Index<'a> {
        map: &'a mut KeyMap,
        me: usize,
        fail: bool,
    }

    impl Children for Index<'_> {
        fn insert(&mut self, child: usize) -> bool {
            !self.fail && self.map.insert(child, self.me)
        }
        fn forget(&mut self, child: usize) {
            if self.map.get(child) == Some(self.me) {
                self.map.remove(child);
            }
        }
    }

    fn idx(map: &mut KeyMap, me: usize) -> Index<'_> {
        Index {
            map,
            me,
            fail: false,
        }
    }

    #[test]
    fn accepts_match_completions_in_fifo_order() {
        let mut map = KeyMap::new();
        let mut p = Pending::new(0, Stamp::default());
        for child in [10usize, 11, 12] {
            assert!(p.completed(child, 100, 4, &mut idx(&mut map, 1)).indexed);
        }
        assert_eq!(p.newest(), 12);
        assert_eq!(map.remove(10), Some(1));
        assert!(p.accepted(10, 150));
        assert_eq!(map.remove(11), Some(1));
        assert!(p.accepted(11, 300));
        assert!(!p.accepted(99, 300));
        assert_eq!(p.accepted, 2);
        assert_eq!(p.latency.count(), 2);
        assert_eq!(p.len(), 1);
        assert_eq!(p.newest(), 12);
        assert_eq!(map.remove(12), Some(1));
        assert!(p.accepted(12, 300));
        assert_eq!(p.newest(), 0, "an accepted socket's address may be reused");
    }

    #[test]
    fn stale_entries_are_bounded_and_leave_the_index() {
        let mut map = KeyMap::new();
        let mut p = Pending::new(0, Stamp::default());
        for child in 0..100usize {
            p.completed(1000 + child, 0, 0, &mut idx(&mut map, 1));
        }
        assert!(p.len() <= 2);
        assert_eq!(map.len(), p.len());
        assert_eq!(p.purge(&mut idx(&mut map, 1)), 0);
        assert!(map.is_empty() && p.is_empty());
    }

    #[test]
    fn stale_entry_reused_by_another_listener_stays_theirs() {
        let mut map = KeyMap::new();
        let mut a = Pending::new(0, Stamp::default());
        let mut b = Pending::new(0, Stamp::default());
        a.completed(0x40, 0, 8, &mut idx(&mut map, 1));
        // 0x40 left a's queue without accept(2) and came back on b's.
        b.completed(0x40, 0, 8, &mut idx(&mut map, 2));
        a.purge(&mut idx(&mut map, 1));
        assert_eq!(map.get(0x40), Some(2));
    }

    #[test]
    fn unindexed_newest_is_forgotten_at_its_accept() {
        let mut map = KeyMap::new();
        let mut p = Pending::new(0, Stamp::default());
        let mut short = Index {
            map: &mut map,
            me: 1,
            fail: true,
        };
        let r = p.completed(0x40, 0, 8, &mut short);
        assert_eq!(
            r,
            Recorded {
                indexed: false,
                unindexed: 1
            }
        );
        assert_eq!(p.newest(), 0x40);
        assert!(p.is_empty());
        assert_eq!(p.forget_unindexed(0x80), 0);
        assert_eq!(p.forget_unindexed(0x40), -1);
        assert_eq!(p.newest(), 0);
        let r = p.completed(0x80, 0, 8, &mut idx(&mut map, 1));
        assert_eq!(
            r,
            Recorded {
                indexed: true,
                unindexed: 0
            }
        );
    }

    #[test]
    fn overflows_fold_in() {
        let mut p = Pending::new(0, Stamp::default());
        let s = Stamp { sec: 5, usec: 0 };
        assert_eq!(p.sample_overflows(4, s), 5);
        assert_eq!(p.sample_overflows(4, s), 0);
        assert_eq!(p.overflows(), 5);
    }

    /// The model: the registry as it was before its indexes, which scanned
    /// every listener on each completion and accept.
    #[derive(Default)]
    struct Scanned {
        listeners: std::vec::Vec<(usize, u32, VecDeque<usize>, usize, u64)>,
    }

    impl Scanned {
        fn listen(&mut self, so: usize, qlimit: u32) {
            match self.listeners.iter_mut().find(|l| l.0 == so) {
                Some(l) => l.1 = qlimit,
                None => self.listeners.push((so, qlimit, VecDeque::new(), 0, 0)),
            }
        }
        fn close(&mut self, so: usize) -> bool {
            let Some(i) = self.listeners.iter().position(|l| l.0 == so) else {
                return false;
            };
            self.listeners.swap_remove(i);
            true
        }
        fn completed(&mut self, so: usize, child: usize) {
            let Some(l) = self.listeners.iter_mut().find(|l| l.0 == so) else {
                return;
            };
            l.3 = child;
            let bound = backlog::completed_queue_capacity(l.1) as usize + 1;
            while l.2.len() >= bound {
                l.2.pop_front();
            }
            l.2.push_back(child);
        }
        fn accepted(&mut self, child: usize) -> bool {
            for l in self.listeners.iter_mut().filter(|l| l.3 == child) {
                l.3 = 0;
            }
            let Some(l) = self.listeners.iter_mut().find(|l| l.2.contains(&child)) else {
                return false;
            };
            let j = l.2.iter().position(|&c| c == child).unwrap();
            l.2.remove(j);
            l.4 += 1;
            true
        }
    }

    /// What the kernel does with `Pending`s: one per listener, one shared
    /// index, accept(2) going through the index, and through every
    /// listener only while some `newest` is unindexed.
    #[derive(Default)]
    struct Kernel {
        listeners: std::vec::Vec<(usize, u32, Pending)>,
        map: KeyMap,
        unindexed: i64,
    }

    impl Kernel {
        fn listen(&mut self, so: usize, qlimit: u32) {
            match self.listeners.iter_mut().find(|l| l.0 == so) {
                Some(l) => l.1 = qlimit,
                None => self
                    .listeners
                    .push((so, qlimit, Pending::new(0, Stamp::default()))),
            }
        }
        fn close(&mut self, so: usize) -> bool {
            let Some(i) = self.listeners.iter().position(|l| l.0 == so) else {
                return false;
            };
            let mut l = self.listeners.swap_remove(i);
            self.unindexed += i64::from(l.2.purge(&mut idx(&mut self.map, so)));
            true
        }
        fn completed(&mut self, so: usize, child: usize, fail: bool) {
            let Some(l) = self.listeners.iter_mut().find(|l| l.0 == so) else {
                return;
            };
            let mut i = Index {
                map: &mut self.map,
                me: so,
                fail,
            };
            self.unindexed += i64::from(l.2.completed(child, 0, l.1, &mut i).unindexed);
        }
        fn accepted(&mut self, child: usize) -> bool {
            let Some(so) = self.map.remove(child) else {
                if self.unindexed > 0 {
                    for l in self.listeners.iter_mut() {
                        self.unindexed += i64::from(l.2.forget_unindexed(child));
                    }
                }
                return false;
            };
            match self.listeners.iter_mut().find(|l| l.0 == so) {
                Some(l) => l.2.accepted(child, 1),
                None => false,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Listen(usize, u32),
        Close(usize),
        Completed(usize, usize),
        Accepted(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Listeners and children from small, disjoint sets of addresses,
        // so that operations meet the same ones (and reused ones) often.
        let so = (1usize..8).prop_map(|s| s * 0x1000);
        let child = (1usize..24).prop_map(|c| c * 0x40 + 0x10_0000);
        prop_oneof![
            (so.clone(), 0u32..4).prop_map(|(s, l)| Op::Listen(s, l)),
            so.clone().prop_map(Op::Close),
            (so, child.clone()).prop_map(|(s, c)| Op::Completed(s, c)),
            child.prop_map(Op::Accepted),
        ]
    }

    proptest::proptest! {
        #[test]
        fn per_listener_state_matches_the_scanning_registry(ops in proptest::collection::vec(op(), 0..200)) {
            let mut k = Kernel::default();
            let mut m = Scanned::default();
            for o in ops {
                match o {
                    Op::Listen(so, l) => {
                        k.listen(so, l);
                        m.listen(so, l);
                    }
                    Op::Close(so) => proptest::prop_assert_eq!(k.close(so), m.close(so)),
                    Op::Completed(so, c) => {
                        // A connection sits on one completed queue at a time.
                        if m.listeners.iter().any(|l| l.2.contains(&c)) {
                            continue;
                        }
                        k.completed(so, c, false);
                        m.completed(so, c);
                    }
                    Op::Accepted(c) => proptest::prop_assert_eq!(k.accepted(c), m.accepted(c)),
                }
                for l in &m.listeners {
                    let got = k.listeners.iter().find(|x| x.0 == l.0).map(|x| (x.2.accepted, x.2.newest(), x.2.len()));
                    proptest::prop_assert_eq!(got, Some((l.4, l.3, l.2.len())));
                }
                proptest::prop_assert_eq!(k.listeners.len(), m.listeners.len());
                let pending: usize = m.listeners.iter().map(|l| l.2.len()).sum();
                proptest::prop_assert_eq!(k.map.len(), pending);
            }
        }

        /// With inserts failing at random, nothing is left behind: the
        /// index names only listed connections, and closing every listener
        /// empties it and the unindexed count.
        #[test]
        fn memory_shortage_leaves_nothing_behind(
            ops in proptest::collection::vec((op(), proptest::bool::ANY), 0..200)
        ) {
            let mut k = Kernel::default();
            for (o, fail) in ops {
                match o {
                    Op::Listen(so, l) => k.listen(so, l),
                    Op::Close(so) => {
                        k.close(so);
                    }
                    Op::Completed(so, c) => {
                        if k.listeners.iter().any(|l| l.2.fifo.iter().any(|p| p.0 == c)) {
                            continue;
                        }
                        k.completed(so, c, fail);
                    }
                    Op::Accepted(c) => {
                        k.accepted(c);
                    }
                }
                let flagged = k.listeners.iter().filter(|l| l.2.newest_unindexed).count();
                proptest::prop_assert_eq!(k.unindexed, flagged as i64);
                let listed: usize = k.listeners.iter().map(|l| l.2.len()).sum();
                proptest::prop_assert_eq!(k.map.len(), listed);
            }
            let all: std::vec::Vec<usize> = k.listeners.iter().map(|l| l.0).collect();
            for so in all {
                k.close(so);
            }
            proptest::prop_assert!(k.map.is_empty());
            proptest::prop_assert_eq!(k.unindexed, 0);
        }
    }
}
