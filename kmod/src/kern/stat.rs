//! The kern.ipc.listenq.stats.* counters, numbered once in sysctl_glue.h
//! (enum lq_stat, which also orders the SYSCTL declarations).

use listenq_bindings as sys;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Stat {
    Listens = sys::lq_stat_LQ_STAT_LISTENS,
    Closes = sys::lq_stat_LQ_STAT_CLOSES,
    Completed = sys::lq_stat_LQ_STAT_COMPLETED,
    Accepted = sys::lq_stat_LQ_STAT_ACCEPTED,
    Overflows = sys::lq_stat_LQ_STAT_OVERFLOWS,
    Held = sys::lq_stat_LQ_STAT_HELD,
    Released = sys::lq_stat_LQ_STAT_RELEASED,
    Evicted = sys::lq_stat_LQ_STAT_EVICTED,
    Timeouts = sys::lq_stat_LQ_STAT_TIMEOUTS,
    Nomem = sys::lq_stat_LQ_STAT_NOMEM,
}

impl Stat {
    const ALL: [Stat; 10] = [
        Stat::Listens,
        Stat::Closes,
        Stat::Completed,
        Stat::Accepted,
        Stat::Overflows,
        Stat::Held,
        Stat::Released,
        Stat::Evicted,
        Stat::Timeouts,
        Stat::Nomem,
    ];

    /// Counts `n` events on this CPU's counter(9) (no lock): what
    /// counter_u64_add() does on amd64, one add through %gs, without a
    /// call into the glue (two connection paths count every connection).
    pub fn add(self, n: u64) {
        if n == 0 {
            return;
        }
        let i = self as usize;
        if i >= sys::lq_stat_LQ_NSTATS as usize {
            return;
        }
        // SAFETY: `i` is within the array (above), which is written only
        // by lq_stats_init() (module load, before any entry point is
        // installed) and lq_stats_fini() (unload, after every counted
        // thread left); this reads one aligned pointer of it.
        let c = unsafe {
            core::ptr::read_volatile(
                core::ptr::addr_of!(sys::lq_counters)
                    .cast::<*mut u64>()
                    .add(i),
            )
        };
        if c.is_null() {
            return;
        }
        // SAFETY: `c` is a live counter(9) (allocated at load, freed only
        // after every thread left), i.e. an offset from each CPU's pcpu
        // base, which %gs holds in the kernel; the add is one instruction,
        // so no preemption can split it, as in zpcpu_add().
        unsafe {
            core::arch::asm!(
                "add qword ptr gs:[{c}], {n}",
                c = in(reg) c,
                n = in(reg) n,
                options(nostack),
            );
        }
    }

    pub fn bump(self) {
        self.add(1);
    }

    /// The counter(9) sum over CPUs.
    pub fn fetch(self) -> u64 {
        // SAFETY: as add().
        unsafe { sys::lq_stat_fetch(self as u32) }
    }

    /// The counter a sysctl's arg2 names.
    pub fn from_c(which: i32) -> Option<Stat> {
        Stat::ALL
            .into_iter()
            .find(|s| *s as i64 == i64::from(which))
    }
}

/// counter(9) storage: allocated first at load (it sleeps), freed last at
/// unload, once no thread can be inside listenq.
pub fn init() {
    // SAFETY: module load, a sleepable context; called once.
    unsafe { sys::lq_stats_init() };
}

pub fn fini() {
    // SAFETY: module unload after InFlight drained, or a failed load.
    unsafe { sys::lq_stats_fini() };
}

// Every counter the C side declares has a name here.
const _: () = assert!(Stat::ALL.len() == sys::lq_stat_LQ_NSTATS as usize);
