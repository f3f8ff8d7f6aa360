//! The work item (accf_glue.c struct lq_work) that terminates or delivers
//! one held connection from a task, where the listener lock can be taken.
//! A held connection owns one from admission on, so letting it go never
//! needs memory: it is either freed or queued, exactly once.

use listenq_bindings as sys;

#[derive(Clone, Copy)]
pub struct Work(*mut sys::lq_work);

// SAFETY: a heap object only listenq refers to, always under REGISTRY.
unsafe impl Send for Work {}

impl Work {
    /// M_NOWAIT (debug.fail_point.listenq_work_alloc fails it).
    pub fn alloc() -> Option<Work> {
        // SAFETY: a non-sleeping allocation, callable under any lock.
        let w = unsafe { sys::lq_work_alloc() };
        (!w.is_null()).then_some(Work(w))
    }

    /// The connection it belonged to no longer needs it.
    pub fn free(self) {
        // SAFETY: owned by exactly one held connection, which gives it up.
        unsafe { sys::lq_work_free(self.0) }
    }

    /// Queues termination (or delivery) of `so`, held on `head`; consumes
    /// the item. The C side takes its own socket references (ESRCH: one
    /// is already being freed, nothing to do, and not a lack of memory).
    /// The outcome is counted when the task runs, if it finds the
    /// connection still held (accf::listenq_rs_work_done).
    ///
    /// # Safety
    /// `head` and `so` are live: the caller holds REGISTRY and `so` was in
    /// a hold queue, so its destructor (which takes REGISTRY) has not run.
    pub unsafe fn schedule(self, head: usize, so: usize, deliver: bool) {
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
    /// waits for the task (accf_glue.c lq_work_evict_now). True when it
    /// left the queue now, which the caller counts; otherwise the task
    /// counts it when it runs (the same as `schedule`). Consumes the item.
    ///
    /// # Safety
    /// As for `schedule`.
    pub unsafe fn evict_now(self, head: usize, so: usize) -> bool {
        // SAFETY: the contract above; the C side only try-locks `so` and
        // defers everything when this thread does not hold the listener.
        unsafe {
            sys::lq_work_evict_now(self.0, head as *mut sys::socket, so as *mut sys::socket) != 0
        }
    }
}
