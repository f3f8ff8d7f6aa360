//! Letting held connections go (work_glue.c): the eviction that takes a
//! connection off the incomplete queue inside the admitting upcall, and
//! what the state's task gets for each connection on the hold queue's
//! leaving list. Nothing here allocates: the task is embedded in the
//! listener's filter state (kern/filter_arg.rs), and the leaving list
//! lives in the hold queue's own slots.

use crate::kern::socket::socket_of_key;
use listenq_bindings as sys;
use listenq_policy::holdq::Leave;

/// One connection for the task to let go (work_glue.c lq_leave_one), with
/// the references it needs: the incomplete queue's for a `Detached` one,
/// or those `hold` took.
pub struct Leaving {
    pub(in crate::kern) head: *mut sys::socket,
    /// Null when only the listener's reference was taken.
    pub(in crate::kern) so: *mut sys::socket,
    pub(in crate::kern) how: i32,
}

/// Evicts `so`, held on `head`, from the upcall that admits a newer
/// connection (work_glue.c lq_evict_now): `Detached` when it left the
/// incomplete queue now (the caller counts it), `Abort` when that has to
/// wait for the task (which counts it), None when the kernel already took
/// it away.
///
/// # Safety
/// `head` and `so` are live (kern/held_conns.rs says why).
pub(in crate::kern) unsafe fn evict_now(head: usize, so: usize) -> Option<Leave> {
    // SAFETY: the contract above; the C side only try-locks `so` and
    // leaves everything to the task when this thread does not hold the
    // listener's lock.
    let how = unsafe { sys::lq_evict_now(socket_of_key(head), socket_of_key(so)) };
    match how as u32 {
        sys::LQ_LEAVE_DETACHED => Some(Leave::Detached),
        sys::LQ_LEAVE_ABORT => Some(Leave::Abort),
        _ => None,
    }
}

impl Leaving {
    /// A connection an eviction took off the incomplete queue: its hold
    /// queue entry owns the references the queue held on it and on the
    /// listener `head`, which go to the task with it.
    ///
    /// # Safety
    /// `head` and `so` are such an entry's keys, whose references keep
    /// both sockets live until the task gives them back.
    pub(in crate::kern) unsafe fn detached(head: usize, so: usize) -> Leaving {
        // SAFETY: live by the entry's references (the contract above).
        let (head, so) = unsafe { (socket_of_key(head), socket_of_key(so)) };
        Leaving {
            head,
            so,
            how: sys::LQ_LEAVE_DETACHED as i32,
        }
    }

    /// References on `head` and `so` for the task, which aborts or
    /// delivers `so` if it still finds it on `head`'s incomplete queue.
    /// None: the listener is being freed, nothing to do.
    ///
    /// # Safety
    /// `head` and `so` are live, and stay so until this returns (the
    /// state's mutex is held: kern/held_conns.rs says why that is enough).
    pub(in crate::kern) unsafe fn hold(head: usize, so: usize, deliver: bool) -> Option<Leaving> {
        // SAFETY: live (the contract above).
        let (head, mut so) = unsafe { (socket_of_key(head), socket_of_key(so)) };
        // SAFETY: the contract above; refcount_acquire_if_not_zero(9)
        // leaves a socket already being freed alone.
        if unsafe { sys::lq_leave_hold(head, &mut so) } != 0 {
            return None;
        }
        let how = if deliver {
            sys::LQ_LEAVE_DELIVER
        } else {
            sys::LQ_LEAVE_ABORT
        };
        Some(Leaving {
            head,
            so,
            how: how as i32,
        })
    }
}
