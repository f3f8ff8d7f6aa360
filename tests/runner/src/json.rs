//! `lqinit json FILE LIST`: parses FILE as JSON (RFC 8259; the whole
//! document, or it fails) and prints each object found directly in an
//! array member named LIST, one line each, as `key=value` pairs of its
//! scalar members (strings unquoted, escapes decoded; nested values left
//! out). libxo writes a list as such an array, so the operator layer can
//! check listenqstat's JSON against its own listeners.

use crate::sys;
use crate::tool::say;

const MAX_DEPTH: u32 = 32;
const LINE: usize = 4096;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    list: &'a [u8],
}

/// One output line, cut (and marked) at LINE bytes.
struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Line {
    fn push(&mut self, b: &[u8]) {
        for &c in b {
            if self.len < LINE {
                self.buf[self.len] = c;
                self.len += 1;
            }
        }
    }
}

type R<T> = Result<T, &'static str>;

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err("unexpected character")
        }
    }

    fn lit(&mut self, w: &'static [u8]) -> R<()> {
        if self.s.get(self.pos..self.pos + w.len()) == Some(w) {
            self.pos += w.len();
            Ok(())
        } else {
            Err("bad literal")
        }
    }

    /// A string, decoded into `out` when given (non-ASCII as '?').
    fn string(&mut self, mut out: Option<&mut Line>) -> R<()> {
        self.expect(b'"')?;
        loop {
            let c = *self.s.get(self.pos).ok_or("unterminated string")?;
            self.pos += 1;
            let dec = match c {
                b'"' => return Ok(()),
                0..=0x1f => return Err("control character in string"),
                b'\\' => {
                    let e = *self.s.get(self.pos).ok_or("unterminated escape")?;
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => e,
                        b'b' | b'f' | b'n' | b'r' | b't' => b' ',
                        b'u' => {
                            let h = self.s.get(self.pos..self.pos + 4).ok_or("short \\u")?;
                            if !h.iter().all(u8::is_ascii_hexdigit) {
                                return Err("bad \\u escape");
                            }
                            self.pos += 4;
                            b'?'
                        }
                        _ => return Err("bad escape"),
                    }
                }
                0x80.. => b'?',
                _ => c,
            };
            if let Some(o) = out.as_deref_mut() {
                o.push(&[dec]);
            }
        }
    }

    fn number(&mut self, out: Option<&mut Line>) -> R<()> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while matches!(p.s.get(p.pos), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > s
        };
        if self.s.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        if self.s.get(self.pos) == Some(&b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return Err("bad number");
        }
        if self.s.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err("bad fraction");
            }
        }
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err("bad exponent");
            }
        }
        if let Some(o) = out {
            o.push(&self.s[start..self.pos]);
        }
        Ok(())
    }

    /// Any value; a scalar is written to `out` when given. `named`: the
    /// member name it is the value of.
    fn value(&mut self, depth: u32, named: Option<&[u8]>, out: Option<&mut Line>) -> R<()> {
        if depth > MAX_DEPTH {
            return Err("nested too deep");
        }
        match self.peek().ok_or("unexpected end")? {
            b'{' => self.object(depth, false),
            b'[' => self.array(depth, named == Some(self.list)),
            b'"' => self.string(out),
            b't' => self.scalar_lit(b"true", out),
            b'f' => self.scalar_lit(b"false", out),
            b'n' => self.scalar_lit(b"null", out),
            _ => self.number(out),
        }
    }

    fn scalar_lit(&mut self, w: &'static [u8], out: Option<&mut Line>) -> R<()> {
        self.lit(w)?;
        if let Some(o) = out {
            o.push(w);
        }
        Ok(())
    }

    fn array(&mut self, depth: u32, wanted: bool) -> R<()> {
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() == Some(b'{') {
                self.object(depth + 1, wanted)?;
            } else {
                self.value(depth + 1, None, None)?;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err("expected , or ] in array"),
            }
        }
    }

    /// An object; with `print`, its scalar members as one line.
    fn object(&mut self, depth: u32, print: bool) -> R<()> {
        self.expect(b'{')?;
        let mut line = Line {
            buf: [0; LINE],
            len: 0,
        };
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err("expected a member name");
                }
                let name_start = self.pos + 1;
                self.string(None)?;
                let name = &self.s[name_start..self.pos - 1];
                self.expect(b':')?;
                let scalar = !matches!(self.peek(), Some(b'{' | b'['));
                if print && scalar {
                    if line.len > 0 {
                        line.push(b" ");
                    }
                    line.push(name);
                    line.push(b"=");
                    self.value(depth + 1, Some(name), Some(&mut line))?;
                } else {
                    self.value(depth + 1, Some(name), None)?;
                }
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err("expected , or } in object"),
                }
            }
        }
        if print {
            say(format_args!(
                "{}",
                core::str::from_utf8(&line.buf[..line.len]).unwrap_or("?")
            ));
        }
        Ok(())
    }
}

/// Parses `text` and prints the objects of the arrays named `list`; an
/// error names the byte where the document stopped being JSON.
pub fn rows(text: &[u8], list: &[u8]) -> Result<(), (usize, &'static str)> {
    let mut p = Parser {
        s: text,
        pos: 0,
        list,
    };
    p.value(0, None, None).map_err(|e| (p.pos, e))?;
    if p.peek().is_some() {
        return Err((p.pos, "text after the document"));
    }
    Ok(())
}

/// The command: the exit code.
pub fn main(file: Option<&core::ffi::CStr>, list: Option<&[u8]>) -> i32 {
    let (Some(file), Some(list)) = (file, list) else {
        say(format_args!("usage: lqinit json FILE LIST"));
        return 64;
    };
    let fd = match sys::open(file, sys::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) => {
            say(format_args!("lqinit json: {:?}: {}", file, e));
            return 1;
        }
    };
    let mut buf = sys::scratch::<u8>(262_144, 0);
    let mut len = 0;
    loop {
        match sys::read(fd.raw(), &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => {
                say(format_args!("lqinit json: read: {}", e));
                return 1;
            }
        }
        if len == buf.len() {
            say(format_args!("lqinit json: {:?} is too large", file));
            return 1;
        }
    }
    match rows(&buf[..len], list) {
        Ok(()) => 0,
        Err((at, why)) => {
            say(format_args!(
                "lqinit json: not JSON at byte {}: {}",
                at, why
            ));
            1
        }
    }
}
