//! Who sees which listener (issue "never show listeners across users or
//! jails"): kern.ipc.listenq.listeners and xlisteners follow the rules of
//! netstat(1) and sockstat(1) (cr_canseesocket, prison visibility, the
//! reader's vnet), and the counters are the host's only for readers that
//! may see every socket; others read them summed over what they may see. Each reader is a forked child: one that setuid()s to
//! an unprivileged user with security.bsd.see_other_uids=0, one that
//! jail()s itself. Run while listenq is loaded.

use crate::env::Env;
use crate::net::SockAddr;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::table::{self, addr_text, COL_JID, COL_UID};
use crate::tap::Tap;

const TABLE: &str = "kern.ipc.listenq.listeners";
const XTABLE: &str = "kern.ipc.listenq.xlisteners";
const STAT: &str = "kern.ipc.listenq.stats.listens";
const STAT_ACCEPTED: &str = "kern.ipc.listenq.stats.accepted";
const STAT_CLOSES: &str = "kern.ipc.listenq.stats.closes";
const ALLOCS: &str = "kern.ipc.listenq.allocs";
const USER: u32 = 1001;
const USER_PORT: u16 = 47001;
const JAIL_PATH: &[u8] = b"/tmp/lq.jailed";
const VNET_PATH: &[u8] = b"/tmp/lq.vnet";
const VNET_PORT: u16 = 47002;

use crate::t_listeners::{XL_SIZE, XO_JID, XO_LPORT, XO_UID};

/// A sysctl's bytes, in a scratch buffer.
struct Read {
    mem: sys::Scratch<u8>,
    n: usize,
}

impl core::ops::Deref for Read {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.mem[..self.n]
    }
}

fn table_text() -> Option<Read> {
    let mut mem = sys::scratch::<u8>(32768, 0);
    let n = sysctl::read_string(TABLE, &mut mem).ok()?.len();
    Some(Read { mem, n })
}

/// The rows of struct xlistenq (their raw bytes), or None.
fn xrows() -> Option<Read> {
    let mut mem = sys::scratch::<u8>(65536, 0);
    let n = sysctl::read_opaque(XTABLE, &mut mem).ok()?;
    let n = n.min(mem.len());
    (n % XL_SIZE == 0).then_some(Read { mem, n })
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn key(kind: Kind, sa: &SockAddr) -> ([u8; 96], usize) {
    let mut a = [0u8; 96];
    let n = addr_text(kind, sa, &mut a);
    (a, n)
}

/// A child's exit status: Some(code) when it exited normally.
pub fn exit_code(status: Result<i32, Errno>) -> Option<i32> {
    match status {
        Ok(s) if s & 0x7f == 0 => Some((s >> 8) & 0xff),
        _ => None,
    }
}

/// The bits a child sets in its exit code; 0x40 means its setup failed.
pub const SETUP_FAILED: i32 = 0x40;

pub fn report(tap: &mut Tap, who: &str, code: Option<i32>, names: &[&str]) {
    match code {
        Some(c) if c & SETUP_FAILED == 0 => {
            for (i, n) in names.iter().enumerate() {
                tap.ok(c & (1 << i) == 0, format_args!("[{}] {}", who, n));
            }
        }
        _ => {
            for n in names {
                tap.ok(false, format_args!("[{}] {}", who, n));
            }
            tap.diag(format_args!(
                "  {} child: exit {:?} (0x40: setup failed)",
                who, code
            ));
        }
    }
}

pub fn run(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.v4 {
        tap.skip(
            "listener visibility",
            format_args!("127.0.0.1 unusable ({})", e),
        );
        return;
    }
    // Root's listeners on the host: a TCP one, and a local one if /tmp works.
    let (root_l, root_sa) = match sock::listener(Kind::Tcp4, 5) {
        Ok(x) => x,
        Err(e) => {
            tap.ok(
                false,
                format_args!("listener visibility: root's listener: {}", e),
            );
            return;
        }
    };
    let root_unix = if env.unix.is_ok() {
        sock::listener(Kind::UnixStream, 5).ok()
    } else {
        None
    };
    other_uids(tap, &root_sa);
    jailed(tap, &root_sa, root_unix.as_ref().map(|x| &x.1));
    if root_unix.is_some() {
        vnet(tap, &root_sa);
    }
    drop(root_unix);
    drop(root_l);
}

fn other_uids(tap: &mut Tap, root_sa: &SockAddr) {
    const KNOB: &str = "security.bsd.see_other_uids";
    let names = [
        "with see_other_uids=0 an unprivileged user does not see root's listener in the table",
        "it sees its own listener, with UID 1001",
        "every xlisteners row it gets is its own (xl_uid 1001), root's is not among them",
        "kern.ipc.listenq.stats.listens reads 1, its own listen(2), and allocs fails with EPERM",
        "stats.accepted reads 1 once it accepted its connection, stats.closes 0",
    ];
    let old = sysctl::read_int(KNOB).unwrap_or(1);
    if let Err(e) = sysctl::write_int(KNOB, 0) {
        for n in names {
            tap.ok(false, format_args!("[uid {}] {}", USER, n));
        }
        tap.diag(format_args!("  sysctl {}=0: {}", KNOB, e));
        return;
    }
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => sys::exit(user_child(root_sa)),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            let _ = sysctl::write_int(KNOB, old);
            tap.ok(false, format_args!("[uid {}] fork: {}", USER, e));
            return;
        }
    };
    // Root on the host sees the user's listener while the child waits in
    // accept(); the connect below lets it go.
    let user_sa = SockAddr::inet(crate::net::LOOPBACK4, USER_PORT);
    let (k, kn) = key(Kind::Tcp4, &user_sa);
    let mut uid = None;
    let start = sys::now_ms();
    while uid.is_none() && sys::now_ms().saturating_sub(start) < 3000 {
        uid = table_text()
            .as_deref()
            .and_then(|t| table::find_row(t, &k[..kn]).and_then(|r| r.num(COL_UID)));
        if uid.is_none() {
            sys::sleep_ms(20);
        }
    }
    let c = sock::connect(Kind::Tcp4, &user_sa);
    let code = exit_code(sys::wait4(pid));
    drop(c);
    let _ = sysctl::write_int(KNOB, old);
    report(tap, "uid 1001", code, &names);
    tap.check(
        uid,
        Some(i64::from(USER)),
        "[root] root on the host sees the uid-1001 listener, UID column 1001",
    );
}

/// The unprivileged reader. Returns its exit code: bit i set = check i
/// of other_uids() failed.
fn user_child(root_sa: &SockAddr) -> i32 {
    if sys::setuid(USER).is_err() {
        return SETUP_FAILED;
    }
    let l = match sock::Kind::Tcp4.socket().and_then(|s| {
        sys::bind(
            s.raw(),
            SockAddr::inet(crate::net::LOOPBACK4, USER_PORT).bytes(),
        )?;
        sys::listen(s.raw(), 5)?;
        Ok(s)
    }) {
        Ok(l) => l,
        Err(_) => return SETUP_FAILED | 0x20,
    };
    let own = SockAddr::inet(crate::net::LOOPBACK4, USER_PORT);
    let (rk, rn) = key(Kind::Tcp4, root_sa);
    let (ok, on) = key(Kind::Tcp4, &own);
    let mut bad = 0;
    match table_text().as_deref() {
        Some(t) => {
            // Not finding root's row only means something if the table
            // parses at all.
            if table::header(t).is_none() || table::find_row(t, &rk[..rn]).is_some() {
                bad |= 1;
            }
            match table::find_row(t, &ok[..on]) {
                Some(r) if r.num(COL_UID) == Some(i64::from(USER)) => {}
                _ => bad |= 2,
            }
        }
        None => bad |= 3,
    }
    let root_port = u16::from_be_bytes([root_sa.bytes()[2], root_sa.bytes()[3]]);
    match xrows().as_deref() {
        Some(x) if !x.is_empty() => {
            for e in x.chunks(XL_SIZE) {
                let port = u16::from_ne_bytes([e[XO_LPORT], e[XO_LPORT + 1]]);
                if u32_at(e, XO_UID) != USER || port == root_port {
                    bad |= 4;
                }
            }
        }
        _ => bad |= 4,
    }
    if sysctl::read_u64(STAT) != Ok(1) || sysctl::read_u64(ALLOCS) != Err(Errno::EPERM) {
        bad |= 8;
    }
    let _a = sock::accept(l.raw());
    if sysctl::read_u64(STAT_ACCEPTED) != Ok(1) || sysctl::read_u64(STAT_CLOSES) != Ok(0) {
        bad |= 16;
    }
    bad
}

fn jailed(tap: &mut Tap, root_sa: &SockAddr, root_unix: Option<&SockAddr>) {
    let names = [
        "inside a jail no host listener (TCP or local) is in the table",
        "the jail's own local listener is listed, with its JID",
        "every xlisteners row it gets has its xl_jid",
        "in a jail kern.ipc.listenq.stats.listens reads 1, the jail's own listen(2), and allocs fails with EPERM",
        "in a jail stats.held, released, completed and accepted count its one filtered connection (1 each)",
    ];
    let Some(host_unix) = root_unix else {
        for n in names {
            tap.skip(format_args!("[jail] {}", n), "/tmp unusable");
        }
        return;
    };
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => sys::exit(jail_child(root_sa, host_unix)),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            tap.ok(false, format_args!("[jail] fork: {}", e));
            return;
        }
    };
    let code = exit_code(sys::wait4(pid));
    report(tap, "jail", code, &names);
}

fn jail_child(root_sa: &SockAddr, host_unix: &SockAddr) -> i32 {
    let jid = match sys::jail(c"/", c"lqvisible") {
        Ok(j) if j > 0 => j,
        _ => return SETUP_FAILED,
    };
    let own = SockAddr::unix(JAIL_PATH);
    let l = match Kind::UnixStream.socket().and_then(|s| {
        sys::bind(s.raw(), own.bytes())?;
        sys::listen(s.raw(), 5)?;
        Ok(s)
    }) {
        Ok(l) => l,
        Err(_) => return SETUP_FAILED | 0x20,
    };
    let (tk, tn) = key(Kind::Tcp4, root_sa);
    let (uk, un) = key(Kind::UnixStream, host_unix);
    let (ok, on) = key(Kind::UnixStream, &own);
    let mut bad = 0;
    match table_text().as_deref() {
        Some(t) => {
            if table::header(t).is_none()
                || table::find_row(t, &tk[..tn]).is_some()
                || table::find_row(t, &uk[..un]).is_some()
                || table::rows(t).any(|r| r.text(0) != &ok[..on])
            {
                bad |= 1;
            }
            match table::find_row(t, &ok[..on]) {
                Some(r) if r.num(COL_JID) == Some(i64::from(jid)) => {}
                _ => bad |= 2,
            }
        }
        None => bad |= 3,
    }
    match xrows().as_deref() {
        Some(x) if !x.is_empty() => {
            if x.chunks(XL_SIZE).any(|e| u32_at(e, XO_JID) as i32 != jid) {
                bad |= 4;
            }
        }
        _ => bad |= 4,
    }
    if sysctl::read_u64(STAT) != Ok(1) || sysctl::read_u64(ALLOCS) != Err(Errno::EPERM) {
        bad |= 8;
    }
    // One connection through a dataready filter on the jail's listener:
    // the jail's sums move by exactly that one, whatever the host counts.
    let one = crate::accf_util::set_filter(l.raw(), "dataready", "")
        .and_then(|()| sock::connect(Kind::UnixStream, &own))
        .and_then(|c| {
            crate::accf_util::send_all(c.raw(), b"x")?;
            let a = crate::accf_util::accept_within(l.raw(), 3000)?;
            Ok((c, a))
        });
    let counts = ["held", "released", "completed", "accepted"].map(|n| {
        let mut name = [0u8; 64];
        let p = b"kern.ipc.listenq.stats.";
        name[..p.len()].copy_from_slice(p);
        name[p.len()..p.len() + n.len()].copy_from_slice(n.as_bytes());
        core::str::from_utf8(&name[..p.len() + n.len()])
            .map_or(Err(Errno::EINVAL), sysctl::read_u64)
    });
    if one.is_err() || counts.iter().any(|c| *c != Ok(1)) {
        bad |= 16;
    }
    drop(one);
    drop(l);
    bad
}

/// A jail with its own vnet: TCP listeners are per vnet, as netstat(1)
/// lists them (in_pcblist walks the reader's V_tcbinfo). Local sockets
/// have no vnet: root on the host sees the jail's local listener (it may
/// see the jail's sockets) but not its TCP one.
fn vnet(tap: &mut Tap, root_sa: &SockAddr) {
    let names = [
        "a jail with its own vnet lists its own TCP listener",
        "it lists no host listener",
    ];
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => sys::exit(vnet_child(tap, root_sa)),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            tap.ok(false, format_args!("[vnet jail] fork: {}", e));
            return;
        }
    };
    let unix = SockAddr::unix(VNET_PATH);
    let (uk, un) = key(Kind::UnixStream, &unix);
    let (tk, tn) = key(
        Kind::Tcp4,
        &SockAddr::inet(crate::net::LOOPBACK4, VNET_PORT),
    );
    let mut seen = None;
    let start = sys::now_ms();
    while seen.is_none() && sys::now_ms().saturating_sub(start) < 3000 {
        seen = table_text().as_deref().and_then(|t| {
            table::find_row(t, &uk[..un]).map(|_| table::find_row(t, &tk[..tn]).is_some())
        });
        if seen.is_none() {
            sys::sleep_ms(20);
        }
    }
    let c = sock::connect(Kind::UnixStream, &unix);
    let code = exit_code(sys::wait4(pid));
    drop(c);
    report(tap, "vnet jail", code, &names);
    tap.check(
        seen,
        Some(false),
        "[root] root on the host sees the vnet jail's local listener but not its TCP listener (another vnet)",
    );
}

fn vnet_child(tap: &mut Tap, root_sa: &SockAddr) -> i32 {
    if !matches!(sys::jail_vnet(c"/", c"lqvnet"), Ok(j) if j > 0) {
        return SETUP_FAILED;
    }
    // A new vnet has its own lo0, down and without an address.
    if crate::net::setup_loopback(tap).v4.is_err() {
        return SETUP_FAILED | 0x10;
    }
    let own = SockAddr::inet(crate::net::LOOPBACK4, VNET_PORT);
    let tcp = Kind::Tcp4.socket().and_then(|s| {
        sys::bind(s.raw(), own.bytes())?;
        sys::listen(s.raw(), 5)?;
        Ok(s)
    });
    let unix = Kind::UnixStream.socket().and_then(|s| {
        sys::bind(s.raw(), SockAddr::unix(VNET_PATH).bytes())?;
        sys::listen(s.raw(), 5)?;
        Ok(s)
    });
    let (Ok(_tcp), Ok(unix)) = (tcp, unix) else {
        return SETUP_FAILED | 0x20;
    };
    let (ok, on) = key(Kind::Tcp4, &own);
    let (rk, rn) = key(Kind::Tcp4, root_sa);
    let mut bad = 0;
    match table_text().as_deref() {
        Some(t) if table::header(t).is_some() => {
            if table::find_row(t, &ok[..on]).is_none() {
                bad |= 1;
            }
            let (uk, un) = key(Kind::UnixStream, &SockAddr::unix(VNET_PATH));
            if table::find_row(t, &rk[..rn]).is_some()
                || table::rows(t).any(|r| r.text(0) != &ok[..on] && r.text(0) != &uk[..un])
            {
                bad |= 2;
            }
        }
        _ => bad |= 3,
    }
    let _ = sock::accept(unix.raw());
    bad
}
