//! The handlers of the dynamic sysctls (sysctl_glue.c).

use crate::kern::errno::{to_c, Errno};
use crate::kern::inflight::InFlight;
use crate::kern::module::Module;
use crate::kern::stat::Stat;
use crate::kern::sysctl::SysctlReq;
use crate::listeners;
use listenq_bindings as sys;

/// # Safety
/// `req` is the request of the running handler that calls this.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sysctl_listeners(req: *mut sys::sysctl_req) -> i32 {
    let f = InFlight::enter();
    let Some(m) = Module::get(&f) else {
        return Errno::ENOENT.0;
    };
    // SAFETY: called from the sysctl handler with its request, live until
    // the handler returns.
    let Some(mut req) = (unsafe { SysctlReq::from_raw(req) }) else {
        return Errno::EINVAL.0;
    };
    to_c(listeners::sysctl_listeners(m, &mut req))
}

/// # Safety
/// `req` is the request of the running handler that calls this.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sysctl_xlisteners(req: *mut sys::sysctl_req) -> i32 {
    let f = InFlight::enter();
    let Some(m) = Module::get(&f) else {
        return Errno::ENOENT.0;
    };
    // SAFETY: as above.
    let Some(mut req) = (unsafe { SysctlReq::from_raw(req) }) else {
        return Errno::EINVAL.0;
    };
    to_c(listeners::sysctl_xlisteners(m, &mut req))
}

/// `which` is the OID's arg2, an enum lq_stat.
///
/// # Safety
/// `req` is the request of the running handler that calls this.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sysctl_stat(req: *mut sys::sysctl_req, which: i32) -> i32 {
    let f = InFlight::enter();
    let Some(m) = Module::get(&f) else {
        return Errno::ENOENT.0;
    };
    // SAFETY: as above.
    let Some(mut req) = (unsafe { SysctlReq::from_raw(req) }) else {
        return Errno::EINVAL.0;
    };
    let Some(stat) = Stat::from_c(which) else {
        return Errno::EINVAL.0;
    };
    to_c(listeners::sysctl_stat(m, &mut req, stat))
}

#[no_mangle]
pub extern "C" fn listenq_rs_allocs() -> u64 {
    crate::kern::alloc::live()
}
