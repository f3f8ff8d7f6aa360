//! An accept filter's per-listener state on the heap, addressed by the
//! token the kernel keeps for it: accf_create returns it, uipc_accf.c
//! stores it in sol_accept_filter_arg, soisconnected() copies it into the
//! receive upcall argument of each connection, and every callback gets it
//! back. Reaching the state is then a pointer dereference, never a search.
//!
//! # Lifetime of a state
//!
//! The kernel cannot tell when a state may go, so `FilterArgs` counts who
//! can still name it, and frees it itself when nobody can:
//!
//! - the listener, from `attach` (accf_create) to `detach` (accf_destroy);
//! - every connection whose receive upcall is listenq's with this state as
//!   its argument, counted by `counted` when listenq holds the connection
//!   and given back by `release` when that upcall is cleared. The kernel
//!   may call each such upcall (an evicted connection awaiting its task,
//!   or one the listener's close took off the queue, still has it), so the
//!   state lives until the last of them is cleared. Each is cleared
//!   exactly once, and given back then: by the upcall returning
//!   SU_ISCONNECTED, by filter removal (lq_accf_release_all, counted in
//!   `detach`), by the deferred work, by the socket's destructor or by its
//!   accept (accf_glue.c lq_so_upcall_take);
//! - the state's own task (work_glue.c lq_leave_run), from when it is
//!   queued to the end of its run: it lets go of the connections on the
//!   hold queue's leaving list, and is embedded in the state, so the
//!   state must outlive it (`leave_soon`, `task_done`).
//!
//! Its count is `names`.
//!
//! So a token the kernel hands to a call names a live state for that call:
//! the listener's own (accf_create/accf_destroy, the first callback from
//! soisconnected(), the deferred work: all with the listener locked, and
//! accf_destroy, which detaches, needs that lock), an upcall's, counted
//! and not yet given back (clearing it takes the receive-buffer lock the
//! callback holds; a cleared one is given back by the call it is handed
//! to, and only then), or the state's own task's, queued and not done.
//! That is the contract of `Arg::from_token`, which only kern/entry calls.
//!
//! # Locking
//!
//! Each state has its own mutex ("listenq filter"), so connections of
//! different listeners never meet on a lock: a per-connection call locks
//! only the state its token names (`Arg::lock`), and the value, its upcall
//! count and whether it is attached are read and changed only under it.
//! The list of attached states is the module's one `FilterArgs`
//! (filters.rs `Filters`, inside listeners.rs REGISTRY): attach, detach,
//! the tick and the tables reach states through it, REGISTRY first, then
//! one state's mutex at a time. Nothing takes REGISTRY with a state's
//! mutex held, and no thread holds two states' mutexes at once.
//!
//! Freeing: a state is freed once it is detached and nothing names it,
//! by whichever thread makes that true (the last `release` or `task_done`,
//! or `detach`), after unlocking: by then no token names it and it is in
//! no list, so no other thread can reach it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use listenq_bindings as sys;

struct Node<T> {
    /// This state's own mutex; initialized in `attach`, destroyed in `free`.
    mtx: UnsafeCell<MaybeUninit<sys::mtx>>,
    /// The listener it was created for (its key); never changes.
    head: usize,
    /// Under `mtx`.
    inner: UnsafeCell<Inner<T>>,
    /// Index in `FilterArgs::list` while attached; only touched through
    /// `&mut FilterArgs` (REGISTRY).
    slot: UnsafeCell<Option<usize>>,
    /// The task that lets go of the hold queue's leaving connections
    /// (work_glue.c); initialized in `attach`, queued under `mtx`.
    leave: UnsafeCell<MaybeUninit<sys::lq_leave>>,
}

struct Inner<T> {
    value: T,
    /// Upcalls naming this state, counted and not yet given back, and its
    /// task while queued ("Lifetime of a state").
    names: usize,
    /// The task is queued (or running and not yet done with the list).
    leave_queued: bool,
    /// Between attach and detach; the listener is live while this is true
    /// and the mutex is held (detach, from the listener's accf_destroy,
    /// needs the mutex).
    attached: bool,
}

/// Detached states that upcalls or their task still name (module-wide:
/// there is one `FilterArgs`). Changed under the state's mutex.
static DETACHED: AtomicUsize = AtomicUsize::new(0);

/// Every per-listener state of one kind, attached or detached.
pub struct FilterArgs<T> {
    /// Attached states, for the tick, the tables and unload; nothing on a
    /// per-connection path looks here. The key is kept beside the pointer
    /// so that finding a listener for a table row reads one array instead
    /// of every state.
    list: Vec<(usize, NonNull<Node<T>>)>,
}

// SAFETY: the nodes are owned by this value or, once detached, by the
// upcalls that name them; every access to a node's value is under its
// mutex (Locking above), so the value may move between threads.
unsafe impl<T: Send> Send for FilterArgs<T> {}

/// A state as the kernel names it for one call into listenq (`'a`); see
/// "Lifetime of a state" for why it is live.
pub struct Arg<'a, T> {
    node: NonNull<Node<T>>,
    _call: PhantomData<&'a mut T>,
}

/// A state whose mutex this thread holds, for the rest of the call (`'a`)
/// at most; unlocks when dropped.
pub struct Locked<'a, T> {
    node: NonNull<Node<T>>,
    _call: PhantomData<&'a mut T>,
}

/// What accf_create hands the kernel for a newly attached state.
pub struct Token<T>(NonNull<Node<T>>);

/// The listener a state is attached to: live for `'b`, because the state
/// is attached and its mutex held for `'b` (accf_destroy, which the
/// listener's sofree() runs, detaches it under that mutex).
#[derive(Clone, Copy)]
pub struct Attached<'b> {
    head: usize,
    _held: PhantomData<&'b mut ()>,
}

impl Attached<'_> {
    /// The listener's key.
    pub fn head(self) -> usize {
        self.head
    }
}

impl<T> Token<T> {
    pub(in crate::kern) fn into_raw(self) -> *mut cty::c_void {
        self.0.as_ptr().cast()
    }
}

/// # Safety
/// `n` is a live node (attached, or named by a counted upcall).
unsafe fn mtx_of<T>(n: NonNull<Node<T>>) -> *mut sys::mtx {
    // SAFETY: live, as the caller says; the cell is the mutex's storage.
    unsafe { (*n.as_ptr()).mtx.get().cast() }
}

/// # Safety
/// `n` is a live node.
unsafe fn leave_of<T>(n: NonNull<Node<T>>) -> *mut sys::lq_leave {
    // SAFETY: live, as the caller says; the cell is the task's storage.
    unsafe { (*n.as_ptr()).leave.get().cast() }
}

/// Where WITNESS says these mutexes were taken and released.
const LOCK_FILE: &core::ffi::CStr = c"kmod/src/kern/filter_arg.rs";

/// Locks `n`'s mutex: mtx_lock(9) as a module compiles it (LOCK_DEBUG:
/// the kernel's __mtx_lock_flags(), which does WITNESS, lock profiling
/// and the owner's count where the kernel has them), called directly
/// rather than through a glue function, as both callbacks of every
/// filtered connection take it.
///
/// # Safety
/// `n` is live for as long as the returned guard is used.
unsafe fn lock<'a, T>(n: NonNull<Node<T>>) -> Locked<'a, T> {
    // SAFETY: live (caller); initialized in attach(), destroyed only in
    // free(), which nothing reaching a live node can race with; the
    // lock word of a struct mtx. mtx_lock may block: every caller runs
    // where an MTX_DEF mutex may be taken (socket and buffer locks held
    // at most, both MTX_DEF, taken before).
    unsafe {
        sys::__mtx_lock_flags(
            core::ptr::addr_of_mut!((*mtx_of(n)).mtx_lock),
            0,
            LOCK_FILE.as_ptr(),
            line!() as i32,
        )
    };
    Locked {
        node: n,
        _call: PhantomData,
    }
}

impl<'a, T> Arg<'a, T> {
    /// The state a token names; None for a null token.
    ///
    /// # Safety
    /// A non-null `token` came from a `Token` of the module's one
    /// `FilterArgs<T>` and names a state that is live for `'a`, as
    /// "Lifetime of a state" says the kernel's tokens are.
    pub(in crate::kern) unsafe fn from_token(token: *mut cty::c_void) -> Option<Self> {
        Some(Arg {
            node: NonNull::new(token.cast::<Node<T>>())?,
            _call: PhantomData,
        })
    }

    /// Takes the state's own mutex (no global lock).
    pub fn lock(self) -> Locked<'a, T> {
        // SAFETY: live for 'a (from_token's contract), and the guard
        // cannot outlive 'a.
        unsafe { lock(self.node) }
    }
}

impl<T> Locked<'_, T> {
    fn inner(&mut self) -> &mut Inner<T> {
        // SAFETY: live (how the guard was made) and its mutex is held by
        // this guard, so this is the only reference to the inner state.
        unsafe { &mut *(*self.node.as_ptr()).inner.get() }
    }

    /// The state.
    pub fn get(&mut self) -> &mut T {
        &mut self.inner().value
    }

    /// The listener's key (live or not: only the caller knows).
    pub fn head_key(&self) -> usize {
        // SAFETY: live; `head` never changes.
        unsafe { (*self.node.as_ptr()).head }
    }

    /// The state, and its listener if it is attached.
    pub fn get_attached(&mut self) -> (&mut T, Option<Attached<'_>>) {
        // SAFETY: live; `head` never changes.
        let head = unsafe { (*self.node.as_ptr()).head };
        let inner = self.inner();
        let on = inner.attached.then_some(Attached {
            head,
            _held: PhantomData,
        });
        (&mut inner.value, on)
    }

    /// The upcall of a connection listenq now holds names this state.
    pub fn counted(&mut self) {
        self.inner().names += 1;
    }

    /// An upcall naming this state has been cleared and is given back: a
    /// detached state nothing names any more is freed (after unlocking).
    pub fn release(mut self) {
        let inner = self.inner();
        inner.names = inner.names.saturating_sub(1);
        let last = inner.names == 0 && !inner.attached;
        if last {
            DETACHED.fetch_sub(1, Ordering::Relaxed);
        }
        let node = self.node;
        drop(self);
        if last {
            // SAFETY: detached (in no list) and nothing names it: no other
            // thread can reach it; this thread's last name of it (the
            // guard) is gone.
            unsafe { free(node) };
        }
    }

    /// Connections wait on the hold queue's leaving list: queues the
    /// state's task unless it is queued already. The task names the state
    /// until `task_done`.
    pub fn leave_soon(&mut self) {
        let node = self.node;
        let inner = self.inner();
        if inner.leave_queued {
            return;
        }
        inner.leave_queued = true;
        inner.names += 1;
        // SAFETY: live, and initialized in attach(); its mutex is held, so
        // no other thread queues it at the same time. taskqueue_enqueue(9)
        // takes only the queue's own mutex and never sleeps: callable
        // under socket locks and in an upcall.
        unsafe { sys::lq_leave_enqueue(leave_of(node)) };
    }

    /// The task found the leaving list empty: it is no longer queued, and
    /// gives its name back (which may free a detached state, and the task
    /// with it: the task touches neither after this).
    pub fn task_done(mut self) {
        self.inner().leave_queued = false;
        self.release();
    }
}

impl<T> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard locked it (`lock`), and it is still live;
        // mtx_unlock(9) as a module compiles it, as in `lock`.
        unsafe {
            sys::__mtx_unlock_flags(
                core::ptr::addr_of_mut!((*mtx_of(self.node)).mtx_lock),
                0,
                LOCK_FILE.as_ptr(),
                line!() as i32,
            )
        };
    }
}

impl<T> Default for FilterArgs<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FilterArgs<T> {
    pub const fn new() -> Self {
        FilterArgs { list: Vec::new() }
    }

    /// Room for one more attached state; false when memory is short.
    pub fn try_reserve(&mut self) -> bool {
        self.list.try_reserve(1).is_ok()
    }

    /// Moves `value` to the heap (M_NOWAIT) as the state of listener
    /// `key`, with its own mutex; None when memory is short. After
    /// `try_reserve`, the list does not allocate.
    pub fn attach(&mut self, key: usize, value: T) -> Option<Token<T>> {
        let layout = Layout::new::<Node<T>>();
        // SAFETY: a Node has a non-zero size (it holds a mutex).
        let p = NonNull::new(unsafe { alloc::alloc::alloc(layout) }.cast::<Node<T>>())?;
        // SAFETY: freshly allocated for a Node<T>, properly aligned; the
        // mutex is initialized in place, before anyone can reach it.
        unsafe {
            p.as_ptr().write(Node {
                // mtx_init(9) wants zeroed storage (without MTX_NEW it
                // reads LO_INITIALIZED, which freed memory may have set).
                mtx: UnsafeCell::new(MaybeUninit::zeroed()),
                head: key,
                inner: UnsafeCell::new(Inner {
                    value,
                    names: 0,
                    leave_queued: false,
                    attached: true,
                }),
                slot: UnsafeCell::new(Some(self.list.len())),
                leave: UnsafeCell::new(MaybeUninit::zeroed()),
            });
            sys::lq_mtx_init(mtx_of(p), c"listenq filter".as_ptr());
            // The task's argument is the node itself: the token its run
            // hands back (listenq_rs_leave_next).
            sys::lq_leave_init(leave_of(p), p.as_ptr().cast());
        }
        self.list.push((key, p));
        Some(Token(p))
    }

    /// Runs `f` on the listener `key`'s state, if attached, under its
    /// mutex.
    pub fn with<R>(&self, key: usize, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let (_, p) = self.list.iter().find(|(k, _)| *k == key)?;
        // SAFETY: attached, hence live while `self` is borrowed (detach
        // needs `&mut self`).
        let mut g: Locked<'_, T> = unsafe { lock(*p) };
        Some(f(g.get()))
    }

    /// Runs `f` on every attached state and its listener, one at a time,
    /// each under its mutex; when `f` says so (true), queues the state's
    /// task (`Locked::leave_soon`).
    pub fn for_each_attached(&self, mut f: impl FnMut(&mut T, Attached<'_>) -> bool) {
        for (_, p) in self.list.iter() {
            // SAFETY: attached, hence live while `self` is borrowed.
            let mut g: Locked<'_, T> = unsafe { lock(*p) };
            let (v, on) = g.get_attached();
            if on.is_some_and(|on| f(v, on)) {
                g.leave_soon();
            }
        }
    }

    /// accf_destroy: the listener no longer names `a`'s state, `last`
    /// sees it one more time, and `cleared` upcalls naming it were
    /// cleared with it. Freed if no other upcall names it.
    pub fn detach(&mut self, a: Arg<'_, T>, cleared: usize, last: impl FnOnce(&mut T)) {
        let node = a.node;
        // SAFETY: live (the listener's own, attached until now); `slot`
        // is only touched through `&mut self`.
        if let Some(i) = unsafe { (*(*node.as_ptr()).slot.get()).take() } {
            self.list.swap_remove(i);
            if let Some((_, m)) = self.list.get(i) {
                // SAFETY: attached, and a different node than `a`'s: the
                // one swap_remove() moved into slot i.
                unsafe { *(*m.as_ptr()).slot.get() = Some(i) };
            }
            if self.list.is_empty() {
                self.list = Vec::new();
            }
        }
        let mut g = a.lock();
        let inner = g.inner();
        inner.attached = false;
        last(&mut inner.value);
        inner.names = inner.names.saturating_sub(cleared);
        let free_now = inner.names == 0;
        if !free_now {
            // Counted before the mutex is dropped: the last release,
            // which takes it, then always finds it counted.
            DETACHED.fetch_add(1, Ordering::Relaxed);
        }
        drop(g);
        if free_now {
            // SAFETY: detached and no upcall names it: no other thread can
            // reach it; `a` was consumed.
            unsafe { free(node) };
        }
    }

    /// No state, attached or detached.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && DETACHED.load(Ordering::Relaxed) == 0
    }

    /// Frees every attached state, after `last` has seen it (module
    /// unload, once nothing can name any of them).
    pub fn clear(&mut self, mut last: impl FnMut(&mut T)) {
        for (_, p) in core::mem::take(&mut self.list) {
            // SAFETY: attached, hence live.
            let mut g: Locked<'_, T> = unsafe { lock(p) };
            last(g.get());
            drop(g);
            // SAFETY: unload: no listener and no upcall can name it any
            // more, and it has left the list.
            unsafe { free(p) };
        }
    }
}

/// # Safety
/// `p` came from `attach`, is not freed yet, nobody holds or will take
/// its mutex, and it is never used again.
unsafe fn free<T>(p: NonNull<Node<T>>) {
    // SAFETY: initialized in attach(); unlocked and unreachable (caller).
    unsafe { sys::lq_mtx_destroy(mtx_of(p)) };
    // SAFETY: allocated by the global allocator with Layout::new::<Node<T>>()
    // in attach(), which is what Box expects.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
}
