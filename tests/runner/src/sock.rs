//! Socket helpers for the tests: listeners, bounded connects and accepts,
//! the SOL_SOCKET integer options that expose the listen queues, and the
//! datagrams forked children report in. Every wait here is bounded.

use crate::net::{self, SockAddr, AF_INET, AF_INET6, AF_UNIX, LOOPBACK4, LOOPBACK6};
use crate::sys::{self, Errno, Fd, PollFd, SysResult};
use core::sync::atomic::{AtomicU32, Ordering};

pub const SOL_SOCKET: i32 = 0xffff;
pub const SO_ERROR: i32 = 0x1007;
pub const SO_LISTENQLIMIT: i32 = 0x1011;
pub const SO_LISTENQLEN: i32 = 0x1012;
pub const SO_LISTENINCQLEN: i32 = 0x1013;

/// Directory for AF_UNIX socket files (init mounts a tmpfs there).
pub const UNIX_DIR: &[u8] = b"/tmp";

/// How long a connect or accept may take before it counts as failed.
pub const IO_TIMEOUT_MS: i32 = 3000;

pub fn get_int(fd: i32, level: i32, opt: i32) -> SysResult<i32> {
    let mut b = [0u8; 4];
    let n = sys::getsockopt(fd, level, opt, &mut b)?;
    if n != 4 {
        return Err(Errno::BADSIZE);
    }
    Ok(i32::from_ne_bytes(b))
}

#[allow(dead_code)] // for SO_ACCEPTFILTER-style tests to come
pub fn set_int(fd: i32, level: i32, opt: i32, v: i32) -> SysResult<()> {
    sys::setsockopt(fd, level, opt, &v.to_ne_bytes())
}

pub fn qlimit(fd: i32) -> SysResult<i32> {
    get_int(fd, SOL_SOCKET, SO_LISTENQLIMIT)
}

pub fn qlen(fd: i32) -> SysResult<i32> {
    get_int(fd, SOL_SOCKET, SO_LISTENQLEN)
}

pub fn incqlen(fd: i32) -> SysResult<i32> {
    get_int(fd, SOL_SOCKET, SO_LISTENINCQLEN)
}

pub fn set_nonblock(fd: i32) -> SysResult<()> {
    let fl = sys::fcntl(fd, sys::F_GETFL, 0)?;
    sys::fcntl(fd, sys::F_SETFL, fl | sys::O_NONBLOCK as usize).map(|_| ())
}

/// A socket type to test listen(2) with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp4,
    Tcp6,
    UnixStream,
    UnixSeqpacket,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Tcp4 => "tcp4",
            Kind::Tcp6 => "tcp6",
            Kind::UnixStream => "unix-stream",
            Kind::UnixSeqpacket => "unix-seqpacket",
        }
    }

    fn domain_type(self) -> (i32, i32) {
        match self {
            Kind::Tcp4 => (AF_INET, net::SOCK_STREAM),
            Kind::Tcp6 => (AF_INET6, net::SOCK_STREAM),
            Kind::UnixStream => (AF_UNIX, net::SOCK_STREAM),
            Kind::UnixSeqpacket => (AF_UNIX, net::SOCK_SEQPACKET),
        }
    }

    /// TCP completes connections asynchronously (syncache, netisr), so a
    /// connect() that succeeded may still be dropped at the listener.
    pub fn is_tcp(self) -> bool {
        matches!(self, Kind::Tcp4 | Kind::Tcp6)
    }

    pub fn socket(self) -> SysResult<Fd> {
        let (d, t) = self.domain_type();
        sys::socket(d, t, 0)
    }
}

static UNIX_SEQ: AtomicU32 = AtomicU32::new(0);

/// A forked child calls this with a number of its own, so its socket paths
/// (numbered per process) cannot collide with its siblings'.
pub fn unix_paths_from(base: u32) {
    UNIX_SEQ.store(base + UNIX_EPOCH.load(Ordering::Relaxed), Ordering::Relaxed);
}

static UNIX_EPOCH: AtomicU32 = AtomicU32::new(0);

/// A test run again in the same boot (listenq.stress=N) starts a new
/// epoch, so the paths its children number from the same bases are new.
pub fn unix_paths_epoch(e: u32) {
    UNIX_EPOCH.store(e.saturating_mul(100_000), Ordering::Relaxed);
}

/// A fresh socket path: /tmp/lq.<pid>.<n>.
fn unix_path() -> SockAddr {
    let n = UNIX_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut p = [0u8; 64];
    let mut len = 0;
    let mut push = |b: &[u8]| {
        p[len..len + b.len()].copy_from_slice(b);
        len += b.len();
    };
    push(UNIX_DIR);
    push(b"/lq.");
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = n;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    digits[..d].reverse();
    push(&digits[..d]);
    SockAddr::unix(&p[..len])
}

/// A bound socket (not yet listening) and the address clients use.
pub fn bound(kind: Kind) -> SysResult<(Fd, SockAddr)> {
    let s = kind.socket()?;
    let sa = match kind {
        Kind::Tcp4 => SockAddr::inet(LOOPBACK4, 0),
        Kind::Tcp6 => SockAddr::inet6(LOOPBACK6, 0),
        Kind::UnixStream | Kind::UnixSeqpacket => unix_path(),
    };
    sys::bind(s.raw(), sa.bytes())?;
    let addr = if kind.is_tcp() {
        net::local_addr(s.raw())?
    } else {
        sa
    };
    Ok((s, addr))
}

/// A listening socket with the given backlog and its address.
pub fn listener(kind: Kind, backlog: i32) -> SysResult<(Fd, SockAddr)> {
    let (s, sa) = bound(kind)?;
    sys::listen(s.raw(), backlog)?;
    Ok((s, sa))
}

/// Connects a new client socket; nonblocking connect + poll, so it cannot
/// hang. Returns the connected socket (blocking mode is left off).
pub fn connect(kind: Kind, to: &SockAddr) -> SysResult<Fd> {
    let c = kind.socket()?;
    set_nonblock(c.raw())?;
    match sys::connect(c.raw(), to.bytes()) {
        Ok(()) => return Ok(c),
        Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut p = [PollFd {
        fd: c.raw(),
        events: sys::POLLOUT,
        revents: 0,
    }];
    let n = sys::poll(&mut p, IO_TIMEOUT_MS)?;
    if n == 0 {
        return Err(Errno::TIMEOUT);
    }
    match get_int(c.raw(), SOL_SOCKET, SO_ERROR)? {
        0 => Ok(c),
        e => Err(Errno(e)),
    }
}

/// Accepts one connection, waiting at most IO_TIMEOUT_MS for it.
pub fn accept(listener: i32) -> SysResult<Fd> {
    let mut p = [PollFd {
        fd: listener,
        events: sys::POLLIN,
        revents: 0,
    }];
    let n = sys::poll(&mut p, IO_TIMEOUT_MS)?;
    if n == 0 {
        return Err(Errno::TIMEOUT);
    }
    sys::accept(listener)
}

/// Waits until the completed queue holds at least `want` connections or
/// `timeout_ms` passed; returns the last length read.
/// Waits up to `timeout_ms` for `len(fd)` to reach `want`; the length
/// last seen.
fn wait_len(fd: i32, want: i32, timeout_ms: u64, len: fn(i32) -> SysResult<i32>) -> SysResult<i32> {
    let start = sys::now_ms();
    loop {
        let q = len(fd)?;
        if q >= want || sys::now_ms().saturating_sub(start) >= timeout_ms {
            return Ok(q);
        }
        sys::sleep_ms(2);
    }
}

/// Connections on the incomplete queue (held by a filter, once their
/// handshake is done): at least `want`, waiting up to `timeout_ms`.
pub fn wait_incqlen(fd: i32, want: i32, timeout_ms: u64) -> SysResult<i32> {
    wait_len(fd, want, timeout_ms, incqlen)
}

pub fn wait_qlen(fd: i32, want: i32, timeout_ms: u64) -> SysResult<i32> {
    wait_len(fd, want, timeout_ms, qlen)
}

/// Connections on either queue (held by a filter or passed): at least
/// `want`, waiting up to `timeout_ms`.
pub fn wait_queued(fd: i32, want: i32, timeout_ms: u64) -> SysResult<i32> {
    wait_len(fd, want, timeout_ms, |fd| Ok(incqlen(fd)? + qlen(fd)?))
}

// ---------------------------------------------------------------- reports

/// A forked child reports to its parent in one datagram of native-endian
/// u64 words (t_stress.rs, fuzz_worker.rs): both run on the one machine,
/// so no byte order is needed. `b` is exactly 8 bytes a word.
pub fn put_words(w: &[u64], b: &mut [u8]) {
    for (c, x) in b.chunks_exact_mut(8).zip(w) {
        c.copy_from_slice(&x.to_ne_bytes());
    }
}

/// The words of a datagram that put_words() wrote.
pub fn words<const N: usize>(b: &[u8]) -> [u64; N] {
    let mut w = [0u64; N];
    for (x, c) in w.iter_mut().zip(b.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        *x = u64::from_ne_bytes(a);
    }
    w
}
