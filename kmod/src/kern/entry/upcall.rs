//! What socket_glue.c's listen upcall and its walk over existing TCP
//! listeners call.

use crate::kern::inflight::InFlight;
use crate::kern::pending::PendingRef;
use crate::kern::protosw;
use crate::kern::socket::SocketRef;
use crate::listeners;
use listenq_bindings as sys;
use listenq_policy::pending::Seen;

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
    let _f = InFlight::enter();
    // SAFETY: the upcall runs with the listener locked and live.
    let Some(h) = (unsafe { SocketRef::from_raw(head) }) else {
        return;
    };
    // SAFETY: the caller holds SOLISTEN_LOCK(head).
    let overflow = unsafe { h.overflow_locked() };
    let since = |newest: Seen, on_queue: bool, out: &mut [Seen]| {
        let max = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let newest = sys::lq_seen {
            so: newest.so as *mut sys::socket,
            sogen: newest.gen,
        };
        // SAFETY: SOLISTEN_LOCK(head) is still held (the walk runs inside
        // this call), which the sol_comp walk needs; with `on_queue`,
        // `newest` was returned by an earlier walk of this same call, so
        // it is still on the queue (leaving it needs that lock); `out` has
        // room for `max` entries, and a Seen is laid out as a struct
        // lq_seen (both repr(C), checked below).
        let n = unsafe {
            sys::lq_sol_comp_since(
                head,
                newest,
                i32::from(on_queue),
                out.as_mut_ptr().cast(),
                max,
            )
        };
        (n as usize).min(out.len())
    };
    // SAFETY: `arg` is the argument of listenq's upcall, which the kernel
    // is running with SOLISTEN_LOCK(head) held: removing it needs that
    // lock, so its reference is counted for this whole call, and no other
    // upcall of this listener runs meanwhile.
    unsafe {
        PendingRef::with_upcall(arg, |p, newest| {
            listeners::completed(p, newest, overflow, since)
        })
    };
}

// What lets the walk write Seens (policy, repr(C)) as struct lq_seen.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Seen>() == size_of::<sys::lq_seen>());
    assert!(align_of::<Seen>() == align_of::<sys::lq_seen>());
    assert!(offset_of!(Seen, so) == offset_of!(sys::lq_seen, so));
    assert!(offset_of!(Seen, gen) == offset_of!(sys::lq_seen, sogen));
};
