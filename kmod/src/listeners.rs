//! The registry of listening sockets (policy::registry) as a kernel global,
//! and the sysctls that show it.
//!
//! Lock order: socket locks, then REGISTRY. Nothing here takes a socket lock
//! while holding REGISTRY, so work that needs both first collects sockets
//! (with a reference) under REGISTRY, drops it, then locks each socket.
//!
//! Every row owns a reference on its socket (a SocketHold in `State::held`,
//! taken when the row is created, dropped when it goes, always without
//! REGISTRY held). So
//! a row can never name freed memory, whichever way its socket was closed:
//! through listenq's pr_close (the row goes at once), or through the
//! kernel's own entry while listenq is being loaded or unloaded (the
//! socket then lives on, closed, until refresh() finds only listenq's
//! references left, or unload takes every row).

use alloc::vec::Vec;

use crate::kern::errno::{Errno, KResult};
use crate::kern::hold::SocketHold;
use crate::kern::listen;
use crate::kern::mtx::KMutex;
use crate::kern::socket::SocketRef;
use crate::kern::stat::Stat;
use crate::kern::sysctl::SysctlReq;
use crate::kern::time;
use listenq_policy::registry::{Listened, NoMemory, Registry};
use listenq_policy::registry::{Proto, QueueSample, Row};
use listenq_policy::table::{self, Fixed};
use listenq_policy::xlisten::XListenq;

/// Everything listenq tracks, under one mutex.
pub struct State {
    pub reg: Registry,
    /// The reference each row of `reg` owns on its socket: one entry per
    /// row, added and removed with it.
    held: Vec<SocketHold>,
    pub accf: crate::filters::Filters,
    /// False once unload has taken the listeners: nothing registers again.
    pub open: bool,
}

impl State {
    /// Forgets the row of `so` and hands over its reference, to be dropped
    /// once REGISTRY is.
    fn close(&mut self, so: usize) -> Option<SocketHold> {
        self.reg.close(so)?;
        let i = self.held.iter().position(|h| h.key() == so)?;
        let h = self.held.swap_remove(i);
        if self.held.is_empty() {
            // As the registry: idle means no allocation at all.
            self.held = Vec::new();
        }
        Some(h)
    }
}

pub static REGISTRY: KMutex<State> = KMutex::new(
    c"listenq registry",
    State {
        reg: Registry::new(),
        held: Vec::new(),
        accf: crate::filters::Filters::new(),
        open: true,
    },
);

/// Registers `s` (listen(2) when `backlog` is given, adoption at load
/// otherwise) and claims its listen upcall.
fn register(s: SocketRef<'_>, proto: Proto, backlog: Option<i32>) {
    let Some(q) = s.sample() else { return };
    let local = s.local();
    let owner = s.owner();
    // The row's reference, taken before REGISTRY (sorele(9) must not run
    // under it, and soref(9) need not).
    let hold = s.hold();
    let mut spare = None;
    let done: Result<Listened, NoMemory> = match REGISTRY.lock() {
        Some(mut r) if r.open => {
            let st = &mut *r;
            // Room for the reference of a new row first: once the row is
            // in, keeping its reference must not need memory. Counted as
            // the registry counts its own failure to add a row.
            if st.reg.get(s.key()).is_none() && st.held.try_reserve(1).is_err() {
                if backlog.is_some() {
                    st.reg.stats.listens = st.reg.stats.listens.saturating_add(1);
                }
                st.reg.stats.nomem = st.reg.stats.nomem.saturating_add(1);
                spare = Some(hold);
                Err(NoMemory)
            } else {
                let done = match backlog {
                    Some(b) => {
                        st.accf.relisten(s.key(), q.qlimit);
                        st.reg.listen(s.key(), proto, local, b, q, owner)
                    }
                    None => st.reg.adopt(s.key(), proto, local, q, owner),
                };
                match done {
                    Ok(l) if l.new => st.held.push(hold),
                    // The row has its reference already.
                    _ => spare = Some(hold),
                }
                done
            }
        }
        _ => {
            spare = Some(hold);
            Err(NoMemory)
        }
    };
    drop(spare); // sorele(9), with REGISTRY released
    if done.is_ok() {
        s.install_listen_upcall();
    }
}

pub fn on_listen(s: SocketRef<'_>, proto: Proto, backlog: i32) {
    register(s, proto, Some(backlog));
}

/// A listener that existed before listenq (adopt_existing()): TCP from
/// the pcb walk, local ones from the descriptor tables; a socket seen
/// twice (several descriptors) keeps its one row.
pub fn adopt(s: SocketRef<'_>, proto: Proto) {
    register(s, proto, None);
}

/// Adopts every listener that already exists: TCP through the pcb lists,
/// local sockets through the processes' descriptor tables (their pcb
/// lists are static to uipc_usrreq.c).
pub fn adopt_existing() {
    listen::adopt_tcp_listeners();
    listen::adopt_local_listeners();
}

/// Gives back the reference a row owned, and the listen upcall with it.
/// No locks may be held: sorele(9) may free the socket.
fn release(h: SocketHold) {
    h.socket().remove_listen_upcall();
    drop(h);
}

pub fn on_close(s: SocketRef<'_>) {
    // Last look at the kernel's overflow counter before the socket goes.
    let q = s.sample();
    let gone = match REGISTRY.lock() {
        Some(mut r) => {
            if let Some(q) = q {
                r.reg.sample(s.key(), q);
            }
            r.close(s.key())
        }
        None => None,
    };
    if let Some(h) = gone {
        release(h);
    }
}

/// Unload: no listener registers from now on, and every row is handed
/// over (without allocating, so this cannot fail). Each listener then gets
/// its upcall taken back and its reference released.
pub fn close_all() {
    listen::upcalls_close(true);
    let taken = match REGISTRY.lock() {
        Some(mut r) => {
            r.open = false;
            drop(r.reg.take_all());
            core::mem::take(&mut r.held)
        }
        None => Vec::new(),
    };
    for h in taken {
        release(h);
    }
}

pub fn on_accept(child: SocketRef<'_>) {
    let now = time::uptime_us();
    if let Some(mut r) = REGISTRY.lock() {
        r.reg.accepted(child.key(), now);
    }
}

/// From the listen upcall (SOLISTEN_LOCK(head) held): connections reached
/// the completed queue of `head`, whose state then was `q`. `since(newest,
/// out)` fills `out` with the connections behind `newest` on that queue,
/// oldest first, and says how many; each is recorded, under one REGISTRY
/// hold for all of them.
pub fn completed(head: usize, q: QueueSample, mut since: impl FnMut(usize, &mut [usize]) -> usize) {
    let now = time::uptime_us();
    let Some(mut r) = REGISTRY.lock() else { return };
    let mut newest = r.reg.newest_completed(head);
    let mut batch = [0usize; 16];
    loop {
        let n = since(newest, &mut batch);
        for &child in batch.get(..n).unwrap_or(&[]) {
            r.reg.completed(head, child, now, q);
            newest = child;
        }
        if n < batch.len() {
            break;
        }
    }
}

/// Takes a reference on every registered listener, so they can be locked
/// one by one without REGISTRY. None when memory runs out.
fn hold_all() -> Option<Vec<SocketHold>> {
    let mut out = Vec::new();
    let r = REGISTRY.lock()?;
    out.try_reserve(r.held.len()).ok()?;
    out.extend(r.held.iter().cloned());
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
fn refresh(req: Option<&SysctlReq<'_>>) -> KResult<Vec<Seen>> {
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
    let mut gone: Vec<SocketHold> = Vec::new();
    // Reserved before REGISTRY: pushing never allocates under the lock.
    if gone.try_reserve(closed.len()).is_err() {
        closed.clear();
    }
    if let Some(mut r) = REGISTRY.lock() {
        for (so, q) in samples.iter() {
            r.reg.sample(*so, *q);
        }
        for so in closed.iter() {
            if let Some(h) = r.close(*so) {
                gone.push(h);
            }
        }
    }
    for h in gone {
        release(h);
    }
    drop(held); // sorele(9), with no locks held
    Ok(seen)
}

/// The rows `req`'s reader may see, and the table's generation.
fn snapshot(req: &SysctlReq<'_>) -> KResult<(Vec<Row>, u64)> {
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

pub fn sysctl_listeners(req: &mut SysctlReq<'_>) -> KResult<()> {
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

pub fn sysctl_xlisteners(req: &mut SysctlReq<'_>) -> KResult<()> {
    let (rows, gen) = snapshot(req)?;
    for r in rows.iter() {
        req.out(&XListenq::from_row(r, gen).as_bytes())?;
    }
    Ok(())
}

pub fn sysctl_stat(req: &mut SysctlReq<'_>, which: Stat) -> KResult<()> {
    // The counters sum every listener of the host: a reader that cannot
    // see all of them (jailed, or see_other_uids/gids=0) reads none.
    if !req.sees_all() {
        return Err(Errno::EPERM);
    }
    if which == Stat::Overflows {
        // The overflow total is folded in lazily from the kernel counters.
        refresh(None)?;
    }
    let v = match REGISTRY.lock() {
        Some(r) => {
            let s = &r.reg.stats;
            match which {
                Stat::Listens => s.listens,
                Stat::Closes => s.closes,
                Stat::Completed => s.completed,
                Stat::Accepted => s.accepted,
                Stat::Overflows => s.overflows,
                Stat::Held => s.held,
                Stat::Released => s.released,
                Stat::Evicted => s.evicted,
                Stat::Timeouts => s.timeouts,
                Stat::Nomem => s.nomem,
            }
        }
        None => return Err(Errno::ENOENT),
    };
    // What connections counted without REGISTRY (accept filter events).
    let v = v.saturating_add(which.fetch());
    req.out(&v.to_ne_bytes())
}
