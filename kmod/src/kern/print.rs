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

/// ppsratecheck(9), a few lines a second, for messages any user can
/// cause.
pub fn ratecheck() -> bool {
    // SAFETY: the helper only touches its own static state.
    unsafe { sys::lq_log_ratecheck() != 0 }
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
