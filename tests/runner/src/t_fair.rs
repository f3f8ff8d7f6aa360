//! Fair eviction under a connection flood (issue 18, `evict=fair`).
//!
//! Real clients on 127.0.0.1 connect to a filtered listener and wait;
//! then flooders on 127.0.0.2 to 127.0.0.5 open many more connections
//! that never send; then the real clients send their requests. With
//! stock's oldest-first eviction the flood has evicted the clients (they
//! were the oldest); with `evict=fair` every eviction takes the oldest
//! connection of the source holding the most, a flooder, and every client
//! is served. The listeners table counts what happened (SOURCES, EV_FAIR,
//! EV_CAP). No timing is involved: every step waits for the table to say
//! it happened. The share of clients served under a continuous flood, a
//! timing figure, is `make bench`'s (t_bench_fair.rs).

use crate::accf_util as au;
use crate::env::Env;
use crate::net::{self, SockAddr};
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd, SysResult};
use crate::tap::Tap;

/// The listener's backlog: the hold queue's capacity.
pub const BACKLOG: i32 = 16;
/// Real clients, from 127.0.0.1.
const CLIENTS: usize = 3;
/// Flood connections, spread over FLOODERS.
const FLOOD: usize = 96;
/// The flooders' addresses, 127.0.0.x (lo0 aliases the test adds).
pub const FLOODERS: [u8; 4] = [2, 3, 4, 5];
/// How long a step may take to show in the table.
const WAIT_MS: u64 = 5000;

const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// A TCP connection from 127.0.0.`from` to `to`, nonblocking, not waited
/// for (the handshake completes through the loopback's netisr).
pub fn connect_from(from: u8, to: &SockAddr) -> SysResult<Fd> {
    let c = Kind::Tcp4.socket()?;
    sys::bind(c.raw(), SockAddr::inet([127, 0, 0, from], 0).bytes())?;
    sock::set_nonblock(c.raw())?;
    match sys::connect(c.raw(), to.bytes()) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(c),
        Err(e) => Err(e),
    }
}

/// Adds the flooders' addresses to lo0.
pub fn add_flooders() -> SysResult<()> {
    for x in FLOODERS {
        net::add_alias4([127, 0, 0, x])?;
    }
    Ok(())
}

/// Waits until the listener's row satisfies `done`; the last row read.
fn wait_row(port: u16, done: impl Fn(&au::TableRow) -> bool) -> Option<au::TableRow> {
    let t0 = sys::now_ms();
    let mut last = None;
    while sys::now_ms() - t0 < WAIT_MS {
        if let Ok(Some(r)) = au::table_row(port) {
            if done(&r) {
                return Some(r);
            }
            last = Some(r);
        }
        sys::sleep_ms(5);
    }
    last
}

/// Whether accepted socket `fd` is one of `clients` (by the peer's port).
fn client_port(fd: i32, clients: &[u16]) -> bool {
    au::peer_port(fd).is_ok_and(|p| clients.contains(&p))
}

struct Outcome {
    served: usize,
    row: Option<au::TableRow>,
}

/// The scenario with af_arg `arg`; Err names the step that failed.
fn scenario(arg: &str) -> Result<Outcome, (&'static str, Errno)> {
    let (l, sa) = au::filtered(BACKLOG, "httpready", arg).map_err(|e| ("listener", e))?;
    let port = au::addr_port(&sa);
    let mut clients = [0u16; CLIENTS];
    let mut cfds = heapless_fds::<CLIENTS>();
    for (i, slot) in cfds.iter_mut().enumerate() {
        let c = connect_from(1, &sa).map_err(|e| ("client connect", e))?;
        clients[i] = au::local_port(c.raw()).map_err(|e| ("client port", e))?;
        *slot = Some(c);
        // One at a time, so they are held oldest first.
        wait_row(port, |r| r.held == i as i64 + 1).ok_or(("client held", Errno::TIMEOUT))?;
    }
    let mut flood: [Option<Fd>; FLOOD] = [const { None }; FLOOD];
    for (i, slot) in flood.iter_mut().enumerate() {
        let from = FLOODERS[i % FLOODERS.len()];
        *slot = Some(connect_from(from, &sa).map_err(|e| ("flood connect", e))?);
    }
    // Every connection completed and was held or evicted: the queue is
    // full and the evictions add up.
    let evictions = (CLIENTS + FLOOD) as i64 - i64::from(BACKLOG);
    wait_row(port, |r| {
        r.held == i64::from(BACKLOG) && r.evicted >= evictions
    })
    .ok_or(("flood held or evicted", Errno::TIMEOUT))?;
    let row = au::table_row(port).ok().flatten();
    for c in cfds.iter().flatten() {
        // An evicted client's send may fail (reset): it is not served.
        let _ = au::send_all(c.raw(), REQUEST);
    }
    let mut served = 0;
    let t0 = sys::now_ms();
    while served < CLIENTS && sys::now_ms() - t0 < 2000 {
        match au::accept_within(l.raw(), 50) {
            Ok(a) => {
                if client_port(a.raw(), &clients) {
                    served += 1;
                }
            }
            Err(_) => continue,
        }
    }
    drop(flood);
    Ok(Outcome { served, row })
}

fn heapless_fds<const N: usize>() -> [Option<Fd>; N] {
    [const { None }; N]
}

/// `persource=2`: ten connections from one flooder, the queue far from
/// full: that source keeps its two newest, the cap evicts the rest.
fn capped() -> Result<Option<au::TableRow>, (&'static str, Errno)> {
    let (_l, sa) = au::filtered(BACKLOG, "httpready", "evict=fair,persource=2")
        .map_err(|e| ("listener", e))?;
    let port = au::addr_port(&sa);
    let mut fds: [Option<Fd>; 10] = [const { None }; 10];
    for slot in fds.iter_mut() {
        *slot = Some(connect_from(FLOODERS[0], &sa).map_err(|e| ("connect", e))?);
    }
    Ok(wait_row(port, |r| r.ev_cap >= 8))
}

pub fn run(tap: &mut Tap, env: &Env) {
    const NAME: &str = "fair eviction";
    if let Some(u) = env.unusable(Kind::Tcp4) {
        tap.skip(NAME, u);
        return;
    }
    if let Err(e) = add_flooders() {
        tap.skip(NAME, format_args!("lo0 aliases 127.0.0.2-5: {}", e));
        return;
    }
    match scenario("evict=oldest") {
        Ok(o) => {
            tap.diag(format_args!(
                "oldest-first: {} of {} clients served after a flood of {} from {} sources, backlog {}; row {:?}",
                o.served,
                CLIENTS,
                FLOOD,
                FLOODERS.len(),
                BACKLOG,
                o.row
            ));
            tap.ok(
                o.served == 0,
                "evict=oldest (stock's rule): a flood of never-sending connections evicts the waiting clients",
            );
            tap.ok(
                o.row
                    .is_some_and(|r| r.sources == -1 && r.ev_fair == -1 && r.ev_cap == -1),
                "evict=oldest: SOURCES, EV_FAIR and EV_CAP are '-'",
            );
        }
        Err((step, e)) => {
            tap.ok(
                false,
                format_args!("evict=oldest scenario: {}: {}", step, e),
            );
        }
    }
    match scenario("evict=fair") {
        Ok(o) => {
            tap.diag(format_args!(
                "fair: {} of {} clients served; row {:?}",
                o.served, CLIENTS, o.row
            ));
            tap.ok(
                o.served == CLIENTS,
                "evict=fair: every waiting client is served after the flood (the flooders evicted only their own)",
            );
            let evictions = (CLIENTS + FLOOD) as i64 - i64::from(BACKLOG);
            tap.ok(
                o.row.is_some_and(|r| {
                    r.sources == 1 + FLOODERS.len() as i64
                        && r.ev_fair == evictions
                        && r.evicted == evictions
                        && r.ev_cap == 0
                }),
                format_args!(
                    "evict=fair: the table counts {} sources held, EV_FAIR = EVICTED = {}, EV_CAP 0",
                    1 + FLOODERS.len(),
                    evictions
                ),
            );
        }
        Err((step, e)) => {
            tap.ok(false, format_args!("evict=fair scenario: {}: {}", step, e));
        }
    }
    match capped() {
        Ok(r) => {
            tap.diag(format_args!("persource=2: row {:?}", r));
            tap.ok(
                r.is_some_and(|r| r.held == 2 && r.ev_cap == 8 && r.ev_fair == 0 && r.sources == 1),
                "evict=fair,persource=2: one source's ten connections: two held, EV_CAP 8, the queue not full",
            );
        }
        Err((step, e)) => {
            tap.ok(false, format_args!("persource scenario: {}: {}", step, e));
        }
    }
    // Everything is closed: the evicted connections' task finishes, and
    // the fair bookkeeping went with the queues.
    let settled = au::allocs_settle(10_000);
    tap.ok(
        settled.is_ok(),
        "fair eviction: with every listener and connection closed, kern.ipc.listenq.allocs and memuse are back to 0",
    );
    if let Err(live) = settled {
        tap.diag(format_args!("  still: {}", live));
    }
}

// ------------------------------------------------------------ the bench

/// `make bench`'s flood row: real clients served under a continuous flood.
pub mod bench {
    use super::*;

    /// The listener's backlog.
    const BACKLOG: i32 = 64;
    /// Ticks of flooding; each opens FLOOD_PER_TICK flood connections.
    const TICKS: u32 = 600;
    const FLOOD_PER_TICK: usize = 4;
    /// A real client every CLIENT_EVERY ticks, which sends its request
    /// CLIENT_WAIT_MS after connecting (a client on a slow link).
    const CLIENT_EVERY: u32 = 5;
    const CLIENT_WAIT_MS: u64 = 60;
    /// Flood connections kept open at once (the oldest is closed).
    const RING: usize = 512;
    const MAX_CLIENTS: usize = (TICKS / CLIENT_EVERY) as usize;

    struct Client {
        fd: Option<Fd>,
        port: u16,
        start: u64,
        sent: bool,
        served: bool,
    }

    /// What one run saw: clients served, clients started, flood
    /// connections opened.
    pub struct Share {
        pub served: usize,
        pub clients: usize,
        pub flood: usize,
    }

    /// Sends the request of every client that has waited CLIENT_WAIT_MS.
    fn send_due(clients: &mut [Option<Client>]) {
        let now = sys::now_ms();
        for c in clients.iter_mut().flatten() {
            if !c.sent && now - c.start >= CLIENT_WAIT_MS {
                c.sent = true;
                if let Some(fd) = &c.fd {
                    // An evicted client's send fails: not served.
                    let _ = sys::send(fd.raw(), REQUEST, sys::MSG_NOSIGNAL);
                }
            }
        }
    }

    /// One run on a fresh listener with httpready and `arg`.
    pub fn share(arg: &str) -> Result<Share, (&'static str, Errno)> {
        let (l, sa) = au::filtered(BACKLOG, "httpready", arg).map_err(|e| ("listener", e))?;
        let mut ring: [Option<Fd>; RING] = [const { None }; RING];
        let mut clients: [Option<Client>; MAX_CLIENTS] = [const { None }; MAX_CLIENTS];
        let (mut flood, mut started, mut next) = (0usize, 0usize, 0usize);
        let accept_all = |clients: &mut [Option<Client>]| {
            while let Ok(a) = sys::accept(l.raw()) {
                if let Ok(p) = au::peer_port(a.raw()) {
                    for c in clients.iter_mut().flatten() {
                        if c.port == p {
                            c.served = true;
                            c.fd = None;
                        }
                    }
                }
            }
        };
        for tick in 0..TICKS {
            for _ in 0..FLOOD_PER_TICK {
                let from = FLOODERS[flood % FLOODERS.len()];
                if let Ok(f) = connect_from(from, &sa) {
                    // Closing the oldest first keeps RING descriptors.
                    ring[next] = Some(f);
                    next = (next + 1) % RING;
                    flood += 1;
                }
            }
            if tick % CLIENT_EVERY == 0 && started < MAX_CLIENTS {
                if let Ok(c) = connect_from(1, &sa) {
                    let port = au::local_port(c.raw()).unwrap_or(0);
                    clients[started] = Some(Client {
                        fd: Some(c),
                        port,
                        start: sys::now_ms(),
                        sent: false,
                        served: false,
                    });
                    started += 1;
                }
            }
            send_due(&mut clients);
            accept_all(&mut clients);
            sys::sleep_ms(1);
        }
        // The last clients' requests, then their accepts.
        let t0 = sys::now_ms();
        while sys::now_ms() - t0 < 1000 {
            send_due(&mut clients);
            accept_all(&mut clients);
            sys::sleep_ms(5);
        }
        let served = clients.iter().flatten().filter(|c| c.served).count();
        drop(ring);
        Ok(Share {
            served,
            clients: started,
            flood,
        })
    }
}
