//! The listeners listenq has seen, keyed by the socket's address (`so`).
//!
//! Everything here runs under one kernel mutex taken after the socket locks,
//! so the operations are short, allocate only fallibly and never call back.
//! What a connection causes (its completion, its accept) finds its listener
//! through socket-keyed indexes: O(1) however many listeners exist.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::backlog;
use crate::keymap::KeyMap;
use crate::latency::Histogram;
use crate::overflow::{OverflowCounter, Stamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp4,
    Tcp6,
    LocalStream,
    LocalSeqpacket,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp4 => "tcp4",
            Proto::Tcp6 => "tcp6",
            Proto::LocalStream => "stream",
            Proto::LocalSeqpacket => "seqpacket",
        }
    }
}

/// Local address, captured when the socket starts (or restarts) listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Inet {
        addr: [u8; 4],
        port: u16,
    },
    Inet6 {
        addr: [u8; 16],
        port: u16,
    },
    /// A truncated sun_path; `len` bytes of `path` are valid.
    Path {
        path: [u8; 64],
        len: u8,
    },
    Unknown,
}

/// Who owns a listener: the credential it was created with (so_cred), so
/// rows can be matched with sockstat(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u32,
    /// The jail id (0: the host).
    pub jid: i32,
}

/// What an accept filter attached to a listener reports to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterInfo {
    pub name: [u8; 16],
    pub held: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub listens: u64,
    pub closes: u64,
    pub completed: u64,
    pub accepted: u64,
    pub overflows: u64,
    pub held: u64,
    pub released: u64,
    pub evicted: u64,
    pub timeouts: u64,
    pub nomem: u64,
}

impl Stats {
    pub const ZERO: Stats = Stats {
        listens: 0,
        closes: 0,
        completed: 0,
        accepted: 0,
        overflows: 0,
        held: 0,
        released: 0,
        evicted: 0,
        timeouts: 0,
        nomem: 0,
    };
}

/// A registered listener: its row, plus what it takes to keep the row
/// current.
#[derive(Debug)]
pub struct Listener {
    pub row: Row,
    overflow: OverflowCounter,
    /// Completed connections not yet accepted, in completion order (the
    /// order accept(2) takes them): (socket, completion time in us).
    pending: VecDeque<(usize, u64)>,
    /// The connection recorded last (0: none, or it has been accepted).
    /// Sockets join a completed queue only at its tail and leave it only
    /// at its head (accept(2)), so every one behind this one is new.
    newest: usize,
    /// `newest` is not in the registry's child index (memory was short):
    /// its accept is then looked for among these listeners.
    newest_unindexed: bool,
}

/// One listener's row of the table; copied out under the lock and
/// formatted after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub id: u64,
    /// The socket's address, to match the row with other per-socket state.
    pub so: usize,
    pub proto: Proto,
    pub local: Local,
    pub backlog: i32,
    pub qlimit: u32,
    pub qlen: u32,
    pub incqlen: u32,
    pub accepted: u64,
    pub overflows: u64,
    pub filter: Option<FilterInfo>,
    /// The name of an accept filter listenq does not run (a stock accf
    /// module's), NUL-padded; shown when `filter` is None.
    pub kfilter: [u8; 16],
    pub evicted: u64,
    pub latency: Histogram,
    pub owner: Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMemory;

/// Queue state read from the listener, under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSample {
    pub qlen: u32,
    pub incqlen: u32,
    pub qlimit: u32,
    pub overcount: i32,
    pub lastover: Stamp,
}

/// What listen() did: the row's id, and whether the listener is new (the
/// caller then owns a reference it must give back when the row goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listened {
    pub id: u64,
    pub new: bool,
}

#[derive(Debug, Default)]
pub struct Registry {
    listeners: Vec<Listener>,
    /// A listener's socket to its index in `listeners`.
    by_so: KeyMap,
    /// A connection in some listener's `pending` to that listener's socket.
    by_child: KeyMap,
    /// Listeners whose `newest_unindexed` is set.
    unindexed: usize,
    next_id: u64,
    /// Bumped whenever a listener comes or goes (struct xlistenq xl_gen).
    gen: u64,
    pub stats: Stats,
}

impl Registry {
    pub const fn new() -> Self {
        Registry {
            listeners: Vec::new(),
            by_so: KeyMap::new(),
            by_child: KeyMap::new(),
            unindexed: 0,
            next_id: 1,
            gen: 0,
            stats: Stats::ZERO,
        }
    }

    pub fn gen(&self) -> u64 {
        self.gen
    }

    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    pub fn get(&self, so: usize) -> Option<&Listener> {
        let i = self.by_so.get(so)?;
        self.listeners.get(i).filter(|l| l.row.so == so)
    }

    pub fn get_mut(&mut self, so: usize) -> Option<&mut Listener> {
        let i = self.by_so.get(so)?;
        self.listeners.get_mut(i).filter(|l| l.row.so == so)
    }

    /// A successful listen(2): registers the socket, or updates the backlog
    /// of one that was already listening.
    pub fn listen(
        &mut self,
        so: usize,
        proto: Proto,
        local: Local,
        backlog: i32,
        q: QueueSample,
        owner: Owner,
    ) -> Result<Listened, NoMemory> {
        self.stats.listens = self.stats.listens.saturating_add(1);
        self.add(so, proto, local, backlog, q, owner)
    }

    /// A listener that was already listening when listenq started: the
    /// same as listen(), without counting a listen(2) call.
    pub fn adopt(
        &mut self,
        so: usize,
        proto: Proto,
        local: Local,
        q: QueueSample,
        owner: Owner,
    ) -> Result<Listened, NoMemory> {
        if let Some(l) = self.get(so) {
            return Ok(Listened {
                id: l.row.id,
                new: false,
            });
        }
        // The backlog asked for is not kept by the kernel: the limit is
        // the closest thing to it.
        let backlog = i32::try_from(q.qlimit).unwrap_or(i32::MAX);
        self.add(so, proto, local, backlog, q, owner)
    }

    fn add(
        &mut self,
        so: usize,
        proto: Proto,
        local: Local,
        backlog: i32,
        q: QueueSample,
        owner: Owner,
    ) -> Result<Listened, NoMemory> {
        if let Some(l) = self.get_mut(so) {
            l.row.backlog = backlog;
            l.row.local = local;
            l.apply(q);
            return Ok(Listened {
                id: l.row.id,
                new: false,
            });
        }
        if so == 0 || self.listeners.try_reserve(1).is_err() || !self.by_so.reserve(1) {
            self.stats.nomem = self.stats.nomem.saturating_add(1);
            return Err(NoMemory);
        }
        // Both reserved: neither push nor insert can fail now.
        self.by_so.insert(so, self.listeners.len());
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.listeners.push(Listener {
            row: Row {
                id,
                so,
                proto,
                local,
                backlog,
                qlimit: q.qlimit,
                qlen: q.qlen,
                incqlen: q.incqlen,
                accepted: 0,
                overflows: 0,
                filter: None,
                kfilter: [0; 16],
                evicted: 0,
                latency: Histogram::default(),
                owner,
            },
            overflow: OverflowCounter::new(q.overcount, q.lastover),
            pending: VecDeque::new(),
            newest: 0,
            newest_unindexed: false,
        });
        self.gen = self.gen.wrapping_add(1);
        Ok(Listened { id, new: true })
    }

    /// The listener is closing: forget it (and its pending accepts).
    pub fn close(&mut self, so: usize) -> Option<Listener> {
        let i = self.by_so.get(so)?;
        if self.listeners.get(i).map(|l| l.row.so) != Some(so) {
            return None;
        }
        self.by_so.remove(so);
        self.stats.closes = self.stats.closes.saturating_add(1);
        let l = self.listeners.swap_remove(i);
        if let Some(moved) = self.listeners.get(i) {
            self.by_so.set(moved.row.so, i);
        }
        for &(child, _) in &l.pending {
            self.forget_child(child, so);
        }
        if l.newest_unindexed {
            self.unindexed = self.unindexed.saturating_sub(1);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.listeners.is_empty() {
            // Idle means no allocation at all (kern.ipc.listenq.allocs is
            // 0), not an empty buffer kept for later.
            self.listeners = Vec::new();
        }
        Some(l)
    }

    /// Refreshes queue lengths and folds in overflows.
    pub fn sample(&mut self, so: usize, q: QueueSample) {
        let mut grew = 0;
        if let Some(l) = self.get_mut(so) {
            let before = l.row.overflows;
            l.apply(q);
            grew = l.row.overflows - before;
        }
        self.stats.overflows = self.stats.overflows.saturating_add(grew);
    }

    /// The connection of `so` recorded last by `completed` and not yet
    /// accepted; 0 if none.
    pub fn newest_completed(&self, so: usize) -> usize {
        self.get(so).map_or(0, |l| l.newest)
    }

    /// Drops `child` from the child index if it stands for `head` there
    /// (a stale entry's address may have come back for another listener).
    fn forget_child(&mut self, child: usize, head: usize) {
        if self.by_child.get(child) == Some(head) {
            self.by_child.remove(child);
        }
    }

    /// A connection reached the completed queue of `so` at `now_us`.
    pub fn completed(&mut self, so: usize, child: usize, now_us: u64, q: QueueSample) {
        self.sample(so, q);
        let Some(i) = self.by_so.get(so) else { return };
        let Some(l) = self.listeners.get_mut(i).filter(|l| l.row.so == so) else {
            return;
        };
        l.newest = child;
        self.stats.completed = self.stats.completed.saturating_add(1);
        // The completed queue never holds more than its capacity, so more
        // pending entries than that are stale (a child that left the queue
        // without accept(2)): the oldest go first.
        let bound = usize::try_from(backlog::completed_queue_capacity(l.row.qlimit))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        while l.pending.len() >= bound {
            let Some((stale, _)) = l.pending.pop_front() else {
                break;
            };
            if self.by_child.get(stale) == Some(so) {
                self.by_child.remove(stale);
            }
        }
        let indexed = l.pending.try_reserve(1).is_ok() && self.by_child.insert(child, so);
        if indexed {
            l.pending.push_back((child, now_us));
        } else {
            // Its accept will not be matched: accepted and the latency
            // leave it out, and this says so.
            self.stats.nomem = self.stats.nomem.saturating_add(1);
        }
        if indexed == l.newest_unindexed {
            l.newest_unindexed = !indexed;
            if indexed {
                self.unindexed = self.unindexed.saturating_sub(1);
            } else {
                self.unindexed = self.unindexed.saturating_add(1);
            }
        }
    }

    /// accept(2) returned `child`; records latency against its listener.
    /// Returns whether the child was known.
    pub fn accepted(&mut self, child: usize, now_us: u64) -> bool {
        let Some(head) = self.by_child.remove(child) else {
            // Not seen complete (memory was short then, or it completed
            // before listenq knew its listener). Once accepted, its address
            // may come back as a new socket: it must not stand for "already
            // recorded" any more; only an unindexed `newest` can be it.
            if self.unindexed > 0 {
                for l in self.listeners.iter_mut() {
                    if l.newest_unindexed && l.newest == child {
                        l.newest = 0;
                        l.newest_unindexed = false;
                        self.unindexed = self.unindexed.saturating_sub(1);
                    }
                }
            }
            return false;
        };
        let Some(l) = self.get_mut(head) else {
            return false;
        };
        if l.newest == child {
            l.newest = 0;
        }
        // accept(2) takes the head of the completed queue, so the front of
        // the pending list matches almost always.
        let j = if l.pending.front().map(|p| p.0) == Some(child) {
            Some(0)
        } else {
            l.pending.iter().position(|p| p.0 == child)
        };
        let Some(j) = j else {
            return false;
        };
        let Some((_, t)) = l.pending.remove(j) else {
            return false;
        };
        l.row.accepted = l.row.accepted.saturating_add(1);
        l.row.latency.record(now_us.saturating_sub(t));
        self.stats.accepted = self.stats.accepted.saturating_add(1);
        true
    }

    /// Snapshot of every row, for formatting outside the lock.
    pub fn rows(&self, out: &mut Vec<Row>) -> Result<(), NoMemory> {
        out.try_reserve(self.listeners.len())
            .map_err(|_| NoMemory)?;
        out.extend(self.listeners.iter().map(|l| l.row));
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter()
    }

    /// Forgets every listener and frees all memory (module unload).
    pub fn clear(&mut self) {
        self.listeners = Vec::new();
        self.by_so.clear();
        self.by_child.clear();
        self.unindexed = 0;
    }

    /// Hands every listener over to the caller, without allocating (module
    /// unload: each carries a reference the caller gives back).
    pub fn take_all(&mut self) -> Vec<Listener> {
        if !self.listeners.is_empty() {
            self.gen = self.gen.wrapping_add(1);
        }
        self.by_so.clear();
        self.by_child.clear();
        self.unindexed = 0;
        core::mem::take(&mut self.listeners)
    }
}

impl Listener {
    fn apply(&mut self, q: QueueSample) {
        self.row.qlen = q.qlen;
        self.row.incqlen = q.incqlen;
        self.row.qlimit = q.qlimit;
        self.overflow.sample(q.overcount, q.lastover);
        self.row.overflows = self.overflow.total();
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(qlen: u32, qlimit: u32) -> QueueSample {
        QueueSample {
            qlen,
            incqlen: 0,
            qlimit,
            overcount: 0,
            lastover: Stamp::default(),
        }
    }

    #[test]
    fn listen_twice_updates_not_duplicates() {
        let mut r = Registry::new();
        let a = r
            .listen(
                0x1000,
                Proto::Tcp4,
                Local::Unknown,
                4,
                q(0, 4),
                Owner::default(),
            )
            .unwrap();
        let b = r
            .listen(
                0x1000,
                Proto::Tcp4,
                Local::Unknown,
                9,
                q(0, 9),
                Owner::default(),
            )
            .unwrap();
        assert_eq!(a.id, b.id);
        assert!(a.new && !b.new, "only the first listen() takes a reference");
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.get(0x1000).map(|l| (l.row.backlog, l.row.qlimit)),
            Some((9, 9))
        );
        assert_eq!(r.stats.listens, 2);
    }

    #[test]
    fn accepts_match_completions_in_fifo_order() {
        let mut r = Registry::new();
        r.listen(1, Proto::Tcp4, Local::Unknown, 4, q(0, 4), Owner::default())
            .unwrap();
        r.listen(
            2,
            Proto::LocalStream,
            Local::Unknown,
            4,
            q(0, 4),
            Owner::default(),
        )
        .unwrap();
        for (i, child) in [10usize, 11, 12].iter().enumerate() {
            r.completed(1, *child, 100, q(i as u32 + 1, 4));
        }
        r.completed(2, 20, 100, q(1, 4));
        assert!(r.accepted(10, 150));
        assert!(r.accepted(20, 1100));
        assert!(r.accepted(11, 300));
        assert!(!r.accepted(99, 300));
        let l = r.get(1).unwrap();
        assert_eq!(l.row.accepted, 2);
        assert_eq!(l.row.latency.count(), 2);
        assert_eq!(l.pending_len(), 1);
        assert_eq!(r.get(2).unwrap().row.accepted, 1);
        assert_eq!(r.stats.accepted, 3);
    }

    #[test]
    fn overflows_fold_into_row_and_stats() {
        let mut r = Registry::new();
        r.listen(1, Proto::Tcp4, Local::Unknown, 4, q(0, 4), Owner::default())
            .unwrap();
        let s = QueueSample {
            qlen: 7,
            incqlen: 0,
            qlimit: 4,
            overcount: 4,
            lastover: Stamp { sec: 5, usec: 0 },
        };
        r.sample(1, s);
        assert_eq!(r.get(1).unwrap().row.overflows, 5);
        assert_eq!(r.stats.overflows, 5);
        r.sample(1, s);
        assert_eq!(r.stats.overflows, 5);
    }

    #[test]
    fn stale_pending_entries_are_bounded() {
        let mut r = Registry::new();
        r.listen(1, Proto::Tcp4, Local::Unknown, 0, q(0, 0), Owner::default())
            .unwrap();
        for child in 0..100usize {
            r.completed(1, 1000 + child, 0, q(1, 0));
        }
        assert!(r.get(1).unwrap().pending_len() <= 2);
    }

    #[test]
    fn newest_completed_follows_records_and_forgets_accepted() {
        let mut r = Registry::new();
        r.listen(1, Proto::Tcp4, Local::Unknown, 4, q(0, 4), Owner::default())
            .unwrap();
        assert_eq!(r.newest_completed(1), 0);
        r.completed(1, 10, 0, q(1, 4));
        r.completed(1, 11, 0, q(2, 4));
        assert_eq!(r.newest_completed(1), 11);
        assert_eq!(r.stats.completed, 2);
        assert!(r.accepted(10, 5));
        assert_eq!(r.newest_completed(1), 11);
        assert!(r.accepted(11, 5));
        assert_eq!(
            r.newest_completed(1),
            0,
            "an accepted socket's address may be reused"
        );
        assert_eq!(r.newest_completed(2), 0);
    }

    #[test]
    fn adopt_and_generation() {
        let mut r = Registry::new();
        let g0 = r.gen();
        let who = Owner { uid: 1001, jid: 3 };
        let a = r
            .adopt(7, Proto::Tcp6, Local::Unknown, q(2, 10), who)
            .unwrap();
        assert!(a.new);
        assert_eq!(r.stats.listens, 0, "adopting is not a listen(2) call");
        let row = r.get(7).unwrap().row;
        assert_eq!(
            (row.backlog, row.qlimit, row.qlen, row.owner),
            (10, 10, 2, who)
        );
        assert!(
            !r.adopt(7, Proto::Tcp6, Local::Unknown, q(0, 10), who)
                .unwrap()
                .new
        );
        let g1 = r.gen();
        assert_ne!(g0, g1);
        let all = r.take_all();
        assert_eq!(all.len(), 1);
        assert!(r.is_empty());
        assert_ne!(r.gen(), g1);
    }

    #[test]
    fn close_forgets() {
        let mut r = Registry::new();
        r.listen(1, Proto::Tcp4, Local::Unknown, 1, q(0, 1), Owner::default())
            .unwrap();
        r.completed(1, 5, 0, q(1, 1));
        assert!(r.close(1).is_some());
        assert!(r.close(1).is_none());
        assert!(!r.accepted(5, 1));
        assert!(r.is_empty());
        assert_eq!(
            r.listeners.capacity(),
            0,
            "an idle registry holds no memory"
        );
    }

    #[test]
    fn stale_entries_leave_the_child_index() {
        let mut r = Registry::new();
        r.listen(1, Proto::Tcp4, Local::Unknown, 0, q(0, 0), Owner::default())
            .unwrap();
        for child in 0..100usize {
            r.completed(1, 1000 + child, 0, q(1, 0));
        }
        assert_eq!(r.by_child.len(), r.get(1).unwrap().pending_len());
        assert!(r.close(1).is_some());
        assert!(r.by_child.is_empty() && r.by_so.is_empty());
    }

    #[test]
    fn accepts_find_their_listener_after_others_close() {
        let mut r = Registry::new();
        for so in 1..=50usize {
            r.listen(
                so * 64,
                Proto::Tcp4,
                Local::Unknown,
                8,
                q(0, 8),
                Owner::default(),
            )
            .unwrap();
            r.completed(so * 64, so * 64 + 1, 0, q(1, 8));
        }
        // swap_remove moves the last listener into each hole.
        for so in (1..=50usize).step_by(3) {
            assert!(r.close(so * 64).is_some());
        }
        for so in 1..=50usize {
            let open = (so - 1) % 3 != 0;
            assert_eq!(r.accepted(so * 64 + 1, 9), open, "child of listener {}", so);
            if open {
                assert_eq!(r.get(so * 64).map(|l| l.row.accepted), Some(1));
            }
        }
        assert!(r.by_child.is_empty());
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
        fn indexed_registry_matches_the_scanning_one(ops in proptest::collection::vec(op(), 0..200)) {
            let mut r = Registry::new();
            let mut m = Scanned::default();
            for o in ops {
                match o {
                    Op::Listen(so, l) => {
                        r.listen(so, Proto::Tcp4, Local::Unknown, l as i32, q(0, l), Owner::default()).unwrap();
                        m.listen(so, l);
                    }
                    Op::Close(so) => proptest::prop_assert_eq!(r.close(so).is_some(), m.close(so)),
                    Op::Completed(so, c) => {
                        // A connection sits on one completed queue at a time.
                        if m.listeners.iter().any(|l| l.2.contains(&c)) {
                            continue;
                        }
                        let l = m.listeners.iter().find(|l| l.0 == so).map_or(0, |l| l.1);
                        r.completed(so, c, 0, q(1, l));
                        m.completed(so, c);
                    }
                    Op::Accepted(c) => proptest::prop_assert_eq!(r.accepted(c, 1), m.accepted(c)),
                }
                for l in &m.listeners {
                    let got = r.get(l.0).map(|x| (x.row.accepted, x.newest, x.pending_len()));
                    proptest::prop_assert_eq!(got, Some((l.4, l.3, l.2.len())));
                }
                proptest::prop_assert_eq!(r.len(), m.listeners.len());
                let pending: usize = m.listeners.iter().map(|l| l.2.len()).sum();
                proptest::prop_assert_eq!(r.by_child.len(), pending);
            }
        }
    }
}
