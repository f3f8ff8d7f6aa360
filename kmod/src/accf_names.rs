//! The accept filters' names on the kernel's list: registration at load,
//! and the protocol that takes them back for unload (bury, then retire),
//! or gives them back when unload backs out. accf.rs is the connections'
//! side; its create() asks here whether a filter may still be created.

use crate::kern::accf::{self as kaccf, Callbacks};
use crate::kern::errno::Errno;
use crate::kern::module::Module;
use crate::kprintln;
use crate::state::{Names, State};
use listenq_accf::FilterKind;

/// create()'s look, under the registry's lock: false once unload has
/// decided. A create() that found a name just before unload buried it
/// gets the names back (the listener can show its name only after this;
/// getsockopt(2) copies it), and unload backs out.
pub fn may_create(st: &mut State) -> bool {
    match st.names {
        Names::Closed => false,
        Names::Buried => {
            revive(st);
            true
        }
        Names::Open => true,
    }
}

pub const TICK_MS: i32 = 100;

/// At load: registers every name no one else holds, with the entries
/// `cb`, and starts the hold timeouts; says how many names are listenq's.
pub fn register(cb: &Callbacks) -> usize {
    // The taskqueue first: a listener may attach, and evict, as soon as a
    // name is on the list.
    kaccf::work_start(TICK_MS);
    let mut n = 0;
    for kind in FilterKind::ALL {
        match kaccf::register(cb, kind, kind.c_name()) {
            Ok(()) => n += 1,
            Err(Errno::EEXIST) => kprintln!(
                "accept filter {} is already registered (stock accf module loaded?); listenq leaves it alone",
                kind.name()
            ),
            Err(Errno(e)) => {
                kprintln!("accept filter {}: registration failed, error {}", kind.name(), e)
            }
        }
    }
    n
}

/// How long unload leaves buried names with live entries (below).
const BURY_MARGIN_MS: i32 = 20;

/// Takes listenq's names off the accept filter list (burying them, see
/// accf_glue.c). Fails with nothing changed while a filter is in use.
///
/// A setsockopt(2) looks a name up (accept_filt_get()) and calls its
/// accf_create later, after a sleeping malloc(9). So:
/// 1. Under the registry's lock: refuse if any listener uses a filter; otherwise
///    bury the names. From here on a lookup fails with ENOENT, as after
///    unload.
/// 2. Wait BURY_MARGIN_MS. A setsockopt that found a name before the
///    burial reaches create() meanwhile; create() (under the registry's lock)
///    sees Buried, revives the names and attaches.
/// 3. Under that lock again: if a create() came (back to Open) or a
///    filter is in use, revive the names and refuse. Otherwise Closed:
///    create() refuses from now on, and the entries become nullop().
///
/// Either a listener is in the list when step 3 looks (busy), or its
/// create() sees Closed and refuses. So once this returns true no listener
/// uses or can start using a listenq filter. The refusal is EINVAL from
/// accept_filt_setopt(), and only for a setsockopt that took longer than
/// the margin between its lookup and its create: a timing, not a safety,
/// matter.
pub fn unregister(m: &Module, cb: &Callbacks) -> bool {
    {
        let mut g = m.registry();
        if in_use(&g) {
            return false;
        }
        g.names = Names::Buried;
        for kind in FilterKind::ALL {
            if kaccf::bury(cb, kind.c_name()).is_err() {
                // A name that could not be retired would reach freed
                // code after unload.
                revive(&mut g);
                return false;
            }
        }
    }
    crate::kern::time::pause_ms(kaccf::bury_margin_ms(BURY_MARGIN_MS));
    {
        let mut g = m.registry();
        if g.names != Names::Buried || in_use(&g) {
            revive(&mut g);
            return false;
        }
        g.names = Names::Closed;
        kaccf::retire_all();
    }
    kaccf::work_stop();
    true
}

/// Undoes a successful unregister() (unload backing out later): under
/// the registry's lock, while create() still refuses, every buried entry gets its
/// functions back and then its name; only then can filters be created,
/// so no listener attaches to an entry whose name is not whole.
pub fn reopen(m: &Module, cb: &Callbacks) {
    // The taskqueue first (it may sleep: outside the registry's lock), as
    // at load.
    kaccf::work_start(TICK_MS);
    let mut g = m.registry();
    for kind in FilterKind::ALL {
        // ENOENT: a stock module had this name at load.
        let _ = kaccf::unretire(cb, kind, kind.c_name());
    }
    g.names = Names::Open;
}

/// Names buried by unregister() back, filters creatable again (under the
/// registry's lock): Open goes with whole names.
fn revive(st: &mut State) {
    kaccf::revive_all();
    st.names = Names::Open;
}

/// Whether a listener uses a listenq filter or held connections still
/// wait for the task: unload must be refused.
fn in_use(g: &State) -> bool {
    g.accf.in_use() || kaccf::work_pending() != 0
}

/// Whether unload must be refused.
pub fn busy(m: &Module) -> bool {
    in_use(&m.registry())
}
