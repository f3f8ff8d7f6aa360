//! The byte-by-byte cases: what each filter must hold and where it must
//! let go, for listenq and for FreeBSD's own filters alike, and how one
//! case is run and reported.

use super::*;

/// How a case's bytes go out: one send per byte, or the given parts (an
/// empty part is shutdown(SHUT_WR): the client's FIN).
#[derive(Clone, Copy)]
pub(super) enum Sends {
    Bytes(&'static [u8]),
    Parts(&'static [&'static [u8]]),
}

impl Sends {
    fn count(self) -> usize {
        match self {
            Sends::Bytes(b) => b.len(),
            Sends::Parts(p) => p.len(),
        }
    }
    fn get(self, i: usize) -> &'static [u8] {
        match self {
            Sends::Bytes(b) => &b[i..i + 1],
            Sends::Parts(p) => p[i],
        }
    }
    fn how(self) -> &'static str {
        match self {
            Sends::Bytes(_) => "byte",
            Sends::Parts(_) => "send",
        }
    }
}

#[derive(Clone, Copy)]
pub(super) struct Case {
    pub(super) label: &'static str,
    pub(super) filter: &'static str,
    pub(super) arg: &'static str,
    pub(super) sends: Sends,
    /// The send after which accept() must succeed (1-based), and not
    /// before; NEVER: still held after the last send.
    pub(super) want: usize,
}

pub(super) const NEVER: usize = usize::MAX;

pub(super) const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
pub(super) const POST: &[u8] = b"POST / HTTP/1.1\r\n\r\n";
pub(super) const HEAD: &[u8] = b"HEAD /i HTTP/1.0\r\n\r\n";
pub(super) const GET09: &[u8] = b"GET /\r\n";
pub(super) const BADVER: &[u8] = b"GET / HTTX/1.1\r\n\r\n";
/// A DNS query for example.com A, with its 2-byte length (29).
pub(super) const DNSQ: &[u8] = b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
pub(super) const DNS0: &[u8] = b"\x00\x00";
/// One TLS handshake record of 10 bytes (a ClientHello of 6).
pub(super) const TLSREC: &[u8] = b"\x16\x03\x01\x00\x0a\x01\x00\x00\x06\xaa\xbb\xcc\xdd\xee\xff";
/// A ClientHello of 12 bytes split over two records of 8 bytes.
pub(super) const TLS2: &[u8] = b"\x16\x03\x01\x00\x08\x01\x00\x00\x0c\xa1\xa2\xa3\xa4\x16\x03\x01\x00\x08\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8";
pub(super) const H2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(super) const POSTALL: &[u8] = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
pub(super) const PROXYGET: &[u8] =
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// dataready lets go at the first byte: a PARITY case, and run again with
/// listenq beside stock's accf_data (stock.rs).
pub(super) const FIRST_BYTE: Case = Case {
    label: "first byte",
    filter: "dataready",
    arg: "",
    sends: Sends::Bytes(b"x"),
    want: 1,
};

/// The cases both listenq and stock must answer alike (data, http, dns).
pub(super) const PARITY: [Case; 13] = [
    FIRST_BYTE,
    Case {
        label: "socket_accf.c data: \"foo\\0\"",
        filter: "dataready",
        arg: "",
        sends: Sends::Parts(&[b"foo\0"]),
        want: 1,
    },
    Case {
        label: "GET request",
        filter: "httpready",
        arg: "",
        sends: Sends::Bytes(GET),
        want: GET.len(),
    },
    Case {
        label: "POST passes after 2 bytes",
        filter: "httpready",
        arg: "",
        sends: Sends::Bytes(POST),
        want: 2,
    },
    Case {
        label: "HEAD request",
        filter: "httpready",
        arg: "",
        sends: Sends::Bytes(HEAD),
        want: HEAD.len(),
    },
    Case {
        label: "HTTP/0.9 GET passes at CR",
        filter: "httpready",
        arg: "",
        sends: Sends::Bytes(GET09),
        want: 6,
    },
    Case {
        label: "bad version passes at X",
        filter: "httpready",
        arg: "",
        sends: Sends::Bytes(BADVER),
        want: 10,
    },
    Case {
        label: "socket_accf.c http: \"foo\\0\"",
        filter: "httpready",
        arg: "",
        sends: Sends::Parts(&[b"foo\0"]),
        want: 1,
    },
    Case {
        label: "socket_accf.c http: \"GET / \" + \"HTTP/1.0\\r\\n\\n\"",
        filter: "httpready",
        arg: "",
        sends: Sends::Parts(&[b"GET / ", b"HTTP/1.0\r\n\n"]),
        want: 2,
    },
    Case {
        label: "length-prefixed query",
        filter: "dnsready",
        arg: "",
        sends: Sends::Bytes(DNSQ),
        want: DNSQ.len(),
    },
    Case {
        label: "zero length passes at byte 2",
        filter: "dnsready",
        arg: "",
        sends: Sends::Bytes(DNS0),
        want: 2,
    },
    Case {
        label: "silent client's FIN passes",
        filter: "dataready",
        arg: "",
        sends: Sends::Parts(&[b""]),
        want: 1,
    },
    Case {
        label: "partial GET then FIN passes",
        filter: "httpready",
        arg: "",
        sends: Sends::Parts(&[b"GET / HT", b""]),
        want: 2,
    },
];

/// listenq only: tlsready (no stock filter in 14) and the af_arg
/// extensions, each next to its stock-semantics contrast.
pub(super) const EXTENSIONS: [Case; 12] = [
    Case {
        label: "one record",
        filter: "tlsready",
        arg: "",
        sends: Sends::Bytes(TLSREC),
        want: TLSREC.len(),
    },
    Case {
        label: "ClientHello over 2 records, no clienthello: first record",
        filter: "tlsready",
        arg: "",
        sends: Sends::Bytes(TLS2),
        want: 13,
    },
    Case {
        label: "clienthello: ClientHello over 2 records",
        filter: "tlsready",
        arg: "clienthello",
        sends: Sends::Bytes(TLS2),
        want: TLS2.len(),
    },
    Case {
        label: "methods=all: POST held to end of headers",
        filter: "httpready",
        arg: "methods=all",
        sends: Sends::Bytes(POSTALL),
        want: POSTALL.len(),
    },
    Case {
        label: "no h2: HTTP/2 preface passes after 2 bytes",
        filter: "httpready",
        arg: "",
        sends: Sends::Bytes(H2),
        want: 2,
    },
    Case {
        label: "h2: HTTP/2 preface held for 24 bytes",
        filter: "httpready",
        arg: "h2",
        sends: Sends::Bytes(H2),
        want: H2.len(),
    },
    Case {
        label: "proxy: PROXY v1 line then GET",
        filter: "httpready",
        arg: "proxy",
        sends: Sends::Bytes(PROXYGET),
        want: PROXYGET.len(),
    },
    Case {
        label: "proxy=required: no PROXY header passes at once",
        filter: "httpready",
        arg: "proxy=required",
        sends: Sends::Bytes(GET),
        want: 1,
    },
    Case {
        label: "proxy: PROXY v1 line then 1 byte",
        filter: "dataready",
        arg: "proxy",
        sends: Sends::Parts(&[b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", b"x"]),
        want: 2,
    },
    Case {
        label: "proxy: PROXY v1 line then a DNS query",
        filter: "dnsready",
        arg: "proxy",
        sends: Sends::Parts(&[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n",
            b"\x00\x02\xab",
            b"\xcd",
        ]),
        want: 3,
    },
    Case {
        label: "partial query then FIN passes (stock accf_dns keeps holding)",
        filter: "dnsready",
        arg: "",
        sends: Sends::Parts(&[b"\x00\x10ab", b""]),
        want: 2,
    },
    Case {
        label: "partial record then FIN passes",
        filter: "tlsready",
        arg: "",
        sends: Sends::Parts(&[b"\x16\x03\x01\x00\x10ab", b""]),
        want: 2,
    },
];

/// Stock only: where stock differs from listenq on purpose.
pub(super) const STOCK_ONLY: [Case; 1] = [Case {
    label: "partial query then FIN stays held (listenq releases it)",
    filter: "dnsready",
    arg: "",
    sends: Sends::Parts(&[b"\x00\x10ab", b""]),
    want: NEVER,
}];

/// Where a case's connection became acceptable: after send `Some(k)`
/// (0: before any data), or never; and whether the accepted socket read
/// back exactly what was sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Outcome {
    pub(super) at: Option<usize>,
    pub(super) intact: bool,
}

/// Runs one case on a fresh listener; see the module doc.
pub(super) fn run_case(c: &Case) -> Result<Outcome, Failed> {
    let (l, sa) = au::filtered(-1, c.filter, c.arg).map_err(at("listener + SO_ACCEPTFILTER"))?;
    let cl = au::client(&sa).map_err(at("connect"))?;
    let mut sent = [0u8; 512];
    let mut n = 0;
    // The event "before any data" is about: the handshake done, the
    // connection on one of the listener's queues.
    if sock::wait_queued(l.raw(), 1, PASS_MS as u64).map_err(at("handshake"))? < 1 {
        return Err(Failed("handshake", Errno::TIMEOUT));
    }
    match au::try_accept(l.raw()) {
        Ok(_) => {
            return Ok(Outcome {
                at: Some(0),
                intact: true,
            })
        }
        Err(Errno::EAGAIN) => {}
        Err(e) => return Err(Failed("accept", e)),
    }
    let total = c.sends.count();
    for i in 0..total {
        let chunk = c.sends.get(i);
        if chunk.is_empty() {
            sys::shutdown(cl.raw(), sys::SHUT_WR).map_err(at("shutdown"))?;
        } else {
            au::send_all(cl.raw(), chunk).map_err(at("send"))?;
        }
        let m = chunk.len().min(sent.len() - n);
        sent[n..n + m].copy_from_slice(&chunk[..m]);
        n += m;
        let sent_by = au::Sent::Tcp {
            client: cl.raw(),
            fin: chunk.is_empty(),
        };
        let r = au::accept_after_step(l.raw(), i + 1 == c.want, sent_by);
        match r {
            Ok(a) => {
                let intact = au::reads_exactly(a.raw(), &sent[..n], 1000);
                return Ok(Outcome {
                    at: Some(i + 1),
                    intact,
                });
            }
            Err(Errno::EAGAIN) | Err(Errno::TIMEOUT) => {}
            Err(e) => return Err(Failed("accept", e)),
        }
    }
    sys::sleep_ms(200);
    match au::try_accept(l.raw()) {
        Ok(a) => {
            let intact = au::reads_exactly(a.raw(), &sent[..n], 1000);
            Ok(Outcome {
                at: Some(total + 1),
                intact,
            })
        }
        Err(Errno::EAGAIN) => Ok(Outcome {
            at: None,
            intact: true,
        }),
        Err(e) => Err(Failed("accept", e)),
    }
}

/// Runs and reports one case; returns where it passed.
pub(super) fn report_case(tap: &mut Tap, who: &str, c: &Case) -> Option<Option<usize>> {
    let how = c.sends.how();
    let mut when = crate::tap::Line::new();
    let _ = if c.want == NEVER {
        core::fmt::Write::write_fmt(
            &mut when,
            format_args!("still held after all {} {}s", c.sends.count(), how),
        )
    } else {
        core::fmt::Write::write_fmt(
            &mut when,
            format_args!(
                "accepted after {} {} of {}, not before",
                how,
                c.want,
                c.sends.count()
            ),
        )
    };
    let name = format_args!(
        "[{}] {} {}, {} by {}: {}",
        who,
        c.filter,
        c.label,
        how,
        how,
        core::str::from_utf8(when.as_bytes()).unwrap_or("?")
    );
    let want = if c.want == NEVER { None } else { Some(c.want) };
    match run_case(c) {
        Ok(o) => {
            let pass = o.at == want && o.intact;
            tap.ok(pass, name);
            if o.at != want {
                match o.at {
                    Some(k) if k > c.sends.count() => tap.diag(format_args!(
                        "  accepted only 200 ms after the last of {} sends",
                        c.sends.count()
                    )),
                    Some(k) => tap.diag(format_args!(
                        "  accepted after {} {}s (want {})",
                        k,
                        c.sends.how(),
                        c.want
                    )),
                    None => tap.diag(format_args!(
                        "  still held after all {} {}s",
                        c.sends.count(),
                        how
                    )),
                }
            }
            if !o.intact {
                tap.diag(format_args!(
                    "  the accepted socket did not read back exactly the bytes sent"
                ));
            }
            Some(o.at)
        }
        Err(Failed(step, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", step, e));
            None
        }
    }
}
