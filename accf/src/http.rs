//! httpready, mirroring stock accf_http.c's three upcalls as phases:
//!
//! * `sohashttpget()` → [`Http::Method`]: nothing is decided before two
//!   bytes are buffered (`cc = sbavail - 1; if (cc < 1) wait`). Then the
//!   request must start with `GET ` or `HEAD ` (compared as a prefix while
//!   short); anything else is Ready.
//! * `soparsehttpvers()` → [`Http::RequestLine`] / [`Http::Version`]: runs
//!   of spaces are counted from byte 0 (so the method's space is the first);
//!   a CR or LF before the version is an HTTP/0.9 request and Ready; the
//!   first non-space after the second run must start `HTTP/1.0` or
//!   `HTTP/1.1` (compared as a prefix of `HTTP/1.` while short), otherwise
//!   Ready. Only the 8 bytes are compared: `HTTP/1.10` passes.
//! * `soishttpconnected()` → [`Http::Headers`]: Ready at `\n\n` or
//!   `\n\r\n`, i.e. LF LF, CRLF CRLF, or a mix ending in LF CRLF. Stock only
//!   compares the last three buffered bytes; see the crate docs for why this
//!   looks for the first occurrence instead.
//!
//! With `parsehttpversion=0` the second phase is skipped, as stock does.

use crate::{Config, HttpMethods, Progress};

/// The HTTP/2 connection preface (RFC 9113 3.4).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Request prefixes, each with its bit in [`Http::Method::cand`]. Methods
/// include the space, so none is a prefix of another and a match is final.
const CANDIDATES: [(u16, &[u8]); 10] = [
    (1 << 0, b"GET "),
    (1 << 1, b"HEAD "),
    (1 << 2, b"POST "),
    (1 << 3, b"PUT "),
    (1 << 4, b"DELETE "),
    (1 << 5, b"CONNECT "),
    (1 << 6, b"OPTIONS "),
    (1 << 7, b"TRACE "),
    (1 << 8, b"PATCH "),
    (H2_BIT, H2_PREFACE),
];
const STOCK_METHODS: u16 = 0b11;
const ALL_METHODS: u16 = 0x1ff;
const H2_BIT: u16 = 1 << 9;

/// Compared by stock at the start of the third request-line field.
const VERSION_PREFIX: &[u8; 7] = b"HTTP/1.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Http {
    /// `seen` bytes so far all match every candidate in `cand`. `cand` may be
    /// empty while `seen < 2`, because stock waits for a second byte even
    /// when the first one already rules HTTP out.
    Method {
        seen: u8,
        cand: u16,
    },
    /// After the method. `spaces` counts runs of spaces, `in_spaces` says
    /// the previous byte was a space.
    RequestLine {
        spaces: u8,
        in_spaces: bool,
    },
    /// `matched` bytes of `HTTP/1.` matched at the version's start.
    Version {
        matched: u8,
    },
    Headers {
        tail: Tail,
    },
}

/// How far into a `\n\n` / `\n\r\n` terminator the stream currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    None,
    Lf,
    LfCr,
}

/// Whether `a` and `b` agree on their common length: a loop over a few
/// bytes, where a call to memcmp() costs more than the comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// The index of the first LF in `bytes`: eight bytes a step (a word
/// has a zero byte where it equalled LF), the rest one at a time.
fn find_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0usize;
    for w in words.by_ref() {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a) ^ LFS;
        // Exact for the first zero byte (lower bytes borrow nothing).
        let z = x.wrapping_sub(ONES) & !x & HIGHS;
        if z != 0 {
            let byte = usize::try_from(z.trailing_zeros() / 8).unwrap_or(0);
            return Some(at.saturating_add(byte));
        }
        at = at.saturating_add(8);
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at.saturating_add(i))
}

impl Http {
    pub(crate) fn new(cfg: &Config) -> Http {
        let methods = match cfg.http_methods {
            HttpMethods::Stock => STOCK_METHODS,
            HttpMethods::All => ALL_METHODS,
        };
        let h2 = if cfg.http_h2 { H2_BIT } else { 0 };
        Http::Method {
            seen: 0,
            cand: methods | h2,
        }
    }

    pub(crate) fn feed(&mut self, cfg: &Config, mut bytes: &[u8]) -> Progress {
        // The common case, a whole method at the start of the stream: one
        // comparison instead of every candidate at every byte. The same
        // outcome as stepping through it, since no candidate is a prefix
        // of another.
        if let Http::Method { seen: 0, cand } = *self {
            let whole = CANDIDATES.iter().find(|(bit, text)| {
                cand & bit != 0 && bytes.len() >= text.len() && same(bytes, text)
            });
            if let Some(&(bit, text)) = whole {
                if bit == H2_BIT {
                    return Progress::Ready;
                }
                *self = self.after_method(cfg);
                bytes = bytes.get(text.len()..).unwrap_or(&[]);
            }
        }
        // Each phase scans its run of bytes in a loop of its own, with the
        // state in locals, and says where it stopped: what `step` would
        // do byte by byte, for a few instructions a byte.
        while !bytes.is_empty() {
            let (done, used) = match *self {
                // Headers take most of a request: scan the rest here.
                Http::Headers { tail } => return self.headers(tail, bytes),
                Http::RequestLine { spaces, in_spaces } => {
                    self.request_line(spaces, in_spaces, bytes)
                }
                Http::Version { matched } => self.version(matched, bytes),
                Http::Method { .. } => (self.step(cfg, bytes.first().copied().unwrap_or(0)), 1),
            };
            if done == Progress::Ready {
                return Progress::Ready;
            }
            bytes = bytes.get(used..).unwrap_or(&[]);
        }
        Progress::NeedMore
    }

    /// The `RequestLine` phase over `bytes`: Ready, or NeedMore and how
    /// many bytes it took (all of them, or up to the version's first).
    fn request_line(
        &mut self,
        mut spaces: u8,
        mut in_spaces: bool,
        bytes: &[u8],
    ) -> (Progress, usize) {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b' ' => {
                    if !in_spaces {
                        spaces = spaces.saturating_add(1);
                        in_spaces = true;
                    }
                }
                b'\r' | b'\n' => return (Progress::Ready, i),
                b'H' if spaces == 2 => {
                    *self = Http::Version { matched: 1 };
                    return (Progress::NeedMore, i.saturating_add(1));
                }
                _ if spaces == 2 => return (Progress::Ready, i),
                _ => in_spaces = false,
            }
        }
        *self = Http::RequestLine { spaces, in_spaces };
        (Progress::NeedMore, bytes.len())
    }

    /// The `Version` phase over `bytes`, as `request_line`: the rest of
    /// `HTTP/1.` compared at once, then `0` or `1`.
    fn version(&mut self, matched: u8, bytes: &[u8]) -> (Progress, usize) {
        let want = VERSION_PREFIX.get(usize::from(matched)..).unwrap_or(&[]);
        let n = want.len().min(bytes.len());
        if !same(bytes, want) {
            return (Progress::Ready, 0);
        }
        if n < want.len() {
            // n < 7: matched + n stays below 7.
            *self = Http::Version {
                matched: matched.saturating_add(u8::try_from(n).unwrap_or(u8::MAX)),
            };
            return (Progress::NeedMore, n);
        }
        match bytes.get(n) {
            None => {
                *self = Http::Version {
                    matched: matched.saturating_add(u8::try_from(n).unwrap_or(u8::MAX)),
                };
                (Progress::NeedMore, n)
            }
            Some(b'0' | b'1') => {
                *self = Http::Headers { tail: Tail::None };
                (Progress::NeedMore, n.saturating_add(1))
            }
            Some(_) => (Progress::Ready, n),
        }
    }

    /// Where a request goes once its method is complete.
    fn after_method(&self, cfg: &Config) -> Http {
        // Stock's soparsehttpvers() rescans from byte 0; the method is one
        // word and one space, which leaves it inside the first run of
        // spaces.
        if cfg.http_parse_version {
            Http::RequestLine {
                spaces: 1,
                in_spaces: true,
            }
        } else {
            Http::Headers { tail: Tail::None }
        }
    }

    /// The `Headers` phase over `bytes`, from `tail`: what `step` does one
    /// byte at a time.
    fn headers(&mut self, mut tail: Tail, mut bytes: &[u8]) -> Progress {
        loop {
            if tail == Tail::None {
                // Only a LF starts a terminator: skip to the next one, eight
                // bytes at a time.
                match find_lf(bytes) {
                    Some(i) => bytes = bytes.get(i..).unwrap_or(&[]),
                    None => break,
                }
            }
            let Some((&b, rest)) = bytes.split_first() else {
                break;
            };
            tail = match (tail, b) {
                (Tail::Lf | Tail::LfCr, b'\n') => return Progress::Ready,
                (_, b'\n') => Tail::Lf,
                (Tail::Lf, b'\r') => Tail::LfCr,
                _ => Tail::None,
            };
            bytes = rest;
        }
        *self = Http::Headers { tail };
        Progress::NeedMore
    }

    fn step(&mut self, cfg: &Config, b: u8) -> Progress {
        match *self {
            Http::Method { seen, cand } => {
                let pos = usize::from(seen);
                let mut next = 0;
                for (bit, text) in CANDIDATES {
                    if cand & bit == 0 || text.get(pos) != Some(&b) {
                        continue;
                    }
                    if pos.checked_add(1) != Some(text.len()) {
                        next |= bit;
                    } else if bit == H2_BIT {
                        return Progress::Ready;
                    } else {
                        *self = self.after_method(cfg);
                        return Progress::NeedMore;
                    }
                }
                let seen = seen.saturating_add(1);
                if next == 0 && seen >= 2 {
                    return Progress::Ready;
                }
                *self = Http::Method { seen, cand: next };
                Progress::NeedMore
            }
            Http::RequestLine { spaces, in_spaces } => match b {
                b' ' => {
                    if !in_spaces {
                        *self = Http::RequestLine {
                            spaces: spaces.saturating_add(1),
                            in_spaces: true,
                        };
                    }
                    Progress::NeedMore
                }
                b'\r' | b'\n' => Progress::Ready,
                b'H' if spaces == 2 => {
                    *self = Http::Version { matched: 1 };
                    Progress::NeedMore
                }
                _ if spaces == 2 => Progress::Ready,
                _ => {
                    *self = Http::RequestLine {
                        spaces,
                        in_spaces: false,
                    };
                    Progress::NeedMore
                }
            },
            Http::Version { matched } => match VERSION_PREFIX.get(usize::from(matched)) {
                Some(&want) if want == b => {
                    *self = Http::Version {
                        matched: matched.saturating_add(1),
                    };
                    Progress::NeedMore
                }
                Some(_) => Progress::Ready,
                None if b == b'0' || b == b'1' => {
                    *self = Http::Headers { tail: Tail::None };
                    Progress::NeedMore
                }
                None => Progress::Ready,
            },
            Http::Headers { tail } => {
                let tail = match (tail, b) {
                    (Tail::Lf | Tail::LfCr, b'\n') => return Progress::Ready,
                    (_, b'\n') => Tail::Lf,
                    (Tail::Lf, b'\r') => Tail::LfCr,
                    _ => Tail::None,
                };
                *self = Http::Headers { tail };
                Progress::NeedMore
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_lf;

    #[test]
    fn find_lf_is_the_first_lf_wherever_it_is() {
        // Bytes that differ from LF in one bit (0x0b, 0x08, 0x8a) or
        // borrow in the word trick (0x00, 0x01, 0x80, 0xff) around it.
        for fill in [b'a', 0x0b, 0x08, 0x8a, 0x00, 0x01, 0x80, 0xff] {
            for len in 0..40usize {
                let mut a = [fill; 40];
                assert_eq!(find_lf(a.get(..len).unwrap_or(&[])), None);
                for first in 0..len {
                    a = [fill; 40];
                    for b in a.iter_mut().skip(first).take(2) {
                        *b = b'\n';
                    }
                    let v = a.get(..len).unwrap_or(&[]);
                    assert_eq!(find_lf(v), Some(first), "fill {fill:#x} len {len}");
                }
            }
        }
    }
}
