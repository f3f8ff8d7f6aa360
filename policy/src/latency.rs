//! Accept latency (connection complete to accept(2)) as a log2 histogram.
//! Buckets are powers of two of microseconds so that recording is a shift
//! and a count, cheap enough for the accept path.

/// Bucket i counts latencies in [2^(i-1), 2^i) us; bucket 0 is 0 us and
/// the last bucket is open-ended (>= 2^(BUCKETS-2) us, about 67 s). The
/// module measures in whole clock ticks (kern/time.rs, Tick::us_until),
/// so its latencies are multiples of 1/hz: bucket 0 holds the accepts
/// within the tick the connection completed in, and at hz=1000 the next
/// one used is bucket 10 (one tick, 1000 us).
pub const BUCKETS: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

/// The bucket a latency falls in.
pub fn bucket_of(usec: u64) -> usize {
    let bits = (u64::BITS - usec.leading_zeros()) as usize;
    bits.min(BUCKETS - 1)
}

/// Upper bound (exclusive) of a bucket in microseconds, `None` when open.
pub fn bucket_upper_us(i: usize) -> Option<u64> {
    if i + 1 >= BUCKETS {
        None
    } else {
        Some(1u64 << i)
    }
}

impl Histogram {
    pub fn record(&mut self, usec: u64) {
        let b = bucket_of(usec);
        if let Some(c) = self.counts.get_mut(b) {
            *c = c.saturating_add(1);
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    pub fn buckets(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// The bucket holding the given percentile (1..=100), reported as that
    /// bucket's upper bound in microseconds (`None` for the open bucket, or
    /// when nothing was recorded).
    pub fn percentile_bucket(&self, pct: u64) -> Option<usize> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // Rank of the sample at pct, 1-based, rounded up.
        let rank = n.saturating_mul(pct.min(100)).div_ceil(100);
        let rank = rank.max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                return Some(i);
            }
        }
        None
    }
}

/// A histogram that accept(2) records into without a lock: one relaxed
/// atomic add per accept, on a counter only this listener's accepts
/// share. A reader sees each count whole; the buckets of one snapshot
/// may be a few accepts apart, which a table of a moving server is
/// anyway.
#[derive(Debug, Default)]
pub struct AtomicHistogram {
    counts: [core::sync::atomic::AtomicU64; BUCKETS],
}

impl AtomicHistogram {
    pub fn record(&self, usec: u64) {
        if let Some(c) = self.counts.get(bucket_of(usec)) {
            c.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Histogram {
        let mut h = Histogram::default();
        for (d, c) in h.counts.iter_mut().zip(self.counts.iter()) {
            *d = c.load(core::sync::atomic::Ordering::Relaxed);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_histogram_records_as_the_plain_one() {
        let a = AtomicHistogram::default();
        let mut h = Histogram::default();
        for us in [0u64, 1, 3, 900, 1 << 40, 77] {
            a.record(us);
            h.record(us);
        }
        assert_eq!(a.snapshot(), h);
        assert_eq!(a.snapshot().count(), 6);
    }

    #[test]
    fn buckets_are_log2() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(2), 2);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!(bucket_of(1000), 10);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_upper_us(10), Some(1024));
        assert_eq!(bucket_upper_us(BUCKETS - 1), None);
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile_bucket(50), None);
        for _ in 0..98 {
            h.record(100); // bucket 7: [64, 128)
        }
        h.record(5000); // bucket 13
        h.record(70_000); // bucket 17
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile_bucket(50), Some(7));
        assert_eq!(h.percentile_bucket(98), Some(7));
        assert_eq!(h.percentile_bucket(99), Some(13));
        assert_eq!(h.percentile_bucket(100), Some(17));
    }
}
