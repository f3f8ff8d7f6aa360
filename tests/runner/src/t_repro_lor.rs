//! `listenq.repro=lor`: the fuzzer's finding 3 (RELIABILITY.md) without
//! listenq, with only FreeBSD's accf_data on a kernel whose connections
//! inherit SO_ACCEPTFILTER (the test kernels with the fix), and WITNESS.
//!
//! A local listener holds many connections (accf_data: no data yet). A
//! child writes one byte to each while this process closes the listener.
//! A write that satisfies the filter runs soisconnected() from uipc_send(),
//! with the writer's and the receiver's unpcb locks held; when the close
//! holds the listener lock (its sweep of the queues), soisconnected()'s
//! try-lock fails, it takes a reference on the listener and waits, finds
//! the connection gone from the queue, and drops that reference, which is
//! then the last: sofree() of the listener inside uipc_send(), and
//! uipc_detach() takes unp_link_rwlock after the unp lock. A debug kernel
//! says "lock order reversal: unp -> unp_link_rwlock"; the harness fails
//! the run on that line, which is the reproduction's result. Nothing here
//! loads listenq (whose own filters no longer reach this path).

use crate::accf_util as au;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd};
use crate::tap::Tap;

/// Connections held on each listener.
const HELD: usize = 100;
/// Listeners closed under the writes.
const ROUNDS: usize = 60;

pub fn repro(tap: &mut Tap) {
    tap.diag(format_args!(
        "listenq.repro=lor: writes satisfying accf_data while the local listener closes, no listenq loaded"
    ));
    au::with_stock_module(tap, au::ACCF_DATA, |tap| report(tap, "accf_data", race()));
}

/// With listenq loaded (its dataready), the same: its filter moves a
/// passed connection itself, so no soisconnected() from uipc_send() and
/// no reversal, which the harness would fail the run on (RELIABILITY.md,
/// finding 3).
pub fn run(tap: &mut Tap) {
    report(
        tap,
        "listenq's dataready (nothing from WITNESS: finding 3)",
        race(),
    );
}

fn report(tap: &mut Tap, who: &str, r: Result<usize, (&'static str, Errno)>) {
    let name = Name(who);
    match r {
        Ok(held_rounds) => {
            tap.ok(held_rounds == ROUNDS, name);
            tap.diag(format_args!(
                "  {} of {} rounds held them all",
                held_rounds, ROUNDS
            ));
        }
        Err((step, e)) => {
            tap.ok(false, format_args!("{} ({}: {})", name, step, e));
        }
    }
}

struct Name<'a>(&'a str);

impl core::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "[lor] {} held {} connections on each of {} local listeners closed under writes to them",
            self.0, HELD, ROUNDS
        )
    }
}

/// Every round; how many held all their connections before the race.
fn race() -> Result<usize, (&'static str, Errno)> {
    // WITNESS reports a reversal of an order it has seen: the one this
    // reverses, unp_link_rwlock then unp, is what reading the local
    // sockets' pcblist (netstat -f unix, sockstat) takes.
    let pair = sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM);
    let mut big = sys::scratch::<u8>(1 << 20, 0);
    let _ = crate::sysctl::read_opaque("net.local.stream.pcblist", &mut big);
    drop(big);
    drop(pair);
    let mut held_rounds = 0;
    for r in 0..ROUNDS {
        if round(r)? {
            held_rounds += 1;
        }
    }
    sys::sleep_ms(200);
    Ok(held_rounds)
}

/// One listener: whether all HELD connections were held before the race.
fn round(r: usize) -> Result<bool, (&'static str, Errno)> {
    let (l, sa) = sock::listener(Kind::UnixStream, 128).map_err(|e| ("listener", e))?;
    au::set_filter(l.raw(), "dataready", "").map_err(|e| ("SO_ACCEPTFILTER dataready", e))?;
    let mut cl: [Option<Fd>; HELD] = [const { None }; HELD];
    for c in cl.iter_mut() {
        *c = Some(sock::connect(Kind::UnixStream, &sa).map_err(|e| ("connect", e))?);
    }
    let held = sock::incqlen(l.raw()).map_err(|e| ("incqlen", e))? == HELD as i32;
    let (rd, wr) = sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM)
        .map_err(|e| ("socketpair", e))?;
    let pid = match sys::fork().map_err(|e| ("fork", e))? {
        sys::Forked::Child => {
            let _ = sys::close(l.raw());
            let mut b = [0u8; 1];
            let _ = sys::read(rd.raw(), &mut b);
            for c in cl.iter().flatten() {
                let _ = sys::send(c.raw(), b"x", 0);
            }
            sys::exit(0)
        }
        sys::Forked::Parent(p) => p,
    };
    let _ = sys::write(wr.raw(), b"g");
    // Into the writes: the close's sweep holds the listener lock while
    // some of them run soisconnected().
    sys::sleep_us(50 * r as u64);
    drop(l);
    let _ = sys::wait4(pid);
    drop(cl);
    Ok(held)
}
