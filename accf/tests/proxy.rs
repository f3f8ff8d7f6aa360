mod common;

use common::{cfg, check_splits, data, ready_at};
use listenq_accf::FilterKind::{self, Data, Dns, Http, Tls};

const V2_SIG: &[u8] = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a";

/// A v2 header per haproxy proxy-protocol.txt section 2.2.
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

fn v2_tcp4() -> Vec<u8> {
    // 192.0.2.1:56324 -> 198.51.100.7:443
    v2(
        0x21,
        0x11,
        b"\xc0\x00\x02\x01\xc6\x33\x64\x07\xdc\x04\x01\xbb",
    )
}

fn v2_tcp6_with_tlvs() -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    block.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    block.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
    // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com".
    block.extend_from_slice(b"\x01\x00\x02h2");
    block.extend_from_slice(b"\x02\x00\x0bexample.com");
    v2(0x21, 0x21, &block)
}

fn v2_unix() -> Vec<u8> {
    let mut block = vec![0u8; 216];
    block[..8].copy_from_slice(b"/tmp/src");
    block[108..116].copy_from_slice(b"/tmp/dst");
    v2(0x21, 0x31, &block)
}

fn v2_local() -> Vec<u8> {
    v2(0x20, 0x00, b"")
}

fn with(header: &[u8], payload: &[u8]) -> Vec<u8> {
    [header, payload].concat()
}

/// For every valid header and every filter, the filter judges the bytes
/// after the header exactly as it judges them without one.
#[test]
fn valid_headers_are_transparent() {
    let v1_curl = data("curl_proxy_v1.bin");
    let v1_len = v1_curl.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let headers: Vec<Vec<u8>> = vec![
        v1_curl[..v1_len].to_vec(),
        b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n".to_vec(),
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"PROXY UNKNOWN whatever the sender likes\r\n".to_vec(),
        v2_tcp4(),
        v2_tcp6_with_tlvs(),
        v2_unix(),
        v2_local(),
        // LOCAL ignores the family and the block.
        v2(0x20, 0xff, b"junk"),
        v2(0x21, 0x00, b""),
    ];
    let payloads: [(FilterKind, &str, Vec<u8>); 5] = [
        (Http, "", data("curl_get.bin")),
        (Http, "methods=all", data("curl_post.bin")),
        (Tls, "clienthello", data("chromium_client_hello.bin")),
        (Dns, "", data("dig_tcp.bin")),
        (Data, "", b"x".to_vec()),
    ];
    for h in &headers {
        for (kind, arg, p) in &payloads {
            let plain = ready_at(&cfg(*kind, arg), p).expect("payload alone is Ready");
            for mode in ["proxy", "proxy=optional", "proxy=required"] {
                let arg = if arg.is_empty() {
                    mode.to_string()
                } else {
                    format!("{arg},{mode}")
                };
                check_splits(&cfg(*kind, &arg), &with(h, p), Some(h.len() + plain));
            }
        }
        // A header with nothing after it is not data yet.
        check_splits(&cfg(Data, "proxy"), h, None);
    }
}

#[test]
fn curl_haproxy_protocol_capture() {
    let req = data("curl_proxy_v1.bin");
    check_splits(&cfg(Http, "proxy"), &req, Some(req.len()));
    check_splits(&cfg(Http, "proxy=required"), &req, Some(req.len()));
    // Without proxy, stock sees a 'P' request and releases it.
    check_splits(&cfg(Http, "proxy=off"), &req, Some(2));
}

#[test]
fn optional_without_header_is_stock() {
    for (kind, name) in [
        (Http, "curl_get.bin"),
        (Http, "chromium_get.bin"),
        (Http, "curl_post.bin"),
        (Tls, "openssl_client_hello.bin"),
        (Dns, "dig_tcp.bin"),
    ] {
        let p = data(name);
        let stock = ready_at(&cfg(kind, ""), &p);
        check_splits(&cfg(kind, "proxy"), &p, stock);
    }
}

/// Bytes consumed while the input still looked like a signature are
/// replayed to the filter.
#[test]
fn optional_replays_a_signature_prefix() {
    // "PR" matches "PROXY ", then 'I': the h2 preface must still be seen
    // whole by httpready.
    let pre = data("curl_h2_prior.bin");
    check_splits(&cfg(Http, "h2,proxy"), &pre, Some(24));
    // DNS length 0x0d0a: 3338 bytes, the first two look like v2.
    let mut q = vec![0x0d, 0x0a, 0x41];
    q.resize(2 + 0x0d0a, 0);
    check_splits(&cfg(Dns, "proxy"), &q, Some(q.len()));
    // Stock httpready decides "PROX" only at byte 2, but the proxy layer
    // holds it until the signature is ruled out.
    check_splits(&cfg(Http, "proxy"), b"PROXIMITY", Some(5));
    check_splits(&cfg(Http, "proxy"), b"\r\n\r\n\x00\r\nQUITX", Some(12));
}

#[test]
fn required_releases_anything_else_at_once() {
    let c = cfg(Http, "proxy=required");
    check_splits(&c, &data("curl_get.bin"), Some(1));
    check_splits(&c, b"PROXIMITY", Some(5));
    check_splits(&c, b"\r\n\r\n\x00\r\nQUITX", Some(12));
    check_splits(
        &cfg(Tls, "proxy=required"),
        &data("openssl_client_hello.bin"),
        Some(1),
    );
}

#[test]
fn malformed_v1_is_released_where_it_breaks() {
    for mode in ["proxy", "proxy=required"] {
        let c = cfg(Http, mode);
        for (line, at) in [
            (&b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..], 10),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 20),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 31),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17),
            (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", 16),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", 33),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32),
            (b"PROXY UNKNOWN\n", 14),
            (b"PROXY UNKNOWNX", 14),
            (b"PROXY  TCP4", 7),
        ] {
            check_splits(&c, line, Some(at));
        }
    }
}

#[test]
fn v1_line_limit_is_107_bytes() {
    let c = cfg(Data, "proxy");
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(105, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), 107);
    check_splits(&c, &with(&line, b"!"), Some(108));
    let mut long = line[..105].to_vec();
    long.extend_from_slice(b"x\r\n");
    check_splits(&c, &long, Some(108));
}

#[test]
fn malformed_v2_is_released_where_it_breaks() {
    for mode in ["proxy", "proxy=required"] {
        let c = cfg(Data, mode);
        // Version 1, command 2, unknown family, short address blocks.
        check_splits(&c, &v2(0x11, 0x11, &[0; 12]), Some(13));
        check_splits(&c, &v2(0x22, 0x11, &[0; 12]), Some(13));
        check_splits(&c, &v2(0x21, 0x13, &[0; 12]), Some(14));
        check_splits(&c, &v2(0x21, 0x41, &[0; 12]), Some(14));
        check_splits(&c, &v2(0x21, 0x11, &[0; 11]), Some(16));
        check_splits(&c, &v2(0x21, 0x21, &[0; 35]), Some(16));
        check_splits(&c, &v2(0x21, 0x32, &[0; 215]), Some(16));
    }
}

#[test]
fn v2_in_front_of_tls_and_large_tlv_blocks() {
    let hello = data("chromium_client_hello.bin");
    let big = v2(0x21, 0x11, &[0x5a; 65535]);
    check_splits(
        &cfg(Tls, "proxy"),
        &with(&v2_tcp4(), &hello),
        Some(28 + hello.len()),
    );
    assert_eq!(
        ready_at(&cfg(Tls, "proxy=required"), &with(&big, &hello)),
        Some(big.len() + hello.len())
    );
}
