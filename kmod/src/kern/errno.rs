//! errno(2) values as a typed Result, the way the kernel returns them.

use listenq_bindings as sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

pub type KResult<T> = Result<T, Errno>;

impl Errno {
    pub const EBUSY: Errno = Errno(sys::EBUSY as i32);
    pub const EINVAL: Errno = Errno(sys::EINVAL as i32);
    pub const ENOENT: Errno = Errno(sys::ENOENT as i32);
    pub const ENOMEM: Errno = Errno(sys::ENOMEM as i32);
    pub const EEXIST: Errno = Errno(sys::EEXIST as i32);
    pub const EPERM: Errno = Errno(sys::EPERM as i32);
    pub const EOPNOTSUPP: Errno = Errno(sys::EOPNOTSUPP as i32);

    /// Turns a C return value (0 or an errno) into a Result.
    pub fn check(rc: i32) -> KResult<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(Errno(rc))
        }
    }
}

/// For returning to C: 0 on success, the errno otherwise.
pub fn to_c(r: KResult<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(Errno(e)) => e,
    }
}
