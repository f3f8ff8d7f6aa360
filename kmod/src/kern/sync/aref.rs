//! A counted reference to an object on the heap, shared by several owners
//! (Rust-for-Linux's `ARef`, or `Arc` without its weak count): created
//! fallibly (M_NOWAIT, `try_new_with`), freed by whoever gives back the
//! last reference. Freeing never sleeps (the value's drop, then free(9)),
//! so a reference may be given back with any mutex held.
//!
//! The kernel keeps some references for listenq: an upcall's argument, an
//! accept filter's token, an index entry. Those cross as raw pointers
//! (`into_raw`), each owning one counted reference, until `from_raw` takes
//! it back; `borrow_raw` lends one for the length of a call.

use alloc::boxed::Box;
use core::alloc::Layout;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

/// What the heap holds: the count, then the value.
struct Counted<T> {
    refs: AtomicUsize,
    value: T,
}

pub struct ARef<T>(NonNull<Counted<T>>);

// SAFETY: as Arc: the value is shared between threads (T: Sync) and may be
// dropped on any of them (T: Send).
unsafe impl<T: Send + Sync> Send for ARef<T> {}
// SAFETY: as Arc.
unsafe impl<T: Send + Sync> Sync for ARef<T> {}

impl<T> ARef<T> {
    /// `value` on the heap with one reference (the caller's), after
    /// `init` has seen it at its final address (to initialize a mutex in
    /// place). None when memory is short (`value` is dropped, `init` not
    /// run).
    pub fn try_new_with(value: T, init: impl FnOnce(&T)) -> Option<ARef<T>> {
        let layout = Layout::new::<Counted<T>>();
        // SAFETY: a Counted<T> has a non-zero size (its count).
        let p = NonNull::new(unsafe { alloc::alloc::alloc(layout) }.cast::<Counted<T>>())?;
        // SAFETY: freshly allocated for a Counted<T>, properly aligned, and
        // nobody else can reach it yet.
        unsafe {
            p.as_ptr().write(Counted {
                refs: AtomicUsize::new(1),
                value,
            })
        };
        // SAFETY: written above; shared only after this returns.
        init(unsafe { &p.as_ref().value });
        Some(ARef(p))
    }

    /// Hands this reference over as a raw pointer (for the kernel to keep);
    /// `from_raw` takes it back.
    pub fn into_raw(self) -> NonNull<()> {
        ManuallyDrop::new(self).0.cast()
    }

    /// Takes back a reference `into_raw` handed over.
    ///
    /// # Safety
    /// `p` came from `into_raw` of an `ARef<T>`, and the reference it owns
    /// is taken back once.
    pub unsafe fn from_raw(p: NonNull<()>) -> ARef<T> {
        ARef(p.cast())
    }

    /// Lends the reference `p` owns for as long as the caller keeps it
    /// owned; the count does not change.
    ///
    /// # Safety
    /// As `from_raw`, and that reference stays owned (not taken back)
    /// while the loan lives.
    pub unsafe fn borrow_raw<'a>(p: NonNull<()>) -> &'a T {
        // SAFETY: live while its owner's reference is counted (caller).
        unsafe { &(*p.cast::<Counted<T>>().as_ptr()).value }
    }

    /// Another counted reference to the object a raw reference names.
    ///
    /// # Safety
    /// `p` came from `into_raw` of an `ARef<T>` and its reference is owned
    /// by someone for the length of this call.
    pub unsafe fn clone_raw(p: NonNull<()>) -> ARef<T> {
        // SAFETY: live while that reference is owned (caller); not taken
        // over: ManuallyDrop keeps its count.
        let r = ManuallyDrop::new(unsafe { ARef::<T>::from_raw(p) });
        ARef::clone(&r)
    }

    /// The address `into_raw` would give, without handing anything over:
    /// the object's identity.
    pub fn as_raw(&self) -> NonNull<()> {
        self.0.cast()
    }

    /// References counted now: only a hint, since other owners may give
    /// theirs back at any time (a count of 1 with the caller's own is
    /// exact: nobody else can add one).
    pub fn count(&self) -> usize {
        self.counted().refs.load(Ordering::Acquire)
    }

    /// Gives back `n` references owned through raw pointers the caller
    /// has taken back by other means (emptied index entries), never the
    /// last: the caller holds `self`.
    ///
    /// # Safety
    /// Each of the `n` is a reference `into_raw` handed over, taken back
    /// once, here.
    pub unsafe fn drop_raw_refs(&self, n: usize) {
        self.counted().refs.fetch_sub(n, Ordering::Release);
    }

    fn counted(&self) -> &Counted<T> {
        // SAFETY: live while `self` is counted.
        unsafe { self.0.as_ref() }
    }
}

impl<T> Deref for ARef<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.counted().value
    }
}

impl<T> Clone for ARef<T> {
    /// Another counted reference to the same object.
    fn clone(&self) -> ARef<T> {
        self.counted().refs.fetch_add(1, Ordering::Relaxed);
        ARef(self.0)
    }
}

impl<T> Drop for ARef<T> {
    fn drop(&mut self) {
        if self.counted().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other owner's use happened before its own decrement,
        // which this acquire orders before the free.
        fence(Ordering::Acquire);
        // SAFETY: the last reference: allocated as a Counted<T> with the
        // global allocator in try_new_with (what Box expects), and nobody
        // else can reach it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}
