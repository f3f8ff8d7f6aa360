//! The count of threads inside listenq code reached from the kernel, which
//! unload waits on after taking every entry point back.
//!
//! Counted per CPU, each count on its own cache line: every socket call on
//! every CPU passes here, and one shared counter would be a cache line all
//! CPUs write. A thread leaves the slot it entered (it may have migrated
//! since), so no slot ever goes below zero, and the sum is zero exactly
//! when no counted thread is inside.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::kern::time;
use listenq_bindings as sys;

/// More CPUs than slots share slots (still correct, only less spread).
const SLOTS: usize = 64;

#[repr(align(64))]
struct Slot(AtomicUsize);

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot(AtomicUsize::new(0));
static IN_FLIGHT: [Slot; SLOTS] = [EMPTY; SLOTS];

/// One thread counted in for as long as the value lives. Every entry point
/// in kern/entry/ takes one before it calls into the module.
pub struct InFlight {
    slot: &'static AtomicUsize,
}

impl InFlight {
    /// SeqCst: see KMutex::retire() for the pairing with unload.
    pub fn enter() -> InFlight {
        // SAFETY: reads curcpu; no other effect.
        let cpu = unsafe { sys::lq_curcpu() } as usize;
        let slot = match IN_FLIGHT.get(cpu % SLOTS) {
            Some(s) => &s.0,
            None => &EMPTY_SLOT.0,
        };
        slot.fetch_add(1, Ordering::SeqCst);
        InFlight { slot }
    }
}

/// Not reached (cpu % SLOTS < SLOTS); counted by in_flight() all the same.
static EMPTY_SLOT: Slot = Slot(AtomicUsize::new(0));

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.fetch_sub(1, Ordering::SeqCst);
    }
}

fn in_flight() -> usize {
    IN_FLIGHT
        .iter()
        .chain(core::iter::once(&EMPTY_SLOT))
        .map(|s| s.0.load(Ordering::SeqCst))
        .fold(0usize, usize::wrapping_add)
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
