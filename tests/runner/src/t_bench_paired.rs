//! The bench's comparisons of listenq against the kernel without it:
//! hooks against the plain kernel, each Rust filter against its stock
//! module. Measured interleaved, stock and listenq taking turns in the
//! order A B B A A B B A (the module loaded and unloaded in between), so
//! that whatever drifts during a boot (which ports come up, the state of
//! the kernel's tables after thousands of connections) weighs on both
//! sides alike instead of on whichever was measured later: one
//! measurement after another showed about 1% of such drift on the
//! production kernel, as much as the effect to be measured.

use crate::accf_util as au;
use crate::env::KO_NAME;
use crate::kld;
use crate::sys::Errno;
use crate::tap::Tap;

/// One side's measurements: all of them together (total rounds over total
/// guest time), and the best one.
///
/// The figure compared is the total. Runs long enough (t_bench.rs
/// PAIR_ITERS, ROUNDS) hold the kernel's periodic work in proportion, so
/// a side's runs agree closely and the total is its rate; the best run is
/// reported beside it, to show how far apart the runs were.
#[derive(Clone, Copy, Default)]
pub struct Side {
    rounds: u64,
    us: u64,
    runs: u32,
    best: u64,
}

impl Side {
    fn add(&mut self, rounds: u64, us: u64) {
        self.rounds += rounds;
        self.us += us;
        self.runs += 1;
        self.best = self.best.max(rounds * 1_000_000 / us.max(1));
    }

    /// Connections per second over every run.
    pub fn cps(&self) -> Option<u64> {
        (self.runs > 0).then(|| self.rounds * 1_000_000 / self.us.max(1))
    }

    /// The best run's connections per second.
    pub fn best(&self) -> Option<u64> {
        (self.runs > 0).then_some(self.best)
    }
}

/// One comparison: what is measured (`filter`, None for no filter) and,
/// for a filter, the stock module that provides it.
pub struct Pair {
    pub label: &'static str,
    /// Timed rounds per measurement.
    pub rounds: u64,
    pub filter: Option<&'static str>,
    pub stock: Option<&'static core::ffi::CStr>,
    /// Loaded on the listenq side too, before listenq, which then leaves
    /// the module's filter name to it: the stock filter under listenq's
    /// hooks, what no Rust filter can beat (BENCHMARKS.md).
    pub stock_under_hooks: bool,
    pub req: &'static [u8],
}

/// One measurement through a filter (None: no filter) with a request,
/// over a number of rounds.
pub type Measure = fn(Option<&str>, &[u8], u64) -> Result<(u64, u64), (&'static str, Errno)>;

/// One measurement of one side (true: listenq): (conns/s, guest us).
pub type Run<'a> = &'a mut dyn FnMut(&mut Tap, bool) -> Result<(u64, u64), (&'static str, Errno)>;

/// A B B A A B B A: four measurements a side.
pub const ABBA2: [(bool, u32); 5] = [(false, 1), (true, 2), (false, 2), (true, 2), (false, 1)];
/// A B B A: two a side, for the rows whose set-up is long.
pub const ABBA1: [(bool, u32); 3] = [(false, 1), (true, 2), (false, 1)];

/// Loads what side `lq` needs (listenq, or `stock`), runs `times`
/// measurements of `rounds` connections into `side`, and unloads it again.
#[allow(clippy::too_many_arguments)]
fn turn(
    tap: &mut Tap,
    label: &dyn core::fmt::Display,
    stock: Option<&core::ffi::CStr>,
    lq: bool,
    under: Option<&core::ffi::CStr>,
    times: u32,
    rounds: u64,
    side: &mut Side,
    m: Run<'_>,
) -> bool {
    let who = if lq { "listenq" } else { "stock" };
    // The stock module under listenq's hooks: loaded first, gone last.
    let mut under_id = None;
    if let (true, Some(path)) = (lq, under) {
        match kld::load(path) {
            Ok(id) => under_id = Some(id),
            Err(e) => {
                tap.ok(
                    false,
                    format_args!("bench {} {}: kldload {:?}: {}", label, who, path, e),
                );
                return false;
            }
        }
    }
    let loaded = if lq {
        au::listenq_loaded().map(Some)
    } else {
        match stock {
            Some(path) => kld::load(path).map(Some),
            None => Ok(None),
        }
    };
    let id = match loaded {
        Ok(id) => id,
        Err(e) => {
            // Nothing of this turn stays loaded for the next rows.
            if let Some(u) = under_id {
                let _ = kld::unload(u);
            }
            tap.ok(
                false,
                format_args!("bench {} {}: kldload: {}", label, who, e),
            );
            return false;
        }
    };
    if let Some(st) = id.and_then(|id| kld::stat(id).ok()) {
        // Where the module sits, so that an instruction profile of the
        // run (a QEMU plugin) can be symbolized.
        crate::tap::print(format_args!(
            "# bench {} {}: {} at {:#x} size {}",
            label,
            who,
            au::Show(st.name()),
            st.address(),
            st.size()
        ));
    }
    let mut ok = true;
    for _ in 0..times {
        match m(tap, lq) {
            Ok((cps, us)) => {
                side.add(rounds, us);
                crate::tap::print(format_args!(
                    "# bench {} {} run {}: {} conns/s",
                    label, who, side.runs, cps
                ));
            }
            Err((step, e)) => {
                tap.ok(false, format_args!("bench {} {}", label, who));
                tap.diag(format_args!("  {}: {}", step, e));
                ok = false;
                break;
            }
        }
    }
    // For profiles (tests/vm/profile.sh): what the counts divide by.
    crate::tap::print(format_args!(
        "# bench {} {}: {} timed connections",
        label,
        who,
        u64::from(times) * rounds
    ));
    for id in [id, under_id].into_iter().flatten() {
        // After the timed rounds: listenq may still hold a listener they
        // closed (kld::unload_settled).
        if let Err(e) = kld::unload_settled(id, 2000) {
            tap.ok(
                false,
                format_args!("bench {} {}: kldunload: {}", label, who, e),
            );
            ok = false;
        }
    }
    ok
}

/// LISTENQ_VM_KENV=listenq.bench_side=stock (or listenq): measure that
/// side only, so that an instruction profile of the boot
/// (tests/vm/profile.sh) holds one side's work and nothing else. The
/// ratios then read 0.
pub fn side_only() -> Option<bool> {
    let mut b = [0u8; 16];
    match crate::sys::kenv_get(c"listenq.bench_side", &mut b) {
        Ok(b"stock") | Ok(b"bare") => Some(false),
        Ok(b"listenq") => Some(true),
        _ => None,
    }
}

/// Measures both sides interleaved as `plan` says (top of this file):
/// (stock module or plain kernel, listenq). Reported as `label`; `stock`
/// is the module the stock side loads, if any.
pub fn compare_with(
    tap: &mut Tap,
    label: &dyn core::fmt::Display,
    stock: Option<&core::ffi::CStr>,
    under_hooks: bool,
    plan: &[(bool, u32)],
    rounds: u64,
    m: Run<'_>,
) -> (Side, Side) {
    let (mut a, mut b) = (Side::default(), Side::default());
    if kld::find(KO_NAME).is_ok() {
        tap.skip(format_args!("bench {}", label), "listenq already loaded");
        return (a, b);
    }
    let only = side_only();
    let mut ok = true;
    for &(lq, times) in plan {
        if only.is_some_and(|o| o != lq) {
            continue;
        }
        let side = if lq { &mut b } else { &mut a };
        let under = stock.filter(|_| under_hooks);
        ok = ok && turn(tap, label, stock, lq, under, times, rounds, side, m);
    }
    if !ok {
        return (Side::default(), Side::default());
    }
    let base = if stock.is_some() { "stock" } else { "bare" };
    tap.ok(
        true,
        format_args!(
            "bench {}: {} {} conns/s, listenq {} conns/s ({} interleaved measurements each; best runs {} and {})",
            label,
            base,
            a.cps().unwrap_or(0),
            b.cps().unwrap_or(0),
            b.runs,
            a.best().unwrap_or(0),
            b.best().unwrap_or(0)
        ),
    );
    crate::tap::print(format_args!(
        "# bench {} {} {}",
        label,
        base,
        a.cps().unwrap_or(0)
    ));
    crate::tap::print(format_args!(
        "# bench {} listenq {}",
        label,
        b.cps().unwrap_or(0)
    ));
    (a, b)
}

/// A filter (or no filter) row: `p` measured with `m`, A B B A A B B A.
pub fn compare(tap: &mut Tap, p: &Pair, m: Measure) -> (Side, Side) {
    let mut run = |_: &mut Tap, _: bool| m(p.filter, p.req, p.rounds);
    compare_with(
        tap,
        &p.label,
        p.stock,
        p.stock_under_hooks,
        &ABBA2,
        p.rounds,
        &mut run,
    )
}
