//! listen(2) backlog arithmetic, as sys/kern/uipc_socket.c does it.
//!
//! The kernel keeps `somaxconn` (sysctl kern.ipc.soacceptqueue) in a u_int
//! and refuses values above UINT_MAX / 3 so that `3 * sol_qlimit / 2` can
//! never overflow. Everything here uses the same unsigned arithmetic.

/// Largest value kern.ipc.soacceptqueue accepts.
pub const SOACCEPTQUEUE_MAX: u32 = u32::MAX / 3;

/// Why a kern.ipc.soacceptqueue write is refused (the handler returns EINVAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSoacceptqueue;

/// Validates a value written to kern.ipc.soacceptqueue: 1..=UINT_MAX/3.
/// The sysctl handler reads it as an int, so the input is signed.
pub fn validate_soacceptqueue(val: i64) -> Result<u32, InvalidSoacceptqueue> {
    if val < 1 || val > i64::from(SOACCEPTQUEUE_MAX) {
        return Err(InvalidSoacceptqueue);
    }
    u32::try_from(val).map_err(|_| InvalidSoacceptqueue)
}

/// The limit listen(2) stores in `sol_qlimit`: a negative backlog, or one
/// above `soacceptqueue`, becomes `soacceptqueue` (solisten_proto()).
pub fn effective_qlimit(backlog: i32, soacceptqueue: u32) -> u32 {
    match u32::try_from(backlog) {
        Ok(b) if b <= soacceptqueue => b,
        _ => soacceptqueue,
    }
}

/// True when a new connection must be refused: solisten_clone() refuses
/// once `sol_qlen > 3 * sol_qlimit / 2`.
pub fn completed_queue_full(qlen: u32, qlimit: u32) -> bool {
    u64::from(qlen) > overflow_threshold(qlimit)
}

/// `3 * qlimit / 2` without the overflow the kernel avoids by bounding
/// qlimit; computed in u64 so any u32 is safe here.
fn overflow_threshold(qlimit: u32) -> u64 {
    3 * u64::from(qlimit) / 2
}

/// How many connections the completed queue takes before new ones are
/// refused: floor(1.5 * qlimit) + 1 (listen(0) admits one).
pub fn completed_queue_capacity(qlimit: u32) -> u64 {
    overflow_threshold(qlimit) + 1
}

/// The secondary (accept-filter) queue holds at most this many connections;
/// listen(2): "the oldest connection is terminated" once it is full.
pub fn hold_capacity(qlimit: u32) -> usize {
    // A listener with listen(0) still gets to hold one connection, the way
    // the completed queue still admits one.
    usize::try_from(qlimit.max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soacceptqueue_bounds() {
        assert_eq!(validate_soacceptqueue(0), Err(InvalidSoacceptqueue));
        assert_eq!(validate_soacceptqueue(-1), Err(InvalidSoacceptqueue));
        assert_eq!(validate_soacceptqueue(1), Ok(1));
        assert_eq!(validate_soacceptqueue(1_431_655_765), Ok(1_431_655_765));
        assert_eq!(
            validate_soacceptqueue(1_431_655_766),
            Err(InvalidSoacceptqueue)
        );
        assert_eq!(
            validate_soacceptqueue(i64::from(u32::MAX)),
            Err(InvalidSoacceptqueue)
        );
    }

    #[test]
    fn backlog_clamps_to_soacceptqueue() {
        assert_eq!(effective_qlimit(-1, 4096), 4096);
        assert_eq!(effective_qlimit(i32::MIN, 4096), 4096);
        assert_eq!(effective_qlimit(4097, 4096), 4096);
        assert_eq!(effective_qlimit(4096, 4096), 4096);
        assert_eq!(effective_qlimit(0, 4096), 0);
        assert_eq!(effective_qlimit(5, 4096), 5);
        assert_eq!(
            effective_qlimit(i32::MAX, SOACCEPTQUEUE_MAX),
            SOACCEPTQUEUE_MAX
        );
    }

    #[test]
    fn completed_queue_rule() {
        assert_eq!(completed_queue_capacity(0), 1);
        assert_eq!(completed_queue_capacity(1), 2);
        assert_eq!(completed_queue_capacity(4), 7);
        assert_eq!(completed_queue_capacity(5), 8);
        assert!(!completed_queue_full(6, 4));
        assert!(completed_queue_full(7, 4));
        assert!(!completed_queue_full(0, 0));
        assert!(completed_queue_full(1, 0));
    }

    #[test]
    fn near_uint_max_over_3() {
        // The kernel's u_int `3 * q / 2` must not wrap at the largest limit.
        let q = SOACCEPTQUEUE_MAX;
        let in_u32 = u64::from(q.wrapping_mul(3) / 2);
        assert_eq!(in_u32, 3 * u64::from(q) / 2, "u_int arithmetic wraps");
        assert_eq!(completed_queue_capacity(q), 2_147_483_648);
        assert!(!completed_queue_full(2_147_483_647, q));
        assert!(completed_queue_full(u32::MAX, q));
        // One more and the kernel's u_int formula would wrap: that is why
        // soacceptqueue is capped at UINT_MAX / 3.
        let wrapped = (q + 1).wrapping_mul(3) / 2;
        assert!(u64::from(wrapped) < 3 * u64::from(q + 1) / 2);
    }

    proptest::proptest! {
        #[test]
        fn limit_never_exceeds_soacceptqueue(b in proptest::num::i32::ANY, s in 1u32..=SOACCEPTQUEUE_MAX) {
            let q = effective_qlimit(b, s);
            proptest::prop_assert!(q <= s);
            if b >= 0 && (b as u32) <= s { proptest::prop_assert_eq!(q, b as u32); }
        }

        #[test]
        fn capacity_is_first_full_length(q in 0u32..=SOACCEPTQUEUE_MAX) {
            let cap = completed_queue_capacity(q);
            let cap32 = u32::try_from(cap).unwrap();
            proptest::prop_assert!(completed_queue_full(cap32, q));
            proptest::prop_assert!(!completed_queue_full(cap32 - 1, q));
        }
    }
}
