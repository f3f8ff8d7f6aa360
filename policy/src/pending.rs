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
//!   adds (`Accepts`);
//! - the overflow counter, which listen(2), close and table reads sample
//!   too, keeps a mutex, which the upcall takes only when the kernel's
//!   counters moved (`overflow_key`).
//!
//! The index from a connection to its listener is shared by every
//! listener; `Index` is one listener's view of it.

use crate::keymap::KeyMap;
use crate::latency::{AtomicHistogram, Histogram};
use crate::overflow::Stamp;

/// A connection as the listen upcall saw it on the completed queue: its
/// socket and that socket's generation (so_gencnt, unique for the
/// kernel's lifetime). The address alone cannot say "already recorded":
/// once accepted and closed, a socket's memory comes back for the next
/// connection, often the very next one.
/// `repr(C)`: the kernel's walk (socket_glue.h struct lq_seen) writes
/// these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Seen {
    pub so: usize,
    pub gen: u64,
}

/// A child index entry: whose connection it is (the listener's node) and
/// when it reached the completed queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Child {
    pub node: usize,
    pub since_us: u64,
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

/// Files `child` under `node`, completed at `now_us`.
pub fn file(map: &mut KeyMap<Child>, child: usize, node: usize, now_us: u64) -> Filed {
    let fresh = Child {
        node,
        since_us: now_us,
    };
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
    /// Files `child`, completed at `now_us`, under this listener; false
    /// when there was no memory for it.
    fn file(&mut self, child: usize, now_us: u64) -> bool;
}

/// What one upcall recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub done: u64,
    /// Not filed for lack of memory: their accepts go uncounted.
    pub nomem: u64,
}

impl Recorded {
    /// Records `batch`, the connections behind `newest` on the completed
    /// queue, oldest first, and moves `newest` to the last of them.
    pub fn batch(&mut self, newest: &mut Seen, batch: &[Seen], idx: &mut impl Index, now: u64) {
        for c in batch {
            if !idx.file(c.so, now) {
                self.nomem += 1;
            }
            self.done += 1;
            *newest = *c;
        }
    }
}

/// What a listener's accepts add up to, added to without a lock: one
/// latency per accept, so the histogram's count is the accept count.
#[derive(Debug, Default)]
pub struct Accepts {
    latency: AtomicHistogram,
}

impl Accepts {
    /// accept(2) took a connection that completed at `since_us`.
    pub fn record(&self, since_us: u64, now_us: u64) {
        self.latency.record(now_us.saturating_sub(since_us));
    }

    pub fn accepted(&self) -> u64 {
        self.latency.snapshot().count()
    }

    pub fn latency(&self) -> Histogram {
        self.latency.snapshot()
    }
}

/// The kernel's overflow state (sol_overcount, sol_lastover) as one
/// number: the upcall compares it with the one folded last and takes the
/// overflow counter's mutex only when they differ, that is when a
/// connection was refused since. Different states map to different
/// numbers unless they collide in 64 bits; a collision skips one sample,
/// which the next one (any table read) folds in.
pub fn overflow_key(count: i32, stamp: Stamp) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for v in [
        u64::from(count.unsigned_abs()),
        stamp.sec as u64,
        stamp.usec as u64,
    ] {
        h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    h
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
        fn file(&mut self, child: usize, now_us: u64) -> bool {
            !self.fail && file(self.map, child, self.me, now_us) != Filed::NoMemory
        }
    }

    #[test]
    fn filing_twice_keeps_the_first_completion_time() {
        let mut m = KeyMap::new();
        assert_eq!(file(&mut m, 0x40, 1, 10), Filed::New);
        assert_eq!(file(&mut m, 0x40, 1, 20), Filed::Already);
        assert_eq!(
            m.get(0x40),
            Some(Child {
                node: 1,
                since_us: 10
            })
        );
        assert_eq!(file(&mut m, 0x40, 2, 30), Filed::Replaced(1));
        assert_eq!(
            m.get(0x40),
            Some(Child {
                node: 2,
                since_us: 30
            })
        );
    }

    #[test]
    fn accepts_add_up_without_a_lock() {
        let a = Accepts::default();
        a.record(100, 150);
        a.record(100, 90); // a clock that went back counts as 0 us
        assert_eq!(a.accepted(), 2);
        assert_eq!(a.latency().count(), 2);
        assert_eq!(a.latency().buckets()[0], 1);
    }

    #[test]
    fn overflow_key_follows_every_field() {
        let s = Stamp { sec: 5, usec: 7 };
        let k = overflow_key(3, s);
        assert_eq!(k, overflow_key(3, s));
        assert_ne!(k, overflow_key(4, s));
        assert_ne!(k, overflow_key(3, Stamp { sec: 6, usec: 7 }));
        assert_ne!(k, overflow_key(3, Stamp { sec: 5, usec: 8 }));
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

        /// The C walk (socket_glue.c lq_sol_comp_since): from the tail
        /// back to `newest`, matched by address and generation.
        fn since(q: &VecDeque<Seen>, newest: Seen) -> Vec<Seen> {
            let first = q.iter().rposition(|s| *s == newest).map_or(0, |i| i + 1);
            q.iter().skip(first).copied().collect()
        }

        fn upcall(&mut self, so: usize, fail: bool) -> Result<(), std::string::String> {
            let Some(i) = self.listeners.iter().position(|l| l.0 == so) else {
                return Ok(());
            };
            let (q, mut newest) = (self.listeners[i].1.clone(), self.listeners[i].2);
            let new = World::since(&q, newest);
            let mut view = View {
                map: &mut self.map,
                me: so,
                fail,
            };
            let mut r = Recorded::default();
            r.batch(&mut newest, &new, &mut view, 0);
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
            let got = self.map.remove(c.so).map(|e| e.node);
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
