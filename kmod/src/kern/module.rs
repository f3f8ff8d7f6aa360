//! The one Module value: what listenq owns between MOD_LOAD and
//! MOD_UNLOAD that more than one thread reaches, in static storage behind
//! a `Revocable` gate (kern/sync). A thread the kernel sends into listenq
//! counts itself in (`InFlight`) and asks its token for the module
//! (`Module::get`); None means "listenq is not (or no longer) active",
//! decided there, once, for everything the thread does.
//!
//! What stays outside, and why:
//! - the protocol switch slots (kern/protosw.rs): a hook must call the
//!   kernel's own entry whether or not the module is still active, so
//!   they are read before `Module::get` and cleared only after the drain;
//! - the accept filter names, the filters' taskqueue and the hold-timeout
//!   callout (accf_glue.c, work_glue.c): they follow the names' phase
//!   (`state::Names`), stopped when unload retires the names and started
//!   again when it backs out, not the module value's lifetime;
//! - counter(9) (kern/stat.rs): counted from paths that hold no `&Module`
//!   (an accept filter's callback reaches its listener's state through the
//!   kernel's token, not through the module), so allocated before
//!   `publish` and freed after the module is dropped.

use crate::kern::inflight::InFlight;
use crate::kern::pending::Children;
use crate::kern::sync::{ModEvent, Mutex, MutexGuard, Revocable, Revoked};
use crate::state::State;

pub struct Module {
    /// The listeners, their rows and filter states (listeners.rs).
    registry: Mutex<State>,
    /// From a connection to its listener, for accept(2).
    children: Children,
}

/// Built at compile time: about 50 KB (mostly the child index's ring),
/// which no kernel stack could hold on its way here.
static MODULE: Revocable<Module> = Revocable::new(Module {
    registry: Mutex::new(State::new()),
    children: Children::new(),
});

impl Module {
    /// MOD_LOAD: the module, empty, with its mutexes initialized; false
    /// if it was published before.
    pub fn publish(ev: &mut ModEvent) -> bool {
        MODULE.publish(ev, |m| {
            // SAFETY: `publish` calls this once, with the value where it
            // stays until it is dropped, before anyone else can reach it.
            unsafe {
                m.registry.init(c"listenq registry");
                m.children.init();
            }
        })
    }

    /// The module for a counted thread, for as long as it is counted;
    /// None before load and from the moment unload takes it back.
    pub fn get(f: &InFlight) -> Option<&Module> {
        MODULE.get(f)
    }

    /// The module for the module event handler.
    pub fn peek(ev: &ModEvent) -> Option<&Module> {
        MODULE.peek(ev)
    }

    /// MOD_UNLOAD (or a failed load): no thread gets the module from now
    /// on; returns once every counted thread has left, with the module
    /// the caller's to drop.
    pub fn revoke(ev: &mut ModEvent) -> Option<Revoked<'_, Module>> {
        MODULE.revoke(ev)
    }

    /// Lock order: socket locks, then the registry, then one listener's
    /// own mutex (kern/pending.rs), then a shard of the child index.
    #[track_caller]
    pub fn registry(&self) -> MutexGuard<'_, State> {
        // SAFETY: initialized by `publish` before any `&Module` existed;
        // destroyed only when the module is dropped, which the guard's
        // borrow of `self` outlasts (kern/sync/revocable.rs).
        unsafe { self.registry.lock() }
    }

    pub fn children(&self) -> &Children {
        &self.children
    }
}
