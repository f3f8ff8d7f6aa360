//! Per-VNET defaults (listenq(4) kern.ipc.listenq.vnet.*): a jail with its
//! own vnet sets its own hold timeout and default_arg, which its listeners
//! use instead of the host-wide values, and cannot touch the host's; the
//! host's vnet has the same override; a jail without a vnet can set
//! neither.

use crate::accf_util::{accept_within, client, filtered};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::t_visible::{exit_code, report, SETUP_FAILED};
use crate::tap::Tap;

const V_MS: &str = "kern.ipc.listenq.vnet.hold_timeout_ms";
const V_DROP: &str = "kern.ipc.listenq.vnet.hold_timeout_drop";
const V_DATA: &str = "kern.ipc.listenq.vnet.dataready.default_arg";
const HOST_MS: &str = "kern.ipc.listenq.hold_timeout_ms";

/// A silent connection to a dataready listener with an empty af_arg:
/// Ok(ms) when accept(2) returned it within `within` ms, after ms.
fn held_for(within: i32) -> Result<u64, Errno> {
    let (l, sa) = filtered(8, "dataready", "")?;
    let _c = client(&sa)?;
    let t0 = sys::now_ms();
    accept_within(l.raw(), within).map(|_| sys::now_ms() - t0)
}

pub fn run(tap: &mut Tap) {
    let mut b = [0u8; 256];
    tap.check(
        sysctl::read_int(V_MS),
        Ok(-1),
        "kern.ipc.listenq.vnet.hold_timeout_ms is -1 (the host-wide value) by default",
    );
    tap.check(
        sysctl::read_string(V_DATA, &mut b).map(<[u8]>::len),
        Ok(0),
        "kern.ipc.listenq.vnet.dataready.default_arg is empty (the host-wide value) by default",
    );
    tap.check(
        sysctl::write_int(V_MS, -2),
        Err(Errno::EINVAL),
        "vnet.hold_timeout_ms=-2 refused (EINVAL)",
    );
    tap.check(
        sysctl::write_int(V_DROP, 2),
        Err(Errno::EINVAL),
        "vnet.hold_timeout_drop=2 refused (EINVAL)",
    );
    tap.check(
        sysctl::write_str(V_DATA, "nosuchoption"),
        Err(Errno::EINVAL),
        "vnet.dataready.default_arg=nosuchoption refused (EINVAL)",
    );
    // The host's own vnet: an override of the host-wide 0 (no limit).
    let host_ms = sysctl::read_int(HOST_MS).unwrap_or(-1);
    tap.check(
        host_ms,
        0,
        "the host-wide hold_timeout_ms is 0 (no limit) for this test",
    );
    tap.check(
        sysctl::write_int(V_MS, 150),
        Ok(()),
        "vnet.hold_timeout_ms=150 in the host's vnet",
    );
    let got = held_for(3000);
    tap.ok(
        matches!(got, Ok(ms) if (100..3000).contains(&ms)),
        format_args!(
            "  a silent dataready connection is delivered after about 150 ms ({:?})",
            got
        ),
    );
    let _ = sysctl::write_int(V_MS, -1);
    let got = held_for(600);
    tap.check(
        got.map(|_| ()),
        Err(Errno::TIMEOUT),
        "  back at -1: the host-wide 0 holds it (not accepted in 600 ms)",
    );

    vnet_jail(tap);
    tap.check(
        sysctl::read_int(V_MS),
        Ok(-1),
        "[root] the vnet jail's override left the host's at -1",
    );
    tap.check(
        sysctl::read_int(HOST_MS),
        Ok(0),
        "[root] and the host-wide hold_timeout_ms at 0",
    );
    plain_jail(tap);
}

fn vnet_jail(tap: &mut Tap) {
    let names = [
        "sets its own vnet.hold_timeout_ms=200",
        "may not set the host-wide hold_timeout_ms (EPERM)",
        "its silent dataready connection is delivered after about 200 ms",
        "back at -1, the host-wide value (no limit) holds it 600 ms",
        "vnet.dataready.default_arg=timeout=100 stands in for an empty af_arg",
    ];
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => sys::exit(vnet_child(tap)),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            tap.ok(false, format_args!("[vnet jail] fork: {}", e));
            return;
        }
    };
    report(tap, "vnet jail", exit_code(sys::wait4(pid)), &names);
}

fn vnet_child(tap: &mut Tap) -> i32 {
    if !matches!(sys::jail_vnet(c"/", c"lqvnetdef"), Ok(j) if j > 0) {
        return SETUP_FAILED;
    }
    if crate::net::setup_loopback(tap).v4.is_err() {
        return SETUP_FAILED | 0x10;
    }
    let mut bad = 0;
    if sysctl::write_int(V_MS, 200).is_err() {
        bad |= 1;
    }
    if sysctl::write_int(HOST_MS, 5) != Err(Errno::EPERM) {
        bad |= 2;
    }
    if !matches!(held_for(3000), Ok(ms) if (150..3000).contains(&ms)) {
        bad |= 4;
    }
    let _ = sysctl::write_int(V_MS, -1);
    if held_for(600) != Err(Errno::TIMEOUT) {
        bad |= 8;
    }
    let set = sysctl::write_str(V_DATA, "timeout=100");
    if set.is_err() || !matches!(held_for(3000), Ok(ms) if ms < 3000) {
        bad |= 16;
    }
    bad
}

fn plain_jail(tap: &mut Tap) {
    let names = ["a jail without its own vnet may not set kern.ipc.listenq.vnet.* (EPERM)"];
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => {
            if !matches!(sys::jail(c"/", c"lqplaindef"), Ok(j) if j > 0) {
                sys::exit(SETUP_FAILED);
            }
            let r = sysctl::write_int(V_MS, 100);
            sys::exit(if r == Err(Errno::EPERM) { 0 } else { 1 })
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            tap.ok(false, format_args!("[plain jail] fork: {}", e));
            return;
        }
    };
    report(tap, "plain jail", exit_code(sys::wait4(pid)), &names);
    tap.check(
        sysctl::read_int(V_MS),
        Ok(-1),
        "[root] the host's vnet.hold_timeout_ms is still -1",
    );
}
