//! printf(9) with a "listenq: " prefix, formatted in Rust into a stack
//! buffer so logging never allocates.

use core::fmt::Write;
use listenq_bindings as sys;
use listenq_policy::table::Fixed;

pub fn log(args: core::fmt::Arguments<'_>) {
    let mut buf = Fixed::<256>::new();
    let _ = buf.write_fmt(args);
    let b = buf.as_bytes();
    // SAFETY: lq_log reads exactly `len` bytes from `msg`, which points into
    // `buf`, alive for the call.
    unsafe { sys::lq_log(b.as_ptr().cast(), b.len()) };
}

/// log(9) at kern.ipc.listenq.logprio, "listenq: " in front: for what a
/// user or a peer did, which the admin greps for (listenq(4) "LOG
/// MESSAGES"). Formatted as `log`, never allocating.
pub fn event(args: core::fmt::Arguments<'_>) {
    let mut buf = Fixed::<320>::new();
    let _ = buf.write_fmt(args);
    let b = buf.as_bytes();
    // SAFETY: as in log().
    unsafe { sys::lq_log_event(b.as_ptr().cast(), b.len()) };
}

/// Who the current thread acts for, as a message names them:
/// "uid U, pid P, jail J".
#[derive(Clone, Copy)]
pub struct Caller(sys::lq_caller);

impl Caller {
    pub fn current() -> Caller {
        let mut c = sys::lq_caller::default();
        // SAFETY: `c` is a valid out-pointer; the helper reads only the
        // current thread's own process and credential.
        unsafe { sys::lq_caller(&mut c) };
        Caller(c)
    }
}

impl core::fmt::Display for Caller {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "uid {}, pid {}, jail {}",
            self.0.uid, self.0.pid, self.0.jid
        )
    }
}

/// ppsratecheck(9), a few lines a second, for messages any user can
/// cause.
pub fn ratecheck() -> bool {
    // SAFETY: the helper only touches its own static state.
    unsafe { sys::lq_log_ratecheck() != 0 }
}

/// The module-wide cap on lines that each listener also limits
/// (listeners.rs `may_log`): more a second than `ratecheck`.
pub fn ratecheck_all() -> bool {
    // SAFETY: as in ratecheck().
    unsafe { sys::lq_log_ratecheck_all() != 0 }
}

#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::kern::print::log(format_args!($($arg)*)) };
}

/// panic(9) with the Rust panic message.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut buf = Fixed::<256>::new();
    let _ = write!(buf, "Rust panic: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(buf, " at {}:{}", loc.file(), loc.line());
    }
    let b = buf.as_bytes();
    // SAFETY: as in log(); lq_panic does not return.
    unsafe { sys::lq_panic(b.as_ptr().cast(), b.len()) }
}
