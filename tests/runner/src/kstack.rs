//! Kernel stacks of a process's threads (kern.proc.kstack, what
//! `procstat -kk` reads; needs options STACK, which the test kernels and
//! GENERIC have), for diagnosing a thread that is stuck: the traces that
//! mention a given function name are printed as TAP comments.

use crate::sys::{self, Errno, SysResult};
use crate::tap::Tap;

/// sys/user.h: struct kinfo_kstack. Typed here: sys/user.h needs libc's
/// <time.h>, which SYSDIR does not have, so build.rs cannot lay it out.
const KKST_MAXLEN: usize = 1024;
const KKST_SIZE: usize = 4 + 4 + KKST_MAXLEN + 16 * 4;

/// Room for this many threads (the kernel process has a few dozen).
const MAX_THREADS: usize = 128;

/// kern.proc.kstack.<pid> as a MIB.
fn mib(pid: i32) -> SysResult<([i32; 8], usize)> {
    let mut oid = [0i32; 8];
    let name = b"kern.proc.kstack";
    // sysctl.name2oid: {0, 3}, the name as new data, the OID as old.
    let mut raw = [0u8; 32];
    let n = sys::sysctl_mib(&[0, 3], Some(&mut raw), Some(name))?;
    let k = (n / 4).min(7);
    for (i, c) in raw[..k * 4].chunks_exact(4).enumerate() {
        oid[i] = i32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    oid[k] = pid;
    Ok((oid, k + 1))
}

/// Prints, as comments, each thread of `pid` whose stack mentions
/// `needle`; how many did, or why none could be read.
pub fn diag(tap: &mut Tap, pid: i32, needle: &[u8]) -> Result<usize, Errno> {
    let (oid, len) = mib(pid)?;
    let mut buf_mem = sys::scratch::<u8>(KKST_SIZE * MAX_THREADS, 0);
    let buf = &mut buf_mem[..];
    let n = sys::sysctl_mib(&oid[..len], Some(&mut buf[..]), None)?;
    let mut shown = 0;
    for k in buf[..n.min(buf.len())].chunks_exact(KKST_SIZE) {
        let tid = i32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
        let trace = &k[8..8 + KKST_MAXLEN];
        let end = trace.iter().position(|&b| b == 0).unwrap_or(KKST_MAXLEN);
        let trace = &trace[..end];
        if !trace.windows(needle.len()).any(|w| w == needle) {
            continue;
        }
        shown += 1;
        tap.diag(format_args!("kernel thread {}:", tid));
        for line in trace.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            tap.diag(format_args!(
                "  {}",
                core::str::from_utf8(line).unwrap_or("(not UTF-8)")
            ));
        }
    }
    Ok(shown)
}
