//! TAP output on the console (fd 1): results, skips, diagnostics, counting.
//! The plan (`1..N`) is printed at the end, once every test has run, so a
//! crash shows up as a missing plan. Each line goes out in one write(2) and
//! is drained (TIOCDRAIN) so kernel console messages cannot split it.

use crate::sys;
use core::fmt::{self, Write};

/// A fixed line buffer that silently truncates (lines are short).
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                break;
            }
            // Keep a result line one line: newlines inside become spaces.
            self.buf[self.len] = if b == b'\n' || b == b'\r' { b' ' } else { b };
            self.len += 1;
        }
        Ok(())
    }
}

/// _IO('t', 94): wait until the tty output queue has drained.
const TIOCDRAIN: u64 = 0x2000_745e;

/// Writes one line (a newline is appended) to the console.
pub fn emit(line: &Line) {
    let _ = sys::write_all(1, line.as_bytes());
    let _ = sys::write_all(1, b"\n");
    let _ = sys::ioctl_void(1, TIOCDRAIN);
}

/// Formats and writes one console line outside the TAP counters.
pub fn print(args: fmt::Arguments) {
    let mut l = Line::new();
    let _ = l.write_fmt(args);
    emit(&l);
}

pub struct Tap {
    n: u32,
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Tap {
    pub const fn new() -> Self {
        Tap {
            n: 0,
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Records one test; returns `pass` so callers can chain.
    pub fn ok(&mut self, pass: bool, name: impl fmt::Display) -> bool {
        self.n += 1;
        let mut l = Line::new();
        if pass {
            self.passed += 1;
            let _ = write!(l, "ok {} - {}", self.n, name);
        } else {
            self.failed += 1;
            let _ = write!(l, "not ok {} - {}", self.n, name);
        }
        emit(&l);
        pass
    }

    /// A test that did not run; counts as a pass for TAP.
    pub fn skip(&mut self, name: impl fmt::Display, reason: impl fmt::Display) {
        self.n += 1;
        self.skipped += 1;
        let mut l = Line::new();
        let _ = write!(l, "ok {} - {} # SKIP {}", self.n, name, reason);
        emit(&l);
    }

    /// Compares an observed result against the expected one and reports
    /// both on failure.
    pub fn check<T: PartialEq + fmt::Debug>(
        &mut self,
        got: T,
        want: T,
        name: impl fmt::Display,
    ) -> bool {
        let pass = got == want;
        self.ok(pass, &name);
        if !pass {
            self.diag(format_args!(
                "  {}: got {:?}, expected {:?}",
                name, got, want
            ));
        }
        pass
    }

    pub fn diag(&self, args: fmt::Arguments) {
        let mut l = Line::new();
        let _ = l.write_str("# ");
        let _ = l.write_fmt(args);
        emit(&l);
    }

    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Prints the plan and a summary comment.
    pub fn finish(&mut self) {
        print(format_args!("1..{}", self.n));
        self.diag(format_args!(
            "runner: {} tests, {} passed ({} skipped), {} failed",
            self.n,
            self.passed + self.skipped,
            self.skipped,
            self.failed
        ));
    }
}

/// Prints `Bail out! <msg>`; the harness treats it as fatal.
pub fn bail_out(args: fmt::Arguments) {
    let mut l = Line::new();
    let _ = l.write_str("Bail out! ");
    let _ = l.write_fmt(args);
    emit(&l);
}
