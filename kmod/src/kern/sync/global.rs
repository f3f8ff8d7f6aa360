//! A module-wide static mutex with a gate: lockable between module load
//! (`init`) and unload (`retire`), so that every caller gets one answer to
//! "is listenq loaded" (`None`) instead of deciding it for itself.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering};

use super::mutex::{Mutex, MutexGuard};

pub struct GlobalMutex<T> {
    m: Mutex<T>,
    name: &'static CStr,
    /// `lock` succeeds (cleared by `retire` before `destroy`).
    open: AtomicBool,
}

impl<T> GlobalMutex<T> {
    pub const fn new(name: &'static CStr, data: T) -> Self {
        GlobalMutex {
            m: Mutex::new(data),
            name,
            open: AtomicBool::new(false),
        }
    }

    /// mtx_init(9). At module load, before anyone can lock.
    pub fn init(&'static self) {
        if self.m.is_inited() {
            return;
        }
        // SAFETY: a static (it never moves), not initialized (above), and
        // load runs before any locker exists.
        unsafe { self.m.init(self.name) };
        self.open.store(true, Ordering::SeqCst);
    }

    /// From now on `lock` returns None. A thread that got the lock before
    /// keeps it until it drops its guard: callers count themselves in
    /// (kern::inflight::InFlight) *before* `lock`, and unload waits for that
    /// count to reach zero after `retire` and before `destroy`. With both
    /// sides SeqCst, a thread either sees the gate closed or is counted.
    pub fn retire(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// mtx_destroy(9). At unload, after `retire` and once every thread
    /// that could still hold the lock has left (or at a failed load,
    /// before anyone could lock).
    pub fn destroy(&'static self) {
        self.open.store(false, Ordering::SeqCst);
        // SAFETY: the caller's point in unload: no holder, no future
        // locker (the gate is closed and the counted threads are gone).
        unsafe { self.m.destroy() };
    }

    /// Locks; `None` outside the module's lifetime (before `init` or
    /// after `retire`), which callers treat as "listenq is not active".
    #[track_caller]
    pub fn lock(&self) -> Option<MutexGuard<'_, T>> {
        if !self.open.load(Ordering::SeqCst) {
            return None;
        }
        // SAFETY: open, so initialized; `destroy` comes only after every
        // thread counted in before `retire` has left, and this one was
        // (see `retire`).
        Some(unsafe { self.m.lock() })
    }

    /// Locks even after `retire`, until `destroy`: for a thread already
    /// inside the module (counted before `retire`) that must finish giving
    /// back what it holds, and for unload's own last look before
    /// `destroy`, which comes only after every counted thread has left.
    #[track_caller]
    pub fn lock_until_destroyed(&self) -> Option<MutexGuard<'_, T>> {
        if !self.m.is_inited() {
            return None;
        }
        // SAFETY: initialized and not destroyed (above), as in `lock`.
        Some(unsafe { self.m.lock() })
    }
}
