//! The accept filters' names on the kernel's list: registration at load,
//! and the protocol that takes them back for unload (bury, then retire),
//! or gives them back when unload backs out. accf.rs is the connections'
//! side; its create() asks here whether a filter may still be created.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::kern::accf::{self as kaccf, Callbacks};
use crate::kern::errno::Errno;
use crate::kprintln;
use crate::listeners::{State, REGISTRY};
use listenq_accf::FilterKind;

/// Where unload is (unregister()); changed and read under REGISTRY
/// (create() also looks first without it).
static PHASE: AtomicU8 = AtomicU8::new(OPEN);
/// Filters can be created.
const OPEN: u8 = 0;
/// Names buried, unload not yet decided: a create() revives them.
const BURIED: u8 = 1;
/// Unload decided: create() refuses.
const CLOSED: u8 = 2;

/// create()'s first look, without REGISTRY: unload has decided.
pub fn closed() -> bool {
    PHASE.load(Ordering::Acquire) == CLOSED
}

/// create()'s look under REGISTRY (`_registry` proves the caller holds
/// it): false once unload has decided. A create() that found a name just
/// before unload buried it gets the names back (the listener can show its
/// name only after this; getsockopt(2) copies it), and unload backs out.
pub fn may_create(_registry: &State) -> bool {
    match PHASE.load(Ordering::Acquire) {
        CLOSED => false,
        BURIED => {
            revive();
            true
        }
        _ => true,
    }
}

pub const TICK_MS: i32 = 100;

/// At load: registers every name no one else holds, with the entries
/// `cb`, and starts the hold timeouts; says how many names are listenq's.
pub fn register(cb: &Callbacks) -> usize {
    // The taskqueue first: a listener may attach, and evict, as soon as a
    // name is on the list.
    kaccf::tick_start(TICK_MS);
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
/// 1. Under REGISTRY: refuse if any listener uses a filter; otherwise
///    bury the names. From here on a lookup fails with ENOENT, as after
///    unload.
/// 2. Wait BURY_MARGIN_MS. A setsockopt that found a name before the
///    burial reaches create() meanwhile; create() (under REGISTRY) sees
///    BURIED, revives the names and attaches.
/// 3. Under REGISTRY again: if a create() came (phase back to OPEN) or a
///    filter is in use, revive the names and refuse. Otherwise CLOSED:
///    create() refuses from now on, and the entries become nullop().
///
/// Either a listener is in the list when step 3 looks (busy), or its
/// create() sees CLOSED and refuses. So once this returns true no listener
/// uses or can start using a listenq filter. The refusal is EINVAL from
/// accept_filt_setopt(), and only for a setsockopt that took longer than
/// the margin between its lookup and its create: a timing, not a safety,
/// matter.
pub fn unregister(cb: &Callbacks) -> bool {
    {
        let Some(g) = REGISTRY.lock() else {
            return false;
        };
        if in_use(&g) {
            return false;
        }
        PHASE.store(BURIED, Ordering::Release);
        for kind in FilterKind::ALL {
            if kaccf::bury(cb, kind.c_name()).is_err() {
                // A name that could not be retired would reach freed
                // code after unload.
                revive();
                return false;
            }
        }
    }
    crate::kern::time::pause_ms(kaccf::bury_margin_ms(BURY_MARGIN_MS));
    {
        let g = REGISTRY.lock();
        if PHASE.load(Ordering::Acquire) != BURIED || g.as_deref().is_none_or(in_use) {
            revive();
            return false;
        }
        PHASE.store(CLOSED, Ordering::Release);
        kaccf::retire_all();
    }
    kaccf::tick_stop();
    true
}

/// Undoes a successful unregister() (unload backing out later): under
/// REGISTRY, while create() still refuses, every buried entry gets its
/// functions back and then its name; only then can filters be created,
/// so no listener attaches to an entry whose name is not whole.
pub fn reopen(cb: &Callbacks) {
    // The taskqueue first (it may sleep: outside REGISTRY), as at load.
    kaccf::tick_start(TICK_MS);
    let _g = REGISTRY.lock();
    for kind in FilterKind::ALL {
        // ENOENT: a stock module had this name at load.
        let _ = kaccf::unretire(cb, kind, kind.c_name());
    }
    PHASE.store(OPEN, Ordering::Release);
}

/// Names buried by unregister() back, filters creatable again (REGISTRY
/// held): OPEN goes with whole names.
fn revive() {
    kaccf::revive_all();
    PHASE.store(OPEN, Ordering::Release);
}

/// Whether a listener uses a listenq filter or held connections still
/// wait for the task: unload must be refused.
fn in_use(g: &State) -> bool {
    g.accf.in_use() || kaccf::work_pending() != 0
}

/// Whether unload must be refused.
pub fn busy() -> bool {
    REGISTRY.lock().is_some_and(|g| in_use(&g)) || kaccf::work_pending() != 0
}
