//! The tests that run after the module's lifecycle checks, each with
//! what it needs. A test that needs listenq gets it loaded by its own
//! fixture (fixture.rs) and unloaded after it, with its allocations
//! checked, so it finds the kernel as a fresh boot would; a test that
//! manages the module itself (loads and unloads it, with tunables or
//! under load) gets nothing. Only the stock accept filter modules are
//! state no fixture can undo (uipc_accf.c keeps their names registered
//! once loaded), so the test that loads them comes after every test that
//! must not see them.

use crate::env::Env;
use crate::fixture::Listenq;
use crate::record::{self, Recording};
use crate::sys;
use crate::tap::Tap;
use crate::{
    t_accf, t_close_in_flight, t_defaults, t_fair, t_halfclosed, t_listen, t_listeners, t_module,
    t_stress, t_wakeup_race,
};

/// What a test needs from the fixture.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// listenq loaded for the test, and unloaded after it.
    Listenq,
    /// Nothing: it loads and unloads modules itself.
    Itself,
}

/// What every test may read: the machine, and the listen(2) semantics
/// recorded on the stock kernel before listenq was first loaded.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub stock: &'a Recording,
}

pub struct Test {
    pub name: &'static str,
    pub needs: Needs,
    pub run: fn(&mut Tap, &Ctx<'_>),
}

/// In the order they run. Those that need listenq would pass in any
/// order; t_accf loads the stock modules, which stay registered, so every
/// test before it sees a kernel without them.
pub const TESTS: &[Test] = &[
    Test {
        name: "listen(2) semantics",
        needs: Needs::Listenq,
        run: semantics,
    },
    Test {
        // Only with listenq: without it a stock 14 kernel panics here.
        name: "half-closed listen",
        needs: Needs::Listenq,
        run: |tap, c| t_halfclosed::run(tap, c.env),
    },
    Test {
        name: "listeners",
        needs: Needs::Listenq,
        run: |tap, c| t_listeners::run(tap, c.env),
    },
    Test {
        name: "fair eviction",
        needs: Needs::Listenq,
        run: |tap, c| t_fair::run(tap, c.env),
    },
    Test {
        // Finding 7: a release racing the listener's close.
        name: "wakeup race",
        needs: Needs::Listenq,
        run: |tap, c| t_wakeup_race::run(tap, c.env),
    },
    Test {
        // A TCP listener closed when the message carrying it goes.
        name: "close in flight",
        needs: Needs::Listenq,
        run: |tap, _| t_close_in_flight::run(tap),
    },
    Test {
        name: "load and unload cycles",
        needs: Needs::Itself,
        run: |tap, c| t_module::cycles(tap, c.env),
    },
    Test {
        name: "listeners adopted at load",
        needs: Needs::Itself,
        run: |tap, c| {
            t_module::adopted_at_load(tap, c.env);
            t_module::local_adopted_at_load(tap, c.env);
            t_module::vnet_tcp_adopted_at_load(tap, c.env);
        },
    },
    Test {
        name: "listeners across unload",
        needs: Needs::Itself,
        run: |tap, c| {
            t_listeners::survives_unload(tap, c.env);
            t_listeners::unload_under_load(tap, c.env);
        },
    },
    Test {
        // Loads the stock accf modules, which stay registered.
        name: "accept filters",
        needs: Needs::Itself,
        run: |tap, c| t_accf::run(tap, c.env),
    },
    Test {
        // Per-filter and per-VNET defaults: tunables come before the load.
        name: "defaults",
        needs: Needs::Itself,
        run: |tap, c| t_defaults::run(tap, c.env),
    },
    Test {
        // Forked processes at once, and unload rounds under that load.
        name: "stress",
        needs: Needs::Itself,
        run: |tap, c| t_stress::run(tap, c.env),
    },
];

/// The semantic suite again with listenq loaded, compared with the stock
/// kernel's recording.
fn semantics(tap: &mut Tap, c: &Ctx<'_>) {
    let t1 = sys::now_ms();
    let mut with = Recording::new("with listenq", false);
    t_listen::run(tap, c.env, &mut with);
    tap.diag(format_args!(
        "semantic suite with listenq: {} ms",
        sys::now_ms() - t1
    ));
    record::compare(tap, c.stock, &with);
}

/// Runs every test, each with its fixture.
pub fn run_all(tap: &mut Tap, c: &Ctx<'_>) {
    for t in TESTS {
        tap.diag(format_args!("test: {}", t.name));
        match t.needs {
            Needs::Listenq => {
                if let Some(mut fx) = Listenq::load(tap, c.env, t.name) {
                    (t.run)(fx.tap(), c);
                }
            }
            Needs::Itself => (t.run)(tap, c),
        }
    }
}
