//! MOD_LOAD / MOD_QUIESCE / MOD_UNLOAD (module_glue.c listenq_modevent).

use crate::kern::errno::to_c;
use crate::module;

#[no_mangle]
pub extern "C" fn listenq_rs_load() -> i32 {
    to_c(module::load())
}

#[no_mangle]
pub extern "C" fn listenq_rs_quiesce() -> i32 {
    to_c(module::quiesce())
}

#[no_mangle]
pub extern "C" fn listenq_rs_unload() -> i32 {
    to_c(module::unload())
}
