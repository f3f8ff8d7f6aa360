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

    /// The counter a sysctl's arg2 names.
    pub fn from_c(which: i32) -> Option<Stat> {
        Stat::ALL
            .into_iter()
            .find(|s| *s as i64 == i64::from(which))
    }
}

// Every counter the C side declares has a name here.
const _: () = assert!(Stat::ALL.len() == sys::lq_stat_LQ_NSTATS as usize);
