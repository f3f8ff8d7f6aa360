//! listenq's accept filters: dataready, httpready, dnsready and tlsready,
//! registered under the stock names. The parsers are listenq-accf (pure
//! Rust); this is the kernel side: the secondary queue of held connections
//! per listener, eviction of the oldest when it is full, hold timeouts, and
//! release on filter removal.
//!
//! Locking: the callback runs with the connection's receive-buffer lock
//! (and, on the first call from soisconnected(), its socket lock and the
//! listener's lock); REGISTRY is taken after those. Terminating or
//! delivering a held connection needs the listener lock first, so it is
//! deferred to a task (accf_glue.c) that holds references on both sockets.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::hooks::InFlight;
use crate::kern::socket::Socket;
use crate::kern::time;
use crate::kprintln;
use crate::listeners::REGISTRY;
use listenq_accf::{parse_af_arg, Config, Conn, FilterKind, Progress, TimeoutAction};
use listenq_bindings as sys;
use listenq_policy::backlog;
use listenq_policy::holdq::{Admit, HoldQueue};
use listenq_policy::registry::{FilterInfo, Row, Stats};

/// A held connection's parser state and how many bytes it has consumed.
#[derive(Clone, Copy)]
pub struct ConnState {
    conn: Conn,
    fed: u32,
}

/// One listener with a listenq filter attached.
pub struct ListenerFilter {
    head: usize,
    cfg: Config,
    holdq: HoldQueue<ConnState>,
    evicted: u64,
}

pub struct Filters {
    list: Vec<ListenerFilter>,
    /// Sockets carrying listenq's destructor (held, or released and not
    /// yet accepted): unload must wait for them.
    tagged: usize,
}

impl Filters {
    pub const fn new() -> Filters {
        Filters {
            list: Vec::new(),
            tagged: 0,
        }
    }

    /// listen(2) again on a listener with a listenq filter: the hold limit
    /// follows the new queue limit (a smaller one takes effect at the next
    /// admission, which evicts the oldest extras).
    pub fn relisten(&mut self, head: usize, qlimit: u32) {
        if let Some(f) = self.list.iter_mut().find(|f| f.head == head) {
            f.holdq.set_capacity(backlog::hold_capacity(qlimit));
        }
    }

    /// Frees everything (module unload, once nothing is in use).
    pub fn clear(&mut self) {
        self.list = Vec::new();
    }

    pub fn in_use(&self) -> bool {
        !self.list.is_empty() || self.tagged != 0
    }

    /// Fills in a listeners-table row's filter columns.
    pub fn annotate(&self, row: &mut Row) {
        if let Some(f) = self.list.iter().find(|f| f.head == row.so) {
            let mut name = [0u8; 16];
            let n = f.cfg.kind.name().as_bytes();
            name[..n.len()].copy_from_slice(n);
            row.filter = Some(FilterInfo {
                name,
                held: u32::try_from(f.holdq.len()).unwrap_or(u32::MAX),
            });
            row.evicted = f.evicted;
        }
    }
}

static UNLOADING: AtomicBool = AtomicBool::new(false);

fn bump(v: &mut u64) {
    *v = v.saturating_add(1);
}

/// Runs with REGISTRY held; schedules deferred work on a held socket.
/// The socket is alive: it is in a hold queue, and its destructor (which
/// takes REGISTRY) has not removed it.
fn schedule(head: usize, so: usize, deliver: bool) -> bool {
    // SAFETY: both sockets are live (see above); the C side takes its own
    // references before queueing the task.
    let rc = unsafe {
        sys::lq_work_schedule(
            head as *mut sys::socket,
            so as *mut sys::socket,
            i32::from(deliver),
        )
    };
    rc == 0
}

fn callback(s: Socket, head: usize) -> i32 {
    let mut sb = sys::lq_sbstate::default();
    // SAFETY: accept filter callbacks run with the receive buffer locked.
    unsafe { sys::lq_sb_state(s.as_ptr(), &mut sb) };
    let key = s.key();
    let now = time::uptime_us() / 1000;
    let Some(mut g) = REGISTRY.lock() else {
        return sys::SU_ISCONNECTED as i32;
    };
    let st = &mut *g;
    let Some(f) = st.accf.list.iter_mut().find(|f| f.head == head) else {
        // No state for this listener (filter being removed): pass it on.
        return sys::SU_ISCONNECTED as i32;
    };
    if !f.holdq.contains(key) {
        if sb.sock_locked == 0 {
            // Not the first call, and not held: evicted or timed out, with
            // the termination still queued. Keep it where it is.
            return sys::SU_OK as i32;
        }
        let cfg = f.cfg;
        let state = ConnState {
            conn: Conn::new(&cfg),
            fed: 0,
        };
        let mut extra = Vec::<usize>::new();
        let admitted = f.holdq.admit(key, now, state, |v| {
            let _ = extra.try_reserve(1).map(|_| extra.push(v));
        });
        match admitted {
            Admit::NoMemory => {
                bump(&mut st.reg.stats.nomem);
                return sys::SU_ISCONNECTED as i32;
            }
            Admit::AlreadyHeld => {}
            Admit::Held | Admit::HeldEvicting(_) => {
                if let Admit::HeldEvicting(v) = admitted {
                    let _ = extra.try_reserve(1).map(|_| extra.push(v));
                }
                for v in extra.iter() {
                    f.evicted = f.evicted.saturating_add(1);
                    bump(&mut st.reg.stats.evicted);
                    if !schedule(head, *v, false) {
                        bump(&mut st.reg.stats.nomem);
                    }
                }
                // SAFETY: sock_locked says SOCK_LOCK(so) is held (we are in
                // soisconnected()), which so_dtor's locking key requires.
                unsafe { sys::lq_so_tag(s.as_ptr()) };
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
        // SAFETY: receive buffer locked; [fed, fed+n) lies within sbavail.
        let rc = unsafe { sys::lq_sb_copy(s.as_ptr(), e.fed, buf.as_mut_ptr().cast(), n) };
        if rc != 0 {
            break;
        }
        ready = e.conn.feed(&cfg, buf.get(..n as usize).unwrap_or(&[])) == Progress::Ready;
        e.fed += n;
    }
    // Stock rules the parsers do not see: a full buffer or a peer that
    // finished sending can never satisfy the filter by waiting.
    if ready || sb.full != 0 || sb.eof != 0 {
        f.holdq.remove(key);
        bump(&mut st.reg.stats.released);
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
    callback(s, arg as usize)
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
    let cfg = match parse_af_arg(kind, bytes) {
        Ok(c) => c,
        Err(e) => {
            kprintln!("{}: bad af_arg: {}", kind.name(), e.as_str());
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
    st.accf.list.push(ListenerFilter {
        head: s.key(),
        cfg,
        holdq: HoldQueue::new(backlog::hold_capacity(qlimit)),
        evicted: 0,
    });
    // The token the kernel hands back to every callback: the listener.
    so.cast()
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
    // SAFETY: the listener is locked and live; the helper walks its
    // incomplete queue, which the lock protects.
    unsafe { sys::lq_accf_release_all(so) };
    if let Some(mut g) = REGISTRY.lock() {
        let st = &mut *g;
        if let Some(i) = st.accf.list.iter().position(|f| f.head == so as usize) {
            let f = st.accf.list.swap_remove(i);
            if st.accf.list.is_empty() {
                st.accf.list = Vec::new();
            }
            let n = f.holdq.len() as u64;
            st.reg.stats.released = st.reg.stats.released.saturating_add(n);
        }
    }
}

/// so_dtor of a tagged socket: it is being freed.
#[no_mangle]
pub extern "C" fn listenq_rs_held_gone(so: *mut sys::socket) {
    let _f = InFlight::enter();
    if let Some(mut g) = REGISTRY.lock() {
        let st = &mut *g;
        for f in st.accf.list.iter_mut() {
            if f.holdq.remove(so as usize).is_some() {
                break;
            }
        }
        st.accf.tagged = st.accf.tagged.saturating_sub(1);
    }
}

/// An accepted socket no longer needs listenq's destructor.
pub fn untag(s: Socket) {
    // SAFETY: pr_accept runs with the new socket live and unlocked.
    if unsafe { sys::lq_so_untag(s.as_ptr()) } != 0 {
        if let Some(mut g) = REGISTRY.lock() {
            g.accf.tagged = g.accf.tagged.saturating_sub(1);
        }
    }
}

/// The hold-timeout clock (a callout, every TICK_MS).
#[no_mangle]
pub extern "C" fn listenq_rs_tick() {
    let _f = InFlight::enter();
    let now = time::uptime_us() / 1000;
    // SAFETY: plain reads of integer sysctl variables.
    let (def_ms, def_drop) = unsafe { (sys::lq_hold_timeout_ms, sys::lq_hold_timeout_drop != 0) };
    let Some(mut g) = REGISTRY.lock() else { return };
    let st = &mut *g;
    let stats: &mut Stats = &mut st.reg.stats;
    for f in st.accf.list.iter_mut() {
        let (ms, drop_it) = match f.cfg.hold_timeout_ms {
            Some(ms) => (ms, f.cfg.on_timeout == TimeoutAction::Drop),
            None => (def_ms, def_drop),
        };
        if ms == 0 {
            continue;
        }
        // Bounded work per tick; the rest waits for the next one.
        for _ in 0..64 {
            let Some(e) = f.holdq.pop_expired(now, u64::from(ms)) else {
                break;
            };
            bump(&mut stats.timeouts);
            if drop_it {
                f.evicted = f.evicted.saturating_add(1);
            } else {
                bump(&mut stats.released);
            }
            if !schedule(f.head, e.key, !drop_it) {
                bump(&mut stats.nomem);
            }
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
