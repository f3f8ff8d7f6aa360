//! What a group of tests leaves behind. With listenq loaded, once the
//! group's sockets are freed (a TCP listener goes a network-epoch grace
//! period after its close), listenq holds no allocation: every listener
//! row, filter state, hold queue and index entry a group made is gone.
//! One TAP line per group, so that a leak shows in the group that made it
//! and the groups' order stops mattering to what each finds.

use crate::accf_util::settle_open_sockets;
use crate::sys;
use crate::sysctl;
use crate::tap::Tap;

const ALLOCS: &str = "kern.ipc.listenq.allocs";

/// Runs the group `f` (listenq loaded), then checks that listenq's
/// allocations are back to 0 within 3 s of its sockets being freed.
pub fn group(tap: &mut Tap, name: &str, f: impl FnOnce(&mut Tap)) {
    f(tap);
    settle_open_sockets(3000);
    let t0 = sys::now_ms();
    let mut allocs = sysctl::read_u64(ALLOCS);
    while allocs != Ok(0) && sys::now_ms().saturating_sub(t0) < 3000 {
        sys::sleep_ms(10);
        allocs = sysctl::read_u64(ALLOCS);
    }
    tap.check(
        allocs,
        Ok(0),
        format_args!(
            "[{}] listenq's allocations are back to 0 after the group",
            name
        ),
    );
}
