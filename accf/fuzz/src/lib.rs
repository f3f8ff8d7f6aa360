//! The check every filter target runs: the fuzzer's first two bytes pick
//! the extension flags and a chunking seed, the rest is the connection's
//! byte stream.

use listenq_accf::{Config, Conn, FilterKind, HttpMethods, Progress, ProxyMode};

pub fn config(kind: FilterKind, flags: u8) -> Config {
    Config {
        proxy: match flags & 3 {
            0 | 3 => ProxyMode::Off,
            1 => ProxyMode::Optional,
            _ => ProxyMode::Required,
        },
        http_methods: if flags & 4 != 0 {
            HttpMethods::All
        } else {
            HttpMethods::Stock
        },
        http_h2: flags & 8 != 0,
        http_parse_version: flags & 16 == 0,
        tls_clienthello: flags & 32 != 0,
        ..Config::stock(kind)
    }
}

/// Feeds `input` byte by byte and again in pseudo-random chunks, and
/// panics (a fuzzer finding) if the two disagree on where Ready happens or
/// if Ready does not stick.
pub fn check(kind: FilterKind, data: &[u8]) {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    let cfg = config(kind, *flags);

    let mut c = Conn::new(&cfg);
    let mut at = None;
    for (i, b) in input.iter().enumerate() {
        if c.feed(&cfg, core::slice::from_ref(b)) == Progress::Ready {
            at = Some(i + 1);
            break;
        }
    }

    let mut c = Conn::new(&cfg);
    let mut state = u32::from(*seed) | 1;
    let mut start = 0;
    let mut chunked = None;
    while start < input.len() {
        // xorshift: chunk sizes 0..=31 bytes.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let end = (start + (state % 32) as usize).min(input.len());
        let p = c.feed(&cfg, &input[start..end]);
        assert_eq!(p == Progress::Ready, c.is_ready());
        match (chunked, p) {
            (None, Progress::Ready) => chunked = Some((start, end)),
            (Some(_), Progress::NeedMore) => panic!("Ready did not stick"),
            _ => {}
        }
        start = end;
    }
    match (at, chunked) {
        (None, None) => {}
        (Some(r), Some((s, e))) => assert!(s < r && r <= e, "byte {r} vs chunk {s}..{e}"),
        _ => panic!("bytewise {at:?} chunked {chunked:?}"),
    }
}
