//! How often a listener may put a line in the log: messages any user can
//! cause (a bad af_arg) are limited per listener, so that one user's loop
//! neither floods the log nor silences what another listener reports.

/// At most `max` events in each second of the caller's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerSecond {
    sec: u64,
    n: u32,
}

impl PerSecond {
    /// Whether one more event may go out at second `now`; counts it if so.
    pub fn allow(&mut self, now: u64, max: u32) -> bool {
        if self.sec != now {
            self.sec = now;
            self.n = 0;
        }
        if self.n >= max {
            return false;
        }
        self.n += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_a_second_then_again_the_next() {
        let mut p = PerSecond::default();
        let got: usize = (0..40).filter(|_| p.allow(7, 3)).count();
        assert_eq!(got, 3);
        assert!(p.allow(8, 3), "a new second");
        assert!(p.allow(8, 3));
        assert!(p.allow(8, 3));
        assert!(!p.allow(8, 3));
        assert!(!PerSecond::default().allow(0, 0), "max 0 lets nothing out");
    }

    #[test]
    fn one_listener_does_not_use_up_another() {
        let (mut a, mut b) = (PerSecond::default(), PerSecond::default());
        for _ in 0..100 {
            a.allow(1, 3);
        }
        assert!(b.allow(1, 3));
    }
}
