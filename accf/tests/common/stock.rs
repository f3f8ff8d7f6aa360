//! The stock FreeBSD filters transliterated from C as literally as Rust
//! allows: each upcall rescans the whole buffer, exactly like the originals
//! (accf_http.c and accf_dns.c from 14, accf_tls.c from 15). The socket
//! buffer is one contiguous slice; the C walks mbuf chains, which only
//! changes how bytes are reached, not which. Buffer-full and
//! SBS_CANTRCVMORE checks are left out, as they are in the parser.

#[derive(Clone, Copy, Debug)]
enum Upcall {
    HasHttpGet,
    ParseHttpVers,
    IsHttpConnected,
}

/// One listener's filter: call `upcall` with the whole receive buffer each
/// time data is appended; it returns true for SU_ISCONNECTED.
pub struct Stock {
    kind: listenq_accf::FilterKind,
    parse_http_version: bool,
    next: Upcall,
}

impl Stock {
    pub fn new(kind: listenq_accf::FilterKind, parse_http_version: bool) -> Stock {
        Stock {
            kind,
            parse_http_version,
            next: Upcall::HasHttpGet,
        }
    }

    pub fn upcall(&mut self, buf: &[u8]) -> bool {
        use listenq_accf::FilterKind::*;
        match self.kind {
            Data => !buf.is_empty(), // soreadable() with sb_lowat 1
            Dns => sohasdns(buf),
            Tls => so_hastls(buf),
            Http => match self.next {
                Upcall::HasHttpGet => self.sohashttpget(buf),
                Upcall::ParseHttpVers => self.soparsehttpvers(buf),
                Upcall::IsHttpConnected => self.soishttpconnected(buf),
            },
        }
    }

    fn sohashttpget(&mut self, buf: &[u8]) -> bool {
        let cc = buf.len() as isize - 1;
        if cc < 1 {
            return false;
        }
        let cmp: &[u8] = match buf[0] {
            b'G' => b"ET ",
            b'H' => b"EAD ",
            _ => return true,
        };
        if cc < cmp.len() as isize {
            return !mbufstrncmp(buf, 1, cc, cmp);
        }
        if mbufstrcmp(buf, 1, cmp) {
            if !self.parse_http_version {
                return self.soishttpconnected(buf);
            }
            return self.soparsehttpvers(buf);
        }
        true
    }

    fn soparsehttpvers(&mut self, buf: &[u8]) -> bool {
        let mut cc = buf.len() as isize;
        let (mut spaces, mut inspaces) = (0, false);
        for i in 0..buf.len() {
            match buf[i] {
                b' ' => {
                    if !inspaces {
                        spaces += 1;
                        inspaces = true;
                    }
                }
                b'\r' | b'\n' => return true,
                _ => {
                    if spaces != 2 {
                        inspaces = false;
                    } else if cc < "HTTP/1.0".len() as isize {
                        if mbufstrncmp(buf, i, cc, b"HTTP/1.") {
                            break; // readmore
                        }
                        return true;
                    } else if mbufstrcmp(buf, i, b"HTTP/1.0") || mbufstrcmp(buf, i, b"HTTP/1.1") {
                        return self.soishttpconnected(buf);
                    } else {
                        return true;
                    }
                }
            }
            cc -= 1;
        }
        self.next = Upcall::ParseHttpVers;
        false
    }

    fn soishttpconnected(&mut self, buf: &[u8]) -> bool {
        if buf.len() >= 3 {
            let (a, b, c) = (buf[buf.len() - 3], buf[buf.len() - 2], buf[buf.len() - 1]);
            if c == b'\n' && (b == b'\n' || (b == b'\r' && a == b'\n')) {
                return true;
            }
        }
        self.next = Upcall::IsHttpConnected;
        false
    }
}

fn mbufstrcmp(buf: &[u8], offset: usize, cmp: &[u8]) -> bool {
    let mut k = 0;
    for &b in &buf[offset.min(buf.len())..] {
        if k == cmp.len() {
            return true;
        }
        if cmp[k] != b {
            return false;
        }
        k += 1;
    }
    k == cmp.len()
}

fn mbufstrncmp(buf: &[u8], offset: usize, mut max: isize, cmp: &[u8]) -> bool {
    let mut k = 0;
    for &b in &buf[offset.min(buf.len())..] {
        if max == 0 || k == cmp.len() {
            return true;
        }
        if cmp[k] != b {
            return false;
        }
        k += 1;
        max -= 1;
    }
    max == 0 || k == cmp.len()
}

fn sohasdns(buf: &[u8]) -> bool {
    if buf.len() < 2 {
        return false;
    }
    let packlen = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    packlen + 2 <= buf.len()
}

fn so_hastls(buf: &[u8]) -> bool {
    if buf.len() < 5 {
        return false;
    }
    if buf[0] != 0x16 {
        return true;
    }
    let reclen = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    !(reclen <= 16384 && buf.len() < 5 + reclen)
}

/// Runs the stock filter with an upcall after each chunk (cut at `cuts`)
/// and returns the buffer length at the first SU_ISCONNECTED.
pub fn stock_ready_at(
    kind: listenq_accf::FilterKind,
    parse_http_version: bool,
    input: &[u8],
    cuts: &[usize],
) -> Option<usize> {
    let mut s = Stock::new(kind, parse_http_version);
    cuts.iter()
        .copied()
        .chain(std::iter::once(input.len()))
        .find(|&end| s.upcall(&input[..end]))
}

/// Same with an upcall after every byte.
pub fn stock_ready_at_bytewise(
    kind: listenq_accf::FilterKind,
    parse_http_version: bool,
    input: &[u8],
) -> Option<usize> {
    let cuts: Vec<usize> = (1..input.len()).collect();
    stock_ready_at(kind, parse_http_version, input, &cuts)
}
