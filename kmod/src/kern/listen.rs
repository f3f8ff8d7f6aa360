//! Closing the listen upcalls (socket_glue.c lq_sol_upcall; installing and
//! removing one: kern/pending.rs) at unload, and the walks over the TCP and
//! local listeners that existed before listenq.

use listenq_bindings as sys;

/// From now on (unload), install_listen_upcall() installs nothing. A
/// module's statics are new at every load, so nothing opens them again.
pub fn upcalls_close() {
    // SAFETY: stores an atomic flag.
    unsafe { sys::lq_listen_upcalls_close() };
}

/// Calls entry::upcall::listenq_rs_adopt for every TCP listener of every
/// vnet, each with its inpcb read-locked. Module load only: it may sleep,
/// and no locks may be held.
pub fn adopt_tcp_listeners() {
    // SAFETY: module load context (may sleep); no locks held.
    unsafe { sys::lq_tcp_listeners_foreach() };
}

/// Calls entry::upcall::listenq_rs_adopt for every local stream/seqpacket
/// listener some process holds a descriptor of (uipc_usrreq.c keeps its pcb
/// lists static), each with a reference on that descriptor's file and no
/// lock held. Module load only: it may sleep (M_WAITOK).
pub fn adopt_local_listeners() {
    // SAFETY: module load context (may sleep); no locks held.
    unsafe { sys::lq_local_listeners_foreach() };
}
