//! listenq's accept filters: dataready, httpready, dnsready and tlsready,
//! registered under the stock names (accf_names.rs: registration, and
//! taking the names back for unload). The parsers are listenq-accf (pure
//! Rust); this is the kernel side of each connection and listener: admission to the secondary queue of
//! held connections per listener (filters.rs), eviction of the oldest when
//! it is full, hold timeouts, and release on filter removal. The kernel
//! reaches it through kern/entry/accf.rs.
//!
//! Locking: the callback runs with the connection's receive-buffer lock
//! (and, on the first call from soisconnected(), its socket lock and the
//! listener's lock); it takes only its listener's filter state mutex
//! after those (kern/filter_arg.rs), and counts in counter(9) (kern/stat.rs):
//! no global lock on a connection's path. The registry (the list of filtered
//! listeners) is for create, destroy, the tick and unload. An evicted connection
//! leaves the incomplete queue in the upcall that admits its successor;
//! soabort(), timeouts and deliveries need the listener lock first, so they
//! are deferred to the state's own task (work_glue.c), which finds them on
//! the hold queue's leaving list and holds references on both sockets.

use core::mem::MaybeUninit;

use crate::accf_names;
use crate::filters::{self, ConnState, FilterCounts, ListenerFilter};
use crate::kern::accf::{self as kaccf, ListenLocked, Upcall};
use crate::kern::deliver::InPlace;
use crate::kern::filter_arg::{self, Locked, Token};
use crate::kern::held_conns::{Admitted, HeldConns, Pos};
use crate::kern::module::Module;
use crate::kern::sdt;
use crate::kern::sockbuf::{RcvLocked, SockLocked};
use crate::kern::stat::Stat;
use crate::kern::work::Leaving;
use listenq_accf::{
    parse_af_arg, Config, Conn, EvictPolicy, FilterKind, Progress, TimeoutAction, TimeoutDefaults,
};
use listenq_policy::backlog;
use listenq_policy::holdq::Evict;

/// A listener's filter state as the kernel names it for one call.
type Arg<'a> = filter_arg::Arg<'a, ListenerFilter>;

/// accf_callback: a connection of a listener with a listenq filter
/// completed its handshake (first call, from soisconnected() or from the rescue of a kernel that does not inherit SO_ACCEPTFILTER, kmod/inherit_glue.c), or a held
/// one got data or an event (its receive upcall).
pub fn callback(rcv: RcvLocked<'_>, arg: Arg<'_>) -> Upcall {
    if !rcv.queued() {
        // The kernel took it off the incomplete queue (its listener closed,
        // or solisten_enqueue() dropped it) and is aborting it: this is the
        // abort's last upcall. Neither released nor evicted by listenq; its
        // destructor forgets it. (Counting it `released` here made the
        // counters drift whenever the listener outlived its close.)
        return Upcall::Ok;
    }
    let key = rcv.key();
    let mut g = arg.lock();
    // One look in the hold queue's index per call: the position serves
    // every later step under this lock.
    let pos = match g.get().holdq.held_pos(key) {
        Some(p) => p,
        None => {
            let Some(so) = rcv.sock_locked() else {
                // Not the first call, and not held: evicted or timed out,
                // with the termination still queued. Keep it where it is.
                return Upcall::Ok;
            };
            match admit(&mut g, &so) {
                Ok(p) => p,
                Err(v) => return pass_on(&rcv, g, v),
            }
        }
    };
    let f = g.get();
    let cfg = f.cfg;
    // Stock dataready is soreadable(): it honours SO_RCVLOWAT inherited
    // from the listener and passes on a pending error, which bytes alone
    // cannot tell.
    let ready = if cfg.kind == FilterKind::Data && cfg.proxy == listenq_accf::ProxyMode::Off {
        rcv.readable()
    } else {
        let Some(e) = f.holdq.state_at(pos) else {
            return Upcall::Ok;
        };
        feed(&rcv, &cfg, e)
    };
    // Stock rules the parsers do not see: a full buffer or a peer that
    // finished sending can never satisfy the filter by waiting.
    let eof = rcv.eof();
    // Stock dataready counts an EOF as readable: the probe says eof when
    // nothing else was there to read.
    let why = if ready && !(eof && cfg.kind == FilterKind::Data && rcv.avail_bound() == 0) {
        sdt::Released::Ready
    } else if eof {
        sdt::Released::Eof
    } else if rcv.full() {
        sdt::Released::Full
    } else {
        return Upcall::Ok;
    };
    sdt::release(g.head_key(), key, why);
    release(&rcv, g, pos)
}

/// The held connection at `pos` met its filter (or never can): to the
/// completed queue. Never by answering SU_ISCONNECTED, which has the
/// kernel read the listener after unlocking it with nothing keeping it
/// alive (kmod/deliver_glue.c, "(W)"): in place when the locks are free,
/// otherwise by the state's task (counted as released when it delivers).
fn release(rcv: &RcvLocked<'_>, mut g: Locked<'_, ListenerFilter>, pos: Pos) -> Upcall {
    let attached = g.get_attached().1.is_some();
    let d = in_place(rcv, &mut g);
    if attached && d.is_none() {
        g.get().holdq.leave_to_deliver(pos);
        g.leave_soon();
        return Upcall::Ok;
    }
    Stat::Released.bump();
    FilterCounts::bump(&mut g.get().counts.released);
    g.get().holdq.remove_pos(pos);
    match d {
        Some(d) => {
            if d.upcall_taken() {
                // The upcall deliver_begin() cleared gives its reference
                // back; the state stays attached (its listener is locked).
                g.release();
            } else {
                drop(g);
            }
            d.finish();
            Upcall::Ok
        }
        None => {
            // Not reached: a held connection's state is attached (filter
            // removal takes every held connection's upcall first). With
            // no listener to deliver to, the kernel's own way.
            g.release();
            Upcall::IsConnected
        }
    }
}

/// A connection the filter could not hold (`v`, from `admit`), on the
/// first call: passed on unfiltered, in place when it can be (not through
/// SU_ISCONNECTED, as `release` says). Its upcall held no reference.
fn pass_on(rcv: &RcvLocked<'_>, mut g: Locked<'_, ListenerFilter>, v: Upcall) -> Upcall {
    if v != Upcall::IsConnected {
        return v;
    }
    let d = in_place(rcv, &mut g);
    drop(g);
    match d {
        Some(d) => {
            d.finish();
            Upcall::Ok
        }
        None => Upcall::IsConnected,
    }
}

/// The locks to deliver this connection in place to the listener `g` is
/// attached to; None when it is detached or the task must do it.
fn in_place<'r>(rcv: &'r RcvLocked<'_>, g: &mut Locked<'_, ListenerFilter>) -> Option<InPlace<'r>> {
    g.get_attached().1.and_then(|on| rcv.deliver_begin(on))
}

/// Feeds the parser of held connection `e` the bytes that arrived since
/// it last looked; whether the filter is satisfied.
fn feed(rcv: &RcvLocked<'_>, cfg: &Config, e: &mut ConnState) -> bool {
    if e.conn.is_ready() {
        return true;
    }
    // sbavail() bounds the bytes there are: no call when none are new
    // (the first call of a connection that has sent nothing yet).
    let avail = rcv.avail_bound();
    if e.fed >= avail {
        return false;
    }
    // In place: each new byte once, no copy.
    let mut runs = rcv.runs(e.fed);
    for run in runs.by_ref() {
        e.fed = e
            .fed
            .saturating_add(u32::try_from(run.len()).unwrap_or(u32::MAX));
        if e.conn.feed(cfg, run) == Progress::Ready {
            return true;
        }
    }
    // At the end of the data (sbavail() also counts control mbufs, so
    // `avail` is no end mark): no second walk.
    if !runs.stopped_unmapped() {
        return false;
    }
    // Whatever the walk could not read in place (unmapped pages), copied.
    let mut buf = MaybeUninit::<[u8; 256]>::uninit();
    while e.fed < avail {
        // Not zeroed (256 bytes on every call): copy() writes before
        // anything reads, and only what it wrote is read.
        let got = rcv.copy_uninit(e.fed, &mut buf);
        let Some(bytes) = got else {
            break;
        };
        e.fed = e.fed.saturating_add(bytes.len() as u32);
        if e.conn.feed(cfg, bytes) == Progress::Ready {
            return true;
        }
    }
    false
}

/// The first call, from soisconnected() (or the rescue) with SOCK_LOCK held: holds the
/// connection `so` on the listener `g` is the state of, evicting the
/// oldest if the hold queue is full. Where it is held, or (Err) what the
/// callback returns when it is not held after all.
fn admit(g: &mut Locked<'_, ListenerFilter>, so: &SockLocked<'_>) -> Result<Pos, Upcall> {
    let Some(tagged) = so.tag() else {
        // Someone else's destructor: listenq could not learn when it
        // goes, so it must not hold it (nor count it as tagged, which
        // only the destructor or an accept brings back down: counted
        // without the destructor, unload was refused forever).
        // No VM test reaches this: nothing in FreeBSD 14 calls
        // sodtor_set(), so only another module could.
        return Err(Upcall::IsConnected);
    };
    let (f, on) = g.get_attached();
    let Some(on) = on else {
        // Not reached: soisconnected() reads the argument from the
        // listener it has locked, and accf_destroy detaches under that
        // lock. Without a listener there is nothing to hold it on.
        tagged.untag();
        return Err(Upcall::IsConnected);
    };
    let cfg = f.cfg;
    let state = ConnState {
        conn: Conn::new(&cfg),
        fed: 0,
    };
    // Evicted connections leave at once, whatever happens to this
    // admission: off the incomplete queue right here (the listener is
    // locked), so neither queue passes its limit on any number of CPUs;
    // only soabort() waits for the task, on the leaving list. Those that
    // left now are counted here: the task would need this state's mutex,
    // which this thread holds. Their upcalls stay counted until the task
    // clears them.
    let (admitted, gone_now) = f.holdq.admit(on, &tagged, kaccf::hold_clock(), state);
    if gone_now != 0 {
        f.evicted = f.evicted.saturating_add(gone_now);
        Stat::Evicted.add(gone_now);
    }
    if f.holdq.has_leaving() {
        g.leave_soon();
    }
    match admitted {
        Admitted::NoMemory => {
            tagged.untag();
            Stat::Nomem.bump();
            FilterCounts::bump(&mut g.get().counts.nomem);
            Err(Upcall::IsConnected)
        }
        Admitted::AlreadyHeld => {
            // Not reachable (held_pos() said no); keep nothing twice.
            tagged.untag();
            Err(Upcall::IsConnected)
        }
        Admitted::Held(p) => {
            sdt::hold(g.head_key(), tagged.key(), cfg.kind.c_name());
            // soisconnected() set the upcall naming this state.
            g.counted();
            filters::tagged_add();
            Stat::Held.bump();
            FilterCounts::bump(&mut g.get().counts.held);
            Ok(p)
        }
    }
}

/// A listener's address as the listeners table writes it.
struct LocalText(listenq_policy::registry::Local);

impl core::fmt::Display for LocalText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        listenq_policy::table::write_local(f, &self.0)
    }
}

/// accf_create: `af_arg` as setsockopt(2) gave it (or the filter's
/// default), on the listener `head`. None refuses the filter.
pub fn create(
    m: &Module,
    kind: FilterKind,
    head: &ListenLocked<'_>,
    af_arg: &[u8],
) -> Option<Token<ListenerFilter>> {
    let mut dflt = [0u8; crate::kern::defaults::LEN];
    let bytes = crate::defaults::or_default(kind, head, af_arg, &mut dflt);
    let cfg: Config = match parse_af_arg(kind, bytes) {
        Ok(c) => c,
        Err(e) => {
            // Any user can set a bad af_arg: which listener, who, and
            // why, rate-limited per listener (listenq(4) "LOG MESSAGES").
            if crate::listeners::may_log(m, head.key()) {
                crate::kern::print::event(format_args!(
                    "{}: bad af_arg on {} ({}): {}",
                    kind.name(),
                    LocalText(head.local()),
                    crate::kern::print::Caller::current(),
                    e.as_str()
                ));
            }
            return None;
        }
    };
    let qlimit = head.qlimit();
    let mut g = m.registry();
    let st = &mut *g;
    // Under the lock: see accf_names::unregister().
    if !accf_names::may_create(st) {
        return None;
    }
    if !st.accf.states.try_reserve() {
        Stat::Nomem.bump();
        return None;
    }
    let mut holdq = HeldConns::new(backlog::hold_capacity(qlimit));
    let evict = match cfg.evict {
        EvictPolicy::Oldest => Evict::Oldest,
        EvictPolicy::Fair => Evict::Fair {
            per_source: cfg.per_source,
        },
    };
    holdq.set_policy(evict, cfg.prefix4, cfg.prefix6);
    // One chunk now, whatever the backlog (nginx's -1 is
    // kern.ipc.soacceptqueue, often 65535: a whole-backlog reservation was
    // 3 MB a listener); it grows a chunk at a time as it holds more. If
    // memory is short even for that, it grows as it admits.
    let _ = holdq.reserve_first();
    let f = ListenerFilter {
        cfg,
        holdq,
        evicted: 0,
        counts: FilterCounts::default(),
    };
    // Reserved above: the list does not allocate. The token is what the
    // kernel hands back to every callback.
    let t = st.accf.states.attach(head.key(), f);
    if t.is_none() {
        Stat::Nomem.bump();
    }
    t
}

/// accf_destroy: filter removal (SO_ACCEPTFILTER with no value) or the
/// listener being freed, with the listener locked. `n` of its incomplete
/// connections had their upcall (naming `a`) just cleared.
pub fn destroy(m: &Module, a: Option<Arg<'_>>, n: u32) {
    let Some(a) = a else {
        return;
    };
    let mut g = m.registry();
    // Those upcalls are cleared; the others still name it. The hold
    // queue's memory goes now, unless evicted connections still wait for
    // the task there (it frees it once they are gone); a detached state
    // keeps only the count that frees it.
    g.accf.states.detach(a, n as usize, |f| {
        if !f.holdq.detach() {
            f.holdq = HeldConns::new(1);
        }
    });
    drop(g);
    // Released: exactly those accept_filt_setopt() is about to move to
    // the completed queue. None when the listener is being freed
    // (soclose() has taken its queues away and aborts them).
    Stat::Released.add(u64::from(n));
}

/// so_dtor of a tagged socket `so`: it is being freed. `a`: the listener
/// state its upcall still named (just cleared), if any.
pub fn held_gone(so: usize, a: Option<Arg<'_>>) {
    if let Some(a) = a {
        // Aborted by the kernel (or its listener closed): neither
        // released nor evicted by listenq.
        filters::release_upcall(a, so);
    }
    filters::tagged_sub();
}

/// An upcall naming `a` was cleared on `so` (deferred eviction, filter
/// removal).
pub fn upcall_gone(so: usize, a: Arg<'_>) {
    filters::release_upcall(a, so);
}

/// The deferred work found `so` still held and now delivers it to the
/// completed queue or terminates it. `head`: the listener's listenq filter
/// state, if it has one; `upcall`: the state the connection's upcall named
/// (just cleared). One state's mutex at a time.
pub fn work_done(head: Option<Arg<'_>>, upcall: Option<Arg<'_>>, so: usize, delivered: bool) {
    if delivered {
        Stat::Released.bump();
    } else {
        Stat::Evicted.bump();
    }
    if let Some(h) = head {
        let mut g = h.lock();
        let f = g.get();
        if delivered {
            FilterCounts::bump(&mut f.counts.released);
        } else {
            f.evicted = f.evicted.saturating_add(1);
        }
    }
    if let Some(u) = upcall {
        filters::release_upcall(u, so);
    }
}

/// An accepted socket `so` no longer needs listenq's destructor (`was`:
/// it had it) nor, should it still have had it, its upcall (naming `a`).
pub fn untag(so: usize, was: bool, a: Option<Arg<'_>>) {
    if was {
        filters::tagged_sub();
    }
    if let Some(a) = a {
        filters::release_upcall(a, so);
    }
}

/// The state's task (work_glue.c lq_leave_run): the next connection on
/// the leaving list of `a`'s hold queue to let go, with its references;
/// None when there is none, and then the task is done and gives its name
/// on the state back (which may free it).
pub fn leave_next(a: Arg<'_>) -> Option<Leaving> {
    let mut g = a.lock();
    let head = g.head_key();
    let (f, on) = g.get_attached();
    let attached = on.is_some();
    if let Some(l) = f.holdq.next_leaving(head, on) {
        return Some(l);
    }
    if !attached {
        // The last evicted connections of a removed filter are gone.
        f.holdq = HeldConns::new(1);
    }
    g.task_done();
    None
}

/// The hold-timeout clock (a callout, every TICK_MS).
pub fn tick(m: &Module) {
    let now = kaccf::hold_clock();
    let g = m.registry();
    g.accf.states.for_each_attached(|f, on| {
        let head = on.head();
        // The listener's vnet's defaults, or the host-wide ones.
        let (ms, drop) = kaccf::hold_timeout(on);
        let def = TimeoutDefaults {
            ms,
            action: if drop {
                TimeoutAction::Drop
            } else {
                TimeoutAction::Deliver
            },
        };
        let Some((ms, action)) = f.cfg.hold_limit(def) else {
            return false;
        };
        let limit = kaccf::hold_ticks(ms);
        // Bounded work per tick; the rest waits for the next one.
        let mut any = false;
        let deliver = action == TimeoutAction::Deliver;
        for _ in 0..64 {
            let Some(so) = f.holdq.expire(now, limit, deliver) else {
                break;
            };
            sdt::timeout(head, so, deliver);
            any = true;
            Stat::Timeouts.bump();
            FilterCounts::bump(&mut f.counts.timeouts);
        }
        // The task lets them go (and counts them released or evicted).
        any
    });
}
