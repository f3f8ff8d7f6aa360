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
//!   accept (tag_glue.c lq_so_upcall_take);
//! - the state's own task (work_glue.c lq_leave_run), from when it is
//!   queued to the end of its run: it lets go of the connections on the
//!   hold queue's leaving list, and is embedded in the state, so the
//!   state must outlive it (`leave_soon`, `task_done`).
//!
//! Each of them owns one counted reference to the state, an `ARef`
//! (kern/sync): the listener's is the one `FilterArgs` keeps in its list,
//! the upcalls' and the task's cross the kernel as the raw token.
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
//! only the state its token names (`Arg::lock`), and the value and whether
//! it is attached are read and changed only under it.
//! The list of attached states is the module's one `FilterArgs`
//! (filters.rs `Filters`, inside the Module's registry): attach, detach,
//! the tick and the tables reach states through it, the registry first, then
//! one state's mutex at a time. Nothing takes the registry with a state's
//! mutex held, and no thread holds two states' mutexes at once.
//!
//! Freeing: a state is freed with its last reference, once it is detached
//! and nothing names it, by whichever thread gives that reference back
//! (the last `release` or `task_done`, or `detach`), after unlocking: by
//! then no token names it and it is in no list, so no other thread can
//! reach it.

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use listenq_bindings as sys;

use crate::kern::sync::{ARef, Mutex, MutexGuard};

struct Node<T> {
    /// This state's own mutex, with what it guards; destroyed with the
    /// node.
    inner: Mutex<Inner<T>>,
    /// The listener it was created for (its key); never changes.
    head: usize,
    /// Index in `FilterArgs::list` while attached; only touched through
    /// `&mut FilterArgs` (the registry).
    slot: UnsafeCell<Option<usize>>,
    /// The task that lets go of the hold queue's leaving connections
    /// (work_glue.c); initialized in `attach`, queued under `inner`.
    leave: UnsafeCell<MaybeUninit<sys::lq_leave>>,
    /// Its `FilterArgs`' count of detached states, given back when the
    /// node goes (on whichever thread drops the last reference).
    detached: &'static AtomicUsize,
}

struct Inner<T> {
    value: T,
    /// The task is queued (or running and not yet done with the list),
    /// and owns a reference.
    leave_queued: bool,
    /// Between attach and detach; the listener is live while this is true
    /// and the mutex is held (detach, from the listener's accf_destroy,
    /// needs the mutex).
    attached: bool,
}

impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        // Only `detach` and `clear` give back the list's reference, after
        // counting the state detached: the last reference always finds it
        // counted.
        self.detached.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every per-listener state of one kind, attached or detached.
pub struct FilterArgs<T> {
    /// Attached states, for the tick, the tables and unload; nothing on a
    /// per-connection path looks here. The key is kept beside the pointer
    /// so that finding a listener for a table row reads one array instead
    /// of every state.
    list: Vec<(usize, ARef<Node<T>>)>,
    /// Detached states not yet freed, which upcalls or their task still
    /// name: counted up by `detach` and `clear`, down when the last
    /// reference goes. Each `FilterArgs` has its own, a static its owner
    /// declares, so it outlives every node that counts in it.
    detached: &'static AtomicUsize,
}

// SAFETY: the nodes are shared with the upcalls and tasks that name them;
// every access to a node's value is under its mutex (Locking above), so
// the value may move between threads.
unsafe impl<T: Send> Send for FilterArgs<T> {}

/// A state as the kernel names it for one call into listenq (`'a`); see
/// "Lifetime of a state" for why it is live.
pub struct Arg<'a, T> {
    /// `ARef::into_raw` of the node.
    raw: NonNull<()>,
    _call: PhantomData<&'a mut T>,
}

/// A state whose mutex this thread holds, for the rest of the call (`'a`)
/// at most; unlocks when dropped.
pub struct Locked<'a, T> {
    node: &'a Node<T>,
    /// The node as the kernel names it (the token).
    raw: NonNull<()>,
    guard: MutexGuard<'a, Inner<T>>,
}

/// What accf_create hands the kernel for a newly attached state: the
/// node's address, under the listener's reference (the list's).
pub struct Token<T>(NonNull<()>, PhantomData<T>);

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

/// The node a raw token names, and the lock of it.
///
/// # Safety
/// `raw` is `ARef::into_raw` of a node whose reference someone owns for
/// `'a` (the token's contract: "Lifetime of a state").
#[track_caller]
unsafe fn lock<'a, T>(raw: NonNull<()>) -> Locked<'a, T> {
    // SAFETY: live for 'a (caller).
    let node: &'a Node<T> = unsafe { ARef::borrow_raw(raw) };
    // SAFETY: initialized in attach(), destroyed only when the node is
    // dropped, which the reference the caller relies on prevents while
    // the guard lives. mtx_lock may block: every caller runs where an
    // MTX_DEF mutex may be taken (socket and buffer locks held at most,
    // both MTX_DEF, taken before).
    let guard = unsafe { node.inner.lock() };
    Locked { node, raw, guard }
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
            raw: NonNull::new(token.cast::<()>())?,
            _call: PhantomData,
        })
    }

    /// Takes the state's own mutex (no global lock).
    #[track_caller]
    pub fn lock(self) -> Locked<'a, T> {
        // SAFETY: live for 'a (from_token's contract), and the guard
        // cannot outlive 'a.
        unsafe { lock(self.raw) }
    }
}

impl<T> Locked<'_, T> {
    /// The state.
    pub fn get(&mut self) -> &mut T {
        &mut self.guard.value
    }

    /// The listener's key (live or not: only the caller knows).
    pub fn head_key(&self) -> usize {
        self.node.head
    }

    /// The state, and its listener if it is attached.
    pub fn get_attached(&mut self) -> (&mut T, Option<Attached<'_>>) {
        let head = self.node.head;
        let inner = &mut *self.guard;
        let on = inner.attached.then_some(Attached {
            head,
            _held: PhantomData,
        });
        (&mut inner.value, on)
    }

    /// The upcall of a connection listenq now holds names this state: it
    /// owns a reference from now on.
    pub fn counted(&mut self) {
        // SAFETY: the token's reference is owned for this call; the new
        // one is the upcall's, taken back by `release`.
        let _ = unsafe { ARef::<Node<T>>::clone_raw(self.raw) }.into_raw();
    }

    /// An upcall naming this state has been cleared and gives its
    /// reference back: a detached state nothing names any more is freed
    /// (after unlocking).
    pub fn release(self) {
        let raw = self.raw;
        drop(self);
        // SAFETY: the cleared upcall's reference (`counted`), or the
        // task's (`leave_soon`), taken back once, after this thread's last
        // use of the node (the guard is gone).
        drop(unsafe { ARef::<Node<T>>::from_raw(raw) });
    }

    /// Connections wait on the hold queue's leaving list: queues the
    /// state's task unless it is queued already. The task owns a reference
    /// until `task_done`.
    pub fn leave_soon(&mut self) {
        if self.guard.leave_queued {
            return;
        }
        self.guard.leave_queued = true;
        // SAFETY: as in `counted`; this one is the task's.
        let _ = unsafe { ARef::<Node<T>>::clone_raw(self.raw) }.into_raw();
        // SAFETY: live, and initialized in attach(); its mutex is held, so
        // no other thread queues it at the same time. taskqueue_enqueue(9)
        // takes only the queue's own mutex and never sleeps: callable
        // under socket locks and in an upcall.
        unsafe { sys::lq_leave_enqueue(self.node.leave.get().cast()) };
    }

    /// The task found the leaving list empty: it is no longer queued, and
    /// gives its reference back (which may free a detached state, and the
    /// task with it: the task touches neither after this).
    pub fn task_done(mut self) {
        self.guard.leave_queued = false;
        self.release();
    }
}

impl<T> FilterArgs<T> {
    /// No state yet; `detached` is this `FilterArgs`' own count of its
    /// detached states (a static of its owner's, shared with no other).
    pub const fn new(detached: &'static AtomicUsize) -> Self {
        FilterArgs {
            list: Vec::new(),
            detached,
        }
    }

    /// Room for one more attached state; false when memory is short.
    pub fn try_reserve(&mut self) -> bool {
        self.list.try_reserve(1).is_ok()
    }

    /// Moves `value` to the heap (M_NOWAIT) as the state of listener
    /// `key`, with its own mutex; None when memory is short. After
    /// `try_reserve`, the list does not allocate.
    pub fn attach(&mut self, key: usize, value: T) -> Option<Token<T>> {
        let node = Node {
            inner: Mutex::new(Inner {
                value,
                leave_queued: false,
                attached: true,
            }),
            head: key,
            slot: UnsafeCell::new(Some(self.list.len())),
            leave: UnsafeCell::new(MaybeUninit::zeroed()),
            detached: self.detached,
        };
        let a = ARef::try_new_with(node, |n| {
            // SAFETY: zeroed, in the node's final place, not shared yet.
            unsafe { n.inner.init(c"listenq filter") }
        })?;
        let raw = a.as_raw();
        // SAFETY: zeroed task storage in the node, not shared yet. The
        // task's argument is the token itself, which its run hands back
        // (listenq_rs_leave_next).
        unsafe { sys::lq_leave_init(a.leave.get().cast(), raw.as_ptr().cast()) };
        self.list.push((key, a));
        Some(Token(raw, PhantomData))
    }

    /// Runs `f` on the listener `key`'s state, if attached, under its
    /// mutex.
    pub fn with<R>(&self, key: usize, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let (_, a) = self.list.iter().find(|(k, _)| *k == key)?;
        // SAFETY: the list's reference keeps it live while `self` is
        // borrowed (detach needs `&mut self`).
        let mut g: Locked<'_, T> = unsafe { lock(a.as_raw()) };
        Some(f(g.get()))
    }

    /// Runs `f` on every attached state and its listener, one at a time,
    /// each under its mutex; when `f` says so (true), queues the state's
    /// task (`Locked::leave_soon`).
    pub fn for_each_attached(&self, mut f: impl FnMut(&mut T, Attached<'_>) -> bool) {
        for (_, a) in self.list.iter() {
            // SAFETY: the list's reference keeps it live while `self` is
            // borrowed.
            let mut g: Locked<'_, T> = unsafe { lock(a.as_raw()) };
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
        let raw = a.raw;
        // SAFETY: the listener's own token, attached until now: its
        // reference is the list's, which this call gives back below.
        let node: &Node<T> = unsafe { ARef::borrow_raw(raw) };
        // SAFETY: `slot` is only touched through `&mut self`.
        let mine = match unsafe { (*node.slot.get()).take() } {
            Some(i) if i < self.list.len() => {
                let (_, mine) = self.list.swap_remove(i);
                if let Some((_, m)) = self.list.get(i) {
                    // SAFETY: attached, and a different node than `a`'s:
                    // the one swap_remove() moved into slot i.
                    unsafe { *m.slot.get() = Some(i) };
                }
                if self.list.is_empty() {
                    self.list = Vec::new();
                }
                mine
            }
            // Not reached (attached states are in the list): a reference
            // of this thread's to give the cleared upcalls' back through.
            // SAFETY: live for this call (the token's contract).
            _ => unsafe { ARef::<Node<T>>::clone_raw(raw) },
        };
        let mut g = a.lock();
        g.guard.attached = false;
        last(&mut g.guard.value);
        // Counted before the mutex is dropped: the last reference, given
        // back by whichever thread, then always finds it counted.
        self.detached.fetch_add(1, Ordering::Relaxed);
        drop(g);
        // SAFETY: the cleared upcalls' references, each taken back once
        // here; never the last, `mine` is held.
        unsafe { mine.drop_raw_refs(cleared) };
        // Freed here if no other upcall, nor the task, names it.
        drop(mine);
    }

    /// No state, attached or detached.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.detached.load(Ordering::Relaxed) == 0
    }

    /// Gives back every attached state, after `last` has seen it (module
    /// unload, once nothing else can name any of them: each is freed).
    pub fn clear(&mut self, mut last: impl FnMut(&mut T)) {
        for (_, a) in core::mem::take(&mut self.list) {
            // SAFETY: the list's reference keeps it live.
            let mut g: Locked<'_, T> = unsafe { lock(a.as_raw()) };
            g.guard.attached = false;
            last(g.get());
            self.detached.fetch_add(1, Ordering::Relaxed);
            drop(g);
            drop(a);
        }
    }
}
