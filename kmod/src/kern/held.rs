//! The connections an accept filter holds on one listener: the policy's
//! hold queue (listenq_policy::holdq), each entry with the work item that
//! will let its connection go (work.rs).
//!
//! Why the sockets named by keys are live when a work item is queued for
//! them: a key enters only through `admit`, from a `Tagged` socket, one
//! that carries listenq's destructor and whose receive upcall names the
//! listener's filter state, the state whose hold queue it enters. That
//! destructor, and every other path that clears the upcall, gives the
//! upcall back under that state's mutex, and giving it back takes the key
//! out (filters.rs `release_upcall`, kern/entry/accf.rs for who calls it).
//! So while a state's mutex is held, which `Attached` proves, every key in
//! its hold queue names a socket sofree() has not finished with; and the
//! listener is live because its state is attached.

use crate::kern::filter_arg::Attached;
use crate::kern::sockbuf::Tagged;
use crate::kern::work::{RawWork, Work};
use listenq_policy::holdq::{self, Admit, HoldQueue};

/// One held connection: the filter's state `S` for it, and its work item.
#[derive(Clone, Copy)]
pub struct Entry<S> {
    state: S,
    work: RawWork,
}

/// What one held connection costs a hold queue (listenq(4)).
pub const fn bytes_per_entry<S>() -> usize {
    holdq::bytes_per_entry::<Entry<S>>()
}

pub struct HeldConns<S>(HoldQueue<Entry<S>>);

/// How an admission went (holdq::Admit, the victims already dealt with).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Admitted {
    Held,
    /// No memory to hold it: pass it on unfiltered.
    NoMemory,
    /// Already held; nothing changed.
    AlreadyHeld,
}

impl<S: Copy> HeldConns<S> {
    pub fn new(capacity: usize) -> Self {
        HeldConns(HoldQueue::new(capacity))
    }

    /// Room for the whole capacity; false when memory is short.
    pub fn reserve(&mut self) -> bool {
        self.0.reserve()
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.0.set_capacity(capacity);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, key: usize) -> bool {
        self.0.contains(key)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut S> {
        self.0.get_mut(key).map(|h| &mut h.state.state)
    }

    /// Lets go of `key` (its upcall was given back): its item is freed.
    pub fn remove(&mut self, key: usize) {
        if let Some(e) = self.0.remove(key) {
            // SAFETY: just taken out of its entry.
            unsafe { e.state.work.free() };
        }
    }

    /// Lets go of every one (filter removal, unload), oldest first: the
    /// items are freed.
    pub fn clear(&mut self) {
        for e in self.0.drain() {
            // SAFETY: just taken out of its entry.
            unsafe { e.state.work.free() };
        }
    }

    /// Holds `so` on `on`'s listener with `state` and the item `work`
    /// (freed if it is not held). The oldest are evicted to make room:
    /// they leave the incomplete queue here and now when they can (the
    /// listener is locked by the caller, soisconnected()), and the second
    /// figure says how many did; the others go from the task, which
    /// counts them. Evictions happen whatever becomes of the admission.
    pub fn admit(
        &mut self,
        on: Attached<'_>,
        so: &Tagged<'_>,
        now: u64,
        state: S,
        work: Work,
    ) -> (Admitted, u64) {
        let head = on.head();
        let mut gone_now = 0u64;
        let w = work.into_raw();
        let e = Entry { state, work: w };
        let admitted = self.0.admit(so.key(), now, e, |v| {
            // SAFETY: taken out of its entry; `head` and `v.key` are live
            // (top of this file).
            if unsafe { v.state.work.evict_now(head, v.key) } {
                gone_now += 1;
            }
        });
        let admitted = match admitted {
            Admit::HeldEvicting(v) => {
                // SAFETY: as for the extra victims above.
                if unsafe { v.state.work.evict_now(head, v.key) } {
                    gone_now += 1;
                }
                Admitted::Held
            }
            Admit::Held => Admitted::Held,
            Admit::NoMemory => Admitted::NoMemory,
            Admit::AlreadyHeld => Admitted::AlreadyHeld,
        };
        if admitted != Admitted::Held {
            // SAFETY: not in the queue: the item is still ours alone.
            unsafe { w.free() };
        }
        (admitted, gone_now)
    }

    /// Lets the oldest connection go if it has been held `ms` at `now`:
    /// delivered to the completed queue or dropped, from the task. False
    /// when none has.
    pub fn expire(&mut self, on: Attached<'_>, now: u64, ms: u64, deliver: bool) -> bool {
        let Some(e) = self.0.pop_expired(now, ms) else {
            return false;
        };
        // SAFETY: taken out of its entry; the listener and `e.key` are
        // live (top of this file).
        unsafe { e.state.work.schedule(on.head(), e.key, deliver) };
        true
    }
}
