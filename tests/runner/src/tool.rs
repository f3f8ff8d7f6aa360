//! The runner as a command for the operator layer's shell scripts
//! (tests/vm/operator.sh), which need sockets a shell cannot make:
//!
//!     lqinit listen tcp4|tcp6|stream ADDR|PATH PORT BACKLOG [FILTER[:AF_ARG]]
//!     lqinit connect tcp4|tcp6|stream ADDR|PATH PORT N [DELAY_MS [LIFETIME_MS]]
//!     lqinit json FILE LIST        (json.rs)
//!
//! `listen` makes a listener (with an accept filter if FILTER is given),
//! `connect` opens N connections to it; then each goes on in a child
//! process that holds them until killed (or 600 s), and prints that
//! child's pid: `pid=$(lqinit listen ...)`, so that the script can kill
//! exactly what it started.

use crate::net::{SockAddr, LOOPBACK6};
use crate::sock::Kind;
use crate::sys::{self, Args, Errno, Fd};
use crate::tap;

const LIFETIME_MS: u64 = 600_000;
const MAX_CONN: usize = 256;

pub fn say(args: core::fmt::Arguments) {
    tap::print(args);
}

fn kind(s: &[u8]) -> Option<Kind> {
    match s {
        b"tcp4" => Some(Kind::Tcp4),
        b"tcp6" => Some(Kind::Tcp6),
        b"stream" => Some(Kind::UnixStream),
        b"seqpacket" => Some(Kind::UnixSeqpacket),
        _ => None,
    }
}

fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let v = i64::try_from(crate::t_fuzz::num(digits)?).ok()?;
    Some(if neg { -v } else { v })
}

/// A dotted IPv4 address.
fn ipv4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|&c| c == b'.');
    for o in out.iter_mut() {
        let v = number(parts.next()?)?;
        *o = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn address(k: Kind, addr: &[u8], port: &[u8]) -> Option<SockAddr> {
    let port = u16::try_from(number(port)?).ok()?;
    match k {
        Kind::Tcp4 => Some(SockAddr::inet(ipv4(addr)?, port)),
        // Only the loopback: all the scripts need.
        Kind::Tcp6 => (addr == b"::1").then(|| SockAddr::inet6(LOOPBACK6, port)),
        Kind::UnixStream | Kind::UnixSeqpacket => Some(SockAddr::unix(addr)),
    }
}

/// Goes on in a child of its own and lets the command return: prints the
/// child's pid (for the script's kill) and exits; the child, with stdout
/// and stderr on /dev/null (so that `$(lqinit ...)` returns), stays.
/// The scripts start these without `&`.
fn stay() {
    detach();
    hold_on(LIFETIME_MS);
}

/// The first half of `stay`: the command returns (printing the child's
/// pid) and the child goes on.
fn detach() {
    match sys::fork() {
        Ok(sys::Forked::Parent(pid)) => {
            say(format_args!("{}", pid));
            sys::exit(0)
        }
        Ok(sys::Forked::Child) => {
            if let Ok(null) = sys::open(c"/dev/null", sys::O_RDWR) {
                let _ = sys::dup2(null.raw(), 1);
                let _ = sys::dup2(null.raw(), 2);
            }
        }
        Err(e) => say(format_args!("lqinit: fork: {}", e)),
    }
}

/// The second half: holds what was made for `ms` (LIFETIME_MS unless the
/// script says), or until killed.
fn hold_on(ms: u64) {
    let t0 = sys::now_ms();
    while sys::now_ms().saturating_sub(t0) < ms {
        sys::sleep_ms(ms.min(1000));
    }
}

fn listen(
    k: Kind,
    sa: &SockAddr,
    backlog: i32,
    filter: Option<&[u8]>,
) -> Result<Fd, (&'static str, Errno)> {
    let s = k.socket().map_err(|e| ("socket", e))?;
    if k.is_tcp() {
        let one = 1i32.to_ne_bytes();
        // SO_REUSEADDR: a script may listen again on a port it just used.
        sys::setsockopt(s.raw(), sys::SOL_SOCKET, 0x0004, &one).map_err(|e| ("SO_REUSEADDR", e))?;
    }
    sys::bind(s.raw(), sa.bytes()).map_err(|e| ("bind", e))?;
    sys::listen(s.raw(), backlog).map_err(|e| ("listen", e))?;
    if let Some(f) = filter {
        // FILTER or FILTER:AF_ARG.
        let f = core::str::from_utf8(f).map_err(|_| ("filter name", Errno::EINVAL))?;
        let (name, arg) = f.split_once(':').unwrap_or((f, ""));
        crate::accf_util::set_filter(s.raw(), name, arg).map_err(|e| ("SO_ACCEPTFILTER", e))?;
    }
    Ok(s)
}

/// Runs the command in `args` (args.get(1) is its name); the exit code.
pub fn main(args: Args) -> i32 {
    let arg = |i: usize| args.get(i).map(|c| c.to_bytes());
    if arg(1) == Some(b"json") {
        return crate::json::main(args.get(2), arg(3));
    }
    let usage = || {
        say(format_args!(
            "usage: lqinit listen tcp4|tcp6|stream ADDR PORT BACKLOG [FILTER[:AF_ARG]] | connect tcp4|tcp6|stream ADDR PORT N [DELAY_MS [LIFETIME_MS]] | json FILE LIST"
        ));
        64
    };
    let (Some(cmd), Some(k), Some(a), Some(p), Some(n)) = (
        arg(1),
        arg(2).and_then(kind),
        arg(3),
        arg(4),
        arg(5).and_then(number),
    ) else {
        return usage();
    };
    let Some(sa) = address(k, a, p) else {
        return usage();
    };
    match cmd {
        b"listen" => {
            let Ok(backlog) = i32::try_from(n) else {
                return usage();
            };
            match listen(k, &sa, backlog, arg(6)) {
                Ok(_l) => {
                    stay();
                    0
                }
                Err((step, e)) => {
                    say(format_args!("lqinit listen: {}: {}", step, e));
                    1
                }
            }
        }
        b"connect" => {
            // DELAY_MS: return at once and connect that much later, so a
            // script can start something to watch the connections first
            // (without `&`); LIFETIME_MS: close them that much later.
            let delay = arg(6).and_then(number);
            let lifetime = arg(7)
                .and_then(number)
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(LIFETIME_MS);
            if let Some(ms) = delay {
                detach();
                sys::sleep_ms(u64::try_from(ms).unwrap_or(0));
            }
            let want = usize::try_from(n).unwrap_or(0).min(MAX_CONN);
            let mut conns = [const { None }; MAX_CONN];
            let mut made = 0;
            for c in conns.iter_mut().take(want) {
                if let Ok(f) = crate::sock::connect(k, &sa) {
                    *c = Some(f);
                    made += 1;
                }
            }
            if made < want {
                say(format_args!(
                    "lqinit connect: {} of {} connected",
                    made, want
                ));
            }
            if delay.is_some() {
                hold_on(lifetime);
            } else {
                stay();
            }
            0
        }
        _ => usage(),
    }
}
