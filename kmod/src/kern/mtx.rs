//! mtx(9) with the data it protects and an RAII guard, usable in statics.
//! The mutex is MTX_DEF: listenq takes it while holding socket locks (also
//! MTX_DEF) and never the other way round, so WITNESS sees one order.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};
use listenq_bindings as sys;

pub struct KMutex<T> {
    mtx: UnsafeCell<MaybeUninit<sys::mtx>>,
    /// lock() succeeds (cleared by retire() before destroy()).
    ready: AtomicBool,
    /// mtx_init(9) done and mtx_destroy(9) not yet.
    inited: AtomicBool,
    name: &'static core::ffi::CStr,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` only happens through a Guard, which exists only
// while the mtx(9) is held; the mtx itself is made for sharing.
unsafe impl<T: Send> Sync for KMutex<T> {}

impl<T> KMutex<T> {
    pub const fn new(name: &'static core::ffi::CStr, data: T) -> Self {
        KMutex {
            mtx: UnsafeCell::new(MaybeUninit::uninit()),
            ready: AtomicBool::new(false),
            inited: AtomicBool::new(false),
            name,
            data: UnsafeCell::new(data),
        }
    }

    /// mtx_init(9). Called once at module load, before anyone can lock.
    pub fn init(&self) {
        if self.inited.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: the storage is static and not yet initialized (inited is
        // false and load runs single-threaded with respect to this lock).
        unsafe { sys::lq_mtx_init(self.mtx.get().cast(), self.name.as_ptr()) };
        self.inited.store(true, Ordering::Release);
        self.ready.store(true, Ordering::SeqCst);
    }

    /// From now on lock() returns None. A thread that got the lock before
    /// keeps it until it drops its guard: callers count themselves in
    /// (kern::inflight::InFlight) *before* lock(), and unload waits for that count
    /// to reach zero after retire() and before destroy(). With both sides
    /// SeqCst, a thread either sees `ready` false or is counted.
    pub fn retire(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// mtx_destroy(9). Called at unload, after retire() and once every
    /// thread that could still hold the lock has left (or at a failed
    /// load, before anyone could lock).
    pub fn destroy(&self) {
        self.ready.store(false, Ordering::SeqCst);
        if self.inited.swap(false, Ordering::AcqRel) {
            // SAFETY: initialized by init(); the caller guarantees no
            // holder and no future locker.
            unsafe { sys::lq_mtx_destroy(self.mtx.get().cast()) };
        }
    }

    /// Locks; `None` outside the module's lifetime (before init or after
    /// destroy), which callers treat as "listenq is not active".
    pub fn lock(&self) -> Option<Guard<'_, T>> {
        if !self.ready.load(Ordering::SeqCst) {
            return None;
        }
        // SAFETY: initialized (ready); mtx_lock may block, which every
        // caller's context allows (no spin locks held, not in a critical
        // section).
        unsafe { sys::lq_mtx_lock(self.mtx.get().cast()) };
        Some(Guard { m: self })
    }
}

impl<T> KMutex<T> {
    /// Locks even after retire(), until destroy(): for a thread already
    /// inside the module (counted by kern::inflight::InFlight before
    /// retire()) that must finish giving back what it holds, and for
    /// unload's own last look before destroy(). destroy() comes only
    /// after every counted thread has left, so the mutex is still
    /// initialized whenever this finds `inited`.
    pub fn lock_until_destroyed(&self) -> Option<Guard<'_, T>> {
        if !self.inited.load(Ordering::SeqCst) {
            return None;
        }
        // SAFETY: initialized and not destroyed (above); as lock().
        unsafe { sys::lq_mtx_lock(self.mtx.get().cast()) };
        Some(Guard { m: self })
    }
}

pub struct Guard<'a, T> {
    m: &'a KMutex<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the mutex, so this is the only reference.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard locked it.
        unsafe { sys::lq_mtx_unlock(self.m.mtx.get().cast()) };
    }
}
