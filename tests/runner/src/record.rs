//! A fixed-size recording of named observations. The listen(2) semantic
//! suite fills one without the module and one with it; `compare` then
//! asserts that the two are identical.

use crate::sys::{Errno, SysResult};
use crate::tap::{Line, Tap};
use core::fmt::{self, Write};

pub const MAX_OBS: usize = 256;
const KEY_LEN: usize = 64;
pub const SEQ_LEN: usize = 16;

/// One observed value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// A successful result (an integer, or 0 for "succeeded").
    Int(i64),
    /// A failed system call.
    Err(i32),
    /// A short sequence of integers (e.g. one value per client).
    Seq([i32; SEQ_LEN], u8),
}

impl Val {
    pub const OK: Val = Val::Int(0);

    pub fn err(e: Errno) -> Val {
        Val::Err(e.0)
    }

    /// Ok(v) as Int(v), Err(e) as Err(e).
    pub fn of<T: Into<i64>>(r: SysResult<T>) -> Val {
        match r {
            Ok(v) => Val::Int(v.into()),
            Err(e) => Val::Err(e.0),
        }
    }

    /// Ok(_) as Int(0).
    pub fn unit<T>(r: SysResult<T>) -> Val {
        match r {
            Ok(_) => Val::OK,
            Err(e) => Val::Err(e.0),
        }
    }

    pub fn seq(items: &[i32]) -> Val {
        let mut a = [0i32; SEQ_LEN];
        let n = items.len().min(SEQ_LEN);
        a[..n].copy_from_slice(&items[..n]);
        Val::Seq(a, n as u8)
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Int(v) => write!(f, "{}", v),
            Val::Err(e) => write!(f, "{}", Errno(*e)),
            Val::Seq(a, n) => {
                f.write_str("[")?;
                for (i, v) in a[..usize::from(*n)].iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", v)?;
                }
                f.write_str("]")
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Key {
    buf: [u8; KEY_LEN],
    len: u8,
}

impl Key {
    fn from_args(args: fmt::Arguments) -> Key {
        let mut l = Line::new();
        let _ = l.write_fmt(args);
        let b = l.as_bytes();
        let n = b.len().min(KEY_LEN);
        let mut k = Key {
            buf: [0; KEY_LEN],
            len: n as u8,
        };
        k.buf[..n].copy_from_slice(&b[..n]);
        k
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("?")
    }
}

pub struct Recording {
    pub label: &'static str,
    /// Whether each observation is also a TAP test against its expected value.
    pub assert: bool,
    keys: [Key; MAX_OBS],
    vals: [Val; MAX_OBS],
    len: usize,
    dropped: usize,
}

impl Recording {
    pub fn new(label: &'static str, assert: bool) -> Self {
        Recording {
            label,
            assert,
            keys: [Key {
                buf: [0; KEY_LEN],
                len: 0,
            }; MAX_OBS],
            vals: [Val::OK; MAX_OBS],
            len: 0,
            dropped: 0,
        }
    }

    /// Records `got` under `name`; when asserting, also reports a TAP test
    /// comparing it with `want`.
    pub fn obs(&mut self, tap: &mut Tap, name: fmt::Arguments, got: Val, want: Val) -> bool {
        let key = Key::from_args(name);
        if self.len < MAX_OBS {
            self.keys[self.len] = key;
            self.vals[self.len] = got;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
        if self.assert {
            tap.check(got, want, format_args!("[{}] {}", self.label, key.as_str()))
        } else {
            got == want
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// One TAP test: `a` and `b` hold the same observations with equal values.
pub fn compare(tap: &mut Tap, a: &Recording, b: &Recording) -> bool {
    let mut diffs = 0usize;
    let n = a.len.max(b.len);
    for i in 0..n {
        let same = i < a.len
            && i < b.len
            && a.keys[i].as_str() == b.keys[i].as_str()
            && a.vals[i] == b.vals[i];
        if !same {
            diffs += 1;
        }
    }
    let pass = diffs == 0 && a.len > 0 && a.dropped == 0 && b.dropped == 0;
    tap.ok(
        pass,
        format_args!(
            "listen(2) semantics identical [{}] vs [{}] ({} observations)",
            a.label, b.label, a.len
        ),
    );
    if !pass {
        if a.len == 0 {
            tap.diag(format_args!("  nothing was recorded"));
        }
        if a.dropped + b.dropped > 0 {
            tap.diag(format_args!("  recording overflow: raise MAX_OBS"));
        }
        let mut shown = 0;
        for i in 0..n {
            if shown == 20 {
                tap.diag(format_args!("  ... {} differences in all", diffs));
                break;
            }
            let (ka, va) = if i < a.len {
                (a.keys[i].as_str(), Some(a.vals[i]))
            } else {
                ("(none)", None)
            };
            let (kb, vb) = if i < b.len {
                (b.keys[i].as_str(), Some(b.vals[i]))
            } else {
                ("(none)", None)
            };
            if ka == kb && va == vb {
                continue;
            }
            shown += 1;
            if ka == kb {
                tap.diag(format_args!(
                    "  {}: {:?} [{}] vs {:?} [{}]",
                    ka, va, a.label, vb, b.label
                ));
            } else {
                tap.diag(format_args!(
                    "  #{}: '{}'={:?} vs '{}'={:?}",
                    i, ka, va, kb, vb
                ));
            }
        }
    }
    pass
}
