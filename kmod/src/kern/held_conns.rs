//! The connections an accept filter holds on one listener: the policy's
//! hold queue (listenq_policy::holdq), whose leaving list keeps the ones
//! it let go until the state's task terminates or delivers them (work.rs,
//! work_glue.c). A held connection costs its slot and nothing else.
//!
//! Why the sockets named by keys are live when the task takes references
//! on them (and when an eviction touches them): a key enters only through
//! `admit`, from a `Tagged` socket, one that carries listenq's destructor
//! and whose receive upcall names the listener's filter state, the state
//! whose hold queue it enters. That destructor, and every other path that
//! clears the upcall, gives the upcall back under that state's mutex, and
//! giving it back takes the key out, held or leaving (filters.rs
//! `release_upcall`, kern/entry/accf.rs for who calls it). So while a
//! state's mutex is held every key in its hold queue names a socket
//! sofree() has not finished with; and the listener is live while the
//! state is attached (`Attached` proves both). A `Detached` leaving entry
//! is live for another reason: it owns the references the incomplete
//! queue held on the socket and on the listener, until the task uses them.

use crate::kern::filter_arg::Attached;
use crate::kern::sdt;
use crate::kern::sockbuf::Tagged;
use crate::kern::work::{self, Leaving};
use listenq_policy::fair::Source;
use listenq_policy::holdq::{self, Admit, Evict, Evictions, HoldQueue, Leave};

pub use listenq_policy::holdq::Pos;

/// What one held connection's slot costs a hold queue (listenq(4)).
pub const fn slot_bytes<S>() -> usize {
    holdq::slot_bytes::<S>()
}

/// The queue, and the prefixes that make a TCP peer's source (fair
/// policy).
pub struct HeldConns<S>(HoldQueue<S>, (u8, u8));

/// How an admission went (holdq::Admit, the victims already dealt with).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Admitted {
    /// Held, at this position.
    Held(Pos),
    /// No memory to hold it: pass it on unfiltered.
    NoMemory,
    /// Already held; nothing changed.
    AlreadyHeld,
}

impl<S: Copy> HeldConns<S> {
    pub fn new(capacity: usize) -> Self {
        HeldConns(HoldQueue::new(capacity), (32, 64))
    }

    /// Room for a first chunk (holdq `reserve_first`: memory then follows
    /// what is held); false when memory is short.
    pub fn reserve_first(&mut self) -> bool {
        self.0.reserve_first()
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.0.set_capacity(capacity);
    }

    /// Which connection a full queue lets go, and (fair policy) how many
    /// bits of a TCP peer's IPv4 and IPv6 address make its source; before
    /// the first admission.
    pub fn set_policy(&mut self, policy: Evict, prefix4: u8, prefix6: u8) {
        self.0.set_policy(policy);
        self.1 = (prefix4, prefix6);
    }

    pub fn is_fair(&self) -> bool {
        matches!(self.0.policy(), Evict::Fair { .. })
    }

    /// Sources holding a connection (fair policy).
    pub fn sources(&self) -> usize {
        self.0.sources()
    }

    pub fn evictions(&self) -> Evictions {
        self.0.evictions()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Connections waiting for the task.
    pub fn has_leaving(&self) -> bool {
        self.0.leaving_len() != 0
    }

    pub fn contains(&self, key: usize) -> bool {
        self.0.contains(key)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut S> {
        self.0.get_mut(key)
    }

    /// Where held `key` sits, for `state_at` and `remove_pos` (good until
    /// the queue next changes).
    pub fn held_pos(&self, key: usize) -> Option<Pos> {
        self.0.held_pos(key)
    }

    pub fn state_at(&mut self, p: Pos) -> Option<&mut S> {
        self.0.state_at(p)
    }

    /// Lets go of the held connection at `p` (its upcall was given back).
    pub fn remove_pos(&mut self, p: Pos) {
        let _ = self.0.remove_pos(p);
    }

    /// Hands the held connection at `p`, which its filter released, to
    /// the task to deliver (the caller queues it): the upcall could not
    /// (deliver_glue.c). False if `p` names none.
    pub fn leave_to_deliver(&mut self, p: Pos) -> bool {
        self.0.leave_pos(p, Leave::Deliver)
    }

    /// Lets go of `key`, held or leaving (its upcall was given back).
    pub fn remove(&mut self, key: usize) {
        let _ = self.0.remove(key);
    }

    /// Filter removal (accf_destroy): forgets every held connection (the
    /// kernel moves them on) and every leaving one still on the incomplete
    /// queue (the same), and keeps the `Detached` ones, whose references
    /// only the task can give back. False when none is left at all.
    pub fn detach(&mut self) -> bool {
        for _ in self.0.drain() {}
        self.0.drop_leaving(|how| how == Leave::Detached);
        self.has_leaving()
    }

    /// Forgets everything (module unload: no task is pending, so no
    /// leaving connection is left).
    pub fn clear(&mut self) {
        for _ in self.0.drain() {}
        self.0.drop_leaving(|_| false);
    }

    /// Holds `so` on `on`'s listener with `state` at `now` (the hold
    /// clock, kern/accf.rs `hold_clock`). The oldest are evicted to make room: they leave the
    /// incomplete queue here and now when they can (the listener is locked
    /// by the caller, soisconnected()), and the second figure says how
    /// many did; the others are left to the task, which counts them. The
    /// caller queues the task when `has_leaving`. Evictions happen
    /// whatever becomes of the admission.
    pub fn admit(
        &mut self,
        on: Attached<'_>,
        so: &Tagged<'_>,
        now: u32,
        state: S,
    ) -> (Admitted, u64) {
        let head = on.head();
        let mut gone_now = 0u64;
        // The source only matters to the fair policy: the others skip the
        // pcb read.
        let fair = matches!(self.0.policy(), Evict::Fair { .. });
        let source = if fair {
            Source::new(so.source(self.1 .0, self.1 .1))
        } else {
            Source::new(0)
        };
        let admitted = self.0.admit_from(so.key(), source, now, state, |v| {
            sdt::evict(head, v, fair);
            // SAFETY: `head` and `v` are live (top of this file).
            let how = unsafe { work::evict_now(head, v) };
            if how == Some(Leave::Detached) {
                gone_now += 1;
            }
            how
        });
        let admitted = match admitted {
            Ok(p) => Admitted::Held(p),
            Err(Admit::AlreadyHeld) => Admitted::AlreadyHeld,
            // admit_pos() never says Err(Held); if it did, not holding
            // the connection is the safe reading.
            Err(Admit::NoMemory | Admit::Held) => Admitted::NoMemory,
        };
        (admitted, gone_now)
    }

    /// Lets the oldest connection go if it has been held `ticks` at `now`
    /// (the hold clock):
    /// delivered to the completed queue or dropped, by the task (the
    /// caller queues it): which, None when none has.
    pub fn expire(&mut self, now: u32, ticks: u32, deliver: bool) -> Option<usize> {
        let how = if deliver {
            Leave::Deliver
        } else {
            Leave::Abort
        };
        self.0.expire(now, ticks, how)
    }

    /// For the state's task: takes the next leaving connection out of the
    /// queue, with the references the task needs. `head`: the listener's
    /// key, `on`: whether the state is still attached.
    pub fn next_leaving(&mut self, head: usize, on: Option<Attached<'_>>) -> Option<Leaving> {
        while let Some((key, how)) = self.0.pop_leaving() {
            match how {
                Leave::Detached => {
                    // SAFETY: a Detached entry owns the references the
                    // incomplete queue held on `key` and on `head` (top of
                    // this file), handed to the task with it.
                    return Some(unsafe { Leaving::detached(head, key) });
                }
                Leave::Abort | Leave::Deliver => {
                    // Not reached without `on`: detach() dropped these.
                    let Some(on) = on else { continue };
                    // SAFETY: `on.head()` and `key` are live while the
                    // state's mutex is held (top of this file).
                    if let Some(l) = unsafe { Leaving::hold(on.head(), key, how == Leave::Deliver) }
                    {
                        return Some(l);
                    }
                }
            }
        }
        None
    }
}
