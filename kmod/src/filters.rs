//! The listeners with a listenq accept filter attached, and the
//! connections each one holds (its secondary queue): the state accf.rs
//! works on and listeners.rs shows in its tables. The list lives in
//! the registry (listeners.rs State::accf); each listener's state has its own
//! mutex (kern/filter_arg.rs), which is all a connection's calls take.

use crate::kern::filter_arg::{Arg, FilterArgs};
use crate::kern::held_conns::{self, HeldConns};
use crate::kern::percpu::PerCpu;
use core::sync::atomic::AtomicUsize;
use listenq_accf::{Config, Conn};
use listenq_policy::backlog;
use listenq_policy::registry::{FilterInfo, Row};

/// A held connection's parser state and how many bytes it has consumed.
/// Letting it go needs nothing more: its slot waits on the hold queue's
/// leaving list for the listener's task (kern/held_conns.rs).
#[derive(Clone, Copy)]
pub struct ConnState {
    pub conn: Conn,
    pub fed: u32,
}

/// What one held connection costs the listener's hold queue: its slab
/// slot, 40 bytes (the socket, when it arrived, this state, the list
/// links), 102 to a 4 KiB chunk; the index adds 4-byte buckets, a power of
/// two at least 4/3 of the slots (listenq(4) "The secondary queue", the
/// bench's check in tests/runner/src/t_bench.rs). Checked here so that a
/// change shows.
const _: () = assert!(core::mem::size_of::<ConnState>() == 16);
const _: () = assert!(held_conns::slot_bytes::<ConnState>() == 40);

/// One listener with a listenq filter attached: its own state, on the
/// heap, reached from the kernel's filter argument. How long it lives:
/// kern/filter_arg.rs.
pub struct ListenerFilter {
    pub cfg: Config,
    pub holdq: HeldConns<ConnState>,
    pub evicted: u64,
    pub counts: FilterCounts,
}

/// This filter's share of kern.ipc.listenq.stats.* (evictions are
/// `evicted`), which readers who may not see every socket get summed over
/// the listeners they see (listeners.rs `sysctl_stat`). Under the state's
/// mutex, like the rest of it.
#[derive(Default, Clone, Copy)]
pub struct FilterCounts {
    pub held: u64,
    pub released: u64,
    pub timeouts: u64,
    pub nomem: u64,
}

impl FilterCounts {
    pub fn bump(c: &mut u64) {
        *c = c.saturating_add(1);
    }
}

pub struct Filters {
    pub states: FilterArgs<ListenerFilter>,
}

/// Sockets carrying listenq's destructor (held, or released and not yet
/// accepted): unload must wait for them. Counted per CPU (every filtered
/// connection passes here twice). Counted up under the state's mutex
/// while it is attached, so once unload saw no state under the registry
/// (the last detach complete), nothing adds any more and the sum it reads
/// can only be too high, never 0 while one is left (PerCpu::sum).
static TAGGED: PerCpu = PerCpu::new();

/// `Filters::states`' count of detached states (kern/filter_arg.rs).
static DETACHED: AtomicUsize = AtomicUsize::new(0);

pub fn tagged_add() {
    TAGGED.add(1);
}

pub fn tagged_sub() {
    TAGGED.add(-1);
}

impl Filters {
    pub const fn new() -> Filters {
        Filters {
            states: FilterArgs::new(&DETACHED),
        }
    }

    /// listen(2) again on a listener with a listenq filter: the hold limit
    /// follows the new queue limit (a smaller one takes effect at the next
    /// admission, which evicts the oldest extras; a larger one reserves
    /// nothing more: the queue grows as it holds). Not a per-connection
    /// path: a walk of the filtered listeners.
    pub fn relisten(&mut self, head: usize, qlimit: u32) {
        self.states.with(head, |f| {
            f.holdq.set_capacity(backlog::hold_capacity(qlimit));
        });
    }

    /// Frees everything (module unload, once nothing is in use).
    pub fn clear(&mut self) {
        self.states.clear(|f| f.holdq.clear());
    }

    pub fn in_use(&self) -> bool {
        !self.states.is_empty() || TAGGED.sum() > 0
    }

    /// Fills in a listeners-table row's filter columns.
    pub fn annotate(&self, row: &mut Row) {
        let got = self.states.with(row.so, |f| {
            let mut name = [0u8; 16];
            let n = f.cfg.kind.name().as_bytes();
            if let Some(d) = name.get_mut(..n.len()) {
                d.copy_from_slice(n);
            }
            let ev = f.holdq.evictions();
            let info = FilterInfo {
                name,
                held: u32::try_from(f.holdq.len()).unwrap_or(u32::MAX),
                fair: f.holdq.is_fair(),
                sources: u32::try_from(f.holdq.sources()).unwrap_or(u32::MAX),
                evicted_fair: ev.fair,
                evicted_cap: ev.cap,
            };
            (info, f.evicted, f.counts)
        });
        if let Some((info, evicted, c)) = got {
            row.filter = Some(info);
            row.evicted = evicted;
            row.counts.held = c.held;
            row.counts.released = c.released;
            row.counts.timeouts = c.timeouts;
            row.counts.nomem = row.counts.nomem.saturating_add(c.nomem);
        }
    }
}

/// One upcall naming `a` has been cleared (`key`'s): it lets go of `key`
/// if still held, and frees a detached state nothing names now. Takes
/// only that state's mutex.
pub fn release_upcall(a: Arg<'_, ListenerFilter>, key: usize) {
    let mut g = a.lock();
    g.get().holdq.remove(key);
    g.release();
}
