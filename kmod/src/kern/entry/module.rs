//! MOD_LOAD / MOD_QUIESCE / MOD_UNLOAD (module_glue.c listenq_modevent).

use crate::kern::errno::to_c;
use crate::kern::sync::ModEvent;
use crate::lifecycle;

#[no_mangle]
pub extern "C" fn listenq_rs_load() -> i32 {
    // SAFETY: listenq's module event handler, one event at a time
    // (kld_sx), with no InFlight of its own.
    let mut ev = unsafe { ModEvent::new() };
    to_c(lifecycle::load(&mut ev))
}

#[no_mangle]
pub extern "C" fn listenq_rs_quiesce() -> i32 {
    // SAFETY: as in listenq_rs_load.
    let ev = unsafe { ModEvent::new() };
    to_c(lifecycle::quiesce(&ev))
}

#[no_mangle]
pub extern "C" fn listenq_rs_unload() -> i32 {
    // SAFETY: as in listenq_rs_load.
    let mut ev = unsafe { ModEvent::new() };
    to_c(lifecycle::unload(&mut ev))
}
