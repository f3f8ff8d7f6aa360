//! The handlers of the dynamic sysctls (sysctl_glue.c).

use crate::kern::errno::{to_c, Errno, KResult};
use crate::kern::inflight::InFlight;
use crate::kern::module::Module;
use crate::kern::stat::Stat;
use crate::kern::sysctl::SysctlReq;
use crate::listeners;
use listenq_bindings as sys;

/// Counts the handler in and runs `f` with the module and the request;
/// ENOENT once unload has begun.
///
/// # Safety
/// `req` is the request of the running handler that calls this.
unsafe fn handle(
    req: *mut sys::sysctl_req,
    f: impl FnOnce(&Module, &mut SysctlReq<'_>) -> KResult<()>,
) -> i32 {
    let inf = InFlight::enter();
    let Some(m) = Module::get(&inf) else {
        return Errno::ENOENT.0;
    };
    // SAFETY: called from the sysctl handler with its request, live until
    // the handler returns (caller).
    let Some(mut req) = (unsafe { SysctlReq::from_raw(req) }) else {
        return Errno::EINVAL.0;
    };
    to_c(f(m, &mut req))
}

/// # Safety
/// `req` is the request of the running handler that calls this.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sysctl_listeners(req: *mut sys::sysctl_req) -> i32 {
    // SAFETY: the caller's request.
    unsafe { handle(req, listeners::sysctl_listeners) }
}

/// # Safety
/// `req` is the request of the running handler that calls this.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sysctl_xlisteners(req: *mut sys::sysctl_req) -> i32 {
    // SAFETY: the caller's request.
    unsafe { handle(req, listeners::sysctl_xlisteners) }
}

/// `which` is the OID's arg2, an enum lq_stat.
///
/// # Safety
/// `req` is the request of the running handler that calls this.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sysctl_stat(req: *mut sys::sysctl_req, which: i32) -> i32 {
    let Some(stat) = Stat::from_c(which) else {
        return Errno::EINVAL.0;
    };
    // SAFETY: the caller's request.
    unsafe { handle(req, |m, r| listeners::sysctl_stat(m, r, stat)) }
}

#[no_mangle]
pub extern "C" fn listenq_rs_allocs() -> u64 {
    crate::kern::alloc::live()
}
