//! What socket_glue.c's listen upcall and its walk over existing TCP
//! listeners call.

use crate::kern::inflight::InFlight;
use crate::kern::module::Module;
use crate::kern::pending::PendingRef;
use crate::kern::protosw;
use crate::kern::socket::SocketRef;
use crate::listeners;
use listenq_bindings as sys;
use listenq_policy::children::{each_new, Seen};

/// From the walks at load: a listener that existed before listenq.
/// lq_tcp_listeners_foreach() holds the inpcb read-locked (lock order:
/// inpcb, socket, the registry), lq_local_listeners_foreach() a reference on a
/// file of the socket and no lock, so either way the socket is attached
/// and live.
///
/// # Safety
/// `so` is a live socket the caller keeps so (inpcb lock or file reference).
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_adopt(so: *mut sys::socket) {
    let f = InFlight::enter();
    let Some(m) = Module::get(&f) else { return };
    // SAFETY: the caller keeps this listening socket live until the call
    // returns (see above).
    let Some(s) = (unsafe { SocketRef::from_raw(so) }) else {
        return;
    };
    if let Some(o) = protosw::originals(s.proto()) {
        listeners::adopt(m, s, o.proto);
    }
}

/// The listen upcall: connections reached the completed queue of `head`
/// (the ones behind the one recorded last). `arg` is the listener's own
/// node (installed with it, kern/pending.rs): no global lock, no lock of
/// the listener's but the one the kernel holds, and a shard of the child
/// index per connection.
///
/// # Safety
/// `head` is a live listener whose SOLISTEN_LOCK the caller holds, and
/// `arg` the argument of listenq's listen upcall on it.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_sol_upcall(head: *mut sys::socket, arg: *mut cty::c_void) {
    let f = InFlight::enter();
    // Not loaded (or unloading): the upcall records nothing, as a closed
    // node's does.
    let Some(m) = Module::get(&f) else { return };
    // SAFETY: the upcall runs with the listener locked and live.
    let Some(h) = (unsafe { SocketRef::from_raw(head) }) else {
        return;
    };
    // SAFETY: the caller holds SOLISTEN_LOCK(head).
    let overflow = unsafe { h.overflow_locked() };
    // SAFETY: SOLISTEN_LOCK(head) is held for this whole call, in which
    // the walk runs, and each_new() passes the queue only connections it
    // returned.
    let q = unsafe { h.sol_comp_locked() };
    let walk = |newest: &mut Seen, f: &mut dyn FnMut(Seen)| {
        each_new(&q, newest, f);
    };
    // SAFETY: `arg` is the argument of listenq's upcall, which the kernel
    // is running with SOLISTEN_LOCK(head) held: removing it needs that
    // lock, so its reference is counted for this whole call, and no other
    // upcall of this listener runs meanwhile.
    unsafe {
        PendingRef::with_upcall(arg, |p, st| {
            listeners::completed(m, p, st, h.key(), overflow, walk)
        })
    };
}
