//! Each registered listener's `Pending` (its completed, not yet accepted
//! connections, accept count, latency and overflow counter) on the heap
//! with its own mutex, and the index from a connection to its listener's
//! `Pending`, split into shards with a mutex each. The listen upcall and
//! pr_accept reach these without REGISTRY.
//!
//! # Who names a `Pending`
//!
//! A node counts its references (`refs`), and whoever drops the last one
//! frees it: nothing else names it then, and nobody holds its mutex (a
//! guard borrows a reference). Freeing never sleeps (mtx_destroy(9),
//! free(9)), so a reference may be dropped with any mutex held. The
//! references are `PendingRef`s:
//!
//! - the registry row's (listeners.rs `Tracked`), from registration until
//!   the row is gone and the node closed (below);
//! - the listen upcall's: `install_listen_upcall` hands one to the kernel
//!   as the upcall's argument, and `remove_listen_upcall` takes it back
//!   only after clearing the upcall under the listener's lock, which the
//!   upcall runs with: once cleared, no upcall runs or will run with it;
//! - one per entry of the child index: taken before the entry is filed
//!   and given back by whoever removes it (accept(2) through `take_child`,
//!   or the node's own `Children::forget`, under its mutex, for a stale
//!   entry or at close), or by whoever replaces it with another node's
//!   (the entry's key, a socket address, came back for another listener);
//! - a borrowed one for the length of a call (`with_borrowed`: the
//!   upcall's own, which the kernel passes back).
//!
//! Closing (`PendingRef::close`, from the row's owner once the row has
//! left the registry) marks the node closed under its mutex; from then on
//! the upcall records nothing, so after its purge no new index entry can
//! name the node, and once the upcall is removed and the row's reference
//! dropped, only accepts that already took an entry still name it. An
//! upcall installed after the owner removed it (registration racing with
//! close) is taken back by its installer, which checks `closed` after
//! installing (listeners.rs `register`): closing sets it before removing.
//!
//! # Locking
//!
//! Lock order: the listener's socket lock (the upcall), then REGISTRY
//! (tables), then a node's mutex ("listenq listener"), then a shard's
//! mutex ("listenq children"). A thread holds at most one node mutex and
//! one shard mutex; accept(2) takes a shard, releases it, and only then
//! the node.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use crate::kern::mtx::KMutex;
use crate::kern::socket::SocketRef;
use listenq_bindings as sys;
use listenq_policy::keymap::KeyMap;
use listenq_policy::pending::{Children, Pending};

struct Node {
    /// Initialized in `new` on zeroed storage, destroyed in `free`.
    mtx: UnsafeCell<MaybeUninit<sys::mtx>>,
    refs: AtomicUsize,
    /// Under `mtx`.
    inner: UnsafeCell<Inner>,
}

struct Inner {
    pending: Pending,
    /// Set by `close`: the upcall records nothing any more.
    closed: bool,
}

/// One counted reference to a listener's `Pending` (see the top of this
/// file). Dropping it gives the reference back, and frees the node if it
/// was the last.
pub struct PendingRef(NonNull<Node>);

// SAFETY: the node is shared only through its atomic count and its mutex,
// which any thread may take; dropping the last reference may free it on any
// thread.
unsafe impl Send for PendingRef {}

/// A node whose mutex this thread holds, through a reference that outlives
/// the guard (`'a`).
pub struct PendingLocked<'a> {
    node: NonNull<Node>,
    _ref: PhantomData<&'a PendingRef>,
}

/// The child index: a connection (socket address) to the node of the
/// listener it completed on (the node's address), one counted reference per
/// entry. Sharded so that accepts on different CPUs rarely meet.
const SHARDS: usize = 64;
static CHILDREN: [KMutex<KeyMap>; SHARDS] =
    [const { KMutex::new(c"listenq children", KeyMap::new()) }; SHARDS];

fn shard(child: usize) -> &'static KMutex<KeyMap> {
    // Fibonacci hashing: socket addresses share their low bits. The top
    // bits pick the shard, so that the KeyMap inside, which hashes the
    // same way but keeps mostly low bits, still spreads a shard's keys.
    let h = (child as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
    let i = usize::try_from(h).unwrap_or(0) % SHARDS;
    // `i` < SHARDS; the fallback is never taken.
    CHILDREN.get(i).unwrap_or(&CHILDREN[0])
}

/// Module load, before any listener registers.
pub fn init() {
    for s in CHILDREN.iter() {
        s.init();
    }
}

/// Unload, with REGISTRY: every node was closed and purged before, so the
/// shards are empty; lockers get None from now on.
pub fn retire() {
    for s in CHILDREN.iter() {
        s.retire();
    }
}

/// Unload after the drain (or a failed load).
pub fn destroy() {
    for s in CHILDREN.iter() {
        s.destroy();
    }
}

/// Gives back one reference to `n`, freeing it if that was the last.
///
/// # Safety
/// The caller owns a counted reference to `n` and does not use it again.
unsafe fn release(n: NonNull<Node>) {
    // SAFETY: live while the caller's reference is counted.
    let refs = unsafe { &(*n.as_ptr()).refs };
    if refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    // Every other thread's use of the node happened before its own
    // decrement, which this acquire orders before the free.
    fence(Ordering::Acquire);
    // SAFETY: the last reference: no row, upcall, index entry or call
    // names it, so nobody holds (a guard borrows a reference) or will
    // take its mutex.
    unsafe { free(n) };
}

/// # Safety
/// Nothing names `n` any more and its mutex is not held.
unsafe fn free(n: NonNull<Node>) {
    // SAFETY: initialized in new(); unlocked and unreachable (caller).
    unsafe { sys::lq_mtx_destroy(mtx_of(n)) };
    // SAFETY: allocated by the global allocator with Layout::new::<Node>()
    // in new(), which is what Box expects; freed once (the count reached
    // zero once).
    drop(unsafe { alloc::boxed::Box::from_raw(n.as_ptr()) });
}

/// # Safety
/// `n` is live.
unsafe fn mtx_of(n: NonNull<Node>) -> *mut sys::mtx {
    // SAFETY: live (caller); the cell is the mutex's storage.
    unsafe { (*n.as_ptr()).mtx.get().cast() }
}

impl PendingRef {
    /// A new node holding `p`, with one reference (the caller's); None when
    /// memory is short (M_NOWAIT).
    pub fn new(p: Pending) -> Option<PendingRef> {
        let layout = core::alloc::Layout::new::<Node>();
        // SAFETY: a Node has a non-zero size (it holds a mutex).
        let n = NonNull::new(unsafe { alloc::alloc::alloc(layout) }.cast::<Node>())?;
        // SAFETY: freshly allocated for a Node, properly aligned, and
        // nobody else can reach it yet; the mutex is initialized in place.
        unsafe {
            n.as_ptr().write(Node {
                // mtx_init(9) wants zeroed storage (without MTX_NEW it
                // reads LO_INITIALIZED, which freed memory may have set).
                mtx: UnsafeCell::new(MaybeUninit::zeroed()),
                refs: AtomicUsize::new(1),
                inner: UnsafeCell::new(Inner {
                    pending: p,
                    closed: false,
                }),
            });
            sys::lq_mtx_init(mtx_of(n), c"listenq listener".as_ptr());
        }
        Some(PendingRef(n))
    }

    /// Whether both name the same listener's `Pending`.
    pub fn same(&self, o: &PendingRef) -> bool {
        self.0 == o.0
    }

    /// Takes the node's own mutex.
    pub fn lock(&self) -> PendingLocked<'_> {
        // SAFETY: live while `self` is counted, which the guard's borrow
        // keeps; initialized in new(). mtx_lock may block: callers hold at
        // most socket locks and REGISTRY, all MTX_DEF and before this one
        // in the lock order.
        unsafe { sys::lq_mtx_lock(mtx_of(self.0)) };
        PendingLocked {
            node: self.0,
            _ref: PhantomData,
        }
    }

    /// The node the listen upcall's argument names, borrowed for `f`.
    ///
    /// # Safety
    /// `arg` is null or the argument of an installed listen upcall the
    /// kernel is running (the listener's lock is held, so the upcall cannot
    /// be removed and its reference given back meanwhile).
    pub(in crate::kern) unsafe fn with_borrowed<R>(
        arg: *mut cty::c_void,
        f: impl FnOnce(&PendingRef) -> R,
    ) -> Option<R> {
        let n = NonNull::new(arg.cast::<Node>())?;
        // Not dropped: the reference stays the upcall's.
        let r = ManuallyDrop::new(PendingRef(n));
        Some(f(&r))
    }

    /// The row's owner, after the row left the registry and before the
    /// upcall is removed: from now on the upcall records nothing.
    pub fn close(&self) {
        self.lock().inner().closed = true;
    }
}

impl Clone for PendingRef {
    /// Another counted reference to the same node.
    fn clone(&self) -> PendingRef {
        // SAFETY: live while `self` is counted.
        unsafe { (*self.0.as_ptr()).refs.fetch_add(1, Ordering::Relaxed) };
        PendingRef(self.0)
    }
}

impl Drop for PendingRef {
    fn drop(&mut self) {
        // SAFETY: this value owns one counted reference and gives it back
        // once.
        unsafe { release(self.0) };
    }
}

impl PendingLocked<'_> {
    fn inner(&mut self) -> &mut Inner {
        // SAFETY: live (the guard borrows a counted reference) and its
        // mutex is held by this guard: the only reference to the inner
        // state.
        unsafe { &mut *(*self.node.as_ptr()).inner.get() }
    }

    pub fn get(&mut self) -> &mut Pending {
        &mut self.inner().pending
    }

    /// Closed: the upcall must record nothing.
    pub fn closed(&mut self) -> bool {
        self.inner().closed
    }

    /// Runs `f` on the state and this listener's view of the child index.
    pub fn with_children<R>(&mut self, f: impl FnOnce(&mut Pending, &mut ChildIndex) -> R) -> R {
        let mut idx = ChildIndex {
            me: self.node,
            forgotten: 0,
        };
        let r = f(&mut self.inner().pending, &mut idx);
        // The references of removed entries: never the last, since this
        // guard borrows another; given back with the mutex still held,
        // which is safe because the count cannot reach zero here.
        if idx.forgotten > 0 {
            // SAFETY: live (borrowed counted reference).
            let refs = unsafe { &(*self.node.as_ptr()).refs };
            refs.fetch_sub(idx.forgotten, Ordering::Release);
        }
        r
    }
}

impl Drop for PendingLocked<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard locked it, and it is live.
        unsafe { sys::lq_mtx_unlock(mtx_of(self.node)) };
    }
}

/// The child index as one listener sees it, under that listener's mutex.
pub struct ChildIndex {
    me: NonNull<Node>,
    /// Entries naming `me` removed, whose references are given back when
    /// the caller is done.
    forgotten: usize,
}

impl Children for ChildIndex {
    fn insert(&mut self, child: usize) -> bool {
        let me = self.me.as_ptr() as usize;
        let Some(mut m) = shard(child).lock() else {
            return false;
        };
        let replaced = match m.get(child) {
            // Already filed under this listener (its stale entry came
            // back here): the entry keeps its one reference.
            Some(v) if v == me => return true,
            Some(v) => {
                m.set(child, me);
                NonNull::new(v as *mut Node)
            }
            None => {
                if !m.insert(child, me) {
                    return false;
                }
                None
            }
        };
        // The new entry's reference, counted before the shard is unlocked
        // (an accept may take the entry and give it back right after).
        // SAFETY: `me` is live: the caller holds its mutex through a
        // counted reference.
        unsafe { (*self.me.as_ptr()).refs.fetch_add(1, Ordering::Relaxed) };
        drop(m);
        if let Some(other) = replaced {
            // SAFETY: the replaced entry owned a reference to `other`,
            // which is now this thread's, used once here.
            unsafe { release(other) };
        }
        true
    }

    fn forget(&mut self, child: usize) {
        let me = self.me.as_ptr() as usize;
        let Some(mut m) = shard(child).lock() else {
            return;
        };
        if m.get(child) == Some(me) {
            m.remove(child);
            self.forgotten += 1;
        }
    }
}

/// accept(2) took `child` off its listener's completed queue: its index
/// entry, and the reference the entry owned, if listenq recorded its
/// completion.
pub fn take_child(child: usize) -> Option<PendingRef> {
    let v = shard(child).lock()?.remove(child)?;
    // The entry's reference becomes the caller's.
    NonNull::new(v as *mut Node).map(PendingRef)
}

impl SocketRef<'_> {
    /// Claims the listen upcall if nobody else has (see socket_glue.h), with
    /// a reference to `p` as its argument. True if it was installed.
    pub fn install_listen_upcall(self, p: &PendingRef) -> bool {
        let r = ManuallyDrop::new(p.clone());
        // SAFETY: live socket; the helper takes the listen lock. The
        // argument is a counted reference the upcall owns if installed.
        let done =
            unsafe { sys::lq_listen_upcall_install(self.as_ptr(), r.0.as_ptr().cast()) } != 0;
        if !done {
            drop(ManuallyDrop::into_inner(r));
        }
        done
    }

    /// Removes listenq's upcall if its argument is `p`, and gives the
    /// upcall's reference back: no upcall runs with it afterwards (cleared
    /// under the listen lock the upcall runs with).
    pub fn remove_listen_upcall(self, p: &PendingRef) {
        // SAFETY: live socket; the helper takes the listen lock.
        let removed =
            unsafe { sys::lq_listen_upcall_remove(self.as_ptr(), p.0.as_ptr().cast()) } != 0;
        if removed {
            // The upcall's reference, now this thread's.
            drop(PendingRef(p.0));
        }
    }
}
