//! An owned socket reference (soref(9)/sorele(9)), as Rust-for-Linux's
//! ARef: cloning takes another reference, dropping gives it back.

use core::ptr::NonNull;

use crate::kern::socket::SocketRef;
use listenq_bindings as sys;

/// Dropping it calls sorele(9), which may free the socket, so it must be
/// dropped without listenq's locks held.
pub struct SocketHold(NonNull<sys::socket>);

// SAFETY: a reference count is not tied to a thread; sorele(9) may run on
// any thread (with no locks held, which the type's users keep to).
unsafe impl Send for SocketHold {}

impl SocketRef<'_> {
    /// soref(9): an owned reference that keeps the socket from being freed
    /// until it is dropped.
    pub fn hold(self) -> SocketHold {
        // SAFETY: `self` is live for the call, so its count is non-zero
        // and soref(9) may add to it.
        unsafe { sys::lq_soref(self.as_ptr()) };
        SocketHold(self.as_non_null())
    }
}

impl SocketHold {
    /// The socket, live for as long as this reference is borrowed.
    pub fn socket(&self) -> SocketRef<'_> {
        // SAFETY: the reference this value owns keeps the socket live for
        // as long as `self` is borrowed.
        unsafe { SocketRef::from_non_null(self.0) }
    }

    pub fn key(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl Clone for SocketHold {
    fn clone(&self) -> SocketHold {
        self.socket().hold()
    }
}

impl Drop for SocketHold {
    fn drop(&mut self) {
        // SAFETY: the reference taken in new() keeps it live until here,
        // and is given back exactly once.
        unsafe { sys::lq_sorele(self.0.as_ptr()) }
    }
}
