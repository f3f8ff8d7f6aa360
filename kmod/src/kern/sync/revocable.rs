//! A value that exists between MOD_LOAD and MOD_UNLOAD (Rust-for-Linux's
//! `Revocable`): the module event handler puts it in place and later takes
//! it back; a thread the kernel sent into listenq reaches it through its
//! `InFlight` token, and gets `None` once unload has begun.
//!
//! The value sits in the static's own storage, built at compile time: it
//! is never moved (large, it would not fit on a kernel stack), mutexes in
//! it are initialized where they stay, and an idle module allocates
//! nothing. A module's statics are new at every kldload, so one value
//! serves one load: once dropped, it cannot be published again.
//!
//! # Why a reference cannot outlive the value
//!
//! - A counted thread: `get` lends `&T` for as long as the `InFlight` it
//!   is given lives. That thread was counted (SeqCst) before `get` read the
//!   gate (SeqCst); `revoke` closes the gate (SeqCst) and then waits until
//!   no thread is counted. So either the thread read the gate closed, or
//!   `revoke` waits for its count, which lasts as long as the loan.
//! - The module event handler: `peek` lends `&T` for as long as a shared
//!   borrow of its `ModEvent`, and `revoke` needs that `ModEvent`
//!   mutably, so no loan of `peek`'s is left when the value is taken back.
//! - Only `Revoked`, which `revoke` returns once the counted threads have
//!   left, drops the value.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::kern::inflight::{self, InFlight};

/// The thread handling a module event (MOD_LOAD, MOD_QUIESCE,
/// MOD_UNLOAD). The kernel runs one module event at a time (kld_sx), so at
/// most one exists; and the handler holds no `InFlight`, so `revoke`'s
/// wait cannot wait for its own caller.
pub struct ModEvent(());

impl ModEvent {
    /// # Safety
    /// Only in listenq's module event handler (kern/entry/module.rs),
    /// which no `InFlight` of the calling thread encloses, once per event.
    pub(in crate::kern) unsafe fn new() -> ModEvent {
        ModEvent(())
    }
}

pub struct Revocable<T> {
    /// The gate: `get` lends the value only while it is open.
    live: AtomicBool,
    /// FRESH, PUBLISHED or DROPPED; changed only by the module event
    /// handler.
    state: AtomicU8,
    data: UnsafeCell<MaybeUninit<T>>,
}

/// Built, not yet seen by anyone.
const FRESH: u8 = 0;
/// `publish` done, not dropped: `peek` and `revoke` may lend it.
const PUBLISHED: u8 = 1;
/// Dropped by `Revoked`.
const DROPPED: u8 = 2;

// SAFETY: the value is shared between threads through `&T` (T: Sync) and
// dropped by the module event handler, maybe on another thread than the
// one that wrote it (T: Send); the flags are atomics.
unsafe impl<T: Send + Sync> Sync for Revocable<T> {}

impl<T> Revocable<T> {
    /// `value`, closed: for a static's initializer.
    pub const fn new(value: T) -> Self {
        Revocable {
            live: AtomicBool::new(false),
            state: AtomicU8::new(FRESH),
            data: UnsafeCell::new(MaybeUninit::new(value)),
        }
    }

    /// Lets `init` see the value where it stays (to initialize its
    /// mutexes) and then opens the gate. False if it was published
    /// before.
    pub fn publish(&self, _ev: &mut ModEvent, init: impl FnOnce(&T)) -> bool {
        if self.state.load(Ordering::Acquire) != FRESH {
            return false;
        }
        // SAFETY: built by `new` and never published, so nobody else
        // reads it: `get` and `peek` check the gate and the state first,
        // and only the module event handler, this thread (`_ev`), changes
        // them.
        init(unsafe { (*self.data.get()).assume_init_ref() });
        self.state.store(PUBLISHED, Ordering::Release);
        self.live.store(true, Ordering::SeqCst);
        true
    }

    /// The value, for as long as `f` counts this thread in; None before
    /// `publish` and from the moment `revoke` begins.
    pub fn get<'a>(&'a self, _f: &'a InFlight) -> Option<&'a T> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        // SAFETY: live, so written and not dropped; and not dropped while
        // `_f` lives (top of this file, "a counted thread").
        Some(unsafe { (*self.data.get()).assume_init_ref() })
    }

    /// The value, for the module event handler, also while `revoke` is
    /// not yet done with it.
    pub fn peek<'a>(&'a self, _ev: &'a ModEvent) -> Option<&'a T> {
        if self.state.load(Ordering::Acquire) != PUBLISHED {
            return None;
        }
        // SAFETY: published, and only `Revoked` drops it, which needs the
        // `ModEvent` mutably, so not while this loan lives.
        Some(unsafe { (*self.data.get()).assume_init_ref() })
    }

    /// Closes the gate and waits until no thread is counted inside
    /// listenq (kern::inflight), so that nothing else names the value any
    /// more; the caller then owns it. None if it is not published.
    pub fn revoke<'a>(&'a self, _ev: &'a mut ModEvent) -> Option<Revoked<'a, T>> {
        if self.state.load(Ordering::Acquire) != PUBLISHED {
            return None;
        }
        self.live.store(false, Ordering::SeqCst);
        inflight::drain_all();
        Some(Revoked { r: self })
    }
}

/// The value taken back: no other thread names it, and nothing is left
/// to do with it but drop it (which this does).
pub struct Revoked<'a, T> {
    r: &'a Revocable<T>,
}

impl<T> Drop for Revoked<'_, T> {
    fn drop(&mut self) {
        // The state leaves PUBLISHED here and never comes back.
        self.r.state.store(DROPPED, Ordering::Release);
        // SAFETY: published until the line above, nobody else names it,
        // and it is dropped once (above).
        unsafe { (*self.r.data.get()).assume_init_drop() };
    }
}
