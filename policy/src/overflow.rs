//! Exact-as-possible overflow counts from the kernel's rate-limited counter.
//!
//! solisten_clone() counts refused connections in `sol_overcount`, but when
//! it prints the "sonewconn: ... Listen queue overflow" line (at most once per
//! kern.ipc.sooverinterval) it resets the counter and stamps `sol_lastover`.
//! listenq must leave that log line alone, so it reconstructs the running
//! total by sampling (overcount, lastover) whenever it touches the listener:
//! on every completed connection, every accept and every sysctl read.
//!
//! Between two samples the kernel logs at most once as long as samples are
//! closer together than the log interval. The overflow that triggers a log is
//! assumed to be the first one after the previous sample; that is exact
//! whenever the rate limiter was already armed at that sample, which is the
//! case for every burst that starts after a quiet interval. A burst that
//! straddles the moment the limiter re-arms is undercounted by the overflows
//! that came before that moment within the same sampling gap. With
//! kern.ipc.sooverprio=-1 the kernel never resets the counter and the count
//! is exact.

/// A kernel `struct timeval` as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub sec: i64,
    pub usec: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OverflowCounter {
    total: u64,
    last_count: i32,
    last_stamp: Stamp,
}

impl OverflowCounter {
    /// Starts from the listener's current state, so overflows from before
    /// listenq saw the socket are not attributed to it.
    pub fn new(count: i32, stamp: Stamp) -> Self {
        OverflowCounter {
            total: 0,
            last_count: count,
            last_stamp: stamp,
        }
    }

    /// Folds in one sample of (`sol_overcount`, `sol_lastover`).
    pub fn sample(&mut self, count: i32, stamp: Stamp) {
        let count = count.max(0);
        let grew = if stamp != self.last_stamp {
            // A log line went out: it consumed the overflows since the last
            // sample plus the one that triggered it, then the counter
            // restarted from zero.
            1 + u64::from(count.unsigned_abs())
        } else if count >= self.last_count {
            u64::from((count - self.last_count).unsigned_abs())
        } else {
            // Reset without a new stamp cannot come from solisten_clone();
            // count what is there rather than going backwards.
            u64::from(count.unsigned_abs())
        };
        self.total = self.total.saturating_add(grew);
        self.last_count = count;
        self.last_stamp = stamp;
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of solisten_clone()'s overflow branch with a controllable
    /// rate limiter.
    struct Kernel {
        overcount: i32,
        lastover: Stamp,
        now: i64,
        logged: u32,
    }

    impl Kernel {
        fn overflow(&mut self, interval: i64) {
            self.overcount += 1;
            if self.lastover.sec == 0 || self.now - self.lastover.sec >= interval {
                self.lastover = Stamp {
                    sec: self.now,
                    usec: 0,
                };
                self.overcount = 0;
                self.logged += 1;
            }
        }
    }

    #[test]
    fn twelve_clients_against_listen_four() {
        // 7 fit, 5 overflow; the first overflow logs and resets.
        let mut k = Kernel {
            overcount: 0,
            lastover: Stamp::default(),
            now: 100,
            logged: 0,
        };
        let mut c = OverflowCounter::new(k.overcount, k.lastover);
        for _ in 0..5 {
            k.overflow(60);
        }
        c.sample(k.overcount, k.lastover);
        assert_eq!(k.logged, 1);
        assert_eq!(c.total(), 5);
    }

    #[test]
    fn sampled_between_every_overflow_is_exact() {
        let mut k = Kernel {
            overcount: 0,
            lastover: Stamp::default(),
            now: 1,
            logged: 0,
        };
        let mut c = OverflowCounter::new(0, Stamp::default());
        for i in 0..500u32 {
            k.now = 1 + i64::from(i) / 7;
            k.overflow(10);
            c.sample(k.overcount, k.lastover);
        }
        assert!(k.logged > 1);
        assert_eq!(c.total(), 500);
    }

    #[test]
    fn rate_limit_off_is_exact() {
        let mut c = OverflowCounter::new(3, Stamp { sec: 9, usec: 0 });
        c.sample(10, Stamp { sec: 9, usec: 0 });
        c.sample(25, Stamp { sec: 9, usec: 0 });
        assert_eq!(c.total(), 22);
    }

    #[test]
    fn bursts_after_quiet_intervals_are_exact() {
        let mut k = Kernel {
            overcount: 0,
            lastover: Stamp::default(),
            now: 1000,
            logged: 0,
        };
        let mut c = OverflowCounter::new(0, Stamp::default());
        let mut sent = 0;
        for burst in 0..4 {
            k.now = 1000 + burst * 100; // longer than the interval
            for _ in 0..(3 + burst) {
                k.overflow(60);
                sent += 1;
            }
            c.sample(k.overcount, k.lastover);
        }
        assert_eq!(k.logged, 4);
        assert_eq!(c.total(), sent);
    }
}
