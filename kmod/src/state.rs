//! What the Module's registry mutex guards (kern/module.rs
//! `Module::registry`): the listeners' rows and what each owns
//! (listeners.rs), the accept filter states (filters.rs), and where the
//! filter names are in unload (accf_names.rs).

use alloc::vec::Vec;

use crate::filters::Filters;
use crate::kern::pending::PendingRef;
use crate::kern::sockref::SocketHold;
use crate::kern::stat::Stat;
use listenq_policy::ratelimit::PerSecond;
use listenq_policy::registry::Registry;

/// Where unload is (unregister()), in the registry (`State::names`):
/// changed and read under its lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Filters can be created.
    Open,
    /// Names buried, unload not yet decided: a create() revives them.
    Buried,
    /// Unload decided: create() refuses.
    Closed,
}

/// What a row owns: a reference on its socket, and one on its listener's
/// `Pending` (the listen upcall and the child index hold their own).
pub struct Tracked {
    pub hold: SocketHold,
    pub pending: PendingRef,
    /// Log lines about what users did on this listener, this second.
    pub log: PerSecond,
}

/// Everything listenq tracks, under one mutex.
pub struct State {
    pub reg: Registry,
    /// What each row of `reg` owns: one entry per row, added and removed
    /// with it, in the same order.
    pub held: Vec<Tracked>,
    pub accf: Filters,
    /// Set once unload has taken the listeners: nothing registers again.
    pub closed: bool,
    /// Whether filters can be created (accf_names.rs, unload).
    pub names: Names,
}

impl State {
    pub const fn new() -> State {
        State {
            reg: Registry::new(),
            held: Vec::new(),
            accf: Filters::new(),
            closed: false,
            names: Names::Open,
        }
    }

    /// Forgets the row of `so` and hands over its references, to be
    /// released once the registry is.
    pub fn close(&mut self, so: usize) -> Option<Tracked> {
        self.reg.close(so)?;
        Stat::Closes.bump();
        let i = self.held.iter().position(|t| t.hold.key() == so)?;
        let h = self.held.swap_remove(i);
        if self.held.is_empty() {
            // As the registry: idle means no allocation at all.
            self.held = Vec::new();
        }
        Some(h)
    }
}
