//! PROXY protocol (haproxy proxy-protocol.txt, v1 and v2) in front of a
//! filter.
//!
//! While the bytes seen so far are a prefix of a signature the connection
//! is ambiguous and held. When `optional` finds it is not PROXY after all,
//! the bytes consumed so far are exactly a signature prefix, so they are
//! replayed to the filter from the constant rather than buffered.
//!
//! v1 is checked for structure (protocol word, four space-separated fields
//! of plausible characters and lengths, CRLF within 107 bytes), not for
//! valid addresses: the application parses them. v2 is checked as the spec
//! asks of receivers: version 2, command LOCAL or PROXY, a known
//! family/transport for PROXY and an address block long enough for it.

use crate::ProxyMode;

const V1_SIG: &[u8; 6] = b"PROXY ";
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1 header limit including CRLF (spec 2.1).
const V1_MAX: u8 = 107;

/// Protocol words with the byte that must follow them, so that a complete
/// match says what comes next.
const V1_PROTOS: [(u8, &[u8]); 4] = [
    (TCP4, b"TCP4 "),
    (TCP6, b"TCP6 "),
    (UNKNOWN_SP, b"UNKNOWN "),
    (UNKNOWN_CR, b"UNKNOWN\r"),
];
const TCP4: u8 = 1;
const TCP6: u8 = 2;
const UNKNOWN_SP: u8 = 4;
const UNKNOWN_CR: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proxy {
    /// `have` bytes match the signature `sig` (or nothing yet).
    Detect { have: u8, sig: Sig },
    /// After `PROXY `; `len` counts the whole line so far.
    V1 { len: u8, st: V1 },
    /// `have` bytes of the 16-byte v2 header.
    V2Header { have: u8, ver_cmd: u8, fam: u8, len_hi: u8 },
    /// v2 address/TLV bytes still to skip; never 0.
    V2Body { remaining: u16 },
    /// Every further byte belongs to the filter.
    Pass,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sig {
    Unknown,
    V1,
    V2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum V1 {
    Proto { have: u8, cand: u8 },
    /// Field `idx` (0 src addr, 1 dst addr, 2 src port, 3 dst port) has
    /// `len` bytes so far.
    Field { idx: u8, len: u8, v6: bool },
    /// UNKNOWN's free-form rest of line.
    Rest,
    /// Saw CR; LF must follow.
    Cr,
}

/// What [`Proxy::feed`] leaves for the filter.
pub(crate) enum Step<'a> {
    NeedMore,
    /// Not a valid PROXY header where one was expected: release.
    Invalid,
    /// Feed `replay`, then `rest`, to the filter.
    Pass {
        replay: &'static [u8],
        rest: &'a [u8],
    },
}

enum Byte {
    More,
    Invalid,
    /// The header ends with this byte.
    Done,
    /// Not PROXY: this byte and everything after it belong to the filter,
    /// after replaying `have` bytes of the signature.
    NotProxy { replay: &'static [u8] },
}

impl Proxy {
    pub(crate) fn new(mode: ProxyMode) -> Proxy {
        match mode {
            ProxyMode::Off => Proxy::Pass,
            ProxyMode::Optional | ProxyMode::Required => Proxy::Detect {
                have: 0,
                sig: Sig::Unknown,
            },
        }
    }

    pub(crate) fn feed<'a>(&mut self, mode: ProxyMode, mut bytes: &'a [u8]) -> Step<'a> {
        loop {
            if let Proxy::Pass = self {
                return Step::Pass { replay: &[], rest: bytes };
            }
            if let Proxy::V2Body { remaining } = *self {
                // The address block and TLVs are the application's business.
                let take = bytes.len().min(usize::from(remaining));
                let left = usize::from(remaining).saturating_sub(take);
                bytes = bytes.get(take..).unwrap_or_default();
                if left == 0 {
                    *self = Proxy::Pass;
                    continue;
                }
                *self = Proxy::V2Body {
                    remaining: u16::try_from(left).unwrap_or(u16::MAX),
                };
                return Step::NeedMore;
            }
            let Some((&b, rest)) = bytes.split_first() else {
                return Step::NeedMore;
            };
            match self.step(b) {
                Byte::More => bytes = rest,
                Byte::Invalid => return Step::Invalid,
                Byte::Done => {
                    *self = Proxy::Pass;
                    bytes = rest;
                }
                Byte::NotProxy { replay } => {
                    *self = Proxy::Pass;
                    return match mode {
                        ProxyMode::Required => Step::Invalid,
                        ProxyMode::Off | ProxyMode::Optional => Step::Pass {
                            replay,
                            rest: bytes,
                        },
                    };
                }
            }
        }
    }

    fn step(&mut self, b: u8) -> Byte {
        match *self {
            Proxy::Detect { have, sig } => {
                let (sig, text): (Sig, &'static [u8]) = match sig {
                    Sig::V1 => (Sig::V1, V1_SIG),
                    Sig::V2 => (Sig::V2, V2_SIG),
                    Sig::Unknown if b == V1_SIG[0] => (Sig::V1, V1_SIG),
                    Sig::Unknown if b == V2_SIG[0] => (Sig::V2, V2_SIG),
                    Sig::Unknown => return Byte::NotProxy { replay: &[] },
                };
                let pos = usize::from(have);
                if text.get(pos) != Some(&b) {
                    return Byte::NotProxy {
                        replay: text.get(..pos).unwrap_or_default(),
                    };
                }
                let have = have.saturating_add(1);
                *self = if usize::from(have) < text.len() {
                    Proxy::Detect { have, sig }
                } else if sig == Sig::V1 {
                    Proxy::V1 {
                        len: have,
                        st: V1::Proto {
                            have: 0,
                            cand: TCP4 | TCP6 | UNKNOWN_SP | UNKNOWN_CR,
                        },
                    }
                } else {
                    Proxy::V2Header {
                        have,
                        ver_cmd: 0,
                        fam: 0,
                        len_hi: 0,
                    }
                };
                Byte::More
            }
            Proxy::V1 { len, st } => {
                let len = len.saturating_add(1);
                if len > V1_MAX {
                    return Byte::Invalid;
                }
                match v1_step(st, b) {
                    Some(Some(st)) => {
                        *self = Proxy::V1 { len, st };
                        Byte::More
                    }
                    Some(None) => Byte::Done,
                    None => Byte::Invalid,
                }
            }
            Proxy::V2Header {
                have,
                ver_cmd,
                fam,
                len_hi,
            } => {
                let next = have.saturating_add(1);
                *self = match have {
                    12 => {
                        // Version 2; command LOCAL (0) or PROXY (1).
                        if b != 0x20 && b != 0x21 {
                            return Byte::Invalid;
                        }
                        Proxy::V2Header {
                            have: next,
                            ver_cmd: b,
                            fam,
                            len_hi,
                        }
                    }
                    13 => {
                        if ver_cmd == 0x21 && v2_min_len(b).is_none() {
                            return Byte::Invalid;
                        }
                        Proxy::V2Header {
                            have: next,
                            ver_cmd,
                            fam: b,
                            len_hi,
                        }
                    }
                    14 => Proxy::V2Header {
                        have: next,
                        ver_cmd,
                        fam,
                        len_hi: b,
                    },
                    _ => {
                        let len = u16::from_be_bytes([len_hi, b]);
                        // LOCAL's address block is to be ignored, whatever
                        // it claims to be.
                        if ver_cmd == 0x21 && len < v2_min_len(fam).unwrap_or(u16::MAX) {
                            return Byte::Invalid;
                        }
                        if len == 0 {
                            return Byte::Done;
                        }
                        Proxy::V2Body { remaining: len }
                    }
                };
                Byte::More
            }
            // feed() handles these without calling step().
            Proxy::V2Body { .. } | Proxy::Pass => Byte::Done,
        }
    }
}

/// Address block length that v2 family/transport byte `fam` needs, or None
/// for the combinations the spec says receivers must reject.
fn v2_min_len(fam: u8) -> Option<u16> {
    match fam {
        0x00 => Some(0),
        0x11 | 0x12 => Some(12),
        0x21 | 0x22 => Some(36),
        0x31 | 0x32 => Some(216),
        _ => None,
    }
}

/// One byte of a v1 line after `PROXY `: Some(Some(state)) to go on,
/// Some(None) when the line is complete, None when it is malformed.
fn v1_step(st: V1, b: u8) -> Option<Option<V1>> {
    Some(Some(match st {
        V1::Proto { have, cand } => {
            let pos = usize::from(have);
            let mut next = 0;
            for (bit, text) in V1_PROTOS {
                if cand & bit == 0 || text.get(pos) != Some(&b) {
                    continue;
                }
                if pos.checked_add(1) != Some(text.len()) {
                    next |= bit;
                    continue;
                }
                return Some(Some(match bit {
                    TCP4 | TCP6 => V1::Field {
                        idx: 0,
                        len: 0,
                        v6: bit == TCP6,
                    },
                    UNKNOWN_SP => V1::Rest,
                    _ => V1::Cr,
                }));
            }
            if next == 0 {
                return None;
            }
            V1::Proto {
                have: have.saturating_add(1),
                cand: next,
            }
        }
        V1::Field { idx, len, v6 } => {
            let (min, max) = match (idx, v6) {
                (0 | 1, false) => (7, 15),
                (0 | 1, true) => (2, 45),
                _ => (1, 5),
            };
            let fits = match (idx, b) {
                (0 | 1, b'0'..=b'9' | b'.') => true,
                (0 | 1, b'a'..=b'f' | b'A'..=b'F' | b':') => v6,
                (_, b'0'..=b'9') => true,
                _ => false,
            };
            if fits && len < max {
                V1::Field {
                    idx,
                    len: len.saturating_add(1),
                    v6,
                }
            } else if len < min {
                return None;
            } else if b == b' ' && idx < 3 {
                V1::Field {
                    idx: idx.saturating_add(1),
                    len: 0,
                    v6,
                }
            } else if b == b'\r' && idx == 3 {
                V1::Cr
            } else {
                return None;
            }
        }
        V1::Rest => match b {
            b'\r' => V1::Cr,
            b'\n' => return None,
            _ => V1::Rest,
        },
        V1::Cr if b == b'\n' => return Some(None),
        V1::Cr => return None,
    }))
}
