//! Shared test helpers: split-point checking and a line-by-line
//! transliteration of the stock C filters to compare against.
#![allow(dead_code)]

pub mod stock;

use listenq_accf::{parse_af_arg, Config, Conn, FilterKind, Progress};

pub fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn cfg(kind: FilterKind, arg: &str) -> Config {
    parse_af_arg(kind, arg.as_bytes()).unwrap_or_else(|e| panic!("{arg:?}: {e:?}"))
}

/// Feeds one byte at a time; the number of bytes consumed when Ready was
/// first returned, or None.
pub fn ready_at(cfg: &Config, input: &[u8]) -> Option<usize> {
    let mut c = Conn::new(cfg);
    for (i, b) in input.iter().enumerate() {
        if c.feed(cfg, std::slice::from_ref(b)) == Progress::Ready {
            return Some(i + 1);
        }
    }
    None
}

/// Feeds `input` cut at `cuts` (sorted offsets) and returns the number of
/// bytes fed when Ready was first returned, checking on the way that Ready
/// and `is_ready` agree and stick.
pub fn ready_at_chunked(cfg: &Config, input: &[u8], cuts: &[usize]) -> Option<usize> {
    let mut c = Conn::new(cfg);
    let mut first = None;
    let mut start = 0;
    for end in cuts.iter().copied().chain(std::iter::once(input.len())) {
        let p = c.feed(cfg, &input[start..end]);
        assert_eq!(p == Progress::Ready, c.is_ready());
        match (first, p) {
            (None, Progress::Ready) => first = Some(end),
            (Some(_), Progress::NeedMore) => panic!("Ready did not stick"),
            _ => {}
        }
        start = end;
    }
    if first.is_some() {
        assert_eq!(c.feed(cfg, b"more"), Progress::Ready);
        assert_eq!(c.feed(cfg, b""), Progress::Ready);
    }
    first
}

/// The brief's split-point check: `input` must be NeedMore for every
/// proper prefix shorter than `expected` bytes and Ready once it has them,
/// fed byte by byte and in every two-way split.
pub fn check_splits(cfg: &Config, input: &[u8], expected: Option<usize>) {
    assert_eq!(
        ready_at(cfg, input),
        expected,
        "byte by byte, {cfg:?}, input {:?}",
        String::from_utf8_lossy(input)
    );
    for cut in 0..=input.len() {
        let want = expected.map(|r| if r <= cut { cut } else { input.len() });
        assert_eq!(
            ready_at_chunked(cfg, input, &[cut]),
            want,
            "split at {cut}, {cfg:?}"
        );
    }
    // One chunk, as when everything arrived before the first upcall.
    assert_eq!(
        ready_at_chunked(cfg, input, &[]),
        expected.map(|_| input.len())
    );
}
