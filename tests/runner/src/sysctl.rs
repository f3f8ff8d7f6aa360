//! sysctl by name (__sysctlbyname, syscall 570): typed reads, int writes.
//! A value whose size is not the expected one is Errno::BADSIZE.

// The typed readers are an API for tests still to be written.
#![allow(dead_code)]

use crate::sys::{self, Errno, SysResult};

fn read_exact<const N: usize>(name: &str) -> SysResult<[u8; N]> {
    // One spare byte catches a value larger than expected.
    let mut b = [0u8; 16];
    let n = sys::sysctlbyname(name, Some(&mut b[..N + 1]), None)?;
    if n != N {
        return Err(Errno::BADSIZE);
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    Ok(out)
}

pub fn read_int(name: &str) -> SysResult<i32> {
    read_exact::<4>(name).map(i32::from_ne_bytes)
}

pub fn read_uint(name: &str) -> SysResult<u32> {
    read_exact::<4>(name).map(u32::from_ne_bytes)
}

pub fn read_u64(name: &str) -> SysResult<u64> {
    read_exact::<8>(name).map(u64::from_ne_bytes)
}

/// Reads raw bytes; returns how many the kernel stored.
pub fn read_opaque(name: &str, buf: &mut [u8]) -> SysResult<usize> {
    sys::sysctlbyname(name, Some(buf), None)
}

/// Reads a string sysctl into `buf`; returns it without the trailing NUL.
/// A string that does not fit fails with ENOMEM, as sysctl(3) does.
pub fn read_string<'a>(name: &str, buf: &'a mut [u8]) -> SysResult<&'a [u8]> {
    let n = sys::sysctlbyname(name, Some(&mut *buf), None)?.min(buf.len());
    let s = &buf[..n];
    let end = s.iter().position(|&c| c == 0).unwrap_or(n);
    Ok(&buf[..end])
}

/// Writes a string sysctl as sysctl(8) does: the bytes, without a NUL.
pub fn write_string(name: &str, v: &[u8]) -> SysResult<()> {
    sys::sysctlbyname(name, None, Some(v)).map(|_| ())
}

pub fn write_int(name: &str, v: i32) -> SysResult<()> {
    sys::sysctlbyname(name, None, Some(&v.to_ne_bytes())).map(|_| ())
}

/// Writes a string sysctl (e.g. a fail point setting, fail(9)).
pub fn write_str(name: &str, v: &str) -> SysResult<()> {
    sys::sysctlbyname(name, None, Some(v.as_bytes())).map(|_| ())
}

/// Whether a sysctl node exists (any read error other than ENOENT counts
/// as existing).
pub fn exists(name: &str) -> SysResult<bool> {
    let mut b = [0u8; 64];
    match sys::sysctlbyname(name, Some(&mut b), None) {
        Ok(_) | Err(Errno::ENOMEM) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
