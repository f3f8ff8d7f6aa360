//! listen(2) on a half-closed TCP connection (issue 22: the page fault in
//! the delayed-ACK timer).
//!
//! FreeBSD 14's tcp_usr_listen() lets a connection in FIN_WAIT_2 become a
//! listener: shutdown(SHUT_RDWR) and the ACK of its FIN end in
//! soisdisconnected(), which clears every flag solisten_proto_check()
//! refuses. Data the peer sends just before arms the delayed-ACK timer;
//! solisten_proto() then tears down so_snd, and the timer's tcp_output()
//! takes a NULL send-buffer mutex in the callout thread. listenq's
//! pr_listen refuses it with EINVAL (kmod/socket_glue.c
//! lq_tcp_listen_check). A kernel without listenq panics here unless it
//! carries the test kernels' mend (KERNEL-NOTES, listenq(4) BUGS), so the
//! suite runs this only with listenq loaded; `listenq.repro=halfclosed`
//! runs it without, as the reproduction on a stock kernel.

use crate::accf_util::tcp_state;
use crate::env::Env;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd};
use crate::tap::Tap;

/// netinet/tcp_fsm.h
const TCPS_FIN_WAIT_2: u8 = 9;
const SHUT_RDWR: i32 = 2;

/// A connection whose client side is half closed (FIN_WAIT_2,
/// disconnected) with a delayed ACK pending for a byte its peer sent.
pub struct HalfClosed {
    pub client: Fd,
    _server: Fd,
    _listener: Fd,
}

/// Builds it, or says which step failed.
pub fn half_closed(kind: Kind) -> Result<HalfClosed, (&'static str, Errno)> {
    let (l, sa) = sock::listener(kind, 4).map_err(|e| ("listener", e))?;
    let c = sock::connect(kind, &sa).map_err(|e| ("connect", e))?;
    let s = sock::accept(l.raw()).map_err(|e| ("accept", e))?;
    sys::shutdown(c.raw(), SHUT_RDWR).map_err(|e| ("shutdown", e))?;
    // The peer's ACK of the FIN comes through the loopback's netisr.
    let t0 = sys::now_ms();
    loop {
        match tcp_state(c.raw()) {
            Ok(TCPS_FIN_WAIT_2) => break,
            Ok(_) if sys::now_ms() - t0 < 2000 => sys::sleep_ms(1),
            Ok(st) => return Err(("FIN_WAIT_2 within 2 s", Errno(i32::from(st)))),
            Err(e) => return Err(("TCP_INFO", e)),
        }
    }
    // A byte from the peer: the client acknowledges it late (delayed ACK),
    // so the timer is armed when listen(2) comes, 40 ms later at most.
    sys::write(s.raw(), b"x").map_err(|e| ("peer write", e))?;
    sys::sleep_ms(2);
    Ok(HalfClosed {
        client: c,
        _server: s,
        _listener: l,
    })
}

/// With listenq loaded: listen(2) on such a connection is EINVAL, the
/// connection goes on (its timer fires on a connection, not a
/// listener), and a fresh socket still listens.
pub fn run(tap: &mut Tap, env: &Env) {
    for kind in [Kind::Tcp4, Kind::Tcp6] {
        let name = kind.label();
        if let Some(why) = env.unusable(kind) {
            tap.skip(
                format_args!("listen(2) on a half-closed {} connection: EINVAL", name),
                why,
            );
            continue;
        }
        let hc = match half_closed(kind) {
            Ok(hc) => hc,
            Err((step, e)) => {
                tap.ok(
                    false,
                    format_args!(
                        "listen(2) on a half-closed {} connection: EINVAL (setup: {}: {})",
                        name, step, e
                    ),
                );
                continue;
            }
        };
        let r = sys::listen(hc.client.raw(), 5);
        tap.check(
            r,
            Err(Errno::EINVAL),
            format_args!(
                "listen(2) on a half-closed {} connection (FIN_WAIT_2, delayed ACK armed): EINVAL",
                name
            ),
        );
        // Past the delayed ACK (40 ms): the timer ran on a connection.
        sys::sleep_ms(100);
        tap.check(
            tcp_state(hc.client.raw()),
            Ok(TCPS_FIN_WAIT_2),
            format_args!(
                "{}: the refused socket is still the half-closed connection",
                name
            ),
        );
        drop(hc);
        let fresh = sock::listener(kind, 5).map(|_| ());
        tap.check(
            fresh,
            Ok(()),
            format_args!("{}: a new socket still listens", name),
        );
    }
}

/// `listenq.repro=halfclosed`: the same without listenq, to show what the
/// kernel does. A stock 14 kernel answers 0 and then panics in
/// tcp_output() from the delayed-ACK timer (so this reports `not ok` or
/// never finishes); the project's test kernels carry a mend and answer
/// EINVAL.
pub fn repro(tap: &mut Tap) {
    tap.diag(format_args!(
        "listenq.repro=halfclosed: listen(2) on a half-closed tcp4 connection, no listenq loaded"
    ));
    let hc = match half_closed(Kind::Tcp4) {
        Ok(hc) => hc,
        Err((step, e)) => {
            tap.ok(
                false,
                format_args!("half-closed connection: {}: {}", step, e),
            );
            return;
        }
    };
    let r = sys::listen(hc.client.raw(), 5);
    tap.diag(format_args!("listen(2) answered {:?}", r));
    sys::sleep_ms(500);
    tap.check(
        r,
        Err(Errno::EINVAL),
        "listen(2) on a half-closed tcp4 connection without listenq: EINVAL, no panic",
    );
}
