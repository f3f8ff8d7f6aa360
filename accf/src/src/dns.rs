//! dnsready: stock `sohasdns()` reads the two-byte big-endian length prefix
//! of DNS over TCP (RFC 1035 4.2.2) and is Ready once `2 + length` bytes are
//! buffered. Nothing inside the message is checked, and a zero length is
//! Ready after the prefix alone.
//!
//! Stock `sohasdns()` checks for a full buffer but not for
//! `SBS_CANTRCVMORE`, so a client that sends half a query and shuts down is
//! held until the buffer fills; the kernel wrapper releases it instead.

use crate::Progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dns {
    /// Reading the length prefix; `hi` is its first byte once `have == 1`.
    Prefix { have: u8, hi: u8 },
    /// Message bytes still to come; never 0.
    Body { remaining: u16 },
}

impl Dns {
    pub(crate) fn new() -> Dns {
        Dns::Prefix { have: 0, hi: 0 }
    }

    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Progress {
        while let Some((&b, rest)) = bytes.split_first() {
            match *self {
                Dns::Prefix { have: 0, .. } => {
                    *self = Dns::Prefix { have: 1, hi: b };
                    bytes = rest;
                }
                Dns::Prefix { hi, .. } => {
                    let len = u16::from_be_bytes([hi, b]);
                    if len == 0 {
                        return Progress::Ready;
                    }
                    *self = Dns::Body { remaining: len };
                    bytes = rest;
                }
                Dns::Body { remaining } => {
                    // Skip the body in one step: its content is not examined.
                    let take = usize::from(remaining).min(bytes.len());
                    let left = usize::from(remaining).saturating_sub(take);
                    if left == 0 {
                        return Progress::Ready;
                    }
                    *self = Dns::Body {
                        remaining: u16::try_from(left).unwrap_or(u16::MAX),
                    };
                    return Progress::NeedMore;
                }
            }
        }
        Progress::NeedMore
    }
}
