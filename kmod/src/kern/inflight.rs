//! The count of threads inside listenq code reached from the kernel, which
//! unload waits on after taking every entry point back.
//!
//! Counted per CPU, each count on its own cache line: every socket call on
//! every CPU passes here, and one shared counter would be a cache line all
//! CPUs write. A thread leaves the slot it entered (it may have migrated
//! since), so no slot ever goes below zero, and the sum is zero exactly
//! when no counted thread is inside.

use crate::kern::percpu::{PerCpu, SlotRef};
use crate::kern::time;

static IN_FLIGHT: PerCpu = PerCpu::new();

/// One thread counted in for as long as the value lives. Every entry point
/// in kern/entry/ takes one before it calls into the module.
pub struct InFlight {
    slot: SlotRef,
}

impl InFlight {
    /// SeqCst: see kern/sync/revocable.rs for the pairing with unload.
    pub fn enter() -> InFlight {
        InFlight {
            slot: IN_FLIGHT.add(1),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A thread leaves the slot it entered (it may have migrated
        // since), so no slot goes below zero.
        self.slot.sub(1);
    }
}

fn in_flight() -> isize {
    IN_FLIGHT.sum()
}

/// Waits for every counted thread to leave listenq code. Called once
/// nothing new can enter (hooks restored, upcalls and filters taken back,
/// sysctls removed, the Module value revoked), so only threads that were already
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
