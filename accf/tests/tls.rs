mod common;

use common::stock::stock_ready_at_bytewise;
use common::{cfg, check_splits, data, ready_at};
use listenq_accf::FilterKind::Tls;

/// The handshake message inside a captured single-record ClientHello.
fn hello_message(record: &[u8]) -> Vec<u8> {
    assert_eq!(record[0], 0x16);
    let len = u16::from_be_bytes([record[3], record[4]]) as usize;
    assert_eq!(record.len(), 5 + len, "capture is one whole record");
    let msg = record[5..].to_vec();
    assert_eq!(msg[0], 1, "ClientHello");
    assert_eq!(
        u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize,
        msg.len() - 4
    );
    msg
}

/// Cuts a handshake stream into records of the given fragment sizes (the
/// last size repeats), as a TLS stack splitting a large message would.
fn records(msg: &[u8], sizes: &[usize]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut first_end = 0;
    let mut rest = msg;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i.min(sizes.len() - 1)].min(rest.len());
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        if i == 0 {
            first_end = out.len();
        }
        rest = &rest[n..];
        i += 1;
    }
    (out, first_end)
}

/// Appends a padding extension (RFC 7685) of `pad` bytes to a ClientHello
/// message, fixing up the extensions and handshake lengths.
fn pad_hello(msg: &[u8], pad: usize) -> Vec<u8> {
    let body = &msg[4..];
    let mut off = 2 + 32;
    off += 1 + body[off] as usize;
    off += 2 + u16::from_be_bytes([body[off], body[off + 1]]) as usize;
    off += 1 + body[off] as usize;
    let ext_len = u16::from_be_bytes([body[off], body[off + 1]]) as usize;
    assert_eq!(
        off + 2 + ext_len,
        body.len(),
        "walked the whole ClientHello"
    );
    let mut out = body.to_vec();
    out.extend_from_slice(&[0x00, 0x15]);
    out.extend_from_slice(&(pad as u16).to_be_bytes());
    out.resize(out.len() + pad, 0);
    let new_ext = (ext_len + 4 + pad) as u16;
    out[off..off + 2].copy_from_slice(&new_ext.to_be_bytes());
    let mut m = vec![1];
    m.extend_from_slice(&(out.len() as u32).to_be_bytes()[1..]);
    m.extend(out);
    m
}

#[test]
fn real_client_hellos_are_held_to_the_end_of_the_record() {
    for name in [
        "openssl_client_hello.bin",
        "curl_tls_client_hello.bin",
        "chromium_client_hello.bin",
    ] {
        let rec = data(name);
        hello_message(&rec);
        for arg in ["", "clienthello"] {
            check_splits(&cfg(Tls, arg), &rec, Some(rec.len()));
        }
        assert_eq!(stock_ready_at_bytewise(Tls, true, &rec), Some(rec.len()));
    }
}

/// tests/sys/kern/socket_accf.c, tls case: "foo\0" then "bar\0".
#[test]
fn freebsd_atf_tls_sequence() {
    let c = cfg(Tls, "");
    assert_eq!(ready_at(&c, b"foo\0"), None);
    check_splits(&c, b"foo\0bar\0", Some(5));
    // A header with a random length, then that many bytes of anything.
    let mut rec = vec![0x16, 0, 0, 0x12, 0x34];
    rec.resize(5 + 0x1234, 0xAA);
    check_splits(&c, &rec, Some(rec.len()));
}

#[test]
fn stock_first_record_checks() {
    let c = cfg(Tls, "");
    // Not a handshake: decided only once the header is complete.
    check_splits(&c, b"\x17\x03\x03\x00\x10rest", Some(5));
    check_splits(&c, b"GET / HTTP/1.1\r\n\r\n", Some(5));
    // Oversized or empty first record.
    check_splits(&c, b"\x16\x03\x01\x40\x01xxxx", Some(5));
    check_splits(&c, b"\x16\x03\x01\x00\x00", Some(5));
    // 2^14 is still a valid length.
    let mut max = vec![0x16, 3, 1, 0x40, 0x00];
    max.resize(5 + 16384, 7);
    assert_eq!(ready_at(&c, &max), Some(max.len()));
    // Version bytes are not checked.
    check_splits(&c, b"\x16\xff\xff\x00\x01x", Some(6));
}

#[test]
fn split_client_hello_stock_releases_after_the_first_record() {
    let msg = hello_message(&data("chromium_client_hello.bin"));
    for sizes in [&[512usize][..], &[1, 3, 700], &[3, 1]] {
        let (stream, first_end) = records(&msg, sizes);
        assert_eq!(ready_at(&cfg(Tls, ""), &stream), Some(first_end));
        assert_eq!(stock_ready_at_bytewise(Tls, true, &stream), Some(first_end));
        check_splits(&cfg(Tls, "clienthello"), &stream, Some(stream.len()));
    }
}

#[test]
fn client_hello_larger_than_a_record() {
    let msg = pad_hello(&hello_message(&data("openssl_client_hello.bin")), 20_000);
    assert!(msg.len() > 16384);
    let (stream, first_end) = records(&msg, &[16384]);
    assert_eq!(first_end, 5 + 16384);
    assert_eq!(ready_at(&cfg(Tls, ""), &stream), Some(first_end));
    assert_eq!(
        ready_at(&cfg(Tls, "clienthello"), &stream),
        Some(stream.len())
    );
    // Trailing data in the record that completes the message is waited
    // for too; the record after it is not.
    let (mut stream, _) = records(&msg, &[16384]);
    let last_hdr = 5 + 16384;
    let extra = b"\x14\x00\x00\x00";
    let n = u16::from_be_bytes([stream[last_hdr + 3], stream[last_hdr + 4]]) + 4;
    stream[last_hdr + 3..last_hdr + 5].copy_from_slice(&n.to_be_bytes());
    stream.extend_from_slice(extra);
    let end = stream.len();
    stream.extend_from_slice(b"\x14\x03\x03\x00\x01\x01");
    assert_eq!(ready_at(&cfg(Tls, "clienthello"), &stream), Some(end));
}

#[test]
fn clienthello_malformed_continuations_release_at_once() {
    let c = cfg(Tls, "clienthello");
    let msg = hello_message(&data("openssl_client_hello.bin"));
    let (good, first_end) = records(&msg, &[100]);
    // Second record of the wrong type, empty, or oversized.
    for hdr in [
        &b"\x17\x03\x03\x00\x10"[..],
        b"\x16\x03\x03\x00\x00",
        b"\x16\x03\x03\x40\x01",
    ] {
        let mut s = good[..first_end].to_vec();
        s.extend_from_slice(hdr);
        s.extend_from_slice(&good[first_end + 5..]);
        check_splits(&c, &s, Some(first_end + 5));
    }
    // Zero or impossible ClientHello lengths.
    check_splits(&c, b"\x16\x03\x01\x00\x04\x01\x00\x00\x00", Some(9));
    check_splits(&c, b"\x16\x03\x01\x00\x04\x01\x02\x01\x45rest", Some(9));
    // The largest legal length is held.
    assert_eq!(ready_at(&c, b"\x16\x03\x01\x00\x04\x01\x02\x01\x44"), None);
}

#[test]
fn clienthello_handshake_header_split_across_records() {
    let c = cfg(Tls, "clienthello");
    let msg = hello_message(&data("curl_tls_client_hello.bin"));
    for first in 1..=4 {
        let (stream, _) = records(&msg, &[first, 4096]);
        check_splits(&c, &stream, Some(stream.len()));
    }
}

#[test]
fn clienthello_other_first_messages_keep_stock_behaviour() {
    let c = cfg(Tls, "clienthello");
    // A ServerHello-typed message claiming more than the record: stock
    // releases at the end of the record, and so does the extension.
    let s = b"\x16\x03\x03\x00\x06\x02\x00\x10\x00abNEXT";
    check_splits(&c, s, Some(11));
    check_splits(&cfg(Tls, ""), s, Some(11));
}
