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

/// The index of the first LF in `bytes`.
///
/// Headers are mostly printable ASCII, so the scan runs 64 bytes a step
/// with a test that costs two instructions a word: `w - 0x0B0B..` sets a
/// byte's high bit where that byte is below 0x0B (LF is 0x0A), and also,
/// harmlessly, where it is 0x8B or above. It has no false negatives: the
/// lowest byte below 0x0B borrows nothing and wraps to a set high bit. A
/// flagged block is searched exactly, so a line of UTF-8 or binary costs
/// about what the exact scan costs.
fn find_lf(bytes: &[u8]) -> Option<usize> {
    const BELOW_0B: u64 = u64::from_ne_bytes([0x0B; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut rest = bytes;
    while let Some((block, tail)) = rest.split_first_chunk::<64>() {
        let mut any = 0u64;
        for w in block.chunks_exact(8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            any |= u64::from_le_bytes(a).wrapping_sub(BELOW_0B);
        }
        if any & HIGHS != 0 {
            if let Some(i) = find_lf_in_block(block) {
                return Some(bytes.len().wrapping_sub(rest.len()).wrapping_add(i));
            }
        }
        rest = tail;
    }
    // A short run (a slow client's few bytes) comes straight here, with
    // no call.
    find_lf_exact(rest).map(|i| bytes.len().wrapping_sub(rest.len()).wrapping_add(i))
}

/// A flagged block, out of line: the block loop above keeps its
/// registers for itself.
#[inline(never)]
fn find_lf_in_block(block: &[u8; 64]) -> Option<usize> {
    find_lf_exact(block)
}

/// The index of the first LF in `bytes`: eight bytes a step (a word
/// has a zero byte where it equalled LF), the rest one at a time.
#[inline(always)]
fn find_lf_exact(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut rest = bytes;
    while let Some((w, tail)) = rest.split_first_chunk::<8>() {
        let x = u64::from_le_bytes(*w) ^ LFS;
        // Exact for the first zero byte (lower bytes borrow nothing).
        let z = x.wrapping_sub(ONES) & !x & HIGHS;
        if z != 0 {
            let byte = usize::try_from(z.trailing_zeros() / 8).unwrap_or(0);
            return Some(bytes.len().wrapping_sub(rest.len()).wrapping_add(byte));
        }
        rest = tail;
    }
    rest.iter()
        .position(|&b| b == b'\n')
        .map(|i| bytes.len().wrapping_sub(rest.len()).wrapping_add(i))
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
    fn find_lf_agrees_with_a_byte_scan() {
        // Mostly header text, with now and then a byte the block test
        // flags without being LF (0x00, 0x09, 0x8b, 0xff) or a CR or LF,
        // so that flagged blocks come before, after and with the LF.
        let alphabet = [
            b'a', b'a', b'a', b'a', b'a', b'a', 0x00, 0x09, 0x8b, 0xff, b'\r', b'\n',
        ];
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            x >> 16
        };
        let mut v = [0u8; 300];
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 300).unwrap_or(0);
            let rare = next() % 64 + 1;
            for b in v.iter_mut().take(len) {
                *b = if next() % rare == 0 {
                    alphabet
                        .get(usize::try_from(next() % 12).unwrap_or(0))
                        .copied()
                        .unwrap_or(b'a')
                } else {
                    b'a'
                };
            }
            let s = v.get(..len).unwrap_or(&[]);
            assert_eq!(find_lf(s), s.iter().position(|&b| b == b'\n'), "{s:?}");
        }
    }

    #[test]
    fn find_lf_is_the_first_lf_wherever_it_is() {
        // Bytes that differ from LF in one bit (0x0b, 0x08, 0x8a), sit at
        // the block test's edges (0x09, 0x0b, 0x8a, 0x8b) or borrow in the
        // word tricks (0x00, 0x01, 0x80, 0xff) around it; lengths past two
        // 32-byte blocks and a partial word.
        for fill in [b'a', 0x0b, 0x08, 0x09, 0x8a, 0x8b, 0x00, 0x01, 0x80, 0xff] {
            for len in 0..80usize {
                let mut a = [fill; 80];
                assert_eq!(find_lf(a.get(..len).unwrap_or(&[])), None);
                for first in 0..len {
                    a = [fill; 80];
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
