//! The work item (work_glue.c struct lq_work) that terminates or delivers
//! one held connection from a task, where the listener lock can be taken.
//! A held connection owns one from admission on, so letting it go never
//! needs memory: it is either freed or queued, exactly once.
//!
//! `Work` is an item nobody holds yet: dropping it frees it. Once its
//! connection is held, the item lives in the hold queue entry (held.rs)
//! as a `RawWork`, which only held.rs uses.

use core::ptr::NonNull;

use listenq_bindings as sys;

pub struct Work(NonNull<sys::lq_work>);

// SAFETY: a heap object only its owner refers to; free(9) and the task
// queue may be used from any thread.
unsafe impl Send for Work {}

impl Work {
    /// M_NOWAIT (debug.fail_point.listenq_work_alloc fails it).
    pub fn alloc() -> Option<Work> {
        // SAFETY: a non-sleeping allocation, callable under any lock.
        NonNull::new(unsafe { sys::lq_work_alloc() }).map(Work)
    }

    /// Hands the item over to a hold queue entry.
    pub(in crate::kern) fn into_raw(self) -> RawWork {
        let w = RawWork(self.0.as_ptr());
        core::mem::forget(self);
        w
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: owned by this value, which gives it up.
        unsafe { sys::lq_work_free(self.0.as_ptr()) }
    }
}

/// The item of a held connection, inside its hold queue entry (which is
/// copied around, hence `Copy`): the entry owns it, and whoever takes the
/// entry out of the queue uses it exactly once.
#[derive(Clone, Copy)]
pub(in crate::kern) struct RawWork(*mut sys::lq_work);

// SAFETY: as for Work; always reached under its hold queue's state mutex.
unsafe impl Send for RawWork {}

impl RawWork {
    /// # Safety
    /// Taken out of its entry, and never used again.
    pub(in crate::kern) unsafe fn free(self) {
        // SAFETY: the contract above.
        unsafe { sys::lq_work_free(self.0) }
    }

    /// Queues termination (or delivery) of `so`, held on `head`; consumes
    /// the item. The C side takes its own socket references (ESRCH: one
    /// is already being freed, nothing to do, and not a lack of memory).
    /// The outcome is counted when the task runs, if it finds the
    /// connection still held (accf::work_done).
    ///
    /// # Safety
    /// As for `free`; `head` and `so` are live (held.rs says why).
    pub(in crate::kern) unsafe fn schedule(self, head: usize, so: usize, deliver: bool) {
        // SAFETY: the contract above; the item is consumed.
        unsafe {
            sys::lq_work_schedule(
                self.0,
                head as *mut sys::socket,
                so as *mut sys::socket,
                i32::from(deliver),
            )
        };
    }

    /// Evicts `so`, held on `head`, from the upcall that admits a newer
    /// connection: it leaves the incomplete queue now and only soabort()
    /// waits for the task (work_glue.c lq_work_evict_now). True when it
    /// left the queue now, which the caller counts; otherwise the task
    /// counts it when it runs (the same as `schedule`). Consumes the item.
    ///
    /// # Safety
    /// As for `schedule`.
    pub(in crate::kern) unsafe fn evict_now(self, head: usize, so: usize) -> bool {
        // SAFETY: the contract above; the C side only try-locks `so` and
        // defers everything when this thread does not hold the listener.
        unsafe {
            sys::lq_work_evict_now(self.0, head as *mut sys::socket, so as *mut sys::socket) != 0
        }
    }
}
