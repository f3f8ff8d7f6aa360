//! The registry of listening sockets (policy::registry), kept in the
//! Module value (kern/module.rs `Module::registry`), and the sysctls that
//! show it.
//!
//! Lock order: socket locks, then the registry, then one listener's own mutex
//! (kern/pending.rs), then a shard of the child index. Nothing here takes a
//! socket lock while holding the registry or a listener's mutex, so work
//! that needs both first collects sockets (with a reference) under the
//! registry, drops it, then locks each socket.
//!
//! The registry is taken on listen(2), close and sysctl reads, never for a
//! connection: the listen upcall gets the listener's node as its
//! argument, and accept(2) finds it through the child index (`completed`,
//! `on_accept`; kern/pending.rs).
//!
//! Every row owns a reference on its socket (a SocketHold in `State::held`,
//! taken when the row is created, dropped when it goes, always without
//! the registry held). So
//! a row can never name freed memory, whichever way its socket was closed:
//! through listenq's pr_close (the row goes at once), or through the
//! kernel's own entry while listenq is being loaded or unloaded (the
//! socket then lives on, closed, until refresh() finds only listenq's
//! references left, or unload takes every row).

use alloc::vec::Vec;

use crate::kern::errno::{Errno, KResult};
use crate::kern::listen;
use crate::kern::module::Module;
use crate::kern::pending::PendingRef;
use crate::kern::socket::SocketRef;
use crate::kern::sockref::SocketHold;
use crate::kern::stat::Stat;
use crate::kern::sysctl::SysctlReq;
use crate::kern::time::Tick;
use crate::state::Tracked;
use listenq_policy::children::{self as completion, Recorded, UpcallState};
use listenq_policy::overflow::Stamp;
use listenq_policy::ratelimit::PerSecond;
use listenq_policy::registry::{Listened, NoMemory};
use listenq_policy::registry::{Proto, QueueSample, Row};
use listenq_policy::table::{self, Fixed};
use listenq_policy::xlisten::XListenq;

/// Registers `s` (listen(2) when `backlog` is given, adoption at load
/// otherwise) and claims its listen upcall. `proto` is the protocol
/// switch's; a TCP row is named as netstat(1) names it instead, from the
/// IP versions the pcb takes (an AF_INET6 listener without IPV6_V6ONLY is
/// tcp46). They are sampled here, at listen(2) or adoption, and that is
/// what they stay: IPV6_V6ONLY is refused once a socket is bound, which a
/// listener is (socket_glue.c, lq_so_inp_versions).
fn register(m: &Module, s: SocketRef<'_>, proto: Proto, backlog: Option<i32>) {
    let Some(q) = s.sample() else { return };
    let (ipv4, ipv6) = s.inp_versions();
    let proto = proto.as_netstat(ipv4, ipv6);
    let local = s.local();
    let owner = s.owner();
    // The row's references, taken before the registry's lock (sorele(9)
    // must not run under it, and neither soref(9) nor the allocation need
    // it). Whatever is not used is dropped after it.
    let mut hold = Some(s.hold());
    let mut fresh = PendingRef::new(q.overcount, q.lastover);
    // A reference to the row's `Pending`, for the upcall.
    let mut upcall: Option<PendingRef> = None;
    let mut grew = 0;
    let mut r = m.registry();
    if !r.closed {
        let st = &mut *r;
        let known = st.reg.get(s.key()).is_some();
        // Room for the references of a new row first: once the row is in,
        // keeping them must not need memory. Counted as the registry counts
        // its own failure to add a row.
        if backlog.is_some() {
            Stat::Listens.bump();
        }
        if !known && (fresh.is_none() || st.held.try_reserve(1).is_err()) {
            Stat::Nomem.bump();
        } else {
            let done: Result<Listened, NoMemory> = match backlog {
                Some(b) => {
                    st.accf.relisten(s.key(), q.qlimit);
                    st.reg.listen(s.key(), proto, local, b, q, owner)
                }
                None => st.reg.adopt(s.key(), proto, local, q, owner),
            };
            match done {
                Ok(l) if l.new => {
                    // `known` was false, so both are there (checked above).
                    if let (Some(h), Some(p)) = (hold.take(), fresh.take()) {
                        upcall = Some(p.clone());
                        st.held.push(Tracked {
                            hold: h,
                            pending: p,
                            log: PerSecond::default(),
                        });
                    }
                }
                Ok(_) => {
                    if let Some(t) = st.held.iter().find(|t| t.hold.key() == s.key()) {
                        upcall = Some(t.pending.clone());
                        if backlog.is_some() {
                            grew = t.pending.sample_overflows(s.key(), q.overcount, q.lastover);
                        }
                    }
                }
                Err(_) => Stat::Nomem.bump(),
            }
        }
    }
    drop(r);
    Stat::Overflows.add(grew);
    drop(hold); // sorele(9), with the registry released
    drop(fresh);
    let Some(p) = upcall else { return };
    if s.install_listen_upcall(&p) {
        // A row that went before the upcall was set (the listener closed
        // meanwhile: its owner marks the `Pending` closed before removing
        // the upcall) would leave it set with nobody to remove it.
        if p.closed() {
            s.remove_listen_upcall(&p);
        }
    }
}

pub fn on_listen(m: &Module, s: SocketRef<'_>, proto: Proto, backlog: i32) {
    register(m, s, proto, Some(backlog));
}

/// A listener that existed before listenq (adopt_existing()): TCP from
/// the pcb walk, local ones from the descriptor tables; a socket seen
/// twice (several descriptors) keeps its one row.
pub fn adopt(m: &Module, s: SocketRef<'_>, proto: Proto) {
    register(m, s, proto, None);
}

/// Adopts every listener that already exists: TCP through the pcb lists,
/// local sockets through the processes' descriptor tables (their pcb
/// lists are static to uipc_usrreq.c).
pub fn adopt_existing() {
    listen::adopt_tcp_listeners();
    listen::adopt_local_listeners();
}

/// Gives back what a row owned, once it left the registry: its listener's
/// node is closed (the upcall records nothing from then on), the upcall
/// is taken back with its reference, the child index forgets the
/// listener's connections (their references), and the row's references
/// go. No locks may be held: sorele(9) may free the socket.
fn release(m: &Module, t: Tracked) {
    t.pending.close();
    t.hold.socket().remove_listen_upcall(&t.pending);
    t.pending.purge(m.children());
    drop(t);
}

/// After the last listener went: the child index's tables go too, so
/// that an idle module holds no memory.
fn trim_if_idle(m: &Module) {
    let idle = m.registry().held.is_empty();
    if idle {
        m.children().trim();
    }
}

/// Lines a listener may put in the log a second about what users did on
/// it (listenq(4) "LOG MESSAGES").
const LOG_PER_SEC: u32 = 3;

/// Whether one more such line about listener `so` may go out now: at most
/// LOG_PER_SEC a second for each listener, and a module-wide cap above
/// that; a socket listenq does not track has only the module's limit.
/// Not a per-connection path (setsockopt(2), sysctl writes).
pub fn may_log(m: &Module, so: usize) -> bool {
    let now = crate::kern::time::uptime_us() / 1_000_000;
    let mine = m
        .registry()
        .held
        .iter_mut()
        .find(|t| t.hold.key() == so)
        .map(|t| t.log.allow(now, LOG_PER_SEC));
    match mine {
        Some(ok) => ok && crate::kern::print::ratecheck_all(),
        None => crate::kern::print::ratecheck(),
    }
}

pub fn on_close(m: &Module, s: SocketRef<'_>) {
    // Last look at the kernel's overflow counter before the socket goes.
    let q = s.sample();
    let mut r = m.registry();
    if let Some(q) = q {
        r.reg.sample(s.key(), q);
    }
    let gone = r.close(s.key());
    drop(r);
    if let Some(t) = gone {
        if let Some(q) = q {
            let grew = t.pending.sample_overflows(s.key(), q.overcount, q.lastover);
            Stat::Overflows.add(grew);
        }
        release(m, t);
        trim_if_idle(m);
    }
}

/// Unload: no listener registers from now on, and every row is handed
/// over (without allocating, so this cannot fail). Each listener then gets
/// its upcall taken back and its references released.
pub fn close_all(m: &Module) {
    listen::upcalls_close();
    let mut r = m.registry();
    r.closed = true;
    drop(r.reg.take_all());
    let taken = core::mem::take(&mut r.held);
    drop(r);
    for t in taken {
        release(m, t);
    }
}

/// pr_accept: `child` left its listener's completed queue. The child index
/// says whose connection it was and since when (and gives back the
/// entry's reference when `p` drops, with no lock held); the counts are
/// atomic adds.
pub fn on_accept(m: &Module, child: SocketRef<'_>) {
    if let Some((p, since)) = m.children().take_child(child.gencnt()) {
        p.accepts().record(since.us_until(Tick::now()));
        Stat::Accepted.bump();
    }
}

/// From the listen upcall (SOLISTEN_LOCK(head) held), whose argument is
/// `p`, with the upcall's own state `st`: connections reached the
/// completed queue, whose overflow state (sol_overcount, sol_lastover)
/// then was `overflow`. `walk(newest, f)` calls `f` for each connection
/// behind `newest` on that queue, oldest first, moving `newest` along
/// (policy::children::each_new). Each is filed in the child index (no lock
/// unless its ring slot is taken), and nothing else is locked unless a
/// connection was refused since the upcall last looked.
pub fn completed(
    m: &Module,
    p: &PendingRef,
    st: &mut UpcallState,
    head: usize,
    overflow: (i32, Stamp),
    walk: impl FnOnce(&mut completion::Seen, &mut dyn FnMut(completion::Seen)),
) {
    if p.closed() {
        return;
    }
    let now = Tick::now().0;
    let mut grew = 0;
    if st.overflow != overflow {
        st.overflow = overflow;
        grew = p.sample_overflows(head, overflow.0, overflow.1);
    }
    let mut idx = p.index(m.children());
    let mut r = Recorded::default();
    walk(&mut st.newest, &mut |c| r.one(c, &mut idx, now));
    Stat::Completed.add(r.done);
    // Their accepts will not be matched: accepted and the latency leave
    // them out, and this says so.
    Stat::Nomem.add(r.nomem);
    p.accepts().upcall_counted(r.done, r.nomem);
    Stat::Overflows.add(grew);
}

/// Takes a reference on every registered listener and its `Pending`, so
/// they can be locked one by one without the registry. None when memory
/// runs out.
fn hold_all(m: &Module) -> Option<Vec<(SocketHold, PendingRef)>> {
    let mut out = Vec::new();
    let r = m.registry();
    out.try_reserve(r.held.len()).ok()?;
    out.extend(r.held.iter().map(|t| (t.hold.clone(), t.pending.clone())));
    drop(r);
    Some(out)
}

/// What a reader may know of one listener, looked at without the
/// registry.
struct ReaderView {
    so: usize,
    visible: bool,
    kfilter: [u8; 16],
}

/// Refreshes every listener's queue lengths and overflow count, forgets
/// listeners closed behind listenq's back, and says which the reader of
/// `req` may see.
fn refresh(m: &Module, req: Option<&SysctlReq<'_>>) -> KResult<Vec<ReaderView>> {
    let held = hold_all(m).ok_or(Errno::ENOMEM)?;
    let mut samples: Vec<(usize, QueueSample)> = Vec::new();
    let mut seen: Vec<ReaderView> = Vec::new();
    let mut closed: Vec<usize> = Vec::new();
    if samples.try_reserve(held.len()).is_err()
        || seen.try_reserve(held.len()).is_err()
        || closed.try_reserve(held.len()).is_err()
    {
        return Err(Errno::ENOMEM);
    }
    let mut grew = 0u64;
    for (h, p) in &held {
        let s = h.socket();
        // The row's reference and this hold.
        if s.orphaned(2) {
            closed.push(s.key());
            continue;
        }
        if let Some(q) = s.sample() {
            samples.push((s.key(), q));
            let g = p.sample_overflows(s.key(), q.overcount, q.lastover);
            grew = grew.saturating_add(g);
        }
        seen.push(ReaderView {
            so: s.key(),
            visible: req.is_none_or(|r| s.visible_to(r)),
            kfilter: s.filter_name(),
        });
    }
    Stat::Overflows.add(grew);
    let mut gone: Vec<Tracked> = Vec::new();
    // Reserved before the registry's lock: pushing never allocates under
    // it.
    if gone.try_reserve(closed.len()).is_err() {
        closed.clear();
    }
    let mut r = m.registry();
    for (so, q) in samples.iter() {
        r.reg.sample(*so, *q);
    }
    for so in closed.iter() {
        if let Some(t) = r.close(*so) {
            gone.push(t);
        }
    }
    drop(r);
    let any = !gone.is_empty();
    for t in gone {
        release(m, t);
    }
    if any {
        trim_if_idle(m);
    }
    drop(held); // sorele(9), with no locks held
    Ok(seen)
}

/// The rows `req`'s reader may see, and the table's generation.
fn snapshot(m: &Module, req: &SysctlReq<'_>) -> KResult<(Vec<Row>, u64)> {
    let seen = refresh(m, Some(req))?;
    let mut rows = Vec::new();
    let r = m.registry();
    rows.try_reserve(r.held.len()).map_err(|_| Errno::ENOMEM)?;
    // `held` is in the registry's order.
    for t in r.held.iter() {
        let Some(l) = r.reg.get(t.hold.key()) else {
            continue;
        };
        let mut row = l.row;
        let a = t.pending.accepts();
        row.accepted = a.accepted();
        row.latency = a.latency();
        row.counts.completed = a.completed();
        row.counts.nomem = a.nomem();
        row.overflows = t.pending.overflows();
        r.accf.annotate(&mut row);
        rows.push(row);
    }
    let gen = r.reg.gen();
    drop(r);
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

pub fn sysctl_listeners(m: &Module, req: &mut SysctlReq<'_>) -> KResult<()> {
    let (rows, _) = snapshot(m, req)?;
    // Start on a new line, so `sysctl kern.ipc.listenq.listeners` shows the
    // header under the name, as FreeBSD's other table sysctls do.
    req.out(b"\n")?;
    req.out(table::HEADER.as_bytes())?;
    req.out(b"\n")?;
    // Any row whole, a 104-byte path included (table::ROW_MAX).
    let mut line = Fixed::<{ table::ROW_MAX }>::new();
    for r in rows.iter() {
        line.clear();
        let _ = table::write_row(&mut line, r);
        req.out(line.as_bytes())?;
    }
    req.out(b"\0")
}

pub fn sysctl_xlisteners(m: &Module, req: &mut SysctlReq<'_>) -> KResult<()> {
    let (rows, gen) = snapshot(m, req)?;
    for r in rows.iter() {
        req.out(XListenq::from_row(r, gen).bytes())?;
    }
    Ok(())
}

pub fn sysctl_stat(m: &Module, req: &mut SysctlReq<'_>, which: Stat) -> KResult<()> {
    // The counters sum every listener of the host since load. A reader
    // that may not see all of them (jailed, or see_other_uids/gids=0)
    // reads the same counts summed over the listeners it may see now, as
    // the tables show them: its own share, without what closed listeners
    // counted (listenq(4)).
    if !req.sees_all() {
        let (rows, _) = snapshot(m, req)?;
        let v = rows
            .iter()
            .fold(0u64, |a, r| a.saturating_add(row_stat(r, which)));
        return req.out(&v.to_ne_bytes());
    }
    if which == Stat::Overflows {
        // The overflow total is folded in lazily from the kernel counters.
        refresh(m, None)?;
    }
    // counter(9) is the only source of every counter; they exist while
    // listenq is loaded (the caller's `m`).
    let v = which.fetch();
    req.out(&v.to_ne_bytes())
}

/// A listener's share of counter `which` (closes: none, it is open).
fn row_stat(r: &Row, which: Stat) -> u64 {
    match which {
        Stat::Listens => r.counts.listens,
        Stat::Closes => 0,
        Stat::Completed => r.counts.completed,
        Stat::Accepted => r.accepted,
        Stat::Overflows => r.overflows,
        Stat::Held => r.counts.held,
        Stat::Released => r.counts.released,
        Stat::Evicted => r.evicted,
        Stat::Timeouts => r.counts.timeouts,
        Stat::Nomem => r.counts.nomem,
    }
}
