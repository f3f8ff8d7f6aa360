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

/// Connections per second over all of one side's measurements, from the
/// total of their rounds and of their guest time.
#[derive(Clone, Copy, Default)]
pub struct Side {
    rounds: u64,
    us: u64,
    runs: u32,
}

impl Side {
    fn add(&mut self, rounds: u64, us: u64) {
        self.rounds += rounds;
        self.us += us;
        self.runs += 1;
    }

    pub fn cps(&self) -> Option<u64> {
        (self.runs > 0).then(|| self.rounds * 1_000_000 / self.us.max(1))
    }
}

/// One comparison: what is measured (`filter`, None for no filter) and,
/// for a filter, the stock module that provides it.
pub struct Pair {
    pub label: &'static str,
    pub filter: Option<&'static str>,
    pub stock: Option<&'static core::ffi::CStr>,
    pub req: &'static [u8],
}

type Measure = fn(Option<&str>, &[u8]) -> Result<(u64, u64), (&'static str, Errno)>;

/// Loads what side `lq` needs (listenq, or the stock module), runs
/// `times` measurements into `side`, and unloads it again.
fn turn(tap: &mut Tap, p: &Pair, lq: bool, times: u32, side: &mut Side, m: Measure) -> bool {
    let who = if lq { "listenq" } else { "stock" };
    let loaded = if lq {
        au::listenq_loaded().map(Some)
    } else {
        match p.stock {
            Some(path) => kld::load(path).map(Some),
            None => Ok(None),
        }
    };
    let id = match loaded {
        Ok(id) => id,
        Err(e) => {
            tap.ok(
                false,
                format_args!("bench {} {}: kldload: {}", p.label, who, e),
            );
            return false;
        }
    };
    let mut ok = true;
    for _ in 0..times {
        match m(p.filter, p.req) {
            Ok((cps, us)) => {
                side.add(crate::t_bench::ITERS, us);
                crate::tap::print(format_args!(
                    "# bench {} {} run {}: {} conns/s",
                    p.label, who, side.runs, cps
                ));
            }
            Err((step, e)) => {
                tap.ok(false, format_args!("bench {} {}", p.label, who));
                tap.diag(format_args!("  {}: {}", step, e));
                ok = false;
                break;
            }
        }
    }
    if let Some(id) = id {
        if let Err(e) = kld::unload(id) {
            tap.ok(
                false,
                format_args!("bench {} {}: kldunload: {}", p.label, who, e),
            );
            ok = false;
        }
    }
    ok
}

/// Measures `p` both ways, interleaved (top of this file): (stock or
/// plain kernel, listenq), each over four measurements.
pub fn compare(tap: &mut Tap, p: &Pair, m: Measure) -> (Side, Side) {
    let (mut a, mut b) = (Side::default(), Side::default());
    if kld::find(KO_NAME).is_ok() {
        tap.skip(format_args!("bench {}", p.label), "listenq already loaded");
        return (a, b);
    }
    // A B B A A B B A.
    let plan: [(bool, u32); 5] = [(false, 1), (true, 2), (false, 2), (true, 2), (false, 1)];
    let mut ok = true;
    for (lq, times) in plan {
        let side = if lq { &mut b } else { &mut a };
        ok = ok && turn(tap, p, lq, times, side, m);
    }
    if ok {
        tap.ok(
            true,
            format_args!(
                "bench {}: stock {} conns/s, listenq {} conns/s (4 interleaved measurements each)",
                p.label,
                a.cps().unwrap_or(0),
                b.cps().unwrap_or(0)
            ),
        );
        crate::tap::print(format_args!(
            "# bench {} stock {}",
            p.label,
            a.cps().unwrap_or(0)
        ));
        crate::tap::print(format_args!(
            "# bench {} listenq {}",
            p.label,
            b.cps().unwrap_or(0)
        ));
        (a, b)
    } else {
        (Side::default(), Side::default())
    }
}
