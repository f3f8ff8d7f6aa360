//! Socket addresses as byte arrays (sys/sys/socket.h, netinet/in.h,
//! netinet6/in6.h, sys/un.h) and the loopback setup that rc(8) would
//! normally do.

use crate::sys::{self, Errno, Fd, SysResult};
use crate::tap::Tap;

pub const AF_UNIX: i32 = 1;
pub const AF_INET: i32 = 2;
pub const AF_INET6: i32 = 28;

pub const SOCK_STREAM: i32 = 1;
pub const SOCK_DGRAM: i32 = 2;
pub const SOCK_SEQPACKET: i32 = 5;

pub const LOOPBACK4: [u8; 4] = [127, 0, 0, 1];
pub const LOOPBACK6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Large enough for any address used here (sockaddr_un is 106 bytes).
pub const SA_MAX: usize = 128;

/// A socket address: its bytes and its length.
#[derive(Clone, Copy)]
pub struct SockAddr {
    buf: [u8; SA_MAX],
    len: usize,
}

impl SockAddr {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn family(&self) -> i32 {
        i32::from(self.buf[1])
    }

    /// An all-zero address of `len` bytes, sa_len and sa_family set.
    fn header(len: u8, family: i32) -> Self {
        let mut sa = SockAddr {
            buf: [0; SA_MAX],
            len: usize::from(len),
        };
        sa.buf[0] = len;
        sa.buf[1] = family as u8;
        sa
    }

    /// struct sockaddr_in: len, family, port (network order), addr, zero[8].
    pub fn inet(addr: [u8; 4], port: u16) -> Self {
        let mut sa = Self::header(16, AF_INET);
        sa.buf[2..4].copy_from_slice(&port.to_be_bytes());
        sa.buf[4..8].copy_from_slice(&addr);
        sa
    }

    /// struct sockaddr_in6: len, family, port, flowinfo, addr[16], scope_id.
    pub fn inet6(addr: [u8; 16], port: u16) -> Self {
        let mut sa = Self::header(28, AF_INET6);
        sa.buf[2..4].copy_from_slice(&port.to_be_bytes());
        sa.buf[8..24].copy_from_slice(&addr);
        sa
    }

    /// struct sockaddr_un: len, family, path[104] (NUL-terminated here).
    pub fn unix(path: &[u8]) -> Self {
        let mut sa = Self::header(106, AF_UNIX);
        let n = path.len().min(103);
        sa.buf[2..2 + n].copy_from_slice(&path[..n]);
        sa
    }
}

/// The address a socket is bound to.
pub fn local_addr(fd: i32) -> SysResult<SockAddr> {
    let mut sa = SockAddr {
        buf: [0; SA_MAX],
        len: 0,
    };
    sa.len = sys::getsockname(fd, &mut sa.buf)?.min(SA_MAX);
    Ok(sa)
}

// ---------------------------------------------------------------- lo0

const IFNAMSIZ: usize = 16;
/// _IOW('i', 43, struct ifaliasreq): 16 + 3 * 16 + 4 = 68 bytes.
const SIOCAIFADDR: u64 = 0x8000_0000 | (68 << 16) | ((b'i' as u64) << 8) | 43;
/// _IOWR('i', 17, struct ifreq): struct ifreq is 32 bytes.
const SIOCGIFFLAGS: u64 = 0xc000_0000 | (32 << 16) | ((b'i' as u64) << 8) | 17;
/// _IOW('i', 16, struct ifreq)
const SIOCSIFFLAGS: u64 = 0x8000_0000 | (32 << 16) | ((b'i' as u64) << 8) | 16;
const IFF_UP: u16 = 0x1;

fn ifname(buf: &mut [u8], name: &[u8]) {
    buf[..name.len()].copy_from_slice(name);
}

/// What init found out about the loopback interface.
pub struct Loopback {
    pub v4: Result<(), Errno>,
    pub v6: Result<(), Errno>,
}

/// Adds 127.0.0.1/8 to lo0 (SIOCAIFADDR also marks it up), makes sure
/// IFF_UP is set, then checks that 127.0.0.1 and ::1 can be bound.
pub fn setup_loopback(tap: &mut Tap) -> Loopback {
    let v4 = setup_v4(tap);
    let flags = ensure_up(tap);
    if let Err(e) = flags {
        tap.diag(format_args!("lo0: SIOCGIFFLAGS/SIOCSIFFLAGS failed: {}", e));
    }
    let v4 = v4.and_then(|_| probe_bind(SockAddr::inet(LOOPBACK4, 0)));
    let v6 = wait_v6();
    Loopback { v4, v6 }
}

/// SIOCAIFADDR `addr`/`mask` on lo0. The socket is the caller's: setup_v4
/// tells a failure to make one apart from the ioctl's.
fn add_addr4(s: &Fd, addr: [u8; 4], mask: [u8; 4]) -> SysResult<()> {
    // struct in_aliasreq: name, addr, broadaddr (unused: len 0), mask, vhid.
    let mut req = [0u8; 68];
    ifname(&mut req[..IFNAMSIZ], b"lo0");
    req[16..32].copy_from_slice(SockAddr::inet(addr, 0).bytes());
    req[48..64].copy_from_slice(SockAddr::inet(mask, 0).bytes());
    sys::ioctl(s.raw(), SIOCAIFADDR, &mut req).map(|_| ())
}

fn setup_v4(tap: &mut Tap) -> SysResult<()> {
    let s = sys::socket(AF_INET, SOCK_DGRAM, 0)?;
    match add_addr4(&s, LOOPBACK4, [255, 0, 0, 0]) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => {
            tap.diag(format_args!("lo0: 127.0.0.1 already configured"));
            Ok(())
        }
        Err(e) => {
            tap.diag(format_args!("lo0: SIOCAIFADDR 127.0.0.1/8 failed: {}", e));
            Err(e)
        }
    }
}

/// Adds `addr`/32 to lo0 as an alias (a second source address on the
/// loopback for tests); EEXIST counts as done.
pub fn add_alias4(addr: [u8; 4]) -> SysResult<()> {
    let s = sys::socket(AF_INET, SOCK_DGRAM, 0)?;
    match add_addr4(&s, addr, [255, 255, 255, 255]) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

fn ensure_up(tap: &mut Tap) -> SysResult<()> {
    let s = sys::socket(AF_INET, SOCK_DGRAM, 0)?;
    let mut ifr = [0u8; 32];
    ifname(&mut ifr[..IFNAMSIZ], b"lo0");
    sys::ioctl(s.raw(), SIOCGIFFLAGS, &mut ifr)?;
    let flags = u16::from_ne_bytes([ifr[16], ifr[17]]);
    if flags & IFF_UP == 0 {
        tap.diag(format_args!("lo0: flags {:#x}, setting IFF_UP", flags));
        ifr[16..18].copy_from_slice(&(flags | IFF_UP).to_ne_bytes());
        sys::ioctl(s.raw(), SIOCSIFFLAGS, &mut ifr)?;
    }
    Ok(())
}

/// An address is usable when a datagram socket can bind to it.
fn probe_bind(sa: SockAddr) -> SysResult<()> {
    let s = sys::socket(sa.family(), SOCK_DGRAM, 0)?;
    sys::bind(s.raw(), sa.bytes())
}

/// ::1 is added by the kernel when lo0 comes up (in6_ifattach); give it a
/// moment (bounded: 2 s).
fn wait_v6() -> SysResult<()> {
    let start = sys::now_ms();
    loop {
        match probe_bind(SockAddr::inet6(LOOPBACK6, 0)) {
            Ok(()) => return Ok(()),
            Err(Errno::EADDRNOTAVAIL) if sys::now_ms() - start < 2000 => sys::sleep_ms(20),
            Err(e) => return Err(e),
        }
    }
}
