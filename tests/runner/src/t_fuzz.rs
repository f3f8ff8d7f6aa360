//! A seeded syscall-sequence fuzzer for listenq's surface (kernel env
//! `listenq.fuzz`, see main.rs): a small syzkaller that only knows
//! listen/accept/close, SO_ACCEPTFILTER, the requests the filters parse,
//! SCM_RIGHTS and listenq's sysctls.
//!
//! Modes (the value of `listenq.fuzz`, at most 31 bytes; `:` separates
//! like `,`, since run-vm.sh's LISTENQ_VM_KENV and QEMU's -append split
//! the kernel environment at commas: `LISTENQ_VM_KENV=listenq.fuzz=5:500`):
//!
//! - `SEED` or `SEED,OPS`: one sequence, seed SEED, OPS operations per
//!   worker (default DEFAULT_OPS). A human bisects OPS by hand with it.
//! - `ci`: seeds 1..=CI_SEEDS with CI_OPS each, then the campaigns'
//!   regression seeds (CI_REGRESSIONS) with DEFAULT_OPS (about a minute
//!   and a half of VM time on 2 vCPUs).
//! - `campaign,SECONDS` or `campaign,SECONDS,FIRST`: seeds FIRST (default
//!   1), FIRST + 1, ... with DEFAULT_OPS each, until SECONDS of wall time
//!   have passed (checked before each seed). A later campaign starts where
//!   an earlier one stopped, so that together they cover new seeds.
//! - `shrink,SEED` or `shrink,SEED,OPS`: runs the seed with OPS, then with
//!   half as many ops while it still fails a runner-level invariant, then
//!   bisects between the last failing and the first passing count, and
//!   reports the smallest failing count found. A kernel panic ends the VM,
//!   so it cannot be shrunk from in here: rerun from the host with
//!   `listenq.fuzz=SEED,OPS` and smaller OPS until the panic goes away
//!   (operation i of a worker does not depend on OPS, so a smaller OPS
//!   runs a prefix of the same sequence; the interleaving of the workers
//!   varies from run to run, so try each count a few times).
//!
//! A sequence (one seed): the parent forks WORKERS workers
//! (fuzz_worker.rs): two as root, one that setuid()s to 1001; for seeds
//! with seed % 3 == 2 one of the root ones jail()s itself first. Each runs
//! OPS random operations on its own table of descriptors and exits. The
//! parent meanwhile, every ~200 ms, reads listenq's tables and counters
//! and, for "reload" seeds, tries kldunload of listenq (EBUSY while a
//! filter is in use is expected) and kldloads it again, until the workers
//! are RELOAD_PCT % of the way (they report progress), so that the
//! counters' last window is long. Everything about a seed but its op
//! count comes from the seed (`Plan::of`): the profile of operation
//! weights (seed % 4: balanced, no filters, filter-heavy, local-heavy),
//! reload or not ((seed / 4) % 2 == 0), whether received descriptors join
//! the tables (seed % 4 == 3 or seed % 5 == 0), the jail. Afterwards, with
//! every worker gone, listenq loaded and the knobs the workers changed
//! restored, it checks (one TAP line per seed):
//!
//! - every worker exited 0: none saw a listen queue beyond its limits
//!   (fuzz_worker.rs queue_check states the bounds and why), none hung;
//! - kldload never failed, kldunload failed only with EBUSY, and listenq
//!   is loaded at the end;
//! - kern.ipc.listenq.allocs and memuse are back to their values before
//!   the sequence (polled for up to SETTLE_MS; each poll closes a local
//!   socket so that the local-socket garbage collector runs and frees
//!   descriptors left in SCM_RIGHTS cycles);
//! - the counters add up (see `check_counters`).
//!
//! Panics and WITNESS/INVARIANTS complaints are judged by the harness on
//! the console, not here. With kernel env `listenq.fuzz_trace=1` as well,
//! every worker prints each operation (`# fz wW #I OP`) before running it,
//! so the console shows which operations preceded a complaint.

use crate::accf_util as au;
use crate::env::{Env, KO_NAME, KO_PATH};
use crate::fuzz_gen::Buf;
use crate::fuzz_worker::{
    self as fw, Params, Profile, Report, KNOB_INTS as INTS, REPORT_LEN, WORKERS,
};
use crate::kld;
use crate::net;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::t_accf_counts::Stats;
use crate::tap::Tap;
use core::fmt::Write;

pub const DEFAULT_OPS: u64 = 3000;
pub const CI_SEEDS: u64 = 24;
pub const CI_OPS: u64 = 2000;
/// Campaign seeds that found a bug, replayed by `ci` with DEFAULT_OPS
/// each after the numbered ones (RELIABILITY.md): 12087, finding 9 (a TCP
/// listener closed under a local socket's vnode lock; the module of
/// 186ef59 slept there, which WITNESS reports on every run of it).
pub const CI_REGRESSIONS: [u64; 1] = [12087];
/// How long allocs/memuse (and the close count) may take to settle.
const SETTLE_MS: u64 = 3000;
/// The parent's period between module and sysctl rounds.
const ROUND_MS: u64 = 200;
/// Reload seeds: kldunload/kldload rounds until this share of the ops.
const RELOAD_PCT: u64 = 60;

const MEMUSE: &str = "kern.ipc.listenq.memuse";
const UNLOADABLE: &str = "kern.ipc.listenq.unloadable";

#[derive(Clone, Copy, Debug)]
enum Mode {
    One { seed: u64, ops: u64 },
    Ci,
    Campaign { secs: u64, first: u64 },
    Shrink { seed: u64, ops: u64 },
}

/// A decimal number (also the operator tool's, tool.rs).
pub fn num(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

fn parse(v: &[u8]) -> Option<Mode> {
    let mut parts = v.split(|&c| c == b',' || c == b':');
    let a = parts.next()?;
    let b = parts.next();
    let c = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let ops = |x: Option<&[u8]>| match x {
        None => Some(DEFAULT_OPS),
        Some(s) => num(s).filter(|&n| n > 0 && n <= 10_000_000),
    };
    match a {
        b"ci" if b.is_none() => Some(Mode::Ci),
        b"campaign" => Some(Mode::Campaign {
            secs: num(b?).filter(|&s| s > 0)?,
            first: match c {
                None => 1,
                Some(s) => num(s).filter(|&f| f > 0 && f < u64::MAX)?,
            },
        }),
        b"shrink" => Some(Mode::Shrink {
            seed: num(b?)?,
            ops: ops(c)?,
        }),
        _ if c.is_none() => Some(Mode::One {
            seed: num(a)?,
            ops: ops(b)?,
        }),
        _ => None,
    }
}

// ---------------------------------------------------------------- knobs

/// The knobs workers write (fuzz_worker.rs `sysctl_write`), saved once and
/// restored after every sequence: the host-wide ones and the host vnet's
/// overrides (kern.ipc.listenq.vnet.*).
struct Knobs {
    ints: [Option<i32>; INTS.len()],
    strs: [([u8; 256], usize, bool); fw::KNOB_STRS.len()],
}

impl Knobs {
    fn save() -> Knobs {
        let mut k = Knobs {
            ints: INTS.map(|n| sysctl::read_int(n).ok()),
            strs: [([0u8; 256], 0, false); fw::KNOB_STRS.len()],
        };
        for (d, name) in k.strs.iter_mut().zip(fw::KNOB_STRS) {
            if let Ok(v) = sysctl::read_string(name, &mut d.0) {
                d.1 = v.len();
                d.2 = true;
            }
        }
        k
    }

    /// Writes every saved value back; returns how many writes failed.
    fn restore(&self) -> u32 {
        let mut bad = 0;
        for (v, name) in self.ints.iter().zip(INTS) {
            if let Some(v) = v {
                bad += u32::from(sysctl::write_int(name, *v).is_err());
            }
        }
        for (d, name) in self.strs.iter().zip(fw::KNOB_STRS) {
            if d.2 {
                bad += u32::from(sysctl::write_string(name, &d.0[..d.1]).is_err());
            }
        }
        bad
    }

    fn changed(&self) -> bool {
        let mut b = [0u8; 256];
        !(self
            .ints
            .iter()
            .zip(INTS)
            .all(|(v, name)| v.is_none() || sysctl::read_int(name).ok() == *v)
            && self.strs.iter().zip(fw::KNOB_STRS).all(|(d, name)| {
                !d.2 || sysctl::read_string(name, &mut b).is_ok_and(|v| v == &d.0[..d.1])
            }))
    }
}

// ---------------------------------------------------------------- the module

/// listenq's state as the parent drives it during a sequence.
#[derive(Default)]
struct Module {
    id: Option<i32>,
    unloads: u32,
    busy: u32,
    loads: u32,
    unload_errs: u32,
    load_errs: u32,
    first_err: Option<(&'static str, Errno)>,
}

impl Module {
    fn ensure_loaded(&mut self) {
        if self.id.is_some() {
            return;
        }
        if let Ok(id) = kld::find(KO_NAME) {
            self.id = Some(id);
            return;
        }
        // Bounded retries: a load right after an unload may race the
        // taskqueue's exit (it should not, which is what is checked).
        for _ in 0..3 {
            match kld::load(KO_PATH) {
                Ok(id) => {
                    self.id = Some(id);
                    self.loads += 1;
                    let _ = sysctl::write_int(UNLOADABLE, 1);
                    return;
                }
                Err(e) => {
                    self.load_errs += 1;
                    self.first_err.get_or_insert(("kldload", e));
                    sys::sleep_ms(50);
                }
            }
        }
    }

    /// One kldunload attempt, and a kldload when it succeeded.
    fn cycle(&mut self) {
        match self.id {
            Some(id) => match kld::unload(id) {
                Ok(()) => {
                    self.unloads += 1;
                    self.id = None;
                    sys::sleep_ms(20);
                    self.ensure_loaded();
                }
                Err(Errno::EBUSY) => self.busy += 1,
                Err(e) => {
                    self.unload_errs += 1;
                    self.first_err.get_or_insert(("kldunload", e));
                }
            },
            None => self.ensure_loaded(),
        }
    }
}

/// What listenq has allocated (u64::MAX: unreadable).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Live {
    allocs: u64,
    memuse: u64,
}

fn live() -> Live {
    Live {
        allocs: au::allocs().unwrap_or(u64::MAX),
        memuse: sysctl::read_u64(MEMUSE).unwrap_or(u64::MAX),
    }
}

/// The idle baseline: two equal reads in a row (bounded).
fn baseline() -> Live {
    let mut last = live();
    for _ in 0..20 {
        sys::sleep_ms(25);
        let now = live();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Removes every socket file a sequence may have made (/tmp is a tmpfs:
/// a long campaign would fill it otherwise).
fn remove_paths(seed: u64) {
    let mut p = Buf::<64>::new();
    let rm = |p: &Buf<64>| {
        if let Ok(c) = core::ffi::CStr::from_bytes_until_nul(p.bytes()) {
            let _ = sys::unlink(c);
        }
    };
    for i in 0..fw::PORTS {
        fw::fixed_path(seed, i, &mut p);
        rm(&p);
    }
    for w in 0..WORKERS {
        for n in 0..fw::FRESH_PATHS {
            fw::fresh_path(seed, w, n, &mut p);
            rm(&p);
        }
    }
}

/// Makes the local-socket garbage collector run: it is scheduled when a
/// local socket is detached while descriptors are in flight.
fn nudge_unp_gc() {
    let _ = sys::socketpair(net::AF_UNIX, net::SOCK_STREAM);
}

/// The parent's reads while the workers run (errors are expected while
/// listenq is unloaded).
fn read_tables() {
    let mut b = [0u8; 32768];
    let _ = sysctl::read_opaque(au::TABLE, &mut b);
    let _ = sysctl::read_opaque("kern.ipc.listenq.xlisteners", &mut b);
    let _ = Stats::read();
    let _ = live();
}

// ---------------------------------------------------------------- a sequence

/// How a seed runs (all derived from the seed, never from the op count).
#[derive(Clone, Copy)]
struct Plan {
    profile: Profile,
    /// The parent tries kldunload/kldload every round.
    reload: bool,
    /// Received descriptors join the workers' tables.
    share: bool,
    /// Worker 1 jail()s itself first.
    jail: bool,
}

impl Plan {
    fn of(seed: u64) -> Plan {
        Plan {
            profile: match seed % 4 {
                0 => Profile::Balanced,
                1 => Profile::NoFilters,
                2 => Profile::FilterHeavy,
                _ => Profile::LocalHeavy,
            },
            reload: (seed / 4).is_multiple_of(2),
            share: seed % 4 == 3 || seed.is_multiple_of(5),
            jail: seed % 3 == 2,
        }
    }
}

struct Outcome {
    ops: u64,
    failed: bool,
}

/// Kernel env listenq.fuzz_trace=1: workers print every operation.
fn trace() -> bool {
    let mut b = [0u8; 8];
    matches!(sys::kenv_get(c"listenq.fuzz_trace", &mut b), Ok(b"1"))
}

/// The socket kinds the VM offers (as env.rs found out).
fn kinds(env: &Env) -> ([Kind; 4], usize) {
    let mut k = [Kind::Tcp4; 4];
    let mut n = 0;
    for kind in [
        Kind::Tcp4,
        Kind::Tcp6,
        Kind::UnixStream,
        Kind::UnixSeqpacket,
    ] {
        if env.unusable(kind).is_none() {
            k[n] = kind;
            n += 1;
        }
    }
    (k, n)
}

fn exit_code(status: i32) -> Option<i32> {
    (status & 0x7f == 0).then_some((status >> 8) & 0xff)
}

/// A short text of what went wrong, for the TAP line's diagnostics.
struct Why {
    buf: crate::tap::Line,
    any: bool,
}

impl Why {
    fn new() -> Why {
        Why {
            buf: crate::tap::Line::new(),
            any: false,
        }
    }
    fn add(&mut self, args: core::fmt::Arguments) {
        if self.any {
            let _ = self.buf.write_str("; ");
        }
        let _ = self.buf.write_fmt(args);
        self.any = true;
    }
}

impl core::fmt::Display for Why {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(self.buf.as_bytes()).unwrap_or("?"))
    }
}

/// Runs one sequence; with `emit` one TAP line, otherwise diagnostics only
/// (shrink mode).
fn sequence(tap: &mut Tap, env: &Env, knobs: &Knobs, seed: u64, ops: u64, emit: bool) -> Outcome {
    let plan = Plan::of(seed);
    let (kinds, nkinds) = kinds(env);
    let t0 = sys::now_ms();
    let mut why = Why::new();
    let mut m = Module::default();
    m.ensure_loaded();
    let _ = sysctl::write_int(UNLOADABLE, 1);
    if knobs.restore() > 0 {
        why.add(format_args!(
            "knobs could not be restored before the sequence"
        ));
    }
    let base = baseline();
    let s0 = Stats::read();
    tap.diag(format_args!(
        "fuzz seed {}: {} ops ({} workers x {}), profile {}, {}{}{}; baseline {} allocations, {} bytes",
        seed,
        ops * WORKERS as u64,
        WORKERS,
        ops,
        plan.profile.label(),
        if plan.reload {
            "kldunload/kldload rounds"
        } else {
            "listenq stays loaded"
        },
        if plan.share { ", descriptors shared" } else { "" },
        if plan.jail { ", worker 1 jailed" } else { "" },
        base.allocs,
        base.memuse
    ));

    let mut reports = [Report::default(); WORKERS];
    let mut nrep = 0;
    let mut pids = [0i32; WORKERS];
    let mut status: [Option<i32>; WORKERS] = [None; WORKERS];
    let mut forked = 0;
    let mut hung = 0u32;
    let mut progress = [0u64; WORKERS];
    // Budget: generous, only there to catch a hang.
    let worker_deadline = t0 + 15_000 + ops * 30;
    let kill_at = worker_deadline + 15_000;
    match sys::socketpair(net::AF_UNIX, net::SOCK_DGRAM) {
        Err(e) => why.add(format_args!("socketpair: {}", e)),
        Ok((rd, wr)) => {
            let _ = sock::set_nonblock(rd.raw());
            for (w, pid) in pids.iter_mut().enumerate() {
                let p = Params {
                    seed,
                    worker: w,
                    ops,
                    kinds,
                    nkinds,
                    profile: plan.profile,
                    share: plan.share,
                    jail: plan.jail && w == 1,
                    unprivileged: w == 2,
                    deadline_ms: worker_deadline,
                    trace: trace(),
                };
                match sys::fork() {
                    Ok(sys::Forked::Child) => {
                        let _ = sys::close(rd.raw());
                        fw::run(p, wr.raw())
                    }
                    Ok(sys::Forked::Parent(c)) => {
                        *pid = c;
                        forked += 1;
                    }
                    Err(e) => {
                        why.add(format_args!("fork: {}", e));
                        break;
                    }
                }
            }
            // The parent's rounds until every worker is gone.
            let mut next_round = sys::now_ms() + ROUND_MS;
            let mut guard = 0u64;
            loop {
                guard += 1;
                for w in 0..forked {
                    if status[w].is_none() {
                        if let Ok(Some(s)) = sys::wait4_nohang(pids[w]) {
                            status[w] = Some(s);
                        }
                    }
                }
                collect(rd.raw(), &mut reports, &mut nrep, &mut progress);
                if status[..forked].iter().all(|s| s.is_some()) {
                    break;
                }
                let now = sys::now_ms();
                if now >= kill_at || guard > 1_000_000 {
                    for w in 0..forked {
                        if status[w].is_none() {
                            hung += 1;
                            let _ = sys::kill(pids[w], sys::SIGKILL);
                        }
                    }
                    // Bounded: a process stuck in the kernel may not die.
                    let t = sys::now_ms();
                    while sys::now_ms() - t < 5000 {
                        for w in 0..forked {
                            if status[w].is_none() {
                                if let Ok(Some(s)) = sys::wait4_nohang(pids[w]) {
                                    status[w] = Some(s);
                                }
                            }
                        }
                        if status[..forked].iter().all(|s| s.is_some()) {
                            break;
                        }
                        sys::sleep_ms(50);
                    }
                    break;
                }
                if now >= next_round {
                    next_round = now + ROUND_MS;
                    // Unload rounds for the first RELOAD_PCT % of the
                    // ops, so that the counters' last window is long.
                    let done: u64 = progress.iter().sum();
                    if plan.reload && done * 100 < ops * WORKERS as u64 * RELOAD_PCT {
                        m.cycle();
                    }
                    read_tables();
                }
                sys::sleep_ms(20);
            }
            collect(rd.raw(), &mut reports, &mut nrep, &mut progress);
            drop((rd, wr));
        }
    }
    let t_run = sys::now_ms() - t0;

    // Teardown: listenq loaded, knobs back, everything settled.
    remove_paths(seed);
    m.ensure_loaded();
    let _ = sysctl::write_int(UNLOADABLE, 1);
    let restore_failed = knobs.restore();
    let reps = &reports[..nrep];
    let sum = |f: fn(&Report) -> u64| reps.iter().map(f).sum::<u64>();
    let executed = sum(|r| r.ops);
    // Counters are exact across the whole sequence only if listenq was
    // never unloaded in it (they start from 0 at each load).
    let exact = m.unloads == 0;
    let want_closes = sum(|r| r.new_listeners);
    let t_settle = sys::now_ms();
    let mut after = live();
    let mut s1 = Stats::read();
    while sys::now_ms() - t_settle < SETTLE_MS {
        nudge_unp_gc();
        after = live();
        s1 = Stats::read();
        let closed = match (&s0, &s1) {
            (Ok(a), Ok(b)) if exact => b.since(a).closes >= want_closes,
            _ => true,
        };
        if after == base && closed {
            break;
        }
        sys::sleep_ms(50);
    }
    let settle_ms = sys::now_ms() - t_settle;

    // Workers.
    for (w, st) in status.iter().enumerate().take(forked) {
        match *st {
            None => why.add(format_args!("worker {} did not end", w)),
            Some(st) => match exit_code(st) {
                Some(0) => {}
                Some(c) if c == fw::EXIT_QLEN || c == fw::EXIT_INCQLEN => why.add(format_args!(
                    "worker {} saw {} beyond its limit",
                    w,
                    if c == fw::EXIT_QLEN {
                        "SO_LISTENQLEN"
                    } else {
                        "SO_LISTENINCQLEN"
                    }
                )),
                Some(c) => why.add(format_args!("worker {} exit status {}", w, c)),
                None => why.add(format_args!("worker {} killed by signal {}", w, st & 0x7f)),
            },
        }
    }
    if hung > 0 {
        why.add(format_args!(
            "{} worker(s) still running after {} ms: killed",
            hung,
            kill_at - t0
        ));
    }
    if nrep != forked || forked != WORKERS {
        why.add(format_args!("{} workers forked, {} reports", forked, nrep));
    }
    for r in reps {
        if r.violation != 0 {
            why.add(format_args!(
                "worker {} op {}: qlen {} incqlen {} qlimit {} (largest seen {}) filter {}",
                r.worker, r.v_op, r.v_qlen, r.v_incqlen, r.v_qlimit, r.v_qmax, r.v_filter
            ));
        }
    }

    // The module.
    let loaded = kld::find(KO_NAME).is_ok();
    if !loaded || m.load_errs > 0 || m.unload_errs > 0 {
        why.add(format_args!(
            "module: loaded at the end {}, kldload errors {}, kldunload errors other than EBUSY {} (first {:?})",
            loaded, m.load_errs, m.unload_errs, m.first_err
        ));
    }
    if restore_failed > 0 || knobs.changed() {
        why.add(format_args!(
            "knobs: {} restore writes failed, changed after restore {}",
            restore_failed,
            knobs.changed()
        ));
    }

    // Memory.
    let mut in_flight_listeners = 0;
    if after != base {
        let (rows, inflight) = kernel_held();
        if rows > 0 && inflight > 0 {
            in_flight_listeners = rows;
            // Listeners the kernel itself still has: descriptors in flight
            // in SCM_RIGHTS messages that the local-socket garbage
            // collector has not reclaimed (RELIABILITY.md, finding 6).
            // Their rows and queues are live listenq state, not a leak;
            // the memory check cannot be made while they exist.
            tap.diag(format_args!(
                "  memory not checked: {} listener(s) still exist, {} descriptors in flight (unp_gc has not reclaimed them); allocs/memuse {}/{}, baseline {}/{}",
                rows, inflight, after.allocs, after.memuse, base.allocs, base.memuse
            ));
            explain_leftovers(tap, base);
        } else {
            why.add(format_args!(
                "allocs/memuse {}/{} after {} ms, baseline {}/{}",
                after.allocs, after.memuse, settle_ms, base.allocs, base.memuse
            ));
            explain_leftovers(tap, base);
        }
    }

    // Counters.
    check_counters(
        &mut why,
        reps,
        &s0,
        &s1,
        exact,
        plan.share,
        in_flight_listeners,
    );

    let failed = why.any;
    let checks = if exact {
        "counters add up"
    } else {
        "counters add up since the last kldload"
    };
    let name_args = format_args!(
        "fuzz seed {}: {} ops, {}, memuse back to baseline, queues within limits",
        seed, executed, checks
    );
    if emit {
        tap.ok(!failed, name_args);
    } else {
        tap.diag(format_args!(
            "{} {}",
            if failed { "FAILS:" } else { "passes:" },
            name_args
        ));
    }
    if failed {
        tap.diag(format_args!("  {}", why));
    }
    tap.diag(format_args!(
        "  {} ms (+{} ms settling); kldunload {} ok, {} EBUSY; kldload {}; listen {} ({} listeners), accept {} (+{} ECONNABORTED), connect {}, send {}, filters set {}, SCM_RIGHTS {} sent / {} kept, sysctl writes {}, queue checks {}, no-ops {}, jail/setuid {:?}",
        t_run,
        settle_ms,
        m.unloads,
        m.busy,
        m.loads,
        sum(|r| r.listen_ok),
        sum(|r| r.new_listeners),
        sum(|r| r.accept_ok),
        sum(|r| r.accept_aborted),
        sum(|r| r.connects),
        sum(|r| r.sends),
        sum(|r| r.filters_set),
        sum(|r| r.rights_sent),
        sum(|r| r.rights_received),
        sum(|r| r.sysctl_writes),
        sum(|r| r.queue_checks),
        sum(|r| r.noops),
        [
            reps.iter().find(|r| r.worker == 1).map(|r| r.setup),
            reps.iter().find(|r| r.worker == 2).map(|r| r.setup)
        ]
    ));
    if let (Ok(a), Ok(b)) = (&s0, &s1) {
        let d = if exact { b.since(a) } else { *b };
        tap.diag(format_args!(
            "  stats{}: listens {} closes {} completed {} accepted {} overflows {} held {} released {} evicted {} timeouts {} nomem {}",
            if exact { " (difference)" } else { " (since the last kldload)" },
            d.listens,
            d.closes,
            d.completed,
            d.accepted,
            d.overflows,
            d.held,
            d.released,
            d.evicted,
            d.timeouts,
            d.nomem
        ));
    }
    Outcome {
        ops: executed,
        failed,
    }
}

/// What is left when allocs/memuse did not come back: the listeners
/// table, the local-socket garbage collector's counters, and whether it
/// settles given more time (bounded, 10 s).
/// Rows of the listeners table, and net.local.inflight (descriptors in
/// SCM_RIGHTS messages nobody has received).
fn kernel_held() -> (usize, i32) {
    let mut b = [0u8; 32768];
    let rows = sysctl::read_string(au::TABLE, &mut b).map_or(0, |t| {
        // An empty first line and the header, then one line a listener.
        t.split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            .saturating_sub(1)
    });
    (rows, sysctl::read_int("net.local.inflight").unwrap_or(0))
}

fn explain_leftovers(tap: &mut Tap, base: Live) {
    let mut b = [0u8; 32768];
    if let Ok(t) = sysctl::read_string(au::TABLE, &mut b) {
        for line in t.split(|&c| c == b'\n').take(40) {
            if !line.is_empty() {
                tap.diag(format_args!("  | {}", au::Show(line)));
            }
        }
    }
    let local = |n| sysctl::read_int(n).unwrap_or(-1);
    tap.diag(format_args!(
        "  net.local: sockcount {} inflight {} taskcount {} recycled {}",
        local("net.local.sockcount"),
        local("net.local.inflight"),
        local("net.local.taskcount"),
        local("net.local.recycled")
    ));
    let t = sys::now_ms();
    let mut now = live();
    while now != base && sys::now_ms() - t < 10_000 {
        nudge_unp_gc();
        sys::sleep_ms(100);
        now = live();
    }
    tap.diag(format_args!(
        "  {} after {} more ms: {} allocations, {} bytes",
        if now == base {
            "settled"
        } else {
            "still not back"
        },
        sys::now_ms() - t,
        now.allocs,
        now.memuse
    ));
}

/// The counter identities of listenq(4) SYSCTL VARIABLES that hold for
/// any load, checked over the sequence when listenq stayed loaded
/// (`exact`), else over the window since its last kldload (every counter
/// starts from 0 at a load; listeners it adopted there were not counted by
/// `listens`, so only the relations below hold in such a window):
///
/// - released + evicted <= held: every held connection leaves the queue
///   released, evicted, or taken away by the kernel (listener closed,
///   incomplete queue overflow), which counts neither; with every listener
///   closed none is left held;
/// - timeouts <= held: a timeout is one held connection's;
/// - accepted <= completed: accept counts a connection whose completion
///   was recorded.
///
/// With listenq loaded throughout, also what the workers report:
///
/// - listens = the successful listen(2) calls, exactly;
/// - closes = the sockets that became listeners (their first successful
///   listen), all closed by now (when descriptors are shared through
///   SCM_RIGHTS, two processes may both see a socket become a listener:
///   closes <= that count; listeners whose descriptors are still in flight
///   for the local-socket garbage collector are not closed yet, finding
///   6: closes is at least that count less them);
/// - accepts that succeeded <= accepted <= those + accepts that failed
///   with ECONNABORTED (listenq's pr_accept counts after the kernel's,
///   whatever it returned);
///
/// the last two only when nomem is 0 (a listener or completion not
/// recorded for lack of memory is not counted).
fn check_counters(
    why: &mut Why,
    reps: &[Report],
    s0: &Result<Stats, crate::t_accf_counts::Step>,
    s1: &Result<Stats, crate::t_accf_counts::Step>,
    exact: bool,
    share: bool,
    in_flight: usize,
) {
    let (a, b) = match (s0, s1) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            why.add(format_args!("stats unreadable: {:?}", e));
            return;
        }
    };
    let d = if exact { b.since(a) } else { *b };
    let sum = |f: fn(&Report) -> u64| reps.iter().map(f).sum::<u64>();
    if d.released + d.evicted > d.held {
        why.add(format_args!(
            "released {} + evicted {} > held {}",
            d.released, d.evicted, d.held
        ));
    }
    if d.timeouts > d.held {
        why.add(format_args!("timeouts {} > held {}", d.timeouts, d.held));
    }
    if d.accepted > d.completed {
        why.add(format_args!(
            "accepted {} > completed {}",
            d.accepted, d.completed
        ));
    }
    if !exact {
        return;
    }
    let listens = sum(|r| r.listen_ok);
    if d.listens != listens {
        why.add(format_args!(
            "stats.listens +{}, successful listen() calls {}",
            d.listens, listens
        ));
    }
    if d.nomem == 0 {
        let new = sum(|r| r.new_listeners);
        // Listeners whose descriptors are still in flight (the memory
        // check's `in_flight`, finding 6) are not closed yet.
        let at_least = new.saturating_sub(in_flight as u64);
        if (share && d.closes > new) || (!share && !(at_least..=new).contains(&d.closes)) {
            why.add(format_args!(
                "stats.closes +{}, listeners created {}",
                d.closes, new
            ));
        }
        let (acc, aborted) = (sum(|r| r.accept_ok), sum(|r| r.accept_aborted));
        if d.accepted < acc || d.accepted > acc + aborted {
            why.add(format_args!(
                "stats.accepted +{}, accept() returned {} connections (+{} ECONNABORTED)",
                d.accepted, acc, aborted
            ));
        }
    }
}

/// Reads every report waiting on `fd` (nonblocking).
/// Reads every report and progress datagram waiting on `fd`
/// (nonblocking).
fn collect(fd: i32, out: &mut [Report; WORKERS], n: &mut usize, progress: &mut [u64; WORKERS]) {
    let mut b = [0u8; REPORT_LEN];
    for _ in 0..64 {
        match sys::read(fd, &mut b) {
            Ok(REPORT_LEN) if *n < out.len() => {
                out[*n] = Report::from_bytes(&b);
                *n += 1;
            }
            Ok(len) => {
                if let Some((w, ops)) = fw::progress_of(&b[..len.min(REPORT_LEN)]) {
                    if let Some(p) = progress.get_mut(w) {
                        *p = (*p).max(ops);
                    }
                }
            }
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------- modes

pub fn run(tap: &mut Tap, env: &Env, v: &[u8]) {
    let Some(mode) = parse(v) else {
        tap.ok(
            false,
            format_args!(
                "listenq.fuzz={}: expected SEED[,OPS], ci, campaign,SECONDS[,FIRST] or shrink,SEED[,OPS]",
                au::Show(v)
            ),
        );
        return;
    };
    if let Err(e) = env.ko {
        tap.skip("fuzz", format_args!("listenq.ko not in image ({})", e));
        return;
    }
    // Every load from here on may be unloaded (a tunable for the loads
    // the parent does between rounds, and the sysctl for this one).
    let _ = sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1");
    if let Err(e) = au::listenq_loaded() {
        tap.ok(false, "fuzz: kldload listenq");
        tap.diag(format_args!("  kldload: {}", e));
        return;
    }
    let _ = sysctl::write_int(UNLOADABLE, 1);
    let knobs = Knobs::save();
    let t0 = sys::now_ms();
    let (mut seqs, mut total) = (0u64, 0u64);
    match mode {
        Mode::One { seed, ops } => {
            total += sequence(tap, env, &knobs, seed, ops, true).ops;
            seqs += 1;
        }
        Mode::Ci => {
            for seed in 1..=CI_SEEDS {
                total += sequence(tap, env, &knobs, seed, CI_OPS, true).ops;
                seqs += 1;
            }
            for seed in CI_REGRESSIONS {
                total += sequence(tap, env, &knobs, seed, DEFAULT_OPS, true).ops;
                seqs += 1;
            }
        }
        Mode::Campaign { secs, first } => {
            let mut seed = first;
            while sys::now_ms() - t0 < secs.saturating_mul(1000) && seed < u64::MAX {
                total += sequence(tap, env, &knobs, seed, DEFAULT_OPS, true).ops;
                seqs += 1;
                seed += 1;
            }
        }
        Mode::Shrink { seed, ops } => {
            let (s, t) = shrink(tap, env, &knobs, seed, ops);
            seqs += s;
            total += t;
        }
    }
    let _ = knobs.restore();
    tap.diag(format_args!(
        "fuzz: {} sequences, {} operations executed in total, {} ms",
        seqs,
        total,
        sys::now_ms() - t0
    ));
}

/// Halves the op count while the seed still fails a runner-level
/// invariant, then bisects between the last failing and the first passing
/// count (a few steps). Returns (sequences run, ops executed).
fn shrink(tap: &mut Tap, env: &Env, knobs: &Knobs, seed: u64, ops: u64) -> (u64, u64) {
    let (mut seqs, mut total) = (0u64, 0u64);
    let mut run = |tap: &mut Tap, n: u64| {
        let o = sequence(tap, env, knobs, seed, n, false);
        seqs += 1;
        total += o.ops;
        o.failed
    };
    if !run(tap, ops) {
        tap.ok(
            true,
            format_args!(
                "fuzz shrink seed {}: passes with {} ops per worker, nothing to shrink",
                seed, ops
            ),
        );
        return (seqs, total);
    }
    let (mut lo, mut hi) = (0u64, ops);
    let mut n = ops / 2;
    while n >= 1 {
        if run(tap, n) {
            hi = n;
            n /= 2;
        } else {
            lo = n;
            break;
        }
    }
    let mut steps = 0;
    while hi - lo > 1 && hi - lo > hi / 16 && steps < 6 {
        let mid = lo + (hi - lo) / 2;
        if run(tap, mid) {
            hi = mid;
        } else {
            lo = mid;
        }
        steps += 1;
    }
    tap.ok(
        false,
        format_args!(
            "fuzz shrink seed {}: fails with {} ops per worker; smallest failing count found {} (passed with {})",
            seed, ops, hi, lo
        ),
    );
    (seqs, total)
}
