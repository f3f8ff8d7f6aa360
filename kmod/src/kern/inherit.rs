//! Which kind of kernel listenq runs on: whether new connections inherit
//! SO_ACCEPTFILTER, so that soisconnected() runs their listener's accept
//! filter, or not (FreeBSD 14 as released), so that listenq's listen
//! upcall must (kmod/inherit_glue.c).

use listenq_bindings as sys;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Inherit {
    /// The kernel runs accept filters: listenq changes nothing.
    Yes,
    /// It does not: listenq's filters hold connections from its listen
    /// upcall; stock accf modules hold nothing.
    No,
    /// The probe could not run; treated as No, so that the filters hold
    /// whatever the kernel. On a kernel that inherits, the rescue then
    /// also meets connections listenq's filter let through untagged (no
    /// memory for their slot): it runs the filter on them a second time,
    /// which lets them through again.
    Unknown,
}

/// Runs the probe (sleeps; at load, before the protocol switches are
/// hooked) and turns the rescue on unless the kernel inherits.
pub fn probe() -> Inherit {
    // SAFETY: at MOD_LOAD, in a thread that may sleep, before any hook of
    // listenq's is installed; the probe touches only sockets it creates.
    match unsafe { sys::lq_inherit_probe() } {
        x if x == sys::LQ_INHERIT_YES as i32 => Inherit::Yes,
        x if x == sys::LQ_INHERIT_NO as i32 => Inherit::No,
        _ => Inherit::Unknown,
    }
}
