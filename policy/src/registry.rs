//! The listeners listenq has seen, keyed by the socket's address (`so`).
//!
//! Everything here runs under one kernel mutex taken after the socket locks,
//! so the operations are short, allocate only fallibly and never call back.
//! Only listen(2), close and the tables come here: what a connection causes
//! (its completion, its accept) changes the listener's own `Pending`
//! (pending.rs), under the listener's own lock, and the table rows take
//! their accept counts, latency and overflows from it when they are read.

use alloc::vec::Vec;

use crate::keymap::KeyMap;
use crate::latency::Histogram;
use crate::overflow::Stamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp4,
    Tcp6,
    /// An AF_INET6 TCP socket that also takes IPv4 (no IPV6_V6ONLY): both
    /// INP_IPV4 and INP_IPV6 in its inp_vflag.
    Tcp46,
    LocalStream,
    LocalSeqpacket,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp4 => "tcp4",
            Proto::Tcp6 => "tcp6",
            Proto::Tcp46 => "tcp46",
            Proto::LocalStream => "stream",
            Proto::LocalSeqpacket => "seqpacket",
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, Proto::Tcp4 | Proto::Tcp6 | Proto::Tcp46)
    }

    /// A TCP listener's name as netstat(1) gives it (usr.bin/netstat/inet.c):
    /// from the IP versions its pcb takes (INP_IPV4 and INP_IPV6 of
    /// inp_vflag), not from the protocol switch it was made with. An
    /// AF_INET6 socket without IPV6_V6ONLY bound to the wildcard takes both
    /// (tcp46); one bound to a v4-mapped address takes only IPv4 (tcp4).
    /// A pcb with neither (not expected of a listener) keeps `self`, the
    /// protocol switch's name; sockets other than TCP keep theirs.
    pub fn as_netstat(self, ipv4: bool, ipv6: bool) -> Proto {
        if !self.is_tcp() {
            return self;
        }
        match (ipv4, ipv6) {
            (true, true) => Proto::Tcp46,
            (false, true) => Proto::Tcp6,
            (true, false) => Proto::Tcp4,
            (false, false) => self,
        }
    }
}

/// sizeof(((struct sockaddr_un *)0)->sun_path): the longest local socket
/// path, which bind(2) need not NUL-terminate.
pub const SUN_PATH_LEN: usize = 104;

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
    /// The whole sun_path; `len` bytes of `path` are valid.
    Path {
        path: [u8; SUN_PATH_LEN],
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
    /// `evict=fair`: held connections are shared between sources.
    pub fair: bool,
    /// Sources holding a connection (fair policy; 0 otherwise).
    pub sources: u32,
    /// Evictions of a full queue that took the largest source's oldest
    /// (fair policy), and evictions for a source's cap (`persource`);
    /// both are part of the row's `evicted`.
    pub evicted_fair: u64,
    pub evicted_cap: u64,
}

/// A registered listener: its row. `accepted`, `overflows` and `latency`
/// are filled in from the listener's `Pending` when the row is read.
#[derive(Debug)]
pub struct Listener {
    pub row: Row,
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
    pub counts: Counts,
}

impl Row {
    /// A listener's row as it is first recorded: its queue as sampled,
    /// nothing counted yet.
    pub fn new(
        id: u64,
        so: usize,
        proto: Proto,
        local: Local,
        backlog: i32,
        q: QueueSample,
        owner: Owner,
    ) -> Row {
        Row {
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
            counts: Counts::default(),
        }
    }
}

/// A listener's share of what `kern.ipc.listenq.stats.*` counts for the
/// whole host (accepted, overflows and evicted are the row's own fields):
/// a reader that may not see every socket, such as a jail, reads those
/// counters summed over the listeners it may see (listenq(4)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// listen(2) calls on it (not its adoption at load).
    pub listens: u64,
    /// Connections that reached its completed queue.
    pub completed: u64,
    /// Connections its listenq accept filter held (since the filter was set).
    pub held: u64,
    /// Of those, released to the completed queue.
    pub released: u64,
    /// Of those, that reached the hold timeout.
    pub timeouts: u64,
    /// Times memory ran out for one of its connections.
    pub nomem: u64,
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
    next_id: u64,
    /// Bumped whenever a listener comes or goes (struct xlistenq xl_gen).
    gen: u64,
}

impl Registry {
    pub const fn new() -> Self {
        Registry {
            listeners: Vec::new(),
            by_so: KeyMap::new(),
            next_id: 1,
            gen: 0,
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
        let i = self.index_of(so)?;
        self.listeners.get_mut(i)
    }

    /// Where `so`'s row is, if it has one.
    fn index_of(&self, so: usize) -> Option<usize> {
        let i = self.by_so.get(so)?;
        self.listeners
            .get(i)
            .is_some_and(|l| l.row.so == so)
            .then_some(i)
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
        let (l, i) = self.add(so, proto, local, backlog, q, owner)?;
        if let Some(x) = self.listeners.get_mut(i) {
            x.row.counts.listens = x.row.counts.listens.saturating_add(1);
        }
        Ok(l)
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
            .map(|(l, _)| l)
    }

    fn add(
        &mut self,
        so: usize,
        proto: Proto,
        local: Local,
        backlog: i32,
        q: QueueSample,
        owner: Owner,
    ) -> Result<(Listened, usize), NoMemory> {
        if let Some(i) = self.index_of(so) {
            if let Some(l) = self.listeners.get_mut(i) {
                l.row.backlog = backlog;
                // Neither changes while the socket listens (listeners.rs
                // says why for the protocol); taken again as read.
                l.row.proto = proto;
                l.row.local = local;
                l.apply(q);
                let id = l.row.id;
                return Ok((Listened { id, new: false }, i));
            }
        }
        if so == 0 || self.listeners.try_reserve(1).is_err() || !self.by_so.reserve(1) {
            return Err(NoMemory);
        }
        // Both reserved: neither push nor insert can fail now.
        let i = self.listeners.len();
        self.by_so.insert(so, i);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.listeners.push(Listener {
            row: Row::new(id, so, proto, local, backlog, q, owner),
        });
        self.gen = self.gen.wrapping_add(1);
        Ok((Listened { id, new: true }, i))
    }

    /// The listener is closing: forget it.
    pub fn close(&mut self, so: usize) -> Option<Listener> {
        let i = self.by_so.get(so)?;
        if self.listeners.get(i).map(|l| l.row.so) != Some(so) {
            return None;
        }
        self.by_so.remove(so);
        let l = self.listeners.swap_remove(i);
        if let Some(moved) = self.listeners.get(i) {
            self.by_so.set(moved.row.so, i);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.listeners.is_empty() {
            // Idle means no allocation at all (kern.ipc.listenq.allocs is
            // 0), not an empty buffer kept for later.
            self.listeners = Vec::new();
            self.by_so.trim();
        }
        Some(l)
    }

    /// Refreshes queue lengths (overflows are the listener's `Pending`'s).
    pub fn sample(&mut self, so: usize, q: QueueSample) {
        if let Some(l) = self.get_mut(so) {
            l.apply(q);
        }
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
    }

    /// Hands every listener over to the caller, without allocating (module
    /// unload: each carries a reference the caller gives back).
    pub fn take_all(&mut self) -> Vec<Listener> {
        if !self.listeners.is_empty() {
            self.gen = self.gen.wrapping_add(1);
        }
        self.by_so.clear();
        core::mem::take(&mut self.listeners)
    }
}

impl Listener {
    fn apply(&mut self, q: QueueSample) {
        self.row.qlen = q.qlen;
        self.row.incqlen = q.incqlen;
        self.row.qlimit = q.qlimit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_gets_the_half_closed_listen_check() {
        assert!(Proto::Tcp4.is_tcp());
        assert!(Proto::Tcp6.is_tcp());
        assert!(Proto::Tcp46.is_tcp());
        assert!(!Proto::LocalStream.is_tcp());
        assert!(!Proto::LocalSeqpacket.is_tcp());
    }

    #[test]
    fn tcp_is_named_from_its_ip_versions_as_netstat_does() {
        // AF_INET6 without IPV6_V6ONLY on the wildcard: tcp46.
        assert_eq!(Proto::Tcp6.as_netstat(true, true), Proto::Tcp46);
        assert_eq!(Proto::Tcp46.name(), "tcp46");
        // With IPV6_V6ONLY, or bound to a v6 address: tcp6.
        assert_eq!(Proto::Tcp6.as_netstat(false, true), Proto::Tcp6);
        // AF_INET6 bound to a v4-mapped address: netstat says tcp4.
        assert_eq!(Proto::Tcp6.as_netstat(true, false), Proto::Tcp4);
        assert_eq!(Proto::Tcp4.as_netstat(true, false), Proto::Tcp4);
        assert_eq!(Proto::Tcp6.as_netstat(false, false), Proto::Tcp6);
        assert_eq!(
            Proto::LocalStream.as_netstat(true, true),
            Proto::LocalStream
        );
    }

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
        assert_eq!(r.get(0x1000).map(|l| l.row.counts.listens), Some(2));
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
        let row = r.get(7).unwrap().row;
        assert_eq!(
            (row.backlog, row.qlimit, row.qlen, row.owner),
            (10, 10, 2, who)
        );
        assert_eq!(row.counts.listens, 0, "an adoption is no listen(2) call");
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
        assert!(r.close(1).is_some());
        assert!(r.close(1).is_none());
        assert!(r.is_empty());
        assert_eq!(
            r.listeners.capacity(),
            0,
            "an idle registry holds no memory"
        );
    }

    #[test]
    fn listeners_are_found_after_others_close() {
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
        }
        // swap_remove moves the last listener into each hole.
        for so in (1..=50usize).step_by(3) {
            assert!(r.close(so * 64).is_some());
        }
        for so in 1..=50usize {
            let open = (so - 1) % 3 != 0;
            assert_eq!(r.get(so * 64).map(|l| l.row.so), open.then_some(so * 64));
            r.sample(so * 64, q(3, 8));
            if open {
                assert_eq!(r.get(so * 64).map(|l| l.row.qlen), Some(3));
            }
        }
    }
}
