//! The count of threads inside listenq code reached from the kernel, which
//! unload waits on after taking every entry point back.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::kern::time;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One thread counted in for as long as the value lives. Every entry point
/// in kern/entry/ takes one before it calls into the module.
pub struct InFlight;

impl InFlight {
    /// SeqCst: see KMutex::retire() for the pairing with unload.
    pub fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Waits for every counted thread to leave listenq code. Called once
/// nothing new can enter (hooks restored, upcalls and filters taken back,
/// sysctls removed, REGISTRY retired), so only threads that were already
/// inside remain, and each leaves in bounded time: none waits for an
/// event listenq would have to cause. So it waits as long as it takes,
/// saying so on the console, rather than fail with the module half gone.
pub fn drain_all() {
    let mut waited = 0;
    while in_flight() != 0 {
        time::pause_ms(10);
        waited += 10;
        if waited % 5000 == 0 {
            crate::kprintln!("unload: waiting for {} calls to leave listenq", in_flight());
        }
    }
}
