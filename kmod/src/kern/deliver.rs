//! Delivering a connection listenq's filter released to its listener's
//! completed queue from the filter's own upcall (deliver_glue.c, whose
//! "(W)" says why the kernel's soisconnected() must not do it there): in
//! place, with the listener's lock held until the listener has been woken,
//! or, when that cannot be, by the state's task (work.rs).

use core::marker::PhantomData;

use crate::kern::filter_arg::Attached;
use crate::kern::sockbuf::RcvLocked;
use crate::kern::socket::socket_of_key;
use listenq_bindings as sys;

/// An in-place delivery under way: this thread holds the listener's lock
/// (so the listener is live) and the connection's, taken by
/// `RcvLocked::deliver_begin` or already held (the first call, from
/// soisconnected()), and listenq's upcall is off the connection. Ends in
/// `finish` (or when dropped): nothing can leave the connection half
/// delivered.
pub struct InPlace<'r> {
    head: *mut sys::socket,
    so: *mut sys::socket,
    took: i32,
    upcall_taken: bool,
    /// Within the receive-buffer lock the upcall runs under.
    _rcv: PhantomData<&'r RcvLocked<'r>>,
}

impl RcvLocked<'_> {
    /// The locks to deliver this connection to `on`'s listener in place,
    /// and listenq's upcall taken off it; None when the task must deliver
    /// it (a lock is busy, or the listener wants SIGIO or has someone
    /// else's listen upcall), nothing changed.
    pub fn deliver_begin(&self, on: Attached<'_>) -> Option<InPlace<'_>> {
        let mut upcall: *mut cty::c_void = core::ptr::null_mut();
        // SAFETY: `on` proves the state's mutex is held and the state is
        // attached to this listener, so it is live (deliver_glue.c says
        // why that is enough to try its lock); the connection is live and
        // its receive buffer locked (the type's invariant). The helper
        // only try-locks, or finds the locks this thread already holds.
        let (head, so) = unsafe { (socket_of_key(on.head()), socket_of_key(self.key())) };
        // SAFETY: as above.
        let took = unsafe { sys::lq_deliver_begin(head, so, &mut upcall) };
        if took == sys::LQ_DELIVER_DEFER {
            return None;
        }
        Some(InPlace {
            head,
            so,
            took,
            upcall_taken: !upcall.is_null(),
            _rcv: PhantomData,
        })
    }
}

impl InPlace<'_> {
    /// listenq's upcall was on the connection and is off it now: the
    /// reference it held on the filter state is the caller's to give back.
    pub fn upcall_taken(&self) -> bool {
        self.upcall_taken
    }

    /// On to the completed queue; the listener is woken under its lock,
    /// which is then dropped (if this delivery took it). Dropping an
    /// `InPlace` does the same: once begun, a delivery is finished.
    pub fn finish(self) {}
}

impl Drop for InPlace<'_> {
    fn drop(&mut self) {
        // SAFETY: both locks are held (the type's invariant) and the
        // connection is still on the listener's incomplete queue: that was
        // checked under them in deliver_begin(), and only this runs once.
        unsafe { sys::lq_deliver_finish(self.head, self.so, self.took) };
    }
}
