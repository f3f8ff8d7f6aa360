//! Per-filter defaults: `kern.ipc.listenq.<filter>.default_arg` stands in
//! for an empty `af_arg`, because the daemons that set accept filters
//! (nginx, Apache, haproxy) never pass one, which would leave every
//! extension out of their reach. The value goes through parse_af_arg when
//! it is set, so a bad one is refused there and then rather than making
//! every later setsockopt(2) fail.

use crate::kern::accf::ListenLocked;
use crate::kern::defaults::{LEN, NFILTERS};
use crate::kern::errno::{Errno, KResult};
use listenq_accf::{parse_af_arg, FilterKind};

/// Index of `kind` in defaults_glue.c's table (the sysctl's arg2).
fn index(kind: FilterKind) -> usize {
    kind.index()
}

fn kind(idx: usize) -> Option<FilterKind> {
    FilterKind::from_index(idx)
}

const _: () = assert!(FilterKind::ALL.len() == NFILTERS);

/// `af_arg` as given, or the filter's default for listener `head` (its
/// vnet's or the host-wide one) when it is empty.
pub fn or_default<'a>(
    kind: FilterKind,
    head: &ListenLocked<'_>,
    af_arg: &'a [u8],
    buf: &'a mut [u8; LEN],
) -> &'a [u8] {
    if af_arg.first().is_some_and(|&b| b != 0) {
        return af_arg;
    }
    head.default_arg(index(kind), buf)
}

/// Whether `arg` may become filter `idx`'s default. A refusal says why on
/// the console, rate-limited (writing needs privilege, but a script in a
/// loop should not flood the console).
pub fn check(idx: usize, vnet: bool, arg: &[u8]) -> KResult<()> {
    let Some(k) = kind(idx) else {
        return Err(Errno::EINVAL);
    };
    let Err(e) = parse_af_arg(k, arg) else {
        return Ok(());
    };
    if crate::kern::print::ratecheck() {
        crate::kern::print::event(format_args!(
            "kern.ipc.listenq.{}{}.default_arg: \"{}\" refused ({}): {}",
            if vnet { "vnet." } else { "" },
            k.name(),
            Printable(arg),
            crate::kern::print::Caller::current(),
            e.as_str()
        ));
    }
    Err(Errno::EINVAL)
}

/// Bytes as text, non-printable ones escaped, cut at 64 characters of
/// output (an escape is four), so that the reason after it always fits
/// the log line.
struct Printable<'a>(&'a [u8]);

impl core::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = 0usize;
        for &b in self.0 {
            let plain = (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
            let w = if plain { 1 } else { 4 };
            if out + w > 64 {
                return f.write_str("...");
            }
            out += w;
            if plain {
                core::fmt::Write::write_char(f, char::from(b))?;
            } else {
                write!(f, "\\x{:02x}", b)?;
            }
        }
        Ok(())
    }
}
