//! accept_filter(9) as listenq's filters use it (accf_glue.c): the
//! registration of the entries in kern/entry/accf.rs, the listener as
//! accf_create and accf_destroy get it, the accepted socket, the deferred
//! work's count, and the hold-timeout clock and knobs.

use core::ffi::CStr;

use crate::kern::defaults::LEN as DEFAULT_LEN;
use crate::kern::errno::{Errno, KResult};
use crate::kern::filter_arg::Attached;
use crate::kern::socket::SocketRef;
use crate::kern::time::Tick;
use listenq_accf::FilterKind;
use listenq_bindings as sys;

/// What an accept filter callback returns to soisconnected() or the
/// socket upcall (SU_OK, SU_ISCONNECTED).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Upcall {
    /// SU_OK: the connection stays on the incomplete queue.
    Ok,
    /// SU_ISCONNECTED: the filter is satisfied (or gives up): on to the
    /// completed queue, upcall cleared.
    IsConnected,
}

impl Upcall {
    pub(in crate::kern) fn to_c(self) -> i32 {
        match self {
            Upcall::Ok => sys::SU_OK as i32,
            Upcall::IsConnected => sys::SU_ISCONNECTED as i32,
        }
    }
}

/// The entries uipc_accf.c calls, one creator per filter kind
/// (kern/entry/accf.rs CALLBACKS).
pub struct Callbacks {
    pub(in crate::kern) callback: sys::lq_accf_cb_t,
    pub(in crate::kern) destroy: sys::lq_accf_destroy_t,
    pub(in crate::kern) create: fn(FilterKind) -> sys::lq_accf_create_t,
}

/// Adds accept filter `name` (of `kind`) with listenq's entries. Module
/// load context (may sleep). EEXIST: someone else has the name.
pub fn register(cb: &Callbacks, kind: FilterKind, name: &CStr) -> KResult<()> {
    // SAFETY: module load context (may sleep); the functions live as long
    // as the module, and unregister() removes them before unload.
    Errno::check(unsafe {
        sys::lq_accf_register(name.as_ptr(), cb.callback, (cb.create)(kind), cb.destroy)
    })
}

/// Takes listenq's `name` off the accept filter list (burying it, see
/// accf_glue.c); its entries stay listenq's until retire_all(). The caller
/// holds the registry and has made sure no listener uses it.
/// ENOSPC: it could not be remembered, nothing done.
pub fn bury(cb: &Callbacks, name: &CStr) -> KResult<()> {
    // SAFETY: the name and callback identify our own registration; the
    // glue only takes the accept filter mutex and stores bytes, which a
    // caller holding a mutex may do.
    Errno::check(unsafe { sys::lq_accf_bury(name.as_ptr(), cb.callback) })
}

/// An unload that backs out after retire_all(): `name` (of `kind`) gets
/// listenq's entries back, then its name (the registry held, create()
/// refusing until the caller reopens). ENOENT: this load did not bury it.
pub fn unretire(cb: &Callbacks, kind: FilterKind, name: &CStr) -> KResult<()> {
    // SAFETY: pointer and byte stores into our own buried entry, no
    // sleeping; the functions live as long as the module.
    Errno::check(unsafe {
        sys::lq_accf_unretire(name.as_ptr(), cb.callback, (cb.create)(kind), cb.destroy)
    })
}

/// How long unload leaves the names buried with live entries:
/// `dflt`, or what debug.fail_point.listenq_bury_margin returns.
pub fn bury_margin_ms(dflt: i32) -> i32 {
    // SAFETY: evaluates a fail point (sleepable: unload, no locks held).
    unsafe { sys::lq_bury_margin_ms(dflt) }
}

/// Every name bury() took, back on the list (the registry held).
pub fn revive_all() {
    // SAFETY: byte stores into our own buried entries, no sleeping.
    unsafe { sys::lq_accf_revive_all() };
}

/// The buried entries stop reaching the module: their create and
/// callback become the kernel's nullop() (the registry held, unload decided).
pub fn retire_all() {
    // SAFETY: pointer stores into our own buried entries, no sleeping.
    unsafe { sys::lq_accf_retire_all() };
}

/// Work items queued and not yet run.
pub fn work_pending() -> u32 {
    // SAFETY: reads an atomic counter.
    unsafe { sys::lq_work_pending_count() }
}

/// Creates the module's taskqueue (the filter states' tasks,
/// work_glue.c) and starts its hold-timeout callout every `tick_ms`
/// (entry: listenq_rs_tick). May sleep: load, or an unload that backs
/// out.
pub fn work_start(tick_ms: i32) {
    // SAFETY: module load; stopped by work_stop() before unload.
    unsafe { sys::lq_work_start(tick_ms) };
}

/// Stops the callout and waits for it, then frees the taskqueue, which
/// waits until its thread has left every task function; no locks may be
/// held, and no task may be pending or queued any more.
pub fn work_stop() {
    // SAFETY: the callout was started; callers hold no locks.
    unsafe { sys::lq_work_stop() };
}

/// The hold clock: ticks(9), one load for each connection held. The hold
/// queue only compares differences, which wrap correctly
/// (listenq_policy::holdq::MAX_HOLD).
pub fn hold_clock() -> u32 {
    Tick::now().0
}

/// A hold limit of `ms` milliseconds on the hold clock: at most
/// MAX_HOLD_MS milliseconds (listenq(4)), in ticks rounded up, and at most
/// holdq::MAX_HOLD ticks (which only a kern.hz above 1000 reaches).
pub fn hold_ticks(ms: u32) -> u32 {
    // SAFETY: `tick` (microseconds per tick) is set once at boot from hz
    // and never changes.
    let us = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(sys::tick)) };
    let us = u64::from(us.unsigned_abs().max(1));
    let ticks = (u64::from(ms.min(MAX_HOLD_MS)) * 1000).div_ceil(us);
    u32::try_from(ticks)
        .unwrap_or(u32::MAX)
        .min(listenq_policy::holdq::MAX_HOLD)
}

/// The longest hold limit, in milliseconds (2^31, 24.8 days; listenq(4)).
pub const MAX_HOLD_MS: u32 = 1 << 31;

/// The default hold limit (ms, 0 for none) and whether it drops, for the
/// listener `on`: its vnet's kern.ipc.listenq.vnet.hold_timeout_*, or the
/// host-wide kern.ipc.listenq.hold_timeout_*.
pub fn hold_timeout(on: Attached<'_>) -> (u32, bool) {
    let (mut ms, mut drop) = (0u32, 0i32);
    // SAFETY: `on` says the listener is live while the state's mutex is
    // held, which the caller's borrow of it proves; the glue reads its
    // so_vnet and two integers, and writes the two out-parameters.
    unsafe { sys::lq_hold_timeout(on.head() as *mut sys::socket, &mut ms, &mut drop) };
    (ms, drop != 0)
}

/// A listener whose SOLISTEN_LOCK this thread holds for `'a` (accf_create
/// and accf_destroy run under it).
pub struct ListenLocked<'a> {
    so: SocketRef<'a>,
}

impl<'a> ListenLocked<'a> {
    /// # Safety
    /// `so` is a live listener and this thread holds its lock for `'a`.
    pub(in crate::kern) unsafe fn from_raw(so: *mut sys::socket) -> Option<ListenLocked<'a>> {
        // SAFETY: the contract above covers liveness.
        let so = unsafe { SocketRef::from_raw(so) }?;
        Some(ListenLocked { so })
    }

    pub fn key(&self) -> usize {
        self.so.key()
    }

    /// Filter `idx`'s default af_arg for this listener (its vnet's, or the
    /// host-wide one), copied into `buf`; empty when there is none.
    pub fn default_arg<'b>(&self, idx: usize, buf: &'b mut [u8; DEFAULT_LEN]) -> &'b [u8] {
        let Ok(i) = i32::try_from(idx) else {
            return &[];
        };
        // SAFETY: the listener is live and locked for 'a (the type's
        // contract); buf is writable for DEFAULT_LEN bytes and the glue
        // bounds the copy by that length, NUL-terminating within it; it
        // takes a mutex and never sleeps, allowed under the listener lock.
        let n = unsafe {
            sys::lq_default_arg(self.so.as_ptr(), i, buf.as_mut_ptr().cast(), DEFAULT_LEN)
        };
        buf.get(..n).unwrap_or(&[])
    }

    /// The listener's local address, for messages.
    pub fn local(&self) -> listenq_policy::registry::Local {
        self.so.local()
    }

    /// The queue limit the backlog gave.
    pub fn qlimit(&self) -> u32 {
        // SAFETY: SOLISTEN_LOCK is held (the type's invariant).
        unsafe { self.so.sample_locked() }.qlimit
    }

    /// Filter removal: clears listenq's upcall on every connection of the
    /// incomplete queue (lq_accf_release_all). Returns how many named the
    /// listener's filter state, and that state's token.
    pub(in crate::kern) fn release_all(&self) -> (u32, *mut cty::c_void) {
        let mut token = core::ptr::null_mut();
        // SAFETY: the listener is locked and live; the helper walks its
        // incomplete queue, which the lock protects.
        let n = unsafe { sys::lq_accf_release_all(self.so.as_ptr(), &mut token) };
        (n, token)
    }
}

impl SocketRef<'_> {
    /// An accepted socket (pr_accept: live and unlocked) no longer needs
    /// listenq's destructor, nor, should it still have it, its upcall.
    /// Returns whether it had the destructor, and the token the upcall
    /// named (null if none).
    pub(in crate::kern) fn untag_accepted(self) -> (bool, *mut cty::c_void) {
        let mut upcall_arg = core::ptr::null_mut();
        // SAFETY: live and unlocked; the helper takes the socket's locks.
        let was = unsafe { sys::lq_so_untag(self.as_ptr(), &mut upcall_arg) } != 0;
        (was, upcall_arg)
    }
}
