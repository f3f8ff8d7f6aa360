//! One listener's connections between completion and accept(2), and what
//! their accepts add up to, split by who may touch what, so that a
//! connection takes no lock of listenq's beyond one shard of the child
//! index on each side (kmod/src/kern/pending.rs):
//!
//! - the listen upcall runs with the listener's lock held, which also
//!   serializes every upcall of that listener: what it alone needs
//!   (`Seen`, the connection recorded last) lives under that lock;
//! - accept(2) finds a connection's listener and completion time in the
//!   child index (`Child`), and adds to the listener's counts with atomic
//!   adds (`Accepts`). The index is keyed by the connection's so_gencnt
//!   (unique for the kernel's lifetime) and has two levels: `ChildRing`, a
//!   fixed table of slots claimed and emptied with compare-and-swap (no
//!   lock), and, for a connection whose slot is taken, a `KeyMap` behind a
//!   mutex;
//! - the overflow counter, which listen(2), close and table reads sample
//!   too, keeps a mutex, which the upcall takes only when the kernel's
//!   counters moved since its last look (`UpcallState`).
//!
//! The index from a connection to its listener is shared by every
//! listener; `Index` is one listener's view of it.

// The ring's atomics are loom's under `--cfg loom` (tests/loom_ring.rs
// checks every interleaving of its lock-free filing and taking).
#[cfg(not(loom))]
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::keymap::KeyMap;
use crate::latency::{AtomicHistogram, Histogram};
use crate::overflow::Stamp;

/// A connection as the listen upcall saw it on the completed queue: its
/// socket and that socket's generation (so_gencnt, unique for the
/// kernel's lifetime). The address alone cannot say "already recorded":
/// once accepted and closed, a socket's memory comes back for the next
/// connection, often the very next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub so: usize,
    pub gen: u64,
}

/// A child index entry: whose connection it is (the listener's node) and
/// when it reached the completed queue (a tick stamp, kern/time.rs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Child {
    pub node: usize,
    pub since: u32,
}

/// The index's key for a connection: its so_gencnt (a 64-bit kernel, so
/// nothing is lost).
pub fn key_of(gen: u64) -> usize {
    gen as usize
}

/// What filing a connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// A new entry, which names this listener.
    New,
    /// It was already filed under this listener; nothing changed.
    Already,
    /// It was filed under another listener (whose entry was stale: its
    /// listener went before listenq could purge it); it names this one
    /// now, and the caller gives back the other's reference.
    Replaced(usize),
    /// No memory for the entry: its accept will not be matched.
    NoMemory,
}

/// Files the connection of generation `gen` under `node`, completed at
/// `now`.
pub fn file(map: &mut KeyMap<Child>, gen: u64, node: usize, now: u32) -> Filed {
    let child = key_of(gen);
    let fresh = Child { node, since: now };
    match map.get_or_insert(child, fresh) {
        Ok(None) => Filed::New,
        Ok(Some(c)) if c.node == node => Filed::Already,
        Ok(Some(c)) => {
            map.set(child, fresh);
            Filed::Replaced(c.node)
        }
        Err(_) => Filed::NoMemory,
    }
}

/// The child index as one listener's upcall sees it.
pub trait Index {
    /// Files the connection of generation `gen`, completed at `now`, under
    /// this listener; false when there was no memory for it.
    fn file(&mut self, gen: u64, now: u32) -> bool;
}

/// A free slot of a `ChildRing`.
const FREE: u64 = 0;
/// A slot being filed: claimed, its entry not yet written.
const BUSY: u64 = u64::MAX;

struct RingSlot {
    /// FREE, BUSY, or the generation of the connection filed here.
    gen: AtomicU64,
    node: AtomicUsize,
    since: AtomicU32,
}

/// The child index's first level: a slot for each generation modulo `N`,
/// taken and emptied with compare-and-swap, so that neither the upcall
/// nor accept(2) takes a lock for a connection whose slot was free.
///
/// Why no lock is needed: a slot's entry is written only by whoever moved
/// its `gen` from FREE to BUSY, and published by storing the generation
/// (release); it is read only by whoever saw that generation (acquire)
/// and then wins the compare-and-swap from that generation back to FREE,
/// and only the winner uses what it read. Generations are never reused,
/// so that swap cannot succeed against a later entry of the same slot.
/// accept(2) of a connection always comes after the upcall that filed it
/// (both run under the listener's lock, the first in solisten_dequeue()),
/// so it sees its entry; `remove_node` (a listener's close, after its
/// upcall was removed) races only with accepts, and the swap decides.
pub struct ChildRing<const N: usize> {
    slots: [RingSlot; N],
}

/// What `ChildRing::file` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFiled {
    New,
    /// That generation is filed here already.
    Already,
    /// Another connection holds the slot: file it in the second level.
    Occupied,
}

impl<const N: usize> ChildRing<N> {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        ChildRing {
            slots: [const {
                RingSlot {
                    gen: AtomicU64::new(FREE),
                    node: AtomicUsize::new(0),
                    since: AtomicU32::new(0),
                }
            }; N],
        }
    }

    /// loom's atomics are not const.
    #[cfg(loom)]
    pub fn new() -> Self {
        ChildRing {
            slots: core::array::from_fn(|_| RingSlot {
                gen: AtomicU64::new(FREE),
                node: AtomicUsize::new(0),
                since: AtomicU32::new(0),
            }),
        }
    }

    fn slot(&self, gen: u64) -> Option<&RingSlot> {
        let i = (gen % (N as u64)) as usize;
        self.slots.get(i)
    }

    /// Files generation `gen` under `node`, completed at `since`.
    pub fn file(&self, gen: u64, node: usize, since: u32) -> RingFiled {
        let Some(s) = self.slot(gen).filter(|_| gen != FREE && gen != BUSY) else {
            return RingFiled::Occupied;
        };
        match s
            .gen
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => {
                s.node.store(node, Ordering::Relaxed);
                s.since.store(since, Ordering::Relaxed);
                s.gen.store(gen, Ordering::Release);
                RingFiled::New
            }
            Err(g) if g == gen => RingFiled::Already,
            Err(_) => RingFiled::Occupied,
        }
    }

    /// Takes the entry of generation `gen`, if it is filed here.
    pub fn take(&self, gen: u64) -> Option<Child> {
        let s = self.slot(gen)?;
        if gen == FREE || gen == BUSY || s.gen.load(Ordering::Acquire) != gen {
            return None;
        }
        let c = Child {
            node: s.node.load(Ordering::Relaxed),
            since: s.since.load(Ordering::Relaxed),
        };
        s.gen
            .compare_exchange(gen, FREE, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| c)
    }

    /// Empties `s` if it holds an entry `gone` picks: the entry, once its
    /// slot is freed (the swap decides against a racing accept).
    fn empty_slot(s: &RingSlot, gone: impl FnOnce(&Child) -> bool) -> Option<Child> {
        let g = s.gen.load(Ordering::Acquire);
        if g == FREE || g == BUSY {
            return None;
        }
        let c = Child {
            node: s.node.load(Ordering::Relaxed),
            since: s.since.load(Ordering::Relaxed),
        };
        (gone(&c)
            && s.gen
                .compare_exchange(g, FREE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok())
        .then_some(c)
    }

    /// Empties every slot whose entry `gone` says goes, and says how many.
    pub fn remove_where(&self, mut gone: impl FnMut(&Child) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|s| Self::empty_slot(s, &mut gone).is_some())
            .count()
    }

    /// Empties every slot, handing each entry to `f` once its slot is
    /// freed (unload's last look).
    pub fn drain(&self, mut f: impl FnMut(Child)) {
        for s in self.slots.iter() {
            if let Some(c) = Self::empty_slot(s, |_| true) {
                f(c);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.gen.load(Ordering::Acquire) == FREE)
    }
}

impl<const N: usize> Default for ChildRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What one upcall recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub done: u64,
    /// Not filed for lack of memory: their accepts go uncounted.
    pub nomem: u64,
}

impl Recorded {
    /// Files `c`, a connection new on the completed queue, completed at
    /// `now`.
    pub fn one(&mut self, c: Seen, idx: &mut impl Index, now: u32) {
        if !idx.file(c.gen, now) {
            self.nomem += 1;
        }
        self.done += 1;
    }
}

/// What a listener's accepts add up to, added to without a lock: one
/// latency per accept, so the histogram's count is the accept count.
#[derive(Debug, Default)]
pub struct Accepts {
    latency: AtomicHistogram,
    /// Connections filed by the listen upcall, and those it could not
    /// file for lack of memory: written by the upcall alone, which the
    /// listener's lock serializes, so a load and a store (no locked
    /// instruction); read by anyone.
    completed: AtomicU64,
    nomem: AtomicU64,
}

impl Accepts {
    /// The listen upcall recorded `done` more completions and failed to
    /// file `nomem`. Only the upcall calls this (see the fields).
    pub fn upcall_counted(&self, done: u64, nomem: u64) {
        if done != 0 {
            let c = self.completed.load(Ordering::Relaxed);
            self.completed
                .store(c.saturating_add(done), Ordering::Relaxed);
        }
        if nomem != 0 {
            let c = self.nomem.load(Ordering::Relaxed);
            self.nomem.store(c.saturating_add(nomem), Ordering::Relaxed);
        }
    }

    /// Connections that reached the completed queue and were recorded.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Completions the upcall could not record for lack of memory.
    pub fn nomem(&self) -> u64 {
        self.nomem.load(Ordering::Relaxed)
    }

    /// accept(2) took a connection that waited `latency_us` on the
    /// completed queue.
    pub fn record(&self, latency_us: u64) {
        self.latency.record(latency_us);
    }

    pub fn accepted(&self) -> u64 {
        self.latency.snapshot().count()
    }

    pub fn latency(&self) -> Histogram {
        self.latency.snapshot()
    }
}

/// What the listen upcall alone keeps for its listener, under the
/// listener's lock (which serializes its upcalls): the connection it
/// recorded last, and the kernel's overflow state (sol_overcount,
/// sol_lastover) at its last look, so that it takes the overflow
/// counter's mutex only when a connection was refused since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpcallState {
    pub newest: Seen,
    pub overflow: (i32, Stamp),
}

/// A listener's completed queue (sol_comp) as the upcall walks it, under
/// the listener's lock: connections join at the tail and leave at the
/// head (accept(2)), or from anywhere when aborted.
pub trait CompQueue {
    fn last(&self) -> Option<Seen>;
    /// The connection before `c`, which is on the queue.
    fn prev(&self, c: Seen) -> Option<Seen>;
    /// The connection after `c`, which is on the queue.
    fn next(&self, c: Seen) -> Option<Seen>;
}

/// Calls `f` for each connection behind `newest` on `q`, oldest first: the
/// ones no upcall recorded yet. Not only the last: a filter's removal
/// (accept_filt_setopt()) moves every connection it held at once, then
/// wakes up once. Found by walking back from the tail to `newest` (all of
/// the queue when `newest` left it: whatever is on it came after),
/// matched by address and generation, since a socket accepted and closed
/// comes back at the same address, often as the very next connection.
/// Returns how many there were.
pub fn each_new(q: &impl CompQueue, newest: &mut Seen, mut f: impl FnMut(Seen)) -> u64 {
    let mut first = None;
    let mut cur = q.last();
    while let Some(c) = cur {
        if c == *newest {
            break;
        }
        first = Some(c);
        cur = q.prev(c);
    }
    let mut n = 0;
    let mut cur = first;
    while let Some(c) = cur {
        f(c);
        *newest = c;
        n += 1;
        cur = q.next(c);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    /// One listener's view of the shared index.
    struct View<'a> {
        map: &'a mut KeyMap<Child>,
        me: usize,
        fail: bool,
    }

    impl Index for View<'_> {
        fn file(&mut self, gen: u64, now: u32) -> bool {
            !self.fail && file(self.map, gen, self.me, now) != Filed::NoMemory
        }
    }

    #[test]
    fn filing_twice_keeps_the_first_completion_time() {
        let mut m = KeyMap::new();
        assert_eq!(file(&mut m, 0x40, 1, 10), Filed::New);
        assert_eq!(file(&mut m, 0x40, 1, 20), Filed::Already);
        assert_eq!(m.get(0x40), Some(Child { node: 1, since: 10 }));
        assert_eq!(file(&mut m, 0x40, 2, 30), Filed::Replaced(1));
        assert_eq!(m.get(0x40), Some(Child { node: 2, since: 30 }));
    }

    #[test]
    fn ring_files_takes_and_spills() {
        let r: ChildRing<4> = ChildRing::new();
        assert_eq!(r.file(5, 1, 10), RingFiled::New);
        assert_eq!(r.file(5, 1, 11), RingFiled::Already);
        // 9 = 5 mod 4: the slot is taken.
        assert_eq!(r.file(9, 2, 12), RingFiled::Occupied);
        // The reserved values are never filed here.
        assert_eq!(r.file(0, 2, 12), RingFiled::Occupied);
        assert_eq!(r.file(u64::MAX, 2, 12), RingFiled::Occupied);
        assert_eq!(r.take(9), None);
        assert_eq!(r.take(0), None);
        assert_eq!(r.take(5), Some(Child { node: 1, since: 10 }));
        assert_eq!(r.take(5), None);
        assert_eq!(r.file(9, 2, 12), RingFiled::New);
        assert_eq!(r.file(6, 1, 13), RingFiled::New);
        assert_eq!(r.file(7, 2, 14), RingFiled::New);
        assert_eq!(r.remove_where(|c| c.node == 2), 2);
        assert_eq!(r.take(9), None);
        assert!(!r.is_empty());
        assert_eq!(r.take(6), Some(Child { node: 1, since: 13 }));
        assert!(r.is_empty());
        assert_eq!(r.file(3, 7, 1), RingFiled::New);
        let mut got = Vec::new();
        r.drain(|c| got.push(c));
        assert_eq!(got, [Child { node: 7, since: 1 }]);
        assert!(r.is_empty());
    }

    /// Threads filing, taking and purging at once: every entry is taken
    /// exactly once (by its accept or by the purge), with what was filed.
    #[test]
    fn ring_entries_are_taken_once_under_threads() {
        use std::sync::atomic::AtomicU64 as Count;
        use std::sync::Arc;
        let r: Arc<ChildRing<64>> = Arc::new(ChildRing::new());
        let taken = Arc::new(Count::new(0));
        let filed = Arc::new(Count::new(0));
        let mut hs = Vec::new();
        for t in 0..4u64 {
            let (r, taken, filed) = (r.clone(), taken.clone(), filed.clone());
            hs.push(std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    // Distinct generations per thread, colliding slots.
                    let gen = 1 + t + 4 * i;
                    let node = (t as usize + 1) * 0x100;
                    if r.file(gen, node, gen as u32) == RingFiled::New {
                        filed.fetch_add(1, Ordering::Relaxed);
                        if i % 7 != 0 {
                            if let Some(c) = r.take(gen) {
                                assert_eq!(
                                    c,
                                    Child {
                                        node,
                                        since: gen as u32
                                    }
                                );
                                taken.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }));
        }
        // A purger meanwhile: node 0x100's entries.
        let purged = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                for _ in 0..200 {
                    n += r.remove_where(|c| c.node == 0x100);
                }
                n
            })
        };
        for h in hs {
            h.join().unwrap();
        }
        let purged = purged.join().unwrap() as u64;
        let rest = r.remove_where(|_| true) as u64;
        assert!(r.is_empty());
        assert_eq!(
            taken.load(Ordering::Relaxed) + purged + rest,
            filed.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn accepts_add_up_without_a_lock() {
        let a = Accepts::default();
        a.record(50);
        a.record(0);
        assert_eq!(a.accepted(), 2);
        assert_eq!(a.latency().count(), 2);
        assert_eq!(a.latency().buckets()[0], 1);
        a.upcall_counted(3, 0);
        a.upcall_counted(2, 1);
        assert_eq!((a.completed(), a.nomem()), (5, 1));
    }

    /// The kernel's side of the model: listeners with completed queues,
    /// sockets whose memory comes back (few addresses, a generation each
    /// time one is allocated), accept(2) taking the head.
    #[derive(Default)]
    struct World {
        /// (listener, its completed queue, its `Seen`, registered).
        listeners: Vec<(usize, VecDeque<Seen>, Seen)>,
        /// Addresses in use (on a queue or accepted and open).
        busy: Vec<usize>,
        gen: u64,
        map: KeyMap<Child>,
        /// Connections an upcall ran for after they completed, with
        /// their listener: exactly those an accept must credit.
        recorded: Vec<(Seen, usize)>,
        /// Completed, and no upcall of their listener has run since.
        unseen: Vec<(Seen, usize)>,
    }

    impl World {
        fn listener(&mut self, so: usize) -> Option<&mut (usize, VecDeque<Seen>, Seen)> {
            self.listeners.iter_mut().find(|l| l.0 == so)
        }

        /// The walk as the kernel's upcall does it, over the model's queue.
        fn since(q: &VecDeque<Seen>, newest: &mut Seen) -> Vec<Seen> {
            struct Q<'a>(&'a VecDeque<Seen>);
            impl CompQueue for Q<'_> {
                fn last(&self) -> Option<Seen> {
                    self.0.back().copied()
                }
                fn prev(&self, c: Seen) -> Option<Seen> {
                    let i = self.0.iter().position(|s| *s == c)?;
                    i.checked_sub(1).and_then(|i| self.0.get(i)).copied()
                }
                fn next(&self, c: Seen) -> Option<Seen> {
                    let i = self.0.iter().position(|s| *s == c)?;
                    self.0.get(i + 1).copied()
                }
            }
            let mut out = Vec::new();
            let n = each_new(&Q(q), newest, |c| out.push(c));
            assert_eq!(n as usize, out.len());
            out
        }

        fn upcall(&mut self, so: usize, fail: bool) -> Result<(), std::string::String> {
            let Some(i) = self.listeners.iter().position(|l| l.0 == so) else {
                return Ok(());
            };
            let (q, mut newest) = (self.listeners[i].1.clone(), self.listeners[i].2);
            let new = World::since(&q, &mut newest);
            let mut view = View {
                map: &mut self.map,
                me: so,
                fail,
            };
            let mut r = Recorded::default();
            for c in new.iter() {
                r.one(*c, &mut view, 0);
            }
            assert_eq!(r.done as usize, new.len());
            let truth: Vec<Seen> = self
                .unseen
                .iter()
                .filter(|u| u.1 == so)
                .map(|u| u.0)
                .collect();
            self.unseen.retain(|u| u.1 != so);
            if truth != new {
                return Err(std::format!(
                    "upcall walked {:?}, new were {:?}",
                    new,
                    truth
                ));
            }
            for c in new {
                if !fail {
                    self.recorded.push((c, so));
                }
            }
            self.listeners[i].2 = newest;
            Ok(())
        }

        fn complete(&mut self, so: usize, addr: usize) {
            if self.busy.contains(&addr) || self.listener(so).is_none() {
                return;
            }
            self.gen += 1;
            let s = Seen {
                so: addr,
                gen: self.gen,
            };
            self.busy.push(addr);
            self.unseen.push((s, so));
            if let Some(l) = self.listener(so) {
                l.1.push_back(s);
            }
        }

        /// accept(2) on `so`, then close of the accepted socket (its
        /// address is free again).
        fn accept(&mut self, so: usize) -> Result<(), std::string::String> {
            let Some(c) = self.listener(so).and_then(|l| l.1.pop_front()) else {
                return Ok(());
            };
            let got = self.map.remove(key_of(c.gen)).map(|e| e.node);
            // Accepted before any upcall saw it (the upcall runs with the
            // listener locked, so this cannot happen in the kernel, where
            // the completion's own wakeup comes first): never credited.
            self.unseen.retain(|r| r.0 != c);
            let want = self
                .recorded
                .iter()
                .position(|r| r.0 == c)
                .map(|i| self.recorded.swap_remove(i).1);
            self.busy.retain(|&a| a != c.so);
            if got != want {
                return Err(std::format!(
                    "accept of {:?}: index {:?}, truth {:?}",
                    c,
                    got,
                    want
                ));
            }
            Ok(())
        }

        /// Close: its queue is aborted, its entries purged.
        fn close(&mut self, so: usize) {
            let Some(i) = self.listeners.iter().position(|l| l.0 == so) else {
                return;
            };
            let (_, q, _) = self.listeners.swap_remove(i);
            for c in q {
                self.busy.retain(|&a| a != c.so);
                self.recorded.retain(|r| r.0 != c);
                self.unseen.retain(|r| r.0 != c);
            }
            self.map.remove_where(|c| c.node == so);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Listen(usize),
        Close(usize),
        Complete(usize, usize),
        Upcall(usize, bool),
        Accept(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let so = (1usize..5).prop_map(|s| s * 0x1000);
        // Few addresses: accepted sockets' memory comes back at once.
        let addr = (1usize..6).prop_map(|c| c * 0x40 + 0x10_0000);
        prop_oneof![
            so.clone().prop_map(Op::Listen),
            so.clone().prop_map(Op::Close),
            (so.clone(), addr).prop_map(|(s, c)| Op::Complete(s, c)),
            (so.clone(), proptest::bool::weighted(0.1)).prop_map(|(s, f)| Op::Upcall(s, f)),
            so.prop_map(Op::Accept),
        ]
    }

    proptest::proptest! {
        /// Every accept is credited to the listener its connection
        /// completed on exactly when an upcall recorded it, however the
        /// addresses come back; the index holds only recorded connections
        /// still queued, and nothing once every listener closed.
        #[test]
        fn accepts_find_their_listener(ops in proptest::collection::vec(op(), 0..300)) {
            let mut w = World::default();
            for o in ops {
                match o {
                    Op::Listen(so) => {
                        if w.listener(so).is_none() {
                            w.listeners.push((so, VecDeque::new(), Seen::default()));
                        }
                    }
                    Op::Close(so) => w.close(so),
                    Op::Complete(so, c) => w.complete(so, c),
                    Op::Upcall(so, fail) => {
                        let r = w.upcall(so, fail);
                        proptest::prop_assert!(r.is_ok(), "{}", r.unwrap_err());
                    }
                    Op::Accept(so) => {
                        let r = w.accept(so);
                        proptest::prop_assert!(r.is_ok(), "{}", r.unwrap_err());
                    }
                }
                proptest::prop_assert_eq!(w.map.len(), w.recorded.len());
            }
            let all: Vec<usize> = w.listeners.iter().map(|l| l.0).collect();
            for so in all {
                w.close(so);
            }
            proptest::prop_assert!(w.map.is_empty());
        }
    }
}
