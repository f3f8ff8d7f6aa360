//! The default_arg sysctl handler's (defaults_glue.c) call into Rust.

use crate::kern::defaults::LEN;
use crate::kern::errno::{to_c, Errno};
use crate::kern::inflight::InFlight;

/// Called by the sysctl handler (also for the loader tunable) before a new
/// value is stored: 0 to store it, EINVAL to refuse it. `vnet`: the
/// per-VNET default (kern.ipc.listenq.vnet.*), for the message.
#[no_mangle]
pub extern "C" fn listenq_rs_default_arg_check(
    filter: i32,
    vnet: i32,
    arg: *const cty::c_char,
    len: usize,
) -> i32 {
    let _f = InFlight::enter();
    if arg.is_null() || len >= LEN {
        return Errno::EINVAL.0;
    }
    // SAFETY: the handler passes its own buffer of LEN bytes and the
    // length of the string in it, which is below LEN (checked above).
    let bytes = unsafe { core::slice::from_raw_parts(arg.cast::<u8>(), len) };
    to_c(crate::defaults::check(
        usize::try_from(filter).unwrap_or(usize::MAX),
        vnet != 0,
        bytes,
    ))
}

/// The name of filter `filter` (the defaults' index), for its sysctl node
/// (`kern.ipc.listenq.<name>`); NULL past the last. The names live in
/// listenq-accf (`FilterKind::c_name`), the one list of them.
#[no_mangle]
pub extern "C" fn listenq_rs_filter_name(filter: i32) -> *const cty::c_char {
    usize::try_from(filter)
        .ok()
        .and_then(listenq_accf::FilterKind::from_index)
        .map_or(core::ptr::null(), |k| k.c_name().as_ptr())
}
