mod common;

use common::stock::stock_ready_at_bytewise;
use common::{cfg, check_splits, data, ready_at};
use listenq_accf::FilterKind::Dns;

#[test]
fn dig_query_is_held_until_its_last_byte() {
    let q = data("dig_tcp.bin");
    assert_eq!(u16::from_be_bytes([q[0], q[1]]) as usize + 2, q.len());
    check_splits(&cfg(Dns, ""), &q, Some(q.len()));
    assert_eq!(stock_ready_at_bytewise(Dns, true, &q), Some(q.len()));
}

#[test]
fn pipelined_queries_release_at_the_first() {
    let q = data("dig_tcp.bin");
    let two = [q.clone(), q.clone()].concat();
    check_splits(&cfg(Dns, ""), &two, Some(q.len()));
}

#[test]
fn only_the_length_prefix_is_checked() {
    let c = cfg(Dns, "");
    // Zero length: the prefix alone is a complete (empty) message.
    check_splits(&c, b"\x00\x00", Some(2));
    check_splits(&c, b"\x00\x03abcdef", Some(5));
    assert_eq!(ready_at(&c, b"\x00"), None);
    let mut big = vec![0xff, 0xff];
    big.resize(2 + 0xffff, b'x');
    assert_eq!(ready_at(&c, &big[..big.len() - 1]), None);
    assert_eq!(ready_at(&c, &big), Some(big.len()));
}
