//! The registry of listening sockets (policy::registry) as a kernel global,
//! and the sysctls that show it.
//!
//! Lock order: socket locks, then REGISTRY. Nothing here takes a socket lock
//! while holding REGISTRY, so work that needs both first collects sockets
//! (with a reference) under REGISTRY, drops it, then locks each socket.

use alloc::vec::Vec;

use crate::hooks::InFlight;
use crate::kern::errno::{Errno, KResult};
use crate::kern::mtx::KMutex;
use crate::kern::socket::{HeldSocket, Socket};
use crate::kern::sysctl::SysctlReq;
use crate::kern::time;
use listenq_bindings as sys;
use listenq_policy::registry::{Proto, QueueSample, Registry, Row};
use listenq_policy::table::{self, Fixed};
use listenq_policy::xlisten::XListenq;

/// Everything listenq tracks, under one mutex.
pub struct State {
    pub reg: Registry,
    pub accf: crate::accf::Filters,
}

pub static REGISTRY: KMutex<State> = KMutex::new(
    c"listenq registry",
    State {
        reg: Registry::new(),
        accf: crate::accf::Filters::new(),
    },
);

pub fn on_listen(s: Socket, proto: Proto, backlog: i32) {
    let Some(q) = s.sample() else { return };
    let local = s.local();
    let ok = match REGISTRY.lock() {
        Some(mut r) => {
            r.accf.relisten(s.key(), q.qlimit);
            r.reg.listen(s.key(), proto, local, backlog, q).is_ok()
        }
        None => false,
    };
    if ok {
        s.install_listen_upcall();
    }
}

pub fn on_close(s: Socket) {
    // Last look at the kernel's overflow counter before the socket goes.
    let q = s.sample();
    let known = match REGISTRY.lock() {
        Some(mut r) => {
            if let Some(q) = q {
                r.reg.sample(s.key(), q);
            }
            r.reg.close(s.key()).is_some()
        }
        None => false,
    };
    if known {
        s.remove_listen_upcall();
    }
}

pub fn on_accept(child: Socket) {
    crate::accf::untag(child);
    let now = time::uptime_us();
    if let Some(mut r) = REGISTRY.lock() {
        r.reg.accepted(child.key(), now);
    }
}

/// From the listen upcall: `child` reached the completed queue of `head`.
/// SOLISTEN_LOCK(head) is held.
#[no_mangle]
pub extern "C" fn listenq_rs_completed(head: *mut sys::socket, child: *mut sys::socket) {
    let _f = InFlight::enter();
    // SAFETY: the upcall runs with the listener locked and live.
    let h = unsafe { Socket::from_raw(head) };
    // SAFETY: the caller holds SOLISTEN_LOCK(head).
    let q = unsafe { h.sample_locked() };
    let now = time::uptime_us();
    if let Some(mut r) = REGISTRY.lock() {
        r.reg.completed(h.key(), child as usize, now, q);
    }
}

/// From the listen upcall: the connection recorded last for `head` and
/// still on its completed queue (NULL if none); the upcall records every
/// one behind it. SOLISTEN_LOCK(head) is held.
#[no_mangle]
pub extern "C" fn listenq_rs_newest_completed(head: *mut sys::socket) -> *mut sys::socket {
    let _f = InFlight::enter();
    match REGISTRY.lock() {
        Some(r) => r.reg.newest_completed(head as usize) as *mut sys::socket,
        None => core::ptr::null_mut(),
    }
}

/// Takes a reference on every registered listener, so they can be locked
/// one by one without REGISTRY.
pub fn hold_all() -> Vec<HeldSocket> {
    let mut out = Vec::new();
    if let Some(r) = REGISTRY.lock() {
        if out.try_reserve(r.reg.len()).is_ok() {
            for l in r.reg.iter() {
                // SAFETY: a registered listener has not passed pr_close
                // (which unregisters it under this lock), so it is live.
                out.push(unsafe { Socket::from_raw(l.row.so as *mut sys::socket) }.hold());
            }
        }
    }
    out
}

/// Refreshes every listener's queue lengths and overflow count.
fn refresh() {
    let held = hold_all();
    let mut samples: Vec<(usize, QueueSample)> = Vec::new();
    if samples.try_reserve(held.len()).is_ok() {
        for h in &held {
            if let Some(q) = h.socket().sample() {
                samples.push((h.socket().key(), q));
            }
        }
    }
    if let Some(mut r) = REGISTRY.lock() {
        for (so, q) in samples.iter() {
            r.reg.sample(*so, *q);
        }
    }
    drop(samples);
    drop(held); // sorele(9), with no locks held
}

fn snapshot() -> KResult<Vec<Row>> {
    refresh();
    let mut rows = Vec::new();
    match REGISTRY.lock() {
        Some(r) => {
            r.reg.rows(&mut rows).map_err(|_| Errno::ENOMEM)?;
            for row in rows.iter_mut() {
                r.accf.annotate(row);
            }
        }
        None => return Err(Errno::ENOENT),
    }
    Ok(rows)
}

fn sysctl_listeners(req: &mut SysctlReq) -> KResult<()> {
    let rows = snapshot()?;
    // Start on a new line, so `sysctl kern.ipc.listenq.listeners` shows the
    // header under the name, as FreeBSD's other table sysctls do.
    req.out(b"\n")?;
    req.out(table::HEADER.as_bytes())?;
    req.out(b"\n")?;
    let mut line = Fixed::<512>::new();
    for r in rows.iter() {
        line.clear();
        let _ = table::write_row(&mut line, r);
        req.out(line.as_bytes())?;
    }
    req.out(b"\0")
}

fn sysctl_xlisteners(req: &mut SysctlReq) -> KResult<()> {
    let rows = snapshot()?;
    for r in rows.iter() {
        req.out(&XListenq::from_row(r).as_bytes())?;
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn listenq_rs_sysctl_listeners(req: *mut sys::sysctl_req) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: called from the sysctl handler with its request.
    let mut req = unsafe { SysctlReq::from_raw(req) };
    crate::kern::errno::to_c(sysctl_listeners(&mut req))
}

#[no_mangle]
pub extern "C" fn listenq_rs_sysctl_xlisteners(req: *mut sys::sysctl_req) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: called from the sysctl handler with its request.
    let mut req = unsafe { SysctlReq::from_raw(req) };
    crate::kern::errno::to_c(sysctl_xlisteners(&mut req))
}

#[no_mangle]
pub extern "C" fn listenq_rs_sysctl_stat(req: *mut sys::sysctl_req, which: i32) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: called from the sysctl handler with its request.
    let mut req = unsafe { SysctlReq::from_raw(req) };
    if which == 4 {
        // The overflow total is folded in lazily from the kernel counters.
        refresh();
    }
    let v = match REGISTRY.lock() {
        Some(r) => {
            let s = &r.reg.stats;
            match which {
                0 => s.listens,
                1 => s.closes,
                2 => s.completed,
                3 => s.accepted,
                4 => s.overflows,
                5 => s.held,
                6 => s.released,
                7 => s.evicted,
                8 => s.timeouts,
                9 => s.nomem,
                _ => return Errno::EINVAL.0,
            }
        }
        None => return Errno::ENOENT.0,
    };
    crate::kern::errno::to_c(req.out(&v.to_ne_bytes()))
}
