//! The global allocator: malloc(9) with the module's own malloc type
//! (M_LISTENQ, so `vmstat -m` shows it) and M_NOWAIT, because listenq
//! allocates under socket locks and inside upcalls where sleeping is not
//! allowed. Failure returns null; callers use the fallible `try_reserve`
//! APIs, so a failed allocation never reaches the alloc error handler.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};
use listenq_bindings as sys;

pub struct KernelMalloc;

static LIVE: AtomicU64 = AtomicU64::new(0);

/// Allocations made and not yet freed (kern.ipc.listenq.allocs).
pub fn live() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

// SAFETY: alloc() returns null or a block of at least `layout.size()`
// bytes aligned to `layout.align()` (lq_malloc's contract), and dealloc()
// frees only what alloc() returned.
unsafe impl GlobalAlloc for KernelMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: lq_malloc takes any size and a power-of-two alignment,
        // which Layout guarantees; it returns null instead of sleeping.
        let p = unsafe { sys::lq_malloc(layout.size(), layout.align()) }.cast::<u8>();
        if !p.is_null() {
            LIVE.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from alloc() above, i.e. from malloc(9) with
        // M_LISTENQ, and GlobalAlloc's contract says it is freed once.
        unsafe { sys::lq_free(ptr.cast()) }
    }
}
