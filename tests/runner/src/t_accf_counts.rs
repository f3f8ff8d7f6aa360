//! Every counter of listenq(4) against what the test did: each case
//! snapshots kern.ipc.listenq.stats.*, does one thing, and compares the
//! whole difference with what listenq(4) says that thing counts. Also the
//! timeout options (`timeout=0`, `ontimeout=` alone), the loader tunables,
//! and the rate limit on "bad af_arg" console lines.
//!
//! Runs in phase C of t_accf (listenq loaded, the stock modules gone),
//! except `tunables`, which needs listenq unloaded.

use crate::accf_util as au;
use crate::kld;
use crate::net::SockAddr;
use crate::sock::Kind;
use crate::sys::{self, Errno, Fd};
use crate::sysctl;
use crate::table::{addr_text, find_row};
use crate::tap::Tap;

pub type Step = (&'static str, Errno);

pub fn at(step: &'static str) -> impl FnOnce(Errno) -> Step {
    move |e| (step, e)
}

/// kern.ipc.listenq.stats.* at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    pub listens: u64,
    pub closes: u64,
    pub completed: u64,
    pub accepted: u64,
    pub overflows: u64,
    pub held: u64,
    pub released: u64,
    pub evicted: u64,
    pub timeouts: u64,
    pub nomem: u64,
}

impl Stats {
    pub fn read() -> Result<Stats, Step> {
        let r = |n: &'static str| au::stat(n).map_err(at(n));
        Ok(Stats {
            listens: r("listens")?,
            closes: r("closes")?,
            completed: r("completed")?,
            accepted: r("accepted")?,
            overflows: r("overflows")?,
            held: r("held")?,
            released: r("released")?,
            evicted: r("evicted")?,
            timeouts: r("timeouts")?,
            nomem: r("nomem")?,
        })
    }

    /// What changed since `b`.
    pub fn since(&self, b: &Stats) -> Stats {
        Stats {
            listens: self.listens.wrapping_sub(b.listens),
            closes: self.closes.wrapping_sub(b.closes),
            completed: self.completed.wrapping_sub(b.completed),
            accepted: self.accepted.wrapping_sub(b.accepted),
            overflows: self.overflows.wrapping_sub(b.overflows),
            held: self.held.wrapping_sub(b.held),
            released: self.released.wrapping_sub(b.released),
            evicted: self.evicted.wrapping_sub(b.evicted),
            timeouts: self.timeouts.wrapping_sub(b.timeouts),
            nomem: self.nomem.wrapping_sub(b.nomem),
        }
    }

    /// One listener opened and closed: the base of every case.
    pub const ONE_LISTENER: Stats = Stats {
        listens: 1,
        closes: 1,
        completed: 0,
        accepted: 0,
        overflows: 0,
        held: 0,
        released: 0,
        evicted: 0,
        timeouts: 0,
        nomem: 0,
    };

    /// One listener whose one connection was held, released and accepted.
    pub const ONE_HELD_PASSED: Stats = Stats {
        held: 1,
        released: 1,
        completed: 1,
        accepted: 1,
        ..Stats::ONE_LISTENER
    };
}

/// ACCEPTED, HELD and EVICTED of the listener on 127.0.0.1:`port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCounts {
    pub accepted: i64,
    pub held: i64,
    pub evicted: i64,
}

pub fn row_counts(sa: &SockAddr) -> Result<Option<RowCounts>, Step> {
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    let n = sysctl::read_opaque(au::TABLE, buf)
        .map_err(at("listeners table"))?
        .min(buf.len());
    let text = au::cstr(&buf[..n]);
    let mut key = [0u8; 96];
    let k = addr_text(Kind::Tcp4, sa, &mut key);
    Ok(find_row(text, &key[..k]).map(|r| RowCounts {
        accepted: r.num(6).unwrap_or(-1),
        held: r.num(9).unwrap_or(-1),
        evicted: r.num(10).unwrap_or(-1),
    }))
}

/// Reports a case: the counter difference against `want`, or the step
/// that failed.
pub fn judge(tap: &mut Tap, name: core::fmt::Arguments, r: Result<Stats, Step>, want: Stats) {
    match r {
        Ok(d) => {
            tap.check(d, want, name);
        }
        Err((s, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
}

/// `N` silent clients of `sa`.
pub fn silent<const N: usize>(sa: &SockAddr) -> Result<[Option<Fd>; N], Step> {
    let mut v: [Option<Fd>; N] = [const { None }; N];
    for c in v.iter_mut() {
        *c = Some(au::client(sa).map_err(at("connect"))?);
    }
    Ok(v)
}

/// Accepts `n` connections, each within `ms`.
pub fn accept_n(l: i32, n: usize, ms: i32) -> Result<usize, Step> {
    for i in 0..n {
        match au::accept_within(l, ms) {
            Ok(_) => {}
            Err(Errno::TIMEOUT) | Err(Errno::EAGAIN) => return Ok(i),
            Err(e) => return Err(("accept", e)),
        }
    }
    Ok(n)
}

pub fn run(tap: &mut Tap) {
    satisfied(tap);
    removal_bulk(tap);
    close_with_held(tap);
    timeout_counts(tap);
    timeout_options(tap);
    bad_af_arg_rate(tap);
}

/// A filter satisfied by data: held, released, completed, accepted.
fn satisfied(tap: &mut Tap) {
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(5, "dataready", "").map_err(at("listener"))?;
            let c = au::client(&sa).map_err(at("connect"))?;
            sys::sleep_ms(50);
            au::send_all(c.raw(), b"x").map_err(at("send"))?;
            au::accept_within(l.raw(), 2000).map_err(at("accept"))?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    judge(
        tap,
        format_args!("[counts] dataready satisfied: listens, held, released, completed, accepted, closes +1, nothing else"),
        r,
        Stats::ONE_HELD_PASSED,
    );
}

/// Filter removal moves every held connection to the completed queue in
/// one go (uipc_accf.c), with one wakeup: each is a completion, and each
/// accept of one is counted with its latency.
fn removal_bulk(tap: &mut Tap) {
    let mut row = None;
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(10, "dataready", "").map_err(at("listener"))?;
            let _c: [Option<Fd>; 3] = silent(&sa)?;
            sys::sleep_ms(100);
            au::remove_filter(l.raw()).map_err(at("remove filter"))?;
            let n = accept_n(l.raw(), 3, 2000)?;
            if n != 3 {
                return Err(("accept: fewer than 3 released", Errno::TIMEOUT));
            }
            row = row_counts(&sa)?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    judge(
        tap,
        format_args!("[counts] 3 held dataready connections, filter removed, 3 accepted: completed +3, accepted +3, released +3"),
        r,
        Stats {
            held: 3,
            released: 3,
            completed: 3,
            accepted: 3,
            ..Stats::ONE_LISTENER
        },
    );
    tap.check(
        row.map(|r| r.accepted),
        Some(3),
        "[counts] ... and the listener's ACCEPTED column says 3",
    );
}

/// Closing a listener aborts what it holds (soclose()): neither released
/// nor evicted by listenq.
fn close_with_held(tap: &mut Tap) {
    let r = (|| {
        let b = Stats::read()?;
        let c: [Option<Fd>; 3] = {
            let (_l, sa) = au::filtered(10, "dataready", "").map_err(at("listener"))?;
            let c = silent(&sa)?;
            sys::sleep_ms(100);
            c
        };
        let reset = c
            .iter()
            .flatten()
            .all(|c| au::client_sees(c.raw(), 1000).is_reset_or_eof());
        if !reset {
            return Err((
                "a client of the closed listener was not reset",
                Errno::TIMEOUT,
            ));
        }
        Ok(Stats::read()?.since(&b))
    })();
    judge(
        tap,
        format_args!(
            "[counts] a listener closed with 3 held connections: held +3, released and evicted +0"
        ),
        r,
        Stats {
            held: 3,
            ..Stats::ONE_LISTENER
        },
    );
}

/// A hold timeout counts `timeouts`, then what it does: `released` (and
/// the completion and accept) or `evicted` (stats and the row).
fn timeout_counts(tap: &mut Tap) {
    for drop_it in [false, true] {
        let mut row = None;
        let r = (|| {
            let b = Stats::read()?;
            {
                let arg = if drop_it {
                    "timeout=300,ontimeout=drop"
                } else {
                    "timeout=300,ontimeout=deliver"
                };
                let (l, sa) = au::filtered(5, "dataready", arg).map_err(at("listener"))?;
                let c = au::client(&sa).map_err(at("connect"))?;
                if drop_it {
                    if !au::client_sees(c.raw(), 3000).is_reset_or_eof() {
                        return Err(("client not reset at the timeout", Errno::TIMEOUT));
                    }
                    sys::sleep_ms(50);
                } else {
                    au::accept_within(l.raw(), 3000).map_err(at("accept"))?;
                }
                row = row_counts(&sa)?;
            }
            Ok(Stats::read()?.since(&b))
        })();
        let want = if drop_it {
            Stats {
                held: 1,
                timeouts: 1,
                evicted: 1,
                ..Stats::ONE_LISTENER
            }
        } else {
            Stats {
                held: 1,
                timeouts: 1,
                released: 1,
                completed: 1,
                accepted: 1,
                ..Stats::ONE_LISTENER
            }
        };
        judge(
            tap,
            format_args!(
                "[counts] timeout=300,ontimeout={}: {}",
                if drop_it { "drop" } else { "deliver" },
                if drop_it {
                    "timeouts +1, evicted +1"
                } else {
                    "timeouts +1, released +1, completed +1, accepted +1"
                }
            ),
            r,
            want,
        );
        if drop_it {
            tap.check(
                row.map(|r| r.evicted),
                Some(1),
                "[counts] ... and the listener's EVICTED column says 1",
            );
        }
    }
}

/// listenq(4): `timeout=0` is no limit even when
/// kern.ipc.listenq.hold_timeout_ms sets one; `ontimeout=` without
/// `timeout=` applies at the default limit.
fn timeout_options(tap: &mut Tap) {
    let set = sysctl::write_int("kern.ipc.listenq.hold_timeout_ms", 300)
        .and_then(|_| sysctl::write_int("kern.ipc.listenq.hold_timeout_drop", 0));
    if let Err(e) = set {
        tap.ok(false, "[timeout] kern.ipc.listenq.hold_timeout_ms=300");
        tap.diag(format_args!("  {}", e));
        return;
    }
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(5, "dataready", "timeout=0").map_err(at("listener"))?;
            let c = au::client(&sa).map_err(at("connect"))?;
            sys::sleep_ms(800);
            match au::try_accept(l.raw()) {
                Err(Errno::EAGAIN) => {}
                Ok(_) => return Err(("accepted at the default timeout", Errno::EEXIST)),
                Err(e) => return Err(("accept", e)),
            }
            au::send_all(c.raw(), b"x").map_err(at("send"))?;
            au::accept_within(l.raw(), 2000).map_err(at("accept after data"))?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    judge(
        tap,
        format_args!("[timeout] timeout=0 with hold_timeout_ms=300: still held after 800 ms, released by data"),
        r,
        Stats::ONE_HELD_PASSED,
    );

    let mut row = None;
    let mut never = false;
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(5, "dataready", "ontimeout=drop").map_err(at("listener"))?;
            let c = au::client(&sa).map_err(at("connect"))?;
            let t0 = sys::now_ms();
            let seen = au::client_sees(c.raw(), 3000);
            let ms = sys::now_ms() - t0;
            if !seen.is_reset_or_eof() || !(250..=2500).contains(&ms) {
                tap.diag(format_args!("  client saw {:?} after {} ms", seen, ms));
                return Err(("client not reset at the default timeout", Errno::TIMEOUT));
            }
            sys::sleep_ms(100);
            never = au::try_accept(l.raw()).err() == Some(Errno::EAGAIN);
            row = row_counts(&sa)?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    let _ = sysctl::write_int("kern.ipc.listenq.hold_timeout_ms", 0);
    judge(
        tap,
        format_args!("[timeout] ontimeout=drop alone, hold_timeout_ms=300 (deliver): reset at 300 ms; timeouts +1, evicted +1"),
        r,
        Stats {
            held: 1,
            timeouts: 1,
            evicted: 1,
            ..Stats::ONE_LISTENER
        },
    );
    tap.ok(
        never && row.map(|r| r.evicted) == Some(1),
        "[timeout] ... never accepted, and the listener's EVICTED column says 1",
    );
}

/// Log lines about a bad af_arg on the listener at `sa` at priority `pri`
/// by the runner (uid 0, pid 1, not jailed).
fn bad_arg_lines(pri: u8, sa: &SockAddr) -> Result<usize, Errno> {
    let mut key = [0u8; 96];
    let k = addr_text(Kind::Tcp4, sa, &mut key);
    let mut head = [0u8; 96];
    let mut w = crate::table::Writer {
        buf: &mut head,
        len: 0,
    };
    let _ = core::fmt::write(
        &mut w,
        format_args!("<{}>listenq: dataready: bad af_arg on ", pri),
    );
    let n = w.len;
    au::msgbuf_lines(&[&head[..n], &key[..k], b" (uid 0, pid 1, jail 0): "])
}

/// Any user can set a bad af_arg: the line it causes goes through log(9)
/// at kern.ipc.listenq.logprio, names the listener and who set it, and is
/// rate-limited per listener (3 a second), so one listener's flood
/// neither floods the log nor silences another's.
fn bad_af_arg_rate(tap: &mut Tap) {
    const N: usize = 40;
    const PRIO: &str = "kern.ipc.listenq.logprio";
    let name = "[log] 40 bad af_args within a second on one listener: EINVAL each time, at most 3 log lines a second, at LOG_INFO, naming the listener and uid, pid, jail";
    let r = (|| {
        let (l, sa) = au::listener(5).map_err(at("listener"))?;
        let before = bad_arg_lines(6, &sa).map_err(at("kern.msgbuf"))?;
        let t0 = sys::now_ms();
        let mut einval = 0;
        for _ in 0..N {
            if au::set_filter(l.raw(), "dataready", "timeout=x") == Err(Errno::EINVAL) {
                einval += 1;
            }
        }
        let ms = sys::now_ms() - t0;
        let after = bad_arg_lines(6, &sa).map_err(at("kern.msgbuf"))?;
        Ok((einval, after.saturating_sub(before), ms))
    })();
    match r {
        Ok((einval, lines, ms)) => {
            // Seconds the loop touched: at most two more than it lasted.
            let most = 3 * (ms as usize / 1000 + 2);
            tap.ok(einval == N && (1..=most).contains(&lines), name);
            tap.diag(format_args!(
                "  {} EINVAL, {} new log lines (at most {}), in {} ms",
                einval, lines, most, ms
            ));
        }
        Err((s, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
    // Right after that flood, another listener's first line still goes out.
    let r = au::listener(5).map_err(at("listener")).and_then(|(l, sa)| {
        let _ = au::set_filter(l.raw(), "dataready", "timeout=x");
        bad_arg_lines(6, &sa).map_err(at("kern.msgbuf"))
    });
    tap.check(
        r,
        Ok(1),
        "[log] right after it, a second listener's bad af_arg is logged (the limit is per listener)",
    );
    // The admin's priority, and none at all with -1.
    let r = (|| {
        let was = sysctl::read_int(PRIO).map_err(at(PRIO))?;
        let (l, sa) = au::listener(5).map_err(at("listener"))?;
        sysctl::write_int(PRIO, 3).map_err(at("logprio=3"))?;
        let _ = au::set_filter(l.raw(), "dataready", "timeout=x");
        let err = bad_arg_lines(3, &sa).map_err(at("kern.msgbuf"));
        let (l2, sa2) = au::listener(5).map_err(at("listener"))?;
        sysctl::write_int(PRIO, -1).map_err(at("logprio=-1"))?;
        let _ = au::set_filter(l2.raw(), "dataready", "timeout=x");
        let none = (0..=7u8)
            .map(|p| bad_arg_lines(p, &sa2))
            .try_fold(0, |s, n| n.map(|n| s + n))
            .map_err(at("kern.msgbuf"));
        let bounds = (sysctl::write_int(PRIO, 8), sysctl::write_int(PRIO, -2));
        sysctl::write_int(PRIO, was).map_err(at("restore logprio"))?;
        Ok::<_, Step>((was, err?, none?, bounds))
    })();
    tap.check(
        r,
        Ok((6, 1, 0, (Err(Errno::EINVAL), Err(Errno::EINVAL)))),
        "[log] kern.ipc.listenq.logprio: 6 (LOG_INFO) by default; 3 logs at LOG_ERR; -1 logs nothing; 8 and -2 are EINVAL",
    );
}

/// Both knobs are loader tunables (CTLFLAG_RWTUN): set in the kernel
/// environment before kldload, the module starts with them. Needs listenq
/// unloaded; leaves it unloaded.
pub fn tunables(tap: &mut Tap) {
    let name = "[tunable] kenv kern.ipc.listenq.hold_timeout_ms=1234, hold_timeout_drop=1, then kldload: both sysctls start with those values";
    let knobs = [
        (
            c"kern.ipc.listenq.hold_timeout_ms",
            c"1234",
            "kern.ipc.listenq.hold_timeout_ms",
            1234,
        ),
        (
            c"kern.ipc.listenq.hold_timeout_drop",
            c"1",
            "kern.ipc.listenq.hold_timeout_drop",
            1,
        ),
    ];
    let r = (|| {
        for (k, v, _, _) in knobs.iter() {
            sys::kenv_set(k, v).map_err(at("kenv set"))?;
        }
        let id = kld::load(crate::env::KO_PATH).map_err(at("kldload"))?;
        let mut got = [0i32; 2];
        for (i, (_, _, s, _)) in knobs.iter().enumerate() {
            got[i] = sysctl::read_int(s).map_err(at("sysctl read"))?;
            let _ = sysctl::write_int(s, 0);
        }
        kld::unload(id).map_err(at("kldunload"))?;
        Ok(got)
    })();
    for (k, _, _, _) in knobs.iter() {
        let _ = sys::kenv_unset(k);
    }
    match r {
        Ok(got) => {
            tap.check(got, [1234, 1], name);
        }
        Err((s, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
}

/// The 0/1 and millisecond knobs as sysctl(8) and the loader set them
/// (issue 17: sysctl(8) stored hold_timeout_drop=7, unloadable=2 and
/// hold_timeout_ms=-1, i.e. 49 days, without a word): every value out of
/// range is refused with EINVAL and the old value stays; so is a bad
/// loader tunable, which leaves the default. listenq is unloaded on
/// entry and on return.
pub fn knob_bounds(tap: &mut Tap) {
    const KNOBS: [(&str, &core::ffi::CStr, i32, &[i32]); 3] = [
        (
            "kern.ipc.listenq.hold_timeout_drop",
            c"kern.ipc.listenq.hold_timeout_drop",
            1,
            &[7, 2, -1, i32::MIN],
        ),
        (
            "kern.ipc.listenq.unloadable",
            c"kern.ipc.listenq.unloadable",
            1,
            &[2, -1, 100],
        ),
        (
            "kern.ipc.listenq.hold_timeout_ms",
            c"kern.ipc.listenq.hold_timeout_ms",
            i32::MAX,
            &[-1, i32::MIN],
        ),
    ];
    // t_module set kern.ipc.listenq.unloadable=1 as a tunable for every
    // later load: put it back afterwards.
    let mut saved = [0u8; 16];
    let had = sys::kenv_get(c"kern.ipc.listenq.unloadable", &mut saved)
        .map(|v| v == b"1")
        .unwrap_or(false);
    let r = (|| {
        for (_, k, _, bad) in KNOBS.iter() {
            let v = match bad[0] {
                7 => c"7",
                2 => c"2",
                _ => c"-1",
            };
            sys::kenv_set(k, v).map_err(at("kenv set"))?;
        }
        let id = kld::load(crate::env::KO_PATH).map_err(at("kldload"))?;
        let mut after_load = [0i32; 3];
        for (i, (s, _, _, _)) in KNOBS.iter().enumerate() {
            after_load[i] = sysctl::read_int(s).map_err(at("sysctl read"))?;
        }
        let mut refused = [(Ok(()), 0i32); 9];
        let mut n = 0;
        for (s, _, good, bad) in KNOBS.iter() {
            sysctl::write_int(s, *good).map_err(at("sysctl write good"))?;
            for b in bad.iter() {
                let w = sysctl::write_int(s, *b);
                let kept = sysctl::read_int(s).map_err(at("sysctl read"))?;
                refused[n] = (w, if kept == *good { 1 } else { 0 });
                n += 1;
            }
            sysctl::write_int(
                s,
                if *s == "kern.ipc.listenq.unloadable" {
                    1
                } else {
                    0
                },
            )
            .map_err(at("sysctl restore"))?;
        }
        kld::unload(id).map_err(at("kldunload"))?;
        Ok((after_load, refused, n))
    })();
    for (_, k, _, _) in KNOBS.iter() {
        let _ = sys::kenv_unset(k);
    }
    if had {
        let _ = sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1");
    }
    let name_t = "[tunable] kenv hold_timeout_drop=7, unloadable=2, hold_timeout_ms=-1, then kldload: each refused, each knob keeps its default 0";
    let name_s = "[sysctl] hold_timeout_drop 7/2/-1/INT_MIN, unloadable 2/-1/100, hold_timeout_ms -1/INT_MIN: each write EINVAL, the old value kept";
    match r {
        Ok((after_load, refused, n)) => {
            tap.check(after_load, [0, 0, 0], name_t);
            let all = refused[..n]
                .iter()
                .all(|(w, kept)| *w == Err(Errno::EINVAL) && *kept == 1);
            tap.ok(all, name_s);
            if !all {
                for (w, kept) in refused[..n].iter() {
                    tap.diag(format_args!("  write {:?}, old value kept {}", w, kept));
                }
            }
        }
        Err((s, e)) => {
            tap.ok(false, name_t);
            tap.ok(false, name_s);
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
}
