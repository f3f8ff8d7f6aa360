//! Benchmark (run-vm.sh --bench, kernel env listenq.bench=1; nothing else
//! runs then): connections per second through each accept filter.
//!
//! One measurement = a fresh 127.0.0.1 listener (listen(128), the filter
//! set) and ITERS rounds of: nonblocking connect + poll, send one complete
//! request for the filter, poll + accept(2) on the listener, close the
//! client, close the accepted socket. Timed with CLOCK_MONOTONIC (guest
//! time), after WARMUP untimed rounds.
//!
//! Order: no filter, dataready, httpready, dnsready, each listenq against
//! the plain kernel or the stock module, interleaved A B B A A B B A
//! (t_bench_paired.rs), PAIR_ITERS rounds a run; tlsready (listenq only);
//! then the scaling rows, each interleaved A B B A. Each side's total
//! over its runs is compared (its best run is reported too).
//!
//! Scaling rows (ROUNDS timed rounds each, same round as above):
//! - held=N: httpready on a listener (backlog N + 64) that holds N silent
//!   connections (connected, never sent anything), complete requests
//!   through it; listenq against stock accf_http;
//! - idle=M: no filter, one listener accepting while M other listeners
//!   (listen(8), never connected to) exist; listenq loaded against not;
//! - with 2000 idle listeners and listenq loaded: the guest time of one
//!   read of kern.ipc.listenq.listeners.

use crate::accf_util as au;
use crate::env::Env;
use crate::kld;
use crate::net::SockAddr;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::t_bench_paired as paired;
use crate::tap::Tap;

pub const ITERS: u64 = 1000;
/// Rounds of each measurement of the interleaved no-filter and filter
/// comparisons: the differences measured are tenths of a percent to a few
/// percent, and a 1000-round run comes out at one of two levels about
/// 0.8% apart (a periodic piece of kernel work inside it or not); 5000
/// rounds hold that work in proportion, and the runs of a side then agree
/// within 0.2%.
const PAIR_ITERS: u64 = 5000;
const WARMUP: u64 = 20;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
/// A DNS query for example.com A, with its 2-byte length.
const DNSQ: &[u8] = b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
/// One TLS handshake record (a short ClientHello).
const TLSREC: &[u8] = b"\x16\x03\x01\x00\x0a\x01\x00\x00\x06\xaa\xbb\xcc\xdd\xee\xff";

const FILTERS: [(&str, &[u8]); 4] = [
    ("dataready", b"x"),
    ("httpready", GET),
    ("dnsready", DNSQ),
    ("tlsready", TLSREC),
];

/// Whether the kernel environment asks for the benchmark.
pub fn wanted() -> bool {
    let mut b = [0u8; 16];
    matches!(sys::kenv_get(c"listenq.bench", &mut b), Ok(v) if v == b"1" || v == b"yes" || v == b"quick" || v == b"smp")
}

/// LISTENQ_BENCH=quick: the filter and hooks rows only, no held/idle
/// scaling nor flood (a minute instead of several, for trying a change);
/// with LISTENQ_VM_KENV=listenq.bench_only=<row> ("none", "dataready",
/// ..., or "flood") only that comparison.
fn quick() -> bool {
    let mut b = [0u8; 16];
    matches!(sys::kenv_get(c"listenq.bench", &mut b), Ok(v) if v == b"quick")
}

fn one(l: i32, sa: &SockAddr, req: &[u8]) -> Result<(), (&'static str, Errno)> {
    let c = sock::connect(Kind::Tcp4, sa).map_err(|e| ("connect", e))?;
    au::send_all(c.raw(), req).map_err(|e| ("send", e))?;
    let a = au::accept_within(l, sock::IO_TIMEOUT_MS).map_err(|e| ("accept", e))?;
    drop(c);
    drop(a);
    Ok(())
}

/// Connections per second (and the microseconds the timed rounds took)
/// over `rounds` timed rounds.
fn measure(
    filter: Option<&str>,
    req: &[u8],
    rounds: u64,
) -> Result<(u64, u64), (&'static str, Errno)> {
    let (l, sa) = au::listener(128).map_err(|e| ("listener", e))?;
    if let Some(f) = filter {
        au::set_filter(l.raw(), f, "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    }
    timed(l.raw(), &sa, req, rounds)
}

/// WARMUP untimed rounds, then `iters` timed ones: (conns/s, microseconds).
fn timed(
    l: i32,
    sa: &SockAddr,
    req: &[u8],
    iters: u64,
) -> Result<(u64, u64), (&'static str, Errno)> {
    for _ in 0..WARMUP {
        one(l, sa, req)?;
    }
    let t0 = sys::now_us();
    for _ in 0..iters {
        one(l, sa, req)?;
    }
    let us = sys::now_us().saturating_sub(t0).max(1);
    Ok((iters * 1_000_000 / us, us))
}

/// Rounds per held-N and idle-M measurement (each costs its setup too).
const ROUNDS: u64 = 2000;
/// Silent connections held by httpready while complete requests go through.
const HELD: [usize; 4] = [0, 1000, 4000, 16000];
/// Idle listeners that exist while one listener accepts.
const IDLE: [usize; 3] = [0, 500, 2000];
/// Reads of kern.ipc.listenq.listeners timed with 2000 idle listeners.
const TABLE_READS: u64 = 10;
const MAX_FDS: usize = 16000;

/// Closes `fds`, with RST so nothing lingers in TIME_WAIT.
fn close_fds(fds: &mut [i32]) {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&1i32.to_ne_bytes());
    for fd in fds.iter_mut() {
        if *fd >= 0 {
            let _ = sys::setsockopt(*fd, crate::sock::SOL_SOCKET, au::SO_LINGER, &b);
            let _ = sys::close(*fd);
            *fd = -1;
        }
    }
}

/// Limits for 16000 held clients: the kernel env (run-vm.sh --bench) raises
/// kern.maxfiles and kern.ipc.maxsockets; here the per-process limit and
/// the listen queue cap.
fn raise_limits(tap: &Tap) {
    let want = (MAX_FDS + 4096) as i32;
    let _ = sysctl::write_int("kern.maxfilesperproc", want);
    let _ = sys::setrlimit(sys::RLIMIT_NOFILE, want as u64, want as u64);
    let _ = sysctl::write_int("kern.ipc.soacceptqueue", (MAX_FDS + 1024) as i32);
    tap.diag(format_args!(
        "bench limits: RLIMIT_NOFILE {:?}, kern.maxfiles {:?}, kern.ipc.maxsockets {:?}, kern.ipc.soacceptqueue {:?}",
        sys::getrlimit(sys::RLIMIT_NOFILE),
        sysctl::read_int("kern.maxfiles"),
        sysctl::read_int("kern.ipc.maxsockets"),
        sysctl::read_uint("kern.ipc.soacceptqueue")
    ));
}

/// Accept rate of complete HTTP requests through httpready on a listener
/// that holds `n` silent connections (listen backlog n + 64).
fn held(tap: &mut Tap, n: usize, mem: bool) -> Result<(u64, u64), (&'static str, Errno)> {
    let mem0 = sysctl::read_u64("kern.ipc.listenq.memuse");
    let (l, sa) = au::listener((n + 64) as i32).map_err(|e| ("listener", e))?;
    au::set_filter(l.raw(), "httpready", "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    let mut fds_mem = sys::scratch::<i32>(MAX_FDS, -1);
    let fds = &mut fds_mem[..];
    let n = n.min(MAX_FDS);
    let mut r = Ok((0, 0));
    for fd in fds[..n].iter_mut() {
        match sock::connect(Kind::Tcp4, &sa) {
            Ok(c) => *fd = c.into_raw(),
            Err(e) => {
                r = Err(("connect a silent client", e));
                break;
            }
        }
    }
    if r.is_ok() {
        let inc = sock::incqlen(l.raw()).unwrap_or(-1);
        if inc != n as i32 {
            tap.diag(format_args!("  held {}: SO_LISTENINCQLEN {}", n, inc));
        }
        if mem && n > 0 {
            let mem1 = sysctl::read_u64("kern.ipc.listenq.memuse");
            memory(tap, n, mem0, mem1);
        }
        r = timed(l.raw(), &sa, GET, ROUNDS);
    }
    close_fds(&mut fds[..n]);
    r
}

/// What listenq's memory grew by while a listener with backlog n + 64 and
/// httpready came to hold `n` silent connections (kern.ipc.listenq.memuse,
/// vmstat -m's MemUse of type listenq), per held connection. listenq(4)
/// "The secondary queue" says what it is made of, reserved as connections
/// are held (one chunk when the filter is set): 40-byte slots, 102 to a
/// 4 KiB chunk, and 4-byte index buckets, a power of two at least 4/3 of
/// the chunks' slots; the listener's own state adds a little (at most 16
/// KiB here, the chunk list and malloc(9)'s rounding included).
fn memory(tap: &mut Tap, n: usize, before: Result<u64, Errno>, after: Result<u64, Errno>) {
    const PER: u64 = 102;
    let chunks = (n as u64).max(1).div_ceil(PER);
    let want = 4096 * chunks + 4 * (chunks * PER * 4).div_ceil(3).next_power_of_two();
    let got = match (before, after) {
        (Ok(b), Ok(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let ok = got.is_some_and(|g| g >= want && g <= want + 16384);
    tap.ok(
        ok,
        format_args!(
            "bench memory held={} listenq: {:?} bytes, listenq(4) says {} (+ at most 16 KiB)",
            n, got, want
        ),
    );
    if let Some(g) = got {
        let per = g * 10 / n as u64;
        tap.diag(format_args!(
            "bench memory held={}: {}.{} bytes per held connection",
            n,
            per / 10,
            per % 10
        ));
        crate::tap::print(format_args!("# bench memory {} {}", n, g));
    }
}

/// Accept rate (no filter) on one listener while `m` idle listeners exist;
/// with `table`, also the microseconds one read of the listeners sysctl takes.
fn idle(
    tap: &Tap,
    m: usize,
    table: bool,
) -> Result<((u64, u64), Option<u64>), (&'static str, Errno)> {
    let mut fds_mem = sys::scratch::<i32>(MAX_FDS, -1);
    let fds = &mut fds_mem[..];
    let m = m.min(MAX_FDS);
    let mut r = Ok(((0, 0), None));
    for fd in fds[..m].iter_mut() {
        match au::listener(8) {
            Ok((l, _)) => *fd = l.into_raw(),
            Err(e) => {
                r = Err(("idle listener", e));
                break;
            }
        }
    }
    if r.is_ok() {
        r = au::listener(128)
            .map_err(|e| ("listener", e))
            .and_then(|(l, sa)| timed(l.raw(), &sa, b"x", ROUNDS))
            .map(|x| (x, None));
    }
    if let (true, Ok((_, t))) = (table, r.as_mut()) {
        let mut buf_mem = sys::scratch::<u8>(1 << 20, 0);
        let buf = &mut buf_mem[..];
        let t0 = sys::now_us();
        let mut len = 0;
        for _ in 0..TABLE_READS {
            match sysctl::read_opaque(au::TABLE, buf) {
                Ok(l) => len = l,
                Err(e) => {
                    tap.diag(format_args!("  {}: {}", au::TABLE, e));
                    break;
                }
            }
        }
        let us = sys::now_us().saturating_sub(t0);
        if len > 0 {
            tap.diag(format_args!("  {} is {} bytes", au::TABLE, len));
            *t = Some(us / TABLE_READS);
        }
    }
    close_fds(&mut fds[..m]);
    r
}

/// The held-N rows (httpready, against stock accf_http) and the idle-M
/// rows (no filter, against the plain kernel), each measured interleaved
/// A B B A (t_bench_paired.rs); memory is measured on listenq's first
/// held run, the listeners sysctl on its first idle=2000 run.
fn scaling(
    tap: &mut Tap,
    held_cps: &mut [(paired::Side, paired::Side); 4],
    idle_cps: &mut [(paired::Side, paired::Side); 3],
) {
    for (i, n) in HELD.iter().enumerate() {
        let mut first = true;
        let mut run = |tap: &mut Tap, lq: bool| {
            let mem = lq && core::mem::take(&mut first);
            held(tap, *n, mem)
        };
        let label = format_args!("held={}", n);
        held_cps[i] = paired::compare_with(
            tap,
            &label,
            Some(au::ACCF_HTTP),
            false,
            &paired::ABBA1,
            ROUNDS,
            &mut run,
        );
    }
    for (i, m) in IDLE.iter().enumerate() {
        let mut first = true;
        let mut run = |tap: &mut Tap, lq: bool| {
            let table = lq && *m == 2000 && core::mem::take(&mut first);
            match idle(tap, *m, table) {
                Ok((x, Some(us))) => {
                    tap.diag(format_args!(
                        "bench listeners-sysctl {} idle listeners: {} us per read",
                        m, us
                    ));
                    crate::tap::print(format_args!("# bench sysctl-read {} {}", m, us));
                    Ok(x)
                }
                Ok((x, None)) => Ok(x),
                Err(e) => Err(e),
            }
        };
        let label = format_args!("idle={}", m);
        idle_cps[i] =
            paired::compare_with(tap, &label, None, false, &paired::ABBA1, ROUNDS, &mut run);
    }
}

/// The flood row (t_fair.rs `bench`): the share of real clients a
/// filtered listener serves while a few addresses flood it with
/// connections that never send, under listenq's two eviction rules and
/// under stock accf_http (which, like listen(2), drops the oldest).
fn flood(tap: &mut Tap) {
    use crate::t_fair::{self, bench::share};
    if let Err(e) = t_fair::add_flooders() {
        tap.skip("bench flood", format_args!("lo0 aliases: {}", e));
        return;
    }
    let row = |tap: &mut Tap, who: &str, arg: &str| -> Option<(usize, usize)> {
        match share(arg) {
            Ok(s) => {
                tap.diag(format_args!(
                    "bench flood {}: {} of {} clients served ({}%), {} flood connections from {} addresses",
                    who,
                    s.served,
                    s.clients,
                    s.served * 100 / s.clients.max(1),
                    s.flood,
                    t_fair::FLOODERS.len()
                ));
                crate::tap::print(format_args!(
                    "# bench flood-share {} {} {}",
                    who, s.served, s.clients
                ));
                Some((s.served, s.clients))
            }
            Err((step, e)) => {
                tap.ok(false, format_args!("bench flood {}: {}: {}", who, step, e));
                None
            }
        }
    };
    let inherit = match au::listenq_loaded() {
        Ok(id) => {
            let inherit = sysctl::read_int("kern.ipc.listenq.accf_inherit").unwrap_or(-1);
            let oldest = row(tap, "listenq-oldest", "evict=oldest");
            let fair = row(tap, "listenq-fair", "evict=fair");
            if let (Some(o), Some(f)) = (oldest, fair) {
                tap.ok(
                    f.0 * 10 >= f.1 * 9 && f.0 > o.0,
                    "bench flood: evict=fair serves at least 90% of the real clients, and more than oldest-first",
                );
            }
            let _ = au::allocs_settle(2000);
            let _ = kld::unload(id);
            inherit
        }
        Err(e) => {
            tap.ok(false, format_args!("bench flood: kldload listenq: {}", e));
            return;
        }
    };
    if inherit != 1 {
        tap.diag(format_args!(
            "bench flood stock: not measured (accf_inherit {}: stock accept filters hold nothing on this kernel)",
            inherit
        ));
        return;
    }
    match kld::load(au::ACCF_HTTP) {
        Ok(id) => {
            row(tap, "stock-accf_http", "");
            let _ = kld::unload(id);
        }
        Err(e) => tap.diag(format_args!("bench flood stock: kldload accf_http: {}", e)),
    }
}

/// x/y with four decimals.
fn frac(x: u64, y: u64) -> (u64, u64) {
    let r = x * 10000 / y.max(1);
    (r / 10000, r % 10000)
}

/// Each N (or M) against N = 0, listenq and its counterpart, from the
/// interleaved pairs: how much each slows down as N grows, and listenq/base.
fn scaling_ratios(
    tap: &Tap,
    what: &str,
    ns: &[usize],
    pairs: &[(paired::Side, paired::Side)],
    base: &str,
) {
    let Some(&(st0, lq0)) = pairs.first() else {
        return;
    };
    let (Some(lq0), Some(st0)) = (lq0.cps(), st0.cps()) else {
        return;
    };
    for (n, (st, lq)) in ns.iter().zip(pairs.iter()) {
        if let (Some(a), Some(b)) = (lq.cps(), st.cps()) {
            let (la, lb) = frac(a, lq0);
            let (sa, sb) = frac(b, st0);
            let (ra, rb) = frac(a, b);
            tap.diag(format_args!(
                "bench ratio {}={}: listenq {}.{:04} of its {}=0, {} {}.{:04}; listenq/{} {}.{:04}",
                what, n, la, lb, what, base, sa, sb, base, ra, rb
            ));
        }
    }
}

/// One row: `label` (a filter, or what=N) for `who`, measured over
/// `rounds` connections.
fn report(
    tap: &mut Tap,
    label: &dyn core::fmt::Display,
    rounds: u64,
    who: &str,
    r: Result<(u64, u64), (&'static str, Errno)>,
) -> Option<u64> {
    match r {
        Ok((cps, us)) => {
            tap.ok(
                true,
                format_args!(
                    "bench {} {}: {} conns/s ({} connections in {} ms)",
                    label,
                    who,
                    cps,
                    rounds,
                    us / 1000
                ),
            );
            crate::tap::print(format_args!("# bench {} {} {}", label, who, cps));
            Some(cps)
        }
        Err((step, e)) => {
            tap.ok(false, format_args!("bench {} {}", label, who));
            tap.diag(format_args!("  {}: {}", step, e));
            None
        }
    }
}

/// listenq's figure `a` against `b`, that of `base` (stock module or
/// the plain kernel), as BENCHMARKS.md quotes it.
fn ratio(tap: &Tap, filter: &dyn core::fmt::Display, a: Option<u64>, b: Option<u64>, base: &str) {
    if let (Some(a), Some(b)) = (a, b) {
        if b > 0 {
            let (i, f) = frac(a, b);
            tap.diag(format_args!(
                "bench ratio {} listenq/{} {}.{:04}",
                filter, base, i, f
            ));
        }
    }
}

/// The interleaved comparisons (t_bench_paired.rs): hooks against the
/// plain kernel, then each filter with a stock counterpart.
const PAIRS: [paired::Pair; 5] = [
    paired::Pair {
        label: "none",
        filter: None,
        stock: None,
        stock_under_hooks: false,
        req: b"x",
        rounds: PAIR_ITERS,
    },
    paired::Pair {
        label: "dataready",
        rounds: PAIR_ITERS,
        filter: Some("dataready"),
        stock: Some(au::ACCF_DATA),
        stock_under_hooks: false,
        req: b"x",
    },
    paired::Pair {
        label: "httpready",
        rounds: PAIR_ITERS,
        filter: Some("httpready"),
        stock: Some(au::ACCF_HTTP),
        stock_under_hooks: false,
        req: GET,
    },
    paired::Pair {
        label: "dnsready",
        rounds: PAIR_ITERS,
        filter: Some("dnsready"),
        stock: Some(au::ACCF_DNS),
        stock_under_hooks: false,
        req: DNSQ,
    },
    // The ceiling of any Rust filter: stock accf_data with listenq's hooks
    // on every connection, against stock accf_data alone.
    paired::Pair {
        label: "accf_data+hooks",
        rounds: PAIR_ITERS,
        filter: Some("dataready"),
        stock: Some(au::ACCF_DATA),
        stock_under_hooks: true,
        req: b"x",
    },
];

pub fn run(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.v4 {
        tap.skip("bench", format_args!("127.0.0.1 unusable ({})", e));
        return;
    }
    let mut b = [0u8; 16];
    if matches!(sys::kenv_get(c"listenq.bench", &mut b), Ok(b"smp")) {
        raise_limits(tap);
        crate::t_bench_smp::run(tap);
        return;
    }
    let t0 = sys::now_ms();
    tap.diag(format_args!(
        "bench: {} timed connections per measurement after {} warm-up",
        ITERS, WARMUP
    ));
    let mut held_rows = [(paired::Side::default(), paired::Side::default()); 4];
    let mut idle_rows = [(paired::Side::default(), paired::Side::default()); 3];
    raise_limits(tap);
    // The bench unloads listenq to measure stock: opt in (the tunable
    // kldload reads; listenq(4) UNLOADING).
    let _ = sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1");
    // And the stock modules, which take turns with listenq: their unload
    // is refused unless net.accf.unloadable is set (uipc_accf.c).
    let _ = sysctl::write_int("net.accf.unloadable", 1);
    let mut pairs = [(paired::Side::default(), paired::Side::default()); PAIRS.len()];
    let mut only = [0u8; 16];
    let only = sys::kenv_get(c"listenq.bench_only", &mut only).unwrap_or(b"");
    if only == b"flood" {
        flood(tap);
        return;
    }
    for (i, p) in PAIRS.iter().enumerate() {
        if only.is_empty() || only == p.label.as_bytes() {
            pairs[i] = paired::compare(tap, p, measure);
        }
    }
    // Requests in pieces (issue 19); not in the quick run.
    let pieces = if quick() && only.is_empty() {
        None
    } else {
        Some(crate::t_bench_pieces::run(tap, only))
    };
    match au::listenq_loaded() {
        // A profile of one side (paired::side_only) holds nothing else,
        // and one row (listenq.bench_only) is only that row.
        _ if paired::side_only().is_some() || !only.is_empty() => {}
        Ok(id) => {
            tap.ok(true, "bench: kldload listenq");
            let (f, req) = FILTERS[3];
            report(tap, &f, ITERS, "listenq", measure(Some(f), req, ITERS));
            let settled = au::allocs_settle(2000);
            let un = kld::unload(id);
            tap.ok(
                settled.is_ok() && un.is_ok(),
                "bench: allocs and memuse 0 and kldunload listenq",
            );
            if settled.is_err() || un.is_err() {
                tap.diag(format_args!("  allocs {:?}, kldunload {:?}", settled, un));
            }
        }
        Err(e) => {
            tap.ok(false, "bench: kldload listenq");
            tap.diag(format_args!("  {}", e));
        }
    }
    if !quick() && only.is_empty() {
        scaling(tap, &mut held_rows, &mut idle_rows);
        flood(tap);
    }
    for (p, (a, b)) in PAIRS.iter().zip(pairs.iter()) {
        let base = if p.stock.is_some() { "stock" } else { "bare" };
        ratio(tap, &p.label, b.cps(), a.cps(), base);
        ratio(
            tap,
            &format_args!("{} (best runs)", p.label),
            b.best(),
            a.best(),
            base,
        );
    }
    if let Some(pieces) = pieces {
        for (row, (a, b)) in crate::t_bench_pieces::ROWS.iter().zip(pieces.iter()) {
            let base = if row.stock.is_some() { "stock" } else { "bare" };
            ratio(tap, &row.label, b.cps(), a.cps(), base);
        }
    }
    scaling_ratios(tap, "held", &HELD, &held_rows, "stock");
    scaling_ratios(tap, "idle", &IDLE, &idle_rows, "bare");
    tap.diag(format_args!(
        "bench took {} ms (guest clock)",
        sys::now_ms() - t0
    ));
}
