//! A TCP listener whose last descriptor is in flight (an SCM_RIGHTS
//! message in a held local connection's receive buffer) is closed when
//! that connection goes: listenq's pr_close then keeps the listener one
//! network-epoch grace period and lets it go from an epoch callback, in
//! the listener's vnet (without it, sofree() panics "curvnet is NULL":
//! this test found that). The syscall fuzzer's finding 9 reached the same
//! close under a local socket's vnode lock (solisten_enqueue() dropping
//! the connection from inside unp_connect()), where the module of 186ef59
//! slept; fuzz seed 12087 replays that (t_fuzz.rs CI_REGRESSIONS). Here
//! listenq's own eviction takes the connection first, so the close runs
//! in listenq's task. Run with listenq loaded.

use crate::accf_util::set_filter;
use crate::sock::{self, Kind};
use crate::sys;
use crate::sysctl;
use crate::tap::Tap;

pub fn run(tap: &mut Tap) {
    let name = "a TCP listener whose last descriptor is in flight closes when the held connection carrying it is evicted";
    // The local listener: limit 1, and httpready, so that a connection
    // that sent a byte stays on the incomplete queue.
    let local = sock::listener(Kind::UnixStream, 1)
        .and_then(|(l, sa)| set_filter(l.raw(), "httpready", "").map(|()| (l, sa)));
    let Ok((_ul, usa)) = local else {
        tap.skip(name, "no local listener with httpready");
        return;
    };
    let Ok((tl, tsa)) = sock::listener(Kind::Tcp4, 4) else {
        tap.skip(name, "no TCP listener");
        return;
    };
    let tcp_closes0 = sysctl::read_u64("kern.ipc.listenq.stats.closes").unwrap_or(0);
    let evicted0 = sysctl::read_u64("kern.ipc.listenq.stats.evicted").unwrap_or(0);
    // The first connection carries the TCP listener's only descriptor.
    let c1 = sock::connect(Kind::UnixStream, &usa);
    let sent = c1
        .as_ref()
        .map_err(|e| *e)
        .and_then(|c| sys::send_with_rights(c.raw(), b"G", Some(tl.raw())));
    drop(tl);
    // The TCP listener still listens (its descriptor is in flight).
    let alive = sock::connect(Kind::Tcp4, &tsa).is_ok();
    // More connections than the listener holds: the oldest (c1's) is
    // evicted, which frees its message and closes the TCP listener.
    let more: [_; 4] = core::array::from_fn(|_| sock::connect(Kind::UnixStream, &usa).ok());
    // The close's last step waits a network-epoch grace period.
    let mut closed = false;
    let t0 = sys::now_ms();
    while !closed && sys::now_ms().saturating_sub(t0) < 3000 {
        closed = sock::connect(Kind::Tcp4, &tsa).is_err();
        if !closed {
            sys::sleep_ms(20);
        }
    }
    let closes = sysctl::read_u64("kern.ipc.listenq.stats.closes").unwrap_or(0) - tcp_closes0;
    let evicted = sysctl::read_u64("kern.ipc.listenq.stats.evicted").unwrap_or(0) - evicted0;
    tap.diag(format_args!("  listenq evictions meanwhile: {}", evicted));
    tap.ok(
        sent.is_ok() && alive && closed && closes >= 1 && evicted >= 1,
        format_args!(
            "{} (sent {:?}, listening while in flight {}, refused after the drop {}, closes +{}, {} more connected)",
            name,
            sent.map(|_| ()),
            alive,
            closed,
            closes,
            more.iter().filter(|c| c.is_some()).count()
        ),
    );
}
