//! Issue "module lifecycle": kldload/kldfind/kldstat/modfind, the module's
//! version and allocation sysctls, a refused second load, kldunload, and
//! repeated load/use/unload cycles.

use crate::accf_util as au;
use crate::env::{Env, KO_NAME, KO_PATH, MOD_NAME};
use crate::kld;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::table;
use crate::tap::Tap;

pub const VERSION: &str = "kern.ipc.listenq.version";
pub const ALLOCS: &str = "kern.ipc.listenq.allocs";
pub const UNLOADABLE: &str = "kern.ipc.listenq.unloadable";
const TABLE: &str = "kern.ipc.listenq.listeners";
const CYCLES: u32 = 50;
const CYCLES_NAME: &str =
    "50 cycles of kldload, listen, connect, accept, close, allocs == 0, kldunload";
/// How long freed sockets may take to give their allocations back.
const ALLOCS_SETTLE_MS: u64 = 500;

fn skip_all(tap: &mut Tap, names: &[&str], why: &str) {
    for n in names {
        tap.skip(n, why);
    }
}

const LOADED_TESTS: [&str; 6] = [
    "kldfind(listenq.ko) finds the loaded file",
    "kldstat reports name listenq.ko",
    "modfind(listenq) finds the module",
    "sysctl kern.ipc.listenq.version is a string starting with listenq",
    "sysctl kern.ipc.listenq.allocs and memuse are 0 while idle",
    "second kldload of listenq.ko fails with EEXIST",
];

/// Loads the module and checks what a loaded module must show. Returns
/// the file id when it is loaded.
pub fn load(tap: &mut Tap, env: &Env) -> Option<i32> {
    let name = "kldload /boot/modules/listenq.ko";
    if let Err(e) = env.ko {
        tap.skip(name, format_args!("listenq.ko not in image ({})", e));
        skip_all(tap, &LOADED_TESTS, "listenq.ko not in image");
        return None;
    }
    let id = match kld::load(KO_PATH) {
        Ok(id) => {
            tap.ok(true, format_args!("{} (file id {})", name, id));
            id
        }
        Err(e) => {
            tap.ok(false, name);
            tap.diag(format_args!("  kldload: {}", e));
            skip_all(tap, &LOADED_TESTS, "kldload failed");
            return None;
        }
    };
    tap.check(kld::find(KO_NAME), Ok(id), LOADED_TESTS[0]);
    match kld::stat(id) {
        Ok(st) => {
            let pass = st.name() == b"listenq.ko" && st.id() == id;
            tap.ok(pass, LOADED_TESTS[1]);
            if !pass {
                tap.diag(format_args!(
                    "  name {:?} id {} (want {})",
                    Bytes(st.name()),
                    st.id(),
                    id
                ));
            }
            tap.diag(format_args!(
                "  {:?}: refs {} size {}",
                Bytes(st.pathname()),
                st.refs(),
                st.size()
            ));
        }
        Err(e) => {
            tap.ok(false, LOADED_TESTS[1]);
            tap.diag(format_args!("  kldstat({}): {}", id, e));
        }
    }
    let m = kld::modfind(MOD_NAME);
    tap.ok(m.is_ok(), LOADED_TESTS[2]);
    if let Err(e) = m {
        tap.diag(format_args!("  modfind: {}", e));
    }
    let mut buf = [0u8; 256];
    match sysctl::read_string(VERSION, &mut buf) {
        Ok(v) => {
            let pass = v.starts_with(b"listenq") && core::str::from_utf8(v).is_ok();
            tap.ok(pass, LOADED_TESTS[3]);
            tap.diag(format_args!("  {} = {:?}", VERSION, Bytes(v)));
        }
        Err(e) => {
            tap.ok(false, LOADED_TESTS[3]);
            tap.diag(format_args!("  {}: {}", VERSION, e));
        }
    }
    tap.check(
        (
            sysctl::read_u64(ALLOCS),
            sysctl::read_u64("kern.ipc.listenq.memuse"),
        ),
        (Ok(0), Ok(0)),
        LOADED_TESTS[4],
    );
    tap.check(kld::load(KO_PATH), Err(Errno::EEXIST), LOADED_TESTS[5]);
    refused_by_default(tap, id);
    Some(id)
}

/// Whether the table has a row for this TCP listener; returns its
/// (QLEN, LIMIT) columns.
fn tcp_row(sa: &crate::net::SockAddr) -> Option<(Option<i64>, Option<i64>)> {
    let mut a = [0u8; 96];
    let n = table::addr_text(Kind::Tcp4, sa, &mut a);
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    let t = sysctl::read_string(TABLE, buf).ok()?;
    table::find_row(t, &a[..n]).map(|r| (r.num(4), r.num(3)))
}

/// listen, connect, accept on a fresh TCP listener, and its table row.
fn works() -> Result<(), &'static str> {
    let (l, sa) = sock::listener(Kind::Tcp4, 5).map_err(|_| "listen")?;
    let c = sock::connect(Kind::Tcp4, &sa).map_err(|_| "connect")?;
    let _ = sock::wait_qlen(l.raw(), 1, 1000);
    if tcp_row(&sa).is_none() {
        return Err("no table row");
    }
    let a = sock::accept(l.raw()).map_err(|_| "accept")?;
    drop(a);
    drop(c);
    Ok(())
}

/// Unloading is opt-in (kern.ipc.listenq.unloadable, like stock's
/// net.accf.unloadable): refused by default, with the module still
/// working. Then the runner opts in, for this module and (through the
/// kernel environment, a loader tunable) for every later kldload.
fn refused_by_default(tap: &mut Tap, id: i32) {
    tap.check(
        sysctl::read_int(UNLOADABLE),
        Ok(0),
        "sysctl kern.ipc.listenq.unloadable is 0 by default",
    );
    tap.check(
        kld::unload(id),
        Err(Errno::EOPNOTSUPP),
        "kldunload listenq with unloadable=0 fails with EOPNOTSUPP",
    );
    tap.check(
        sys::kldunload_force(id),
        Err(Errno::EOPNOTSUPP),
        "kldunload -f (LINKER_UNLOAD_FORCE) with unloadable=0 fails with EOPNOTSUPP too",
    );
    let still = kld::find(KO_NAME) == Ok(id) && kld::modfind(MOD_NAME).is_ok();
    let w = works();
    tap.ok(
        still && w.is_ok(),
        "after the refused kldunload the module is loaded and works (listen, table row, accept)",
    );
    if let Err(e) = w {
        tap.diag(format_args!("  {}", e));
    }
    tap.check(
        sysctl::write_int(UNLOADABLE, 1),
        Ok(()),
        "sysctl kern.ipc.listenq.unloadable=1",
    );
    tap.check(
        sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1"),
        Ok(()),
        "kenv kern.ipc.listenq.unloadable=1 (the tunable, for later kldloads)",
    );
}

const UNLOADED_TESTS: [&str; 4] = [
    "kldfind(listenq.ko) fails with ENOENT after unload",
    "modfind(listenq) fails with ENOENT after unload",
    "sysctl kern.ipc.listenq.version is gone after unload",
    "no accept filter name attaches after unload: dataready, httpready, dnsready, tlsready and lq:<each> give ENOENT",
];

/// Unloads the module and checks that nothing of it is left. Returns
/// whether it was unloaded.
pub fn unload(tap: &mut Tap, id: Option<i32>) -> bool {
    let name = "kldunload listenq.ko";
    let Some(id) = id else {
        tap.skip(name, "module not loaded");
        skip_all(tap, &UNLOADED_TESTS, "module not loaded");
        return false;
    };
    if !tap.check(kld::unload(id), Ok(()), name) {
        skip_all(tap, &UNLOADED_TESTS, "kldunload failed");
        return false;
    }
    tap.check(kld::find(KO_NAME), Err(Errno::ENOENT), UNLOADED_TESTS[0]);
    tap.check(
        kld::modfind(MOD_NAME),
        Err(Errno::ENOENT),
        UNLOADED_TESTS[1],
    );
    let mut buf = [0u8; 256];
    tap.check(
        sysctl::read_string(VERSION, &mut buf).map(|_| ()),
        Err(Errno::ENOENT),
        UNLOADED_TESTS[2],
    );
    names_gone(tap, UNLOADED_TESTS[3]);
    true
}

/// uipc_accf.c keeps every entry forever: listenq's must not be reachable
/// under any name once it is gone (its old "lq:" renames included).
fn names_gone(tap: &mut Tap, name: &str) {
    let mut pass = true;
    for f in ["dataready", "httpready", "dnsready", "tlsready"] {
        let mut lq = [0u8; 16];
        lq[..3].copy_from_slice(b"lq:");
        lq[3..3 + f.len()].copy_from_slice(f.as_bytes());
        let lq = core::str::from_utf8(&lq[..3 + f.len()]).unwrap_or("lq:");
        for n in [f, lq] {
            let r = au::listener(5).and_then(|(l, _)| au::set_filter(l.raw(), n, ""));
            if r != Err(Errno::ENOENT) {
                pass = false;
                tap.diag(format_args!("  SO_ACCEPTFILTER {}: {:?}", n, r));
            }
        }
    }
    tap.ok(pass, name);
}

/// TCP listeners that exist before kldload are in the table at once.
pub fn adopted_at_load(tap: &mut Tap, env: &Env) {
    let name = "a TCP listener from before kldload is in the table at load (QLEN 1, LIMIT 5)";
    if let Err(e) = env.ko {
        tap.skip(name, format_args!("listenq.ko not in image ({})", e));
        return;
    }
    if let Err(e) = env.v4 {
        tap.skip(name, format_args!("127.0.0.1 unusable ({})", e));
        return;
    }
    let r = (|| -> Result<_, &'static str> {
        let (l, sa) = sock::listener(Kind::Tcp4, 5).map_err(|_| "listen")?;
        let c = sock::connect(Kind::Tcp4, &sa).map_err(|_| "connect")?;
        let _ = sock::wait_qlen(l.raw(), 1, 1000);
        let id = kld::load(KO_PATH).map_err(|_| "kldload")?;
        let unloadable = sysctl::read_int(UNLOADABLE);
        let row = tcp_row(&sa);
        let a = sock::accept(l.raw()).is_ok();
        drop(c);
        drop(l);
        let un = kld::unload(id);
        Ok((row, a, unloadable, un))
    })();
    match r {
        Ok((row, a, unloadable, un)) => {
            tap.check(row, Some((Some(1), Some(5))), name);
            tap.ok(
                a && unloadable == Ok(1) && un.is_ok(),
                "the tunable kern.ipc.listenq.unloadable=1 applies at kldload; the adopted listener accepts; kldunload",
            );
            if !(a && unloadable == Ok(1) && un.is_ok()) {
                tap.diag(format_args!(
                    "  accept {} unloadable {:?} kldunload {:?}",
                    a, unloadable, un
                ));
            }
        }
        Err(e) => {
            tap.ok(false, name);
            tap.ok(false, "the tunable kern.ipc.listenq.unloadable=1 applies at kldload; the adopted listener accepts; kldunload");
            tap.diag(format_args!("  {}", e));
            if let Ok(id) = kld::find(KO_NAME) {
                let _ = kld::unload(id);
            }
        }
    }
}

/// How many rows of the table have `addr` as LOCAL, and the PROTO and
/// LIMIT of the first.
fn local_rows(kind: Kind, sa: &crate::net::SockAddr) -> Option<(usize, &'static str, Option<i64>)> {
    let mut a = [0u8; 96];
    let n = table::addr_text(kind, sa, &mut a);
    let mut buf_mem = sys::scratch::<u8>(32768, 0);
    let buf = &mut buf_mem[..];
    let t = sysctl::read_string(TABLE, buf).ok()?;
    let mut count = 0;
    let mut proto = "";
    let mut limit = None;
    for r in table::rows(t).filter(|r| r.text(0) == &a[..n]) {
        if count == 0 {
            proto = match r.text(1) {
                b"stream" => "stream",
                b"seqpacket" => "seqpacket",
                _ => "other",
            };
            limit = r.num(3);
        }
        count += 1;
    }
    Some((count, proto, limit))
}

const LOCAL_ADOPT_TESTS: [&str; 3] = [
    "a local stream listener from before kldload (descriptors in 2 processes) is in the table at load, once (stream, LIMIT 5)",
    "a local seqpacket listener from before kldload (descriptor in another process only) is in the table at load, once (seqpacket, LIMIT 7)",
    "the adopted local listeners leave the table when their last descriptors close; kldunload",
];

/// Local (AF_LOCAL) listeners that exist before kldload are in the table
/// at once: found through the processes' descriptor tables. The stream
/// listener has a descriptor in this process and in a forked child (one
/// row, not two); the seqpacket one only in the child, so it is found in
/// another process's table.
pub fn local_adopted_at_load(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.ko {
        for n in LOCAL_ADOPT_TESTS {
            tap.skip(n, format_args!("listenq.ko not in image ({})", e));
        }
        return;
    }
    if let Some(u) = env.unusable(Kind::UnixStream) {
        for n in LOCAL_ADOPT_TESTS {
            tap.skip(n, &u);
        }
        return;
    }
    let setup = (|| -> Result<_, (&'static str, Errno)> {
        let s = sock::listener(Kind::UnixStream, 5).map_err(|e| ("stream listener", e))?;
        let q = sock::listener(Kind::UnixSeqpacket, 7).map_err(|e| ("seqpacket listener", e))?;
        let (p0, p1) = sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM)
            .map_err(|e| ("socketpair", e))?;
        Ok((s, q, p0, p1))
    })();
    let ((ls, sa_s), (lq, sa_q), p0, p1) = match setup {
        Ok(v) => v,
        Err((what, e)) => {
            for n in LOCAL_ADOPT_TESTS {
                tap.ok(false, n);
            }
            tap.diag(format_args!("  {}: {}", what, e));
            return;
        }
    };
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => {
            // Holds both listeners (inherited) until the parent writes or
            // goes away.
            drop(p0);
            let mut b = [0u8; 1];
            let _ = sys::read(p1.raw(), &mut b);
            sys::exit(0)
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            for n in LOCAL_ADOPT_TESTS {
                tap.ok(false, n);
            }
            tap.diag(format_args!("  fork: {}", e));
            return;
        }
    };
    drop(p1);
    // The seqpacket listener is the child's alone from here.
    drop(lq);
    let loaded = kld::load(KO_PATH);
    let (stream, seqpacket) = match loaded {
        Ok(_) => (
            local_rows(Kind::UnixStream, &sa_s),
            local_rows(Kind::UnixSeqpacket, &sa_q),
        ),
        Err(_) => (None, None),
    };
    // Close every descriptor: this process's, then the child's (exit).
    drop(ls);
    let _ = sys::write(p0.raw(), b"x");
    drop(p0);
    let waited = sys::wait4(pid);
    let after = (
        local_rows(Kind::UnixStream, &sa_s).map(|r| r.0),
        local_rows(Kind::UnixSeqpacket, &sa_q).map(|r| r.0),
    );
    let un = match loaded {
        Ok(id) => kld::unload(id),
        Err(e) => Err(e),
    };
    tap.check(stream, Some((1, "stream", Some(5))), LOCAL_ADOPT_TESTS[0]);
    tap.check(
        seqpacket,
        Some((1, "seqpacket", Some(7))),
        LOCAL_ADOPT_TESTS[1],
    );
    // Only rows that were there can leave.
    let were = matches!(stream, Some((1, ..))) && matches!(seqpacket, Some((1, ..)));
    let gone = were && after == (Some(0), Some(0)) && waited.is_ok() && un.is_ok();
    tap.ok(gone, LOCAL_ADOPT_TESTS[2]);
    if !gone {
        tap.diag(format_args!(
            "  rows before close {:?}, after {:?}, wait4 {:?}, kldload {:?}, kldunload {:?}",
            (stream.map(|r| r.0), seqpacket.map(|r| r.0)),
            after,
            waited.map(|_| ()),
            loaded.map(|_| ()),
            un
        ));
    }
}

const VNET_ADOPT_PORT: u16 = 47003;
const VNET_ADOPT_TEST: &str =
    "a TCP listener of a vnet jail from before kldload is in that vnet's table at load (LIMIT 6)";

/// A TCP listener in another vnet before kldload: the pcb walk goes
/// through every vnet, and the row is listed to readers in that vnet
/// (in_pcblist's rule), so the jailed child reads the table itself.
pub fn vnet_tcp_adopted_at_load(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.ko {
        tap.skip(
            VNET_ADOPT_TEST,
            format_args!("listenq.ko not in image ({})", e),
        );
        return;
    }
    let (p0, p1) = match sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM) {
        Ok(p) => p,
        Err(e) => {
            tap.ok(false, VNET_ADOPT_TEST);
            tap.diag(format_args!("  socketpair: {}", e));
            return;
        }
    };
    let pid = match sys::fork() {
        Ok(sys::Forked::Child) => {
            drop(p0);
            sys::exit(vnet_adopt_child(tap, p1.raw()))
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => {
            tap.ok(false, VNET_ADOPT_TEST);
            tap.diag(format_args!("  fork: {}", e));
            return;
        }
    };
    drop(p1);
    let mut b = [0u8; 1];
    // 0 bytes: the child gave up before listening (its exit code says why).
    let ready = matches!(sys::read(p0.raw(), &mut b), Ok(1));
    let loaded = if ready {
        Some(kld::load(KO_PATH))
    } else {
        None
    };
    let _ = sys::write(p0.raw(), b"l");
    let status = sys::wait4(pid);
    drop(p0);
    let code = match status {
        Ok(s) if s & 0x7f == 0 => Some((s >> 8) & 0xff),
        _ => None,
    };
    let un = match loaded {
        Some(Ok(id)) => Some(kld::unload(id)),
        _ => None,
    };
    let pass = code == Some(0) && matches!(loaded, Some(Ok(_))) && matches!(un, Some(Ok(())));
    tap.ok(pass, VNET_ADOPT_TEST);
    if !pass {
        tap.diag(format_args!(
            "  child exit {:?} (1 no row, 2 wrong LIMIT, 0x40.. setup), kldload {:?}, kldunload {:?}",
            code,
            loaded.map(|r| r.map(|_| ())),
            un
        ));
    }
}

/// In a new vnet jail: a TCP listener, "r" to the parent, wait for its
/// "l" (kldload done), then look for the row. Returns the exit code.
fn vnet_adopt_child(tap: &mut Tap, p1: i32) -> i32 {
    if !matches!(sys::jail_vnet(c"/", c"lqadopt"), Ok(j) if j > 0) {
        return 0x40;
    }
    // A new vnet has its own lo0, down and without an address.
    if crate::net::setup_loopback(tap).v4.is_err() {
        return 0x41;
    }
    let sa = crate::net::SockAddr::inet(crate::net::LOOPBACK4, VNET_ADOPT_PORT);
    let l = Kind::Tcp4.socket().and_then(|s| {
        sys::bind(s.raw(), sa.bytes())?;
        sys::listen(s.raw(), 6)?;
        Ok(s)
    });
    let Ok(_l) = l else { return 0x42 };
    if !matches!(sys::write(p1, b"r"), Ok(1)) {
        return 0x43;
    }
    let mut b = [0u8; 1];
    if !matches!(sys::read(p1, &mut b), Ok(1)) {
        return 0x44;
    }
    match tcp_row(&sa) {
        Some((_, Some(6))) => 0,
        Some(_) => 2,
        None => 1,
    }
}

/// Where a cycle failed: the step and its errno, or the allocations still
/// live when the count did not return to 0.
enum CycleErr {
    Sys(&'static str, Errno),
    Live(u64),
}

fn at(step: &'static str) -> impl FnOnce(Errno) -> CycleErr {
    move |err| CycleErr::Sys(step, err)
}

/// load, one TCP listener with one accepted client, close all, allocs back
/// to 0, unload.
fn one_cycle() -> Result<(), CycleErr> {
    let id = kld::load(KO_PATH).map_err(at("kldload"))?;
    let used = (|| -> Result<(), CycleErr> {
        let (lfd, addr) = sock::listener(Kind::Tcp4, 5).map_err(at("listen"))?;
        let c = sock::connect(Kind::Tcp4, &addr).map_err(at("connect"))?;
        let a = sock::accept(lfd.raw()).map_err(at("accept"))?;
        a.close().map_err(at("close accepted"))?;
        c.close().map_err(at("close client"))?;
        lfd.close().map_err(at("close listener"))?;
        allocs_settle()
    })();
    // Unload even when the use failed, so the next cycle starts clean.
    let un = kld::unload(id).map_err(at("kldunload"));
    used?;
    un
}

/// Waits (bounded) for the module's live allocation count to reach 0.
fn allocs_settle() -> Result<(), CycleErr> {
    let start = sys::now_ms();
    loop {
        match sysctl::read_u64(ALLOCS).map_err(at("read allocs"))? {
            0 => return Ok(()),
            n if sys::now_ms().saturating_sub(start) >= ALLOCS_SETTLE_MS => {
                return Err(CycleErr::Live(n))
            }
            _ => sys::sleep_ms(5),
        }
    }
}

pub fn cycles(tap: &mut Tap, env: &Env) {
    let name = CYCLES_NAME;
    if let Err(e) = env.ko {
        tap.skip(name, format_args!("listenq.ko not in image ({})", e));
        return;
    }
    if let Ok(id) = kld::find(KO_NAME) {
        tap.ok(false, name);
        tap.diag(format_args!(
            "  listenq.ko is still loaded (file id {}) before the cycles",
            id
        ));
        return;
    }
    let start = sys::now_ms();
    for i in 1..=CYCLES {
        if let Err(ce) = one_cycle() {
            tap.ok(false, name);
            match ce {
                CycleErr::Sys(step, e) => tap.diag(format_args!("  cycle {}: {}: {}", i, step, e)),
                CycleErr::Live(n) => tap.diag(format_args!(
                    "  cycle {}: {} = {} (not 0) {} ms after closing everything",
                    i, ALLOCS, n, ALLOCS_SETTLE_MS
                )),
            }
            if let Ok(id) = kld::find(KO_NAME) {
                let _ = kld::unload(id);
            }
            return;
        }
    }
    tap.ok(true, name);
    tap.diag(format_args!(
        "  {} cycles in {} ms",
        CYCLES,
        sys::now_ms().saturating_sub(start)
    ));
}

/// Bytes shown as text where printable.
pub struct Bytes<'a>(pub &'a [u8]);

impl core::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) && b != b'"' {
                core::fmt::Write::write_char(f, b as char)?;
            } else {
                write!(f, "\\x{:02x}", b)?;
            }
        }
        f.write_str("\"")
    }
}
