//! Reading `sysctl kern.ipc.listenq.listeners`, the text table: one row per
//! listener, 13 blank-separated columns (LOCAL ADDRESS is one), after an
//! empty first line and the header (listenq(4)).

/// Columns of one table row, as text.
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

