mod common;

use common::{cfg, check_splits};
use listenq_accf::{Conn, FilterKind::Data, Progress};

/// tests/sys/kern/socket_accf.c, data case, and any first byte.
#[test]
fn first_byte_is_ready() {
    let c = cfg(Data, "");
    check_splits(&c, b"foo\0", Some(1));
    for b in 0..=255u8 {
        check_splits(&c, &[b], Some(1));
    }
}

#[test]
fn empty_chunks_are_not_data() {
    let c = cfg(Data, "");
    let mut conn = Conn::new(&c);
    assert_eq!(conn.feed(&c, b""), Progress::NeedMore);
    assert!(!conn.is_ready());
    assert_eq!(conn.feed(&c, b"x"), Progress::Ready);
}
