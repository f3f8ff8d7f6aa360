//! listenq's accept filters as uipc_accf.c and accf_glue.c call them: the
//! callback (the receive upcall), accf_create per filter kind,
//! accf_destroy, and the glue's reports of sockets and upcalls going, of
//! deferred work done, and of the hold-timeout clock. Each one turns the
//! kernel's pointers into kern/ types for the call and calls accf.rs.
//!
//! Every filter-state token below is the kernel's own for the call, live
//! as kern/filter_arg.rs "Lifetime of a state" says; the comment at each
//! says which kind it is.

use crate::accf;
use crate::filters::ListenerFilter;
use crate::kern::accf::{Callbacks, ListenLocked, Upcall};
use crate::kern::filter_arg::Arg;
use crate::kern::inflight::InFlight;
use crate::kern::module::Module;
use crate::kern::sockbuf::RcvLocked;
use crate::kern::socket::SocketRef;
use listenq_accf::FilterKind;
use listenq_bindings as sys;

type FilterState<'a> = Arg<'a, ListenerFilter>;

pub const CALLBACKS: Callbacks = Callbacks {
    callback: Some(listenq_accf_callback),
    destroy: Some(listenq_accf_destroy),
    create: creator,
};

fn creator(kind: FilterKind) -> sys::lq_accf_create_t {
    match kind {
        FilterKind::Data => Some(listenq_accf_create_data),
        FilterKind::Http => Some(listenq_accf_create_http),
        FilterKind::Dns => Some(listenq_accf_create_dns),
        FilterKind::Tls => Some(listenq_accf_create_tls),
    }
}

/// accf_callback, also the receive upcall of every connection listenq
/// holds: the kernel calls it with the connection's receive buffer
/// locked.
///
/// # Safety
/// `so` is live with its receive buffer locked for the call; `arg` is the
/// filter state's token the kernel keeps for it.
#[no_mangle]
pub unsafe extern "C" fn listenq_accf_callback(
    so: *mut sys::socket,
    arg: *mut cty::c_void,
    _waitflag: i32,
) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: the kernel calls the upcall with a live socket whose
    // receive buffer it has locked until this returns.
    let Some(rcv) = (unsafe { RcvLocked::from_raw(so) }) else {
        return Upcall::IsConnected.to_c();
    };
    // SAFETY: what create() returned, passed back by the kernel on the
    // first call (from soisconnected(), the listener locked), or what
    // soisconnected() copied from it into the upcall (counted, and not
    // cleared: clearing takes the receive-buffer lock held here).
    match unsafe { FilterState::from_token(arg) } {
        Some(a) => accf::callback(rcv, a).to_c(),
        None => Upcall::IsConnected.to_c(),
    }
}

/// # Safety
/// As accept_filt_setopt() calls accf_create: `so` a live listener locked
/// for the call, `arg` its af_arg buffer.
unsafe fn create(
    kind: FilterKind,
    so: *mut sys::socket,
    arg: *mut cty::c_char,
) -> *mut cty::c_void {
    let f = InFlight::enter();
    // SAFETY: evaluates a fail point, which may only busy-wait here.
    unsafe { sys::lq_fail_accf_create() };
    // Unloading: the filter is refused (accept_filt_setopt() fails).
    let Some(m) = Module::get(&f) else {
        return core::ptr::null_mut();
    };
    if arg.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: accept_filt_setopt() passes af_arg, NUL-terminated within
    // its 240 bytes (it forces the last byte to NUL), live for the call.
    let af_arg =
        unsafe { core::slice::from_raw_parts(arg.cast::<u8>(), listenq_accf::MAX_AF_ARG + 1) };
    // SAFETY: accept_filt_setopt() calls accf_create with the listener
    // live and SOCK_LOCK (its listen lock) held until it returns.
    let Some(head) = (unsafe { ListenLocked::from_raw(so) }) else {
        return core::ptr::null_mut();
    };
    match accf::create(m, kind, &head, af_arg) {
        Some(t) => t.into_raw(),
        None => core::ptr::null_mut(),
    }
}

macro_rules! creator {
    ($name:ident, $kind:expr) => {
        /// # Safety
        /// See `create`.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            so: *mut sys::socket,
            arg: *mut cty::c_char,
        ) -> *mut cty::c_void {
            // SAFETY: the kernel's arguments to accf_create, passed on.
            unsafe { create($kind, so, arg) }
        }
    };
}
creator!(listenq_accf_create_data, FilterKind::Data);
creator!(listenq_accf_create_http, FilterKind::Http);
creator!(listenq_accf_create_dns, FilterKind::Dns);
creator!(listenq_accf_create_tls, FilterKind::Tls);

/// accf_destroy: filter removal (SO_ACCEPTFILTER with no value) or the
/// listener being freed. The listener is locked.
///
/// # Safety
/// `so` is a live listener this thread has locked for the call.
#[no_mangle]
pub unsafe extern "C" fn listenq_accf_destroy(so: *mut sys::socket) {
    let f = InFlight::enter();
    // SAFETY: accept_filt_setopt() calls accf_destroy with the listener
    // live and locked until it returns.
    let Some(head) = (unsafe { ListenLocked::from_raw(so) }) else {
        return;
    };
    let (n, token) = head.release_all();
    // SAFETY: the listener's own filter state, from create(); it is
    // attached until accf::destroy() detaches it.
    let a = unsafe { FilterState::from_token(token) };
    if let Some(m) = Module::get(&f) {
        accf::destroy(m, a, n);
    }
}

/// so_dtor of a tagged socket: it is being freed. `upcall_arg`: the
/// listener state its upcall still named (just cleared), or null.
///
/// # Safety
/// `upcall_arg` is null or the token of the upcall just cleared.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_held_gone(so: *mut sys::socket, upcall_arg: *mut cty::c_void) {
    let _f = InFlight::enter();
    // SAFETY: a cleared upcall's, given back by held_gone().
    let a = unsafe { FilterState::from_token(upcall_arg) };
    accf::held_gone(so as usize, a);
}

/// An upcall naming `upcall_arg` was cleared on `so` (deferred eviction,
/// filter removal).
///
/// # Safety
/// `upcall_arg` is null or the token of the upcall just cleared.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_upcall_gone(
    upcall_arg: *mut cty::c_void,
    so: *mut sys::socket,
) {
    let _f = InFlight::enter();
    // SAFETY: a cleared upcall's, given back by upcall_gone().
    if let Some(a) = unsafe { FilterState::from_token(upcall_arg) } {
        accf::upcall_gone(so as usize, a);
    }
}

/// From lq_leave_one, with the listener and the connection `so` locked:
/// the deferred work found the connection still held and now delivers it
/// to the completed queue or terminates it. `head_arg`: the listener's
/// listenq filter state, if it has one; `upcall_arg`: the state the
/// connection's upcall named (just cleared).
///
/// # Safety
/// `head_arg` is null or the filter state of the listener this thread has
/// locked; `upcall_arg` is null or the token of the upcall just cleared.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_work_done(
    head_arg: *mut cty::c_void,
    upcall_arg: *mut cty::c_void,
    so: *mut sys::socket,
    delivered: i32,
) {
    let _f = InFlight::enter();
    // SAFETY: the listener's own, attached: this thread holds its lock.
    let head = unsafe { FilterState::from_token(head_arg) };
    // SAFETY: a cleared upcall's, given back by work_done().
    let upcall = unsafe { FilterState::from_token(upcall_arg) };
    accf::work_done(head, upcall, so as usize, delivered != 0);
}

/// The task of the filter state `state` (work_glue.c lq_leave_run): the
/// next connection to let go, in `*head` and `*so` with what it is to
/// become of it (LQ_LEAVE_*), or LQ_LEAVE_NONE when there is none (and
/// then the task has given its name on the state back: the state may be
/// gone).
///
/// # Safety
/// `state` is the token the state's task was initialized with, and the
/// task is queued or running; `head` and `so` are writable.
#[no_mangle]
pub unsafe extern "C" fn listenq_rs_leave_next(
    state: *mut cty::c_void,
    head: *mut *mut sys::socket,
    so: *mut *mut sys::socket,
) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: the state's own task's name, held from when it was queued
    // until leave_next() gives it back.
    let Some(a) = (unsafe { FilterState::from_token(state) }) else {
        return sys::LQ_LEAVE_NONE as i32;
    };
    match accf::leave_next(a) {
        Some(l) => {
            // SAFETY: the caller's out-parameters (work_glue.c locals).
            unsafe {
                *head = l.head;
                *so = l.so;
            }
            l.how
        }
        None => sys::LQ_LEAVE_NONE as i32,
    }
}

/// From pr_accept (entry/protosw.rs), with the new socket live and
/// unlocked.
pub(in crate::kern) fn accepted(s: SocketRef<'_>) {
    // lq_so_untag()'s first look, without the call (the argument that it
    // cannot miss a tag is written there): most accepted sockets were
    // never held.
    if !s.maybe_tagged() {
        return;
    }
    let (was, upcall_arg) = s.untag_accepted();
    // SAFETY: a cleared upcall's (lq_so_untag took it), given back by
    // untag().
    let a = unsafe { FilterState::from_token(upcall_arg) };
    accf::untag(s.key(), was, a);
}

/// The hold-timeout clock (a callout, every accf_names::TICK_MS).
#[no_mangle]
pub extern "C" fn listenq_rs_tick() {
    let f = InFlight::enter();
    let Some(m) = Module::get(&f) else { return };
    accf::tick(m);
    m.children().tick();
}
