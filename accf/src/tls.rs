//! tlsready. Stock (FreeBSD 15 accf_tls.c `so_hastls()`): nothing is decided
//! before 5 bytes are buffered; then the first byte must be 0x16
//! (handshake) or it is Ready; a record length above 2^14 is Ready; else it
//! is Ready once the whole first record (5 + length bytes) is buffered. The
//! version bytes are not looked at.
//!
//! `clienthello` extension: a record carries at most 2^14 bytes, and a
//! ClientHello may be longer (large post-quantum key shares, many
//! extensions) or be fragmented by the client anyway, so stock can release
//! a connection whose application then blocks on the rest. With the
//! extension, when the first handshake message is a ClientHello, hold until
//! its declared length has arrived, across as many handshake records as it
//! takes, and then to the end of the record that completes it (TLS stacks
//! read whole records). Anything malformed on the way (a non-handshake
//! record, an empty or oversized record, a length no ClientHello can have)
//! is Ready at once, so garbage can never stretch the hold beyond what its
//! own bytes justify. A first message that is not a ClientHello keeps stock
//! behaviour.
//!
//! It is opt-in because it changes stock's answer for a valid input (a
//! multi-record ClientHello is Ready after its first record in stock), and
//! because FreeBSD's own test feeds a 0x16 record of random bytes: with the
//! extension on, a body starting 0x01 with a large length would be held.

use crate::{Config, Progress};

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
/// TLSPlaintext.length limit (RFC 8446 5.1); stock's cut-off too.
const MAX_RECORD: u16 = 1 << 14;
/// Largest ClientHello body the RFC 8446 4.1.2 vector limits allow:
/// version 2, random 32, session id 1+32, cipher suites 2+65534,
/// compression methods 1+255, extensions 2+65535.
const MAX_CLIENT_HELLO: u32 = 131_396;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tls {
    rec: Record,
    /// Only consulted with `clienthello`.
    hs: Handshake,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    /// `have` bytes of a 5-byte record header; `typ` and `len_hi` are
    /// bytes 0 and 3 once seen.
    Header { have: u8, typ: u8, len_hi: u8 },
    /// Fragment bytes still to come in the current record; never 0.
    Body { remaining: u16 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    /// `have` bytes of the 4-byte handshake header; `len` accumulates the
    /// 24-bit length.
    Header { have: u8, len: U24 },
    /// ClientHello body bytes still to come; never 0.
    Hello { remaining: U24 },
    /// Nothing more to wait for beyond the end of the current record:
    /// either the ClientHello is complete or the first message was not one.
    Done,
}

/// A 24-bit count in three bytes (handshake lengths are 24-bit): a u32
/// would make every held connection's state four bytes bigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct U24 {
    hi: u8,
    lo: u16,
}

impl U24 {
    const ZERO: U24 = U24 { hi: 0, lo: 0 };

    fn get(self) -> u32 {
        u32::from(self.hi) << 16 | u32::from(self.lo)
    }

    /// None above 2^24 - 1.
    fn new(v: u32) -> Option<U24> {
        let [_, hi, lo1, lo0] = v.to_be_bytes();
        (v >> 24 == 0).then_some(U24 {
            hi,
            lo: u16::from_be_bytes([lo1, lo0]),
        })
    }
}

impl Tls {
    pub(crate) fn new() -> Tls {
        Tls {
            rec: Record::Header {
                have: 0,
                typ: 0,
                len_hi: 0,
            },
            hs: Handshake::Header {
                have: 0,
                len: U24::ZERO,
            },
        }
    }

    pub(crate) fn feed(&mut self, cfg: &Config, mut bytes: &[u8]) -> Progress {
        loop {
            match self.rec {
                Record::Header { have, typ, len_hi } => {
                    let Some((&b, rest)) = bytes.split_first() else {
                        return Progress::NeedMore;
                    };
                    bytes = rest;
                    self.rec = match have {
                        0 => Record::Header {
                            have: 1,
                            typ: b,
                            len_hi,
                        },
                        3 => Record::Header {
                            have: 4,
                            typ,
                            len_hi: b,
                        },
                        4 => {
                            let len = u16::from_be_bytes([len_hi, b]);
                            // Stock's three exits, and for later records
                            // the extension's malformed cases: the same
                            // test serves both.
                            if typ != HANDSHAKE || len == 0 || len > MAX_RECORD {
                                return Progress::Ready;
                            }
                            Record::Body { remaining: len }
                        }
                        _ => Record::Header {
                            have: have.saturating_add(1),
                            typ,
                            len_hi,
                        },
                    };
                }
                Record::Body { remaining } => {
                    if bytes.is_empty() {
                        return Progress::NeedMore;
                    }
                    let in_record = bytes.len().min(usize::from(remaining));
                    let take = if cfg.tls_clienthello {
                        let body = bytes.get(..in_record).unwrap_or_default();
                        match self.handshake(body) {
                            Some(n) => n,
                            None => return Progress::Ready,
                        }
                    } else {
                        in_record
                    };
                    bytes = bytes.get(take..).unwrap_or_default();
                    let left = usize::from(remaining).saturating_sub(take);
                    if left > 0 {
                        self.rec = Record::Body {
                            remaining: u16::try_from(left).unwrap_or(u16::MAX),
                        };
                        continue;
                    }
                    if !cfg.tls_clienthello || self.hs == Handshake::Done {
                        return Progress::Ready;
                    }
                    self.rec = Record::Header {
                        have: 0,
                        typ: 0,
                        len_hi: 0,
                    };
                }
            }
        }
    }

    /// Advances the handshake tracker over the start of `body` (non-empty,
    /// and all inside the current record) and says how many bytes it took,
    /// at least one, or None if the stream is malformed.
    fn handshake(&mut self, body: &[u8]) -> Option<usize> {
        match self.hs {
            Handshake::Header { have, len } => {
                let &b = body.first()?;
                self.hs = match have {
                    0 if b != CLIENT_HELLO => Handshake::Done,
                    0 => Handshake::Header { have: 1, len },
                    1 | 2 => Handshake::Header {
                        have: have.saturating_add(1),
                        len: U24::new(len.get().checked_mul(256)?.checked_add(u32::from(b))?)?,
                    },
                    _ => {
                        let len = len.get().checked_mul(256)?.checked_add(u32::from(b))?;
                        if len == 0 || len > MAX_CLIENT_HELLO {
                            return None;
                        }
                        Handshake::Hello {
                            remaining: U24::new(len)?,
                        }
                    }
                };
                Some(1)
            }
            Handshake::Hello { remaining } => {
                let remaining = remaining.get();
                let avail = u32::try_from(body.len()).unwrap_or(u32::MAX);
                let take = avail.min(remaining);
                let left = remaining.saturating_sub(take);
                self.hs = if left == 0 {
                    Handshake::Done
                } else {
                    Handshake::Hello {
                        remaining: U24::new(left)?,
                    }
                };
                usize::try_from(take).ok()
            }
            Handshake::Done => Some(body.len()),
        }
    }
}
