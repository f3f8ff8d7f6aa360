//! The C half of the per-filter defaults (defaults_glue.c): the stored
//! values.

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
