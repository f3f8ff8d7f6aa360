//! `make bench` rows for requests that arrive in pieces (issue 19): each
//! round connects, sends the request in `piece`-byte writes with
//! TCP_NODELAY (so each write is one segment and one upcall), accepts and
//! closes, as t_bench.rs's rounds do for a whole request.
//!
//! - `http-slow`: a 900-byte request written 16 bytes at a time (a slow
//!   client), httpready against stock accf_http;
//! - `http-large`: a 12 KB request (long cookies) in 1448-byte writes, an
//!   MSS on Ethernet, httpready against stock accf_http;
//! - `dns-2seg`: a DNS query in two writes, dnsready against stock
//!   accf_dns;
//! - `tls-2seg`: a 1800-byte ClientHello record in two writes, tlsready
//!   against no filter (FreeBSD 14 has no stock tlsready).

use crate::accf_util as au;
use crate::net::SockAddr;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::t_bench_paired as paired;
use crate::tap::Tap;

const WARMUP: u64 = 20;
/// Rounds a measurement: a round moves up to 12 KB.
const ROUNDS: u64 = 1000;

/// An HTTP/1.1 GET of exactly N bytes: request line, Host, a Cookie
/// header padded to length, the blank line.
const fn http_request<const N: usize>() -> [u8; N] {
    let head = b"GET /index.html HTTP/1.1\r\nHost: bench.example\r\nCookie: s=";
    let tail = b"\r\n\r\n";
    let mut r = [b'a'; N];
    let mut i = 0;
    while i < head.len() {
        r[i] = head[i];
        i += 1;
    }
    let mut j = 0;
    while j < tail.len() {
        r[N - tail.len() + j] = tail[j];
        j += 1;
    }
    r
}

/// One TLS handshake record of N bytes holding one ClientHello (the
/// filter looks at the record and handshake framing).
const fn tls_record<const N: usize>() -> [u8; N] {
    let mut r = [0u8; N];
    let rec = N - 5;
    let hs = rec - 4;
    r[0] = 0x16;
    r[1] = 0x03;
    r[2] = 0x01;
    r[3] = (rec >> 8) as u8;
    r[4] = rec as u8;
    r[5] = 0x01;
    r[6] = (hs >> 16) as u8;
    r[7] = (hs >> 8) as u8;
    r[8] = hs as u8;
    // client_version TLS 1.2, then random and the rest left as zeroes.
    r[9] = 0x03;
    r[10] = 0x03;
    r
}

static SLOW: [u8; 900] = http_request::<900>();
static LARGE: [u8; 12288] = http_request::<12288>();
static TLS: [u8; 1800] = tls_record::<1800>();
/// A DNS query for example.com A, with its 2-byte length.
const DNSQ: &[u8] = b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";

pub struct Row {
    pub label: &'static str,
    pub filter: &'static str,
    /// The stock module; None: compared with no filter at all.
    pub stock: Option<&'static core::ffi::CStr>,
    pub req: &'static [u8],
    pub piece: usize,
}

pub const ROWS: [Row; 4] = [
    Row {
        label: "http-slow",
        filter: "httpready",
        stock: Some(au::ACCF_HTTP),
        req: &SLOW,
        piece: 16,
    },
    Row {
        label: "http-large",
        filter: "httpready",
        stock: Some(au::ACCF_HTTP),
        req: &LARGE,
        piece: 1448,
    },
    Row {
        label: "dns-2seg",
        filter: "dnsready",
        stock: Some(au::ACCF_DNS),
        req: DNSQ,
        piece: 16,
    },
    Row {
        label: "tls-2seg",
        filter: "tlsready",
        stock: None,
        req: &TLS,
        piece: 900,
    },
];

fn one(l: i32, sa: &SockAddr, req: &[u8], piece: usize) -> Result<(), (&'static str, Errno)> {
    let c = sock::connect(Kind::Tcp4, sa).map_err(|e| ("connect", e))?;
    sock::set_int(c.raw(), au::IPPROTO_TCP, au::TCP_NODELAY, 1).map_err(|e| ("TCP_NODELAY", e))?;
    for p in req.chunks(piece.max(1)) {
        au::send_all(c.raw(), p).map_err(|e| ("send", e))?;
    }
    let a = au::accept_within(l, sock::IO_TIMEOUT_MS).map_err(|e| ("accept", e))?;
    drop(c);
    drop(a);
    Ok(())
}

/// One measurement: (conns/s, guest us).
fn measure(filter: Option<&str>, row: &Row) -> Result<(u64, u64), (&'static str, Errno)> {
    let (l, sa) = au::listener(128).map_err(|e| ("listener", e))?;
    if let Some(f) = filter {
        au::set_filter(l.raw(), f, "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    }
    for _ in 0..WARMUP {
        one(l.raw(), &sa, row.req, row.piece)?;
    }
    let t0 = sys::now_us();
    for _ in 0..ROUNDS {
        one(l.raw(), &sa, row.req, row.piece)?;
    }
    let us = sys::now_us().saturating_sub(t0).max(1);
    Ok((ROUNDS * 1_000_000 / us, us))
}

/// The rows `only` selects (every one when empty), each listenq against
/// its base, interleaved A B B A A B B A.
pub fn run(tap: &mut Tap, only: &[u8]) -> [(paired::Side, paired::Side); 4] {
    let mut out = [(paired::Side::default(), paired::Side::default()); 4];
    for (i, row) in ROWS.iter().enumerate() {
        if !(only.is_empty() || only == row.label.as_bytes() || only == b"pieces") {
            continue;
        }
        let mut run = |_: &mut Tap, lq: bool| {
            // Without a stock module the base is the bare kernel, no
            // filter; listenq's side always has its filter.
            let f = if lq || row.stock.is_some() {
                Some(row.filter)
            } else {
                None
            };
            measure(f, row)
        };
        out[i] = paired::compare_with(
            tap,
            &format_args!(
                "{} ({} bytes in {}-byte writes)",
                row.label,
                row.req.len(),
                row.piece
            ),
            row.stock,
            false,
            &paired::ABBA2,
            ROUNDS,
            &mut run,
        );
    }
    out
}
