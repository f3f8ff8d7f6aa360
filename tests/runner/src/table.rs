//! Reading `sysctl kern.ipc.listenq.listeners`, the text table: one row per
//! listener, 18 blank-separated columns (every header is one word), after
//! an empty first line and the header (listenq(4)).

/// Columns of one table row, as text.
use crate::net::SockAddr;
use crate::sock::Kind;

/// Columns of a row, and of the header.
pub const COLUMNS: usize = 18;
pub const COL_UID: usize = 13;
pub const COL_JID: usize = 14;

pub struct Row<'a> {
    cols: [&'a [u8]; COLUMNS],
}

impl<'a> Row<'a> {
    pub fn num(&self, i: usize) -> Option<i64> {
        parse_i64(self.cols[i])
    }
    pub fn text(&self, i: usize) -> &'a [u8] {
        self.cols[i]
    }
}

pub fn parse_i64(b: &[u8]) -> Option<i64> {
    let (neg, d) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if d.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

fn split(line: &[u8]) -> Option<Row<'_>> {
    let mut cols: [&[u8]; COLUMNS] = [&[]; COLUMNS];
    let mut n = 0;
    for w in line.split(|&c| c == b' ').filter(|w| !w.is_empty()) {
        if n < COLUMNS {
            cols[n] = w;
        }
        n += 1;
    }
    (n == COLUMNS).then_some(Row { cols })
}

/// The header line, split like a row (None unless it has COLUMNS words).
pub fn header(table: &[u8]) -> Option<Row<'_>> {
    // The text starts with an empty line, then the header.
    table.split(|&c| c == b'\n').nth(1).and_then(split)
}

/// Every row of the table.
pub fn rows(table: &[u8]) -> impl Iterator<Item = Row<'_>> {
    table.split(|&c| c == b'\n').skip(2).filter_map(split)
}

/// The table's row whose first column is `addr`.
pub fn find_row<'a>(table: &'a [u8], addr: &[u8]) -> Option<Row<'a>> {
    rows(table).find(|r| r.cols[0] == addr)
}

/// The text a row starts with for this listener: the address as
/// netstat(1) writes it (`127.0.0.1.8080`, `::1.8080`, a path).
pub fn addr_text(kind: Kind, sa: &SockAddr, out: &mut [u8; 96]) -> usize {
    let b = sa.bytes();
    let mut w = Writer { buf: out, len: 0 };
    match kind {
        Kind::Tcp4 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let _ = core::fmt::write(
                &mut w,
                format_args!("{}.{}.{}.{}.{}", b[4], b[5], b[6], b[7], port),
            );
        }
        Kind::Tcp6 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let _ = core::fmt::write(&mut w, format_args!("::1.{}", port));
        }
        Kind::UnixStream | Kind::UnixSeqpacket => {
            let path = &b[2..];
            let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
            for &c in &path[..end] {
                let _ = core::fmt::write(&mut w, format_args!("{}", c as char));
            }
        }
    }
    w.len
}

pub struct Writer<'a> {
    pub buf: &'a mut [u8; 96],
    pub len: usize,
}

impl core::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        let end = (self.len + b.len()).min(self.buf.len());
        self.buf[self.len..end].copy_from_slice(&b[..end - self.len]);
        self.len = end;
        Ok(())
    }
}
