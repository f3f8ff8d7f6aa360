//! Raw FreeBSD/amd64 system calls, each wrapped into a safe function that
//! returns `Result<T, Errno>`. This module (and the entry code in main.rs)
//! is the only place with `unsafe`.
//!
//! Convention (sys/amd64/amd64/exception.S, fast_syscall): number in rax,
//! arguments in rdi rsi rdx r10 r8 r9, then `syscall`. On return the carry
//! flag is set on error and rax holds the errno. The kernel returns a second
//! value in rdx and zeroes r8-r10; rcx and r11 are clobbered by `syscall`.
//! Numbers are from sys/kern/syscalls.master.

// A syscall API for the tests: not every wrapper or constant has a user yet.
#![allow(dead_code)]

use core::arch::asm;
use core::ffi::CStr;
use core::fmt;

/// System call numbers, from SYSDIR's sys/syscall.h (build.rs).
mod nr {
    include!(concat!(env!("OUT_DIR"), "/nr.rs"));
}

/// An errno value from the kernel (sys/sys/errno.h). Negative values are
/// the runner's own pseudo-errors (never produced by the kernel).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

// Every errno of SYSDIR's sys/errno.h, as `Errno::E...` (build.rs).
include!(concat!(env!("OUT_DIR"), "/errno_consts.rs"));

impl Errno {
    /// Pseudo-error: a value had an unexpected size (e.g. a sysctl).
    pub const BADSIZE: Errno = Errno(-1);
    /// Pseudo-error: a bounded wait ran out.
    pub const TIMEOUT: Errno = Errno(-2);

    pub fn name(self) -> &'static str {
        match self.0 {
            -1 => "(bad size)",
            -2 => "(timed out)",
            n => include!(concat!(env!("OUT_DIR"), "/errno_names.rs")),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub type SysResult<T> = Result<T, Errno>;

/// The `syscall` instruction itself: rax, rdx and the carry flag as the
/// kernel left them (fork(2) needs rdx; every other call only rax).
///
/// # Safety
/// Every pointer in `a` must be valid for what syscall `n` does with it
/// (read or written for the given length) for the duration of the call.
unsafe fn raw_syscall(n: usize, a: [usize; 6]) -> (usize, usize, bool) {
    let rax: usize;
    let rdx: usize;
    let carry: u8;
    // SAFETY: the caller guarantees the pointers in `a`; the asm declares
    // every register the kernel may change (rax, rdx, rcx, r11, r8-r10, and
    // conservatively rdi/rsi) and touches no Rust-visible stack memory.
    unsafe {
        asm!(
            "syscall",
            "setc {c}",
            c = out(reg_byte) carry,
            inlateout("rax") n => rax,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => rdx,
            inlateout("r10") a[3] => _,
            inlateout("r8") a[4] => _,
            inlateout("r9") a[5] => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (rax, rdx, carry != 0)
}

/// A system call whose one result is rax: the errno when the kernel set
/// the carry flag. Every wrapper but fork() goes through it.
///
/// # Safety
/// As for raw_syscall: every pointer argument must be valid for what
/// syscall `n` does with it for the duration of the call.
unsafe fn syscall6(
    n: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> SysResult<usize> {
    // SAFETY: the caller guarantees the pointer arguments (this function's
    // contract is raw_syscall's).
    let (ret, _, carry) = unsafe { raw_syscall(n, [a1, a2, a3, a4, a5, a6]) };
    if carry {
        Err(Errno(ret as i32))
    } else {
        Ok(ret)
    }
}

fn ptr<T: ?Sized>(r: &T) -> usize {
    r as *const T as *const u8 as usize
}

fn mptr<T: ?Sized>(r: &mut T) -> usize {
    r as *mut T as *mut u8 as usize
}

// ---------------------------------------------------------------- processes

/// exit(2). Used only if reboot(2) somehow returns.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit takes no pointers.
    let _ = unsafe { syscall6(nr::EXIT, code as usize, 0, 0, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

/// Which side of fork(2) this is.
pub enum Forked {
    Parent(i32),
    Child,
}

/// fork(2). The kernel returns in both processes: rax is the other
/// process's pid, rdx is 1 in the child and 0 in the parent.
pub fn fork() -> SysResult<Forked> {
    // SAFETY: fork takes no arguments, so the zeros are no pointers.
    let (ret, child, carry) = unsafe { raw_syscall(nr::FORK, [0; 6]) };
    if carry {
        Err(Errno(ret as i32))
    } else if child != 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent(ret as i32))
    }
}

/// wait4(2) for one child; returns its raw status.
pub fn wait4(pid: i32) -> SysResult<i32> {
    let mut status: i32 = 0;
    // SAFETY: `status` is a valid int for the kernel to write; no rusage.
    unsafe { syscall6(nr::WAIT4, pid as usize, mptr(&mut status), 0, 0, 0, 0) }.map(|_| status)
}

pub const WNOHANG: i32 = 1;

/// wait4(2) with WNOHANG: Some(status) once the child ended, None while
/// it runs.
pub fn wait4_nohang(pid: i32) -> SysResult<Option<i32>> {
    let mut status: i32 = 0;
    // SAFETY: `status` is a valid int for the kernel to write; no rusage.
    let r = unsafe {
        syscall6(
            nr::WAIT4,
            pid as usize,
            mptr(&mut status),
            WNOHANG as usize,
            0,
            0,
            0,
        )
    }?;
    Ok((r != 0).then_some(status))
}

pub const SIGKILL: i32 = 9;

pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: kill takes no pointers.
    unsafe { syscall6(nr::KILL, pid as usize, sig as usize, 0, 0, 0, 0) }.map(|_| ())
}

/// struct kevent (sys/event.h, FreeBSD 12 and later).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Kevent {
    pub ident: usize,
    pub filter: i16,
    pub flags: u16,
    pub fflags: u32,
    pub data: i64,
    pub udata: usize,
    pub ext: [u64; 4],
}

pub const EVFILT_READ: i16 = -1;
pub const EV_ADD: u16 = 0x0001;

impl Kevent {
    pub fn read(fd: i32) -> Kevent {
        Kevent {
            ident: fd as usize,
            filter: EVFILT_READ,
            flags: EV_ADD,
            fflags: 0,
            data: 0,
            udata: 0,
            ext: [0; 4],
        }
    }
}

pub fn kqueue() -> SysResult<Fd> {
    // SAFETY: kqueue takes no arguments.
    unsafe { syscall6(nr::KQUEUE, 0, 0, 0, 0, 0, 0) }.map(|v| Fd(v as i32))
}

/// kevent(2): registers `changes`, then waits at most `timeout_ms` for
/// events into `out`; returns how many it wrote.
pub fn kevent(
    kq: i32,
    changes: &[Kevent],
    out: &mut [Kevent],
    timeout_ms: u64,
) -> SysResult<usize> {
    let ts = [
        (timeout_ms / 1000) as i64,
        ((timeout_ms % 1000) * 1_000_000) as i64,
    ];
    // SAFETY: the slices are valid for their lengths (Kevent is the
    // kernel's layout), `ts` is a struct timespec.
    unsafe {
        syscall6(
            nr::KEVENT,
            kq as usize,
            changes.as_ptr() as usize,
            changes.len(),
            out.as_mut_ptr() as usize,
            out.len(),
            ptr(&ts),
        )
    }
}

pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments.
    unsafe { syscall6(nr::GETPID, 0, 0, 0, 0, 0, 0) }
        .map(|v| v as i32)
        .unwrap_or(-1)
}

pub const RB_NOSYNC: i32 = 0x004;

/// reboot(2); with QEMU -no-reboot this ends the VM. Never returns.
pub fn reboot(howto: i32) -> ! {
    // SAFETY: reboot takes no pointers.
    let _ = unsafe { syscall6(nr::REBOOT, howto as usize, 0, 0, 0, 0, 0) };
    exit(1)
}

// ---------------------------------------------------------------- files

pub const O_RDONLY: i32 = 0x0000;
pub const O_WRONLY: i32 = 0x0001;
pub const O_RDWR: i32 = 0x0002;
pub const O_NONBLOCK: i32 = 0x0004;
pub const O_NOCTTY: i32 = 0x8000;
pub const O_CLOEXEC: i32 = 0x0010_0000;

pub const F_GETFL: i32 = 3;
pub const F_SETFL: i32 = 4;

/// An owned descriptor, closed on drop.
pub struct Fd(i32);

impl Fd {
    pub fn raw(&self) -> i32 {
        self.0
    }
    /// Gives up ownership without closing.
    pub fn into_raw(self) -> i32 {
        let fd = self.0;
        core::mem::forget(self);
        fd
    }
    /// Closes now and reports the result of close(2).
    pub fn close(self) -> SysResult<()> {
        close(self.into_raw())
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = close(self.0);
    }
}

pub fn open(path: &CStr, flags: i32) -> SysResult<Fd> {
    // SAFETY: path is NUL-terminated and outlives the call.
    unsafe { syscall6(nr::OPEN, path.as_ptr() as usize, flags as usize, 0, 0, 0, 0) }
        .map(|fd| Fd(fd as i32))
}

pub fn close(fd: i32) -> SysResult<()> {
    // SAFETY: close takes no pointers.
    unsafe { syscall6(nr::CLOSE, fd as usize, 0, 0, 0, 0, 0) }.map(|_| ())
}

pub fn write(fd: i32, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: buf is readable for buf.len() bytes.
    unsafe { syscall6(nr::WRITE, fd as usize, ptr(buf), buf.len(), 0, 0, 0) }
}

/// Writes all of `buf`, retrying on short writes and EINTR (bounded).
pub fn write_all(fd: i32, mut buf: &[u8]) -> SysResult<()> {
    let mut tries = 0;
    while !buf.is_empty() {
        tries += 1;
        if tries > 10_000 {
            return Err(Errno::TIMEOUT);
        }
        match write(fd, buf) {
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn fcntl(fd: i32, cmd: i32, arg: usize) -> SysResult<usize> {
    // SAFETY: only F_GETFL/F_SETFL-style integer commands are used.
    unsafe { syscall6(nr::FCNTL, fd as usize, cmd as usize, arg, 0, 0, 0) }
}

/// The parameter length encoded in an ioctl request (sys/ioccom.h).
pub const fn ioc_len(req: u64) -> usize {
    ((req >> 16) & 0x1fff) as usize
}

/// ioctl(2) with an in/out parameter buffer; refuses a buffer shorter than
/// the length the request encodes, which is what makes this safe.
pub fn ioctl(fd: i32, req: u64, buf: &mut [u8]) -> SysResult<usize> {
    if buf.len() < ioc_len(req) {
        return Err(Errno::BADSIZE);
    }
    // SAFETY: the kernel copies at most ioc_len(req) bytes in/out of buf,
    // which is at least that long.
    unsafe { syscall6(nr::IOCTL, fd as usize, req as usize, mptr(buf), 0, 0, 0) }
}

/// ioctl(2) for requests without a parameter (_IO); the kernel ignores the
/// data argument for them.
pub fn ioctl_void(fd: i32, req: u64) -> SysResult<usize> {
    if ioc_len(req) != 0 {
        return Err(Errno::BADSIZE);
    }
    // SAFETY: a request with a zero parameter length reads no user memory.
    unsafe { syscall6(nr::IOCTL, fd as usize, req as usize, 0, 0, 0, 0) }
}

/// nmount(2) from (name, value) pairs of C strings; at most 8 pairs.
pub fn nmount(pairs: &[(&CStr, &CStr)], flags: i32) -> SysResult<()> {
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Iovec {
        base: usize,
        len: usize,
    }
    let mut iov = [Iovec { base: 0, len: 0 }; 16];
    if pairs.len() > 8 {
        return Err(Errno::EINVAL);
    }
    for (i, (k, v)) in pairs.iter().enumerate() {
        iov[2 * i] = Iovec {
            base: k.as_ptr() as usize,
            len: k.to_bytes_with_nul().len(),
        };
        iov[2 * i + 1] = Iovec {
            base: v.as_ptr() as usize,
            len: v.to_bytes_with_nul().len(),
        };
    }
    // SAFETY: iov holds 2*pairs.len() valid (pointer, length) entries that
    // point into the borrowed C strings, all alive for the call.
    unsafe {
        syscall6(
            nr::NMOUNT,
            ptr(&iov),
            2 * pairs.len(),
            flags as usize,
            0,
            0,
            0,
        )
    }
    .map(|_| ())
}

// ---------------------------------------------------------------- time

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

const CLOCK_MONOTONIC: usize = 4;

/// Monotonic time in milliseconds.
pub fn now_ms() -> u64 {
    monotonic().map_or(0, |ts| {
        (ts.sec as u64) * 1000 + (ts.nsec as u64) / 1_000_000
    })
}

/// clock_gettime(2) CLOCK_MONOTONIC.
fn monotonic() -> SysResult<Timespec> {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: ts is a writable struct timespec.
    unsafe {
        syscall6(
            nr::CLOCK_GETTIME,
            CLOCK_MONOTONIC,
            mptr(&mut ts),
            0,
            0,
            0,
            0,
        )
    }?;
    Ok(ts)
}

/// Sleeps for `us` microseconds (one nanosleep; see sleep_ms()).
pub fn sleep_us(us: u64) {
    let ts = Timespec {
        sec: (us / 1_000_000) as i64,
        nsec: ((us % 1_000_000) * 1000) as i64,
    };
    // SAFETY: ts is a readable struct timespec; rmtp is NULL.
    let _ = unsafe { syscall6(nr::NANOSLEEP, ptr(&ts), 0, 0, 0, 0, 0) };
}

/// Sleeps for `ms` milliseconds (one nanosleep; an interruption just ends
/// the sleep early, which every caller tolerates).
pub fn sleep_ms(ms: u64) {
    let ts = Timespec {
        sec: (ms / 1000) as i64,
        nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    // SAFETY: ts is a readable struct timespec; rmtp is NULL.
    let _ = unsafe { syscall6(nr::NANOSLEEP, ptr(&ts), 0, 0, 0, 0, 0) };
}

// ---------------------------------------------------------------- poll

pub const POLLIN: i16 = 0x0001;
pub const POLLOUT: i16 = 0x0004;
pub const POLLERR: i16 = 0x0008;
pub const POLLHUP: i16 = 0x0010;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// poll(2); returns the number of ready descriptors.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> SysResult<usize> {
    // SAFETY: fds is a writable array of fds.len() struct pollfd.
    unsafe { syscall6(nr::POLL, mptr(fds), fds.len(), timeout_ms as usize, 0, 0, 0) }
}

// ---------------------------------------------------------------- sockets

pub fn socket(domain: i32, ty: i32, proto: i32) -> SysResult<Fd> {
    // SAFETY: socket takes no pointers.
    unsafe {
        syscall6(
            nr::SOCKET,
            domain as usize,
            ty as usize,
            proto as usize,
            0,
            0,
            0,
        )
    }
    .map(|fd| Fd(fd as i32))
}

/// socketpair(2).
pub fn socketpair(domain: i32, ty: i32) -> SysResult<(Fd, Fd)> {
    let mut sv = [-1i32; 2];
    // SAFETY: sv is a writable int[2].
    unsafe {
        syscall6(
            nr::SOCKETPAIR,
            domain as usize,
            ty as usize,
            0,
            mptr(&mut sv),
            0,
            0,
        )
    }
    .map(|_| (Fd(sv[0]), Fd(sv[1])))
}

/// bind(2); `addr` holds the bytes of a struct sockaddr_*.
pub fn bind(fd: i32, addr: &[u8]) -> SysResult<()> {
    // SAFETY: addr is readable for addr.len() bytes.
    unsafe { syscall6(nr::BIND, fd as usize, ptr(addr), addr.len(), 0, 0, 0) }.map(|_| ())
}

/// connect(2); `addr` holds the bytes of a struct sockaddr_*.
pub fn connect(fd: i32, addr: &[u8]) -> SysResult<()> {
    // SAFETY: addr is readable for addr.len() bytes.
    unsafe { syscall6(nr::CONNECT, fd as usize, ptr(addr), addr.len(), 0, 0, 0) }.map(|_| ())
}

pub fn listen(fd: i32, backlog: i32) -> SysResult<()> {
    // SAFETY: listen takes no pointers.
    unsafe {
        syscall6(
            nr::LISTEN,
            fd as usize,
            backlog as isize as usize,
            0,
            0,
            0,
            0,
        )
    }
    .map(|_| ())
}

/// accept(2) without asking for the peer address.
pub fn accept(fd: i32) -> SysResult<Fd> {
    // SAFETY: name and anamelen are NULL, which accept(2) allows.
    unsafe { syscall6(nr::ACCEPT, fd as usize, 0, 0, 0, 0, 0) }.map(|fd| Fd(fd as i32))
}

/// getsockname(2) into `buf`; returns the address length.
pub fn getsockname(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    sockaddr_of(nr::GETSOCKNAME, fd, buf)
}

/// getsockname(2) or getpeername(2), `n`: the two take the same arguments.
fn sockaddr_of(n: usize, fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    let mut len: u32 = buf.len() as u32;
    // SAFETY: `n` is GETSOCKNAME or GETPEERNAME (the only callers), which
    // write at most len bytes into buf, writable for len bytes, and the
    // result into len, a writable socklen_t.
    unsafe { syscall6(n, fd as usize, mptr(buf), mptr(&mut len), 0, 0, 0) }?;
    Ok(len as usize)
}

/// getsockopt(2) into `buf`; returns the option length.
pub fn getsockopt(fd: i32, level: i32, name: i32, buf: &mut [u8]) -> SysResult<usize> {
    let mut len: u32 = buf.len() as u32;
    // SAFETY: buf is writable for len bytes and len is a writable socklen_t.
    unsafe {
        syscall6(
            nr::GETSOCKOPT,
            fd as usize,
            level as usize,
            name as usize,
            mptr(buf),
            mptr(&mut len),
            0,
        )
    }?;
    Ok(len as usize)
}

pub fn setsockopt(fd: i32, level: i32, name: i32, val: &[u8]) -> SysResult<()> {
    // SAFETY: val is readable for val.len() bytes.
    unsafe {
        syscall6(
            nr::SETSOCKOPT,
            fd as usize,
            level as usize,
            name as usize,
            ptr(val),
            val.len(),
            0,
        )
    }
    .map(|_| ())
}

// ---------------------------------------------------------------- kld

pub fn kldload(path: &CStr) -> SysResult<i32> {
    // SAFETY: path is NUL-terminated.
    unsafe { syscall6(nr::KLDLOAD, path.as_ptr() as usize, 0, 0, 0, 0, 0) }.map(|v| v as i32)
}

pub fn kldunload(fileid: i32) -> SysResult<()> {
    // SAFETY: kldunload takes no pointers.
    unsafe { syscall6(nr::KLDUNLOAD, fileid as usize, 0, 0, 0, 0, 0) }.map(|_| ())
}

pub fn kldfind(name: &CStr) -> SysResult<i32> {
    // SAFETY: name is NUL-terminated.
    unsafe { syscall6(nr::KLDFIND, name.as_ptr() as usize, 0, 0, 0, 0, 0) }.map(|v| v as i32)
}

pub fn modfind(name: &CStr) -> SysResult<i32> {
    // SAFETY: name is NUL-terminated.
    unsafe { syscall6(nr::MODFIND, name.as_ptr() as usize, 0, 0, 0, 0, 0) }.map(|v| v as i32)
}

pub use crate::layout::KLD_FILE_STAT_SIZE;

/// kldstat(2) into a raw struct kld_file_stat (its version field is set
/// here); kld.rs decodes it.
pub fn kldstat(fileid: i32, buf: &mut [u8; KLD_FILE_STAT_SIZE]) -> SysResult<()> {
    buf[..4].copy_from_slice(&(KLD_FILE_STAT_SIZE as i32).to_ne_bytes());
    // SAFETY: buf is a writable struct kld_file_stat of the size its version
    // field announces.
    unsafe { syscall6(nr::KLDSTAT, fileid as usize, mptr(buf), 0, 0, 0, 0) }.map(|_| ())
}

// ---------------------------------------------------------------- sysctl

/// __sysctlbyname(2). Reads into `old` if given (returns the length the
/// kernel reported), writes `new` if given.
pub fn sysctlbyname(name: &str, old: Option<&mut [u8]>, new: Option<&[u8]>) -> SysResult<usize> {
    // SAFETY: name is readable for name.len() bytes (the kernel takes an
    // explicit length, no NUL needed).
    unsafe {
        sysctl_call(
            nr::SYSCTLBYNAME,
            name.as_ptr() as usize,
            name.len(),
            old,
            new,
        )
    }
}

/// __sysctl(2) by MIB: reads into `old` if given (returns the length the
/// kernel reported), writes `new` if given.
pub fn sysctl_mib(mib: &[i32], old: Option<&mut [u8]>, new: Option<&[u8]>) -> SysResult<usize> {
    // SAFETY: `mib` is readable for mib.len() ints.
    unsafe { sysctl_call(nr::SYSCTL, mib.as_ptr() as usize, mib.len(), old, new) }
}

/// Either sysctl call: the name (`name`, `len`) as the call takes it, then
/// the old and new buffers.
///
/// # Safety
/// `name` is readable for what `len` means to call `n`.
unsafe fn sysctl_call(
    n: usize,
    name: usize,
    len: usize,
    old: Option<&mut [u8]>,
    new: Option<&[u8]>,
) -> SysResult<usize> {
    let (optr, mut olen) = match old {
        Some(b) => (mptr(b), b.len()),
        None => (0, 0),
    };
    let olenp = if optr != 0 { mptr(&mut olen) } else { 0 };
    let (nptr, nlen) = match new {
        Some(b) => (ptr(b), b.len()),
        None => (0, 0),
    };
    // SAFETY: the name is the caller's to vouch for; old/olen and new are
    // valid buffers of the stated lengths or NULL.
    unsafe { syscall6(n, name, len, optr, olenp, nptr, nlen) }?;
    Ok(olen)
}

// ---------------------------------------------------------------- accept filter tests

/// Monotonic time in microseconds (the benchmark's clock).
pub fn now_us() -> u64 {
    monotonic().map_or(0, |ts| {
        (ts.sec as u64) * 1_000_000 + (ts.nsec as u64) / 1000
    })
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is writable for buf.len() bytes.
    unsafe { syscall6(nr::READ, fd as usize, mptr(buf), buf.len(), 0, 0, 0) }
}

/// MSG_NOSIGNAL: no SIGPIPE when the peer is gone.
pub const MSG_NOSIGNAL: i32 = 0x0002_0000;

/// send(2) = sendto(2) without an address.
pub fn send(fd: i32, buf: &[u8], flags: i32) -> SysResult<usize> {
    // SAFETY: buf is readable for buf.len() bytes; to is NULL, tolen 0.
    unsafe {
        syscall6(
            nr::SENDTO,
            fd as usize,
            ptr(buf),
            buf.len(),
            flags as usize,
            0,
            0,
        )
    }
}

/// struct iovec.
#[repr(C)]
struct IoVec {
    base: usize,
    len: usize,
}

/// struct msghdr (amd64: socklen_t and int fields padded to 8).
#[repr(C)]
struct MsgHdr {
    name: usize,
    namelen: u32,
    iov: usize,
    iovlen: i32,
    control: usize,
    controllen: u32,
    flags: i32,
}

pub const SOL_SOCKET: i32 = 0xffff;
pub const SCM_RIGHTS: i32 = 0x01;

/// One SCM_RIGHTS control message with one descriptor: struct cmsghdr
/// (12 bytes), padded to CMSG_ALIGN (8 on amd64), then the int;
/// CMSG_LEN(4) = 20, CMSG_SPACE(4) = 24.
#[repr(C, align(8))]
struct Rights {
    len: u32,
    level: i32,
    ty: i32,
    _pad: i32,
    fd: i32,
    _tail: i32,
}

/// sendmsg(2) of `buf`, with an SCM_RIGHTS message passing `rights` if
/// given (no SIGPIPE).
pub fn send_with_rights(fd: i32, buf: &[u8], rights: Option<i32>) -> SysResult<usize> {
    let iov = IoVec {
        base: ptr(buf),
        len: buf.len(),
    };
    let cmsg = Rights {
        len: 20,
        level: SOL_SOCKET,
        ty: SCM_RIGHTS,
        _pad: 0,
        fd: rights.unwrap_or(-1),
        _tail: 0,
    };
    let msg = MsgHdr {
        name: 0,
        namelen: 0,
        iov: ptr(&iov),
        iovlen: 1,
        control: if rights.is_some() { ptr(&cmsg) } else { 0 },
        controllen: if rights.is_some() { 24 } else { 0 },
        flags: 0,
    };
    // SAFETY: msg, the iovec it points to, buf and cmsg are readable for
    // the lengths stated in them and live across the call.
    unsafe {
        syscall6(
            nr::SENDMSG,
            fd as usize,
            ptr(&msg),
            MSG_NOSIGNAL as usize,
            0,
            0,
            0,
        )
    }
}

pub const SHUT_WR: i32 = 1;

pub fn shutdown(fd: i32, how: i32) -> SysResult<()> {
    // SAFETY: shutdown takes no pointers.
    unsafe { syscall6(nr::SHUTDOWN, fd as usize, how as usize, 0, 0, 0, 0) }.map(|_| ())
}

/// getpeername(2) into `buf`; returns the address length.
pub fn getpeername(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    sockaddr_of(nr::GETPEERNAME, fd, buf)
}

/// setsockopt(2) with a NULL value and length 0 (SO_ACCEPTFILTER removal).
pub fn setsockopt_null(fd: i32, level: i32, name: i32) -> SysResult<()> {
    // SAFETY: a NULL value with length 0 reads no user memory.
    unsafe {
        syscall6(
            nr::SETSOCKOPT,
            fd as usize,
            level as usize,
            name as usize,
            0,
            0,
            0,
        )
    }
    .map(|_| ())
}

pub const RLIMIT_NOFILE: i32 = 8;

/// getrlimit(2): (rlim_cur, rlim_max).
pub fn getrlimit(res: i32) -> SysResult<(u64, u64)> {
    let mut r = [0u64; 2];
    // SAFETY: r is a writable struct rlimit (two 64-bit values).
    unsafe { syscall6(nr::GETRLIMIT, res as usize, mptr(&mut r), 0, 0, 0, 0) }?;
    Ok((r[0], r[1]))
}

pub fn setrlimit(res: i32, cur: u64, max: u64) -> SysResult<()> {
    let r = [cur, max];
    // SAFETY: r is a readable struct rlimit.
    unsafe { syscall6(nr::SETRLIMIT, res as usize, ptr(&r), 0, 0, 0, 0) }.map(|_| ())
}

/// kenv(KENV_SET): sets a kernel environment variable (a loader tunable
/// for modules loaded after).
pub fn kenv_set(name: &CStr, value: &CStr) -> SysResult<()> {
    const KENV_SET: usize = 1;
    let v = value.to_bytes_with_nul();
    // SAFETY: name and value are NUL-terminated; len counts value's NUL.
    unsafe {
        syscall6(
            nr::KENV,
            KENV_SET,
            name.as_ptr() as usize,
            v.as_ptr() as usize,
            v.len(),
            0,
            0,
        )
    }
    .map(|_| ())
}

/// kenv(KENV_UNSET).
pub fn kenv_unset(name: &CStr) -> SysResult<()> {
    const KENV_UNSET: usize = 2;
    // SAFETY: name is NUL-terminated.
    unsafe { syscall6(nr::KENV, KENV_UNSET, name.as_ptr() as usize, 0, 0, 0, 0) }.map(|_| ())
}

/// kenv(KENV_GET): a kernel environment variable into `buf`; returns its
/// bytes without the NUL.
pub fn kenv_get<'a>(name: &CStr, buf: &'a mut [u8]) -> SysResult<&'a [u8]> {
    const KENV_GET: usize = 0;
    // SAFETY: name is NUL-terminated; buf is writable for buf.len() bytes.
    let n = unsafe {
        syscall6(
            nr::KENV,
            KENV_GET,
            name.as_ptr() as usize,
            mptr(buf),
            buf.len(),
            0,
            0,
        )
    }?;
    let s = &buf[..n.min(buf.len())];
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Ok(&buf[..end])
}

// ---------------------------------------------------------------- users, jails

/// setuid(2) (23).
pub fn setuid(uid: u32) -> SysResult<()> {
    // SAFETY: setuid takes no pointers.
    unsafe { syscall6(nr::SETUID, uid as usize, 0, 0, 0, 0, 0) }.map(|_| ())
}

/// jail(2) (338) with struct jail version 2 (sys/jail.h): creates a jail
/// rooted at `path` with no IP addresses and attaches the calling process
/// to it. Returns the jail id; the jail goes away with its last process.
pub fn jail(path: &CStr, name: &CStr) -> SysResult<i32> {
    // struct jail { uint32_t version; char *path, *hostname, *jailname;
    //   uint32_t ip4s, ip6s; struct in_addr *ip4; struct in6_addr *ip6; }
    let j: [usize; 7] = [
        2,
        path.as_ptr() as usize,
        name.as_ptr() as usize,
        name.as_ptr() as usize,
        0, // ip4s = 0, ip6s = 0
        0,
        0,
    ];
    // SAFETY: j is a readable struct jail whose pointers are NUL-terminated
    // strings alive for the call.
    unsafe { syscall6(nr::JAIL, ptr(&j), 0, 0, 0, 0, 0) }.map(|v| v as i32)
}

/// jail_set(2) (507) with JAIL_CREATE | JAIL_ATTACH: a jail rooted at
/// `path` with its own vnet (vnet=JAIL_SYS_NEW), the caller attached.
/// Returns the jail id; the jail goes away with its last process.
pub fn jail_vnet(path: &CStr, name: &CStr) -> SysResult<i32> {
    const JAIL_CREATE: usize = 0x01;
    const JAIL_ATTACH: usize = 0x04;
    let new: i32 = 1; // JAIL_SYS_NEW
    let p = path.to_bytes_with_nul();
    let n = name.to_bytes_with_nul();
    let iov: [[usize; 2]; 6] = [
        [c"path".as_ptr() as usize, 5],
        [p.as_ptr() as usize, p.len()],
        [c"name".as_ptr() as usize, 5],
        [n.as_ptr() as usize, n.len()],
        [c"vnet".as_ptr() as usize, 5],
        [ptr(&new), 4],
    ];
    // SAFETY: iov is an array of 6 readable struct iovec whose buffers are
    // alive for the call.
    unsafe {
        syscall6(
            nr::JAIL_SET,
            ptr(&iov),
            6,
            JAIL_CREATE | JAIL_ATTACH,
            0,
            0,
            0,
        )
    }
    .map(|v| v as i32)
}

/// kldunloadf(2) (444) with LINKER_UNLOAD_FORCE: `kldunload -f`, which
/// skips MOD_QUIESCE.
pub fn kldunload_force(fileid: i32) -> SysResult<()> {
    const LINKER_UNLOAD_FORCE: usize = 1;
    // SAFETY: kldunloadf takes no pointers.
    unsafe {
        syscall6(
            nr::KLDUNLOADF,
            fileid as usize,
            LINKER_UNLOAD_FORCE,
            0,
            0,
            0,
            0,
        )
    }
    .map(|_| ())
}

// ---------------------------------------------------------------- exec, arguments

/// Process entry. The kernel starts us with %rdi pointing at argc, then
/// argv[], NULL, envp[], NULL (exec_setregs(), sys/amd64/amd64/
/// exec_machdep.c), and %rsp at ((that - 8) & ~15) + 8, which is argc's
/// address only when that happens to be 8 mod 16: argc is found through
/// %rdi, never %rsp (reading %rsp gave argc 0 and garbage arguments for
/// some argument lengths).
#[unsafe(naked)]
#[no_mangle]
pub extern "C" fn _start() -> ! {
    // SAFETY: runs before any Rust code with the kernel-provided stack; it
    // keeps the argc pointer the kernel passed in %rdi, aligns the stack
    // to 16 bytes as the SysV ABI wants at a call, and never returns.
    core::arch::naked_asm!(
        "and rsp, -16",
        "xor ebp, ebp",
        "call {entry}",
        "ud2",
        entry = sym entry,
    )
}

extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: `sp` is the initial stack pointer set up by the kernel's
    // exec (_start passes it on): argc, then the argument pointers.
    crate::start(unsafe { Args::from_initial_stack(sp) })
}

// ---------------------------------------------------------------- scratch memory

/// Big buffers (sysctl tables, the message buffer, descriptor arrays) come
/// from one static arena, taken like a stack: `scratch` hands out the next
/// bytes and the `Scratch` gives them back when dropped, newest first. So
/// the tests get plain slices and the arena's `unsafe` stays here.
const ARENA_WORDS: usize = (3 << 20) / 8;
/// u64 words: every allocation is 8-byte aligned.
static mut ARENA: [u64; ARENA_WORDS] = [0; ARENA_WORDS];
/// Words in use, from the start. The runner is one thread (a forked child
/// has its own copy of everything).
static TOP: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// What a scratch buffer may hold: plain integers, any bit pattern valid.
pub trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for i32 {}

/// `len` elements of the arena, filled with `fill`, for as long as this
/// lives. Panics (the runner bails out) when the arena is exhausted.
pub struct Scratch<T: Plain> {
    start: usize,
    words: usize,
    len: usize,
    _t: core::marker::PhantomData<T>,
}

pub fn scratch<T: Plain>(len: usize, fill: T) -> Scratch<T> {
    use core::sync::atomic::Ordering::Relaxed;
    let bytes = len.saturating_mul(core::mem::size_of::<T>());
    let words = bytes.div_ceil(8);
    let start = TOP.load(Relaxed);
    let end = match start.checked_add(words) {
        Some(e) if e <= ARENA_WORDS => e,
        _ => panic!("scratch arena exhausted ({} bytes asked)", bytes),
    };
    TOP.store(end, Relaxed);
    let mut s = Scratch {
        start,
        words,
        len,
        _t: core::marker::PhantomData,
    };
    s.fill(fill);
    s
}

impl<T: Plain> Scratch<T> {
    fn base(&self) -> *mut T {
        // Inside the arena: start + words <= ARENA_WORDS (scratch()).
        core::ptr::addr_of_mut!(ARENA)
            .cast::<u64>()
            .wrapping_add(self.start)
            .cast::<T>()
    }
}

impl<T: Plain> core::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: [start, start + words) words of the arena are this
        // buffer's alone: TOP only moves past live buffers and comes back
        // over one only when it is dropped (newest first, Drop). It is
        // 8-byte aligned, initialized (the arena starts zeroed, then
        // filled), and holds `len` T (a T is at most 8 bytes).
        unsafe { core::slice::from_raw_parts(self.base(), self.len) }
    }
}

impl<T: Plain> core::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref(), and `&mut self` makes this the only
        // borrow of the buffer.
        unsafe { core::slice::from_raw_parts_mut(self.base(), self.len) }
    }
}

impl<T: Plain> Drop for Scratch<T> {
    fn drop(&mut self) {
        use core::sync::atomic::Ordering::Relaxed;
        // Newest first; an older buffer dropped early keeps its words
        // until those above it go (never handed out twice).
        if TOP.load(Relaxed) == self.start + self.words {
            TOP.store(self.start, Relaxed);
        }
    }
}

/// The process's arguments, as exec(2) laid them on the initial stack.
#[derive(Clone, Copy)]
pub struct Args {
    sp: *const usize,
}

impl Args {
    /// # Safety
    /// `sp` is the initial stack pointer the kernel's exec set up (argc,
    /// then argc argument pointers, each to a NUL-terminated string that
    /// lives as long as the process).
    unsafe fn from_initial_stack(sp: *const usize) -> Args {
        Args { sp }
    }

    pub fn count(&self) -> usize {
        // SAFETY: argc is the first word (from_initial_stack).
        unsafe { self.sp.read() }
    }

    /// Argument `i` (0 is the program), None past the end.
    pub fn get(&self, i: usize) -> Option<&'static CStr> {
        if i >= self.count() {
            return None;
        }
        // SAFETY: argv[i] for i < argc is a valid C string for the life
        // of the process (from_initial_stack).
        unsafe {
            let p = self.sp.add(1 + i).read() as *const core::ffi::c_char;
            (!p.is_null()).then(|| CStr::from_ptr(p))
        }
    }
}

/// execve(2) of `path` with the arguments `argv` and the environment
/// `envp` (each at most 15 entries). Returns only on failure.
pub fn execve(path: &CStr, argv: &[&CStr], envp: &[&CStr]) -> Errno {
    let mut a = [0usize; 16];
    let mut e = [0usize; 16];
    for (slot, s) in a.iter_mut().zip(argv.iter().take(15)) {
        *slot = s.as_ptr() as usize;
    }
    for (slot, s) in e.iter_mut().zip(envp.iter().take(15)) {
        *slot = s.as_ptr() as usize;
    }
    // SAFETY: path and every string are NUL-terminated and outlive the
    // call; `a` and `e` are NULL-terminated arrays of their pointers.
    match unsafe {
        syscall6(
            nr::EXECVE,
            path.as_ptr() as usize,
            ptr(&a),
            ptr(&e),
            0,
            0,
            0,
        )
    } {
        Ok(_) => Errno::EIO,
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- fuzzer (t_fuzz)

/// unlink(2) (10).
pub fn unlink(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated and outlives the call.
    unsafe { syscall6(nr::UNLINK, path.as_ptr() as usize, 0, 0, 0, 0, 0) }.map(|_| ())
}

pub const MSG_DONTWAIT: i32 = 0x80;
pub const MSG_CMSG_CLOEXEC: i32 = 0x0004_0000;
pub const SOCK_NONBLOCK: i32 = 0x2000_0000;

/// recvmsg(2) (27) of at most `buf.len()` bytes with MSG_DONTWAIT, taking
/// in any descriptors an SCM_RIGHTS message carries: up to `fds.len()`
/// are stored in `fds` (the rest, if any, are closed here). Returns (bytes
/// read, descriptors stored).
pub fn recv_with_rights(fd: i32, buf: &mut [u8], fds: &mut [i32]) -> SysResult<(usize, usize)> {
    // Room for a few SCM_RIGHTS messages; 8-byte aligned as CMSG_ALIGN.
    #[repr(C, align(8))]
    struct Ctl([u8; 128]);
    let mut ctl = Ctl([0; 128]);
    let mut iov = IoVec {
        base: mptr(buf),
        len: buf.len(),
    };
    let mut msg = MsgHdr {
        name: 0,
        namelen: 0,
        iov: mptr(&mut iov),
        iovlen: 1,
        control: mptr(&mut ctl),
        controllen: 128,
        flags: 0,
    };
    // SAFETY: msg, its iovec, buf and ctl are writable for the lengths
    // stated in them and live across the call.
    let n = unsafe {
        syscall6(
            nr::RECVMSG,
            fd as usize,
            mptr(&mut msg),
            (MSG_DONTWAIT | MSG_CMSG_CLOEXEC) as usize,
            0,
            0,
            0,
        )
    }?;
    // Walk the control messages the kernel stored (cmsghdr: len, level,
    // type; data at CMSG_ALIGN(12) = 16).
    let clen = (msg.controllen as usize).min(ctl.0.len());
    let c = &ctl.0[..clen];
    let mut off = 0;
    let mut got = 0;
    let word = |at: usize| -> i32 {
        let mut b = [0u8; 4];
        if let Some(s) = c.get(at..at + 4) {
            b.copy_from_slice(s);
        }
        i32::from_ne_bytes(b)
    };
    let mut guard = 0;
    while off + 16 <= clen && guard < 16 {
        guard += 1;
        let len = word(off) as u32 as usize;
        if len < 12 {
            break;
        }
        if word(off + 4) == SOL_SOCKET && word(off + 8) == SCM_RIGHTS {
            let mut at = off + 16;
            while at + 4 <= (off + len).min(clen) {
                let d = word(at);
                if got < fds.len() {
                    fds[got] = d;
                    got += 1;
                } else {
                    let _ = close(d);
                }
                at += 4;
            }
        }
        off += (len + 7) & !7;
    }
    Ok((n, got))
}

/// dup2(2) (90).
pub fn dup2(from: i32, to: i32) -> SysResult<i32> {
    // SAFETY: dup2 takes no pointers.
    unsafe { syscall6(nr::DUP2, from as usize, to as usize, 0, 0, 0, 0) }.map(|v| v as i32)
}
