//! What the VM offers the tests, found out once by init: which address
//! families work, whether AF_UNIX sockets have a writable directory, and
//! whether listenq.ko is in the image.

use crate::sock::Kind;
use crate::sys::{self, Errno};
use core::ffi::CStr;
use core::fmt;

pub const KO_PATH: &CStr = c"/boot/modules/listenq.ko";
pub const KO_NAME: &CStr = c"listenq.ko";
pub const MOD_NAME: &CStr = c"listenq";

pub struct Env {
    pub v4: Result<(), Errno>,
    pub v6: Result<(), Errno>,
    pub unix: Result<(), Errno>,
    pub ko: Result<(), Errno>,
}

/// Why a kind of socket cannot be tested here.
pub enum Unusable {
    NoV4(Errno),
    NoV6(Errno),
    NoUnixDir(Errno),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NoV4(e) => write!(f, "127.0.0.1 unusable: {}", e),
            Unusable::NoV6(e) => write!(f, "IPv6 loopback ::1 unusable: {}", e),
            Unusable::NoUnixDir(e) => write!(f, "no writable /tmp for AF_UNIX sockets: {}", e),
        }
    }
}

impl Env {
    pub fn unusable(&self, k: Kind) -> Option<Unusable> {
        match k {
            Kind::Tcp4 => self.v4.err().map(Unusable::NoV4),
            Kind::Tcp6 => self.v6.err().map(Unusable::NoV6),
            Kind::UnixStream | Kind::UnixSeqpacket => self.unix.err().map(Unusable::NoUnixDir),
        }
    }
}

/// Checks that the module file exists (open succeeds).
pub fn probe_ko() -> Result<(), Errno> {
    sys::open(KO_PATH, sys::O_RDONLY).map(|_| ())
}
