//! The C half of the per-filter defaults (defaults_glue.c): the stored
//! values and the sysctl handler's call back into Rust to check one.

use listenq_bindings as sys;

/// Bytes a default can hold with its NUL (as `af_arg`).
pub const LEN: usize = sys::LQ_DEFAULT_ARG_LEN as usize;
/// Number of filters with a default.
pub const NFILTERS: usize = sys::LQ_NFILTERS as usize;

/// Copies filter `idx`'s default into `buf` and returns it (empty: none).
/// Takes a mutex, never sleeps: callable with a socket locked.
pub fn get(idx: usize, buf: &mut [u8; LEN]) -> &[u8] {
    let Ok(i) = i32::try_from(idx) else {
        return &[];
    };
    // SAFETY: buf is writable for LEN bytes; the C side bounds the copy by
    // that length and NUL-terminates within it.
    let n = unsafe { sys::lq_default_arg(i, buf.as_mut_ptr().cast(), LEN) };
    buf.get(..n).unwrap_or(&[])
}

/// Called by the sysctl handler (also for the loader tunable) before a new
/// value is stored: 0 to store it, EINVAL to refuse it.
#[no_mangle]
pub extern "C" fn listenq_rs_default_arg_check(
    filter: i32,
    arg: *const cty::c_char,
    len: usize,
) -> i32 {
    if arg.is_null() || len >= LEN {
        return sys::EINVAL as i32;
    }
    // SAFETY: the handler passes its own buffer of LEN bytes and the
    // length of the string in it, which is below LEN (checked above).
    let bytes = unsafe { core::slice::from_raw_parts(arg.cast::<u8>(), len) };
    match crate::defaults::check(usize::try_from(filter).unwrap_or(usize::MAX), bytes) {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}
