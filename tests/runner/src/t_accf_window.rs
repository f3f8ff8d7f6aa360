//! No visible window (issue 16): while clients connect to a listener with
//! one of listenq's filters and send nothing, a thread blocked in
//! accept(2), a kevent(2) waiter and poll(2) see nothing; the first
//! client to send is what they get. On a kernel whose connections do not
//! inherit SO_ACCEPTFILTER, this is listenq's listen upcall putting each
//! connection back before the listener lock drops (kmod/inherit_glue.c);
//! without that, accept(2) returns the first silent client at once.

use crate::accf_util as au;
use crate::sock;
use crate::sys::{self, Errno, Forked, Kevent, PollFd};
use crate::tap::Tap;

const SILENT: usize = 8;

/// The child: blocks in accept(2) on `l` (blocking mode), then exits 0 if
/// the connection it got has its byte already (the one that sent), 1 if
/// it is silent, 2 if accept failed.
fn blocked_acceptor(l: i32) -> ! {
    let code = match sys::fcntl(l, sys::F_GETFL, 0)
        .and_then(|fl| sys::fcntl(l, sys::F_SETFL, fl & !(sys::O_NONBLOCK as usize)))
        .and_then(|_| sys::accept(l))
    {
        Ok(c) => match au::readable_within(c.raw(), 0) {
            Ok(true) => 0,
            _ => 1,
        },
        Err(_) => 2,
    };
    sys::exit(code)
}

/// The acceptor's exit status within `ms`, None if it is still blocked.
fn exited_within(pid: i32, ms: u64) -> Option<i32> {
    let t0 = sys::now_ms();
    loop {
        match sys::wait4_nohang(pid) {
            Ok(Some(st)) => return Some(st),
            Ok(None) if sys::now_ms() - t0 < ms => sys::sleep_ms(5),
            _ => return None,
        }
    }
}

pub fn run(tap: &mut Tap, filter: &str) {
    let tag = format_args!("[window {}]", filter).to_owned_label();
    let (l, sa) = match au::filtered(16, filter, "") {
        Ok(x) => x,
        Err(e) => {
            tap.ok(false, format_args!("{} filtered listener: {}", tag, e));
            return;
        }
    };
    let kq = match sys::kqueue() {
        Ok(k) => k,
        Err(e) => {
            tap.ok(false, format_args!("{} kqueue: {}", tag, e));
            return;
        }
    };
    let mut none = [Kevent::read(0); 1];
    let reg = sys::kevent(kq.raw(), &[Kevent::read(l.raw())], &mut none[..0], 0);
    tap.check(
        reg,
        Ok(0),
        format_args!("{} kevent EVFILT_READ on the listener", tag),
    );
    let pid = match sys::fork() {
        Ok(Forked::Child) => blocked_acceptor(l.raw()),
        Ok(Forked::Parent(p)) => p,
        Err(e) => {
            tap.ok(false, format_args!("{} fork: {}", tag, e));
            return;
        }
    };
    let mut clients = [const { None }; SILENT];
    let mut connected = 0;
    for c in clients.iter_mut() {
        if let Ok(f) = au::client(&sa) {
            *c = Some(f);
            connected += 1;
        }
    }
    tap.check(
        connected,
        SILENT,
        format_args!("{} {} silent clients connected", tag, SILENT),
    );
    // Time for every handshake to finish, on both CPUs.
    sys::sleep_ms(300);
    let still = sys::wait4_nohang(pid);
    tap.check(
        still,
        Ok(None),
        format_args!(
            "{} a thread blocked in accept(2) stays blocked while they send nothing",
            tag
        ),
    );
    let mut ev = [Kevent::read(0); 4];
    let n = sys::kevent(kq.raw(), &[], &mut ev, 0);
    tap.check(n, Ok(0), format_args!("{} kevent(2) reports nothing", tag));
    let mut p = [PollFd {
        fd: l.raw(),
        events: sys::POLLIN,
        revents: 0,
    }];
    tap.check(
        sys::poll(&mut p, 0),
        Ok(0),
        format_args!("{} poll(2) reports nothing", tag),
    );
    tap.check(
        sock::qlen(l.raw()),
        Ok(0),
        format_args!("{} SO_LISTENQLEN 0", tag),
    );
    tap.check(
        sock::incqlen(l.raw()),
        Ok(SILENT as i32),
        format_args!("{} SO_LISTENINCQLEN {} (held)", tag, SILENT),
    );
    // One client sends: the blocked accept(2) gets exactly that one.
    let sent = match &clients[3] {
        Some(c) => au::send_all(c.raw(), request(filter)),
        None => Err(Errno::ENOTCONN),
    };
    tap.check(
        sent,
        Ok(()),
        format_args!("{} client 4 sends its request", tag),
    );
    let st = exited_within(pid, 3000);
    if st.is_none() {
        let _ = sys::kill(pid, sys::SIGKILL);
        let _ = sys::wait4(pid);
    }
    tap.check(
        st,
        Some(0),
        format_args!(
            "{} the blocked accept(2) returns the client that sent (exit 0)",
            tag
        ),
    );
    // The next one wakes the kevent waiter, and only then.
    let sent = match &clients[6] {
        Some(c) => au::send_all(c.raw(), request(filter)),
        None => Err(Errno::ENOTCONN),
    };
    let n = sent.and_then(|_| sys::kevent(kq.raw(), &[], &mut ev, 3000));
    tap.check(
        n,
        Ok(1),
        format_args!("{} kevent(2) fires once client 7 sent", tag),
    );
    let got = au::accept_within(l.raw(), 1000).and_then(|c| au::readable_within(c.raw(), 0));
    tap.check(
        got,
        Ok(true),
        format_args!("{} and accept(2) returns it with its bytes", tag),
    );
    tap.check(
        sock::incqlen(l.raw()),
        Ok(SILENT as i32 - 2),
        format_args!("{} the other {} are still held", tag, SILENT - 2),
    );
}

fn request(filter: &str) -> &'static [u8] {
    match filter {
        "httpready" => b"GET / HTTP/1.0\r\n\r\n",
        _ => b"x",
    }
}

/// A short label owned by the test (format_args! cannot outlive its
/// statement).
trait ToOwnedLabel {
    fn to_owned_label(self) -> Label;
}

pub struct Label {
    buf: [u8; 32],
    len: usize,
}

impl core::fmt::Display for Label {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?"))
    }
}

impl ToOwnedLabel for core::fmt::Arguments<'_> {
    fn to_owned_label(self) -> Label {
        struct W<'a>(&'a mut Label);
        impl core::fmt::Write for W<'_> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                let b = s.as_bytes();
                let room = self.0.buf.len() - self.0.len;
                let n = b.len().min(room);
                self.0.buf[self.0.len..self.0.len + n].copy_from_slice(&b[..n]);
                self.0.len += n;
                Ok(())
            }
        }
        let mut l = Label {
            buf: [0; 32],
            len: 0,
        };
        let _ = core::fmt::write(&mut W(&mut l), self);
        l
    }
}
