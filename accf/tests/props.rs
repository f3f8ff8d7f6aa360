mod common;

use common::stock::{stock_ready_at, stock_ready_at_bytewise};
use common::{ready_at, ready_at_chunked};
use listenq_accf::{parse_af_arg, Config, Conn, FilterKind, HttpMethods, ProxyMode, TimeoutAction};
use proptest::prelude::*;

const V1_SIG: &[u8] = b"PROXY ";
const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn kind() -> impl Strategy<Value = FilterKind> {
    prop::sample::select(FilterKind::ALL.to_vec())
}

fn config() -> impl Strategy<Value = Config> {
    (
        kind(),
        prop::sample::select(vec![
            ProxyMode::Off,
            ProxyMode::Optional,
            ProxyMode::Required,
        ]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(kind, proxy, all, h2, pv, ch)| Config {
            proxy,
            http_methods: if all {
                HttpMethods::All
            } else {
                HttpMethods::Stock
            },
            http_h2: h2,
            http_parse_version: pv,
            tls_clienthello: ch,
            ..Config::stock(kind)
        })
}

/// Pieces that steer the parsers into their deeper states far more often
/// than uniform bytes would.
fn token() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static [u8]> = vec![
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"PUT ",
        b"PATCH ",
        b"OPTIONS ",
        b"CONNECT ",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"PRI",
        b" ",
        b"  ",
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\n\r\n",
        b"\n\n",
        b"\n\r\n",
        b"HTTP/1.",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"0",
        b"1",
        b"/",
        b"x",
        b"PROXY ",
        b"TCP4 ",
        b"TCP6 ",
        b"UNKNOWN",
        b"1.2.3.4",
        b"::1",
        b"65535",
        V2_SIG,
        b"\x21\x11\x00\x0c",
        b"\x20\x00\x00\x00",
        b"\x16\x03\x01",
        b"\x00",
        b"\x01",
    ];
    prop_oneof![
        4 => prop::sample::select(words).prop_map(|w| w.to_vec()),
        1 => any::<u8>().prop_map(|len| vec![0x16, 3, 1, 0, len]),
        1 => any::<u8>().prop_map(|len| vec![1, 0, 0, len]),
        1 => any::<u8>().prop_map(|len| vec![0, len]),
        2 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// A plausible start (so that most cases get past the first decision),
/// then tokens.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let starts: Vec<&'static [u8]> = vec![
        b"",
        b"GET / HTTP/1.1\r\n",
        b"HEAD /x HTTP/1.0\r\nHost: a\r\n",
        b"GET /",
        b"GET ",
        b"POST /p HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"\x16\x03\x01\x00\x20\x01\x00\x00",
        b"\x16\x03\x01\x00",
        b"\x00\x10",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWN",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
    ];
    prop_oneof![
        4 => (prop::sample::select(starts), prop::collection::vec(token(), 0..24))
            .prop_map(|(s, t)| [s.to_vec(), t.concat()].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn with_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    input().prop_flat_map(|v| {
        let n = v.len();
        (Just(v), prop::collection::vec(0..=n, 0..12)).prop_map(|(v, mut cuts)| {
            cuts.sort_unstable();
            (v, cuts)
        })
    })
}

/// First chunk end at or after byte count `r`.
fn chunk_end(r: usize, cuts: &[usize], len: usize) -> usize {
    cuts.iter().copied().find(|&c| c >= r).unwrap_or(len)
}

fn valid_proxy_header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| {
                format!(
                    "PROXY TCP4 {}.{}.{}.{} {}.{}.{}.{} {sp} {dp}\r\n",
                    s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]
                )
                .into_bytes()
            }),
        (any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
            let (s, d) = (std::net::Ipv6Addr::from(s), std::net::Ipv6Addr::from(d));
            format!("PROXY TCP6 {s} {d} {sp} {dp}\r\n").into_bytes()
        }),
        "[ -~]{0,80}".prop_map(|rest| format!("PROXY UNKNOWN {rest}\r\n").into_bytes()),
        (
            prop::sample::select(vec![0x00u8, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(fam, local, tlv)| {
                let min = match fam {
                    0x11 | 0x12 => 12,
                    0x21 | 0x22 => 36,
                    0x31 | 0x32 => 216,
                    _ => 0,
                };
                let mut block = vec![0xa5; min];
                block.extend(tlv);
                let mut h = V2_SIG.to_vec();
                h.push(if local { 0x20 } else { 0x21 });
                h.push(fam);
                h.extend_from_slice(&(block.len() as u16).to_be_bytes());
                h.extend(block);
                h
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Never panics; the Ready point does not depend on chunking; Ready
    /// sticks (checked inside ready_at_chunked).
    #[test]
    fn chunking_invariance(cfg in config(), (v, cuts) in with_cuts()) {
        let r = ready_at(&cfg, &v);
        let chunked = ready_at_chunked(&cfg, &v, &cuts);
        prop_assert_eq!(chunked, r.map(|r| chunk_end(r, &cuts, v.len())));
    }

    /// Against the transliterated C, with an upcall after every byte:
    /// exact agreement for every stock filter.
    #[test]
    fn stock_bytewise(k in kind(), pv in any::<bool>(), v in input()) {
        let cfg = Config { http_parse_version: pv, ..Config::stock(k) };
        prop_assert_eq!(ready_at(&cfg, &v), stock_ready_at_bytewise(k, pv, &v));
    }

    /// With arbitrary upcall boundaries: exact for data/dns/tls; httpready
    /// is never later than stock (see the crate docs on the tail check).
    #[test]
    fn stock_chunked(k in kind(), pv in any::<bool>(), (v, cuts) in with_cuts()) {
        let cfg = Config { http_parse_version: pv, ..Config::stock(k) };
        let ours = ready_at_chunked(&cfg, &v, &cuts);
        let stock = stock_ready_at(k, pv, &v, &cuts);
        if k == FilterKind::Http {
            prop_assert!(stock.is_none() || ours.is_some_and(|o| o <= stock.unwrap()),
                "ours {:?} stock {:?}", ours, stock);
        } else {
            prop_assert_eq!(ours, stock);
        }
    }

    /// A valid PROXY header shifts the Ready point by its length and
    /// changes nothing else.
    #[test]
    fn proxy_header_is_transparent(
        cfg in config(), h in valid_proxy_header(), v in input(), required in any::<bool>(),
    ) {
        let plain = Config { proxy: ProxyMode::Off, ..cfg };
        let proxied = Config {
            proxy: if required { ProxyMode::Required } else { ProxyMode::Optional },
            ..cfg
        };
        let mut whole = h.clone();
        whole.extend_from_slice(&v);
        prop_assert_eq!(ready_at(&proxied, &whole), ready_at(&plain, &v).map(|r| r + h.len()));
    }

    /// Without a complete signature, optional PROXY is the plain filter,
    /// except that nothing is decided while the input is still a signature
    /// prefix; required releases at that same point.
    #[test]
    fn proxy_without_signature(cfg in config(), v in input()) {
        // Where the input stops matching a signature: None while it is
        // still a proper prefix of one, usize::MAX if it holds one whole.
        let diverge = |sig: &[u8]| match v.iter().zip(sig).position(|(a, b)| a != b) {
            Some(i) => Some(i),
            None if v.len() >= sig.len() => Some(usize::MAX),
            None => None,
        };
        let diverge = match (diverge(V1_SIG), diverge(V2_SIG)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        prop_assume!(diverge != Some(usize::MAX));
        let plain = Config { proxy: ProxyMode::Off, ..cfg };
        let opt = Config { proxy: ProxyMode::Optional, ..cfg };
        let req = Config { proxy: ProxyMode::Required, ..cfg };
        match diverge {
            None => {
                prop_assert_eq!(ready_at(&opt, &v), None);
                prop_assert_eq!(ready_at(&req, &v), None);
            }
            Some(d) => {
                prop_assert_eq!(ready_at(&opt, &v), ready_at(&plain, &v).map(|r| r.max(d + 1)));
                prop_assert_eq!(ready_at(&req, &v), Some(d + 1));
            }
        }
    }

    #[test]
    fn af_arg_never_panics(k in kind(), arg in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_af_arg(k, &arg);
    }

    #[test]
    fn af_arg_round_trip(cfg in config(), t in any::<u32>(), drop in any::<bool>()) {
        let cfg = Config {
            hold_timeout_ms: Some(t),
            on_timeout: Some(if drop { TimeoutAction::Drop } else { TimeoutAction::Deliver }),
            ..cfg
        };
        let mut opts = vec![
            format!("proxy={}", match cfg.proxy {
                ProxyMode::Off => "off", ProxyMode::Optional => "optional",
                ProxyMode::Required => "required",
            }),
            format!("timeout={t}"),
            format!("ontimeout={}", if drop { "drop" } else { "deliver" }),
        ];
        let mut expect = Config { ..Config::stock(cfg.kind) };
        expect.proxy = cfg.proxy;
        expect.hold_timeout_ms = cfg.hold_timeout_ms;
        expect.on_timeout = cfg.on_timeout;
        match cfg.kind {
            FilterKind::Http => {
                opts.push(format!("methods={}",
                    if cfg.http_methods == HttpMethods::All { "all" } else { "stock" }));
                opts.push(format!("parsehttpversion={}", u8::from(cfg.http_parse_version)));
                if cfg.http_h2 { opts.push("h2".into()); }
                expect.http_methods = cfg.http_methods;
                expect.http_parse_version = cfg.http_parse_version;
                expect.http_h2 = cfg.http_h2;
            }
            FilterKind::Tls => {
                if cfg.tls_clienthello { opts.push("clienthello".into()); }
                expect.tls_clienthello = cfg.tls_clienthello;
            }
            FilterKind::Data | FilterKind::Dns => {}
        }
        prop_assert_eq!(parse_af_arg(cfg.kind, opts.join(",").as_bytes()), Ok(expect));
    }
}

/// Record streams for the clienthello extension: mostly well-framed
/// handshake records whose first body bytes are often a ClientHello header.
fn tls_stream() -> impl Strategy<Value = Vec<u8>> {
    let record = (
        prop_oneof![8 => Just(0x16u8), 1 => any::<u8>()],
        prop::collection::vec(any::<u8>(), 0..40),
        prop_oneof![9 => Just(None), 1 => any::<u16>().prop_map(Some)],
    )
        .prop_map(|(typ, body, len)| {
            let len = len.unwrap_or(body.len() as u16);
            [vec![typ, 3, 1], len.to_be_bytes().to_vec(), body].concat()
        });
    (
        prop::option::of(0u32..150),
        prop::collection::vec(record, 1..8),
    )
        .prop_map(|(hs, recs)| {
            let mut v = recs.concat();
            if let Some(l) = hs {
                for (i, b) in [1, 0, (l >> 8) as u8, l as u8].into_iter().enumerate() {
                    if let Some(x) = v.get_mut(5 + i) {
                        *x = b;
                    }
                }
            }
            v
        })
}

/// The clienthello extension written the obvious way, indexing into the
/// whole buffer: the Ready byte count, or None to keep holding.
fn clienthello_model(buf: &[u8]) -> Option<usize> {
    const MAX: usize = 131_396;
    let mut hs: Vec<u8> = Vec::new();
    let mut need: Option<usize> = None; // handshake bytes that end the hello
    let mut hdr = 0;
    loop {
        let h = buf.get(hdr..hdr + 5)?;
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if h[0] != 0x16 || len == 0 || len > 16384 {
            return Some(hdr + 5);
        }
        let end = hdr + 5 + len;
        for i in hdr + 5..end {
            hs.push(*buf.get(i)?);
            if hs == [0x01][..] {
                // A ClientHello so far.
            } else if hs.len() == 1 {
                need = Some(0); // Not a ClientHello: stock, end of record.
            }
            if hs.len() == 4 && need.is_none() {
                let l = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
                if l == 0 || l > MAX {
                    return Some(i + 1);
                }
                need = Some(4 + l);
            }
        }
        if need.is_some_and(|n| hs.len() >= n) {
            return (buf.len() >= end).then_some(end);
        }
        hdr = end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn clienthello_matches_model((v, cuts) in tls_stream().prop_flat_map(|v| {
        let n = v.len();
        (Just(v), prop::collection::vec(0..=n, 0..6))
    })) {
        let cfg = Config { tls_clienthello: true, ..Config::stock(FilterKind::Tls) };
        let mut cuts = cuts;
        cuts.sort_unstable();
        let want = clienthello_model(&v);
        prop_assert_eq!(ready_at(&cfg, &v), want);
        prop_assert_eq!(ready_at_chunked(&cfg, &v, &cuts), want.map(|r| chunk_end(r, &cuts, v.len())));
    }
}

#[test]
fn conn_is_small() {
    assert!(
        std::mem::size_of::<Conn>() <= 64,
        "{}",
        std::mem::size_of::<Conn>()
    );
    assert!(std::mem::size_of::<Config>() <= 32);
}

#[test]
fn conn_fits_twelve_bytes() {
    // The kernel keeps one per held connection; listenq(4) and
    // kmod/src/filters.rs count on it.
    assert!(
        std::mem::size_of::<Conn>() <= 12,
        "{}",
        std::mem::size_of::<Conn>()
    );
    assert!(std::mem::align_of::<Conn>() <= 4);
}
