//! listenq's protocol-switch entries: listen, accept and close for TCP over
//! IPv4/IPv6 and local stream/seqpacket sockets. Each one calls the kernel's
//! original, so errors and queue behaviour stay exactly stock, and tells
//! listeners.rs what happened.

use crate::kern::errno::Errno;
use crate::kern::inflight::InFlight;
use crate::kern::module::Module;
use crate::kern::protosw::{self, Hooks, Originals};
use crate::kern::socket::SocketRef;
use crate::kern::stat::Stat;
use crate::listeners;
use listenq_bindings as sys;

/// The entries for the `I`th served protocol switch: each finds its
/// saved originals by that index, not by a search.
const fn hooks<const I: usize>() -> Hooks {
    Hooks {
        listen: lq_pr_listen::<I>,
        accept: lq_pr_accept::<I>,
        close: lq_pr_close::<I>,
    }
}

const HOOKS: [Hooks; protosw::NSERVED] = [hooks::<0>(), hooks::<1>(), hooks::<2>(), hooks::<3>()];

/// Installs the hooks on every served protocol the kernel has; returns how
/// many protocol switches were hooked.
pub fn install() -> usize {
    protosw::install(&HOOKS)
}

/// The socket a hooked entry of the `i`th served protocol switch was
/// given, and that switch's saved originals (None once cleared).
///
/// # Safety
/// `so` is the live socket the kernel passed to the entry, which has not
/// returned yet.
unsafe fn hooked<'a>(so: *mut sys::socket, i: usize) -> Option<(SocketRef<'a>, Originals)> {
    // SAFETY: live for the entry's call (caller).
    let s = unsafe { SocketRef::from_raw(so) }?;
    Some((s, protosw::originals_at(i)?))
}

/// pr_listen: the kernel's entry gets the backlog as given, and its
/// solisten_proto() clamps it to kern.ipc.soacceptqueue as stock does; the
/// row records the backlog asked for and the limit read back from the
/// socket. (Reading the sysctl here took the sysctl lock on every
/// listen(2), for a clamp the kernel does anyway.) No VM test can tell the
/// two apart: the limit is the same by construction, and what went is a
/// lock acquisition; the listen(2) suite run with and without listenq
/// (t_listen, compared observation by observation) shows the limits.
unsafe extern "C" fn lq_pr_listen<const I: usize>(
    so: *mut sys::socket,
    backlog_arg: i32,
    td: *mut sys::thread,
) -> i32 {
    let f = InFlight::enter();
    // SAFETY: the kernel passes a live socket to pr_listen.
    let Some((s, orig)) = (unsafe { hooked(so, I) }) else {
        return Errno::EINVAL.0;
    };
    // Stock 14 turns a half-closed TCP connection into a listener with
    // its timers armed, a kernel page fault any user can cause (listenq(4)
    // BUGS): refused as listen(2) refuses a connected socket.
    if orig.proto.is_tcp() {
        if let Err(e) = s.tcp_listen_check() {
            return e.0;
        }
    }
    // SAFETY: the kernel's own entry, called with the arguments it was
    // given.
    let rc = unsafe { (orig.listen)(so, backlog_arg, td) };
    if rc == 0 && orig.proto.is_tcp() {
        s.tcp_listen_done();
    }
    if rc == 0 {
        if let Some(m) = Module::get(&f) {
            listeners::on_listen(m, s, orig.proto, backlog_arg);
        }
    }
    rc
}

/// pr_accept runs on the new socket right after accept(2) took it off the
/// completed queue: that is where accept latency ends.
unsafe extern "C" fn lq_pr_accept<const I: usize>(
    so: *mut sys::socket,
    nam: *mut *mut sys::sockaddr,
) -> i32 {
    let f = InFlight::enter();
    // SAFETY: the kernel passes a live socket to pr_accept.
    let Some((s, orig)) = (unsafe { hooked(so, I) }) else {
        return Errno::EINVAL.0;
    };
    // SAFETY: the kernel's own entry with the kernel's arguments.
    let rc = unsafe { (orig.accept)(so, nam) };
    super::accf::accepted(s);
    if let Some(m) = Module::get(&f) {
        listeners::on_accept(m, s);
    }
    rc
}

/// pr_close runs first thing in soclose(): a listener leaves the registry
/// before its queues are torn down and long before it is freed.
unsafe extern "C" fn lq_pr_close<const I: usize>(so: *mut sys::socket) {
    let f = InFlight::enter();
    // SAFETY: the kernel passes a live socket to pr_close.
    let Some(s) = (unsafe { SocketRef::from_raw(so) }) else {
        return;
    };
    let listening = s.is_listening();
    if listening {
        if let Some(m) = Module::get(&f) {
            listeners::on_close(m, s);
        }
    }
    if let Some(close) = protosw::original_close(I) {
        // SAFETY: the kernel's own entry with the kernel's argument.
        unsafe { close(so) };
    }
    if listening && s.listen_close_grace().is_err() {
        Stat::Nomem.bump();
    }
}
