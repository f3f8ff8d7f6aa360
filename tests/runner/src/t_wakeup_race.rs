//! A held connection released by its accept filter while its listener is
//! closed (the fuzzer's finding 7, RELIABILITY.md).
//!
//! When a filter is satisfied in a connection's receive upcall (data or
//! EOF arriving), the kernel's soisconnected() moves the connection to the
//! completed queue and calls solisten_wakeup(), which unlocks the listener
//! and then reads it again (wakeup_one(&sol_comp), so_state, so_sigio)
//! with no reference of its own: the thread holds only the connection's
//! pcb lock. A close(2) of the listener in that window frees it, and an
//! O_ASYNC listener's so_sigio is then read from freed memory: the general
//! protection fault in pgsigio() the fuzzer hit four times. Every accept
//! filter reaches it on a kernel whose connections inherit
//! SO_ACCEPTFILTER; listenq's filters no longer do (kmod/work_glue.c,
//! "(W)").
//!
//! The window is a few instructions wide. The test kernels widen it with
//! a diagnostic (README, "The test kernels"): `debug.solisten_wakeup_delay_us`
//! makes the next solisten_wakeup() busy-wait after its unlock, then
//! panics if the listener was freed meanwhile. Where that knob is missing
//! the test skips with one line. `listenq.repro=wakeup` runs the same with
//! FreeBSD's accf_data and no listenq: the reproduction of the stock bug.

use crate::accf_util as au;
use crate::env::Env;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::tap::Tap;

const DELAY_KNOB: &str = "debug.solisten_wakeup_delay_us";
/// Long enough for the close below to finish inside it, many times over.
const DELAY_US: i32 = 400_000;

const F_GETFL: i32 = 3;
const F_SETFL: i32 = 4;
const F_SETOWN: i32 = 6;
const O_ASYNC: usize = 0x40;

/// SIGIO to this process on each completed connection, as a daemon using
/// O_ASYNC asks for (SIGIO's default action is to ignore it).
fn set_async(fd: i32) -> Result<(), Errno> {
    sys::fcntl(fd, F_SETOWN, sys::getpid() as usize)?;
    let fl = sys::fcntl(fd, F_GETFL, 0)?;
    sys::fcntl(fd, F_SETFL, fl | O_ASYNC)?;
    Ok(())
}

/// What one round saw.
struct Round {
    /// The armed delay was still armed afterwards: no solisten_wakeup()
    /// ran in the meantime.
    delay_left: bool,
    /// The client saw its connection end (the listener's close aborts
    /// the connection on its completed queue).
    client_ended: bool,
}

/// A listener of `kind` with `filter`, O_ASYNC and an owner if asked.
fn filtered(
    kind: Kind,
    filter: &str,
    with_async: bool,
) -> Result<(sys::Fd, crate::net::SockAddr), (&'static str, Errno)> {
    let (l, sa) = sock::listener(kind, 8).map_err(|e| ("listener", e))?;
    au::set_filter(l.raw(), filter, "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    if with_async {
        set_async(l.raw()).map_err(|e| ("F_SETOWN, O_ASYNC", e))?;
    }
    Ok((l, sa))
}

/// The race itself: with the delay armed, a child (which first drops its
/// copy of the listener `l`, so that only this process's keeps it) does
/// `act`, whose value is its exit status; this process closes `l` 50 ms
/// after the child started. The child's exit status, and whether the
/// delay was left armed.
fn race(l: sys::Fd, act: impl FnOnce() -> i32) -> Result<(i32, bool), (&'static str, Errno)> {
    let (rd, wr) = sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM)
        .map_err(|e| ("socketpair", e))?;
    sysctl::write_int(DELAY_KNOB, DELAY_US).map_err(|e| ("arm the delay", e))?;
    let pid = match sys::fork().map_err(|e| ("fork", e))? {
        sys::Forked::Child => {
            let _ = sys::close(l.raw());
            let _ = sys::write(wr.raw(), b"g");
            sys::exit(act())
        }
        sys::Forked::Parent(p) => p,
    };
    let mut b = [0u8; 1];
    let _ = sys::read(rd.raw(), &mut b);
    sys::sleep_ms(50);
    let closed = l.close();
    let status = sys::wait4(pid);
    let left = sysctl::read_int(DELAY_KNOB).unwrap_or(0);
    let _ = sysctl::write_int(DELAY_KNOB, 0);
    // A delay that ran is over before the next round: on listenq's task
    // thread it would hold up the next round's delivery.
    if left == 0 {
        sys::sleep_ms(DELAY_US as u64 / 1000 + 100);
    }
    closed.map_err(|e| ("close(listener)", e))?;
    let status = status.map_err(|e| ("wait4", e))?;
    Ok((status >> 8, left != 0))
}

/// A connection held by `filter` on a listener of `kind`; a child sends
/// it the byte that satisfies the filter while the delay is armed, and
/// this process closes the listener 50 ms later, inside the window.
fn round(kind: Kind, filter: &str, with_async: bool) -> Result<Round, (&'static str, Errno)> {
    let (l, sa) = filtered(kind, filter, with_async)?;
    let c = sock::connect(kind, &sa).map_err(|e| ("connect", e))?;
    // Held: on the incomplete queue, nothing on the completed one. A TCP
    // connection is there a moment before its handshake is complete (the
    // kernel's soisconnected() of the final ACK runs the filter): only
    // past that is it held, and only the release is the case here.
    let t0 = sys::now_ms();
    while sock::incqlen(l.raw()).map_err(|e| ("incqlen", e))? != 1 {
        if sys::now_ms() - t0 > 2000 {
            return Err(("held within 2 s", Errno::ETIMEDOUT));
        }
        sys::sleep_ms(1);
    }
    sys::sleep_ms(20);
    if sock::incqlen(l.raw()).map_err(|e| ("incqlen", e))? != 1 {
        return Err(("still held after 20 ms", Errno::EINVAL));
    }
    let (status, delay_left) = race(l, || match sys::send(c.raw(), b"x", 0) {
        Ok(1) => 0,
        Ok(_) => 1,
        Err(e) => 2 + e.0.clamp(0, 100),
    })?;
    if status != 0 {
        return Err(("child's send", Errno(status)));
    }
    let client_ended = au::client_sees(c.raw(), 2000).is_reset_or_eof();
    drop(c);
    Ok(Round {
        delay_left,
        client_ended,
    })
}

/// A TCP connection whose handshake completes while the delay is armed:
/// the final ACK's soisconnected() runs in the connection's own TCP input
/// for any listener with a filter (TF_SONOTCONN), and where it puts the
/// connection on the completed queue (a kernel whose connections do not
/// inherit SO_ACCEPTFILTER; listenq's rescue then holds it from the listen
/// upcall) it calls solisten_wakeup(). A child connects; this process
/// closes the listener 50 ms later. Whether the child's connection ended
/// (the close aborts it), and whether the delay was left.
fn round_handshake(filter: &str, with_async: bool) -> Result<Round, (&'static str, Errno)> {
    let (l, sa) = filtered(Kind::Tcp4, filter, with_async)?;
    let (status, delay_left) = race(l, || match sock::connect(Kind::Tcp4, &sa) {
        // Held, then aborted by the listener's close.
        Ok(c) => {
            if au::client_sees(c.raw(), 3000).is_reset_or_eof() {
                0
            } else {
                1
            }
        }
        Err(e) => 2 + e.0.clamp(0, 100),
    })?;
    let client_ended = match status {
        0 => true,
        1 => false,
        s => return Err(("child's connect", Errno(s - 2))),
    };
    Ok(Round {
        delay_left,
        client_ended,
    })
}

fn knob_missing() -> bool {
    !matches!(sysctl::exists(DELAY_KNOB), Ok(true))
}

/// With listenq loaded: its filters release such a connection without the
/// kernel's unlocked tail, for a plain listener (in place, under the
/// listener's lock) and an O_ASYNC one (the state's task, which holds a
/// reference on the listener), on TCP and local sockets.
pub fn run(tap: &mut Tap, env: &Env) {
    for kind in [Kind::Tcp4, Kind::UnixStream] {
        for with_async in [false, true] {
            let name = Name(kind, with_async);
            if knob_missing() {
                tap.skip(
                    name,
                    "no debug.solisten_wakeup_delay_us (not a listenq test kernel)",
                );
                continue;
            }
            if let Some(why) = env.unusable(kind) {
                tap.skip(name, why);
                continue;
            }
            let before = au::stat("released");
            let r = round(kind, "dataready", with_async);
            let after = au::stat("released");
            diag_stats(tap);
            match r {
                Ok(r) => {
                    let released = match (before, after) {
                        (Ok(a), Ok(b)) => b.wrapping_sub(a),
                        _ => u64::MAX,
                    };
                    tap.diag(format_args!(
                        "{} async={}: released +{}, client saw its end: {}, armed delay {} (so solisten_wakeup() {})",
                        kind.label(),
                        with_async,
                        released,
                        r.client_ended,
                        if r.delay_left { "left" } else { "consumed" },
                        if r.delay_left {
                            "was not called"
                        } else {
                            "ran, with a reference on the listener"
                        }
                    ));
                    let pass = released == 1 && r.client_ended;
                    if !pass {
                        sys::sleep_ms(500);
                        diag_stats(tap);
                        match crate::kstack::diag(tap, 0, b"lq_") {
                            Ok(n) => tap.diag(format_args!("{} kernel thread(s) in listenq", n)),
                            Err(e) => tap.diag(format_args!("kern.proc.kstack: {}", e)),
                        }
                    }
                    tap.ok(pass, name);
                }
                Err((step, e)) => {
                    tap.ok(false, format_args!("{} ({}: {})", name, step, e));
                }
            }
        }
    }
    run_handshake(tap, env);
    // Finding 3's race, with listenq's filter: no reversal.
    crate::t_repro_lor::run(tap);
}

/// The hold counters, for a failing round.
fn diag_stats(tap: &mut Tap) {
    let get = |n: &str| au::stat(n).unwrap_or(u64::MAX);
    tap.diag(format_args!(
        "stats: held {} released {} evicted {} timeouts {} completed {} accepted {}",
        get("held"),
        get("released"),
        get("evicted"),
        get("timeouts"),
        get("completed"),
        get("accepted")
    ));
}

/// The handshake cases (TCP only: a local connect(2) completes under the
/// listener's vnode lock).
fn run_handshake(tap: &mut Tap, env: &Env) {
    for with_async in [false, true] {
        let name = HandshakeName(with_async);
        if knob_missing() {
            tap.skip(
                name,
                "no debug.solisten_wakeup_delay_us (not a listenq test kernel)",
            );
            continue;
        }
        if let Some(why) = env.unusable(Kind::Tcp4) {
            tap.skip(name, why);
            continue;
        }
        match round_handshake("dataready", with_async) {
            Ok(r) => {
                tap.diag(format_args!(
                    "handshake async={}: client saw its end: {}, armed delay {}",
                    with_async,
                    r.client_ended,
                    if r.delay_left {
                        "left (the filter held it before any wakeup)"
                    } else {
                        "consumed (solisten_wakeup() ran; the close waited for it)"
                    }
                ));
                tap.ok(r.client_ended, name);
            }
            Err((step, e)) => {
                tap.ok(false, format_args!("{} ({}: {})", name, step, e));
            }
        }
    }
}

#[derive(Clone, Copy)]
struct HandshakeName(bool);

impl core::fmt::Display for HandshakeName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "[wakeup] tcp4 listener{} with dataready closed while a connection's handshake completes: no use after free, the connection aborted",
            if self.0 { " with O_ASYNC" } else { "" }
        )
    }
}

/// The TAP name of one case.
#[derive(Clone, Copy)]
struct Name(Kind, bool);

impl core::fmt::Display for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "[wakeup] {} listener{} closed while dataready releases a held connection: no use after free, the connection released once and aborted",
            self.0.label(),
            if self.1 { " with O_ASYNC" } else { "" }
        )
    }
}

/// `listenq.repro=wakeup` (`handshake` for the second path): the same
/// with FreeBSD's accf_data and no listenq. A test kernel with the
/// diagnostic panics ("solisten_wakeup: listener ... was freed after its
/// unlock"), which is the reproduction's result. The release path needs
/// a kernel whose connections inherit SO_ACCEPTFILTER (elsewhere accf_data
/// never holds, and the round fails at "held"); the handshake path needs
/// one whose connections do not (elsewhere the filter holds them first).
pub fn repro(tap: &mut Tap, handshake: bool) {
    tap.diag(format_args!(
        "listenq.repro={}: a listener closed while accf_data {}, no listenq loaded",
        if handshake { "handshake" } else { "wakeup" },
        if handshake {
            "is set and a connection's handshake completes"
        } else {
            "releases a held connection"
        }
    ));
    if knob_missing() {
        tap.skip(
            "accf_data racing close(2) of the listener",
            "no debug.solisten_wakeup_delay_us (not a listenq test kernel)",
        );
        return;
    }
    au::with_stock_module(tap, au::ACCF_DATA, |tap| {
        let what = "accf_data and an O_ASYNC listener closing: no use after free";
        if handshake {
            match round_handshake("dataready", true) {
                Ok(_) => {
                    tap.ok(true, format_args!("tcp4 handshake: {}", what));
                }
                Err((step, e)) => {
                    tap.ok(
                        false,
                        format_args!("tcp4 handshake: {} ({}: {})", what, step, e),
                    );
                }
            }
        } else {
            for kind in [Kind::Tcp4, Kind::UnixStream] {
                match round(kind, "dataready", true) {
                    Ok(_) => {
                        tap.ok(true, format_args!("{} release: {}", kind.label(), what));
                    }
                    Err((step, e)) => {
                        tap.ok(
                            false,
                            format_args!("{} release: {} ({}: {})", kind.label(), what, step, e),
                        );
                    }
                }
            }
        }
    });
}
