//! Helpers for the accept filter tests (t_accf/) and the benchmark
//! (t_bench.rs): SO_ACCEPTFILTER, TCP clients that send byte by byte,
//! nonblocking accepts, ports, reset detection, listenq's counters and its
//! listeners table, and loading listenq or the stock accf modules.
//! Every wait here is bounded.

use crate::env::{KO_NAME, KO_PATH};
use crate::kld;
use crate::net::{self, SockAddr};
use crate::sock::{self, Kind, SOL_SOCKET};
use crate::sys::{self, Errno, Fd, PollFd, SysResult};
use crate::sysctl;
use crate::table::{addr_text, find_row};
use crate::tap::Tap;
use core::ffi::CStr;

pub const SO_ACCEPTFILTER: i32 = 0x1000;
pub const SO_LINGER: i32 = 0x0080;
pub const IPPROTO_TCP: i32 = 6;
pub const TCP_NODELAY: i32 = 1;

pub use crate::layout::{AF_NAME_LEN, AF_SIZE};

pub const ALLOCS: &str = "kern.ipc.listenq.allocs";
pub const TABLE: &str = "kern.ipc.listenq.listeners";

/// struct accept_filter_arg with `name` and `arg` (both cut to fit).
pub fn af_arg(name: &str, arg: &str) -> [u8; AF_SIZE] {
    let mut b = [0u8; AF_SIZE];
    let n = name.len().min(AF_NAME_LEN - 1);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    let a = arg.len().min(AF_SIZE - AF_NAME_LEN - 1);
    b[AF_NAME_LEN..AF_NAME_LEN + a].copy_from_slice(&arg.as_bytes()[..a]);
    b
}

pub fn set_filter(fd: i32, name: &str, arg: &str) -> SysResult<()> {
    sys::setsockopt(fd, SOL_SOCKET, SO_ACCEPTFILTER, &af_arg(name, arg))
}

/// setsockopt(SO_ACCEPTFILTER, NULL, 0): removes the filter.
pub fn remove_filter(fd: i32) -> SysResult<()> {
    sys::setsockopt_null(fd, SOL_SOCKET, SO_ACCEPTFILTER)
}

/// getsockopt(SO_ACCEPTFILTER): the af_name field.
pub fn get_filter(fd: i32) -> SysResult<[u8; AF_NAME_LEN]> {
    let mut b = [0u8; AF_SIZE];
    let n = sys::getsockopt(fd, SOL_SOCKET, SO_ACCEPTFILTER, &mut b)?;
    if n != AF_SIZE {
        return Err(Errno::BADSIZE);
    }
    let mut name = [0u8; AF_NAME_LEN];
    name.copy_from_slice(&b[..AF_NAME_LEN]);
    Ok(name)
}

/// The bytes of a NUL-padded name.
pub fn cstr(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// A nonblocking TCP/IPv4 listener on 127.0.0.1 and its address.
pub fn listener(backlog: i32) -> SysResult<(Fd, SockAddr)> {
    let (l, sa) = sock::listener(Kind::Tcp4, backlog)?;
    sock::set_nonblock(l.raw())?;
    Ok((l, sa))
}

/// A nonblocking listener with `filter` (and `arg`) set.
pub fn filtered(backlog: i32, filter: &str, arg: &str) -> SysResult<(Fd, SockAddr)> {
    let (l, sa) = listener(backlog)?;
    set_filter(l.raw(), filter, arg)?;
    Ok((l, sa))
}

/// A connected client (bounded nonblocking connect) with TCP_NODELAY, so
/// every send goes out as its own segment at once.
pub fn client(to: &SockAddr) -> SysResult<Fd> {
    let c = sock::connect(Kind::Tcp4, to)?;
    sock::set_int(c.raw(), IPPROTO_TCP, TCP_NODELAY, 1)?;
    Ok(c)
}

/// Sends all of `b` (no SIGPIPE).
pub fn send_all(fd: i32, mut b: &[u8]) -> SysResult<()> {
    let start = sys::now_ms();
    while !b.is_empty() {
        match sys::send(fd, b, sys::MSG_NOSIGNAL) {
            Ok(n) => b = &b[n.min(b.len())..],
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                if sys::now_ms().saturating_sub(start) > 2000 {
                    return Err(Errno::TIMEOUT);
                }
                sys::sleep_ms(1);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// close(2) that sends RST instead of FIN (SO_LINGER with l_linger 0), so
/// nothing lingers in TIME_WAIT.
pub fn close_rst(fd: Fd) {
    let linger = [1i32, 0i32];
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&linger[0].to_ne_bytes());
    b[4..].copy_from_slice(&linger[1].to_ne_bytes());
    let _ = sys::setsockopt(fd.raw(), SOL_SOCKET, SO_LINGER, &b);
    drop(fd);
}

/// One nonblocking accept(2) on a nonblocking listener: EAGAIN when the
/// completed queue is empty.
pub fn try_accept(l: i32) -> SysResult<Fd> {
    sys::accept(l)
}

/// Waits up to `ms` for the listener to be readable, then accepts.
pub fn accept_within(l: i32, ms: i32) -> SysResult<Fd> {
    let mut p = [PollFd {
        fd: l,
        events: sys::POLLIN,
        revents: 0,
    }];
    if sys::poll(&mut p, ms)? == 0 {
        return Err(Errno::TIMEOUT);
    }
    sys::accept(l)
}

/// Lines of the message buffer (kern.msgbuf, as dmesg -a reads it: a
/// log(9) line keeps its "<priority>" prefix) that hold every one of
/// `parts`, in that order.
pub fn msgbuf_lines(parts: &[&[u8]]) -> SysResult<usize> {
    let mut mem = sys::scratch::<u8>(262144, 0);
    let n = sysctl::read_opaque("kern.msgbuf", &mut mem)?.min(mem.len());
    Ok(mem[..n]
        .split(|&b| b == b'\n')
        .filter(|line| {
            let mut rest: &[u8] = line;
            parts
                .iter()
                .all(|p| match rest.windows(p.len()).position(|w| w == *p) {
                    Some(i) => {
                        rest = &rest[i + p.len()..];
                        true
                    }
                    None => false,
                })
        })
        .count())
}

/// A reproduction without listenq: FreeBSD's accept filter module at
/// `path` loaded for `f`, then unloaded (with net.accf.unloadable set, as
/// uipc_accf.c requires) once whatever `f` caused is on the console.
pub fn with_stock_module(tap: &mut Tap, path: &CStr, f: impl FnOnce(&mut Tap)) {
    let id = match kld::load(path) {
        Ok(id) => id,
        Err(e) => {
            tap.ok(false, format_args!("kldload {:?}: {}", path, e));
            return;
        }
    };
    f(tap);
    sys::sleep_ms(200);
    let _ = sysctl::write_int("net.accf.unloadable", 1);
    let _ = kld::unload(id);
}

/// Wait for the send that must release it.
pub const PASS_MS: i32 = 2000;

/// sys/filio.h: bytes in a socket's send buffer (sent and not yet
/// acknowledged, or not yet sent).
const FIONWRITE: u64 = 0x4004_6677;
const TCP_INFO: i32 = 32;
/// netinet/tcp_fsm.h: our FIN is sent and not yet acknowledged.
const TCPS_FIN_WAIT_1: u8 = 6;
const TCPS_CLOSING: u8 = 7;

/// tcpi_state, the first byte of struct tcp_info.
pub fn tcp_state(fd: i32) -> SysResult<u8> {
    let mut b = [0u8; 8];
    sys::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &mut b)?;
    Ok(b[0])
}

/// Waits until the peer's TCP has acknowledged every byte client `c`
/// sent, and its FIN too if `fin`: the peer's input has run, and with it
/// the accept filter's upcall, which runs inside that input before the
/// acknowledgement goes out. An event to wait for instead of a guess
/// (a fixed sleep): a release that comes late under a loaded emulator is not
/// taken for the next step's. Delayed ACKs make this wait up to
/// net.inet.tcp.delacktime per step; the callers turn them off
/// (`DelayedAcksOff`).
pub fn wait_taken(c: i32, fin: bool) -> SysResult<()> {
    let t0 = sys::now_ms();
    loop {
        let mut b = [0u8; 4];
        sys::ioctl(c, FIONWRITE, &mut b)?;
        let unacked = i32::from_ne_bytes(b);
        let fin_out = fin && matches!(tcp_state(c)?, TCPS_FIN_WAIT_1 | TCPS_CLOSING);
        if unacked == 0 && !fin_out {
            return Ok(());
        }
        if sys::now_ms() - t0 > PASS_MS as u64 {
            return Err(Errno::TIMEOUT);
        }
        sys::sleep_ms(1);
    }
}

/// net.inet.tcp.delayed_ack=0 while this lives (the old value after):
/// every segment acknowledged at once, so that `wait_taken` waits for the
/// peer's input and not for its delayed-ACK timer.
pub struct DelayedAcksOff(Option<i32>);

impl DelayedAcksOff {
    pub fn new() -> DelayedAcksOff {
        const KNOB: &str = "net.inet.tcp.delayed_ack";
        let was = sysctl::read_int(KNOB).ok();
        if was.is_some() {
            let _ = sysctl::write_int(KNOB, 0);
        }
        DelayedAcksOff(was)
    }
}

impl Drop for DelayedAcksOff {
    fn drop(&mut self) {
        if let Some(v) = self.0 {
            let _ = sysctl::write_int("net.inet.tcp.delayed_ack", v);
        }
    }
}

/// How the bytes of a byte-by-byte case's step reached the listener: a
/// local send has run the peer's upcall when it returns; a TCP send has
/// when the peer acknowledged it (`wait_taken`).
#[derive(Clone, Copy)]
pub enum Sent {
    Local,
    Tcp { client: i32, fin: bool },
}

/// After one step of a byte-by-byte case: the step that must release the
/// connection (`last`) waits up to PASS_MS for it; any other waits until
/// the step reached the filter and then finds nothing to accept, unless
/// the filter let go early.
pub fn accept_after_step(l: i32, last: bool, sent: Sent) -> SysResult<Fd> {
    if last {
        return accept_within(l, PASS_MS);
    }
    if let Sent::Tcp { client, fin } = sent {
        wait_taken(client, fin)?;
    }
    try_accept(l)
}

/// Waits up to `ms` for `fd` to be readable (or hung up).
pub fn readable_within(fd: i32, ms: i32) -> SysResult<bool> {
    let mut p = [PollFd {
        fd,
        events: sys::POLLIN,
        revents: 0,
    }];
    Ok(sys::poll(&mut p, ms)? > 0)
}

/// Port (host order) of a sockaddr_in.
fn port_of(sa: &[u8]) -> u16 {
    if sa.len() < 4 {
        return 0;
    }
    u16::from_be_bytes([sa[2], sa[3]])
}

pub fn local_port(fd: i32) -> SysResult<u16> {
    Ok(port_of(net::local_addr(fd)?.bytes()))
}

pub fn peer_port(fd: i32) -> SysResult<u16> {
    let mut b = [0u8; 128];
    let n = sys::getpeername(fd, &mut b)?;
    Ok(port_of(&b[..n.min(b.len())]))
}

pub fn addr_port(sa: &SockAddr) -> u16 {
    port_of(sa.bytes())
}

/// What a client sees when it reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    /// Nothing within the wait (the connection is still open).
    Nothing,
    /// Read returned 0.
    Eof,
    /// Read failed with this error (ECONNRESET expected).
    Err(Errno),
    /// Data arrived.
    Data,
}

impl Seen {
    pub fn is_reset_or_eof(self) -> bool {
        matches!(self, Seen::Eof | Seen::Err(Errno::ECONNRESET))
    }
}

/// Waits up to `ms` for something to read on a client and reads it.
pub fn client_sees(fd: i32, ms: i32) -> Seen {
    match readable_within(fd, ms) {
        Ok(true) => {}
        Ok(false) => return Seen::Nothing,
        Err(e) => return Seen::Err(e),
    }
    let mut b = [0u8; 64];
    match sys::read(fd, &mut b) {
        Ok(0) => Seen::Eof,
        Ok(_) => Seen::Data,
        Err(Errno::EAGAIN) => Seen::Nothing,
        Err(e) => Seen::Err(e),
    }
}

/// Reads until `want.len()` bytes arrived (or `ms` passed) and compares.
pub fn reads_exactly(fd: i32, want: &[u8], ms: u64) -> bool {
    let mut buf = [0u8; 512];
    if want.len() > buf.len() {
        return false;
    }
    let mut have = 0;
    let start = sys::now_ms();
    while have < want.len() {
        let left = ms.saturating_sub(sys::now_ms().saturating_sub(start));
        if left == 0 {
            return false;
        }
        match readable_within(fd, left as i32) {
            Ok(true) => {}
            _ => return false,
        }
        match sys::read(fd, &mut buf[have..]) {
            Ok(0) => return false,
            Ok(n) => have += n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    have == want.len() && &buf[..have] == want
}

// ---------------------------------------------------------------- listenq state

/// kern.ipc.listenq.stats.<name>.
pub fn stat(name: &str) -> SysResult<u64> {
    let mut full = [0u8; 64];
    let prefix = b"kern.ipc.listenq.stats.";
    let n = prefix.len() + name.len();
    if n > full.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    full[..prefix.len()].copy_from_slice(prefix);
    full[prefix.len()..n].copy_from_slice(name.as_bytes());
    let s = core::str::from_utf8(&full[..n]).map_err(|_| Errno::EINVAL)?;
    sysctl::read_u64(s)
}

/// Waits (bounded) until kern.ipc.listenq.stats.<name> is at least `want`.
pub fn wait_stat_at_least(name: &str, want: u64, ms: u64) -> bool {
    let start = sys::now_ms();
    loop {
        match stat(name) {
            Ok(v) if v >= want => return true,
            _ if sys::now_ms().saturating_sub(start) >= ms => return false,
            _ => sys::sleep_us(200),
        }
    }
}

pub fn allocs() -> SysResult<u64> {
    sysctl::read_u64(ALLOCS)
}

/// Waits (bounded) for kern.ipc.listenq.allocs and .memuse to reach 0;
/// the last values read otherwise.
pub fn allocs_settle(ms: u64) -> Result<(), Live> {
    let start = sys::now_ms();
    loop {
        let live = Live {
            allocs: allocs().unwrap_or(u64::MAX),
            memuse: sysctl::read_u64("kern.ipc.listenq.memuse").unwrap_or(u64::MAX),
        };
        if live
            == (Live {
                allocs: 0,
                memuse: 0,
            })
        {
            return Ok(());
        }
        if sys::now_ms().saturating_sub(start) >= ms {
            return Err(live);
        }
        sys::sleep_ms(10);
    }
}

/// What listenq still has allocated: kern.ipc.listenq.allocs (Rust's
/// allocations) and kern.ipc.listenq.memuse (bytes of every allocation of
/// its malloc type, whoever made it); u64::MAX: unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub allocs: u64,
    pub memuse: u64,
}

impl core::fmt::Display for Live {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} allocations, {} bytes", self.allocs, self.memuse)
    }
}

/// The columns of a kern.ipc.listenq.listeners row this suite uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRow {
    pub filter: [u8; AF_NAME_LEN],
    pub held: i64,
    pub evicted: i64,
    pub incqlen: i64,
    /// The fair policy's columns; -1 where the table shows "-".
    pub sources: i64,
    pub ev_fair: i64,
    pub ev_cap: i64,
}

impl TableRow {
    pub fn filter(&self) -> &[u8] {
        cstr(&self.filter)
    }
}

/// Column indexes (after splitting on blanks; LOCAL ADDRESS is one column).
const COL_INCQLEN: usize = 5;
const COL_FILTER: usize = 8;
const COL_HELD: usize = 9;
const COL_EVICTED: usize = 10;
const COL_SOURCES: usize = 15;
const COL_EV_FAIR: usize = 16;
const COL_EV_CAP: usize = 17;

/// The table row of the listener on 127.0.0.1:`port`: Ok(None) when the
/// table has no such row.
pub fn table_row(port: u16) -> SysResult<Option<TableRow>> {
    let mut buf = [0u8; 32768];
    let n = sysctl::read_opaque(TABLE, &mut buf)?.min(buf.len());
    let text = cstr(&buf[..n]);
    let mut key = [0u8; 96];
    let k = addr_text(Kind::Tcp4, &SockAddr::inet(net::LOOPBACK4, port), &mut key);
    let Some(row) = find_row(text, &key[..k]) else {
        return Ok(None);
    };
    let mut filter = [0u8; AF_NAME_LEN];
    let f = row.text(COL_FILTER);
    let fl = f.len().min(AF_NAME_LEN - 1);
    filter[..fl].copy_from_slice(&f[..fl]);
    Ok(Some(TableRow {
        filter,
        held: row.num(COL_HELD).unwrap_or(-1),
        evicted: row.num(COL_EVICTED).unwrap_or(-1),
        incqlen: row.num(COL_INCQLEN).unwrap_or(-1),
        sources: row.num(COL_SOURCES).unwrap_or(-1),
        ev_fair: row.num(COL_EV_FAIR).unwrap_or(-1),
        ev_cap: row.num(COL_EV_CAP).unwrap_or(-1),
    }))
}

// ---------------------------------------------------------------- modules

pub const ACCF_DATA: &core::ffi::CStr = c"/boot/modules/accf_data.ko";
pub const ACCF_HTTP: &core::ffi::CStr = c"/boot/modules/accf_http.ko";
pub const ACCF_DNS: &core::ffi::CStr = c"/boot/modules/accf_dns.ko";

/// listenq's file id: loads it unless it is loaded already.
pub fn listenq_loaded() -> SysResult<i32> {
    match kld::find(KO_NAME) {
        Ok(id) => Ok(id),
        Err(_) => kld::load(KO_PATH),
    }
}

/// Whether a file (e.g. a stock module) is in the image.
pub fn in_image(path: &core::ffi::CStr) -> bool {
    sys::open(path, sys::O_RDONLY).is_ok()
}

/// Bytes shown as text where printable (for diagnostics).
pub struct Show<'a>(pub &'a [u8]);

impl core::fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) {
                core::fmt::Write::write_char(f, b as char)?;
            } else {
                write!(f, "\\x{:02x}", b)?;
            }
        }
        Ok(())
    }
}

/// Sockets the kernel has not freed (kern.ipc.numopensockets). A TCP
/// listener closed while listenq is loaded is freed one network-epoch
/// grace period after its close (listenq(4)), and with it its filter's
/// memory: a test that measures memory waits for its own sockets to be
/// freed before it looks again.
pub fn open_sockets() -> SysResult<i32> {
    sysctl::read_int("kern.ipc.numopensockets")
}

/// Waits up to `ms` until at most `n` sockets are open (`open_sockets`).
pub fn wait_open_sockets_at_most(n: i32, ms: u64) -> bool {
    let t0 = sys::now_ms();
    loop {
        match open_sockets() {
            Ok(v) if v <= n => return true,
            Ok(_) if sys::now_ms().saturating_sub(t0) < ms => sys::sleep_ms(5),
            _ => return false,
        }
    }
}

/// Waits until sockets closed before this call are freed: until no
/// socket is freed for 100 ms (at most `ms` in all). For tests that
/// measure memory right after others closed listeners.
pub fn settle_open_sockets(ms: u64) {
    let t0 = sys::now_ms();
    while let Ok(n) = open_sockets() {
        if !wait_open_sockets_at_most(n - 1, 100) || sys::now_ms().saturating_sub(t0) > ms {
            return;
        }
    }
}
