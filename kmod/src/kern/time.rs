//! Monotonic time and short sleeps.

use listenq_bindings as sys;

/// Microseconds since boot (getbinuptime(9): cheap, tick resolution).
pub fn uptime_us() -> u64 {
    // SAFETY: no arguments, no preconditions.
    unsafe { sys::lq_uptime_us() }
}

/// A moment on the kernel's tick counter (ticks(9)): what the
/// per-connection paths stamp, at the resolution getbinuptime(9) has
/// anyway (one tick), for one load instead of a call into the timecounter
/// code. It wraps (every 2^32 ticks, 49 days at hz=1000); only the
/// difference of two stamps less than that apart means anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick(pub u32);

impl Tick {
    pub fn now() -> Tick {
        // SAFETY: `ticks` is the kernel's global tick counter, an aligned
        // int that hardclock() updates; a volatile load of it is how C
        // reads it (it is declared volatile).
        let t = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(sys::ticks)) };
        Tick(t as u32)
    }

    /// Microseconds from `self` to `later` (0 if `later` is not later).
    pub fn us_until(self, later: Tick) -> u64 {
        let d = later.0.wrapping_sub(self.0);
        if d > i32::MAX as u32 {
            return 0;
        }
        // SAFETY: `tick` (microseconds per tick) is set once at boot from
        // hz and never changes.
        let us = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(sys::tick)) };
        u64::from(d).saturating_mul(u64::from(us.unsigned_abs()))
    }
}

/// Sleeps with pause(9); the caller must hold no locks.
pub fn pause_ms(ms: i32) {
    // SAFETY: callers (module unload) hold no locks, so sleeping is allowed.
    unsafe { sys::lq_pause_ms(ms) }
}
