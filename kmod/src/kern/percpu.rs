//! This CPU's struct pcpu fields (curcpu, curthread), and a count that
//! threads on every CPU change, kept per CPU, each slot on
//! its own cache line: a connection's path must not write a cache line
//! that every CPU writes. A thread may move or release what another CPU
//! added (a slot can go below zero); only the sum means anything.

use core::sync::atomic::{AtomicIsize, Ordering};

use listenq_bindings as sys;

/// This CPU's number, as PCPU_GET(cpuid) reads it: one load through %gs,
/// which the kernel points at this CPU's struct pcpu. The thread may move
/// to another CPU right after; callers only spread their writes with it.
pub fn curcpu() -> u32 {
    let cpu: u32;
    // SAFETY: in the kernel %gs always holds the current CPU's pcpu base
    // (swapgs on every entry from user mode), and pc_cpuid is a u_int at
    // this offset; the load has no other effect.
    unsafe {
        core::arch::asm!(
            "mov {cpu:e}, dword ptr gs:[{off}]",
            cpu = out(reg) cpu,
            off = const sys::lq_offsets_LQ_OFF_PC_CPUID as usize,
            options(nostack, readonly, preserves_flags),
        );
    }
    cpu
}

/// The running thread, as curthread reads it: one load through %gs.
pub fn curthread() -> usize {
    let td: usize;
    // SAFETY: in the kernel %gs always holds the current CPU's pcpu base,
    // and pc_curthread, a pointer at this offset, is the thread running
    // on it (this one: it cannot change under the thread itself); the
    // load has no other effect.
    unsafe {
        core::arch::asm!(
            "mov {td}, qword ptr gs:[{off}]",
            td = out(reg) td,
            off = const sys::lq_sb_offsets_LQ_SB_OFF_PC_CURTHREAD as usize,
            options(nostack, readonly, preserves_flags),
        );
    }
    td
}

/// More CPUs than slots share slots (still correct, only less spread).
const SLOTS: usize = 64;

#[repr(align(64))]
struct Slot(AtomicIsize);

pub struct PerCpu {
    slots: [Slot; SLOTS],
}

/// A slot a thread changed, to be changed back there (InFlight).
pub struct SlotRef(&'static AtomicIsize);

impl PerCpu {
    pub const fn new() -> PerCpu {
        PerCpu {
            slots: [const { Slot(AtomicIsize::new(0)) }; SLOTS],
        }
    }

    fn mine(&'static self) -> &'static AtomicIsize {
        let cpu = curcpu() as usize;
        // `cpu % SLOTS` < SLOTS; the fallback is never taken.
        &self.slots.get(cpu % SLOTS).unwrap_or(&self.slots[0]).0
    }

    /// SeqCst, as the readers need (kern/sync/revocable.rs for InFlight).
    pub fn add(&'static self, n: isize) -> SlotRef {
        let s = self.mine();
        s.fetch_add(n, Ordering::SeqCst);
        SlotRef(s)
    }

    /// The sum over the slots. Read while others change them, it is a
    /// value the count had at no single moment; when the count can only
    /// go down (nothing can add any more), it is at least what the count
    /// is once the read ends, so a sum of 0 then means 0.
    pub fn sum(&self) -> isize {
        self.slots
            .iter()
            .map(|s| s.0.load(Ordering::SeqCst))
            .fold(0isize, isize::wrapping_add)
    }
}

impl Default for PerCpu {
    fn default() -> PerCpu {
        PerCpu::new()
    }
}

impl SlotRef {
    /// Takes `n` back from the slot it was added to.
    pub fn sub(&self, n: isize) {
        self.0.fetch_sub(n, Ordering::SeqCst);
    }
}
