//! The listeners listenq has seen, keyed by the socket's address (`so`).
//!
//! Everything here runs under one kernel mutex taken after the socket locks,
//! so the operations are short, allocate only fallibly and never call back.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::backlog;
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
    next_id: u64,
    /// Bumped whenever a listener comes or goes (struct xlistenq xl_gen).
    gen: u64,
    pub stats: Stats,
}

impl Registry {
    pub const fn new() -> Self {
        Registry {
            listeners: Vec::new(),
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
        self.listeners.iter().find(|l| l.row.so == so)
    }

    pub fn get_mut(&mut self, so: usize) -> Option<&mut Listener> {
        self.listeners.iter_mut().find(|l| l.row.so == so)
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
        if self.listeners.try_reserve(1).is_err() {
            self.stats.nomem = self.stats.nomem.saturating_add(1);
            return Err(NoMemory);
        }
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
        });
        self.gen = self.gen.wrapping_add(1);
        Ok(Listened { id, new: true })
    }

    /// The listener is closing: forget it (and its pending accepts).
    pub fn close(&mut self, so: usize) -> Option<Listener> {
        let i = self.listeners.iter().position(|l| l.row.so == so)?;
        self.stats.closes = self.stats.closes.saturating_add(1);
        let l = self.listeners.swap_remove(i);
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

    /// A connection reached the completed queue of `so` at `now_us`.
    pub fn completed(&mut self, so: usize, child: usize, now_us: u64, q: QueueSample) {
        self.sample(so, q);
        let Some(l) = self.get_mut(so) else { return };
        l.newest = child;
        self.stats.completed = self.stats.completed.saturating_add(1);
        let Some(l) = self.get_mut(so) else { return };
        // The completed queue never holds more than its capacity, so more
        // pending entries than that are stale (a child that left the queue
        // without accept(2)): the oldest go first.
        let bound = usize::try_from(backlog::completed_queue_capacity(l.row.qlimit))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        while l.pending.len() >= bound {
            l.pending.pop_front();
        }
        if l.pending.try_reserve(1).is_ok() {
            l.pending.push_back((child, now_us));
        } else {
            // Its accept will not be matched: accepted and the latency
            // leave it out, and this says so.
            self.stats.nomem = self.stats.nomem.saturating_add(1);
        }
    }

    /// accept(2) returned `child`; records latency against its listener.
    /// Returns whether the child was known.
    pub fn accepted(&mut self, child: usize, now_us: u64) -> bool {
        // Once accepted, its address may come back as a new socket: it
        // must not stand for "already recorded" any more.
        for l in self.listeners.iter_mut().filter(|l| l.newest == child) {
            l.newest = 0;
        }
        // accept(2) takes the head of the completed queue, so the front of
        // some listener's pending list matches almost always.
        let hit = self
            .listeners
            .iter()
            .position(|l| l.pending.front().map(|p| p.0) == Some(child))
            .or_else(|| {
                self.listeners
                    .iter()
                    .position(|l| l.pending.iter().any(|p| p.0 == child))
            });
        let Some(i) = hit else { return false };
        let Some(l) = self.listeners.get_mut(i) else {
            return false;
        };
        let Some(j) = l.pending.iter().position(|p| p.0 == child) else {
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
    }

    /// Hands every listener over to the caller, without allocating (module
    /// unload: each carries a reference the caller gives back).
    pub fn take_all(&mut self) -> Vec<Listener> {
        if !self.listeners.is_empty() {
            self.gen = self.gen.wrapping_add(1);
        }
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
}
