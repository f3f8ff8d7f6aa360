//! MOD_LOAD / MOD_QUIESCE / MOD_UNLOAD.
//!
//! Unload order matters: unhook the protocol switches, take every listen
//! upcall back, wait for threads still inside listenq, and only then free
//! what listenq owns. If threads do not leave in time the hooks go back in
//! and unload fails with EBUSY rather than freeing code in use.

use crate::accf;
use crate::hooks;
use crate::kern::errno::{to_c, Errno, KResult};
use crate::kern::protosw;
use crate::kprintln;
use crate::listeners::{self, REGISTRY};

const DRAIN_MS: i32 = 2000;

fn load() -> KResult<()> {
    REGISTRY.init();
    let n = hooks::install();
    if n == 0 {
        REGISTRY.destroy();
        kprintln!("no stream protocol to hook (no TCP, no local sockets?)");
        return Err(Errno::ENOENT);
    }
    let f = accf::register();
    kprintln!(
        "loaded: {} protocol switches hooked, {} accept filters registered",
        n,
        f
    );
    Ok(())
}

fn unload() -> KResult<()> {
    // Held connections carry listenq's upcall and destructor: while any
    // listener uses a listenq filter, refuse rather than free that code.
    if !accf::unregister() {
        kprintln!("unload refused: accept filters in use (remove them or close the listeners)");
        return Err(Errno::EBUSY);
    }
    protosw::restore();
    // First let every pr_listen already inside listenq finish: one of them
    // could still be about to install a listen upcall.
    if !hooks::drain(DRAIN_MS) {
        return refuse();
    }
    // Then take the upcalls back. The kernel calls a listen upcall with the
    // listener locked and removal takes that lock, so once it returns no
    // thread is inside the upcall of that listener.
    let held = listeners::hold_all();
    for h in held.iter() {
        h.socket().remove_listen_upcall();
    }
    drop(held);
    if !hooks::drain(DRAIN_MS) {
        return refuse();
    }
    // A thread that loaded a hook pointer just before it was restored may
    // not have reached IN_FLIGHT yet: one more short grace period.
    crate::kern::time::pause_ms(20);
    if let Some(mut r) = REGISTRY.lock() {
        r.reg.clear();
        r.accf.clear();
    }
    protosw::clear();
    REGISTRY.destroy();
    kprintln!("unloaded");
    Ok(())
}

/// Puts everything back as it was before unload() started.
fn refuse() -> KResult<()> {
    hooks::install();
    let held = listeners::hold_all();
    for h in held.iter() {
        h.socket().install_listen_upcall();
    }
    drop(held);
    accf::register();
    kprintln!(
        "unload refused: {} calls still in listenq",
        hooks::in_flight()
    );
    Err(Errno::EBUSY)
}

#[no_mangle]
pub extern "C" fn listenq_rs_load() -> i32 {
    to_c(load())
}

#[no_mangle]
pub extern "C" fn listenq_rs_quiesce() -> i32 {
    if accf::busy() {
        Errno::EBUSY.0
    } else {
        0
    }
}

#[no_mangle]
pub extern "C" fn listenq_rs_unload() -> i32 {
    to_c(unload())
}

#[no_mangle]
pub extern "C" fn listenq_rs_allocs() -> u64 {
    crate::kern::alloc::live()
}
