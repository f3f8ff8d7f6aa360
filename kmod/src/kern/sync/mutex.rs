//! mtx(9) in place, with the data it protects. MTX_DEF: listenq takes its
//! mutexes while holding socket locks (also MTX_DEF) and never the other
//! way round, so WITNESS sees one order.
//!
//! Lock and unlock call the kernel's `__mtx_lock_flags()` and
//! `__mtx_unlock_flags()` directly, as a module compiled from C does
//! (KLD_MODULE makes mtx_lock(9) a macro over them), with the file and
//! line of the Rust caller (`#[track_caller]`): WITNESS, lock profiling
//! and a "mutex not owned" panic then name the line that took the lock,
//! not this file.

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::panic::Location;
use core::sync::atomic::{AtomicBool, Ordering};
use listenq_bindings as sys;

pub struct Mutex<T> {
    /// Zeroed until `init` (mtx_init(9) without MTX_NEW reads
    /// LO_INITIALIZED, which memory used before may have set).
    mtx: UnsafeCell<MaybeUninit<sys::mtx>>,
    /// mtx_init(9) done and mtx_destroy(9) not yet: dropping the mutex
    /// destroys it only then.
    inited: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is reached only through a guard, which exists only while
// the mtx(9) is held; the mtx itself is made for sharing between threads.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves `data` with it (T: Send); an initialized
// mtx(9) never moves, since `init` requires that it stays where it is.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(data: T) -> Self {
        Mutex {
            mtx: UnsafeCell::new(MaybeUninit::zeroed()),
            inited: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// mtx_init(9), named `name` for WITNESS (one name per kind of lock:
    /// WITNESS orders locks by name).
    ///
    /// # Safety
    /// Not initialized yet (or destroyed since), nobody else uses it
    /// meanwhile, and it does not move until it is destroyed (a static,
    /// or a value inside an `ARef`).
    pub unsafe fn init(&self, name: &'static CStr) {
        // SAFETY: zeroed storage not in use (caller), that stays put.
        unsafe { sys::lq_mtx_init(self.raw(), name.as_ptr()) };
        self.inited.store(true, Ordering::Release);
    }

    /// mtx_destroy(9), if initialized: when the mutex is dropped.
    ///
    /// # Safety
    /// Nobody holds it or will lock it again before another `init`.
    unsafe fn destroy(&self) {
        if self.inited.swap(false, Ordering::AcqRel) {
            // SAFETY: initialized, unheld, and no later locker (caller).
            unsafe { sys::lq_mtx_destroy(self.raw()) };
        }
    }

    fn raw(&self) -> *mut sys::mtx {
        self.mtx.get().cast()
    }

    /// Locks. May sleep on the turnstile: MTX_DEF rules apply (no spin
    /// lock held, not in a critical section).
    ///
    /// # Safety
    /// Initialized, and not destroyed while the guard lives.
    #[track_caller]
    pub unsafe fn lock(&self) -> MutexGuard<'_, T> {
        let at = Location::caller();
        // SAFETY: an initialized struct mtx (caller) and its lock word.
        unsafe {
            sys::__mtx_lock_flags(
                core::ptr::addr_of_mut!((*self.raw()).mtx_lock),
                0,
                at.file_as_c_str().as_ptr(),
                line(at),
            )
        };
        MutexGuard { m: self, at }
    }

    /// The data, without locking: for its owner while nobody else can
    /// reach it (before it is shared, or once nothing else names it).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T> Drop for Mutex<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nobody holds it or can lock it any more.
        unsafe { self.destroy() };
    }
}

fn line(at: &Location<'_>) -> cty::c_int {
    cty::c_int::try_from(at.line()).unwrap_or(cty::c_int::MAX)
}

/// The mutex held, until dropped. It remembers where it was taken: the
/// unlock is reported from there (drop glue has no caller location).
pub struct MutexGuard<'a, T> {
    m: &'a Mutex<T>,
    at: &'static Location<'static>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the mutex, so this is the only reference.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard locked it, and the mutex outlives the guard.
        unsafe {
            sys::__mtx_unlock_flags(
                core::ptr::addr_of_mut!((*self.m.raw()).mtx_lock),
                0,
                self.at.file_as_c_str().as_ptr(),
                line(self.at),
            )
        };
    }
}
