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
            let whole = CANDIDATES
                .iter()
                .find(|(bit, text)| cand & bit != 0 && bytes.starts_with(text));
            if let Some(&(bit, text)) = whole {
                if bit == H2_BIT {
                    return Progress::Ready;
                }
                *self = self.after_method(cfg);
                bytes = bytes.get(text.len()..).unwrap_or(&[]);
            }
        }
        for (i, &b) in bytes.iter().enumerate() {
            if let Http::Headers { tail } = *self {
                // Headers take most of a request: scan the rest here.
                return self.headers(tail, bytes.get(i..).unwrap_or(&[]));
            }
            if self.step(cfg, b) == Progress::Ready {
                return Progress::Ready;
            }
        }
        Progress::NeedMore
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
    fn headers(&mut self, mut tail: Tail, bytes: &[u8]) -> Progress {
        for &b in bytes {
            tail = match (tail, b) {
                (Tail::Lf | Tail::LfCr, b'\n') => return Progress::Ready,
                (_, b'\n') => Tail::Lf,
                (Tail::Lf, b'\r') => Tail::LfCr,
                _ => Tail::None,
            };
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
