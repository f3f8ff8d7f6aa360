//! Reading `sysctl kern.ipc.listenq.listeners`, the text table: one row per
//! listener, 13 blank-separated columns (LOCAL ADDRESS is one), after an
//! empty first line and the header (listenq(4)).

/// Columns of one table row, as text.
use crate::net::SockAddr;
use crate::sock::Kind;

pub struct Row<'a> {
    cols: [&'a [u8]; 13],
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

/// The table's row whose first column is `addr`.
pub fn find_row<'a>(table: &'a [u8], addr: &[u8]) -> Option<Row<'a>> {
    // The text starts with an empty line, then the header.
    for line in table.split(|&c| c == b'\n').skip(2) {
        let mut cols: [&[u8]; 13] = [&[]; 13];
        let mut n = 0;
        for w in line.split(|&c| c == b' ').filter(|w| !w.is_empty()) {
            if n < 13 {
                cols[n] = w;
            }
            n += 1;
        }
        if n == 13 && cols[0] == addr {
            return Some(Row { cols });
        }
    }
    None
}

/// The text a row starts with for this listener.
pub fn addr_text(kind: Kind, sa: &SockAddr, out: &mut [u8; 96]) -> usize {
    let b = sa.bytes();
    let mut w = Writer { buf: out, len: 0 };
    match kind {
        Kind::Tcp4 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let _ = core::fmt::write(
                &mut w,
                format_args!("{}.{}.{}.{}:{}", b[4], b[5], b[6], b[7], port),
            );
        }
        Kind::Tcp6 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let _ = core::fmt::write(&mut w, format_args!("[::1]:{}", port));
        }
        Kind::UnixStream | Kind::UnixSeqpacket => {
            let path = &b[2..];
            let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
            let _ = core::fmt::write(&mut w, format_args!("local:"));
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
