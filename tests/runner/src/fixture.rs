//! listenq loaded for one test, and the kernel given back as the test
//! found it. `Listenq::load` loads the module; dropping the fixture waits
//! for the test's sockets to be freed (a TCP listener goes a
//! network-epoch grace period after its close), checks that listenq holds
//! no allocation any more (every listener row, filter state, hold queue
//! and index entry the test made is gone), and unloads it. Each is one
//! named TAP line, so a leak shows in the test that made it, and no test
//! finds state an earlier one left: their order stops mattering.

use core::fmt;

use crate::accf_util::settle_open_sockets;
use crate::env::{Env, KO_PATH};
use crate::kld;
use crate::sys;
use crate::sysctl;
use crate::tap::Tap;

const ALLOCS: &str = "kern.ipc.listenq.allocs";
/// How long the test's freed sockets and listenq's allocations may take.
const SETTLE_MS: u64 = 3000;

/// listenq loaded for the test `name`, which reports through `tap()`.
pub struct Listenq<'t> {
    tap: &'t mut Tap,
    name: &'static str,
    id: i32,
}

impl<'t> Listenq<'t> {
    /// Loads listenq for `name`; None (and a skip or a failure line) when
    /// it cannot be, in which case the test does not run.
    pub fn load(tap: &'t mut Tap, env: &Env, name: &'static str) -> Option<Self> {
        let line = Line(name, "kldload listenq for the test");
        if let Err(e) = env.ko {
            tap.skip(line, format_args!("listenq.ko not in image ({})", e));
            return None;
        }
        match kld::load(KO_PATH) {
            Ok(id) => {
                tap.ok(true, line);
                Some(Listenq { tap, name, id })
            }
            Err(e) => {
                tap.ok(false, line);
                tap.diag(format_args!("  kldload: {}", e));
                None
            }
        }
    }

    pub fn tap(&mut self) -> &mut Tap {
        self.tap
    }
}

impl Drop for Listenq<'_> {
    fn drop(&mut self) {
        settle_open_sockets(SETTLE_MS);
        let t0 = sys::now_ms();
        let mut allocs = sysctl::read_u64(ALLOCS);
        while allocs != Ok(0) && sys::now_ms().saturating_sub(t0) < SETTLE_MS {
            sys::sleep_ms(10);
            allocs = sysctl::read_u64(ALLOCS);
        }
        self.tap.check(
            allocs,
            Ok(0),
            Line(
                self.name,
                "listenq's allocations are back to 0 after the test",
            ),
        );
        let r = kld::unload_settled(self.id, SETTLE_MS);
        self.tap.check(
            r,
            Ok(()),
            Line(self.name, "kldunload listenq after the test"),
        );
    }
}

/// A TAP line's name: `[test] what`.
struct Line(&'static str, &'static str);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.0, self.1)
    }
}
