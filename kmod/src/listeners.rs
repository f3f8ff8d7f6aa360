//! The registry of listening sockets (policy::registry) as a kernel global,
//! and the sysctls that show it.
//!
//! Lock order: socket locks, then REGISTRY. Nothing here takes a socket lock
//! while holding REGISTRY, so work that needs both first collects sockets
//! (with a reference) under REGISTRY, drops it, then locks each socket.
//!
//! Every row owns a reference on its socket (soref(9), taken when the row
//! is created, given back when it goes, always without REGISTRY held). So
//! a row can never name freed memory, whichever way its socket was closed:
//! through listenq's pr_close (the row goes at once), or through the
//! kernel's own entry while listenq is being loaded or unloaded (the
//! socket then lives on, closed, until refresh() finds only listenq's
//! references left, or unload takes every row).

use alloc::vec::Vec;

use crate::hooks::InFlight;
use crate::kern::errno::{Errno, KResult};
use crate::kern::mtx::KMutex;
use crate::kern::protosw;
use crate::kern::socket::{HeldSocket, Socket};
use crate::kern::sysctl::SysctlReq;
use crate::kern::time;
use crate::kern::walk;
use listenq_bindings as sys;
use listenq_policy::registry::{Listened, NoMemory, Registry};
use listenq_policy::registry::{Listener, Proto, QueueSample, Row};
use listenq_policy::table::{self, Fixed};
use listenq_policy::xlisten::XListenq;

/// Everything listenq tracks, under one mutex.
pub struct State {
    pub reg: Registry,
    pub accf: crate::accf::Filters,
    /// False once unload has taken the listeners: nothing registers again.
    pub open: bool,
}

pub static REGISTRY: KMutex<State> = KMutex::new(
    c"listenq registry",
    State {
        reg: Registry::new(),
        accf: crate::accf::Filters::new(),
        open: true,
    },
);

/// Registers `s` (listen(2) when `backlog` is given, adoption at load
/// otherwise) and claims its listen upcall.
fn register(s: Socket, proto: Proto, backlog: Option<i32>) {
    let Some(q) = s.sample() else { return };
    let local = s.local();
    let owner = s.owner();
    // The row's reference; the caller's keeps the socket live until then.
    let held = s.hold();
    let done: Result<Listened, NoMemory> = match REGISTRY.lock() {
        Some(mut r) if r.open => match backlog {
            Some(b) => {
                r.accf.relisten(s.key(), q.qlimit);
                r.reg.listen(s.key(), proto, local, b, q, owner)
            }
            None => r.reg.adopt(s.key(), proto, local, q, owner),
        },
        _ => Err(NoMemory),
    };
    match done {
        Ok(l) => {
            if l.new {
                let _ = held.into_owned_ref();
            } else {
                drop(held); // the row has its reference already
            }
            s.install_listen_upcall();
        }
        Err(_) => drop(held),
    }
}

pub fn on_listen(s: Socket, proto: Proto, backlog: i32) {
    register(s, proto, Some(backlog));
}

/// From the walks at load (kern::walk): a listener that existed before
/// listenq. lq_tcp_listeners_foreach() holds the inpcb read-locked (lock
/// order: inpcb, socket, REGISTRY), lq_local_listeners_foreach() a
/// reference on a file of the socket and no lock, so either way the
/// socket is attached and live. A socket seen twice (several descriptors)
/// keeps its one row.
#[no_mangle]
pub extern "C" fn listenq_rs_adopt(so: *mut sys::socket) {
    let _f = InFlight::enter();
    // SAFETY: the caller keeps this listening socket live (see above).
    let s = unsafe { Socket::from_raw(so) };
    if let Some(o) = protosw::originals(s.proto()) {
        register(s, o.proto, None);
    }
}

/// Adopts every listener that already exists: TCP through the pcb lists,
/// local sockets through the processes' descriptor tables (their pcb
/// lists are static to uipc_usrreq.c).
pub fn adopt_existing() {
    walk::tcp_listeners();
    walk::local_listeners();
}

/// Gives back the reference a row owned, and the listen upcall with it.
/// No locks may be held: sorele(9) may free the socket.
fn release(l: &Listener) {
    // SAFETY: a row owns a reference on its socket (see register()), and
    // the row was just taken out of the registry, so it is given back once.
    let h = unsafe { HeldSocket::from_owned_ref(Socket::from_raw(l.row.so as *mut sys::socket)) };
    h.socket().remove_listen_upcall();
    drop(h);
}

pub fn on_close(s: Socket) {
    // Last look at the kernel's overflow counter before the socket goes.
    let q = s.sample();
    let gone = match REGISTRY.lock() {
        Some(mut r) => {
            if let Some(q) = q {
                r.reg.sample(s.key(), q);
            }
            r.reg.close(s.key())
        }
        None => None,
    };
    if let Some(l) = gone {
        release(&l);
    }
}

/// Unload: no listener registers from now on, and every row is handed
/// over (without allocating, so this cannot fail). Each listener then gets
/// its upcall taken back and its reference released.
pub fn close_all() {
    // SAFETY: sets an atomic flag (see glue.c: lq_upcalls_closed).
    unsafe { sys::lq_listen_upcalls_close(1) };
    let taken = match REGISTRY.lock() {
        Some(mut r) => {
            r.open = false;
            r.reg.take_all()
        }
        None => Vec::new(),
    };
    for l in taken.iter() {
        release(l);
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
/// one by one without REGISTRY. None when memory runs out.
pub fn hold_all() -> Option<Vec<HeldSocket>> {
    let mut out = Vec::new();
    let r = REGISTRY.lock()?;
    out.try_reserve(r.reg.len()).ok()?;
    for l in r.reg.iter() {
        // SAFETY: the row owns a reference on its socket, so it is live.
        out.push(unsafe { Socket::from_raw(l.row.so as *mut sys::socket) }.hold());
    }
    drop(r);
    Some(out)
}

/// What a reader may know of one listener, looked at without REGISTRY.
struct Seen {
    so: usize,
    visible: bool,
    kfilter: [u8; 16],
}

/// Refreshes every listener's queue lengths and overflow count, forgets
/// listeners closed behind listenq's back, and says which the reader of
/// `req` may see.
fn refresh(req: Option<&SysctlReq>) -> KResult<Vec<Seen>> {
    let held = hold_all().ok_or(Errno::ENOMEM)?;
    let mut samples: Vec<(usize, QueueSample)> = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut closed: Vec<usize> = Vec::new();
    if samples.try_reserve(held.len()).is_err()
        || seen.try_reserve(held.len()).is_err()
        || closed.try_reserve(held.len()).is_err()
    {
        return Err(Errno::ENOMEM);
    }
    for h in &held {
        let s = h.socket();
        // The row's reference and this hold.
        if s.orphaned(2) {
            closed.push(s.key());
            continue;
        }
        if let Some(q) = s.sample() {
            samples.push((s.key(), q));
        }
        seen.push(Seen {
            so: s.key(),
            visible: req.is_none_or(|r| s.visible_to(r)),
            kfilter: s.filter_name(),
        });
    }
    let mut gone: Vec<Listener> = Vec::new();
    if let Some(mut r) = REGISTRY.lock() {
        for (so, q) in samples.iter() {
            r.reg.sample(*so, *q);
        }
        // Capacity was reserved for every held socket: pushing never
        // allocates under the lock.
        if gone.try_reserve(closed.len()).is_ok() {
            for so in closed.iter() {
                if let Some(l) = r.reg.close(*so) {
                    gone.push(l);
                }
            }
        }
    }
    for l in gone.iter() {
        release(l);
    }
    drop(held); // sorele(9), with no locks held
    Ok(seen)
}

/// The rows `req`'s reader may see, and the table's generation.
fn snapshot(req: &SysctlReq) -> KResult<(Vec<Row>, u64)> {
    let seen = refresh(Some(req))?;
    let mut rows = Vec::new();
    let gen = match REGISTRY.lock() {
        Some(r) => {
            r.reg.rows(&mut rows).map_err(|_| Errno::ENOMEM)?;
            for row in rows.iter_mut() {
                r.accf.annotate(row);
            }
            r.reg.gen()
        }
        None => return Err(Errno::ENOENT),
    };
    // A row not looked at (registered since) is not known to be visible:
    // it waits for the next read.
    rows.retain_mut(|row| match seen.iter().find(|s| s.so == row.so) {
        Some(s) if s.visible => {
            row.kfilter = s.kfilter;
            true
        }
        _ => false,
    });
    Ok((rows, gen))
}

fn sysctl_listeners(req: &mut SysctlReq) -> KResult<()> {
    let (rows, _) = snapshot(req)?;
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
    let (rows, gen) = snapshot(req)?;
    for r in rows.iter() {
        req.out(&XListenq::from_row(r, gen).as_bytes())?;
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
    // The counters sum every listener of the host: a reader that cannot
    // see all of them (jailed, or see_other_uids/gids=0) reads none.
    if !req.sees_all() {
        return Errno::EPERM.0;
    }
    if which == 4 {
        // The overflow total is folded in lazily from the kernel counters.
        if let Err(e) = refresh(None) {
            return e.0;
        }
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
