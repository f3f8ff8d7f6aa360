//! Accept filters on local sockets whose receive buffer holds more than
//! one record: seqpacket sends (every send is a record, each led by the
//! sender's address, MT_SONAME) and stream sends that carry an SCM_RIGHTS
//! control message (sbappendcontrol() starts a new record with an
//! MT_CONTROL mbuf). A filter must see the data bytes a reader gets,
//! record after record, and nothing else; listenq copied sbavail() bytes
//! with m_copydata(), which follows only the first record's chain: the
//! stream case below panicked the kernel ("m_copydata, offset > size of
//! mbuf chain"), an unprivileged local user's panic.
//!
//! Run with listenq's filters (phase A of t_accf) and with stock
//! accf_http/accf_dns (phase B): stock walks m_nextpkt too and accepts
//! every one of these connections once the request is complete; listenq
//! must accept it exactly then. Stock sometimes passes earlier, because
//! it reads the address or control mbuf as if it were request bytes (it
//! then sees no request and lets the connection through); that is listed,
//! not asserted.

use crate::accf_util as au;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::tap::Tap;

/// One send: its bytes, and whether it carries an SCM_RIGHTS message.
type Part = (&'static [u8], bool);

pub struct RecordCase {
    label: &'static str,
    filter: &'static str,
    kind: Kind,
    parts: &'static [Part],
}

pub const CASES: [RecordCase; 4] = [
    RecordCase {
        label:
            "stream \"GET / HT\", then \"TP/1.0\\r\\n\\r\\n\" with SCM_RIGHTS (the reported panic)",
        filter: "httpready",
        kind: Kind::UnixStream,
        parts: &[(b"GET / HT", false), (b"TP/1.0\r\n\r\n", true)],
    },
    RecordCase {
        label: "stream request whose first send carries SCM_RIGHTS",
        filter: "httpready",
        kind: Kind::UnixStream,
        parts: &[(b"GET / HTTP/1.0\r\n", true), (b"\r\n", false)],
    },
    RecordCase {
        label: "seqpacket request in three records",
        filter: "httpready",
        kind: Kind::UnixSeqpacket,
        parts: &[
            (b"GET / HT", false),
            (b"TP/1.0\r\n", false),
            (b"\r\n", false),
        ],
    },
    RecordCase {
        label: "stream query across two SCM_RIGHTS messages",
        filter: "dnsready",
        kind: Kind::UnixStream,
        parts: &[
            (b"\x00\x0c\x12\x34", false),
            (b"\x01\x00\x00\x01", true),
            (b"\x00\x00\x00\x00\x00\x00", true),
        ],
    },
];

/// After which send (1-based) the connection was accepted (None: not
/// within PASS_MS of the last), and whether it read back every data byte.
struct Outcome {
    at: Option<usize>,
    intact: bool,
}

fn run_one(c: &RecordCase) -> Result<Outcome, (&'static str, Errno)> {
    let (l, sa) = sock::listener(c.kind, -1).map_err(|e| ("listener", e))?;
    sock::set_nonblock(l.raw()).map_err(|e| ("O_NONBLOCK", e))?;
    au::set_filter(l.raw(), c.filter, "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    let cl = sock::connect(c.kind, &sa).map_err(|e| ("connect", e))?;
    let mut sent = [0u8; 128];
    let mut n = 0;
    // The event "before any data" is about: the handshake done, the
    // connection on one of the listener's queues.
    if sock::wait_queued(l.raw(), 1, au::PASS_MS as u64).map_err(|e| ("queued", e))? < 1 {
        return Err(("queued", Errno::TIMEOUT));
    }
    if au::try_accept(l.raw()).is_ok() {
        return Ok(Outcome {
            at: Some(0),
            intact: true,
        });
    }
    for (i, &(bytes, rights)) in c.parts.iter().enumerate() {
        // fd 0 (the console) rides along; the accepted side never
        // receives it, so the kernel disposes of it.
        let r = sys::send_with_rights(cl.raw(), bytes, rights.then_some(0));
        if r != Ok(bytes.len()) {
            return Err(("sendmsg", r.err().unwrap_or(Errno::BADSIZE)));
        }
        sent[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
        let last = i + 1 == c.parts.len();
        let r = au::accept_after_step(l.raw(), last, au::Sent::Local);
        match r {
            Ok(a) => {
                return Ok(Outcome {
                    at: Some(i + 1),
                    intact: au::reads_exactly(a.raw(), &sent[..n], 1000),
                })
            }
            Err(Errno::EAGAIN) | Err(Errno::TIMEOUT) => {}
            Err(e) => return Err(("accept", e)),
        }
    }
    Ok(Outcome {
        at: None,
        intact: true,
    })
}

/// Runs the cases whose filter `have` says is loaded; `stock` selects
/// stock's rule (accepted by the end) over listenq's (exactly at the end).
pub fn run(tap: &mut Tap, who: &str, stock: bool, have: impl Fn(&str) -> bool) {
    for c in CASES.iter() {
        if !have(c.filter) {
            continue;
        }
        let sends = c.parts.len();
        let name = format_args!(
            "[{}] {} on a {}: accepted {}, all data read back",
            who,
            c.filter,
            c.label,
            if stock {
                "by the last send"
            } else {
                "after the last send, not before"
            }
        );
        match run_one(c) {
            Ok(o) => {
                let when = match o.at {
                    Some(k) if stock => k >= 1 && k <= sends,
                    Some(k) => k == sends,
                    None => false,
                };
                tap.ok(when && o.intact, name);
                match o.at {
                    Some(k) => tap.diag(format_args!("  accepted after send {} of {}", k, sends)),
                    None => tap.diag(format_args!("  still held after all {} sends", sends)),
                }
                if !o.intact {
                    tap.diag(format_args!(
                        "  the accepted socket did not read back exactly the data sent"
                    ));
                }
            }
            Err((step, e)) => {
                tap.ok(false, name);
                tap.diag(format_args!("  {}: {}", step, e));
            }
        }
    }
}
