//! The C half of the per-filter defaults (defaults_glue.c): their size.
//! A listener reads its own (kern/accf.rs `ListenLocked::default_arg`).

use listenq_bindings as sys;

/// Bytes a default can hold with its NUL (as `af_arg`).
pub const LEN: usize = sys::LQ_DEFAULT_ARG_LEN as usize;
/// Number of filters with a default.
pub const NFILTERS: usize = sys::LQ_NFILTERS as usize;
