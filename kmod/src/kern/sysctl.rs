//! The sysctl request a handler writes to (SYSCTL_OUT), and the module's
//! dynamic sysctls (sysctl_glue.c).

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::kern::errno::{Errno, KResult};
use listenq_bindings as sys;

/// The request of a running handler, borrowed for the call.
pub struct SysctlReq<'a> {
    req: NonNull<sys::sysctl_req>,
    _call: PhantomData<&'a mut sys::sysctl_req>,
}

impl SysctlReq<'_> {
    /// # Safety
    /// `req` is the request handed to a sysctl handler that has not
    /// returned yet, for as long as the value lives.
    pub(super) unsafe fn from_raw<'a>(req: *mut sys::sysctl_req) -> Option<SysctlReq<'a>> {
        Some(SysctlReq {
            req: NonNull::new(req)?,
            _call: PhantomData,
        })
    }

    pub(super) fn as_ptr(&self) -> *mut sys::sysctl_req {
        self.req.as_ptr()
    }

    /// Whether the reader may see every socket of the host (not jailed,
    /// allowed to see other users' and groups' sockets).
    pub fn sees_all(&self) -> bool {
        // SAFETY: a live request (constructor contract).
        unsafe { sys::lq_sysctl_sees_all(self.as_ptr()) != 0 }
    }

    /// Copies bytes out; may sleep (copyout), so no locks may be held.
    pub fn out(&mut self, b: &[u8]) -> KResult<()> {
        // SAFETY: a live request (constructor contract); `b` is readable
        // for its length.
        Errno::check(unsafe { sys::lq_sysctl_out(self.as_ptr(), b.as_ptr().cast(), b.len()) })
    }
}

/// Adds the dynamic sysctls whose handlers run module code. Module load
/// only (may sleep); undone by detach().
pub fn attach() {
    // SAFETY: module load context, no locks held; called once per load.
    unsafe { sys::lq_sysctl_attach() };
}

/// Removes them, waiting for handlers still running; after it no handler
/// of listenq's can start.
pub fn detach() -> KResult<()> {
    // SAFETY: module unload context, no locks held; after attach().
    Errno::check(unsafe { sys::lq_sysctl_detach() })
}

/// kern.ipc.listenq.unloadable.
pub fn unloadable() -> bool {
    // SAFETY: an int the sysctl writes; a volatile read of an aligned int
    // sees either value.
    unsafe { core::ptr::read_volatile(&raw const sys::lq_unloadable) != 0 }
}
