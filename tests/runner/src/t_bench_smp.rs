//! The bench's 2-vCPU figure (issue 19): two processes accept from one
//! listener while two others connect, send a request and wait for the
//! server to close, listenq's httpready against FreeBSD's accf_http, on
//! however many vCPUs the VM has (run-vm.sh: `LISTENQ_BENCH=smp`, two by
//! default, multi-threaded TCG without instruction counting). It shows
//! whether anything on the per-connection path contends; guest time is
//! real time here, so the figure is noisy, and it is given as the spread
//! of repeated interleaved comparisons (t_bench_paired.rs), not as a
//! target.

use crate::accf_util as au;
use crate::sys::{self, Errno};
use crate::t_bench_paired as paired;
use crate::tap::Tap;

/// Connections per measurement, shared by the two clients.
const CONNS: u64 = 2000;
/// Interleaved comparisons (each A B B A).
const REPEATS: usize = 5;
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A client's or an acceptor's loop, in a child: `n` connections.
fn child(acceptor: bool, l: i32, sa: &crate::net::SockAddr, n: u64) -> i32 {
    let mut buf = [0u8; 256];
    for _ in 0..n {
        if acceptor {
            let Ok(s) = sys::accept(l) else { return 2 };
            // The filter passed it: the request is there.
            if !matches!(sys::read(s.raw(), &mut buf), Ok(k) if k > 0) {
                return 3;
            }
        } else {
            let Ok(c) = au::client(sa) else { return 4 };
            if au::send_all(c.raw(), GET).is_err() {
                return 5;
            }
            // Until the server closes: one whole connection per round.
            while matches!(sys::read(c.raw(), &mut buf), Ok(k) if k > 0) {}
        }
    }
    0
}

/// One measurement: (conns/s, guest microseconds) for CONNS connections
/// through `filter`.
fn measure(filter: &str) -> Result<(u64, u64), (&'static str, Errno)> {
    // Blocking: the acceptors sleep in accept(2) until a connection
    // passes the filter (accf_util's listeners are nonblocking).
    let (l, sa) =
        crate::sock::listener(crate::sock::Kind::Tcp4, 1024).map_err(|e| ("listener", e))?;
    au::set_filter(l.raw(), filter, "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    let (go_rd, go_wr) = sys::socketpair(crate::net::AF_UNIX, crate::net::SOCK_STREAM)
        .map_err(|e| ("socketpair", e))?;
    let mut pids = [0i32; 4];
    for (i, pid) in pids.iter_mut().enumerate() {
        match sys::fork().map_err(|e| ("fork", e))? {
            sys::Forked::Child => {
                let mut b = [0u8; 1];
                // Everyone starts together, when the parent writes.
                let _ = sys::read(go_rd.raw(), &mut b);
                sys::exit(child(i < 2, l.raw(), &sa, CONNS / 2))
            }
            sys::Forked::Parent(p) => *pid = p,
        }
    }
    let t0 = sys::now_us();
    let _ = sys::write(go_wr.raw(), b"gggg");
    let mut bad = None;
    for pid in pids {
        match sys::wait4(pid) {
            Ok(0) => {}
            // The child's exit status, not an errno (see child()).
            Ok(s) => bad = Some(("a child failed with status", Errno(s >> 8))),
            Err(e) => bad = Some(("wait4", e)),
        }
    }
    let us = sys::now_us().saturating_sub(t0).max(1);
    if let Some(b) = bad {
        return Err(b);
    }
    Ok((CONNS * 1_000_000 / us, us))
}

struct Label(usize);

impl core::fmt::Display for Label {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "smp httpready #{}", self.0)
    }
}

/// The figure: REPEATS interleaved comparisons, each one ratio, reported
/// with their spread.
pub fn run(tap: &mut Tap) {
    let _ = sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1");
    let _ = crate::sysctl::write_int("net.accf.unloadable", 1);
    let cpus = crate::sysctl::read_int("hw.ncpu").unwrap_or(0);
    tap.diag(format_args!(
        "bench smp: {} vCPUs, {} connections per measurement (2 acceptors, 2 clients), {} comparisons of httpready, stock accf_http then listenq",
        cpus, CONNS, REPEATS
    ));
    let mut ratios = [0u64; REPEATS];
    let mut n = 0;
    for (i, r) in ratios.iter_mut().enumerate() {
        let mut run = |_: &mut Tap, _: bool| measure("httpready");
        let label = Label(i + 1);
        let (a, b) = paired::compare_with(
            tap,
            &label,
            Some(au::ACCF_HTTP),
            false,
            &paired::ABBA1,
            CONNS,
            &mut run,
        );
        if let (Some(s), Some(q)) = (a.cps(), b.cps()) {
            // Thousandths: listenq's rate over stock's.
            *r = q * 1000 / s.max(1);
            n += 1;
        }
    }
    let got = &mut ratios[..n];
    got.sort_unstable();
    if got.is_empty() {
        tap.ok(false, "bench smp: no comparison completed");
        return;
    }
    let med = got[got.len() / 2];
    tap.ok(
        true,
        format_args!(
            "bench smp: listenq / stock (httpready, {} vCPUs): median {}.{:03}, min {}.{:03}, max {}.{:03} over {} comparisons",
            cpus,
            med / 1000,
            med % 1000,
            got[0] / 1000,
            got[0] % 1000,
            got[got.len() - 1] / 1000,
            got[got.len() - 1] % 1000,
            got.len()
        ),
    );
}
