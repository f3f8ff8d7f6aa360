//! The fuzzer's random inputs (t_fuzz.rs): a small PRNG, and generators for
//! what goes through listenq's surface: request bytes (HTTP, TLS, DNS,
//! PROXY v1/v2, garbage), struct accept_filter_arg values (valid and
//! invalid names and options), listen(2) backlogs and sysctl values.
//! Everything here is a pure function of the generator's state, so a seed
//! always produces the same inputs.

/// splitmix64: turns any seed (0 included) into a well-mixed state.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*, seeded through splitmix64 (never 0).
#[derive(Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let s = splitmix64(seed);
        Rng(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next() % n
    }

    pub fn idx(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.idx(v.len())]
    }

    pub fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
}

/// A fixed buffer that bytes are appended to (silently cut at capacity).
pub struct Buf<const N: usize> {
    pub b: [u8; N],
    pub len: usize,
}

impl<const N: usize> Buf<N> {
    pub const fn new() -> Self {
        Buf { b: [0; N], len: 0 }
    }

    pub fn push(&mut self, s: &[u8]) {
        for &c in s {
            if self.len == N {
                return;
            }
            self.b[self.len] = c;
            self.len += 1;
        }
    }

    pub fn push_byte(&mut self, c: u8) {
        self.push(&[c]);
    }

    pub fn push_num(&mut self, v: u64) {
        let mut d = [0u8; 20];
        let mut n = 0;
        let mut x = v;
        loop {
            d[n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        d[..n].reverse();
        self.push(&d[..n]);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.b[..self.len]
    }
}

// ---------------------------------------------------------------- requests

const HTTP: [&[u8]; 12] = [
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nHost: a\r\nUser-Agent: fz\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\nHost: b\r\n\r\n",
    b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /\r\n",
    b"GET / HTTP/1.1\n\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"PATCH /q HTTP/1.1\r\nHost: c\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nX: \r\n \r\n\r\n",
    b"BREW /pot HTCPCP/1.0\r\n\r\n",
];

const PROXY_V1: [&[u8]; 6] = [
    b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n",
    b"PROXY TCP6 ::1 ::1 40000 443\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4",
    b"PROXY TCP4 999.0.0.1 1.2.3.4 70000 1\r\n",
];

const PROXY_V2_SIG: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";

/// A PROXY header (v1 text or v2 binary, sometimes malformed).
fn proxy(r: &mut Rng, out: &mut Buf<640>) {
    match r.below(4) {
        0 | 1 => out.push(r.pick(&PROXY_V1)),
        2 => {
            // v1 with no end: longer than the 107 bytes v1 allows.
            out.push(b"PROXY TCP4 ");
            for _ in 0..r.below(140) {
                out.push_byte(b'1' + (r.below(9) as u8));
            }
        }
        _ => {
            out.push(PROXY_V2_SIG);
            // version/command: 0x21 PROXY, 0x20 LOCAL, or anything.
            let any = r.byte();
            out.push_byte(r.pick(&[0x21u8, 0x20, 0x21, 0x11, 0x2f, any]));
            // family/protocol: TCP4, TCP6, UNSPEC, UNIX stream, anything.
            let any = r.byte();
            let fam = r.pick(&[0x11u8, 0x21, 0x00, 0x31, any]);
            out.push_byte(fam);
            let natural: u16 = match fam {
                0x11 => 12,
                0x21 => 36,
                0x31 => 216,
                _ => 0,
            };
            let len = match r.below(6) {
                0 => r.below(64) as u16,
                1 => 0xffff,
                2 => natural + r.below(16) as u16, // TLVs
                _ => natural,
            };
            out.push(&len.to_be_bytes());
            let body = (len as u64).min(300).min(r.below(400));
            let body = if r.pct(70) {
                (len as u64).min(300)
            } else {
                body
            };
            for _ in 0..body {
                out.push_byte(r.byte());
            }
        }
    }
}

/// A TLS record stream: a (partial, sometimes lying) ClientHello, another
/// handshake, an alert, or an SSLv2-looking start.
fn tls(r: &mut Rng, out: &mut Buf<640>) {
    let records = 1 + r.below(3);
    for _ in 0..records {
        let any = r.byte();
        let ty = r.pick(&[0x16u8, 0x16, 0x16, 0x15, 0x17, 0x80, any]);
        let body = r.below(200) as usize;
        let claimed = match r.below(5) {
            0 => r.below(0x4800) as u16,
            1 => 0,
            _ => body as u16,
        };
        out.push_byte(ty);
        out.push(&[0x03, r.pick(&[0x01u8, 0x03, 0x00, 0x04])]);
        out.push(&claimed.to_be_bytes());
        if ty == 0x16 && body >= 4 {
            // Handshake header: ClientHello (1) with a 24-bit length.
            let hs = match r.below(4) {
                0 => r.below(0x10000) as u32,
                1 => (body as u32) * 3,
                _ => body as u32 - 4,
            };
            out.push_byte(r.pick(&[1u8, 1, 1, 2, 11]));
            out.push(&hs.to_be_bytes()[1..]);
            for _ in 4..body {
                out.push_byte(r.byte());
            }
        } else {
            for _ in 0..body {
                out.push_byte(r.byte());
            }
        }
    }
}

/// DNS over TCP: a 2-byte length and a message (lengths sometimes lie).
fn dns(r: &mut Rng, out: &mut Buf<640>) {
    let n = 1 + r.below(2);
    for _ in 0..n {
        let body = r.below(120) as usize;
        let claimed = match r.below(5) {
            0 => 0u16,
            1 => 0xffff,
            2 => r.below(600) as u16,
            _ => body as u16,
        };
        out.push(&claimed.to_be_bytes());
        // A header-looking start: id, flags (query), one question.
        let hdr = [0x12u8, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        for i in 0..body {
            if i < hdr.len() {
                out.push_byte(hdr[i]);
            } else {
                out.push_byte(r.byte());
            }
        }
    }
}

/// One message for a connection: an optional PROXY header, then a body
/// for one of the filters (or garbage), sometimes cut or corrupted.
pub fn payload(r: &mut Rng, out: &mut Buf<640>) {
    out.len = 0;
    if r.pct(25) {
        proxy(r, out);
    }
    match r.below(7) {
        0 | 1 => {
            let h = r.pick(&HTTP);
            out.push(h);
        }
        2 => tls(r, out),
        3 => dns(r, out),
        4 => {
            let n = 1 + r.below(200);
            for _ in 0..n {
                out.push_byte(r.byte());
            }
        }
        5 => {
            // Printable noise with line ends.
            let n = 1 + r.below(100);
            for _ in 0..n {
                out.push_byte(r.pick(b"GETPOST /HTP1.0\r\n: x"));
            }
        }
        _ => {}
    }
    if out.len > 0 && r.pct(30) {
        out.len = 1 + r.idx(out.len);
    }
    if out.len > 0 && r.pct(10) {
        let i = r.idx(out.len);
        out.b[i] ^= 1 << r.below(8);
    }
    if out.len == 0 {
        out.push(b"x");
    }
}

/// Up to 3 cut points in 0..len (sorted, possibly repeated): the pieces a
/// message is sent in.
pub fn cuts(r: &mut Rng, len: usize, out: &mut [usize; 3]) -> usize {
    let n = r.idx(4);
    for c in out.iter_mut().take(n) {
        *c = r.idx(len + 1);
    }
    out[..n].sort_unstable();
    n
}

// ---------------------------------------------------------------- accept filters

use crate::layout::AF_NAME_LEN as AF_NAME;
pub use crate::layout::AF_SIZE;
/// Room for a too-long option value.
pub const AF_BUF: usize = 300;

pub const FILTERS: [&str; 4] = ["dataready", "httpready", "dnsready", "tlsready"];

const OPTS: [&[u8]; 26] = [
    b"proxy",
    b"proxy=optional",
    b"proxy=required",
    b"proxy=off",
    b"proxy=maybe",
    b"timeout=0",
    b"timeout=1",
    b"timeout=5",
    b"timeout=20",
    b"timeout=100",
    b"timeout=1000",
    b"timeout=2147483648",
    b"timeout=99999999999999999999",
    b"timeout=-1",
    b"timeout=",
    b"ontimeout=deliver",
    b"ontimeout=drop",
    b"ontimeout=later",
    b"methods=stock",
    b"methods=all",
    b"parsehttpversion=0",
    b"parsehttpversion=1",
    b"parsehttpversion=7",
    b"h2",
    b"clienthello",
    b"nosuchoption",
];

/// An af_arg string: empty, a list of options (valid, invalid, repeated,
/// odd separators), or raw bytes, into `out`; `unterminated` fills all of
/// it with non-NUL bytes.
pub fn filter_arg(r: &mut Rng, out: &mut Buf<240>) {
    filter_arg_from(r.below(10), r, out)
}

/// A default_arg value: mostly option lists (each refused value is a
/// console line).
pub fn default_arg(r: &mut Rng, out: &mut Buf<240>) {
    let class = match r.below(20) {
        0..=3 => 0,
        4..=17 => 4,
        18 => 8,
        _ => 9,
    };
    filter_arg_from(class, r, out)
}

fn filter_arg_from(class: u64, r: &mut Rng, out: &mut Buf<240>) {
    out.len = 0;
    match class {
        0..=3 => {}
        4..=7 => {
            let n = 1 + r.below(4);
            for i in 0..n {
                if i > 0 {
                    out.push(r.pick(&[b",".as_slice(), b",", b",", b",,", b" ,", b";"]));
                }
                out.push(r.pick(&OPTS));
            }
            if r.pct(5) {
                out.push(b",");
            }
        }
        8 => {
            let n = r.below(241);
            for _ in 0..n {
                out.push_byte(r.byte());
            }
        }
        _ => {
            // Unterminated: 240 non-NUL bytes.
            for _ in 0..240 {
                out.push_byte(1 + r.byte() % 255);
            }
        }
    }
}

/// A struct accept_filter_arg (AF_SIZE bytes, or another length to see
/// setsockopt refuse it) into `out`; returns the length to pass.
pub fn filter_opt(r: &mut Rng, out: &mut [u8; AF_BUF]) -> usize {
    out.fill(0);
    match r.below(12) {
        0..=7 => {
            let n = r.pick(&FILTERS).as_bytes();
            out[..n.len()].copy_from_slice(n);
        }
        8 => {
            let n = r.pick(&[
                b"nosuch".as_slice(),
                b"DATAREADY",
                b"dataready ",
                b"accf_data",
                b"",
                b"httpready\0junk",
            ]);
            out[..n.len()].copy_from_slice(n);
        }
        9 => {
            // 16 non-NUL bytes: no terminator at all.
            for b in out[..AF_NAME].iter_mut() {
                *b = 1 + r.byte() % 255;
            }
            if r.pct(50) {
                out[..9].copy_from_slice(b"dataready");
            }
        }
        _ => {
            for b in out[..AF_NAME].iter_mut() {
                *b = r.byte();
            }
        }
    }
    let mut arg = Buf::<240>::new();
    filter_arg(r, &mut arg);
    out[AF_NAME..AF_NAME + arg.len].copy_from_slice(arg.bytes());
    if r.pct(8) {
        r.idx(AF_BUF + 1)
    } else {
        AF_SIZE
    }
}

// ---------------------------------------------------------------- numbers

/// A listen(2) backlog.
pub fn backlog(r: &mut Rng) -> i32 {
    match r.below(11) {
        0 => -1,
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 5,
        5 => 128,
        6 => 100_000,
        7 => i32::MIN,
        8 => i32::MAX,
        9 => r.below(40) as i32,
        _ => r.next() as i32,
    }
}

/// A value for an integer knob (kern.ipc.soacceptqueue,
/// kern.ipc.listenq.hold_timeout_ms, hold_timeout_drop).
pub fn knob_int(r: &mut Rng, name: &str) -> i32 {
    match name {
        "kern.ipc.soacceptqueue" => r.pick(&[0, 1, 2, 4, 16, 64, 128, 1000, 65535, -1, i32::MAX]),
        "kern.ipc.listenq.hold_timeout_ms" => {
            r.pick(&[0, 0, 1, 3, 10, 50, 200, 1000, -1, i32::MAX])
        }
        "kern.ipc.listenq.logprio" => r.pick(&[-2, -1, 0, 3, 6, 6, 7, 8]),
        "kern.ipc.listenq.vnet.hold_timeout_ms" => r.pick(&[-2, -1, -1, 0, 1, 10, 200, i32::MAX]),
        "kern.ipc.listenq.vnet.hold_timeout_drop" => r.pick(&[-2, -1, -1, 0, 1, 2]),
        _ => r.pick(&[0, 0, 1, 1, 2, -1, 7]),
    }
}
