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
//!   accept (accf_glue.c lq_so_upcall_take). Work items never name the
//!   state: they find it from the upcall they clear, or from the listener
//!   they lock.
//!
//! So a token the kernel hands to a call names a live state for that call:
//! the listener's own (accf_create/accf_destroy, the first callback from
//! soisconnected(), the deferred work: all with the listener locked, and
//! accf_destroy, which detaches, needs that lock), or an upcall's, counted
//! and not yet given back (clearing it takes the receive-buffer lock the
//! callback holds; a cleared one is given back by the call it is handed
//! to, and only then). That is the contract of `Arg::from_token`, which
//! only kern/entry calls.
//!
//! # Exclusive access
//!
//! The module has one `FilterArgs` for its filters (filters.rs `Filters`,
//! inside listeners.rs REGISTRY), and every token the kernel holds names
//! one of its states. A state is reached only through a `&mut FilterArgs`:
//! the borrow proves REGISTRY is held and that no other reference to a
//! state exists meanwhile.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::NonNull;

struct Node<T> {
    value: T,
    /// Upcalls naming this state, counted and not yet given back.
    upcalls: usize,
    /// Index in `FilterArgs::list` while attached.
    slot: Option<usize>,
}

/// Every per-listener state of one kind, attached or detached.
pub struct FilterArgs<T> {
    /// Attached states (the listener's key, its state), for the tick,
    /// the tables and unload; nothing on a per-connection path looks
    /// here. The key is kept beside the pointer so that finding a listener
    /// for a table row reads one array instead of every state.
    list: Vec<(usize, NonNull<Node<T>>)>,
    /// Detached, kept for upcalls that still name them.
    detached: usize,
}

// SAFETY: the nodes are owned by this value and reached only through a
// `&mut` of it (see "Exclusive access" above), so moving it to another
// thread moves the only access to them.
unsafe impl<T: Send> Send for FilterArgs<T> {}

/// A state as the kernel names it for one call into listenq (`'a`); see
/// "Lifetime of a state" for why it is live.
pub struct Arg<'a, T> {
    node: NonNull<Node<T>>,
    _call: PhantomData<&'a mut T>,
}

/// What accf_create hands the kernel for a newly attached state.
pub struct Token<T>(NonNull<Node<T>>);

/// The listener a state is attached to: live for `'b`, because the state
/// is attached (accf_destroy, which the listener's sofree() runs, detaches
/// it under REGISTRY) and REGISTRY is held for `'b` (a `FilterArgs` is
/// borrowed for it).
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

impl<T> Arg<'_, T> {
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
}

impl<T> Default for FilterArgs<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FilterArgs<T> {
    pub const fn new() -> Self {
        FilterArgs {
            list: Vec::new(),
            detached: 0,
        }
    }

    /// Room for one more attached state; false when memory is short.
    pub fn try_reserve(&mut self) -> bool {
        self.list.try_reserve(1).is_ok()
    }

    /// Moves `value` to the heap (M_NOWAIT) as the state of listener
    /// `key`; None when memory is short. After `try_reserve`, the list
    /// does not allocate.
    pub fn attach(&mut self, key: usize, value: T) -> Option<Token<T>> {
        let layout = Layout::new::<Node<T>>();
        // SAFETY: a Node has a non-zero size (it holds two usizes).
        let p = NonNull::new(unsafe { alloc::alloc::alloc(layout) }.cast::<Node<T>>())?;
        // SAFETY: freshly allocated for a Node<T>, properly aligned.
        unsafe {
            p.as_ptr().write(Node {
                value,
                upcalls: 0,
                slot: Some(self.list.len()),
            })
        };
        self.list.push((key, p));
        Some(Token(p))
    }

    fn node(&mut self, a: &Arg<'_, T>) -> &mut Node<T> {
        // SAFETY: live for the call (Arg's contract), and the only
        // reference to it while `self` is borrowed (Exclusive access).
        unsafe { &mut *a.node.as_ptr() }
    }

    /// The state `a` names.
    pub fn get(&mut self, a: &Arg<'_, T>) -> &mut T {
        &mut self.node(a).value
    }

    /// The state `a` names, and its listener if it is attached.
    pub fn get_attached(&mut self, a: &Arg<'_, T>) -> (&mut T, Option<Attached<'_>>) {
        let slot = self.node(a).slot;
        let head = slot.and_then(|i| self.list.get(i)).map(|(k, _)| Attached {
            head: *k,
            _held: PhantomData,
        });
        (&mut self.node(a).value, head)
    }

    /// The listener `key`'s state, if attached.
    pub fn find(&self, key: usize) -> Option<&T> {
        let (_, p) = self.list.iter().find(|(k, _)| *k == key)?;
        // SAFETY: attached, hence live; shared for as long as `self` is.
        Some(unsafe { &(*p.as_ptr()).value })
    }

    pub fn find_mut(&mut self, key: usize) -> Option<&mut T> {
        let (_, p) = self.list.iter().find(|(k, _)| *k == key)?;
        // SAFETY: attached, hence live; the only reference while `self`
        // is borrowed.
        Some(unsafe { &mut (*p.as_ptr()).value })
    }

    /// Every attached state, with its listener.
    pub fn iter_attached(&mut self) -> impl Iterator<Item = (&mut T, Attached<'_>)> {
        self.list.iter().map(|(k, p)| {
            (
                // SAFETY: attached, hence live; each node is in the list
                // once, so the references do not alias, and `self` is
                // borrowed for as long as they live.
                unsafe { &mut (*p.as_ptr()).value },
                Attached {
                    head: *k,
                    _held: PhantomData,
                },
            )
        })
    }

    /// The upcall of a connection listenq now holds names `a`'s state.
    pub fn counted(&mut self, a: &Arg<'_, T>) {
        self.node(a).upcalls += 1;
    }

    /// An upcall naming `a`'s state has been cleared: a detached state
    /// nothing names any more is freed.
    pub fn release(&mut self, a: Arg<'_, T>) {
        let n = self.node(&a);
        n.upcalls = n.upcalls.saturating_sub(1);
        if n.upcalls == 0 && n.slot.is_none() {
            self.detached = self.detached.saturating_sub(1);
            // SAFETY: detached and no upcall names it: nothing can reach
            // it again, and `a`, the last name of it here, is consumed.
            unsafe { free(a.node) };
        }
    }

    /// accf_destroy: the listener no longer names `a`'s state, and
    /// `cleared` upcalls naming it were cleared with it. Freed if no other
    /// upcall names it.
    pub fn detach(&mut self, a: Arg<'_, T>, cleared: usize) {
        if let Some(i) = self.node(&a).slot.take() {
            self.list.swap_remove(i);
            if let Some((_, m)) = self.list.get(i) {
                // SAFETY: attached, and a different node than `a`'s: the
                // one swap_remove() moved into slot i.
                unsafe { (*m.as_ptr()).slot = Some(i) };
            }
            if self.list.is_empty() {
                self.list = Vec::new();
            }
        }
        let n = self.node(&a);
        n.upcalls = n.upcalls.saturating_sub(cleared);
        if n.upcalls == 0 {
            // SAFETY: detached and no upcall names it; `a` is consumed.
            unsafe { free(a.node) };
        } else {
            self.detached += 1;
        }
    }

    /// No state, attached or detached.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.detached == 0
    }

    /// Frees every attached state, after `last` has seen it (module
    /// unload, once nothing can name any of them).
    pub fn clear(&mut self, mut last: impl FnMut(&mut T)) {
        for (_, p) in core::mem::take(&mut self.list) {
            // SAFETY: attached, hence live; the only reference.
            last(unsafe { &mut (*p.as_ptr()).value });
            // SAFETY: unload: no listener and no upcall can name it any
            // more, and it has left the list.
            unsafe { free(p) };
        }
    }
}

/// # Safety
/// `p` came from `attach`, is not freed yet, and is never used again.
unsafe fn free<T>(p: NonNull<Node<T>>) {
    // SAFETY: allocated by the global allocator with Layout::new::<Node<T>>()
    // in attach(), which is what Box expects.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
}
