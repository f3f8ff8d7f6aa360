mod common;

use common::stock::{stock_ready_at, stock_ready_at_bytewise};
use common::{cfg, check_splits, data, ready_at};
use listenq_accf::FilterKind::Http;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn end_of_head(req: &[u8]) -> usize {
    req.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no CRLFCRLF")
        + 4
}

#[test]
fn curl_get_is_held_until_the_last_byte() {
    let req = data("curl_get.bin");
    assert_eq!(end_of_head(&req), req.len());
    check_splits(&cfg(Http, ""), &req, Some(req.len()));
}

#[test]
fn chromium_get_is_held_until_the_last_byte() {
    let req = data("chromium_get.bin");
    assert_eq!(end_of_head(&req), req.len());
    check_splits(&cfg(Http, ""), &req, Some(req.len()));
}

#[test]
fn curl_head_http10() {
    let req = data("curl_head_http10.bin");
    assert!(req.starts_with(b"HEAD /x HTTP/1.0\r\n"));
    check_splits(&cfg(Http, ""), &req, Some(req.len()));
}

/// tests/sys/kern/socket_accf.c, http case.
#[test]
fn freebsd_atf_http_sequence() {
    let c = cfg(Http, "");
    // "foo" with its NUL: not HTTP, released once two bytes are in.
    check_splits(&c, b"foo\0", Some(2));
    let req = b"GET / HTTP/1.0\r\n\n";
    check_splits(&c, req, Some(req.len()));
    assert_eq!(ready_at(&c, b"GET / "), None);
}

#[test]
fn stock_waits_for_two_bytes_even_when_the_first_rules_http_out() {
    let c = cfg(Http, "");
    assert_eq!(ready_at(&c, b"X"), None);
    check_splits(&c, b"XY", Some(2));
    check_splits(&c, b"GX", Some(2));
    check_splits(&c, b"GEX", Some(3));
    check_splits(&c, b"GETX", Some(4));
    check_splits(&c, b"HEADX", Some(5));
    check_splits(&c, b"HEAD", None);
}

#[test]
fn stock_releases_other_methods_after_two_bytes() {
    let c = cfg(Http, "");
    check_splits(&c, &data("curl_post.bin"), Some(2));
    check_splits(&c, &data("curl_put.bin"), Some(2));
    check_splits(&c, &data("curl_h2_prior.bin"), Some(2));
    check_splits(&c, b"OPTIONS * HTTP/1.1\r\n\r\n", Some(2));
}

#[test]
fn http09_request_ends_at_the_first_line() {
    let c = cfg(Http, "");
    check_splits(&c, b"GET /index.html\r\n", Some(16));
    check_splits(&c, b"GET /\n", Some(6));
    // A CR/LF anywhere before the version, even in the method's spaces.
    check_splits(&c, b"GET \r\n", Some(5));
}

#[test]
fn version_must_be_http_1_0_or_1_1() {
    let c = cfg(Http, "");
    check_splits(&c, b"GET / HTTP/1.2\r\n\r\n", Some(14));
    check_splits(&c, b"GET / HTTP/2.0\r\n\r\n", Some(12));
    check_splits(&c, b"GET / http/1.1\r\n\r\n", Some(7));
    check_splits(&c, b"GET / HTTP/1.\r\n\r\n", Some(14));
    // Third field is not the version: decided on its first byte.
    check_splits(&c, b"GET / x HTTP/1.1\r\n\r\n", Some(7));
    // Only 8 bytes are compared, as stock does.
    let req = b"GET / HTTP/1.10\r\n\r\n";
    check_splits(&c, req, Some(req.len()));
    // Space runs count once, tabs are not spaces.
    let req = b"GET   /a   HTTP/1.1\r\n\r\n";
    check_splits(&c, req, Some(req.len()));
    check_splits(&c, b"GET /\tHTTP/1.1\r\n\r\n", Some(15));
}

#[test]
fn end_of_headers_accepts_lf_lf_and_lf_crlf() {
    let c = cfg(Http, "");
    for req in [
        &b"GET / HTTP/1.1\nHost: a\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\n\n",
    ] {
        check_splits(&c, req, Some(req.len()));
    }
    // CR CR LF is no blank line; LF CR CR LF is not either.
    check_splits(&c, b"GET / HTTP/1.1\r\nA: b\r\r\n", None);
    check_splits(&c, b"GET / HTTP/1.1\r\nA: b\n\r\r\n", None);
}

#[test]
fn parsehttpversion_0_skips_the_request_line() {
    let c = cfg(Http, "parsehttpversion=0");
    check_splits(&c, b"GET /\r\n", None);
    check_splits(&c, b"GET /\r\n\r\n", Some(9));
    check_splits(&c, b"GET / HTTP/2.0\r\n\r\n", Some(18));
    let req = data("curl_get.bin");
    check_splits(&c, &req, Some(req.len()));
}

#[test]
fn methods_all_holds_every_method_until_the_end_of_headers() {
    let c = cfg(Http, "methods=all");
    // Both carry a body after the head: the body is not waited for.
    for name in ["curl_post.bin", "curl_put.bin"] {
        let req = data(name);
        let head = end_of_head(&req);
        assert!(head < req.len(), "{name} has a body");
        check_splits(&c, &req, Some(head));
    }
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ] {
        let req = format!("{m} /x HTTP/1.1\r\nHost: a\r\n\r\n");
        check_splits(&c, req.as_bytes(), Some(req.len()));
    }
    check_splits(&c, b"PUTX", Some(4));
    check_splits(&c, b"PATCHY", Some(6));
    // Methods are case-sensitive (RFC 9110 9.1).
    check_splits(&c, b"post / HTTP/1.1\r\n\r\n", Some(2));
    // The preface is not a method unless h2 is on.
    check_splits(&c, H2_PREFACE, Some(2));
}

#[test]
fn h2_holds_the_preface_until_all_24_bytes() {
    let c = cfg(Http, "h2");
    let req = data("curl_h2_prior.bin");
    assert!(req.starts_with(H2_PREFACE) && req.len() > 24);
    check_splits(&c, &req, Some(24));
    check_splits(&c, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r", Some(24));
    check_splits(&c, b"PRI * HTTP/1.1\r\n\r\n", Some(12));
    // GET and HEAD keep stock behaviour; the rest is still released early.
    let get = data("curl_get.bin");
    check_splits(&c, &get, Some(get.len()));
    check_splits(&c, &data("curl_post.bin"), Some(2));
    let both = cfg(Http, "methods=all,h2");
    check_splits(&both, &req, Some(24));
    let post = data("curl_post.bin");
    check_splits(&both, &post, Some(end_of_head(&post)));
}

#[test]
fn pipelined_requests_release_at_the_first_head() {
    let req = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    check_splits(&cfg(Http, ""), req, Some(19));
}

/// The one place where the incremental parser differs from stock on
/// purpose: stock looks at the last three buffered bytes only, so a head
/// followed by more data in the same upcall is held.
#[test]
fn stock_tail_check_depends_on_segmentation_and_ours_does_not() {
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nleftover";
    let head = req.len() - "leftover".len();
    assert_eq!(stock_ready_at(Http, true, req, &[]), None);
    assert_eq!(stock_ready_at(Http, true, req, &[head]), Some(head));
    check_splits(&cfg(Http, ""), req, Some(head));
}

/// With an upcall after every byte, stock and the parser must agree on
/// every request above.
#[test]
fn real_requests_match_stock_bytewise() {
    for name in [
        "curl_get.bin",
        "chromium_get.bin",
        "curl_head_http10.bin",
        "curl_post.bin",
        "curl_put.bin",
        "curl_h2_prior.bin",
        "curl_proxy_v1.bin",
    ] {
        let req = data(name);
        for (arg, pv) in [("", true), ("parsehttpversion=0", false)] {
            assert_eq!(
                ready_at(&cfg(Http, arg), &req),
                stock_ready_at_bytewise(Http, pv, &req),
                "{name} {arg}"
            );
        }
    }
}
