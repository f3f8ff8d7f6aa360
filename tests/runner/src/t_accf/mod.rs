//! Accept filters (accept_filter(9), listenq(4) "ACCEPT FILTERS"): the
//! SO_ACCEPTFILTER interface, where each filter holds and releases a
//! connection (byte by byte, compared with FreeBSD's own accf_data,
//! accf_http and accf_dns), listenq's af_arg extensions, filter removal,
//! unloading while a filter is in use, eviction from the secondary queue
//! and a flood of silent clients.
//!
//! Runs last (the stock modules it loads stay loaded unless
//! net.accf.unloadable is set, which it does before the last phase):
//!
//!   A. listenq loaded: registration, byte-by-byte cases, extensions,
//!      filter removal, unload refused while in use; then kldunload.
//!   B. stock modules: accf_data, then listenq loaded beside it (dataready
//!      stays stock's), then accf_http and accf_dns; the same byte-by-byte
//!      cases must give the same hold/pass points; stock's filter removal;
//!      the stock modules are unloaded with net.accf.unloadable=1.
//!   C. listenq loaded again: hold timeouts, eviction order, the flood,
//!      allocations back to 0, kldunload. These run the deferred-work path
//!      (work_glue.c lq_leave_*), so they come last.

mod cases;
mod deferred;
mod listenq;
mod stock;

use cases::*;
use deferred::*;
use listenq::*;
use stock::*;

use crate::accf_util::{self as au, Seen, Show};
use crate::env::Env;
use crate::kld;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd, SysResult};
use crate::sysctl;
use crate::tap::Tap;

use crate::accf_util::PASS_MS;

const NAMES: [&str; 4] = ["dataready", "httpready", "dnsready", "tlsready"];

#[derive(Clone, Copy, Debug)]
struct Failed(&'static str, Errno);

fn at(step: &'static str) -> impl FnOnce(Errno) -> Failed {
    move |e| Failed(step, e)
}

/// Reports one test: a case that ran is judged by `pass` and described by
/// `explain` (told the verdict); a case that failed at a step says which.
fn verdict<T>(
    tap: &mut Tap,
    name: impl core::fmt::Display,
    r: Result<T, Failed>,
    pass: impl FnOnce(&T) -> bool,
    explain: impl FnOnce(&mut Tap, &T, bool),
) {
    match r {
        Ok(v) => {
            let ok = pass(&v);
            tap.ok(ok, name);
            explain(tap, &v, ok);
        }
        Err(Failed(s, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
}

/// verdict() for a test that explains only a failure.
fn verdict_quiet<T>(
    tap: &mut Tap,
    name: impl core::fmt::Display,
    r: Result<T, Failed>,
    pass: impl FnOnce(&T) -> bool,
    explain: impl FnOnce(&mut Tap, &T),
) {
    verdict(tap, name, r, pass, |tap, v, ok| {
        if !ok {
            explain(tap, v);
        }
    });
}

pub fn run(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.ko {
        tap.skip(
            "accept filter suite",
            format_args!("listenq.ko not in image ({})", e),
        );
        return;
    }
    if let Err(e) = env.v4 {
        tap.skip(
            "accept filter suite",
            format_args!("127.0.0.1 unusable ({})", e),
        );
        return;
    }
    // Each step of a byte-by-byte case waits for its acknowledgement
    // (accf_util::wait_taken), at once rather than after a delayed ACK.
    let _acks = au::DelayedAcksOff::new();
    let t0 = sys::now_ms();
    let mut listenq_at = [None; PARITY.len()];
    let unloaded = phase_a(tap, &mut listenq_at);
    if unloaded {
        names_gone_after_unload(tap);
    }
    tap.diag(format_args!(
        "accept filters, listenq phase: {} ms",
        sys::now_ms() - t0
    ));
    let t1 = sys::now_ms();
    if unloaded {
        phase_b(tap, &listenq_at);
    } else {
        tap.skip(
            "[stock] accept filter comparison",
            "listenq could not be unloaded",
        );
    }
    tap.diag(format_args!(
        "accept filters, stock phase: {} ms",
        sys::now_ms() - t1
    ));
    let t2 = sys::now_ms();
    if kld::find(crate::env::KO_NAME).is_err() {
        crate::t_accf_counts::tunables(tap);
        crate::t_accf_counts::knob_bounds(tap);
    } else {
        tap.skip("[tunable] loader tunables", "listenq could not be unloaded");
    }
    phase_c(tap);
    tap.diag(format_args!(
        "accept filters, deferred-work phase: {} ms",
        sys::now_ms() - t2
    ));
}

/// Connects `n` clients that send nothing (or `data`); returns them.
fn clients<const N: usize>(sa: &crate::net::SockAddr, data: &[u8]) -> Result<[Fd; N], Failed> {
    let mut v: [Option<Fd>; N] = [const { None }; N];
    for slot in v.iter_mut() {
        let c = au::client(sa).map_err(at("connect"))?;
        if !data.is_empty() {
            au::send_all(c.raw(), data).map_err(at("send"))?;
        }
        *slot = Some(c);
    }
    // Every slot is filled above.
    Ok(v.map(|c| c.unwrap_or_else(|| panic!("client slot empty"))))
}

/// Accepts without waiting until EAGAIN; returns how many (at most 64).
fn drain_accept(l: i32) -> usize {
    let mut n = 0;
    while n < 64 {
        match au::try_accept(l) {
            Ok(_) => n += 1,
            Err(_) => break,
        }
    }
    n
}
