//! `listenq.repro=scmdrop`: the fuzzer's finding 2 (RELIABILITY.md)
//! without listenq, with only FreeBSD's accf_dns on a kernel whose
//! connections inherit SO_ACCEPTFILTER (the test kernels with the fix).
//!
//! A local connection held by an accept filter with an SCM_RIGHTS message
//! in its receive buffer (accf_dns reads the control message's first
//! bytes as the query length, about 5 KB, and keeps holding) is the
//! oldest on its listener's incomplete queue; a burst of connects then
//! overflows the queue, and solisten_enqueue(), called by sonewconn()
//! from unp_connectat() with the vnode's mtx_pool mutex held, drops it:
//! soabort() -> sofree() -> unp_dispose() -> unp_freerights() ->
//! unp_discard() -> malloc(M_WAITOK) under a mutex. A debug kernel says
//! "uma_zalloc_debug: zone ... with the following non-sleepable locks
//! held: ... sleep mtxpool"; the harness fails the run on that line,
//! which is the reproduction's result. Nothing here loads listenq.

use crate::accf_util as au;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::tap::Tap;

/// Connects after the held one: more than listen(1)'s limit.
const BURST: usize = 4;

pub fn repro(tap: &mut Tap) {
    tap.diag(format_args!(
        "listenq.repro=scmdrop: a held local connection with SCM_RIGHTS, dropped by an overflow, no listenq loaded"
    ));
    au::with_stock_module(tap, au::ACCF_DNS, |tap| match run() {
        Ok(held) => {
            tap.ok(
                held,
                "accf_dns held the connection whose buffer has an SCM_RIGHTS message until the burst dropped it",
            );
        }
        Err((step, e)) => {
            tap.ok(false, format_args!("{}: {}", step, e));
        }
    });
}

/// Whether the first connection was held (on the incomplete queue) before
/// the burst.
fn run() -> Result<bool, (&'static str, Errno)> {
    let (l, sa) = sock::listener(Kind::UnixStream, 1).map_err(|e| ("listener", e))?;
    au::set_filter(l.raw(), "dnsready", "").map_err(|e| ("SO_ACCEPTFILTER dnsready", e))?;
    let (pass, _keep) = sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM)
        .map_err(|e| ("socketpair", e))?;
    let c1 = sock::connect(Kind::UnixStream, &sa).map_err(|e| ("connect", e))?;
    sys::send_with_rights(c1.raw(), b"x", Some(pass.raw()))
        .map_err(|e| ("sendmsg SCM_RIGHTS", e))?;
    drop(pass);
    sys::sleep_ms(20);
    let held = sock::incqlen(l.raw()).map_err(|e| ("incqlen", e))? == 1
        && sock::qlen(l.raw()).map_err(|e| ("qlen", e))? == 0;
    let mut burst = [const { None }; BURST];
    for slot in burst.iter_mut() {
        // Refused once the queue is full of the burst's own: that is fine.
        *slot = sock::connect(Kind::UnixStream, &sa).ok();
    }
    Ok(held)
}
