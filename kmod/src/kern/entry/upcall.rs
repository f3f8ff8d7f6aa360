//! What socket_glue.c's listen upcall and its walk over existing TCP
//! listeners call.

use crate::kern::inflight::InFlight;
use crate::kern::protosw;
use crate::kern::socket::SocketRef;
use crate::listeners;
use listenq_bindings as sys;

/// From the walks at load: a listener that existed before listenq.
/// lq_tcp_listeners_foreach() holds the inpcb read-locked (lock order:
/// inpcb, socket, REGISTRY), lq_local_listeners_foreach() a reference on a
/// file of the socket and no lock, so either way the socket is attached
/// and live.
///
/// # Safety
/// `so` is a live socket the caller keeps so (inpcb lock or file reference).
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_adopt(so: *mut sys::socket) {
    let _f = InFlight::enter();
    // SAFETY: the caller keeps this listening socket live until the call
    // returns (see above).
    let Some(s) = (unsafe { SocketRef::from_raw(so) }) else {
        return;
    };
    if let Some(o) = protosw::originals(s.proto()) {
        listeners::adopt(s, o.proto);
    }
}

/// From the listen upcall: `child` reached the completed queue of `head`.
///
/// # Safety
/// `head` is a live listener whose SOLISTEN_LOCK the caller holds.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_completed(head: *mut sys::socket, child: *mut sys::socket) {
    let _f = InFlight::enter();
    // SAFETY: the upcall runs with the listener locked and live.
    let Some(h) = (unsafe { SocketRef::from_raw(head) }) else {
        return;
    };
    // SAFETY: the caller holds SOLISTEN_LOCK(head).
    let q = unsafe { h.sample_locked() };
    listeners::completed(h.key(), child as usize, q);
}

/// From the listen upcall: the connection recorded last for `head` and
/// still on its completed queue (NULL if none); the upcall records every
/// one behind it. SOLISTEN_LOCK(head) is held.
#[no_mangle]
pub extern "C" fn listenq_rs_newest_completed(head: *mut sys::socket) -> *mut sys::socket {
    let _f = InFlight::enter();
    // Only compared with the queue's entries by the C side.
    listeners::newest_completed(head as usize) as *mut sys::socket
}
