//! Issue "listen(2) semantics": the suite that runs once without listenq
//! and once with it. Every observation goes into a Recording; in the first
//! run each one is also asserted against stock FreeBSD 14 behaviour.

use crate::env::Env;
use crate::record::{Recording, Val};
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::t_sysctl;
use crate::tap::Tap;
use core::ffi::CStr;

/// kern.ipc.soacceptqueue on a fresh boot: SOMAXCONN, which is 128 in the
/// 14.0-STABLE tree the test kernel is built from (sys/sys/socket.h);
/// FreeBSD raised it to 4096 only later.
pub const SOACCEPTQUEUE_DEFAULT: u32 = 128;

/// Clients per backlog in the completed-queue test: enough to overflow.
const QUEUE_CASES: [(i32, usize); 3] = [(0, 4), (1, 5), (4, 12)];

/// How long to wait for a connection that should be queued (TCP completes
/// it on the netisr thread) and for one that should not be.
const QUEUED_WAIT_MS: u64 = 1000;
const OVERFLOW_WAIT_MS: u64 = 60;

/// floor(3b/2) + 1: what solisten_clone() admits before refusing.
pub fn queue_capacity(b: i32) -> i32 {
    3 * b / 2 + 1
}

pub struct Suite<'a> {
    pub tap: &'a mut Tap,
    pub rec: &'a mut Recording,
    pub env: &'a Env,
}

impl Suite<'_> {
    fn obs(&mut self, name: core::fmt::Arguments, got: Val, want: Val) -> bool {
        self.rec.obs(self.tap, name, got, want)
    }

    /// Reports a skipped group (only in the asserting run, so both runs
    /// record the same observations).
    fn skip(&mut self, what: &str, why: core::fmt::Arguments) {
        if self.rec.assert {
            self.tap
                .skip(format_args!("[{}] {}", self.rec.label, what), why);
        }
    }
}

/// The kinds the environment supports; the others are skipped with a reason.
fn kinds(s: &mut Suite, all: &[Kind], what: &str) -> ([Kind; 4], usize) {
    let mut out = [Kind::Tcp4; 4];
    let mut n = 0;
    for &k in all {
        match s.env.unusable(k) {
            None => {
                out[n] = k;
                n += 1;
            }
            Some(why) => {
                let label = k.label();
                s.skip(what, format_args!("{}: {}", label, why));
            }
        }
    }
    (out, n)
}

/// Runs the whole suite, labelled by `rec.label`.
pub fn run(tap: &mut Tap, env: &Env, rec: &mut Recording) {
    let mut s = Suite { tap, rec, env };
    let sqa = soacceptqueue(&mut s);
    backlog_clamping(&mut s, sqa);
    completed_queue(&mut s);
    errors(&mut s);
    t_sysctl::soacceptqueue_checks(&mut s);
}

fn soacceptqueue(s: &mut Suite) -> u32 {
    let r = sysctl::read_uint("kern.ipc.soacceptqueue");
    s.obs(
        format_args!("kern.ipc.soacceptqueue default"),
        Val::of(r),
        Val::Int(SOACCEPTQUEUE_DEFAULT.into()),
    );
    r.unwrap_or(SOACCEPTQUEUE_DEFAULT)
}

fn backlog_clamping(s: &mut Suite, sqa: u32) {
    let sqa_i = sqa as i32;
    let cases: [(i32, i32); 7] = [
        (-1, sqa_i),
        (i32::MIN, sqa_i),
        (sqa_i.wrapping_add(1), sqa_i),
        (i32::MAX, sqa_i),
        (sqa_i, sqa_i),
        (5, 5),
        (0, 0),
    ];
    let (ks, n) = kinds(
        s,
        &[Kind::Tcp4, Kind::Tcp6, Kind::UnixStream],
        "backlog clamping",
    );
    for &k in &ks[..n] {
        let l = k.label();
        // A socket that is not listening reports a limit of 0.
        let q = sock::bound(k).and_then(|(fd, _)| sock::qlimit(fd.raw()));
        s.obs(
            format_args!("{} not listening: SO_LISTENQLIMIT", l),
            Val::of(q),
            Val::Int(0),
        );
        for &(b, want) in &cases {
            let r = sock::listener(k, b).and_then(|(fd, _)| sock::qlimit(fd.raw()));
            s.obs(
                format_args!("{} listen({}): SO_LISTENQLIMIT", l, b),
                Val::of(r),
                Val::Int(want.into()),
            );
        }
        // listen() again on a listening socket changes the limit.
        match sock::listener(k, 5) {
            Ok((fd, _)) => {
                let r = sys::listen(fd.raw(), 7).and_then(|_| sock::qlimit(fd.raw()));
                s.obs(
                    format_args!("{} listen(5) then listen(7): SO_LISTENQLIMIT", l),
                    Val::of(r),
                    Val::Int(7),
                );
                let r = sys::listen(fd.raw(), -1).and_then(|_| sock::qlimit(fd.raw()));
                s.obs(
                    format_args!("{} then listen(-1): SO_LISTENQLIMIT", l),
                    Val::of(r),
                    Val::Int(sqa.into()),
                );
                let r = sys::listen(fd.raw(), 0).and_then(|_| sock::qlimit(fd.raw()));
                s.obs(
                    format_args!("{} then listen(0): SO_LISTENQLIMIT", l),
                    Val::of(r),
                    Val::Int(0),
                );
            }
            Err(e) => {
                s.obs(
                    format_args!("{} listen(5) then listen(7): SO_LISTENQLIMIT", l),
                    Val::err(e),
                    Val::Int(7),
                );
            }
        }
    }
}

fn completed_queue(s: &mut Suite) {
    let all = [
        Kind::Tcp4,
        Kind::Tcp6,
        Kind::UnixStream,
        Kind::UnixSeqpacket,
    ];
    let (ks, n) = kinds(s, &all, "completed queue");
    for &k in &ks[..n] {
        for &(b, clients) in &QUEUE_CASES {
            queue_case(s, k, b, clients);
        }
    }
}

/// listen(b), then `clients` connects one at a time, reading SO_LISTENQLEN
/// after each; then accepts a few and checks the queue shrinks by as many.
fn queue_case(s: &mut Suite, k: Kind, b: i32, clients: usize) {
    let l = k.label();
    let cap = queue_capacity(b);
    let (lfd, addr) = match sock::listener(k, b) {
        Ok(v) => v,
        Err(e) => {
            s.obs(
                format_args!("{} listen({}): listener", l, b),
                Val::err(e),
                Val::OK,
            );
            return;
        }
    };
    let lfd_raw = lfd.raw();
    let mut conns: [Option<sys::Fd>; 16] = Default::default();
    let mut connect_res = [0i32; 16];
    let mut want_res = [0i32; 16];
    let mut qlens = [0i32; 16];
    let mut want_q = [0i32; 16];
    let mut refused = 0i32;
    for i in 0..clients.min(16) {
        let expect_queued = (i as i32) < cap;
        // Stream sockets over TCP connect even when the listener will drop
        // the connection (the syncache answers); unix ones are refused.
        want_res[i] = if expect_queued || k.is_tcp() {
            0
        } else {
            Errno::ECONNREFUSED.0
        };
        match sock::connect(k, &addr) {
            Ok(fd) => conns[i] = Some(fd),
            // The listener answers a TCP SYN from the syncache even when its
            // queue is full and resets the connection only when the final
            // ACK finds no room; whether the RST lands before connect()
            // reports is scheduling. Both mean "the handshake completed".
            Err(Errno::ECONNRESET) if k.is_tcp() => {}
            Err(e) => {
                connect_res[i] = e.0;
                refused += 1;
            }
        }
        let wait = if expect_queued {
            QUEUED_WAIT_MS
        } else {
            OVERFLOW_WAIT_MS
        };
        qlens[i] = sock::wait_qlen(lfd_raw, i as i32 + 1, wait).unwrap_or(-1);
        want_q[i] = (i as i32 + 1).min(cap);
    }
    let n = clients.min(16);
    s.obs(
        format_args!("{} listen({}) {} clients: connect errnos", l, b, n),
        Val::seq(&connect_res[..n]),
        Val::seq(&want_res[..n]),
    );
    s.obs(
        format_args!("{} listen({}) {} clients: qlen after each", l, b, n),
        Val::seq(&qlens[..n]),
        Val::seq(&want_q[..n]),
    );
    sys::sleep_ms(OVERFLOW_WAIT_MS);
    let fin = sock::qlen(lfd_raw);
    s.obs(
        format_args!("{} listen({}) {} clients: final SO_LISTENQLEN", l, b, n),
        Val::of(fin),
        Val::Int(cap.into()),
    );
    let overflow = fin.map(|q| n as i32 - q);
    s.obs(
        format_args!("{} listen({}) {} clients: overflowed", l, b, n),
        Val::of(overflow),
        Val::Int((n as i32 - cap).into()),
    );
    if !k.is_tcp() {
        s.obs(
            format_args!("{} listen({}) {} clients: connects refused", l, b, n),
            Val::Int(refused.into()),
            Val::Int((n as i32 - cap).into()),
        );
    }
    s.obs(
        format_args!("{} listen({}): SO_LISTENINCQLEN", l, b),
        Val::of(sock::incqlen(lfd_raw)),
        Val::Int(0),
    );
    // accept(2) takes connections off the completed queue one each.
    let take = cap.min(3);
    let mut accepted: [Option<sys::Fd>; 3] = Default::default();
    let mut acc_err = Val::OK;
    for slot in accepted.iter_mut().take(take as usize) {
        match sock::accept(lfd_raw) {
            Ok(fd) => *slot = Some(fd),
            Err(e) => {
                acc_err = Val::err(e);
                break;
            }
        }
    }
    s.obs(
        format_args!("{} listen({}): accept {}", l, b, take),
        acc_err,
        Val::OK,
    );
    let after = sock::qlen(lfd_raw);
    s.obs(
        format_args!("{} listen({}): SO_LISTENQLEN after {} accepts", l, b, take),
        Val::of(after),
        Val::Int((cap - take).into()),
    );
    drop(accepted);
    drop(conns);
    drop(lfd);
}

fn errors(s: &mut Suite) {
    // A descriptor that was just closed.
    let r = sys::socket(crate::net::AF_INET, crate::net::SOCK_STREAM, 0).and_then(|fd| {
        let raw = fd.into_raw();
        sys::close(raw)?;
        sys::listen(raw, 5)
    });
    s.obs(
        format_args!("listen(closed fd)"),
        Val::unit(r),
        Val::err(Errno::EBADF),
    );

    let files: [(&CStr, &str); 2] = [(c"/dev/null", "/dev/null"), (c"/sbin/init", "/sbin/init")];
    for (path, name) in files {
        let r = sys::open(path, sys::O_RDONLY).and_then(|fd| sys::listen(fd.raw(), 5));
        s.obs(
            format_args!("listen({} fd)", name),
            Val::unit(r),
            Val::err(Errno::ENOTSOCK),
        );
    }

    let r = sys::socket(crate::net::AF_INET, crate::net::SOCK_DGRAM, 0)
        .and_then(|fd| sys::listen(fd.raw(), 5));
    s.obs(
        format_args!("listen(udp socket)"),
        Val::unit(r),
        Val::err(Errno::EOPNOTSUPP),
    );

    // An unbound TCP socket is bound to an ephemeral port by listen().
    let r = Kind::Tcp4
        .socket()
        .and_then(|fd| sys::listen(fd.raw(), 3).and_then(|_| sock::qlimit(fd.raw())));
    s.obs(
        format_args!("listen(unbound tcp4, 3): SO_LISTENQLIMIT"),
        Val::of(r),
        Val::Int(3),
    );

    if let Some(why) = s.env.unusable(Kind::UnixStream) {
        s.skip("listen(unbound unix)", format_args!("{}", why));
    } else {
        let r = Kind::UnixStream
            .socket()
            .and_then(|fd| sys::listen(fd.raw(), 3));
        s.obs(
            format_args!("listen(unbound unix-stream)"),
            Val::unit(r),
            Val::err(Errno::EDESTADDRREQ),
        );
    }

    let (ks, n) = kinds(
        s,
        &[Kind::Tcp4, Kind::Tcp6, Kind::UnixStream],
        "listen(connected socket)",
    );
    for &k in &ks[..n] {
        let l = k.label();
        let (client, server) = match connected_pair(k) {
            Ok(v) => v,
            Err(e) => {
                s.obs(format_args!("{} connected pair", l), Val::err(e), Val::OK);
                continue;
            }
        };
        let r = sys::listen(client.raw(), 5);
        s.obs(
            format_args!("{} listen(connected client)", l),
            Val::unit(r),
            Val::err(Errno::EINVAL),
        );
        let r = sys::listen(server.raw(), 5);
        s.obs(
            format_args!("{} listen(accepted socket)", l),
            Val::unit(r),
            Val::err(Errno::EINVAL),
        );
    }
}

/// A connected (client, accepted server side) pair; the listener is closed.
fn connected_pair(k: Kind) -> Result<(sys::Fd, sys::Fd), Errno> {
    let (lfd, addr) = sock::listener(k, 5)?;
    let c = sock::connect(k, &addr)?;
    let a = sock::accept(lfd.raw())?;
    Ok((c, a))
}
