//! Each registered listener's node: what the listen upcall and pr_accept
//! change for it (policy/src/children.rs says who touches what), on the
//! heap and counted, and the index from a connection to its listener's
//! node (`Children`): a lock-free ring of slots, and for a connection whose
//! slot is taken, shards with a mutex each. A connection whose slot was
//! free takes no lock of listenq's at completion (the upcall, which runs
//! under its listener's lock) or at accept(2).
//!
//! # Who names a node
//!
//! A node is an `ARef` (kern/sync): counted, and freed by whoever drops the
//! last reference: nothing else names it then, and nobody holds its mutex
//! (a guard borrows a reference). The references are `PendingRef`s, or
//! raw pointers the kernel or the index keep (`ARef::into_raw`):
//!
//! - the registry row's (listeners.rs `Tracked`), from registration until
//!   the row is gone and the node closed (below);
//! - the listen upcall's: `install_listen_upcall` hands one to the kernel
//!   as the upcall's argument, and `remove_listen_upcall` takes it back
//!   only after clearing the upcall under the listener's lock, which the
//!   upcall runs with: once cleared, no upcall runs or will run with it;
//! - one per entry of the child index: taken before the entry is filed
//!   and given back by whoever removes it (accept(2) through `take_child`,
//!   or `purge` at close), or by whoever replaces it with another node's
//!   (the entry's key, a socket address, came back for another listener);
//! - a borrowed one for the length of a call (`with_upcall`: the
//!   upcall's own, which the kernel passes back).
//!
//! Closing (`PendingRef::close`, from the row's owner once the row has
//! left the registry) marks the node closed; the owner then removes the
//! upcall, after which no new index entry can name the node, and purges
//! the entries that do. An upcall installed after the owner removed it
//! (registration racing with close) is taken back by its installer, which
//! checks `closed` after installing (listeners.rs `register`): closing
//! sets it before removing.
//!
//! # Locking
//!
//! `upcall` is the listen upcall's alone: it runs with its listener's
//! lock held, which serializes it, and a node is the upcall argument of
//! one listener only. `accepts` is atomic. The mutex ("listenq listener")
//! guards the overflow counter, which listen(2), close and table reads
//! sample; the upcall takes it only when the kernel's counters moved since
//! its own last look. The child index's ring takes no lock.
//! Lock order: the listener's socket lock (the upcall), then the registry
//! (tables), then a node's mutex, then a shard's mutex ("listenq
//! children"). A thread holds at most one node mutex and one shard mutex.

use core::cell::UnsafeCell;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::kern::socket::SocketRef;
use crate::kern::sync::{ARef, Mutex, MutexGuard};
use crate::kern::time::Tick;
use listenq_bindings as sys;
use listenq_policy::children::{
    self as policy, Accepts, Child, ChildRing, Filed, Index, RingFiled, Seen, UpcallState,
};
use listenq_policy::keymap::KeyMap;
use listenq_policy::overflow::{OverflowCounter, Stamp};

struct Node {
    /// Initialized in `new`, destroyed when the node is dropped.
    overflow: Mutex<OverflowCounter>,
    /// Set by `close`: the upcall records nothing any more.
    closed: AtomicBool,
    /// The upcall's (top of this file).
    upcall: UnsafeCell<UpcallState>,
    accepts: Accepts,
}

/// One counted reference to a listener's node (see the top of this
/// file). Dropping it gives the reference back, and frees the node if it
/// was the last.
#[derive(Clone)]
pub struct PendingRef(ARef<Node>);

// SAFETY: the node is shared only through its atomics and its mutex, which
// any thread may take; `upcall` only under the listener lock the upcall
// holds; dropping the last reference may free it on any thread.
unsafe impl Send for PendingRef {}

/// The child index: a connection (its so_gencnt) to the node of the
/// listener it completed on (the node's address) and its completion time,
/// one counted reference per entry. Part of the Module value
/// (kern/module.rs), which lives in static storage, so that an idle
/// module allocates nothing.
pub struct Children {
    /// First the ring, whose slots need no lock (policy::ChildRing says
    /// why); 2048 slots of 24 bytes: a generation's slot is taken only
    /// while another connection, 2048 sockets older or younger, waits
    /// there for its accept.
    ring: ChildRing<2048>,
    /// The second level, for connections whose ring slot was taken:
    /// sharded so that accepts on different CPUs rarely meet.
    shards: [Mutex<KeyMap<Child>>; SHARDS],
    /// Entries in the shards. accept(2) of a connection the ring does not
    /// have looks in the shards only when this is not 0: its upcall
    /// counted its entry before the listener's lock was dropped, which
    /// solisten_dequeue() took afterwards, so an accept cannot read 0
    /// while its own entry waits.
    spilled: AtomicUsize,
    /// While set (debug.fail_point.listenq_ring_full, read by the tick),
    /// new connections go to the shards as if their ring slot were taken:
    /// what lets a test reach the shards' failure to allocate.
    ring_off: AtomicBool,
}

const SHARDS: usize = 64;

impl Children {
    /// Only inside the Module value, whose `publish` initializes it in
    /// place before anyone can reach it.
    pub(in crate::kern) const fn new() -> Children {
        Children {
            ring: ChildRing::new(),
            shards: [const { Mutex::new(KeyMap::new()) }; SHARDS],
            spilled: AtomicUsize::new(0),
            ring_off: AtomicBool::new(false),
        }
    }

    /// mtx_init(9) of every shard.
    ///
    /// # Safety
    /// Once, where the value stays until dropped, before it is shared.
    pub(in crate::kern) unsafe fn init(&self) {
        for s in self.shards.iter() {
            // SAFETY: the caller's contract, for each shard.
            unsafe { s.init(c"listenq children") };
        }
    }

    #[track_caller]
    fn shard(&self, gen: u64) -> MutexGuard<'_, KeyMap<Child>> {
        // Fibonacci hashing: the top bits pick the shard, so that the
        // KeyMap inside, which hashes the same way but keeps mostly low
        // bits, still spreads a shard's keys.
        let h = gen.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        let i = usize::try_from(h).unwrap_or(0) % SHARDS;
        // `i` < SHARDS; the fallback is never taken.
        let m = self.shards.get(i).unwrap_or(&self.shards[0]);
        // SAFETY: initialized by `init` before the value was shared, and
        // destroyed only when it is dropped, which the guard's borrow of
        // `self` outlasts.
        unsafe { m.lock() }
    }

    /// The tick (every accf_names::TICK_MS): the ring's fail point is
    /// read, and the empty shards give their tables back within a tick of
    /// going idle (they keep them while connections come and go).
    pub fn tick(&self) {
        // SAFETY: evaluates a fail point; no other effect.
        let off = unsafe { sys::lq_fail_ring_full() } != 0;
        self.ring_off.store(off, Ordering::Relaxed);
        self.trim();
    }

    /// Frees the tables of empty shards. Shards keep their tables while
    /// connections come and go (no malloc(9) per connection); once no
    /// listener is left, an idle module allocates nothing.
    pub fn trim(&self) {
        for s in self.shards.iter() {
            // SAFETY: as in `shard`.
            unsafe { s.lock() }.trim();
        }
    }

    /// accept(2) took the connection of generation `gen` off its
    /// listener's completed queue: its listener's node (with the
    /// reference the entry owned) and when it completed, if listenq
    /// recorded its completion.
    pub fn take_child(&self, gen: u64) -> Option<(PendingRef, Tick)> {
        let c = match self.ring.take(gen) {
            Some(c) => c,
            None if self.spilled.load(Ordering::Acquire) == 0 => return None,
            None => {
                let c = self.shard(gen).remove(policy::key_of(gen))?;
                self.spilled.fetch_sub(1, Ordering::Release);
                c
            }
        };
        // The entry's reference becomes the caller's.
        let n = NonNull::new(c.node as *mut ())?;
        // SAFETY: the entry owned a reference (a node's `into_raw`), taken
        // off the index once, here.
        Some((PendingRef(unsafe { ARef::from_raw(n) }), Tick(c.since)))
    }
}

impl Drop for Children {
    /// Unload, once no thread is inside listenq (or a failed load): every
    /// listener was purged, so the index is empty; should an entry be
    /// left, its reference still goes.
    fn drop(&mut self) {
        for s in self.shards.iter_mut() {
            s.get_mut().trim();
        }
        self.ring.drain(|c| {
            if let Some(n) = NonNull::new(c.node as *mut ()) {
                // SAFETY: the entry owned a reference (`ARef::into_raw` of
                // a node), which emptying its slot handed over to this
                // thread, taken back once here.
                drop(unsafe { ARef::<Node>::from_raw(n) });
            }
        });
    }
}

impl PendingRef {
    /// A new node for a listener whose overflow state is (`overcount`,
    /// `lastover`), with one reference (the caller's); None when memory is
    /// short (M_NOWAIT).
    pub fn new(overcount: i32, lastover: Stamp) -> Option<PendingRef> {
        let node = Node {
            overflow: Mutex::new(OverflowCounter::new(overcount, lastover)),
            closed: AtomicBool::new(false),
            upcall: UnsafeCell::new(UpcallState {
                newest: Seen::default(),
                overflow: (overcount, lastover),
            }),
            accepts: Accepts::default(),
        };
        ARef::try_new_with(node, |n| {
            // SAFETY: zeroed, in the node's final place, not shared yet.
            unsafe { n.overflow.init(c"listenq listener") }
        })
        .map(PendingRef)
    }

    fn node(&self) -> &Node {
        &self.0
    }

    /// The node's address: its identity in the child index.
    fn addr(&self) -> usize {
        self.0.as_raw().as_ptr() as usize
    }

    /// Folds in one sample of the kernel's overflow counter of listener
    /// `head`; how many overflows it adds (listenq:::overflow says so).
    pub fn sample_overflows(&self, head: usize, overcount: i32, lastover: Stamp) -> u64 {
        // SAFETY: initialized in new(), destroyed only with the node,
        // which this reference keeps. Callers hold at most socket locks
        // and the registry, all MTX_DEF and before this one in the lock order.
        let mut o = unsafe { self.node().overflow.lock() };
        let before = o.total();
        o.sample(overcount, lastover);
        let grew = o.total().saturating_sub(before);
        drop(o);
        crate::kern::sdt::overflow(head, grew);
        grew
    }

    pub fn overflows(&self) -> u64 {
        // SAFETY: as in sample_overflows.
        let o = unsafe { self.node().overflow.lock() };
        o.total()
    }

    pub fn accepts(&self) -> &Accepts {
        &self.node().accepts
    }

    /// The node the listen upcall's argument names, borrowed for `f` with
    /// the upcall's own state.
    ///
    /// # Safety
    /// `arg` is null or the argument of an installed listen upcall the
    /// kernel is running, with that listener's lock held: the upcall
    /// cannot be removed and its reference given back meanwhile, and no
    /// other upcall of that listener runs (the only ones to touch
    /// `upcall`).
    pub(in crate::kern) unsafe fn with_upcall<R>(
        arg: *mut cty::c_void,
        f: impl FnOnce(&PendingRef, &mut UpcallState) -> R,
    ) -> Option<R> {
        let n = NonNull::new(arg.cast::<()>())?;
        // Not dropped: the reference stays the upcall's.
        // SAFETY: the upcall's argument is `ARef::into_raw` of a node
        // (install_listen_upcall), still owned by the upcall (caller).
        let r = ManuallyDrop::new(PendingRef(unsafe { ARef::from_raw(n) }));
        // SAFETY: `upcall` is touched only by this listener's upcalls,
        // which its lock serializes (caller).
        let st = unsafe { &mut *r.node().upcall.get() };
        Some(f(&r, st))
    }

    /// Closed: the upcall must record nothing.
    pub fn closed(&self) -> bool {
        self.node().closed.load(Ordering::SeqCst)
    }

    /// The row's owner, after the row left the registry and before the
    /// upcall is removed: from now on the upcall records nothing.
    pub fn close(&self) {
        self.node().closed.store(true, Ordering::SeqCst);
    }

    /// Once the upcall is removed (nothing files new entries naming this
    /// node): the index forgets every connection of this listener not
    /// accepted, and gives back their references. Only when some other
    /// reference than the caller's is left, which every entry is; a sweep
    /// of every shard (a listener's close, not a connection's path).
    pub fn purge(&self, ix: &Children) {
        if self.0.count() <= 1 {
            return;
        }
        let me = self.addr();
        let mut gone = ix.ring.remove_where(|c| c.node == me);
        if ix.spilled.load(Ordering::Acquire) != 0 {
            let mut spilled = 0;
            for s in ix.shards.iter() {
                // SAFETY: as in `Children::shard`.
                spilled += unsafe { s.lock() }.remove_where(|c| c.node == me);
            }
            ix.spilled.fetch_sub(spilled, Ordering::Release);
            gone += spilled;
        }
        // SAFETY: each entry removed owned one reference, now given back;
        // never the last, the caller holds one.
        unsafe { self.0.drop_raw_refs(gone) };
    }

    /// The index as this listener's upcall files into it.
    pub fn index<'a>(&'a self, ix: &'a Children) -> ChildIndex<'a> {
        ChildIndex { me: self, ix }
    }
}

/// The child index as one listener's upcall sees it.
pub struct ChildIndex<'a> {
    me: &'a PendingRef,
    ix: &'a Children,
}

impl Index for ChildIndex<'_> {
    fn file(&mut self, gen: u64, now: u32) -> bool {
        let me = self.me.addr();
        // Filed twice only if the connection recorded last left the queue
        // from its middle and the walk started over (FreeBSD 14 takes
        // connections off sol_comp only at its head or with the whole
        // listener, so this is a guard): one filed in the shards then
        // must not get a second entry in a ring slot freed since.
        if self.ix.spilled.load(Ordering::Acquire) != 0
            && self.ix.shard(gen).contains(policy::key_of(gen))
        {
            return true;
        }
        // The entry's reference, counted before it is published (an
        // accept may take the entry and give it back right after).
        let entry = self.me.0.clone().into_raw();
        let filed = if self.ix.ring_off.load(Ordering::Relaxed) {
            RingFiled::Occupied
        } else {
            self.ix.ring.file(gen, me, now)
        };
        match filed {
            RingFiled::New => return true,
            RingFiled::Already => {
                // The entry keeps its one reference.
                // SAFETY: `entry` was not published; taken back once.
                drop(unsafe { ARef::<Node>::from_raw(entry) });
                return true;
            }
            RingFiled::Occupied => {
                // Never the last reference: the upcall's is held.
                // SAFETY: as above.
                drop(unsafe { ARef::<Node>::from_raw(entry) });
            }
        }
        let mut m = self.ix.shard(gen);
        let replaced = match policy::file(&mut m, gen, me, now) {
            Filed::NoMemory => return false,
            // The entry keeps its one reference.
            Filed::Already => return true,
            Filed::New => None,
            Filed::Replaced(other) => NonNull::new(other as *mut ()),
        };
        if replaced.is_none() {
            self.ix.spilled.fetch_add(1, Ordering::Release);
        }
        // The new entry's reference, counted before the shard is unlocked
        // (an accept may take the entry and give it back right after); the
        // entry holds it as `me`, the same address.
        let _ = self.me.0.clone().into_raw();
        drop(m);
        if let Some(other) = replaced {
            // SAFETY: the replaced entry owned a reference to `other` (a
            // node's `into_raw`), which is now this thread's, taken back
            // once here.
            drop(unsafe { ARef::<Node>::from_raw(other) });
        }
        true
    }
}

impl SocketRef<'_> {
    /// Claims the listen upcall if nobody else has (see socket_glue.h), with
    /// a reference to `p` as its argument. True if it was installed.
    pub fn install_listen_upcall(self, p: &PendingRef) -> bool {
        let r = p.0.clone().into_raw();
        // SAFETY: live socket; the helper takes the listen lock. The
        // argument is a counted reference the upcall owns if installed.
        let done = unsafe { sys::lq_listen_upcall_install(self.as_ptr(), r.as_ptr().cast()) } != 0;
        if !done {
            // SAFETY: not installed, so still this thread's; taken back once.
            drop(unsafe { ARef::<Node>::from_raw(r) });
        }
        done
    }

    /// Removes listenq's upcall if its argument is `p`, and gives the
    /// upcall's reference back: no upcall runs with it afterwards (cleared
    /// under the listen lock the upcall runs with).
    pub fn remove_listen_upcall(self, p: &PendingRef) {
        // SAFETY: live socket; the helper takes the listen lock.
        let removed =
            unsafe { sys::lq_listen_upcall_remove(self.as_ptr(), p.0.as_raw().as_ptr().cast()) }
                != 0;
        if removed {
            // SAFETY: the upcall's reference (install_listen_upcall), now
            // this thread's, taken back once.
            drop(unsafe { ARef::<Node>::from_raw(p.0.as_raw()) });
        }
    }
}
