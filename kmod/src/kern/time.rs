//! Monotonic time and short sleeps.

use listenq_bindings as sys;

/// Microseconds since boot (getbinuptime(9): cheap, tick resolution).
pub fn uptime_us() -> u64 {
    // SAFETY: no arguments, no preconditions.
    unsafe { sys::lq_uptime_us() }
}

/// Sleeps with pause(9); the caller must hold no locks.
pub fn pause_ms(ms: i32) {
    // SAFETY: callers (module unload) hold no locks, so sleeping is allowed.
    unsafe { sys::lq_pause_ms(ms) }
}
