//! An accept filter's per-listener state on the heap, addressed by the
//! token the kernel keeps for it: accf_create returns it, uipc_accf.c
//! stores it in sol_accept_filter_arg, soisconnected() copies it into the
//! receive upcall argument of each connection, and every callback gets it
//! back. Reaching the state is then a pointer dereference, never a search.
//!
//! The kernel cannot tell when the state may go, so whoever frees it must
//! know that no upcall or queued work can still name it (accf.rs keeps
//! that count).

use alloc::boxed::Box;
use core::alloc::Layout;
use core::ptr::NonNull;

pub struct FilterArg<T>(NonNull<T>);

impl<T> Clone for FilterArg<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for FilterArg<T> {}

impl<T> PartialEq for FilterArg<T> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}

// SAFETY: only the address travels; the state behind it is reached through
// `get`, whose caller holds the lock that protects it.
unsafe impl<T: Send> Send for FilterArg<T> {}

impl<T> FilterArg<T> {
    /// Moves `v` to the heap (M_NOWAIT); None when memory is short.
    pub fn new(v: T) -> Option<FilterArg<T>> {
        let layout = Layout::new::<T>();
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: a non-zero size (checked above).
        let p = NonNull::new(unsafe { alloc::alloc::alloc(layout) }.cast::<T>())?;
        // SAFETY: freshly allocated for a T, properly aligned.
        unsafe { p.as_ptr().write(v) };
        Some(FilterArg(p))
    }

    /// The kernel's token for it.
    pub fn token(self) -> *mut cty::c_void {
        self.0.as_ptr().cast()
    }

    /// The state a token names; None for a null token.
    ///
    /// # Safety
    /// A non-null `token` came from `token()` of a FilterArg<T> that has
    /// not been freed.
    pub unsafe fn from_token(token: *mut cty::c_void) -> Option<FilterArg<T>> {
        NonNull::new(token.cast::<T>()).map(FilterArg)
    }

    /// # Safety
    /// Not freed, and the caller holds the lock that protects every
    /// FilterArg<T> for as long as it uses the reference, and takes no
    /// second reference to the same state meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get<'a>(self) -> &'a mut T {
        // SAFETY: the contract above.
        unsafe { &mut *self.0.as_ptr() }
    }

    /// # Safety
    /// Not freed yet, and never used again (nor its token) after this.
    pub unsafe fn free(self) {
        // SAFETY: allocated by the global allocator with Layout::new::<T>()
        // in new(), which is what Box expects.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}
