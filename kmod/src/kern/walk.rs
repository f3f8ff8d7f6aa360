//! The walks that find listeners which existed before listenq loaded
//! (glue.c). Each calls `listenq_rs_adopt()` for every listener it finds.

use listenq_bindings as sys;

/// Every TCP listener of every vnet (the inpcb lists).
pub fn tcp_listeners() {
    // SAFETY: module load context (may sleep); no locks held.
    unsafe { sys::lq_tcp_listeners_foreach() };
}

/// Every local stream/seqpacket listener some process holds a descriptor
/// of (the file tables: uipc_usrreq.c keeps its pcb lists static).
pub fn local_listeners() {
    // SAFETY: module load context (may sleep, M_WAITOK); no locks held.
    unsafe { sys::lq_local_listeners_foreach() };
}
