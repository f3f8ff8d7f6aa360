//! The listenq DTrace provider (kmod/sdt_glue.c): listenq:::hold, release,
//! evict, timeout and overflow. Sockets go to DTrace by address, as the
//! keys the rest of the module holds them by; nothing here reads them.

use core::ffi::CStr;
use listenq_bindings as sys;

/// Why a held connection left for the completed queue.
#[derive(Clone, Copy)]
pub enum Released {
    /// Its filter is satisfied.
    Ready,
    /// The peer finished sending.
    Eof,
    /// Its receive buffer is full.
    Full,
}

impl Released {
    fn c_str(self) -> &'static CStr {
        match self {
            Released::Ready => c"ready",
            Released::Eof => c"eof",
            Released::Full => c"full",
        }
    }
}

/// Fires the connection probe `which` with a static word.
fn conn(which: sys::lq_sdt_conn, head: usize, so: usize, what: &'static CStr) {
    // SAFETY: the probe only passes the values on (sdt_glue.c), and `what`
    // is a static NUL-terminated string.
    unsafe { sys::lq_sdt_conn(which, head, so, what.as_ptr()) }
}

/// `so` is now held by listener `head`'s filter `filter`.
pub fn hold(head: usize, so: usize, filter: &'static CStr) {
    conn(sys::lq_sdt_conn_LQ_SDT_HOLD, head, so, filter);
}

/// Held `so` goes to `head`'s completed queue.
pub fn release(head: usize, so: usize, why: Released) {
    conn(sys::lq_sdt_conn_LQ_SDT_RELEASE, head, so, why.c_str());
}

/// Held `so` is terminated to make room; `fair`: chosen by the fair
/// policy rather than as the oldest.
pub fn evict(head: usize, so: usize, fair: bool) {
    let why = if fair { c"fair" } else { c"oldest" };
    conn(sys::lq_sdt_conn_LQ_SDT_EVICT, head, so, why);
}

/// Held `so` reached its hold limit; `deliver`: it goes to the completed
/// queue, otherwise it is dropped.
pub fn timeout(head: usize, so: usize, deliver: bool) {
    let what = if deliver { c"deliver" } else { c"drop" };
    conn(sys::lq_sdt_conn_LQ_SDT_TIMEOUT, head, so, what);
}

/// `n` more connections were refused by `head`'s full completed queue
/// since listenq last looked.
pub fn overflow(head: usize, n: u64) {
    if n != 0 {
        // SAFETY: the probe only passes the values on (sdt_glue.c).
        unsafe { sys::lq_sdt_overflow(head, n) }
    }
}
