//! The secondary queue's size from the listen(2) backlog. The rest of the
//! backlog arithmetic (clamping to kern.ipc.soacceptqueue, the 1.5 ×
//! backlog completed queue) is the kernel's own, which listenq calls and
//! does not redo: the VM tests check it against listen(2)
//! (tests/runner/src/t_listen.rs).

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
    fn one_slot_at_least_and_the_limit_otherwise() {
        assert_eq!(hold_capacity(0), 1);
        assert_eq!(hold_capacity(1), 1);
        assert_eq!(hold_capacity(128), 128);
        assert_eq!(hold_capacity(u32::MAX / 3), (u32::MAX / 3) as usize);
    }
}
