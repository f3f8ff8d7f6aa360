//! The module's own view of listeners (issue "listen(2) semantics ...,
//! per-listener visibility"): kern.ipc.listenq.listeners (text),
//! kern.ipc.listenq.xlisteners (struct xlistenq[]) and
//! kern.ipc.listenq.stats.*, checked against what the test itself did.
//! Run while listenq is loaded.

use crate::env::{Env, KO_NAME, KO_PATH};
use crate::kld;
use crate::net::{self, SockAddr};
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd};
use crate::sysctl;
use crate::table::{self, addr_text, find_row, Row, Writer, COL_JID, COL_UID};
use crate::tap::Tap;

const TABLE: &str = "kern.ipc.listenq.listeners";
const XTABLE: &str = "kern.ipc.listenq.xlisteners";

/// Reads the table and calls `f` with this listener's row (None if absent).
fn with_row<R>(kind: Kind, sa: &SockAddr, f: impl FnOnce(Option<Row>) -> R) -> R {
    let mut a = [0u8; 96];
    let n = addr_text(kind, sa, &mut a);
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    match sysctl::read_string(TABLE, buf) {
        Ok(t) => f(find_row(t, &a[..n])),
        Err(_) => f(None),
    }
}

fn stat(name: &str) -> u64 {
    let mut full = [0u8; 64];
    let p = b"kern.ipc.listenq.stats.";
    full[..p.len()].copy_from_slice(p);
    full[p.len()..p.len() + name.len()].copy_from_slice(name.as_bytes());
    let s = core::str::from_utf8(&full[..p.len() + name.len()]).unwrap_or("");
    sysctl::read_u64(s).unwrap_or(u64::MAX)
}

/// 12 clients against listen(4): 7 queued, 5 refused; then 7 accepts.
fn counters(tap: &mut Tap, kind: Kind) {
    let label = kind.label();
    let (l, sa) = match sock::listener(kind, 4) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(
                false,
                format_args!("listeners table ({}): listener: {}", label, e),
            );
            return;
        }
    };
    let over0 = stat("overflows");
    let acc0 = stat("accepted");
    let mut clients: [Option<Fd>; 12] = Default::default();
    for (i, c) in clients.iter_mut().enumerate() {
        *c = sock::connect(kind, &sa).ok();
        if kind.is_tcp() {
            let want = (i as i32 + 1).min(7);
            let _ = sock::wait_qlen(l.raw(), want, 300);
            sys::sleep_ms(20);
        }
    }
    let qlen = sock::qlen(l.raw()).unwrap_or(-1);
    tap.check(
        qlen,
        7,
        format_args!("[{}] listen(4), 12 clients: SO_LISTENQLEN", label),
    );
    with_row(kind, &sa, |r| match r {
        Some(r) => {
            let got = (r.num(2), r.num(3), r.num(4), r.num(6), r.num(7));
            tap.check(
                got,
                (Some(4), Some(4), Some(7), Some(0), Some(5)),
                format_args!(
                    "[{}] listeners row: backlog 4, limit 4, qlen 7, accepted 0, overflows 5",
                    label
                ),
            );
            tap.check(
                r.text(1),
                kind_proto(kind),
                format_args!("[{}] listeners row: protocol column", label),
            );
            tap.check(
                (r.num(COL_UID), r.num(COL_JID)),
                (Some(0), Some(0)),
                format_args!("[{}] listeners row: UID 0, JID 0 (root on the host)", label),
            );
        }
        None => {
            tap.ok(false, format_args!("[{}] listeners row present", label));
        }
    });
    tap.check(
        stat("overflows").wrapping_sub(over0),
        5,
        format_args!("[{}] stats.overflows grew by 5", label),
    );
    if kind == Kind::Tcp4 {
        stock_log_line(tap, &sa);
    }
    let mut accepted = 0;
    for _ in 0..7 {
        if sock::accept(l.raw()).is_ok() {
            accepted += 1;
        }
    }
    tap.check(accepted, 7, format_args!("[{}] 7 accepts", label));
    with_row(kind, &sa, |r| match r {
        Some(r) => {
            tap.check(
                (r.num(4), r.num(6)),
                (Some(0), Some(7)),
                format_args!(
                    "[{}] listeners row after 7 accepts: qlen 0, accepted 7",
                    label
                ),
            );
            let p50 = r.text(11);
            tap.ok(
                p50 != b"-" && p50.first() == Some(&b'<'),
                format_args!("[{}] listeners row: accept latency p50 reported", label),
            );
        }
        None => {
            tap.ok(
                false,
                format_args!("[{}] listeners row present after accepts", label),
            );
        }
    });
    tap.check(
        stat("accepted").wrapping_sub(acc0),
        7,
        format_args!("[{}] stats.accepted grew by 7", label),
    );
    if kind == Kind::Tcp4 {
        xlisteners(tap, &sa);
    }
    drop(clients);
    drop(l);
    with_row(kind, &sa, |r| {
        tap.ok(
            r.is_none(),
            format_args!("[{}] closing the listener removes its row", label),
        );
    });
}

fn kind_proto(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Tcp4 => b"tcp4",
        Kind::Tcp6 => b"tcp6",
        Kind::UnixStream => b"stream",
        Kind::UnixSeqpacket => b"seqpacket",
    }
}

use crate::layout::{
    XL_NBUCKETS, XO_ACCEPTED, XO_BACKLOG, XO_GEN, XO_LADDR, XO_LAT, XO_OVERFLOWS, XO_PATH,
    XO_PROTO, XO_QLEN, XO_QLIMIT,
};
/// struct xlistenq (listenq.h; policy/src/xlisten.rs): its size, version
/// and the offsets the suite reads (t_visible.rs uses these too), from
/// the header (build.rs).
pub use crate::layout::{XL_SIZE, XO_JID, XO_LPORT, XO_UID};
const XL_VERSION: u32 = crate::layout::XL_VERSION as u32;
const XL_PROTO_TCP4: u8 = crate::layout::XL_PROTO_TCP4 as u8;
const XL_PROTO_TCP6: u8 = crate::layout::XL_PROTO_TCP6 as u8;
const XL_PROTO_TCP46: u8 = crate::layout::XL_PROTO_TCP46 as u8;
const XL_PROTO_STREAM: u8 = crate::layout::XL_PROTO_STREAM as u8;

const IPPROTO_IPV6: i32 = 41;
const IPV6_V6ONLY: i32 = 27;

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_ne_bytes(a)
}

fn xlisteners(tap: &mut Tap, sa: &SockAddr) {
    let mut buf_mem = sys::scratch::<u8>(65536, 0);
    let buf = &mut buf_mem[..];
    let n = match sysctl::read_opaque(XTABLE, buf) {
        Ok(n) => n,
        Err(e) => {
            tap.ok(false, format_args!("{} readable: {}", XTABLE, e));
            return;
        }
    };
    let port = u16::from_be_bytes([sa.bytes()[2], sa.bytes()[3]]);
    let mut found = None;
    let mut off = 0;
    let mut sizes_ok = n % XL_SIZE == 0;
    let mut gens_same = true;
    while off + XL_SIZE <= n {
        let e = &buf[off..off + XL_SIZE];
        sizes_ok &= u32_at(e, 0) as usize == XL_SIZE && u32_at(e, 4) == XL_VERSION;
        gens_same &= u64_at(e, XO_GEN) == u64_at(&buf[..XL_SIZE], XO_GEN);
        let lport = u16::from_ne_bytes([e[XO_LPORT], e[XO_LPORT + 1]]);
        if e[XO_PROTO] == XL_PROTO_TCP4
            && lport == port
            && e[XO_LADDR..XO_LADDR + 4] == [127, 0, 0, 1]
        {
            found = Some(off);
        }
        off += XL_SIZE;
    }
    tap.ok(
        sizes_ok && gens_same,
        format_args!(
            "{}: entries are struct xlistenq v{} of {} bytes (listenq.h), one xl_gen",
            XTABLE, XL_VERSION, XL_SIZE
        ),
    );
    match found {
        Some(o) => {
            let e = &buf[o..o + XL_SIZE];
            let backlog = u32_at(e, XO_BACKLOG) as i32;
            let got = (
                backlog,
                u32_at(e, XO_QLIMIT),
                u32_at(e, XO_QLEN),
                u64_at(e, XO_ACCEPTED),
                u64_at(e, XO_OVERFLOWS),
            );
            tap.check(
                got,
                (4, 4, 0, 7, 5),
                format_args!(
                    "{}: backlog, qlimit, qlen, accepted, overflows of the tcp4 listener",
                    XTABLE
                ),
            );
            let lat: u64 = (0..XL_NBUCKETS).map(|i| u64_at(e, XO_LAT + 8 * i)).sum();
            tap.check(
                lat,
                7,
                format_args!("{}: latency histogram counts the 7 accepts", XTABLE),
            );
            tap.check(
                (u32_at(e, XO_UID), u32_at(e, XO_JID) as i32),
                (0, 0),
                format_args!(
                    "{}: xl_uid 0, xl_jid 0 for root's listener on the host",
                    XTABLE
                ),
            );
        }
        None => {
            tap.ok(
                false,
                format_args!("{}: the tcp4 listener is listed", XTABLE),
            );
        }
    }
}

/// The xlisteners entry whose xl_proto and xl_lport are these (or, with
/// port 0, whose xl_path starts with `path`): a copy of its bytes.
fn xentry(proto: u8, port: u16, path: &[u8]) -> Option<[u8; XL_SIZE]> {
    let mut buf_mem = sys::scratch::<u8>(65536, 0);
    let buf = &mut buf_mem[..];
    let n = sysctl::read_opaque(XTABLE, buf).ok()?;
    buf[..n].chunks(XL_SIZE).find_map(|e| {
        let lport = u16::from_ne_bytes([*e.get(XO_LPORT)?, *e.get(XO_LPORT + 1)?]);
        let hit = e.len() == XL_SIZE
            && e[XO_PROTO] == proto
            && lport == port
            && (path.is_empty() || e[XO_PATH..].starts_with(path));
        hit.then(|| {
            let mut a = [0u8; XL_SIZE];
            a.copy_from_slice(e);
            a
        })
    })
}

/// An AF_INET6 TCP listener on the wildcard address without IPV6_V6ONLY
/// takes IPv4 too, and netstat(1) calls it tcp46; with IPV6_V6ONLY=1 it
/// is tcp6. The table and struct xlistenq say the same. (FreeBSD's
/// net.inet6.ip6.v6only defaults to 1, so the option is set either way.)
fn dual_stack_proto(tap: &mut Tap) {
    for (v6only, want, xwant) in [
        (0, &b"tcp46"[..], XL_PROTO_TCP46),
        (1, &b"tcp6"[..], XL_PROTO_TCP6),
    ] {
        let label = core::str::from_utf8(want).unwrap_or("?");
        let r = (|| -> Result<(Fd, u16), (&'static str, Errno)> {
            let s = Kind::Tcp6.socket().map_err(|e| ("socket", e))?;
            sock::set_int(s.raw(), IPPROTO_IPV6, IPV6_V6ONLY, v6only)
                .map_err(|e| ("IPV6_V6ONLY", e))?;
            sys::bind(s.raw(), SockAddr::inet6([0; 16], 0).bytes()).map_err(|e| ("bind", e))?;
            sys::listen(s.raw(), 5).map_err(|e| ("listen", e))?;
            let port = crate::accf_util::local_port(s.raw()).map_err(|e| ("port", e))?;
            Ok((s, port))
        })();
        let (l, port) = match r {
            Ok(x) => x,
            Err((step, e)) => {
                tap.ok(
                    false,
                    format_args!(
                        "[{}] IPV6_V6ONLY={} listener: {}: {}",
                        label, v6only, step, e
                    ),
                );
                continue;
            }
        };
        let mut a = [0u8; 96];
        let mut w = Writer {
            buf: &mut a,
            len: 0,
        };
        let _ = core::fmt::write(&mut w, format_args!("*.{}", port));
        let n = w.len;
        let mut buf_mem = sys::scratch::<u8>(32768, 0);
        let buf = &mut buf_mem[..];
        let proto = match sysctl::read_string(TABLE, buf) {
            Ok(t) => find_row(t, &a[..n]).map(|r| r.text(1)),
            Err(_) => None,
        };
        tap.check(
            proto,
            Some(want),
            format_args!(
                "[{}] listeners row: AF_INET6 on :: with IPV6_V6ONLY={} has PROTO {} (as netstat -L)",
                label, v6only, label
            ),
        );
        tap.ok(
            xentry(xwant, port, b"").is_some(),
            format_args!(
                "[{}] {}: AF_INET6 on :: with IPV6_V6ONLY={} has xl_proto {}",
                label, XTABLE, v6only, xwant
            ),
        );
        drop(l);
    }
}

/// A local socket path longer than xl_laddr's 64 bytes: whole in the
/// LOCAL column and in xl_path, its first 64 bytes in xl_laddr.
fn long_path(tap: &mut Tap) {
    // /tmp/ then 95 characters: 100 bytes.
    let mut path = [b'p'; 100];
    path[..sock::UNIX_DIR.len()].copy_from_slice(sock::UNIX_DIR);
    path[sock::UNIX_DIR.len()] = b'/';
    let mut seq = [0u8; 10];
    let mut v = sys::getpid() as u32;
    for c in seq.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
    path[90..].copy_from_slice(&seq);
    let sa = SockAddr::unix(&path);
    let r = (|| -> Result<Fd, (&'static str, Errno)> {
        let s = Kind::UnixStream.socket().map_err(|e| ("socket", e))?;
        sys::bind(s.raw(), sa.bytes()).map_err(|e| ("bind", e))?;
        sys::listen(s.raw(), 5).map_err(|e| ("listen", e))?;
        Ok(s)
    })();
    let l = match r {
        Ok(l) => l,
        Err((step, e)) => {
            tap.ok(
                false,
                format_args!("[stream] listener on a 100-byte path: {}: {}", step, e),
            );
            return;
        }
    };
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    let row = match sysctl::read_string(TABLE, buf) {
        Ok(t) => find_row(t, &path).map(|r| r.text(1)),
        Err(_) => None,
    };
    tap.check(
        row,
        Some(&b"stream"[..]),
        "[stream] listeners row: LOCAL is the whole 100-byte path",
    );
    let x = xentry(XL_PROTO_STREAM, 0, &path);
    tap.ok(
        x.is_some_and(|e| e[XO_PATH + path.len()] == 0 && e[XO_LADDR..XO_LADDR + 64] == path[..64]),
        format_args!(
            "[stream] {}: xl_path is the whole 100-byte path, xl_laddr its first 64 bytes",
            XTABLE
        ),
    );
    drop(l);
    let mut z = [0u8; 101];
    z[..100].copy_from_slice(&path);
    if let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&z) {
        let _ = sys::unlink(c);
    }
}

/// Requested backlog versus the effective limit, and a second listen().
fn backlog_columns(tap: &mut Tap) {
    let max = sysctl::read_int("kern.ipc.soacceptqueue").unwrap_or(-1) as i64;
    let (l, sa) = match sock::listener(Kind::Tcp4, -1) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(false, format_args!("listeners table: listen(-1): {}", e));
            return;
        }
    };
    with_row(Kind::Tcp4, &sa, |r| {
        let got = r.map(|r| (r.num(2), r.num(3)));
        tap.check(
            got,
            Some((Some(-1), Some(max))),
            "listeners row: listen(-1) shows backlog -1, limit kern.ipc.soacceptqueue",
        );
    });
    let _ = sys::listen(l.raw(), 9);
    let mut a = [0u8; 96];
    let n = addr_text(Kind::Tcp4, &sa, &mut a);
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    let rows = match sysctl::read_string(TABLE, buf) {
        Ok(t) => t
            .split(|&c| c == b'\n')
            .filter(|line| line.starts_with(&a[..n]) && line.get(n) == Some(&b' '))
            .count(),
        Err(_) => 0,
    };
    tap.check(
        rows,
        1,
        "listeners table: a second listen() updates the row, no duplicate",
    );
    with_row(Kind::Tcp4, &sa, |r| {
        let got = r.map(|r| (r.num(2), r.num(3)));
        tap.check(
            got,
            Some((Some(9), Some(9))),
            "listeners row: listen(9) again shows backlog 9, limit 9",
        );
    });
    // For the record: what an admin sees.
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    if let Ok(t) = sysctl::read_string(TABLE, buf) {
        for line in t.split(|&c| c == b'\n') {
            tap.diag(format_args!(
                "  {}",
                core::str::from_utf8(line).unwrap_or("?")
            ));
        }
    }
}

/// Each listener's accept counts live with the listener (its own state,
/// reached by the listen upcall through its argument and by accept(2)
/// through the child index): a second listen() keeps counting on the same
/// row, and closing one listener with connections still queued leaves
/// another's queued connections counted on the other when accepted.
fn per_listener_state(tap: &mut Tap) {
    let (a, sa) = match sock::listener(Kind::Tcp4, 8) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(false, format_args!("per-listener state: listener: {}", e));
            return;
        }
    };
    let (b, sb) = match sock::listener(Kind::Tcp4, 8) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(false, format_args!("per-listener state: listener: {}", e));
            return;
        }
    };
    let done0 = stat("completed");
    let acc0 = stat("accepted");
    let _ = sys::listen(b.raw(), 9);
    let mut clients: [Option<Fd>; 6] = Default::default();
    for (i, c) in clients.iter_mut().enumerate() {
        let (to, l) = if i % 2 == 0 { (&sa, &a) } else { (&sb, &b) };
        *c = sock::connect(Kind::Tcp4, to).ok();
        let _ = sock::wait_qlen(l.raw(), i as i32 / 2 + 1, 500);
    }
    tap.check(
        stat("completed").wrapping_sub(done0),
        6,
        "[per-listener] stats.completed grew by 6 (3 connections on each of 2 listeners)",
    );
    // a goes with its 3 queued connections.
    drop(a);
    let mut accepted = 0;
    for _ in 0..3 {
        if sock::accept(b.raw()).is_ok() {
            accepted += 1;
        }
    }
    tap.check(
        accepted,
        3,
        "[per-listener] 3 accepts on the listener that stayed",
    );
    with_row(Kind::Tcp4, &sb, |r| {
        let got = r.map(|r| (r.num(2), r.num(4), r.num(6)));
        tap.check(
            got,
            Some((Some(9), Some(0), Some(3))),
            "[per-listener] its row after listen(9) again: backlog 9, qlen 0, accepted 3",
        );
    });
    with_row(Kind::Tcp4, &sa, |r| {
        tap.ok(
            r.is_none(),
            "[per-listener] the closed listener's row is gone",
        );
    });
    tap.check(
        stat("accepted").wrapping_sub(acc0),
        3,
        "[per-listener] stats.accepted grew by 3",
    );
    drop(clients);
}

/// The header: one word per column, netstat-style names.
fn header(tap: &mut Tap) {
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    let want: [&[u8]; table::COLUMNS] = [
        b"LOCAL",
        b"PROTO",
        b"BACKLOG",
        b"LIMIT",
        b"QLEN",
        b"INCQLEN",
        b"ACCEPTED",
        b"OVERFLOWS",
        b"FILTER",
        b"HELD",
        b"EVICTED",
        b"LAT_P50",
        b"LAT_P99",
        b"UID",
        b"JID",
        b"SOURCES",
        b"EV_FAIR",
        b"EV_CAP",
    ];
    let pass = match sysctl::read_string(TABLE, buf) {
        Ok(t) => {
            table::header(t).is_some_and(|h| (0..table::COLUMNS).all(|i| h.text(i) == want[i]))
        }
        Err(_) => false,
    };
    tap.ok(
        pass,
        "listeners table header: 18 one-word columns LOCAL PROTO ... UID JID SOURCES EV_FAIR EV_CAP",
    );
}

/// One connection at a time, accepted and closed before the next: the
/// next connection's socket usually comes back at the address of the one
/// just closed (UMA hands back the item freed last), so a listener that
/// remembered its last completion by address alone took each new one for
/// the old one and missed it (kern/pending.rs compares so_gencnt too).
fn reused_sockets(tap: &mut Tap, kind: Kind) {
    let label = kind.label();
    let (l, sa) = match sock::listener(kind, 8) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(
                false,
                format_args!("[{}] reused sockets: listener: {}", label, e),
            );
            return;
        }
    };
    let acc0 = stat("accepted");
    let mut done = 0;
    for _ in 0..40 {
        let Ok(c) = sock::connect(kind, &sa) else {
            continue;
        };
        if let Ok(a) = sock::accept(l.raw()) {
            done += 1;
            drop(a);
        }
        drop(c);
    }
    tap.check(
        done,
        40,
        format_args!("[{}] 40 connect/accept/close rounds", label),
    );
    with_row(kind, &sa, |r| {
        tap.check(
            r.and_then(|r| r.num(6)),
            Some(40),
            format_args!(
                "[{}] listeners row after 40 rounds whose sockets reuse the same memory: accepted 40",
                label
            ),
        )
    });
    tap.check(
        stat("accepted").wrapping_sub(acc0),
        40,
        format_args!("[{}] stats.accepted grew by 40", label),
    );
}

pub fn run(tap: &mut Tap, env: &Env) {
    let text = sysctl::exists(TABLE);
    tap.check(text, Ok(true), format_args!("sysctl {} exists", TABLE));
    header(tap);
    for k in [Kind::Tcp4, Kind::Tcp6, Kind::UnixStream] {
        if let Some(why) = env.unusable(k) {
            tap.skip(
                format_args!("[{}] listeners table counters", k.label()),
                why,
            );
            continue;
        }
        counters(tap, k);
        reused_sockets(tap, k);
    }
    if env.unusable(Kind::Tcp6).is_none() {
        dual_stack_proto(tap);
    } else {
        tap.skip(
            "[tcp46] listeners table: PROTO of AF_INET6 wildcard listeners",
            "no IPv6",
        );
    }
    if env.unusable(Kind::UnixStream).is_none() {
        long_path(tap);
    } else {
        tap.skip(
            "[stream] listeners table: a 100-byte path",
            "no socket directory",
        );
    }
    backlog_columns(tap);
    per_listener_state(tap);
    if env.unusable(Kind::Tcp4).is_none() {
        early_connection(tap);
    }
    crate::t_visible::run(tap, env);
}

/// A connection that completes between the kernel's listen and listenq's
/// installing its listen upcall (a fail point holds listen(2) there) is
/// recorded when the upcall is installed, so its accept(2) is counted
/// (the fuzzer's finding 8: it was not).
fn early_connection(tap: &mut Tap) {
    const FP: &str = "debug.fail_point.listenq_listen_upcall";
    let name = "a connection that completes before listenq's listen upcall is set: its accept(2) is counted (stats.accepted +1)";
    let r = (|| -> Result<(u64, u64), (&'static str, Errno)> {
        let s = Kind::Tcp4.socket().map_err(|e| ("socket", e))?;
        sys::bind(s.raw(), SockAddr::inet(net::LOOPBACK4, 0).bytes()).map_err(|e| ("bind", e))?;
        let port = crate::accf_util::local_port(s.raw()).map_err(|e| ("port", e))?;
        let to = SockAddr::inet(net::LOOPBACK4, port);
        let before = crate::accf_util::stat("accepted").map_err(|e| ("stats.accepted", e))?;
        sysctl::write_str(FP, "1*sleep(600)").map_err(|e| ("fail point", e))?;
        let child = match sys::fork().map_err(|e| ("fork", e))? {
            sys::Forked::Child => {
                // listen(2) returns after the fail point's sleep.
                sys::exit(if sys::listen(s.raw(), 5).is_ok() {
                    0
                } else {
                    1
                })
            }
            sys::Forked::Parent(pid) => pid,
        };
        // Refused until the kernel's listen; then it completes at once,
        // while the child still sleeps before listenq's upcall.
        let t0 = sys::now_ms();
        let c = loop {
            match sock::connect(Kind::Tcp4, &to) {
                Ok(c) => break c,
                Err(_) if sys::now_ms() - t0 < 3000 => sys::sleep_ms(2),
                Err(e) => {
                    let _ = sysctl::write_str(FP, "off");
                    return Err(("connect", e));
                }
            }
        };
        let connected_ms = sys::now_ms() - t0;
        let st = sys::wait4(child).map_err(|e| ("wait4", e))?;
        let _ = sysctl::write_str(FP, "off");
        if st != 0 {
            return Err(("listen(2) in the child", Errno(st)));
        }
        let a = sock::accept(s.raw()).map_err(|e| ("accept", e))?;
        drop(a);
        drop(c);
        let after = crate::accf_util::stat("accepted").map_err(|e| ("stats.accepted", e))?;
        Ok((after.wrapping_sub(before), connected_ms))
    })();
    match r {
        Ok((n, ms)) => {
            tap.diag(format_args!(
                "  connected {} ms after the child's listen(2) began; stats.accepted +{}",
                ms, n
            ));
            tap.ok(n == 1, name);
        }
        Err((step, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", step, e));
        }
    }
}

/// A listener created while listenq was loaded keeps working after
/// kldunload: listenq must have taken back its listen upcall and its
/// protocol switch entries, or the next connection would run freed code.
pub fn survives_unload(tap: &mut Tap, env: &Env) {
    let name = "listener from before kldunload accepts afterwards (no freed code runs)";
    if env.ko.is_err() {
        tap.skip(name, "listenq.ko not in image");
        return;
    }
    let id = match kld::load(KO_PATH) {
        Ok(id) => id,
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  kldload: {}", e));
            return;
        }
    };
    let (l, sa) = match sock::listener(Kind::Tcp4, 5) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  listener: {}", e));
            return;
        }
    };
    let c1 = sock::connect(Kind::Tcp4, &sa);
    let _ = sock::wait_qlen(l.raw(), 1, 500);
    let un = kld::unload(id);
    let gone = kld::find(KO_NAME).is_err();
    let c2 = sock::connect(Kind::Tcp4, &sa);
    let q = sock::wait_qlen(l.raw(), 2, 1000);
    let a1 = sock::accept(l.raw());
    let a2 = sock::accept(l.raw());
    let pass =
        c1.is_ok() && un.is_ok() && gone && c2.is_ok() && q == Ok(2) && a1.is_ok() && a2.is_ok();
    tap.ok(pass, name);
    if !pass {
        tap.diag(format_args!(
            "  connect1 {:?} unload {:?} gone {} connect2 {:?} qlen {:?} accept1 {:?} accept2 {:?}",
            c1.as_ref().map(|_| ()),
            un,
            gone,
            c2.as_ref().map(|_| ()),
            q,
            a1.as_ref().map(|_| ()),
            a2.as_ref().map(|_| ())
        ));
    }
}

/// kldunload and kldload again and again while another process keeps
/// calling listen(), connect() and accept() through the hooked protocol
/// switch: unload must drain, never leave a caller in freed code.
pub fn unload_under_load(tap: &mut Tap, env: &Env) {
    let name = "10 kldunload/kldload rounds while another process listens, connects and accepts";
    if env.ko.is_err() {
        tap.skip(name, "listenq.ko not in image");
        return;
    }
    let (l, sa) = match sock::listener(Kind::Tcp4, 64) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  listener: {}", e));
            return;
        }
    };
    let mut id = kld::load(KO_PATH).ok();
    let child = match sys::fork() {
        Ok(sys::Forked::Child) => {
            // Child: bounded work, then exit with the number of failures.
            let start = sys::now_ms();
            let mut bad = 0;
            let mut n = 0;
            while sys::now_ms().saturating_sub(start) < 4000 && n < 400 {
                n += 1;
                if sys::listen(l.raw(), 64).is_err() {
                    bad += 1;
                }
                match sock::connect(Kind::Tcp4, &sa) {
                    Ok(c) => {
                        if sock::accept(l.raw()).is_err() {
                            bad += 1;
                        }
                        drop(c);
                    }
                    Err(_) => bad += 1,
                }
            }
            sys::exit(if bad == 0 { 0 } else { 1 });
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  fork: {}", e));
            return;
        }
    };
    let mut rounds = 0;
    let mut errs = 0;
    for _ in 0..10 {
        sys::sleep_ms(50);
        if let Some(i) = id.take() {
            if kld::unload(i).is_err() {
                errs += 1;
            }
        }
        sys::sleep_ms(20);
        match kld::load(KO_PATH) {
            Ok(i) => id = Some(i),
            Err(_) => errs += 1,
        }
        rounds += 1;
    }
    let status = sys::wait4(child);
    if let Some(i) = id.take() {
        if kld::unload(i).is_err() {
            errs += 1;
        }
    }
    let exited_ok = matches!(status, Ok(s) if s & 0x7f == 0 && (s >> 8) & 0xff == 0);
    let pass = rounds == 10 && errs == 0 && exited_ok;
    tap.ok(pass, name);
    if !pass {
        tap.diag(format_args!(
            "  rounds {} kld errors {} child status {:?}",
            rounds, errs, status
        ));
    }
}

/// The kernel's own "sonewconn: ... Listen queue overflow" line still goes
/// out, in its stock format, with listenq loaded (read from kern.msgbuf).
fn stock_log_line(tap: &mut Tap, sa: &SockAddr) {
    let name =
        "stock 'sonewconn: ... Listen queue overflow' log line still printed, format unchanged";
    let b = sa.bytes();
    let port = u16::from_be_bytes([b[2], b[3]]);
    let mut want = [0u8; 96];
    let mut w = Writer {
        buf: &mut want,
        len: 0,
    };
    let _ = core::fmt::write(
        &mut w,
        format_args!("(127.0.0.1:{} (proto 6)): Listen queue overflow: 7 already in queue awaiting acceptance (", port),
    );
    let n = w.len;
    let mut buf_mem = sys::scratch::<u8>(262144, 0);
    let buf = &mut buf_mem[..];
    match sysctl::read_opaque("kern.msgbuf", buf) {
        Ok(len) => {
            let hay = &buf[..len.min(buf.len())];
            let found = hay.windows(n).any(|win| win == &want[..n]);
            let prefix = hay.windows(16).any(|win| win == b"sonewconn: pcb 0");
            tap.ok(found && prefix, name);
            if !found {
                tap.diag(format_args!(
                    "  not in kern.msgbuf: {}",
                    core::str::from_utf8(&want[..n]).unwrap_or("?")
                ));
            }
        }
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  kern.msgbuf: {}", e));
        }
    }
}
