//! listenq's accept filters: dataready, httpready, dnsready and tlsready,
//! registered under the stock names. The parsers are listenq-accf (pure
//! Rust); this is the kernel side: the secondary queue of held connections
//! per listener, eviction of the oldest when it is full, hold timeouts, and
//! release on filter removal.
//!
//! Locking: the callback runs with the connection's receive-buffer lock
//! (and, on the first call from soisconnected(), its socket lock and the
//! listener's lock); REGISTRY is taken after those. An evicted connection
//! leaves the incomplete queue in the upcall that admits its successor;
//! soabort(), timeouts and deliveries need the listener lock first, so they
//! are deferred to a task (accf_glue.c) that holds references on both
//! sockets.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::hooks::InFlight;
use crate::kern::filter_arg::FilterArg;
use crate::kern::socket::Socket;
use crate::kern::time;
use crate::kern::work::Work;
use crate::kprintln;
use crate::listeners::REGISTRY;
use listenq_accf::{
    parse_af_arg, Config, Conn, FilterKind, Progress, TimeoutAction, TimeoutDefaults,
};
use listenq_bindings as sys;
use listenq_policy::backlog;
use listenq_policy::holdq::{self, Admit, HoldQueue};
use listenq_policy::registry::{FilterInfo, Row, Stats};

/// A held connection's parser state, how many bytes it has consumed, and
/// the work item that will terminate or deliver it: taken at admission, so
/// letting a held connection go never needs memory.
#[derive(Clone, Copy)]
pub struct ConnState {
    conn: Conn,
    fed: u32,
    work: Work,
}

/// What one held connection costs the listener's hold queue (its slab
/// slot, 56 bytes, and two index buckets), listenq(4) "The secondary queue"; its work item
/// is counted in accf_glue.c. Checked here so that a change shows.
const _: () = assert!(holdq::bytes_per_entry::<ConnState>() == 64);

/// One listener with a listenq filter attached: its own state, on the
/// heap, reached from the kernel's filter argument (State below).
///
/// Lifetime: attached from accf_create to accf_destroy, and after that
/// until `upcalls` reaches zero. `upcalls` counts the connections whose
/// receive upcall is listenq's with this state as its argument: the kernel
/// may call each of them (and it is what an evicted connection awaiting
/// its task, or one the listener's close took off the queue, still has),
/// so the state lives until the last of them is cleared. Each is cleared
/// exactly once, and counted then: by the upcall returning SU_ISCONNECTED,
/// by filter removal (lq_accf_release_all), by the deferred work, by the
/// socket's destructor or by its accept (accf_glue.c lq_so_upcall_take).
/// Work items never name the state: they find it from the upcall they
/// clear, or from the listener they lock.
pub struct ListenerFilter {
    head: usize,
    cfg: Config,
    holdq: HoldQueue<ConnState>,
    evicted: u64,
    upcalls: usize,
    /// Index in Filters::list while attached.
    slot: Option<usize>,
}

type State = FilterArg<ListenerFilter>;

pub struct Filters {
    /// Attached listeners (the listener's key, its state), for the tick,
    /// the tables and unload; nothing on a per-connection path looks
    /// here. The key is kept beside the pointer so that finding a listener
    /// for a table row reads one array instead of every state.
    list: Vec<(usize, State)>,
    /// Detached, kept for upcalls that still name them.
    detached: usize,
    /// Sockets carrying listenq's destructor (held, or released and not
    /// yet accepted): unload must wait for them.
    tagged: usize,
}

// SAFETY (every `get()` in this file): a State is only dereferenced with
// REGISTRY held (Filters lives in it, and the guard is alive in each
// function that calls get()), one reference at a time, and while it is
// live: attached (in `list`, or named by the listener the kernel has
// locked for the call), or named by an upcall that has not been cleared
// (`upcalls` > 0 keeps it). It is freed only under REGISTRY, by
// `release_upcall` or `destroy`, once neither holds.

impl Filters {
    pub const fn new() -> Filters {
        Filters {
            list: Vec::new(),
            detached: 0,
            tagged: 0,
        }
    }

    /// listen(2) again on a listener with a listenq filter: the hold limit
    /// follows the new queue limit (a smaller one takes effect at the next
    /// admission, which evicts the oldest extras). Not a per-connection
    /// path: a walk of the filtered listeners.
    pub fn relisten(&mut self, head: usize, qlimit: u32) {
        if let Some((_, a)) = self.list.iter().find(|(h, _)| *h == head) {
            // SAFETY: attached; see "every get()" above.
            let f = unsafe { a.get() };
            f.holdq.set_capacity(backlog::hold_capacity(qlimit));
            // Best effort: a failure only means admissions allocate.
            let _ = f.holdq.reserve();
        }
    }

    /// Frees everything (module unload, once nothing is in use).
    pub fn clear(&mut self) {
        for (_, a) in core::mem::take(&mut self.list) {
            // SAFETY: attached; nothing can reach it any more (unload).
            let f = unsafe { a.get() };
            for e in f.holdq.drain() {
                e.state.work.free();
            }
            // SAFETY: as just said; not used again.
            unsafe { a.free() };
        }
    }

    pub fn in_use(&self) -> bool {
        !self.list.is_empty() || self.tagged != 0 || self.detached != 0
    }

    /// Fills in a listeners-table row's filter columns.
    pub fn annotate(&self, row: &mut Row) {
        if let Some((_, a)) = self.list.iter().find(|(h, _)| *h == row.so) {
            // SAFETY: attached; see "every get()" above.
            let f = unsafe { a.get() };
            let mut name = [0u8; 16];
            let n = f.cfg.kind.name().as_bytes();
            if let Some(d) = name.get_mut(..n.len()) {
                d.copy_from_slice(n);
            }
            row.filter = Some(FilterInfo {
                name,
                held: u32::try_from(f.holdq.len()).unwrap_or(u32::MAX),
            });
            row.evicted = f.evicted;
        }
    }

    /// One upcall naming `a` has been cleared (`key`'s): it lets go of
    /// `key` if still held, and frees a detached state nothing names now.
    fn release_upcall(&mut self, a: State, key: usize) {
        // SAFETY: the upcall being given back kept it live.
        let f = unsafe { a.get() };
        if let Some(e) = f.holdq.remove(key) {
            e.state.work.free();
        }
        f.upcalls = f.upcalls.saturating_sub(1);
        if f.upcalls == 0 && f.slot.is_none() {
            self.detached = self.detached.saturating_sub(1);
            // SAFETY: detached and no upcall names it: nothing can reach
            // it again.
            unsafe { a.free() };
        }
    }
}

static UNLOADING: AtomicBool = AtomicBool::new(false);

fn bump(v: &mut u64) {
    *v = v.saturating_add(1);
}

fn callback(s: Socket, arg: State) -> i32 {
    let mut sb = sys::lq_sbstate::default();
    // SAFETY: accept filter callbacks run with the receive buffer locked.
    unsafe { sys::lq_sb_state(s.as_ptr(), &mut sb) };
    if sb.queued == 0 {
        // The kernel took it off the incomplete queue (its listener closed,
        // or solisten_enqueue() dropped it) and is aborting it: this is the
        // abort's last upcall. Neither released nor evicted by listenq; its
        // destructor forgets it. (Counting it `released` here made the
        // counters drift whenever the listener outlived its close.)
        return sys::SU_OK as i32;
    }
    let key = s.key();
    let now = time::uptime_us() / 1000;
    let Some(mut g) = REGISTRY.lock() else {
        return sys::SU_ISCONNECTED as i32;
    };
    let st = &mut *g;
    // SAFETY: REGISTRY is held; live because the kernel calls the upcall
    // that names it (not yet cleared: clearing takes this buffer's lock),
    // or, on the first call, because it is the listener's, locked here.
    let f = unsafe { arg.get() };
    let head = f.head;
    if !f.holdq.contains(key) {
        if sb.sock_locked == 0 {
            // Not the first call, and not held: evicted or timed out, with
            // the termination still queued. Keep it where it is.
            return sys::SU_OK as i32;
        }
        // Everything holding it takes is taken before it is held; without
        // it, it passes as with no filter (counted in nomem).
        let Some(work) = Work::alloc() else {
            bump(&mut st.reg.stats.nomem);
            return sys::SU_ISCONNECTED as i32;
        };
        // SAFETY: sock_locked says SOCK_LOCK(so) is held (we are in
        // soisconnected()), which so_dtor's locking key requires.
        if !unsafe { s.tag_locked() } {
            // Someone else's destructor: listenq could not learn when it
            // goes, so it must not hold it (nor count it in `tagged`,
            // which only the destructor or an accept brings back down:
            // counted without the destructor, unload was refused forever).
            // No VM test reaches this: nothing in FreeBSD 14 calls
            // sodtor_set(), so only another module could.
            work.free();
            return sys::SU_ISCONNECTED as i32;
        }
        let cfg = f.cfg;
        let state = ConnState {
            conn: Conn::new(&cfg),
            fed: 0,
            work,
        };
        // Evicted connections leave the queue with their own work items,
        // at once, whatever happens to this admission: off the incomplete
        // queue right here (the listener is locked), so neither queue
        // passes its limit on any number of CPUs; only soabort() waits.
        // Those that left now are counted here: the task would need
        // REGISTRY, which this thread holds. Their upcalls stay counted
        // in `upcalls` until the task clears them.
        let mut gone_now = 0u64;
        let admitted = f.holdq.admit(key, now, state, |v| {
            // SAFETY: REGISTRY is held and the victim was in the hold
            // queue, so its destructor (which takes REGISTRY) has not run.
            if unsafe { v.state.work.evict_now(head, v.key) } {
                gone_now += 1;
            }
        });
        let admitted = match admitted {
            Admit::HeldEvicting(v) => {
                // SAFETY: as for the extra victims above.
                if unsafe { v.state.work.evict_now(head, v.key) } {
                    gone_now += 1;
                }
                Admit::Held
            }
            a => a,
        };
        f.evicted = f.evicted.saturating_add(gone_now);
        st.reg.stats.evicted = st.reg.stats.evicted.saturating_add(gone_now);
        match admitted {
            Admit::NoMemory => {
                // SAFETY: SOCK_LOCK(so) is held, as for tag_locked above.
                unsafe { s.untag_locked() };
                work.free();
                bump(&mut st.reg.stats.nomem);
                return sys::SU_ISCONNECTED as i32;
            }
            Admit::AlreadyHeld => {
                // Not reachable (contains() said no); keep nothing twice.
                // SAFETY: as above.
                unsafe { s.untag_locked() };
                work.free();
                return sys::SU_ISCONNECTED as i32;
            }
            Admit::Held | Admit::HeldEvicting(_) => {
                // soisconnected() set the upcall naming this state.
                f.upcalls += 1;
                st.accf.tagged += 1;
                bump(&mut st.reg.stats.held);
            }
        }
    }
    let cfg = f.cfg;
    // Stock dataready is soreadable(): it honours SO_RCVLOWAT inherited
    // from the listener and passes on a pending error, which bytes alone
    // cannot tell.
    let by_readable = cfg.kind == FilterKind::Data && cfg.proxy == listenq_accf::ProxyMode::Off;
    let Some(e) = f.holdq.get_mut(key).map(|h| &mut h.state) else {
        return sys::SU_OK as i32;
    };
    let mut ready = if by_readable {
        sb.readable != 0
    } else {
        e.conn.is_ready()
    };
    let mut buf = [0u8; 256];
    while !ready && !by_readable && e.fed < sb.avail {
        let n = (sb.avail - e.fed).min(buf.len() as u32);
        // SAFETY: receive buffer locked; the helper writes at most `n`
        // bytes into `buf` and walks only the mbuf chains it finds.
        let got = unsafe { sys::lq_sb_copy(s.as_ptr(), e.fed, buf.as_mut_ptr().cast(), n) }.min(n);
        if got == 0 {
            break;
        }
        ready = e.conn.feed(&cfg, buf.get(..got as usize).unwrap_or(&[])) == Progress::Ready;
        e.fed += got;
    }
    // Stock rules the parsers do not see: a full buffer or a peer that
    // finished sending can never satisfy the filter by waiting.
    if ready || sb.full != 0 || sb.eof != 0 {
        bump(&mut st.reg.stats.released);
        // The kernel clears the upcall on SU_ISCONNECTED, under the
        // buffer lock this thread holds: nothing calls it again.
        st.accf.release_upcall(arg, key);
        return sys::SU_ISCONNECTED as i32;
    }
    sys::SU_OK as i32
}

#[no_mangle]
pub extern "C" fn listenq_accf_callback(
    so: *mut sys::socket,
    arg: *mut cty::c_void,
    _waitflag: i32,
) -> i32 {
    let _f = InFlight::enter();
    // SAFETY: the kernel calls the upcall with a live socket.
    let s = unsafe { Socket::from_raw(so) };
    // SAFETY: the kernel passes back what create() returned (the first
    // call, from the listener) or what soisconnected() copied from it into
    // the upcall; see ListenerFilter for why it is still live.
    match unsafe { State::from_token(arg) } {
        Some(a) => callback(s, a),
        None => sys::SU_ISCONNECTED as i32,
    }
}

fn create(kind: FilterKind, so: *mut sys::socket, arg: *mut cty::c_char) -> *mut cty::c_void {
    let _f = InFlight::enter();
    if UNLOADING.load(Ordering::Acquire) {
        return core::ptr::null_mut();
    }
    // SAFETY: accept_filt_setopt() passes af_arg, NUL-terminated within
    // its 240 bytes (it forces the last byte to NUL).
    let bytes =
        unsafe { core::slice::from_raw_parts(arg.cast::<u8>(), listenq_accf::MAX_AF_ARG + 1) };
    let mut dflt = [0u8; crate::kern::defaults::LEN];
    let bytes = crate::defaults::or_default(kind, bytes, &mut dflt);
    let cfg = match parse_af_arg(kind, bytes) {
        Ok(c) => c,
        Err(e) => {
            // Any user can set a bad af_arg: rate-limited, not a flood.
            if crate::kern::print::ratecheck() {
                kprintln!("{}: bad af_arg: {}", kind.name(), e.as_str());
            }
            return core::ptr::null_mut();
        }
    };
    // SAFETY: called with the listener locked and live.
    let s = unsafe { Socket::from_raw(so) };
    // SAFETY: accept_filt_setopt() holds SOCK_LOCK (the listen lock).
    let qlimit = unsafe { s.sample_locked() }.qlimit;
    let Some(mut g) = REGISTRY.lock() else {
        return core::ptr::null_mut();
    };
    // Checked again under the lock: see unregister().
    if UNLOADING.load(Ordering::Acquire) {
        return core::ptr::null_mut();
    }
    let st = &mut *g;
    if st.accf.list.try_reserve(1).is_err() {
        bump(&mut st.reg.stats.nomem);
        return core::ptr::null_mut();
    }
    let mut holdq = HoldQueue::new(backlog::hold_capacity(qlimit));
    // Sized for the backlog now, so admissions do not allocate; if memory
    // is short it grows as it admits instead.
    let _ = holdq.reserve();
    let slot = st.accf.list.len();
    let Some(a) = State::new(ListenerFilter {
        head: s.key(),
        cfg,
        holdq,
        evicted: 0,
        upcalls: 0,
        slot: Some(slot),
    }) else {
        bump(&mut st.reg.stats.nomem);
        return core::ptr::null_mut();
    };
    // Reserved above: does not allocate.
    st.accf.list.push((s.key(), a));
    // The token the kernel hands back to every callback.
    a.token()
}

macro_rules! creator {
    ($name:ident, $kind:expr) => {
        #[no_mangle]
        pub extern "C" fn $name(so: *mut sys::socket, arg: *mut cty::c_char) -> *mut cty::c_void {
            create($kind, so, arg)
        }
    };
}
creator!(listenq_accf_create_data, FilterKind::Data);
creator!(listenq_accf_create_http, FilterKind::Http);
creator!(listenq_accf_create_dns, FilterKind::Dns);
creator!(listenq_accf_create_tls, FilterKind::Tls);

/// accf_destroy: filter removal (SO_ACCEPTFILTER with no value) or the
/// listener being freed. The listener is locked.
#[no_mangle]
pub extern "C" fn listenq_accf_destroy(so: *mut sys::socket) {
    let _f = InFlight::enter();
    let mut token = core::ptr::null_mut();
    // SAFETY: the listener is locked and live; the helper walks its
    // incomplete queue, which the lock protects.
    let n = unsafe { sys::lq_accf_release_all(so, &mut token) };
    // SAFETY: the listener's own filter argument, from create(); live
    // until this function frees it.
    let Some(a) = (unsafe { State::from_token(token) }) else {
        return;
    };
    let Some(mut g) = REGISTRY.lock() else { return };
    let st = &mut *g;
    // SAFETY: REGISTRY held; still attached.
    let f = unsafe { a.get() };
    if let Some(i) = f.slot.take() {
        st.accf.list.swap_remove(i);
        if let Some((_, m)) = st.accf.list.get(i) {
            // SAFETY: attached, and a different state than `f`: the one
            // swap_remove() moved into slot i.
            unsafe { m.get() }.slot = Some(i);
        }
        if st.accf.list.is_empty() {
            st.accf.list = Vec::new();
        }
    }
    for e in f.holdq.drain() {
        e.state.work.free();
    }
    // The hold queue's memory goes now; a detached state keeps only the
    // count that frees it.
    f.holdq = HoldQueue::new(1);
    // Those upcalls are cleared; the others still name it.
    f.upcalls = f.upcalls.saturating_sub(n as usize);
    if f.upcalls == 0 {
        // SAFETY: detached and no upcall names it.
        unsafe { a.free() };
    } else {
        st.accf.detached += 1;
    }
    // Released: exactly those accept_filt_setopt() is about to move to
    // the completed queue. None when the listener is being freed
    // (soclose() has taken its queues away and aborts them).
    st.reg.stats.released = st.reg.stats.released.saturating_add(u64::from(n));
}

/// so_dtor of a tagged socket: it is being freed. `upcall_arg`: the
/// listener state its upcall still named (just cleared), or null.
#[no_mangle]
pub extern "C" fn listenq_rs_held_gone(so: *mut sys::socket, upcall_arg: *mut cty::c_void) {
    let _f = InFlight::enter();
    if let Some(mut g) = REGISTRY.lock() {
        // SAFETY: the cleared upcall kept it live (ListenerFilter).
        if let Some(a) = unsafe { State::from_token(upcall_arg) } {
            // Aborted by the kernel (or its listener closed): neither
            // released nor evicted by listenq.
            g.accf.release_upcall(a, so as usize);
        }
        g.accf.tagged = g.accf.tagged.saturating_sub(1);
    }
}

/// An upcall naming `upcall_arg` was cleared on `so` (deferred eviction,
/// filter removal).
#[no_mangle]
pub extern "C" fn listenq_rs_upcall_gone(upcall_arg: *mut cty::c_void, so: *mut sys::socket) {
    let _f = InFlight::enter();
    // SAFETY: the cleared upcall kept it live (ListenerFilter).
    let Some(a) = (unsafe { State::from_token(upcall_arg) }) else {
        return;
    };
    if let Some(mut g) = REGISTRY.lock() {
        g.accf.release_upcall(a, so as usize);
    }
}

/// From lq_work_run, with the listener and the connection `so` locked:
/// the deferred work found the connection still held and now delivers it
/// to the completed queue or terminates it. `head_arg`: the listener's
/// listenq filter state, if it has one (live: the listener is locked);
/// `upcall_arg`: the state the connection's upcall named (just cleared).
#[no_mangle]
pub extern "C" fn listenq_rs_work_done(
    head_arg: *mut cty::c_void,
    upcall_arg: *mut cty::c_void,
    so: *mut sys::socket,
    delivered: i32,
) {
    let _f = InFlight::enter();
    if let Some(mut g) = REGISTRY.lock() {
        let st = &mut *g;
        if delivered != 0 {
            bump(&mut st.reg.stats.released);
        } else {
            bump(&mut st.reg.stats.evicted);
            // SAFETY: attached to the listener this thread has locked.
            if let Some(a) = unsafe { State::from_token(head_arg) } {
                // SAFETY: as just said.
                bump(&mut unsafe { a.get() }.evicted);
            }
        }
        // SAFETY: the cleared upcall kept it live (ListenerFilter).
        if let Some(a) = unsafe { State::from_token(upcall_arg) } {
            st.accf.release_upcall(a, so as usize);
        }
    }
}

/// An accepted socket no longer needs listenq's destructor (nor, should
/// it still have it, its upcall).
pub fn untag(s: Socket) {
    let mut upcall_arg = core::ptr::null_mut();
    // SAFETY: pr_accept runs with the new socket live and unlocked.
    let was = unsafe { sys::lq_so_untag(s.as_ptr(), &mut upcall_arg) } != 0;
    if !was && upcall_arg.is_null() {
        return;
    }
    if let Some(mut g) = REGISTRY.lock() {
        if was {
            g.accf.tagged = g.accf.tagged.saturating_sub(1);
        }
        // SAFETY: the cleared upcall kept it live (ListenerFilter).
        if let Some(a) = unsafe { State::from_token(upcall_arg) } {
            g.accf.release_upcall(a, s.key());
        }
    }
}

/// The hold-timeout clock (a callout, every TICK_MS).
#[no_mangle]
pub extern "C" fn listenq_rs_tick() {
    let _f = InFlight::enter();
    let now = time::uptime_us() / 1000;
    // SAFETY: plain reads of integer sysctl variables.
    let def = unsafe {
        TimeoutDefaults {
            ms: sys::lq_hold_timeout_ms,
            action: if sys::lq_hold_timeout_drop != 0 {
                TimeoutAction::Drop
            } else {
                TimeoutAction::Deliver
            },
        }
    };
    let Some(mut g) = REGISTRY.lock() else { return };
    let st = &mut *g;
    let stats: &mut Stats = &mut st.reg.stats;
    for (_, a) in st.accf.list.iter() {
        // SAFETY: attached; see "every get()" above.
        let f = unsafe { a.get() };
        let Some((ms, action)) = f.cfg.hold_limit(def) else {
            continue;
        };
        // Bounded work per tick; the rest waits for the next one.
        for _ in 0..64 {
            let Some(e) = f.holdq.pop_expired(now, u64::from(ms)) else {
                break;
            };
            bump(&mut stats.timeouts);
            // SAFETY: REGISTRY is held and it was in the hold queue.
            unsafe {
                e.state
                    .work
                    .schedule(f.head, e.key, action == TimeoutAction::Deliver)
            };
        }
    }
}

pub const TICK_MS: i32 = 100;

const NAMES: [(FilterKind, &core::ffi::CStr); 4] = [
    (FilterKind::Data, c"dataready"),
    (FilterKind::Http, c"httpready"),
    (FilterKind::Dns, c"dnsready"),
    (FilterKind::Tls, c"tlsready"),
];

fn creator_for(kind: FilterKind) -> sys::lq_accf_create_t {
    match kind {
        FilterKind::Data => Some(listenq_accf_create_data),
        FilterKind::Http => Some(listenq_accf_create_http),
        FilterKind::Dns => Some(listenq_accf_create_dns),
        FilterKind::Tls => Some(listenq_accf_create_tls),
    }
}

/// Registers every name no one else holds; says which ones are taken.
pub fn register() -> usize {
    UNLOADING.store(false, Ordering::Release);
    let mut n = 0;
    for (kind, name) in NAMES.iter() {
        // SAFETY: module load context (may sleep); the functions live as
        // long as the module, and unregister() removes them before unload.
        let rc = unsafe {
            sys::lq_accf_register(
                name.as_ptr(),
                Some(listenq_accf_callback),
                creator_for(*kind),
                Some(listenq_accf_destroy),
            )
        };
        match rc {
            0 => n += 1,
            e if e == sys::EEXIST as i32 => kprintln!(
                "accept filter {} is already registered (stock accf module loaded?); listenq leaves it alone",
                kind.name()
            ),
            e => kprintln!("accept filter {}: registration failed, error {}", kind.name(), e),
        }
    }
    // SAFETY: starts the module's callout; stopped in unregister().
    unsafe { sys::lq_tick_start(TICK_MS) };
    n
}

/// Takes listenq's names off the accept filter list (burying them, see
/// accf_glue.c). Fails with nothing changed while a filter is in use.
///
/// UNLOADING is set under REGISTRY together with the in-use check, and
/// create() tests it under REGISTRY before it adds a listener: either that
/// listener is in the list when this looks (busy), or create() sees
/// UNLOADING and refuses. So once this returns true no listener uses or
/// can start using a listenq filter.
pub fn unregister() -> bool {
    let busy = match REGISTRY.lock() {
        Some(g) => {
            // SAFETY: reads an atomic counter.
            let busy = g.accf.in_use() || unsafe { sys::lq_work_pending_count() } != 0;
            UNLOADING.store(!busy, Ordering::Release);
            busy
        }
        None => false,
    };
    if busy {
        return false;
    }
    for (_, name) in NAMES.iter() {
        // SAFETY: the name and callback identify our own registration.
        unsafe { sys::lq_accf_unregister(name.as_ptr(), Some(listenq_accf_callback)) };
    }
    // SAFETY: stops and waits for the callout; no locks held.
    unsafe { sys::lq_tick_stop() };
    true
}

/// Whether unload must be refused.
pub fn busy() -> bool {
    REGISTRY.lock().map(|g| g.accf.in_use()).unwrap_or(false)
        // SAFETY: reads an atomic counter.
        || unsafe { sys::lq_work_pending_count() } != 0
}
