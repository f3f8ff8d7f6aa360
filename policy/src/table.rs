//! The text table behind `sysctl kern.ipc.listenq.listeners`.
//! Formatting writes into any `fmt::Write`, so the kernel can use a fixed
//! stack buffer per row and never allocate while formatting.

use core::fmt::{self, Write};

use crate::latency;
use crate::registry::{Local, Row, SUN_PATH_LEN};

/// Every column header is one word, so `awk '{print $N}'` sees the same
/// columns in the header as in the rows (listenq(4)).
pub const HEADER: &str = "LOCAL                                     PROTO      BACKLOG      LIMIT   QLEN INCQLEN   ACCEPTED  OVERFLOWS FILTER          HELD   EVICTED  LAT_P50  LAT_P99        UID    JID SOURCES   EV_FAIR    EV_CAP";

/// How many blank-separated columns a row (and the header) has.
pub const COLUMNS: usize = 18;

/// The longest LOCAL text: a local socket's whole path (sun_path, 104
/// bytes) with every byte escaped as `\xNN`. An IPv6 address and port
/// are far shorter.
pub const LOCAL_MAX: usize = 4 * SUN_PATH_LEN;

/// A buffer this long holds any row whole (the test
/// `longest_row_fits` builds the longest one: LOCAL_MAX, then every
/// number at its widest, about 660 bytes).
pub const ROW_MAX: usize = 768;

/// One row, terminated by a newline.
pub fn write_row(w: &mut impl Write, r: &Row) -> fmt::Result {
    let mut addr = Fixed::<LOCAL_MAX>::new();
    // Holds every address whole (LOCAL_MAX), so a path is never cut.
    let _ = write_local(&mut addr, &r.local);
    let mut held = Fixed::<16>::new();
    let fname = match &r.filter {
        Some(f) => {
            let _ = write!(held, "{}", f.held);
            cstr(&f.name)
        }
        // A stock accf module's filter: its name, and no hold count
        // (listenq does not see what it holds).
        None if r.kfilter[0] != 0 => {
            let _ = held.write_str("-");
            cstr(&r.kfilter)
        }
        None => {
            let _ = held.write_str("0");
            "-"
        }
    };
    // A name with a blank (or none at all) would shift every column after
    // it; accept filter names never have one, but the kernel does not
    // forbid it.
    let fname = if fname.is_empty() || fname.contains(|c: char| c.is_whitespace()) {
        "?"
    } else {
        fname
    };
    write!(
        w,
        "{:<41} {:<9} {:>8} {:>10} {:>6} {:>7} {:>10} {:>10} {:<12} {:>7} {:>9} ",
        addr.as_str(),
        r.proto.name(),
        r.backlog,
        r.qlimit,
        r.qlen,
        r.incqlen,
        r.accepted,
        r.overflows,
        fname,
        held.as_str(),
        r.evicted
    )?;
    write_latency(w, r.latency.percentile_bucket(50))?;
    w.write_char(' ')?;
    write_latency(w, r.latency.percentile_bucket(99))?;
    write!(w, " {:>10} {:>6}", r.owner.uid, r.owner.jid)?;
    // The fair policy's columns; "-" for a listener without it.
    match &r.filter {
        Some(f) if f.fair => write!(
            w,
            " {:>7} {:>9} {:>9}",
            f.sources, f.evicted_fair, f.evicted_cap
        )?,
        _ => write!(w, " {:>7} {:>9} {:>9}", "-", "-", "-")?,
    }
    w.write_char('\n')
}

/// A percentile as the upper bound of its bucket: "<64us", "<2ms", ">=67s".
/// Bucket 0 is "<1tick": latencies are whole clock ticks (latency.rs), so
/// it holds accepts up to a tick (1 ms at hz=1000) after the completion,
/// which "<1us" would misstate.
fn write_latency(w: &mut impl Write, bucket: Option<usize>) -> fmt::Result {
    let mut s = Fixed::<16>::new();
    match bucket {
        None => s.write_str("-")?,
        Some(0) => s.write_str("<1tick")?,
        Some(b) => match latency::bucket_upper_us(b) {
            None => s.write_str(">=67s")?,
            Some(us) if us < 1_000 => write!(s, "<{us}us")?,
            Some(us) if us < 1_000_000 => write!(s, "<{}ms", us.div_ceil(1_000))?,
            Some(us) => write!(s, "<{}s", us.div_ceil(1_000_000))?,
        },
    }
    write!(w, "{:>8}", s.as_str())
}

/// The local address as netstat(1) writes it: address, a dot, the port;
/// `*` for the wildcard address (`*.80`, `127.0.0.1.8080`, `::1.8080`), and
/// local sockets by their path. Blanks and unprintable bytes of a path are
/// written as `\xNN`, so the address stays one column.
pub fn write_local(w: &mut impl Write, l: &Local) -> fmt::Result {
    match l {
        Local::Inet { addr, port } => {
            if *addr == [0; 4] {
                w.write_char('*')?;
            } else {
                write!(w, "{}.{}.{}.{}", addr[0], addr[1], addr[2], addr[3])?;
            }
            write_port(w, *port)
        }
        Local::Inet6 { addr, port } => {
            if *addr == [0; 16] {
                w.write_char('*')?;
            } else {
                write_ipv6(w, addr)?;
            }
            write_port(w, *port)
        }
        Local::Path { path, len } => {
            let n = usize::from(*len).min(path.len());
            let p = path.get(..n).unwrap_or(&[]);
            if p.is_empty() {
                return w.write_char('-');
            }
            for &b in p {
                // sun_path is bytes; show printable ASCII and escape the rest.
                if (0x21..0x7f).contains(&b) && b != b'\\' {
                    w.write_char(char::from(b))?;
                } else {
                    write!(w, "\\x{b:02x}")?;
                }
            }
            Ok(())
        }
        Local::Unknown => w.write_char('?'),
    }
}

fn write_port(w: &mut impl Write, port: u16) -> fmt::Result {
    if port == 0 {
        w.write_str(".*")
    } else {
        write!(w, ".{port}")
    }
}

/// RFC 5952 text form: lower case, longest run (>= 2) of zero groups as "::".
pub fn write_ipv6(w: &mut impl Write, a: &[u8; 16]) -> fmt::Result {
    let mut g = [0u16; 8];
    for (i, x) in g.iter_mut().enumerate() {
        *x = u16::from_be_bytes([a[2 * i], a[2 * i + 1]]);
    }
    let (mut best, mut best_len, mut cur, mut cur_len) = (0usize, 0usize, 0usize, 0usize);
    for (i, x) in g.iter().enumerate() {
        if *x == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len < 2 {
        best_len = 0;
    }
    let mut i = 0;
    while i < 8 {
        if best_len > 0 && i == best {
            w.write_str("::")?;
            i += best_len;
            continue;
        }
        if i > 0 && !(best_len > 0 && i == best + best_len) {
            w.write_char(':')?;
        }
        write!(w, "{:x}", g[i])?;
        i += 1;
    }
    Ok(())
}

fn cstr(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(b.get(..n).unwrap_or(&[])).unwrap_or("?")
}

/// A fixed-size text buffer: writes past the end are cut off, not errors,
/// so a long field never makes the whole row fail.
pub struct Fixed<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Fixed<N> {
    pub const fn new() -> Self {
        Fixed {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (see write_str).
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for Fixed<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for Fixed<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let mut tmp = [0u8; 4];
            let enc = ch.encode_utf8(&mut tmp).as_bytes();
            let end = self.len + enc.len();
            match self.buf.get_mut(self.len..end) {
                Some(dst) => {
                    dst.copy_from_slice(enc);
                    self.len = end;
                }
                None => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Histogram;
    use crate::registry::{FilterInfo, Owner, Proto};

    fn v6(s: [u16; 8]) -> std::string::String {
        let mut a = [0u8; 16];
        for (i, g) in s.iter().enumerate() {
            a[2 * i..2 * i + 2].copy_from_slice(&g.to_be_bytes());
        }
        let mut f = Fixed::<64>::new();
        write_ipv6(&mut f, &a).unwrap();
        f.as_str().into()
    }

    #[test]
    fn ipv6_text() {
        assert_eq!(v6([0, 0, 0, 0, 0, 0, 0, 1]), "::1");
        assert_eq!(v6([0; 8]), "::");
        assert_eq!(v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]), "2001:db8::1:0:0:1");
        assert_eq!(
            v6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]),
            "2001:db8:0:1:1:1:1:1"
        );
        assert_eq!(v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), "fe80::");
    }

    #[test]
    fn row_has_every_column() {
        let mut lat = Histogram::default();
        lat.record(100);
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"httpready");
        let r = Row {
            id: 1,
            so: 0x1000,
            proto: Proto::Tcp4,
            local: Local::Inet {
                addr: [127, 0, 0, 1],
                port: 8080,
            },
            backlog: 4,
            qlimit: 4,
            qlen: 7,
            incqlen: 2,
            accepted: 12,
            overflows: 5,
            filter: Some(FilterInfo {
                name,
                held: 2,
                ..Default::default()
            }),
            kfilter: [0; 16],
            evicted: 3,
            latency: lat,
            owner: Owner { uid: 80, jid: 2 },
            counts: Default::default(),
        };
        let mut f = Fixed::<512>::new();
        write_row(&mut f, &r).unwrap();
        let cols: std::vec::Vec<&str> = f.as_str().split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "127.0.0.1.8080",
                "tcp4",
                "4",
                "4",
                "7",
                "2",
                "12",
                "5",
                "httpready",
                "2",
                "3",
                "<128us",
                "<128us",
                "80",
                "2",
                "-",
                "-",
                "-"
            ]
        );
        assert_eq!(HEADER.split_whitespace().count(), COLUMNS);
        assert_eq!(cols.len(), COLUMNS, "every header is one word");
        // The header's words sit over their columns (right- or
        // left-aligned alike): each header word overlaps its value.
        let spans = |t: &str| -> std::vec::Vec<(usize, usize)> {
            let mut v = std::vec::Vec::new();
            let mut start = None;
            for (i, c) in t.char_indices().chain([(t.len(), ' ')]) {
                match (c.is_whitespace(), start) {
                    (false, None) => start = Some(i),
                    (true, Some(s0)) => {
                        v.push((s0, i));
                        start = None;
                    }
                    _ => {}
                }
            }
            v
        };
        for (h, c) in spans(HEADER).iter().zip(spans(f.as_str()).iter()) {
            assert!(h.0 < c.1 && c.0 < h.1, "header {:?} vs value {:?}", h, c);
        }
    }

    fn local(l: Local) -> std::string::String {
        let mut f = Fixed::<64>::new();
        write_local(&mut f, &l).unwrap();
        f.as_str().into()
    }

    #[test]
    fn addresses_as_netstat_writes_them() {
        let loop6 = {
            let mut a = [0u8; 16];
            a[15] = 1;
            a
        };
        let cases = [
            (
                Local::Inet {
                    addr: [0; 4],
                    port: 80,
                },
                "*.80",
            ),
            (
                Local::Inet {
                    addr: [127, 0, 0, 1],
                    port: 8080,
                },
                "127.0.0.1.8080",
            ),
            (
                Local::Inet {
                    addr: [0; 4],
                    port: 0,
                },
                "*.*",
            ),
            (
                Local::Inet6 {
                    addr: [0; 16],
                    port: 443,
                },
                "*.443",
            ),
            (
                Local::Inet6 {
                    addr: loop6,
                    port: 8080,
                },
                "::1.8080",
            ),
            (Local::Unknown, "?"),
        ];
        for (l, want) in cases {
            assert_eq!(local(l), want);
        }
        let mut path = [0u8; SUN_PATH_LEN];
        path[..13].copy_from_slice(b"/var/run/a b\\");
        assert_eq!(
            local(Local::Path { path, len: 13 }),
            "/var/run/a\\x20b\\x5c"
        );
        assert_eq!(local(Local::Path { path, len: 0 }), "-");
    }

    #[test]
    fn stock_filter_and_blank_names() {
        let mut r = row_with(
            Proto::Tcp4,
            Local::Inet {
                addr: [0; 4],
                port: 80,
            },
        );
        let cols = |r: &Row| -> std::vec::Vec<std::string::String> {
            let mut f = Fixed::<512>::new();
            write_row(&mut f, r).unwrap();
            f.as_str().split_whitespace().map(|s| s.into()).collect()
        };
        assert_eq!(cols(&r)[8..10], ["-", "0"]);
        r.kfilter[..9].copy_from_slice(b"dataready");
        assert_eq!(cols(&r)[8..10], ["dataready", "-"]);
        r.kfilter[..9].copy_from_slice(b"data eady");
        assert_eq!(cols(&r).len(), COLUMNS);
        assert_eq!(cols(&r)[8], "?");
    }

    fn row_with(proto: Proto, local: Local) -> Row {
        let q = crate::registry::QueueSample {
            qlimit: 1,
            ..Default::default()
        };
        Row::new(1, 1, proto, local, 1, q, Owner::default())
    }

    #[test]
    fn a_104_byte_path_is_written_whole() {
        let mut path = [b'p'; SUN_PATH_LEN];
        path[0] = b'/';
        let r = row_with(
            Proto::LocalStream,
            Local::Path {
                path,
                len: SUN_PATH_LEN as u8,
            },
        );
        let mut f = Fixed::<ROW_MAX>::new();
        write_row(&mut f, &r).unwrap();
        let cols: std::vec::Vec<&str> = f.as_str().split_whitespace().collect();
        assert_eq!(cols[0].as_bytes(), &path[..]);
        assert_eq!(cols[1], "stream");
        assert_eq!(cols.len(), COLUMNS);
    }

    #[test]
    fn dual_stack_tcp_reads_tcp46() {
        let r = row_with(
            Proto::Tcp6.as_netstat(true, true),
            Local::Inet6 {
                addr: [0; 16],
                port: 80,
            },
        );
        let mut f = Fixed::<ROW_MAX>::new();
        write_row(&mut f, &r).unwrap();
        let cols: std::vec::Vec<&str> = f.as_str().split_whitespace().collect();
        assert_eq!(cols[..2], ["*.80", "tcp46"]);
    }

    #[test]
    fn latency_within_the_completing_tick_reads_1tick() {
        let mut r = row_with(Proto::Tcp4, Local::Unknown);
        let mut f = Fixed::<ROW_MAX>::new();
        write_row(&mut f, &r).unwrap();
        assert_eq!(f.as_str().split_whitespace().nth(11), Some("-"));
        // What Tick::us_until gives an accept in the same tick, and one a
        // tick later at hz=1000.
        r.latency.record(0);
        r.latency.record(0);
        r.latency.record(1000);
        f.clear();
        write_row(&mut f, &r).unwrap();
        let cols: std::vec::Vec<&str> = f.as_str().split_whitespace().collect();
        assert_eq!(cols[11..13], ["<1tick", "<2ms"]);
    }

    #[test]
    fn longest_row_fits() {
        let r = Row {
            id: u64::MAX,
            so: usize::MAX,
            proto: Proto::LocalSeqpacket,
            local: Local::Path {
                path: [0x01; SUN_PATH_LEN],
                len: SUN_PATH_LEN as u8,
            },
            backlog: i32::MIN,
            qlimit: u32::MAX,
            qlen: u32::MAX,
            incqlen: u32::MAX,
            accepted: u64::MAX,
            overflows: u64::MAX,
            filter: Some(FilterInfo {
                name: [b'f'; 16],
                held: u32::MAX,
                fair: true,
                sources: u32::MAX,
                evicted_fair: u64::MAX,
                evicted_cap: u64::MAX,
            }),
            kfilter: [0; 16],
            evicted: u64::MAX,
            latency: Histogram::default(),
            owner: Owner {
                uid: u32::MAX,
                jid: i32::MIN,
            },
            counts: Default::default(),
        };
        let mut f = Fixed::<{ ROW_MAX + 64 }>::new();
        write_row(&mut f, &r).unwrap();
        let s = f.as_str();
        assert!(s.len() <= ROW_MAX, "{} bytes", s.len());
        assert!(s.ends_with('\n'));
        assert_eq!(s.split_whitespace().next().unwrap().len(), LOCAL_MAX);
        assert_eq!(s.split_whitespace().count(), COLUMNS);
    }

    #[test]
    fn unix_paths_are_escaped_and_fixed_truncates() {
        let mut path = [0u8; SUN_PATH_LEN];
        path[..6].copy_from_slice(b"/tmp/\x01");
        let mut f = Fixed::<8>::new();
        write_local(&mut f, &Local::Path { path, len: 6 }).unwrap();
        assert_eq!(f.as_str(), "/tmp/\\x0");
    }
}
