//! The sysctl request a handler writes to (SYSCTL_OUT).

use crate::kern::errno::{Errno, KResult};
use listenq_bindings as sys;

pub struct SysctlReq(*mut sys::sysctl_req);

impl SysctlReq {
    /// # Safety
    /// `req` is the request handed to a sysctl handler, valid for the call.
    pub unsafe fn from_raw(req: *mut sys::sysctl_req) -> SysctlReq {
        SysctlReq(req)
    }

    pub fn as_ptr(&self) -> *mut sys::sysctl_req {
        self.0
    }

    /// Whether the reader may see every socket of the host (not jailed,
    /// allowed to see other users' and groups' sockets).
    pub fn sees_all(&self) -> bool {
        // SAFETY: valid request (constructor contract).
        unsafe { sys::lq_sysctl_sees_all(self.0) != 0 }
    }

    /// Copies bytes out; may sleep (copyout), so no locks may be held.
    pub fn out(&mut self, b: &[u8]) -> KResult<()> {
        // SAFETY: valid request (constructor contract); `b` is readable for
        // its length.
        Errno::check(unsafe { sys::lq_sysctl_out(self.0, b.as_ptr().cast(), b.len()) })
    }

    /// True when the caller only asks how big the answer is.
    pub fn sizing(&self) -> bool {
        // SAFETY: valid request.
        unsafe { sys::lq_sysctl_sizing(self.0) != 0 }
    }
}
