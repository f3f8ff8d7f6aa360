//! listenq's protocol-switch entries: listen, accept and close for TCP over
//! IPv4/IPv6 and local stream/seqpacket sockets. Each one calls the kernel's
//! original, so errors and queue behaviour stay exactly stock; listenq
//! computes the limit itself and records what happened.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::kern::errno::Errno;
use crate::kern::protosw::{self, Hooks};
use crate::kern::socket::Socket;
use crate::kern::time;
use crate::listeners;
use listenq_bindings as sys;

/// Threads currently inside listenq code reached from the kernel. Unload
/// waits for this to reach zero after unhooking.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub struct InFlight;

impl InFlight {
    /// SeqCst: see KMutex::retire() for the pairing with unload.
    pub fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

pub const HOOKS: Hooks = Hooks {
    listen: lq_pr_listen,
    accept: lq_pr_accept,
    close: lq_pr_close,
};

pub fn install() -> usize {
    protosw::install(HOOKS)
}

/// Waits for every counted thread to leave listenq code. Called once
/// nothing new can enter (hooks restored, upcalls and filters taken back,
/// sysctls removed, REGISTRY retired), so only threads that were already
/// inside remain, and each leaves in bounded time: none waits for an
/// event listenq would have to cause. So it waits as long as it takes,
/// saying so on the console, rather than fail with the module half gone.
pub fn drain_all() {
    let mut waited = 0;
    while in_flight() != 0 {
        time::pause_ms(10);
        waited += 10;
        if waited % 5000 == 0 {
            crate::kprintln!("unload: waiting for {} calls to leave listenq", in_flight());
        }
    }
}

/// pr_listen: the kernel's entry gets the backlog as given, and its
/// solisten_proto() clamps it to kern.ipc.soacceptqueue as stock does; the
/// row records the backlog asked for and the limit read back from the
/// socket. (Reading the sysctl here took the sysctl lock on every
/// listen(2), for a clamp the kernel does anyway.) No VM test can tell the
/// two apart: the limit is the same by construction, and what went is a
/// lock acquisition; the listen(2) suite run with and without listenq
/// (t_listen, compared observation by observation) shows the limits.
unsafe extern "C" fn lq_pr_listen(
    so: *mut sys::socket,
    backlog_arg: i32,
    td: *mut sys::thread,
) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: the kernel passes a live socket to pr_listen.
    let s = unsafe { Socket::from_raw(so) };
    let Some(orig) = protosw::originals(s.proto()) else {
        return Errno::EINVAL.0;
    };
    // SAFETY: the kernel's own entry, called with the arguments it was
    // given.
    let rc = unsafe { (orig.listen)(so, backlog_arg, td) };
    if rc == 0 {
        listeners::on_listen(s, orig.proto, backlog_arg);
    }
    rc
}

/// pr_accept runs on the new socket right after accept(2) took it off the
/// completed queue: that is where accept latency ends.
unsafe extern "C" fn lq_pr_accept(so: *mut sys::socket, nam: *mut *mut sys::sockaddr) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: the kernel passes a live socket to pr_accept.
    let s = unsafe { Socket::from_raw(so) };
    let Some(orig) = protosw::originals(s.proto()) else {
        return Errno::EINVAL.0;
    };
    // SAFETY: the kernel's own entry with the kernel's arguments.
    let rc = unsafe { (orig.accept)(so, nam) };
    listeners::on_accept(s);
    rc
}

/// pr_close runs first thing in soclose(): a listener leaves the registry
/// before its queues are torn down and long before it is freed.
unsafe extern "C" fn lq_pr_close(so: *mut sys::socket) {
    let _f = InFlight::enter();
    // SAFETY: the kernel passes a live socket to pr_close.
    let s = unsafe { Socket::from_raw(so) };
    if s.is_listening() {
        listeners::on_close(s);
    }
    if let Some(close) = protosw::originals(s.proto()).and_then(|o| o.close) {
        // SAFETY: the kernel's own entry with the kernel's argument.
        unsafe { close(so) };
    }
}
