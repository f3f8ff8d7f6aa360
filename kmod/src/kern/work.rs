//! The work item (accf_glue.c struct lq_work) that terminates or delivers
//! one held connection from a task, where the listener lock can be taken.
//! A held connection owns one from admission on, so letting it go never
//! needs memory: it is either freed or queued, exactly once.

use crate::kern::filter_arg::Attached;
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

    /// Queues termination (or delivery) of `so`, held on `on`'s listener;
    /// consumes the item. The C side takes its own socket references
    /// (ESRCH: one is already being freed, nothing to do, and not a lack
    /// of memory). The outcome is counted when the task runs, if it finds
    /// the connection still held (accf::work_done).
    ///
    /// `so` is a key just taken out of that listener's hold queue, with
    /// the `on` borrow alive since: see `evict_now`.
    pub fn schedule(self, on: Attached<'_>, so: usize, deliver: bool) {
        // SAFETY: `on` says the listener is live and REGISTRY held; `so`
        // is live as `evict_now` argues. The item is consumed.
        unsafe {
            sys::lq_work_schedule(
                self.0,
                on.head() as *mut sys::socket,
                so as *mut sys::socket,
                i32::from(deliver),
            )
        };
    }

    /// Evicts `so`, held on `on`'s listener, from the upcall that admits
    /// a newer connection: it leaves the incomplete queue now and only
    /// soabort() waits for the task (accf_glue.c lq_work_evict_now). True
    /// when it left the queue now, which the caller counts; otherwise the
    /// task counts it when it runs (the same as `schedule`). Consumes the
    /// item.
    ///
    /// `so` is a key just taken out of that listener's hold queue, with
    /// the `on` borrow alive since. A hold queue keys only connections
    /// tagged with listenq's destructor (sockbuf.rs `SockLocked::tag`),
    /// whose upcall names the state; the destructor takes REGISTRY and
    /// gives the upcall back, which takes the key out (filters.rs
    /// `release_upcall`) before sofree() goes on. So while REGISTRY is
    /// held, a key in a hold queue names a socket whose memory is valid.
    pub fn evict_now(self, on: Attached<'_>, so: usize) -> bool {
        // SAFETY: as just said; the C side only try-locks `so` and defers
        // everything when this thread does not hold the listener.
        unsafe {
            sys::lq_work_evict_now(
                self.0,
                on.head() as *mut sys::socket,
                so as *mut sys::socket,
            ) != 0
        }
    }
}
