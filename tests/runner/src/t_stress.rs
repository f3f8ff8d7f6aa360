//! Concurrency: forked processes drive listenq at the same time, from both
//! CPUs when the VM has two (the harness default). Workers go through
//! listen/accept/close on TCP over IPv4 and IPv6 and on local stream
//! sockets, with and without each filter, on listeners of their own and on
//! listeners they share; a mutator meanwhile changes the shared listeners'
//! filters, calls listen() on them again and reads the sysctl tables; two
//! flooders fill one filtered listener with silent clients.
//!
//! Phase 1 keeps listenq loaded and then checks every counter of
//! kern.ipc.listenq.stats against what the processes report they did.
//! Phase 2 runs the same load while the parent unloads and reloads listenq
//! (unload may be refused with EBUSY while a filter is in use).
//! Every loop is bounded in count and in time.

use crate::accf_util as au;
use crate::env::{Env, KO_PATH};
use crate::kld;
use crate::net::{self, SockAddr};
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd, PollFd};
use crate::sysctl;
use crate::tap::Tap;

const GET: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
/// A DNS query for example.com A, with its 2-byte length.
const DNSQ: &[u8] = b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
/// One TLS handshake record (a short ClientHello).
const TLSREC: &[u8] = b"\x16\x03\x01\x00\x0a\x01\x00\x00\x06\xaa\xbb\xcc\xdd\xee\xff";

/// What a worker's own listener cycles through, with a request that
/// satisfies each filter.
const FILTERS: [(Option<&str>, &[u8]); 5] = [
    (None, b"hello"),
    (Some("dataready"), b"hello"),
    (Some("httpready"), GET),
    (Some("dnsready"), DNSQ),
    (Some("tlsready"), TLSREC),
];
/// What the mutator puts on the shared listeners (GET satisfies both).
const SHARED_FILTERS: [&str; 2] = ["dataready", "httpready"];

const WORKERS: usize = 3;
const WORKER_ROUNDS: usize = 60;
const MUTATOR_STEPS: usize = 2000;
const FLOODERS: usize = 2;
const FLOOD_CLIENTS: usize = 150;
const FLOOD_WINDOW: usize = 32;
const FLOOD_BACKLOG: i32 = 16;
const IO_MS: i32 = 3000;

const STATS: [&str; 10] = [
    "listens",
    "closes",
    "completed",
    "accepted",
    "overflows",
    "held",
    "released",
    "evicted",
    "timeouts",
    "nomem",
];

fn snapshot() -> [u64; 10] {
    let mut s = [u64::MAX; 10];
    for (v, name) in s.iter_mut().zip(STATS) {
        *v = au::stat(name).unwrap_or(u64::MAX);
    }
    s
}

fn delta(a: &[u64; 10], b: &[u64; 10], name: &str) -> u64 {
    let i = STATS.iter().position(|n| *n == name).unwrap_or(0);
    b[i].wrapping_sub(a[i])
}

// ---------------------------------------------------------------- reports

const WORKER: u64 = 1;
const MUTATOR: u64 = 2;
const FLOODER: u64 = 3;

/// What a child did, sent to the parent as one datagram.
#[derive(Clone, Copy, Default, Debug)]
struct Report {
    role: u64,
    /// Successful listen(2) calls.
    listens: u64,
    /// Listeners this process closed (its last reference).
    closes: u64,
    connects: u64,
    accepts: u64,
    /// Failures, and the first one's step (S_*) and errno.
    bad: u64,
    first_step: u64,
    first_errno: u64,
    /// Mutator: operations done. Flooder: silent clients connected.
    aux: u64,
}

const REPORT_LEN: usize = 9 * 8;

impl Report {
    fn fail(&mut self, step: u64, e: Errno) {
        if self.bad == 0 {
            self.first_step = step;
            self.first_errno = u64::from(e.0.unsigned_abs());
        }
        self.bad += 1;
    }

    fn bytes(&self) -> [u8; REPORT_LEN] {
        let v = [
            self.role,
            self.listens,
            self.closes,
            self.connects,
            self.accepts,
            self.bad,
            self.first_step,
            self.first_errno,
            self.aux,
        ];
        let mut b = [0u8; REPORT_LEN];
        sock::put_words(&v, &mut b);
        b
    }

    fn from_bytes(b: &[u8; REPORT_LEN]) -> Report {
        let v: [u64; 9] = sock::words(b);
        Report {
            role: v[0],
            listens: v[1],
            closes: v[2],
            connects: v[3],
            accepts: v[4],
            bad: v[5],
            first_step: v[6],
            first_errno: v[7],
            aux: v[8],
        }
    }

    /// Sends the report and ends the child process.
    fn send_and_exit(&self, fd: i32) -> ! {
        let _ = sys::write(fd, &self.bytes());
        sys::exit(if self.bad == 0 { 0 } else { 1 })
    }
}

// Failure steps (`first_step`).
const S_LISTENER: u64 = 1;
const S_FILTER: u64 = 2;
const S_CONNECT: u64 = 3;
const S_SEND: u64 = 4;
const S_ACCEPT: u64 = 5;
const S_DATA: u64 = 6;
const S_RELISTEN: u64 = 7;
const S_SYSCTL: u64 = 8;
const S_SETOPT: u64 = 9;

// ---------------------------------------------------------------- children

/// A listener the children share (created by the parent before fork).
#[derive(Clone, Copy)]
struct Shared {
    kind: Kind,
    sa: SockAddr,
    fd: i32,
}

/// One client through a listener: connect, send `req`, accept (any
/// pending connection: on a shared listener it may be a sibling's, whose
/// request is the same), read the request back.
fn one(r: &mut Report, kind: Kind, sa: &SockAddr, l: i32, req: &[u8]) {
    let c = match sock::connect(kind, sa) {
        Ok(c) => c,
        Err(e) => return r.fail(S_CONNECT, e),
    };
    r.connects += 1;
    if let Err(e) = au::send_all(c.raw(), req) {
        return r.fail(S_SEND, e);
    }
    let a = match accept_any(l, IO_MS as u64) {
        Ok(a) => a,
        Err(e) => return r.fail(S_ACCEPT, e),
    };
    r.accepts += 1;
    if !au::reads_exactly(a.raw(), req, 2000) {
        r.fail(S_DATA, Errno::EIO);
    }
}

/// accept(2) on a nonblocking listener that siblings accept from too: a
/// readable listener may be emptied by one of them first (EAGAIN), so wait
/// again, up to `ms` in all.
fn accept_any(l: i32, ms: u64) -> Result<Fd, Errno> {
    let start = sys::now_ms();
    loop {
        let left = ms.saturating_sub(sys::now_ms().saturating_sub(start));
        if left == 0 {
            return Err(Errno::TIMEOUT);
        }
        match au::accept_within(l, left as i32) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => {}
            r => return r,
        }
    }
}

/// `tolerant`: listenq may be unloaded at any moment (phase 2), so filter
/// names may not resolve (ENOENT); the data path must work regardless.
/// No filter is set after `filters_until` (so that unload can succeed).
fn worker(
    w: usize,
    kinds: &[Kind],
    shared: &[Shared],
    deadline: u64,
    tolerant: bool,
    filters_until: u64,
    out: i32,
) -> ! {
    // Socket files stay in /tmp: every phase and worker numbers its own.
    sock::unix_paths_from(10_000 + 1000 * u32::from(tolerant) + 100 * w as u32);
    let mut r = Report {
        role: WORKER,
        ..Report::default()
    };
    for round in 0..WORKER_ROUNDS {
        if sys::now_ms() >= deadline {
            break;
        }
        let kind = kinds[(round + w) % kinds.len()];
        let (mut filter, req) = FILTERS[(round / kinds.len() + w) % FILTERS.len()];
        if sys::now_ms() >= filters_until {
            filter = None;
        }
        match sock::listener(kind, 8) {
            Ok((l, sa)) => {
                r.listens += 1;
                let _ = sock::set_nonblock(l.raw());
                if let Some(f) = filter {
                    match au::set_filter(l.raw(), f, "") {
                        Ok(()) => {}
                        Err(Errno::ENOENT) if tolerant => {}
                        Err(e) => r.fail(S_FILTER, e),
                    }
                }
                for _ in 0..2 {
                    one(&mut r, kind, &sa, l.raw(), req);
                }
                drop(l);
                r.closes += 1;
            }
            Err(e) => r.fail(S_LISTENER, e),
        }
        let s = shared[(round + w) % shared.len()];
        one(&mut r, s.kind, &s.sa, s.fd, GET);
    }
    r.send_and_exit(out)
}

fn mutator(shared: &[Shared], deadline: u64, tolerant: bool, filters_until: u64, out: i32) -> ! {
    let mut r = Report {
        role: MUTATOR,
        ..Report::default()
    };
    let mut table = [0u8; 16384];
    let n = shared.len();
    for i in 0..MUTATOR_STEPS {
        if sys::now_ms() >= deadline {
            break;
        }
        let s = shared[i % n];
        let mut step = (i / n) % 4;
        if step == 1 && sys::now_ms() >= filters_until {
            step = 0;
        }
        match step {
            0 => match au::remove_filter(s.fd) {
                Ok(()) | Err(Errno::EINVAL) => {}
                Err(e) => r.fail(S_SETOPT, e),
            },
            1 => match au::set_filter(s.fd, SHARED_FILTERS[(i / n / 4) % 2], "") {
                // EINVAL: a filter is set already.
                Ok(()) | Err(Errno::EINVAL) => {}
                Err(Errno::ENOENT) if tolerant => {}
                Err(e) => r.fail(S_SETOPT, e),
            },
            2 => match sys::listen(s.fd, 16 + (i % 48) as i32) {
                Ok(()) => r.listens += 1,
                Err(e) => r.fail(S_RELISTEN, e),
            },
            _ => {
                let reads = [
                    sysctl::read_opaque(au::TABLE, &mut table).map(|_| ()),
                    sysctl::read_opaque("kern.ipc.listenq.xlisteners", &mut table).map(|_| ()),
                    au::stat("accepted").map(|_| ()),
                    au::allocs().map(|_| ()),
                ];
                for x in reads {
                    match x {
                        Ok(()) => {}
                        // Not there while listenq is unloaded.
                        Err(Errno::ENOENT) if tolerant => {}
                        Err(e) => r.fail(S_SYSCTL, e),
                    }
                }
            }
        }
        r.aux += 1;
        sys::sleep_ms(1);
    }
    r.send_and_exit(out)
}

/// Silent clients against the flood listener; reports once done, then
/// keeps them open until the parent has closed the listener (`go`).
fn flooder(sa: &SockAddr, go: i32, out: i32) -> ! {
    let mut r = Report {
        role: FLOODER,
        ..Report::default()
    };
    let mut ring: [Option<Fd>; FLOOD_WINDOW] = [const { None }; FLOOD_WINDOW];
    for i in 0..FLOOD_CLIENTS {
        // Older than the window: evicted long ago (the hold queue holds
        // 16), so its reset cannot reach a held connection.
        if let Some(old) = ring[i % FLOOD_WINDOW].take() {
            au::close_rst(old);
        }
        match au::client(sa) {
            Ok(c) => {
                ring[i % FLOOD_WINDOW] = Some(c);
                r.aux += 1;
            }
            // Held, then evicted by 16 newer clients (the other flooder's
            // too) before this process saw its connect complete.
            Err(Errno::ECONNRESET) => r.aux += 1,
            Err(e) => r.fail(S_CONNECT, e),
        }
    }
    let _ = sys::write(out, &r.bytes());
    let mut p = [PollFd {
        fd: go,
        events: sys::POLLIN,
        revents: 0,
    }];
    let mut b = [0u8; 1];
    if !matches!(sys::poll(&mut p, 30_000), Ok(1)) || !matches!(sys::read(go, &mut b), Ok(1)) {
        sys::exit(1);
    }
    for c in ring.iter_mut() {
        if let Some(c) = c.take() {
            au::close_rst(c);
        }
    }
    sys::exit(if r.bad == 0 { 0 } else { 1 })
}

// ---------------------------------------------------------------- parent

fn kinds(env: &Env) -> ([Kind; 3], usize) {
    let mut k = [Kind::Tcp4; 3];
    let mut n = 0;
    for kind in [Kind::Tcp4, Kind::Tcp6, Kind::UnixStream] {
        if env.unusable(kind).is_none() {
            k[n] = kind;
            n += 1;
        }
    }
    (k, n)
}

/// The shared listeners (one per kind), nonblocking, backlog 32.
fn shared_listeners(
    kinds: &[Kind],
    fds: &mut [Option<Fd>; 3],
) -> Result<([Shared; 3], usize), Errno> {
    let mut sh = [Shared {
        kind: Kind::Tcp4,
        sa: SockAddr::inet(net::LOOPBACK4, 0),
        fd: -1,
    }; 3];
    for (i, k) in kinds.iter().enumerate() {
        let (l, sa) = sock::listener(*k, 32)?;
        sock::set_nonblock(l.raw())?;
        sh[i] = Shared {
            kind: *k,
            sa,
            fd: l.raw(),
        };
        fds[i] = Some(l);
    }
    Ok((sh, kinds.len()))
}

/// Reads every report waiting on `fd` (nonblocking) into `out`.
fn collect(fd: i32, out: &mut [Report; 8], n: &mut usize) {
    let mut b = [0u8; REPORT_LEN];
    while *n < out.len() {
        match sys::read(fd, &mut b) {
            Ok(REPORT_LEN) => {
                out[*n] = Report::from_bytes(&b);
                *n += 1;
            }
            _ => break,
        }
    }
}

fn exited_ok(status: sys::SysResult<i32>) -> bool {
    matches!(status, Ok(s) if s & 0x7f == 0 && (s >> 8) & 0xff == 0)
}

fn describe(tap: &Tap, r: &Report) {
    let role = match r.role {
        WORKER => "worker",
        MUTATOR => "mutator",
        FLOODER => "flooder",
        _ => "?",
    };
    tap.diag(format_args!(
        "  {}: listens {} closes {} connects {} accepts {} aux {} failures {} (first: step {} errno {})",
        role,
        r.listens,
        r.closes,
        r.connects,
        r.accepts,
        r.aux,
        r.bad,
        r.first_step,
        r.first_errno
    ));
}

pub fn run(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.ko {
        tap.skip(
            "concurrency suite",
            format_args!("listenq.ko not in image ({})", e),
        );
        return;
    }
    if let Some(why) = env.unusable(Kind::Tcp4) {
        tap.skip("concurrency suite", why);
        return;
    }
    let (k, nk) = kinds(env);
    let kinds = &k[..nk];
    batch_release_counts(tap);
    match au::listenq_loaded() {
        Ok(_) => removal_race(tap, "listenq dataready"),
        Err(e) => {
            tap.ok(false, "[stress] listenq dataready: filter removal race");
            tap.diag(format_args!("  kldload: {}", e));
        }
    }
    let t0 = sys::now_ms();
    exact_counters(tap, kinds);
    tap.diag(format_args!(
        "concurrency, phase 1: {} ms",
        sys::now_ms() - t0
    ));
    unload_meets_late_create(tap);
    unload_backs_out_after_retire(tap);
    let t1 = sys::now_ms();
    unload_rounds(tap, kinds);
    tap.diag(format_args!(
        "concurrency, phase 2: {} ms",
        sys::now_ms() - t1
    ));
}

const FP_CREATE: &str = "debug.fail_point.listenq_accf_create";
const FP_MARGIN: &str = "debug.fail_point.listenq_bury_margin";

/// A setsockopt(SO_ACCEPTFILTER) looks the name up, then calls accf_create
/// after a malloc(9) that may sleep. kldunload buries the names, waits a
/// margin, and decides (accf.rs unregister()). A create that arrives in
/// that margin must attach (the names come back, unload says EBUSY), not
/// fail with EINVAL as it did when unload decided first and buried after.
/// Fail points stall the child's create (busy-wait after its lookup) and
/// lengthen the margin, so the interleaving is certain on 2 CPUs.
fn unload_meets_late_create(tap: &mut Tap) {
    let name = "[stress] setsockopt(SO_ACCEPTFILTER) whose lookup came just before kldunload buried the names and whose accf_create came during unload's margin: it attaches (getsockopt says dataready), kldunload says EBUSY, the names are back";
    if sysctl::read_int("hw.ncpu").unwrap_or(1) < 2 {
        tap.skip(
            name,
            "needs 2 CPUs (with one, kldunload cannot run while accf_create is stalled)",
        );
        return;
    }
    let r = (|| -> Result<_, Errno> {
        let id = au::listenq_loaded()?;
        sysctl::write_int(crate::t_module::UNLOADABLE, 1)?;
        let (l, _) = au::listener(16)?;
        let (rd, wr) = sys::socketpair(net::AF_UNIX, net::SOCK_DGRAM)?;
        sysctl::write_str(FP_MARGIN, "return(6000)")?;
        sysctl::write_str(FP_CREATE, "1*delay(2500000)")?;
        let pid = match sys::fork()? {
            sys::Forked::Child => {
                let _ = sys::write(wr.raw(), b"g");
                let code = match au::set_filter(l.raw(), "dataready", "") {
                    Ok(()) => match au::get_filter(l.raw()) {
                        Ok(n) if n.starts_with(b"dataready\0") => 0,
                        Ok(_) => 1,
                        Err(e) => 100 + e.0.clamp(0, 99),
                    },
                    Err(e) => 200 + e.0.clamp(0, 55),
                };
                sys::exit(code)
            }
            sys::Forked::Parent(p) => p,
        };
        let mut b = [0u8; 1];
        let _ = sys::read(rd.raw(), &mut b);
        // fail(9) drops a "1*" term before it runs it: once the point
        // reads without it, the child has looked the name up and is in
        // accf_create's 2.5 s stall.
        let mut fp = [0u8; 64];
        let t0 = sys::now_ms();
        while sysctl::read_string(FP_CREATE, &mut fp)?
            .windows(5)
            .any(|w| w == b"delay")
        {
            if sys::now_ms() - t0 > 5000 {
                let _ = sys::wait4(pid);
                return Err(Errno::TIMEOUT);
            }
            sys::sleep_ms(5);
        }
        let t = sys::now_ms();
        let un = kld::unload(id);
        let took = sys::now_ms() - t;
        let st = sys::wait4(pid);
        let _ = sysctl::write_str(FP_CREATE, "off");
        let _ = sysctl::write_str(FP_MARGIN, "off");
        let child = st.map(|s| (s >> 8) & 0xff);
        // The names are back: a fresh listener gets dataready.
        let (l2, _) = au::listener(16)?;
        let again = au::set_filter(l2.raw(), "dataready", "");
        let _ = au::remove_filter(l.raw());
        let _ = au::remove_filter(l2.raw());
        Ok((un, took, child, again))
    })();
    let _ = sysctl::write_str(FP_CREATE, "off");
    let _ = sysctl::write_str(FP_MARGIN, "off");
    match r {
        Ok((un, took, child, again)) => {
            // Refused only after the 6 s margin: the names were buried
            // while the child was in accf_create (an unload refused at
            // once would mean the child had attached before it began).
            tap.ok(
                un == Err(Errno::EBUSY) && took >= 5000 && child == Ok(0) && again.is_ok(),
                name,
            );
            tap.diag(format_args!(
                "  kldunload {:?} after {} ms; child exit {:?} (0 attached and named dataready, 2xx setsockopt errno+200); fresh setsockopt(dataready) {:?}",
                un, took, child, again
            ));
        }
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  setup: {}", e));
        }
    }
}

const FP_SYSCTL_DETACH: &str = "debug.fail_point.listenq_sysctl_detach";

/// Unload gets past the filters (names buried, entries retired, tick
/// stopped) and then cannot remove its sysctls (fail point): it backs out
/// with EBUSY, and the filters must work as before: names whole
/// (getsockopt copies the name; a buried one has no NUL), a held client
/// released by its data, and a hold timeout delivered (the tick and the
/// taskqueue are back).
fn unload_backs_out_after_retire(tap: &mut Tap) {
    let name = "[stress] kldunload that fails after retiring the filters (its sysctls stay: fail point) says EBUSY and leaves them working: getsockopt names dataready, its hold timeout delivers a silent client, httpready releases a client at its request";
    let r = (|| -> Result<_, Errno> {
        let id = au::listenq_loaded()?;
        sysctl::write_int(crate::t_module::UNLOADABLE, 1)?;
        sysctl::write_str(FP_SYSCTL_DETACH, "1*return(1)")?;
        let un = kld::unload(id);
        // The one-shot term is gone once it fired: unload got as far as
        // its sysctls, past the filters' retirement.
        let mut fp = [0u8; 64];
        let fired = !sysctl::read_string(FP_SYSCTL_DETACH, &mut fp)?
            .windows(6)
            .any(|w| w == b"return");
        let _ = sysctl::write_str(FP_SYSCTL_DETACH, "off");
        let (l, sa) = au::listener(16)?;
        let set = au::set_filter(l.raw(), "dataready", "timeout=300,ontimeout=deliver");
        let got = au::get_filter(l.raw());
        let silent = au::client(&sa)?;
        let t = sys::now_ms();
        let timed_out = match au::accept_within(l.raw(), 3000) {
            Ok(_) => sys::now_ms() - t,
            Err(_) => 0,
        };
        drop(silent);
        let (l2, sa2) = au::listener(16)?;
        let set2 = au::set_filter(l2.raw(), "httpready", "");
        // A client held by httpready until its request is whole.
        let c = au::client(&sa2)?;
        sys::sleep_ms(50);
        let early = au::accept_within(l2.raw(), 100).is_ok();
        sys::write_all(c.raw(), GET)?;
        let late = au::accept_within(l2.raw(), 2000).is_ok();
        drop(c);
        let _ = au::remove_filter(l.raw());
        let _ = au::remove_filter(l2.raw());
        Ok((un, fired, set, got, timed_out, set2, early, late))
    })();
    let _ = sysctl::write_str(FP_SYSCTL_DETACH, "off");
    match r {
        Ok((un, fired, set, got, timed_out, set2, early, late)) => {
            let named = matches!(&got, Ok(n) if n.starts_with(b"dataready\0"));
            tap.ok(
                un == Err(Errno::EBUSY)
                    && fired
                    && set.is_ok()
                    && named
                    && (250..3000).contains(&timed_out)
                    && set2.is_ok()
                    && !early
                    && late,
                name,
            );
            tap.diag(format_args!(
                "  kldunload {:?} (fail point fired: {}); dataready {:?}, getsockopt {:?}, silent client delivered after {} ms (0: not); httpready {:?}, accepted before the request {}, after {}",
                un,
                fired,
                set,
                got.as_ref().err(),
                timed_out,
                set2,
                early,
                late
            ));
            if let Ok(n) = &got {
                tap.diag(format_args!("  getsockopt names {}", au::Show(&n[..])));
            }
        }
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  setup: {}", e));
        }
    }
}

/// LISTENQ_VM_KENV=listenq.stress=N: the two unload races above once,
/// then `unload_rounds` N times (1..99), nothing else.
pub fn unload_rounds_only(tap: &mut Tap, env: &Env, times: &[u8]) {
    let n = core::str::from_utf8(times)
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|n| (1..100).contains(n));
    let Some(n) = n else {
        tap.ok(false, "listenq.stress=N: N is a number from 1 to 99");
        return;
    };
    if let Err(e) = env.ko {
        tap.skip(
            "listenq.stress",
            format_args!("listenq.ko not in image ({})", e),
        );
        return;
    }
    // As t_module does for the whole suite: unloading is opt-in.
    if let Err(e) = sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1") {
        tap.ok(false, "kenv kern.ipc.listenq.unloadable=1");
        tap.diag(format_args!("  {}", e));
        return;
    }
    let (k, nk) = kinds(env);
    unload_meets_late_create(tap);
    unload_backs_out_after_retire(tap);
    for rep in 0..n {
        sock::unix_paths_epoch(rep as u32 + 1);
        if let Err(e) = au::listenq_loaded() {
            tap.ok(false, "kldload listenq before the rounds");
            tap.diag(format_args!("  {}", e));
            return;
        }
        unload_rounds(tap, &k[..nk]);
    }
}

/// Forks `WORKERS` workers and the mutator on `shared`; returns their pids.
fn fork_load(
    shared: &[Shared],
    kinds: &[Kind],
    deadline: u64,
    tolerant: bool,
    filters_until: u64,
    out: i32,
    close_in_child: &[i32],
    pids: &mut [i32; 8],
    np: &mut usize,
) -> Result<(), Errno> {
    for w in 0..=WORKERS {
        match sys::fork()? {
            sys::Forked::Child => {
                for fd in close_in_child {
                    let _ = sys::close(*fd);
                }
                if w < WORKERS {
                    worker(w, kinds, shared, deadline, tolerant, filters_until, out)
                } else {
                    mutator(shared, deadline, tolerant, filters_until, out)
                }
            }
            sys::Forked::Parent(pid) => {
                pids[*np] = pid;
                *np += 1;
            }
        }
    }
    Ok(())
}

fn exact_counters(tap: &mut Tap, kinds: &[Kind]) {
    let names = [
        "[stress] 3 workers (tcp4, tcp6, local; no filter and each of the 4) and a mutator (filters, listen() again, sysctl tables) at once: every connection accepted with its bytes, no error",
        "[stress] 2 flooders at once against listen(16) dataready: HELD never above 16, SO_LISTENINCQLEN never above 17 (kernel's own bound) and 16 once quiet",
        "[stress] afterwards stats.accepted and stats.completed equal the accepts the workers counted",
        "[stress] afterwards stats.listens and stats.closes equal the listen() calls and listener closes done",
        "[stress] afterwards stats.evicted = flood clients - 16 still held, and held = released + evicted + held at close",
        "[stress] afterwards no overflow, timeout or allocation failure was counted, and kern.ipc.listenq.allocs and memuse are back to 0",
    ];
    if let Err(e) = au::listenq_loaded() {
        fail_all(tap, &names, "kldload", e);
        return;
    }
    let s0 = snapshot();
    let mut parent_listens = 0u64;
    let mut parent_closes = 0u64;
    let mut sfds: [Option<Fd>; 3] = [None, None, None];
    let setup = (|| -> Result<_, Errno> {
        let (sh, n) = shared_listeners(kinds, &mut sfds)?;
        let (fl, fsa) = au::filtered(FLOOD_BACKLOG, "dataready", "")?;
        let (rd, wr) = sys::socketpair(net::AF_UNIX, net::SOCK_DGRAM)?;
        let (go_rd, go_wr) = sys::socketpair(net::AF_UNIX, net::SOCK_STREAM)?;
        sock::set_nonblock(rd.raw())?;
        Ok((sh, n, fl, fsa, rd, wr, go_rd, go_wr))
    })();
    let (sh, n, fl, fsa, rd, wr, go_rd, go_wr) = match setup {
        Ok(x) => x,
        Err(e) => {
            fail_all(tap, &names, "setup", e);
            return;
        }
    };
    parent_listens += n as u64 + 1;
    let shared = &sh[..n];
    let mut pids = [0i32; 8];
    let mut np = 0;
    let deadline = sys::now_ms() + 5000;
    // Children must not keep the flood listener (or the parent's ends of
    // the pipes) open: closing it in the parent has to close it.
    let close_in_child = [fl.raw(), rd.raw(), go_wr.raw()];
    let mut forked = fork_load(
        shared,
        kinds,
        deadline,
        false,
        u64::MAX,
        wr.raw(),
        &close_in_child,
        &mut pids,
        &mut np,
    );
    for _ in 0..FLOODERS {
        if forked.is_err() {
            break;
        }
        match sys::fork() {
            Ok(sys::Forked::Child) => {
                for fd in close_in_child {
                    let _ = sys::close(fd);
                }
                flooder(&fsa, go_rd.raw(), wr.raw())
            }
            Ok(sys::Forked::Parent(pid)) => {
                pids[np] = pid;
                np += 1;
            }
            Err(e) => forked = Err(e),
        }
    }
    // Sample the flood listener until both flooders are done.
    let mut reports = [Report::default(); 8];
    let mut nr = 0;
    let (mut maxinc, mut maxheld, mut polls) = (0i32, 0i64, 0u32);
    let port = au::addr_port(&fsa);
    let start = sys::now_ms();
    while sys::now_ms().saturating_sub(start) < 60_000 {
        collect(rd.raw(), &mut reports, &mut nr);
        if reports[..nr].iter().filter(|r| r.role == FLOODER).count() >= FLOODERS || forked.is_err()
        {
            break;
        }
        if let Ok(q) = sock::incqlen(fl.raw()) {
            maxinc = maxinc.max(q);
        }
        polls += 1;
        if polls % 16 == 0 {
            if let Ok(Some(row)) = au::table_row(port) {
                maxheld = maxheld.max(row.held);
            }
        }
        sys::sleep_ms(1);
    }
    sys::sleep_ms(300);
    let settled = sock::incqlen(fl.raw()).unwrap_or(-1);
    let held_close = match au::table_row(port) {
        Ok(Some(row)) => row.held,
        _ => -1,
    };
    drop(fl);
    parent_closes += 1;
    for _ in 0..FLOODERS {
        let _ = sys::write(go_wr.raw(), b"g");
    }
    let mut all_ok = forked.is_ok();
    for pid in &pids[..np] {
        all_ok &= exited_ok(sys::wait4(*pid));
    }
    collect(rd.raw(), &mut reports, &mut nr);
    drop(sfds);
    parent_closes += n as u64;
    let settled_allocs = au::allocs_settle(2000);
    let s1 = snapshot();

    let reports = &reports[..nr];
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let (accepts, listens, closes) = (sum(|r| r.accepts), sum(|r| r.listens), sum(|r| r.closes));
    let flood_clients: u64 = reports
        .iter()
        .filter(|r| r.role == FLOODER)
        .map(|r| r.aux)
        .sum();
    let load_ok =
        all_ok && nr == WORKERS + 1 + FLOODERS && reports.iter().all(|r| r.bad == 0) && accepts > 0;
    tap.ok(load_ok, names[0]);
    for r in reports {
        describe(tap, r);
    }
    if !all_ok || nr != WORKERS + 1 + FLOODERS {
        tap.diag(format_args!(
            "  children all exited 0: {}; reports {} of {}; fork: {:?}",
            all_ok,
            nr,
            WORKERS + 1 + FLOODERS,
            forked
        ));
    }
    let cap = i64::from(FLOOD_BACKLOG);
    tap.ok(
        flood_clients == (FLOODERS * FLOOD_CLIENTS) as u64
            && maxheld <= cap
            && maxinc <= FLOOD_BACKLOG + 1
            && settled == FLOOD_BACKLOG
            && held_close == cap,
        names[1],
    );
    tap.diag(format_args!(
        "  {} flood clients; max HELD {}, max SO_LISTENINCQLEN {} over {} samples; once quiet: SO_LISTENINCQLEN {}, HELD {}",
        flood_clients, maxheld, maxinc, polls, settled, held_close
    ));
    let d = |name| delta(&s0, &s1, name);
    tap.ok(
        d("accepted") == accepts && d("completed") == accepts,
        names[2],
    );
    tap.diag(format_args!(
        "  workers accepted {}; stats.accepted +{}, stats.completed +{}",
        accepts,
        d("accepted"),
        d("completed")
    ));
    let want_listens = listens + parent_listens;
    let want_closes = closes + parent_closes;
    tap.ok(
        d("listens") == want_listens && d("closes") == want_closes,
        names[3],
    );
    tap.diag(format_args!(
        "  listen() calls {}, listener closes {}; stats.listens +{}, stats.closes +{}",
        want_listens,
        want_closes,
        d("listens"),
        d("closes")
    ));
    let held_close_u = u64::try_from(held_close).unwrap_or(u64::MAX);
    tap.ok(
        d("evicted") == flood_clients.wrapping_sub(held_close_u)
            && d("held") == d("released") + d("evicted") + held_close_u,
        names[4],
    );
    tap.diag(format_args!(
        "  stats: held +{} released +{} evicted +{}; {} held when the flood listener closed",
        d("held"),
        d("released"),
        d("evicted"),
        held_close
    ));
    tap.ok(
        d("overflows") == 0 && d("timeouts") == 0 && d("nomem") == 0 && settled_allocs.is_ok(),
        names[5],
    );
    tap.diag(format_args!(
        "  stats: overflows +{} timeouts +{} nomem +{}; allocs {:?}",
        d("overflows"),
        d("timeouts"),
        d("nomem"),
        settled_allocs
    ));
    drop((rd, wr, go_rd, go_wr));
}

/// kldunload/kldload rounds while the workers and the mutator run.
fn unload_rounds(tap: &mut Tap, kinds: &[Kind]) {
    const ROUNDS: usize = 12;
    let names = [
        "[stress] 12 kldunload/kldload rounds under the same load (filters in use for the first 1.5 s only): unload says EBUSY or succeeds, at least once, load always succeeds, the load sees no error",
        "[stress] after the rounds, with everything closed: kern.ipc.listenq.allocs and memuse are 0 and kldunload succeeds",
    ];
    let mut id = au::listenq_loaded().ok();
    let mut sfds: [Option<Fd>; 3] = [None, None, None];
    let setup = (|| -> Result<_, Errno> {
        let (sh, n) = shared_listeners(kinds, &mut sfds)?;
        let (rd, wr) = sys::socketpair(net::AF_UNIX, net::SOCK_DGRAM)?;
        sock::set_nonblock(rd.raw())?;
        Ok((sh, n, rd, wr))
    })();
    let (sh, n, rd, wr) = match setup {
        Ok(x) => x,
        Err(e) => {
            fail_all(tap, &names, "setup", e);
            return;
        }
    };
    let mut pids = [0i32; 8];
    let mut np = 0;
    let deadline = sys::now_ms() + 4000;
    let forked = fork_load(
        &sh[..n],
        kinds,
        deadline,
        true,
        // Filters in use first (unload must say EBUSY), then none (unload
        // must succeed while the hooks are busy).
        sys::now_ms() + 1500,
        wr.raw(),
        &[rd.raw()],
        &mut pids,
        &mut np,
    );
    let (mut unloaded, mut busy, mut errs) = (0u32, 0u32, 0u32);
    let mut first_err = None;
    for _ in 0..ROUNDS {
        sys::sleep_ms(150);
        if let Some(i) = id {
            match kld::unload(i) {
                Ok(()) => {
                    unloaded += 1;
                    id = None;
                }
                Err(Errno::EBUSY) => busy += 1,
                Err(e) => {
                    errs += 1;
                    first_err.get_or_insert(("kldunload", e));
                }
            }
        }
        if id.is_none() {
            sys::sleep_ms(30);
            match kld::load(KO_PATH) {
                Ok(i) => id = Some(i),
                Err(e) => {
                    errs += 1;
                    first_err.get_or_insert(("kldload", e));
                }
            }
        }
    }
    let mut all_ok = forked.is_ok();
    for pid in &pids[..np] {
        all_ok &= exited_ok(sys::wait4(*pid));
    }
    let mut reports = [Report::default(); 8];
    let mut nr = 0;
    collect(rd.raw(), &mut reports, &mut nr);
    drop(sfds);
    tap.ok(
        all_ok
            && errs == 0
            && unloaded > 0
            && nr == WORKERS + 1
            && reports[..nr].iter().all(|r| r.bad == 0),
        names[0],
    );
    tap.diag(format_args!(
        "  {} unloads, {} refused with EBUSY, {} errors (first {:?})",
        unloaded, busy, errs, first_err
    ));
    for r in &reports[..nr] {
        describe(tap, r);
    }
    let id = id.or_else(|| au::listenq_loaded().ok());
    let settled = au::allocs_settle(2000);
    let un = match id {
        Some(i) => kld::unload(i),
        None => Err(Errno::ENOENT),
    };
    tap.ok(settled.is_ok() && un.is_ok(), names[1]);
    if settled.is_err() || un.is_err() {
        tap.diag(format_args!("  allocs {:?}, kldunload {:?}", settled, un));
    }
    drop((rd, wr));
}

/// One wakeup for several connections: removing a filter that holds 3
/// silent clients moves all 3 to the completed queue at once
/// (accept_filt_setopt() wakes the listener up once). Each must count as
/// completed, and each accept(2) as accepted.
fn batch_release_counts(tap: &mut Tap) {
    let name = "[stress] filter removal releasing 3 held clients with one wakeup: stats.completed +3, 3 accepts, stats.accepted +3";
    if let Err(e) = au::listenq_loaded() {
        tap.ok(false, name);
        tap.diag(format_args!("  kldload: {}", e));
        return;
    }
    let s0 = snapshot();
    let r = (|| -> Result<u64, Errno> {
        let (l, sa) = au::filtered(8, "dataready", "")?;
        let mut c: [Option<Fd>; 3] = [None, None, None];
        let held0 = au::stat("held")?;
        for x in c.iter_mut() {
            *x = Some(au::client(&sa)?);
        }
        let mut ok = 0;
        if !wait_held(held0 + 3, 2000) {
            return Err(Errno::TIMEOUT);
        }
        au::remove_filter(l.raw())?;
        for _ in 0..3 {
            if accept_any(l.raw(), IO_MS as u64).is_ok() {
                ok += 1;
            }
        }
        drop(c);
        Ok(ok)
    })();
    let s1 = snapshot();
    let d = |n| delta(&s0, &s1, n);
    tap.ok(
        r == Ok(3) && d("completed") == 3 && d("accepted") == 3,
        name,
    );
    tap.diag(format_args!(
        "  accepts {:?}; stats.completed +{}, stats.accepted +{}, released +{}",
        r,
        d("completed"),
        d("accepted"),
        d("released")
    ));
}

fn wait_held(want: u64, ms: u64) -> bool {
    let start = sys::now_ms();
    while sys::now_ms().saturating_sub(start) < ms {
        if au::stat("held").is_ok_and(|v| v >= want) {
            return true;
        }
        sys::sleep_ms(2);
    }
    false
}

// ---------------------------------------------------------------- removal race

const RACE_CONNECTORS: usize = 2;
const RACE_CONNECTS: usize = 250;
const RACE_MS: u64 = 8000;

/// Filter removal racing connection setup. A connection that TCP queued
/// with SO_ACCEPTFILTER set reaches soisconnected() a moment later; when
/// soisconnected() cannot try-lock the listener it drops the connection's
/// lock to take the listener's, and FreeBSD 14's accept_filt_setopt() can
/// move the connection to the completed queue meanwhile. soisconnected()
/// only re-checks so_listen, so it then takes the connection off the
/// incomplete queue it is no longer on and corrupts sol_comp ("Bad tailq
/// NEXT(...) != NULL" on the next insert). listenq's filters leave such a
/// connection to soisconnected() (lq_accf_release_all in tag_glue.c).
///
/// Two children connect, send a byte and close, as fast as they can; the
/// parent sets and removes `filter` over and over and accepts whatever is
/// complete in between. Every connection must be accepted. `filter` is
/// listenq's, or with LISTENQ_VM_KENV=listenq.race=stock (then nothing
/// else runs) stock accf_data's, to see the kernel's own race.
pub fn removal_race(tap: &mut Tap, label: &str) {
    // Room for every connection on the completed queue (the default
    // kern.ipc.soacceptqueue, 128, caps listen(1024) at an overflow of
    // 193): on one vCPU the parent's toggling loop can fall that far
    // behind the two connectors, and a refused connection is the
    // scheduler's doing, not the race this looks for.
    let saved = sysctl::read_int("kern.ipc.soacceptqueue");
    let _ = sysctl::write_int("kern.ipc.soacceptqueue", 1024);
    let r = (|| -> Result<RaceOutcome, Errno> {
        let (l, sa) = au::listener(1024)?;
        let mut pids = [0i32; RACE_CONNECTORS];
        for p in pids.iter_mut() {
            match sys::fork()? {
                sys::Forked::Child => {
                    let _ = sys::close(l.raw());
                    let mut bad = 0;
                    for _ in 0..RACE_CONNECTS {
                        match au::client(&sa) {
                            Ok(c) => {
                                if au::send_all(c.raw(), b"x").is_err() {
                                    bad += 1;
                                }
                            }
                            Err(_) => bad += 1,
                        }
                    }
                    sys::exit(if bad == 0 { 0 } else { 1 })
                }
                sys::Forked::Parent(pid) => *p = pid,
            }
        }
        let want = (RACE_CONNECTORS * RACE_CONNECTS) as u64;
        let (mut accepted, mut toggles) = (0u64, 0u64);
        let start = sys::now_ms();
        let drain = |accepted: &mut u64| {
            while let Ok(a) = au::try_accept(l.raw()) {
                drop(a);
                *accepted += 1;
            }
        };
        while accepted < want && sys::now_ms() - start < RACE_MS {
            if au::set_filter(l.raw(), "dataready", "").is_ok() {
                toggles += 1;
            }
            drain(&mut accepted);
            au::remove_filter(l.raw())?;
            drain(&mut accepted);
        }
        let mut bad_children = 0;
        for p in pids {
            match sys::wait4(p) {
                Ok(0) => {}
                _ => bad_children += 1,
            }
        }
        while accepted < want && sys::now_ms() - start < RACE_MS + 3000 {
            match au::accept_within(l.raw(), 100) {
                Ok(_) => accepted += 1,
                Err(_) => {}
            }
        }
        Ok(RaceOutcome {
            accepted,
            want,
            toggles,
            bad_children,
            incqlen: sock::incqlen(l.raw()).unwrap_or(-1),
        })
    })();
    if let Ok(v) = saved {
        let _ = sysctl::write_int("kern.ipc.soacceptqueue", v);
    }
    let ok = matches!(&r, Ok(o) if o.accepted == o.want && o.toggles > 0 && o.bad_children == 0 && o.incqlen == 0);
    tap.ok(
        ok,
        format_args!(
            "[stress] {}: filter set and removed while {} clients connect: every connection accepted, none left on the queues",
            label,
            RACE_CONNECTORS * RACE_CONNECTS
        ),
    );
    tap.diag(format_args!("  {:?}", r));
}

/// What the removal race saw: connections accepted of those made, how
/// often the filter was set, children that failed, what the incomplete
/// queue kept.
#[derive(Debug)]
struct RaceOutcome {
    accepted: u64,
    want: u64,
    toggles: u64,
    bad_children: u64,
    incqlen: i32,
}

/// A suite that could not start: every one of its tests fails, with why.
fn fail_all(tap: &mut Tap, names: &[&str], step: &str, e: impl core::fmt::Display) {
    for n in names {
        tap.ok(false, n);
    }
    tap.diag(format_args!("  {}: {}", step, e));
}
